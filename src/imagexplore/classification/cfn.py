"""Convolutional Fusion Networks (thesis ch. 2, docs/cfn_models.md): CIFAR and ImageNet nets, a generic head.

A CFN adds cheap side branches to a plain CNN: at the end of selected stages a conv to a common width K
(+ReLU, +BN on ImageNet) and global average pooling give a K-vector; the top of the main network ends the same
way. The S vectors (sides first, main last) are fused by `imagexplore.classification.fusion` (locally-connected
by default) and one classifier sits on top. ``forward_features`` returns the fused K-vector (for a plain net /
``fusion="none"``: the main GAP vector): these are the transfer features.

Exact (released): layer widths, kernels, strides, pooling types, branch points, fusion init/bias/BN, dropout,
init std of the CIFAR nets, BN/no-bias/Xavier of CFN-11. Choices made here where the tables are silent:

* the 3×3 convs of the CIFAR nets use pad 1 (the table gives it for conv1_*; the stated 16 → 8 sizes need it);
* the CIFAR side branches tap the pool output *before* the in-place dropout (``side_after_dropout=False``), as
  the released Caffe nets usually branch from the pool blob; ``side_after_dropout=True`` takes them after;
* pooling uses ``ceil_mode=True`` with padding 0, which reproduces Caffe's rounding (32 → 16 → 8 and
  224 → 112 → 56 → 28 → 14 → 7); PyTorch's average pooling then divides border windows by the number of
  valid inputs, as Caffe does with pad 0;
* "Xavier" of CFN-11 is Caffe's XavierFiller (uniform ±sqrt(3 / fan_in)), also used for its FC;
* ``cfn_*(fusion="none")`` builds no side branches, so it is the plain net (``plain_*`` is exactly that).

The generic head (`CFNBackbone`, our addition) wraps any timm backbone with ``features_only``: every selected
stage → 1×1 conv K + BN + ReLU → GAP, fused the same way (no bias, BN, as CFN-11) → FC.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn

from imagexplore.classification.fusion import build_fusion
from imagexplore.errors import ConfigError
from imagexplore.models import register_model
from imagexplore.models.backbones import load_backbone_state, resolve_widths

CIFAR10_WIDTHS = (96, 192, 192, 192)  # conv1_*, conv2_*, conv3_*, conv4 (= K)
CIFAR100_WIDTHS = (192, 192, 192, 192)
IMAGENET_WIDTHS = (64, 64, 128, 256, 512, 1024)  # conv1, conv2_*, conv3_*, conv4_*, conv5_*, conv6 (= K)


def _pool(kind: str) -> nn.Module:
    # Caffe rounds pooled sizes up; ceil_mode with padding 0 gives the same sizes (PyTorch's floor gives 15).
    cls = nn.MaxPool2d if kind == "max" else nn.AvgPool2d
    return cls(3, stride=2, ceil_mode=True)


def _conv_relu(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2), nn.ReLU(inplace=True))


def _conv_bn_relu(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _gap(x: torch.Tensor) -> torch.Tensor:
    return x.mean((2, 3))


def _caffe_xavier_(w: torch.Tensor) -> None:
    # Caffe's XavierFiller (variance_norm FAN_IN): U(-sqrt(3/fan_in), +sqrt(3/fan_in)); kaiming_uniform with a=1.
    nn.init.kaiming_uniform_(w, a=1.0)


class _CFNBase(nn.Module):
    """forward_branches → fusion → (dropout) → fc; subclasses define forward_branches and the layers."""

    fusion: nn.Module
    head_drop: nn.Module
    fc: nn.Linear
    num_features: int

    def forward_branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The fused K-vector (the main GAP vector when the fusion is ``none``): the transfer features."""
        return self.fusion(self.forward_branches(x))

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head_drop(feats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class CFNCifar(_CFNBase):
    """CIFAR CFN (released NIN-like net): two side branches (from pool1, pool2) + main, locally-connected fusion.

    With ``fusion="none"`` the side branches are not built: the plain baseline (main GAP → dropout → FC).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 3,
        widths: Sequence[int] | None = None,
        width_mult: float = 1.0,
        side_kernel: int = 1,
        fusion: str = "local",
        fusion_bias: bool = True,
        drop_rate: float = 0.5,
        side_after_dropout: bool = False,
        norm: bool = False,
    ):
        super().__init__()
        c1, c2, c3, k = resolve_widths(widths, CIFAR10_WIDTHS, width_mult)
        self.side_after_dropout = side_after_dropout
        # norm=True (our addition, not the released net): BatchNorm after every conv. The released filler
        # (std 0.05, no BN) is tuned to the thesis widths; narrow CPU-sized variants barely train without BN.
        conv = _conv_bn_relu if norm else _conv_relu
        self.conv1_1, self.conv1_2 = conv(in_chans, c1, 3), conv(c1, c1, 3)
        self.pool1, self.drop1 = _pool("max"), nn.Dropout(drop_rate)  # 32 → 16
        self.conv2_1, self.conv2_2 = conv(c1, c2, 3), conv(c2, c2, 3)
        self.pool2, self.drop2 = _pool("avg"), nn.Dropout(drop_rate)  # 16 → 8
        self.conv3_1, self.conv3_2 = conv(c2, c3, 3), conv(c3, c3, 3)
        self.conv4 = conv(c3, k, 1)  # → GAP = main branch
        sides = [conv(c1, k, side_kernel), conv(c2, k, side_kernel)] if fusion != "none" else []
        self.sides = nn.ModuleList(sides)
        self.fusion = build_fusion(fusion, len(self.sides) + 1, k, bias=fusion_bias)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(k, num_classes)
        self.num_features = k
        self._init_weights()

    def _init_weights(self) -> None:
        # Released fillers: conv gaussian std 0.05, FC gaussian std 0.1, biases 0; the fusion inits itself (1/S).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.05)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.fc.weight, 0.0, 0.1)
        nn.init.zeros_(self.fc.bias)

    def forward_branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        x = self.pool1(self.conv1_2(self.conv1_1(x)))
        if not self.side_after_dropout:
            taps.append(x)
        x = self.drop1(x)  # not in place: the pool1 tap must stay intact
        if self.side_after_dropout:
            taps.append(x)
        x = self.pool2(self.conv2_2(self.conv2_1(x)))
        if not self.side_after_dropout:
            taps.append(x)
        x = self.drop2(x)
        if self.side_after_dropout:
            taps.append(x)
        main = _gap(self.conv4(self.conv3_2(self.conv3_1(x))))
        return [_gap(side(t)) for side, t in zip(self.sides, taps)] + [main]


class CFN11(_CFNBase):
    """ImageNet CFN-11 (released): BN net with side branches from pool2, pool3, pool4 and the main conv6 branch.

    Fusion: local over (pool2, pool3, pool4, main) × 1024, init 1/4, no bias → BN → ReLU → FC; no dropout.
    With ``fusion="none"``: the plain 11-layer net (main GAP → FC).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        widths: Sequence[int] | None = None,
        width_mult: float = 1.0,
        fusion: str = "local",
        fusion_bias: bool = False,
        fusion_bn: bool = True,
        drop_rate: float = 0.0,
    ):
        super().__init__()
        c1, c2, c3, c4, c5, k = resolve_widths(widths, IMAGENET_WIDTHS, width_mult)
        self.conv1 = _conv_bn_relu(in_chans, c1, 7, stride=2)  # 224 → 112
        self.pool1 = _pool("max")  # 112 → 56
        self.conv2_1, self.conv2_2 = _conv_bn_relu(c1, c2, 3), _conv_bn_relu(c2, c2, 3)
        self.pool2 = _pool("max")  # 56 → 28
        self.conv3_1, self.conv3_2 = _conv_bn_relu(c2, c3, 3), _conv_bn_relu(c3, c3, 3)
        self.pool3 = _pool("max")  # 28 → 14
        self.conv4_1, self.conv4_2 = _conv_bn_relu(c3, c4, 3), _conv_bn_relu(c4, c4, 3)
        self.pool4 = _pool("max")  # 14 → 7
        self.conv5_1, self.conv5_2 = _conv_bn_relu(c4, c5, 3), _conv_bn_relu(c5, c5, 3)
        self.conv6 = _conv_bn_relu(c5, k, 1)  # → GAP = main branch
        sides = [_conv_bn_relu(c, k, 1) for c in (c2, c3, c4)] if fusion != "none" else []
        self.sides = nn.ModuleList(sides)
        self.fusion = build_fusion(fusion, len(self.sides) + 1, k, bias=fusion_bias, bn=fusion_bn)
        self.head_drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.fc = nn.Linear(k, num_classes)
        self.num_features = k
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                if m is self.fusion.fc:  # concat-fusion FC keeps the fusion's own init
                    continue
                _caffe_xavier_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.pool1(self.conv1(x))
        p2 = self.pool2(self.conv2_2(self.conv2_1(x)))
        p3 = self.pool3(self.conv3_2(self.conv3_1(p2)))
        p4 = self.pool4(self.conv4_2(self.conv4_1(p3)))
        main = _gap(self.conv6(self.conv5_2(self.conv5_1(p4))))
        return [_gap(side(t)) for side, t in zip(self.sides, (p2, p3, p4))] + [main]


class CFNBackbone(_CFNBase):
    """CFN fusion head over any timm backbone (our addition): each selected stage → 1×1 conv K + BN + ReLU → GAP.

    ``out_indices`` selects the timm feature stages (default: the last four); the last one is the main branch.
    ``dim`` (K) defaults to the last stage's channels. Never downloads: weights only from ``pretrained_path``.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        num_classes: int = 1000,
        in_chans: int = 3,
        out_indices: Sequence[int] | None = None,
        dim: int | None = None,
        fusion: str = "local",
        fusion_bias: bool = False,
        fusion_bn: bool = True,
        drop_rate: float = 0.0,
        pretrained_path: str | Path | None = None,
    ):
        super().__init__()
        import timm

        if not timm.is_model(backbone):
            raise ConfigError(f"unknown timm backbone '{backbone}' (see timm.list_models())")
        out_indices = tuple(out_indices) if out_indices is not None else (-4, -3, -2, -1)
        if fusion == "none":
            out_indices = out_indices[-1:]  # main branch only: the plain backbone + 1×1 conv + GAP
        try:
            self.backbone = timm.create_model(
                backbone, features_only=True, out_indices=out_indices, in_chans=in_chans, pretrained=False
            )
        except (RuntimeError, ValueError, IndexError, AssertionError) as e:
            raise ConfigError(f"backbone '{backbone}' with out_indices={out_indices}: {e}") from None
        self.backbone_name = backbone
        chans = self.backbone.feature_info.channels()
        k = dim or chans[-1]
        self.branches = nn.ModuleList(_conv_bn_relu(c, k, 1) for c in chans)
        self.fusion = build_fusion(fusion, len(chans), k, bias=fusion_bias, bn=fusion_bn)
        self.head_drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.fc = nn.Linear(k, num_classes)
        self.num_features = k
        for m in self.branches.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if pretrained_path:
            load_backbone_state(self.backbone, pretrained_path)

    def forward_branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [_gap(b(f)) for b, f in zip(self.branches, self.backbone(x))]


# ---------------------------------------------------------------------------------------------- entry points


@register_model
def cfn_cifar10(num_classes: int = 10, in_chans: int = 3, fusion: str = "local", **kw):
    """CFN for CIFAR-10 (released): sides from pool1/pool2 (1×1 conv 192), local fusion with bias."""
    return CFNCifar(num_classes, in_chans, fusion=fusion, **kw)


@register_model
def plain_cifar10(num_classes: int = 10, in_chans: int = 3, **kw):
    """Plain CIFAR-10 baseline of CFN: the same net without side branches and fusion."""
    return CFNCifar(num_classes, in_chans, fusion="none", **kw)


@register_model
def cfn_cifar100(num_classes: int = 100, in_chans: int = 3, fusion: str = "local", **kw):
    """CFN for CIFAR-100 (released): conv1 192 ch, 3×3 side convs, local fusion without bias."""
    kw = {"widths": CIFAR100_WIDTHS, "side_kernel": 3, "fusion_bias": False, **kw}
    return CFNCifar(num_classes, in_chans, fusion=fusion, **kw)


@register_model
def plain_cifar100(num_classes: int = 100, in_chans: int = 3, **kw):
    """Plain CIFAR-100 baseline of CFN (conv1 192 ch): no side branches, no fusion."""
    kw = {"widths": CIFAR100_WIDTHS, "side_kernel": 3, "fusion_bias": False, **kw}
    return CFNCifar(num_classes, in_chans, fusion="none", **kw)


@register_model
def cfn11_imagenet(num_classes: int = 1000, in_chans: int = 3, fusion: str = "local", **kw):
    """CFN-11 for ImageNet (released): BN net, sides from pool2/3/4, local fusion (no bias) → BN → ReLU."""
    return CFN11(num_classes, in_chans, fusion=fusion, **kw)


@register_model
def plain11_imagenet(num_classes: int = 1000, in_chans: int = 3, **kw):
    """Plain 11-layer ImageNet baseline of CFN-11: no side branches, no fusion."""
    return CFN11(num_classes, in_chans, fusion="none", **kw)


@register_model
def cfn_timm(
    backbone: str = "resnet18", num_classes: int = 1000, in_chans: int = 3, fusion: str = "local", **kw
):
    """CFN fusion head over any timm backbone's last feature stages (our addition; offline, no download)."""
    return CFNBackbone(backbone, num_classes, in_chans, fusion=fusion, **kw)


@register_model
def cfn_resnet18(num_classes: int = 1000, in_chans: int = 3, fusion: str = "local", **kw):
    """CFN-ResNet-18: fusion over layer1..layer4 of timm resnet18 (our addition)."""
    return CFNBackbone("resnet18", num_classes, in_chans, fusion=fusion, **kw)


@register_model
def cfn_resnet50(num_classes: int = 1000, in_chans: int = 3, fusion: str = "local", **kw):
    """CFN-ResNet-50: fusion over layer1..layer4 of timm resnet50, K = 2048 (our addition)."""
    return CFNBackbone("resnet50", num_classes, in_chans, fusion=fusion, **kw)


@register_model
def cfn_vgg16(num_classes: int = 1000, in_chans: int = 3, fusion: str = "local", **kw):
    """CFN-VGG-16: fusion over the last four stages of timm vgg16_bn (our addition)."""
    return CFNBackbone("vgg16_bn", num_classes, in_chans, fusion=fusion, **kw)
