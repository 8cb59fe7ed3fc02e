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

Pruning (query options of `IndexConfig`; by default only from `config.SCALE_MIN_IMAGES` images on): ``max_df``
leaves lists held by more than that fraction of the images (stop words) out of the vote - the norms stay those
of the whole bags of words - and, with
``stop_words="rescore"``, adds their votes back to the candidates that reach the signature stage, so that only
which images become candidates is approximate, not their scores (`Searcher._stop_votes`); ``burst`` damps
the term frequencies on both sides (``sqrt`` or ``1 + log``), norms included; ``max_candidates`` lets only the
best candidates by vote score (``top_k`` order) reach the signature stage. ``pruning="scale"`` fills unset
values from `config.SCALE_PRESET` at `config.SCALE_MIN_IMAGES` images or more.

Batches (`search_batch`, `search_codes_batch`) give the results of one-by-one searches bit for bit: votes by one
sparse product per chunk of queries (each image's weights added in the same order as ``np.bincount`` adds
them), and, for a query with many candidates, signature cosines by one BLAS product for the chunk, which only
pre-selects: whatever can reach the top ``k`` within a proven rounding margin (`cosine_margin`) is re-scored
exactly as a single search does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import faiss
import numpy as np
from scipy import sparse

from imagexplore.errors import DataError
from imagexplore.retrieval.arrays import concat_ranges, transposed
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
from imagexplore.retrieval.index.postings import damp_tf, posting_keys
from imagexplore.retrieval.index.vocabulary import IndexModels

# Rows gathered at a time when scoring every image by signature, to bound the float32 copies.
_COSINE_CHUNK = 65536
# Signature cosines read every row in place once 1 / this of the images are candidates (measured: gathering a
# candidate's row costs ~4x its dot product, so in-place wins from ~1/5 on).
_DENSE_CANDIDATES = 4
# Batches: a query's signature cosines go through BLAS (then an exact re-score of the few that can reach the top
# k) once 1 / this of the images are its candidates; below, the exact per-row scoring alone is cheaper.
_BLAS_CANDIDATES = 16
# Batches: votes go through the forward matrix once the queries match 1 / this of all entries (measured at 100k
# images: ~1 ns an entry a query that way, ~9 ns a matched entry by the sparse product).
_FORWARD_VOTES = 8
# Batches: at most this many queries at a time, and this many (queries x images) dense votes / BLAS cosines
# (24 MB of float64: under glibc's largest mmap threshold, so such blocks are reused rather than mapped anew);
# at most this many matched posting entries go through one sparse product.
_BATCH_QUERIES = 64
_BATCH_VALUES = 3 << 20
_BATCH_ENTRIES = 1 << 22
# Stop words' votes: dense count columns (a byte an image per stop list, `StopColumns`) for up to this many stop
# lists: no more than an image's forward row of 14 entries costs (60 B), far fewer at the scale preset's max_df
# 0.1 (18 lists in tests/test_retrieval_bars.py); above it, the forward rows.
_STOP_COLUMNS = 64


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

    def select(self, rows: list[int]) -> EncodedQueries:
        """The queries ``rows`` alone, in that order (e.g. a chunk sent to another process)."""
        return EncodedQueries(
            [self.keys[i] for i in rows],
            [self.counts[i] for i in rows],
            {t: s[rows] for t, s in self.signatures.items()},
        )


def query_norm(
    sorted_keys: np.ndarray, idf: np.ndarray, encoded: EncodedQueries, i: int, burst: str = "none"
) -> float:
    """Norm of query ``i``'s tf-idf bag of words (counts damped by ``burst``); keys absent from ``sorted_keys``
    weigh nothing."""
    pos, found = _lookup(sorted_keys, encoded.keys[i])
    if burst == "none":
        return float(np.sqrt(np.sum((encoded.counts[i][found] * idf[pos[found]]) ** 2)))
    return float(np.sqrt(np.sum((damp_tf(encoded.counts[i], burst)[found] * idf[pos[found]]) ** 2)))


def top_k(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` by score, ties to the smaller id, so the order does not depend on how candidates were found."""
    if ids.size > k:
        cut = np.partition(scores, ids.size - k)[ids.size - k]
        keep = np.flatnonzero(scores >= cut)
        ids, scores = ids[keep], scores[keep]
    order = np.lexsort((ids, -scores))[:k]
    return ids[order], scores[order]


def best_of(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The same ``k`` as `top_k` (best scores, ties to the smaller id), in no particular order: no sort of the
    ``k`` kept, which is most of `top_k`'s time when ``k`` is a candidate budget of thousands."""
    if ids.size <= k:
        return ids, scores
    cut = np.partition(scores, ids.size - k)[ids.size - k]
    keep = np.flatnonzero(scores > cut)
    tied = np.flatnonzero(scores == cut)
    need = k - keep.size
    if tied.size > need:  # the smaller ids among those tied at the cut
        tied = tied[np.argpartition(ids[tied], need - 1)[:need]] if need else tied[:0]
    keep = np.concatenate([keep, tied])
    return ids[keep], scores[keep]


def _lookup(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``keys`` in ``sorted_keys`` and which of them are present."""
    pos = np.searchsorted(sorted_keys, keys)
    clipped = np.minimum(pos, max(sorted_keys.size - 1, 0))
    found = (pos < sorted_keys.size) & (sorted_keys[clipped] == keys)
    return pos, found


class Searcher:
    """The query side shared by `InvertedIndex` and `ShardedIndex`: queries as features or as codes, encoded
    once, then scored against the `Snapshot` a subclass gives of its (immutable) data: one by one, or a batch
    together with the same results."""

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

    def _snapshot(self) -> Snapshot:
        """The data searched, as it is now: its parts with their weights (one snapshot for a whole batch)."""
        raise NotImplementedError

    def _scorer(self):
        """``score(encoded, i, k) -> (ids, scores)`` of query ``i``, bound to one snapshot of the data."""
        snap = self._snapshot()
        return lambda encoded, i, k: self._score_query(snap, encoded, i, k)

    def _search_all(self, encoded: EncodedQueries, k: int) -> tuple[np.ndarray, np.ndarray]:
        """All queries of a batch, bit-identical to `search` one by one.

        Votes: one sparse product (queries x lists) @ (lists x images) per chunk of queries. Signatures: where a
        query has many candidates, one BLAS product of the chunk's signatures with the stored ones pre-selects
        them (`_finish`); the exact per-query scoring then re-scores only the survivors.
        """
        snap = self._snapshot()
        n_queries = len(encoded.keys)
        ids = np.full((n_queries, k), -1, dtype=np.int64)
        scores = np.full((n_queries, k), -np.inf)
        for rows in self._chunks(snap, encoded):
            for i, (got_ids, got_scores) in zip(rows, self._score_chunk(snap, encoded, rows, k)):
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

    # ------------------------------------------------------------------------------------------------- scoring
    def _score_query(self, snap: Snapshot, encoded: EncodedQueries, i: int, k: int):
        """One query, exactly: votes per part, the best ``max_candidates`` over all parts, then signatures."""
        config = self.config
        if config.scoring == "signature":
            found = []
            for part in snap.parts:
                cands = np.arange(len(part.data.images), dtype=np.int64)
                found.append(top_k(cands, self._cosines(part.data, cands, encoded, i), k))
            return _merge(snap, found, k)
        max_df, max_cands = config.pruning_for(snap.n_images)
        qnorm = query_norm(snap.keys, snap.idf, encoded, i, config.burst)
        voted = [self._votes(part, encoded, i, qnorm, max_df, snap.n_images) for part in snap.parts]
        if max_cands is not None:
            voted = _keep_best(snap, voted, max_cands)
        stop = self._stop(max_df, snap.n_images)
        found = [
            self._finish(part, c, s, encoded, i, k, rescore=None if stop is None else (qnorm, *stop))
            for part, (c, s) in zip(snap.parts, voted)
        ]
        return _merge(snap, found, k)

    def _score_chunk(self, snap: Snapshot, encoded: EncodedQueries, rows: list[int], k: int) -> list:
        """`_score_query` of the queries ``rows`` together: the same results, bit for bit."""
        config = self.config
        voted, rescore = None, None
        if config.scoring != "signature":
            max_df, max_cands = config.pruning_for(snap.n_images)
            qnorms = [query_norm(snap.keys, snap.idf, encoded, i, config.burst) for i in rows]
            per_part = [self._votes_many(p, encoded, rows, qnorms, max_df, snap.n_images) for p in snap.parts]
            voted = [[votes[j] for votes in per_part] for j in range(len(rows))]  # query -> part -> votes
            if max_cands is not None:
                voted = [_keep_best(snap, v, max_cands) for v in voted]
            stop = self._stop(max_df, snap.n_images)
            rescore = None if stop is None else (qnorms, *stop)
        found = [[None] * len(snap.parts) for _ in rows]
        for p, part in enumerate(snap.parts):
            todo = None if voted is None else [v[p] for v in voted]
            for j, got in enumerate(self._finish_part(part, encoded, rows, todo, k, rescore)):
                found[j][p] = got
        return [_merge(snap, f, k) for f in found]

    def _finish_part(
        self,
        part: Part,
        encoded: EncodedQueries,
        rows: list[int],
        todo: list | None,
        k: int,
        rescore: tuple | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query of ``rows`` its top ``k`` in ``part`` (positions in the part) after the signature stage:
        `_finish` of its candidates and vote scores in ``todo`` (None with ``scoring="signature"``: every image
        of the part), through one BLAS product for the queries with many candidates. ``rescore`` (query norms
        of ``rows``, max_df, images in all parts) adds the stop words' votes first (`_stop`)."""
        config = self.config
        n_types = len(config.types)
        n = len(part.data.images)
        if todo is None:
            everyone = np.arange(n, dtype=np.int64)
            todo = [(everyone, None)] * len(rows)
        blas = [
            config.scoring != "votes"
            and cands.size > k
            and (scores is None or cands.size * _BLAS_CANDIDATES >= n)
            for cands, scores in todo
        ]
        found: list = [None] * len(rows)
        dense = [j for j, b in enumerate(blas) if b]
        step = max(1, _BATCH_VALUES // max(n, 1))
        for lo in range(0, len(dense), step):
            group = dense[lo : lo + step]
            approx = self._approx_cosines(part, encoded, [rows[j] for j in group])
            for j, row in zip(group, approx):
                found[j] = self._finish(part, *todo[j], encoded, rows[j], k, row, n_types, _one(rescore, j))
        for j, b in enumerate(blas):
            if not b:
                found[j] = self._finish(part, *todo[j], encoded, rows[j], k, rescore=_one(rescore, j))
        return found

    def _stop(self, max_df: float | None, n_total: int) -> tuple[float, int] | None:
        """``(max_df, n_total)`` when the stop words' votes are added back to the candidates (``stop_words``
        ``"rescore"``), else None."""
        if max_df is None or self.config.stop_words_for(n_total) != "rescore":
            return None
        return max_df, n_total

    def _stop_votes(
        self, part: Part, cands: np.ndarray, encoded: EncodedQueries, i: int, max_df: float, n_total: int
    ) -> np.ndarray | None:
        """What the lists above ``max_df`` that query ``i`` matches add to the votes of ``cands`` (positions in
        ``part``): the weight (`_weights`) of each such list times each candidate's count in it (damped with
        ``burst``), added list by list in list order, from `Part.stop_columns` (a byte a candidate and list,
        read in a column that stays in cache); when there are too many stop lists for columns, from the
        candidates' rows of `Collection.forward_rows` (each image's entries in list order) through a per-list
        weight table. A few thousand reads a query, however long the stop words' lists are. The path depends
        only on the stop lists (the same in every shard), so shards, batches and single searches agree bit for
        bit. None when the query matches no such list."""
        postings = part.data.postings
        pos, found = _lookup(postings.keys, encoded.keys[i])
        pos, qcounts = pos[found], encoded.counts[i][found]
        stop = part.df[pos] > max_df * n_total
        if not stop.any():
            return None
        stop_lists, qcounts = pos[stop], qcounts[stop]
        weights = self._weights(part, stop_lists, qcounts)
        columns = part.stop_columns(max_df * n_total)
        if columns is not None:  # a column of counts per stop list, read at the candidates, in list order
            tf_of = columns.damped(self.config.burst)
            votes = np.zeros(cands.size)
            for row, weight in zip(np.searchsorted(columns.lists, stop_lists), weights):
                counts = columns.counts[row].take(cands)
                votes += weight * (counts if tf_of is None else tf_of.take(counts))
            return votes
        table = np.zeros(postings.keys.size)  # each list's weight: 0.0 but for the stop lists matched
        table[stop_lists] = weights
        indptr, lists, values = part.data.forward_rows(self.config.burst)
        starts = indptr[cands]
        lengths = indptr[cands + 1] - starts
        gather = concat_ranges(starts, lengths)
        # the other lists add 0.0, which leaves every sum's bits as they are
        add = table[lists[gather]] if values is None else table[lists[gather]] * values[gather]
        return np.bincount(np.repeat(np.arange(cands.size), lengths), weights=add, minlength=cands.size)

    def _chunks(self, snap: Snapshot, encoded: EncodedQueries):
        """Query positions in chunks of at most `_BATCH_QUERIES`, and of at most `_BATCH_VALUES` (queries x
        images): what bounds the dense votes and BLAS cosines held at a time."""
        return query_chunks(len(encoded.keys), snap.n_images)

    def _matched(self, part: Part, encoded: EncodedQueries, i: int, max_df: float | None, n_total: int):
        """Positions of the lists query ``i`` matches in ``part`` (stop words dropped) and its counts there."""
        postings = part.data.postings
        pos, found = _lookup(postings.keys, encoded.keys[i])
        pos, qcounts = pos[found], encoded.counts[i][found]
        if max_df is not None:
            keep = part.df[pos] <= max_df * n_total
            pos, qcounts = pos[keep], qcounts[keep]
        return pos, qcounts

    def _weights(self, part: Part, pos: np.ndarray, qcounts: np.ndarray) -> np.ndarray:
        """The vote weight of each matched list: query tf x idf^2 (an image's own tf multiplies it)."""
        if self.config.burst == "none":
            return qcounts * part.idf[pos] ** 2
        return damp_tf(qcounts, self.config.burst) * part.idf[pos] ** 2

    def _votes(
        self,
        part: Part,
        encoded: EncodedQueries,
        i: int,
        qnorm: float,
        max_df: float | None,
        n_total: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Candidates of query ``i`` in ``part`` (sorted positions) and their tf-idf cosines (the vote score)."""
        burst = self.config.burst
        postings = part.data.postings
        pos, qcounts = self._matched(part, encoded, i, max_df, n_total)
        weights = self._weights(part, pos, qcounts)
        n = len(part.data.images)
        if burst == "none":
            starts = postings.offsets[pos]
            lengths = postings.offsets[pos + 1] - starts
            gather = concat_ranges(starts, lengths)
            hit_ids = postings.ids[gather]
            votes = np.bincount(hit_ids, weights=np.repeat(weights, lengths), minlength=n)
        else:  # one row per distinct (list, image), weighted by the image's damped count
            starts = postings.pair_offsets[pos]
            lengths = postings.pair_offsets[pos + 1] - starts
            gather = concat_ranges(starts, lengths)
            hit_ids = postings.pair_images()[gather]
            tf = postings.damped_counts(burst)[gather]
            votes = np.bincount(hit_ids, weights=np.repeat(weights, lengths) * tf, minlength=n)
        cands = np.flatnonzero(np.bincount(hit_ids, minlength=n))
        return cands, self._vote_scores(part, votes[cands], cands, qnorm)

    def _vote_scores(self, part: Part, votes: np.ndarray, cands: np.ndarray, qnorm: float) -> np.ndarray:
        denom = qnorm * part.doc_norms(self.config.burst)[cands]
        return np.divide(votes, denom, out=np.zeros(cands.size), where=denom > 0)

    def _votes_many(
        self,
        part: Part,
        encoded: EncodedQueries,
        rows: list[int],
        qnorms: list[float],
        max_df: float | None,
        n_total: int,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """`_votes` of the queries ``rows`` by one sparse product: (queries x lists) @ (lists x images) over the
        matched lists, or, when the queries match most entries, (images x lists) @ (lists x queries) with the
        collection's `Collection.forward` matrix (one pass over every image's entries, all queries at once).

        Both add, for each image, the weight of every matched entry (x the image's damped count with ``burst``)
        in list order, as ``np.bincount`` does in `_votes`, and unmatched lists add 0.0: the sums are the same
        bits. An image is a candidate when its sum is not 0; only a list of idf 0 (held by every image) could
        make a matched image's sum 0, so a query matching one takes `_votes`.
        """
        burst = self.config.burst
        postings = part.data.postings
        matched = [self._matched(part, encoded, i, max_df, n_total) for i in rows]
        weights = [self._weights(part, pos, qcounts) for pos, qcounts in matched]
        hits = [int((postings.offsets[pos + 1] - postings.offsets[pos]).sum()) for pos, _ in matched]
        if sum(hits) * _FORWARD_VOTES >= postings.ids.size * len(rows):
            # most entries matched: (images x lists) @ (lists x queries), each image's row summed in list order
            by_list = np.zeros((postings.keys.size, len(rows)))
            for j, (pos, _) in enumerate(matched):
                by_list[pos, j] = weights[j]
            votes = transposed(part.data.forward(burst) @ by_list)
            rows_votes = [(votes[j], None) for j in range(len(rows))]
        else:
            rows_votes = []
            for lo, hi in _spans(hits, _BATCH_ENTRIES):
                rows_votes += self._sparse_votes(part, matched[lo:hi], weights[lo:hi])
        out = []
        for j, i in enumerate(rows):
            got, cands = rows_votes[j]
            if np.any(weights[j] == 0):
                out.append(self._votes(part, encoded, i, qnorms[j], max_df, n_total))
                continue
            if cands is None:  # a dense row of votes
                cands = np.flatnonzero(got)
                got = got[cands]
            out.append((cands, self._vote_scores(part, got, cands, qnorms[j])))
        return out

    def _sparse_votes(self, part: Part, matched: list, weights: list) -> list:
        """Per query ``(votes, candidates)`` by (queries x lists) @ (lists x images) over the lists the queries
        match; a query's candidates come in no particular order (`_keep_best` and `top_k` do not depend on it)."""
        burst = self.config.burst
        postings = part.data.postings
        n = len(part.data.images)
        lists = np.unique(np.concatenate([pos for pos, _ in matched]))
        offsets = postings.offsets if burst == "none" else postings.pair_offsets
        starts = offsets[lists]
        lengths = offsets[lists + 1] - starts
        gather = concat_ranges(starts, lengths)
        if burst == "none":
            images, tf = postings.ids[gather], np.ones(gather.size)
        else:
            images, tf = postings.pair_images()[gather], postings.damped_counts(burst)[gather]
        lists_x_images = sparse.csr_matrix(
            (tf, images, np.append(0, np.cumsum(lengths))), shape=(lists.size, n)
        )
        queries_x_lists = sparse.csr_matrix(
            (
                np.concatenate(weights),
                np.searchsorted(lists, np.concatenate([pos for pos, _ in matched])),
                np.append(0, np.cumsum([pos.size for pos, _ in matched])),
            ),
            shape=(len(matched), lists.size),
        )
        product = queries_x_lists @ lists_x_images  # rows left unsorted: nothing downstream needs the order
        return [
            (product.data[lo:hi], product.indices[lo:hi].astype(np.int64))
            for lo, hi in zip(product.indptr[:-1], product.indptr[1:])
        ]

    def _finish(
        self,
        part: Part,
        cands: np.ndarray,
        scores: np.ndarray | None,
        encoded: EncodedQueries,
        i: int,
        k: int,
        approx: np.ndarray | None = None,
        n_types: int = 1,
        rescore: tuple[float, float, int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` of ``cands`` (vote ``scores``, None for ``"signature"``) after the signature stage.

        ``rescore`` = (query norm, max_df, images in all parts): the votes of the query's stop words
        (`_stop_votes`) are added to the candidates' scores first, so each carries its whole tf-idf vote.

        With ``approx`` (every image's signature cosine by BLAS, float32), bounds on each candidate's score
        (the cosine +- `cosine_margin`) keep only those that can reach the top ``k``; the exact scoring of those
        survivors gives the top ``k`` of all, bit for bit.
        """
        config = self.config
        if rescore is not None and scores is not None and cands.size:
            qnorm, max_df, n_total = rescore
            add = self._stop_votes(part, cands, encoded, i, max_df, n_total)
            if add is not None:
                scores = scores + self._vote_scores(part, add, cands, qnorm)
        if config.scoring == "votes":
            return top_k(cands, scores, k)
        if approx is not None and cands.size > k:
            cos = approx[cands].astype(np.float64) / n_types
            margin = cosine_margin(encoded, i)
            if scores is None:
                low, high = cos - margin, cos + margin
            elif config.kernel == "exp":
                base = scores * np.exp(-2.0 * (1.0 - cos) / config.sigma**2)
                spread = np.exp(2.0 * margin / config.sigma**2)
                low, high = base / spread * (1 - 1e-9), base * spread * (1 + 1e-9)
            else:
                low = scores * (cos - margin >= config.threshold)
                high = scores * (cos + margin >= config.threshold)
            cut = np.partition(low, low.size - k)[low.size - k]
            keep = np.flatnonzero(high >= cut)
            cands = cands[keep]
            scores = None if scores is None else scores[keep]
        cos = self._cosines(part.data, cands, encoded, i)
        if scores is None:
            return top_k(cands, cos, k)
        if config.kernel == "exp":
            scores = scores * np.exp(-2.0 * (1.0 - cos) / config.sigma**2)
        else:
            scores = scores * (cos >= config.threshold)
        return top_k(cands, scores, k)

    def _approx_cosines(self, part: Part, encoded: EncodedQueries, rows: list[int]) -> np.ndarray:
        """(len(rows), N) float32: per query of ``rows`` the sum over types of its signature's dot product with
        every image's, by BLAS (rounded otherwise than `_cosines`, within `cosine_margin` of it)."""
        data = part.data
        n = len(data.images)
        out = None
        for name, sigs in data.signatures.items():
            q = encoded.signatures[name][rows]
            if sigs.dtype == np.float32:
                got = q @ sigs.T
            else:  # float16 stored: converted a block at a time
                got = np.empty((len(rows), n), dtype=np.float32)
                for lo in range(0, n, _COSINE_CHUNK):
                    got[:, lo : lo + _COSINE_CHUNK] = q @ sigs[lo : lo + _COSINE_CHUNK].astype(np.float32).T
            out = got if out is None else np.add(out, got, out=out)
        return out

    def _cosines(self, data: Collection, cands: np.ndarray, encoded: EncodedQueries, i: int) -> np.ndarray:
        """Mean over types of the signature cosine.

        Each row's float32 dot product is summed the same way however many rows are asked and wherever it lies
        in memory, which keeps shards, merges and batches bit-identical: FAISS's ``fvec_inner_products_by_idx``
        for float32 signatures (it reads the candidates' rows in place, ~2x faster than gathering them), else
        ``np.einsum`` (no BLAS, no casting buffers) on float16 rows converted a chunk at a time - in place when
        many images are candidates, as copying the candidate rows out costs several times their dot products.
        """
        n = len(data.images)
        out = np.zeros(cands.size)
        for name, sigs in data.signatures.items():
            q = encoded.signatures[name][i]
            if sigs.dtype == np.float32 and sigs.flags.c_contiguous:
                out += _dot_rows(sigs, q, cands)
                continue
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


def _dot_rows(rows: np.ndarray, q: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """float32 ``rows[ids] @ q`` without copying the rows out: FAISS's SIMD dot product of each (row, query), the
    same bits for a row wherever it is asked (on one machine: FAISS picks its kernels by CPU)."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    q = np.ascontiguousarray(q, dtype=np.float32)
    out = np.empty(ids.size, dtype=np.float32)
    if ids.size:
        faiss.fvec_inner_products_by_idx(
            faiss.swig_ptr(out),
            faiss.swig_ptr(q),
            faiss.swig_ptr(rows),
            faiss.swig_ptr(ids),
            rows.shape[1],
            1,
            ids.size,
        )
    return out


def _one(rescore: tuple | None, j: int) -> tuple | None:
    """The ``rescore`` of `Searcher._finish` for the ``j``-th query of a chunk's ``(qnorms, max_df, n_total)``."""
    return None if rescore is None else (rescore[0][j], rescore[1], rescore[2])


def query_chunks(n_queries: int, n_images: int) -> list[list[int]]:
    """Query positions in chunks of at most `_BATCH_QUERIES` and `_BATCH_VALUES` (queries x images)."""
    step = max(1, min(_BATCH_QUERIES, _BATCH_VALUES // max(n_images, 1)))
    return [list(range(lo, min(lo + step, n_queries))) for lo in range(0, n_queries, step)]


def cosine_margin(encoded: EncodedQueries, i: int) -> float:
    """A bound on how far two float32 summations of query ``i``'s signature cosines (mean over types) may differ:
    each is within ``gamma_d |q| |s|`` of the exact value (any summation order, FMA or not; Higham, Accuracy and
    Stability, sec. 3.1), with ``gamma_d = d u / (1 - d u)``, ``u = 2^-24`` and stored signatures of norm <= 1.01
    (they are checked to 1e-3); doubled for the float32 roundings of the results and their sum over types."""
    unit = 2.0**-24
    worst = 0.0
    for sig in encoded.signatures.values():
        q = sig[i].astype(np.float64)
        d = q.size
        gamma = d * unit / (1 - d * unit)
        worst = max(worst, 2 * gamma * float(np.linalg.norm(q)) * 1.01 + 2 * unit)
    return 2 * worst


@dataclass
class Part:
    """One collection searched with given per-list weights: the snapshot of an `InvertedIndex`, or one shard of
    a `ShardedIndex` under the global idf and df (so ``max_df`` drops the same lists in every shard)."""

    data: Collection
    idf: np.ndarray
    df: np.ndarray
    first_id: int
    norms: dict[str, np.ndarray]  # burst -> document norms under idf, made on first use
    # df threshold -> `StopColumns` (None: too many stop lists), made on first use
    stops: dict[float, StopColumns | None] = field(default_factory=dict)

    def doc_norms(self, burst: str) -> np.ndarray:
        got = self.norms.get(burst)
        if got is None:
            got = self.norms[burst] = self.data.postings.doc_norms(self.idf, burst)
        return got

    def stop_columns(self, min_df: float) -> StopColumns | None:
        """Every image's count in each list of df above ``min_df`` (the stop words of ``max_df * n_total``), kept
        once made; None when there are more than `_STOP_COLUMNS` such lists (a byte an image each)."""
        if min_df not in self.stops:
            lists = np.flatnonzero(self.df > min_df)
            self.stops[min_df] = None if lists.size > _STOP_COLUMNS else StopColumns.of(self.data, lists)
        return self.stops[min_df]


@dataclass
class StopColumns:
    """Stop lists as dense columns: ``counts[j, i]`` is image ``i``'s entries in list ``lists[j]`` (uint8, wider
    when an image repeats a word more often). What a stop word adds to a candidate's vote is one read here,
    where the image's row of `Collection.forward_rows` costs a cache miss and a gather of all its entries."""

    lists: np.ndarray
    counts: np.ndarray
    tables: dict[str, np.ndarray] = field(default_factory=dict)  # burst -> damped tf of each count

    @classmethod
    def of(cls, data: Collection, lists: np.ndarray) -> StopColumns:
        postings, n = data.postings, len(data.images)
        counts = np.zeros((lists.size, n), dtype=np.uint8)
        for row, j in enumerate(lists):  # one list's int64 counts at a time
            got = np.bincount(postings.ids[postings.offsets[j] : postings.offsets[j + 1]], minlength=n)
            if got.size and got.max() > np.iinfo(counts.dtype).max:  # an image repeats the word that often
                counts = counts.astype(np.uint16 if got.max() < 2**16 else np.uint32)
            counts[row] = got
        return cls(lists, counts)

    def damped(self, burst: str) -> np.ndarray | None:
        """`damp_tf` of every count that occurs (0 weighs 0), indexed by the count; None for ``"none"``."""
        if burst == "none":
            return None
        got = self.tables.get(burst)
        if got is None:
            top = int(self.counts.max(initial=0))
            got = np.zeros(top + 1)
            got[1:] = damp_tf(np.arange(1, top + 1), burst)
            self.tables[burst] = got
        return got


@dataclass(frozen=True)
class Snapshot:
    """What one search (or batch) reads: the parts in order, every list's key and idf over all parts (for query
    norms), and how many images they hold."""

    parts: tuple[Part, ...]
    keys: np.ndarray
    idf: np.ndarray
    n_images: int

    @classmethod
    def of_collection(cls, data: Collection) -> Snapshot:
        postings = data.postings
        part = Part(data, data.idf, postings.df, 0, data.norms, data.stops)
        return cls((part,), postings.keys, data.idf, len(data.images))


def _spans(sizes: list[int], limit: int):
    """Consecutive ``(lo, hi)`` spans of ``sizes`` summing to at most ``limit`` (one item alone may exceed it)."""
    lo, total = 0, 0
    for i, size in enumerate(sizes):
        if i > lo and total + size > limit:
            yield lo, i
            lo, total = i, 0
        total += size
    if lo < len(sizes):
        yield lo, len(sizes)


def _merge(snap: Snapshot, found: list, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` over parts of each part's top ``k`` (positions shifted to the whole collection)."""
    return merge_found([part.first_id for part in snap.parts], found, k)


def merge_found(first_ids: list[int], found: list, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`_merge` for parts starting at ``first_ids`` (wherever they are held)."""
    if len(found) == 1 and first_ids[0] == 0:
        return found[0]
    ids = np.concatenate([ids + first for (ids, _), first in zip(found, first_ids)])
    return top_k(ids, np.concatenate([scores for _, scores in found]), k)


def _keep_best(snap: Snapshot, voted: list, max_cands: int) -> list:
    """Per part the candidates among the best ``max_cands`` by vote score over all parts (ties to the smaller
    position, as `top_k`, which does not depend on the order candidates come in)."""
    return keep_best([(part.first_id, len(part.data.images)) for part in snap.parts], voted, max_cands)


def keep_best(bounds: list[tuple[int, int]], voted: list, max_cands: int) -> list:
    """`_keep_best` for parts given as ``(first_id, images)`` (wherever they are held)."""
    if sum(cands.size for cands, _ in voted) <= max_cands:
        return voted
    ids = np.concatenate([cands + first for (cands, _), (first, _) in zip(voted, bounds)])
    best, scores = best_of(ids, np.concatenate([scores for _, scores in voted]), max_cands)
    if len(bounds) == 1:
        return [(best - bounds[0][0], scores)]
    out = []
    for first, n in bounds:
        mine = (best >= first) & (best < first + n)
        out.append((best[mine] - first, scores[mine]))
    return out
