"""The public DeepIndex API (thesis ch. 4): an image index built from files, searched with images.

`InvertedIndex` (index/) works on pre-computed patch features and `extract` (features.py) computes them; this
module joins the two so a user deals in image paths only. The extractor is loaded lazily once per `Index` (a
loaded index that is only saved or inspected never pays for the CNN) and is guarded by a lock, because its
forward hooks keep per-call state: concurrent searches on one index are then safe, only serialised on the CNN.

On disk an `Index` is the `InvertedIndex` directory plus ``backbone.json`` (the extractor that made the
features, and its weights file when not the bundled one, so queries are described the same way), ``paths.json``
and, in ``stats.json``, the backbone, the skipped files and the times (``extract_seconds``: the CNN feature pass;
``index_seconds``: vocabularies, PCA and postings, the same as the older ``build_seconds``; ``total_seconds``).

Paths: ``images.json`` and the skipped files hold image paths relative to the index directory (``paths.json``:
``{"relative_to": "index", "version": 2}``), and `load` joins them to the directory it is given, so a search
from any working directory returns paths that resolve (relative ones when the directory was given relative,
absolute when it was absolute). An index written before (no ``paths.json``, "version 1") holds the paths as the
build was given them, relative to the directory the build ran in: it is read as before, with a warning, and
`save` (e.g. ``retrieve merge --out NEW OLD`` run from that directory) converts it.

Large collections (docs/retrieval_scaling.md): `Index.build_from_features` builds from the shard files of
`imagexplore retrieve extract` under torchrun, `Index.build(vocab_from=...)` makes shards that share
vocabularies, `Index.merge` joins them exactly and `ShardedSearch` searches several as one (in this process,
or each shard in a Ray actor: `ray_shards`). Images are fed to the CNN in fixed groups
(`distributed.extract_batched`) by every path, so all of them give the same features and hence the same index
as one `Index.build`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from imagexplore.errors import ConfigError, DataError, UserError
from imagexplore.retrieval.configs import ConfigSource, read_index_fields, resolve_config
from imagexplore.retrieval.distributed import extract_batched, read_features
from imagexplore.retrieval.features import extract, load_backbone
from imagexplore.retrieval.index import IndexConfig, InvertedIndex, ShardedIndex
from imagexplore.retrieval.options import (
    DEFAULT_BACKBONE,
    DEFAULT_BATCH_IMAGES,
    DEFAULT_CHUNK_IMAGES,
    check_positive,
    image_files,
)
from imagexplore.retrieval.resumable import chunk_size_for, extract_chunks, walk_images
from imagexplore.retrieval.stored import BACKBONE_FILE, PATHS_FILE, PATHS_LAYOUT, check_described, read_stored

log = logging.getLogger(__name__)

PathOrPaths = Sequence[str | os.PathLike] | str | os.PathLike


def _query_input(item):
    """A NumPy H×W×3 / H×W uint8 array becomes a Pillow image; paths, Pillow images and tensors pass through."""
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim not in (2, 3):
            raise DataError(f"an image array must be H×W or H×W×3 uint8, got {item.dtype} {item.shape}")
        return Image.fromarray(item)
    return item


class Index:
    """A searchable DeepIndex of image files: `build` from paths, `search` with images, `save` / `load`."""

    def __init__(
        self,
        inverted: InvertedIndex,
        backbone: str = DEFAULT_BACKBONE,
        skipped: Sequence = (),
        weights: str | None = None,
        device: str = "cpu",
        extract_seconds: float | None = None,
    ):
        self.inverted = inverted
        self.backbone = backbone
        self.weights = weights
        self.skipped = [str(p) for p in skipped]
        self.device = device
        self.extract_seconds = extract_seconds  # the CNN feature pass; None when not known (older indexes)
        self._extractor = None
        self._lock = threading.Lock()

    def to(self, device: str) -> Index:
        """Describe images (build, add, search) on ``device`` ("cpu", "cuda", "cuda:1"); returns the index."""
        with self._lock:
            self.device = device
            if self._extractor is not None:
                self._extractor.to(device)
        return self

    # ----------------------------------------------------------------------------------------------- building
    @classmethod
    def build(
        cls,
        paths: PathOrPaths,
        config: ConfigSource = None,
        *,
        backbone: str | None = None,
        weights: str | os.PathLike | None = None,
        progress: bool = True,
        batch_size: int = DEFAULT_BATCH_IMAGES,
        train_paths: PathOrPaths | None = None,
        vocab_from: Index | str | os.PathLike | None = None,
        device: str = "cpu",
        on_bad_file: str = "skip",
        checkpoint: str | os.PathLike | None = None,
        chunk_size: int = DEFAULT_CHUNK_IMAGES,
    ) -> Index:
        """Index image files (a list, or a folder listed recursively); unreadable ones go to ``skipped``
        (``on_bad_file="fail"``: the first one raises its `DataError` instead).

        ``checkpoint`` (a folder): the files are taken lazily (a folder is walked, never listed whole) and
        their features extracted ``chunk_size`` at a time (rounded up to a multiple of ``batch_size``), each
        chunk written into ``checkpoint``; a build stopped midway and run again with the same arguments
        resumes after the last chunk written and gives exactly the same index (`resumable`). The checkpoint
        is left in place: remove it once the index is saved (``retrieve build`` does).

        ``train_paths`` (files or a folder) learn the vocabularies and PCA independently of the collection;
        ``vocab_from`` (an `Index` or its directory) reuses another index's instead, with its backbone, weights
        and config (``config`` may then change only query options), so that the two can be merged or searched
        together (shards of one collection).
        ``batch_size`` images go through the CNN per forward pass, grouped as `retrieve extract` groups them,
        on ``device`` (kept for later searches; `to` changes it).
        """
        batch_size = check_positive("batch_size (images per forward pass)", batch_size)
        source = _as_index(vocab_from)
        cfg = config_for(config, source)
        backbone, weights = _backbone_for(backbone, _weights_path(weights), source)
        index = cls(None, backbone, weights=weights, device=device)  # type: ignore[arg-type]  # filled in below
        train_files = None if train_paths is None else image_files(train_paths, "training images")
        start, earlier = time.perf_counter(), 0.0  # earlier: extraction seconds of earlier runs (checkpoint)
        if checkpoint is None:
            files = image_files(paths, "images to index")
            feats, skipped = index._features(files, progress, batch_size, on_bad_file)
            _check_some_read(files, skipped)
            bad = {p for p, _ in skipped}
            kept = [str(p) for p in files if p not in bad]
        else:
            chunk = check_positive("chunk_size (images per checkpointed chunk)", chunk_size)
            feats, kept, skipped, seconds, n_files = index._features_in_chunks(
                paths, checkpoint, chunk_size_for(chunk, batch_size), progress, batch_size, on_bad_file
            )
            earlier = max(0.0, seconds - (time.perf_counter() - start))
            if not n_files:
                raise UserError(f"no image files in {paths}: give a folder holding .jpg/.png images")
            if not kept:
                raise DataError(f"none of the {n_files} images could be read (first: {skipped[0][1]})")
        train = None
        if train_files is not None:
            train, _ = index._features(train_files, progress, batch_size, on_bad_file)
        index.extract_seconds = earlier + time.perf_counter() - start
        index.inverted = _build_inverted(feats, kept, cfg, source, train, progress)
        index.skipped = [str(p) for p, _ in skipped]
        return index

    @classmethod
    def build_from_features(
        cls,
        directory: str | os.PathLike,
        config: ConfigSource = None,
        *,
        vocab_from: Index | str | os.PathLike | None = None,
        progress: bool = True,
    ) -> Index:
        """Index the features that `imagexplore retrieve extract` wrote into ``directory`` (one file per rank).

        The rank files must make one complete run (`distributed.read_features` says what is wrong otherwise);
        the result is identical to `build` over the same folder with the same backbone and batch size.
        """
        source = _as_index(vocab_from)
        cfg = config_for(config, source)
        got = read_features(directory)
        backbone, weights = _backbone_for(got.backbone, got.weights, source)
        inverted = _build_inverted(got.features, got.images, cfg, source, None, progress)
        return cls(inverted, backbone, [p for p, _ in got.skipped], weights, extract_seconds=got.seconds)

    @classmethod
    def merge(cls, indexes: Sequence[Index | str | os.PathLike]) -> Index:
        """One index of shards (indexes or their directories) in order; they must share vocabularies and PCA.

        Exact: the same as a single build over the concatenated images with those vocabularies.
        """
        loaded, labels = _load_all(indexes)
        _check_compatible(loaded, labels)
        first = loaded[0]
        inverted = InvertedIndex.merge([ix.inverted for ix in loaded])
        times = [ix.extract_seconds for ix in loaded]
        seconds = None if any(t is None for t in times) else sum(times)
        skipped = [p for ix in loaded for p in ix.skipped]
        return cls(inverted, first.backbone, skipped, first.weights, extract_seconds=seconds)

    def _features(
        self,
        files: list[Path],
        progress: bool,
        batch_size: int = DEFAULT_BATCH_IMAGES,
        on_bad_file: str = "skip",
    ) -> tuple[dict, list[tuple[Path, str]]]:
        with self._lock:
            return extract_batched(self._load_extractor(), files, batch_size, progress, on_bad=on_bad_file)

    def _features_in_chunks(
        self,
        paths: PathOrPaths,
        checkpoint: str | os.PathLike,
        chunk_files: int,
        progress: bool,
        batch_size: int,
        on_bad_file: str,
    ) -> tuple[dict, list[str], list[tuple[Path, str]], float, int]:
        """`resumable.extract_chunks` of a folder (walked lazily) or a list of files."""
        if isinstance(paths, str | os.PathLike):
            files, source = walk_images(paths), os.path.abspath(paths)
        else:
            listed = [str(p) for p in paths]
            files = (Path(p) for p in listed)
            source = "files sha256 " + hashlib.sha256("\n".join(listed).encode()).hexdigest()
        described = {
            "images": source,
            "backbone": self.backbone,
            "weights": self.weights,
            "batch_size": batch_size,
        }
        got = extract_chunks(
            files,
            checkpoint,
            described,
            chunk_files,
            lambda chunk: self._features(chunk, False, batch_size, on_bad_file),
            progress,
        )
        if on_bad_file == "fail" and got[2]:  # skipped by an earlier run with on_bad_file="skip"
            raise DataError(got[2][0][1])
        return got

    def _load_extractor(self):
        """The CNN, loaded at first use; the caller holds the lock."""
        if self._extractor is None:
            self._extractor = load_backbone(self.backbone, self.weights, device=self.device)
        return self._extractor

    def add(self, paths: PathOrPaths, progress: bool = False, on_bad_file: str = "skip") -> None:
        """Append images with the fixed vocabularies (nothing re-learned); unreadable ones go to ``skipped``
        (``on_bad_file="fail"``: the first one raises its `DataError`)."""
        files = image_files(paths, "images to add")
        start = time.perf_counter()
        feats, skipped = self._features(files, progress, on_bad_file=on_bad_file)
        _check_some_read(files, skipped)
        if self.extract_seconds is not None:
            self.extract_seconds += time.perf_counter() - start
        bad = {p for p, _ in skipped}
        with self._lock:
            self.inverted.add(
                _select(feats, self.inverted.config), images=[str(p) for p in files if p not in bad]
            )
            self.skipped += [str(p) for p, _ in skipped]

    # ----------------------------------------------------------------------------------------------- querying
    def search(self, image, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` best ``(path, score)`` for one image (path, Pillow image, uint8 array or tensor)."""
        return self.search_many([image], k)[0]

    def search_many(self, images: Sequence, k: int = 10) -> list[list[tuple[str, float]]]:
        """`search` for several images at once (one batched pass through the CNN); unreadable → `DataError`."""
        return _search_images(self, None, images, k)

    def _describe(self, images: Sequence) -> tuple[dict, InvertedIndex]:
        """Query features of every type, and the index as it is now (read under the same lock)."""
        queries = [_query_input(x) for x in images]
        with self._lock:
            return extract(self._load_extractor(), queries, progress=False, on_bad="fail"), self.inverted

    def __len__(self) -> int:
        return len(self.inverted)

    @property
    def paths(self) -> tuple:
        return self.inverted.images

    @property
    def stats(self) -> dict:
        """`InvertedIndex.stats` plus the backbone, the skipped files and the times: ``build_seconds`` (kept
        for existing readers) and ``index_seconds`` are the index construction alone (vocabularies, PCA,
        postings, signatures), ``extract_seconds`` the CNN feature pass (summed over ranks for `build
        --features`; None when unknown, e.g. an index saved by an older release), ``total_seconds`` both."""
        return {**self.inverted.stats, **self._extra_stats()}

    def _extra_stats(self, skipped: Sequence | None = None) -> dict:
        index_seconds = round(self.inverted.stats["build_seconds"], 3)
        extract = None if self.extract_seconds is None else round(self.extract_seconds, 3)
        return {
            "backbone": self.backbone,
            "skipped": list(self.skipped if skipped is None else skipped),
            "index_seconds": index_seconds,
            "extract_seconds": extract,
            "total_seconds": None if extract is None else round(extract + index_seconds, 3),
        }

    # -------------------------------------------------------------------------------------------------- files
    def save(self, directory: str | os.PathLike) -> Path:
        """Write the index directory atomically (`InvertedIndex.save`), with the backbone's name (and weights
        file, when not the bundled one), the skipped files and the times recorded (``backbone.json``,
        stats.json), all checksummed. Image paths are written relative to ``directory`` (``paths.json``)."""
        dest = Path(directory)
        described = {"name": self.backbone} | ({"weights": self.weights} if self.weights is not None else {})
        return self.inverted.save(
            dest,
            extra_stats=self._extra_stats([_relative_to(dest, p) for p in self.skipped]),
            extra_files={
                BACKBONE_FILE: (json.dumps(described, indent=1) + "\n").encode(),
                PATHS_FILE: (json.dumps(PATHS_LAYOUT) + "\n").encode(),
            },
            images=[_relative_to(dest, p) for p in self.inverted.images],
        )

    @classmethod
    def load(cls, directory: str | os.PathLike, *, mmap: bool = False) -> Index:
        """Read an index written by `save` (the CNN is loaded at the first search or add).

        Image paths come back joined to ``directory`` as given (see the module's "Paths"). ``mmap``: the
        signatures and posting lists stay on disk, memory-mapped read-only, rather than being read into memory
        (an index larger than RAM can be searched, with identical results; `InvertedIndex.load`)."""
        got = read_stored(directory, mmap=mmap)
        return cls(got.inverted, got.backbone, got.skipped, got.weights, extract_seconds=got.extract_seconds)


class ShardedSearch:
    """Several indexes (shards sharing vocabularies, e.g. built with ``vocab_from``) searched as one.

    Results equal those of `Index.merge` of the same shards (global idf, merged top-k; `index.ShardedIndex`)
    without copying them into one index. It holds the shards as they are now: later `Index.add` calls on them
    do not show. Queries are described once, by the first shard's CNN. ``labels`` name the shards in error
    messages (`load` uses the directories).

    ``backend="ray"`` puts every shard in a Ray actor of its own (`ray_shards.RayShardedIndex`; ``pip install
    imagexplore[ray]``), on the cluster Ray was initialised with, else the one at ``address``, else a local one
    started here: shards may then also be given as directories, which the actors read themselves (`load`).
    Queries are still described here; the results are those of ``backend="local"``, bit for bit. A dead actor
    is restarted or replaced and its call sent again; a shard that cannot answer raises
    `ray_shards.ShardUnavailableError`: a search never returns part of the shards' results. ``actor_options``
    go to Ray's ``.options`` of each shard actor (e.g. ``{"memory": 8 << 30}``). `close` ends the actors.
    ``indexes`` holds the shards as given.
    """

    def __init__(
        self,
        indexes: Sequence[Index | str | os.PathLike],
        labels: Sequence[str] | None = None,
        *,
        backend: str = "local",
        address: str | None = None,
        actor_options: Mapping | None = None,
    ):
        indexes = list(indexes)
        labels = list(labels) if labels else _labels(indexes)
        if backend == "local":
            if address is not None or actor_options is not None:
                raise ConfigError("address= and actor_options= are for backend='ray'")
            _check_compatible(indexes, labels)
            self._sharded = ShardedIndex([ix.inverted for ix in indexes])
        elif backend == "ray":
            if not indexes:
                raise UserError("no indexes were given: pass at least one index directory")
            from imagexplore.retrieval.ray_shards import RayShardedIndex

            self._sharded = RayShardedIndex(
                indexes, labels, address=address, actor_options=actor_options, check=check_described
            )
        else:
            raise ConfigError(f"unknown ShardedSearch backend {backend!r}: choose 'local' or 'ray'")
        self.indexes = indexes
        self.backend = backend
        first = indexes[0]
        # the CNN that describes queries: the first shard's, or (its directory read remotely) the same network
        self._describer = first if isinstance(first, Index) else _describer(self._sharded)

    @classmethod
    def load(
        cls,
        directories: Sequence[str | os.PathLike],
        *,
        backend: str = "local",
        address: str | None = None,
        actor_options: Mapping | None = None,
        mmap: bool = False,
    ) -> ShardedSearch:
        """The indexes saved in ``directories``, in that order (which sets the order of tied results); with
        ``backend="ray"`` each is read by its actor, wherever Ray places it (give paths every node can read).
        ``mmap`` (local backend): each index's big arrays are memory-mapped (`Index.load`)."""
        if backend == "ray":
            if mmap:
                raise ConfigError("mmap=True reads the shards in this process: use it with backend='local'")
            if isinstance(directories, str | os.PathLike):
                raise UserError("give a list of indexes or index directories, not a single one")
            return cls(directories, backend=backend, address=address, actor_options=actor_options)
        loaded = _load_all(directories, mmap=mmap)
        return cls(*loaded, backend=backend, address=address, actor_options=actor_options)

    @classmethod
    def connect(cls, name: str, address: str | None = None) -> ShardedSearch:
        """The shards that ``imagexplore retrieve serve-shards --name NAME`` keeps loaded on the Ray cluster at
        ``address`` (`ray_shards.ServedShards`): queries are described here and scored by the service."""
        from imagexplore.retrieval.ray_shards import ServedShards

        self = cls.__new__(cls)
        self._sharded = ServedShards(name, address)
        self.indexes, self.backend = [], "ray"
        self._describer = _describer(self._sharded)
        return self

    def search(self, image, k: int = 10) -> list[tuple[str, float]]:
        """`Index.search` over all shards."""
        return self.search_many([image], k)[0]

    def search_many(self, images: Sequence, k: int = 10) -> list[list[tuple[str, float]]]:
        """`Index.search_many` over all shards: one CNN pass, then the shards' top-k lists merged."""
        return _search_images(self._describer, self._sharded, images, k)

    def to(self, device: str) -> ShardedSearch:
        """Describe queries on ``device`` (the first shard's CNN does it)."""
        self._describer.to(device)
        return self

    def close(self) -> None:
        """End the Ray actors holding the shards (nothing to do for ``backend="local"``)."""
        if self.backend == "ray":
            self._sharded.close()

    def __len__(self) -> int:
        return len(self._sharded)

    @property
    def paths(self) -> tuple:
        return self._sharded.images


def _describer(remote) -> Index:
    """An `Index` holding nothing but the CNN of shards held elsewhere (it only describes queries)."""
    return Index(None, remote.backbone, weights=remote.weights)  # type: ignore[arg-type]


def _search_images(describer: Index, searcher, images: Sequence, k: int) -> list[list[tuple[str, float]]]:
    """Describe ``images`` with ``describer``'s CNN, search ``searcher`` (default: the describer's index as it
    is at that moment) and name the results."""
    images = list(images)
    k = check_positive("search k (results per query)", k)
    if not images:
        return []
    feats, current = describer._describe(images)
    searcher = current if searcher is None else searcher
    ids, scores = searcher.search_batch(_select(feats, searcher.config), k)
    return _named(searcher.images, ids, scores)


def _named(names: Sequence, ids: np.ndarray, scores: np.ndarray) -> list[list[tuple[str, float]]]:
    """Padded (Q, k) positions and scores → per query its ``(name, score)`` list, padding dropped."""
    return [
        [(names[i], float(s)) for i, s in zip(row_ids, row_scores, strict=True) if i >= 0]
        for row_ids, row_scores in zip(ids, scores, strict=True)
    ]


def config_for(config: ConfigSource, source: Index | None) -> IndexConfig:
    """The config to build with. With ``vocab_from`` it is the source's, in which ``config`` (its fields laid
    over the source's) may change only how queries are scored: the reused vocabularies and PCA fix the rest."""
    if source is None:
        return resolve_config(config)
    base = source.inverted.config
    if config is None:
        return base
    if isinstance(config, IndexConfig):
        fields = config.to_json()
    elif isinstance(config, Mapping):
        fields = dict(config)
    else:
        fields = read_index_fields(Path(config))
    wanted = resolve_config({**base.to_json(), **fields})
    changes = {name: getattr(wanted, name) for name in fields if getattr(wanted, name) != getattr(base, name)}
    try:
        return source.inverted.with_query_options(**changes).config
    except ConfigError as exc:
        raise ConfigError(f"{exc}, as the vocabularies come from another index (vocab_from)") from None


def _build_inverted(
    feats: Mapping[str, np.ndarray],
    images: list[str],
    cfg: IndexConfig,
    source: Index | None,
    train: Mapping[str, np.ndarray] | None,
    progress: bool = False,
) -> InvertedIndex:
    models_from = None if source is None else source.inverted
    return InvertedIndex.build(
        _select(feats, cfg),
        cfg,
        images=images,
        train=_select(train, cfg),
        models_from=models_from,
        progress=progress,
    )


def _relative_to(directory: Path, path) -> str:
    """``path`` (relative to the working directory, or absolute) relative to ``directory``, for saving."""
    try:
        return os.path.relpath(os.path.abspath(str(path)), os.path.abspath(directory))
    except ValueError:  # another drive (Windows): keep it absolute
        return os.path.abspath(str(path))


def _as_index(source: Index | str | os.PathLike | None, mmap: bool = False) -> Index | None:
    return source if source is None or isinstance(source, Index) else Index.load(source, mmap=mmap)


def _weights_path(weights: str | os.PathLike | None) -> str | None:
    """A weights file as an absolute path (an index is then usable from any working directory)."""
    if weights is None:
        return None
    return "random" if str(weights) == "random" else str(Path(weights).resolve())


def _backbone_for(backbone: str | None, weights: str | None, source: Index | None) -> tuple[str, str | None]:
    """The backbone and weights to describe images with: a vocabulary source's, which given ones must match."""
    if source is None:
        return backbone or DEFAULT_BACKBONE, weights
    if (backbone is not None and backbone != source.backbone) or (
        weights is not None and weights != source.weights
    ):
        raise ConfigError(
            f"the vocabularies come from an index of backbone {source.backbone!r} (weights {source.weights}), "
            f"but the features are from {backbone!r} (weights {weights}): use the same backbone and weights"
        )
    return source.backbone, source.weights


def _check_some_read(files: Sequence[Path], skipped: Sequence[tuple[Path, str]]) -> None:
    if len(skipped) == len(files):
        raise DataError(f"none of the {len(files)} images could be read (first: {skipped[0][1]})")


def _load_all(
    indexes: Sequence[Index | str | os.PathLike], mmap: bool = False
) -> tuple[list[Index], list[str]]:
    """Indexes (loading directories, memory-mapped with ``mmap``) with a label each for messages: the
    directory, or the position."""
    if isinstance(indexes, str | os.PathLike):
        raise UserError("give a list of indexes or index directories, not a single one")
    return [_as_index(ix, mmap) for ix in indexes], _labels(indexes)


def _labels(indexes: Sequence[Index | str | os.PathLike]) -> list[str]:
    """A label per index for messages: its directory, or its position."""
    return [f"index #{i}" if isinstance(ix, Index) else str(ix) for i, ix in enumerate(indexes)]


def _check_compatible(indexes: Sequence[Index], labels: Sequence[str]) -> None:
    """Shards must share backbone, layout, vocabularies and PCA, and hold no image twice; say which differs."""
    if not indexes:
        raise UserError("no indexes were given: pass at least one index directory")
    described = [
        {
            "backbone": ix.backbone,
            "weights": ix.weights,
            "config": ix.inverted.config,
            "images": ix.inverted.images,
        }
        for ix in indexes
    ]
    first = indexes[0].inverted.models
    check_described(described, labels, [first.same_as(ix.inverted.models) for ix in indexes])


def _select(feats: Mapping[str, np.ndarray] | None, config: IndexConfig) -> dict[str, np.ndarray] | None:
    """Only the feature types the index uses (the extractor yields every type it taps)."""
    if feats is None:
        return None
    missing = [t for t in config.types if t not in feats]
    if missing:
        raise ConfigError(
            f"the backbone has no feature type(s) {missing}: index types must be among {sorted(feats)}"
        )
    return {t: feats[t] for t in config.types}
