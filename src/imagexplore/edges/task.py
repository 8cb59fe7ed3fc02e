"""Edge detection as an engine task: the RDS/HED loss in training, the BSDS boundary benchmark in evaluation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import torch

from imagexplore.config import AtLeastOne, Positive, from_dict
from imagexplore.edges.losses import EdgeLoss
from imagexplore.engine import Task
from imagexplore.engine.evaluators import Evaluator
from imagexplore.errors import ConfigError


# evaluation options (cfg.evaluation) and their defaults; the benchmark's own defaults are 99 thresholds and
# NMS on for model outputs; validation during training may use fewer thresholds to stay cheap
@dataclass
class EdgeEvaluationConfig:
    """The `evaluation:` section of an edges config: how validation scores the edge maps (BSDS benchmark)."""

    thresholds: Annotated[int, AtLeastOne] = 99
    nms: bool = True
    max_dist: Annotated[float, Positive] = 0.0075  # matching tolerance, a fraction of the image diagonal


EVAL_DEFAULTS: dict[str, Any] = dataclasses.asdict(EdgeEvaluationConfig())


def evaluation_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """A config's `evaluation:` mapping checked (see `EdgeEvaluationConfig`) with the defaults filled in."""
    return dataclasses.asdict(from_dict(EdgeEvaluationConfig, dict(options or {}), prefix="evaluation."))


class BoundaryEvaluator(Evaluator):
    """ODS / OIS / AP / R50 of fused edge probabilities against every annotator, as the BSDS benchmark.

    The state is sums (the threshold-wise count table over all images, and the per-image best-threshold
    counts), so shards evaluated by different processes add up to the single-process result."""

    def __init__(self, thresholds: int = 99, nms: bool = True, max_dist: float = 0.0075):
        self.thresholds = int(thresholds)
        self.nms = bool(nms)
        self.max_dist = float(max_dist)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.state = {
            "counts": torch.zeros(self.thresholds, 4, dtype=torch.float64),
            "best": torch.zeros(4, dtype=torch.float64),
            "images": torch.zeros((), dtype=torch.float64),
        }

    def update(self, probs: torch.Tensor, annotators: torch.Tensor) -> None:
        """probs: N×H×W in [0, 1]; annotators: N×A×H×W boolean boundary maps."""
        from imagexplore.edges.benchmark import best_counts, evaluate_image
        from imagexplore.edges.nms import nms

        probs = probs.detach().float().cpu().numpy()
        gts = annotators.detach().cpu().numpy().astype(bool)
        for e, g in zip(probs, gts):
            if self.nms:
                e = nms(e)
            counts = evaluate_image(e, g, thresholds=self.thresholds, max_dist=self.max_dist)
            self._add("counts", torch.from_numpy(counts.astype(np.float64)))
            self._add("best", torch.from_numpy(best_counts(counts).astype(np.float64)))
            self._add("images", torch.tensor(1.0))

    def _compute(self, state: dict[str, torch.Tensor]) -> dict[str, float]:
        from imagexplore.edges.benchmark import dataset_scores

        res = dataset_scores(
            self.thresholds, state["counts"].numpy(), state["best"].numpy(), int(state["images"])
        )
        keys = ("ods", "ois", "ap", "r50", "ods_threshold")
        return {k: float(res[k]) for k in keys} | {"images": float(state["images"])}


class EdgeTask(Task):
    """Deep supervision of every side output plus the fusion (targets: uint8 (S+1)×H×W, 255 = ignored)."""

    def __init__(self, loss: EdgeLoss, evaluation: dict[str, Any], meta: dict[str, Any] | None = None):
        self.loss = loss
        self.evaluation = evaluation_options(evaluation)
        self.meta = dict(meta or {})

    def training_step(self, model, batch, optimizer):
        x, target = batch[0], batch[1]
        logits = model(x)
        if logits.shape[1] != target.shape[1]:
            raise ConfigError(
                f"the model has {logits.shape[1] - 1} side outputs but the targets have {target.shape[1] - 1} "
                "side planes: set data.options.coefficients to one coefficient per side output"
            )
        return self.loss(logits, target)

    def evaluators(self):
        return {"": BoundaryEvaluator(**self.evaluation)}

    def evaluation_step(self, model, batch, evaluators):
        x, annotators = batch[0], batch[1]
        evaluators[""].update(torch.sigmoid(model(x)[:, -1].float()), annotators)

    def checkpoint_meta(self):
        return {"task": "edges", "evaluation": self.evaluation, **self.meta}
