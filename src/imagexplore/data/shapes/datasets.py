"""Torch datasets over the shapes world: a split is a disjoint range of scene indices; tensors are in [0, 1]."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from imagexplore.data.shapes.world import IGNORE_INDEX, ShapesWorld
from imagexplore.errors import ConfigError

SPLIT_OFFSETS: dict[str, int] = {"train": 0, "val": 10_000_000, "test": 20_000_000}
# The `ShapesWorld` options a dataset (and a config's data.options) may set.
WORLD_OPTIONS = {"num_classes", "max_objects", "min_objects", "textures", "backgrounds", "num_annotators"}


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """H×W×3 (or H×W) uint8 → float32 C×H×W in [0, 1].

    Converted in numpy: torch would run this small op through its thread pool, which costs more than the
    work (and stalls badly when the cores are busy training).
    """
    chw = img[None] if img.ndim == 2 else img.transpose(2, 0, 1)
    return torch.from_numpy(chw.astype(np.float32) / np.float32(255))


class ShapesDataset(Dataset):
    """Base: a split of the world (disjoint index ranges), tensors in [0, 1], an optional image transform."""

    def __init__(
        self,
        num_samples: int,
        size: int = 64,
        seed: int = 0,
        split: str = "train",
        transform: Callable | None = None,
        **world_kwargs,
    ):
        if split not in SPLIT_OFFSETS:
            raise ConfigError(f"split must be one of {', '.join(SPLIT_OFFSETS)}, got {split!r}")
        span = SPLIT_OFFSETS["val"] - SPLIT_OFFSETS["train"]
        if not isinstance(num_samples, int | np.integer) or not 1 <= num_samples <= span:
            raise ConfigError(f"num_samples must be an int in [1, {span}], got {num_samples!r}")
        unknown = sorted(set(world_kwargs) - WORLD_OPTIONS)
        if unknown:
            raise ConfigError(
                f"unknown shapes option(s) {unknown}; valid: {', '.join(sorted(WORLD_OPTIONS))}"
            )
        if transform is not None and not callable(transform):
            raise ConfigError(f"transform must be callable, got {type(transform).__name__}")
        self.world = ShapesWorld(seed=seed, size=size, **world_kwargs)
        self.num_samples, self.split, self.transform = int(num_samples), split, transform
        self.offset = SPLIT_OFFSETS[split]
        self.classes: list[str] = list(self.world.classes)
        self.num_classes = len(self.classes)
        self.in_chans = 3

    def __len__(self) -> int:
        return self.num_samples

    def _scene_index(self, idx: int, length: int | None = None) -> int:
        n = len(self) if length is None else length
        if idx < 0:
            idx += n
        if not 0 <= idx < n:
            raise IndexError(f"index {idx} out of range for {type(self).__name__} of length {n}")
        return self.offset + int(idx)

    def _image(self, img: np.ndarray) -> torch.Tensor:
        t = to_tensor(img)
        return self.transform(t) if self.transform is not None else t

    def __repr__(self) -> str:
        return f"{type(self).__name__}(len={len(self)}, split={self.split!r}, {self.world!r})"


class ShapesClassification(ShapesDataset):
    """(image 3×H×W float, label int): the class of the largest visible object."""

    def __getitem__(self, idx):
        s = self.world.render(self._scene_index(idx), ("image", "label"))
        return self._image(s["image"]), s["label"]


class ShapesSegmentation(ShapesDataset):
    """(image, mask LongTensor H×W: 0 background, k+1 class k, 255 ignore); num_classes = C + 1."""

    ignore_index = IGNORE_INDEX

    def __init__(
        self, num_samples: int, size: int = 64, seed: int = 0, split: str = "train", transform=None, **kw
    ):
        super().__init__(num_samples, size, seed, split, transform, **kw)
        self.classes = ["background", *self.classes]
        self.num_classes = len(self.classes)

    def __getitem__(self, idx):
        s = self.world.render(self._scene_index(idx), ("image", "mask"))
        return self._image(s["image"]), torch.from_numpy(s["mask"].astype(np.int64))


class ShapesEdges(ShapesDataset):
    """(image, edges float H×W) or, with ``annotators=True``, (image, annotator maps bool A×H×W)."""

    def __init__(
        self,
        num_samples: int,
        size: int = 64,
        seed: int = 0,
        split: str = "train",
        transform=None,
        annotators: bool = False,
        **kw,
    ):
        super().__init__(num_samples, size, seed, split, transform, **kw)
        self.annotators = bool(annotators)

    def __getitem__(self, idx):
        key = "annotators" if self.annotators else "edges"
        s = self.world.render(self._scene_index(idx), ("image", key))
        if self.annotators:
            return self._image(s["image"]), torch.from_numpy(np.stack(s["annotators"]))
        return self._image(s["image"]), torch.from_numpy(s["edges"].astype(np.float32))


class ShapesRetrieval(ShapesDataset):
    """(image, group id): ``views_per_group`` views of each of ``num_groups`` scenes; item = group·V + view."""

    def __init__(
        self,
        num_groups: int,
        views_per_group: int = 4,
        size: int = 64,
        seed: int = 0,
        split: str = "train",
        transform=None,
        **kw,
    ):
        super().__init__(num_groups, size, seed, split, transform, **kw)
        if not isinstance(views_per_group, int) or views_per_group < 1:
            raise ConfigError(f"views_per_group must be a positive int, got {views_per_group!r}")
        self.num_groups, self.views_per_group = int(num_groups), views_per_group

    def __len__(self) -> int:
        return self.num_groups * self.views_per_group

    def __getitem__(self, idx):
        i = self._scene_index(idx) - self.offset
        group, k = divmod(i, self.views_per_group)
        return self._image(self.world.view(self.offset + group, k)["image"]), group


class ShapesCaptions(ShapesDataset):
    """(image, caption str, image index): five caption items per scene; item = scene·5 + caption."""

    captions_per_image = 5

    def __init__(
        self, num_samples: int, size: int = 64, seed: int = 0, split: str = "train", transform=None, **kw
    ):
        super().__init__(num_samples, size, seed, split, transform, **kw)
        self._cache: tuple[int, dict] | None = None  # consecutive items share a scene: render it once

    def __len__(self) -> int:
        return self.num_samples * self.captions_per_image

    def __getitem__(self, idx):
        i = self._scene_index(idx) - self.offset
        image_idx, c = divmod(i, self.captions_per_image)
        if self._cache is None or self._cache[0] != image_idx:
            self._cache = (image_idx, self.world.render(self.offset + image_idx, ("image", "captions")))
        s = self._cache[1]
        return self._image(s["image"]), s["captions"][c], image_idx

    def captions(self, image_idx: int) -> list[str]:
        """The five captions of scene ``image_idx`` of this split."""
        return self.world.render(self._scene_index(image_idx, self.num_samples), ("captions",))["captions"]


PAIR_DIRECTIONS: tuple[str, ...] = ("label2photo", "photo2label", "sketch2photo", "photo2sketch")


class ShapesPairs(ShapesDataset):
    """(input, target) 3×H×W float pairs for image-to-image translation.

    label2photo / photo2label pair `label_rgb` with the photo; sketch2photo / photo2sketch pair the sketch
    (repeated to 3 channels) with the photo. ``transform`` is applied to both tensors (e.g. normalisation).
    """

    def __init__(
        self,
        num_samples: int,
        size: int = 64,
        seed: int = 0,
        split: str = "train",
        transform=None,
        direction: str = "label2photo",
        **kw,
    ):
        if direction not in PAIR_DIRECTIONS:
            raise ConfigError(f"direction must be one of {', '.join(PAIR_DIRECTIONS)}, got {direction!r}")
        super().__init__(num_samples, size, seed, split, transform, **kw)
        self.direction = direction
        self.out_chans = 3

    def __getitem__(self, idx):
        other = "label_rgb" if "label" in self.direction else "sketch"
        s = self.world.render(self._scene_index(idx), ("image", other))
        photo = self._image(s["image"])
        o = to_tensor(s[other])
        if o.shape[0] == 1:
            o = o.expand(3, -1, -1).clone()
        if self.transform is not None:
            o = self.transform(o)
        return (photo, o) if self.direction.startswith("photo") else (o, photo)
