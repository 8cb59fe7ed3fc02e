"""The DeepIndex public API and `imagexplore retrieve build | search` on bundled photos and shapes scenes.

One small collection (3 photos + 5 shapes scenes, ≤ 128 px, one unreadable file) is indexed once per module so
the CNN runs over it only a few times; queries are edited copies whose original must come back first.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from imagexplore import cli
from imagexplore.data.assets import skimage_photos
from imagexplore.data.shapes import ShapesWorld
from imagexplore.errors import DataError, UserError
from imagexplore.retrieval.api import Index, resolve_config

PHOTOS = skimage_photos()[:3]
pytestmark = pytest.mark.skipif(len(PHOTOS) < 3, reason="scikit-image's bundled photos are missing")


def _edits(img: Image.Image) -> dict[str, Image.Image]:
    """Copies a user might search with: cropped, mirrored, brightened (and, when written, JPEG-compressed)."""
    w, h = img.size
    return {
        "crop": img.crop((w // 10, h // 10, w - w // 10, h - h // 10)),
        "flip": ImageOps.mirror(img),
        "bright": ImageEnhance.Brightness(img).enhance(1.3),
    }


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """(image folder, query folder, {query path: original path}): 8 readable images and one broken file.

    Each photo is queried by two of the three edits (rotating), all saved as JPEG, to keep the CNN time short.
    """
    root = tmp_path_factory.mktemp("retrieval")
    images, queries = root / "images", root / "queries"
    images.mkdir()
    queries.mkdir()
    truth = {}
    for n, path in enumerate(PHOTOS):
        img = Image.open(path).convert("RGB")
        img.thumbnail((128, 128))
        original = images / f"{path.stem}.png"
        img.save(original)
        edits = list(_edits(img).items())
        for name, edited in (edits[n % 3], edits[(n + 1) % 3]):
            q = queries / f"{path.stem}_{name}.jpg"
            edited.save(q, quality=70)
            truth[str(q)] = str(original)
    world = ShapesWorld(seed=0, size=96)
    for i in range(5):
        Image.fromarray(world.view(i, 0)["image"]).save(images / f"shapes_{i}.png")
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    return images, queries, truth


@pytest.fixture(scope="module")
def index_1d(collection):
    return Index.build(collection[0], {"k": 8, "points_per_word": 10}, progress=False)


def test_build_skips_unreadable_and_finds_originals(collection, index_1d):
    images, _, truth = collection
    assert len(index_1d) == 8
    assert index_1d.skipped == [str(images / "broken.jpg")]
    assert index_1d.stats["skipped"] == index_1d.skipped
    assert index_1d.stats["k"] == {"high": 8}
    queries = sorted(truth)
    for q, hits in zip(queries, index_1d.search_many(queries, k=3), strict=True):
        assert hits[0][0] == truth[q], q
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)


def test_search_accepts_pil_and_arrays(collection, index_1d):
    _, _, truth = collection
    q = sorted(truth)[0]
    by_path = index_1d.search(q, k=5)
    assert index_1d.search(Image.open(q), k=5) == by_path
    assert index_1d.search(np.asarray(Image.open(q).convert("RGB")), k=5) == by_path


def test_save_load_round_trip_then_add(collection, index_1d, tmp_path):
    images, _, truth = collection
    queries = sorted(truth)[:2]
    index_1d.save(tmp_path / "idx")
    assert json.loads((tmp_path / "idx" / "backbone.json").read_text()) == {"name": "efficientnet-lite0"}
    loaded = Index.load(tmp_path / "idx")
    assert loaded.skipped == index_1d.skipped
    assert loaded.search_many(queries, k=5) == index_1d.search_many(queries, k=5)
    new = tmp_path / "new.png"
    Image.fromarray(ShapesWorld(seed=0, size=96).view(20, 0)["image"]).save(new)
    loaded.add([new])
    assert len(loaded) == 9 and len(index_1d) == 8
    assert loaded.search(new, k=1)[0][0] == str(new)
    loaded.save(tmp_path / "idx")  # replaces the index in place
    assert len(Index.load(tmp_path / "idx")) == 9


def test_concurrent_searches_equal_sequential(collection, index_1d):
    _, _, truth = collection
    queries = sorted(truth)[:3]
    fresh = Index(index_1d.inverted)  # no extractor yet: the threads race to load it
    sequential = [index_1d.search(q, k=4) for q in queries]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(lambda q: fresh.search(q, k=4), queries)) == sequential


def test_clear_errors(collection, index_1d, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no image files"):
        Index.build(tmp_path / "empty", progress=False)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    with pytest.raises(DataError, match="bad.png"):
        index_1d.search(bad)
    with pytest.raises(DataError, match="could be read"):
        Index.build([bad], progress=False)


def test_config_sources(tmp_path):
    assert resolve_config().types == ("high",)
    assert resolve_config({"mode": "2d"}).types == ("mid", "high")
    (tmp_path / "c.yaml").write_text("k: 16\nma: 2\n")
    cfg = resolve_config(tmp_path / "c.yaml", mode="2d")
    assert (cfg.k, cfg.ma, cfg.types) == (16, 2, ("mid", "high"))
    assert resolve_config(cfg, k=4).k == 4
    (tmp_path / "bad.yaml").write_text("kk: 1\n")
    with pytest.raises(UserError, match="kk"):
        resolve_config(tmp_path / "bad.yaml")


def test_cli_build_2d_and_search_json(collection, tmp_path, monkeypatch, capsys):
    images, _, truth = collection
    if "imagexplore.retrieval.cli" not in cli.TASK_CLIS:
        monkeypatch.setattr(cli, "TASK_CLIS", (*cli.TASK_CLIS, "imagexplore.retrieval.cli"))
    (tmp_path / "cfg.yaml").write_text("k: 8\npoints_per_word: 10\n")
    out = tmp_path / "index"
    argv = [
        "retrieve",
        "build",
        "--images",
        str(images),
        "--out",
        str(out),
        "--config",
        str(tmp_path / "cfg.yaml"),
    ]
    assert cli.main([*argv, "--mode", "2d", "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["images"] == 8 and built["skipped"] == [str(images / "broken.jpg")]
    assert built["stats"]["mode"] == "2d" and built["bytes_per_image"] > 0

    queries = sorted(truth)[::2]
    assert cli.main(["retrieve", "search", "--index", str(out), *queries, "--top", "3", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [r["query"] for r in res] == queries
    for r in res:
        assert set(r) == {"query", "results"} and len(r["results"]) <= 3
        assert all(set(hit) == {"path", "score"} for hit in r["results"])
        assert r["results"][0]["path"] == truth[r["query"]], r["query"]

    assert cli.main(["retrieve", "search", "--index", str(tmp_path / "nope"), queries[0]]) == 2
    assert "not found" in capsys.readouterr().err
    argv = ["retrieve", "search", "--index", str(out), queries[0], "--device", "cpu", "--json"]
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out)[0]["results"][0]["path"] == truth[queries[0]]
    if not torch.cuda.is_available():  # asking for a GPU that is not there is one clear line
        assert cli.main([*argv[:-3], "--device", "cuda"]) == 2
        assert "no CUDA GPU is visible" in capsys.readouterr().err
