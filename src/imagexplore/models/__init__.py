"""Model registry, timm-style: `create("name", num_classes=10)`, `list_models()`, `@register_model`.

Each task module registers its architectures on import; `create` imports the task modules lazily so that the
registry is complete whichever module the caller imported first.
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import re
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
    "imagexplore.matching.models",
    "imagexplore.matching.cyclematch",
    "imagexplore.matching.jmc",
    "imagexplore.synthesis.networks",
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
    """Decorator registering a model constructor under its function name; a name taken by another function is
    refused (`ConfigError`). Re-running the same definition (a module reloaded) replaces the entry."""

    def wrap(f):
        old = _REGISTRY.get(f.__name__)
        if old is not None and (old.fn.__module__, old.fn.__qualname__) != (f.__module__, f.__qualname__):
            raise ConfigError(
                f"model name '{f.__name__}' is already registered by {old.fn.__module__}.{old.fn.__qualname__}"
            )
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


_UNFIT_KEYWORD = re.compile(
    r"unexpected keyword argument '(\w+)'|multiple values for (?:keyword )?argument '(\w+)'"
)


def _arguments_do_not_fit(fn: Callable, kwargs: dict, err: TypeError) -> bool:
    """Whether `err` (raised by ``fn(**kwargs)``) means the arguments do not fit a signature, not a bug inside.

    Either ``fn``'s own signature does not take them, or ``fn`` forwards ``**kwargs`` and the call it forwards
    them to refused one of them by name: such an error is raised in the calling frame (the callee never ran), so
    the innermost frame is a factory, not a constructor body (``__init__``).
    """
    sig = inspect.signature(fn)
    try:
        sig.bind(**kwargs)
    except TypeError:
        return True
    if not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return False
    m = _UNFIT_KEYWORD.search(str(err))
    if m is None or (m.group(1) or m.group(2)) not in kwargs:
        return False
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_name != "__init__"


def create(name: str, **kwargs) -> nn.Module:
    """Build a registered model; the model remembers its registry name in `model.registry_name`.

    Arguments that do not fit the constructor give a `ConfigError`; a `TypeError` raised inside it propagates.
    """
    entry = model_entry(name)
    try:
        model = entry.fn(**kwargs)
    except TypeError as e:
        if not _arguments_do_not_fit(entry.fn, kwargs, e):
            raise
        raise ConfigError(f"model '{name}' does not accept these arguments {sorted(kwargs)}: {e}") from None
    model.registry_name = name
    return model


def create_from_config(cfg, num_classes: int, in_chans: int = 3) -> nn.Module:
    """The model of an experiment config's `model:` section: its registry name and kwargs, with num_classes and
    in_chans from the config when set, else from the data (the classification and segmentation builders)."""
    m = cfg.model
    return create(
        m.name, num_classes=m.num_classes or num_classes, in_chans=m.in_chans or in_chans, **m.kwargs
    )
