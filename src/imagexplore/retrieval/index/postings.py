"""Posting lists (CSR) of a DeepIndex, their idf weights and the keys word assignments are filed under.

1-D: each patch goes to its nearest word; CSR posting lists over all ``k`` words (``offsets`` int64, ``ids``
uint32). 2-D: each patch goes to the cell ``wA * kB + wB`` of its pair of nearest words; CSR over the occupied
cells only (sorted cell ids + offsets + ids) since ``kA * kB`` is mostly empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from imagexplore.retrieval.index.config import IndexConfig
    from imagexplore.retrieval.index.vocabulary import IndexModels

MAX_IMAGES = 2**32 - 1  # image ids are uint32, the 4 bytes an entry of the published memory table


@dataclass(frozen=True)
class Postings:
    """CSR posting lists: list ``j`` (word or cell ``keys[j]``) holds ``ids[offsets[j]:offsets[j + 1]]``.

    Ids inside a list are sorted, which makes a merge of shards a stable sort and keeps results identical to a
    single build. Besides ``keys`` / ``offsets`` / ``ids`` (the published 4 B an entry) only ``df`` (images per
    list) stays in memory. The distinct (list, image) pairs with their counts - what document norms under any
    idf (shards) and burst-damped votes need - are derived from the entries when asked: for norms as
    temporaries, for burst-damped searches (`pair_offsets`, `pair_images`, `damped_counts`) kept once made.
    """

    keys: np.ndarray
    offsets: np.ndarray
    ids: np.ndarray
    n_images: int
    df: np.ndarray = field(repr=False)

    @classmethod
    def from_arrays(cls, keys: np.ndarray, offsets: np.ndarray, ids: np.ndarray, n_images: int) -> Postings:
        for arr in (keys, offsets, ids):
            arr.setflags(write=False)
        pair_list, _, _ = _pairs(keys.size, offsets, ids)
        return cls(
            keys=keys,
            offsets=offsets,
            ids=ids,
            n_images=n_images,
            df=np.bincount(pair_list, minlength=keys.size),
        )

    @classmethod
    def from_entries(
        cls, entry_keys: np.ndarray, entry_ids: np.ndarray, n_images: int, dense_k: int | None
    ) -> Postings:
        """Group entries by key; entries must come image-ordered so each list ends up sorted by id.

        ``dense_k`` gives a list to every word ``0..k-1`` (1-D); without it only occupied cells get one (2-D).
        """
        order = np.argsort(entry_keys, kind="stable")
        sorted_keys = entry_keys[order]
        if dense_k is not None:
            keys = np.arange(dense_k, dtype=np.int64)
            counts = np.bincount(sorted_keys, minlength=dense_k)
        else:
            keys, counts = np.unique(sorted_keys, return_counts=True)
        offsets = np.zeros(keys.size + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return cls.from_arrays(keys.astype(np.int64), offsets, entry_ids[order].astype(np.uint32), n_images)

    def entry_keys(self) -> np.ndarray:
        """The key of every entry, in storage order (what `from_entries` groups)."""
        return np.repeat(self.keys, np.diff(self.offsets))

    def doc_norms(self, idf: np.ndarray, burst: str = "none") -> np.ndarray:
        """The norm of every image's tf-idf bag of words for per-list weights ``idf``, its term counts damped by
        ``burst`` (`damp_tf`). The pairs are temporaries: norms are made once per (idf, burst) and kept."""
        pair_list, pair_img, counts = _pairs(self.keys.size, self.offsets, self.ids)
        weights = (damp_tf(counts, burst) * idf[pair_list]) ** 2
        return np.sqrt(np.bincount(pair_img, weights=weights, minlength=self.n_images))

    @cached_property
    def _kept_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(pair_offsets, pair_images, counts)``, made by the first burst-damped search and kept (10 B a pair)."""
        pair_list, pair_img, counts = _pairs(self.keys.size, self.offsets, self.ids)
        return np.searchsorted(pair_list, np.arange(self.keys.size + 1)), pair_img, counts

    @property
    def pair_offsets(self) -> np.ndarray:
        """CSR offsets of the distinct (list, image) pairs: list ``j`` holds pairs ``pair_offsets[j]:[j + 1]``
        (images `pair_images`, counts in `damped_counts`), what burst-damped votes gather instead of entries."""
        return self._kept_pairs[0]

    def pair_images(self) -> np.ndarray:
        """The image (uint32, as ``ids``) of every distinct (list, image) pair, in list order."""
        return self._kept_pairs[1]

    def damped_counts(self, burst: str) -> np.ndarray:
        """`damp_tf` of every pair's count, computed once per ``burst`` so every query gathers the same bits."""
        got = self._damped.get(burst)
        if got is None:
            got = self._damped[burst] = damp_tf(self._kept_pairs[2], burst)
        return got

    @cached_property
    def _damped(self) -> dict[str, np.ndarray]:
        return {}


def _pairs(n_lists: int, offsets: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (list, image) pairs of CSR postings, in list order: their list (int32/int64), image (uint32)
    and count (uint16/uint32) - an image's repeated word in a list (ids are sorted within a list) is one pair."""
    entry_list = np.repeat(
        np.arange(n_lists, dtype=np.int32 if n_lists < 2**31 else np.int64), np.diff(offsets)
    )
    first = np.ones(ids.size, dtype=bool)
    first[1:] = (entry_list[1:] != entry_list[:-1]) | (ids[1:] != ids[:-1])
    starts = np.flatnonzero(first)
    counts = np.diff(np.append(starts, ids.size))
    return (
        entry_list[starts],
        ids[starts],
        counts.astype(np.uint16 if counts.max(initial=0) < 2**16 else np.uint32),
    )


def damp_tf(counts: np.ndarray, burst: str) -> np.ndarray:
    """Term frequencies under burstiness handling (Jégou et al., CVPR 2009): ``"none"`` the counts (float64),
    ``"sqrt"`` their square root, ``"log"`` ``1 + log(count)``; a word seen once weighs 1 in all three."""
    counts = np.asarray(counts, dtype=np.float64)
    if burst == "sqrt":
        return np.sqrt(counts)
    if burst == "log":
        return 1.0 + np.log(counts)
    return counts


def idf_weights(df: np.ndarray, n_images: int) -> np.ndarray:
    """``log(N / df)`` per list; an empty list gets 0 (it can never match)."""
    return np.where(df > 0, np.log(n_images / np.maximum(df, 1)), 0.0)


def posting_keys(words: Mapping[str, np.ndarray], models: IndexModels, config: IndexConfig) -> np.ndarray:
    """Posting-list keys of word assignments of any shape: the word in 1-D, the cell ``wA * kB + wB`` in 2-D."""
    if config.mode == "1d":
        return words[config.types[0]]
    name_a, name_b = config.types
    return words[name_a] * models.k(name_b) + words[name_b]
