"""Sample galleries of a synthesis run: input / output / target (and extra samples) per row, as PNG files and an
HTML page (`RUN/gallery/index.html`), rewritten at every evaluation, plus the same grid in TensorBoard."""

from __future__ import annotations

from pathlib import Path

import torch

from imagexplore.report import Cell, Report


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """3×H×W (or N×3×H×W) in [-1, 1] → uint8 in [0, 255], the same layout."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


def save_png(x: torch.Tensor, path: str | Path) -> Path:
    """One 3×H×W image in [-1, 1] as a PNG."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(x).permute(1, 2, 0).numpy()).save(path)
    return path


def write_gallery(
    out_dir: str | Path,
    columns: dict[str, torch.Tensor],
    *,
    title: str,
    caption: str = "",
    names: list[str] | None = None,
    tensorboard=None,
    step: int = 0,
) -> Path:
    """Write `out_dir/index.html` showing, row by row, each of `columns` (name → N×3×H×W in [-1, 1], or
    N×S×3×H×W for S samples per row, shown as S columns). Files are overwritten, so the page always shows the
    latest evaluation; `tensorboard` (a SummaryWriter) also gets the grid as one image at `step`."""
    out = Path(out_dir)
    rows: list[list[Cell]] = []
    headers: list[str] = []
    for name, x in columns.items():
        headers += [name] if x.dim() == 4 else [f"{name} {s + 1}" for s in range(x.shape[1])]
    n = next(iter(columns.values())).shape[0]
    for i in range(n):
        row = []
        for name, x in columns.items():
            images = [x[i]] if x.dim() == 4 else list(x[i])
            for s, img in enumerate(images):
                file = save_png(img, out / f"{i:03d}_{name.replace(' ', '_')}_{s}.png")
                label = names[i] if (names and not row) else ""
                row.append(Cell(file, label))
        rows.append(row)
    report = Report(title, out)
    report.grid(rows, headers, caption=caption)
    page = report.write("index.html")
    if tensorboard is not None:
        from torchvision.utils import make_grid

        flat = [img for i in range(n) for x in columns.values() for img in ([x[i]] if x.dim() == 4 else x[i])]
        grid = make_grid(torch.stack([to_uint8(f) for f in flat]), nrow=len(headers))
        tensorboard.add_image("gallery", grid, step)
    return page
