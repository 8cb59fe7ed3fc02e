"""DeepIndex (thesis ch. 4): an inverted index of quantised deep patch features, with a global signature.

This module is the index itself; it takes pre-computed patch features (per feature type an ``(N, P, D)``
float array, L2-normalised, patch 0 the whole image) so it can be tested and benchmarked without a CNN.

Published (kept exactly): every image has exactly ``P`` (= 14) index entries of 4-byte image ids in both the 1-D
and the 2-D (coupled multi-) index, plus one 512-d float global signature per feature type, so an index costs
14 x 4 + 512 x 4 = 2,104 B per image (1-D) and 4,152 B (2-D), vocabularies and paths excluded.

Reconstruction (THESIS.md ch. 4 steps 3-6; each choice is a field of `IndexConfig` so it can be corrected):

- Vocabulary: FAISS k-means per feature type on all patches of an independent set when one is given, else on
  the collection. Small collections get fewer words: ``k = min(k, max(1, training patches // points_per_word))``
  (default 20 patches a word), recorded in ``stats.json`` with the source of the vocabulary.
- 1-D index: each patch goes to its nearest word; CSR posting lists over all ``k`` words (``offsets`` int64,
  ``ids`` uint32). 2-D index: each patch goes to the cell ``wA * kB + wB`` of its pair of nearest words; CSR over
  the occupied cells only (sorted cell ids + offsets + ids) since ``kA * kB`` is mostly empty.
- Query patches may take several words (``ma``): in 1-D the ``ma`` nearest words, in 2-D the ``ma`` best of the
  ``ma x ma`` pairs of nearest words, ranked by the sum of the two squared distances.
- Global signature: PCA to ``signature_dim`` (or ``D`` when smaller) of the whole-image feature, L2-normalised,
  stored as float32 (or float16). The PCA keeps the full eigenbasis so a 512-d signature of a 512-d feature is a
  rotation even when fitted on fewer than 512 images.
- Scoring (``votes_signature``): candidates are the images sharing a word (cell) with the query; score =
  ``sum over matches idf(w)^2 * g(cos(sig_q, sig_d)) / (|q| |d|)`` - the cosine of the tf-idf bags of words with
  ``idf = log(N / df)``, times ``g`` of the signature cosine (the mean over feature types in 2-D): an exponential
  kernel ``exp(-|s_q - s_d|^2 / sigma^2) = exp(-2 (1 - cos) / sigma^2)`` or a threshold ``cos >= threshold``.
  Because the signature is per image, ``g`` is one factor per (query, image). ``votes`` drops ``g``;
  ``signature`` ranks every image by signature cosine alone.

On disk (`InvertedIndex.save` / `load`): a directory with ``format.json`` (format name, version 1 and the
sha256 of every other file), ``config.json``, ``images.json`` (the caller's ids/paths), ``stats.json``,
``vocab_<type>.npy``, ``pca_<type>.npz``, ``signatures_<type>.npy`` and ``postings_offsets.npy`` /
``postings_ids.npy`` (+ ``postings_cells.npy`` in 2-D), written to a temp dir beside it and renamed into place.

Codes (`InvertedIndex.from_codes`, `search_codes`): an index can also be built from word assignments computed
elsewhere - per type an ``(N, P)`` int array of word ids, the two types' words of a patch making its cell in 2-D
- and ``(N, dim)`` L2-normalised signatures, and searched with queries given the same way. This is how indexes of
millions of images are benchmarked without a CNN or k-means, and how assignments made by another tool are reused.
Vocabularies and PCA are then given (``vocab=`` + ``pca=``, or ``models_from=``) or, without them, placeholders
(``vocab_source`` ``"placeholder"``): such an index can only be searched with codes. Both ways share the
posting-list construction and the scoring, so the same assignments give the same postings and scores.

Ties are broken by the smaller image position so that results do not depend on how the index was put together:
`InvertedIndex.add`, `InvertedIndex.merge` and `ShardedIndex` give bit-identical results to a single build.
`ShardedIndex` searches shards in place: global df/idf and each shard's document norms under it are computed once,
then every query is scored shard by shard and the top-k lists merged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
from tqdm.auto import tqdm

from imagexplore.errors import ConfigError, DataError, UserError

FORMAT_NAME = "imagexplore-deepindex"
FORMAT_VERSION = 1
MODES = ("1d", "2d")
SCORINGS = ("votes_signature", "votes", "signature")
KERNELS = ("exp", "threshold")
K_RULE = "k = min(k_requested, max(1, training patches // points_per_word))"
# Options that only change how queries are scored, so an index view may swap them without a rebuild.
_QUERY_FIELDS = frozenset({"ma", "scoring", "kernel", "sigma", "threshold"})
_TYPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_MAX_IMAGES = 2**32 - 1  # image ids are uint32, the 4 bytes an entry of the published memory table
# Rows gathered at a time when scoring every image by signature, to bound the float32 copies.
_COSINE_CHUNK = 65536
# Signature cosines read every row in place once 1 / this of the images are candidates (measured: gathering a
# candidate's row costs ~4x its dot product, so in-place wins from ~1/5 on).
_DENSE_CANDIDATES = 4


@dataclass(frozen=True)
class IndexConfig:
    """How a DeepIndex is built (types, mode, vocabulary, signatures) and how queries are scored.

    ``k`` is one vocabulary size for every type or a mapping type -> size. ``mode="1d"`` indexes one feature
    type, ``"2d"`` the pair of word assignments of exactly two types (a coupled multi-index).
    """

    types: tuple[str, ...] = ("feature",)
    mode: str = "1d"
    k: int | Mapping[str, int] = 1024
    ma: int = 1
    scoring: str = "votes_signature"
    kernel: str = "exp"
    sigma: float = 0.5
    threshold: float = 0.5
    signature_dim: int = 512
    float16_signatures: bool = False
    kmeans_niter: int = 20
    kmeans_seed: int = 0
    points_per_word: int = 20

    def __post_init__(self):
        object.__setattr__(self, "types", tuple(self.types))
        if isinstance(self.k, Mapping):
            object.__setattr__(self, "k", dict(self.k))
        if self.mode not in MODES:
            raise ConfigError(f"index mode must be one of {MODES}, not {self.mode!r}")
        want = 1 if self.mode == "1d" else 2
        if len(self.types) != want or len(set(self.types)) != want:
            raise ConfigError(
                f"a {self.mode} index needs exactly {want} distinct feature types, got {self.types}"
            )
        for name in self.types:
            if not isinstance(name, str) or not _TYPE_NAME.fullmatch(name):
                raise ConfigError(
                    f"feature type {name!r} must be letters, digits, '_', '.' or '-' (a file name)"
                )
        if isinstance(self.k, dict):
            if set(self.k) != set(self.types):
                raise ConfigError(
                    f"index k must give one size per feature type {self.types}, got {sorted(self.k)}"
                )
            sizes = list(self.k.values())
        else:
            sizes = [self.k]
        for name, value in [("k", s) for s in sizes] + [
            ("ma", self.ma),
            ("signature_dim", self.signature_dim),
            ("kmeans_niter", self.kmeans_niter),
            ("points_per_word", self.points_per_word),
        ]:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"index {name} must be a positive integer, not {value!r}")
        if self.scoring not in SCORINGS:
            raise ConfigError(f"index scoring must be one of {SCORINGS}, not {self.scoring!r}")
        if self.kernel not in KERNELS:
            raise ConfigError(f"index kernel must be one of {KERNELS}, not {self.kernel!r}")
        if not self.sigma > 0:
            raise ConfigError(f"index sigma must be > 0, not {self.sigma!r}")
        if not -1.0 <= self.threshold <= 1.0:
            raise ConfigError(f"index threshold is a cosine, it must lie in [-1, 1], not {self.threshold!r}")

    def k_for(self, name: str) -> int:
        """The requested vocabulary size of one feature type (before the small-collection rule)."""
        return self.k[name] if isinstance(self.k, dict) else self.k

    def to_json(self) -> dict:
        """Plain JSON form stored as ``config.json``, read back by `from_json`."""
        out = dataclasses.asdict(self)
        out["types"] = list(self.types)
        return out

    @classmethod
    def from_json(cls, data) -> IndexConfig:
        if not isinstance(data, dict):
            raise ConfigError("an index config must be a JSON object of IndexConfig fields")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown index config key(s) {unknown}: allowed are {sorted(known)}")
        return cls(**data)


@dataclass(frozen=True)
class Postings:
    """CSR posting lists: list ``j`` (word or cell ``keys[j]``) holds ``ids[offsets[j]:offsets[j + 1]]``.

    Ids inside a list are sorted, which makes a merge of shards a stable sort and keeps results identical to a
    single build. The ``_pair_*`` arrays (one row per distinct (list, image), image-wise in key order) and ``_df``
    are derived, kept in memory only, so that document norms can be recomputed for any idf (shards).
    """

    keys: np.ndarray
    offsets: np.ndarray
    ids: np.ndarray
    n_images: int
    _pair_list: np.ndarray = field(repr=False)
    _pair_img: np.ndarray = field(repr=False)
    _pair_count: np.ndarray = field(repr=False)
    _df: np.ndarray = field(repr=False)

    @classmethod
    def from_arrays(cls, keys: np.ndarray, offsets: np.ndarray, ids: np.ndarray, n_images: int) -> Postings:
        entry_list = np.repeat(np.arange(keys.size, dtype=np.int64), np.diff(offsets))
        first = np.ones(ids.size, dtype=bool)
        first[1:] = (entry_list[1:] != entry_list[:-1]) | (ids[1:] != ids[:-1])
        starts = np.flatnonzero(first)
        pair_list = entry_list[starts]
        for arr in (keys, offsets, ids):
            arr.setflags(write=False)
        return cls(
            keys=keys,
            offsets=offsets,
            ids=ids,
            n_images=n_images,
            _pair_list=pair_list,
            _pair_img=ids[starts].astype(np.int64),
            _pair_count=np.diff(np.append(starts, ids.size)).astype(np.float64),
            _df=np.bincount(pair_list, minlength=keys.size),
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

    def doc_norms(self, idf: np.ndarray) -> np.ndarray:
        """The norm of every image's tf-idf bag of words for per-list weights ``idf``."""
        weights = (self._pair_count * idf[self._pair_list]) ** 2
        return np.sqrt(np.bincount(self._pair_img, weights=weights, minlength=self.n_images))


@dataclass(frozen=True)
class _Models:
    """What is learned once and shared by every index built from it: vocabularies, their FAISS quantisers, PCA."""

    vocab: dict[str, np.ndarray]
    quantizers: dict[str, faiss.Index]
    pca_mean: dict[str, np.ndarray]
    pca_components: dict[str, np.ndarray]
    k_requested: dict[str, int]
    source: str

    @classmethod
    def from_arrays(cls, vocab, pca_mean, pca_components, k_requested, source) -> _Models:
        quantizers = {}
        for name, centroids in vocab.items():
            quantizers[name] = faiss.IndexFlatL2(centroids.shape[1])
            quantizers[name].add(centroids)
            for arr in (centroids, pca_mean[name], pca_components[name]):
                arr.setflags(write=False)
        return cls(vocab, quantizers, pca_mean, pca_components, dict(k_requested), source)

    @classmethod
    def learn(cls, train: dict[str, np.ndarray], config: IndexConfig, source: str, bar=None) -> _Models:
        vocab, means, comps = {}, {}, {}
        for name in config.types:
            if bar is not None:
                bar.set_postfix_str(f"k-means + PCA of {name!r}")
            x = train[name]
            patches = x.reshape(-1, x.shape[2])
            k = min(config.k_for(name), max(1, patches.shape[0] // config.points_per_word))
            # FAISS warns below 39 points a centroid; our small-collection rule already decided how few is enough
            km = faiss.Kmeans(
                x.shape[2],
                k,
                niter=config.kmeans_niter,
                seed=config.kmeans_seed,
                verbose=False,
                min_points_per_centroid=min(39, config.points_per_word),
            )
            km.train(patches)
            vocab[name] = np.ascontiguousarray(km.centroids, dtype=np.float32)
            means[name], comps[name] = _fit_pca(x[:, 0], min(config.signature_dim, x.shape[2]))
            if bar is not None:
                bar.update()
        return cls.from_arrays(vocab, means, comps, {t: config.k_for(t) for t in config.types}, source)

    @classmethod
    def given(cls, vocab: Mapping, pca: Mapping, config: IndexConfig) -> _Models:
        """Vocabularies (type -> (k, D)) and PCA (type -> (mean (D,), components (dim, D))) made elsewhere."""
        arrays: dict[str, dict[str, np.ndarray]] = {"vocab": {}, "mean": {}, "components": {}}
        for name in config.types:
            if name not in vocab or name not in pca:
                raise ConfigError(
                    f"vocab= and pca= need an entry per feature type {config.types}: {name!r} lacks one"
                )
            try:
                mean, components = pca[name]
            except (TypeError, ValueError) as exc:
                raise DataError(f"pca[{name!r}] must be a pair (mean (D,), components (dim, D))") from exc
            centroids, mean, components = (
                np.array(x, dtype=np.float32) for x in (vocab[name], mean, components)
            )
            if centroids.ndim != 2 or 0 in centroids.shape:
                raise DataError(f"vocab[{name!r}] must be a non-empty (k, D) array, got {centroids.shape}")
            d = centroids.shape[1]
            want = min(config.signature_dim, d)
            if mean.shape != (d,) or components.shape != (want, d):
                raise DataError(
                    f"pca[{name!r}] holds mean {mean.shape} and components {components.shape}, expected "
                    f"({d},) and (min(signature_dim, D), D) = ({want}, {d}) for D={d} of the vocabulary"
                )
            for key, arr in zip(arrays, (centroids, mean, components)):
                arrays[key][name] = arr
        k_requested = {t: arrays["vocab"][t].shape[0] for t in config.types}
        return cls.from_arrays(arrays["vocab"], arrays["mean"], arrays["components"], k_requested, "given")

    @classmethod
    def placeholder(cls, config: IndexConfig, dims: Mapping[str, int]) -> _Models:
        """Stand-ins for an index built from codes alone: ``config.k`` zero words of width ``dim`` and an identity
        PCA, so that the index has the usual layout (save, load, shards) but `nearest` refuses feature input."""
        vocab, means, comps = {}, {}, {}
        for name in config.types:
            dim = dims[name]
            if dim > config.signature_dim:
                raise DataError(
                    f"signatures[{name!r}] have {dim} dims, more than signature_dim={config.signature_dim}: "
                    "raise signature_dim or give the signatures the PCA made"
                )
            vocab[name] = np.zeros((config.k_for(name), dim), dtype=np.float32)
            means[name] = np.zeros(dim, dtype=np.float32)
            comps[name] = np.eye(dim, dtype=np.float32)
        return cls.from_arrays(vocab, means, comps, {t: config.k_for(t) for t in config.types}, "placeholder")

    def k(self, name: str) -> int:
        return self.vocab[name].shape[0]

    def nearest(self, name: str, x: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        """Squared distances and ids of the ``m`` nearest words of each row of ``x`` (M, D)."""
        if self.source == "placeholder":
            raise UserError(
                "this index was built from codes without vocabularies (vocab_source 'placeholder'): "
                "search it with search_codes / search_codes_batch, or build it with vocab= and pca="
            )
        return self.quantizers[name].search(x, min(m, self.k(name)))

    def signature(self, name: str, whole: np.ndarray) -> np.ndarray:
        """PCA + L2 of whole-image features (M, D) in float64, projected by ``np.einsum`` rather than BLAS.

        BLAS blocks its sums by M, so a row's result depends on the batch it came in; with fewer images than
        dims the trailing axes hold pure rounding noise, which then survives the rounding to storage, and shards,
        `add` and queries would not match a single build. numpy's own loops compute every row the same way.
        """
        centred = whole.astype(np.float64) - self.pca_mean[name]
        y = np.einsum("md,kd->mk", centred, self.pca_components[name].astype(np.float64))
        return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), np.finfo(np.float64).tiny)

    def same_as(self, other: _Models) -> bool:
        if self is other:
            return True
        return self.vocab.keys() == other.vocab.keys() and all(
            np.array_equal(a[t], b[t])
            for t in self.vocab
            for a, b in (
                (self.vocab, other.vocab),
                (self.pca_mean, other.pca_mean),
                (self.pca_components, other.pca_components),
            )
        )


@dataclass(frozen=True)
class _Data:
    """One immutable snapshot of the indexed collection; `InvertedIndex.add` swaps in a new one atomically."""

    postings: Postings
    signatures: dict[str, np.ndarray]
    images: tuple
    idf: np.ndarray
    doc_norms: np.ndarray

    @classmethod
    def create(cls, postings: Postings, signatures: dict[str, np.ndarray], images: Sequence) -> _Data:
        for arr in signatures.values():
            arr.setflags(write=False)
        idf = _idf(postings._df, postings.n_images)
        return cls(postings, signatures, tuple(images), idf, postings.doc_norms(idf))


@dataclass(frozen=True)
class _Query:
    """Encoded queries: per query its sorted unique keys with counts, and its signature per type."""

    keys: list[np.ndarray]
    counts: list[np.ndarray]
    signatures: dict[str, np.ndarray]

    @classmethod
    def create(cls, keys: np.ndarray, signatures: Mapping[str, np.ndarray]) -> _Query:
        """From the (Q, L) keys of every query's assignments and its (Q, dim) signatures.

        Signatures are rounded to float32 like stored ones, so a query scores the same alone or in any batch.
        """
        uniques = [np.unique(row, return_counts=True) for row in keys]
        return cls(
            [u[0] for u in uniques],
            [u[1] for u in uniques],
            {t: s.astype(np.float32, copy=False) for t, s in signatures.items()},
        )


def _idf(df: np.ndarray, n_images: int) -> np.ndarray:
    """``log(N / df)`` per list; an empty list gets 0 (it can never match)."""
    return np.where(df > 0, np.log(n_images / np.maximum(df, 1)), 0.0)


def _fit_pca(whole: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and top-``dim`` principal axes (full eigenbasis, so fewer samples than dims still give a rotation)."""
    x = whole.astype(np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    eigval, eigvec = np.linalg.eigh(centred.T @ centred)
    order = np.argsort(eigval, kind="stable")[::-1][:dim]
    return mean.astype(np.float32), np.ascontiguousarray(eigvec[:, order].T, dtype=np.float32)


def _check_features(
    features, types: Sequence[str], what: str, ndim: int = 3, shape_name: str | None = None
) -> dict[str, np.ndarray]:
    """Validated float32 C-contiguous features per type; all types must agree on the leading dimensions."""
    if not isinstance(features, Mapping):
        raise DataError(f"{what} must be a mapping feature type -> array, got {type(features).__name__}")
    out, lead = {}, None
    shape_name = shape_name or ("(N, P, D)" if ndim == 3 else "(P, D)")
    for name in types:
        if name not in features:
            raise DataError(
                f"{what} lack feature type {name!r}: give one {shape_name} array per type {tuple(types)}"
            )
        arr = np.asarray(features[name])
        if arr.ndim != ndim or arr.dtype.kind != "f" or 0 in arr.shape:
            raise DataError(
                f"{what}[{name!r}] must be a non-empty float {shape_name} array, got {arr.dtype} {arr.shape}"
            )
        if lead is not None and arr.shape[:-1] != lead:
            raise DataError(
                f"{what} types disagree on their leading sizes: {lead} vs {arr.shape[:-1]} for {name!r}"
            )
        lead = arr.shape[:-1]
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise DataError(f"{what}[{name!r}] holds NaN or inf values: check the feature extractor")
        out[name] = arr
    return out


def _check_dims(feats: dict[str, np.ndarray], models: _Models, what: str) -> None:
    for name, arr in feats.items():
        want = models.vocab[name].shape[1]
        if arr.shape[-1] != want:
            raise DataError(
                f"{what}[{name!r}] has D={arr.shape[-1]} but the index was built on D={want}: use the same extractor"
            )


def _check_signatures(signatures, types: Sequence[str], what: str, ndim: int) -> dict[str, np.ndarray]:
    """Given global signatures per type: float32, finite and of unit length (scores use them as cosines)."""
    shape_name = "(N, dim)" if ndim == 2 else "(dim,)"
    out = _check_features(signatures, types, what, ndim=ndim, shape_name=shape_name)
    for name, arr in out.items():
        # einsum: no temporary as large as the signatures, which matters at millions of images
        squares = np.einsum("...i,...i->...", arr, arr)
        if np.any(np.abs(squares - 1.0) > 2e-3):
            raise DataError(
                f"{what}[{name!r}] must be L2-normalised (scores use them as cosines): "
                f"found a norm of {np.sqrt(squares.flat[np.argmax(np.abs(squares - 1.0))]):.4g}"
            )
    return out


def _check_signature_dims(sigs: dict[str, np.ndarray], models: _Models, what: str) -> None:
    for name, arr in sigs.items():
        want = models.pca_components[name].shape[0]
        if arr.shape[-1] != want:
            raise DataError(f"{what}[{name!r}] are {arr.shape[-1]}-d but the index's signatures are {want}-d")


def _check_words(
    words, types: Sequence[str], models: _Models, what: str, ndims: tuple[int, ...], shape_name: str
) -> dict[str, np.ndarray]:
    """Validated int64 word ids per type, all of one shape, each inside its type's vocabulary."""
    if not isinstance(words, Mapping):
        raise DataError(f"{what} must be a mapping feature type -> word ids, got {type(words).__name__}")
    out, shape = {}, None
    for name in types:
        if name not in words:
            raise DataError(
                f"{what} lack feature type {name!r}: give one {shape_name} int array per type {types}"
            )
        arr = np.asarray(words[name])
        if arr.ndim not in ndims or arr.dtype.kind not in "iu" or 0 in arr.shape:
            raise DataError(
                f"{what}[{name!r}] must be a non-empty int {shape_name} array, got {arr.dtype} {arr.shape}"
            )
        if shape is not None and arr.shape != shape:
            raise DataError(f"{what} types disagree on their shapes: {shape} vs {arr.shape} for {name!r}")
        shape = arr.shape
        k = models.k(name)
        if arr.min() < 0 or arr.max() >= k:
            raise DataError(
                f"{what}[{name!r}] hold word ids in [{arr.min()}, {arr.max()}], outside the {k} words 0..{k - 1} "
                "of the vocabulary"
            )
        out[name] = arr.astype(np.int64, copy=False)
    return out


def _keys(words: Mapping[str, np.ndarray], models: _Models, config: IndexConfig) -> np.ndarray:
    """Posting-list keys of word assignments of any shape: the word in 1-D, the cell ``wA * kB + wB`` in 2-D."""
    if config.mode == "1d":
        return words[config.types[0]]
    name_a, name_b = config.types
    return words[name_a] * models.k(name_b) + words[name_b]


def _query_norm(sorted_keys: np.ndarray, idf: np.ndarray, encoded: _Query, i: int) -> float:
    """Norm of query ``i``'s tf-idf bag of words; keys absent from ``sorted_keys`` weigh nothing."""
    pos, found = _lookup(sorted_keys, encoded.keys[i])
    return float(np.sqrt(np.sum((encoded.counts[i][found] * idf[pos[found]]) ** 2)))


def _top_k(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
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


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"search k (results per query) must be a positive integer, not {k!r}")
    return int(k)


class _Searcher:
    """The query side shared by `InvertedIndex` and `ShardedIndex`: queries as features or as codes, encoded
    once, then scored one by one by the scorer a subclass binds to its (immutable) data."""

    config: IndexConfig
    _models: _Models

    def search(self, query: Mapping[str, np.ndarray], k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` image positions (int64) and scores (float64) for one query (type -> (P, D)), best first.

        Fewer than ``k`` come back when fewer images share a word with the query (not with ``"signature"``).
        """
        k = _check_k(k)
        feats = _check_features(query, self.config.types, "query", ndim=2)
        return self._scorer()(self._encode_queries({t: q[None] for t, q in feats.items()}), 0, k)

    def search_batch(self, queries: Mapping[str, np.ndarray], k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """`search` for ``Q`` queries (type -> (Q, P, D)): (Q, k) positions padded with -1, scores with -inf."""
        k = _check_k(k)
        return self._search_all(
            self._encode_queries(_check_features(queries, self.config.types, "queries")), k
        )

    def search_codes(
        self, words: Mapping[str, np.ndarray], signatures: Mapping[str, np.ndarray], k: int = 10
    ) -> tuple[np.ndarray, np.ndarray]:
        """`search` for one query given as codes: per type its word ids (P,) and its signature (dim,).

        Words may also be (P, m), ``m`` assignments per patch (in 2-D the j-th words of the two types make a
        pair); they replace the ``ma`` assignment of features, so ``config.ma`` plays no part. The signature must
        be L2-normalised, as the index's PCA + L2 would make it. Same assignments, same scores as `search`.
        """
        k = _check_k(k)
        return self._scorer()(self._encode_codes(words, signatures, batched=False), 0, k)

    def search_codes_batch(
        self, words: Mapping[str, np.ndarray], signatures: Mapping[str, np.ndarray], k: int = 10
    ) -> tuple[np.ndarray, np.ndarray]:
        """`search_codes` for ``Q`` queries (words type -> (Q, P) or (Q, P, m), signatures type -> (Q, dim)),
        returned like `search_batch`."""
        k = _check_k(k)
        return self._search_all(self._encode_codes(words, signatures, batched=True), k)

    def _scorer(self):
        """``score(encoded, i, k) -> (ids, scores)`` of query ``i``, bound to one snapshot of the data."""
        raise NotImplementedError

    def _search_all(self, encoded: _Query, k: int) -> tuple[np.ndarray, np.ndarray]:
        score = self._scorer()
        n_queries = len(encoded.keys)
        ids = np.full((n_queries, k), -1, dtype=np.int64)
        scores = np.full((n_queries, k), -np.inf)
        for i in range(n_queries):
            got_ids, got_scores = score(encoded, i, k)
            ids[i, : got_ids.size], scores[i, : got_ids.size] = got_ids, got_scores
        return ids, scores

    def _encode_queries(self, feats: dict[str, np.ndarray]) -> _Query:
        """Multiple assignment of every query patch and the query signatures, batched through FAISS."""
        models, config = self._models, self.config
        _check_dims(feats, models, "queries")
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
            keys = _keys({name_a: word_a[rows, pick_a], name_b: word_b[rows, pick_b]}, models, config)
        signatures = {t: models.signature(t, x[:, 0]) for t, x in feats.items()}
        return _Query.create(keys.reshape(n_queries, -1), signatures)

    def _encode_codes(self, words, signatures, batched: bool) -> _Query:
        types, models = self.config.types, self._models
        lead = 1 if batched else 0
        shape_name = "(Q, P) or (Q, P, m)" if batched else "(P,) or (P, m)"
        codes = _check_words(words, types, models, "query words", (lead + 1, lead + 2), shape_name)
        sigs = _check_signatures(signatures, types, "query signatures", lead + 1)
        _check_signature_dims(sigs, models, "query signatures")
        if not batched:
            codes = {t: c[None] for t, c in codes.items()}
            sigs = {t: s[None] for t, s in sigs.items()}
        n_queries = next(iter(codes.values())).shape[0]
        if next(iter(sigs.values())).shape[0] != n_queries:
            raise DataError(
                f"query words are given for {n_queries} queries but signatures for "
                f"{next(iter(sigs.values())).shape[0]}: give one signature per query"
            )
        return _Query.create(_keys(codes, models, self.config).reshape(n_queries, -1), sigs)

    def _score(
        self,
        data: _Data,
        idf: np.ndarray,
        doc_norms: np.ndarray,
        encoded: _Query,
        i: int,
        qnorm: float,
        k: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Score query ``i`` against ``data`` with the given idf / document norms (global ones for shards)."""
        config = self.config
        if config.scoring == "signature":
            cands = np.arange(len(data.images), dtype=np.int64)
            return _top_k(cands, self._cosines(data, cands, encoded, i), k)
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
        return _top_k(cands, scores, k)

    def _cosines(self, data: _Data, cands: np.ndarray, encoded: _Query, i: int) -> np.ndarray:
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


class InvertedIndex(_Searcher):
    """A DeepIndex over pre-computed patch features (or codes): build, search, add, merge, save and load.

    Searches only read an immutable snapshot of the data, so any number of threads may search one index;
    `add` builds a new snapshot and swaps it in with one assignment.
    """

    def __init__(self, config: IndexConfig, models: _Models, data: _Data, build_seconds: float):
        self.config = config
        self._models = models
        self._data = data
        self._build_seconds = build_seconds

    # ----------------------------------------------------------------------------------------------- building
    @classmethod
    def build(
        cls,
        features: Mapping[str, np.ndarray],
        config: IndexConfig | None = None,
        *,
        images: Sequence | None = None,
        train: Mapping[str, np.ndarray] | None = None,
        models_from: InvertedIndex | None = None,
        progress: bool = False,
    ) -> InvertedIndex:
        """Index ``features`` (type -> (N, P, D)); ``images`` are the caller's ids/paths (default 0..N-1).

        Vocabularies and PCA are learned on ``train`` (an independent set) when given, else on ``features``;
        ``models_from`` reuses another index's, which is how shards that can be merged are built.
        ``progress`` shows a bar over the steps (one k-means + PCA per feature type, then the postings).
        """
        config = config or IndexConfig()
        start = time.perf_counter()
        feats = _check_features(features, config.types, "features")
        learn = models_from is None
        with tqdm(
            total=len(config.types) * learn + 1, desc="index", unit="step", disable=not progress
        ) as bar:
            if models_from is not None:
                if train is not None:
                    raise ConfigError(
                        "give either train= (learn new vocabularies) or models_from= (reuse), not both"
                    )
                _check_same_layout(config, models_from.config)
                models = models_from._models
            elif train is not None:
                models = _Models.learn(
                    _check_features(train, config.types, "train features"), config, "independent", bar
                )
            else:
                models = _Models.learn(feats, config, "collection", bar)
            _check_dims(feats, models, "features")
            bar.set_postfix_str("postings + signatures")
            data = _encode_collection(feats, models, config, images, first_id=0)
            bar.update()
        return cls(config, models, data, time.perf_counter() - start)

    @classmethod
    def from_codes(
        cls,
        words: Mapping[str, np.ndarray],
        signatures: Mapping[str, np.ndarray],
        config: IndexConfig | None = None,
        *,
        images: Sequence | None = None,
        vocab: Mapping[str, np.ndarray] | None = None,
        pca: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
        models_from: InvertedIndex | None = None,
    ) -> InvertedIndex:
        """Index images given as codes instead of features, for scale benchmarks and external assignments.

        ``words``: type -> (N, P) int word ids (in 2-D the two types' words of a patch make its cell);
        ``signatures``: type -> (N, dim) L2-normalised global signatures (copied, stored as the config says).
        Vocabularies and PCA come from ``vocab`` (type -> (k, D)) with ``pca`` (type -> (mean, components), as
        `pca` returns them), or from ``models_from``; without either they are placeholders of ``config.k``
        words, and the index can only be searched with `search_codes` / `search_codes_batch`.
        """
        config = config or IndexConfig()
        start = time.perf_counter()
        sigs = _check_signatures(signatures, config.types, "signatures", ndim=2)
        if models_from is not None:
            if vocab is not None or pca is not None:
                raise ConfigError("give either vocab= and pca= or models_from=, not both")
            _check_same_layout(config, models_from.config)
            models = models_from._models
        elif vocab is not None or pca is not None:
            if vocab is None or pca is None:
                raise ConfigError("vocab= and pca= go together: the PCA is what made the signatures")
            models = _Models.given(vocab, pca, config)
        else:
            models = _Models.placeholder(config, {t: s.shape[1] for t, s in sigs.items()})
        _check_signature_dims(sigs, models, "signatures")
        codes = _check_words(words, config.types, models, "words", (2,), "(N, P)")
        n = next(iter(codes.values())).shape[0]
        if next(iter(sigs.values())).shape[0] != n:
            raise DataError(
                f"words are given for {n} images but signatures for {next(iter(sigs.values())).shape[0]}: "
                "give one signature per image"
            )
        names = _image_names(images, n, first_id=0)
        data = _collection_data(codes, sigs, names, models, config)
        return cls(config, models, data, time.perf_counter() - start)

    def add(self, features: Mapping[str, np.ndarray], images: Sequence | None = None) -> None:
        """Append images with the fixed vocabularies and PCA; postings are merged, nothing is re-learned."""
        start = time.perf_counter()
        feats = _check_features(features, self.config.types, "features")
        _check_dims(feats, self._models, "features")
        current = self._data
        new = _encode_collection(feats, self._models, self.config, images, first_id=len(current.images))
        self._data = _merge_data([current, new], self._dense_k())
        self._build_seconds += time.perf_counter() - start

    @classmethod
    def merge(cls, shards: Sequence[InvertedIndex]) -> InvertedIndex:
        """One index of ``shards`` in order (image positions concatenated); same results as a single build."""
        first = _check_shards(shards)
        start = time.perf_counter()
        data = _merge_data([s._data for s in shards], first._dense_k())
        seconds = sum(s._build_seconds for s in shards) + time.perf_counter() - start
        return cls(first.config, first._models, data, seconds)

    def with_query_options(self, **changes) -> InvertedIndex:
        """A view sharing this index's arrays that scores queries differently (ma, scoring, kernel, ...).

        The view holds the data as it is now: images `add`-ed to this index later do not show in it.
        """
        other = sorted(set(changes) - _QUERY_FIELDS)
        if other:
            raise ConfigError(
                f"{other} change how the index is built: only {sorted(_QUERY_FIELDS)} can change"
            )
        return InvertedIndex(
            dataclasses.replace(self.config, **changes), self._models, self._data, self._build_seconds
        )

    def renamed(self, images: Sequence) -> InvertedIndex:
        """A view of this index whose images carry other ids/paths (one per image, in order), e.g. paths read
        relative to the index directory and resolved; nothing else changes."""
        names = _image_names(images, len(self), first_id=0)
        data = dataclasses.replace(self._data, images=tuple(names))
        return InvertedIndex(self.config, self._models, data, self._build_seconds)

    def _dense_k(self) -> int | None:
        return self._models.k(self.config.types[0]) if self.config.mode == "1d" else None

    # ------------------------------------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self._data.images)

    @property
    def images(self) -> tuple:
        return self._data.images

    @property
    def postings(self) -> Postings:
        return self._data.postings

    @property
    def signatures(self) -> dict[str, np.ndarray]:
        return dict(self._data.signatures)

    @property
    def vocabularies(self) -> dict[str, np.ndarray]:
        return dict(self._models.vocab)

    @property
    def pca(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per type the PCA ``(mean (D,), components (dim, D))`` of the global signature."""
        return {t: (self._models.pca_mean[t], self._models.pca_components[t]) for t in self.config.types}

    @property
    def stats(self) -> dict:
        """What ``stats.json`` holds; ``bytes_per_image`` counts index entries + signatures only (the thesis)."""
        data = self._data
        n = len(data.images)
        sig_bytes = sum(s.nbytes for s in data.signatures.values())
        return {
            "images": n,
            "bytes_per_image": (data.postings.ids.nbytes + sig_bytes) / n,
            "entries_per_image": data.postings.ids.size // n,
            "build_seconds": round(self._build_seconds, 3),
            "vocab_source": self._models.source,
            "k": {t: self._models.k(t) for t in self.config.types},
            "k_requested": dict(self._models.k_requested),
            "k_rule": K_RULE,
            "mode": self.config.mode,
            "posting_lists": int(data.postings.keys.size),
            "signature_dim": {t: int(s.shape[1]) for t, s in data.signatures.items()},
            "signature_dtype": "float16" if self.config.float16_signatures else "float32",
        }

    # ------------------------------------------------------------------------------------------------- search
    def _scorer(self):
        data = self._data  # one snapshot for a whole batch, whatever `add` does meanwhile

        def score(encoded: _Query, i: int, k: int) -> tuple[np.ndarray, np.ndarray]:
            qnorm = _query_norm(data.postings.keys, data.idf, encoded, i)
            return self._score(data, data.idf, data.doc_norms, encoded, i, qnorm, k)

        return score

    # --------------------------------------------------------------------------------------------------- disk
    def save(
        self,
        directory: str | os.PathLike,
        *,
        extra_stats: dict | None = None,
        extra_files: dict[str, bytes] | None = None,
        images: Sequence | None = None,
    ) -> Path:
        """Write the index as a versioned directory, atomically (temp dir beside it, fsync, rename).

        ``extra_stats`` are merged into stats.json and ``extra_files`` written beside the index (both checksummed
        in format.json): how a wrapper such as `retrieval.api.Index` records what it adds; ``images`` replaces
        the ids/paths written to images.json (one per image; `retrieval.api.Index` writes paths relative to the
        directory). An existing index or empty folder at ``directory`` is replaced; anything else is refused."""
        dest = Path(directory)
        if dest.exists() and not (
            dest.is_dir() and ((dest / "format.json").is_file() or not any(dest.iterdir()))
        ):
            raise UserError(
                f"{dest} exists and is not a DeepIndex directory: choose another path or remove it"
            )
        data, models = self._data, self._models
        names = list(data.images) if images is None else _image_names(images, len(data.images), first_id=0)
        blobs: dict[str, bytes] = {
            "config.json": _json_bytes(self.config.to_json()),
            "images.json": _json_bytes(names),
            "stats.json": _json_bytes({**self.stats, **(extra_stats or {})}),
            "postings_offsets.npy": _npy_bytes(data.postings.offsets),
            "postings_ids.npy": _npy_bytes(data.postings.ids),
        }
        if self.config.mode == "2d":
            blobs["postings_cells.npy"] = _npy_bytes(data.postings.keys)
        for name in self.config.types:
            blobs[f"vocab_{name}.npy"] = _npy_bytes(models.vocab[name])
            buf = io.BytesIO()
            np.savez(buf, mean=models.pca_mean[name], components=models.pca_components[name])
            blobs[f"pca_{name}.npz"] = buf.getvalue()
            blobs[f"signatures_{name}.npy"] = _npy_bytes(data.signatures[name])
        blobs.update(extra_files or {})
        digests = {name: hashlib.sha256(blob).hexdigest() for name, blob in blobs.items()}
        blobs["format.json"] = _json_bytes(
            {"format": FORMAT_NAME, "version": FORMAT_VERSION, "files": digests}
        )
        _write_atomically(dest, blobs)
        return dest

    @classmethod
    def load(cls, directory: str | os.PathLike) -> InvertedIndex:
        """Read an index written by `save`, checking version, presence, sha256 and shape of every file."""
        root = Path(directory)
        fmt = _parse_json(_read_bytes(root / "format.json", "the index's format.json"), root / "format.json")
        if not isinstance(fmt, dict) or fmt.get("format") != FORMAT_NAME:
            raise DataError(f"{root} is not a DeepIndex directory (format.json does not say {FORMAT_NAME!r})")
        if fmt.get("version") != FORMAT_VERSION:
            raise DataError(
                f"{root} holds DeepIndex format version {fmt.get('version')!r}; this imagexplore reads version "
                f"{FORMAT_VERSION}: rebuild the index or use the imagexplore release that wrote it"
            )
        listed = fmt.get("files")
        if not isinstance(listed, dict) or not all(isinstance(v, str) for v in listed.values()):
            raise DataError(
                f"{root}/format.json has no valid 'files' table: the index is damaged, rebuild it"
            )
        blobs = {}
        for name, digest in listed.items():
            if not isinstance(name, str) or Path(name).name != name:
                raise DataError(f"{root}/format.json lists {name!r}, not a file of the index: rebuild it")
            blob = _read_bytes(root / name, "an index file listed in format.json")
            if hashlib.sha256(blob).hexdigest() != digest:
                raise DataError(
                    f"{root / name} is damaged (sha256 differs from format.json): rebuild the index"
                )
            blobs[name] = blob
        return _from_blobs(root, blobs)


# ---------------------------------------------------------------------------------------------------- helpers
def _encode_collection(
    feats: dict[str, np.ndarray], models: _Models, config: IndexConfig, images: Sequence | None, first_id: int
) -> _Data:
    """Nearest words and PCA signatures of a batch of images numbered from ``first_id``, indexed."""
    n, p = next(iter(feats.values())).shape[:2]
    names = _image_names(images, n, first_id)
    words = {
        t: models.nearest(t, x.reshape(-1, x.shape[2]), 1)[1][:, 0].reshape(n, p) for t, x in feats.items()
    }
    signatures = {t: models.signature(t, x[:, 0]) for t, x in feats.items()}
    return _collection_data(words, signatures, names, models, config)


def _collection_data(
    words: dict[str, np.ndarray],
    signatures: dict[str, np.ndarray],
    names: list,
    models: _Models,
    config: IndexConfig,
) -> _Data:
    """Postings (each patch once, image-ordered) of (N, P) words and the signatures in their storage dtype:
    the one path for features and codes, so that the same assignments give the same index."""
    n, p = words[config.types[0]].shape
    dtype = np.float16 if config.float16_signatures else np.float32
    postings = Postings.from_entries(
        _keys(words, models, config).reshape(-1),
        np.repeat(np.arange(n, dtype=np.uint32), p),
        n,
        models.k(config.types[0]) if config.mode == "1d" else None,
    )
    return _Data.create(postings, {t: s.astype(dtype) for t, s in signatures.items()}, names)


def _image_names(images: Sequence | None, n: int, first_id: int) -> list:
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


def _merge_data(parts: Sequence[_Data], dense_k: int | None) -> _Data:
    """Concatenate collections; a stable sort by key keeps each list ordered by (new) image position."""
    sizes = np.array([len(d.images) for d in parts], dtype=np.int64)
    total = int(sizes.sum())
    if total > _MAX_IMAGES:
        raise DataError(
            f"a DeepIndex holds at most {_MAX_IMAGES} images (uint32 ids), {total} were given: shard it"
        )
    first_ids = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    keys = np.concatenate([d.postings.entry_keys() for d in parts])
    ids = np.concatenate([d.postings.ids + np.uint32(f) for d, f in zip(parts, first_ids)])
    postings = Postings.from_entries(keys, ids, total, dense_k)
    signatures = {t: np.concatenate([d.signatures[t] for d in parts]) for t in parts[0].signatures}
    return _Data.create(postings, signatures, [x for d in parts for x in d.images])


def _check_same_layout(config: IndexConfig, other: IndexConfig) -> None:
    for name in ("types", "mode", "float16_signatures"):
        if getattr(config, name) != getattr(other, name):
            raise ConfigError(
                f"index {name} differs ({getattr(config, name)!r} vs {getattr(other, name)!r}): shards must share it"
            )


def _check_shards(shards: Sequence[InvertedIndex]) -> InvertedIndex:
    if not shards:
        raise UserError("no shards were given: pass at least one InvertedIndex")
    first = shards[0]
    for shard in shards[1:]:
        _check_same_layout(first.config, shard.config)
        if not first._models.same_as(shard._models):
            raise UserError(
                "shards were built with different vocabularies or PCA: build them with models_from="
            )
    return first


class ShardedIndex(_Searcher):
    """Several `InvertedIndex` shards searched as one merged index (positions concatenated in shard order).

    Global df/idf (df adds up across shards) and every shard's document norms under it are computed once here;
    a query is then scored shard by shard and the top-k lists merged, with results bit-identical to
    `InvertedIndex.merge(shards)` without copying the shards. It holds the shards' data as it is now (images
    `add`-ed to a shard later do not show) and scores queries with the first shard's options (`config`).
    """

    def __init__(self, shards: Sequence[InvertedIndex]):
        first = _check_shards(shards)
        self.config = first.config
        self._models = first._models
        parts = [s._data for s in shards]
        all_keys, inverse = np.unique(np.concatenate([d.postings.keys for d in parts]), return_inverse=True)
        # float sums of integer counts are exact far beyond any index size, and bincount is one pass
        df = np.bincount(
            inverse, weights=np.concatenate([d.postings._df for d in parts]), minlength=all_keys.size
        )
        self._keys = all_keys
        self._idf = _idf(df.astype(np.int64), sum(len(d.images) for d in parts))
        self._shards = []
        start, first_id = 0, 0
        for data in parts:
            idf = self._idf[inverse[start : start + data.postings.keys.size]]
            start += data.postings.keys.size
            self._shards.append((data, idf, data.postings.doc_norms(idf), first_id))
            first_id += len(data.images)
        self._images = tuple(x for d in parts for x in d.images)

    def __len__(self) -> int:
        return len(self._images)

    @property
    def images(self) -> tuple:
        return self._images

    def _scorer(self):
        return self._score_merged

    def _score_merged(self, encoded: _Query, i: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        qnorm = _query_norm(self._keys, self._idf, encoded, i)
        found_ids, found_scores = [], []
        for data, idf, doc_norms, first_id in self._shards:
            ids, scores = self._score(data, idf, doc_norms, encoded, i, qnorm, k)
            found_ids.append(ids + first_id)
            found_scores.append(scores)
        return _top_k(np.concatenate(found_ids), np.concatenate(found_scores), k)


def search_shards(
    shards: Sequence[InvertedIndex], query: Mapping[str, np.ndarray], k: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """`ShardedIndex(shards).search(query, k)`, kept for existing callers: it pays the global idf on every call,
    so build a `ShardedIndex` once to search more than one query."""
    return ShardedIndex(shards).search(query, k)


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=1) + "\n").encode()


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(
            f"cannot read {what} {path} ({exc.strerror}): is this a complete DeepIndex directory?"
        ) from exc


def _parse_json(blob: bytes, path: Path):
    try:
        return json.loads(blob)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON ({exc}): the index is damaged, rebuild it") from exc


def _write_atomically(dest: Path, blobs: dict[str, bytes]) -> None:
    """Write every file into a temp dir beside ``dest`` (format.json last), fsync, then rename it into place.

    An existing index at ``dest`` is first renamed aside and removed after the swap, so a reader sees either the
    old or the new index; a crash between the two renames leaves the old one as ``.<name>.old-*`` beside it.
    """
    parent = dest.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=parent))
    try:
        for name in sorted(blobs, key=lambda n: n == "format.json"):
            with open(tmp / name, "wb") as fh:
                fh.write(blobs[name])
                fh.flush()
                os.fsync(fh.fileno())
        _fsync_dir(tmp)
        if dest.exists():
            old = parent / f".{dest.name}.old-{uuid.uuid4().hex}"
            os.rename(dest, old)
            os.rename(tmp, dest)
            shutil.rmtree(old)
        else:
            os.rename(tmp, dest)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _from_blobs(root: Path, blobs: dict[str, bytes]) -> InvertedIndex:
    """Rebuild an index from verified file contents, checking every shape against config and stats."""

    def need(name: str) -> bytes:
        if name not in blobs:
            raise DataError(
                f"{root} lacks {name} (not listed in format.json): the index is incomplete, rebuild it"
            )
        return blobs[name]

    def array(name: str, dtype, shape: tuple) -> np.ndarray:
        try:
            arr = np.load(io.BytesIO(need(name)), allow_pickle=False)
        except ValueError as exc:
            raise DataError(f"{root / name} is not a readable .npy array ({exc}): rebuild the index") from exc
        _check_shape(root / name, arr, dtype, shape)
        return arr

    try:
        config = IndexConfig.from_json(_parse_json(need("config.json"), root / "config.json"))
    except ConfigError as exc:
        raise DataError(f"{root / 'config.json'}: {exc}") from exc
    stats = _parse_json(need("stats.json"), root / "stats.json")
    images = _parse_json(need("images.json"), root / "images.json")
    try:
        n, p = int(stats["images"]), int(stats["entries_per_image"])
        ks = {t: int(stats["k"][t]) for t in config.types}
        k_requested = {t: int(stats["k_requested"][t]) for t in config.types}
        seconds, source = float(stats["build_seconds"]), str(stats["vocab_source"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(
            f"{root / 'stats.json'} lacks or garbles {exc}: the index is damaged, rebuild it"
        ) from exc
    if not isinstance(images, list) or len(images) != n or n < 1:
        raise DataError(
            f"{root / 'images.json'} must list the {n} indexed images: the index is damaged, rebuild it"
        )
    vocab, means, comps, signatures = {}, {}, {}, {}
    sig_dtype = np.float16 if config.float16_signatures else np.float32
    for name in config.types:
        vocab[name] = array(f"vocab_{name}.npy", np.float32, (ks[name], None))
        d = vocab[name].shape[1]
        dim = min(config.signature_dim, d)
        try:
            with np.load(io.BytesIO(need(f"pca_{name}.npz")), allow_pickle=False) as npz:
                means[name], comps[name] = npz["mean"], npz["components"]
        except (ValueError, KeyError, OSError) as exc:
            raise DataError(
                f"{root}/pca_{name}.npz is not a readable PCA ({exc}): rebuild the index"
            ) from exc
        _check_shape(root / f"pca_{name}.npz", means[name], np.float32, (d,))
        _check_shape(root / f"pca_{name}.npz", comps[name], np.float32, (dim, d))
        signatures[name] = array(f"signatures_{name}.npy", sig_dtype, (n, dim))
    ids = array("postings_ids.npy", np.uint32, (n * p,))
    if config.mode == "1d":
        keys = np.arange(ks[config.types[0]], dtype=np.int64)
    else:
        keys = array("postings_cells.npy", np.int64, (None,))
        if keys.size and (
            np.any(np.diff(keys) <= 0) or keys[0] < 0 or keys[-1] >= ks[config.types[0]] * ks[config.types[1]]
        ):
            raise DataError(
                f"{root}/postings_cells.npy is not a sorted list of valid cells: rebuild the index"
            )
    offsets = array("postings_offsets.npy", np.int64, (keys.size + 1,))
    if offsets[0] != 0 or offsets[-1] != ids.size or np.any(np.diff(offsets) < 0):
        raise DataError(f"{root}/postings_offsets.npy does not delimit the postings: rebuild the index")
    entry_list = np.repeat(np.arange(keys.size), np.diff(offsets))
    unsorted = (entry_list[1:] == entry_list[:-1]) & (ids[1:] < ids[:-1])
    if (ids.size and ids.max() >= n) or np.any(np.bincount(ids, minlength=n) != p) or np.any(unsorted):
        raise DataError(
            f"{root}/postings_ids.npy does not hold {p} sorted entries per image: rebuild the index"
        )
    models = _Models.from_arrays(vocab, means, comps, k_requested, source)
    data = _Data.create(Postings.from_arrays(keys, offsets, ids, n), signatures, images)
    return InvertedIndex(config, models, data, seconds)


def _check_shape(path: Path, arr: np.ndarray, dtype, shape: tuple) -> None:
    """``shape`` may hold None for a free dimension."""
    ok = arr.dtype == dtype and arr.ndim == len(shape)
    ok = ok and all(want is None or got == want for got, want in zip(arr.shape, shape))
    if not ok:
        want = tuple("*" if s is None else s for s in shape)
        raise DataError(
            f"{path} holds {arr.dtype} {arr.shape}, expected {np.dtype(dtype)} {want}: rebuild the index"
        )
