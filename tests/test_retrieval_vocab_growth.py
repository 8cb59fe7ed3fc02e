"""Vocabularies that grow with the collection (issue 16): ``k="auto"``, two-level k-means, HNSW word assignment.

Expected vocabulary sizes are computed by hand from the rule in docs/retrieval_scaling.md:
``k = clamp(2 ** round(log2(N x P / 200)), 1024, 2**20)``, then ``min(k, training patches // points_per_word)``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from pathlib import Path

import faiss
import numpy as np
import pytest

from imagexplore.errors import ConfigError
from imagexplore.retrieval.cli import add_commands, vocab_size
from imagexplore.retrieval.configs import resolve_config
from imagexplore.retrieval.index import IndexConfig, InvertedIndex
from imagexplore.retrieval.index.config import (
    AUTO_K_MAX,
    AUTO_K_MIN,
    HIERARCHICAL_FROM,
    HNSW_FROM,
    auto_k,
)
from imagexplore.retrieval.index.vocabulary import build_quantizer, train_vocabulary, two_level_kmeans
from imagexplore.retrieval.ray_shards import models_arrays, models_from

P = 14


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def clustered(rng, n: int, dim: int, centres: int, noise: float = 0.3) -> np.ndarray:
    """``n`` points of ``dim`` dims around ``centres`` random unit centres (float32, L2-normalised)."""
    c = _normalise(rng.standard_normal((centres, dim)))
    pick = rng.integers(0, centres, n)
    return _normalise(c[pick] + noise * rng.standard_normal((n, dim)) / math.sqrt(dim))


def features(rng, n: int, dim: int = 32, groups: int = 20) -> np.ndarray:
    """(N, P, D) features: images of a group share per-patch centres, each adds noise."""
    centres = _normalise(rng.standard_normal((groups, P, dim)))
    group = np.arange(n) % groups
    return _normalise(centres[group] + 0.3 * rng.standard_normal((n, P, dim)) / math.sqrt(dim))


@pytest.mark.parametrize(
    ("images", "per_word", "want"),
    [
        (10_000, 200, 1024),  # 140k patches / 200 = 700 -> 2**9 = 512, clamped up to 1024
        (100_000, 200, 8192),  # 7,000 -> log2 12.77 -> 2**13
        (1_000_000, 200, 65536),  # 70,000 -> log2 16.10 -> 2**16
        (10_000_000, 200, 524288),  # 700,000 -> log2 19.42 -> 2**19
        (1_000_000_000, 200, 2**20),  # 7e7 -> 2**26, clamped down to 2**20
        (10, 200, 1024),  # 0.7 -> clamped up
        (1_000_000, 100, 131072),  # 140,000 -> log2 17.10 -> 2**17
    ],
)
def test_auto_k_rule(images, per_word, want):
    assert auto_k(images * P, per_word) == want
    cfg = IndexConfig(k="auto", auto_patches_per_word=per_word)
    assert cfg.k_for("feature", images * P) == want
    assert AUTO_K_MIN <= want <= AUTO_K_MAX


def test_auto_k_needs_the_patch_count_and_methods_switch_at_their_thresholds():
    with pytest.raises(ConfigError, match="auto"):
        IndexConfig(k="auto").k_for("feature")
    cfg = IndexConfig()
    assert cfg.training_for(HIERARCHICAL_FROM - 1) == "flat"
    assert cfg.training_for(HIERARCHICAL_FROM) == "two_level"
    assert cfg.assignment_for(HNSW_FROM - 1) == "exact"
    assert cfg.assignment_for(HNSW_FROM) == "hnsw"
    forced = IndexConfig(vocab_training="flat", assignment="hnsw")
    assert (forced.training_for(10**6), forced.assignment_for(2)) == ("flat", "hnsw")


def test_k_auto_end_to_end_with_the_small_collection_cap(tmp_path):
    rng = np.random.default_rng(0)
    feats = {"a": features(rng, 60)}  # 840 patches: auto asks 1024 words, 840 // 20 = 42 are learned
    index = InvertedIndex.build(feats, IndexConfig(types=("a",), k="auto"))
    stats = index.stats
    assert stats["k_requested"] == {"a": 1024}
    assert stats["k"] == {"a": 42}
    assert stats["k_auto"] == ["a"]
    assert "auto_patches_per_word" in stats["k_auto_rule"] and "k_rule" in stats
    assert stats["vocab_training"] == {"a": "flat"} and stats["assignment"] == {"a": "exact"}
    ids, _ = index.search({"a": feats["a"][0]}, k=5)
    assert ids[0] == 0
    loaded = InvertedIndex.load(index.save(tmp_path / "auto"))
    assert loaded.config.k == "auto" and loaded.stats["k"] == {"a": 42}
    np.testing.assert_array_equal(loaded.search({"a": feats["a"][0]}, k=5)[0], ids)


def test_k_auto_counts_the_collection_not_the_training_set():
    rng = np.random.default_rng(1)
    collection = {"a": features(rng, 180)}  # 2,520 patches / 1 a word -> log2 11.30 -> 2048 requested
    train = {"a": features(rng, 30)}  # 420 patches: alone it would ask 1024; 420 // 5 = 84 learned
    cfg = IndexConfig(types=("a",), k="auto", auto_patches_per_word=1, points_per_word=5)
    index = InvertedIndex.build(collection, cfg, train=train)
    assert index.stats["k_requested"] == {"a": 2048}
    assert index.stats["k"] == {"a": 84}
    assert index.stats["vocab_source"] == "independent"


def test_k_auto_per_type_and_from_codes():
    rng = np.random.default_rng(2)
    cfg = IndexConfig(types=("a", "b"), mode="2d", k={"a": "auto", "b": 8}, points_per_word=2)
    feats = {"a": features(rng, 40, dim=16), "b": features(rng, 40, dim=16)}
    index = InvertedIndex.build(feats, cfg)
    assert index.stats["k"] == {"a": 280, "b": 8}  # a: min(1024, 560 // 2)
    assert index.stats["k_auto"] == ["a"]
    # from codes alone: the placeholder vocabulary is sized from the images indexed (N x P patches)
    n = 100
    words = {"a": rng.integers(0, 1024, (n, P)), "b": rng.integers(0, 8, (n, P))}
    sigs = {t: _normalise(rng.standard_normal((n, 16))) for t in ("a", "b")}
    coded = InvertedIndex.from_codes(words, sigs, cfg)
    assert coded.stats["k"] == {"a": 1024, "b": 8}


def test_two_level_kmeans_gives_k_distinct_deterministic_words():
    rng = np.random.default_rng(3)
    x = clustered(rng, 12_000, 16, 50)
    threads = faiss.omp_get_max_threads()
    a = two_level_kmeans(x, 400, niter=8, seed=5)
    assert faiss.omp_get_max_threads() == threads  # the sub-k-means' one-thread setting stays in their pool
    faiss.omp_set_num_threads(1)
    try:  # one thread or several: the same words
        b = two_level_kmeans(x, 400, niter=8, seed=5)
    finally:
        faiss.omp_set_num_threads(threads)
    assert a.shape == (400, 16) and a.dtype == np.float32
    assert np.unique(a, axis=0).shape[0] == 400
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, two_level_kmeans(x, 400, niter=8, seed=6))
    # through the config: subsampled (max_points_per_word x k) with the seed, then two-level
    cfg = IndexConfig(vocab_training="two_level", max_points_per_word=20, kmeans_niter=8, kmeans_seed=1)
    v1, v2 = train_vocabulary(x, 300, cfg), train_vocabulary(x, 300, cfg)
    assert v1.shape == (300, 16) and np.unique(v1, axis=0).shape[0] == 300
    np.testing.assert_array_equal(v1, v2)


def test_flat_training_subsample_is_deterministic():
    rng = np.random.default_rng(4)
    x = clustered(rng, 6_000, 16, 30)
    cfg = IndexConfig(vocab_training="flat", max_points_per_word=20, kmeans_niter=5)
    np.testing.assert_array_equal(train_vocabulary(x, 100, cfg), train_vocabulary(x, 100, cfg))


def test_hnsw_assignment_is_deterministic_and_close_to_exact():
    rng = np.random.default_rng(5)
    words = clustered(rng, 4_000, 32, 200, noise=0.5)
    patches = clustered(rng, 20_000, 32, 200, noise=0.5)
    before = faiss.omp_get_max_threads()
    first = build_quantizer(words, "hnsw", 128)
    assert faiss.omp_get_max_threads() == before  # the thread count is restored after the build
    second = build_quantizer(words.copy(), "hnsw", 128)
    _, got1 = first.search(patches, 1)
    _, got2 = second.search(patches, 1)
    np.testing.assert_array_equal(got1, got2)
    _, exact = build_quantizer(words, "exact").search(patches, 1)
    recall = float(np.mean(got1 == exact))
    assert recall >= 0.9, recall


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"k": "big"}, "index.k"),
        ({"k": 0}, "index.k"),
        ({"vocab_training": "fast"}, "vocab_training"),
        ({"assignment": "ivf"}, "assignment"),
        ({"hnsw_ef_search": 0}, "hnsw_ef_search"),
        ({"auto_patches_per_word": 0}, "auto_patches_per_word"),
        ({"max_points_per_word": 10, "points_per_word": 20}, "max_points_per_word"),
    ],
)
def test_bad_values_are_one_config_error_line(fields, match):
    for make in (lambda: IndexConfig(**fields), lambda: IndexConfig.from_json(fields)):
        with pytest.raises(ConfigError, match=match) as info:
            make()
        assert "\n" not in str(info.value)


def test_k_auto_from_the_command_line_and_configs():
    assert vocab_size("auto") == "auto" and vocab_size("64") == 64
    with pytest.raises(argparse.ArgumentTypeError):
        vocab_size("0")
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    args = parser.parse_args(["retrieve", "build", "--features", "f", "--out", "o", "--k", "auto"])
    assert args.k == "auto" and resolve_config(None, k=args.k).k == "auto"
    assert parser.parse_args(["retrieve", "eval", "--k", "auto"]).k == "auto"
    assert resolve_config({"k": {"high": "auto"}}).k == {"high": "auto"}


def test_the_default_vocabulary_grows_with_the_collection_and_configs_keep_their_k():
    """k="auto" is the default: 1,024 words (what every config asked) up to ~20k images of 14 patches, more
    from there on, so the scale preset's 2,000 candidates hold the unpruned top 10 at 1M (0.862 with 1,024
    words, 0.992 with auto: docs/benchmarks.md)."""
    default = IndexConfig()
    assert default.k == "auto" and resolve_config(None).k == "auto"
    assert default.k_for("feature", 20_000 * P) == 1024 and default.k_for("feature", 1_000_000 * P) == 65536
    for path in sorted((Path(__file__).parents[1] / "configs" / "retrieval").glob("*.yaml")):
        assert resolve_config(str(path)).k == 1024, path  # the thesis' tables keep their fixed vocabulary


def test_hnsw_index_saves_loads_and_searches_identically(tmp_path):
    rng = np.random.default_rng(6)
    feats = {"a": features(rng, 80)}
    cfg = IndexConfig(types=("a",), k=48, assignment="hnsw", hnsw_ef_search=64)
    index = InvertedIndex.build(feats, cfg)
    assert index.models.assignment == {"a": "hnsw"} and index.stats["assignment"] == {"a": "hnsw"}
    queries = {"a": _normalise(feats["a"][:10] + 0.05 * rng.standard_normal(feats["a"][:10].shape))}
    want = index.search_batch(queries, k=8)
    loaded = InvertedIndex.load(index.save(tmp_path / "ix"))
    assert loaded.config == cfg and loaded.models.assignment == {"a": "hnsw"}
    assert loaded.models.same_as(index.models)
    got = loaded.search_batch(queries, k=8)
    np.testing.assert_array_equal(want[0], got[0])
    np.testing.assert_array_equal(want[1], got[1])
    # the models as Ray ships them to shard actors keep the assignment
    shipped = models_from(models_arrays(index.models))
    assert shipped.assignment == {"a": "hnsw"} and shipped.same_as(index.models)
    # shards assigned another way do not merge
    exact = InvertedIndex.build(feats, IndexConfig(types=("a",), k=48, assignment="exact"))
    with pytest.raises(ConfigError, match="assignment"):
        InvertedIndex.merge([index, exact])


def test_index_saved_before_the_field_loads_with_exact_assignment(tmp_path):
    rng = np.random.default_rng(7)
    index = InvertedIndex.build({"a": features(rng, 40)}, IndexConfig(types=("a",), k=16))
    root = index.save(tmp_path / "old")
    config = json.loads((root / "config.json").read_text())
    for key in ("assignment", "hnsw_ef_search", "vocab_training", "max_points_per_word"):
        config.pop(key)
    blob = (json.dumps(config, indent=1) + "\n").encode()
    (root / "config.json").write_bytes(blob)
    fmt = json.loads((root / "format.json").read_text())
    fmt["files"]["config.json"] = hashlib.sha256(blob).hexdigest()
    (root / "format.json").write_text(json.dumps(fmt))
    loaded = InvertedIndex.load(root)
    assert loaded.config.assignment == "exact" and loaded.models.assignment == {"a": "exact"}
