"""The public DeepIndex API (thesis ch. 4): an image index built from files, searched with images.

`InvertedIndex` (index.py) works on pre-computed patch features and `extract` (features.py) computes them; this
module joins the two so a user deals in image paths only. The extractor is loaded lazily once per `Index` (a
loaded index that is only saved or inspected never pays for the CNN) and is guarded by a lock, because its
forward hooks keep per-call state: concurrent searches on one index are then safe, only serialised on the CNN.

On disk an `Index` is the `InvertedIndex` directory plus ``backbone.json`` (the extractor that made the
features, so queries are described the same way) and, in ``stats.json``, the backbone and the skipped files.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from imagexplore.data.images import list_images
from imagexplore.errors import ConfigError, DataError, UserError
from imagexplore.retrieval.features import DEFAULT_BACKBONE, extract, load_backbone
from imagexplore.retrieval.index import IndexConfig, InvertedIndex

BACKBONE_FILE = "backbone.json"
# Default feature types per mode: 1-D indexes the head feature; 2-D pairs the mid- and high-level features.
DEFAULT_TYPES = {"1d": ("high",), "2d": ("mid", "high")}

ConfigSource = IndexConfig | Mapping | str | os.PathLike | None


def resolve_config(
    config: ConfigSource = None, *, mode: str | None = None, k: int | None = None
) -> IndexConfig:
    """An `IndexConfig` from an instance, a dict of its fields or a YAML file; ``mode``/``k`` override it.

    Without ``types`` the feature types follow the mode (`DEFAULT_TYPES`), so ``{"mode": "2d"}`` is enough.
    """
    if isinstance(config, IndexConfig):
        fields = config.to_json()
    elif isinstance(config, Mapping):
        fields = dict(config)
    elif config is None:
        fields = {}
    else:
        fields = _read_yaml(Path(config))
    if mode is not None:
        if "types" in fields and fields.get("mode") != mode:
            fields.pop("types")  # the config's types were chosen for its own mode
        fields["mode"] = mode
    if k is not None:
        fields["k"] = k
    fields.setdefault("mode", "1d")
    if "types" not in fields:
        if fields["mode"] not in DEFAULT_TYPES:
            raise ConfigError(f"index mode must be one of {tuple(DEFAULT_TYPES)}, not {fields['mode']!r}")
        fields["types"] = DEFAULT_TYPES[fields["mode"]]
    return IndexConfig.from_json(fields)


def _read_yaml(path: Path) -> dict:
    import yaml

    if not path.is_file():
        raise ConfigError(f"index config {path} not found: give a YAML file of IndexConfig fields")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"index config {path} is not valid YAML: {' '.join(str(exc).split())}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"index config {path} must be a mapping of IndexConfig fields, e.g. 'k: 1024'")
    return data


def _query_input(item):
    """A NumPy H×W×3 / H×W uint8 array becomes a Pillow image; paths, Pillow images and tensors pass through."""
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim not in (2, 3):
            raise DataError(f"an image array must be H×W or H×W×3 uint8, got {item.dtype} {item.shape}")
        return Image.fromarray(item)
    return item


class Index:
    """A searchable DeepIndex of image files: `build` from paths, `search` with images, `save` / `load`."""

    def __init__(self, inverted: InvertedIndex, backbone: str = DEFAULT_BACKBONE, skipped: Sequence = ()):
        self.inverted = inverted
        self.backbone = backbone
        self.skipped = [str(p) for p in skipped]
        self._extractor = None
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------------------------------- building
    @classmethod
    def build(
        cls,
        paths: Sequence[str | os.PathLike] | str | os.PathLike,
        config: ConfigSource = None,
        *,
        backbone: str = DEFAULT_BACKBONE,
        progress: bool = True,
        batch_size: int = 16,
        train_paths: Sequence[str | os.PathLike] | str | os.PathLike | None = None,
    ) -> Index:
        """Index image files (a list, or a folder listed recursively); unreadable ones go to ``skipped``.

        ``train_paths`` (files or a folder) learn the vocabularies and PCA independently of the collection.
        """
        cfg = resolve_config(config)
        files = _as_files(paths, "images to index")
        index = cls(None, backbone)  # type: ignore[arg-type]  # filled in below, once features exist
        feats, skipped = index._features(files, progress, batch_size)
        train = None
        if train_paths is not None:
            train, _ = index._features(_as_files(train_paths, "training images"), progress, batch_size)
        bad = {Path(p) for p in skipped}
        kept = [str(p) for p in files if Path(p) not in bad]
        index.inverted = InvertedIndex.build(_select(feats, cfg), cfg, images=kept, train=_select(train, cfg))
        index.skipped = [str(p) for p in skipped]
        return index

    def _features(self, files: list[Path], progress: bool, batch_size: int = 16) -> tuple[dict, list]:
        with self._lock:
            if self._extractor is None:
                self._extractor = load_backbone(self.backbone)
            return extract(self._extractor, files, batch_size=batch_size, progress=progress, on_bad="skip")

    def add(self, paths: Sequence[str | os.PathLike] | str | os.PathLike, progress: bool = False) -> None:
        """Append images with the fixed vocabularies (nothing re-learned); unreadable ones go to ``skipped``."""
        files = _as_files(paths, "images to add")
        feats, skipped = self._features(files, progress)
        bad = {Path(p) for p in skipped}
        with self._lock:
            self.inverted.add(
                _select(feats, self.inverted.config), images=[str(p) for p in files if Path(p) not in bad]
            )
            self.skipped += [str(p) for p in skipped]

    # ----------------------------------------------------------------------------------------------- querying
    def search(self, image, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` best ``(path, score)`` for one image (path, Pillow image, uint8 array or tensor)."""
        return self.search_many([image], k)[0]

    def search_many(self, images: Sequence, k: int = 10) -> list[list[tuple[str, float]]]:
        """`search` for several images at once (one batched pass through the CNN); unreadable → `DataError`."""
        queries = [_query_input(x) for x in images]
        if not queries:
            return []
        with self._lock:
            if self._extractor is None:
                self._extractor = load_backbone(self.backbone)
            feats = extract(self._extractor, queries, progress=False, on_bad="fail")
            inverted = self.inverted
        ids, scores = inverted.search_batch(_select(feats, inverted.config), k)
        names = inverted.images
        return [
            [(names[i], float(s)) for i, s in zip(row_ids, row_scores, strict=True) if i >= 0]
            for row_ids, row_scores in zip(ids, scores, strict=True)
        ]

    def __len__(self) -> int:
        return len(self.inverted)

    @property
    def paths(self) -> tuple:
        return self.inverted.images

    @property
    def stats(self) -> dict:
        return {**self.inverted.stats, "backbone": self.backbone, "skipped": list(self.skipped)}

    # -------------------------------------------------------------------------------------------------- files
    def save(self, directory: str | os.PathLike) -> Path:
        """Write the index directory atomically (`InvertedIndex.save`), with the backbone's name and the skipped
        files recorded (``backbone.json``, stats.json), all checksummed."""
        return self.inverted.save(
            directory,
            extra_stats={"backbone": self.backbone, "skipped": list(self.skipped)},
            extra_files={BACKBONE_FILE: (json.dumps({"name": self.backbone}, indent=1) + "\n").encode()},
        )

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Index:
        """Read an index written by `save` (the CNN is loaded at the first search or add)."""
        root = Path(directory)
        if not root.is_dir():
            raise DataError(f"index {root} not found: build one with `imagexplore retrieve build`")
        try:
            backbone = json.loads((root / BACKBONE_FILE).read_text())["name"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(
                f"{root / BACKBONE_FILE} is missing or damaged: rebuild the index with `imagexplore retrieve build`"
            ) from exc
        inverted = InvertedIndex.load(root)
        skipped = json.loads((root / "stats.json").read_text()).get("skipped", [])  # checked by load
        return cls(inverted, backbone, skipped)


def _as_files(paths, what: str) -> list[Path]:
    """A folder (listed recursively) or a list of files; nothing to index is a `UserError`."""
    if isinstance(paths, str | os.PathLike):
        folder = Path(paths)
        files = list_images(folder)
        if not files:
            raise UserError(f"no image files in {folder}: give a folder holding .jpg/.png images")
        return files
    files = [Path(p) for p in paths]
    if not files:
        raise UserError(f"no {what} given: pass at least one image path")
    return files


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
