import pytest
import yaml

from imagexplore.config import ExperimentConfig, load_config, save_config, to_dict
from imagexplore.errors import ConfigError


def test_defaults_and_typed_overrides():
    cfg = load_config(
        None,
        [
            "optim.lr=0.1",
            "train.epochs=3",
            "data.mean=[0.5, 0.5, 0.5]",
            "train.amp=false",
            "train.iterations=null",
            "optim.weight_decay=1e-4",
            "model.kwargs={width: 4}",
        ],
    )
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.optim.lr == 0.1 and isinstance(cfg.optim.lr, float)
    assert cfg.train.epochs == 3 and cfg.train.amp is False and cfg.train.iterations is None
    assert cfg.data.mean == [0.5, 0.5, 0.5]
    assert cfg.optim.weight_decay == pytest.approx(1e-4)
    assert cfg.model.kwargs == {"width": 4}


def test_int_given_to_float_and_nested_lists():
    cfg = load_config(None, ["optim.lr=1", "optim.param_groups=[{pattern: fusion, lr_mult: 0.1}]"])
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.param_groups[0].pattern == "fusion" and cfg.optim.param_groups[0].lr_mult == 0.1


def test_unknown_key_lists_valid_ones():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["optim.lrr=0.1"])
    msg = str(e.value)
    assert "optim.lrr" in msg and "lr" in msg and "momentum" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match="unknown config key 'trian'"):
        load_config(None, ["trian.epochs=1"])


def test_bad_values_are_one_line_errors():
    with pytest.raises(ConfigError, match="'train.epochs' expects"):
        load_config(None, ["train.epochs=many"])
    with pytest.raises(ConfigError, match="must be one of sgd, adam, adamw"):
        load_config(None, ["optim.name=rmsprop"])
    with pytest.raises(ConfigError, match="'train.amp' expects bool"):
        load_config(None, ["train.amp=3"])
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(None, ["optim.lr"])


def test_yaml_file_roundtrip_and_errors(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: t\noptim:\n  lr: 0.2\nschedule:\n  name: multistep\n  milestones: [10, 20]\n")
    cfg = load_config(p, ["optim.lr=0.3"])
    assert cfg.name == "t" and cfg.optim.lr == 0.3 and cfg.schedule.milestones == [10, 20]
    out = tmp_path / "resolved.yaml"
    save_config(cfg, out)
    assert load_config(out) == cfg
    assert yaml.safe_load(out.read_text()) == to_dict(cfg)
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  nesterov: maybe-not\n")
    with pytest.raises(ConfigError, match="optim.nesterov"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(tmp_path / "list.yaml")


def test_ranges_are_declared_once_and_checked_on_load():
    """Range on a field's annotation: checked for scalars, list elements and overrides; None passes; NaN never."""
    from dataclasses import dataclass, field
    from typing import Annotated

    from imagexplore.config import AtLeastOne, Positive, Range, from_dict

    @dataclass
    class Section:
        size: Annotated[int | None, AtLeastOne] = None
        rate: Annotated[float, Positive] = 1.0
        steps: Annotated[list[int], Range(0, 10)] = field(default_factory=list)
        free: float = 0.0

    assert from_dict(Section, {"size": None, "rate": 0.5, "steps": [0, 10]}).steps == [0, 10]
    for data, message in [
        ({"size": 0}, "'size' must be ≥ 1; got 0"),
        ({"rate": 0}, "'rate' must be > 0; got 0.0"),
        ({"steps": [3, 11]}, "'steps[1]' must be ≥ 0 and ≤ 10; got 11"),
        ({"free": "nan"}, "'free' must be a finite number"),
        ({"rate": "-inf"}, "'rate' must be a finite number"),
    ]:
        with pytest.raises(ConfigError) as e:
            from_dict(Section, data)
        assert message in str(e.value)
    with pytest.raises(ConfigError, match="'train.accumulate' must be ≥ 1; got 0"):
        load_config(None, ["train.accumulate=0"])


def test_config_by_bare_name():
    """A shipped config by its bare name: the command's task folder first; a name two folders hold is refused."""
    from imagexplore.config import builtin_config_dir, resolve_config_path
    from imagexplore.errors import ConfigError

    assert resolve_config_path("shapes_rrf_quick") == builtin_config_dir() / "match" / "shapes_rrf_quick.yaml"
    assert resolve_config_path("shapes_plain_quick", "match").parent.name == "match"
    assert resolve_config_path("shapes_plain_quick", "classify").parent.name == "classify"
    with pytest.raises(ConfigError, match="ambiguous: give classify/shapes_plain_quick.yaml or match/"):
        resolve_config_path("shapes_plain_quick")


def test_checking_a_config_leaves_no_reference_cycles():
    """Union fields (``k: int | "auto" | dict``) are checked by trying each arm and catching its ConfigError. An
    exception kept in a local of the frame that raised it is a cycle that holds every caller's frame, with its
    arrays, until the next garbage collection (it held a 11 MB copy of the codes after `from_codes`,
    docs/benchmarks.md); the checks make their exceptions when they raise them."""
    import gc

    from imagexplore.retrieval.index import IndexConfig

    gc.collect()
    gc.disable()
    try:
        IndexConfig(k="auto")
        IndexConfig(types=("a", "b"), mode="2d", k={"a": "auto", "b": 64}, max_candidates=0.02)
        found = gc.collect()
    finally:
        gc.enable()
    assert found == 0
