"""Large collections: torchrun feature extraction, shard files, exact merges and multi-index search.

Every path must give the index a single `Index.build` gives, byte for byte (build time aside), so each test
builds both and compares the saved directories. A tiny folder (7 readable images ≤ 64 px in two sub-folders and
one broken file) and timm's untrained ``test_efficientnet`` (weights saved once to a file, so that every process
uses the same network) keep the CNN cheap; one test runs the bundled backbone under a real 2-process torchrun.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from PIL import Image, ImageOps

from helpers import single_thread
from imagexplore import cli
from imagexplore.data.assets import skimage_photos
from imagexplore.data.images import list_images
from imagexplore.data.shapes import ShapesWorld
from imagexplore.errors import ConfigError, DataError
from imagexplore.retrieval.api import Index, ShardedSearch
from imagexplore.retrieval.distributed import extract_shard, read_features, shard_bounds

PHOTOS = skimage_photos()[:3]
pytestmark = pytest.mark.skipif(len(PHOTOS) < 3, reason="scikit-image's bundled photos are missing")
BACKBONE = "timm:test_efficientnet"
CONFIG = {"mode": "2d", "k": 4, "points_per_word": 5}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """images/{a,b}/ (3 + 4 readable images, a broken file in a/), two query images, two weights files."""
    root = tmp_path_factory.mktemp("scaling")
    images, queries = root / "images", root / "queries"
    for d in (images / "a", images / "b", queries):
        d.mkdir(parents=True)
    for path in PHOTOS:
        img = Image.open(path).convert("RGB")
        img.thumbnail((64, 64))
        img.save(images / "a" / f"{path.stem}.png")
    ImageOps.mirror(img).save(queries / "mirrored.jpg", quality=80)
    world = ShapesWorld(seed=0, size=64)
    for i in range(4):
        Image.fromarray(world.view(i, 0)["image"]).save(images / "b" / f"shapes_{i}.png")
    Image.fromarray(world.view(1, 1)["image"]).save(queries / "shapes_view.png")
    (images / "a" / "broken.jpg").write_bytes(b"not a jpeg")
    weights = {}
    for name in ("test_efficientnet", "test_resnet"):
        torch.manual_seed(0)
        weights[name] = root / f"{name}.pt"
        torch.save(timm.create_model(name, pretrained=False).state_dict(), weights[name])
    return images, sorted(str(q) for q in queries.iterdir()), weights


def _extract_all(images, out, world, weights, batch_size):
    for rank in range(world):
        extract_shard(
            images,
            out,
            rank=rank,
            world_size=world,
            backbone=BACKBONE,
            weights=weights,
            batch_size=batch_size,
            device="cpu",
            progress=False,
        )


def _saved(index_or_dir, where: Path | None = None) -> dict[str, bytes]:
    """Every file of a saved index; stats.json without the times, format.json (their hashes) left out."""
    directory = index_or_dir if where is None else index_or_dir.save(where)
    files = {p.name: p.read_bytes() for p in Path(directory).iterdir() if p.name != "format.json"}
    stats = json.loads(files.pop("stats.json"))
    for key in ("build_seconds", "index_seconds", "extract_seconds", "total_seconds"):
        stats.pop(key)
    return {**files, "stats": json.dumps(stats, sort_keys=True).encode()}


def test_shard_bounds_cover_groups():
    bounds = [shard_bounds(8, 2, r, 5) for r in range(5)]
    assert bounds == [(0, 0), (0, 2), (2, 4), (4, 6), (6, 8)]
    assert [shard_bounds(7, 3, r, 2) for r in range(2)] == [(0, 3), (3, 7)]


@pytest.mark.parametrize("world, batch_size", [(2, 1), (5, 2)])
def test_rank_files_build_the_single_build_index(data, tmp_path, world, batch_size):
    """World 5 over 4 groups of 2 leaves rank 0 empty; the broken file is skipped inside its group."""
    images, queries, weights = data
    _extract_all(images, tmp_path / "feats", world, weights["test_efficientnet"], batch_size)
    names = sorted(p.name for p in (tmp_path / "feats").iterdir())
    assert names == [f"features-{r:05d}-of-{world:05d}.npz" for r in range(world)] + ["manifest.json"]

    sharded = Index.build_from_features(tmp_path / "feats", CONFIG)
    single = Index.build(
        images,
        CONFIG,
        backbone=BACKBONE,
        weights=weights["test_efficientnet"],
        batch_size=batch_size,
        progress=False,
    )
    assert len(single) == 7 and single.skipped == [str(images / "a" / "broken.jpg")]
    assert _saved(sharded, tmp_path / "sharded") == _saved(single, tmp_path / "single")
    assert sharded.weights == str(weights["test_efficientnet"].resolve())
    assert Index.load(tmp_path / "sharded").search_many(queries, 5) == single.search_many(queries, 5)


def test_feature_folder_errors(data, tmp_path):
    images, _, weights = data
    feats = tmp_path / "feats"
    _extract_all(images, feats, 2, weights["test_efficientnet"], 1)
    got = read_features(feats)
    assert got.images == [str(p) for p in list_images(images) if p.name != "broken.jpg"]
    assert [p for p, _ in got.skipped] == [str(images / "a" / "broken.jpg")]

    with pytest.raises(DataError, match="not found"):
        read_features(tmp_path / "nope")
    moved = tmp_path / "rank1.npz"
    shutil.move(feats / "features-00001-of-00002.npz", moved)
    with pytest.raises(DataError, match=r"lacks features-00001-of-00002\.npz .*RANK=1 WORLD_SIZE=2"):
        read_features(feats)
    shutil.move(moved, feats / "features-00001-of-00002.npz")

    # a second run with another backbone overwrites rank 0 and the manifest, then its rank 1 dies
    extract_shard(
        images,
        feats,
        rank=0,
        world_size=2,
        backbone="timm:test_resnet",
        weights=weights["test_resnet"],
        device="cpu",
        progress=False,
    )
    with pytest.raises(
        DataError, match="features-00001-of-00002.npz comes from another extract run.*backbone"
    ):
        Index.build_from_features(feats, CONFIG)

    # leftovers of a 3-rank run beside a 2-rank one
    (feats / "features-00002-of-00003.npz").write_bytes(b"")
    with pytest.raises(DataError, match="another extract run .*features-00002-of-00003.npz"):
        read_features(feats)
    (feats / "manifest.json").unlink()
    with pytest.raises(DataError, match="no manifest.json"):
        read_features(feats)
    with pytest.raises(ConfigError, match="differs in every process"):
        extract_shard(images, feats, backbone=BACKBONE, weights="random", progress=False)


@pytest.fixture(scope="module")
def shards(data, tmp_path_factory):
    """Shard a/ (vocabularies learned on it) and shard b/ built with vocab_from=a, both saved."""
    images, _, weights = data
    root = tmp_path_factory.mktemp("shards")
    a = Index.build(
        images / "a", CONFIG, backbone=BACKBONE, weights=weights["test_efficientnet"], progress=False
    )
    b = Index.build(images / "b", progress=False, vocab_from=a)
    a.save(root / "a")
    b.save(root / "b")
    return a, b, root


def test_merge_of_vocab_shards_equals_single_build(data, shards, tmp_path):
    images, queries, _ = data
    a, b, _ = shards
    assert b.inverted.config == a.inverted.config and b.backbone == BACKBONE
    merged = Index.merge([a, b])
    single = Index.build(images, progress=False, vocab_from=a)  # lists a/ then b/
    assert merged.skipped == [str(images / "a" / "broken.jpg")]
    assert _saved(merged, tmp_path / "merged") == _saved(single, tmp_path / "single")

    found = single.search_many(queries, 4)
    assert ShardedSearch([a, b]).search_many(queries, 4) == found
    assert found[0][0][0] == str(images / "a" / f"{PHOTOS[-1].stem}.png")  # the mirrored photo finds itself

    own_vocab = Index.build(images / "b", CONFIG, backbone=BACKBONE, weights=a.weights, progress=False)
    with pytest.raises(ConfigError, match="index #1 was built with other vocabularies"):
        Index.merge([a, own_vocab])
    with pytest.raises(DataError, match="in both"):
        ShardedSearch([a, a])
    with pytest.raises(ConfigError, match="use the same backbone"):
        Index.build(images / "b", backbone="efficientnet-lite0", vocab_from=a, progress=False)
    assert Index.build(images / "b", {"ma": 2}, vocab_from=a, progress=False).inverted.config.ma == 2
    with pytest.raises(ConfigError, match=r"\['k'\] change how the index is built.*vocab_from"):
        Index.build(images / "b", {"k": 2}, vocab_from=a, progress=False)


def test_cli_vocab_from_merge_and_multi_index_search(data, shards, tmp_path, monkeypatch, capsys):
    images, queries, _ = data
    _, _, saved = shards
    if "imagexplore.retrieval.cli" not in cli.TASK_CLIS:
        monkeypatch.setattr(cli, "TASK_CLIS", (*cli.TASK_CLIS, "imagexplore.retrieval.cli"))
    b = str(tmp_path / "b")
    argv = ["retrieve", "build", "--images", str(images / "b"), "--out", b, "--vocab-from", str(saved / "a")]
    assert cli.main([*argv, "--k", "2"]) == 2
    assert "--mode and --k are those of the --vocab-from index" in capsys.readouterr().err
    assert cli.main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 4
    assert _saved(tmp_path / "b") == _saved(saved / "b")

    merged = str(tmp_path / "merged")
    assert cli.main(["retrieve", "merge", "--out", merged, str(saved / "a"), b, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["images"] == 7 and res["shards"] == [str(saved / "a"), b]

    def search(*indexes: str) -> list:
        flags = [x for ix in indexes for x in ("--index", ix)]
        assert cli.main(["retrieve", "search", *flags, *queries, "--top", "3", "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    both = search(str(saved / "a"), b)
    assert both == search(merged)
    assert [r["query"] for r in both] == queries and all(len(r["results"]) == 3 for r in both)

    assert cli.main(["retrieve", "merge", "--out", str(tmp_path / "bad"), merged, b]) == 2
    assert f"is in both {merged} and {b}: shards must index disjoint images" in capsys.readouterr().err
    assert cli.build_parser().parse_args(["retrieve", "eval", "--dataset", "shapes"]).cmd == "eval"


@pytest.mark.slow
def test_torchrun_extract_then_build_equals_build_images(data, tmp_path, monkeypatch, capsys):
    """`torchrun --nproc_per_node 2 -m imagexplore retrieve extract` + `build --features` == `build --images`
    with one thread, as each torchrun worker has (OMP_NUM_THREADS=1)."""
    images, queries, _ = data
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    extract = ["retrieve", "extract", "--images", str(images), "--out", str(tmp_path / "feats")]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*cmd, "-m", "imagexplore", *extract, "--device", "cpu", "--json"],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = sorted((json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")), key=str)
    assert sorted(r["rank"] for r in lines) == [0, 1] and sum(r["images"] for r in lines) == 7

    if "imagexplore.retrieval.cli" not in cli.TASK_CLIS:
        monkeypatch.setattr(cli, "TASK_CLIS", (*cli.TASK_CLIS, "imagexplore.retrieval.cli"))
    config = tmp_path / "cfg.yaml"
    config.write_text("k: 4\npoints_per_word: 5\n")
    for source, out in (("--features", tmp_path / "feats"), ("--images", images)):
        argv = ["retrieve", "build", source, str(out), "--out", str(tmp_path / source[2:])]
        with single_thread():  # torchrun's workers run one thread each, and CPU features depend on it
            assert cli.main([*argv, "--config", str(config), "--mode", "2d", "--json"]) == 0
    capsys.readouterr()
    assert _saved(tmp_path / "features") == _saved(tmp_path / "images")
    assert cli.main(["retrieve", "search", "--index", str(tmp_path / "features"), queries[0], "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res[0]["results"][0]["path"] == str(images / "a" / f"{PHOTOS[-1].stem}.png")
