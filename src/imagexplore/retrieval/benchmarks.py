"""Retrieval benchmarks as (database images, queries, ground truth), ready for `imagexplore retrieve eval`.

Official layouts (read, never downloaded; `imagexplore data list` says where each is looked for):

- ``holidays``: a folder of ``NNNNMM.jpg`` (``holidays/jpg``); query = ``NNNN00`` of each group, scored against
  the whole collection with the query itself ignored. Images are used as stored, EXIF orientation applied; the
  result records ``rotate_upright`` (false unless ``--upright`` says the folder is the hand-rotated copy).
- ``ukbench``: ``ukbench/full/ukbench00000.jpg`` …; every image is a query, N-S score out of 4.
- ``oxford5k`` / ``paris6k``: images under ``jpg/`` (Paris' ``paris/<landmark>/`` nesting is fine) and the
  ``gt_files`` folder (``gt/``, ``gt_files/``, ``gt_files_170407/`` or the root itself); queries are cropped to
  their ground-truth box, positives are good + ok, junk is ignored.
- ``roxford5k`` / ``rparis6k``: revisitop's ``jpg/`` + ``gnd_<name>.pkl``; queries cropped to ``bbx``;
  Easy / Medium / Hard mAP.

Generated sets (`imagexplore.retrieval.querysets`) come in the same form: ``shapes`` and ``photo-copies``.

Ground truth refers to positions in ``images`` (the database order). Queries that are database images
(Holidays, UKBench, shapes) carry ``query_ids``, so their features are the database rows and not recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imagexplore.data.images import list_images
from imagexplore.errors import DataError
from imagexplore.retrieval.datasets import (
    holidays_groups,
    index_of,
    read_oxford_paris_gt,
    read_revisited_gnd,
    ukbench_groups,
)
from imagexplore.retrieval.options import OFFICIAL

PROTOCOLS = ("map", "ns", "revisited")
Box = tuple[float, float, float, float]


@dataclass
class RetrievalBenchmark:
    """A database, its queries and how to score their rankings (``protocol``).

    ``map``: ``positives`` / ``junk`` per query (database positions; Holidays-style query exclusion is junk);
    ``ns``: ``groups`` per database image (UKBench); ``revisited``: ``gnd`` (revisitop's per-query dicts).
    """

    name: str
    images: list[Path]
    queries: list[Path]
    protocol: str
    query_ids: np.ndarray | None = None  # database positions of the queries when they are database images
    query_boxes: list[Box] | None = None  # crop of each query (Oxford / Paris), pixels x0 y0 x1 y1
    positives: list[np.ndarray] | None = None
    junk: list[np.ndarray] | None = None
    groups: np.ndarray | None = None
    gnd: list[dict] | None = None
    notes: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise DataError(f"benchmark protocol must be one of {PROTOCOLS}, not {self.protocol!r}")
        if not self.images:
            raise DataError(f"benchmark {self.name} has no database images")
        if not self.queries:
            raise DataError(f"benchmark {self.name} has no queries")

    @property
    def query_names(self) -> list[str]:
        return [str(q) for q in self.queries]


def _images_dir(root: Path, name: str, subdirs: tuple[str, ...] = ("jpg",)) -> Path:
    if not root.is_dir():
        raise DataError(f"{root} is not a folder: give --root the {name} folder in its official layout")
    for sub in subdirs:
        if (root / sub).is_dir():
            return root / sub
    return root


def _listed(folder: Path, name: str) -> list[Path]:
    files = list_images(folder)
    if not files:
        raise DataError(f"no images in {folder}: give --root the {name} folder (see `imagexplore data list`)")
    return files


def load_holidays(root: str | Path, upright: bool = False) -> RetrievalBenchmark:
    """Holidays from its folder; ``upright`` records that the folder is the hand-rotated copy (names and ground
    truth are the same, so only the caller can tell)."""
    files = _listed(_images_dir(Path(root), "holidays"), "holidays")
    names = [str(p) for p in files]
    queries, positives = holidays_groups(names)
    qids = index_of(queries, names)
    return RetrievalBenchmark(
        "holidays",
        files,
        [Path(q) for q in queries],
        "map",
        query_ids=qids,
        positives=[index_of(p, names) for p in positives],
        junk=[np.array([q]) for q in qids],
        notes={
            "rotate_upright": upright,
            "query_in_database": "ignored in its own ranking (eval_holidays.py)",
        },
    )


def load_ukbench(root: str | Path) -> RetrievalBenchmark:
    files = _listed(_images_dir(Path(root), "ukbench", ("full", "jpg")), "ukbench")
    groups = ukbench_groups([p.name for p in files])
    return RetrievalBenchmark(
        "ukbench",
        files,
        list(files),
        "ns",
        query_ids=np.arange(len(files)),
        groups=groups,
        notes={"query_in_database": "counts when retrieved (N-S out of 4)"},
    )


def _gt_dir(root: Path) -> Path:
    for sub in ("gt", "gt_files", "gt_files_170407", "gt_files_120310"):
        if (root / sub).is_dir():
            return root / sub
    if any(root.glob("*_query.txt")):
        return root
    raise DataError(
        f"no Oxford/Paris ground truth under {root}: expected gt/ or gt_files/ holding <query>_query.txt"
    )


def load_oxford_paris(root: str | Path, name: str) -> RetrievalBenchmark:
    root = Path(root)
    files = _listed(_images_dir(root, name), name)
    stems = [p.stem for p in files]
    queries = read_oxford_paris_gt(_gt_dir(root))
    by_stem = dict(zip(stems, files))
    missing = [q.image for q in queries if q.image not in by_stem]
    if missing:
        raise DataError(f"query image {missing[0]!r} of {name} is not among the images under {root}")
    return RetrievalBenchmark(
        name,
        files,
        [by_stem[q.image] for q in queries],
        "map",
        query_boxes=[q.box for q in queries],
        positives=[index_of(q.positives, stems) for q in queries],
        junk=[index_of(q.junk, stems) if q.junk else np.zeros(0, np.int64) for q in queries],
        notes={"queries": "cropped to their ground-truth boxes", "positives": "good + ok", "junk": "ignored"},
    )


def load_revisited(root: str | Path, name: str) -> RetrievalBenchmark:
    root = Path(root)
    gt = read_revisited_gnd(root / f"gnd_{name}.pkl")
    folder = _images_dir(root, name)
    path_of = {p.stem: p for p in list_images(folder)}
    missing = [n for n in gt.imlist + gt.qimlist if n not in path_of]
    if missing:
        raise DataError(f"{name} image {missing[0]!r} (listed in gnd_{name}.pkl) is not under {folder}")
    return RetrievalBenchmark(
        name,
        [path_of[n] for n in gt.imlist],
        [path_of[n] for n in gt.qimlist],
        "revisited",
        query_boxes=[tuple(float(v) for v in g["bbx"]) for g in gt.gnd],
        gnd=gt.gnd,
        notes={"queries": "cropped to bbx", "setups": "easy / medium / hard (revisitop)"},
    )


def load_official(name: str, root: str | Path, *, upright: bool = False) -> RetrievalBenchmark:
    """One of `OFFICIAL` from its folder (``upright``: Holidays' rotated copy, recorded in the notes)."""
    if upright and name != "holidays":
        raise DataError(f"upright applies to Holidays' rotated copy only, not to {name}")
    if name == "holidays":
        return load_holidays(root, upright)
    if name == "ukbench":
        return load_ukbench(root)
    if name in ("oxford5k", "paris6k"):
        return load_oxford_paris(root, name)
    if name in ("roxford5k", "rparis6k"):
        return load_revisited(root, name)
    raise DataError(f"unknown benchmark {name!r}: choose one of {OFFICIAL}")
