"""FCFN — Fully Convolutional Fusion Networks for semantic segmentation (thesis ch. 2; docs/segmentation.md), FCN.

Published: FCFN applies CFN's locally-connected fusion at every pixel. Side branches from intermediate stages of a
fully convolutional backbone are mapped by a 1×1 conv to K channels, upsampled to the input size and fused per
channel with weights shared over pixels and unshared over channels (init 1/S), then a 1×1 classifier gives C
outputs (C = 21 on PASCAL VOC).

**Reconstruction** (the paper's details were not available). Every choice is a constructor argument, so a
config (``model.kwargs``) can change it:

================  ========================================================================================
``backbone``      ``"vgg16"`` (default): VGG-16 conv1_1 … conv5_3 (`imagexplore.models.backbones`, shared with
                  the edge models), module indices identical to torchvision/timm ``vgg16.features`` so an
                  ImageNet state_dict loads with ``pretrained_path``;
                  or any timm model name with ``features_only`` (never downloaded: ``pretrained=False``).
``stages``        which stages feed side branches; default ``("conv3", "conv4", "conv5")`` (S = 3; the last
                  one is the top of the main network). VGG: names ``conv1``..``conv5`` or numbers 1..5;
                  timm: feature indices (``out_indices``; default the last three).
``tap``           VGG only: ``"pool"`` (default) takes a stage's output after its 2×2 max pool (strides 8, 16,
                  32 for conv3/4/5, as FCN's pool3/pool4 skips), ``"conv"`` before it (as HED's side outputs).
``dim``           K, the common branch width (default 128); each branch is 1×1 conv K + ReLU.
``upsample``      ``"bilinear"`` (default: ``F.interpolate`` to the exact input size, half-pixel centres) or
                  ``"deconv"``: a depthwise transposed conv of kernel 2f, stride f, padding f/2 initialised to
                  bilinear interpolation (trainable unless ``deconv_trainable=False``), then a crop to the
                  input size (FCN style).
``fusion``        ``"local"`` (default; per channel weights, init 1/S, bias 0 — exactly CFN's ``local``
                  fusion applied per pixel, i.e. a grouped 1×1 conv with K groups), ``"scalar"``, ``"sum"``,
                  ``"mean"``, ``"concat"`` (1×1 conv S·K → K) or ``"none"`` (the top branch only).
``fusion_bias``   bias of the local/scalar fusion (default True); ``fusion_relu``: ReLU after fusion (default
                  True, as CFN's ``f_k = ReLU(Σ_s w[s,k] g_s[k] + b[k])``).
``width_mult`` /  narrow VGG variants for CPU work: stage widths ``(64, 128, 256, 512, 512) × width_mult`` or
``widths``        explicit five widths. ``bn=True`` inserts BatchNorm after every conv (vgg16_bn layout).
``drop_rate``     dropout before the classifier (default 0).
================  ========================================================================================

Any input size works: VGG pooling uses ``ceil_mode=True`` (65 → 33 → 17 → 9 → 5 → 3) and every branch is brought
to exactly the input size (interpolation, or the transposed conv's output cropped — interpolated instead where a
backbone rounded down and the output came out smaller). The fusion parameters are named ``fusion.weight`` /
``fusion.bias`` so the CFN learning-rate rules (``optim.param_groups``) apply unchanged.

``fcn_vgg16`` is the plain FCN head beside it: the same backbone, only the top stage's 1×1 conv to C (zero bias,
normal init std 0.01), upsampled to the input size — FCN-32s *style*: FCN's fc6/fc7 (7×7 conv 4096, 1×1 conv 4096)
are not included, so the comparison isolates the fusion of several stages. ``fcfn_vgg16(fusion="none")`` is the
other ablation (top branch only, but with the K-wide branch and classifier).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from imagexplore.errors import ConfigError
from imagexplore.models import register_model
from imagexplore.models.backbones import build_backbone

PIXEL_FUSION_KINDS = ("local", "scalar", "sum", "mean", "concat", "none")
UPSAMPLE_KINDS = ("bilinear", "deconv")


# ---------------------------------------------------------------------------------------------- upsampling


def bilinear_kernel(factor: int) -> torch.Tensor:
    """The 2f × 2f bilinear interpolation kernel of FCN's ``upsample_filt`` (for a stride-f transposed conv)."""
    size = 2 * factor - factor % 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = torch.arange(size, dtype=torch.float64)
    filt = 1 - (og - center).abs() / factor
    return (filt[:, None] * filt[None, :]).float()


def fit_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop a map that is at least `size` to its top-left `size`; interpolate one that is smaller."""
    h, w = x.shape[-2:]
    if h >= size[0] and w >= size[1]:
        return x[..., : size[0], : size[1]]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class Upsample(nn.Module):
    """Bring a stride-``factor`` map to an exact output size: interpolation or bilinear-initialised deconv."""

    def __init__(self, channels: int, factor: int, kind: str = "bilinear", trainable: bool = True):
        super().__init__()
        if kind not in UPSAMPLE_KINDS:
            raise ConfigError(f"upsample must be one of {', '.join(UPSAMPLE_KINDS)}, got {kind!r}")
        self.kind, self.factor = kind, int(factor)
        self.deconv = None
        if kind == "deconv" and self.factor > 1:
            f = self.factor
            self.deconv = nn.ConvTranspose2d(
                channels, channels, 2 * f - f % 2, stride=f, padding=f // 2, groups=channels, bias=False
            )
            with torch.no_grad():
                self.deconv.weight.copy_(bilinear_kernel(f).expand_as(self.deconv.weight))
            self.deconv.weight.requires_grad_(trainable)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if tuple(x.shape[-2:]) == tuple(size):
            return x
        if self.deconv is not None:
            return fit_to(self.deconv(x), size)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


# ---------------------------------------------------------------------------------------------- fusion


def pixel_local_fusion(
    branches: Sequence[torch.Tensor], weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Σ_s weight[s, k] · g_s[:, k, y, x] (+ bias[k]) at every pixel: CFN's local fusion, shared over pixels.

    branches: S tensors (B, K, H, W); weight (S, K); bias (K) or None. Summed branch by branch, so no (B, S, K,
    H, W) stack is built.
    """
    out = None
    for s, g in enumerate(branches):
        term = g * weight[s].view(1, -1, 1, 1)
        out = term if out is None else out + term
    return out if bias is None else out + bias.view(1, -1, 1, 1)


class PixelFusion(nn.Module):
    """Fuse S maps (B, K, H, W) into one (B, K, H, W); kinds as `PIXEL_FUSION_KINDS` (see module docstring)."""

    def __init__(self, kind: str, num_branches: int, dim: int, bias: bool = True, relu: bool = True):
        super().__init__()
        if kind not in PIXEL_FUSION_KINDS:
            raise ConfigError(f"unknown fusion '{kind}'; choose one of {', '.join(PIXEL_FUSION_KINDS)}")
        self.kind, self.num_branches, self.dim = kind, num_branches, dim
        if kind == "local":
            self.weight = nn.Parameter(torch.full((num_branches, dim), 1.0 / num_branches))
        elif kind == "scalar":
            self.weight = nn.Parameter(torch.full((num_branches,), 1.0 / num_branches))
        if kind in ("local", "scalar") and bias:
            self.bias = nn.Parameter(torch.zeros(dim))
        else:
            self.register_parameter("bias", None)
        self.conv = nn.Conv2d(num_branches * dim, dim, 1) if kind == "concat" else None
        self.act = nn.ReLU(inplace=True) if relu and kind != "none" else nn.Identity()

    def forward(self, branches: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(branches) != self.num_branches:
            raise ValueError(
                f"{self.kind} fusion built for {self.num_branches} branches, got {len(branches)}"
            )
        if self.kind == "local":
            out = pixel_local_fusion(branches, self.weight, self.bias)
        elif self.kind == "scalar":
            out = pixel_local_fusion(branches, self.weight[:, None].expand(-1, self.dim), self.bias)
        elif self.kind == "sum":
            out = torch.stack(list(branches)).sum(0)
        elif self.kind == "mean":
            out = torch.stack(list(branches)).mean(0)
        elif self.kind == "concat":
            out = self.conv(torch.cat(list(branches), 1))
        else:
            out = branches[-1]
        return self.act(out)

    def as_grouped_conv(self) -> nn.Conv2d:
        """The local fusion as the equivalent grouped 1×1 conv over channels interleaved as (k, s) → k·S + s."""
        if self.kind != "local":
            raise ValueError("only the local fusion is a grouped conv")
        s, k = self.num_branches, self.dim
        conv = nn.Conv2d(s * k, k, 1, groups=k, bias=self.bias is not None)
        with torch.no_grad():
            conv.weight.copy_(self.weight.t().reshape(k, s, 1, 1))
            if self.bias is not None:
                conv.bias.copy_(self.bias)
        return conv

    def extra_repr(self) -> str:
        return f"kind={self.kind}, num_branches={self.num_branches}, dim={self.dim}"


# ---------------------------------------------------------------------------------------------- models


class FCFN(nn.Module):
    """FCFN: side branches (1×1 conv K + ReLU) → upsample to input size → pixel fusion → 1×1 classifier to C."""

    def __init__(
        self,
        num_classes: int = 21,
        in_chans: int = 3,
        backbone: str = "vgg16",
        stages: Sequence | None = None,
        tap: str = "pool",
        dim: int = 128,
        upsample: str = "bilinear",
        deconv_trainable: bool = True,
        fusion: str = "local",
        fusion_bias: bool = True,
        fusion_relu: bool = True,
        width_mult: float = 1.0,
        widths: Sequence[int] | None = None,
        bn: bool = False,
        drop_rate: float = 0.0,
        pretrained_path: str | Path | None = None,
    ):
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            raise ConfigError(f"dim (K) must be a positive int, got {dim!r}")
        if fusion not in PIXEL_FUSION_KINDS:
            raise ConfigError(f"unknown fusion '{fusion}'; choose one of {', '.join(PIXEL_FUSION_KINDS)}")
        if upsample not in UPSAMPLE_KINDS:
            raise ConfigError(f"upsample must be one of {', '.join(UPSAMPLE_KINDS)}, got {upsample!r}")
        if fusion == "none" and stages is not None:
            stages = list(stages)[-1:]
        elif fusion == "none":
            stages = ["conv5"] if backbone == "vgg16" else [-1]
        self.backbone = build_backbone(
            backbone,
            stages,
            in_chans,
            width_mult=width_mult,
            widths=widths,
            bn=bn,
            tap=tap,
            pretrained_path=pretrained_path,
        )
        chans, reds = self.backbone.channels, self.backbone.reductions
        self.num_classes, self.dim = num_classes, dim
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, dim, 1), nn.ReLU(inplace=True)) for c in chans
        )
        self.upsamplers = nn.ModuleList(Upsample(dim, r, upsample, deconv_trainable) for r in reds)
        self.fusion = PixelFusion(fusion, len(chans), dim, bias=fusion_bias, relu=fusion_relu)
        self.drop = nn.Dropout2d(drop_rate) if drop_rate > 0 else nn.Identity()
        self.classifier = nn.Conv2d(dim, num_classes, 1)
        for m in self.branches.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward_branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The S side maps (B, K, H, W) at the input size, before fusion (sides first, top last)."""
        size = tuple(x.shape[-2:])
        feats = self.backbone(x)
        return [up(br(f), size) for br, up, f in zip(self.branches, self.upsamplers, feats)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.drop(self.fusion(self.forward_branches(x))))


class FCN(nn.Module):
    """Plain FCN head (FCN-32s style, no fc6/fc7): top stage → 1×1 conv to C → upsample to the input size."""

    def __init__(
        self,
        num_classes: int = 21,
        in_chans: int = 3,
        backbone: str = "vgg16",
        stage=None,
        tap: str = "pool",
        upsample: str = "bilinear",
        deconv_trainable: bool = True,
        width_mult: float = 1.0,
        widths: Sequence[int] | None = None,
        bn: bool = False,
        drop_rate: float = 0.0,
        pretrained_path: str | Path | None = None,
    ):
        super().__init__()
        self.backbone = build_backbone(
            backbone,
            None if stage is None else [stage],
            in_chans,
            width_mult=width_mult,
            widths=widths,
            bn=bn,
            tap=tap,
            pretrained_path=pretrained_path,
            default_stages=("conv5",),
        )
        self.num_classes = num_classes
        self.drop = nn.Dropout2d(drop_rate) if drop_rate > 0 else nn.Identity()
        self.score = nn.Conv2d(self.backbone.channels[-1], num_classes, 1)
        self.upsample = Upsample(num_classes, self.backbone.reductions[-1], upsample, deconv_trainable)
        nn.init.normal_(self.score.weight, std=0.01)
        nn.init.zeros_(self.score.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top = self.backbone(x)[-1]
        return self.upsample(self.score(self.drop(top)), tuple(x.shape[-2:]))


@register_model(task="segment")
def fcfn_vgg16(num_classes: int = 21, in_chans: int = 3, **kw):
    """FCFN on VGG-16: conv3/conv4/conv5 side branches, per-pixel local fusion (reconstruction of ch. 2)."""
    return FCFN(num_classes, in_chans, **kw)


@register_model(task="segment")
def fcn_vgg16(num_classes: int = 21, in_chans: int = 3, **kw):
    """Plain FCN head on VGG-16 (FCN-32s style: top stage 1×1 conv to C, upsampled; no fc6/fc7)."""
    return FCN(num_classes, in_chans, **kw)


@register_model(task="segment")
def fcfn_timm(backbone: str = "resnet18", num_classes: int = 21, in_chans: int = 3, **kw):
    """FCFN over any timm features_only backbone (our addition; offline, pretrained only from a local file)."""
    return FCFN(num_classes, in_chans, backbone=backbone, **kw)
