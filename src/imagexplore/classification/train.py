"""`imagexplore classify train`: build data, model and task from a config and run the shared engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imagexplore import models
from imagexplore.classification.preprocess import (
    GCNZCA,
    CenterCrop,
    MeanStd,
    RandomCropFlip,
    StandardAugment,
    from_meta,
)
from imagexplore.classification.task import ClassificationTask
from imagexplore.config import ExperimentConfig
from imagexplore.data.classification import build_classification_dataset
from imagexplore.engine import Trainer, load_checkpoint, seed_everything
from imagexplore.engine.trainer import resume_path
from imagexplore.errors import ConfigError
from imagexplore.tasks import bind_config


def build_datasets(cfg: ExperimentConfig):
    d = cfg.data
    common = dict(
        root=d.root, image_size=d.image_size, seed=d.seed, on_bad_file=d.on_bad_file, options=d.options
    )
    train_set = build_classification_dataset(d.name, "train", num_samples=d.train_samples, **common)
    val_set = build_classification_dataset(d.name, d.val_split, num_samples=d.val_samples, **common)
    if d.augment and d.crop_size:
        raise ConfigError(
            "data.augment (pad-and-crop) and data.crop_size (crop from larger images) exclude each other"
        )
    if d.augment:
        train_set.transform = StandardAugment(pad=4)
    if d.crop_size:
        train_set.transform = RandomCropFlip(d.crop_size)
        val_set.transform = CenterCrop(d.crop_size)
    return train_set, val_set


def build_input_transform(cfg: ExperimentConfig, train_set, resume_from: Path | None = None):
    """Batch preprocessing: GCN+ZCA fitted on the training images (or restored from the checkpoint being
    resumed, so a resumed run whitens exactly as before), or per-channel mean/std, or nothing."""
    d = cfg.data
    if (d.mean is None) != (d.std is None):
        raise ConfigError("set both data.mean and data.std, or neither")
    if d.preprocess == "gcn_zca":
        if d.mean is not None:
            raise ConfigError("data.preprocess=gcn_zca replaces data.mean/std: set one or the other")
        if resume_from is not None and resume_from.is_file():
            stored = load_checkpoint(resume_from).get("meta", {}).get("preprocess")
            if stored and stored.get("kind") == "gcn_zca":
                return from_meta(stored)
        augment, train_set.transform = train_set.transform, None  # fit on the images as they are
        try:
            return GCNZCA.fit(train_set, scale=d.gcn_scale, bias=d.zca_bias, max_samples=d.zca_max_samples)
        finally:
            train_set.transform = augment
    if d.mean is not None:
        if len(d.mean) != train_set.in_chans or len(d.std) != train_set.in_chans:
            raise ConfigError(f"data.mean/std need {train_set.in_chans} values (one per channel)")
        return MeanStd(d.mean, d.std)
    return None


build_model = models.create_from_config  # (cfg, num_classes, in_chans) → the config's model


def train(
    cfg: ExperimentConfig, run_dir: str | Path, resume: bool | str = False, show_progress=None
) -> dict[str, Any]:
    bind_config(cfg, "classify")  # a config of another task is refused; the task's best metric by default
    resume_from = resume_path(run_dir, resume)  # checked before the data is built
    train_set, val_set = build_datasets(cfg)
    seed_everything(cfg.train.seed)  # before the model exists: its initial weights depend on the seed alone
    model = build_model(cfg, train_set.num_classes, train_set.in_chans)
    transform = build_input_transform(cfg, train_set, resume_from)
    meta = {
        "dataset": cfg.data.name,
        "image_size": cfg.data.image_size,
        "crop_size": cfg.data.crop_size,
        "in_chans": train_set.in_chans,
    }
    task = ClassificationTask(train_set.classes, meta, input_transform=transform)
    trainer = Trainer(cfg, model, task, train_set, val_set, run_dir, show_progress=show_progress)
    return trainer.fit(resume=resume_from or False)
