"""The task registry: what `cfg.task` selects.

A task has one name, spelled the same everywhere — the config's `task:`, the checkpoint's `meta.task`, the command
group (`imagexplore classify ...`) and the docs. Its `TaskSpec` says where its pieces live (imported only when
used, so the command line stays light): datasets, model builder, `Task` object, training entry point, typed
config sections, and the metric that picks the best checkpoint. Commands refuse a config or a checkpoint of
another task in one line naming both.

A new chapter adds its task with `register_task(TaskSpec(...))` in this module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagexplore.errors import CheckpointError, ConfigError


@dataclass(frozen=True)
class TaskSpec:
    name: str  # the one spelling: config task, checkpoint meta, CLI group
    description: str
    train: str  # "module:function" — train(cfg, run_dir, resume=, show_progress=) → summary
    build_datasets: str  # "module:function" — (cfg) → (train_set, val_set)
    build_model: str  # "module:function" — (cfg, num_classes, in_chans[, for_checkpoint=meta]) → model
    task_class: str  # "module:Class" — the engine `Task` of this task
    best_metric: str  # default `train.best_metric` (when the config leaves the engine's default)
    best_mode: str = "max"
    model_needs_meta: bool = (
        False  # build_model takes for_checkpoint= (rebuilds without initial-weight files)
    )
    # typed sections: config section name → "module:Dataclass"; parsed with the config machinery
    sections: dict[str, str] = field(default_factory=dict)

    def load(self, what: str) -> Any:
        """The object behind one of the "module:name" fields (imported now)."""
        module, _, name = getattr(self, what).partition(":")
        return getattr(importlib.import_module(module), name)

    def section(self, cfg, name: str):
        """cfg.<name> (a plain mapping in the config) parsed as this task's dataclass for it, defaults filled in;
        an unknown key or a bad value is one ConfigError naming `<name>.<key>`."""
        from imagexplore.config import from_dict

        value = getattr(cfg, name) if name in ("loss", "evaluation") else _dotted(cfg, name)
        if name not in self.sections:
            if value:
                raise ConfigError(
                    f"the {self.name} task has no '{name}' settings; remove them from the config"
                )
            return None
        module, _, cls = self.sections[name].partition(":")
        return from_dict(getattr(importlib.import_module(module), cls), dict(value or {}), prefix=f"{name}.")


def _dotted(cfg, path: str):
    for part in path.split("."):
        cfg = getattr(cfg, part)
    return cfg


_TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    if spec.name in _TASKS:
        raise ValueError(f"task {spec.name!r} is registered twice")
    _TASKS[spec.name] = spec
    return spec


def task_names() -> list[str]:
    return list(_TASKS)


def get_task(name: str) -> TaskSpec:
    if name not in _TASKS:
        raise ConfigError(f"unknown task {name!r}; tasks: {', '.join(_TASKS)}")
    return _TASKS[name]


def bind_config(cfg, command_task: str, source: str | Path | None = None):
    """The config as `command_task` will run it: a config that names no task takes the command's; one of another
    task is refused in one line naming both; the task's default best metric replaces the engine's default."""
    from imagexplore.config import TrainConfig

    spec = get_task(command_task)
    if not cfg.task:
        cfg.task = command_task
    elif cfg.task != command_task:
        other = get_task(cfg.task)
        where = f"config {source}" if source else "the config"
        raise ConfigError(
            f"{where} is for the {other.name} task (imagexplore {other.name} train), not {spec.name}"
        )
    if cfg.train.best_metric == TrainConfig.best_metric and spec.best_metric != TrainConfig.best_metric:
        cfg.train.best_metric, cfg.train.best_mode = spec.best_metric, spec.best_mode
    for name in ("loss", "evaluation"):
        spec.section(cfg, name)  # validated now, before any data is read
    return cfg


def checkpoint_task(meta: dict[str, Any]) -> str | None:
    """The task a checkpoint's meta records. Checkpoints written before the registry recorded no task for
    classification: class names without a task mean classify."""
    task = meta.get("task")
    if task is None and meta.get("classes"):
        return "classify"
    return task


def check_checkpoint_task(meta: dict[str, Any], command_task: str, path) -> None:
    found = checkpoint_task(meta)
    if found != command_task:
        if not found:
            raise CheckpointError(f"checkpoint {path} records no task; it is not a {command_task} checkpoint")
        hint = f" (use imagexplore {found} ...)" if found in _TASKS else ""
        raise CheckpointError(f"checkpoint {path} was trained by the {found} task, not {command_task}{hint}")


register_task(
    TaskSpec(
        name="classify",
        description="chapter 2: image classification (CFN)",
        train="imagexplore.classification.train:train",
        build_datasets="imagexplore.classification.train:build_datasets",
        build_model="imagexplore.classification.train:build_model",
        task_class="imagexplore.classification.task:ClassificationTask",
        best_metric="val/acc1",
    )
)
register_task(
    TaskSpec(
        name="segment",
        description="chapter 2: semantic segmentation (FCFN, FCN)",
        train="imagexplore.segmentation.train:train",
        build_datasets="imagexplore.segmentation.train:build_datasets",
        build_model="imagexplore.segmentation.train:build_model",
        task_class="imagexplore.segmentation.task:SegmentationTask",
        best_metric="val/miou",
    )
)
register_task(
    TaskSpec(
        name="edges",
        description="chapter 3: edge detection (HED, RDS, FCFN edges)",
        train="imagexplore.edges.train:train",
        build_datasets="imagexplore.edges.train:build_datasets",
        build_model="imagexplore.edges.train:build_model",
        task_class="imagexplore.edges.task:EdgeTask",
        best_metric="val/ods",
        model_needs_meta=True,
        sections={
            "loss": "imagexplore.edges.losses:EdgeLossConfig",
            "evaluation": "imagexplore.edges.task:EdgeEvaluationConfig",
        },
    )
)
register_task(
    TaskSpec(
        name="match",
        description="chapter 5: image-text matching (RRF-Net, bi-rank loss)",
        train="imagexplore.matching.train:train",
        build_datasets="imagexplore.matching.train:build_datasets",
        build_model="imagexplore.matching.train:build_model",
        task_class="imagexplore.matching.task:MatchingTask",
        best_metric="val/rsum",
        model_needs_meta=True,
        sections={
            "loss": "imagexplore.matching.task:MatchLossConfig",
            "evaluation": "imagexplore.matching.task:MatchEvaluationConfig",
        },
    )
)
register_task(
    TaskSpec(
        name="synth",
        description="chapter 8: image synthesis (pix2pix, instantiation network, SwapGAN)",
        train="imagexplore.synthesis.train:train",
        build_datasets="imagexplore.synthesis.train:build_datasets",
        build_model="imagexplore.synthesis.train:build_model",
        task_class="imagexplore.synthesis.task:SynthTask",
        best_metric="val/ssim",
        model_needs_meta=True,
        sections={
            "loss": "imagexplore.synthesis.task:SynthLossConfig",
            "evaluation": "imagexplore.synthesis.task:SynthEvaluationConfig",
        },
    )
)
