"""`imagexplore classify train`: build data, model and task from a config and run the shared engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imagexplore import models
from imagexplore.classification.task import ClassificationTask, Normalize
from imagexplore.config import ExperimentConfig
from imagexplore.data.classification import build_classification_dataset
from imagexplore.engine import Trainer
from imagexplore.errors import ConfigError


def build_datasets(cfg: ExperimentConfig):
    d = cfg.data
    common = dict(
        root=d.root, image_size=d.image_size, seed=d.seed, on_bad_file=d.on_bad_file, options=d.options
    )
    train_set = build_classification_dataset(d.name, "train", num_samples=d.train_samples, **common)
    val_set = build_classification_dataset(d.name, d.val_split, num_samples=d.val_samples, **common)
    if (d.mean is None) != (d.std is None):
        raise ConfigError("set both data.mean and data.std, or neither")
    if d.mean is not None:
        if len(d.mean) != train_set.in_chans or len(d.std) != train_set.in_chans:
            raise ConfigError(f"data.mean/std need {train_set.in_chans} values (one per channel)")
        train_set.transform = val_set.transform = Normalize(d.mean, d.std)
    return train_set, val_set


def build_model(cfg: ExperimentConfig, num_classes: int, in_chans: int):
    m = cfg.model
    return models.create(
        m.name, num_classes=m.num_classes or num_classes, in_chans=m.in_chans or in_chans, **m.kwargs
    )


def train(
    cfg: ExperimentConfig, run_dir: str | Path, resume: bool | str = False, show_progress=None
) -> dict[str, Any]:
    train_set, val_set = build_datasets(cfg)
    model = build_model(cfg, train_set.num_classes, train_set.in_chans)
    meta = {
        "dataset": cfg.data.name,
        "image_size": cfg.data.image_size,
        "in_chans": train_set.in_chans,
        "mean": cfg.data.mean,
        "std": cfg.data.std,
    }
    task = ClassificationTask(train_set.classes, meta)
    trainer = Trainer(cfg, model, task, train_set, val_set, run_dir, show_progress=show_progress)
    return trainer.fit(resume=resume)
