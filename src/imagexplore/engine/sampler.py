"""Deterministic, shardable, resumable sampling.

One sampler serves single-process and torchrun runs. The order of epoch e is a permutation seeded by (seed, e),
so a resumed run sees exactly the batches it would have seen; `start` skips the samples already consumed when a
run resumes mid-epoch. Training shards are padded to equal length (every rank takes the same number of steps, so
DDP never hangs); evaluation shards are *not* padded, so each sample is counted exactly once.
"""

from __future__ import annotations

import math
from collections import deque

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    def __init__(
        self,
        n: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
    ):
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size, self.pad = rank, world_size, pad
        self.epoch = 0
        self.start = 0  # samples of this rank's shard to skip (mid-epoch resume)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def _order(self) -> list[int]:
        """The epoch's order of all samples (a permutation seeded by (seed, epoch), or 0..n-1)."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            return torch.randperm(self.n, generator=g).tolist()
        return list(range(self.n))

    def _indices(self) -> list[int]:
        order = self._order()
        if self.pad and self.world_size > 1:
            total = math.ceil(self.n / self.world_size) * self.world_size
            order += order[: total - self.n]
        return order[self.rank :: self.world_size]

    def shard_indices(self) -> list[int]:
        """The dataset indices this rank visits this epoch, in order (after `start`)."""
        return self._indices()[self.start :]

    def shard_len(self) -> int:
        if self.pad and self.world_size > 1:
            return math.ceil(self.n / self.world_size)
        return len(range(self.rank, self.n, self.world_size))

    def __iter__(self):
        return iter(self._indices()[self.start :])

    def __len__(self) -> int:
        return self.shard_len() - self.start


class GroupedEpochSampler(EpochSampler):
    """An `EpochSampler` whose batches never hold two samples of one group (two captions of one image, which
    would be each other's false negatives in a ranking loss).

    The epoch's seeded permutation is reordered greedily: the order is cut into chunks of `batch_size ×
    world_size` (a global batch), and a sample whose group is already in the chunk being filled waits for the
    next one. Each rank's batch is part of one chunk, so it holds distinct groups too — except possibly at the very
    end of an epoch, when fewer distinct groups remain than a chunk needs."""

    def __init__(self, groups, batch_size: int, **kwargs):
        self.groups = [int(g) for g in groups]
        super().__init__(len(self.groups), **kwargs)
        self.chunk = batch_size * self.world_size

    def _order(self) -> list[int]:
        order = super()._order()
        waiting = deque(order)
        out: list[int] = []
        while waiting:
            chunk, seen, later = [], set(), []
            while waiting and len(chunk) < self.chunk:
                i = waiting.popleft()
                (later if self.groups[i] in seen else chunk).append(i)
                seen.add(self.groups[i])
            waiting.extendleft(reversed(later))  # first in line for the next chunk, in their order
            out.extend(chunk)
        return out
