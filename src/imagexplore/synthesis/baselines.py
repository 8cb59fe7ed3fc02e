"""The trivial baselines every chapter-8 model must beat on the ground-truth metrics (no training):

- ``identity`` (translation): the output is the input itself (a label map / sketch offered as the photo).
- ``copy-paste`` (clothes swap): for every clothes label, B's pixels inside that label's bounding box are resized
  onto the bounding box of the same label in A's layout (S_A', A's layout with B's clothes) and pasted where A's
  layout has that label; the rest of the output is A's image. No pose is followed inside a box.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BASELINES = {"pairs": ("identity",), "persons": ("copy-paste",)}


def identity(batch) -> torch.Tensor:
    return batch[0]


def _box(mask: torch.Tensor) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right), bottom/right exclusive, of a H×W boolean mask; None when it is empty."""
    rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
    if len(rows) == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def copy_paste(batch: dict, clothes_labels: tuple[int, ...]) -> torch.Tensor:
    """B's clothes regions warped by bounding box onto A's layout (module docstring); B×3×H×W in [-1, 1]."""
    out = batch["I_A"].clone()
    layout = batch["S_A_with_B_clothes"].argmax(1)  # A's layout with B's clothes labels
    for i in range(out.shape[0]):
        for label in clothes_labels:
            src, dst = _box(batch["parsing_B"][i] == label), _box(layout[i] == label)
            if src is None or dst is None:
                continue
            top, bottom, left, right = src
            crop = batch["I_B"][i : i + 1, :, top:bottom, left:right]
            top, bottom, left, right = dst
            size = (bottom - top, right - left)
            warped = F.interpolate(crop, size=size, mode="bilinear", align_corners=False)[0]
            region = out[i, :, top:bottom, left:right]
            out[i, :, top:bottom, left:right] = torch.where(
                layout[i, top:bottom, left:right] == label, warped, region
            )
    return out
