"""Retrieval scores of the standard benchmarks, each computed the way its official evaluation code does.

Published numbers are only comparable when the definition matches, and the benchmarks do not use the textbook
(non-interpolated, scikit-learn) average precision:

- Oxford5k / Paris6k (``compute_ap.cpp``), INRIA Holidays (``eval_holidays.py``) and the revisited
  ROxford / RParis protocol (revisitop / cirtorch ``compute_ap``) all integrate precision over recall with the
  **trapezoid rule**: a positive found at 0-based position ``p`` (junk taken out) after ``j`` earlier
  positives adds ``(j / p + (j + 1) / (p + 1)) / (2 · n_pos)``, with ``j / p`` read as 1 when ``p = 0``.
- Holidays ignores the query image wherever it appears in its own ranking (it is junk, not a positive).
- UKBench reports the N-S score: same-group images among the top 4, the query itself included.

Rankings are given per query as 1-D sequences (a numpy row, a list) of database indices or of image names,
best first; ground truth must use the same kind. A ranking may be shorter than the database (a top-k list):
positives it does not contain count as never retrieved and add nothing, so a top-k AP is a lower bound of the
full-ranking AP, equal to it when every positive is inside the list. Scores are fractions (0..1, N-S 0..4),
not percentages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from imagexplore.errors import DataError

# Revisited protocol: which gnd lists are positives and which are ignored (junk) in each setup.
_REVISITED_SETUPS = {
    "easy": (("easy",), ("junk", "hard")),
    "medium": (("easy", "hard"), ("junk",)),
    "hard": (("hard",), ("junk", "easy")),
}

NS_TOP = 4  # UKBench: the N-S score looks at the first four results, the size of a group


def _ids(values, what: str) -> np.ndarray:
    """Validated 1-D array of database indices (int64) or image names (str)."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise DataError(
            f"{what} must be a flat list of database indices or image names, got shape {arr.shape}"
        )
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "U":
        return arr
    raise DataError(f"{what} must hold database indices (integers) or image names (strings), not {arr.dtype}")


def _ranking(values, what: str) -> np.ndarray:
    """A ranking with each item at most once: a repeated positive would be counted twice by the protocols."""
    arr = _ids(values, what)
    ordered = np.sort(arr)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if repeated.size:
        raise DataError(f"{what} lists {repeated[0]!r} more than once: give each database item at most once")
    return arr


def _same_kind(ranking: np.ndarray, other: np.ndarray, what: str) -> None:
    """Indices compared with names would silently match nothing and score 0."""
    if ranking.size and other.size and (ranking.dtype.kind == "U") != (other.dtype.kind == "U"):
        raise DataError(
            f"{what} mixes database indices and image names: give both as indices or both as names"
        )


def _query_positions(ranking: np.ndarray, positives, junk, what: str) -> tuple[np.ndarray, int]:
    """0-based positions of the retrieved positives once junk is out of the ranking; number of positives."""
    pos_ids = np.unique(_ids(positives, f"positives of {what}"))
    junk_ids = np.unique(_ids(junk, f"junk of {what}"))
    _same_kind(ranking, pos_ids, f"{what} with its positives")
    _same_kind(ranking, junk_ids, f"{what} with its junk")
    both = np.intersect1d(pos_ids, junk_ids)
    if both.size:
        raise DataError(f"{what}: {both[0]!r} is both a positive and junk; fix the ground truth")
    if junk_ids.size:
        ranking = ranking[~np.isin(ranking, junk_ids)]
    return np.flatnonzero(np.isin(ranking, pos_ids)), int(pos_ids.size)


def _trapezoid_ap(positions: np.ndarray, n_pos: int) -> float:
    """Area under the precision-recall steps with the trapezoid rule (Oxford ``compute_ap`` / Holidays)."""
    found_before = np.arange(positions.size)
    left = np.divide(found_before, positions, out=np.ones(positions.size), where=positions > 0)
    right = (found_before + 1) / (positions + 1)
    return float((left + right).sum() / (2 * n_pos))


def _revisited_precision(positions: np.ndarray, n_pos: int, kappas: np.ndarray) -> np.ndarray:
    """revisitop's precision at k: k is capped at the rank of the last positive (so finding all positives
    early is not penalised); positives missing from a top-k list count as ranked after it, so the cap is k."""
    last = positions[-1] + 1 if positions.size == n_pos else np.iinfo(np.int64).max
    cut = np.minimum(kappas, last)
    return np.searchsorted(positions + 1, cut, side="right") / cut


def average_precision(ranked_ids, positives, junk=()) -> float:
    """AP of one query with the Oxford / Paris trapezoid rule; junk items are removed from the ranking first.

    ``positives`` missing from ``ranked_ids`` count as not retrieved. Raises `DataError` when there are no
    positives (AP is undefined) or when an item is both a positive and junk.
    """
    positions, n_pos = _query_positions(_ranking(ranked_ids, "the ranking"), positives, junk, "the ranking")
    if n_pos == 0:
        raise DataError(
            "the query has no positives, so its AP is undefined: drop the query or fix its ground truth"
        )
    return _trapezoid_ap(positions, n_pos)


def average_precision_holidays(ranked_ids, positives, query) -> float:
    """AP of one Holidays query as ``eval_holidays.py``: the query image is skipped wherever it is ranked.

    The official script uses the same trapezoid AP as Oxford (``score_ap_from_ranks_1``), not the plain
    non-interpolated AP; skipping the query is the same as treating it as junk. ``positives`` must not contain
    the query (`imagexplore.retrieval.datasets.holidays_groups` leaves it out).
    """
    return average_precision(ranked_ids, positives, junk=[query])


def mean_average_precision(
    rankings: Sequence, positives_list: Sequence, junk_list: Sequence | None = None
) -> float:
    """Mean of `average_precision` over queries (Oxford5k / Paris6k with junk; Holidays with junk = [query]).

    Every query must have positives, as in those benchmarks; the revisited protocol, which skips queries
    without positives, is `revisited_map`.
    """
    if len(rankings) != len(positives_list):
        raise DataError(
            f"got {len(rankings)} rankings but {len(positives_list)} positive lists: give one per query"
        )
    if junk_list is None:
        junk_list = [()] * len(rankings)
    elif len(junk_list) != len(rankings):
        raise DataError(f"got {len(rankings)} rankings but {len(junk_list)} junk lists: give one per query")
    if not len(rankings):
        raise DataError("no queries to evaluate: give at least one ranking")
    aps = []
    for i, (ranking, positives, junk) in enumerate(zip(rankings, positives_list, junk_list)):
        what = f"the ranking of query {i}"
        positions, n_pos = _query_positions(_ranking(ranking, what), positives, junk, what)
        if n_pos == 0:
            raise DataError(
                f"query {i} has no positives, so its AP is undefined: drop it or fix its ground truth"
            )
        aps.append(_trapezoid_ap(positions, n_pos))
    return float(np.mean(aps))


def _groups(group_of, ids: np.ndarray, what: str) -> np.ndarray:
    """Group of each id: ``group_of`` maps names (a mapping) or database indices (an array) to groups."""
    if isinstance(group_of, Mapping):
        try:
            return np.asarray([group_of[x] for x in ids.ravel().tolist()]).reshape(ids.shape)
        except KeyError as exc:
            raise DataError(f"{what}: {exc.args[0]!r} has no group in group_of") from None
    table = np.asarray(group_of)
    if ids.dtype.kind != "i":
        raise DataError(f"{what} holds image names: give group_of as a mapping from name to group")
    if ids.size and (ids.min() < 0 or ids.max() >= table.size):
        raise DataError(f"{what} holds database indices outside 0..{table.size - 1} (the size of group_of)")
    return table[ids]


def ukbench_ns_score(rankings: Sequence, group_of, queries: Sequence | None = None) -> float:
    """UKBench N-S score: mean number of the query's group among the first four results (max 4.0).

    The query is part of the database and counts when it is retrieved, as in the benchmark. ``group_of`` maps
    a database index (array, e.g. `datasets.ukbench_groups`) or an image name (mapping) to its group.
    ``queries`` gives each ranking's query; by default ranking ``i`` belongs to database image ``i`` (every
    image is a query), which needs index rankings.
    """
    if not len(rankings):
        raise DataError("no queries to evaluate: give at least one ranking")
    if queries is None:
        if isinstance(group_of, Mapping):
            raise DataError("give queries (the query image names) when group_of is a mapping from names")
        queries = np.arange(len(rankings))
    query_ids = _ids(queries, "queries")
    if query_ids.size != len(rankings):
        raise DataError(
            f"got {len(rankings)} rankings but {query_ids.size} queries: give one query per ranking"
        )
    heads = [_ids(r, f"the ranking of query {i}")[:NS_TOP] for i, r in enumerate(rankings)]
    short = [i for i, head in enumerate(heads) if head.size < NS_TOP]
    if short:
        raise DataError(
            f"the ranking of query {short[0]} has fewer than {NS_TOP} results: N-S needs the top {NS_TOP}"
        )
    top = np.stack(heads)
    ordered = np.sort(top, axis=1)
    repeated = np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1))
    if repeated.size:
        raise DataError(f"the ranking of query {repeated[0]} repeats an image in its top {NS_TOP}")
    _same_kind(top.ravel(), query_ids, "the rankings with the queries")
    same = _groups(group_of, top, "the rankings") == _groups(group_of, query_ids, "queries")[:, None]
    return float(same.sum(axis=1).mean())


def revisited_map(
    rankings: Sequence, gnd: Sequence[Mapping], kappas: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """ROxford5k / RParis6k scores of the revisited protocol (revisitop ``compute_map``, three setups).

    ``gnd`` is the pickle's per-query list (``easy``, ``hard``, ``junk``: database indices). Easy: positives =
    easy, junk = junk + hard; Medium: positives = easy + hard, junk = junk; Hard: positives = hard, junk =
    junk + easy. Queries without positives in a setup are left out of that setup's means. Returns ``easy``,
    ``medium``, ``hard`` (mAP) and ``<setup>_mp@<k>``: mean precision at k with junk removed and, as revisitop
    does, k capped at the rank of the query's last positive.
    """
    if len(rankings) != len(gnd):
        raise DataError(
            f"got {len(rankings)} rankings but {len(gnd)} gnd entries: give one ranking per query"
        )
    ks = np.asarray(kappas)
    if ks.ndim != 1 or ks.dtype.kind not in "iu" or (ks < 1).any():
        raise DataError(f"kappas must be positive integers, got {list(kappas)}")
    ranked = [_ranking(r, f"the ranking of query {i}") for i, r in enumerate(rankings)]
    lists = [{key: _gnd_list(g, key, i) for key in ("easy", "hard", "junk")} for i, g in enumerate(gnd)]
    result: dict[str, float] = {}
    for setup, (positive_keys, junk_keys) in _REVISITED_SETUPS.items():
        aps, precisions = [], []
        for i, (ranking, g) in enumerate(zip(ranked, lists)):
            positives = np.concatenate([g[key] for key in positive_keys])
            junk = np.concatenate([g[key] for key in junk_keys])
            positions, n_pos = _query_positions(ranking, positives, junk, f"the ranking of query {i}")
            if n_pos:
                aps.append(_trapezoid_ap(positions, n_pos))
                precisions.append(_revisited_precision(positions, n_pos, ks))
        if not aps:
            raise DataError(f"no query has positives in the {setup} setup: check the gnd (easy / hard lists)")
        result[setup] = float(np.mean(aps))
        result.update({f"{setup}_mp@{k}": float(p) for k, p in zip(ks.tolist(), np.mean(precisions, axis=0))})
    return result


def _gnd_list(entry: Mapping, key: str, query: int) -> np.ndarray:
    """One list of a revisited gnd entry; the protocol's lists are database indices (into ``imlist``)."""
    if key not in entry:
        raise DataError(
            f"gnd entry of query {query} has no {key!r} list: expected the revisited easy/hard/junk lists"
        )
    ids = _ids(entry[key], f"gnd[{query}][{key!r}]")
    if ids.dtype.kind != "i":
        raise DataError(
            f"gnd[{query}][{key!r}] holds names: the revisited gnd lists database indices into imlist"
        )
    return ids
