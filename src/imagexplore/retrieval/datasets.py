"""Ground truth of the retrieval benchmarks, read from their official file layouts.

Each reader returns plain names / indices that `imagexplore.retrieval.metrics` takes directly, so an index
only has to produce rankings:

- INRIA Holidays: the ground truth is in the file names (``holidays_groups``).
- UKBench: groups of four consecutive images (``ukbench_groups``).
- Oxford5k / Paris6k: the original ``gt_files`` folder (``read_oxford_paris_gt``).
- Revisited ROxford5k / RParis6k: ``gnd_roxford5k.pkl`` / ``gnd_rparis6k.pkl`` (``read_revisited_gnd``).

Trust note: the revisited ground truth is a Python pickle. Give only the official file; as a second line of
defence the unpickler here refuses every object type except the containers and numpy arrays those files hold,
so a tampered file raises `DataError` instead of running code.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imagexplore.data.pickles import load_numpy_pickle
from imagexplore.errors import DataError

# Holidays: six digits, the first four name the group, ``NNNN00`` is the group's query (eval_holidays.py).
_HOLIDAYS_NAME = re.compile(r"(\d{6})\.\w+")
# UKBench: ``ukbench00000.jpg`` ... ``ukbench10199.jpg``; images 4g .. 4g+3 show the same object.
_UKBENCH_NAME = re.compile(r"ukbench(\d+)\.\w+")
UKBENCH_GROUP_SIZE = 4

# Oxford gt_files: lists per query next to ``<query>_query.txt``; positives are good + ok.
_OXFORD_LISTS = ("good", "ok", "junk")
_OXFORD_PREFIX = "oxc1_"  # Oxford's query files name the image "oxc1_<image>"; Paris's do not


# The only globals a revisited gnd pickle (dicts and lists of names, indices, numpy arrays) may reference.
def _basename(name: str) -> str:
    return str(name).replace("\\", "/").rsplit("/", 1)[-1]


def holidays_groups(image_names: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Queries and their positives from Holidays names: group = first four digits, query = ``NNNN00``.

    The query is left out of its own positives (``eval_holidays.py`` skips it when it is ranked; score with
    `metrics.average_precision_holidays`). Names are returned as given (paths allowed), queries in increasing
    number, as in ``holidays_images.dat``.
    """
    bases = [_basename(n) for n in image_names]
    matches = [_HOLIDAYS_NAME.fullmatch(b) for b in bases]
    bad = [n for n, m in zip(image_names, matches) if m is None]
    if bad:
        raise DataError(f"{bad[0]!r} is not a Holidays image name: expected six digits such as 100000.jpg")
    if not matches:
        raise DataError("no Holidays image names given: pass the names of the database images")
    numbers = np.array([int(m.group(1)) for m in matches])
    order = np.argsort(numbers, kind="stable")
    numbers = numbers[order]
    repeated = numbers[1:][numbers[1:] == numbers[:-1]]
    if repeated.size:
        raise DataError(f"Holidays image {repeated[0]} is listed twice: give each image once")
    groups = numbers // 100
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    no_query = groups[starts][numbers[starts] % 100 != 0]
    if no_query.size:
        raise DataError(f"Holidays group {no_query[0]} has no query image {no_query[0]}00: give whole groups")
    sizes = np.diff(np.r_[starts, numbers.size])
    alone = groups[starts][sizes == 1]
    if alone.size:
        raise DataError(
            f"Holidays group {alone[0]} has only its query: its AP is undefined; give whole groups"
        )
    names = [image_names[i] for i in order]
    bounds = np.r_[starts, numbers.size].tolist()
    queries = [names[s] for s in bounds[:-1]]
    positives = [names[s + 1 : e] for s, e in zip(bounds[:-1], bounds[1:])]
    return queries, positives


def ukbench_groups(image_names: Sequence[str]) -> np.ndarray:
    """Group of each UKBench image (``ukbenchNNNNN.jpg`` → NNNNN // 4), aligned with ``image_names``."""
    matches = [_UKBENCH_NAME.fullmatch(_basename(n)) for n in image_names]
    bad = [n for n, m in zip(image_names, matches) if m is None]
    if bad:
        raise DataError(
            f"{bad[0]!r} is not a UKBench image name: expected ukbench00000.jpg ... ukbench10199.jpg"
        )
    return np.array([int(m.group(1)) for m in matches], dtype=np.int64) // UKBENCH_GROUP_SIZE


def index_of(names: Sequence[str], imlist: Sequence[str]) -> np.ndarray:
    """Database indices of ``names`` in ``imlist``, to turn name ground truth into index ground truth."""
    table = np.asarray(imlist, dtype=str)
    wanted = np.asarray(names, dtype=str)
    if not table.size:
        raise DataError("the database image list is empty: give the names of the indexed images")
    sorter = np.argsort(table, kind="stable")
    at = np.minimum(np.searchsorted(table, wanted, sorter=sorter), table.size - 1)
    found = sorter[at]
    unknown = wanted[table[found] != wanted]
    if unknown.size:
        raise DataError(f"{unknown[0]!r} is not in the database image list: index every ground-truth image")
    return found.astype(np.int64)


@dataclass(frozen=True)
class OxfordQuery:
    """One Oxford5k / Paris6k query; names are image names without extension, as in the gt files."""

    name: str  # the gt file stem, e.g. "all_souls_1"
    image: str  # the query image, e.g. "all_souls_000013"
    box: tuple[
        float, float, float, float
    ]  # x1 y1 x2 y2 in pixels of the full image; queries are cropped to it
    positives: tuple[str, ...]  # good + ok
    junk: tuple[str, ...]  # ignored: taken out of the ranking before scoring


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(
            f"{path} is missing: the Oxford/Paris gt_files need good, ok and junk lists per query"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_oxford_paris_gt(gt_dir: str | Path) -> list[OxfordQuery]:
    """Queries of Oxford5k / Paris6k from the original ``gt_files`` folder (55 queries), sorted by name.

    Layout: ``<query>_query.txt`` holds ``[oxc1_]<image> x1 y1 x2 y2``; ``<query>_good.txt``, ``_ok.txt`` and
    ``_junk.txt`` list image names. Positives are good + ok; junk is ignored when scoring.
    """
    root = Path(gt_dir)
    if not root.is_dir():
        raise DataError(
            f"{root} is not a folder: give the Oxford/Paris gt_files folder (<query>_query.txt ...)"
        )
    query_files = sorted(root.glob("*_query.txt"))
    if not query_files:
        raise DataError(f"no *_query.txt in {root}: give the Oxford/Paris gt_files folder")
    queries = []
    for query_file in query_files:
        name = query_file.name[: -len("_query.txt")]
        lines = _read_lines(query_file)
        fields = lines[0].split() if lines else []
        if len(fields) != 5:
            raise DataError(f"{query_file} must hold one line '<image> x1 y1 x2 y2', got {lines[:1]}")
        try:
            box = tuple(float(v) for v in fields[1:])
        except ValueError:
            raise DataError(f"{query_file}: the box '{' '.join(fields[1:])}' is not four numbers") from None
        lists = {kind: _read_lines(root / f"{name}_{kind}.txt") for kind in _OXFORD_LISTS}
        positives = tuple(lists["good"] + lists["ok"])
        if not positives:
            raise DataError(f"query {name} in {root} has empty good and ok lists: its AP is undefined")
        image = fields[0].removeprefix(_OXFORD_PREFIX)
        queries.append(OxfordQuery(name, image, box, positives, tuple(lists["junk"])))
    return queries


@dataclass(frozen=True)
class RevisitedGroundTruth:
    """Content of a revisited gnd pickle; indices in ``gnd`` refer to ``imlist`` (the database order)."""

    imlist: list[str]  # database image names (no extension)
    qimlist: list[str]  # query image names, one per gnd entry
    gnd: list[dict[str, np.ndarray]]  # per query: "bbx" (4 floats, x1 y1 x2 y2), "easy", "hard", "junk"


def read_revisited_gnd(path: str | Path) -> RevisitedGroundTruth:
    """ROxford5k / RParis6k ground truth from ``gnd_roxford5k.pkl`` / ``gnd_rparis6k.pkl`` (revisitop)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path} not found: give the gnd_roxford5k.pkl or gnd_rparis6k.pkl file") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    try:
        obj = load_numpy_pickle(data, encoding="latin1")
    except Exception as exc:
        raise DataError(f"cannot read revisited ground truth {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, dict) or not {"imlist", "qimlist", "gnd"} <= obj.keys():
        raise DataError(f"{path} is not a revisited gnd file: expected a dict with imlist, qimlist and gnd")
    imlist = [str(n) for n in obj["imlist"]]
    qimlist = [str(n) for n in obj["qimlist"]]
    if len(obj["gnd"]) != len(qimlist):
        raise DataError(f"{path} has {len(qimlist)} query names but {len(obj['gnd'])} gnd entries")
    return RevisitedGroundTruth(
        imlist, qimlist, [_gnd_entry(e, i, len(imlist), path) for i, e in enumerate(obj["gnd"])]
    )


def _gnd_entry(entry, query: int, n_images: int, path: Path) -> dict[str, np.ndarray]:
    """One query's gnd with checked index lists, so a damaged file fails here and not deep inside scoring."""
    if not isinstance(entry, dict) or not {"bbx", "easy", "hard", "junk"} <= entry.keys():
        raise DataError(f"{path}: gnd entry {query} needs bbx, easy, hard and junk")
    out = {"bbx": np.asarray(entry["bbx"], dtype=np.float64).reshape(-1)}
    if out["bbx"].size != 4:
        raise DataError(f"{path}: gnd entry {query} has a bbx of {out['bbx'].size} numbers, expected 4")
    for key in ("easy", "hard", "junk"):
        ids = np.asarray(entry[key]).reshape(-1)
        if ids.size and (ids.dtype.kind not in "iu" or ids.min() < 0 or ids.max() >= n_images):
            raise DataError(
                f"{path}: gnd entry {query} {key!r} must be indices into imlist (0..{n_images - 1})"
            )
        out[key] = ids.astype(np.int64)
    return out
