"""The indexed images as one immutable `Collection` (postings, signatures, ids), and how one is made or merged.

Features and codes take the same path (`collection_from_words`), so the same word assignments give the same
postings; signatures are stored as float32 (float16 with ``float16_signatures``). Images are numbered in order
and merges keep every posting list sorted by image position, so `add`, `merge` and shards give the same
collection as a single build.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy import sparse

from imagexplore.errors import DataError
from imagexplore.retrieval.index.config import IndexConfig
from imagexplore.retrieval.index.postings import MAX_IMAGES, Postings, idf_weights, posting_keys
from imagexplore.retrieval.index.vocabulary import IndexModels


class ForwardRows(NamedTuple):
    """Each image's posting entries in list order, as CSR rows: ``lists[indptr[i]:indptr[i + 1]]`` are image
    ``i``'s lists; ``values`` their damped counts (None: each is 1.0)."""

    indptr: np.ndarray
    lists: np.ndarray
    values: np.ndarray | None


@dataclass(frozen=True)
class Collection:
    """One immutable snapshot of the indexed collection; `InvertedIndex.add` swaps in a new one atomically."""

    postings: Postings
    signatures: dict[str, np.ndarray]
    images: tuple
    idf: np.ndarray
    doc_norms: np.ndarray
    # burst -> document norms under `idf` (query option ``burst``), made on first use and shared by views
    norms: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    # burst -> `forward_rows`, made by the first search that needs them and shared by views
    forwards: dict[str, ForwardRows] = field(default_factory=dict, repr=False, compare=False)
    # df threshold -> the stop lists' count columns (`search.Part.stop_columns`), shared by views
    stops: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        self.norms.setdefault("none", self.doc_norms)

    def forward_rows(self, burst: str) -> ForwardRows:
        """Each image's entries in list order (`ForwardRows`): with ``burst="none"`` one entry per posting (an
        image's repeated word stays repeated), else one damped count per (list, image). 4 B an entry (+ 8 B
        with ``burst``), kept once made: what batches that match most entries multiply (`forward`), and what the
        stop words' votes of a few candidates read when there are too many stop lists for count columns
        (`Searcher._stop_votes`)."""
        got = self.forwards.get(burst)
        if got is None:
            postings = self.postings
            shape = (postings.keys.size, len(self.images))
            if burst == "none":  # int8 ones: the values are dropped, only the order is wanted
                by_list = sparse.csr_matrix(
                    (np.ones(postings.ids.size, np.int8), postings.ids, postings.offsets), shape
                )
            else:
                pairs = (postings.damped_counts(burst), postings.pair_images(), postings.pair_offsets)
                by_list = sparse.csr_matrix(pairs, shape)
            # CSR -> CSC is a counting sort by image that keeps the list order (and repeats) within an image
            by_image = by_list.tocsc()
            values = None if burst == "none" else by_image.data
            got = self.forwards[burst] = ForwardRows(by_image.indptr, by_image.indices, values)
        return got

    def forward(self, burst: str) -> sparse.csr_matrix:
        """`forward_rows` as an (images x lists) CSR matrix, which batches multiply by their queries' list
        weights (`Searcher._votes_many`); with ``burst="none"`` its 1.0 values are made for the call (8 B an
        entry, freed after it) rather than kept."""
        indptr, lists, values = self.forward_rows(burst)
        if values is None:
            values = np.ones(lists.size)
        return sparse.csr_matrix((values, lists, indptr), shape=(len(self.images), self.postings.keys.size))

    @classmethod
    def create(cls, postings: Postings, signatures: dict[str, np.ndarray], images: Sequence) -> Collection:
        for arr in signatures.values():
            arr.setflags(write=False)
        idf = idf_weights(postings.df, postings.n_images)
        return cls(postings, signatures, tuple(images), idf, postings.doc_norms(idf))


def encode_collection(
    feats: dict[str, np.ndarray],
    models: IndexModels,
    config: IndexConfig,
    images: Sequence | None,
    first_id: int,
) -> Collection:
    """Nearest words and PCA signatures of a batch of images numbered from ``first_id``, indexed."""
    n, p = next(iter(feats.values())).shape[:2]
    names = image_names(images, n, first_id)
    words = {
        t: models.nearest(t, x.reshape(-1, x.shape[2]), 1)[1][:, 0].reshape(n, p) for t, x in feats.items()
    }
    signatures = {t: models.signature(t, x[:, 0]) for t, x in feats.items()}
    return collection_from_words(words, signatures, names, models, config)


def collection_from_words(
    words: dict[str, np.ndarray],
    signatures: dict[str, np.ndarray],
    names: list,
    models: IndexModels,
    config: IndexConfig,
) -> Collection:
    """Postings (each patch once, image-ordered) of (N, P) words and the signatures in their storage dtype:
    the one path for features and codes, so that the same assignments give the same index."""
    n, p = words[config.types[0]].shape
    dtype = np.float16 if config.float16_signatures else np.float32
    postings = Postings.from_entries(
        posting_keys(words, models, config).reshape(-1),
        np.repeat(np.arange(n, dtype=np.uint32), p),
        n,
        models.k(config.types[0]) if config.mode == "1d" else None,
    )
    return Collection.create(postings, {t: s.astype(dtype) for t, s in signatures.items()}, names)


def image_names(images: Sequence | None, n: int, first_id: int) -> list:
    """The caller's ids/paths of ``n`` images, by default their positions counted from ``first_id``."""
    if images is None:
        images = range(first_id, first_id + n)
    names = [_image_name(x) for x in images]
    if len(names) != n:
        raise DataError(f"images lists {len(names)} ids/paths for {n} images: give one per image")
    return names


def _image_name(x) -> str | int:
    """Caller ids stay ints or strings in ``images.json``; numpy ints become ints, paths and the rest strings."""
    if isinstance(x, str | int):
        return x
    return int(x) if isinstance(x, np.integer) else str(x)


def merge_collections(parts: Sequence[Collection], dense_k: int | None) -> Collection:
    """Concatenate collections; a stable sort by key keeps each list ordered by (new) image position."""
    sizes = np.array([len(d.images) for d in parts], dtype=np.int64)
    total = int(sizes.sum())
    if total > MAX_IMAGES:
        raise DataError(
            f"a DeepIndex holds at most {MAX_IMAGES} images (uint32 ids), {total} were given: shard it"
        )
    first_ids = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    keys = np.concatenate([d.postings.entry_keys() for d in parts])
    ids = np.concatenate([d.postings.ids + np.uint32(f) for d, f in zip(parts, first_ids)])
    postings = Postings.from_entries(keys, ids, total, dense_k)
    signatures = {t: np.concatenate([d.signatures[t] for d in parts]) for t in parts[0].signatures}
    return Collection.create(postings, signatures, [x for d in parts for x in d.images])
