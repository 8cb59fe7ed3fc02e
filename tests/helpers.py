"""Small shared fixtures for the engine tests: a learnable synthetic dataset and config builder."""

from __future__ import annotations

import contextlib

import torch
from torch.utils.data import Dataset

from imagexplore.config import load_config


class BlobDataset(Dataset):
    """Images whose class is the quadrant holding a bright blob: learnable, deterministic, tiny."""

    def __init__(self, n: int = 256, size: int = 16, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, 4, (n,), generator=g)
        x = torch.rand(n, 3, size, size, generator=g) * 0.3
        h = size // 2
        for i, c in enumerate(self.y.tolist()):
            r, col = divmod(c, 2)
            x[i, :, r * h : r * h + h, col * h : col * h + h] += 0.7
        self.x = x
        self.classes = ["tl", "tr", "bl", "br"]
        self.num_classes, self.in_chans = 4, 3

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def quick_cfg(*overrides: str):
    base = [
        "data.batch_size=32",
        "train.epochs=2",
        "optim.lr=0.05",
        "schedule.warmup_iters=2",
        "train.log_every=4",
        "train.tensorboard=false",
        "model.kwargs={width: 8, depth: 2, dropout: 0.2}",
    ]
    return load_config(None, base + list(overrides))


@contextlib.contextmanager
def single_thread():
    # Tiny convs on a shared 2-core machine run many times faster on one thread than on two.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


# A classification run small enough for a test: shapes baseline config, 256 scenes, one epoch, CPU.
TINY_RUN = [
    "data.train_samples=256",
    "data.val_samples=64",
    "data.batch_size=32",
    "train.epochs=1",
    "train.tensorboard=false",
    "train.device=cpu",
]


def tiny_classifier_cfg(*overrides: str):
    return load_config("classify/shapes_baseline_quick.yaml", [*TINY_RUN, *overrides])


# The small shapes caption set every end-to-end matching test trains on (`--set` overrides of a match config):
# the same scenes and encoders, so the session's shared feature cache extracts them once.
MATCH_SHAPES = [
    "data.options={num_images: {train: 120, val: 30, test: 40}, size: 48}",
    "data.batch_size=64",
    "data.eval_batch_size=400",
    "train.iterations=150",
    "train.eval_every_iters=150",
    "schedule.milestones=[100]",
    "train.tensorboard=false",
    "train.log_every=50",
]
