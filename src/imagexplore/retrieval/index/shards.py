"""`ShardedIndex`: several `InvertedIndex` shards (built with shared vocabularies) searched in place as one.

Global df/idf and each shard's document norms under it are computed once, then every query is scored shard by
shard and the top-k lists merged: the same results, bit for bit, as `InvertedIndex.merge` of the shards, pruning
included (``max_df`` compares the global df with the total image count; ``max_candidates`` keeps the best
candidates over all shards together, before any shard's signature stage).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from imagexplore.retrieval.index.collection import Collection
from imagexplore.retrieval.index.config import IndexConfig
from imagexplore.retrieval.index.inverted import InvertedIndex, check_shards
from imagexplore.retrieval.index.postings import idf_weights
from imagexplore.retrieval.index.search import EncodedQueries, Part, Searcher, Snapshot, best_of


class ShardedIndex(Searcher):
    """Several `InvertedIndex` shards searched as one merged index (positions concatenated in shard order).

    Global df/idf (df adds up across shards) and every shard's document norms under it are computed once here;
    a query is then scored shard by shard and the top-k lists merged, with results bit-identical to
    `InvertedIndex.merge(shards)` without copying the shards. It holds the shards' data as it is now (images
    `add`-ed to a shard later do not show) and scores queries with the first shard's options (`config`).
    """

    def __init__(self, shards: Sequence[InvertedIndex]):
        first = check_shards(shards)
        self.config = first.config
        self.models = first.models
        parts = [s.collection for s in shards]
        all_keys, global_idf, weights = global_weights(
            [d.postings.keys for d in parts], [d.postings.df for d in parts], [len(d.images) for d in parts]
        )
        searched = []
        first_id = 0
        for data, (idf, df) in zip(parts, weights):
            searched.append(Part(data, idf, df, first_id, {"none": data.postings.doc_norms(idf)}))
            first_id += len(data.images)
        self._snap = Snapshot(tuple(searched), all_keys, global_idf, first_id)
        self._images = tuple(x for d in parts for x in d.images)

    def __len__(self) -> int:
        return len(self._images)

    @property
    def images(self) -> tuple:
        return self._images

    def _snapshot(self) -> Snapshot:
        return self._snap


def global_weights(
    keys: Sequence[np.ndarray], dfs: Sequence[np.ndarray], sizes: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """The weights of shards searched as one, from each shard's posting-list keys, their df and its image count:
    every list's key and idf over all shards (what query norms use), and per shard the global idf and df of its
    own lists (what its votes and document norms use)."""
    all_keys, inverse = np.unique(np.concatenate(list(keys)), return_inverse=True)
    # float sums of integer counts are exact far beyond any index size, and bincount is one pass
    df = np.bincount(inverse, weights=np.concatenate(list(dfs)), minlength=all_keys.size).astype(np.int64)
    global_idf = idf_weights(df, int(sum(sizes)))
    per_shard = []
    start = 0
    for shard_keys in keys:
        where = inverse[start : start + shard_keys.size]
        start += shard_keys.size
        per_shard.append((global_idf[where], df[where]))
    return all_keys, global_idf, per_shard


class ShardScorer(Searcher):
    """One shard of a sharded search scored alone, under the weights of the whole (`global_weights`): the half
    of `ShardedIndex`'s scoring that needs the shard's data, for shards held in other processes
    (`retrieval.ray_shards`). The caller does the rest as `Searcher._score_chunk` does: query norms over all
    shards, the global ``max_candidates`` cut (`search.keep_best`) and the merge (`search.merge_found`).
    Positions are the shard's own (from 0)."""

    def __init__(self, data: Collection, config: IndexConfig, idf: np.ndarray, df: np.ndarray):
        self.config = config
        self.part = Part(data, idf, df, 0, {"none": data.postings.doc_norms(idf)})

    def votes(
        self,
        encoded: EncodedQueries,
        qnorms: list[float],
        max_df: float | None,
        n_total: int,
        max_cands: int | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query its candidates in this shard and their vote scores (``Searcher._votes_many``); with
        ``max_cands``, only its best ``max_cands`` (ties to the smaller position): the global best
        ``max_cands`` are among the shards' own best, so this leaves `keep_best` the same result."""
        rows = list(range(len(encoded.keys)))
        got = self._votes_many(self.part, encoded, rows, qnorms, max_df, n_total)
        if max_cands is not None:
            got = [best_of(c, s, max_cands) for c, s in got]
        return got

    def finish(
        self, encoded: EncodedQueries, todo: list | None, k: int, rescore: tuple | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query its top ``k`` in this shard from the candidates ``todo`` (`Searcher._finish_part`);
        ``rescore`` = (query norms, max_df, images in all shards) adds the stop words' votes back."""
        return self._finish_part(self.part, encoded, list(range(len(encoded.keys))), todo, k, rescore)

    def search(
        self, encoded: EncodedQueries, qnorms: list[float], max_df: float | None, n_total: int, k: int
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """`votes` then `finish`, when no global ``max_candidates`` cut comes between them."""
        stop = self._stop(max_df, n_total)
        rescore = None if stop is None else (qnorms, *stop)
        return self.finish(encoded, self.votes(encoded, qnorms, max_df, n_total), k, rescore)


def search_shards(
    shards: Sequence[InvertedIndex], query: Mapping[str, np.ndarray], k: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """`ShardedIndex(shards).search(query, k)`, kept for existing callers: it pays the global idf on every call,
    so build a `ShardedIndex` once to search more than one query."""
    return ShardedIndex(shards).search(query, k)
