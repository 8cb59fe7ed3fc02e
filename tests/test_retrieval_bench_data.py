"""bench/bench_retrieval.py --data realistic: codes of real photos (EfficientNet-Lite0 patch features quantised
by the DeepIndex pipeline), replicated with noise to the bench's sizes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench_modules import load_bench
from imagexplore.data.assets import skimage_photos

N_BASE = 2

pytestmark = pytest.mark.skipif(len(skimage_photos()) < N_BASE, reason="scikit-image's photos not installed")


@pytest.fixture(scope="module")
def bench():
    return load_bench("bench_retrieval")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("realistic_cache")


@pytest.fixture(scope="module")
def feats(bench, cache):
    files = bench.realistic_photos(N_BASE)
    assert files == skimage_photos()[:N_BASE]  # scikit-image's come first
    return bench.base_features(files, 224, cache)


@pytest.fixture(scope="module")
def codes(bench, feats):
    """Base codes per mode, made once: the library's PCA (a 1280x1280 eigh) takes seconds on a loaded CPU, many
    more when BLAS's threads contend with others (one thread here, and FAISS's k-means on one too)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(1, user_api="blas"), bench.faiss_threads(1):
        return {mode: bench.base_codes(feats, mode) for mode in ("1d", "2d")}


def test_realistic_base_codes_have_the_bench_layout(bench, codes):
    for mode in ("1d", "2d"):
        words, sigs = codes[mode]
        assert sorted(words) == sorted(sigs) == sorted(bench.TYPES[mode])
        for t in bench.TYPES[mode]:
            assert words[t].shape == (N_BASE, bench.P) and words[t].dtype == np.int32
            assert words[t].min() >= 0 and words[t].max() < bench.K
            assert sigs[t].shape == (N_BASE, bench.DIM) and sigs[t].dtype == np.float32
            np.testing.assert_allclose(np.linalg.norm(sigs[t], axis=1), 1.0, rtol=1e-5)


def test_replicas_of_one_photo_share_most_words_and_a_close_signature(bench, codes):
    base = codes["1d"]
    rng = np.random.default_rng(0)
    n = 200
    words, sigs, q_words, q_sigs, source = bench.realistic_collection(rng, n, "1d", 10, base)
    w, s = words["a"], sigs["a"]
    assert w.shape == (n, bench.P) and w.dtype == np.int32 and s.shape == (n, bench.DIM)
    assert w.max() < bench.K and set(np.unique(w)) <= set(np.unique(base[0]["a"]))
    same = np.mean(w[0::N_BASE][:-1] == w[0::N_BASE][1:])  # replicas of photo 0, position by position
    assert same > 0.55  # (1 - 0.2)^2 = 0.64 expected
    cos_same = float(np.mean(np.sum(s[0::N_BASE][:-1] * s[0::N_BASE][1:], axis=1)))
    cos_other = float(np.mean(np.sum(s[0::N_BASE] * s[1::N_BASE], axis=1)))
    assert cos_same > 0.85 and cos_same > cos_other + 0.05
    # queries: noisy copies of the collection images they come from
    assert q_words["a"].shape == (10, bench.P) and q_sigs["a"].shape == (10, bench.DIM)
    assert np.all(np.sum(q_sigs["a"] * s[source], axis=1) > 0.8)


def test_realistic_bench_row_runs_end_to_end(bench, codes, cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "set_up_process", lambda threads: None)  # FAISS threads, malloc: process-wide
    monkeypatch.setattr(bench, "base_codes", lambda feats, mode: codes[mode])  # features: from the cache
    argv = ["--data", "realistic", "--realistic-images", str(N_BASE), "--realistic-cache", str(cache)]
    argv += [
        "--sizes",
        "1000",
        "--modes",
        "1d",
        "--queries",
        "10",
        "--json",
        "--out",
        str(tmp_path / "r.json"),
    ]
    assert bench.main(argv) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["images"], r["mode"], r["data"]) for r in rows] == [(1000, "1d", "realistic")]
    row = rows[0]
    assert row["bytes_per_image"] == row["published_bytes_per_image"] == 2104
    assert row["batch_equals_single"] and 0 < row["candidates_frac"] <= 1
    assert row["votes_signature"]["top1_is_source"] >= 0.5
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["meta"]["data"] == "realistic" and saved["runs"][0]["data"] == "realistic"
