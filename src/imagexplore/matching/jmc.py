"""Joint matching and classification, JMC (thesis ch. 7).

[published] One network: a matching component learns the visual and textual embeddings; a classification
component builds discriminative multimodal representations from them; multi-stage training minimises both
losses. [reconstruction — ours; every choice is a config option]

- **Matching** = the chapter-5 two-branch network (`RRFNet`: `steps` = 0 is the plain net) with its ranking loss
  (bi-rank by default).
- **Classification** = fuse e_v and e_t (`cls_fusion`): `local` (chapter 2's per-dimension fusion, weights 1/2,
  no bias — the default), `concat` (FC over [e_v, e_t]), `sum` (e_v + e_t), `product` (e_v ⊙ e_t), each then
  BN → ReLU (product: BN only), as chapter 2's fusion → FC `cls_hidden` → ReLU → dropout → FC C → softmax; plus, with `aux: true`, one linear classifier on
  each embedding alone (auxiliary, loss weight `loss.aux_weight`).
- `classify: image | text` builds the **unimodal baseline** instead: the classifier reads that one embedding.
- Loss L = w_match · L_match + w_cls · (CE_fused + aux_weight · (CE_image + CE_text)), w_cls = `loss.cls_weight`
  (λ); the **stages** (`train.stages`, e.g. `configs/match/shapes_jmc_quick.yaml`) set `loss_weights: {match,
  cls}` and freeze `^match\\.` as the thesis' algorithm does: (1) matching only, (2) matching frozen, classifier
  trained, (3) everything with L_match + λ L_cls.
- **Accuracy without one modality**: image only = the auxiliary image classifier if there is one, else the fused
  classifier given e_v for both inputs (in the joint space an image's embedding stands in for its caption's);
  text only likewise.
"""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from imagexplore.classification.fusion import Fusion
from imagexplore.errors import ConfigError
from imagexplore.matching.models import RRFNet, _fc
from imagexplore.models import register_model

__all__ = ["CLASSIFY", "CLS_FUSIONS", "JMCNet", "jmc_net"]

CLS_FUSIONS = ("local", "concat", "sum", "product")
CLASSIFY = ("fused", "image", "text")


class JMCNet(nn.Module):
    kind = "jmc"

    def __init__(
        self,
        image_dim: int,
        text_dim: int,
        num_classes: int,
        steps: int = 0,
        hidden: int = 2048,
        dim: int = 512,
        fusion: str = "scalar",
        dropout: float = 0.5,
        cls_fusion: str = "local",
        cls_hidden: int = 512,
        cls_dropout: float = 0.5,
        aux: bool = False,
        classify: str = "fused",
        image_stem: nn.Module | None = None,
        text_stem: nn.Module | None = None,
    ):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ConfigError(f"JMC: num_classes must be an integer >= 2, got {num_classes!r}")
        if cls_fusion not in CLS_FUSIONS:
            raise ConfigError(f"JMC: unknown cls_fusion {cls_fusion!r}; choices: {', '.join(CLS_FUSIONS)}")
        if classify not in CLASSIFY:
            raise ConfigError(f"JMC: unknown classify {classify!r}; choices: {', '.join(CLASSIFY)}")
        if not 0 <= cls_dropout < 1:
            raise ConfigError(f"JMC: cls_dropout must lie in [0, 1), got {cls_dropout!r}")
        self.match = RRFNet(
            image_dim,
            text_dim,
            steps=steps,
            hidden=hidden,
            dim=dim,
            fusion=fusion,
            dropout=dropout,
            image_stem=image_stem,
            text_stem=text_stem,
        )
        self.cls_fusion, self.classify, self.num_classes, self.dim = cls_fusion, classify, num_classes, dim
        # the fused vector is batch-normalised before its ReLU, as chapter 2's fusion (CFN-11: local, init 1/S,
        # no bias → BN → ReLU): the embeddings are L2-normalised (entries ~ 1/√dim), too small to classify from
        if classify == "fused" and cls_fusion in ("local", "concat", "sum"):
            self.fuse = Fusion(cls_fusion, 2, dim, bias=cls_fusion == "concat", bn=True)
        elif classify == "fused":
            self.fuse_bn = nn.BatchNorm1d(dim)
        else:
            self.input_bn = nn.BatchNorm1d(dim)
        self.classifier = nn.Sequential(
            _fc(dim, cls_hidden), nn.ReLU(), nn.Dropout(cls_dropout), _fc(cls_hidden, num_classes)
        )
        self.aux = bool(aux) and classify == "fused"
        if self.aux:
            self.aux_image, self.aux_text = _fc(dim, num_classes), _fc(dim, num_classes)

    # ------------------------------------------------------------------------------------------ matching
    def encode_image(self, x: Tensor) -> Tensor:
        return self.match.encode_image(x)

    def encode_text(self, y: Tensor) -> Tensor:
        return self.match.encode_text(y)

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return self.match(x, y)

    # ------------------------------------------------------------------------------------------ classification
    def fused(self, e_v: Tensor, e_t: Tensor) -> Tensor:
        if self.cls_fusion == "product":
            return self.fuse_bn(e_v * e_t)
        return self.fuse([e_v, e_t])

    def logits(self, e_v: Tensor | None, e_t: Tensor | None) -> dict[str, Tensor]:
        """Class scores from what is given: `fused` (both), `image` (e_v alone), `text` (e_t alone)."""
        out: dict[str, Tensor] = {}
        if self.classify != "fused":
            e = e_v if self.classify == "image" else e_t
            if e is not None:
                out[self.classify] = self.classifier(self.input_bn(e))
            return out
        if e_v is not None and e_t is not None:
            out["fused"] = self.classifier(self.fused(e_v, e_t))
        if e_v is not None:
            out["image"] = self.aux_image(e_v) if self.aux else self.classifier(self.fused(e_v, e_v))
        if e_t is not None:
            out["text"] = self.aux_text(e_t) if self.aux else self.classifier(self.fused(e_t, e_t))
        return out

    def predict_image(self, x: Tensor) -> Tensor:
        """Class probabilities of image features alone (B×C)."""
        return F.softmax(self.logits(self.encode_image(x), None)["image"], dim=1)


@register_model(task="match")
def jmc_net(image_dim: int, text_dim: int, num_classes: int = 0, **kwargs) -> JMCNet:
    """Joint matching + classification: the ch. 5 two-branch net and a classifier on its fused embeddings (ch. 7).
    num_classes comes from the training set's labels; options as `JMCNet` (steps, hidden, dim, cls_fusion,
    cls_hidden, cls_dropout, aux, classify, ...)."""
    return JMCNet(image_dim, text_dim, num_classes, **kwargs)


def jmc_loss(
    model, outputs, labels: Tensor, image_ids, rank_loss, weights: dict[str, float], aux_weight: float
):
    """w_match · L_match + w_cls · (CE_fused + aux_weight · (CE_image + CE_text)) and its terms for the log.
    A term whose weight is 0 is not computed (stage 1 does no classifier work, stage 2 no ranking)."""
    e_v, e_t = outputs
    total = e_v.new_zeros(())
    logs: dict[str, float] = {}
    if weights["match"]:
        lm = rank_loss(e_v, e_t, image_ids)
        total = total + weights["match"] * lm
        logs["match"] = float(lm.detach())
    if weights["cls"]:
        logits = model.logits(e_v, e_t)
        keep = labels >= 0  # a caption set may have unlabelled images
        key = "fused" if model.classify == "fused" else model.classify
        ce = F.cross_entropy(logits[key][keep], labels[keep]) if keep.any() else total * 0
        if model.aux and aux_weight and keep.any():
            ce = ce + aux_weight * (
                F.cross_entropy(logits["image"][keep], labels[keep])
                + F.cross_entropy(logits["text"][keep], labels[keep])
            )
        total = total + weights["cls"] * ce
        logs["cls"] = float(ce.detach())
    return total, logs
