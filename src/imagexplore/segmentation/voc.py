"""PASCAL VOC 2012 segmentation in its official layout, with the SBD augmentation ("train_aug", 10,582 images).

Layout (``root`` may be the folder holding ``VOCdevkit``, ``VOCdevkit`` itself, or ``VOC2012``)::

    root/VOCdevkit/VOC2012/
        JPEGImages/<id>.jpg
        SegmentationClass/<id>.png                 palette (mode P) PNGs: the pixel value is the class index
        ImageSets/Segmentation/{train,val,trainval}.txt
        SegmentationClassAug/<id>.png              optional: SBD masks as grey (mode L) label PNGs ("trainaug")
        ImageSets/SegmentationAug/train_aug.txt    optional list for SegmentationClassAug (or data option aug_list)

SBD as released (Hariharan et al.), found at ``sbd_root`` or next to the VOC folders::

    benchmark_RELEASE/dataset/{cls/<id>.mat, img/<id>.jpg, train.txt, val.txt}   (.mat: GTcls.Segmentation)

Splits: ``train``, ``val``, ``trainval`` (VOC lists, VOC masks) and ``train_aug`` = (SBD train ∪ SBD val ∪ VOC
train) − VOC val, the standard 10,582 images. For train_aug the SBD ids come from the aug list file if there is
one, else from every PNG in SegmentationClassAug, else from SBD's train.txt + val.txt. The mask of an id that is
in VOC train is VOC's own annotation (``prefer_voc_masks=True``, with its 255 boundaries), otherwise the SBD one
(SegmentationClassAug PNG if present, else the .mat). Images come from JPEGImages (SBD's img/ as a fallback).

Masks are read as class indices and checked: SegmentationClass PNGs must be palette images (mode P: np.array
gives the indices; an RGB-rendered mask would give colours), every value must be in {0..20, 255}; anything else
is a `DataError` naming the file and the bad values. A wrong layout is a `DataError` naming the missing folder or
file.

Transforms (our choices, all options): training — random scale (``scale_range``, e.g. [0.5, 2.0]; bilinear for
the image, nearest for the mask), then pad to ``crop_size`` (image with 0 = the mean colour after normalisation,
mask with 255 = ignored) and a random ``crop_size`` crop, and a horizontal ``flip``. Evaluation — the full image
at its own size (default; batches are padded by `pad_collate` with mask 255, so padded pixels are never scored;
batch 1 is the exact protocol), or ``eval_resize`` = N: image and mask resized to N×N (faster, approximate).
Normalisation (ImageNet mean/std in the VOC configs) is the ``transform`` applied to the image before any
geometric transform.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from imagexplore.data.images import load_image, pil_to_tensor
from imagexplore.errors import ConfigError, DataError

VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
IGNORE_INDEX = 255
VOC_SPLITS = ("train", "val", "trainval", "train_aug")


def voc_palette(n: int = 256) -> list[int]:
    """The VOC colour map (bit-interleaved): 3·n values for ``Image.putpalette``; index 255 = (224, 224, 192)."""
    pal = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def mask_to_palette_image(mask: np.ndarray) -> Image.Image:
    """A class-index mask (H×W, values 0..255) as a VOC-palette PNG image (mode P)."""
    img = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    img.putpalette(voc_palette())
    return img


def check_mask_values(mask: np.ndarray, path: Path | str, num_classes: int = 21) -> np.ndarray:
    """The mask as int64, or `DataError` naming the file and the values outside {0..C-1, 255}."""
    values = np.unique(mask)
    bad = [int(v) for v in values if not (0 <= v < num_classes or v == IGNORE_INDEX)]
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
        raise DataError(
            f"mask {path} has values {shown} outside 0..{num_classes - 1} and {IGNORE_INDEX} (ignore); "
            "expected class indices (a palette PNG, not a colour rendering)"
        )
    return mask.astype(np.int64)


def read_index_png(path: Path, modes: Sequence[str] = ("P",), num_classes: int = 21) -> np.ndarray:
    """A label PNG as class indices; the PNG must be in one of `modes` (VOC: palette 'P'; SBD aug: 'L')."""
    if not path.is_file():
        raise DataError(f"mask not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            arr = np.array(img)
    except Exception as e:  # noqa: BLE001 - Pillow raises many types for bad files
        raise DataError(f"cannot read mask {path}: {type(e).__name__}: {e}") from None
    if mode not in modes:
        raise DataError(
            f"mask {path} is a mode {mode} image; expected {' or '.join(modes)} "
            f"({'a palette PNG whose pixel values are class indices' if 'P' in modes else 'class indices'})"
        )
    return check_mask_values(arr, path, num_classes)


def read_sbd_mat(path: Path, num_classes: int = 21) -> np.ndarray:
    """SBD's ``cls/<id>.mat``: the ``GTcls.Segmentation`` array (class indices, 0 = background)."""
    import scipy.io

    if not path.is_file():
        raise DataError(f"SBD mask not found: {path}")
    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except Exception as e:  # noqa: BLE001
        raise DataError(f"cannot read SBD mask {path}: {type(e).__name__}: {e}") from None
    gt = mat.get("GTcls")
    seg = getattr(gt, "Segmentation", None)
    if seg is None:
        raise DataError(f"SBD mask {path} holds no GTcls.Segmentation (variables: {sorted(mat)})")
    seg = np.asarray(seg)
    if seg.ndim != 2:
        raise DataError(f"SBD mask {path}: GTcls.Segmentation has shape {seg.shape}, expected H×W")
    return check_mask_values(seg, path, num_classes)


def find_voc2012(root: str | Path) -> Path:
    """The VOC2012 folder under `root` (root/VOCdevkit/VOC2012, root/VOC2012 or root itself)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"VOC root {root} is not a folder")
    for cand in (root / "VOCdevkit" / "VOC2012", root / "VOC2012", root):
        if cand.is_dir() and any(
            (cand / d).exists() for d in ("JPEGImages", "SegmentationClass", "ImageSets")
        ):
            return cand
    raise DataError(
        f"no PASCAL VOC 2012 folder under {root}: expected {root / 'VOCdevkit' / 'VOC2012'} (or "
        f"{root / 'VOC2012'}, or {root} itself) holding JPEGImages, SegmentationClass, ImageSets/Segmentation"
    )


def read_list(path: Path) -> list[str]:
    """Image ids of a list file: one per line, either ``<id>`` or ``/JPEGImages/<id>.jpg /Seg.../<id>.png``."""
    if not path.is_file():
        raise DataError(f"list file not found: {path}")
    ids = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            ids.append(Path(line.split()[0]).stem)
    return ids


def _find_sbd(voc: Path, sbd_root: str | Path | None) -> Path | None:
    """SBD's ``dataset`` folder (holding cls/ and train.txt) from the option, or next to the VOC folders."""
    if sbd_root is not None:
        base = Path(sbd_root).expanduser()
        for cand in (base / "benchmark_RELEASE" / "dataset", base / "dataset", base):
            if (cand / "cls").is_dir():
                return cand
        raise DataError(
            f"sbd_root {base}: no SBD 'cls' folder (expected {base}/benchmark_RELEASE/dataset/cls)"
        )
    for parent in (voc, *list(voc.parents)[:3]):
        cand = parent / "benchmark_RELEASE" / "dataset"
        if (cand / "cls").is_dir():
            return cand
    return None


def _find_aug(voc: Path, aug_root: str | Path | None) -> Path | None:
    if aug_root is not None:
        p = Path(aug_root).expanduser()
        if not p.is_dir():
            raise DataError(f"aug_root {p} is not a folder (expected the SegmentationClassAug folder)")
        return p
    for parent in (voc, *list(voc.parents)[:2]):
        if (parent / "SegmentationClassAug").is_dir():
            return parent / "SegmentationClassAug"
    return None


class VOCSegmentation(Dataset):
    """PASCAL VOC 2012 segmentation (+SBD): items (image float 3×H×W, mask int64 H×W; 255 = ignore).

    Args:
        root: folder holding VOCdevkit, or VOCdevkit, or VOC2012.
        split: train | val | trainval | train_aug.
        num_samples: keep the first N ids (None = all).
        crop_size, scale_range, flip: training augmentation (None/False = off).
        eval_resize: resize image and mask to N×N (None = native size).
        sbd_root / aug_root / aug_list: where SBD is (see module docstring); found automatically when None.
        prefer_voc_masks: for train_aug ids in VOC train, use VOC's mask rather than SBD's.
        transform: applied to the [0, 1] image tensor first (normalisation).
    """

    classes = list(VOC_CLASSES)
    num_classes = len(VOC_CLASSES)
    in_chans = 3
    ignore_index = IGNORE_INDEX

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        num_samples: int | None = None,
        crop_size: int | None = None,
        scale_range: Sequence[float] | None = None,
        flip: bool = False,
        eval_resize: int | None = None,
        sbd_root: str | Path | None = None,
        aug_root: str | Path | None = None,
        aug_list: str | Path | None = None,
        prefer_voc_masks: bool = True,
        transform: Callable | None = None,
    ):
        if split not in VOC_SPLITS:
            raise ConfigError(f"VOC split must be one of {', '.join(VOC_SPLITS)}, got {split!r}")
        if scale_range is not None and (len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]):
            raise ConfigError(f"scale_range must be [min, max] with 0 < min <= max, got {scale_range!r}")
        if crop_size is not None and (not isinstance(crop_size, int) or crop_size < 1):
            raise ConfigError(f"crop_size must be a positive int, got {crop_size!r}")
        self.voc = voc = find_voc2012(root)
        for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
            if not (voc / sub).is_dir():
                raise DataError(f"VOC 2012 layout: missing folder {voc / sub}")
        self.split = split
        self.crop_size, self.flip, self.eval_resize = crop_size, bool(flip), eval_resize
        self.scale_range = tuple(scale_range) if scale_range is not None else None
        self.transform = transform
        lists = voc / "ImageSets" / "Segmentation"
        # samples: (id, image path, mask path, mask kind) with kind in voc | aug | mat
        if split != "train_aug":
            ids = read_list(lists / f"{split}.txt")
            samples = [
                (i, voc / "JPEGImages" / f"{i}.jpg", voc / "SegmentationClass" / f"{i}.png", "voc")
                for i in ids
            ]
        else:
            samples = self._train_aug(voc, lists, sbd_root, aug_root, aug_list, prefer_voc_masks)
        if num_samples is not None:
            samples = samples[: int(num_samples)]
        missing = [s[1] for s in samples if not s[1].is_file()]
        if missing:
            raise DataError(f"VOC {split}: {len(missing)} image(s) not found, e.g. {missing[0]}")
        self.samples = samples
        self.ids = [s[0] for s in samples]

    def _train_aug(self, voc, lists, sbd_root, aug_root, aug_list, prefer_voc_masks):
        voc_train = read_list(lists / "train.txt")
        voc_val = set(read_list(lists / "val.txt"))
        aug = _find_aug(voc, aug_root)
        sbd = _find_sbd(voc, sbd_root) if aug is None else None
        if aug is None and sbd is None:
            raise DataError(
                f"split train_aug needs SBD: no SegmentationClassAug folder in {voc} or its parents and no "
                f"benchmark_RELEASE/dataset/cls; set data.options.sbd_root or aug_root"
            )
        if aug is not None:
            list_file = Path(aug_list).expanduser() if aug_list else None
            if list_file is None:
                for cand in (
                    voc / "ImageSets" / "SegmentationAug" / "train_aug.txt",
                    lists / "train_aug.txt",
                    aug.parent / "train_aug.txt",
                ):
                    if cand.is_file():
                        list_file = cand
                        break
            sbd_ids = read_list(list_file) if list_file else sorted(p.stem for p in aug.glob("*.png"))
        else:
            sbd_ids = read_list(sbd / "train.txt") + read_list(sbd / "val.txt")
        # (SBD train ∪ SBD val ∪ VOC train) − VOC val, in a stable order: VOC train first, then SBD
        voc_train_set = set(voc_train)
        ids, seen = [], set()
        for i in voc_train + sbd_ids:
            if i not in seen and i not in voc_val:
                seen.add(i)
                ids.append(i)
        samples = []
        for i in ids:
            image = voc / "JPEGImages" / f"{i}.jpg"
            if not image.is_file() and sbd is not None and (sbd / "img" / f"{i}.jpg").is_file():
                image = sbd / "img" / f"{i}.jpg"
            voc_mask = voc / "SegmentationClass" / f"{i}.png"
            if i in voc_train_set and (prefer_voc_masks or aug is None and sbd is None):
                samples.append((i, image, voc_mask, "voc"))
            elif aug is not None and (aug / f"{i}.png").is_file():
                samples.append((i, image, aug / f"{i}.png", "aug"))
            elif sbd is not None and (sbd / "cls" / f"{i}.mat").is_file():
                samples.append((i, image, sbd / "cls" / f"{i}.mat", "mat"))
            elif i in voc_train_set:
                samples.append((i, image, voc_mask, "voc"))
            else:
                where = aug / f"{i}.png" if aug is not None else sbd / "cls" / f"{i}.mat"
                raise DataError(f"VOC train_aug: no mask for '{i}' (expected {where})")
        return samples

    def __len__(self) -> int:
        return len(self.samples)

    def read_mask(self, idx: int) -> np.ndarray:
        _, _, mpath, kind = self.samples[idx]
        if kind == "voc":
            return read_index_png(mpath, ("P",), self.num_classes)
        if kind == "aug":
            return read_index_png(mpath, ("L", "P"), self.num_classes)
        return read_sbd_mat(mpath, self.num_classes)

    def __getitem__(self, idx: int):
        _, ipath, mpath, _ = self.samples[idx]
        mask = self.read_mask(idx)
        img = load_image(ipath, "RGB")
        if (img.height, img.width) != mask.shape:
            raise DataError(
                f"mask {mpath} is {mask.shape[1]}×{mask.shape[0]}, image {ipath} is {img.width}×{img.height}"
            )
        x = pil_to_tensor(img)
        if self.transform is not None:
            x = self.transform(x)
        y = torch.from_numpy(mask)
        return joint_transform(
            x,
            y,
            crop_size=self.crop_size,
            scale_range=self.scale_range,
            flip=self.flip,
            resize=self.eval_resize,
        )

    def __repr__(self) -> str:
        return f"VOCSegmentation(split={self.split!r}, n={len(self)}, root={str(self.voc)!r})"


def _resize(x: torch.Tensor, y: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    y = F.interpolate(y[None, None].float(), size=size, mode="nearest")[0, 0].long()
    return x, y


def joint_transform(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    crop_size: int | None = None,
    scale_range: Sequence[float] | None = None,
    flip: bool = False,
    resize: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image (C×H×W float) and mask (H×W int64) together: resize, random scale, pad + random crop, flip.

    Padding: image 0, mask 255 (ignored). Randomness from torch's generator (seeded per DataLoader worker).
    """
    if resize:
        x, y = _resize(x, y, (int(resize), int(resize)))
    if scale_range is not None:
        lo, hi = scale_range
        s = lo + (hi - lo) * torch.rand((), generator=generator).item()
        h, w = y.shape
        x, y = _resize(x, y, (max(1, round(h * s)), max(1, round(w * s))))
    if crop_size:
        h, w = y.shape
        ph, pw = max(crop_size - h, 0), max(crop_size - w, 0)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), value=0.0)
            y = F.pad(y, (0, pw, 0, ph), value=IGNORE_INDEX)
        h, w = y.shape
        top = int(torch.randint(0, h - crop_size + 1, (), generator=generator))
        left = int(torch.randint(0, w - crop_size + 1, (), generator=generator))
        x = x[:, top : top + crop_size, left : left + crop_size]
        y = y[top : top + crop_size, left : left + crop_size]
    if flip and torch.rand((), generator=generator).item() < 0.5:
        x, y = x.flip(-1), y.flip(-1)
    return x.contiguous(), y.contiguous()


def pad_collate(batch):
    """Stack (image, mask) pairs of different sizes: pad to the largest (image 0, mask 255 = not scored)."""
    h = max(b[1].shape[0] for b in batch)
    w = max(b[1].shape[1] for b in batch)
    xs, ys = [], []
    for x, y in batch:
        dh, dw = h - y.shape[0], w - y.shape[1]
        if dh or dw:
            x = F.pad(x, (0, dw, 0, dh), value=0.0)
            y = F.pad(y, (0, dw, 0, dh), value=IGNORE_INDEX)
        xs.append(x)
        ys.append(y)
    return torch.stack(xs), torch.stack(ys)
