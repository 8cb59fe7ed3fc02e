"""Branch fusion for Convolutional Fusion Networks (thesis ch. 2; docs/cfn_models.md).

A CFN ends every selected stage (and the top of the main network) with a K-vector ``g_s`` (conv to K channels,
ReLU, global average pooling). The S vectors are fused into one K-vector. The default, *locally-connected*
fusion gives every dimension k its own S weights::

    f_k = ReLU( Σ_s w[s, k] · g_s[k] + b[k] )          (ImageNet CFN-11: BN before the ReLU)

with ``w`` initialised to 1/S ("equal initialisation") and ``b`` to 0. The other kinds exist for ablations:

=========  ====================================================================================================
``local``  the above; parameters ``weight`` (S×K), ``bias`` (K, optional); S·K (+K) parameters
``scalar`` one weight per branch shared over k: ``weight`` (S,), init 1/S; optional ``bias`` (K)
``sum``    Σ_s g_s, no weights
``mean``   (1/S) Σ_s g_s, no weights
``concat`` concatenate the S vectors, then FC S·K → K (``fc``, PyTorch's default Linear init)
``none``   the main branch only (the last one), untouched: the plain CNN
=========  ====================================================================================================

Every kind except ``none`` ends with the optional BatchNorm1d (``bn``) and a ReLU, so that an ablation changes
only how the branches are combined (after ``sum``/``mean`` of ReLU outputs the ReLU is a no-op). ``none`` adds
nothing: ``cfn(fusion="none")`` is exactly the plain network.

Parameter names are chosen for learning-rate rules: the fusion weights are ``fusion.weight`` and
``fusion.bias`` inside a CFN model (the paper trains them with lr ×0.1 and bias ×0.2), while the BN
(``fusion.bn.*``) and the concat FC (``fusion.fc.*``) do not match the regexes ``fusion\\.weight`` /
``fusion\\.bias`` and train at the ordinary rate.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from imagexplore.errors import ConfigError

FUSION_KINDS: tuple[str, ...] = ("local", "sum", "mean", "concat", "scalar", "none")


def stack_branches(branches: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """(B, S, K) from a (B, S, K) tensor or a sequence of S (B, K) tensors."""
    if isinstance(branches, torch.Tensor):
        if branches.dim() != 3:
            raise ValueError(f"fusion input must be (B, S, K), got shape {tuple(branches.shape)}")
        return branches
    return torch.stack(list(branches), dim=1)


def local_fusion(g: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_s weight[s, k] · g[:, s, k] (+ bias[k]): every dimension has its own S weights. g: (B, S, K)."""
    out = (g * weight).sum(1)
    return out if bias is None else out + bias


def scalar_fusion(g: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_s weight[s] · g[:, s, :] (+ bias): one weight per branch, shared over the K dimensions."""
    out = (g * weight[:, None]).sum(1)
    return out if bias is None else out + bias


class Fusion(nn.Module):
    """Fuse S branch vectors of width K into one K-vector; see the module docstring for the kinds."""

    def __init__(self, kind: str, num_branches: int, dim: int, bias: bool = True, bn: bool = False):
        super().__init__()
        if kind not in FUSION_KINDS:
            raise ConfigError(f"unknown fusion '{kind}'; choose one of {', '.join(FUSION_KINDS)}")
        if num_branches < 1 or dim < 1:
            raise ConfigError(f"fusion needs num_branches >= 1 and dim >= 1, got {num_branches}, {dim}")
        self.kind, self.num_branches, self.dim = kind, num_branches, dim
        self.out_dim = dim
        if kind == "local":
            self.weight = nn.Parameter(torch.empty(num_branches, dim))
        elif kind == "scalar":
            self.weight = nn.Parameter(torch.empty(num_branches))
        if kind in ("local", "scalar") and bias:
            self.bias = nn.Parameter(torch.empty(dim))
        else:
            self.register_parameter("bias", None)
        self.fc = nn.Linear(num_branches * dim, dim, bias=bias) if kind == "concat" else None
        self.bn = nn.BatchNorm1d(dim) if bn and kind != "none" else None
        self.act = nn.ReLU(inplace=True) if kind != "none" else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.kind in ("local", "scalar"):
            nn.init.constant_(self.weight, 1.0 / self.num_branches)  # "equal initialisation"
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        if self.fc is not None:
            self.fc.reset_parameters()
        if self.bn is not None:
            self.bn.reset_parameters()

    def combine(self, g: torch.Tensor) -> torch.Tensor:
        """The fusion before BN/ReLU; g: (B, S, K)."""
        if self.kind == "local":
            return local_fusion(g, self.weight, self.bias)
        if self.kind == "scalar":
            return scalar_fusion(g, self.weight, self.bias)
        if self.kind == "sum":
            return g.sum(1)
        if self.kind == "mean":
            return g.mean(1)
        if self.kind == "concat":
            return self.fc(g.flatten(1))
        return g[:, -1]  # none: the main branch is always the last one

    def forward(self, branches: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        g = stack_branches(branches)
        if g.shape[1] != self.num_branches or g.shape[2] != self.dim:
            raise ValueError(
                f"{self.kind} fusion built for {self.num_branches} branches × {self.dim}, "
                f"got {g.shape[1]} × {g.shape[2]}"
            )
        out = self.combine(g)
        if self.bn is not None:
            out = self.bn(out)
        return self.act(out)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, num_branches={self.num_branches}, dim={self.dim}, bias={self.bias is not None}"


def build_fusion(kind: str, num_branches: int, dim: int, bias: bool = True, bn: bool = False) -> Fusion:
    """The fusion module of the given kind (see FUSION_KINDS) over S=num_branches vectors of width K=dim."""
    return Fusion(kind, num_branches, dim, bias=bias, bn=bn)
