"""RRF-Net: the two-branch Recurrent Residual Fusion network for image-text matching (thesis ch. 5).

Each modality has its own branch (weights not shared across modalities), on pre-extracted features:

1. BatchNorm on the raw input feature;
2. FC ``hidden`` (2048), ReLU, dropout;
3. FC ``dim`` (512), BN, ReLU → h_0;
4. RRF block with T = ``steps``: T + 1 unrolled steps h_{t+1} = h_t + ReLU(BN_t(W h_t + b)), t = 0..T, with **one
   W, b shared by all steps** and a BatchNorm of its own per step; h_1..h_{T+1} are kept;
5. fusion of h_1..h_{T+1}: ``scalar`` f = Σ_t w_t h_t + b (one weight per step shared over the dims, one scalar
   bias) or ``local`` f[k] = Σ_t w[t,k] h_t[k] + b[k] (per-dimension weights and bias, as chapter 2's local
   fusion); fusion weights Gaussian std 0.05, bias 0; then BN → ReLU;
6. FC ``dim`` → BN → L2 normalisation → the embedding. Similarity = cosine = dot product of embeddings.

All FC layers: Gaussian init std 0.05, bias 0. **T = 0 is the plain two-branch baseline**: no RRF block and no
fusion, h_0 goes straight to step 6 (BN → FC 2048 → ReLU → dropout → FC 512 → BN → ReLU → FC 512 → BN → L2).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from imagexplore.errors import ConfigError
from imagexplore.models import register_model

__all__ = ["FUSIONS", "RRFBranch", "RRFNet", "rrf_net"]

FUSIONS = ("scalar", "local")
INIT_STD = 0.05


def _fc(in_dim: int, out_dim: int) -> nn.Linear:
    fc = nn.Linear(in_dim, out_dim)
    nn.init.normal_(fc.weight, std=INIT_STD)
    nn.init.zeros_(fc.bias)
    return fc


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"RRF-Net: {name} must be an integer >= {minimum}, got {value!r}")
    return value


class RRFBranch(nn.Module):
    """One modality's branch: features (B×in_dim) → L2-normalised embeddings (B×dim). See the module docstring."""

    def __init__(
        self,
        in_dim: int,
        hidden: int = 2048,
        dim: int = 512,
        steps: int = 3,
        fusion: str = "scalar",
        dropout: float = 0.5,
        stem: nn.Module | None = None,
    ):
        super().__init__()
        # a stem learned with the branch turns raw inputs (pixels, word ids) into its input feature
        self.stem = stem
        if stem is not None:
            in_dim = int(stem.out_dim)
        in_dim, hidden, dim = (
            _positive_int(n, v) for n, v in (("in_dim", in_dim), ("hidden", hidden), ("dim", dim))
        )
        self.steps = _positive_int("steps", steps, minimum=0)
        if fusion not in FUSIONS:
            raise ConfigError(f"RRF-Net: unknown fusion {fusion!r}; choices: {', '.join(FUSIONS)}")
        if not 0 <= dropout < 1:
            raise ConfigError(f"RRF-Net: dropout must lie in [0, 1), got {dropout!r}")
        self.fusion = fusion
        self.bn_in = nn.BatchNorm1d(in_dim)
        self.fc1 = _fc(in_dim, hidden)
        self.drop = nn.Dropout(dropout)
        self.fc2 = _fc(hidden, dim)
        self.bn0 = nn.BatchNorm1d(dim)
        if self.steps > 0:
            self.rec = _fc(dim, dim)  # W, b shared by the T + 1 steps
            self.step_bns = nn.ModuleList(nn.BatchNorm1d(dim) for _ in range(self.steps + 1))
            n_h = self.steps + 1
            if fusion == "scalar":
                self.fuse_weight = nn.Parameter(torch.randn(n_h) * INIT_STD)
                self.fuse_bias = nn.Parameter(torch.zeros(()))
            else:
                self.fuse_weight = nn.Parameter(torch.randn(n_h, dim) * INIT_STD)
                self.fuse_bias = nn.Parameter(torch.zeros(dim))
            self.bn_fuse = nn.BatchNorm1d(dim)
        self.fc_out = _fc(dim, dim)
        self.bn_out = nn.BatchNorm1d(dim)

    def project(self, x: Tensor) -> Tensor:
        """Steps 1–3: the input feature projected to h_0 (B×dim, non-negative). CycleMatch's P(x)."""
        if self.stem is not None:
            x = self.stem(x)
        return F.relu(self.bn0(self.fc2(self.drop(F.relu(self.fc1(self.bn_in(x)))))))

    def hidden_states(self, x: Tensor, projected: bool = False) -> list[Tensor]:
        """[h_0, h_1, ..., h_{T+1}] (only h_0 when T = 0); `projected`: x is already h_0."""
        h = x if projected else self.project(x)
        states = [h]
        for t in range(self.steps + 1 if self.steps > 0 else 0):
            h = h + F.relu(self.step_bns[t](self.rec(h)))
            states.append(h)
        return states

    def embed(self, h0: Tensor) -> Tensor:
        """Steps 4–6 from h_0: the L2-normalised embedding (CycleMatch's encoder E applied to a projection)."""
        return self.forward(h0, projected=True)

    def forward(self, x: Tensor, projected: bool = False) -> Tensor:
        states = self.hidden_states(x, projected)
        if self.steps == 0:
            f = states[0]
        else:
            hs = torch.stack(states[1:], dim=0)  # (T+1)×B×dim
            w = self.fuse_weight.view(-1, 1, 1) if self.fusion == "scalar" else self.fuse_weight[:, None, :]
            f = F.relu(self.bn_fuse((w * hs).sum(0) + self.fuse_bias))
        return F.normalize(self.bn_out(self.fc_out(f)), dim=1)


class RRFNet(nn.Module):
    """Two RRF branches, one per modality (weights not shared): ``forward(image_feats, text_feats)`` gives the
    L2-normalised ``(img_emb, txt_emb)``; `encode_image` / `encode_text` embed one side."""

    def __init__(
        self,
        image_dim: int,
        text_dim: int,
        steps: int = 3,
        hidden: int = 2048,
        dim: int = 512,
        fusion: str = "scalar",
        dropout: float = 0.5,
        image_stem: nn.Module | None = None,
        text_stem: nn.Module | None = None,
    ):
        super().__init__()
        kw = dict(hidden=hidden, dim=dim, steps=steps, fusion=fusion, dropout=dropout)
        self.image_branch = RRFBranch(image_dim, stem=image_stem, **kw)
        self.text_branch = RRFBranch(text_dim, stem=text_stem, **kw)
        self.steps, self.dim, self.fusion = steps, dim, fusion

    def encode_image(self, x: Tensor) -> Tensor:
        return self.image_branch(x)

    def encode_text(self, x: Tensor) -> Tensor:
        return self.text_branch(x)

    def forward(self, image_feats: Tensor, text_feats: Tensor) -> tuple[Tensor, Tensor]:
        return self.encode_image(image_feats), self.encode_text(text_feats)


@register_model(task="match")
def rrf_net(
    image_dim: int,
    text_dim: int,
    steps: int = 3,
    hidden: int = 2048,
    dim: int = 512,
    fusion: str = "scalar",
    dropout: float = 0.5,
    image_stem: nn.Module | None = None,
    text_stem: nn.Module | None = None,
) -> RRFNet:
    """RRF-Net: two-branch image-text embedding with recurrent residual fusion, T = steps (thesis ch. 5).
    Stems (a small CNN over pixels, a GRU over word ids) come from the feature encoders, set by the trainer."""
    return RRFNet(
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
