"""Classification as an engine task: cross-entropy training, top-k accuracy and confusion evaluation."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from imagexplore.engine import ClassificationEvaluator, Task


class ClassificationTask(Task):
    """Cross-entropy classification. `input_transform` (a module: mean/std or GCN+ZCA) runs on whole batches on
    the training device, after the data loader; its fitted state travels in the checkpoint's meta."""

    def __init__(
        self,
        classes: list[str],
        meta: dict[str, Any] | None = None,
        label_smoothing: float = 0.0,
        input_transform: torch.nn.Module | None = None,
    ):
        self.classes = list(classes)
        self.meta = dict(meta or {})
        self.label_smoothing = label_smoothing
        self.input_transform = input_transform
        if input_transform is not None:
            self.meta["preprocess"] = input_transform.to_meta()

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_transform is None:
            return x
        if self.input_transform.mean.device != x.device:
            self.input_transform.to(x.device)
        return self.input_transform(x)

    def training_step(self, model, batch, optimizer):
        x, y = self.prepare(batch[0]), batch[1]
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        acc = (logits.detach().argmax(1) == y).float().mean().item()
        return loss, {"acc1": acc}

    def evaluators(self):
        return {"": ClassificationEvaluator(len(self.classes))}

    def evaluation_step(self, model, batch, evaluators):
        x, y = self.prepare(batch[0]), batch[1]
        evaluators[""].update(model(x).float(), y)

    def checkpoint_meta(self):
        return {"classes": self.classes, **self.meta}
