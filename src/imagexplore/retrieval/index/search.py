"""Queries and scoring, shared by `InvertedIndex` and `ShardedIndex` (`Searcher`).

Query patches may take several words (``ma``): in 1-D the ``ma`` nearest words, in 2-D the ``ma`` best of the
``ma x ma`` pairs of nearest words, ranked by the sum of the two squared distances. Queries given as codes
(word ids and signatures) skip that step and are scored the same way.

Scoring (``votes_signature``): candidates are the images sharing a word (cell) with the query; score =
``sum over matches idf(w)^2 * g(cos(sig_q, sig_d)) / (|q| |d|)`` - the cosine of the tf-idf bags of words with
``idf = log(N / df)``, times ``g`` of the signature cosine (the mean over feature types in 2-D): an exponential
kernel ``exp(-|s_q - s_d|^2 / sigma^2) = exp(-2 (1 - cos) / sigma^2)`` or a threshold ``cos >= threshold``.
Because the signature is per image, ``g`` is one factor per (query, image). ``votes`` drops ``g``;
``signature`` ranks every image by signature cosine alone. Ties go to the smaller image position.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from imagexplore.errors import DataError
from imagexplore.retrieval.index.checks import (
    check_dims,
    check_features,
    check_k,
    check_signature_dims,
    check_signatures,
    check_words,
)
from imagexplore.retrieval.index.collection import Collection
from imagexplore.retrieval.index.config import IndexConfig
from imagexplore.retrieval.index.postings import posting_keys
from imagexplore.retrieval.index.vocabulary import IndexModels

# Rows gathered at a time when scoring every image by signature, to bound the float32 copies.
_COSINE_CHUNK = 65536
# Signature cosines read every row in place once 1 / this of the images are candidates (measured: gathering a
# candidate's row costs ~4x its dot product, so in-place wins from ~1/5 on).
_DENSE_CANDIDATES = 4


@dataclass(frozen=True)
class EncodedQueries:
    """Encoded queries: per query its sorted unique keys with counts, and its signature per type."""

    keys: list[np.ndarray]
    counts: list[np.ndarray]
    signatures: dict[str, np.ndarray]

    @classmethod
    def create(cls, keys: np.ndarray, signatures: Mapping[str, np.ndarray]) -> EncodedQueries:
        """From the (Q, L) keys of every query's assignments and its (Q, dim) signatures.

        Signatures are rounded to float32 like stored ones, so a query scores the same alone or in any batch.
        """
        uniques = [np.unique(row, return_counts=True) for row in keys]
        return cls(
            [u[0] for u in uniques],
            [u[1] for u in uniques],
            {t: s.astype(np.float32, copy=False) for t, s in signatures.items()},
        )


def query_norm(sorted_keys: np.ndarray, idf: np.ndarray, encoded: EncodedQueries, i: int) -> float:
    """Norm of query ``i``'s tf-idf bag of words; keys absent from ``sorted_keys`` weigh nothing."""
    pos, found = _lookup(sorted_keys, encoded.keys[i])
    return float(np.sqrt(np.sum((encoded.counts[i][found] * idf[pos[found]]) ** 2)))


def top_k(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` by score, ties to the smaller id, so the order does not depend on how candidates were found."""
    if ids.size > k:
        cut = np.partition(scores, ids.size - k)[ids.size - k]
        keep = np.flatnonzero(scores >= cut)
        ids, scores = ids[keep], scores[keep]
    order = np.lexsort((ids, -scores))[:k]
    return ids[order], scores[order]


def _lookup(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``keys`` in ``sorted_keys`` and which of them are present."""
    pos = np.searchsorted(sorted_keys, keys)
    clipped = np.minimum(pos, max(sorted_keys.size - 1, 0))
    found = (pos < sorted_keys.size) & (sorted_keys[clipped] == keys)
    return pos, found


class Searcher:
    """The query side shared by `InvertedIndex` and `ShardedIndex`: queries as features or as codes, encoded
    once, then scored one by one by the scorer a subclass binds to its (immutable) data."""

    config: IndexConfig
    models: IndexModels

    def search(self, query: Mapping[str, np.ndarray], k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` image positions (int64) and scores (float64) for one query (type -> (P, D)), best first.

        Fewer than ``k`` come back when fewer images share a word with the query (not with ``"signature"``).
        """
        k = check_k(k)
        feats = check_features(query, self.config.types, "query", ndim=2)
        return self._scorer()(self._encode_queries({t: q[None] for t, q in feats.items()}), 0, k)

    def search_batch(self, queries: Mapping[str, np.ndarray], k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """`search` for ``Q`` queries (type -> (Q, P, D)): (Q, k) positions padded with -1, scores with -inf."""
        k = check_k(k)
        return self._search_all(
            self._encode_queries(check_features(queries, self.config.types, "queries")), k
        )

    def search_codes(
        self, words: Mapping[str, np.ndarray], signatures: Mapping[str, np.ndarray], k: int = 10
    ) -> tuple[np.ndarray, np.ndarray]:
        """`search` for one query given as codes: per type its word ids (P,) and its signature (dim,).

        Words may also be (P, m), ``m`` assignments per patch (in 2-D the j-th words of the two types make a
        pair); they replace the ``ma`` assignment of features, so ``config.ma`` plays no part. The signature must
        be L2-normalised, as the index's PCA + L2 would make it. Same assignments, same scores as `search`.
        """
        k = check_k(k)
        return self._scorer()(self._encode_codes(words, signatures, batched=False), 0, k)

    def search_codes_batch(
        self, words: Mapping[str, np.ndarray], signatures: Mapping[str, np.ndarray], k: int = 10
    ) -> tuple[np.ndarray, np.ndarray]:
        """`search_codes` for ``Q`` queries (words type -> (Q, P) or (Q, P, m), signatures type -> (Q, dim)),
        returned like `search_batch`."""
        k = check_k(k)
        return self._search_all(self._encode_codes(words, signatures, batched=True), k)

    def _scorer(self):
        """``score(encoded, i, k) -> (ids, scores)`` of query ``i``, bound to one snapshot of the data."""
        raise NotImplementedError

    def _search_all(self, encoded: EncodedQueries, k: int) -> tuple[np.ndarray, np.ndarray]:
        score = self._scorer()
        n_queries = len(encoded.keys)
        ids = np.full((n_queries, k), -1, dtype=np.int64)
        scores = np.full((n_queries, k), -np.inf)
        for i in range(n_queries):
            got_ids, got_scores = score(encoded, i, k)
            ids[i, : got_ids.size], scores[i, : got_ids.size] = got_ids, got_scores
        return ids, scores

    def _encode_queries(self, feats: dict[str, np.ndarray]) -> EncodedQueries:
        """Multiple assignment of every query patch and the query signatures, batched through FAISS."""
        models, config = self.models, self.config
        check_dims(feats, models, "queries")
        n_queries, n_patches = next(iter(feats.values())).shape[:2]
        flat = {t: x.reshape(-1, x.shape[2]) for t, x in feats.items()}
        if config.mode == "1d":
            keys = models.nearest(config.types[0], flat[config.types[0]], config.ma)[1]
        else:
            (name_a, name_b), rows = config.types, np.arange(n_queries * n_patches)[:, None]
            dist_a, word_a = models.nearest(name_a, flat[name_a], config.ma)
            dist_b, word_b = models.nearest(name_b, flat[name_b], config.ma)
            cost = (dist_a[:, :, None] + dist_b[:, None, :]).reshape(rows.size, -1)
            best = np.argsort(cost, axis=1, kind="stable")[:, : config.ma]
            pick_a, pick_b = np.divmod(best, word_b.shape[1])
            keys = posting_keys({name_a: word_a[rows, pick_a], name_b: word_b[rows, pick_b]}, models, config)
        signatures = {t: models.signature(t, x[:, 0]) for t, x in feats.items()}
        return EncodedQueries.create(keys.reshape(n_queries, -1), signatures)

    def _encode_codes(self, words, signatures, batched: bool) -> EncodedQueries:
        types, models = self.config.types, self.models
        lead = 1 if batched else 0
        shape_name = "(Q, P) or (Q, P, m)" if batched else "(P,) or (P, m)"
        codes = check_words(words, types, models, "query words", (lead + 1, lead + 2), shape_name)
        sigs = check_signatures(signatures, types, "query signatures", lead + 1)
        check_signature_dims(sigs, models, "query signatures")
        if not batched:
            codes = {t: c[None] for t, c in codes.items()}
            sigs = {t: s[None] for t, s in sigs.items()}
        n_queries = next(iter(codes.values())).shape[0]
        if next(iter(sigs.values())).shape[0] != n_queries:
            raise DataError(
                f"query words are given for {n_queries} queries but signatures for "
                f"{next(iter(sigs.values())).shape[0]}: give one signature per query"
            )
        return EncodedQueries.create(posting_keys(codes, models, self.config).reshape(n_queries, -1), sigs)

    def _score(
        self,
        data: Collection,
        idf: np.ndarray,
        doc_norms: np.ndarray,
        encoded: EncodedQueries,
        i: int,
        qnorm: float,
        k: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Score query ``i`` against ``data`` with the given idf / document norms (global ones for shards)."""
        config = self.config
        if config.scoring == "signature":
            cands = np.arange(len(data.images), dtype=np.int64)
            return top_k(cands, self._cosines(data, cands, encoded, i), k)
        postings = data.postings
        pos, found = _lookup(postings.keys, encoded.keys[i])
        pos, qcounts = pos[found], encoded.counts[i][found]
        starts = postings.offsets[pos]
        lengths = postings.offsets[pos + 1] - starts
        # gather the matched posting lists in one go: start of each list repeated, plus a running offset
        gather = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        hit_ids = postings.ids[gather]
        n = len(data.images)
        votes = np.bincount(hit_ids, weights=np.repeat(qcounts * idf[pos] ** 2, lengths), minlength=n)
        cands = np.flatnonzero(np.bincount(hit_ids, minlength=n))
        denom = qnorm * doc_norms[cands]
        scores = np.divide(votes[cands], denom, out=np.zeros(cands.size), where=denom > 0)
        if config.scoring == "votes_signature":
            cos = self._cosines(data, cands, encoded, i)
            if config.kernel == "exp":
                scores = scores * np.exp(-2.0 * (1.0 - cos) / config.sigma**2)
            else:
                scores = scores * (cos >= config.threshold)
        return top_k(cands, scores, k)

    def _cosines(self, data: Collection, cands: np.ndarray, encoded: EncodedQueries, i: int) -> np.ndarray:
        """Mean over types of the signature cosine.

        float32 dot products by ``np.einsum`` (no BLAS, no casting buffers): each row is summed the same way
        however many rows are asked and wherever it lies in memory, which keeps shards, merges and batches
        bit-identical. When many images are candidates every row is read in place and the candidates picked
        from the result, as copying the candidate rows out costs several times their dot products.
        """
        n = len(data.images)
        out = np.zeros(cands.size)
        for name, sigs in data.signatures.items():
            q = encoded.signatures[name][i]
            if cands.size * _DENSE_CANDIDATES >= n:
                every = np.empty(n, dtype=np.float32)
                for lo in range(0, n, _COSINE_CHUNK):
                    rows = sigs[lo : lo + _COSINE_CHUNK].astype(np.float32, copy=False)
                    every[lo : lo + _COSINE_CHUNK] = np.einsum("ij,j->i", rows, q)
                out += every[cands]
                continue
            for lo in range(0, cands.size, _COSINE_CHUNK):
                rows = sigs[cands[lo : lo + _COSINE_CHUNK]].astype(np.float32, copy=False)
                out[lo : lo + _COSINE_CHUNK] += np.einsum("ij,j->i", rows, q)
        return out / len(data.signatures)
