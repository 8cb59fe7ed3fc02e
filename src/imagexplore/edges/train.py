"""`imagexplore edges train`: data, model, loss and benchmark evaluator from a config, on the shared engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imagexplore import models
from imagexplore.config import ExperimentConfig
from imagexplore.edges.losses import EdgeLoss
from imagexplore.edges.task import EdgeTask, evaluation_options
from imagexplore.engine import Trainer, seed_everything
from imagexplore.tasks import bind_config


def train_split_of(cfg: ExperimentConfig) -> str:
    default = "trainval" if cfg.data.name in ("bsds500", "nyud") else "train"
    return cfg.data.options.get("train_split", default)


def build_datasets(cfg: ExperimentConfig):
    """(training set, validation set) of cfg.data. For bsds500 / nyud / masks without a folder for
    data.val_split, validation is carved out of train (data.options.val_fraction, by a stable hash of each
    image's name) and training leaves those images out: see `build_edge_dataset`."""
    from imagexplore.edges.data import build_edge_dataset

    d = cfg.data
    common = dict(root=d.root, image_size=d.image_size, seed=d.seed, options=d.options, val_split=d.val_split)
    train_set = build_edge_dataset(
        d.name, train_split_of(cfg), train=True, num_samples=d.train_samples, **common
    )
    val_set = build_edge_dataset(d.name, d.val_split, train=False, num_samples=d.val_samples, **common)
    return train_set, val_set


# model kwargs that only choose initial weights: a checkpoint carries the trained weights, so rebuilding it
# must not read those files again (they may be gone, or be large)
INIT_ONLY_KWARGS = ("pretrained", "vgg_weights", "pretrained_backbone")


def build_model(cfg: ExperimentConfig, num_classes: int = 1, in_chans: int = 3, *, for_checkpoint=None):
    """The edge model of cfg.model (its kwargs: backbone, pretrained tag or file, vgg_weights, ...).

    ``for_checkpoint``: the meta of a checkpoint about to be loaded — the architecture is rebuilt without the
    initial-weight kwargs and with the input normalisation the run trained with (``meta["input_space"]``)."""
    m = cfg.model
    kwargs = dict(m.kwargs)
    if for_checkpoint is not None:
        kwargs = {k: v for k, v in kwargs.items() if k not in INIT_ONLY_KWARGS}
        if for_checkpoint.get("input_space"):
            kwargs["input_space"] = for_checkpoint["input_space"]
    return models.create(m.name, in_chans=m.in_chans or in_chans, **kwargs)


def train(
    cfg: ExperimentConfig, run_dir: str | Path, resume: bool | str = False, show_progress=None
) -> dict[str, Any]:
    bind_config(cfg, "edges")  # a config of another task is refused; the task's best metric by default
    loss = EdgeLoss.from_options(cfg.loss)
    evaluation = evaluation_options(cfg.evaluation)
    train_set, val_set = build_datasets(cfg)
    if getattr(val_set, "max_dist", None) and "max_dist" not in cfg.evaluation:
        evaluation["max_dist"] = val_set.max_dist  # e.g. NYUD's 0.011
    seed_everything(cfg.train.seed)  # the initial weights follow train.seed: a rerun gives the same numbers
    model = build_model(cfg)
    meta = {
        "dataset": cfg.data.name,
        "classes": ["edge"],
        "in_chans": 3,
        "num_sides": model.num_sides,
        "input_space": getattr(model, "input_space", None),
    }
    task = EdgeTask(loss, evaluation, meta)
    from imagexplore.edges.data import collate

    trainer = Trainer(
        cfg, model, task, train_set, val_set, run_dir, collate_fn=collate, show_progress=show_progress
    )
    return trainer.fit(resume=resume)
