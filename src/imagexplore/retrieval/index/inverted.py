"""`InvertedIndex`: a DeepIndex over pre-computed patch features or codes - build, add, merge, save and load.

It takes per feature type an ``(N, P, D)`` float array, L2-normalised, patch 0 the whole image, so it can be
tested and benchmarked without a CNN. Codes (`InvertedIndex.from_codes`, `search_codes`): an index can also be
built from word assignments computed elsewhere - per type an ``(N, P)`` int array of word ids, the two types'
words of a patch making its cell in 2-D - and ``(N, dim)`` L2-normalised signatures, and searched with queries
given the same way. This is how indexes of millions of images are benchmarked without a CNN or k-means, and how
assignments made by another tool are reused. Vocabularies and PCA are then given (``vocab=`` + ``pca=``, or
``models_from=``) or, without them, placeholders (``vocab_source`` ``"placeholder"``): such an index can only be
searched with codes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from imagexplore.errors import ConfigError, DataError, UserError
from imagexplore.retrieval.index.checks import (
    check_dims,
    check_features,
    check_signature_dims,
    check_signatures,
    check_words,
)
from imagexplore.retrieval.index.collection import (
    Collection,
    collection_from_words,
    encode_collection,
    image_names,
    merge_collections,
)
from imagexplore.retrieval.index.config import (
    K_AUTO_RULE,
    QUERY_FIELDS,
    IndexConfig,
    auto_k,
    check_same_layout,
)
from imagexplore.retrieval.index.postings import Postings
from imagexplore.retrieval.index.search import Searcher, Snapshot
from imagexplore.retrieval.index.storage import read_index, write_index
from imagexplore.retrieval.index.vocabulary import K_RULE, IndexModels

log = logging.getLogger(__name__)
# `_advised`: a vocabulary this many times smaller than `k: auto`'s holds too few candidates for the preset
# (1M images, k 1,024 vs 65,536: top-10 agreement 0.862 against 0.992, docs/benchmarks.md)
SMALL_VOCABULARY = 16


class InvertedIndex(Searcher):
    """A DeepIndex over pre-computed patch features (or codes): build, search, add, merge, save and load.

    Searches only read an immutable snapshot of the data, so any number of threads may search one index;
    `add` builds a new snapshot and swaps it in with one assignment.
    """

    def __init__(self, config: IndexConfig, models: IndexModels, data: Collection, build_seconds: float):
        self.config = config
        self.models = models
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
        feats = check_features(features, config.types, "features")
        learn = models_from is None
        with tqdm(
            total=len(config.types) * learn + 1, desc="index", unit="step", disable=not progress
        ) as bar:
            if models_from is not None:
                if train is not None:
                    raise ConfigError(
                        "give either train= (learn new vocabularies) or models_from= (reuse), not both"
                    )
                check_same_layout(config, models_from.config)
                models = models_from.models
            else:
                # k="auto" counts the patches of the collection indexed, even when vocabularies learn on train=
                first = feats[config.types[0]]
                patches = int(first.shape[0] * first.shape[1])
                if train is not None:
                    models = IndexModels.learn(
                        check_features(train, config.types, "train features"),
                        config,
                        "independent",
                        bar,
                        collection_patches=patches,
                    )
                else:
                    models = IndexModels.learn(feats, config, "collection", bar, collection_patches=patches)
            check_dims(feats, models, "features")
            bar.set_postfix_str("postings + signatures")
            data = encode_collection(feats, models, config, images, first_id=0)
            bar.update()
        return _advised(cls(config, models, data, time.perf_counter() - start))

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
        sigs = check_signatures(signatures, config.types, "signatures", ndim=2)
        if models_from is not None:
            if vocab is not None or pca is not None:
                raise ConfigError("give either vocab= and pca= or models_from=, not both")
            check_same_layout(config, models_from.config)
            models = models_from.models
        elif vocab is not None or pca is not None:
            if vocab is None or pca is None:
                raise ConfigError("vocab= and pca= go together: the PCA is what made the signatures")
            models = IndexModels.given(vocab, pca, config)
        else:
            models = IndexModels.placeholder(
                config, {t: s.shape[1] for t, s in sigs.items()}, _code_patches(words, config, sigs)
            )
        check_signature_dims(sigs, models, "signatures")
        codes = check_words(words, config.types, models, "words", (2,), "(N, P)")
        n = next(iter(codes.values())).shape[0]
        if next(iter(sigs.values())).shape[0] != n:
            raise DataError(
                f"words are given for {n} images but signatures for {next(iter(sigs.values())).shape[0]}: "
                "give one signature per image"
            )
        names = image_names(images, n, first_id=0)
        data = collection_from_words(codes, sigs, names, models, config)
        return _advised(cls(config, models, data, time.perf_counter() - start))

    def add(self, features: Mapping[str, np.ndarray], images: Sequence | None = None) -> None:
        """Append images with the fixed vocabularies and PCA; postings are merged, nothing is re-learned."""
        start = time.perf_counter()
        feats = check_features(features, self.config.types, "features")
        check_dims(feats, self.models, "features")
        current = self._data
        new = encode_collection(feats, self.models, self.config, images, first_id=len(current.images))
        self._data = merge_collections([current, new], self._dense_k())
        self._build_seconds += time.perf_counter() - start

    @classmethod
    def merge(cls, shards: Sequence[InvertedIndex]) -> InvertedIndex:
        """One index of ``shards`` in order (image positions concatenated); same results as a single build."""
        first = check_shards(shards)
        start = time.perf_counter()
        data = merge_collections([s._data for s in shards], first._dense_k())
        seconds = sum(s._build_seconds for s in shards) + time.perf_counter() - start
        return cls(first.config, first.models, data, seconds)

    def with_query_options(self, **changes) -> InvertedIndex:
        """A view sharing this index's arrays that scores queries differently (ma, scoring, kernel, pruning ...).

        The view holds the data as it is now: images `add`-ed to this index later do not show in it.
        """
        other = sorted(set(changes) - QUERY_FIELDS)
        if other:
            raise ConfigError(
                f"{other} change how the index is built: only {sorted(QUERY_FIELDS)} can change"
            )
        return InvertedIndex(
            dataclasses.replace(self.config, **changes), self.models, self._data, self._build_seconds
        )

    def renamed(self, images: Sequence) -> InvertedIndex:
        """A view of this index whose images carry other ids/paths (one per image, in order), e.g. paths read
        relative to the index directory and resolved; nothing else changes."""
        names = image_names(images, len(self), first_id=0)
        data = dataclasses.replace(self._data, images=tuple(names))
        return InvertedIndex(self.config, self.models, data, self._build_seconds)

    def _dense_k(self) -> int | None:
        return self.models.k(self.config.types[0]) if self.config.mode == "1d" else None

    # ------------------------------------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self._data.images)

    @property
    def images(self) -> tuple:
        return self._data.images

    @property
    def collection(self) -> Collection:
        """The current snapshot of the indexed images (postings, signatures, ids); `add` swaps in a new one."""
        return self._data

    @property
    def postings(self) -> Postings:
        return self._data.postings

    @property
    def signatures(self) -> dict[str, np.ndarray]:
        return dict(self._data.signatures)

    @property
    def vocabularies(self) -> dict[str, np.ndarray]:
        return dict(self.models.vocab)

    @property
    def pca(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per type the PCA ``(mean (D,), components (dim, D))`` of the global signature."""
        return {t: (self.models.pca_mean[t], self.models.pca_components[t]) for t in self.config.types}

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
            "vocab_source": self.models.source,
            "k": {t: self.models.k(t) for t in self.config.types},
            "k_requested": dict(self.models.k_requested),
            "k_rule": K_RULE,
            "k_auto_rule": K_AUTO_RULE,
            "k_auto": [t for t in self.config.types if _is_auto(self.config, t)],
            "vocab_training": {
                t: self.config.training_for(self.models.k(t))
                if self.models.source in ("collection", "independent")
                else self.models.source
                for t in self.config.types
            },
            "assignment": dict(self.models.assignment),
            "mode": self.config.mode,
            "posting_lists": int(data.postings.keys.size),
            "signature_dim": {t: int(s.shape[1]) for t, s in data.signatures.items()},
            "signature_dtype": "float16" if self.config.float16_signatures else "float32",
        }

    # ------------------------------------------------------------------------------------------------- search
    def _snapshot(self) -> Snapshot:
        return Snapshot.of_collection(
            self._data
        )  # one snapshot for a whole batch, whatever `add` does meanwhile

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
        data = self._data
        names = list(data.images) if images is None else image_names(images, len(data.images), first_id=0)
        stats = {**self.stats, **(extra_stats or {})}
        write_index(dest, self.config, self.models, data, stats, names, extra_files)
        return dest

    @classmethod
    def load(cls, directory: str | os.PathLike, *, mmap: bool = False) -> InvertedIndex:
        """Read an index written by `save`, checking version, presence, sha256 and shape of every file.

        ``mmap``: memory-map the signatures and posting arrays read-only instead of reading them (an index
        larger than RAM can be searched; results are identical). The directory must then stay in place while
        the index is used; `add` and `merge` make in-memory copies."""
        return _advised(cls(*read_index(directory, mmap=mmap)))


def _is_auto(config: IndexConfig, name: str) -> bool:
    return (config.k[name] if isinstance(config.k, dict) else config.k) == "auto"


def _code_patches(words: Mapping, config: IndexConfig, sigs: Mapping[str, np.ndarray]) -> int:
    """N x P of codes given to `from_codes` (what ``k="auto"`` counts): N from the (checked) signatures, P from
    the words' second axis (1 when malformed: `check_words` reports it right after)."""
    n = next(iter(sigs.values())).shape[0]
    shape = np.shape(words.get(config.types[0])) if isinstance(words, Mapping) else ()
    return n * (shape[1] if len(shape) == 2 else 1)


def check_shards(shards: Sequence[InvertedIndex]) -> InvertedIndex:
    """The first of ``shards`` once all share its layout, vocabularies and PCA (what `merge` needs)."""
    if not shards:
        raise UserError("no shards were given: pass at least one InvertedIndex")
    first = shards[0]
    for shard in shards[1:]:
        check_same_layout(first.config, shard.config)
        if not first.models.same_as(shard.models):
            raise UserError(
                "shards were built with different vocabularies or PCA: build them with models_from="
            )
    return first


def vocabulary_advice(index: InvertedIndex) -> str | None:
    """A warning when ``index`` prunes (`IndexConfig.pruning_for`) with a vocabulary far smaller than ``k: auto``
    would give it: the preset's 2,000 candidates then miss much of the exact top 10."""
    n = len(index)
    if n == 0 or index.config.pruning_for(n)[1] is None:
        return None
    entries = index.postings.ids.size
    want = auto_k(entries, index.config.auto_patches_per_word)
    small = [t for t in index.config.types if index.models.k(t) * SMALL_VOCABULARY < want]
    if not small:
        return None
    return (
        f"{n:,} images with {', '.join(f'k={index.models.k(t):,} ({t})' for t in small)}: pruning keeps fewer of "
        f"the exact top 10 with so few words (k: auto would give {want:,}); rebuild with k: auto, or raise "
        "max_candidates, or set pruning: none (docs/retrieval_scaling.md)"
    )


def _advised(index: InvertedIndex) -> InvertedIndex:
    advice = vocabulary_advice(index)
    if advice is not None:
        log.warning(advice)
    return index
