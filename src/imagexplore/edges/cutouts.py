"""A real-photo edge dataset anyone can make offline: photo cut-outs pasted on real texture photos.

`make_cutout_edges` writes, for ``train`` / ``val`` / ``test`` splits:

- ``images/<split>/<name>.jpg`` — 1–3 Tux Paint photo stamps (objects cut out along their exact outline, from
  the installed Debian package ``tuxpaint-stamps-default``; GPL, read in place and never copied into the repo)
  pasted at random sizes and places on a scikit-image texture photo (brick, grass, gravel; public domain),
  cropped at a random scale and tinted with two random colours, so the background is full of real texture
  edges that are *not* object boundaries;
- ``groundTruth/<split>/<name>.mat`` — BSDS-structured boundaries of the visible objects from several
  "annotators": annotator 1 traces the exact outline (alpha ≥ 0.5), annotator 2 a smoother one (the masks
  opened and closed by a disk of radius 2: skips thin parts and notches, as a less careful person would); more
  annotators alternate between the two with the alpha threshold moved;
- ``masks/<split>/<name>.png`` — the visible-object label map (0 background, k = the k-th pasted object), so the
  same set also serves the mask-folder layout (``data.name: masks``).

Stamps are split by name (`split_stamps`, a stamp and its ``_mirror`` copy together): test images show objects
never seen in training. It is the offline stand-in for "my own photos with object outlines" in docs/chapter3.md.
Command: ``imagexplore data export-edges --out DIR [--train 48 --test 24 --size 320x240 --seed 0]``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.morphology import disk

from imagexplore.errors import ConfigError, DataError

TEXTURES = ("brick", "grass", "gravel")
SKIPPED_CATEGORIES = ("symbols", "cartoon")  # letters/coins and drawings: not photos


def photo_stamps(root: str | os.PathLike | None = None) -> list[Path]:
    """Tux Paint stamps that are photo cut-outs with transparency (sorted), outside symbols/ and cartoon/."""
    from imagexplore.data.images import list_images
    from imagexplore.matching.data import TUXPAINT_STAMPS

    root = TUXPAINT_STAMPS if root is None else Path(root)
    if not root.is_dir():
        raise DataError(f"{root} not found: install Debian tuxpaint-stamps-default (run `make data`)")
    return sorted(
        p
        for p in list_images(root)
        if p.suffix.lower() == ".png" and not set(SKIPPED_CATEGORIES) & set(p.relative_to(root).parts)
    )


def split_stamps(stamps: list[Path], test_share: float = 0.2) -> tuple[list[Path], list[Path]]:
    """(train+val stamps, test stamps): the ``test_share`` of names with the lowest SHA-1 (at least one each)
    go to test, so held-out images show objects never trained on; a stamp and its ``_mirror`` copy stay
    together. Depends on the names only: the same on every machine."""
    keys = sorted(
        {p.stem.removesuffix("_mirror") for p in stamps}, key=lambda k: hashlib.sha1(k.encode()).digest()
    )
    if len(keys) < 2:
        raise DataError(
            f"need at least 2 cut-out stamps (one to train on, one to test on), found {len(keys)}"
        )
    test = set(keys[: min(len(keys) - 1, max(1, round(test_share * len(keys))))])
    split = [p.stem.removesuffix("_mirror") in test for p in stamps]
    return [p for p, t in zip(stamps, split) if not t], [p for p, t in zip(stamps, split) if t]


def _texture(name: str) -> np.ndarray:
    import skimage.data

    tex = np.asarray(getattr(skimage.data, name)(), np.float32)
    return (tex.mean(axis=2) if tex.ndim == 3 else tex) / 255.0


def _background(rng: np.random.Generator, textures: list[np.ndarray], h: int, w: int) -> np.ndarray:
    """A random crop (scale 0.3–1 of the photo) of a texture, resized to h×w, mapped between two colours."""
    tex = textures[rng.integers(len(textures))]
    th, tw = tex.shape
    scale = rng.uniform(0.3, 1.0)
    ch = max(16, int(min(th, tw * h / w) * scale))
    cw = max(16, int(ch * w / h))
    y, x = rng.integers(0, th - ch + 1), rng.integers(0, tw - cw + 1)
    crop = Image.fromarray((tex[y : y + ch, x : x + cw] * 255).astype(np.uint8)).resize(
        (w, h), Image.BILINEAR
    )
    g = np.asarray(crop, np.float32)[..., None] / 255.0
    if rng.random() < 0.5:
        g = g[:, ::-1]
    dark, light = rng.uniform(0.0, 0.45, 3), rng.uniform(0.55, 1.0, 3)
    return (dark + (light - dark) * g).astype(np.float32)


def _stamp(path: Path, rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(RGB float H'×W'×3, alpha float H'×W') of a stamp scaled to 30–70 % of the canvas height, or None when
    it has no transparency (not a cut-out)."""
    with Image.open(path) as im:
        if "A" not in im.getbands() and "transparency" not in im.info:
            return None
        im = im.convert("RGBA")
        box = im.getchannel("A").getbbox()
        if box is None:
            return None
        im = im.crop(box)
        target_h = rng.uniform(0.3, 0.7) * h
        f = min(target_h / im.height, 0.8 * w / im.width)
        size = (max(8, round(im.width * f)), max(8, round(im.height * f)))
        arr = np.asarray(im.resize(size, Image.LANCZOS), np.float32) / 255.0
    if rng.random() < 0.5:
        arr = arr[:, ::-1]
    return arr[..., :3], np.clip(arr[..., 3], 0.0, 1.0)


def _boundaries(labels: np.ndarray) -> np.ndarray:
    from imagexplore.edges.labels import mask_boundaries

    return mask_boundaries(labels, ignore_index=None)


def _smooth(masks: list[np.ndarray], radius: int) -> list[np.ndarray]:
    se = disk(radius).astype(bool)
    r = radius + 1  # pad by replication: objects cut by the frame must not get a boundary along it
    out = []
    for m in masks:
        p = np.pad(m, r, mode="edge")
        out.append(ndi.binary_closing(ndi.binary_opening(p, se), se)[r:-r, r:-r])
    return out


def _label_map(masks: list[np.ndarray], shape) -> np.ndarray:
    out = np.zeros(shape, np.uint8)
    for k, m in enumerate(masks, 1):  # later objects occlude earlier ones
        out[m] = k
    return out


def _scene(rng, stamps, textures, h, w, annotators):
    img = _background(rng, textures, h, w)
    alphas: list[np.ndarray] = []
    for _ in range(int(rng.integers(1, 4))):
        for _attempt in range(10):
            got = _stamp(stamps[rng.integers(len(stamps))], rng, h, w)
            if got is not None:
                break
        else:
            raise DataError("no stamp with transparency found after 10 tries")
        rgb, a = got
        sh, sw = a.shape
        y = int(rng.integers(-sh // 4, h - 3 * sh // 4 + 1))
        x = int(rng.integers(-sw // 4, w - 3 * sw // 4 + 1))
        full_a = np.zeros((h, w), np.float32)
        full_rgb = np.zeros((h, w, 3), np.float32)
        ys, xs = slice(max(y, 0), min(y + sh, h)), slice(max(x, 0), min(x + sw, w))
        sy, sx = slice(ys.start - y, ys.stop - y), slice(xs.start - x, xs.stop - x)
        full_a[ys, xs], full_rgb[ys, xs] = a[sy, sx], rgb[sy, sx]
        img = img * (1 - full_a[..., None]) + full_rgb * full_a[..., None]
        alphas.append(full_a)
    labels = _label_map([a >= 0.5 for a in alphas], (h, w))
    planes = []
    for k in range(annotators):  # 1: exact outline; 2: smoother; further ones move the alpha threshold
        thr = (0.5, 0.5, 0.3, 0.7)[k % 4]
        masks = [a >= thr for a in alphas]
        if k % 2 == 1:
            masks = _smooth(masks, 2)
        planes.append(_boundaries(_label_map(masks, (h, w))))
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), labels, planes


def _write_mat(path: Path, planes: list[np.ndarray], labels: np.ndarray) -> None:
    import scipy.io as sio

    cell = np.empty((1, len(planes)), dtype=object)
    for k, b in enumerate(planes):
        cell[0, k] = {"Segmentation": labels.astype(np.uint16) + 1, "Boundaries": b.astype(np.uint8)}
    sio.savemat(path, {"groundTruth": cell}, do_compression=True)


def make_cutout_edges(
    out: str | os.PathLike,
    *,
    train: int = 48,
    val: int = 0,
    test: int = 24,
    size: tuple[int, int] = (320, 240),
    annotators: int = 2,
    seed: int = 0,
    stamps_root: str | os.PathLike | None = None,
) -> dict[str, int]:
    """Write the cut-out edge set (module docstring) under ``out``; returns {split: images written}.

    ``size`` is (width, height). Image ``i`` of a split is a function of (seed, split, i) only."""
    w, h = (int(v) for v in size)
    if min(w, h) < 32:
        raise ConfigError(f"size must be at least 32×32, got {w}×{h}")
    if annotators < 1:
        raise ConfigError(f"annotators must be >= 1, got {annotators}")
    counts = {"train": train, "val": val, "test": test}
    if any(n < 0 for n in counts.values()) or not any(counts.values()):
        raise ConfigError(f"image counts must be >= 0 and not all zero, got {counts}")
    train_stamps, test_stamps = split_stamps(photo_stamps(stamps_root))
    textures = [_texture(n) for n in TEXTURES]
    root = Path(out)
    written = {}
    for split, n in counts.items():
        if not n:
            continue
        pool = test_stamps if split == "test" else train_stamps
        for sub in ("images", "groundTruth", "masks"):
            (root / sub / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            rng = np.random.default_rng([seed, ("train", "val", "test").index(split), i])
            img, labels, planes = _scene(rng, pool, textures, h, w, annotators)
            name = f"{split}_{i:04d}"
            Image.fromarray(img).save(root / "images" / split / f"{name}.jpg", quality=92)
            Image.fromarray(labels).save(root / "masks" / split / f"{name}.png")
            _write_mat(root / "groundTruth" / split / f"{name}.mat", planes, labels)
        written[split] = n
    return written
