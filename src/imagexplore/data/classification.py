"""One entry point for every classification dataset: `build_classification_dataset(name, split, ...)`.

Every dataset it returns yields ``(float32 C×H×W in [0, 1], int label)`` and has ``classes``, ``num_classes``,
``in_chans``, ``transform`` and ``num_skipped``. Splits are "train", "val" and "test"; for datasets that only
have a test split (CIFAR, Fashion-MNIST, digits) "val" means "test".
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils.data import Dataset

from imagexplore.data.assets import benchmark_root
from imagexplore.data.images import check_on_bad_file
from imagexplore.errors import ConfigError, DataError

CLASSIFICATION_DATASETS: tuple[str, ...] = (
    "shapes",
    "cifar10",
    "cifar100",
    "fashion_mnist",
    "digits",
    "imagefolder",
    "imagenet",
)
SPLITS: tuple[str, ...] = ("train", "val", "test")
SHAPES_DEFAULT_SAMPLES = {"train": 2000, "val": 500, "test": 500}


class SubsetDataset(Dataset):
    """The items ``indices`` of ``dataset``, keeping its dataset attributes (classes, num_classes, in_chans...)."""

    def __init__(self, dataset: Dataset, indices: list[int]):
        self.dataset = dataset
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.dataset[self.indices[index]]

    @property
    def transform(self):
        return getattr(self.dataset, "transform", None)

    @transform.setter
    def transform(self, value) -> None:
        self.dataset.transform = value

    def __getattr__(self, name: str):
        # Only called for attributes not found normally: classes, num_classes, in_chans, num_skipped, root...
        if name in ("dataset", "indices") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


def _split_for_test_only(split: str) -> str:
    return "test" if split in ("val", "test") else "train"


def _folder_split(root: Path, split: str) -> Path:
    """For an image-folder dataset: root/<split> when root has split sub-folders, else root itself."""
    names = {"train": ["train"], "val": ["val", "test"], "test": ["test", "val"]}[split]
    has_splits = (root / "train").is_dir() and ((root / "val").is_dir() or (root / "test").is_dir())
    if not has_splits:
        return root
    for n in names:
        if (root / n).is_dir():
            return root / n
    return root / names[0]  # not reached: has_splits guarantees one of them


def _train_classes(root: Path, split: str) -> list[str] | None:
    """The training split's class list, so that val/test label indices match train's."""
    from imagexplore.data.imagefolder import find_classes

    if split != "train" and (root / "train").is_dir():
        return find_classes(root / "train") or None
    return None


def build_classification_dataset(
    name: str,
    split: str = "train",
    *,
    root: str | os.PathLike | None = None,
    image_size: int | None = None,
    num_samples: int | None = None,
    seed: int = 0,
    on_bad_file: str = "fail",
    options: dict | None = None,
) -> Dataset:
    """Build the ``split`` of dataset ``name`` (one of `CLASSIFICATION_DATASETS`).

    ``options``: extra keyword arguments of the dataset's own class (shapes: the world's ``max_objects``,
    ``textures``, ``backgrounds``, ...; CIFAR: ``labels="coarse"``), from the config's ``data.options``.

    ``root``: where the data lies (CIFAR archive or folder; Fashion-MNIST folder; image folders). Without it,
    CIFAR and ImageNet are looked for under $IMAGEXPLORE_DATA, ~/data and ~/.cache/imagexplore in their
    conventional folder names (see `imagexplore.data.assets`), Fashion-MNIST under $IMAGEXPLORE_DATA and the
    Debian package's path; ``imagefolder`` needs it.
    ``image_size``: output side length (shapes: canvas size, default 32; image folders: shorter-side resize and
    centre crop; in-memory datasets: bilinear resize; ``None`` keeps the native size).
    ``num_samples``: keep only that many items — the first N of a permutation seeded by ``seed`` (for shapes it
    is the number of generated scenes; default 2000 train / 500 val or test).
    ``on_bad_file``: "fail" or "skip" for unreadable files in image folders (see `ImageFolder`).
    """
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if num_samples is not None and (not isinstance(num_samples, int) or num_samples < 1):
        raise ConfigError(f"num_samples must be a positive int or None, got {num_samples!r}")
    check_on_bad_file(on_bad_file)
    options = dict(options or {})
    key = name.lower().replace("-", "_")

    if key == "shapes":
        from imagexplore.data.shapes import ShapesClassification  # lazy: the procedural world is heavy-ish

        n = num_samples if num_samples is not None else SHAPES_DEFAULT_SAMPLES[split]
        ds = _construct(
            ShapesClassification, name, n, size=image_size or 32, seed=seed, split=split, **options
        )
        if not hasattr(ds, "num_skipped"):
            ds.num_skipped = 0  # generated, never skipped: keeps the attribute uniform across datasets
        return ds

    if key in ("cifar10", "cifar100"):
        from imagexplore.data.cifar import CIFAR

        root = root if root is not None else benchmark_root(key)
        if root is None:
            raise DataError(
                f"{name} not found under $IMAGEXPLORE_DATA, ~/data or ~/.cache/imagexplore: give root= the "
                f"official {'cifar-10' if key == 'cifar10' else 'cifar-100'}-python.tar.gz or its extracted folder"
            )
        ds = _construct(
            CIFAR,
            name,
            root,
            _split_for_test_only(split),
            10 if key == "cifar10" else 100,
            image_size=image_size,
            **options,
        )
    elif key == "fashion_mnist":
        from imagexplore.data.fashion_mnist import FashionMNIST

        ds = _construct(
            FashionMNIST, name, root, _split_for_test_only(split), image_size=image_size, **options
        )
    elif key == "digits":
        from imagexplore.data.digits import Digits

        # The 80/20 split stays fixed (seed 0) whatever `seed` is, so runs with different seeds are comparable.
        ds = _construct(Digits, name, _split_for_test_only(split), seed=0, image_size=image_size, **options)
    elif key in ("imagefolder", "imagenet"):
        from imagexplore.data.imagefolder import ImageFolder

        if root is None and key == "imagenet":
            root = benchmark_root("imagenet")
            if root is None:
                raise DataError(
                    "ImageNet not found under $IMAGEXPLORE_DATA, ~/data or ~/.cache/imagexplore: give root= a "
                    "folder with train/<wnid>/ and val/<wnid>/"
                )
        if root is None:
            raise ConfigError(
                f"dataset {name!r} needs a root: a folder of class sub-folders (root/<class>/<images>)"
            )
        root = Path(root).expanduser()
        if key == "imagenet":
            folder = root / ("train" if split == "train" else "val")
            if not folder.is_dir():
                raise DataError(
                    f"ImageNet not found at {root}: expected {folder} with one sub-folder per class "
                    "(e.g. n01440764/), from ILSVRC2012_img_train.tar / ILSVRC2012_img_val.tar"
                )
            classes = _train_classes(root, split)
            # 1.28M files: a full decode scan at start-up costs hours, so only scan when skipping is asked for.
            verify = on_bad_file == "skip"
            try:
                ds = ImageFolder(folder, image_size, on_bad_file, classes=classes, verify=verify)
            except DataError as exc:
                if split != "train" and "no class sub-folders" in str(exc):
                    raise DataError(
                        f"{exc}; the official ILSVRC2012 val images come flat: sort them into one folder per "
                        "class (the usual valprep script) first"
                    ) from exc
                raise
        else:
            folder = _folder_split(root, split)
            classes = _train_classes(root, split) if folder != root else None
            ds = ImageFolder(folder, image_size, on_bad_file, classes=classes)
    else:
        raise ConfigError(
            f"unknown classification dataset {name!r}: valid names are {', '.join(CLASSIFICATION_DATASETS)}"
        )

    if num_samples is not None and num_samples < len(ds):
        g = torch.Generator().manual_seed(seed)
        keep = torch.randperm(len(ds), generator=g)[:num_samples].tolist()
        ds = SubsetDataset(ds, keep)
    return ds


def _construct(cls, name: str, *args, **kwargs):
    """Instantiate a reader; a wrong `data.options` key becomes a one-line ConfigError."""
    try:
        return cls(*args, **kwargs)
    except TypeError as e:
        raise ConfigError(f"data.options for dataset '{name}' not accepted by {cls.__name__}: {e}") from None
