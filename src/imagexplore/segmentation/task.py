"""Segmentation as an engine task: per-pixel softmax cross-entropy (ignore 255), confusion-matrix evaluation."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from imagexplore.engine import Task
from imagexplore.segmentation.metrics import SegmentationEvaluator


class Normalize:
    """Per-channel (x - mean) / std on a C×H×W tensor; a plain class so DataLoader workers can pickle it."""

    def __init__(self, mean: list[float], std: list[float]):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Mean per-pixel cross-entropy over the non-ignored pixels (0, with a gradient path, if there are none)."""
    loss = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="sum")
    count = (target != ignore_index).sum().clamp_min(1)
    return loss / count


class SegmentationTask(Task):
    def __init__(self, classes: list[str], ignore_index: int = 255, meta: dict[str, Any] | None = None):
        self.classes = list(classes)
        self.ignore_index = ignore_index
        self.meta = dict(meta or {})

    def training_step(self, model, batch, optimizer):
        x, y = batch[0], batch[1]
        logits = model(x)
        loss = segmentation_loss(logits, y, self.ignore_index)
        with torch.no_grad():
            valid = y != self.ignore_index
            acc = ((logits.argmax(1) == y) & valid).sum().item() / max(int(valid.sum()), 1)
        return loss, {"pixel_acc": acc}

    def evaluators(self):
        return {"": SegmentationEvaluator(len(self.classes), self.ignore_index, self.classes)}

    def evaluation_step(self, model, batch, evaluators):
        x, y = batch[0], batch[1]
        evaluators[""].update(model(x).float(), y)

    def checkpoint_meta(self):
        return {"task": "segment", "classes": self.classes, "ignore_index": self.ignore_index, **self.meta}
