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
vocabularies, `Index.merge` joins them exactly and `ShardedSearch` searches several as one. Images are fed to
the CNN in fixed groups (`distributed.extract_batched`) by every path, so all of them give the same features
and hence the same index as one `Index.build`.
"""

from __future__ import annotations

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
from imagexplore.retrieval.index import LAYOUT_FIELDS, IndexConfig, InvertedIndex, ShardedIndex
from imagexplore.retrieval.options import (
    DEFAULT_BACKBONE,
    DEFAULT_BATCH_IMAGES,
    check_index_dir,
    check_positive,
    image_files,
)

BACKBONE_FILE = "backbone.json"
PATHS_FILE = "paths.json"
PATHS_LAYOUT = {"relative_to": "index", "version": 2}
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
    ) -> Index:
        """Index image files (a list, or a folder listed recursively); unreadable ones go to ``skipped``
        (``on_bad_file="fail"``: the first one raises its `DataError` instead).

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
        files = image_files(paths, "images to index")
        train_files = None if train_paths is None else image_files(train_paths, "training images")
        start = time.perf_counter()
        feats, skipped = index._features(files, progress, batch_size, on_bad_file)
        _check_some_read(files, skipped)
        train = None
        if train_files is not None:
            train, _ = index._features(train_files, progress, batch_size, on_bad_file)
        index.extract_seconds = time.perf_counter() - start
        bad = {p for p, _ in skipped}
        kept = [str(p) for p in files if p not in bad]
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
    def load(cls, directory: str | os.PathLike) -> Index:
        """Read an index written by `save` (the CNN is loaded at the first search or add).

        Image paths come back joined to ``directory`` as given (see the module's "Paths")."""
        root = check_index_dir(directory, "index")
        inverted = InvertedIndex.load(root)  # checks format.json, every file's sha256 and shape
        try:
            described = json.loads((root / BACKBONE_FILE).read_text())
            backbone, weights = described["name"], described.get("weights")
            if not isinstance(backbone, str) or not (weights is None or isinstance(weights, str)):
                raise TypeError("name/weights must be strings")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(
                f"{root / BACKBONE_FILE} is missing or damaged: it is not an index of image files written by "
                "`imagexplore retrieve build`; rebuild it"
            ) from exc
        stats = json.loads((root / "stats.json").read_text())  # a JSON object, checked by InvertedIndex.load
        skipped, seconds = stats.get("skipped", []), stats.get("extract_seconds")
        if not isinstance(skipped, list) or not all(isinstance(p, str) for p in skipped):
            raise DataError(f"{root / 'stats.json'}: 'skipped' must be a list of paths: rebuild the index")
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float)):
            raise DataError(f"{root / 'stats.json'}: 'extract_seconds' must be a number: rebuild the index")
        if _paths_layout(root) == 1:
            log.warning(
                "index %s was written by an older imagexplore: its paths are relative to the directory the build "
                "ran in, not to the index; convert it by running `imagexplore retrieve merge --out NEW %s` "
                "from that directory",
                root,
                root,
            )
        else:
            inverted = inverted.renamed([_resolve_in(root, p) for p in inverted.images])
            skipped = [_resolve_in(root, p) for p in skipped]
        return cls(inverted, backbone, skipped, weights, extract_seconds=seconds)


class ShardedSearch:
    """Several indexes (shards sharing vocabularies, e.g. built with ``vocab_from``) searched as one.

    Results equal those of `Index.merge` of the same shards (global idf, merged top-k; `index.ShardedIndex`)
    without copying them into one index. It holds the shards as they are now: later `Index.add` calls on them
    do not show. Queries are described once, by the first shard's CNN. ``labels`` name the shards in error
    messages (`load` uses the directories).
    """

    def __init__(self, indexes: Sequence[Index], labels: Sequence[str] | None = None):
        indexes = list(indexes)
        _check_compatible(indexes, labels or [f"index #{i}" for i in range(len(indexes))])
        self.indexes = indexes
        self._sharded = ShardedIndex([ix.inverted for ix in indexes])

    @classmethod
    def load(cls, directories: Sequence[str | os.PathLike]) -> ShardedSearch:
        """The indexes saved in ``directories``, in that order (which sets the order of tied results)."""
        return cls(*_load_all(directories))

    def search(self, image, k: int = 10) -> list[tuple[str, float]]:
        """`Index.search` over all shards."""
        return self.search_many([image], k)[0]

    def search_many(self, images: Sequence, k: int = 10) -> list[list[tuple[str, float]]]:
        """`Index.search_many` over all shards: one CNN pass, then the shards' top-k lists merged."""
        return _search_images(self.indexes[0], self._sharded, images, k)

    def to(self, device: str) -> ShardedSearch:
        """Describe queries on ``device`` (the first shard's CNN does it)."""
        self.indexes[0].to(device)
        return self

    def __len__(self) -> int:
        return len(self._sharded)

    @property
    def paths(self) -> tuple:
        return self._sharded.images


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


def _resolve_in(directory: Path, path) -> str:
    """A saved path (relative to ``directory``) as a path from here: ``directory`` as given, joined, normalised
    lexically (the inverse of `_relative_to`, also across symbolic links)."""
    if not isinstance(path, str):
        raise DataError(f"{directory / 'images.json'} holds {path!r}, not an image path: rebuild the index")
    return os.path.normpath(os.path.join(directory, path))


def _paths_layout(root: Path) -> int:
    """2: paths relative to the index (``paths.json``); 1: an older index, paths as its build was given them."""
    path = root / PATHS_FILE
    if not path.exists():
        return 1
    try:
        layout = json.loads(path.read_text())  # its sha256 was checked by InvertedIndex.load
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is unreadable ({exc}): rebuild the index") from exc
    if layout != PATHS_LAYOUT:
        raise DataError(
            f"{path} says {layout!r}; this imagexplore reads {PATHS_LAYOUT}: rebuild the index or use the "
            "imagexplore release that wrote it"
        )
    return 2


def _as_index(source: Index | str | os.PathLike | None) -> Index | None:
    return source if source is None or isinstance(source, Index) else Index.load(source)


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


def _load_all(indexes: Sequence[Index | str | os.PathLike]) -> tuple[list[Index], list[str]]:
    """Indexes (loading directories) with a label each for messages: the directory, or the position."""
    if isinstance(indexes, str | os.PathLike):
        raise UserError("give a list of indexes or index directories, not a single one")
    loaded = [_as_index(ix) for ix in indexes]
    labels = [f"index #{i}" if isinstance(ix, Index) else str(ix) for i, ix in enumerate(indexes)]
    return loaded, labels


def _check_compatible(indexes: Sequence[Index], labels: Sequence[str]) -> None:
    """Shards must share backbone, layout, vocabularies and PCA, and hold no image twice; say which differs."""
    if not indexes:
        raise UserError("no indexes were given: pass at least one index directory")
    first, name = indexes[0], labels[0]
    seen: dict = {}  # by absolute path: shards given one relative and one absolute still name files alike
    for ix, label in zip(indexes, labels):
        if (ix.backbone, ix.weights) != (first.backbone, first.weights):
            raise ConfigError(
                f"{label} was built with backbone {ix.backbone!r} (weights {ix.weights}), {name} with "
                f"{first.backbone!r} (weights {first.weights}): shards must describe images alike"
            )
        a, b = first.inverted, ix.inverted
        for field in LAYOUT_FIELDS:
            if getattr(a.config, field) != getattr(b.config, field):
                raise ConfigError(
                    f"{label} has index {field} {getattr(b.config, field)!r}, {name} "
                    f"{getattr(a.config, field)!r}: build every shard with --vocab-from {name}"
                )
        if not a.models.same_as(b.models):
            raise ConfigError(
                f"{label} was built with other vocabularies or PCA than {name}: build every shard with "
                f"`imagexplore retrieve build --vocab-from {name}` (Index.build(vocab_from=...))"
            )
        for image in b.images:
            key = os.path.abspath(image) if isinstance(image, str) else image
            if seen.setdefault(key, label) != label:
                raise DataError(
                    f"image {image} is in both {seen[key]} and {label}: shards must index disjoint images"
                )


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
