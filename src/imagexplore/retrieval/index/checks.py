"""Checks of what callers give an index: features, word ids (codes), signatures and the number of results.

A failed check raises a `DataError` (a `ConfigError` for ``k``) naming the argument, the feature type and what
was expected; a passed one returns the input in the dtype the index computes with (the dimension checks return
nothing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from imagexplore.errors import ConfigError, DataError
from imagexplore.retrieval.index.vocabulary import IndexModels


def check_features(
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


def check_dims(feats: dict[str, np.ndarray], models: IndexModels, what: str) -> None:
    for name, arr in feats.items():
        want = models.vocab[name].shape[1]
        if arr.shape[-1] != want:
            raise DataError(
                f"{what}[{name!r}] has D={arr.shape[-1]} but the index was built on D={want}: use the same extractor"
            )


def check_signatures(signatures, types: Sequence[str], what: str, ndim: int) -> dict[str, np.ndarray]:
    """Given global signatures per type: float32, finite and of unit length (scores use them as cosines)."""
    shape_name = "(N, dim)" if ndim == 2 else "(dim,)"
    out = check_features(signatures, types, what, ndim=ndim, shape_name=shape_name)
    for name, arr in out.items():
        # einsum: no temporary as large as the signatures, which matters at millions of images
        squares = np.einsum("...i,...i->...", arr, arr)
        if np.any(np.abs(squares - 1.0) > 2e-3):
            raise DataError(
                f"{what}[{name!r}] must be L2-normalised (scores use them as cosines): "
                f"found a norm of {np.sqrt(squares.flat[np.argmax(np.abs(squares - 1.0))]):.4g}"
            )
    return out


def check_signature_dims(sigs: dict[str, np.ndarray], models: IndexModels, what: str) -> None:
    for name, arr in sigs.items():
        want = models.pca_components[name].shape[0]
        if arr.shape[-1] != want:
            raise DataError(f"{what}[{name!r}] are {arr.shape[-1]}-d but the index's signatures are {want}-d")


def check_words(
    words, types: Sequence[str], models: IndexModels, what: str, ndims: tuple[int, ...], shape_name: str
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


def check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"search k (results per query) must be a positive integer, not {k!r}")
    return int(k)
