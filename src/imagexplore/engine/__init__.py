"""Task-agnostic training machinery: trainer, checkpoints, distributed helpers, evaluators, run logging."""

from imagexplore.engine.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from imagexplore.engine.evaluators import (
    ClassificationEvaluator,
    Evaluator,
    GatheringEvaluator,
    RecallAtK,
)
from imagexplore.engine.trainer import Task, Trainer, seed_everything

__all__ = [
    "ClassificationEvaluator",
    "Evaluator",
    "GatheringEvaluator",
    "RecallAtK",
    "Task",
    "Trainer",
    "load_checkpoint",
    "load_model_state",
    "save_checkpoint",
    "seed_everything",
]
