"""Paired images for image-to-image translation (chapter 8.1): every dataset yields ``(input, target)``.

Conventions shared by every dataset here:

- an item is ``(input, target)``: two float32 tensors 3×H×W in **[-1, 1]** (pix2pix's convention — its generator
  ends in tanh), ``value = pixel / 127.5 - 1``. Grey, 16-bit and RGBA files become 8-bit RGB through
  `imagexplore.data.images.load_image` (transparency is composited on white);
- ``.names[i]`` is item i's file name (relative to its folder) or id; ``.describe()`` is one line for logs;
- ``.sides`` says what each side holds (``{"A": "photo", "B": "label"}``), and ``direction`` which side is the
  input: ``"AtoB"`` / ``"BtoA"``, or the same spelled with the kinds (``"label2photo"``).

Size. A U-Net generator of depth d halves the image d times, so H and W must be multiples of ``multiple = 2**d``
(default 32). ``fit`` says what happens to other sizes:

- ``None``: the image is used as it is, and a size that is not a multiple is a one-line `DataError` naming the
  file. With ``size`` given, ``None`` means ``"resize"``;
- ``"resize"``: scale to size×size (pix2pix's ``resize``);
- ``"pad"``: reflect-pad up to the next multiples (or to size×size). The pad is recorded (`PairDataset.pad_of`),
  so a generated image can be cut back to the photo's own size with `unpad`;
- ``"crop"``: centre-crop down to the largest multiples (or to size×size).

``jitter=True`` is pix2pix's training augmentation, after the fit: scale up by 286/256, random crop back to the
size, random horizontal flip — one draw per item applied to BOTH sides, so the pair stays aligned. The draw is a
function of (seed, index, epoch) once `PairDataset.set_epoch` has been called (the trainer does).

Label maps (side kind ``"label"``) are resized with nearest neighbour, not with pix2pix's bicubic: bicubic invents
colours between classes, which the label→photo FCN-score and the photo→label accuracy cannot map to a class.

Datasets, all reachable by name through `build_pairs`: `AlignedPairs` (pix2pix's A|B files; `facades`,
`cityscapes` and `edges2shoes` are its published layouts), `FolderPairs` (``A/`` + ``B/`` or CycleGAN-style
``trainA/`` + ``trainB/``), `sketches.SketchPairs` (photo↔sketch made on the fly by `xdog` or the pretrained HED;
`tuxpaint_sketch` and `openclipart_sketch` on the installed Debian data) and `ShapesTranslation` (the shapes world).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from imagexplore.data.assets import data_roots
from imagexplore.data.images import list_images, load_image
from imagexplore.data.shapes import PAIR_DIRECTIONS, WORLD_OPTIONS, ShapesPairs
from imagexplore.errors import ConfigError, DataError

log = logging.getLogger("imagexplore.data")

PAIR_DATASETS: tuple[str, ...] = (
    "shapes",
    "aligned",
    "ab-folders",
    "facades",
    "cityscapes",
    "edges2shoes",
    "sketches",
    "tuxpaint-sketch",
    "openclipart-sketch",
)
FITS: tuple[str, ...] = ("resize", "pad", "crop")
DEFAULT_MULTIPLE = (
    32  # 2**5: U-Net depths up to 5 (pix2pix's unet_256 has 8 downsamplings: give multiple=256)
)
JITTER_SCALE = 286 / 256  # pix2pix: load_size 286, crop_size 256
# Hashed splits of photo collections without split folders: percent of the 100 hash buckets, in this order.
SPLIT_PERCENT: dict[str, int] = {"train": 80, "val": 10, "test": 10}
SHAPES_DEFAULT_SAMPLES = 1000  # the shapes world is endless: num_samples=None gives this many scenes

# (left, right, top, bottom): torch.nn.functional.pad's order for the last two dimensions
Pad = tuple[int, int, int, int]
NO_PAD: Pad = (0, 0, 0, 0)


# --------------------------------------------------------------------------------------------- small helpers
def unpad(tensor: torch.Tensor, pad: Sequence[int]) -> torch.Tensor:
    """Cut the reflect pad ``(left, right, top, bottom)`` of `PairDataset.pad_of` off a ...×H×W tensor.

    ``unpad(generator(x), ds.pad_of(i))`` is the output at the photo's own size.
    """
    left, right, top, bottom = (int(v) for v in pad)
    h, w = tensor.shape[-2:]
    return tensor[..., top : h - bottom, left : w - right]


def to_signed(image: np.ndarray) -> torch.Tensor:
    """uint8 H×W×3 → float32 3×H×W in [-1, 1] (0 → -1, 255 → 1 exactly).

    Converted in numpy: torch would run this small op through its thread pool (see `shapes.datasets.to_tensor`).
    """
    chw = np.ascontiguousarray(image.transpose(2, 0, 1))
    return torch.from_numpy(chw.astype(np.float32) / np.float32(127.5) - np.float32(1.0))


def _resize(image: np.ndarray, width: int, height: int, resample: Image.Resampling) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), resample))


def _reflect(image: np.ndarray, pad: Pad) -> np.ndarray:
    left, right, top, bottom = pad
    # numpy reflects again and again when a pad is wider than the image (torch's reflect pad refuses to)
    return np.pad(image, ((top, bottom), (left, right), (0, 0)), mode="reflect")


def _first(names: Sequence[str], k: int = 3) -> str:
    """At most ``k`` names for a one-line message."""
    if not names:
        return "none"
    return ", ".join(names[:k]) + (f" … ({len(names) - k} more)" if len(names) > k else "")


def _positive_int(value, what: str, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{what} must be a positive int{' or null' if allow_none else ''}, got {value!r}")
    return int(value)


def _truncate(items: list, num_samples: int | None) -> list:
    """The first ``num_samples`` items (None: all)."""
    n = _positive_int(num_samples, "num_samples", allow_none=True)
    return items if n is None else items[:n]


def hash_split(
    paths: Sequence[Path], split: str | None, key: Callable[[Path], str] = lambda p: Path(p).name
) -> list[Path]:
    """The members of ``split`` ("train", "val", "test"; None or "all": every path), in the given order.

    Each path falls into one of 100 buckets by the SHA-1 of ``key(path)`` (default: the file name) — 80 train,
    10 val, 10 test (`SPLIT_PERCENT`). A file's split depends on its own name only, so it is the same on every
    machine and stays put when files are added or removed; copies of a file under several folders share a split.
    """
    if split is None or split == "all":
        return list(paths)
    if split not in SPLIT_PERCENT:
        raise ConfigError(f"split must be one of {', '.join(SPLIT_PERCENT)}, all (or null), got {split!r}")
    names = list(SPLIT_PERCENT)
    lo = sum(SPLIT_PERCENT[s] for s in names[: names.index(split)])
    hi = lo + SPLIT_PERCENT[split]
    return [p for p in paths if lo <= _bucket(key(p)) < hi]


def _bucket(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big") % 100


# --------------------------------------------------------------------------------------------- the base
def _check_geometry(size, fit, multiple) -> tuple[int | None, str | None, int]:
    """Validated (size, fit, multiple); ``fit=None`` with a size means "resize"."""
    if fit is not None and fit not in FITS:
        raise ConfigError(f"fit must be one of {', '.join(FITS)} (or null), got {fit!r}")
    multiple = _positive_int(multiple, "multiple (2**depth of the generator)")
    size = _positive_int(size, "size", allow_none=True)
    if fit is None and size is not None:
        fit = "resize"
    if fit == "resize" and size is None:
        raise ConfigError("fit 'resize' needs a size (the side of the square the images are scaled to)")
    if size is not None and size % multiple:
        lower = max(multiple, size // multiple * multiple)
        raise ConfigError(
            f"size {size} is not a multiple of {multiple} (2**depth of the generator): use {lower} or "
            f"{lower + multiple}"
        )
    return size, fit, multiple


def _resolve_direction(direction: str, sides: tuple[str, str]) -> bool:
    """True when A is the input. Valid: AtoB, BtoA and, when the kinds differ, ``<kind>2<kind>``."""
    a, b = sides
    valid = {"AtoB": True, "BtoA": False}
    if a != b:
        valid |= {f"{a}2{b}": True, f"{b}2{a}": False}
    if direction not in valid:
        raise ConfigError(f"direction must be one of {', '.join(valid)}, got {direction!r}")
    return valid[direction]


def _check_sides(sides) -> tuple[str, str]:
    if (
        not isinstance(sides, list | tuple)
        or len(sides) != 2
        or not all(isinstance(s, str) and s for s in sides)
    ):
        raise ConfigError(f"sides must be two kinds [A, B] such as [photo, label], got {sides!r}")
    return sides[0], sides[1]


class PairDataset(Dataset):
    """The shared machinery (module docstring): direction, size fitting, joint jitter, [-1, 1] tensors.

    A subclass fills ``names`` and ``source`` (what and where, for `describe`) and implements ``_read(index)`` →
    ``(A, B, where)``: two uint8 H×W×3 arrays of the same size and a description of the file(s) for messages.
    """

    def __init__(
        self,
        *,
        sides: tuple[str, str],
        direction: str,
        size: int | None,
        fit: str | None,
        multiple: int,
        jitter: bool,
        seed: int,
    ):
        self.size, self.fit, self.multiple = _check_geometry(size, fit, multiple)
        if not isinstance(jitter, bool):
            raise ConfigError(f"jitter must be true or false, got {jitter!r}")
        self.jitter = jitter
        sides = _check_sides(sides)
        self.sides = {"A": sides[0], "B": sides[1]}
        self.direction = direction
        self.a_to_b = _resolve_direction(direction, sides)
        # nearest for label maps keeps every pixel a class colour (module docstring)
        self._resample = tuple(
            Image.Resampling.NEAREST if kind == "label" else Image.Resampling.BICUBIC for kind in sides
        )
        self.seed, self.epoch = int(seed), None
        self.names: list[str] = []
        self.source = ""

    @property
    def input_kind(self) -> str:
        return self.sides["A" if self.a_to_b else "B"]

    @property
    def target_kind(self) -> str:
        return self.sides["B" if self.a_to_b else "A"]

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.names)

    def _index(self, index: int) -> int:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {type(self).__name__} of length {n}")
        return int(index) % n

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = self._index(index)
        a, b, where = self._read(index)
        a, b, _ = self._fit(a, b, where)
        if self.jitter:
            a, b = self._jitter(index, a, b)
        x, y = to_signed(a), to_signed(b)
        return (x, y) if self.a_to_b else (y, x)

    def pad_of(self, index: int) -> Pad:
        """The reflect pad ``(left, right, top, bottom)`` that ``fit="pad"`` adds to item ``index`` (zeros for the
        other fits), for `unpad`. It reads the item's files. It describes the item without jitter (a training
        augmentation, whose random crop moves the pad)."""
        if self.fit != "pad":
            return NO_PAD
        return self._fit(*self._read(self._index(index)))[2]

    def set_epoch(self, epoch: int) -> None:
        """Make item i's jitter a function of (seed, i, epoch)."""
        self.epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator:
        if self.epoch is not None:
            word = self.epoch
        else:  # the DataLoader's per-epoch base seed (shared by its workers), else torch's seeded generator
            info = torch.utils.data.get_worker_info()
            word = info.seed - info.id if info is not None else int(torch.randint(2**62, ()).item())
        return np.random.default_rng([self.seed, index, word])

    def _fit(self, a: np.ndarray, b: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray, Pad]:
        h, w = a.shape[:2]
        m, size = self.multiple, self.size
        if self.fit == "resize":
            return (
                _resize(a, size, size, self._resample[0]),
                _resize(b, size, size, self._resample[1]),
                NO_PAD,
            )
        if self.fit == "crop":
            th, tw = (size, size) if size else (h // m * m, w // m * m)
            if th == 0 or tw == 0 or th > h or tw > w:
                least = size or m
                raise DataError(
                    f"{where}: {w}×{h} (W×H) is smaller than {least}×{least}, the least fit 'crop' can cut: "
                    "use fit 'pad' or 'resize'"
                )
            top, left = (h - th) // 2, (w - tw) // 2
            return a[top : top + th, left : left + tw], b[top : top + th, left : left + tw], NO_PAD
        if self.fit == "pad":
            th, tw = (size, size) if size else (-(-h // m) * m, -(-w // m) * m)
            if th < h or tw < w:
                raise DataError(
                    f"{where}: {w}×{h} (W×H) is larger than size {size}: fit 'pad' only grows images; "
                    "use fit 'crop' or 'resize'"
                )
            top, left = (th - h) // 2, (tw - w) // 2
            pad = (left, tw - w - left, top, th - h - top)
            return _reflect(a, pad), _reflect(b, pad), pad
        if h % m or w % m:
            raise DataError(
                f"{where}: {w}×{h} (W×H) is not a multiple of {m} (2**depth of the generator): set the option fit "
                "to 'resize' (with a size), 'pad' or 'crop'"
            )
        return a, b, NO_PAD

    def _jitter(self, index: int, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """pix2pix's scale-up + random crop + random flip, the same draw for both sides."""
        h, w = a.shape[:2]
        sh, sw = round(h * JITTER_SCALE), round(w * JITTER_SCALE)
        rng = self._rng(index)
        top, left = int(rng.integers(0, sh - h + 1)), int(rng.integers(0, sw - w + 1))
        flip = bool(rng.random() < 0.5)
        out = []
        for image, resample in zip((a, b), self._resample):
            image = _resize(image, sw, sh, resample)[top : top + h, left : left + w]
            out.append(image[:, ::-1] if flip else image)
        return out[0], out[1]

    def _geometry(self) -> str:
        s, m = self.size, self.multiple
        square = f"{s}×{s}" if s else f"multiples of {m}"
        text = {
            "resize": f"resized to {square}",
            "pad": f"reflect-padded to {square}",
            "crop": f"centre-cropped to {square}",
            None: f"native size (multiples of {m})",
        }[self.fit]
        return text + (", jitter (286/256 scale, crop, flip)" if self.jitter else "")

    def describe(self) -> str:
        """One line: what, where, how many, which way, at what size."""
        way = "AtoB" if self.a_to_b else "BtoA"
        return f"{self.source}: {len(self)} pairs {self.input_kind}→{self.target_kind} ({way}), {self._geometry()}"


# --------------------------------------------------------------------------------------------- folders of pairs
def _split_folder(root: Path, split: str | None) -> Path:
    """``root/<split>`` when it exists, else ``root`` itself if it holds images (or no split was asked)."""
    if not root.is_dir():
        raise DataError(f"{root} not found: expected a folder of paired images")
    if split is not None and (root / split).is_dir():
        return root / split
    if split is None or list_images(root, recursive=False):
        return root
    folders = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    raise DataError(
        f"{root} has no {split}/ folder and no images of its own; its folders: {', '.join(folders) or 'none'}"
    )


class AlignedPairs(PairDataset):
    """pix2pix's aligned layout: each file holds A|B side by side (A the left half, both halves equally wide).

    Files are read from ``root/<split>/`` when that folder exists, else from ``root`` itself (not recursively).
    An odd width is a one-line `DataError` naming the file. ``sides`` names the kinds of A and B (the published
    layouts `facades`, `cityscapes`, `edges2shoes` set them), which also allows directions like ``"label2photo"``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        direction: str = "AtoB",
        *,
        sides: Sequence[str] = ("image", "image"),
        size: int | None = None,
        fit: str | None = None,
        multiple: int = DEFAULT_MULTIPLE,
        jitter: bool = False,
        seed: int = 0,
        num_samples: int | None = None,
    ):
        super().__init__(
            sides=sides, direction=direction, size=size, fit=fit, multiple=multiple, jitter=jitter, seed=seed
        )
        self.folder = _split_folder(Path(root), split)
        files = list_images(self.folder, recursive=False)
        if not files:
            raise DataError(f"no images in {self.folder}: expected A|B pair files (.jpg, .png, ...)")
        self.files = _truncate(files, num_samples)
        self.names = [p.name for p in self.files]
        self.source = f"aligned A|B pairs in {self.folder}"

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        path = self.files[index]
        image = np.asarray(load_image(path))
        w = image.shape[1]
        if w % 2:
            raise DataError(
                f"{path}: width {w} is odd, but an aligned pair file holds A|B side by side in two equal halves"
            )
        return image[:, : w // 2], image[:, w // 2 :], f"{path} (each half)"


def _ab_folders(root: Path, split: str | None) -> tuple[Path, Path]:
    """The first of ``<split>A`` + ``<split>B``, ``A/<split>`` + ``B/<split>``, ``A`` + ``B`` that exists."""
    if not root.is_dir():
        raise DataError(f"{root} not found: expected a folder holding A/ and B/ folders of paired images")
    candidates = [(f"{split}A", f"{split}B"), (f"A/{split}", f"B/{split}")] if split else []
    candidates.append(("A", "B"))
    for a, b in candidates:
        if (root / a).is_dir() and (root / b).is_dir():
            return root / a, root / b
    looked = " or ".join(f"{a}/ + {b}/" for a, b in candidates)
    raise DataError(f"{root} has no folders {looked}: expected the A and B images in separate folders")


def _by_stem(folder: Path) -> dict[str, Path]:
    """Relative path without suffix → file; two files of one stem (x.jpg, x.png) cannot be paired."""
    out: dict[str, Path] = {}
    for p in list_images(folder):
        stem = p.relative_to(folder).with_suffix("").as_posix()
        if stem in out:
            raise DataError(f"{out[stem]} and {p} share the name {stem!r}: a pair is matched by file name")
        out[stem] = p
    return out


class FolderPairs(PairDataset):
    """Separate A and B folders, an A file paired with the B file of the same relative name minus suffix.

    Folders (the first that exists): ``root/<split>A`` + ``root/<split>B`` (CycleGAN's ``trainA``), ``root/A/<split>``
    + ``root/B/<split>`` (pix2pix's ``combine_A_and_B`` input), ``root/A`` + ``root/B``. A file without a partner
    is a one-line `DataError` counting the unpaired files and naming the first few on each side; A and B of a pair
    must have the same size.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        direction: str = "AtoB",
        *,
        sides: Sequence[str] = ("image", "image"),
        size: int | None = None,
        fit: str | None = None,
        multiple: int = DEFAULT_MULTIPLE,
        jitter: bool = False,
        seed: int = 0,
        num_samples: int | None = None,
    ):
        super().__init__(
            sides=sides, direction=direction, size=size, fit=fit, multiple=multiple, jitter=jitter, seed=seed
        )
        root = Path(root)
        self.folders = _ab_folders(root, split)
        files_a, files_b = (_by_stem(f) for f in self.folders)
        only_a, only_b = sorted(set(files_a) - set(files_b)), sorted(set(files_b) - set(files_a))
        if only_a or only_b:
            name_a, name_b = (f.relative_to(root).as_posix() for f in self.folders)
            raise DataError(
                f"{root}: {len(only_a) + len(only_b)} files have no partner of the same name (pairs match by file "
                f"name without suffix); only in {name_a}/: {_first(only_a)}; only in {name_b}/: {_first(only_b)}"
            )
        if not files_a:
            raise DataError(f"no images in {self.folders[0]} and {self.folders[1]}: expected paired images")
        stems = _truncate(sorted(files_a), num_samples)
        self.pairs = [(files_a[s], files_b[s]) for s in stems]
        self.names = [p.relative_to(self.folders[0]).as_posix() for p, _ in self.pairs]
        self.source = f"A/B folder pairs in {self.folders[0]} + {self.folders[1].name}"

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        path_a, path_b = self.pairs[index]
        a, b = np.asarray(load_image(path_a)), np.asarray(load_image(path_b))
        if a.shape != b.shape:
            raise DataError(
                f"{path_a} is {a.shape[1]}×{a.shape[0]} but its partner {path_b} is {b.shape[1]}×{b.shape[0]} "
                "(W×H): the two images of a pair must have the same size"
            )
        return a, b, str(path_a)


# --------------------------------------------------------------------------------------------- published layouts
@dataclass(frozen=True)
class PublishedLayout:
    """A pix2pix dataset archive (``<name>.tar.gz``): ``<name>/<split>/*.jpg``, each file A|B."""

    sides: tuple[str, str]  # the kinds of A and B
    direction: str  # the default: the thesis' abstract → photo task
    splits: tuple[str, ...]


PUBLISHED_LAYOUTS: dict[str, PublishedLayout] = {
    "facades": PublishedLayout(("photo", "label"), "BtoA", ("train", "val", "test")),
    "cityscapes": PublishedLayout(("photo", "label"), "BtoA", ("train", "val")),
    "edges2shoes": PublishedLayout(("edges", "photo"), "AtoB", ("train", "val")),
}


def _published_root(name: str, root: str | os.PathLike | None) -> Path:
    """``root`` or ``root/<name>``; without a root, ``<name>`` under the data roots ($IMAGEXPLORE_DATA, ~/data, ...)."""
    layout = PUBLISHED_LAYOUTS[name]
    candidates = [Path(root), Path(root) / name] if root is not None else [r / name for r in data_roots()]
    for c in candidates:
        if any((c / s).is_dir() for s in layout.splits):
            return c
    if root is not None and Path(root).is_dir():  # a folder of pair files itself (e.g. facades/train)
        return Path(root)
    raise DataError(
        f"{name} not found in {' or '.join(map(str, candidates))}: download pix2pix's {name}.tar.gz and extract "
        f"it there, so that {name}/{layout.splits[0]}/ holds the A|B files"
    )


def published_pairs(
    name: str, root: str | os.PathLike | None = None, split: str = "train", **kw
) -> AlignedPairs:
    """A published pix2pix layout (`PUBLISHED_LAYOUTS`) with its sides and default direction; ``kw`` as for
    `AlignedPairs` (``direction`` overrides the default, e.g. ``"photo2label"``)."""
    layout = PUBLISHED_LAYOUTS[name]
    if split not in layout.splits:
        raise ConfigError(f"{name} has the splits {', '.join(layout.splits)}; got {split!r}")
    kw.setdefault("direction", layout.direction)
    return AlignedPairs(_published_root(name, root), split, sides=layout.sides, **kw)


def facades(root: str | os.PathLike | None = None, split: str = "train", **kw) -> AlignedPairs:
    """CMP Facades as pix2pix packs it (``facades/{train,val,test}/N.jpg``): A = photo, B = label map; the
    default direction is label→photo (``BtoA``)."""
    return published_pairs("facades", root, split, **kw)


def cityscapes(root: str | os.PathLike | None = None, split: str = "train", **kw) -> AlignedPairs:
    """Cityscapes as pix2pix packs it (``cityscapes/{train,val}/N.jpg``): A = photo, B = label colour map; the
    default direction is label→photo (``BtoA``)."""
    return published_pairs("cityscapes", root, split, **kw)


def edges2shoes(root: str | os.PathLike | None = None, split: str = "train", **kw) -> AlignedPairs:
    """edges2shoes (``edges2shoes/{train,val}/N_AB.jpg``): A = edges, B = photo; default edges→photo (``AtoB``)."""
    return published_pairs("edges2shoes", root, split, **kw)


# --------------------------------------------------------------------------------------------- the shapes world
class ShapesTranslation(PairDataset):
    """`imagexplore.data.shapes.ShapesPairs` in this module's conventions: [-1, 1] tensors, ``names``, the fits
    and the joint jitter. ``direction``: label2photo, photo2label, sketch2photo or photo2sketch (also AtoB/BtoA
    with A = photo); ``world_options`` go to `ShapesWorld`. Scenes are rendered at ``size``×``size``."""

    def __init__(
        self,
        num_samples: int = SHAPES_DEFAULT_SAMPLES,
        size: int = 64,
        split: str = "train",
        direction: str = "label2photo",
        *,
        fit: str | None = None,
        multiple: int = DEFAULT_MULTIPLE,
        jitter: bool = False,
        seed: int = 0,
        **world_options,
    ):
        if direction not in PAIR_DIRECTIONS and direction not in ("AtoB", "BtoA"):
            raise ConfigError(
                f"direction must be one of {', '.join(PAIR_DIRECTIONS)}, AtoB, BtoA; got {direction!r}"
            )
        other = "sketch" if "sketch" in direction else "label"
        super().__init__(
            sides=("photo", other),
            direction=direction,
            size=size,
            fit=fit,
            multiple=multiple,
            jitter=jitter,
            seed=seed,
        )
        # always photo first: this class's direction decides which side is the input
        self.scenes = ShapesPairs(num_samples, size, seed, split, direction=f"photo2{other}", **world_options)
        self.names = [f"shapes-{split}-{i}" for i in range(len(self.scenes))]
        self.source = f"shapes world {split} (seed {seed})"

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        photo, other = self.scenes[index]
        # the world renders uint8; ShapesPairs divides by 255, so this rounding recovers the exact pixels
        a, b = ((t.numpy().transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8) for t in (photo, other))
        return a, b, self.names[index]


# --------------------------------------------------------------------------------------------- by name
_COMMON = ("direction", "fit", "multiple", "jitter")
_SKETCH = (*_COMMON, "method", "method_options", "max_side", "cache_dir")
PAIR_OPTIONS: dict[str, tuple[str, ...]] = {
    "shapes": (*_COMMON, *sorted(WORLD_OPTIONS)),
    "aligned": (*_COMMON, "sides"),
    "ab-folders": (*_COMMON, "sides"),
    "facades": _COMMON,
    "cityscapes": _COMMON,
    "edges2shoes": _COMMON,
    "sketches": _SKETCH,
    "tuxpaint-sketch": _SKETCH,
    "openclipart-sketch": (*_SKETCH, "min_side"),
}


def build_pairs(
    name: str,
    root: str | os.PathLike | None = None,
    split: str | None = None,
    options: dict | None = None,
    size: int | None = None,
    num_samples: int | None = None,
    seed: int = 0,
) -> PairDataset:
    """The paired dataset ``name`` (`PAIR_DATASETS`), with ``options`` (a config's ``data.options``: the keys of
    `PAIR_OPTIONS`). ``num_samples`` keeps the first N items (None: all; shapes: `SHAPES_DEFAULT_SAMPLES`).

    ``root``: the folder for aligned, ab-folders and sketches; optional elsewhere (published layouts are looked
    for under the data roots, the Tux Paint and Open Clip Art sets at their Debian install paths; shapes has none).
    ``split``: None reads ``root`` itself (aligned, ab-folders) or everything (sketch sets); shapes defaults to
    train. An unknown name or option is one `ConfigError` line listing the valid ones.
    """
    if name not in PAIR_DATASETS:
        raise ConfigError(f"unknown pair dataset {name!r}; choose one of {', '.join(PAIR_DATASETS)}")
    if options is not None and not isinstance(options, dict):
        raise ConfigError(f"options of pair dataset {name!r} must be a mapping, got {options!r}")
    options = dict(options or {})
    unknown = sorted(set(options) - set(PAIR_OPTIONS[name]))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {unknown} for pair dataset {name!r}; valid: {', '.join(PAIR_OPTIONS[name])}"
        )
    if "sides" in options:
        options["sides"] = _check_sides(options["sides"])
    common = {"size": size, "seed": seed}
    if name == "shapes":
        n = _positive_int(num_samples, "num_samples", allow_none=True) or SHAPES_DEFAULT_SAMPLES
        return ShapesTranslation(n, size or 64, split or "train", seed=seed, **options)
    if name in ("aligned", "ab-folders", "sketches") and root is None:
        raise ConfigError(f"pair dataset {name!r} needs a root: the folder holding its images")
    if name == "aligned":
        return AlignedPairs(root, split, num_samples=num_samples, **common, **options)
    if name == "ab-folders":
        return FolderPairs(root, split, num_samples=num_samples, **common, **options)
    if name in PUBLISHED_LAYOUTS:
        return published_pairs(name, root, split, num_samples=num_samples, **common, **options)
    from imagexplore.synthesis.sketches import SketchPairs, openclipart_sketch, tuxpaint_sketch

    if name == "sketches":
        return SketchPairs(root, split=split, num_samples=num_samples, **common, **options)
    if name == "tuxpaint-sketch":
        return tuxpaint_sketch(root, split, num_samples=num_samples, **common, **options)
    return openclipart_sketch(root, split, num_samples=num_samples, **common, **options)
