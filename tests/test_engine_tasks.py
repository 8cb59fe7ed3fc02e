"""The task registry: one spelling per task everywhere, every spec's pieces importable, checkpoints record it."""

import argparse

import yaml

from imagexplore import models
from imagexplore.cli import build_parser
from imagexplore.config import builtin_config_dir
from imagexplore.engine import Task
from imagexplore.tasks import get_task, task_names


def test_every_spec_points_at_real_pieces():
    for name in task_names():
        spec = get_task(name)
        for what in ("train", "build_datasets", "build_model"):
            assert callable(spec.load(what)), (name, what)
        assert issubclass(spec.load("task_class"), Task)
        for section in spec.sections:
            assert spec.section(_cfg(name), section) is not None


def _cfg(task):
    from imagexplore.config import load_config

    return load_config(None, [f"task={task}"])


def test_one_spelling_everywhere():
    names = set(task_names())
    groups = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert names <= set(groups)  # each task is a command group of the same name
    assert {models.model_entry(m).task for m in models.list_models()} <= names
    for path in builtin_config_dir().glob("*/*.yaml"):
        task = yaml.safe_load(path.read_text()).get("task")
        if path.parent.name in names:  # retrieval configs are index experiments, not trained tasks
            assert task == path.parent.name, path


def test_checkpoints_record_their_task(tmp_path):
    from helpers import tiny_classifier_cfg
    from imagexplore.classification.train import train
    from imagexplore.engine import load_checkpoint

    train(
        tiny_classifier_cfg("model.kwargs={width: 4}", "data.train_samples=64", "data.val_samples=16"),
        tmp_path,
    )
    ck = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert ck["meta"]["task"] == "classify" and ck["config"]["task"] == "classify"
