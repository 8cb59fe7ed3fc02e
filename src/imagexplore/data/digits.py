"""scikit-learn's handwritten digits (`sklearn.datasets.load_digits`): 1,797 grey 8×8 images, 10 classes.

Shipped inside scikit-learn, so always available offline. The split is a fixed, stratified 80/20 split
(`sklearn.model_selection.train_test_split` with ``random_state=seed``): 1,437 train / 360 test, the same on
every machine for a given seed. Pixel values 0..16 are scaled to [0, 1] (divided by 16, exactly).
"""

from __future__ import annotations

import numpy as np
import torch

from imagexplore.data.images import UInt8ImageDataset
from imagexplore.errors import ConfigError

CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))


class Digits(UInt8ImageDataset):
    """Digits, ``split`` "train" (80 %) or "test" (20 %); items ``(float32 1×8×8 in [0, 1], label)``."""

    def __init__(self, split: str = "train", seed: int = 0, *, transform=None, image_size: int | None = None):
        if split not in ("train", "test"):
            raise ConfigError(f"digits split must be 'train' or 'test', got {split!r}")
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        bunch = load_digits()
        index = np.arange(len(bunch.target))
        train_idx, test_idx = train_test_split(index, test_size=0.2, random_state=seed, stratify=bunch.target)
        idx = np.sort(train_idx if split == "train" else test_idx)
        # The values are integers 0..16: store them as uint8 and divide by 16 on access.
        images = torch.from_numpy(bunch.images[idx].astype(np.uint8)).unsqueeze(1)
        labels = torch.from_numpy(bunch.target[idx].astype(np.int64))
        super().__init__(images, labels, CLASSES, transform, image_size, max_value=16.0)
        self.split = split
        self.seed = seed
