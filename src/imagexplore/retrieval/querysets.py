"""Retrieval test sets built here from real photos and the shapes world (no benchmark download needed).

``photo-copies`` (Copydays-style): the database is every real photo available offline — scikit-image's bundled
photos, plus the Debian ``opencv-doc`` example images when installed — shrunk to at most ``max_side`` pixels.
Some originals are queried by edited copies, one per edit in `EDITS` (crop, rotation, scale, JPEG, colour,
occlusion; strengths as in INRIA Copydays' "strong" cases where it has one); the other photos are distractors.
``opencv-doc``'s same-scene pairs add harder queries: the first image queries the database that holds the
second (another viewpoint, not an edited copy). Optional distractors join the database only, e.g. stamps of
the installed Debian ``tuxpaint-stamps-default`` (`tuxpaint_stamps`, mostly photo cut-outs). Each query has
exactly one positive, so mAP is the mean of 1/rank
(trapezoid: ½(j/p + (j+1)/(p+1)) with j = 0).

``shapes``: ``views`` renderings of each of ``groups`` shapes-world scenes (`ShapesWorld.view`: rotation, scale,
shift, flip, colour, blur, noise); view 0 queries, the other views are its positives; the query is ignored in
its own ranking, as in Holidays.

Both are written as image files under a folder (kept, so a second run reuses them) and returned as a
`RetrievalBenchmark`.
"""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from imagexplore.data.assets import skimage_photos
from imagexplore.data.images import load_image
from imagexplore.errors import ConfigError, DataError
from imagexplore.retrieval.benchmarks import RetrievalBenchmark

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
TUXPAINT_STAMPS = Path("/usr/share/tuxpaint/stamps")
# opencv-doc's same-scene pairs (first queries, second is in the database); stereo chessboards are left out as
# queries (13 near-identical boards) but stay in the database as distractors.
OPENCV_PAIRS = (
    ("graf1.png", "graf3.png"),
    ("leuvenA.jpg", "leuvenB.jpg"),
    ("box.png", "box_in_scene.png"),
    ("aloeL.jpg", "aloeR.jpg"),
    ("basketball1.png", "basketball2.png"),
    ("rubberwhale1.png", "rubberwhale2.png"),
    ("Blender_Suzanne1.jpg", "Blender_Suzanne2.jpg"),
    ("aero1.jpg", "aero3.jpg"),
    ("ela_original.jpg", "ela_modified.jpg"),
)
EDITS = ("crop", "rotate", "scale", "jpeg", "colour", "occlude")
_MIN_SIDE = 128  # originals smaller than this (icons, 20-px digits) are distractors only


def _edit(img: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """One Copydays-style edit; the random parts (where to crop, which angle) come from ``rng``."""
    w, h = img.size
    if kind == "crop":  # keep 50 % of the area at a random place (Copydays crops 10-80 %)
        cw, ch = int(w * 0.5**0.5), int(h * 0.5**0.5)
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        return img.crop((x0, y0, x0 + cw, y0 + ch))
    if kind == "rotate":  # 10-20 degrees either way, cropped to the original frame
        angle = float(rng.uniform(10, 20) * rng.choice([-1, 1]))
        return img.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
    if kind == "scale":  # a quarter of the linear size, back up: the detail lost in a thumbnail
        small = img.resize((max(8, w // 4), max(8, h // 4)), Image.Resampling.BILINEAR)
        return small.resize((w, h), Image.Resampling.BILINEAR)
    if kind == "jpeg":  # Copydays' strongest JPEG quality is 3; 10 keeps it recognisable for a person
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=10)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    if kind == "colour":  # desaturate, brighten, shift contrast
        out = ImageEnhance.Color(img).enhance(0.3)
        out = ImageEnhance.Brightness(out).enhance(float(rng.uniform(1.2, 1.4)))
        return ImageEnhance.Contrast(out).enhance(float(rng.uniform(0.6, 0.8)))
    if kind == "occlude":  # a noise rectangle over 30 % of the image
        arr = np.asarray(img).copy()
        ow, oh = int(w * 0.3**0.5), int(h * 0.3**0.5)
        x0, y0 = int(rng.integers(0, w - ow + 1)), int(rng.integers(0, h - oh + 1))
        arr[y0 : y0 + oh, x0 : x0 + ow] = rng.integers(0, 256, (oh, ow, 3), dtype=np.uint8)
        return Image.fromarray(arr)
    raise ConfigError(f"unknown edit {kind!r}: choose from {EDITS}")


def photo_sources() -> list[Path]:
    """Real photos available offline: scikit-image's bundled ones, then opencv-doc's images when installed."""
    found = list(skimage_photos())
    if OPENCV_DATA.is_dir():
        found += sorted(p for p in OPENCV_DATA.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    return found


def tuxpaint_stamps(limit: int, seed: int = 0) -> list[Path]:
    """``limit`` stamps of the installed Debian ``tuxpaint-stamps-default`` (GPL: used in place, never copied
    into the repository), drawn at random with ``seed``; letters and digits (``symbols``) left out."""
    if not TUXPAINT_STAMPS.is_dir():
        raise DataError(
            f"{TUXPAINT_STAMPS} not found: install Debian tuxpaint-stamps-default (`make data`) for distractors"
        )
    stamps = sorted(
        p for p in TUXPAINT_STAMPS.rglob("*.png") if "symbols" not in p.relative_to(TUXPAINT_STAMPS).parts
    )
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= len(stamps):
        raise ConfigError(
            f"distractors: {limit!r} stamps asked, {len(stamps)} are installed: give 0 to {len(stamps)}"
        )
    pick = np.random.default_rng(seed).choice(len(stamps), size=min(limit, len(stamps)), replace=False)
    return [stamps[i] for i in sorted(pick)]


def _manifest_ok(folder: Path, spec: dict) -> bool:
    return _manifest(folder).get("spec") == spec


def _manifest(folder: Path) -> dict:
    try:
        data = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _load_thumbnails(paths: Sequence[Path], keys: Sequence[str], max_side: int) -> dict[str, Image.Image]:
    """The readable images among ``paths`` (unreadable ones left out), shrunk to ``max_side``, by key."""
    out = {}
    for key, src in zip(keys, paths):
        try:
            img = load_image(src, "RGB")  # cut-outs are composited on white
        except DataError:
            continue
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        out[key] = img
    return out


def make_photo_copies(
    folder: str | Path,
    *,
    originals: int = 24,
    edits: tuple[str, ...] = EDITS,
    pairs: bool = True,
    max_side: int = 512,
    seed: int = 0,
    sources: list[Path] | None = None,
    distractors: Sequence[str | Path] = (),
) -> RetrievalBenchmark:
    """Write (or reuse) the ``photo-copies`` set under ``folder``; ``originals`` photos get edited queries.

    ``distractors`` (e.g. `tuxpaint_stamps`) only join the database: more images to be confused with; the
    originals and their edits do not depend on them, so runs with and without distractors share their queries.
    A folder written with the same arguments is reused without decoding anything.
    """
    folder = Path(folder)
    sources = photo_sources() if sources is None else [Path(p) for p in sources]
    distractors = [Path(p) for p in distractors]
    bad = [e for e in edits if e not in EDITS]
    if bad:
        raise ConfigError(f"unknown edit(s) {bad}: choose from {EDITS}")
    params = {"sources": [str(p) for p in sources], "distractors": [str(p) for p in distractors],
              "originals": originals, "edits": list(edits), "pairs": pairs, "max_side": max_side, "seed": seed}  # fmt: skip
    db_dir, q_dir = folder / "database", folder / "queries"
    layout = _manifest(folder).get("layout") if _manifest(folder).get("params") == params else None
    if layout is None:
        layout = _write_photo_copies(folder, params, sources, distractors)
    db_names, chosen, pair_list = layout["db"], layout["chosen"], layout["pairs"]
    queries, positives = [], []
    for name in chosen:
        for kind in edits:
            queries.append(q_dir / f"{Path(name).stem}__{kind}.jpg")
            positives.append(name)
    for a, b in pair_list:
        queries.append(q_dir / f"{Path(a).stem}__pair.png")
        positives.append(b)
    order = {n: i for i, n in enumerate(db_names)}
    return RetrievalBenchmark(
        "photo-copies",
        [db_dir / f"{Path(n).stem}.png" for n in db_names],
        queries,
        "map",
        positives=[np.array([order[p]]) for p in positives],
        junk=[np.zeros(0, np.int64) for _ in positives],
        notes={
            "database": f"{len(db_names)} images (scikit-image, opencv-doc, distractors), longest side <= {max_side}",
            "queries": f"{len(chosen)} originals x {len(edits)} edits {list(edits)} + {len(pair_list)} pairs",
            "distractors": layout["distractors"],
            "seed": seed,
        },
    )


def _write_photo_copies(folder: Path, params: dict, sources: list[Path], distractors: list[Path]) -> dict:
    """Decode, choose, edit and write the set; returns the layout that the manifest keeps."""
    max_side, seed, edits = params["max_side"], params["seed"], params["edits"]
    photos = _load_thumbnails(sources, [p.name for p in sources], max_side)
    if len(photos) < 2:
        raise DataError(
            "photo-copies needs real photos: install scikit-image (bundled photos) or Debian opencv-doc"
        )
    # keys unique even when two stamp folders hold the same file name
    extra = _load_thumbnails(
        distractors, [f"distractor_{i:04d}_{p.stem}.png" for i, p in enumerate(distractors)], max_side
    )
    pair_list = [[a, b] for a, b in OPENCV_PAIRS if params["pairs"] and a in photos and b in photos]
    query_only = {a for a, _ in pair_list}
    answers = {b for _, b in pair_list}
    eligible = [n for n in photos if n not in query_only | answers and min(photos[n].size) >= _MIN_SIDE]
    if not eligible and not pair_list:
        raise DataError(f"photo-copies needs photos with a shorter side of at least {_MIN_SIDE} px to edit")
    rng = np.random.default_rng(seed)
    chosen = sorted(
        rng.choice(eligible, size=min(params["originals"], len(eligible)), replace=False).tolist()
    )
    db_names = [n for n in photos if n not in query_only] + list(extra)
    db_dir, q_dir = folder / "database", folder / "queries"
    db_dir.mkdir(parents=True, exist_ok=True)
    q_dir.mkdir(parents=True, exist_ok=True)
    images = {**photos, **extra}
    for n in db_names:
        images[n].save(db_dir / f"{Path(n).stem}.png")
    for name in chosen:
        for kind in edits:  # each edit's randomness depends on the photo's name only
            edit_rng = np.random.default_rng([seed, EDITS.index(kind), zlib.crc32(name.encode())])
            _edit(photos[name], kind, edit_rng).save(q_dir / f"{Path(name).stem}__{kind}.jpg", quality=90)
    for a, _ in pair_list:
        photos[a].save(q_dir / f"{Path(a).stem}__pair.png")
    layout = {"db": db_names, "chosen": chosen, "pairs": pair_list, "distractors": len(extra)}
    (folder / "manifest.json").write_text(json.dumps({"params": params, "layout": layout}, indent=1) + "\n")
    return layout


def make_shapes(
    folder: str | Path, *, groups: int = 40, views: int = 4, size: int = 128, seed: int = 0
) -> RetrievalBenchmark:
    """Write (or reuse) ``groups`` x ``views`` shapes-world views under ``folder``; view 0 of a group queries."""
    from imagexplore.data.shapes import ShapesWorld

    if groups < 2 or views < 2:
        raise ConfigError(f"shapes retrieval needs >= 2 groups of >= 2 views, got {groups} x {views}")
    folder = Path(folder)
    spec = {"groups": groups, "views": views, "size": size, "seed": seed}
    paths = [folder / "database" / f"g{g:04d}_v{v}.png" for g in range(groups) for v in range(views)]
    if not _manifest_ok(folder, spec):
        (folder / "database").mkdir(parents=True, exist_ok=True)
        world = ShapesWorld(seed=seed, size=size)
        for g in range(groups):
            for v in range(views):
                Image.fromarray(world.view(g, v)["image"]).save(paths[g * views + v])
        (folder / "manifest.json").write_text(json.dumps({"spec": spec}, indent=1) + "\n")
    qids = np.arange(groups) * views
    return RetrievalBenchmark(
        "shapes",
        paths,
        [paths[q] for q in qids],
        "map",
        query_ids=qids,
        positives=[np.arange(q + 1, q + views) for q in qids],
        junk=[np.array([q]) for q in qids],
        notes={"groups": groups, "views": views, "size": size, "seed": seed, "query_in_database": "ignored"},
    )


def combine(name: str, *sets: RetrievalBenchmark) -> RetrievalBenchmark:
    """One database of several ``map`` sets (each set's images are distractors for the others' queries).

    Queries are then described from their files (a query that is also a database image is described twice,
    identically), and each set's ground truth is shifted to the combined database positions.
    """
    if not sets or any(s.protocol != "map" or s.query_boxes is not None for s in sets):
        raise ConfigError("combine takes one or more mAP sets without query boxes (shapes, photo-copies)")
    offsets = np.cumsum([0] + [len(s.images) for s in sets[:-1]])
    return RetrievalBenchmark(
        name,
        [p for s in sets for p in s.images],
        [q for s in sets for q in s.queries],
        "map",
        positives=[p + o for s, o in zip(sets, offsets) for p in s.positives],
        junk=[j + o for s, o in zip(sets, offsets) for j in s.junk],
        notes={s.name: s.notes for s in sets},
    )
