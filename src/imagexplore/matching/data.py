"""Caption sets for image-text matching (thesis ch. 5): images, their captions, and which caption is whose.

A `CaptionSet` is one split of one dataset: ``images`` (file paths as str; row indices of a feature file for the
pre-computed layout; ``shapes:<split>:<seed>:<index>:<size>`` keys for the generated shapes world),
``captions`` (N str), ``caption_image`` (N int64: the image of every caption), optional per-image ``labels``.
Every reader returns one, validated in one place (`CaptionSet.__post_init__`).

Readers (`read_caption_set(name, root, split, **options)` dispatches on the name):

- ``karpathy``: Karpathy's split files ``dataset_flickr30k.json`` / ``dataset_coco.json`` / ``dataset_flickr8k.json``
  over the image folder (Flickr30K 29k/1k/1k, COCO 113k/5k/5k with ``restval`` folded into train on request).
- ``precomputed``: the VSE++ / SCAN layout ``{split}_ims.npy`` + ``{split}_caps.txt`` (5 captions per image).
- ``caption-folder``: ``NAME.ext`` images, each with ``NAME.txt`` beside it, one caption per line.
- ``shapes``: the generated shapes world, 5 captions per scene (`ShapesCaptions`).
- ``tuxpaint``: the Debian ``tuxpaint-stamps-default`` stamps, caption = the English line of the stamp's .txt.
- ``openclipart``: the Debian ``openclipart-png`` + ``openclipart-svg`` drawings, captions from the SVG metadata.
- ``cub`` / ``flowers``: Reed et al.'s ``text_c10/<class>/<image>.txt`` (10 captions) over CUB-200-2011 /
  Oxford-102; Reed's zero-shot class split files when present, else a seeded per-class split (`labelled`).
- ``food101``: UPMC Food-101, ``images/{train,test}/<class>/`` + ``texts/{train,test}_titles.csv`` (`labelled`).
- ``pascal-sentences``: ``dataset/<class>/`` + ``sentence/<class>/`` (5 sentences), seeded per-class split
  (`labelled`). These four carry a label per image (ch. 7, joint matching and classification).

`load_image(item)` opens any item of any reader as an RGB Pillow image (shapes keys are rendered).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from imagexplore.data.images import list_images
from imagexplore.data.images import load_image as _load_image_file
from imagexplore.errors import ConfigError, DataError

log = logging.getLogger("imagexplore.data")

LABELLED = ("cub", "flowers", "food101", "pascal-sentences")  # in `imagexplore.matching.labelled`
READERS = ("karpathy", "precomputed", "caption-folder", "shapes", "tuxpaint", "openclipart", *LABELLED)
SPLITS = ("train", "val", "test")
TUXPAINT_STAMPS = Path("/usr/share/tuxpaint/stamps")
OPENCLIPART = Path("/usr/share/openclipart")
KARPATHY_FILES = ("dataset_flickr30k.json", "dataset_coco.json", "dataset_flickr8k.json")
SHAPES_PREFIX = "shapes:"
SHAPES_DEFAULT_IMAGES = {"train": 1000, "val": 100, "test": 200}
OPENCLIPART_TEST, OPENCLIPART_VAL = 1000, 500


# --------------------------------------------------------------------------------------------- the set
@dataclass
class CaptionSet:
    """One split of an image-text dataset; ``len()`` is the number of captions.

    ``origins`` (optional, one per caption) says where a caption came from (``file:line``), for error messages;
    ``skipped`` lists ``(path, reason)`` of what a reader left out (images without a caption file, unparsable
    metadata), so a run log can say how much was dropped.
    """

    images: list
    captions: list[str]
    caption_image: np.ndarray
    labels: list[str] | None = None
    name: str = ""
    split: str = "test"
    origins: list[str] | None = field(default=None, repr=False)
    skipped: list[tuple[str, str]] = field(default_factory=list, repr=False)

    def __post_init__(self):
        self.images = list(self.images)
        self.captions = [str(c).strip() for c in self.captions]
        ci = np.asarray(self.caption_image)
        where = f"caption set {self.name or '?'} ({self.split})"
        if ci.ndim != 1 or len(ci) != len(self.captions):
            raise DataError(
                f"{where}: caption_image has {ci.size} entries for {len(self.captions)} captions: expected one "
                "image index per caption"
            )
        if ci.size and not np.issubdtype(ci.dtype, np.integer):
            raise DataError(f"{where}: caption_image must hold integer image indices, got {ci.dtype}")
        self.caption_image = ci.astype(np.int64)
        if not self.images or not self.captions:
            raise DataError(f"{where} is empty ({len(self.images)} images, {len(self.captions)} captions)")
        if self.caption_image.min() < 0 or self.caption_image.max() >= len(self.images):
            bad = int(np.flatnonzero((self.caption_image < 0) | (self.caption_image >= len(self.images)))[0])
            raise DataError(
                f"{where}: caption {bad} points to image {int(self.caption_image[bad])}, expected 0 to "
                f"{len(self.images) - 1}"
            )
        if self.origins is not None and len(self.origins) != len(self.captions):
            raise DataError(f"{where}: {len(self.origins)} origins for {len(self.captions)} captions")
        for k, c in enumerate(self.captions):
            if not c:
                at = (
                    self.origins[k]
                    if self.origins
                    else f"caption {k} of image {self.images[self.caption_image[k]]}"
                )
                raise DataError(f"{at}: empty caption, expected text")
        if self.labels is not None:
            self.labels = [str(v) for v in self.labels]
            if len(self.labels) != len(self.images):
                raise DataError(f"{where}: {len(self.labels)} labels for {len(self.images)} images")
        uncaptioned = len(self.images) - len(np.unique(self.caption_image))
        if uncaptioned:
            raise DataError(f"{where}: {uncaptioned} image(s) have no caption; expected at least one each")

    def __len__(self) -> int:
        return len(self.captions)

    @property
    def num_images(self) -> int:
        return len(self.images)

    def image_captions(self, i: int) -> list[str]:
        """The captions of image ``i``, in order."""
        return [self.captions[k] for k in np.flatnonzero(self.caption_image == i)]

    def subset(self, image_indices: Iterable[int]) -> CaptionSet:
        """The images ``image_indices`` (in that order) with all their captions (caption order kept)."""
        idx = np.asarray(list(image_indices), dtype=np.int64)
        if idx.size == 0:
            raise ConfigError("subset needs at least one image index")
        if idx.min() < 0 or idx.max() >= self.num_images or len(np.unique(idx)) != len(idx):
            raise ConfigError(f"subset: image indices must be distinct and in 0..{self.num_images - 1}")
        new_of = np.full(self.num_images, -1, dtype=np.int64)
        new_of[idx] = np.arange(len(idx))
        keep = np.flatnonzero(new_of[self.caption_image] >= 0)
        return CaptionSet(
            images=[self.images[i] for i in idx],
            captions=[self.captions[k] for k in keep],
            caption_image=new_of[self.caption_image[keep]],
            labels=None if self.labels is None else [self.labels[i] for i in idx],
            name=self.name,
            split=self.split,
            origins=None if self.origins is None else [self.origins[k] for k in keep],
        )

    def to_dict(self) -> dict:
        """JSON-able content (what a feature cache records and hashes)."""
        return {
            "name": self.name,
            "split": self.split,
            "images": self.images,
            "captions": self.captions,
            "caption_image": self.caption_image.tolist(),
            "labels": self.labels,
        }

    @classmethod
    def from_dict(cls, d: dict) -> CaptionSet:
        return cls(
            images=d["images"],
            captions=d["captions"],
            caption_image=np.asarray(d["caption_image"], dtype=np.int64),
            labels=d.get("labels"),
            name=d.get("name", ""),
            split=d.get("split", "test"),
        )

    def content_hash(self) -> str:
        """sha256 of `to_dict` (canonical JSON): equal for equal content, whichever reader made it."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def _check_split(split: str, allowed: Sequence[str] = (*SPLITS, "restval")) -> str:
    if split not in allowed:
        raise ConfigError(f"split must be one of {', '.join(allowed)}, got {split!r}")
    return split


def _clean(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------------------------- karpathy
def _karpathy_json(root: Path | None, json_path: str | os.PathLike | None) -> Path:
    if json_path is not None:
        path = Path(json_path)
        if not path.is_file():
            raise DataError(f"Karpathy split file {path} not found: expected e.g. dataset_flickr30k.json")
        return path
    if root is None:
        raise ConfigError(
            "karpathy: give root (the folder holding dataset_*.json and the images) or json=PATH"
        )
    if not root.is_dir():
        raise DataError(f"Karpathy dataset folder {root} not found")
    found = [root / n for n in KARPATHY_FILES if (root / n).is_file()]
    if not found:
        raise DataError(f"{root} holds none of {', '.join(KARPATHY_FILES)}: give json=PATH to the split file")
    if len(found) > 1:
        raise ConfigError(f"{root} holds {', '.join(p.name for p in found)}: choose one with json=PATH")
    return found[0]


def read_karpathy(
    root: str | os.PathLike | None = None,
    split: str = "test",
    json: str | os.PathLike | None = None,  # noqa: A002 - the option's name on the command line
    images_root: str | os.PathLike | None = None,
    restval_in_train: bool = False,
    check_images: bool = True,
) -> CaptionSet:
    """Karpathy's split JSON (``{"images": [{"filename", "filepath"?, "split", "sentences": [{"raw"}]}]}``).

    Images are at ``images_root/filepath/filename`` (COCO: ``train2014/...``), or ``images_root/filename``
    (Flickr); ``images_root`` defaults to ``root``, else the JSON's folder, then its ``flickr30k-images`` /
    ``Flicker8k_Dataset`` / ``images`` sub-folder when the first image is found there. ``restval_in_train``
    folds COCO's ``restval`` images into ``train`` (the usual 113k training images). ``check_images`` checks
    that every image file of the split exists.
    """
    import json as _json

    _check_split(split)
    path = _karpathy_json(Path(root) if root is not None else None, json)
    try:
        data = _json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read Karpathy split file {path}: {' '.join(str(exc).split())}") from exc
    entries = data.get("images") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise DataError(f"{path} has no 'images' list: expected Karpathy's split layout")
    wanted = {split, "restval"} if split == "train" and restval_in_train else {split}
    picked = []
    for n, e in enumerate(entries):
        if not isinstance(e, dict):
            raise DataError(f"{path}: images[{n}] is not an object: expected Karpathy's split layout")
        for key in ("filename", "split", "sentences"):
            if key not in e:
                raise DataError(
                    f"{path}: images[{n}] ({e.get('filename', '?')}) lacks '{key}': expected Karpathy's "
                    "split layout (filename, split, sentences)"
                )
        if e["split"] in wanted:
            picked.append((n, e))
    if not picked:
        raise DataError(f"{path} has no image in split {split!r}")
    base = Path(images_root) if images_root is not None else Path(root) if root is not None else path.parent
    if images_root is None:
        first = picked[0][1]
        rel = Path(first.get("filepath", "")) / first["filename"]
        for sub in ("", "flickr30k-images", "Flicker8k_Dataset", "images"):
            if (base / sub / rel).is_file():
                base = base / sub
                break
    images, captions, ci, origins = [], [], [], []
    for n, e in picked:
        img = base / e.get("filepath", "") / e["filename"]
        sents = e["sentences"]
        if not isinstance(sents, list) or not sents:
            raise DataError(f"{path}: images[{n}] ({e['filename']}) has no sentences: expected at least one")
        for s, sent in enumerate(sents):
            raw = sent.get("raw") if isinstance(sent, dict) else None
            if raw is None and isinstance(sent, dict) and "tokens" in sent:
                raw = " ".join(sent["tokens"])
            if not isinstance(raw, str):
                raise DataError(f"{path}: images[{n}].sentences[{s}] lacks 'raw': expected {{'raw': text}}")
            captions.append(raw)
            ci.append(len(images))
            origins.append(f"{path}: images[{n}].sentences[{s}] ({e['filename']})")
        images.append(str(img))
    if check_images:
        missing = [p for p in images if not os.path.isfile(p)]
        if missing:
            raise DataError(
                f"{len(missing)} of {len(images)} images of {path.name} split {split!r} not found (first: "
                f"{missing[0]}): give images_root= the folder holding them"
            )
    name = f"karpathy:{data.get('dataset', path.stem.removeprefix('dataset_'))}"
    return CaptionSet(images, captions, np.array(ci), None, name, split, origins)


# --------------------------------------------------------------------------------------------- precomputed
def _precomputed_paths(root: str | os.PathLike, split: str) -> tuple[Path, Path]:
    root = Path(root)
    ims, caps = root / f"{split}_ims.npy", root / f"{split}_caps.txt"
    for p in (caps, ims):
        if not p.is_file():
            raise DataError(
                f"{p} not found: the pre-computed layout needs {split}_ims.npy and {split}_caps.txt"
            )
    return ims, caps


def _precomputed_rows(ims: Path, n_captions: int, caps: Path, per_image: int) -> tuple[int, int]:
    """``(rows in the file, stride)``: stride 5 when the file repeats every image once per caption (VSE++)."""
    try:
        arr = np.load(ims, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {ims}: {' '.join(str(exc).split())}") from exc
    if arr.ndim != 2:
        raise DataError(f"{ims} has shape {arr.shape}: expected images × feature size")
    rows = int(arr.shape[0])
    if n_captions % per_image:
        raise DataError(
            f"{caps} has {n_captions} captions, not a multiple of {per_image} ({per_image} per image)"
        )
    if rows == n_captions and rows != n_captions // per_image:
        return rows, per_image
    if rows * per_image != n_captions:
        raise DataError(
            f"{caps} has {n_captions} captions but {ims} has {rows} image rows: expected {rows * per_image} "
            f"captions ({per_image} per image), or one row per caption"
        )
    return rows, 1


def read_precomputed(root: str | os.PathLike, split: str = "test", captions_per_image: int = 5) -> CaptionSet:
    """VSE++ / SCAN's ``{split}_ims.npy`` (M × D) + ``{split}_caps.txt`` (one caption per line, 5 per image).

    ``images`` are the row indices into ``{split}_ims.npy``: 0, 1, 2, ... or, when the file holds one row per
    caption (as VSE++ ships some sets: each image repeated 5 times), 0, 5, 10, ...; the features are
    `precomputed_image_features`. An empty caption line is an error (it would shift the alignment).
    """
    _check_split(split, (*SPLITS, "testall", "dev", "restval"))
    ims, caps = _precomputed_paths(root, split)
    lines = _read_text(caps).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [ln.rstrip("\r") for ln in lines]
    for k, ln in enumerate(lines):
        if not ln.strip():
            raise DataError(f"{caps}:{k + 1}: empty caption line, expected one caption per line")
    rows, stride = _precomputed_rows(ims, len(lines), caps, captions_per_image)
    n_images = len(lines) // captions_per_image
    ci = np.repeat(np.arange(n_images), captions_per_image)
    origins = [f"{caps}:{k + 1}" for k in range(len(lines))]
    return CaptionSet(
        [int(i * stride) for i in range(n_images)],
        lines,
        ci,
        None,
        f"precomputed:{Path(root).name}",
        split,
        origins,
    )


def precomputed_image_features(
    root: str | os.PathLike, split: str = "test", captions_per_image: int = 5
) -> np.ndarray:
    """The image features of the pre-computed layout, one row per image (repeated rows dropped), float32."""
    ims, caps = _precomputed_paths(root, split)
    n_captions = sum(1 for ln in _read_text(caps).splitlines() if ln.strip())
    _, stride = _precomputed_rows(ims, n_captions, caps, captions_per_image)
    return np.ascontiguousarray(np.load(ims, allow_pickle=False)[::stride], dtype=np.float32)


# --------------------------------------------------------------------------------------------- caption folder
def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): save it as UTF-8"
        ) from None


def _split_names(path: Path) -> list[str]:
    return [
        ln.strip() for ln in _read_text(path).splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]


def read_caption_folder(
    root: str | os.PathLike,
    split: str = "test",
    split_files: str | os.PathLike | dict | None = None,
) -> CaptionSet:
    """Every image ``NAME.ext`` under ``root`` (recursive) with ``NAME.txt`` beside it: one caption per line.

    Blank lines are ignored, so an image has as many captions as its file has non-empty lines. An image
    without a .txt (or with no non-empty line in it) is skipped and listed in ``skipped``; a .txt without an
    image is ignored. Labels: the first folder below ``root`` when every image is in a sub-folder, else none.

    Splits: without split files the whole folder is the ``test`` set (``split="all"`` says the same). With
    ``root/splits/{split}.txt``, or ``split_files`` (a file for the asked split, or ``{split: file}``), the
    split is the images listed there, one per line, as paths relative to ``root`` with or without the
    extension (``#`` starts a comment line).
    """
    root = Path(root)
    files = list_images(root)
    listed: list[str] | None = None
    if isinstance(split_files, dict):
        if split not in split_files:
            raise ConfigError(f"split_files has no {split!r} entry (has {', '.join(map(str, split_files))})")
        split_path: Path | None = Path(split_files[split])
    elif split_files is not None:
        split_path = Path(split_files)
    elif (root / "splits").is_dir():
        split_path = root / "splits" / f"{split}.txt"
    else:
        split_path = None
        if split not in ("test", "all"):
            raise DataError(
                f"caption folder {root} has no splits/{split}.txt: without split files the whole folder is the "
                "test set (split='test')"
            )
    if split_path is not None:
        if not split_path.is_file():
            raise DataError(f"split file {split_path} not found: expected one image name per line")
        listed = _split_names(split_path)
    rel_of = {p: p.relative_to(root).as_posix() for p in files}
    if listed is not None:
        by_name = {}
        for p, rel in rel_of.items():
            by_name[rel] = p
            by_name.setdefault(rel.rsplit(".", 1)[0], p)
        missing = [n for n in listed if n not in by_name]
        if missing:
            raise DataError(
                f"{split_path}: {len(missing)} listed image(s) not in {root} (first: {missing[0]}): expected "
                "paths relative to the folder"
            )
        files = [by_name[n] for n in dict.fromkeys(listed)]
    images, captions, ci, origins, skipped = [], [], [], [], []
    for p in files:
        txt = p.with_suffix(".txt")
        if not txt.is_file():
            skipped.append((str(p), "no caption file"))
            continue
        lines = [(k, _clean(ln)) for k, ln in enumerate(_read_text(txt).splitlines(), 1)]
        lines = [(k, ln) for k, ln in lines if ln]
        if not lines:
            skipped.append((str(p), f"{txt.name} has no caption"))
            continue
        for k, ln in lines:
            captions.append(ln)
            ci.append(len(images))
            origins.append(f"{txt}:{k}")
        images.append(str(p))
    if skipped:
        log.warning(
            "skipped %d image(s) without captions in %s (first: %s)", len(skipped), root, skipped[0][0]
        )
    if not images:
        raise DataError(
            f"no image in {root} has a caption file beside it (NAME.png + NAME.txt, one caption a line)"
        )
    tops = [Path(rel_of[Path(p)]).parts for p in images]
    labels = [t[0] for t in tops] if all(len(t) > 1 for t in tops) else None
    out = CaptionSet(images, captions, np.array(ci), labels, f"caption-folder:{root.name}", split, origins)
    out.skipped = skipped
    return out


# --------------------------------------------------------------------------------------------- shapes
def shapes_key(split: str, seed: int, index: int, size: int) -> str:
    return f"{SHAPES_PREFIX}{split}:{seed}:{index}:{size}"


@functools.lru_cache(maxsize=8)
def _shapes_world(seed: int, size: int):
    from imagexplore.data.shapes.world import ShapesWorld

    return ShapesWorld(seed=seed, size=size)


def read_shapes(
    root: str | os.PathLike | None = None,
    split: str = "test",
    num_images: int | None = None,
    size: int = 64,
    seed: int = 0,
) -> CaptionSet:
    """The shapes world's captioned scenes: 5 captions per scene, label = the class of the largest object.

    ``num_images`` defaults to train 1000 / val 100 / test 200 scenes. Images are keys
    ``shapes:<split>:<seed>:<index>:<size>`` that `load_image` renders. ``root`` is unused (generated data).
    """
    from imagexplore.data.shapes.datasets import SPLIT_OFFSETS

    _check_split(split, SPLITS)
    n = SHAPES_DEFAULT_IMAGES[split] if num_images is None else num_images
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"shapes: num_images must be a positive int, got {num_images!r}")
    world = _shapes_world(int(seed), int(size))
    images, captions, ci, labels = [], [], [], []
    for i in range(n):
        s = world.render(SPLIT_OFFSETS[split] + i, ("label", "captions"))
        captions += s["captions"]
        ci += [i] * len(s["captions"])
        labels.append(world.classes[s["label"]])
        images.append(shapes_key(split, seed, i, size))
    return CaptionSet(images, captions, np.array(ci), labels, "shapes", split)


def _render_shapes(key: str) -> Image.Image:
    from imagexplore.data.shapes.datasets import SPLIT_OFFSETS

    try:
        split, seed, index, size = key.removeprefix(SHAPES_PREFIX).split(":")
        offset, seed, index, size = SPLIT_OFFSETS[split], int(seed), int(index), int(size)
    except (ValueError, KeyError):
        raise DataError(
            f"bad shapes image key {key!r}: expected shapes:<split>:<seed>:<index>:<size>"
        ) from None
    return Image.fromarray(_shapes_world(seed, size).render(offset + index, ("image",))["image"])


def load_image(item) -> Image.Image:
    """An item of a `CaptionSet` as an RGB Pillow image: a file (any mode, flattened on white) or a shapes key.

    SVGs are never rendered here (the Open Clip Art reader points at the PNGs). Pre-computed rows have no image.
    """
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, int | np.integer):
        raise DataError(f"image {item} is a row of pre-computed features: there is no image file to open")
    if isinstance(item, str) and item.startswith(SHAPES_PREFIX):
        return _render_shapes(item)
    return _load_image_file(item, "RGB")


# --------------------------------------------------------------------------------------------- tux paint
_LOCALE_LINE = re.compile(r"^[A-Za-z]{2,3}(_[A-Za-z]{2})?(@\w+)?\.utf-?8\s*=", re.IGNORECASE)


def _seeded_split(n: int, split: str, sizes: dict, seed: int) -> np.ndarray:
    """Indices of ``split`` in a seeded permutation: test first, then val, the rest train."""
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_val = int(sizes.get("test", 0)), int(sizes.get("val", 0))
    if n_test < 0 or n_val < 0 or n_test + n_val > n:
        raise ConfigError(f"split sizes {sizes} do not fit {n} images")
    part = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
    return np.sort(part[split])


def read_tuxpaint(
    root: str | os.PathLike | None = None,
    split: str = "test",
    split_sizes: dict | None = None,
    seed: int = 0,
) -> CaptionSet:
    """Tux Paint stamps: every ``.png`` with a ``.txt`` beside it; caption = its English (first) line.

    The other lines (``de.utf8=...``) are translations and are left out; stamps without a .txt (the
    ``_mirror`` variants, some Tux poses) or without text are skipped (``skipped``). Label = the category
    folder. A cross-set test: the whole set is ``test`` (or ``all``); ``split_sizes={"test": n, "val": m}``
    cuts a fixed seeded split instead (the rest is ``train``).
    """
    root = TUXPAINT_STAMPS if root is None else Path(root)
    if not root.is_dir():
        raise DataError(f"{root} not found: install Debian tuxpaint-stamps-default (run `make data`)")
    _check_split(split, (*SPLITS, "all"))
    if split_sizes is None and split not in ("test", "all"):
        raise ConfigError(
            "tuxpaint is a test set: use split='test', or give split_sizes={'test': N, 'val': M} for a seeded split"
        )
    entries, skipped = [], []
    for p in list_images(root):
        if p.suffix.lower() != ".png":
            continue
        txt = p.with_suffix(".txt")
        if not txt.is_file():
            skipped.append((str(p), "no .txt"))
            continue
        try:
            text = _read_text(txt)
        except DataError as exc:
            skipped.append((str(p), str(exc)))
            continue
        lines = [_clean(ln) for ln in text.splitlines() if ln.strip() and not _LOCALE_LINE.match(ln.strip())]
        if not lines:
            skipped.append((str(p), "empty .txt"))
            continue
        entries.append((str(p), lines[0], p.relative_to(root).parts[0]))
    if not entries:
        raise DataError(f"no stamp in {root} has a caption (.txt): run `make data` to install the stamps")
    if split_sizes is not None:
        entries = [entries[i] for i in _seeded_split(len(entries), split, split_sizes, seed)]
    images, captions, labels = (list(t) for t in zip(*entries))
    out = CaptionSet(images, captions, np.arange(len(images)), labels, "tuxpaint", split)
    out.skipped = skipped
    return out


# --------------------------------------------------------------------------------------------- dispatch
def _openclipart_reader():
    from imagexplore.matching.openclipart import read_openclipart  # its own module; it imports this one

    return read_openclipart


def _labelled_readers() -> dict:
    from imagexplore.matching.labelled import READERS as labelled  # its own module; it imports this one

    return labelled


def read_caption_set(
    name: str, root: str | os.PathLike | None = None, split: str = "test", **options
) -> CaptionSet:
    """Read one split of a caption set by reader name (see the module docstring); options go to the reader."""
    readers = {
        "karpathy": read_karpathy,
        "precomputed": read_precomputed,
        "caption-folder": read_caption_folder,
        "shapes": read_shapes,
        "tuxpaint": read_tuxpaint,
        "openclipart": _openclipart_reader(),
        **_labelled_readers(),
    }
    if name not in readers:
        raise ConfigError(f"unknown caption set {name!r}: choose from {', '.join(READERS)}")
    if name in ("precomputed", "caption-folder", *LABELLED) and root is None:
        raise ConfigError(f"caption set {name!r} needs root= the folder holding it")
    import inspect

    allowed = set(inspect.signature(readers[name]).parameters) - {"root", "split"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(
            f"{name}: unknown option(s) {unknown}; valid: {', '.join(sorted(allowed)) or 'none'}"
        )
    return readers[name](root, split, **options)
