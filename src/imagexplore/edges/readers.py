"""Edge dataset readers in their official layouts, and the mask-folder layout users have.

Every reader yields ``(image float 3×H×W in [0, 1], annotators A×H×W, stem)`` at the image's own size; see
`imagexplore.edges.data` for what each layout holds, and for the training / evaluation sets built on them.
"""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from imagexplore.data.images import list_images, load_image, pil_to_tensor
from imagexplore.errors import ConfigError, DataError

BSDS_MAX_DIST = 0.0075
NYUD_MAX_DIST = 0.011


# ------------------------------------------------------------------------------------------------ readers
def limit_samples(samples: list, num_samples: int | None) -> list:
    if num_samples is None:
        return samples
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ConfigError(f"num_samples must be a positive int, got {num_samples!r}")
    return samples[:num_samples]


def _annotators_tensor(gt: np.ndarray, image: torch.Tensor, gt_path: Path, image_path: Path) -> torch.Tensor:
    if gt.shape[-2:] != image.shape[-2:]:
        raise DataError(
            f"ground truth {gt_path} is {gt.shape[-1]}×{gt.shape[-2]} but image {image_path} is "
            f"{image.shape[-1]}×{image.shape[-2]}; they must have the same size"
        )
    return torch.from_numpy(np.ascontiguousarray(gt))


class _MatEdgeDataset(Dataset):
    """Images + BSDS-structured ``groundTruth`` .mat files, one folder per split."""

    name = "BSDS500"
    splits = ("train", "val", "test", "trainval")
    max_dist = BSDS_MAX_DIST
    in_chans = 3
    _nested = (Path("BSR/BSDS500/data"), Path("BSDS500/data"), Path("data"))

    def __init__(self, root: str | Path, split: str = "train", num_samples: int | None = None):
        if split not in self.splits:
            raise ConfigError(f"{self.name} split must be one of {', '.join(self.splits)}, got {split!r}")
        self.root = self._find_root(Path(root).expanduser())
        self.split = split
        parts = ("train", "val") if split == "trainval" else (split,)
        samples = []
        for part in parts:
            folder = self.root / "images" / part
            images = list_images(folder, recursive=False) if folder.is_dir() else []
            if not images:
                raise DataError(f"{self.name}: no images in {folder}; expected {self._layout()}")
            for img in images:
                mat = self.root / "groundTruth" / part / f"{img.stem}.mat"
                if not mat.is_file():
                    raise DataError(f"{self.name}: image {img} has no ground truth {mat}")
                samples.append((img.stem, img, mat))
        self.samples = limit_samples(samples, num_samples)
        self.ids = [s[0] for s in self.samples]

    @classmethod
    def _layout(cls) -> str:
        return "images/<split>/<id>.jpg|png and groundTruth/<split>/<id>.mat under the dataset root"

    @classmethod
    def _find_root(cls, root: Path) -> Path:
        for cand in (root, *(root / n for n in cls._nested)):
            if (cand / "images").is_dir() and (cand / "groundTruth").is_dir():
                return cand
        raise DataError(f"{cls.name} not found at {root}: expected {cls._layout()}")

    @classmethod
    def has_split(cls, root: str | Path, split: str) -> bool:
        """Whether the dataset at ``root`` has that split's image folder (trainval: train and val); `DataError`
        if there is no dataset there at all."""
        found = cls._find_root(Path(root).expanduser())
        parts = ("train", "val") if split == "trainval" else (split,)
        return all((found / "images" / p).is_dir() for p in parts)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, idx: int):
        from imagexplore.edges.groundtruth import load_ground_truth

        stem, ipath, gpath = self.samples[idx]
        image = pil_to_tensor(load_image(ipath, "RGB"))
        return image, _annotators_tensor(load_ground_truth(gpath), image, gpath, ipath), stem

    def __repr__(self) -> str:
        return f"{type(self).__name__}(split={self.split!r}, n={len(self)}, root={str(self.root)!r})"


class BSDS500(_MatEdgeDataset):
    """BSDS500 boundaries (official layout): items (image, annotators bool A×H×W, id)."""


class NYUD(_MatEdgeDataset):
    """NYUD-v2 edges (RGB) in the BSDS layout used by the SE/HED/RDS papers; evaluated with maxDist 0.011."""

    name = "NYUD"
    max_dist = NYUD_MAX_DIST
    _nested = (Path("NYUD/data"), Path("data"))


class HEDBSDSList(Dataset):
    """HED's augmented BSDS pairs: items (image, fractions of annotators float32 1×H×W, relative image path)."""

    max_dist = BSDS_MAX_DIST
    in_chans = 3

    def __init__(self, root: str | Path, list_file: str = "train_pair.lst", num_samples: int | None = None):
        self.root = Path(root).expanduser()
        lst = self.root / list_file
        if not lst.is_file():
            raise DataError(
                f"HED-BSDS list {lst} not found: set data.root to the HED-BSDS folder holding {list_file}"
            )
        samples = []
        for n, line in enumerate(lst.read_text().splitlines(), 1):
            words = line.split()
            if not words:
                continue
            if len(words) != 2:
                raise DataError(f"{lst} line {n}: expected 'image_path gt_path', got {line.strip()!r}")
            img, gt = self.root / words[0], self.root / words[1]
            for p in (img, gt):
                if not p.is_file():
                    raise DataError(f"{lst} line {n}: file {p} not found")
            samples.append((Path(words[0]).with_suffix("").as_posix(), img, gt))
        if not samples:
            raise DataError(f"HED-BSDS list {lst} is empty; expected lines 'image_path gt_path'")
        self.samples = limit_samples(samples, num_samples)
        self.ids = [s[0] for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, idx: int):
        stem, ipath, gpath = self.samples[idx]
        image = pil_to_tensor(load_image(ipath, "RGB"))
        frac = np.asarray(load_image(gpath, "L"), np.float32)[None] / np.float32(255)
        return image, _annotators_tensor(frac, image, gpath, ipath), stem

    def __repr__(self) -> str:
        return f"HEDBSDSList(n={len(self)}, root={str(self.root)!r})"


class ShapesEdgeSource(Dataset):
    """The shapes world's annotators (`ShapesEdges(annotators=True)`) in the reader form, with index stems."""

    max_dist = BSDS_MAX_DIST
    in_chans = 3

    def __init__(self, num_samples: int, size: int = 64, seed: int = 0, split: str = "train", **world):
        from imagexplore.data.shapes import ShapesEdges

        self.base = ShapesEdges(num_samples, size=size, seed=seed, split=split, annotators=True, **world)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, idx: int):
        image, annotators = self.base[idx]
        return image, annotators, f"{idx:06d}"

    def __repr__(self) -> str:
        return f"ShapesEdgeSource({self.base!r})"


class MaskEdges(Dataset):
    """(image, mask) → (image, mask boundaries as one bool annotator 1×H×W, stem): pre-training edges."""

    max_dist = BSDS_MAX_DIST
    in_chans = 3

    def __init__(self, base: Dataset, ignore_index: int = 255):
        self.base, self.ignore_index = base, ignore_index

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, idx: int):
        from imagexplore.edges.labels import mask_boundaries

        image, mask = self.base[idx][:2]
        edges = mask_boundaries(np.asarray(mask), self.ignore_index)
        ids = getattr(self.base, "ids", None)
        return image, torch.from_numpy(edges[None]), ids[idx] if ids is not None else f"{idx:06d}"

    def __repr__(self) -> str:
        return f"MaskEdges({self.base!r})"


MASK_SPLITS = ("train", "val", "test")
MASK_NAME_SUFFIXES = ("_mask", ".mask")  # the mask of a PNG image NAME.png: NAME_mask.png or NAME.mask.png
MASK_LAYOUT = (
    "images with a PNG mask beside each (NAME.jpg + NAME.png; a PNG image's mask NAME_mask.png or NAME.mask.png), "
    "or images/NAME.* + masks/NAME.png; optionally one such folder per split (train/, val/, test/, or "
    "images/<split>/ + masks/<split>/)"
)


def read_mask(path: Path, ignore: int | None = None) -> tuple[np.ndarray, int | None]:
    """A mask PNG as region labels (int64 H×W) and the label to ignore (or None), as `MaskFolderEdges` reads it.

    Grey / palette / 16-bit values are labels; RGB: each distinct colour is a label (a grey image stored as RGB,
    every channel equal, is read as grey; ``ignore`` then means the colour (v, v, v)). A binary mask — values
    within {0, 255} or {0, 1} — is an object on a background: ``ignore`` does not apply to it (255 = the object).
    `DataError` for a file that is not a PNG, or one with alpha (LA, RGBA, PA) or another mode."""
    try:
        with Image.open(path) as im:
            fmt, mode = im.format, im.mode
            im.load()
            arr = np.asarray(im)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read mask {path}: {e}") from None
    if fmt != "PNG":
        raise DataError(
            f"mask {path} is a {fmt or 'non-image'} file; expected a PNG (grey, palette or RGB labels)"
        )
    if mode in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L"):
        labels = arr.astype(np.int64)
        ignore_label = ignore
    elif mode == "RGB":
        a = arr.astype(np.int64)
        if (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all():
            labels, ignore_label = a[..., 0], ignore
        else:
            labels = (a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2]
            ignore_label = None if ignore is None or ignore > 255 else ignore * 0x010101
    else:
        raise DataError(
            f"mask {path} has mode {mode}; expected a grey, palette or RGB PNG (save it without an alpha channel)"
        )
    values = set(np.unique(labels).tolist())
    if values <= {0, 255} or values <= {0, 1}:
        ignore_label = None  # a binary object mask: 255 (or 1) is the object, not "ignore"
    return labels, ignore_label


class MaskFolderEdges(Dataset):
    """A folder of images with object masks beside them: items (image, mask boundaries as one bool annotator
    1×H×W, stem) — the layout users have, as dataset ``masks``.

    One split's folder F holds either ``F/NAME.jpg|png|...`` + ``F/NAME.png`` (the mask is the PNG whose stem equals
    an image's; a PNG image's mask is ``NAME_mask.png`` or ``NAME.mask.png``) or ``F/images/NAME.*`` +
    ``F/masks/NAME.png``. Split ``s``: ``root/s/`` (either form inside), else ``root/images/s/`` + ``root/masks/s/``;
    a root with neither for any of train / val / test is all ``train`` (a validation split is then carved out of
    it, see `build_edge_dataset`; asking such a root for ``test`` is an error). ``trainval`` = train + val.

    Boundaries: `mask_boundaries` of the labels `read_mask` gives (width 1). ``mask_ignore``: a value whose pixels
    are ignored — they take the nearest labelled region first (fill_ignore), so an ignore band between two regions
    gives one boundary along its middle; it never applies to a binary {0, 255} mask.
    Every image needs exactly one mask of its own size (`DataError` naming the file otherwise).
    """

    name = "masks"
    max_dist = BSDS_MAX_DIST
    in_chans = 3

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        num_samples: int | None = None,
        mask_ignore: int | None = None,
    ):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataError(f"mask folder {self.root} not found: expected {MASK_LAYOUT}")
        self.split, self.mask_ignore = split, mask_ignore
        parts = (
            ("train", "val") if split == "trainval" and not self._split_named(self.root, split) else (split,)
        )
        samples = []
        for part in parts:
            samples += self._pairs(*self._locate(part))
        stems = [s[0] for s in samples]
        if len(set(stems)) != len(stems):
            dup = next(s for s in stems if stems.count(s) > 1)
            raise DataError(f"masks: two images named '{dup}' in split '{split}' of {self.root}; rename one")
        self.samples = limit_samples(samples, num_samples)
        self.ids = [s[0] for s in self.samples]

    # ---------------------------------------------------------------------------------------------- layout
    @staticmethod
    def _split_named(root: Path, split: str) -> bool:
        return (root / split).is_dir() or (root / "images" / split).is_dir()

    @classmethod
    def _unsplit(cls, root: Path) -> bool:
        return not any(cls._split_named(root, s) for s in MASK_SPLITS)

    @classmethod
    def has_split(cls, root: str | Path, split: str) -> bool:
        """Whether the folder has that split (trainval: train and val); an unsplit root has only ``train``."""
        root = Path(root).expanduser()
        if split == "trainval" and not cls._split_named(root, split):
            return cls.has_split(root, "train") and cls.has_split(root, "val")
        return cls._split_named(root, split) or (split == "train" and root.is_dir() and cls._unsplit(root))

    @classmethod
    def looks_like(cls, root: str | Path) -> bool:
        """Whether ``root`` looks like a mask folder: a split (or the root) with ``images/`` + ``masks/``, or with
        at least one mask beside an image. Detection only: reading it may still find a file missing."""
        root = Path(root).expanduser()
        if not root.is_dir():
            return False
        for split in MASK_SPLITS if not cls._unsplit(root) else ("train",):
            if not cls.has_split(root, split):
                continue
            try:
                images_dir, masks_dir = cls._locate_in(root, split)
            except DataError:
                continue
            if masks_dir is not None:
                return True
            try:
                if cls._classify(list_images(images_dir, recursive=False))[1]:
                    return True
            except DataError:  # a mask that is not a PNG: a mask folder, which reading will refuse
                return True
        return False

    def _locate(self, split: str) -> tuple[Path, Path | None]:
        return self._locate_in(self.root, split)

    @classmethod
    def _locate_in(cls, root: Path, split: str) -> tuple[Path, Path | None]:
        """(image folder, mask folder or None = masks beside the images) of a split."""
        if (root / split).is_dir():
            folder = root / split
        elif (root / "images" / split).is_dir():
            masks = root / "masks" / split
            if not masks.is_dir():
                raise DataError(f"masks: {root / 'images' / split} has no mask folder {masks}")
            return root / "images" / split, masks
        elif cls._unsplit(root):
            if split != "train":
                raise DataError(
                    f"masks: {root} has no split folders (train/, val/, test/ or images/<split>/), so all its "
                    f"images are the train split; there is no '{split}' split to read"
                )
            folder = root
        else:
            have = [s for s in MASK_SPLITS if cls._split_named(root, s)]
            raise DataError(
                f"masks: no '{split}' split in {root}: expected {root / split}/ or {root / 'images' / split}/ + "
                f"{root / 'masks' / split}/ (it has {', '.join(have)})"
            )
        if (folder / "images").is_dir() and (folder / "masks").is_dir():
            return folder / "images", folder / "masks"
        return folder, None

    @staticmethod
    def _classify(files: list[Path]) -> tuple[list[Path], dict[str, list[Path]]]:
        """Images and masks (by their image's stem) of one folder holding both: a PNG whose stem is a non-PNG
        image's, or ``NAME_mask.png`` / ``NAME.mask.png`` beside an image NAME, is a mask."""
        stems = {f.stem for f in files}
        non_png = {f.stem for f in files if f.suffix.lower() != ".png"}
        masks: dict[str, list[Path]] = {}
        images = []
        for f in files:
            base = next((f.stem[: -len(x)] for x in MASK_NAME_SUFFIXES if f.stem.endswith(x)), None)
            if f.suffix.lower() == ".png" and f.stem in non_png:
                masks.setdefault(f.stem, []).append(f)
            elif base and base in stems:
                if f.suffix.lower() != ".png":
                    raise DataError(f"mask {f} is not a PNG: expected {f.stem}.png (masks must be lossless)")
                masks.setdefault(base, []).append(f)
            else:
                images.append(f)
        return images, masks

    @classmethod
    def _pairs(cls, images_dir: Path, masks_dir: Path | None) -> list[tuple[str, Path, Path]]:
        """(stem, image, mask) of a folder, sorted by image path; `DataError` for an image without its mask."""
        files = list_images(images_dir, recursive=False)
        pairs = []
        if masks_dir is not None:
            for img in files:
                mask = masks_dir / f"{img.stem}.png"
                if not mask.is_file():
                    other = sorted(p for p in masks_dir.glob(f"{glob.escape(img.stem)}.*") if p.is_file())
                    if other:
                        raise DataError(f"mask {other[0]} of image {img} is not a PNG: expected {mask}")
                    raise DataError(f"image {img} has no mask: expected {mask}")
                pairs.append((img.stem, img, mask))
        else:
            images, masks = cls._classify(files)
            for img in images:
                found = masks.get(img.stem, [])
                if not found:
                    want = " or ".join(
                        ([f"{img.stem}.png"] if img.suffix.lower() != ".png" else [])
                        + [f"{img.stem}{x}.png" for x in MASK_NAME_SUFFIXES]
                    )
                    raise DataError(f"image {img} has no mask: expected {want} beside it")
                if len(found) > 1:
                    raise DataError(
                        f"image {img} has {len(found)} masks ({', '.join(p.name for p in found)}); keep one"
                    )
                pairs.append((img.stem, img, found[0]))
        if not pairs:
            raise DataError(f"masks: no images in {images_dir}; expected {MASK_LAYOUT}")
        return pairs

    # ---------------------------------------------------------------------------------------------- items
    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, idx: int):
        from imagexplore.edges.labels import mask_boundaries

        stem, ipath, mpath = self.samples[idx]
        image = pil_to_tensor(load_image(ipath, "RGB"))
        labels, ignore = read_mask(mpath, self.mask_ignore)
        if labels.shape != tuple(image.shape[-2:]):
            raise DataError(
                f"mask {mpath} is {labels.shape[1]}×{labels.shape[0]} but image {ipath} is "
                f"{image.shape[-1]}×{image.shape[-2]}; a mask must have its image's size"
            )
        edges = mask_boundaries(labels, ignore, width=1)
        return image, torch.from_numpy(edges[None]), stem

    def __repr__(self) -> str:
        return f"MaskFolderEdges(split={self.split!r}, n={len(self)}, root={str(self.root)!r})"
