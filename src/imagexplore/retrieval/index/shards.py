"""`ShardedIndex`: several `InvertedIndex` shards (built with shared vocabularies) searched in place as one.

Global df/idf and each shard's document norms under it are computed once, then every query is scored shard by
shard and the top-k lists merged: the same results, bit for bit, as `InvertedIndex.merge` of the shards, pruning
included (``max_df`` compares the global df with the total image count; ``max_candidates`` keeps the best
candidates over all shards together, before any shard's signature stage).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from imagexplore.retrieval.index.inverted import InvertedIndex, check_shards
from imagexplore.retrieval.index.postings import idf_weights
from imagexplore.retrieval.index.search import Part, Searcher, Snapshot


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
        all_keys, inverse = np.unique(np.concatenate([d.postings.keys for d in parts]), return_inverse=True)
        # float sums of integer counts are exact far beyond any index size, and bincount is one pass
        df = np.bincount(
            inverse, weights=np.concatenate([d.postings.df for d in parts]), minlength=all_keys.size
        ).astype(np.int64)
        n_images = sum(len(d.images) for d in parts)
        global_idf = idf_weights(df, n_images)
        searched = []
        start, first_id = 0, 0
        for data in parts:
            where = inverse[start : start + data.postings.keys.size]
            start += data.postings.keys.size
            idf = global_idf[where]
            searched.append(Part(data, idf, df[where], first_id, {"none": data.postings.doc_norms(idf)}))
            first_id += len(data.images)
        self._snap = Snapshot(tuple(searched), all_keys, global_idf, n_images)
        self._images = tuple(x for d in parts for x in d.images)

    def __len__(self) -> int:
        return len(self._images)

    @property
    def images(self) -> tuple:
        return self._images

    def _snapshot(self) -> Snapshot:
        return self._snap


def search_shards(
    shards: Sequence[InvertedIndex], query: Mapping[str, np.ndarray], k: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """`ShardedIndex(shards).search(query, k)`, kept for existing callers: it pays the global idf on every call,
    so build a `ShardedIndex` once to search more than one query."""
    return ShardedIndex(shards).search(query, k)
