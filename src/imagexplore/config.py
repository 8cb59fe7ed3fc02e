"""Experiment configuration: typed dataclasses, YAML files and `--set a.b=c` overrides.

A config file is YAML whose keys mirror the dataclasses below. Unknown keys and ill-typed values are rejected
with one line that lists what is valid, so a typo never silently trains the wrong thing. The resolved config
(file + overrides + defaults) is written to every run directory as `config.yaml`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from imagexplore.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """The allowed range of a numeric config field, declared once on its annotation and checked at load time:
    `batch_size: Annotated[int, Range(1)]`; `lo_open`/`hi_open` make a bound exclusive. Applies to each element
    of a list field. Every float field must also be finite (no NaN/inf), ranged or not."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def check(self, value, key: str) -> None:
        if isinstance(value, str):  # a Literal arm of the field (e.g. beta: 'auto') has no range
            return
        too_low = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        too_high = self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi)
        if too_low or too_high:
            raise ConfigError(f"config key '{key}' must be {self.describe()}; got {value!r}")

    def describe(self) -> str:
        def num(x) -> str:
            return str(int(x)) if float(x).is_integer() else f"{x:g}"

        lo = None if self.lo is None else f"{'>' if self.lo_open else '≥'} {num(self.lo)}"
        hi = None if self.hi is None else f"{'<' if self.hi_open else '≤'} {num(self.hi)}"
        return " and ".join(b for b in (lo, hi) if b)


# The ranges used most, by name.
Positive = Range(0, lo_open=True)  # > 0
NonNegative = Range(0)  # ≥ 0
AtLeastOne = Range(1)  # ≥ 1 (counts, sizes, steps)
Fraction = Range(0, 1)  # [0, 1]
OpenFraction = Range(0, 1, hi_open=True)  # [0, 1): momentum, Adam's betas


@dataclass
class DataConfig:
    name: str = (
        "shapes"  # a name of imagexplore.data.classification.CLASSIFICATION_DATASETS (or a task's own)
    )
    root: str | None = None  # local dataset path; None = search the default places
    image_size: Annotated[int | None, AtLeastOne] = (
        32  # canvas size for shapes, resize for image folders; None = native size
    )
    train_samples: Annotated[int | None, AtLeastOne] = (
        2000  # truncate/generate this many training samples (None = all)
    )
    val_samples: Annotated[int | None, AtLeastOne] = 500
    val_split: str = "val"
    batch_size: Annotated[int, AtLeastOne] = 64
    eval_batch_size: Annotated[int | None, AtLeastOne] = None  # None = 2 × batch_size
    workers: Annotated[int, NonNegative] = 0
    seed: Annotated[int, Range(0, 2**32 - 1)] = 0
    on_bad_file: Literal["fail", "skip"] = "fail"
    options: dict[str, Any] = field(default_factory=dict)  # extra arguments of the dataset class
    mean: list[float] | None = None  # per-channel normalisation; None = leave images in [0, 1]
    std: Annotated[list[float] | None, Positive] = None
    preprocess: Literal["none", "gcn_zca"] = "none"  # gcn_zca: CIFAR's GCN + ZCA whitening, fit on train
    gcn_scale: Annotated[float, Positive] = 55.0
    zca_bias: Annotated[float, NonNegative] = (
        0.1  # added to the covariance eigenvalues (pylearn2's filter_bias)
    )
    zca_max_samples: Annotated[int | None, AtLeastOne] = (
        None  # fit the whitening on at most this many training images
    )
    augment: bool = False  # standard CIFAR augmentation: pad-4 random crop + horizontal flip
    crop_size: Annotated[int | None, AtLeastOne] = (
        None  # random crop + mirror of this size in training, centre crop in evaluation
    )


@dataclass
class ModelConfig:
    name: str = "simple_cnn"
    num_classes: Annotated[int | None, AtLeastOne] = None  # None = the dataset's
    in_chans: Annotated[int | None, AtLeastOne] = None  # None = the dataset's
    kwargs: dict[str, Any] = field(default_factory=dict)  # extra constructor arguments


@dataclass
class ParamGroupConfig:
    """Learning-rate / weight-decay multipliers for the parameters whose name matches `pattern` (a regex).

    The first matching rule wins; unmatched parameters keep ×1. E.g. CFN's fusion lr ×0.1 with bias ×0.2:
    `{pattern: 'fusion\\.weight', lr_mult: 0.1}`, `{pattern: 'fusion\\.bias', lr_mult: 0.2}`.
    """

    pattern: str = ".*"
    lr_mult: Annotated[float, NonNegative] = 1.0
    wd_mult: Annotated[float, NonNegative] = 1.0


@dataclass
class OptimConfig:
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: Annotated[float, Positive] = 0.05
    momentum: Annotated[float, OpenFraction] = 0.9
    nesterov: bool = False
    weight_decay: Annotated[float, NonNegative] = 1e-4
    betas: Annotated[list[float], OpenFraction] = field(default_factory=lambda: [0.9, 0.999])
    no_decay_norm_bias: bool = False  # exclude norm layers and biases from weight decay
    param_groups: list[ParamGroupConfig] = field(default_factory=list)


@dataclass
class ScheduleConfig:
    """Learning-rate schedule, evaluated per optimizer step (iteration) so epoch and iteration budgets agree."""

    name: Literal["constant", "step", "multistep", "cosine", "linear"] = "cosine"
    step_size: Annotated[int, NonNegative] = (
        0  # 'step': decay every step_size iterations (0 = a third of training)
    )
    milestones: Annotated[list[int], NonNegative] = field(
        default_factory=list
    )  # 'multistep': iterations at which lr *= gamma
    gamma: Annotated[float, Positive] = 0.1
    min_lr_ratio: Annotated[float, Fraction] = 0.0  # 'cosine', 'linear': final lr = lr × min_lr_ratio
    # 'linear' (pix2pix / CycleGAN): constant for this fraction of training, then linear down to min_lr_ratio
    decay_start: Annotated[float, Fraction] = 0.5
    warmup_iters: Annotated[int, NonNegative] = 0
    warmup_factor: Annotated[float, Range(0, 1, lo_open=True)] = (
        0.1  # lr starts at lr × warmup_factor and rises linearly
    )
    unit: Literal["iterations", "epochs"] = "iterations"  # unit of step_size / milestones / warmup_iters


@dataclass
class NamedOptimizerConfig:
    """One of several optimizers (`optimizers: {D: {...}, G: {...}}`), stepped in the order they are listed."""

    module: str = ""  # the model's child it trains (its attribute name, e.g. 'G'); '' = the whole model
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig | None = None  # None = the top-level `schedule`
    steps: Annotated[int, AtLeastOne] = (
        1  # optimizer steps per iteration, each on the current batch (critic: 5)
    )


@dataclass
class EMAConfig:
    """An exponential moving average of one network's weights (e.g. a GAN's generator)."""

    module: str = ""  # the model's child averaged ('' = the whole model)
    decay: Annotated[float, Fraction] = 0.999
    evaluate: bool = True  # evaluate and export with the averaged weights


@dataclass
class StageConfig:
    """A training stage (JMC: matching, then the classifier, then everything): from `start` until the next stage,
    parameters matching `freeze` are not trained and only `optimizers` step."""

    name: str = ""
    start: Annotated[int, NonNegative] = 0  # first iteration (or epoch, with unit) of the stage
    unit: Literal["iterations", "epochs"] = "iterations"
    freeze: list[str] = field(default_factory=list)  # regexes of parameter names
    optimizers: list[str] | None = None  # None = all
    # the task's loss terms reweighted in this stage (JMC: {match: 0, cls: 1}); a term left out keeps its weight
    loss_weights: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainConfig:
    epochs: Annotated[int | None, AtLeastOne] = 5  # training length in epochs, or …
    iterations: Annotated[int | None, AtLeastOne] = (
        None  # … in optimizer steps (the thesis counts iterations); this wins if set
    )
    accumulate: Annotated[int, AtLeastOne] = 1  # gradient accumulation: micro-batches per optimizer step
    grad_clip: Annotated[float | None, Positive] = None  # max global gradient norm
    amp: bool = True  # bf16 autocast on CUDA (no effect on CPU)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: Annotated[int, Range(0, 2**32 - 1)] = 0
    eval_every: Annotated[int, NonNegative] = 1  # evaluate every N epochs (0 = only at the end) …
    eval_every_iters: Annotated[int | None, AtLeastOne] = None  # … or every N iterations
    # evaluate the starting weights once before the first step (new runs only, not on resume): best.pt can
    # then be them (iteration 0), e.g. when fine-tuning a pretrained model does not beat it
    eval_at_start: bool = False
    checkpoint_every_iters: Annotated[int | None, AtLeastOne] = None  # extra mid-epoch checkpoints (last.pt)
    best_metric: str = "val/acc1"
    best_mode: Literal["max", "min"] = "max"
    log_every: Annotated[int, AtLeastOne] = 20  # iterations between training-metric log lines
    tensorboard: bool = True
    channels_last: bool = False
    compile: bool = False  # torch.compile the training forward/backward (CUDA; checkpoints stay plain)
    deterministic: bool = (
        True  # deterministic algorithms on CPU (exact resume); cudnn.benchmark on CUDA if False
    )
    ema: EMAConfig | None = None  # an averaged copy of a network, checkpointed, used for evaluation
    freeze: list[str] = field(default_factory=list)  # regexes of parameter names never trained
    stages: list[StageConfig] = field(default_factory=list)  # staged training (freezing/optimizers by stage)


@dataclass
class ExperimentConfig:
    task: str = ""  # the task (imagexplore.tasks); empty: the command's own
    name: str = "experiment"
    description: str = ""
    published_target: str = ""  # the thesis' number for this config, shown in docs/logs, never as ours
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    # several networks: one section per named optimizer (replaces `optim`, which then stays unused)
    optimizers: dict[str, NamedOptimizerConfig] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    # task-specific settings, validated by the task that reads them (edges: beta, reduction, side/fuse weights)
    loss: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)  # e.g. edges: thresholds, nms, max_dist


# --------------------------------------------------------------------------------------------------------------
# Typed conversion


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _type_name(typing.get_args(tp)[0])
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in typing.get_args(tp))}]"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML-parsed value to the annotated type, or raise ConfigError naming the key."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Annotated:  # a ranged field: coerce to the inner type, then check the range (None passes)
        inner, *extras = args
        value = _coerce(value, inner, key)
        for rng in (e for e in extras if isinstance(e, Range)):
            for i, v in enumerate(value if isinstance(value, list) else [value]):
                if v is not None:
                    rng.check(v, f"{key}[{i}]" if isinstance(value, list) else key)
        return value

    def bad() -> ConfigError:
        # made when raised, not kept in a local: an exception held by the frame it is raised from is a reference
        # cycle (exception -> traceback -> frame -> exception) that keeps every caller's frame, and their
        # arrays, alive until the next garbage collection - the unions of a config's fields raise and catch here
        return ConfigError(f"config key '{key}' expects {_type_name(tp)}, got {value!r}")

    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        arms = [a for a in args if a is not type(None)]
        if len(arms) == 1:  # `X | None`: X's own message is the precise one (a key inside it, a range, ...)
            return _coerce(value, arms[0], key)
        for a in arms:
            try:
                return _coerce(value, a, key)
            except ConfigError:
                pass
        raise bad()
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"config key '{key}' must be one of {', '.join(map(str, args))}; got {value!r}")
    if origin is list:
        if not isinstance(value, list | tuple):
            raise bad()
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]: a list in YAML/JSON
        if not isinstance(value, list | tuple):
            raise bad()
        return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise bad()
        return {str(k): _coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise bad()
        return from_dict(tp, value, prefix=key + ".")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if tp is int:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad()
    if tp is float:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, int | float):
            out = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                out = float(value)
            except ValueError:
                raise bad() from None
        else:
            raise bad()
        if not math.isfinite(out):
            raise ConfigError(f"config key '{key}' must be a finite number; got {value!r}")
        return out
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise bad()
    return value


def _fields(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def from_dict(cls, data: dict[str, Any], prefix: str = ""):
    """Build dataclass `cls` from a (nested) dict; unknown keys raise ConfigError listing the valid ones."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config section '{prefix.rstrip('.') or '<root>'}' must be a mapping, got {data!r}"
        )
    types_ = _fields(cls)
    unknown = [k for k in data if k not in types_]
    if unknown:
        where = f" under '{prefix.rstrip('.')}'" if prefix else ""
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}'; valid keys{where}: {', '.join(types_)}"
        )
    kwargs = {k: _coerce(v, types_[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def check_fields(obj, prefix: str = "") -> None:
    """Check a dataclass built in code (not read from a file) against its annotations — types and `Range`s —
    so the API refuses what a config file would, with the same one-line message."""
    for name, tp in _fields(type(obj)).items():
        _coerce(getattr(obj, name), tp, prefix + name)


def to_dict(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


# --------------------------------------------------------------------------------------------------------------
# Files and overrides


def parse_override(text: str) -> tuple[list[str], Any]:
    """'optim.lr=0.1' → (['optim', 'lr'], 0.1); the value is parsed as YAML (numbers, lists, null, ...)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.sub=value (e.g. optim.lr=0.1)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def _section_class(tp: Any):
    """The dataclass a key's value is (Annotated, Optional and dict[str, Dataclass] see through), else None."""
    if typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        tp = inner[0] if len(inner) == 1 else tp
    if typing.get_origin(tp) is dict and dataclasses.is_dataclass(typing.get_args(tp)[1]):
        return _AnyKeyOf(typing.get_args(tp)[1])
    return tp if dataclasses.is_dataclass(tp) else None


@dataclass(frozen=True)
class _AnyKeyOf:
    """A dict of sections (`optimizers: {G: ..., D: ...}`): any key, each value of `cls`."""

    cls: Any


def apply_overrides(data: dict[str, Any], overrides: list[str], cls=None) -> dict[str, Any]:
    """Apply `a.b=c` overrides to a raw config dict. With `cls`, keys are checked as they are set."""
    for text in overrides or []:
        path, value = parse_override(text)
        node, node_cls = data, cls
        for i, part in enumerate(path):
            item = _LIST_ITEM.fullmatch(part)  # `stages[1]`: an entry of a list of sections
            part, at = (item.group(1), int(item.group(2))) if item else (part, None)
            if isinstance(node_cls, _AnyKeyOf):  # a free key (an optimizer's name); its value is a section
                node_cls = node_cls.cls
            elif node_cls is not None:
                types_ = _fields(node_cls)
                if part not in types_:
                    where = ".".join(path[:i]) or "<root>"
                    raise ConfigError(
                        f"unknown config key '{'.'.join([*path[:i], part])}'; valid keys under '{where}': "
                        f"{', '.join(types_)}"
                    )
                tp = types_[part]
                if at is not None:
                    args = typing.get_args(tp)
                    tp = args[0] if typing.get_origin(tp) is list and args else None
                node_cls = _section_class(tp) if tp is not None else None
            if at is not None:
                entries = node.get(part)
                if not isinstance(entries, list) or not 0 <= at < len(entries):
                    have = len(entries) if isinstance(entries, list) else 0
                    raise ConfigError(
                        f"override {text!r}: '{'.'.join([*path[:i], part])}' has {have} entries; index {at} is not one"
                    )
                if i == len(path) - 1:
                    entries[at] = value
                    continue
                node = entries[at]
                continue
            if i == len(path) - 1:
                node[part] = value
            else:
                if not isinstance(node.get(part), dict):
                    node[part] = {}
                node = node[part]
    return data


_LIST_ITEM = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\[(\d+)\]")


def read_yaml_mapping(path: Path, what: str, expected: str) -> dict:
    """A YAML file that must hold a mapping (empty file → {}); errors name the file and what was expected."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold {expected}")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, cls=ExperimentConfig):
    """Load a YAML config (or the defaults when path is None), apply overrides, and validate it."""
    data: dict[str, Any] = {}
    if path is not None:
        p = resolve_config_path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        data = read_yaml_mapping(p, "config file", "a mapping of sections (data, model, optim, ...)")
    data = apply_overrides(data, overrides or [], cls)
    return from_dict(cls, data)


def save_config(cfg, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def builtin_config_dir() -> Path:
    """The configs shipped inside the package (the repository's top-level `configs/` points here)."""
    return Path(__file__).parent / "configs"


def resolve_config_path(path: str | Path, task: str | None = None) -> Path:
    """A config path as given, or relative to the shipped configs ('classify/x.yaml' or 'configs/classify/x.yaml'),
    or a shipped config's bare name ('shapes_rrf_quick'): looked for in `task`'s folder first, else in every
    task folder (a name two folders hold is refused, naming both)."""
    p = Path(path)
    if p.is_file():
        return p
    rel = Path(*p.parts[1:]) if p.parts and p.parts[0] == "configs" else p
    shipped = builtin_config_dir() / rel
    if shipped.is_file():
        return shipped
    if len(p.parts) == 1:
        stem = p.name.removesuffix(".yaml")
        if task and (builtin_config_dir() / task / f"{stem}.yaml").is_file():
            return builtin_config_dir() / task / f"{stem}.yaml"
        found = sorted(builtin_config_dir().glob(f"*/{stem}.yaml"))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = " or ".join(f"{f.parent.name}/{f.name}" for f in found)
            raise ConfigError(f"config name {stem!r} is ambiguous: give {names}")
    return p
