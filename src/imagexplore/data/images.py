"""Safe image loading: every mode Pillow can open becomes an 8-bit RGB or grey image, or a one-line `DataError`.

What `load_image` does with each kind of file (see also docs/data.md):

- grey (``L``), bilevel (``1``) and palette (``P``) images are converted with Pillow's own conversions;
- anything with transparency (``RGBA``, ``LA``, ``PA``, a palette or grey image with a transparent colour) is
  composited onto a **white** background, so cut-outs look like objects on paper rather than on black;
- 16-bit grey (``I;16``, ``I;16B``, ``I;16L``, ``I``) is rescaled to 8 bits by a **fixed** factor, ``v / 257``
  (65535 → 255), not by the image's own range: the same raw value gives the same 8-bit value in every image of a
  dataset, and a dark 16-bit image stays dark. 32-bit ``I`` values are clipped to 0..65535 first; 32-bit float
  (``F``) is taken as 0..1 when its maximum is at most 1, else as 0..255, and clipped;
- ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` are converted with Pillow's conversion to RGB;
- the EXIF orientation of camera photos is applied, so a portrait photo is upright;
- the whole image is decoded at load time (``img.load()``), so a truncated file fails here, naming the file,
  and not later inside a DataLoader worker;
- Pillow's decompression-bomb guard stays on (`PIL.Image.MAX_IMAGE_PIXELS`): an image over twice the limit is
  refused with a `DataError` naming the file (between one and two times the limit Pillow only warns).
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from imagexplore.errors import ConfigError, DataError

log = logging.getLogger("imagexplore.data")

# The suffixes (lower case) that `list_images` treats as images; the torchvision set plus GIF.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".ppm",
    ".pgm",
    ".pbm",
    ".pnm",
    ".tif",
    ".tiff",
    ".webp",
)

ON_BAD_FILE: tuple[str, ...] = ("fail", "skip")
LOAD_MODES: tuple[str, ...] = ("RGB", "L")

_WHITE = {"RGB": (255, 255, 255), "L": 255}


def _to_8bit(img: Image.Image) -> Image.Image:
    """Map 16-bit and 32-bit single-channel images to ``L`` (see the module docstring for the rule)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(img, dtype=np.int64)
        a = np.clip(a, 0, 65535)
        # Rounded division by 257 maps 0..65535 exactly onto 0..255 (65535 = 255 * 257).
        return Image.fromarray(((a + 128) // 257).astype(np.uint8), mode="L")
    if img.mode == "F":
        a = np.asarray(img, dtype=np.float64)
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if a.size and a.max() <= 1.0 else 1.0
        return Image.fromarray(np.clip(np.rint(a * scale), 0, 255).astype(np.uint8), mode="L")
    return img


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Composite images with transparency onto white; return an image without alpha (RGB or L)."""
    if img.mode == "P" or (img.mode in ("L", "RGB") and "transparency" in img.info):
        # A palette or a transparent colour key: let Pillow expand it to a real alpha channel first.
        img = img.convert("RGBA") if img.mode != "L" else img.convert("LA")
    if img.mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        if img.mode in ("RGBa", "La"):  # premultiplied alpha: undo it through Pillow's conversion
            img = img.convert("RGBA" if img.mode == "RGBa" else "LA")
        base_mode = img.mode[:-1]  # "RGB" or "L"
        background = Image.new(base_mode, img.size, _WHITE[base_mode])
        background.paste(img.convert(base_mode), mask=img.getchannel("A"))
        return background
    return img


def convert_mode(img: Image.Image, mode: str = "RGB") -> Image.Image:
    """Convert an opened (decoded) Pillow image of any mode to 8-bit ``mode`` ("RGB" or "L")."""
    if mode not in LOAD_MODES:
        raise ConfigError(f"image mode must be one of {', '.join(LOAD_MODES)}, got {mode!r}")
    img = _to_8bit(img)
    if img.mode == "1":
        img = img.convert("L")
    img = _flatten_alpha(img)
    if img.mode != mode:
        img = img.convert(mode)
    return img


def read_error_reason(exc: BaseException) -> str:
    """A short one-line reason from a Pillow/OS exception."""
    if isinstance(exc, Image.DecompressionBombError):
        return (
            f"too many pixels for PIL.Image.MAX_IMAGE_PIXELS={Image.MAX_IMAGE_PIXELS} "
            "(decompression-bomb guard; raise that limit only for files you trust)"
        )
    if isinstance(exc, Image.UnidentifiedImageError):
        return "not an image file Pillow can identify (empty, corrupt, or another format)"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"


def load_image(path: str | os.PathLike, mode: str = "RGB", min_side: int | None = None) -> Image.Image:
    """Open, fully decode and convert an image file to 8-bit ``mode`` ("RGB" or "L").

    ``min_side``: the caller needs no more than that many pixels on the short side, so a large image is decoded
    smaller — a JPEG at 1/2, 1/4 or 1/8 scale inside the decoder (Pillow's ``draft``, several times faster than
    a full decode of a multi-megapixel photo), then any image with a short side of at least ``2 × min_side``
    box-averaged by an integer factor (``Image.reduce``) — so the short side ends in ``[min_side, 2 min_side)``.
    Images already under ``2 × min_side`` are decoded exactly as without it.

    Raises `DataError` ``cannot read image <path>: <reason>`` for a missing, empty, non-image, truncated or
    over-large file; `ConfigError` for an unsupported ``mode``.
    """
    if mode not in LOAD_MODES:
        raise ConfigError(f"image mode must be one of {', '.join(LOAD_MODES)}, got {mode!r}")
    path = Path(path)
    if path.is_dir():
        raise DataError(f"cannot read image {path}: it is a folder, expected an image file")
    if not path.exists():
        raise DataError(f"cannot read image {path}: file not found")
    try:
        with warnings.catch_warnings():
            # Pillow warns about odd but readable files (e.g. bad EXIF); those are not the user's problem here.
            warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
            with Image.open(path) as opened:
                if min_side and min(opened.size) >= 2 * min_side:
                    scale = min_side / min(opened.size)  # draft keeps every side >= the size asked for
                    opened.draft(None, (math.ceil(opened.width * scale), math.ceil(opened.height * scale)))
                opened.load()  # full decode now: truncation is detected here, not inside a DataLoader worker
                img = opened
                try:
                    img = ImageOps.exif_transpose(opened) or opened
                except Exception:  # a broken EXIF block must not make a good image unreadable
                    pass
                out = convert_mode(img, mode)
                if min_side and min(out.size) >= 2 * min_side:
                    out = out.reduce(min(out.size) // min_side)
                if out is opened:  # closing `opened` below would invalidate it; keep an independent copy
                    out = out.copy()
    except (DataError, ConfigError):
        raise
    except MemoryError as exc:
        raise DataError(f"cannot read image {path}: out of memory while decoding") from exc
    except Exception as exc:
        # Pillow's plugins raise many types for bad files (OSError, SyntaxError, ValueError, struct.error, ...).
        raise DataError(f"cannot read image {path}: {read_error_reason(exc)}") from exc
    if out.width == 0 or out.height == 0:
        raise DataError(f"cannot read image {path}: the image is empty (0 pixels)")
    return out


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """An 8-bit RGB/L Pillow image → float32 tensor C×H×W in [0, 1]."""
    a = torch.from_numpy(np.array(img, dtype=np.uint8))  # a writable copy (a PIL image's array is read-only)
    a = a[None] if a.ndim == 2 else a.permute(2, 0, 1)
    # converting and re-laying out in one pass (1.1-1.2x faster than numpy's copy of the transposed array and a
    # second pass to convert: bench/bench_kernels.py)
    return a.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)


def list_images(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """The image files (by suffix, any case) in ``folder``, sorted by path.

    Hidden files and folders (names starting with ".", e.g. macOS ``._photo.jpg`` resource forks) are ignored.
    Raises `DataError` if ``folder`` does not exist or is not a folder.
    """
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"image folder {folder} not found: expected a folder of images")
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder: expected a folder of images")
    found: list[Path] = []
    if recursive:
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            found += [Path(dirpath, f) for f in filenames if _is_image_name(f)]
    else:
        found = [p for p in folder.iterdir() if p.is_file() and _is_image_name(p.name)]
    return sorted(found)


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def check_on_bad_file(value: str) -> str:
    """Validate an ``on_bad_file`` option ("fail" or "skip")."""
    if value not in ON_BAD_FILE:
        raise ConfigError(f"on_bad_file must be one of {', '.join(ON_BAD_FILE)}, got {value!r}")
    return value


class BadFileCounter:
    """Applies the ``on_bad_file`` policy and counts what was skipped.

    ``"fail"``: `handle` re-raises the error (which names the file). ``"skip"``: it records the file; `report`
    then logs ONE warning line with the count and the first file, on the ``imagexplore.data`` logger.
    """

    def __init__(self, policy: str = "fail", what: str = "images"):
        self.policy = check_on_bad_file(policy)
        self.what = what
        self.skipped: list[tuple[Path, str]] = []

    @property
    def count(self) -> int:
        return len(self.skipped)

    def handle(self, path: str | os.PathLike, error: DataError) -> None:
        if self.policy == "fail":
            raise error
        self.skipped.append((Path(path), str(error)))

    def report(self, where: str | os.PathLike) -> None:
        if self.skipped:
            first = self.skipped[0][1]
            log.warning("skipped %d unreadable %s in %s (first: %s)", self.count, self.what, where, first)


def verify_images(
    paths: Iterable[str | os.PathLike], policy: str = "fail", mode: str = "RGB", where: str | os.PathLike = ""
) -> tuple[list[Path], BadFileCounter]:
    """Fully decode every file; return the readable ones (in order) and the counter of skipped ones.

    With ``policy="fail"`` the first unreadable file raises its `DataError`.
    """
    counter = BadFileCounter(policy)
    good: list[Path] = []
    for p in paths:
        try:
            load_image(p, mode)
        except DataError as exc:
            counter.handle(p, exc)
        else:
            good.append(Path(p))
    counter.report(where)
    return good, counter


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side is ``size`` (bicubic, antialiased), then take the central size×size crop.

    This keeps the aspect ratio (no stretching) and is the usual evaluation preprocessing; random crops and
    flips for training belong in a ``transform``.
    """
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=3.0)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


class UInt8ImageDataset(Dataset):
    """Shared base for in-memory datasets (CIFAR, Fashion-MNIST, digits): uint8 images N×C×H×W + int labels.

    Items are ``(float32 tensor C×H×W in [0, 1], int label)``: the stored values divided by ``max_value``
    (255 for 8-bit images; 16 for scikit-learn's digits, which are 0..16). ``image_size`` (optional) resizes each
    item bilinearly (antialiased) to image_size×image_size before ``transform``; ``transform`` is any callable
    on the tensor (augmentation, normalisation).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | Sequence[int],
        classes: Sequence[str],
        transform=None,
        image_size: int | None = None,
        max_value: float = 255.0,
    ):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"images must be a uint8 tensor N×C×H×W, got {images.dtype} {tuple(images.shape)}"
            )
        self.images = images
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        if len(self.labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(self.labels)} labels")
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        self.in_chans = int(images.shape[1])
        self.transform = transform
        self.image_size = image_size
        self.max_value = float(max_value)
        self.num_skipped = 0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.images[index].float().div_(self.max_value)
        if self.image_size is not None and tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            x = torch.nn.functional.interpolate(
                x[None],
                size=(self.image_size, self.image_size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )[0].clamp_(0.0, 1.0)
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.labels[index])
