"""Contact sheets of the shapes world: one PNG per kind of ground truth, to look at what the tests test.

`preview_shapes(out_dir)` is what ``imagexplore data preview shapes --out DIR`` runs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from imagexplore.data.shapes import PARSING_LABELS, SKELETON, VOC_PALETTE, ShapesWorld
from imagexplore.errors import ConfigError

_TEXT_H = 12  # height of the caption band under each cell
_PAD = 4

# Distinct colours for the parsing labels (0 = background black).
_PARSING_COLOURS = np.array(
    [(0, 0, 0), (250, 200, 160), (90, 50, 20), (220, 40, 40), (40, 80, 220), (30, 30, 30), (240, 150, 90),
     (200, 120, 60)],
    np.uint8,
)  # fmt: skip


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def _rgb(a: np.ndarray) -> np.ndarray:
    """Any uint8/bool/float H×W or H×W×3 array → H×W×3 uint8."""
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a


def _grid(cells: list[list[tuple[np.ndarray, str]]], cell: int) -> Image.Image:
    """Rows of (image, label) cells → one sheet; images are resized (nearest) to ``cell`` px."""
    cols = max(len(r) for r in cells)
    sheet = Image.new(
        "RGB", (cols * (cell + _PAD) + _PAD, len(cells) * (cell + _TEXT_H + _PAD) + _PAD), "white"
    )
    draw, font = ImageDraw.Draw(sheet), _font()
    for r, row in enumerate(cells):
        for c, (img, text) in enumerate(row):
            x, y = _PAD + c * (cell + _PAD), _PAD + r * (cell + _TEXT_H + _PAD)
            sheet.paste(Image.fromarray(_rgb(img)).resize((cell, cell), Image.NEAREST), (x, y))
            if text:
                draw.text((x, y + cell), text[: max(4, cell // 6)], fill="black", font=font)
    return sheet


def _chunks(items: list, n: int) -> list[list]:
    return [items[k : k + n] for k in range(0, len(items), n)]


def _overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Image blended with the VOC colours of the mask; the ignore band in white."""
    col = VOC_PALETTE[mask].astype(np.float32)
    out = image.astype(np.float32) * 0.35 + col * 0.65
    out[mask == 0] = image[mask == 0] * 0.5
    out[mask == 255] = 255
    return out.astype(np.uint8)


def _draw_skeleton(image: np.ndarray, kps: np.ndarray, scale: float) -> np.ndarray:
    im = Image.fromarray(image).resize((round(image.shape[1] * scale),) * 2, Image.NEAREST)
    d = ImageDraw.Draw(im)
    p = kps * scale
    for a, b in SKELETON:
        d.line([tuple(p[a]), tuple(p[b])], fill=(255, 255, 0), width=2)
    for x, y in p:
        d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(255, 0, 0))
    return np.asarray(im)


def preview_shapes(out_dir, seed: int = 0, size: int = 96, n: int = 16) -> list[Path]:
    """Write PNG contact sheets (and captions.txt) of the shapes world to ``out_dir``; returns the paths."""
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"n must be a positive int, got {n!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    world = ShapesWorld(seed=seed, size=size)
    scenes = [world.scene(i) for i in range(n)]
    cell = max(size, 96)
    per_row = min(8, n)
    written: list[Path] = []

    def save(name: str, rows) -> None:
        path = out / name
        _grid(rows, cell).save(path)
        written.append(path)

    save("scenes.png", _chunks([(s["image"], world.classes[s["label"]]) for s in scenes], per_row))
    save("masks.png", _chunks([(_overlay(s["image"], s["mask"]), "mask") for s in scenes], per_row))
    save("label_rgb.png", _chunks([(s["label_rgb"], "label_rgb") for s in scenes], per_row))
    save("edges.png", _chunks([(s["edges"], "edges") for s in scenes], per_row))
    few = scenes[: min(4, n)]
    save(
        "annotators.png",
        [[(s["image"], "image")] + [(a, f"annot {k}") for k, a in enumerate(s["annotators"])] for s in few],
    )
    save(
        "sketches.png",
        _chunks([c for s in scenes for c in ((s["image"], "photo"), (s["sketch"], "sketch"))], 8),
    )
    save(
        "views.png",
        [
            [(s["image"], "scene")] + [(v["image"], f"view {k}") for k, v in enumerate(world.views(i, 5))]
            for i, s in enumerate(few)
        ],
    )
    poses, outfits = range(4), range(5)
    persons = {(p, o): world.person(p, o) for p in poses for o in outfits}
    save("persons.png", [[(persons[p, o]["image"], f"pose {p} outfit {o}") for o in outfits] for p in poses])
    scale = cell / size
    save(
        "persons_parsing.png",
        [
            [
                (persons[p, 0]["image"], f"pose {p}"),
                (_PARSING_COLOURS[persons[p, 0]["parsing"]], "parsing"),
                (_draw_skeleton(persons[p, 0]["image"], persons[p, 0]["keypoints"], scale), "keypoints"),
                (persons[p, 0]["pose_map"].max(0), "pose map"),
            ]
            for p in poses
        ],
    )

    # Captions: image on the left, its five sentences on the right; also as plain text.
    k = min(6, n)
    width = cell + 560
    sheet = Image.new("RGB", (width, k * (cell + _PAD) + _PAD), "white")
    draw, font = ImageDraw.Draw(sheet), _font()
    lines = []
    for i, s in enumerate(scenes[:k]):
        y = _PAD + i * (cell + _PAD)
        sheet.paste(Image.fromarray(s["image"]).resize((cell, cell), Image.NEAREST), (_PAD, y))
        step = max(11, math.floor(cell / 5))
        for j, c in enumerate(s["captions"]):
            draw.text((cell + 2 * _PAD, y + j * step), c, fill="black", font=font)
    for i, s in enumerate(scenes):
        lines += [f"scene {i} (label {world.classes[s['label']]}):", *(f"  {c}" for c in s["captions"])]
    path = out / "captions.png"
    sheet.save(path)
    written.append(path)
    path = out / "captions.txt"
    path.write_text("\n".join(lines) + "\n")
    written.append(path)
    legend = out / "legend.txt"
    legend.write_text(
        f"classes: {', '.join(world.classes)}\nparsing labels: {', '.join(PARSING_LABELS)}\n"
        "masks: VOC colours, white = 255 ignore band; label_rgb: VOC palette, cream = ignore\n"
    )
    written.append(legend)
    return written
