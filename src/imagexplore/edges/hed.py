"""Edge networks of chapter 3 (HED, RDS) and chapter 2 (FCFN for edges), one interface for all.

The registry entries (`hed_vgg16`, ...) are in `imagexplore.edges.models`; pretrained weights in
`imagexplore.edges.pretrained`.

**Interface** (what the edge losses, trainer and evaluators rely on): ``model(x)`` takes ``x`` float N×3×H×W, RGB
in [0, 1], any H and W, and returns **logits** N×(S+1)×H×W: channels 0..S−1 are the side outputs (shallow to deep)
at the input size, channel S (the last) the fused output, which is the prediction. Sigmoid is the caller's.
``model.num_sides`` is S (5 on VGG-16). The input normalisation lives in the model (non-persistent buffers, so
state dicts hold only weights), chosen by ``input_space``:

- ``"caffe_bgr"``: flip to BGR, ×255, minus the Caffe VGG mean (104.00699, 116.66877, 122.67892). What HED was
  trained with, so what the ``hed-bsds500`` weights need.
- ``"imagenet"``: RGB minus the ImageNet mean, over its std. What torchvision VGG-16 and timm weights expect.

The default (``input_space=None``) follows the weights the backbone starts from: ``"imagenet"`` when
``vgg_weights``/``pretrained_backbone`` give torchvision/timm weights or the backbone is a timm model,
``"caffe_bgr"`` otherwise (a plain or ``hed-bsds500``-initialised VGG-16).

**HED** [released, thesis ch. 3 "Network"]: VGG-16 conv1_1 … conv5_3 (2×2/2 max pool with ceil mode between
stages, none after conv5), side outputs = a 1×1 conv to 1 channel on conv1_2, conv2_2, conv3_3, conv4_3, conv5_3,
zero-initialised, brought to the input size, and a 1×1 conv over the S side logits (weights 0.2, bias 0) as the
fused output. ``upsample="bilinear"`` (default) interpolates with half-pixel centres (``align_corners=False``),
which is what the TensorFlow package our pretrained port comes from does; ``"deconv"`` is Caffe HED's
bilinear-initialised transposed conv, then a crop. ``rds_vgg16`` is the same network: RDS differs only in its
training labels and loss (relaxed deep supervision), so the name only records how a checkpoint was trained.

**FCFN for edges** (``fusion="fcfn"``) [published: "the fusion replaced by the FCFN fusion"; the rest is
**reconstruction**]: each side branch is a 1×1 conv to K = ``side_channels`` channels + ReLU (default K = 8: a
few channels per side so the per-channel fusion has something to weigh, while staying cheap at full resolution),
brought to the input size, fused per channel with weights shared over pixels and unshared over channels (init
1/S, bias 0, then ReLU: `PixelFusion` ``"local"``, as FCFN for segmentation), then a 1×1 classifier K → 1 (normal
init std 0.01) gives the fused logit. For deep supervision each branch also has its own 1×1 conv K → 1
(zero-initialised, as HED's sides) giving that side's logit — the output keeps the N×(S+1)×H×W layout.

**Backbones**: ``"vgg16"`` (`VGG16Features` of `imagexplore.models.backbones`, shared with segmentation; ``width_mult``/``widths``/``bn`` give
narrow or batch-normalised variants for CPU work) or ``"timm:<name>"`` / any timm model name (`TimmFeatures`,
never downloaded), with a side output on every feature level the model reports (override with ``stages``).

**Parameter names** (for ``optim.param_groups`` regexes): ``backbone.features.<i>.{weight,bias}`` (VGG-16, indices
as torchvision's ``vgg16.features``) or ``backbone.body.*`` (timm); ``sides.<s>.{weight,bias}`` (the side 1×1
convs; HED: the side logits, FCFN: the K-wide branches); ``upsamplers.<s>.deconv.weight`` (``upsample="deconv"``
only); ``fusion.{weight,bias}``; FCFN only: ``side_scores.<s>.*`` and ``classifier.*``. `hed_param_groups` turns
HED's learning-rate multipliers into those rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn

from imagexplore.errors import ConfigError
from imagexplore.models.backbones import build_backbone, vgg16_conv_indices
from imagexplore.segmentation.models import PixelFusion, Upsample

EDGE_FUSIONS = ("conv", "fcfn")
INPUT_SPACES = ("caffe_bgr", "imagenet")
CAFFE_BGR_MEAN = (104.00699, 116.66877, 122.67892)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG_SIDE_STAGES = ("conv1", "conv2", "conv3", "conv4", "conv5")
DEFAULT_FCFN_SIDE_CHANNELS = 8


def _timm_name(backbone: str) -> str:
    return backbone.removeprefix("timm:")


def _timm_feature_levels(name: str) -> tuple[int, ...]:
    """Every feature level a timm model reports (its default ``out_indices``), read off a weightless meta-device
    build so nothing is allocated or initialised twice."""
    import timm

    if not timm.is_model(name):
        raise ConfigError(f"unknown timm backbone '{name}' (see timm.list_models())")
    with torch.device("meta"):
        return tuple(timm.create_model(name, features_only=True, pretrained=False).feature_info.out_indices)


class HED(nn.Module):
    """HED / RDS (``fusion="conv"``) or FCFN-for-edges (``fusion="fcfn"``); see the module docstring."""

    def __init__(
        self,
        backbone: str = "vgg16",
        side_channels: int | None = None,
        fusion: str = "conv",
        upsample: str = "bilinear",
        input_space: str | None = None,
        vgg_weights: str | Path | None = None,
        pretrained_backbone: bool | str | Path = False,
        stages: Sequence | None = None,
        deconv_trainable: bool = True,
        width_mult: float = 1.0,
        widths: Sequence[int] | None = None,
        bn: bool = False,
    ):
        super().__init__()
        if fusion not in EDGE_FUSIONS:
            raise ConfigError(f"edge fusion must be one of {', '.join(EDGE_FUSIONS)}, got {fusion!r}")
        if side_channels is None:
            side_channels = DEFAULT_FCFN_SIDE_CHANNELS if fusion == "fcfn" else 1
        if isinstance(side_channels, bool) or not isinstance(side_channels, int) or side_channels < 1:
            raise ConfigError(f"side_channels must be a positive int, got {side_channels!r}")
        if fusion == "conv" and side_channels != 1:
            raise ConfigError("HED's side outputs are 1-channel logits: set side_channels=1 or fusion='fcfn'")
        if pretrained_backbone is True:
            raise ConfigError(
                "nothing is downloaded: give pretrained_backbone as the path of a local weights file"
            )
        weights = pretrained_backbone or None
        is_vgg = backbone == "vgg16"
        if vgg_weights is not None:
            if not is_vgg:
                raise ConfigError(
                    "vgg_weights is for backbone='vgg16'; use pretrained_backbone for timm backbones"
                )
            if weights is not None:
                raise ConfigError("give either vgg_weights or pretrained_backbone, not both")
            weights = vgg_weights
        if input_space is None:
            input_space = "imagenet" if weights is not None or not is_vgg else "caffe_bgr"
        if input_space not in INPUT_SPACES:
            raise ConfigError(f"input_space must be one of {', '.join(INPUT_SPACES)}, got {input_space!r}")

        if is_vgg:
            stages = VGG_SIDE_STAGES if stages is None else stages
            self.backbone = build_backbone(
                "vgg16",
                stages,
                3,
                width_mult=width_mult,
                widths=widths,
                bn=bn,
                tap="conv",
                pretrained_path=weights,
            )
        else:
            name = _timm_name(backbone)
            stages = _timm_feature_levels(name) if stages is None else stages
            self.backbone = build_backbone(name, stages, 3, pretrained_path=weights)
        chans, reds = self.backbone.channels, self.backbone.reductions
        self.num_sides, self.side_channels, self.fusion_kind = len(chans), side_channels, fusion
        self.input_space = input_space
        self._register_input_space(input_space)

        self.sides = nn.ModuleList(nn.Conv2d(c, side_channels, 1) for c in chans)
        self.upsamplers = nn.ModuleList(Upsample(side_channels, r, upsample, deconv_trainable) for r in reds)
        if fusion == "conv":
            self.fusion = nn.Conv2d(self.num_sides, 1, 1)
            for side in self.sides:
                nn.init.zeros_(side.weight)
                nn.init.zeros_(side.bias)
            nn.init.constant_(self.fusion.weight, 0.2)
            nn.init.zeros_(self.fusion.bias)
        else:
            self.fusion = PixelFusion("local", self.num_sides, side_channels)
            self.side_scores = nn.ModuleList(nn.Conv2d(side_channels, 1, 1) for _ in chans)
            self.classifier = nn.Conv2d(side_channels, 1, 1)
            for side in self.sides:
                nn.init.kaiming_normal_(side.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(side.bias)
            for score in self.side_scores:
                nn.init.zeros_(score.weight)
                nn.init.zeros_(score.bias)
            nn.init.normal_(self.classifier.weight, std=0.01)
            nn.init.zeros_(self.classifier.bias)

    def _register_input_space(self, space: str) -> None:
        """``x_net = x[:, order] * scale - shift``: one multiply-add, and for Caffe BGR exactly ``255·x − mean``."""
        if space == "caffe_bgr":
            order, scale, shift = [2, 1, 0], (255.0,) * 3, CAFFE_BGR_MEAN
        else:
            order = [0, 1, 2]
            scale = tuple(1.0 / s for s in IMAGENET_STD)
            shift = tuple(m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))
        self.register_buffer("input_order", torch.tensor(order), persistent=False)
        self.register_buffer("input_scale", torch.tensor(scale).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_shift", torch.tensor(shift).view(1, 3, 1, 1), persistent=False)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] → what the backbone was trained on (see ``input_space``)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"edge models take N×3×H×W RGB in [0, 1], got shape {tuple(x.shape)}")
        return x.index_select(1, self.input_order) * self.input_scale - self.input_shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = tuple(x.shape[-2:])
        feats = self.backbone(self.normalise(x))
        if self.fusion_kind == "conv":
            sides = [up(side(f), size) for side, up, f in zip(self.sides, self.upsamplers, feats)]
            return torch.cat([*sides, self.fusion(torch.cat(sides, 1))], 1)
        branches = [up(torch.relu(side(f)), size) for side, up, f in zip(self.sides, self.upsamplers, feats)]
        side_logits = [score(b) for score, b in zip(self.side_scores, branches)]
        return torch.cat([*side_logits, self.classifier(self.fusion(branches))], 1)

    def extra_repr(self) -> str:
        return f"num_sides={self.num_sides}, fusion={self.fusion_kind}, input_space={self.input_space}"


def hed_param_groups(bn: bool = False) -> list[dict]:
    """HED's Caffe learning-rate/weight-decay multipliers as ``optim.param_groups`` rules (first match wins).

    conv1–4: weights lr ×1, biases ×2; conv5: ×100 / ×200; everything after the backbone (sides, upsampling,
    fusion, FCFN's scores/classifier): ×0.01 / ×0.02. Biases get no weight decay, weights ×1 — as in Caffe HED.
    The conv5 rule names the VGG-16 layer indices (`bn` = the vgg16_bn layout); a timm backbone matches only the
    conv1–4 rules, i.e. ×1 / ×2 throughout.
    """
    conv5 = "|".join(str(i) for i in vgg16_conv_indices(4, bn))
    return [
        {"pattern": rf"^backbone\.features\.({conv5})\.weight$", "lr_mult": 100.0, "wd_mult": 1.0},
        {"pattern": rf"^backbone\.features\.({conv5})\.bias$", "lr_mult": 200.0, "wd_mult": 0.0},
        {"pattern": r"^backbone\..*\.weight$", "lr_mult": 1.0, "wd_mult": 1.0},
        {"pattern": r"^backbone\..*\.bias$", "lr_mult": 2.0, "wd_mult": 0.0},
        {"pattern": r"weight$", "lr_mult": 0.01, "wd_mult": 1.0},
        {"pattern": r"bias$", "lr_mult": 0.02, "wd_mult": 0.0},
    ]
