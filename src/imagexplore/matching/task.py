"""The matching task on the shared engine: (image feature, caption feature, image id) batches → two embeddings →
a ranking loss; evaluation gathers every caption's embeddings and scores R@K both ways (image ids dedupe the
images, so any number of captions per image works)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from imagexplore.config import AtLeastOne, NonNegative, Positive
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
    # CycleMatch (ch. 6): L = L_lat + λ_d L_dual + λ_r L_rec, the reconstruction term a ranking or an L1 distance
    dual_weight: Annotated[float, NonNegative] = 1.0
    rec_weight: Annotated[float, NonNegative] = 1.0
    rec_loss: Literal["rank", "l1"] = "rank"
    # JMC (ch. 7): L = w_match L_match + w_cls (CE_fused + aux_weight (CE_image + CE_text)); stages reweight
    match_weight: Annotated[float, NonNegative] = 1.0
    cls_weight: Annotated[float, NonNegative] = 1.0  # λ
    aux_weight: Annotated[float, NonNegative] = 0.5  # the unimodal auxiliary classifiers (model aux: true)

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
    # CycleMatch: the late fusion validation uses (adaptive needs whole rows; average is one dot product)
    fusion: Literal["latent", "dual", "reconstructed", "average", "adaptive"] = "average"
    adaptive_temperature: Annotated[float, Positive] = 1.0


class PairFeatures(Dataset):
    """Caption-level pairs of a feature cache: item i = (its image's feature, caption i's feature, image id).
    The features are read into memory once (float32 tensors); the cache stays memory-mapped on disk. For a
    `tokens` cache the caption item is (word ids, length), read by the model's own GRU."""

    def __init__(self, cache, classes: list[str] | None = None):
        self.cache = cache
        # with `classes` (JMC) an item also carries its image's class index (-1: no label, or a class unseen
        # in training)
        self.classes = classes
        if classes is not None:
            index = {c: k for k, c in enumerate(classes)}
            labels = cache.labels or []
            self.image_labels = torch.tensor([index.get(v, -1) for v in labels] or [-1] * len(cache.images))
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
        if self.classes is not None:
            return self.image_feats[j], text, j, self.image_labels[j]
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
    """R@1/5/10 image→text and text→image, median and mean rank, R@sum over the whole evaluation split; with
    `adaptive` = (space dims, temperature), CycleMatch's adaptive late fusion; given logits and labels (JMC),
    the accuracy of each kind of input as `acc_<kind>` (images counted once, captions once each)."""

    def __init__(self, chunk: int = 2048, adaptive=None):
        self.chunk, self.adaptive = chunk, adaptive
        self.reset()

    def update(self, img, txt, image_ids, logits: dict | None = None, labels=None) -> None:
        kept = {"img": img.float(), "txt": txt.float(), "ids": image_ids.long()}
        if logits is not None:
            kept.update({f"pred_{k}": v.argmax(1) for k, v in logits.items()}, label=labels.long())
        self.keep(**kept)

    def _compute_all(self, indices, results):
        from imagexplore.matching.metrics import embedding_recalls

        images, caption_image = dedupe_images(results["img"], results["ids"])
        if self.adaptive is not None:
            from imagexplore.matching.cyclematch import adaptive_recalls

            dims, temperature = self.adaptive
            out = adaptive_recalls(images, results["txt"], caption_image, dims, temperature, self.chunk)
        else:
            out = embedding_recalls(images, results["txt"], caption_image, chunk=self.chunk)
        if "label" in results:
            out.update(accuracies(results, caption_image))
        return out


def accuracies(results: dict, caption_image: np.ndarray) -> dict[str, float]:
    """acc_fused over captions (each caption with its image), acc_text over captions, acc_image over images;
    labelled items only, in %."""
    labels = results["label"]
    first = np.unique(caption_image, return_index=True)[1]
    out = {}
    for key, pred in results.items():
        if not key.startswith("pred_"):
            continue
        kind = key[5:]
        p, y = (pred[first], labels[first]) if kind == "image" else (pred, labels)
        keep = y >= 0
        out[f"acc_{kind}"] = (
            float(100.0 * (p[keep] == y[keep]).double().mean()) if keep.any() else float("nan")
        )
    return out


class MatchingTask(Task):
    """One task for every matching model: RRF-Net / the plain net (a ranking loss on two embeddings), CycleMatch
    (its cycle loss) and JMC (ranking + classification, reweighted by stage); the model's `kind` says which."""

    def __init__(
        self,
        loss_fn,
        meta: dict[str, Any],
        chunk: int = 2048,
        sampler: str = "shuffle",
        loss_cfg: MatchLossConfig | None = None,
        evaluation: MatchEvaluationConfig | None = None,
    ):
        self.loss_fn, self.meta, self.chunk, self.sampler = loss_fn, meta, chunk, sampler
        self.loss_cfg = loss_cfg or MatchLossConfig()
        self.evaluation = evaluation or MatchEvaluationConfig(chunk=chunk)
        self.kind = meta.get("kind", "rrf")
        self.weights = {"match": self.loss_cfg.match_weight, "cls": self.loss_cfg.cls_weight}

    def enter_stage(self, stage) -> None:
        base = {"match": self.loss_cfg.match_weight, "cls": self.loss_cfg.cls_weight}
        given = dict(stage.loss_weights) if stage is not None else {}
        unknown = sorted(set(given) - set(base))
        if unknown:
            raise ConfigError(f"train.stages loss_weights: unknown term(s) {unknown}; terms: match, cls")
        self.weights = base | {k: float(v) for k, v in given.items()}

    def build_train_sampler(self, dataset, *, seed: int, rank: int, world_size: int):
        if self.sampler != "grouped":
            return None  # the thesis' caption-level shuffle: the losses know the image ids
        from imagexplore.engine.sampler import GroupedEpochSampler

        return GroupedEpochSampler(
            dataset.groups, self.meta["batch_size"], seed=seed, rank=rank, world_size=world_size
        )

    def training_step(self, model, batch, optimizer):
        img, txt, ids = batch[:3]
        net = getattr(model, "module", model)  # under DDP the wrapper's forward, the model's own methods
        if self.kind == "cyclematch":
            from imagexplore.matching.cyclematch import cyclematch_loss

            c = self.loss_cfg
            loss, logs = cyclematch_loss(
                net.cycle(img, txt), ids, self.loss_fn, c.dual_weight, c.rec_weight, c.rec_loss
            )
        elif self.kind == "jmc":
            from imagexplore.matching.jmc import jmc_loss

            loss, logs = jmc_loss(
                net, model(img, txt), batch[3], ids, self.loss_fn, self.weights, self.loss_cfg.aux_weight
            )
        else:
            a, b = model(img, txt)
            loss, logs = self.loss_fn(a, b, ids), {}
        return loss, {"loss": float(loss.detach()), **logs}

    def evaluators(self):
        adaptive = None
        if self.kind == "cyclematch" and self.evaluation.fusion == "adaptive":
            adaptive = (self.meta["space_dims"], self.evaluation.adaptive_temperature)
        return {"": MatchRecall(self.chunk, adaptive)}

    def evaluation_step(self, model, batch, evaluators):
        img, txt, ids = batch[:3]
        net = getattr(model, "module", model)
        if self.kind == "cyclematch":
            from imagexplore.matching.cyclematch import fusion_weights

            net.set_fusion(fusion_weights(self.evaluation.fusion))
        a, b = model(img, txt)
        if self.kind == "jmc":
            evaluators[""].update(a, b, ids, net.logits(a, b), batch[3])
        else:
            evaluators[""].update(a, b, ids)

    def checkpoint_meta(self) -> dict[str, Any]:
        return dict(self.meta)
