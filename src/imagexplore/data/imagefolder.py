"""A folder of images sorted into one sub-folder per class (the torchvision ``ImageFolder`` convention).

Layout::

    root/
      cat/  001.jpg  002.png  more/003.jpg ...
      dog/  ...

Classes are the sub-folder names, sorted; images are found recursively inside each class folder by suffix
(`imagexplore.data.images.IMAGE_EXTENSIONS`, any case); hidden files and folders are ignored.

Bad files: by default every image is fully decoded once at construction (``verify=True``), so both policies
behave the same way and early: ``on_bad_file="fail"`` raises `DataError` naming the first unreadable file;
``"skip"`` leaves the unreadable files out, counts them in ``num_skipped`` and logs one warning line. For very
large folders (ImageNet) ``verify=False`` skips that scan; a bad file then raises `DataError` when it is loaded,
so it is only allowed with ``on_bad_file="fail"``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from imagexplore.data.images import (
    check_on_bad_file,
    list_images,
    load_image,
    pil_to_tensor,
    resize_center_crop,
    verify_images,
)
from imagexplore.errors import ConfigError, DataError

log = logging.getLogger("imagexplore.data")

_MODES = {3: "RGB", 1: "L"}


def find_classes(root: str | os.PathLike) -> list[str]:
    """The class names of an image-folder dataset: its non-hidden sub-folders, sorted (no images are read)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} not found: expected root/<class>/<images>")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


class ImageFolder(Dataset):
    """Images in ``root/<class>/``; items ``(float32 in_chans×H×W in [0, 1], label)``.

    ``image_size``: resize the shorter side to ``image_size`` (bicubic, antialiased) and take the central
    ``image_size``×``image_size`` crop — no distortion, and equal sizes so items batch. ``None`` keeps each
    image's own size (then batch with size 1 or give a ``transform`` that makes sizes equal).
    ``in_chans``: 3 (RGB) or 1 (grey). ``classes``: use these class names (and their order) instead of the
    sub-folders found, e.g. to give a validation split the training split's label indices; a sub-folder not in
    the list is an error, a listed class without a folder simply has no images.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        image_size: int | None = None,
        on_bad_file: str = "fail",
        in_chans: int = 3,
        *,
        transform=None,
        classes: Sequence[str] | None = None,
        verify: bool = True,
    ):
        check_on_bad_file(on_bad_file)
        if in_chans not in _MODES:
            raise ConfigError(f"in_chans must be 3 (RGB) or 1 (grey), got {in_chans!r}")
        if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
            raise ConfigError(f"image_size must be a positive int or None, got {image_size!r}")
        if not verify and on_bad_file == "skip":
            raise ConfigError(
                "on_bad_file='skip' needs verify=True (bad files are found by decoding them first)"
            )
        root = Path(root).expanduser()
        expected = "expected root/<class>/<images> (one sub-folder per class)"
        if not root.exists():
            raise DataError(f"image folder {root} not found: {expected}")
        if not root.is_dir():
            raise DataError(f"{root} is not a folder: {expected}")

        folders = find_classes(root)
        loose = list_images(root, recursive=False)
        if not folders:
            if loose:
                raise DataError(
                    f"{root} has {len(loose)} images directly inside and no class sub-folders: {expected}"
                )
            raise DataError(f"image folder {root} is empty: {expected}")
        if loose:
            log.warning("ignoring %d images directly in %s (not in a class sub-folder)", len(loose), root)

        if classes is None:
            classes = folders
        else:
            classes = list(classes)
            unknown = sorted(set(folders) - set(classes))
            if unknown:
                raise DataError(
                    f"{root} has class folders not in the given classes: {', '.join(unknown[:5])}"
                )
        class_to_idx = {c: i for i, c in enumerate(classes)}

        samples: list[tuple[Path, int]] = []
        for c in folders:
            samples += [(p, class_to_idx[c]) for p in list_images(root / c)]
        if not samples:
            raise DataError(
                f"no images in the class folders of {root} ({', '.join(folders[:5])}…): {expected}"
            )
        present = {label for _, label in samples}
        empty = [c for c in folders if class_to_idx[c] not in present]
        if empty:
            log.warning("%d class folders in %s hold no images: %s", len(empty), root, ", ".join(empty[:5]))

        self.num_skipped = 0
        self.skipped: list[Path] = []
        if verify:
            good, counter = verify_images([p for p, _ in samples], on_bad_file, _MODES[in_chans], where=root)
            if counter.count:
                keep = set(good)
                samples = [s for s in samples if s[0] in keep]
                self.skipped = [p for p, _ in counter.skipped]
                self.num_skipped = counter.count
            if not samples:
                raise DataError(f"no readable images in {root}: all {self.num_skipped} files were unreadable")

        self.root = root
        self.samples = samples
        self.targets = [label for _, label in samples]
        self.classes = list(classes)
        self.class_to_idx = class_to_idx
        self.num_classes = len(self.classes)
        self.in_chans = in_chans
        self.image_size = image_size
        self.transform = transform
        self.on_bad_file = on_bad_file

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        img = load_image(path, _MODES[self.in_chans])
        if self.image_size is not None:
            img = resize_center_crop(img, self.image_size)
        x = pil_to_tensor(img)
        if self.transform is not None:
            x = self.transform(x)
        return x, label
