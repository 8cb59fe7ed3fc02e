"""Backbones shared by the tasks: the built-in VGG-16, timm feature extractors, width resolution, weight loading.

`VGG16Features` is the VGG-16 of segmentation's FCFN/FCN and of the edge models (HED, RDS, FCFN for edges):
conv1_1 … conv5_3 (pool5) with module indices identical to torchvision/timm ``vgg16.features``, so an ImageNet
state_dict loads with `load_vgg_state` and checkpoints keep their ``backbone.features.<i>.*`` keys.
`TimmFeatures` wraps any timm ``features_only`` model (never downloaded). `build_backbone` picks one of the two.
`resolve_widths` turns ``widths``/``width_mult`` into layer widths (the CFN nets and the VGG-16 use it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn

from imagexplore.engine.checkpoint import read_state_dict
from imagexplore.errors import CheckpointError, ConfigError

VGG16_DEPTHS = (2, 2, 3, 3, 3)
VGG16_WIDTHS = (64, 128, 256, 512, 512)


def resolve_widths(
    widths: Sequence[int] | None, default: Sequence[int], width_mult: float
) -> tuple[int, ...]:
    """Layer widths: ``widths`` (default `default`) times ``width_mult``, rounded, at least 1 each."""
    widths = tuple(default if widths is None else widths)
    if len(widths) != len(default):
        raise ConfigError(f"widths needs {len(default)} entries (default {tuple(default)}), got {widths}")
    if width_mult <= 0:
        raise ConfigError(f"width_mult must be > 0, got {width_mult}")
    return tuple(max(1, round(w * width_mult)) for w in widths)


def vgg16_conv_indices(stage: int, bn: bool = False) -> list[int]:
    """Indices in ``VGG16Features.features`` of the conv (and BatchNorm) layers of 0-based `stage`."""
    per_conv = 3 if bn else 2  # conv [+ bn] + relu
    start = sum(VGG16_DEPTHS[:stage]) * per_conv + stage  # + one pool per earlier stage
    out = []
    for c in range(VGG16_DEPTHS[stage]):
        out.extend(range(start + c * per_conv, start + c * per_conv + per_conv - 1))
    return out


class VGG16Features(nn.Module):
    """VGG-16 conv1_1 … pool5 as ``self.features`` (torchvision/timm module indices); returns selected stages.

    ``forward(x)`` returns the outputs of the stages in ``stages`` (0-based stage indices), taken after the
    stage's max pool (``tap="pool"``) or after its last conv + ReLU (``tap="conv"``).
    """

    def __init__(
        self,
        stages: Sequence[int],
        in_chans: int = 3,
        widths: Sequence[int] = VGG16_WIDTHS,
        bn: bool = False,
        tap: str = "pool",
    ):
        super().__init__()
        if tap not in ("pool", "conv"):
            raise ConfigError(f"tap must be 'pool' or 'conv', got {tap!r}")
        layers: list[nn.Module] = []
        conv_end, pool_end = [], []
        cin = in_chans
        for depth, w in zip(VGG16_DEPTHS, widths):
            for _ in range(depth):
                layers.append(nn.Conv2d(cin, w, 3, padding=1))
                if bn:
                    layers.append(nn.BatchNorm2d(w))
                layers.append(nn.ReLU(inplace=True))
                cin = w
            conv_end.append(len(layers) - 1)
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))  # ceil: any input size, no pixel dropped
            pool_end.append(len(layers) - 1)
        self.stages = tuple(stages)
        ends = pool_end if tap == "pool" else conv_end
        self.tap_layers = tuple(ends[s] for s in self.stages)
        # layers past the last tapped one are never run (e.g. pool5 when tapping conv5 before its pool)
        self.features = nn.Sequential(*layers[: max(self.tap_layers) + 1])
        self.channels = [widths[s] for s in self.stages]
        self.reductions = [2 ** (s + 1) if tap == "pool" else 2**s for s in self.stages]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, want = [], set(self.tap_layers)
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in want:
                out.append(x)
        return out


class TimmFeatures(nn.Module):
    """Any timm backbone with ``features_only`` (pretrained=False: never downloads)."""

    def __init__(self, name: str, out_indices: Sequence[int], in_chans: int = 3):
        super().__init__()
        import timm

        if not timm.is_model(name):
            raise ConfigError(f"unknown timm backbone '{name}' (see timm.list_models())")
        try:
            self.body = timm.create_model(
                name, features_only=True, out_indices=tuple(out_indices), in_chans=in_chans, pretrained=False
            )
        except (RuntimeError, ValueError, IndexError, AssertionError, TypeError) as e:
            raise ConfigError(f"backbone '{name}' with out_indices={tuple(out_indices)}: {e}") from None
        self.channels = list(self.body.feature_info.channels())
        self.reductions = list(self.body.feature_info.reduction())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x))


def vgg_stage_index(s, where: str) -> int:
    """0-based VGG-16 stage of ``s`` ('conv1'..'conv5' or 1..5); `where` names the setting in the error."""
    if isinstance(s, str) and s.lower().startswith("conv") and s[4:].isdigit():
        s = int(s[4:])
    if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= 5:
        raise ConfigError(f"{where}: VGG-16 stages are 'conv1'..'conv5' (or 1..5), got {s!r}")
    return s - 1


def load_vgg_state(features: VGG16Features, path: str | Path) -> None:
    """Load a local VGG-16 state_dict (torchvision or timm ``vgg16``: ``features.N.*`` keys) into the backbone.

    ``weights_only`` loading; ``module.`` / ``backbone.`` prefixes are stripped; classifier keys are ignored;
    every backbone key must be present with the right shape, else `CheckpointError`.
    """
    path = Path(path)
    sd = read_state_dict(path)
    target = features.state_dict()
    mapped = {}
    for k, v in sd.items():
        for prefix in ("module.", "backbone.", "body."):
            k = k.removeprefix(prefix)
        if k in target:
            mapped[k] = v
    missing = [k for k in target if k not in mapped]
    if missing:
        raise CheckpointError(
            f"pretrained_path '{path}' lacks {len(missing)} VGG-16 backbone weights, e.g. {missing[:3]} "
            "(expected torchvision/timm vgg16 'features.N.weight' keys)"
        )
    bad = [k for k in target if tuple(target[k].shape) != tuple(mapped[k].shape)]
    if bad:
        k = bad[0]
        raise CheckpointError(
            f"pretrained_path '{path}' does not fit the backbone: {k} has shape {tuple(mapped[k].shape)}, "
            f"expected {tuple(target[k].shape)} (a narrow width_mult cannot take full VGG-16 weights)"
        )
    features.load_state_dict(mapped, strict=True)


def build_backbone(
    backbone: str,
    stages: Sequence | None,
    in_chans: int,
    *,
    width_mult: float = 1.0,
    widths: Sequence[int] | None = None,
    bn: bool = False,
    tap: str = "pool",
    pretrained_path: str | Path | None = None,
    default_stages: Sequence = ("conv3", "conv4", "conv5"),
) -> nn.Module:
    """The feature extractor: built-in VGG-16 (``backbone="vgg16"``) or a timm ``features_only`` model."""
    if backbone == "vgg16":
        idx = [vgg_stage_index(s, "stages") for s in (default_stages if stages is None else stages)]
        if not idx or sorted(set(idx)) != idx:
            raise ConfigError(f"stages must be distinct and in increasing order, got {list(stages or [])}")
        net = VGG16Features(idx, in_chans, resolve_widths(widths, VGG16_WIDTHS, width_mult), bn=bn, tap=tap)
        if pretrained_path:
            load_vgg_state(net, pretrained_path)
        return net
    if stages is None:
        stages = (-3, -2, -1) if len(default_stages) > 1 else (-1,)
    if any(isinstance(s, bool) or not isinstance(s, int) for s in stages):
        raise ConfigError(f"stages of a timm backbone are feature indices (ints), got {list(stages)}")
    net = TimmFeatures(backbone, stages, in_chans)
    if pretrained_path:
        load_backbone_state(net.body, pretrained_path)
    return net


def load_backbone_state(backbone: nn.Module, path: str | Path) -> None:
    """Load a local state_dict (of the plain timm model, of a features_only model, or of a CFNBackbone).

    Keys may carry ``module.`` / ``backbone.`` prefixes; timm's features_only wrapper flattens the top-level
    Sequential (``features.0`` → ``features_0``), which is mapped too. Classifier keys are ignored; a missing
    backbone key is an error.
    """
    path = Path(path)
    sd = read_state_dict(path)
    target = backbone.state_dict()
    mapped = {}
    for k, v in sd.items():
        for prefix in ("module.", "backbone."):
            k = k.removeprefix(prefix)
        for cand in (k, k.replace(".", "_", 1)):
            if cand in target:
                mapped[cand] = v
                break
    missing = [k for k in target if k not in mapped]
    if missing:
        raise CheckpointError(
            f"pretrained_path '{path}' lacks {len(missing)} backbone weights, e.g. {missing[:3]}"
        )
    try:
        backbone.load_state_dict(mapped, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"pretrained_path '{path}' does not fit the backbone: {e}") from None
