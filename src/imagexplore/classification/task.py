"""Classification as an engine task: cross-entropy training, top-k accuracy and confusion evaluation."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from imagexplore.engine import ClassificationEvaluator, Task


class Normalize:
    """Per-channel (x - mean) / std on a C×H×W tensor; a plain class so DataLoader workers can pickle it."""

    def __init__(self, mean: list[float], std: list[float]):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ClassificationTask(Task):
    def __init__(self, classes: list[str], meta: dict[str, Any] | None = None, label_smoothing: float = 0.0):
        self.classes = list(classes)
        self.meta = dict(meta or {})
        self.label_smoothing = label_smoothing

    def training_step(self, model, batch, optimizer):
        x, y = batch[0], batch[1]
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        acc = (logits.detach().argmax(1) == y).float().mean().item()
        return loss, {"acc1": acc}

    def evaluators(self):
        return {"": ClassificationEvaluator(len(self.classes))}

    def evaluation_step(self, model, batch, evaluators):
        x, y = batch[0], batch[1]
        evaluators[""].update(model(x).float(), y)

    def checkpoint_meta(self):
        return {"classes": self.classes, **self.meta}
