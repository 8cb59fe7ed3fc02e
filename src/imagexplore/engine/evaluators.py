"""Evaluators with one shape, `reset / update / compute`, that count every sample once under torchrun.

State lives in tensors of sums; `compute()` all-reduces them across processes first, so each rank may see a
different, unpadded shard of the evaluation set and the result still equals the single-process one.
"""

from __future__ import annotations

import torch

from imagexplore.engine import distributed as dist


class Evaluator:
    """Base class: subclasses keep `self.state` (a dict of float64 tensors of sums) and implement `_compute`."""

    prefix = "val/"

    def reset(self) -> None:
        self.state: dict[str, torch.Tensor] = {}

    def update(self, outputs, targets) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def set_batch_indices(self, indices: torch.Tensor) -> None:
        """The dataset indices of the batch about to be given to `update` (the Trainer calls this); summing
        evaluators do not need them, gathering ones keep them beside each sample's result."""

    def _add(self, key: str, value: torch.Tensor) -> None:
        value = value.detach().to("cpu", torch.float64)
        if key in self.state:
            self.state[key] += value
        else:
            self.state[key] = value.clone()

    def synced_state(self) -> dict[str, torch.Tensor]:
        """State summed over processes. Every rank must call this (collective)."""
        out = {}
        for k in sorted(self.state):
            t = self.state[k].clone()
            if dist.is_initialized():
                # NCCL needs CUDA tensors; gloo CPU ones.
                dev = (
                    torch.device("cuda", torch.cuda.current_device())
                    if torch.distributed.get_backend() == "nccl"
                    else "cpu"
                )
                t = dist.all_reduce_sum(t.to(dev)).cpu()
            out[k] = t
        return out

    def compute(self) -> dict[str, float]:
        return self._compute(self.synced_state())

    def _compute(self, state: dict[str, torch.Tensor]) -> dict[str, float]:  # pragma: no cover
        raise NotImplementedError


class ClassificationEvaluator(Evaluator):
    """Top-k accuracy/error, mean loss, sample count and the confusion matrix (`confusion()` after compute)."""

    def __init__(self, num_classes: int, topk: tuple[int, ...] = (1, 5)):
        self.num_classes = num_classes
        self.topk = tuple(k for k in topk if k <= num_classes) or (1,)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.state = {
            "count": torch.zeros((), dtype=torch.float64),
            "loss_sum": torch.zeros((), dtype=torch.float64),
            "confusion": torch.zeros(self.num_classes, self.num_classes, dtype=torch.float64),
            **{f"correct{k}": torch.zeros((), dtype=torch.float64) for k in self.topk},
        }

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        logits = logits.detach().float()
        targets = targets.detach()
        self._add("count", torch.tensor(float(targets.numel())))
        self._add("loss_sum", torch.nn.functional.cross_entropy(logits, targets, reduction="sum"))
        top = logits.topk(max(self.topk), dim=1).indices
        hit = top == targets[:, None]
        for k in self.topk:
            self._add(f"correct{k}", hit[:, :k].any(1).sum())
        idx = targets.cpu() * self.num_classes + top[:, 0].cpu()
        self._add("confusion", torch.bincount(idx, minlength=self.num_classes**2).view(self.num_classes, -1))

    def _compute(self, state):
        n = max(state["count"].item(), 1.0)
        self.last_confusion = state["confusion"].long()
        out = {"count": state["count"].item(), "loss": state["loss_sum"].item() / n}
        for k in self.topk:
            acc = state[f"correct{k}"].item() / n
            out[f"acc{k}"] = acc
            out[f"err{k}"] = 1.0 - acc
        return out
