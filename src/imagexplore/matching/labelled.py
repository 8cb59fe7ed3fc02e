"""Image-text-label sets for joint matching and classification (thesis ch. 7), read in their published layouts.

- ``cub`` / ``flowers``: Reed et al.'s captions (CVPR 2016) ``text_c10/<class>/<image>.txt`` (10 a file) over the
  CUB-200-2011 / Oxford-102 images; Reed's zero-shot class split files (``trainclasses.txt`` ...) when present,
  else a seeded per-class image split.
- ``food101``: UPMC Food-101 (Wang et al. 2015), ``images/{train,test}/<class>/<name>.jpg`` +
  ``texts/{train,test}_titles.csv`` (``name,text,class``); ``val`` is a seeded slice of train.
- ``pascal-sentences``: Pascal Sentences (Rashtchian et al. 2010) as mirrored, ``dataset/<class>/<name>.jpg`` +
  ``sentence/<class>/<name>.txt`` (5 sentences); a seeded per-class split (40 / 5 / 5 a class by default).

Label = the class folder (the class column for Food-101). Read through
`imagexplore.matching.data.read_caption_set(name, root, split, **options)`; never downloads.
"""

from __future__ import annotations

import csv
import io
import os
import zlib
from pathlib import Path

import numpy as np

from imagexplore.data.images import list_images
from imagexplore.errors import ConfigError, DataError
from imagexplore.matching.data import SPLITS, CaptionSet, _check_split, _clean, _read_text, _split_names, log

LABELLED_SPLITS = (*SPLITS, "trainval", "all")
REED_CLASS_FILES = {
    "train": "trainclasses.txt",
    "val": "valclasses.txt",
    "test": "testclasses.txt",
    "trainval": "trainvalclasses.txt",
}
REED_IMAGE_SPLIT = {"test": 0.2, "val": 0.1}  # per class, without Reed's class files
PASCAL_SPLIT = {"test": 5, "val": 5}  # per class of 50: the common 800 / 100 / 100
FOOD101_VAL = 0.05
_FOOD_HEADER = {
    "name",
    "image",
    "image_name",
    "image_path",
    "filename",
    "file",
    "id",
    "class",
    "label",
    "food",
}


# --------------------------------------------------------------------------------------------- helpers
def _need_root(name: str, root) -> Path:
    if root is None:
        raise ConfigError(f"caption set {name!r} needs root= the folder holding it")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{name}: dataset folder {root} not found")
    return root


def _need_dir(name: str, folder: Path, expected: str) -> Path:
    if not folder.is_dir():
        raise DataError(f"{name}: {folder} not found: expected {expected}")
    return folder


def _entries(folder: Path, dirs: bool, suffix: str = "") -> list[Path]:
    """Sorted sub-folders (``dirs``) or files ending in ``suffix`` of ``folder``, hidden names left out."""
    with os.scandir(folder) as it:
        found = [
            Path(e.path)
            for e in it
            if not e.name.startswith(".")
            and (e.is_dir() if dirs else e.is_file() and e.name.lower().endswith(suffix))
        ]
    return sorted(found)


def _check_count(value, what: str, allow_none: bool = False) -> int | float | None:
    """A non-negative int count, or a float fraction in [0, 1)."""
    if value is None and allow_none:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or value < 0 or (isinstance(value, float) and value >= 1):
        raise ConfigError(f"{what} must be a count (int >= 0) or a fraction (float in [0, 1)), got {value!r}")
    return value


def _count(value: int | float, n: int) -> int:
    return int(round(value * n)) if isinstance(value, float) else int(value)


def _check_per_image(value) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"captions_per_image must be a positive int (or None: every line), got {value!r}")
    return value


def _per_class_split(labels: list[str], split: str, sizes: dict, seed: int, name: str) -> np.ndarray:
    """Indices of ``split`` when each class is cut on its own seeded permutation: test first, then val, the rest
    train. ``sizes`` holds ``test`` / ``val`` per class, each a count or a fraction of the class."""
    if not isinstance(sizes, dict) or set(sizes) - {"test", "val"}:
        raise ConfigError(
            f"{name}: split_sizes takes 'test' and 'val' per class (the rest is train), got {sizes!r}"
        )
    n_of = {k: _check_count(sizes.get(k, 0), f"{name}: split_sizes[{k!r}]") for k in ("test", "val")}
    classes, inverse = np.unique(np.asarray(labels), return_inverse=True)
    members = np.split(np.argsort(inverse, kind="stable"), np.cumsum(np.bincount(inverse))[:-1])
    picked = []
    for cls, idx in zip(classes, members, strict=True):
        n_test, n_val = _count(n_of["test"], len(idx)), _count(n_of["val"], len(idx))
        if n_test + n_val > len(idx):
            raise ConfigError(f"{name}: split_sizes {sizes} do not fit class {cls!r} ({len(idx)} images)")
        perm = idx[np.random.default_rng([int(seed), zlib.crc32(str(cls).encode())]).permutation(len(idx))]
        cut = {
            "test": perm[:n_test],
            "val": perm[n_test : n_test + n_val],
            "train": perm[n_test + n_val :],
            "trainval": perm[n_test:],
            "all": perm,
        }
        picked.append(cut[split])
    return np.sort(np.concatenate(picked))


def _caption_lines(txt: Path, per_image: int | None) -> list[tuple[int, str]]:
    lines = [(k, _clean(ln)) for k, ln in enumerate(_read_text(txt).splitlines(), 1)]
    lines = [(k, ln) for k, ln in lines if ln]
    if not lines:
        raise DataError(f"{txt}: no caption, expected one caption per line")
    return lines if per_image is None else lines[:per_image]


def _need_entries(name: str, entries: list, text_dir: Path, expected: str) -> None:
    if not entries:
        raise DataError(f"{name}: no caption file in {text_dir} has its image: expected {expected}")


def _from_text_files(entries, per_image, name, split, skipped, where) -> CaptionSet:
    """``entries`` = ``(image, label, text file)``: one image each, its captions the file's non-empty lines."""
    if not entries:
        raise DataError(f"{name}: split {split!r} has no image ({where})")
    images, labels, captions, ci, origins = [], [], [], [], []
    for img, label, txt in entries:
        for k, line in _caption_lines(txt, per_image):
            captions.append(line)
            ci.append(len(images))
            origins.append(f"{txt}:{k}")
        images.append(img)
        labels.append(label)
    if skipped:
        log.warning(
            "%s: skipped %d caption file(s) without an image (first: %s)", name, len(skipped), skipped[0][0]
        )
    out = CaptionSet(images, captions, np.array(ci), labels, name, split, origins)
    out.skipped = skipped
    return out


def _class_texts(text_dir: Path, classes: list[Path], find_image) -> tuple[list, list]:
    """``(image, class, text file)`` of every ``<class>/<stem>.txt`` whose image ``find_image`` finds."""
    entries, skipped = [], []
    for cls in classes:
        for txt in _entries(cls, dirs=False, suffix=".txt"):
            img = find_image(cls.name, txt.stem)
            if img is None:
                skipped.append((str(txt), "no image"))
            else:
                entries.append((img, cls.name, txt))
    return entries, skipped


# --------------------------------------------------------------------------------------------- cub / flowers
def _reed_classes(
    name: str, root: Path, text_dir: Path, split: str, class_split, split_sizes
) -> list[Path] | None:
    """The class folders of ``split`` by Reed's class files, or None when the per-class image split applies."""
    present = {s: root / f for s, f in REED_CLASS_FILES.items() if (root / f).is_file()}
    if not (bool(present) if class_split is None else bool(class_split)):
        return None
    if not present:
        raise DataError(
            f"{name}: class_split=True but {root} has none of {', '.join(REED_CLASS_FILES.values())} (class "
            "names, one per line)"
        )
    if split_sizes is not None:
        raise ConfigError(
            f"{name}: split_sizes is for the per-class image split, but {root} has Reed's class split files: "
            "give class_split=False to cut images instead"
        )
    folders = {p.name: p for p in _entries(text_dir, dirs=True)}
    listed = {}
    for s, path in present.items():
        listed[s] = _split_names(path)
        missing = [c for c in listed[s] if c not in folders]
        if missing:
            raise DataError(
                f"{path}: {len(missing)} class(es) without a folder in {text_dir} (first: {missing[0]}): expected "
                "text_c10 class folder names"
            )
    for a, b in (("train", "val"), ("train", "test"), ("val", "test"), ("trainval", "test")):
        shared = set(listed.get(a, ())) & set(listed.get(b, ()))
        if shared:
            raise DataError(
                f"{present[a]} and {present[b]} share {len(shared)} class(es) (first: {sorted(shared)[0]}): "
                "expected a zero-shot split, disjoint classes"
            )
    if split == "all":
        return list(folders.values())
    if split in listed:
        names = listed[split]
    elif split == "trainval" and "train" in listed and "val" in listed:
        names = listed["train"] + listed["val"]
    else:
        raise DataError(
            f"{name}: {root / REED_CLASS_FILES[split]} not found: expected the {split} class names, one per line "
            "(Reed's class split)"
        )
    return [folders[c] for c in dict.fromkeys(names)]


def _read_reed(name, root, split, captions_per_image, split_sizes, seed, class_split) -> CaptionSet:
    root = _need_root(name, root)
    _check_split(split, LABELLED_SPLITS)
    per_image = _check_per_image(captions_per_image)
    text_dir = _need_dir(
        name, root / "text_c10", "Reed's captions text_c10/<class>/<image>.txt (10 lines each)"
    )
    if name == "cub":
        image_dir = next((d for d in (root / "images", root / "CUB_200_2011" / "images") if d.is_dir()), None)
        if image_dir is None:
            raise DataError(
                f"cub: {root} has no images/ or CUB_200_2011/images/: expected images/<class>/<image>.jpg"
            )
        index = {(p.parent.name, p.stem): str(p) for p in reversed(list_images(image_dir))}

        def find_image(cls, stem):
            return index.get((cls, stem))
    else:  # flowers: jpg/image_00001.jpg flat, found by its stem anywhere under root
        index = {p.stem: str(p) for p in reversed(list_images(root))}

        def find_image(cls, stem):
            return index.get(stem)

    classes = _reed_classes(name, root, text_dir, split, class_split, split_sizes)
    folders = _entries(text_dir, dirs=True) if classes is None else classes
    entries, skipped = _class_texts(text_dir, folders, find_image)
    if classes is not None:
        return _from_text_files(
            entries, per_image, name, split, skipped, "its classes have no captioned image"
        )
    _need_entries(name, entries, text_dir, "text_c10/<class>/<image>.txt with its image")
    sizes = REED_IMAGE_SPLIT if split_sizes is None else split_sizes
    entries = [entries[i] for i in _per_class_split([e[1] for e in entries], split, sizes, seed, name)]
    return _from_text_files(entries, per_image, name, split, skipped, f"split_sizes {sizes} per class")


def read_cub(
    root: str | os.PathLike | None = None,
    split: str = "test",
    captions_per_image: int | None = None,
    split_sizes: dict | None = None,
    seed: int = 0,
    class_split: bool | None = None,
) -> CaptionSet:
    """CUB-200-2011 with Reed et al.'s captions: ``text_c10/<class>/<image>.txt`` (10 captions, one a line) and
    ``images/<class>/<image>.jpg`` (or ``CUB_200_2011/images/...``). Label = the class folder of the text file.

    Splits: with Reed's ``trainclasses.txt`` / ``valclasses.txt`` / ``testclasses.txt`` (/ ``trainvalclasses.txt``,
    else train ∪ val) at ``root``, the split is those classes (zero-shot); ``class_split=False`` ignores them,
    ``True`` requires them. Otherwise each class is cut on a seeded permutation: ``split_sizes`` ``{"test",
    "val"}`` per class, a count or a fraction (default 0.2 / 0.1), the rest train. ``all``: every image.
    ``captions_per_image``: the first N lines (default every non-empty line). Text files without their image
    are skipped (``skipped``).
    """
    return _read_reed("cub", root, split, captions_per_image, split_sizes, seed, class_split)


def read_flowers(
    root: str | os.PathLike | None = None,
    split: str = "test",
    captions_per_image: int | None = None,
    split_sizes: dict | None = None,
    seed: int = 0,
    class_split: bool | None = None,
) -> CaptionSet:
    """Oxford-102 Flowers with Reed et al.'s captions: ``text_c10/class_00001/image_06734.txt`` (10 captions);
    the image is found by its stem anywhere under ``root`` (``jpg/image_06734.jpg``). Splits, options: `read_cub`.
    """
    return _read_reed("flowers", root, split, captions_per_image, split_sizes, seed, class_split)


# --------------------------------------------------------------------------------------------- food-101
def _food_rows(path: Path) -> list[tuple[int, str, str, str]]:
    """``(line, name, text, class)`` of a ``name,text,class`` CSV; unquoted commas in the text are kept."""
    if not path.is_file():
        raise DataError(f"food101: {path} not found: expected UPMC Food-101's CSV of name,text,class rows")
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    rows = []
    for row in reader:
        line = reader.line_num
        if not any(f.strip() for f in row):
            continue
        if (
            not rows
            and line == 1
            and (row[0].strip().lower() in _FOOD_HEADER or row[-1].strip().lower() in _FOOD_HEADER)
        ):
            continue  # an optional header
        if len(row) < 3:
            raise DataError(f"{path}:{line}: {len(row)} field(s), expected name,text,class")
        name, text, cls = row[0].strip(), _clean(",".join(row[1:-1])), row[-1].strip()
        if not text:
            raise DataError(f"{path}:{line}: empty text for {name}, expected name,text,class")
        if not name or not cls:
            raise DataError(
                f"{path}:{line}: empty {'name' if not name else 'class'}, expected name,text,class"
            )
        rows.append((line, name, text, cls))
    if not rows:
        raise DataError(f"food101: {path} has no row: expected name,text,class rows")
    return rows


def read_food101(
    root: str | os.PathLike | None = None,
    split: str = "test",
    val_size: int | float = FOOD101_VAL,
    seed: int = 0,
) -> CaptionSet:
    """UPMC Food-101: ``images/{train,test}/<class>/<name>.jpg`` + ``texts/{train,test}_titles.csv`` (rows
    ``name,text,class``, an optional header). One caption (the page text) per image; label = the class.

    ``val`` is a seeded slice of the train CSV's rows (``val_size``: a count or a fraction, default 5 %), ``train``
    the rest, ``trainval`` both; ``all`` is train + test. Rows whose image is missing are skipped (``skipped``,
    logged); a row with empty text is an error naming ``file:line``.
    """
    root = _need_root("food101", root)
    _check_split(split, LABELLED_SPLITS)
    _check_count(val_size, "food101: val_size")
    layout = "images/{train,test}/<class>/<name>.jpg and texts/{train,test}_titles.csv"
    for sub in ("images", "texts"):
        _need_dir("food101", root / sub, f"UPMC Food-101's {layout}")
    index: dict[str, int] = {}
    images, labels, captions, ci, origins, skipped = [], [], [], [], [], []
    for part in ("train", "test") if split == "all" else ("test",) if split == "test" else ("train",):
        csv_path = root / "texts" / f"{part}_titles.csv"
        rows = _food_rows(csv_path)
        if part == "train" and split in ("train", "val"):
            n_val = _count(val_size, len(rows))
            if n_val > len(rows):
                raise ConfigError(f"food101: val_size {val_size} exceeds the {len(rows)} rows of {csv_path}")
            is_val = np.zeros(len(rows), dtype=bool)
            is_val[np.random.default_rng(int(seed)).permutation(len(rows))[:n_val]] = True
            rows = [r for r, v in zip(rows, is_val, strict=True) if v == (split == "val")]
        img_dir = _need_dir("food101", root / "images" / part, f"UPMC Food-101's {layout}")
        present = {p.relative_to(img_dir).as_posix() for p in list_images(img_dir)}
        for line, name, text, cls in rows:
            rel = name if "/" in name else f"{cls}/{name}"
            rel = rel if Path(rel).suffix else f"{rel}.jpg"
            if rel not in present:
                skipped.append((str(img_dir / rel), f"image not found ({csv_path.name}:{line})"))
                continue
            path = str(img_dir / rel)
            if path not in index:
                index[path] = len(images)
                images.append(path)
                labels.append(cls)
            captions.append(text)
            ci.append(index[path])
            origins.append(f"{csv_path}:{line}")
    if skipped:
        log.warning(
            "food101: skipped %d row(s) whose image is missing (first: %s)", len(skipped), skipped[0][0]
        )
    if not images:
        raise DataError(
            f"food101: no image of split {split!r} found under {root / 'images'}: expected {layout}"
        )
    out = CaptionSet(images, captions, np.array(ci), labels, "food101", split, origins)
    out.skipped = skipped
    return out


# --------------------------------------------------------------------------------------------- pascal sentences
def read_pascal_sentences(
    root: str | os.PathLike | None = None,
    split: str = "test",
    split_sizes: dict | None = None,
    seed: int = 0,
    captions_per_image: int | None = None,
) -> CaptionSet:
    """Pascal Sentences (1,000 images, 20 classes of 50, 5 sentences each) as mirrored:
    ``dataset/<class>/<name>.jpg`` + ``sentence/<class>/<name>.txt`` (one sentence a line). Label = the class.

    No official split: each class is cut on a seeded permutation, ``split_sizes`` ``{"test", "val"}`` per class
    (a count or a fraction; default 5 / 5, i.e. 40 / 5 / 5 a class, the common 800 / 100 / 100), the rest train.
    """
    root = _need_root("pascal-sentences", root)
    _check_split(split, LABELLED_SPLITS)
    per_image = _check_per_image(captions_per_image)
    layout = "dataset/<class>/<name>.jpg and sentence/<class>/<name>.txt"
    image_dir = _need_dir("pascal-sentences", root / "dataset", layout)
    text_dir = _need_dir("pascal-sentences", root / "sentence", layout)
    index = {(p.parent.name, p.stem): str(p) for p in reversed(list_images(image_dir))}
    entries, skipped = _class_texts(text_dir, _entries(text_dir, dirs=True), lambda c, s: index.get((c, s)))
    _need_entries(
        "pascal-sentences", entries, text_dir, "sentence/<class>/<name>.txt with dataset/<class>/<name>.jpg"
    )
    sizes = PASCAL_SPLIT if split_sizes is None else split_sizes
    picked = _per_class_split([e[1] for e in entries], split, sizes, seed, "pascal-sentences")
    entries = [entries[i] for i in picked]
    return _from_text_files(
        entries, per_image, "pascal-sentences", split, skipped, f"split_sizes {sizes} per class"
    )


READERS = {
    "cub": read_cub,
    "flowers": read_flowers,
    "food101": read_food101,
    "pascal-sentences": read_pascal_sentences,
}
