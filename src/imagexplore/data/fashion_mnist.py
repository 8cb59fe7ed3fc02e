"""Fashion-MNIST from its official idx files (plain or gzip), e.g. the Debian package ``dataset-fashion-mnist``.

Layout: a folder with ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``. An idx file is a big-endian header —
magic number (2051 for images, 2049 for labels), the item count, and for images the rows and columns — followed
by raw uint8 values, so the whole file is read with one `numpy.frombuffer`.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from imagexplore.data.images import UInt8ImageDataset
from imagexplore.errors import ConfigError, DataError

CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
SYSTEM_ROOT = Path(
    "/usr/share/datasets/fashion-mnist"
)  # where `apt-get install dataset-fashion-mnist` puts it
_PREFIX = {"train": "train", "test": "t10k"}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049


def default_roots() -> list[Path]:
    """The folders searched when no root is given, in order."""
    roots = []
    if os.environ.get("IMAGEXPLORE_DATA"):
        roots.append(Path(os.environ["IMAGEXPLORE_DATA"]).expanduser() / "fashion-mnist")
    roots.append(SYSTEM_ROOT)
    return roots


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _has_files(folder: Path) -> bool:
    return (
        _find(folder, "train-images-idx3-ubyte") is not None
        or _find(folder, "t10k-images-idx3-ubyte") is not None
    )


def resolve_root(root: str | os.PathLike | None) -> Path:
    """The folder holding the idx files: ``root`` or ``root/fashion-mnist``, or the first default that exists."""
    expected = "expected train-/t10k-{images-idx3,labels-idx1}-ubyte[.gz]"
    if root is not None:
        root = Path(root).expanduser()
        for folder in (root, root / "fashion-mnist"):
            if folder.is_dir() and _has_files(folder):
                return folder
        raise DataError(f"Fashion-MNIST not found at {root}: {expected}")
    for folder in default_roots():
        if folder.is_dir() and _has_files(folder):
            return folder
    tried = ", ".join(str(p) for p in default_roots())
    raise DataError(
        f"Fashion-MNIST not found in {tried}: {expected} (run `make data` or set $IMAGEXPLORE_DATA)"
    )


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read one idx file (uint8 payload) and check its magic number and size against the header."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read idx file {path}: {exc}") from exc
    ndim = magic - 2048  # 2049 → 1-D labels, 2051 → 3-D images
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise DataError(f"idx file {path} is too short ({len(raw)} bytes) for its header")
    head = np.frombuffer(raw, dtype=">u4", count=1 + ndim)
    if int(head[0]) != magic:
        kind = "images" if magic == IMAGES_MAGIC else "labels"
        raise DataError(f"idx file {path} has magic number {int(head[0])}, expected {magic} ({kind}, uint8)")
    shape = tuple(int(v) for v in head[1:])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(
            f"idx file {path} holds {len(raw) - header} bytes of data, its header says {shape} = {expected}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


class FashionMNIST(UInt8ImageDataset):
    """Fashion-MNIST, ``split`` "train" (60,000) or "test" (10,000); items ``(float32 1×28×28 in [0, 1], label)``.

    ``root`` defaults to the first folder with the files among ``$IMAGEXPLORE_DATA/fashion-mnist`` and
    ``/usr/share/datasets/fashion-mnist``.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        split: str = "train",
        *,
        transform=None,
        image_size: int | None = None,
    ):
        if split not in _PREFIX:
            raise ConfigError(f"Fashion-MNIST split must be 'train' or 'test', got {split!r}")
        folder = resolve_root(root)
        prefix = _PREFIX[split]
        paths = {}
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
            p = _find(folder, f"{prefix}-{kind}")
            if p is None:
                raise DataError(
                    f"Fashion-MNIST {split} split incomplete at {folder}: missing {prefix}-{kind}[.gz]"
                )
            paths[kind] = p
        images = read_idx(paths["images-idx3-ubyte"], IMAGES_MAGIC)
        labels = read_idx(paths["labels-idx1-ubyte"], LABELS_MAGIC)
        if len(images) != len(labels):
            raise DataError(
                f"Fashion-MNIST {split} at {folder}: {len(images)} images but {len(labels)} labels"
            )
        if len(labels) and labels.max() >= len(CLASSES):
            raise DataError(f"idx file {paths['labels-idx1-ubyte']} has labels above {len(CLASSES) - 1}")
        # np.frombuffer arrays are read-only; copy once into a tensor (47 MB for the training split).
        tensor = torch.from_numpy(images.copy()).unsqueeze(1)
        super().__init__(tensor, torch.from_numpy(labels.astype(np.int64)), CLASSES, transform, image_size)
        self.root = folder
        self.split = split
