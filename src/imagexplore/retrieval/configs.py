"""Index configs as users give them, and the experiment configs of `retrieve eval`.

`resolve_config` makes an `IndexConfig` from an instance, a dict of its fields or a YAML file. Experiment configs
(``configs/retrieval/*.yaml``, also found by bundled name) hold ``dataset``, ``backbone``, ``patch_size``,
``patches``, ``target`` (the thesis' published number, printed as such beside ours) and ``index``
(`IndexConfig` fields); a plain YAML of `IndexConfig` fields (what `retrieve build --config` takes) works too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from imagexplore.errors import ConfigError
from imagexplore.retrieval.index import IndexConfig

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "retrieval"
_EXPERIMENT_KEYS = {"dataset", "backbone", "weights", "patch_size", "patches", "target", "index", "note"}
# Default feature types per mode: 1-D indexes the head feature; 2-D pairs the mid- and high-level features.
DEFAULT_TYPES = {"1d": ("high",), "2d": ("mid", "high")}

ConfigSource = IndexConfig | Mapping | str | os.PathLike | None


def resolve_config(
    config: ConfigSource = None, *, mode: str | None = None, k: int | str | None = None
) -> IndexConfig:
    """An `IndexConfig` from an instance, a dict of its fields or a YAML file; ``mode``/``k`` override it.

    Without ``types`` the feature types follow the mode (`DEFAULT_TYPES`), so ``{"mode": "2d"}`` is enough.
    """
    if isinstance(config, IndexConfig):
        fields = config.to_json()
    elif isinstance(config, Mapping):
        fields = dict(config)
    elif config is None:
        fields = {}
    else:
        fields = read_index_fields(Path(config))
    if mode is not None:
        if "types" in fields and fields.get("mode") != mode:
            fields.pop("types")  # the config's types were chosen for its own mode
        fields["mode"] = mode
    if k is not None:
        fields["k"] = k
    fields.setdefault("mode", "1d")
    if "types" not in fields:
        if fields["mode"] not in DEFAULT_TYPES:
            raise ConfigError(f"index mode must be one of {tuple(DEFAULT_TYPES)}, not {fields['mode']!r}")
        fields["types"] = DEFAULT_TYPES[fields["mode"]]
    return IndexConfig.from_json(fields)


def read_index_fields(path: Path) -> dict:
    """IndexConfig fields from a YAML file: a plain one, or the ``index`` section of an experiment config
    (``configs/retrieval/*.yaml``, also found by bundled name, e.g. ``holidays_multi_deepindex``)."""
    return dict(read_experiment(path)["index"])


def read_experiment(path: str | Path | None) -> dict:
    """An experiment config: ``index`` (IndexConfig fields) plus dataset/backbone/patch_size/patches/target."""
    if path is None:
        return {"index": {}}
    from imagexplore.config import read_yaml_mapping

    path = Path(path)
    if not path.is_file():  # a bundled config by name: holidays_multi_deepindex, shapes_quick, ...
        bundled = CONFIG_DIR / f"{path.name.removesuffix('.yaml')}.yaml"
        if not bundled.is_file():
            known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
            raise ConfigError(f"retrieval config {path} not found (bundled configs: {', '.join(known)})")
        path = bundled
    data = read_yaml_mapping(path, "retrieval config", "a mapping (experiment keys or IndexConfig fields)")
    if "index" not in data:  # a plain IndexConfig file, as `retrieve build --config` takes
        return {"index": data}
    if not isinstance(data["index"], dict):
        raise ConfigError(
            f"'index' in {path} must be a mapping of IndexConfig fields, e.g. 'index: {{k: 1024}}'"
        )
    unknown = sorted(set(data) - _EXPERIMENT_KEYS)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {path}: allowed are {sorted(_EXPERIMENT_KEYS)}")
    return data
