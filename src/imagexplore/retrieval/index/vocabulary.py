"""What a DeepIndex learns once: per feature type a vocabulary (FAISS k-means) and the PCA of the signature.

Vocabularies are learned on all patches of an independent set when one is given, else on the collection. Small
collections get fewer words: ``k = min(k, max(1, training patches // points_per_word))`` (default 20 patches a
word), recorded in ``stats.json`` with the source of the vocabulary. ``k="auto"`` first sizes the vocabulary from
the collection's patch count (`config.auto_k`, `K_AUTO_RULE`), whatever set it is trained on. Training keeps at
most ``max_points_per_word x k`` patches (a subsample seeded by ``kmeans_seed``) and runs flat k-means, or from
`HIERARCHICAL_FROM` words on two-level k-means (`two_level_kmeans`); patches are assigned to words exactly
(``faiss.IndexFlatL2``) or, from `HNSW_FROM` words on, through an HNSW graph over the words, built
single-threaded so the same words always give the same graph (`build_quantizer`). The global signature is the PCA to
``signature_dim`` (or ``D`` when smaller) of the whole-image feature, L2-normalised; the PCA keeps the full
eigenbasis so a 512-d signature of a 512-d feature is a rotation even when fitted on fewer than 512 images.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import faiss
import numpy as np

from imagexplore.errors import ConfigError, DataError, UserError
from imagexplore.retrieval.index.config import HNSW_M, K_AUTO_RULE, IndexConfig

K_RULE = "k = min(k_requested, max(1, training patches // points_per_word))"
_HNSW_ORDER_SEED = 0  # the order words enter an HNSW graph (fixed: it decides the graph, so the assignments)
__all__ = ["K_AUTO_RULE", "K_RULE", "IndexModels", "build_quantizer", "train_vocabulary", "two_level_kmeans"]


@dataclass(frozen=True)
class IndexModels:
    """What is learned once and shared by every index built from it: vocabularies, their FAISS quantisers, PCA."""

    vocab: dict[str, np.ndarray]
    quantizers: dict[str, faiss.Index]
    pca_mean: dict[str, np.ndarray]
    pca_components: dict[str, np.ndarray]
    k_requested: dict[str, int]
    source: str
    assignment: dict[str, str]  # per type "exact" or "hnsw" (resolved)
    hnsw_ef_search: int
    # file name (vocab_<type>.npy, pca_<type>.npz) -> where these models' bytes are stored on disk and their
    # sha256 (`storage.StoredFile`): recorded when they are read or written, so that shards sharing them link
    # the files rather than copy them, and compare digests rather than arrays (`same_as`)
    files: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_arrays(
        cls,
        vocab,
        pca_mean,
        pca_components,
        k_requested,
        source,
        assignment: str | Mapping[str, str] = "exact",
        hnsw_ef_search: int = 128,
    ) -> IndexModels:
        """Models from their arrays, the FAISS quantisers rebuilt from the words (how an index is loaded).

        ``assignment``: ``"exact"``, ``"hnsw"`` or ``"auto"`` (`IndexConfig.assignment_for` of each vocabulary's
        size), or a mapping type -> ``"exact"`` / ``"hnsw"``. Placeholders get no quantiser (`nearest` refuses)."""
        if isinstance(assignment, str):
            rule = IndexConfig(assignment=assignment)
            assignment = {t: rule.assignment_for(c.shape[0]) for t, c in vocab.items()}
        assignment = {t: assignment[t] for t in vocab}
        quantizers = {}
        for name, centroids in vocab.items():
            if source != "placeholder":
                quantizers[name] = build_quantizer(centroids, assignment[name], hnsw_ef_search)
            for arr in (centroids, pca_mean[name], pca_components[name]):
                arr.setflags(write=False)
        return cls(
            vocab,
            quantizers,
            pca_mean,
            pca_components,
            dict(k_requested),
            source,
            assignment,
            int(hnsw_ef_search),
        )

    @classmethod
    def learn(
        cls,
        train: dict[str, np.ndarray],
        config: IndexConfig,
        source: str,
        bar=None,
        *,
        collection_patches: int | None = None,
    ) -> IndexModels:
        """Vocabularies and PCA learned on ``train`` (type -> (N, P, D)); ``collection_patches`` (N x P of the
        collection indexed, which ``train`` may not be) resolves ``k="auto"`` (default: the patches of ``train``)."""
        vocab, means, comps, requested = {}, {}, {}, {}
        for name in config.types:
            if bar is not None:
                bar.set_postfix_str(f"k-means + PCA of {name!r}")
            x = train[name]
            patches = x.reshape(-1, x.shape[2])
            counted = patches.shape[0] if collection_patches is None else collection_patches
            requested[name] = config.k_for(name, counted)
            k = min(requested[name], max(1, patches.shape[0] // config.points_per_word))
            vocab[name] = train_vocabulary(patches, k, config)
            means[name], comps[name] = _fit_pca(x[:, 0], min(config.signature_dim, x.shape[2]))
            if bar is not None:
                bar.update()
        return cls.from_arrays(
            vocab, means, comps, requested, source, config.assignment, config.hnsw_ef_search
        )

    @classmethod
    def given(cls, vocab: Mapping, pca: Mapping, config: IndexConfig) -> IndexModels:
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
        return cls.from_arrays(
            arrays["vocab"],
            arrays["mean"],
            arrays["components"],
            k_requested,
            "given",
            config.assignment,
            config.hnsw_ef_search,
        )

    @classmethod
    def placeholder(
        cls, config: IndexConfig, dims: Mapping[str, int], patches: int | None = None
    ) -> IndexModels:
        """Stand-ins for an index built from codes alone: ``config.k`` zero words of width ``dim`` and an identity
        PCA, so that the index has the usual layout (save, load, shards) but `nearest` refuses feature input.
        ``patches`` (N x P of the codes) resolves ``k="auto"``."""
        vocab, means, comps = {}, {}, {}
        for name in config.types:
            dim = dims[name]
            if dim > config.signature_dim:
                raise DataError(
                    f"signatures[{name!r}] have {dim} dims, more than signature_dim={config.signature_dim}: "
                    "raise signature_dim or give the signatures the PCA made"
                )
            vocab[name] = np.zeros((config.k_for(name, patches), dim), dtype=np.float32)
            means[name] = np.zeros(dim, dtype=np.float32)
            comps[name] = np.eye(dim, dtype=np.float32)
        requested = {t: vocab[t].shape[0] for t in config.types}
        return cls.from_arrays(
            vocab, means, comps, requested, "placeholder", config.assignment, config.hnsw_ef_search
        )

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

    def same_as(self, other: IndexModels) -> bool:
        """Same words, PCA and word assignment (exact or the same HNSW search): shards that may be merged."""
        if self is other:
            return True
        if self.assignment != other.assignment:
            return False
        if "hnsw" in self.assignment.values() and self.hnsw_ef_search != other.hnsw_ef_search:
            return False
        if self.vocab.keys() != other.vocab.keys():
            return False
        names = [f"{kind}_{t}.{ext}" for t in self.vocab for kind, ext in (("vocab", "npy"), ("pca", "npz"))]
        if all(n in self.files and n in other.files for n in names) and all(
            self.files[n].sha256 == other.files[n].sha256 for n in names
        ):  # the same stored bytes (shards loaded from disk): no need to read a 1 GiB vocabulary twice
            return True
        return all(
            np.array_equal(a[t], b[t])
            for t in self.vocab
            for a, b in (
                (self.vocab, other.vocab),
                (self.pca_mean, other.pca_mean),
                (self.pca_components, other.pca_components),
            )
        )


def build_quantizer(centroids: np.ndarray, assignment: str, ef_search: int = 128) -> faiss.Index:
    """The FAISS index that assigns patches to the words ``centroids`` (k, D): ``"exact"`` (``IndexFlatL2``) or
    ``"hnsw"`` (``IndexHNSWFlat(D, HNSW_M)``, searched with ``efSearch = ef_search``).

    The HNSW graph is built on one OpenMP thread: FAISS inserts nodes in parallel otherwise, and the graph (so the
    words it returns) would depend on thread timing. Built alone, the same words always give the same graph, in
    every process, so shards built apart, merged indexes and reloaded ones assign patches alike. Words are
    inserted in a fixed pseudo-random order (`_HNSW_ORDER_SEED`, ids mapped back by ``IndexIDMap``): two-level
    k-means returns its words grouped by coarse cluster, and a graph built cluster after cluster links the
    clusters poorly (on bench/bench_vocabulary.py's 16,384 two-level words, recall of the exact word 0.87 in
    order vs 0.94 shuffled, efSearch 128)."""
    d = centroids.shape[1]
    if assignment == "exact":
        quantizer = faiss.IndexFlatL2(d)
        quantizer.add(centroids)
        return quantizer
    if assignment != "hnsw":
        raise ConfigError(f"word assignment must be 'exact' or 'hnsw', got {assignment!r}")
    hnsw = faiss.IndexHNSWFlat(d, HNSW_M)
    hnsw.hnsw.efSearch = int(ef_search)
    quantizer = faiss.IndexIDMap(hnsw)  # keeps a reference to hnsw
    order = np.random.default_rng(_HNSW_ORDER_SEED).permutation(centroids.shape[0])
    words = np.ascontiguousarray(centroids[order], dtype=np.float32)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        quantizer.add_with_ids(words, order.astype(np.int64))
    finally:
        faiss.omp_set_num_threads(threads)
    return quantizer


def train_vocabulary(patches: np.ndarray, k: int, config: IndexConfig) -> np.ndarray:
    """``k`` words (k, D) float32 learned on ``patches`` (M, D) as ``config`` says: at most
    ``max_points_per_word x k`` patches kept (seeded by ``kmeans_seed``, so the same input gives the same words),
    then flat or two-level k-means (`IndexConfig.training_for`)."""
    keep = config.max_points_per_word * k
    if patches.shape[0] > keep:
        rows = np.random.default_rng(config.kmeans_seed).choice(patches.shape[0], keep, replace=False)
        patches = patches[np.sort(rows)]
    patches = np.ascontiguousarray(patches, dtype=np.float32)
    if config.training_for(k) == "two_level":
        centroids = two_level_kmeans(
            patches,
            k,
            niter=config.kmeans_niter,
            seed=config.kmeans_seed,
            max_points=config.max_points_per_word,
        )
    else:
        # FAISS warns below 39 points a centroid; our small-collection rule already decided how few is enough.
        # The subsample above is the only one: FAISS keeps every patch (max_points_per_centroid).
        km = faiss.Kmeans(
            patches.shape[1],
            k,
            niter=config.kmeans_niter,
            seed=config.kmeans_seed,
            verbose=False,
            min_points_per_centroid=min(39, config.points_per_word),
            max_points_per_centroid=config.max_points_per_word,
        )
        km.train(patches)
        centroids = km.centroids
    return np.ascontiguousarray(centroids, dtype=np.float32)


def two_level_kmeans(
    x: np.ndarray, k: int, *, niter: int = 20, seed: int = 0, max_points: int = 256
) -> np.ndarray:
    """``k`` centroids of ``x`` (M, D) by two-level k-means: ``round(sqrt(k))`` coarse clusters, then each split
    into a share of the ``k`` words proportional to its patches, one small k-means per cluster.

    The algorithm of ``faiss.contrib.clustering.two_level_clustering`` (rebalanced), written out here because that
    function fails on a coarse cluster allotted no word (``faiss.Kmeans`` of 0 centroids), which happens when a
    coarse cluster holds fewer patches than a word's share, and cannot set the second level's options. Costs about
    ``2 sqrt(k)`` distance computations per patch and iteration instead of ``k``: what keeps 64k-1M words
    trainable. Deterministic for a given ``seed`` (each sub-k-means is seeded from it and its cluster number)."""
    m, d = x.shape
    nc1 = max(1, min(k, round(math.sqrt(k))))
    coarse = faiss.Kmeans(
        d, nc1, niter=niter, seed=seed, verbose=False, max_points_per_centroid=2000, min_points_per_centroid=1
    )
    coarse.train(x)
    _, assign = coarse.index.search(x, 1)
    assign = assign.ravel()
    order = np.argsort(assign, kind="stable")
    sizes = np.bincount(assign, minlength=nc1)
    shares = np.diff(np.cumsum(sizes) * k // m, prepend=0)  # words per coarse cluster, exactly k in all
    bounds = np.concatenate([[0], np.cumsum(sizes)])

    def fine(c: int) -> np.ndarray:
        nc2 = int(shares[c])
        sub = np.ascontiguousarray(x[order[bounds[c] : bounds[c + 1]]])
        if nc2 >= sub.shape[0]:  # as many words as patches (never more: shares[c] <= sizes[c] when k <= m)
            return sub[:nc2]
        faiss.omp_set_num_threads(1)  # this pool thread's own OpenMP setting
        km = faiss.Kmeans(
            d,
            nc2,
            niter=niter,
            seed=seed + c + 1,
            verbose=False,
            min_points_per_centroid=1,
            max_points_per_centroid=max_points,
        )
        km.train(sub)
        return km.centroids

    # The small k-means run one per thread, on one OpenMP thread each: thousands of tiny parallel regions stall
    # on their barriers whenever another process holds a core (seen here: 17 s instead of 0.6 s at 16,384 words).
    # Each cluster's words depend only on its patches and seed, so the order of completion does not matter.
    with ThreadPoolExecutor(max_workers=max(1, faiss.omp_get_max_threads())) as pool:
        out = list(pool.map(fine, [c for c in range(nc1) if shares[c] > 0]))
    return np.ascontiguousarray(np.vstack(out), dtype=np.float32)


def _fit_pca(whole: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and top-``dim`` principal axes (full eigenbasis, so fewer samples than dims still give a rotation)."""
    x = whole.astype(np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    eigval, eigvec = np.linalg.eigh(centred.T @ centred)
    order = np.argsort(eigval, kind="stable")[::-1][:dim]
    return mean.astype(np.float32), np.ascontiguousarray(eigvec[:, order].T, dtype=np.float32)
