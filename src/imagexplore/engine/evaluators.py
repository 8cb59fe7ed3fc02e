"""Evaluators with one shape, `reset / update / compute`, that count every sample once under torchrun.

Two kinds. Summing evaluators keep tensors of sums; `compute()` all-reduces them across processes first, so each
rank may see a different, unpadded shard of the evaluation set and the result still equals the single-process
one. Gathering evaluators (`GatheringEvaluator`) keep per-sample results beside their dataset indices; `compute()`
gathers them from every process and orders them by index, dropping repeats (padded shards), so metrics over the
whole set — recall@K over all embeddings, a gallery of samples — are exactly the single-process ones.
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
            if dist.is_initialized():  # NCCL needs CUDA tensors; gloo CPU ones
                t = dist.all_reduce_sum(t.to(dist.collective_device())).cpu()
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


class GatheringEvaluator(Evaluator):
    """Per-sample results with their dataset indices, gathered from every process at `compute()`.

    Subclasses call `self.keep(name=tensor, ...)` from `update` (first dimension = the batch, in the order of the
    indices the Trainer set with `set_batch_indices`; without it, samples are numbered in arrival order) and
    implement `_compute_all(indices, results)`, which sees the whole evaluation set sorted by dataset index."""

    def reset(self) -> None:
        super().reset()
        self.kept: dict[str, list[torch.Tensor]] = {}
        self.kept_indices: list[torch.Tensor] = []
        self._batch_indices: torch.Tensor | None = None
        self._arrived = 0

    def set_batch_indices(self, indices: torch.Tensor) -> None:
        self._batch_indices = torch.as_tensor(indices, dtype=torch.long).cpu()

    def keep(self, **per_sample: torch.Tensor) -> None:
        n = len(next(iter(per_sample.values())))
        if any(len(v) != n for v in per_sample.values()):
            raise ValueError("every kept tensor needs one row per sample of the batch")
        if self._batch_indices is not None and len(self._batch_indices) == n:
            idx = self._batch_indices
        else:
            idx = torch.arange(self._arrived, self._arrived + n)
        self._arrived += n
        self._batch_indices = None
        self.kept_indices.append(idx)
        for k, v in per_sample.items():
            self.kept.setdefault(k, []).append(v.detach().cpu())

    def gathered(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(sorted unique dataset indices, results in that order) over every process. Collective."""
        idx = torch.cat(self.kept_indices) if self.kept_indices else torch.zeros(0, dtype=torch.long)
        idx = dist.all_gather(idx)
        results = {k: dist.all_gather(torch.cat(v)) for k, v in sorted(self.kept.items())}
        order = torch.argsort(idx, stable=True)
        idx = idx[order]
        first = torch.ones_like(idx, dtype=torch.bool)
        first[1:] = idx[1:] != idx[:-1]  # a padded shard repeats samples: keep each index once
        return idx[first], {k: v[order][first] for k, v in results.items()}

    def compute(self) -> dict[str, float]:
        return self._compute_all(*self.gathered())

    def _compute_all(self, indices: torch.Tensor, results: dict[str, torch.Tensor]) -> dict[str, float]:
        raise NotImplementedError  # pragma: no cover


def recall_at_k(a: torch.Tensor, b: torch.Tensor, ks=(1, 5, 10)) -> dict[str, float]:
    """Paired retrieval both ways: row i of `a` should find row i of `b` (a→b) and the reverse (b→a).

    Cosine similarity; the rank of the true partner is 1 + the number of others scored strictly higher (ties
    count in the partner's favour). Returns percent recall at each K, median and mean rank, and
    their sum `rsum`."""
    a = torch.nn.functional.normalize(a.double(), dim=1)
    b = torch.nn.functional.normalize(b.double(), dim=1)
    sim = a @ b.T
    out: dict[str, float] = {}
    rsum = 0.0
    for name, s in (("a2b", sim), ("b2a", sim.T)):
        ranks = (s > s.diagonal()[:, None]).sum(1).double() + 1
        for k in ks:
            r = 100.0 * (ranks <= k).double().mean().item()
            out[f"{name}_r{k}"] = r
            rsum += r
        out[f"{name}_medr"] = ranks.median().item()
        out[f"{name}_meanr"] = ranks.mean().item()
    out["rsum"] = rsum
    out["count"] = float(len(a))
    return out


class RecallAtK(GatheringEvaluator):
    """Recall@K of paired embeddings (image i ↔ its text i) over the whole evaluation set, both ways."""

    def __init__(self, ks=(1, 5, 10)):
        self.ks = tuple(ks)
        self.reset()

    def update(self, a: torch.Tensor, b: torch.Tensor) -> None:
        self.keep(a=a.float(), b=b.float())

    def _compute_all(self, indices, results):
        return recall_at_k(results["a"], results["b"], self.ks)
