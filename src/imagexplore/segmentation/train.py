"""`imagexplore segment train`: build data, model and task from a config and run the shared engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imagexplore import models
from imagexplore.config import ExperimentConfig
from imagexplore.engine import Trainer, seed_everything
from imagexplore.errors import ConfigError
from imagexplore.segmentation.task import Normalize, SegmentationTask
from imagexplore.segmentation.voc import VOCSegmentation, pad_collate
from imagexplore.tasks import bind_config

SEGMENTATION_DATASETS = ("shapes", "voc")
# data.options keys of the VOC reader, by where they apply
_VOC_TRAIN_ONLY = {"crop_size", "scale_range", "flip"}
_VOC_EVAL_ONLY = {"eval_resize"}
_VOC_COMMON = {"sbd_root", "aug_root", "aug_list", "prefer_voc_masks"}


def build_segmentation_dataset(
    name: str,
    split: str,
    *,
    train: bool,
    root: str | None = None,
    image_size: int | None = None,
    num_samples: int | None = None,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
):
    """A segmentation dataset by name: ``shapes`` (ShapesSegmentation) or ``voc`` (VOCSegmentation, needs root).

    ``options`` are ``data.options``: ``train_split`` (the split trained on; shapes: train, voc: train_aug) is
    consumed by the caller; for shapes the rest go to the world (num_classes, max_objects, ...); for VOC see
    `VOCSegmentation` (augmentation keys apply to the training set only, ``eval_resize`` to evaluation only).
    """
    opts = {k: v for k, v in (options or {}).items() if k != "train_split"}
    if (mean is None) != (std is None):
        raise ConfigError("set both data.mean and data.std, or neither")
    transform = Normalize(mean, std) if mean is not None else None
    if name == "shapes":
        from imagexplore.data.shapes import ShapesSegmentation

        return ShapesSegmentation(
            num_samples or 1000, size=image_size or 64, seed=seed, split=split, transform=transform, **opts
        )
    if name == "voc":
        if not root:
            raise ConfigError(
                "dataset 'voc' needs data.root (the folder holding VOCdevkit), e.g. --set data.root=DIR"
            )
        valid = _VOC_TRAIN_ONLY | _VOC_EVAL_ONLY | _VOC_COMMON
        unknown = sorted(set(opts) - valid)
        if unknown:
            raise ConfigError(
                f"unknown VOC option(s) {unknown}; valid data.options: train_split, {', '.join(sorted(valid))}"
            )
        drop = _VOC_EVAL_ONLY if train else _VOC_TRAIN_ONLY
        kw = {k: v for k, v in opts.items() if k not in drop}
        return VOCSegmentation(root, split, num_samples=num_samples, transform=transform, **kw)
    raise ConfigError(
        f"unknown segmentation dataset '{name}'; choose one of {', '.join(SEGMENTATION_DATASETS)}"
    )


def train_split_of(cfg: ExperimentConfig) -> str:
    return cfg.data.options.get("train_split", "train_aug" if cfg.data.name == "voc" else "train")


def build_datasets(cfg: ExperimentConfig):
    d = cfg.data
    common = dict(
        root=d.root, image_size=d.image_size, seed=d.seed, options=d.options, mean=d.mean, std=d.std
    )
    train_set = build_segmentation_dataset(
        d.name, train_split_of(cfg), train=True, num_samples=d.train_samples, **common
    )
    val_set = build_segmentation_dataset(
        d.name, d.val_split, train=False, num_samples=d.val_samples, **common
    )
    return train_set, val_set


build_model = models.create_from_config  # (cfg, num_classes, in_chans) → the config's model


def train(
    cfg: ExperimentConfig, run_dir: str | Path, resume: bool | str = False, show_progress=None
) -> dict[str, Any]:
    bind_config(cfg, "segment")  # a config of another task is refused; the task's best metric by default
    train_set, val_set = build_datasets(cfg)
    num_classes = cfg.model.num_classes or train_set.num_classes
    # the model's initial weights follow train.seed, so a rerun gives the same numbers
    seed_everything(cfg.train.seed)
    model = build_model(cfg, num_classes, train_set.in_chans)
    meta = {
        "dataset": cfg.data.name,
        "image_size": cfg.data.image_size,
        "in_chans": train_set.in_chans,
        "mean": cfg.data.mean,
        "std": cfg.data.std,
    }
    classes = list(train_set.classes)[:num_classes]
    classes += [f"class_{i}" for i in range(len(classes), num_classes)]
    task = SegmentationTask(classes, train_set.ignore_index, meta)
    trainer = Trainer(
        cfg, model, task, train_set, val_set, run_dir, collate_fn=pad_collate, show_progress=show_progress
    )
    return trainer.fit(resume=resume)
