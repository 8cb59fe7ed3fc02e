"""CIFAR-10 / CIFAR-100 from the official "python version" archives, read in place.

Accepted ``root`` (any of):

- the archive itself: ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` (read with `tarfile`, nothing
  is extracted to disk);
- the extracted folder: ``cifar-10-batches-py/`` (``data_batch_1`` … ``data_batch_5``, ``test_batch``,
  ``batches.meta``) or ``cifar-100-python/`` (``train``, ``test``, ``meta``);
- a folder that contains one of the above (the extracted folder wins over the archive: it is faster).

Pixel layout of the official files: each row of ``data`` is 3072 uint8 values — the 1024 red values of the
32×32 image in row-major order, then the 1024 green, then the 1024 blue — so ``data.reshape(N, 3, 32, 32)`` is
already C×H×W.

Trust note: the official files are Python pickles (``pickle.load(f, encoding="bytes")`` of dicts holding numpy
arrays and lists). Give only the official archive. As a second line of defence the unpickler here refuses every
object type except the numpy array/dtype reconstructors those files use, so a tampered file raises `DataError`
instead of running code.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np
import torch

from imagexplore.data.images import UInt8ImageDataset
from imagexplore.data.pickles import load_numpy_pickle
from imagexplore.errors import ConfigError, DataError

# Official archive name, the folder inside it, and its train / test / meta files, per variant.
_LAYOUT = {
    10: dict(
        archive="cifar-10-python.tar.gz",
        folder="cifar-10-batches-py",
        train=[f"data_batch_{i}" for i in range(1, 6)],
        test=["test_batch"],
        meta="batches.meta",
    ),
    100: dict(
        archive="cifar-100-python.tar.gz",
        folder="cifar-100-python",
        train=["train"],
        test=["test"],
        meta="meta",
    ),
}


def _unpickle(data: bytes, where: str) -> dict:
    try:
        obj = load_numpy_pickle(data, encoding="bytes")
    except Exception as exc:
        raise DataError(f"cannot read CIFAR file {where}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, dict):
        raise DataError(f"cannot read CIFAR file {where}: expected a pickled dict, got {type(obj).__name__}")
    # Keys are bytes in the official files (Python 2 str); accept str keys too (re-pickled copies).
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _names(values, where: str) -> list[str]:
    try:
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]
    except Exception as exc:
        raise DataError(f"cannot read class names in CIFAR file {where}: {exc}") from exc


def _layout_message(root: Path, num_classes: int) -> str:
    lay = _LAYOUT[num_classes]
    inside = "data_batch_1..5, test_batch and batches.meta" if num_classes == 10 else "train, test and meta"
    return (
        f"CIFAR-{num_classes} not found at {root}: expected {lay['archive']} or a folder "
        f"{lay['folder']}/ with {inside}"
    )


def _locate(root: Path, num_classes: int) -> tuple[str, Path]:
    """Return ("folder", path) or ("archive", path) for the given root, or raise DataError."""
    lay = _LAYOUT[num_classes]
    if root.is_file():
        if tarfile.is_tarfile(root):
            return "archive", root
        raise DataError(
            f"{root} is not a tar archive: expected {lay['archive']} (the official python version)"
        )
    if root.is_dir():
        needed = [*lay["train"], *lay["test"], lay["meta"]]
        for folder in (root, root / lay["folder"]):
            if folder.is_dir() and any((folder / n).is_file() for n in needed):
                missing = [n for n in needed if not (folder / n).is_file()]
                if missing:
                    raise DataError(
                        f"CIFAR-{num_classes} folder {folder} is incomplete: missing {', '.join(missing)}"
                    )
                return "folder", folder
        if (root / lay["archive"]).is_file():
            return "archive", root / lay["archive"]
    raise DataError(_layout_message(root, num_classes))


def _read_files(kind: str, path: Path, names: list[str], num_classes: int) -> dict[str, bytes]:
    """Raw bytes of the named files, from the folder or from the archive in a single sequential pass."""
    if kind == "folder":
        return {n: (path / n).read_bytes() for n in names}
    lay = _LAYOUT[num_classes]
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:  # one pass over the (gzip) stream; members are matched by base name
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in names and base not in found:
                    f = tar.extractfile(member)
                    if f is not None:
                        found[base] = f.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"cannot read CIFAR archive {path}: {exc}") from exc
    missing = [n for n in names if n not in found]
    if missing:
        raise DataError(
            f"CIFAR archive {path} lacks {', '.join(missing)}: expected the official {lay['archive']} "
            f"(members {lay['folder']}/...)"
        )
    return found


class CIFAR(UInt8ImageDataset):
    """CIFAR-10 or CIFAR-100 (``num_classes`` 10 or 100), ``split`` "train" (50,000) or "test" (10,000).

    Items: ``(float32 3×32×32 in [0, 1], label)``. For CIFAR-100, ``labels="coarse"`` gives the 20 superclasses
    instead of the 100 fine classes. Class names come from the meta file. See the module docstring for the
    accepted ``root`` layouts and the trust note on pickle.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        num_classes: int = 10,
        *,
        labels: str = "fine",
        transform=None,
        image_size: int | None = None,
    ):
        if num_classes not in _LAYOUT:
            raise ConfigError(f"CIFAR num_classes must be 10 or 100, got {num_classes!r}")
        if split not in ("train", "test"):
            raise ConfigError(f"CIFAR split must be 'train' or 'test', got {split!r}")
        if labels not in ("fine", "coarse") or (labels == "coarse" and num_classes != 100):
            raise ConfigError(f"CIFAR labels must be 'fine' (or 'coarse' for CIFAR-100), got {labels!r}")
        root = Path(root).expanduser()
        lay = _LAYOUT[num_classes]
        kind, path = _locate(root, num_classes)
        files = lay[split]
        raw = _read_files(kind, path, [*files, lay["meta"]], num_classes)

        if num_classes == 10:
            label_key, names_key = "labels", "label_names"
        else:
            label_key, names_key = f"{labels}_labels", f"{labels}_label_names"

        meta = _unpickle(raw[lay["meta"]], f"{path}:{lay['meta']}")
        if names_key not in meta:
            raise DataError(f"CIFAR meta file {path}:{lay['meta']} has no {names_key!r} entry")
        classes = _names(meta[names_key], f"{path}:{lay['meta']}")

        datas, labs = [], []
        for name in files:
            where = f"{path}:{name}" if kind == "archive" else str(path / name)
            batch = _unpickle(raw.pop(name), where)
            if "data" not in batch or label_key not in batch:
                raise DataError(
                    f"CIFAR batch {where} lacks 'data' or {label_key!r}: not an official CIFAR file"
                )
            data = np.asarray(batch["data"])
            lab = np.asarray(batch[label_key], dtype=np.int64).reshape(-1)
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(lab) != len(data):
                raise DataError(
                    f"CIFAR batch {where}: expected uint8 data N×3072 and N labels, "
                    f"got {data.dtype} {data.shape} and {len(lab)} labels"
                )
            datas.append(data)
            labs.append(lab)
        data = np.concatenate(datas)
        lab = np.concatenate(labs)
        if len(lab) and (lab.min() < 0 or lab.max() >= len(classes)):
            raise DataError(f"CIFAR labels in {path} fall outside 0..{len(classes) - 1}")

        # 1024 R, 1024 G, 1024 B, each row-major 32×32 → N×3×32×32 without copying.
        images = torch.from_numpy(np.ascontiguousarray(data.reshape(-1, 3, 32, 32)))
        super().__init__(images, torch.from_numpy(lab), classes, transform=transform, image_size=image_size)
        self.root = path
        self.split = split
