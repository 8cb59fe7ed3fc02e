"""Input preprocessing fitted on the training set and stored with the checkpoint.

`gcn_zca` is the CIFAR recipe of NIN / DSN / Maxout, which the CFN release uses: global contrast normalisation of
each image (subtract its mean, divide by its norm, × scale) followed by ZCA whitening learnt on the training
set: W = V diag(1/sqrt(λ + bias)) Vᵀ from the eigen-decomposition of the covariance of the GCN'd images. It is
linear in the pixels, so it runs on whole batches on the training device (one matmul) after the data loader.

The fitted statistics are saved in every checkpoint's `meta["preprocess"]`, so `eval` and `predict` apply
exactly what training used.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from imagexplore.errors import ConfigError


def global_contrast_normalize(
    x: torch.Tensor, scale: float = 55.0, min_divisor: float = 1e-8
) -> torch.Tensor:
    """Rows of a N×D matrix, as pylearn2's `global_contrast_normalize(X, scale)` (use_std=False, sqrt_bias=0):
    subtract each row's mean, divide by sqrt(Σ x²) / scale; divisors below `min_divisor` are replaced by 1."""
    x = x - x.mean(dim=1, keepdim=True)
    norms = torch.sqrt((x * x).sum(dim=1, keepdim=True)) / scale
    norms = torch.where(norms < min_divisor, torch.ones_like(norms), norms)
    return x / norms


class GCNZCA(torch.nn.Module):
    """GCN + ZCA whitening on batches of C×H×W images (flattened internally)."""

    def __init__(self, mean: torch.Tensor, whiten: torch.Tensor, scale: float = 55.0):
        super().__init__()
        self.register_buffer("mean", mean.float())
        self.register_buffer("whiten", whiten.float())
        self.scale = scale

    @classmethod
    def fit(
        cls,
        dataset: Dataset,
        scale: float = 55.0,
        bias: float = 0.1,
        batch_size: int = 1000,
        max_samples: int | None = None,
    ) -> GCNZCA:
        """Learn the whitening from (up to `max_samples` of) a dataset's images, in float64 for stability."""
        n = len(dataset) if max_samples is None else min(len(dataset), max_samples)
        loader = DataLoader(torch.utils.data.Subset(dataset, range(n)), batch_size=batch_size)
        rows = []
        for x, _ in tqdm(loader, desc="fit GCN+ZCA", leave=False, disable=None):
            rows.append(global_contrast_normalize(x.flatten(1).double(), scale))
        x = torch.cat(rows)
        mean = x.mean(0)
        xc = x - mean
        cov = xc.T @ xc / x.shape[0]
        evals, evecs = torch.linalg.eigh(cov)
        whiten = evecs @ torch.diag(1.0 / torch.sqrt(evals.clamp(min=0) + bias)) @ evecs.T
        return cls(mean, whiten, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = global_contrast_normalize(x.flatten(1).float(), self.scale)
        return ((flat - self.mean) @ self.whiten).view(shape)

    def to_meta(self) -> dict[str, Any]:
        return {"kind": "gcn_zca", "mean": self.mean.cpu(), "whiten": self.whiten.cpu(), "scale": self.scale}


class MeanStd(torch.nn.Module):
    """Per-channel (x − mean) / std on batches."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def to_meta(self) -> dict[str, Any]:
        return {"kind": "mean_std", "mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist()}


def from_meta(meta: dict[str, Any] | None) -> torch.nn.Module | None:
    """Rebuild the batch preprocessing stored in a checkpoint (None: images stay in [0, 1])."""
    if not meta:
        return None
    kind = meta.get("kind")
    if kind == "gcn_zca":
        return GCNZCA(meta["mean"], meta["whiten"], meta.get("scale", 55.0))
    if kind == "mean_std":
        return MeanStd(meta["mean"], meta["std"])
    raise ConfigError(f"unknown preprocessing {kind!r} in checkpoint (expected gcn_zca or mean_std)")


class StandardAugment:
    """The standard CIFAR augmentation on a C×H×W tensor: zero-pad by `pad`, random crop back, random h-flip."""

    def __init__(self, pad: int = 4, flip: bool = True):
        self.pad, self.flip = pad, flip

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        c, h, w = x.shape
        if self.pad:
            x = torch.nn.functional.pad(x, (self.pad,) * 4)
            i, j = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
            x = x[:, i : i + h, j : j + w]
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x


class RandomCropFlip:
    """Training crop of a C×H×W tensor: a random size×size window and a random horizontal flip (ImageNet's
    "224 random crop + mirror" on images stored at 256)."""

    def __init__(self, size: int, flip: bool = True):
        self.size, self.flip = size, flip

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w = x.shape
        if h < self.size or w < self.size:
            raise ConfigError(
                f"data.crop_size {self.size} is larger than the {h}×{w} images: raise data.image_size"
            )
        i = int(torch.randint(0, h - self.size + 1, ()))
        j = int(torch.randint(0, w - self.size + 1, ()))
        x = x[:, i : i + self.size, j : j + self.size]
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x


class CenterCrop:
    """Evaluation crop: the central size×size window (single centre crop, as the thesis evaluates)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w = x.shape
        i, j = (h - self.size) // 2, (w - self.size) // 2
        return x[:, i : i + self.size, j : j + self.size]
