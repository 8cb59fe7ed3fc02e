"""An `api.Index` directory read without its CNN: the inverted index, the backbone it was built with, its paths.

`api.Index.load` reads through `read_stored` and adds the CNN lazily; the Ray shard actors (`ray_shards`) read
their shard with it too, so that they never import torch. The directory layout is described in `api`'s "Paths".
`check_described` says whether shards, described by what they hold, can be searched as one.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from imagexplore.errors import ConfigError, DataError
from imagexplore.retrieval.index import LAYOUT_FIELDS, InvertedIndex
from imagexplore.retrieval.options import check_index_dir

BACKBONE_FILE = "backbone.json"
PATHS_FILE = "paths.json"
PATHS_LAYOUT = {"relative_to": "index", "version": 2}
log = logging.getLogger("imagexplore.retrieval.api")  # the messages of `Index.load`, whoever reads


@dataclass
class StoredIndex:
    """What an index directory holds besides the CNN."""

    inverted: InvertedIndex
    backbone: str
    weights: str | None
    skipped: list[str]
    extract_seconds: float | None


def read_stored(
    directory: str | os.PathLike, names_in: str | os.PathLike | None = None, *, mmap: bool = False
) -> StoredIndex:
    """Read the index saved in ``directory``; its image paths come back joined to ``names_in`` (default: the
    directory as given), so a process that reads the directory by another path (e.g. absolute) names the
    images as one that reads it as ``names_in`` does. ``mmap``: map the big arrays (`InvertedIndex.load`)."""
    root = check_index_dir(directory, "index")
    inverted = InvertedIndex.load(root, mmap=mmap)  # checks format.json, every file's sha256 and shape
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
    if paths_layout(root) == 1:
        log.warning(
            "index %s was written by an older imagexplore: its paths are relative to the directory the build "
            "ran in, not to the index; convert it by running `imagexplore retrieve merge --out NEW %s` "
            "from that directory",
            root,
            root,
        )
    else:
        base = root if names_in is None else Path(names_in)
        inverted = inverted.renamed([resolve_in(base, p) for p in inverted.images])
        skipped = [resolve_in(base, p) for p in skipped]
    return StoredIndex(inverted, backbone, weights, skipped, seconds)


def resolve_in(directory: Path, path) -> str:
    """A saved path (relative to ``directory``) as a path from here: ``directory`` as given, joined, normalised
    lexically (the inverse of `api._relative_to`, also across symbolic links)."""
    if not isinstance(path, str):
        raise DataError(f"{directory / 'images.json'} holds {path!r}, not an image path: rebuild the index")
    return os.path.normpath(os.path.join(directory, path))


def paths_layout(root: Path) -> int:
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


def check_described(described: Sequence[Mapping], labels: Sequence[str], same_models: Sequence[bool]) -> None:
    """`api._check_compatible` of shards given by their ``backbone``, ``weights``, ``config`` and ``images`` and
    whether each has the first one's vocabularies and PCA (how Ray's shard actors describe theirs)."""
    first, name = described[0], labels[0]
    seen: dict = {}  # by absolute path: shards given one relative and one absolute still name files alike
    for pos, (ix, label, same) in enumerate(zip(described, labels, same_models)):
        if (ix["backbone"], ix["weights"]) != (first["backbone"], first["weights"]):
            raise ConfigError(
                f"{label} was built with backbone {ix['backbone']!r} (weights {ix['weights']}), {name} with "
                f"{first['backbone']!r} (weights {first['weights']}): shards must describe images alike"
            )
        a, b = first["config"], ix["config"]
        for field in LAYOUT_FIELDS:
            if getattr(a, field) != getattr(b, field):
                raise ConfigError(
                    f"{label} has index {field} {getattr(b, field)!r}, {name} "
                    f"{getattr(a, field)!r}: build every shard with --vocab-from {name}"
                )
        if not same:
            raise ConfigError(
                f"{label} was built with other vocabularies or PCA than {name}: build every shard with "
                f"`imagexplore retrieve build --vocab-from {name}` (Index.build(vocab_from=...))"
            )
        for image in ix["images"]:
            key = os.path.abspath(image) if isinstance(image, str) else image
            if seen.setdefault(key, pos) != pos:  # by position: one directory given twice is two shards
                raise DataError(
                    f"image {image} is in both {labels[seen[key]]} and {label}: shards must index disjoint images"
                )
