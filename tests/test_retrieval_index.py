"""DeepIndex inverted index on synthetic patch features: layout, memory, ranking, add/merge/shards, disk, threads.

Synthetic data: images come in groups; the images of one group share their patch clusters (one cluster centre
per group and patch), each image adding its own noise, so bags of words find the group and the global
signature (patch 0) singles out the image.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import faiss
import numpy as np
import pytest

from bench_modules import load_bench
from imagexplore.errors import ConfigError, DataError, UserError
from imagexplore.retrieval.index import SCORINGS, IndexConfig, InvertedIndex, ShardedIndex, search_shards

P = 14


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def grouped(rng, groups: int, per_group: int, dim: int, noise: float = 0.3, patches: int = P):
    """(N, P, D) features where the images of a group share patch clusters, and each image's group."""
    centres = _normalise(rng.standard_normal((groups, patches, dim)))
    group = np.repeat(np.arange(groups), per_group)
    return _normalise(
        centres[group] + noise * rng.standard_normal((group.size, patches, dim)) / math.sqrt(dim)
    ), group


def noisy(x: np.ndarray, rng, noise: float = 0.03) -> np.ndarray:
    return _normalise(x + noise * rng.standard_normal(x.shape) / math.sqrt(x.shape[-1]))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    a, group = grouped(rng, 30, 6, 32)
    b, _ = grouped(rng, 30, 6, 32)
    train_a, _ = grouped(rng, 30, 6, 32)
    train_b, _ = grouped(rng, 30, 6, 32)
    queries = {"a": noisy(a, rng), "b": noisy(b, rng)}
    return {"a": a, "b": b}, group, {"a": train_a, "b": train_b}, queries


CONFIGS = {
    "1d": IndexConfig(types=("a",), mode="1d", k=48),
    "2d": IndexConfig(types=("a", "b"), mode="2d", k=48),
}


@pytest.fixture(scope="module")
def indexes(data):
    feats, _, _, _ = data
    return {mode: InvertedIndex.build(feats, cfg) for mode, cfg in CONFIGS.items()}


@pytest.fixture(scope="module")
def shards(data):
    """Per mode three shards of the collection (50, 70, 60 images) sharing the vocabularies of a first build."""
    feats, _, _, _ = data
    out = {}
    for mode, cfg in CONFIGS.items():
        base = InvertedIndex.build({t: x[:50] for t, x in feats.items()}, cfg)
        out[mode] = [
            InvertedIndex.build(
                {t: x[lo:hi] for t, x in feats.items()}, cfg, models_from=base, images=range(lo, hi)
            )
            for lo, hi in [(0, 50), (50, 120), (120, 180)]
        ]
    return out


def _query(queries, i):
    return {t: q[i] for t, q in queries.items()}


def _same(got, want):
    return np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


@pytest.mark.parametrize("mode", ["1d", "2d"])
def test_each_image_has_exactly_p_entries(indexes, mode):
    index = indexes[mode]
    postings = index.postings
    assert np.array_equal(np.bincount(postings.ids, minlength=len(index)), np.full(len(index), P))
    assert postings.ids.dtype == np.uint32 and postings.offsets[-1] == postings.ids.size
    assert index.stats["entries_per_image"] == P
    if mode == "2d":  # CSR over occupied cells only
        assert np.all(np.diff(postings.keys) > 0) and np.all(np.diff(postings.offsets) > 0)


def test_memory_per_image_matches_the_thesis_table():
    rng = np.random.default_rng(1)
    a, _ = grouped(rng, 10, 6, 512)
    b, _ = grouped(rng, 10, 6, 512)
    one = InvertedIndex.build({"a": a}, IndexConfig(types=("a",), k=16))
    two = InvertedIndex.build({"a": a, "b": b}, IndexConfig(types=("a", "b"), mode="2d", k=16))
    assert one.stats["bytes_per_image"] == 14 * 4 + 512 * 4 == 2104
    assert two.stats["bytes_per_image"] <= 4152
    assert one.signatures["a"].shape == (60, 512)
    half = InvertedIndex.build({"a": a}, IndexConfig(types=("a",), k=16, float16_signatures=True))
    assert half.stats["bytes_per_image"] == 14 * 4 + 512 * 2


@pytest.mark.parametrize(
    "mode, scoring",
    [("1d", "votes_signature"), ("2d", "votes_signature"), ("1d", "signature"), ("2d", "signature")],
)
def test_noisy_copy_ranks_its_image_first(indexes, data, mode, scoring):
    _, _, _, queries = data
    index = indexes[mode].with_query_options(scoring=scoring)
    for i in range(0, 180, 17):
        ids, scores = index.search(_query(queries, i), k=5)
        assert ids[0] == i and scores[0] > scores[1]


def test_votes_alone_rank_a_noisy_copy_first():
    # without the signature the words must tell the image apart: images do not share clusters here
    rng = np.random.default_rng(2)
    a = _normalise(rng.standard_normal((150, P, 32)))
    index = InvertedIndex.build({"a": a}, IndexConfig(types=("a",), k=100, scoring="votes"))
    for i in range(0, 150, 13):
        ids, scores = index.search({"a": noisy(a[i], rng)}, k=3)
        assert ids[0] == i and scores[0] > scores[1]


def test_2d_gives_fewer_but_purer_candidates(indexes, data):
    _, group, _, queries = data
    counts, purity = {}, {}
    for mode, index in indexes.items():
        found = [index.search(_query(queries, i), k=len(index))[0] for i in range(0, 180, 7)]
        counts[mode] = np.mean([ids.size for ids in found])
        purity[mode] = np.mean([np.mean(group[ids] == group[i]) for i, ids in zip(range(0, 180, 7), found)])
    assert counts["2d"] < counts["1d"]
    assert purity["2d"] > purity["1d"] + 0.2


@pytest.mark.parametrize(
    "mode, pruning",
    [
        ("2d", {}),
        ("1d", {}),
        ("1d", {"max_df": 0.2}),
        ("2d", {"max_df": 0.05, "max_candidates": 30}),
        ("1d", {"max_candidates": 0.1, "burst": "sqrt"}),
        ("2d", {"burst": "log", "kernel": "threshold"}),
    ],
)
def test_search_batch_matches_search(indexes, data, mode, pruning):
    _, _, _, queries = data
    index = indexes[mode].with_query_options(ma=2, **pruning)
    batch = {t: q[:12] for t, q in queries.items()}
    ids, scores = index.search_batch(batch, k=400)
    for i in range(12):
        one_ids, one_scores = index.search(_query(batch, i), k=400)
        assert np.array_equal(ids[i, : one_ids.size], one_ids) and np.array_equal(
            scores[i, : one_ids.size], one_scores
        )
        assert np.all(ids[i, one_ids.size :] == -1) and np.all(np.isneginf(scores[i, one_ids.size :]))


@pytest.mark.parametrize("mode", ["1d", "2d"])
def test_add_equals_build_on_all(data, mode):
    feats, _, train, queries = data
    cfg = CONFIGS[mode]
    grown = InvertedIndex.build({t: x[:100] for t, x in feats.items()}, cfg, train=train)
    grown.add({t: x[100:] for t, x in feats.items()})
    full = InvertedIndex.build(feats, cfg, models_from=grown)
    assert grown.stats["vocab_source"] == "independent" and grown.images == full.images == tuple(range(180))
    for name in ("keys", "offsets", "ids"):
        assert np.array_equal(getattr(grown.postings, name), getattr(full.postings, name))
    assert all(np.array_equal(grown.signatures[t], full.signatures[t]) for t in cfg.types)
    got, want = grown.search_batch(queries, k=10), full.search_batch(queries, k=10)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


@pytest.mark.parametrize("mode", ["1d", "2d"])
def test_merged_shards_are_bit_identical_to_a_single_build(data, shards, mode):
    feats, _, _, queries = data
    parts = shards[mode]
    single = InvertedIndex.build(feats, CONFIGS[mode], models_from=parts[0])
    merged = InvertedIndex.merge(parts)
    assert merged.images == single.images
    want = single.search_batch(queries, k=20)
    assert _same(merged.search_batch(queries, k=20), want)
    for i in range(0, 180, 11):
        ids, scores = search_shards(parts, _query(queries, i), k=20)
        assert np.array_equal(ids, want[0][i]) and np.array_equal(scores, want[1][i])
    with pytest.raises(UserError, match="models_from"):
        InvertedIndex.merge(
            [parts[0], InvertedIndex.build({t: x[:60] for t, x in feats.items()}, CONFIGS[mode])]
        )


@pytest.mark.parametrize("mode", ["1d", "2d"])
@pytest.mark.parametrize("scoring", SCORINGS)
def test_sharded_index_is_bit_identical_to_the_merged_index(data, shards, mode, scoring):
    _, _, _, queries = data
    views = [s.with_query_options(scoring=scoring, ma=2) for s in shards[mode]]
    sharded, merged = ShardedIndex(views), InvertedIndex.merge(views)
    assert len(sharded) == len(merged) == 180 and sharded.images == merged.images == tuple(range(180))
    assert sharded.config == merged.config
    want = merged.search_batch(queries, k=40)  # k above the 2-D candidate counts: padding is compared too
    assert _same(sharded.search_batch(queries, k=40), want)
    ids, scores = sharded.search(_query(queries, 7), k=40)
    assert np.array_equal(ids, want[0][7, : ids.size]) and np.array_equal(scores, want[1][7, : ids.size])
    words, sigs = _assign(merged, queries, 2), _signatures(merged, queries)
    assert _same(sharded.search_codes_batch(words, sigs, k=40), merged.search_codes_batch(words, sigs, k=40))


@pytest.mark.parametrize("mode", ["1d", "2d"])
@pytest.mark.parametrize(
    "pruning",
    [{"max_df": 0.1}, {"max_df": 0.3, "max_candidates": 25}, {"max_candidates": 0.05, "burst": "sqrt"}],
)
def test_sharded_index_prunes_like_the_merged_index(data, shards, mode, pruning):
    # df and the image count are global, so max_df drops the same lists in every shard; max_candidates keeps the
    # best candidates over all shards together
    _, _, _, queries = data
    views = [s.with_query_options(ma=2, **pruning) for s in shards[mode]]
    sharded, merged = ShardedIndex(views), InvertedIndex.merge(views)
    want = merged.search_batch(queries, k=40)
    assert _same(sharded.search_batch(queries, k=40), want)
    unpruned = InvertedIndex.merge([s.with_query_options(ma=2) for s in shards[mode]]).search_batch(
        queries, k=40
    )
    assert not _same(want, unpruned)  # the options did prune
    for i in range(0, 180, 23):
        ids, scores = sharded.search(_query(queries, i), k=40)
        assert np.array_equal(ids, want[0][i, : ids.size]) and np.array_equal(scores, want[1][i, : ids.size])


def test_sharded_index_rejects_shards_of_other_vocabularies(data, shards):
    feats, _, _, _ = data
    other = InvertedIndex.build({"a": feats["a"][:60]}, CONFIGS["1d"])
    with pytest.raises(UserError, match="different vocabularies or PCA: build them with models_from="):
        ShardedIndex([shards["1d"][0], other])
    with pytest.raises(ConfigError, match="types differs"):
        ShardedIndex([shards["1d"][0], shards["2d"][0]])
    with pytest.raises(UserError, match="no shards"):
        ShardedIndex([])


def _assign(index: InvertedIndex, feats: dict, m: int = 1) -> dict[str, np.ndarray]:
    """Nearest word ids of every patch computed outside the index (FAISS on its vocabularies): (..., P[, m])."""
    out = {}
    for name, centroids in index.vocabularies.items():
        quantizer = faiss.IndexFlatL2(centroids.shape[1])
        quantizer.add(centroids)
        x = feats[name]
        ids = quantizer.search(x.reshape(-1, x.shape[-1]), m)[1]
        out[name] = ids.reshape(x.shape[:-1] + ((m,) if m > 1 else ()))
    return out


def _signatures(index: InvertedIndex, feats: dict) -> dict[str, np.ndarray]:
    """The global signature (PCA of patch 0, L2) of every image, computed outside the index (the same way)."""
    out = {}
    for name, (mean, comps) in index.pca.items():
        y = np.einsum("md,kd->mk", feats[name][:, 0].astype(np.float64) - mean, comps.astype(np.float64))
        out[name] = (y / np.linalg.norm(y, axis=1, keepdims=True)).astype(np.float32)
    return out


@pytest.mark.parametrize("mode", ["1d", "2d"])
def test_from_codes_gives_the_postings_and_results_of_features(indexes, data, mode):
    feats, _, _, queries = data
    index = indexes[mode]
    coded = InvertedIndex.from_codes(
        _assign(index, feats),
        _signatures(index, feats),
        CONFIGS[mode],
        vocab=index.vocabularies,
        pca=index.pca,
    )
    for name in ("keys", "offsets", "ids"):
        assert np.array_equal(getattr(coded.postings, name), getattr(index.postings, name))
    assert all(np.array_equal(coded.signatures[t], index.signatures[t]) for t in CONFIGS[mode].types)
    assert coded.images == index.images and coded.stats["vocab_source"] == "given"
    assert coded.stats["bytes_per_image"] == index.stats["bytes_per_image"]
    assert _same(coded.search_batch(queries, k=20), index.search_batch(queries, k=20))
    # query codes: two words a patch in 1-D (ma=2), the nearest pair in 2-D (ma=1)
    ma = 2 if mode == "1d" else 1
    words, sigs = _assign(index, queries, ma), _signatures(index, queries)
    want = index.with_query_options(ma=ma).search_batch(queries, k=20)
    assert _same(coded.search_codes_batch(words, sigs, k=20), want)
    assert _same(index.search_codes_batch(words, sigs, k=20), want)
    ids, scores = coded.search_codes(_query(words, 3), _query(sigs, 3), k=20)
    assert np.array_equal(ids, want[0][3, : ids.size]) and np.array_equal(scores, want[1][3, : ids.size])


def test_an_index_of_codes_alone_searches_saves_and_loads(tmp_path):
    rng = np.random.default_rng(4)
    words = {t: rng.integers(0, 64, (50, P)) for t in ("a", "b")}
    sigs = {t: _normalise(rng.standard_normal((50, 16))) for t in ("a", "b")}
    cfg = IndexConfig(types=("a", "b"), mode="2d", k=64)
    index = InvertedIndex.from_codes(words, sigs, cfg)
    assert index.stats["vocab_source"] == "placeholder" and index.stats["k"] == {"a": 64, "b": 64}
    assert index.stats["bytes_per_image"] == P * 4 + 2 * 16 * 4
    ids, _ = index.search_codes(_query(words, 7), _query(sigs, 7), k=5)
    assert ids[0] == 7
    loaded = InvertedIndex.load(index.save(tmp_path / "idx"))
    assert _same(loaded.search_codes_batch(words, sigs, k=10), index.search_codes_batch(words, sigs, k=10))
    with pytest.raises(UserError, match="search_codes"):
        index.search({t: np.ones((P, 16), np.float32) for t in ("a", "b")})
    with pytest.raises(DataError, match="outside the 64 words"):
        InvertedIndex.from_codes({"a": words["a"] + 1, "b": words["b"]}, sigs, cfg)
    with pytest.raises(DataError, match="L2-normalised"):
        InvertedIndex.from_codes(words, {"a": 2 * sigs["a"], "b": sigs["b"]}, cfg)
    with pytest.raises(DataError, match="one signature per image"):
        InvertedIndex.from_codes(words, {t: s[:40] for t, s in sigs.items()}, cfg)
    with pytest.raises(ConfigError, match="go together"):
        InvertedIndex.from_codes(words, sigs, cfg, vocab={"a": np.ones((64, 16)), "b": np.ones((64, 16))})
    with pytest.raises(DataError, match="16-d"):
        index.search_codes(
            _query(words, 0), {t: s[0, :8] / np.linalg.norm(s[0, :8]) for t, s in sigs.items()}
        )


def test_save_load_round_trip(indexes, data, tmp_path):
    _, _, _, queries = data
    index = indexes["2d"]
    target = index.save(tmp_path / "idx")
    index.save(target)  # overwriting an index replaces it atomically
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]
    fmt = json.loads((target / "format.json").read_text())
    assert fmt["format"] == "imagexplore-deepindex" and fmt["version"] == 1
    assert {"vocab_a.npy", "pca_b.npz", "postings_cells.npy", "signatures_a.npy", "images.json"} <= set(
        fmt["files"]
    )
    stats = json.loads((target / "stats.json").read_text())
    assert (
        stats["images"] == 180 and stats["vocab_source"] == "collection" and stats["k"] == {"a": 48, "b": 48}
    )
    loaded = InvertedIndex.load(target)
    assert loaded.images == index.images and loaded.config == index.config
    got, want = loaded.search_batch(queries, k=10), index.search_batch(queries, k=10)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    with pytest.raises(UserError, match="not a DeepIndex directory"):
        index.save(tmp_path / "other")


def _damage_truncate(path):
    path.write_bytes(path.read_bytes()[:-8])


def _damage_flip(path):
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0xFF
    path.write_bytes(bytes(blob))


@pytest.mark.parametrize(
    "name, damage, message",
    [
        ("postings_ids.npy", _damage_truncate, "damaged"),
        ("signatures_a.npy", _damage_flip, "damaged"),
        ("vocab_a.npy", lambda p: p.unlink(), "cannot read"),
        (
            "format.json",
            lambda p: p.write_text(p.read_text().replace('"version": 1', '"version": 2')),
            "version 2",
        ),
    ],
)
def test_load_rejects_damaged_or_foreign_indexes(indexes, tmp_path, name, damage, message):
    target = indexes["1d"].save(tmp_path / "idx")
    damage(target / name)
    with pytest.raises(DataError, match=message):
        InvertedIndex.load(target)


def test_concurrent_searches_equal_sequential(indexes, data):
    _, _, _, queries = data
    index = indexes["2d"].with_query_options(ma=2)
    todo = [_query(queries, i) for i in range(60)]
    sequential = [index.search(q, k=10) for q in todo]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(lambda q: index.search(q, k=10), todo))
    for (a_ids, a_sc), (b_ids, b_sc) in zip(sequential, concurrent):
        assert np.array_equal(a_ids, b_ids) and np.array_equal(a_sc, b_sc)


def _naive_scores(index: InvertedIndex, feats: dict, query: dict[str, np.ndarray]) -> dict[int, float]:
    """The thesis' step 5 (ch. 4) by hand from the indexed ``feats``: loops over patches, posting lists and matches."""
    cfg, vocab = index.config, index.vocabularies
    n = len(index)

    def dists(t, x):
        return ((x[:, None, :].astype(np.float64) - vocab[t][None]) ** 2).sum(-1)

    def image_keys(patches):
        if cfg.mode == "1d":
            return [int(np.argmin(row)) for row in dists("a", patches["a"])]
        da, db = dists("a", patches["a"]), dists("b", patches["b"])
        return [int(np.argmin(ra)) * vocab["b"].shape[0] + int(np.argmin(rb)) for ra, rb in zip(da, db)]

    postings = defaultdict(list)
    for i in range(n):
        for key in image_keys({t: x[i] for t, x in feats.items()}):
            postings[key].append(i)
    qkeys = []
    if cfg.mode == "1d":
        for row in dists("a", query["a"]):
            qkeys += [int(w) for w in np.argsort(row)[: cfg.ma]]
    else:
        for ra, rb in zip(dists("a", query["a"]), dists("b", query["b"])):
            pairs = sorted(
                (ra[wa] + rb[wb], wa, wb)
                for wa in np.argsort(ra)[: cfg.ma]
                for wb in np.argsort(rb)[: cfg.ma]
            )
            qkeys += [int(wa) * vocab["b"].shape[0] + int(wb) for _, wa, wb in pairs[: cfg.ma]]
    idf = {key: math.log(n / len(set(ids))) for key, ids in postings.items()}
    tf_q = Counter(qkeys)
    qnorm = math.sqrt(sum((c * idf.get(key, 0.0)) ** 2 for key, c in tf_q.items()))
    dnorm = [0.0] * n
    for key, ids in postings.items():
        for i, c in Counter(ids).items():
            dnorm[i] += (c * idf[key]) ** 2
    votes = defaultdict(float)
    for key, c in tf_q.items():
        for i in postings.get(key, []):
            votes[i] += c * idf[key] ** 2
    scores = {}
    for i, v in votes.items():
        cos = 0.0
        for t in cfg.types:
            mean, comps = index.pca[t]
            s = (query[t][0].astype(np.float64) - mean) @ comps.T.astype(np.float64)
            s = (s / np.linalg.norm(s)).astype(np.float32).astype(np.float64)  # stored precision, both sides
            cos += float(index.signatures[t][i].astype(np.float64) @ s) / len(cfg.types)
        g = math.exp(-2 * (1 - cos) / cfg.sigma**2) if cfg.kernel == "exp" else float(cos >= cfg.threshold)
        denom = qnorm * math.sqrt(dnorm[i])
        scores[i] = (v / denom if denom > 0 else 0.0) * g
    return scores


@pytest.mark.parametrize(
    "mode, kernel", [("1d", "exp"), ("2d", "exp"), ("1d", "threshold"), ("2d", "threshold")]
)
def test_scores_match_a_naive_reference(mode, kernel):
    rng = np.random.default_rng(3)
    feats = {t: _normalise(rng.standard_normal((12, 4, 8))) for t in ("a", "b")}
    types = ("a",) if mode == "1d" else ("a", "b")
    cfg = IndexConfig(
        types=types, mode=mode, k=4, ma=2, kernel=kernel, threshold=0.1, sigma=0.7, points_per_word=1
    )
    index = InvertedIndex.build({t: feats[t] for t in types}, cfg)
    for i in range(4):
        query = {t: noisy(feats[t][i], rng, 0.5) for t in types}
        want = _naive_scores(index, {t: feats[t] for t in types}, query)
        ids, scores = index.search(query, k=12)
        assert sorted(ids.tolist()) == sorted(want)
        np.testing.assert_allclose(
            scores, [want[i] for i in ids.tolist()], rtol=1e-5, atol=1e-7
        )  # cosines are float32


def test_small_collections_get_fewer_words_and_configs_are_checked(data):
    feats, _, _, _ = data
    index = InvertedIndex.build({"a": feats["a"][:10]}, IndexConfig(types=("a",), k=1000))
    assert index.stats["k"] == {"a": 10 * P // 20} and index.stats["k_requested"] == {"a": 1000}
    with pytest.raises(ConfigError, match="exactly 2"):
        IndexConfig(types=("a",), mode="2d")
    with pytest.raises(ConfigError, match="scoring"):
        IndexConfig(scoring="bm25")
    with pytest.raises(ConfigError, match="only"):
        index.with_query_options(k=3)
    with pytest.raises(DataError, match="D=16"):
        index.search({"a": np.ones((P, 16), np.float32)})
    with pytest.raises(DataError, match="lack feature type"):
        InvertedIndex.build({"x": feats["a"]}, IndexConfig(types=("a",)))


def test_scale_bench_runs_quick_and_refuses_what_does_not_fit(tmp_path, monkeypatch, capsys):
    """bench/bench_retrieval.py --quick end to end (2,000 images a mode), in this process for speed; the FAISS
    IVF baselines (most of the run: their training) are checked by test_scale_bench_json_lines_carry_the_contract."""
    bench = load_bench("bench_retrieval")
    monkeypatch.setattr(bench, "set_up_process", lambda threads: None)  # FAISS threads, malloc: process-wide
    out = tmp_path / "retrieval.json"
    assert bench.main(["--quick", "--json", "--no-ivf", "--out", str(out)]) == 0
    runs = json.loads(out.read_text())["runs"]
    assert {r["mode"]: r["bytes_per_image"] for r in runs} == {"1d": 2104, "2d": 4152}
    for run in runs:
        assert all(
            run[name]["top1_is_source"] >= 0.9 for name in ("votes_signature", "signature", "faiss_flat")
        )
    assert bench.main(["--sizes", str(10**10), "--out", str(out)]) == 2
    assert "refused" in capsys.readouterr().out


def test_extraction_row_times_both_ways_against_the_limit(tmp_path, monkeypatch, capsys):
    """bench_retrieval.py --extraction, tiny: 2 photos, 2 rounds, 64 px patches. The row gives the way
    ``workers="auto"`` takes here, both ways' fractions of the forward limit timed around each round, and the
    loader's stages; `images_per_s` is the auto way's median round."""
    import torch

    from imagexplore.retrieval.distributed import loader_workers
    from imagexplore.retrieval.features import load_backbone

    bench = load_bench("bench_retrieval")
    monkeypatch.setattr(bench, "set_up_process", lambda threads: None)
    threads = torch.get_num_threads()
    argv = ["--sizes", "300", "--modes", "1d", "--queries", "3", "--no-ivf", "--json", "--extraction"]
    argv += [
        "--extraction-images",
        "2",
        "--extraction-rounds",
        "2",
        "--photo-side",
        "320",
        "--patch-size",
        "64",
    ]
    try:
        assert bench.main(argv + ["--out", str(tmp_path / "r.json")]) == 0
        auto = "loader" if loader_workers(load_backbone(input_size=64)) else "in_process"
    finally:
        torch.set_num_threads(threads)
    row = [json.loads(line) for line in capsys.readouterr().out.splitlines()][-1]
    assert row["mode"] == "extraction" and row["workers_auto"] == auto and row["images"] == 2
    assert len(row["rounds_fraction_loader"]) == len(row["rounds_fraction_in_process"]) == 2
    assert row["fraction_of_forward_limit"] == row[f"fraction_{auto}"]
    assert row["images_per_s"] == row[f"images_per_s_{auto}"] > 0
    assert row["fraction_of_forward_limit"] == pytest.approx(
        row["images_per_s"] / row["forward_limit_images_per_s"], abs=2e-3
    )
    assert all(row[f"loader_ms_{stage}"] > 0 for stage in ("decode", "to_tensor", "crop"))


def test_disk_shards_bench_quick_builds_maps_and_searches(tmp_path, monkeypatch, capsys):
    """bench/bench_disk_shards.py --quick: shards saved one at a time, loaded mapped, searched as one index; the
    sharded search agrees with the unpruned one (no pruning under 100,000 images) and with the flat scan's top 1."""
    bench = load_bench("bench_disk_shards")
    monkeypatch.setattr(bench.br, "set_up_process", lambda threads: None)  # process-wide settings
    out = tmp_path / "r.json"
    assert bench.main(["--quick", "--json", "--dir", str(tmp_path / "shards"), "--out", str(out)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row == json.loads(out.read_text())
    assert (row["images"], row["shards"]) == (20_000, 4)
    assert row["agreement_top10"] == 1.0 and row["flat_top1_equals_ours"] == 1.0
    assert not (tmp_path / "shards").exists()  # removed unless --keep


def test_signatures_do_not_depend_on_the_batch_with_fewer_images_than_dims():
    # the PCA of 7 images in 256-d leaves axes of pure rounding noise, which a BLAS product rounds per batch size
    rng = np.random.default_rng(5)
    x = _normalise(rng.standard_normal((7, 5, 256)))
    cfg = IndexConfig(types=("a",), k=4, points_per_word=5)
    full = InvertedIndex.build({"a": x}, cfg)
    grown = InvertedIndex.build({"a": x[:3]}, cfg, models_from=full)
    grown.add({"a": x[3:]})
    assert np.array_equal(grown.signatures["a"], full.signatures["a"])


def _mapped(arr: np.ndarray) -> bool:
    """Whether ``arr`` is a view of a memory-mapped file."""
    base = arr
    while base is not None and not isinstance(base, np.memmap):
        base = getattr(base, "base", None)
    return base is not None


@pytest.mark.parametrize("mode", ["1d", "2d"])
@pytest.mark.parametrize("float16", [False, True])
def test_mmapped_index_searches_exactly_like_the_in_memory_one(indexes, data, tmp_path, mode, float16):
    """The mapped signatures, postings and vocabularies give the same ids and scores, bit for bit, for every scoring, burst,
    pruning and multiple assignment, single and batched; the index written today is what is mapped (the
    format is unchanged: every array was a plain .npy already)."""
    feats, _, _, queries = data
    index = indexes[mode]
    if float16:
        index = InvertedIndex.build(feats, dataclasses.replace(CONFIGS[mode], float16_signatures=True))
    target = index.save(tmp_path / "idx")
    in_memory, mapped = InvertedIndex.load(target), InvertedIndex.load(target, mmap=True)
    data_map = mapped.collection
    assert all(_mapped(s) for s in data_map.signatures.values())
    assert _mapped(data_map.postings.ids) and _mapped(data_map.postings.offsets)
    assert all(_mapped(v) for v in mapped.models.vocab.values())  # assignment copies them into FAISS
    assert not any(_mapped(s) for s in in_memory.collection.signatures.values())
    assert mapped.images == in_memory.images and mapped.stats == in_memory.stats
    for options in [
        {},
        {"scoring": "votes"},
        {"scoring": "signature"},
        {"burst": "sqrt", "ma": 2},
        {"burst": "log", "max_df": 0.2},
        {"pruning": "scale"},
    ]:
        a, b = in_memory.with_query_options(**options), mapped.with_query_options(**options)
        assert _same(b.search_batch(queries, k=10), a.search_batch(queries, k=10)), options
        for i in range(0, 180, 37):
            assert _same(b.search(_query(queries, i), k=10), a.search(_query(queries, i), k=10)), options


def test_shards_of_one_vocabulary_link_its_files_and_compare_their_digests(
    data, shards, tmp_path, monkeypatch
):
    """Shards built with ``models_from=`` store the vocabularies and PCA once: the first save writes them, later
    ones hard-link them (one inode, so one copy on disk and in the page cache); loaded shards compare the files'
    sha256 instead of the arrays, and hash a linked file once. A link that outlived its first folder still
    loads; where links fail, the files are written."""
    from imagexplore.retrieval.index import storage, vocabulary

    feats, _, _, queries = data
    parts = shards["2d"]
    models = [f"{kind}_{t}.{ext}" for t in ("a", "b") for kind, ext in (("vocab", "npy"), ("pca", "npz"))]
    dirs = [part.save(tmp_path / f"s{i}") for i, part in enumerate(parts)]
    inode = lambda path: os.stat(path).st_ino  # noqa: E731
    for name in models:
        assert len({inode(d / name) for d in dirs}) == 1, name
    assert len({inode(d / "signatures_a.npy") for d in dirs}) == 3
    hashed = []
    real_hash = storage._file_sha256
    monkeypatch.setattr(
        storage, "_file_sha256", lambda path, what: hashed.append(path.name) or real_hash(path, what)
    )
    storage._HASHED.clear()
    loaded = [InvertedIndex.load(d, mmap=True) for d in dirs]
    assert hashed.count("vocab_a.npy") == 1 and hashed.count("signatures_a.npy") == 3
    monkeypatch.setattr(vocabulary.np, "array_equal", lambda *a, **k: pytest.fail("arrays compared"))
    sharded = ShardedIndex(loaded)
    monkeypatch.undo()
    assert _same(sharded.search_batch(queries, k=10), ShardedIndex(parts).search_batch(queries, k=10))
    shutil.rmtree(dirs[0])
    again = InvertedIndex.load(dirs[1], mmap=True)
    assert again.models.same_as(loaded[2].models)
    # the first folder is gone: the next save writes the files again, and later ones link to that copy
    fresh = [parts[0].save(tmp_path / "t0"), parts[1].save(tmp_path / "t1")]
    assert (
        inode(fresh[0] / "vocab_a.npy") == inode(fresh[1] / "vocab_a.npy") != inode(dirs[1] / "vocab_a.npy")
    )
    monkeypatch.setattr(storage.os, "link", lambda *a: (_ for _ in ()).throw(OSError(18, "cross-device")))
    copied = parts[2].save(tmp_path / "u2")
    assert inode(copied / "vocab_a.npy") != inode(fresh[0] / "vocab_a.npy")
    assert (copied / "vocab_a.npy").read_bytes() == (fresh[0] / "vocab_a.npy").read_bytes()
    assert _same(InvertedIndex.load(copied).search_batch(queries, k=10), parts[2].search_batch(queries, k=10))


def test_mmapped_load_checks_every_file(indexes, tmp_path):
    target = indexes["1d"].save(tmp_path / "idx")
    _damage_flip(target / "signatures_a.npy")
    with pytest.raises(DataError, match="damaged"):
        InvertedIndex.load(target, mmap=True)
    target = indexes["1d"].save(tmp_path / "idx2")
    _damage_truncate(target / "postings_ids.npy")
    with pytest.raises(DataError, match="damaged"):
        InvertedIndex.load(target, mmap=True)


def test_mmapped_index_adds_and_saves_like_the_in_memory_one(data, tmp_path):
    feats, _, _, queries = data
    first = {t: x[:100] for t, x in feats.items()}
    rest = {t: x[100:] for t, x in feats.items()}
    target = InvertedIndex.build(first, CONFIGS["2d"]).save(tmp_path / "idx")
    in_memory, mapped = InvertedIndex.load(target), InvertedIndex.load(target, mmap=True)
    in_memory.add(rest)
    mapped.add(rest)
    assert _same(mapped.search_batch(queries, k=10), in_memory.search_batch(queries, k=10))
    mapped.save(target)  # over the directory it maps: written aside, then swapped in
    again = InvertedIndex.load(target, mmap=True)
    assert len(again) == 180
    assert _same(again.search_batch(queries, k=10), in_memory.search_batch(queries, k=10))


def test_kernels_bench_quick_times_every_kernel_against_what_it_replaced(tmp_path):
    """bench/bench_kernels.py --quick: every row it documents (the forward passes' in fresh processes) comes
    with its own time and the replaced kernel's, in the same run."""
    import torch

    bench = load_bench("bench_kernels")
    threads = torch.get_num_threads()
    try:
        assert bench.main(["--quick", "--out", str(tmp_path / "k.json")]) == 0
    finally:
        torch.set_num_threads(threads)
    rows = json.loads((tmp_path / "k.json").read_text())
    kernels = {r["kernel"] for r in rows}
    assert kernels == {
        "crop_14_patches",
        "to_tensor",
        "cosines_2000_of_rows",
        "lite0_forward_folded",
        "lite0_forward_malloc_reuse",
    }
    assert all(r["ms"] > 0 and r["before_ms"] > 0 for r in rows)
