"""Semantic segmentation metrics (FCN / PASCAL VOC conventions) from one confusion matrix.

``cm[t, p]`` counts pixels of ground-truth class t predicted as p; pixels whose ground truth is ``ignore_index``
(255 on VOC: object boundaries and "difficult" regions) or outside ``0..C-1`` are not counted. From it (FCN's
``score.py`` definitions):

* pixel accuracy  = Σ_k cm[k, k] / Σ cm
* class accuracy  = cm[k, k] / Σ_p cm[k, p]; **mean accuracy** averages it over the classes that occur in the
  ground truth (a class never in the ground truth has no accuracy: it is left out, not counted as 0 or 1);
* IoU_k           = cm[k, k] / (Σ_p cm[k, p] + Σ_t cm[t, k] − cm[k, k]); **mean IoU** averages it over the
  classes present in the ground truth *or* the prediction. A class absent from both has 0/0 and is excluded
  from the mean (FCN's ``nanmean``, torchmetrics' ``MulticlassJaccardIndex(average="macro")``); a class only
  predicted, never in the ground truth, counts with IoU 0.

Accumulated over a whole dataset (one matrix for all images), never averaged per image — the VOC protocol.
"""

from __future__ import annotations

import math

import torch

from imagexplore.engine.evaluators import Evaluator


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = 255
) -> torch.Tensor:
    """C×C int64 matrix (rows: ground truth, columns: prediction) by one bincount over the valid pixels.

    ``pred``: class indices (any shape) or logits (B, C, H, W) — argmax over dim 1; ``target``: indices with the
    same shape as ``pred`` indices. Pixels with target == ignore_index or target outside 0..C-1 are skipped;
    predictions outside 0..C-1 are an error.
    """
    if pred.is_floating_point():
        if pred.dim() != target.dim() + 1:
            raise ValueError(f"logits {tuple(pred.shape)} do not fit targets {tuple(target.shape)}")
        pred = pred.argmax(1)
    if pred.shape != target.shape:
        raise ValueError(f"predictions {tuple(pred.shape)} and targets {tuple(target.shape)} differ in shape")
    pred = pred.reshape(-1).long()
    target = target.reshape(-1).long()
    valid = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        valid &= target != ignore_index
    pred, target = pred[valid], target[valid]
    if pred.numel() and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(f"predictions must be in 0..{num_classes - 1}")
    idx = target * num_classes + pred
    return torch.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def _nanmean(values: torch.Tensor) -> float:
    ok = ~torch.isnan(values)
    return float(values[ok].mean()) if ok.any() else float("nan")


def scores(cm: torch.Tensor) -> dict:
    """Metrics of a confusion matrix: pixel_acc, mean_acc, miou, fwiou (floats) and per-class lists.

    ``class_iou`` / ``class_acc`` hold ``nan`` for the classes that the means exclude (see module docstring).
    """
    cm = cm.double()
    tp = cm.diag()
    gt = cm.sum(1)
    pr = cm.sum(0)
    total = cm.sum()
    union = gt + pr - tp
    iou = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))
    acc = torch.where(gt > 0, tp / gt.clamp_min(1), torch.full_like(tp, float("nan")))
    freq = gt / total if total > 0 else gt
    present = ~torch.isnan(iou)
    return {
        "pixel_acc": float(tp.sum() / total) if total > 0 else float("nan"),
        "mean_acc": _nanmean(acc),
        "miou": _nanmean(iou),
        "fwiou": float((freq[present] * iou[present]).sum()) if total > 0 else float("nan"),
        "class_iou": iou.tolist(),
        "class_acc": acc.tolist(),
        "pixels": float(total),
    }


class SegmentationEvaluator(Evaluator):
    """Confusion-matrix evaluator: ``update(logits or predictions, targets)``; ``compute()`` gives
    ``miou``, ``pixel_acc``, ``mean_acc``, ``fwiou`` and ``count`` (pixels counted). The state is the matrix, a
    sum, so it is all-reduced across processes by the base class. After ``compute()``: ``last_confusion``
    (int64 C×C) and ``last_scores`` (with per-class ``class_iou`` / ``class_acc``).
    """

    def __init__(
        self, num_classes: int, ignore_index: int | None = 255, class_names: list[str] | None = None
    ):
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.class_names = list(class_names) if class_names else [str(i) for i in range(self.num_classes)]
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.state = {"confusion": torch.zeros(self.num_classes, self.num_classes, dtype=torch.float64)}

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        cm = confusion_matrix(outputs.detach(), targets.detach(), self.num_classes, self.ignore_index)
        self._add("confusion", cm)

    def _compute(self, state):
        self.last_confusion = state["confusion"].round().long()
        s = scores(self.last_confusion)
        self.last_scores = s
        return {
            "miou": s["miou"],
            "pixel_acc": s["pixel_acc"],
            "mean_acc": s["mean_acc"],
            "fwiou": s["fwiou"],
            "count": s["pixels"],
        }

    def per_class_iou(self) -> dict[str, float | None]:
        """{class name: IoU or None (excluded)} of the last ``compute()``."""
        return {
            n: (None if math.isnan(v) else v) for n, v in zip(self.class_names, self.last_scores["class_iou"])
        }
