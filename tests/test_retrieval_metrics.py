"""Retrieval protocols on hand-computed cases, and the ground truth readers on fixtures in official layouts.

Every expected value is derived in the comments next to it, with the trapezoid rule of the Oxford / Holidays /
revisitop code: a positive at 0-based position p (junk removed) after j earlier positives adds
(j/p + (j+1)/(p+1)) / (2 n_pos), j/p read as 1 when p = 0.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from imagexplore.errors import DataError
from imagexplore.retrieval.datasets import (
    holidays_groups,
    index_of,
    read_oxford_paris_gt,
    read_revisited_gnd,
    ukbench_groups,
)
from imagexplore.retrieval.metrics import (
    average_precision,
    average_precision_holidays,
    mean_average_precision,
    revisited_map,
    ukbench_ns_score,
)


def _oxford_loop_ap(ranking, positives, junk):
    """Independent transcription of the loop in Oxford's compute_ap.cpp (walks recall/precision per item)."""
    old_recall, old_precision, ap, hits, seen = 0.0, 1.0, 0.0, 0, 0
    for item in ranking:
        if item in junk:
            continue
        hits += item in positives
        recall, precision = hits / len(positives), hits / (seen + 1)
        ap += (recall - old_recall) * (old_precision + precision) / 2
        old_recall, old_precision, seen = recall, precision, seen + 1
    return ap


# --- average precision --------------------------------------------------------------------------------------


def test_ap_trapezoid_positives_at_ranks_1_and_3():
    # Positions 0 and 2 of 5, n_pos = 2:
    #   p=0, j=0: (1 + 1/1) = 2;  p=2, j=1: (1/2 + 2/3) = 7/6  →  AP = (2 + 7/6) / 4 = 19/24.
    assert average_precision([7, 3, 9, 1, 2], positives=[7, 9]) == pytest.approx(19 / 24)
    # The same ranking as numpy and as names.
    assert average_precision(np.array([7, 3, 9, 1, 2]), np.array([9, 7])) == pytest.approx(19 / 24)
    assert average_precision(["a", "b", "c", "d", "e"], ["a", "c"]) == pytest.approx(19 / 24)


def test_ap_differs_from_sklearn_non_interpolated():
    # scikit-learn's AP is the non-interpolated mean of precision at each positive: (1/1 + 2/3) / 2 = 5/6.
    # The benchmarks' trapezoid gives 19/24 (above); the two must not be confused when comparing numbers.
    y_true = [1, 0, 1, 0, 0]
    sk = average_precision_score(y_true, [5, 4, 3, 2, 1])
    assert sk == pytest.approx(5 / 6)
    assert average_precision([0, 1, 2, 3, 4], positives=[0, 2]) == pytest.approx(19 / 24)
    assert sk != pytest.approx(19 / 24)


def test_ap_matches_the_oxford_loop_on_random_rankings():
    rng = np.random.default_rng(0)
    for _ in range(50):
        ranking = rng.permutation(40)
        chosen = rng.permutation(40)
        positives, junk = set(chosen[:5].tolist()), set(chosen[5:9].tolist())
        cut = int(rng.integers(5, 41))  # top-k lists too
        expected = _oxford_loop_ap(ranking[:cut].tolist(), positives, junk)
        assert average_precision(ranking[:cut], list(positives), list(junk)) == pytest.approx(expected)


def test_ap_junk_is_removed_before_ranking():
    # Without junk: positives 11, 13 at positions 2, 4 → (0/2 + 1/3) + (1/4 + 2/5) = 59/60 → AP = 59/240.
    ranking = [10, 99, 11, 12, 13]
    assert average_precision(ranking, [11, 13]) == pytest.approx(59 / 240)
    # 99 as junk: [10, 11, 12, 13] → positions 1, 3 → (0 + 1/2) + (1/3 + 2/4) = 4/3 → AP = 1/3.
    assert average_precision(ranking, [11, 13], junk=[99]) == pytest.approx(1 / 3)


def test_ap_missing_positives_count_as_not_retrieved():
    # Positive 7 is not in the top-3 list: only position 0 adds (1 + 1) / (2·2) → AP = 1/2.
    assert average_precision([1, 2, 3], [1, 7]) == pytest.approx(1 / 2)
    # Full ranking: 7 at position 3 adds (1/3 + 2/4) = 5/6 → (2 + 5/6) / 4 = 17/24 (the upper value).
    assert average_precision([1, 2, 3, 7], [1, 7]) == pytest.approx(17 / 24)
    assert average_precision([4, 5], [1]) == 0.0


def test_holidays_ap_skips_the_query_wherever_it_is_ranked():
    positives = ["100001.jpg", "100002.jpg"]
    # Query removed: [100002, 200000, 100001] → positions 0, 2 → 19/24 as in the first test.
    for ranking in (
        ["100000.jpg", "100002.jpg", "200000.jpg", "100001.jpg"],
        ["100002.jpg", "200000.jpg", "100000.jpg", "100001.jpg"],
        ["100002.jpg", "200000.jpg", "100001.jpg"],
    ):
        assert average_precision_holidays(ranking, positives, "100000.jpg") == pytest.approx(19 / 24)


def test_mean_average_precision():
    # Query 0: 19/24 (first test). Query 1: junk 99 removed → 1/3 (junk test). Mean (19/24 + 8/24) / 2 = 9/16.
    rankings = [[7, 3, 9, 1, 2], [10, 99, 11, 12, 13]]
    assert mean_average_precision(rankings, [[7, 9], [11, 13]], [[], [99]]) == pytest.approx(9 / 16)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: average_precision([1, 2], []), "no positives"),
        (lambda: average_precision([1, 2, 1], [1]), "more than once"),
        (lambda: average_precision([1, 2], ["1"]), "mixes database indices and image names"),
        (lambda: average_precision([1, 2], [1], junk=[1]), "both a positive and junk"),
        (lambda: average_precision([0.5, 1.0], [1]), "integers"),
        (lambda: mean_average_precision([[1]], [[1], [2]]), "one per query"),
        (lambda: mean_average_precision([[1], [2]], [[1], []]), "query 1 has no positives"),
    ],
)
def test_ap_user_errors(call, message):
    with pytest.raises(DataError, match=message):
        call()


# --- UKBench ------------------------------------------------------------------------------------------------


def test_ukbench_ns_two_groups_of_four():
    group_of = [0, 0, 0, 0, 1, 1, 1, 1]
    # Same-group images among each top 4 (the query itself counts):
    rankings = [
        [0, 1, 2, 3, 4, 5],  # q0: 0,1,2,3        → 4
        [1, 4, 0, 5],  # q1: 1,0             → 2
        [4, 5, 6, 7, 2],  # q2: none           → 0
        [3, 2, 4, 1],  # q3: 3,2,1           → 3
        [4, 5, 6, 7],  # q4: all             → 4
        [0, 1, 5, 2],  # q5: 5               → 1
        [6, 7, 0, 1],  # q6: 6,7             → 2
        [7, 4, 5, 3],  # q7: 7,4,5           → 3
    ]
    # (4 + 2 + 0 + 3 + 4 + 1 + 2 + 3) / 8 = 19/8.
    assert ukbench_ns_score(rankings, group_of) == pytest.approx(19 / 8)
    # Same through UKBench names: groups from the file names and a name → group mapping.
    names = [f"ukbench{i:05d}.jpg" for i in range(8)]
    groups = ukbench_groups(names)
    np.testing.assert_array_equal(groups, group_of)
    by_name = dict(zip(names, groups.tolist()))
    named = [[names[i] for i in r] for r in rankings]
    assert ukbench_ns_score(named, by_name, queries=names) == pytest.approx(19 / 8)


def test_ukbench_errors():
    with pytest.raises(DataError, match="fewer than 4"):
        ukbench_ns_score([[0, 1, 2]], [0, 0, 0, 0])
    with pytest.raises(DataError, match="repeats"):
        ukbench_ns_score([[0, 1, 1, 2]], [0, 0, 0, 0])
    with pytest.raises(DataError, match="outside"):
        ukbench_ns_score([[0, 1, 2, 9]], [0, 0, 0, 0])
    with pytest.raises(DataError, match="give queries"):
        ukbench_ns_score([["a", "b", "c", "d"]], {"a": 0, "b": 0, "c": 0, "d": 0})
    with pytest.raises(DataError, match="not a UKBench image name"):
        ukbench_groups(["image0.jpg"])


# --- revisited protocol -------------------------------------------------------------------------------------


def test_revisited_easy_medium_hard_by_hand():
    gnd = [
        {"easy": [0, 1], "hard": [2], "junk": [3]},  # query A
        {"easy": [5], "hard": [], "junk": []},  # query B: no hard positive → left out of Hard
    ]
    rankings = np.array([[3, 2, 4, 0, 5, 1, 6, 7], [5, 0, 1, 2, 3, 4, 6, 7]])
    got = revisited_map(rankings, gnd, kappas=(1, 2, 5))
    # A, Easy (pos {0,1}, junk {3,2}): [4,0,5,1,6,7] → positions 1, 3 → (0 + 1/2) + (1/3 + 2/4) = 4/3
    #   → AP 1/3.
    #   mP: 1-based positives [2, 4], last 4 → @1: 0/1, @2: 1/2, @5: cap 4 → 2/4.
    # A, Medium (pos {0,1,2}, junk {3}): [2,4,0,5,1,6,7] → positions 0, 2, 4
    #   → 2 + (1/2 + 2/3) + (2/4 + 3/5) = 64/15 → AP 64/90 = 32/45.  mP: [1,3,5] → @1: 1, @2: 1/2, @5: 3/5.
    # A, Hard (pos {2}, junk {3,0,1}): [2,4,5,6,7] → position 0 → AP 1.  mP: cap 1 → 1, 1, 1 (not 1/2 at @2).
    # B: Easy and Medium: position 0 → AP 1, mP 1, 1, 1.  Hard: skipped.
    expected = {
        "easy": (1 / 3 + 1) / 2,
        "medium": (32 / 45 + 1) / 2,
        "hard": 1.0,
        "easy_mp@1": (0 + 1) / 2,
        "easy_mp@2": (1 / 2 + 1) / 2,
        "easy_mp@5": (2 / 4 + 1) / 2,
        "medium_mp@1": 1.0,
        "medium_mp@2": (1 / 2 + 1) / 2,
        "medium_mp@5": (3 / 5 + 1) / 2,
        "hard_mp@1": 1.0,
        "hard_mp@2": 1.0,
        "hard_mp@5": 1.0,
    }
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key


def test_revisited_top_k_list():
    # Ranking [4, 0] of a bigger database; easy {0, 1}, hard {7}.
    # Easy (junk {7}): 0 at position 1, 1 missing → (0 + 1/2) / (2·2) = 1/8; mP@1 = 0, mP@5 = 1/5 (the missing
    # positive counts as ranked after the list, so the cap is k itself).
    # Medium (positives {0, 1, 7}): the same single hit over 3 positives → (1/2) / (2·3) = 1/12.
    # Hard (junk {0, 1}): [4] → AP 0, mP 0.
    got = revisited_map([[4, 0]], [{"easy": [0, 1], "hard": [7], "junk": []}], kappas=(1, 5))
    assert got["easy"] == pytest.approx(1 / 8)
    assert got["easy_mp@1"] == 0.0 and got["easy_mp@5"] == pytest.approx(1 / 5)
    assert got["medium"] == pytest.approx(1 / 12)
    assert got["hard"] == 0.0 and got["hard_mp@5"] == 0.0


def test_revisited_errors():
    with pytest.raises(DataError, match="no query has positives in the hard setup"):
        revisited_map([[0, 1]], [{"easy": [0], "hard": [], "junk": []}])
    with pytest.raises(DataError, match="no 'hard' list"):
        revisited_map([[0, 1]], [{"easy": [0], "junk": []}])
    with pytest.raises(DataError, match="kappas"):
        revisited_map([[0, 1]], [{"easy": [0], "hard": [1], "junk": []}], kappas=(0,))


# --- ground truth readers -----------------------------------------------------------------------------------


def test_holidays_groups_from_names():
    names = [
        "200003.jpg",
        "jpg/100001.jpg",
        "100100.jpg",
        "100000.jpg",
        "200000.jpg",
        "100101.jpg",
        "100002.jpg",
    ]
    queries, positives = holidays_groups(names)
    assert queries == ["100000.jpg", "100100.jpg", "200000.jpg"]
    assert positives == [["jpg/100001.jpg", "100002.jpg"], ["100101.jpg"], ["200003.jpg"]]
    with pytest.raises(DataError, match="no query image 100100"):
        holidays_groups(["100000.jpg", "100001.jpg", "100101.jpg"])
    with pytest.raises(DataError, match="only its query"):
        holidays_groups(["100000.jpg"])
    with pytest.raises(DataError, match="not a Holidays image name"):
        holidays_groups(["holiday_1.jpg"])


def _write(path, text):
    path.write_text(text, encoding="utf-8")


def test_oxford_paris_gt_files(tmp_path):
    _write(tmp_path / "all_souls_1_query.txt", "oxc1_all_souls_000013 136.5 34.1 648.5 955.7\n")
    _write(tmp_path / "all_souls_1_good.txt", "all_souls_000013\nall_souls_000026\n")
    _write(tmp_path / "all_souls_1_ok.txt", "oxford_003410\n")
    _write(tmp_path / "all_souls_1_junk.txt", "all_souls_000051\n")
    _write(tmp_path / "defense_1_query.txt", "paris_defense_000605 1 2 3 4\n")
    _write(tmp_path / "defense_1_good.txt", "paris_defense_000605\n")
    _write(tmp_path / "defense_1_ok.txt", "")
    _write(tmp_path / "defense_1_junk.txt", "")
    oxford, paris = read_oxford_paris_gt(tmp_path)
    assert (oxford.name, oxford.image, oxford.box) == (
        "all_souls_1",
        "all_souls_000013",
        (136.5, 34.1, 648.5, 955.7),
    )
    assert oxford.positives == ("all_souls_000013", "all_souls_000026", "oxford_003410")
    assert oxford.junk == ("all_souls_000051",)
    assert (paris.image, paris.box, paris.positives) == (
        "paris_defense_000605",
        (1, 2, 3, 4),
        ("paris_defense_000605",),
    )
    # Names straight into the metric. Oxford query, junk removed: [000013, x, 003410, 000026]
    # → positions 0, 2, 3 → 2 + (1/2 + 2/3) + (2/3 + 3/4) = 55/12 → AP 55/72.  Paris: position 0 → AP 1.
    rankings = [
        ["all_souls_000013", "all_souls_000051", "x", "oxford_003410", "all_souls_000026"],
        ["paris_defense_000605", "x"],
    ]
    got = mean_average_precision(
        rankings, [q.positives for q in (oxford, paris)], [q.junk for q in (oxford, paris)]
    )
    assert got == pytest.approx((55 / 72 + 1) / 2)
    # Names → database indices for an index that ranks by position.
    np.testing.assert_array_equal(index_of(oxford.junk, ["x", "all_souls_000051"]), [1])
    with pytest.raises(DataError, match="not in the database"):
        index_of(["y"], ["x"])
    (tmp_path / "defense_1_ok.txt").unlink()
    with pytest.raises(DataError, match="defense_1_ok.txt is missing"):
        read_oxford_paris_gt(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no \\*_query.txt"):
        read_oxford_paris_gt(empty)


def test_oxford_bad_query_line(tmp_path):
    _write(tmp_path / "a_1_query.txt", "oxc1_a_000001 1 2 three 4\n")
    with pytest.raises(DataError, match="not four numbers"):
        read_oxford_paris_gt(tmp_path)
    with pytest.raises(DataError, match="not a folder"):
        read_oxford_paris_gt(tmp_path / "missing")


def _revisited_fixture():
    return {
        "imlist": [f"img_{i}" for i in range(8)],
        "qimlist": ["img_0", "img_5"],
        "gnd": [
            {"bbx": [1.0, 2.0, 30.0, 40.0], "easy": [0, 1], "hard": [2], "junk": [3]},
            {"bbx": np.array([0.0, 0.0, 5.0, 5.0]), "easy": np.array([5]), "hard": [], "junk": []},
        ],
    }


def test_revisited_pickle_roundtrip(tmp_path):
    path = tmp_path / "gnd_roxford5k.pkl"
    path.write_bytes(pickle.dumps(_revisited_fixture()))
    gt = read_revisited_gnd(path)
    assert gt.imlist[3] == "img_3" and gt.qimlist == ["img_0", "img_5"]
    np.testing.assert_array_equal(gt.gnd[0]["bbx"], [1, 2, 30, 40])
    np.testing.assert_array_equal(gt.gnd[1]["easy"], [5])
    assert gt.gnd[1]["hard"].dtype == np.int64
    # Same gnd and rankings as the hand-computed revisited test: Medium = (32/45 + 1) / 2.
    rankings = [[3, 2, 4, 0, 5, 1, 6, 7], [5, 0, 1, 2, 3, 4, 6, 7]]
    assert revisited_map(rankings, gt.gnd)["medium"] == pytest.approx((32 / 45 + 1) / 2)


class _Exploit:
    def __reduce__(self):
        return (os.getcwd, ())


def test_revisited_pickle_errors(tmp_path):
    path = tmp_path / "gnd_rparis6k.pkl"
    with pytest.raises(DataError, match="not found"):
        read_revisited_gnd(path)
    path.write_bytes(pickle.dumps({"imlist": [], "qimlist": [], "gnd": [_Exploit()]}))
    with pytest.raises(DataError, match="refusing to unpickle"):
        read_revisited_gnd(path)
    path.write_bytes(pickle.dumps(_revisited_fixture())[:40])
    with pytest.raises(DataError, match="cannot read revisited ground truth"):
        read_revisited_gnd(path)
    damaged = _revisited_fixture()
    damaged["gnd"][0]["junk"] = [8]
    path.write_bytes(pickle.dumps(damaged))
    with pytest.raises(DataError, match="indices into imlist"):
        read_revisited_gnd(path)
    path.write_bytes(pickle.dumps({"imlist": []}))
    with pytest.raises(DataError, match="not a revisited gnd file"):
        read_revisited_gnd(path)
