"""What a DeepIndex learns once: per feature type a vocabulary (FAISS k-means) and the PCA of the signature.

Vocabularies are learned on all patches of an independent set when one is given, else on the collection. Small
collections get fewer words: ``k = min(k, max(1, training patches // points_per_word))`` (default 20 patches a
word), recorded in ``stats.json`` with the source of the vocabulary. The global signature is the PCA to
``signature_dim`` (or ``D`` when smaller) of the whole-image feature, L2-normalised; the PCA keeps the full
eigenbasis so a 512-d signature of a 512-d feature is a rotation even when fitted on fewer than 512 images.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import faiss
import numpy as np

from imagexplore.errors import ConfigError, DataError, UserError
from imagexplore.retrieval.index.config import IndexConfig

K_RULE = "k = min(k_requested, max(1, training patches // points_per_word))"


@dataclass(frozen=True)
class IndexModels:
    """What is learned once and shared by every index built from it: vocabularies, their FAISS quantisers, PCA."""

    vocab: dict[str, np.ndarray]
    quantizers: dict[str, faiss.Index]
    pca_mean: dict[str, np.ndarray]
    pca_components: dict[str, np.ndarray]
    k_requested: dict[str, int]
    source: str

    @classmethod
    def from_arrays(cls, vocab, pca_mean, pca_components, k_requested, source) -> IndexModels:
        quantizers = {}
        for name, centroids in vocab.items():
            quantizers[name] = faiss.IndexFlatL2(centroids.shape[1])
            quantizers[name].add(centroids)
            for arr in (centroids, pca_mean[name], pca_components[name]):
                arr.setflags(write=False)
        return cls(vocab, quantizers, pca_mean, pca_components, dict(k_requested), source)

    @classmethod
    def learn(cls, train: dict[str, np.ndarray], config: IndexConfig, source: str, bar=None) -> IndexModels:
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
        return cls.from_arrays(arrays["vocab"], arrays["mean"], arrays["components"], k_requested, "given")

    @classmethod
    def placeholder(cls, config: IndexConfig, dims: Mapping[str, int]) -> IndexModels:
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

    def same_as(self, other: IndexModels) -> bool:
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


def _fit_pca(whole: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and top-``dim`` principal axes (full eigenbasis, so fewer samples than dims still give a rotation)."""
    x = whole.astype(np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    eigval, eigvec = np.linalg.eigh(centred.T @ centred)
    order = np.argsort(eigval, kind="stable")[::-1][:dim]
    return mean.astype(np.float32), np.ascontiguousarray(eigvec[:, order].T, dtype=np.float32)
