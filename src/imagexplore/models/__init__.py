"""Model registry, timm-style: `create("name", num_classes=10)`, `list_models()`, `@register_model`.

Each task module registers its architectures on import; `create` imports the task modules lazily so that the
registry is complete whichever module the caller imported first.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch.nn as nn

from imagexplore.errors import ConfigError

# Modules whose import registers models. Later chapters append theirs here.
_MODEL_MODULES = (
    "imagexplore.models.small",
    "imagexplore.classification.cfn",
    "imagexplore.segmentation.models",
    "imagexplore.edges.models",
)


@dataclass
class ModelEntry:
    name: str
    fn: Callable[..., nn.Module]
    task: str
    description: str
    pretrained_tags: list[str] = field(default_factory=list)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, *, task: str = "classify", pretrained=()):
    """Decorator registering a model constructor under its function name."""

    def wrap(f):
        doc = (f.__doc__ or "").strip().splitlines()
        _REGISTRY[f.__name__] = ModelEntry(f.__name__, f, task, doc[0] if doc else "", list(pretrained))
        return f

    return wrap(fn) if fn is not None else wrap


def _load_all() -> None:
    for mod in _MODEL_MODULES:
        importlib.import_module(mod)


def list_models(pattern: str = "*", task: str | None = None) -> list[str]:
    _load_all()
    return sorted(
        n for n, e in _REGISTRY.items() if fnmatch.fnmatch(n, pattern) and (task is None or e.task == task)
    )


def model_entry(name: str) -> ModelEntry:
    _load_all()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model '{name}'; registered models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create(name: str, **kwargs) -> nn.Module:
    """Build a registered model; the model remembers its registry name in `model.registry_name`."""
    entry = model_entry(name)
    try:
        model = entry.fn(**kwargs)
    except TypeError as e:
        raise ConfigError(f"model '{name}' does not accept these arguments {sorted(kwargs)}: {e}") from None
    model.registry_name = name
    return model
