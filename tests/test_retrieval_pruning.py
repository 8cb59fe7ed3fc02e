"""DeepIndex candidate pruning (issue 16) and batched scoring: max_df, burst, max_candidates, the "scale" preset,
batches bit-identical to single searches, shards bit-identical to a merged index, and the scale bench's JSON.

Small indexes are made by hand from codes (`InvertedIndex.from_codes`), so every expected score is computed here
from the formula of `imagexplore.retrieval.index.search`.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bench_modules import load_bench
from imagexplore.errors import ConfigError
from imagexplore.retrieval.index import IndexConfig, InvertedIndex, ShardedIndex
from imagexplore.retrieval.index.config import SCALE_MIN_IMAGES, SCALE_PRESET


def _unit(rng, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _coded(words: list[list[int]], k: int, sigs: np.ndarray | None = None, **options) -> InvertedIndex:
    """A 1-D index of the given word ids per image (placeholder vocabulary of ``k`` words)."""
    words = np.array(words)
    if sigs is None:
        sigs = np.tile(np.eye(4, dtype=np.float32)[0], (len(words), 1))
    cfg = IndexConfig(types=("a",), k=k, signature_dim=sigs.shape[1], **options)
    return InvertedIndex.from_codes({"a": words}, {"a": sigs}, cfg)


def _one(index: InvertedIndex, words, sig=None, k: int = 10):
    sig = np.eye(4, dtype=np.float32)[0] if sig is None else sig
    return index.search_codes({"a": np.array(words)}, {"a": sig}, k)


def test_a_word_above_max_df_is_left_out_of_the_vote():
    # df: word 0 in 3 of 4 images, word 3 in one; max_df 0.5 drops word 0 (3 > 0.5 x 4), keeps the others
    index = _coded([[0, 1], [0, 2], [0, 3], [1, 2]], k=4, scoring="votes")
    ids, _ = _one(index, [0, 3])
    assert sorted(ids.tolist()) == [0, 1, 2]
    ids, scores = _one(index.with_query_options(max_df=0.5), [0, 3])
    assert ids.tolist() == [2]
    idf0, idf3 = math.log(4 / 3), math.log(4 / 1)
    # the vote loses word 0; the norms stay those of the whole bags of words
    want = idf3**2 / (math.hypot(idf0, idf3) * math.hypot(idf0, idf3))
    assert scores[0] == pytest.approx(want, rel=1e-12)
    # at max_df 0.75 word 0 (df 3 = 0.75 x 4) stays: the unpruned result, bit for bit
    kept = _one(index.with_query_options(max_df=0.75), [0, 3])
    assert all(np.array_equal(a, b) for a, b in zip(kept, _one(index, [0, 3])))


@pytest.mark.parametrize(
    "burst, tf", [("none", lambda c: c), ("sqrt", math.sqrt), ("log", lambda c: 1 + math.log(c))]
)
def test_burst_damps_repeated_words_in_query_and_image(burst, tf):
    # image 0 holds word 0 four times and word 1 once; image 1 words 2, 3; the query word 0 twice and word 1
    index = _coded([[0, 0, 0, 0, 1], [2, 3, 2, 3, 2]], k=4, scoring="votes", burst=burst)
    ids, scores = _one(index, [0, 0, 1, 2, 3])
    idf = math.log(2)  # every word is in one of the 2 images
    vote = tf(2) * tf(4) * idf**2 + tf(1) * tf(1) * idf**2
    qnorm = idf * math.sqrt(tf(2) ** 2 + tf(1) ** 2 + tf(1) ** 2 + tf(1) ** 2)
    dnorm = idf * math.sqrt(tf(4) ** 2 + tf(1) ** 2)
    assert ids[0] == 0 and scores[0] == pytest.approx(vote / (qnorm * dnorm), rel=1e-12)
    vote1 = tf(1) * tf(3) * idf**2 + tf(1) * tf(2) * idf**2
    assert scores[1] == pytest.approx(vote1 / (qnorm * idf * math.sqrt(tf(3) ** 2 + tf(2) ** 2)), rel=1e-12)


def test_max_candidates_keeps_exactly_the_best_by_vote_ties_to_the_smaller_id():
    # votes: images 0 and 1 share both query words (tie), 2 and 3 one; image 3's signature is the query's
    rng = np.random.default_rng(0)
    sigs = _unit(rng, 4, 8)
    index = _coded([[0, 1], [0, 1], [0, 2], [1, 3]], k=4, sigs=sigs, sigma=0.1)
    query_sig = sigs[3]
    ids, _ = index.search_codes({"a": np.array([0, 1])}, {"a": query_sig}, 4)
    assert ids[0] == 3  # the signature wins without pruning
    for count, want in [(1, {0}), (2, {0, 1}), (3, {0, 1, 2})]:
        got, _ = index.with_query_options(max_candidates=count).search_codes(
            {"a": np.array([0, 1])}, {"a": query_sig}, 4
        )
        assert set(got.tolist()) == want
    # a fraction of the images, rounded up: 0.3 x 4 -> 2
    got, _ = index.with_query_options(max_candidates=0.3).search_codes(
        {"a": np.array([0, 1])}, {"a": query_sig}, 4
    )
    assert set(got.tolist()) == {0, 1}


def test_pruning_options_are_checked_and_the_scale_preset_starts_at_its_size():
    assert IndexConfig(pruning="none").pruning_for(10**9) == (None, None)
    # the preset is the default, and changes nothing below its size
    assert IndexConfig().pruning_for(SCALE_MIN_IMAGES - 1) == (None, None)
    assert IndexConfig().pruning_for(SCALE_MIN_IMAGES) == (
        SCALE_PRESET["max_df"],
        SCALE_PRESET["max_candidates"],
    )
    scale = IndexConfig(pruning="scale")
    assert scale.pruning_for(SCALE_MIN_IMAGES - 1) == (None, None)
    max_df, max_cands = scale.pruning_for(SCALE_MIN_IMAGES)
    assert max_df == SCALE_PRESET["max_df"]
    assert max_cands == SCALE_PRESET["max_candidates"]  # a count: the signature stage's cost stays flat
    assert scale.stop_words_for(SCALE_MIN_IMAGES) == "rescore"
    assert (
        scale.stop_words_for(SCALE_MIN_IMAGES - 1)
        == IndexConfig(pruning="none").stop_words_for(10**9)
        == "drop"
    )
    assert IndexConfig(pruning="scale", stop_words="drop").stop_words_for(10**9) == "drop"
    assert IndexConfig(pruning="scale", max_df=0.9, max_candidates=7).pruning_for(10**6) == (0.9, 7)
    assert IndexConfig(max_candidates=0.001).pruning_for(10) == (None, 1)
    assert IndexConfig.from_json({"max_df": 0.2, "burst": "sqrt", "max_candidates": 0.5}).burst == "sqrt"
    with pytest.raises(ConfigError, match="max_candidates"):
        IndexConfig(max_candidates=1.5)
    with pytest.raises(ConfigError, match="max_df"):
        IndexConfig(max_df=0.0)
    with pytest.raises(ConfigError, match="burst"):
        IndexConfig(burst="tfidf")
    with pytest.raises(ConfigError, match="stop_words"):
        IndexConfig(stop_words="keep")


@pytest.mark.parametrize("scoring", ["votes", "votes_signature"])
def test_rescored_stop_words_make_no_candidates_but_count_in_the_candidates_score(scoring):
    # the index of `test_a_word_above_max_df_is_left_out_of_the_vote`: word 0 (df 3 of 4) is a stop word at
    # max_df 0.5. "rescore": only word 3 makes candidates (image 2), and image 2's score is its whole tf-idf
    # cosine - word 0's vote added back - which equals the unpruned score of image 2
    index = _coded([[0, 1], [0, 2], [0, 3], [1, 2]], k=4, scoring=scoring)
    ids, scores = _one(index.with_query_options(max_df=0.5, stop_words="rescore"), [0, 3])
    assert ids.tolist() == [2]
    idf0, idf3 = math.log(4 / 3), math.log(4 / 1)
    want = (idf0**2 + idf3**2) / (
        math.hypot(idf0, idf3) * math.hypot(idf0, idf3)
    )  # = 1: the same bag of words
    assert scores[0] == pytest.approx(want, rel=1e-12)
    full_ids, full_scores = _one(index, [0, 3])
    assert scores[0] == pytest.approx(full_scores[full_ids.tolist().index(2)], rel=1e-12)
    # image 2 holds word 0 twice here: the added vote counts it twice (tf 2), damped with burst
    twice = _coded([[0, 1, 1], [0, 2, 2], [0, 3, 0], [1, 2, 2]], k=4, scoring="votes")
    for burst, tf in (("none", 2.0), ("sqrt", math.sqrt(2))):
        view = twice.with_query_options(max_df=0.5, stop_words="rescore", burst=burst)
        ids, scores = _one(view, [0, 3])
        norm_q = math.hypot(idf0, idf3)
        norm_d = math.hypot(tf * idf0, idf3)
        assert ids.tolist() == [2]
        assert scores[0] == pytest.approx((tf * idf0**2 + idf3**2) / (norm_q * norm_d), rel=1e-12)


def _zipf_codes(rng, n: int, k: int, p: int, types) -> dict[str, np.ndarray]:
    cdf = np.cumsum(1.0 / np.arange(1, k + 1))
    cdf /= cdf[-1]
    return {t: np.minimum(np.searchsorted(cdf, rng.random((n, p))), k - 1) for t in types}


@pytest.fixture(scope="module")
def random_codes():
    """Per mode a 700-image index of Zipf words (most images are candidates, as at scale), 30 queries, and
    three shards of it. Images 100-109 copy image 5 and 200-204 image 7, so scores tie exactly."""
    rng = np.random.default_rng(7)
    out = {}
    for mode, types in (("1d", ("a",)), ("2d", ("a", "b"))):
        words = _zipf_codes(rng, 700, 16, 6, types)
        sigs = {t: _unit(rng, 700, 16) for t in types}
        for t in types:
            words[t][100:110], sigs[t][100:110] = words[t][5], sigs[t][5]
            words[t][200:205], sigs[t][200:205] = words[t][7], sigs[t][7]
        q_words = {t: w[:30].copy() for t, w in words.items()}
        q_sigs = {t: s[:30].copy() for t, s in sigs.items()}
        for t in types:  # the first queries are exact copies (ties at the top), the rest have words redrawn
            q_words[t][10:, :2] = _zipf_codes(rng, 20, 16, 2, ("x",))["x"]
        cfg = IndexConfig(types=types, mode=mode, k=16, signature_dim=16)
        index = InvertedIndex.from_codes(words, sigs, cfg)
        shards = [
            InvertedIndex.from_codes(
                {t: w[lo:hi] for t, w in words.items()}, {t: s[lo:hi] for t, s in sigs.items()}, cfg
            )
            for lo, hi in [(0, 250), (250, 480), (480, 700)]
        ]
        out[mode] = index, shards, q_words, q_sigs
    return out


PRUNINGS = [
    {},
    {"max_df": 0.3},
    {"max_candidates": 40},
    {"max_candidates": 0.1, "max_df": 0.5, "burst": "sqrt"},
    {"burst": "log"},
    {"kernel": "threshold", "threshold": 0.1, "max_df": 0.4},
    {"scoring": "votes", "max_df": 0.3, "max_candidates": 25},
    {"max_df": 0.3, "stop_words": "rescore"},
    {"max_df": 0.2, "max_candidates": 40, "stop_words": "rescore", "burst": "sqrt"},
    {"scoring": "votes", "max_df": 0.3, "max_candidates": 25, "stop_words": "rescore"},
    {"scoring": "signature"},
]


@pytest.mark.parametrize("mode", ["1d", "2d"])
@pytest.mark.parametrize(
    "options", PRUNINGS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "exact"
)
def test_batches_and_shards_are_bit_identical_to_single_searches(random_codes, mode, options):
    index, shards, q_words, q_sigs = random_codes[mode]
    view = index.with_query_options(**options)
    sharded = ShardedIndex([s.with_query_options(**options) for s in shards])
    for k in (10, 300):  # 10: the BLAS pre-selection prunes; 300: most candidates reach the top k
        ids, scores = view.search_codes_batch(q_words, q_sigs, k)
        for i in range(len(ids)):
            one_ids, one_scores = view.search_codes(
                {t: w[i] for t, w in q_words.items()}, {t: s[i] for t, s in q_sigs.items()}, k
            )
            assert np.array_equal(ids[i, : one_ids.size], one_ids)
            assert np.array_equal(scores[i, : one_ids.size], one_scores)
            assert np.all(ids[i, one_ids.size :] == -1)
        got = sharded.search_codes_batch(q_words, q_sigs, k)
        assert np.array_equal(got[0], ids) and np.array_equal(got[1], scores)
    # ties: image 5's exact copy scores 5 and its 10 copies the same, listed by position
    if (
        options.get("scoring") != "votes"
        and options.get("kernel") != "threshold"
        and not options.get("max_candidates")
    ):
        ids, scores = view.search_codes_batch(q_words, q_sigs, 11)
        assert ids[5].tolist() == [5, *range(100, 110)] and np.all(scores[5] == scores[5, 0])


def test_scale_bench_json_lines_carry_the_contract(tmp_path, monkeypatch, capsys):
    """bench/bench_retrieval.py --quick --json: stdout is JSON only, one (size, mode) row a line."""
    bench = load_bench("bench_retrieval")
    monkeypatch.setattr(bench, "set_up_process", lambda threads: None)  # FAISS threads, malloc: process-wide
    argv = [
        "--quick",
        "--json",
        "--max-df",
        "0.3",
        "--max-candidates",
        "300",
        "--out",
        str(tmp_path / "r.json"),
    ]
    assert bench.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [json.loads(line) for line in lines]
    assert [(r["images"], r["mode"]) for r in rows] == [(2000, "1d"), (2000, "2d")]
    contract = {
        "images",
        "mode",
        "candidates_frac",
        "ms_single",
        "ms_batch",
        "faiss_flat_ms_single",
        "faiss_flat_ms_batch",
        "agreement_top10",
        "resident_bytes_per_image",
        "bytes_per_image",
        "faiss_ivf_nprobe",
        "faiss_ivf_ms_single",
        "faiss_ivf_ms_batch",
        "faiss_ivf_recall10",
        "faiss_ivfpq_nprobe",
        "faiss_ivfpq_ms_single",
        "faiss_ivfpq_ms_batch",
        "faiss_ivfpq_recall10",
        "votes_signature",
        "signature",
        "faiss_flat",
        "ratio_over_faiss",
    }
    for r in rows:
        assert contract <= set(r), contract - set(r)
        assert r["pruning"] == {
            "preset": "scale",
            "max_df": 0.3,
            "max_candidates": 300,
            "burst": "none",
            "stop_words": "drop",
            "active": True,
        }
        assert 0 < r["candidates_frac"] <= 300 / 2000 and 0 <= r["agreement_top10"] <= 1
        assert r["batch_equals_single"] is True
        assert r["bytes_per_image"] == {"1d": 2104, "2d": 4152}[r["mode"]]
        assert 1 <= r["faiss_ivf_nprobe"] <= r["faiss_ivf_nlist"] == round(4 * math.sqrt(2000))
    assert json.loads((tmp_path / "r.json").read_text())["runs"] == rows


def test_tune_pruning_prints_a_row_per_setting(capsys):
    """bench/tune_pruning.py on a tiny collection: one JSON row per (max_df, max_candidates, stop_words), none
    for rescoring without stop words, agreement 1 when nothing is pruned."""
    tune = load_bench("tune_pruning")
    argv = ["--sizes", "1500", "--modes", "1d", "--queries", "5", "--k", "auto"]
    argv += ["--max-df", "none", "0.05", "--max-candidates", "none", "300", "--stop-words", "drop", "rescore"]
    assert tune.main(argv) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    settings = [(r["max_df"], r["max_candidates"], r["stop_words"]) for r in rows]
    assert settings == [
        (None, None, "drop"),
        (None, 300, "drop"),
        (0.05, None, "drop"),
        (0.05, None, "rescore"),
        (0.05, 300, "drop"),
        (0.05, 300, "rescore"),
    ]
    assert rows[0]["agreement_top10"] == 1.0 and rows[0]["k"] == 1024  # auto: the floor at 1,500 images
    assert all(0 < r["candidates_frac"] <= 1 and r["ms_batch"] > 0 for r in rows)


def test_pruning_with_a_far_too_small_vocabulary_warns_once_built(caplog):
    """k: auto would give at least 1,024 words; 16 words (64x fewer) under a candidate cut warn at build and load
    time (the preset at 1M with k 1,024 kept 0.862 of the exact top 10, docs/benchmarks.md); 64 words, or no
    cut, do not."""
    from imagexplore.retrieval.index.inverted import vocabulary_advice

    rng = np.random.default_rng(3)
    words = {"a": rng.integers(0, 16, size=(700, 6))}
    sigs = {"a": _unit(rng, 700, 16)}

    def built(k: int, **options) -> InvertedIndex:
        cfg = IndexConfig(types=("a",), k=k, signature_dim=16, **options)
        return InvertedIndex.from_codes(words, sigs, cfg)

    caplog.set_level("WARNING", logger="imagexplore.retrieval.index.inverted")
    small = built(16, max_candidates=50)
    assert "k=16 (a)" in vocabulary_advice(small) and "k: auto would give 1,024" in caplog.text
    caplog.clear()
    assert vocabulary_advice(built(64, max_candidates=50)) is None
    assert vocabulary_advice(built(16)) is None  # 700 images: the default preset prunes nothing yet
    assert caplog.text == ""


def test_best_of_keeps_the_top_k_set_ties_to_the_smaller_id():
    from imagexplore.retrieval.index.search import best_of, top_k

    rng = np.random.default_rng(3)
    for _ in range(50):
        n = int(rng.integers(1, 300))
        ids = rng.permutation(1000)[:n]
        scores = rng.integers(0, 6, n).astype(np.float64)  # few distinct values: many ties at the cut
        for k in (1, 7, n // 2 + 1, n, n + 3):
            got_ids, got_scores = best_of(ids, scores, k)
            want_ids, want_scores = top_k(ids, scores, k)
            assert sorted(got_ids.tolist()) == sorted(want_ids.tolist())
            assert np.array_equal(np.sort(got_scores), np.sort(want_scores))


@pytest.mark.parametrize("burst", ["none", "sqrt", "log"])
def test_stop_votes_by_count_columns_equal_the_forward_rows_and_a_naive_sum(random_codes, monkeypatch, burst):
    """`_stop_votes` reads the stop lists' count columns (`Part.stop_columns`) up to `_STOP_COLUMNS` stop lists,
    else the candidates' forward rows: both give, within float rounding, the naive sum over the stop lists the
    query matches of its weight (query tf x idf^2, damped) times the candidate's damped count in the list."""
    from imagexplore.retrieval.index import search
    from imagexplore.retrieval.index.postings import damp_tf
    from imagexplore.retrieval.index.search import Part, Snapshot

    index, _, q_words, q_sigs = random_codes["1d"]
    view = index.with_query_options(max_df=0.2, stop_words="rescore", burst=burst)
    encoded = view._encode_codes(q_words, q_sigs, batched=True)
    part = Snapshot.of_collection(view._data).parts[0]
    postings, n = part.data.postings, len(part.data.images)
    cands = np.random.default_rng(0).permutation(n)[:300]
    by_columns = [view._stop_votes(part, cands, encoded, i, 0.2, n) for i in range(30)]
    columns = part.stop_columns(0.2 * n)
    assert columns is not None and columns.counts.dtype == np.uint8
    assert columns.lists.tolist() == np.flatnonzero(postings.df > 0.2 * n).tolist()
    monkeypatch.setattr(search, "_STOP_COLUMNS", 0)  # too many stop lists: the forward rows
    rows_part = Part(part.data, part.idf, part.df, 0, part.norms)
    by_rows = [view._stop_votes(rows_part, cands, encoded, i, 0.2, n) for i in range(30)]
    assert rows_part.stops == {0.2 * n: None}
    matched = 0
    for i, (got, other) in enumerate(zip(by_columns, by_rows)):
        naive = np.zeros(cands.size)
        for key, qcount in zip(encoded.keys[i], encoded.counts[i]):
            j = np.searchsorted(postings.keys, key)
            if j == postings.keys.size or postings.keys[j] != key or postings.df[j] <= 0.2 * n:
                continue
            ids = postings.ids[postings.offsets[j] : postings.offsets[j + 1]]
            counts = np.array([np.sum(ids == c) for c in cands])
            tf = np.where(counts > 0, damp_tf(np.maximum(counts, 1), burst), 0.0)
            naive += float(damp_tf(np.array([qcount]), burst)[0]) * part.idf[j] ** 2 * tf
        if got is None:
            assert other is None and not naive.any()
            continue
        matched += 1
        np.testing.assert_allclose(got, naive, rtol=1e-12, atol=0)
        np.testing.assert_allclose(other, naive, rtol=1e-12, atol=0)
    assert matched >= 10


def test_stop_columns_widen_for_an_image_that_repeats_a_word_often():
    """A byte an image holds counts up to 255: an image with 300 patches of one stop word widens its column to
    uint16, and the candidate's stop vote is that word's weight times 300."""
    from imagexplore.retrieval.index.search import Snapshot

    rng = np.random.default_rng(3)
    words = rng.integers(1, 2000, (40, 300))  # each of these in ~14 % of the images
    words[:30, :5] = 0  # word 0 in 30 of 40 images: a stop word at max_df 0.5
    words[3] = 0  # image 3 is word 0 alone, 300 times
    view = _coded(words.tolist(), 2000).with_query_options(max_df=0.5, stop_words="rescore")
    encoded = view._encode_codes(
        {"a": np.array([0, 1])}, {"a": np.eye(4, dtype=np.float32)[0]}, batched=False
    )
    part = Snapshot.of_collection(view._data).parts[0]
    votes = view._stop_votes(part, np.array([3, 35]), encoded, 0, 0.5, 40)
    columns = part.stop_columns(0.5 * 40)
    assert columns.counts.dtype == np.uint16 and columns.lists.tolist() == [0]
    weight = part.idf[0] ** 2  # the query holds word 0 once
    assert votes.tolist() == [weight * 300, 0.0]  # image 35 lacks word 0
