"""The RDS / HED losses: weighted binary cross-entropy with ignored (relaxed) pixels, over all side outputs.

Targets are uint8 maps with 1 = edge, 0 = non-edge and 255 = ignored (relaxed pixels of a side output, pixels
below the annotator consensus, padding). Ignored pixels are removed by a mask *before* the loss is summed, so
they contribute exactly zero loss and exactly zero gradient (not merely a small one).

Per map, with logits x and N images in the batch (the thesis, chapter 3; docs/chapter3.md):

    L = −(1/N) [ β Σ_{y=1} log σ(x) + Σ_{y=0} log(1 − σ(x)) ]

β = 9 in the release; ``beta="auto"`` is HED's class balance β = |Y−|/|Y+|, counted per image over its
non-ignored pixels. ``reduction="sum"`` is that formula (sum over pixels, mean over images — what PyTorch HED
ports use with lr ≈ 1e-6); ``reduction="mean"`` divides each image's sum by its number of non-ignored pixels,
which makes the loss scale-free and lets ordinary learning rates (1e-3…1e-2 with SGD) work on small images.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F

from imagexplore.config import NonNegative, Positive, from_dict

IGNORE = 255


@dataclass
class EdgeLossConfig:
    """The `loss:` section of an edges config (typed: an unknown key or a bad value is one ConfigError)."""

    beta: Annotated[float | Literal["auto"], Positive] = 9.0  # a number, or "auto" (class-balanced per image)
    reduction: Literal["sum", "mean"] = (
        "sum"  # "sum": per-image pixel sum, batch mean (the thesis'); "mean": per pixel
    )
    side_weight: Annotated[float, NonNegative] = 1.0  # weight of each side-output loss
    fuse_weight: Annotated[float, NonNegative] = 1.0  # weight of the fusion loss


@dataclass(frozen=True)
class EdgeLoss:
    beta: float | str = 9.0
    reduction: str = "sum"
    side_weight: float = 1.0
    fuse_weight: float = 1.0

    @classmethod
    def from_options(cls, options: dict[str, Any] | None) -> EdgeLoss:
        """The loss of a config's `loss:` mapping (see `EdgeLossConfig`)."""
        return cls(**dataclasses.asdict(from_dict(EdgeLossConfig, dict(options or {}), prefix="loss.")))

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss over N×M×H×W logits and N×M×H×W uint8 targets (M = sides + fusion, fusion last)."""
        if logits.shape != targets.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ")
        per_map = weighted_bce(logits, targets, self.beta, self.reduction)  # M values
        sides, fuse = per_map[:-1], per_map[-1]
        total = self.side_weight * sides.sum() + self.fuse_weight * fuse
        logs = {"loss_fuse": float(fuse.detach()), "loss_sides": float(sides.detach().sum())}
        return total, logs


def weighted_bce(
    logits: torch.Tensor, targets: torch.Tensor, beta: float | str = 9.0, reduction: str = "sum"
) -> torch.Tensor:
    """Loss of each of the M maps of N×M×H×W logits (a length-M tensor), relaxed pixels excluded exactly."""
    x = logits.float()
    pos = targets == 1
    neg = targets == 0
    if beta == "auto":
        n_pos = pos.sum(dim=(2, 3), keepdim=True).float()
        n_neg = neg.sum(dim=(2, 3), keepdim=True).float()
        # an image without edges gets β = 0 weight on (absent) positives; no division by zero
        b = torch.where(n_pos > 0, n_neg / n_pos.clamp_min(1), torch.zeros_like(n_pos))
    else:
        b = torch.as_tensor(float(beta), device=x.device)
    # log σ(x) = −softplus(−x), log(1 − σ(x)) = −softplus(x): stable for any logit
    loss = torch.where(pos, b * F.softplus(-x), torch.zeros_like(x))
    loss = torch.where(neg, F.softplus(x), loss)  # torch.where: ignored pixels have no gradient path at all
    per_image = loss.sum(dim=(2, 3))  # N×M
    if reduction == "mean":
        per_image = per_image / (pos | neg).sum(dim=(2, 3)).clamp_min(1)
    return per_image.mean(dim=0)
