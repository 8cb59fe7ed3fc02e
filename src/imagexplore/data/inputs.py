"""Image inputs of the `predict` commands: files and folders expanded, then checked cheaply before any model loads.

`expand_inputs` takes files as given and folders as their images (recursive, sorted, as `list_images`);
`probe_image` reads only the header (format and size, no pixel decoding), so a missing, empty or non-image file,
or one over Pillow's decompression-bomb limit, is found before any work; a truncated file is still only found
when it is decoded (`load_image`).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from imagexplore.data.images import list_images
from imagexplore.errors import DataError


def expand_inputs(inputs: list[str | os.PathLike]) -> list[Path]:
    """Files as given; folders expanded to their images (sorted, recursive). A missing path is a `DataError`."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = list_images(p)
            if not found:
                raise DataError(
                    f"no images found in {p}: the folder holds no image files (searched recursively)"
                )
            paths.extend(found)
        elif p.exists():
            paths.append(p)
        else:
            raise DataError(f"no such file or folder: {p}")
    if not paths:
        raise DataError(f"no images found in {', '.join(map(str, inputs))}")
    return paths


def probe_image(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) from the file's header, or `DataError` ``cannot read image <path>: <reason>``."""
    from PIL import Image

    from imagexplore.data.images import read_error_reason

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
            with Image.open(path) as img:
                w, h = img.size
    except Exception as exc:  # Pillow raises many types for bad files
        raise DataError(f"cannot read image {path}: {read_error_reason(exc)}") from exc
    if w == 0 or h == 0:
        raise DataError(f"cannot read image {path}: the image is empty (0 pixels)")
    return w, h


def unique_stems(paths: list[str | os.PathLike]) -> None:
    """Refuse two inputs whose outputs ``<stem>.png`` would overwrite each other, naming both."""
    seen: dict[str, Path] = {}
    for p in map(Path, paths):
        if p.stem in seen:
            raise DataError(
                f"two inputs share the name '{p.stem}' ({seen[p.stem]} and {p}); their outputs "
                f"{p.stem}.png would overwrite each other"
            )
        seen[p.stem] = p
