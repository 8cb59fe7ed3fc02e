"""The matching task on the shared engine: (image feature, caption feature, image id) batches → two embeddings →
a ranking loss; evaluation gathers every caption's embeddings and scores R@K both ways (image ids dedupe the
images, so any number of captions per image works)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from imagexplore.config import AtLeastOne, NonNegative
from imagexplore.engine.evaluators import GatheringEvaluator
from imagexplore.engine.trainer import Task
from imagexplore.errors import ConfigError


@dataclass
class MatchLossConfig:
    """`loss:` of a match config. bi_rank is the thesis' loss [released]; vsepp_sum / vsepp_max the VSE++
    baselines (sum of hinges / hardest negative)."""

    name: Literal["bi_rank", "vsepp_sum", "vsepp_max"] = "bi_rank"
    margin: Annotated[float | None, NonNegative] = (
        None  # None: the loss's own default (0.1 bi-rank, 0.2 VSE++)
    )
    k: Annotated[int, AtLeastOne] = 50  # bi-rank: hardest violators kept per anchor and direction
    alphas: list[float] = field(default_factory=lambda: [1.0, 0.5, 2.0, 1.0])  # bi-rank α1..α4

    def build(self):
        from imagexplore.matching.losses import make_loss

        options: dict[str, Any] = {}
        if self.margin is not None:
            options["margin"] = self.margin
        if self.name == "bi_rank":
            if len(self.alphas) != 4:
                raise ConfigError(f"loss.alphas needs 4 values (α1..α4); got {len(self.alphas)}")
            options.update(k=self.k, alphas=tuple(float(a) for a in self.alphas))
        return make_loss(self.name, **options)


@dataclass
class MatchEvaluationConfig:
    """`evaluation:` of a match config."""

    chunk: Annotated[int, AtLeastOne] = 2048  # captions scored at a time (bounded memory)


class PairFeatures(Dataset):
    """Caption-level pairs of a feature cache: item i = (its image's feature, caption i's feature, image id).
    The features are read into memory once (float32 tensors); the cache stays memory-mapped on disk. For a
    `tokens` cache the caption item is (word ids, length), read by the model's own GRU."""

    def __init__(self, cache):
        self.cache = cache
        self.image_feats = torch.from_numpy(np.array(cache.image_feats, dtype=np.float32))
        self.tokens = cache.text_kind == "tokens"
        if self.tokens:
            self.text_feats = torch.from_numpy(np.array(cache.text_feats, dtype=np.int64))
            self.text_lengths = torch.from_numpy(np.array(cache.text_lengths, dtype=np.int64))
        else:
            self.text_feats = torch.from_numpy(np.array(cache.text_feats, dtype=np.float32))
        self.caption_image = torch.as_tensor(np.asarray(cache.caption_image), dtype=torch.long)
        self.groups = self.caption_image.tolist()  # for a GroupedEpochSampler

    def __len__(self) -> int:
        return len(self.caption_image)

    def __getitem__(self, i):
        j = self.caption_image[i]
        text = (self.text_feats[i], self.text_lengths[i]) if self.tokens else self.text_feats[i]
        return self.image_feats[j], text, j

    @property
    def image_dim(self) -> int:
        return self.image_feats.shape[1]

    @property
    def text_dim(self) -> int:
        """The caption features' width, or for word ids the vocabulary size."""
        return int(self.cache.text_spec["dim"]) if self.tokens else self.text_feats.shape[1]


def text_inputs(cache):
    """What a model's text side reads from a FeatureCache: features, or (word ids, lengths)."""
    if cache.text_kind == "tokens":
        return np.asarray(cache.text_feats), np.asarray(cache.text_lengths)
    return cache.text_feats


def dedupe_images(img: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """One embedding per image id (its first caption's row; in eval mode every row of an image is the same) and
    each caption's image row in that list."""
    uniq, first, inverse = np.unique(ids.numpy(), return_index=True, return_inverse=True)
    return img[torch.as_tensor(first)], inverse.astype(np.int64)


class MatchRecall(GatheringEvaluator):
    """R@1/5/10 image→text and text→image, median and mean rank, R@sum over the whole evaluation split."""

    def __init__(self, chunk: int = 2048):
        self.chunk = chunk
        self.reset()

    def update(self, img: torch.Tensor, txt: torch.Tensor, image_ids: torch.Tensor) -> None:
        self.keep(img=img.float(), txt=txt.float(), ids=image_ids.long())

    def _compute_all(self, indices, results):
        from imagexplore.matching.metrics import embedding_recalls

        images, caption_image = dedupe_images(results["img"], results["ids"])
        return embedding_recalls(images, results["txt"], caption_image, chunk=self.chunk)


class MatchingTask(Task):
    def __init__(self, loss_fn, meta: dict[str, Any], chunk: int = 2048, sampler: str = "shuffle"):
        self.loss_fn, self.meta, self.chunk, self.sampler = loss_fn, meta, chunk, sampler

    def build_train_sampler(self, dataset, *, seed: int, rank: int, world_size: int):
        if self.sampler != "grouped":
            return None  # the thesis' caption-level shuffle: the losses know the image ids
        from imagexplore.engine.sampler import GroupedEpochSampler

        return GroupedEpochSampler(
            dataset.groups, self.meta["batch_size"], seed=seed, rank=rank, world_size=world_size
        )

    def training_step(self, model, batch, optimizer):
        img, txt, ids = batch
        a, b = model(img, txt)
        loss = self.loss_fn(a, b, ids)
        return loss, {"loss": float(loss.detach())}

    def evaluators(self):
        return {"": MatchRecall(self.chunk)}

    def evaluation_step(self, model, batch, evaluators):
        img, txt, ids = batch
        a, b = model(img, txt)
        evaluators[""].update(a, b, ids)

    def checkpoint_meta(self) -> dict[str, Any]:
        return dict(self.meta)
