"""DeepIndex shards served by Ray actors (`ShardedSearch(..., backend="ray")`, `retrieve search --backend ray`,
`retrieve serve-shards`): the results equal the in-process `ShardedSearch` bit for bit, a dead actor costs
time but never results, and a shard that cannot answer is named in the error.

One local Ray instance (2 CPUs, no dashboard) serves the whole module. Two kinds of shards keep it quick:
`test_retrieval_pruning`'s random codes (three shards of 700 images, every pruning option, no CNN) and three
tiny image shards made with timm's untrained ``test_efficientnet`` like `test_retrieval_distributed`'s.
Every test skips when Ray is not installed, except the one checking what the command line says then.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time

import numpy as np
import pytest
import timm
import torch
from PIL import Image, ImageOps

from helpers import single_thread
from imagexplore import cli
from imagexplore.data.assets import skimage_photos
from imagexplore.data.shapes import ShapesWorld
from imagexplore.errors import ConfigError, DataError, UserError
from imagexplore.retrieval.api import Index, ShardedSearch
from imagexplore.retrieval.index import IndexConfig, InvertedIndex, ShardedIndex
from imagexplore.retrieval.stored import check_described
from test_retrieval_pruning import PRUNINGS, random_codes  # noqa: F401 - random_codes: a module fixture

PHOTOS = skimage_photos()[:3]
BACKBONE = "timm:test_efficientnet"
CONFIG = {"mode": "2d", "k": 4, "points_per_word": 5}


@pytest.fixture(scope="module")
def ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, namespace="imagexplore")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def image_shards(tmp_path_factory):
    """idx/{a,b,c}: a of three photos (vocabularies learned on it), b and c of two shapes scenes each, built
    with vocab_from=a; two query images; the root folder (tests search from it with relative paths)."""
    if len(PHOTOS) < 3:
        pytest.skip("scikit-image's bundled photos are missing")
    root = tmp_path_factory.mktemp("ray_shards")
    for d in ("images/a", "images/b", "images/c", "queries"):
        (root / d).mkdir(parents=True)
    for path in PHOTOS:
        img = Image.open(path).convert("RGB")
        img.thumbnail((64, 64))
        img.save(root / "images" / "a" / f"{path.stem}.png")
    ImageOps.mirror(img).save(root / "queries" / "mirrored.jpg", quality=80)
    world = ShapesWorld(seed=0, size=64)
    for i in range(4):
        Image.fromarray(world.view(i, 0)["image"]).save(root / "images" / "bc"[i // 2] / f"shapes_{i}.png")
    Image.fromarray(world.view(1, 1)["image"]).save(root / "queries" / "shapes_view.png")
    torch.manual_seed(0)
    torch.save(timm.create_model("test_efficientnet", pretrained=False).state_dict(), root / "w.pt")
    with single_thread():
        a = Index.build(
            root / "images" / "a", CONFIG, backbone=BACKBONE, weights=root / "w.pt", progress=False
        )
        indexes = [a] + [Index.build(root / "images" / x, progress=False, vocab_from=a) for x in "bc"]
    for name, index in zip("abc", indexes):
        index.save(root / "idx" / name)
    return root, [f"idx/{x}" for x in "abc"], indexes, ["queries/mirrored.jpg", "queries/shapes_view.png"]


def test_image_shards_on_ray_equal_the_local_search(ray, image_shards, monkeypatch):
    """Names and scores exactly equal: shards read by their actors (relative directories, so image paths must
    be named as here) and shards shipped from memory."""
    root, dirs, indexes, queries = image_shards
    monkeypatch.chdir(root)
    with single_thread():
        local = ShardedSearch.load(dirs)
        want = local.search_many(queries, 5)
        remote = ShardedSearch.load(dirs, backend="ray")
        assert remote.search_many(queries, 5) == want
        assert remote.search(queries[1], 3) == local.search(queries[1], 3)
        assert want[0][0][0] == f"images/a/{PHOTOS[-1].stem}.png"  # the mirrored photo finds itself
        assert remote.paths == local.paths and len(remote) == len(local) == 7
        shipped = ShardedSearch(indexes, backend="ray")
        assert shipped.search_many(queries, 5) == ShardedSearch(indexes).search_many(queries, 5)
    remote.close()
    shipped.close()

    for backend in ("local", "ray"):  # one directory given twice is two shards holding the same images
        with pytest.raises(DataError, match="is in both idx/a and idx/a"):
            ShardedSearch.load(["idx/a", "idx/a"], backend=backend)
    with pytest.raises(DataError, match="shard idx/none: index .*idx/none: index not found"):
        ShardedSearch.load(["idx/a", "idx/none"], backend="ray")
    with pytest.raises(ConfigError, match="unknown ShardedSearch backend 'dask'"):
        ShardedSearch(indexes, backend="dask")


def _codes_index(shard: InvertedIndex) -> Index:
    return Index(shard, "codes")  # an Index holding codes: enough for ShardedSearch's checks and Ray


def test_codes_on_ray_are_bit_identical_for_every_query_option(ray, random_codes):  # noqa: F811
    """Every pruning option, both modes, k 10 and 300 (the global max_candidates cut between the actors' votes
    and their signature stage included): positions and scores equal `ShardedIndex`'s array for array."""
    from imagexplore.retrieval.ray_shards import RayShardedIndex

    for mode in ("1d", "2d"):
        _, shards, q_words, q_sigs = random_codes[mode]
        remote = RayShardedIndex([_codes_index(s) for s in shards], ["s0", "s1", "s2"])
        for options in PRUNINGS:
            view = remote.with_query_options(**options)
            local = ShardedIndex([s.with_query_options(**options) for s in shards])
            for k in (10, 300):
                want = local.search_codes_batch(q_words, q_sigs, k)
                got = view.search_codes_batch(q_words, q_sigs, k)
                assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), (options, k)
        with pytest.raises(ConfigError, match=r"\['k'\] change how the index is built"):
            remote.with_query_options(k=3)
        remote.close()
        with pytest.raises(UserError, match="this search was closed"):  # never an empty answer
            view.search_codes_batch(q_words, q_sigs, 10)

    # same layout, other vocabularies: refused, naming the shard
    cfg = IndexConfig(types=("a",), k=16, signature_dim=16)
    rng = np.random.default_rng(0)
    other = InvertedIndex.from_codes(
        {"a": rng.integers(0, 16, (5, 6))},
        {"a": np.eye(16, dtype=np.float32)[:5]},
        cfg,
        vocab={"a": rng.standard_normal((16, 16))},
        pca={"a": (np.zeros(16), np.eye(16))},
    )
    with pytest.raises(ConfigError, match="index #1 was built with other vocabularies"):
        RayShardedIndex(
            [_codes_index(random_codes["1d"][1][0]), _codes_index(other)],
            ["index #0", "index #1"],
            check=check_described,
        )


def test_a_dead_shard_actor_costs_time_not_results(ray, random_codes, tmp_path, monkeypatch):  # noqa: F811
    """Killed for good: replaced by the driver; killed with a restart: restarted by Ray; killed during a batch:
    the batch still comes back whole. A shard that cannot be read again, or whose replacement dies too, raises
    an error naming it, and the search works again once the shard is back."""
    from imagexplore.retrieval.ray_shards import RayShardedIndex, ShardUnavailableError

    _, shards, q_words, q_sigs = random_codes["1d"]
    dirs, first = [], 0
    for i, shard in enumerate(shards):
        named = shard.renamed([str(tmp_path / "img" / f"{first + j}.png") for j in range(len(shard))])
        first += len(shard)
        dirs.append(str(_codes_index(named).save(tmp_path / f"s{i}")))
    want = ShardedIndex(shards).search_codes_batch(q_words, q_sigs, 10)
    remote = RayShardedIndex(dirs, dirs)

    def answers_whole() -> bool:
        got = remote.search_codes_batch(q_words, q_sigs, 10)
        return np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])

    assert answers_whole()
    dead = remote.actors[1]
    ray.kill(dead)  # no_restart=True: Ray leaves it dead
    assert answers_whole() and remote.actors[1] is not dead

    pid = ray.get(remote.actors[1].pid.remote())
    ray.kill(remote.actors[1], no_restart=False)  # Ray restarts it; it reloads its shard from its directory
    assert answers_whole() and ray.get(remote.actors[1].pid.remote()) != pid

    results, stop = [], threading.Event()

    def search_on():  # batch after batch, so the kill lands during one (or right between two)
        while not stop.is_set():
            results.append(answers_whole())

    batches = threading.Thread(target=search_on)
    batches.start()
    while len(results) < 2:
        time.sleep(0.01)
    before = len(results)
    ray.kill(remote.actors[2], no_restart=False)
    deadline = time.monotonic() + 60
    while len(results) < before + 2 and time.monotonic() < deadline:  # the restart takes a second or two
        time.sleep(0.05)
    stop.set()
    batches.join()
    assert len(results) >= before + 2 and all(results)

    # the replacement dies as well: refused, naming the shard; fine again once actors live
    with monkeypatch.context() as m:

        def dying(p):
            actor = RayShardedIndex._new_actor(remote, p)
            ray.kill(actor)
            return actor

        m.setattr(remote, "_new_actor", dying)
        ray.kill(remote.actors[2])
        with pytest.raises(ShardUnavailableError, match=f"shard {dirs[2]}: its Ray actor died .* failed too"):
            remote.search_codes_batch(q_words, q_sigs, 10)
    assert answers_whole()

    # the shard's directory is gone when its actor must reload it, then it holds another shard
    shutil.move(dirs[0], tmp_path / "away")
    ray.kill(remote.actors[0])
    with pytest.raises(DataError, match=f"shard {dirs[0]}: index {dirs[0]}: index not found"):
        remote.search_codes_batch(q_words, q_sigs, 10)
    shutil.copytree(dirs[1], dirs[0])
    with pytest.raises(DataError, match=f"shard {dirs[0]}: it no longer holds what it held"):
        remote.search_codes_batch(q_words, q_sigs, 10)
    shutil.rmtree(dirs[0])
    shutil.move(tmp_path / "away", dirs[0])
    assert answers_whole()
    remote.close()


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    if "imagexplore.retrieval.cli" not in cli.TASK_CLIS:
        pytest.skip("the retrieval CLI is not registered")
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_search_on_ray_and_served_shards_print_the_local_results(ray, image_shards, monkeypatch, capsys):
    root, dirs, _, queries = image_shards
    monkeypatch.chdir(root)
    flags = [x for d in dirs for x in ("--index", d)]
    with single_thread():
        code, local, _ = _cli(capsys, "retrieve", "search", *flags, *queries, "--top", "4", "--json")
        assert code == 0 and len(json.loads(local)) == 2
        assert _cli(
            capsys, "retrieve", "search", *flags, *queries, "--top", "4", "--json", "--backend", "ray"
        )[:2] == (0, local)

        code, out, _ = _cli(capsys, "retrieve", "serve-shards", *flags, "--name", "t1", "--json")
        assert code == 0 and json.loads(out)["images"] == 7
        code, _, err = _cli(capsys, "retrieve", "serve-shards", *flags, "--name", "t1")
        assert code == 2 and "already served as 't1'" in err
        assert _cli(capsys, "retrieve", "search", "--served", "t1", *queries, "--top", "4", "--json")[:2] == (
            0,
            local.replace(
                '"images/', f'"{root}/images/'
            ),  # the service read the directories by absolute path
        )
    assert _cli(capsys, "retrieve", "serve-shards", "--stop", "--name", "t1")[0] == 0
    code, _, err = _cli(capsys, "retrieve", "search", "--served", "t1", *queries)
    assert code == 2 and "no shards are served as 't1'" in err
    code, _, err = _cli(capsys, "retrieve", "search", *flags, "--served", "t1", *queries)
    assert code == 2 and "--index DIR (repeatable) or --served NAME, not both" in err


def test_without_ray_the_command_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    img = tmp_path / "q.png"
    Image.new("RGB", (8, 8)).save(img)
    code, _, err = _cli(capsys, "retrieve", "search", "--index", str(tmp_path), "--backend", "ray", str(img))
    assert code == 2
    assert err.strip().splitlines() == [
        "imagexplore: error: the Ray backend needs Ray, which is not installed: pip install imagexplore[ray]"
    ]
