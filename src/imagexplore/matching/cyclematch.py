"""CycleMatch: cycle-consistent image-text embeddings with late fusion (thesis ch. 6).

[published] Dual mappings and reconstructed mappings cascaded in a cycle, three embeddings (latent, dual,
reconstructed) in two cycle branches (from images, from texts), and late fusion of their scores at test time
(average and adaptive). [reconstruction — ours, on RRF-Net's machinery; every choice below is a config option]

- Each modality's RRF branch (`RRFBranch`) is split in two: the **projection** P(x) = h_0 (BN → FC → ReLU →
  dropout → FC → BN → ReLU) and the **encoder** E(h_0) (the RRF steps, fusion, FC → BN → L2). z_v = E_v(P_v(x)),
  z_t = E_t(P_t(y)) are the **latent** embeddings.
- **Dual mappings** F_{v→t}: z_v → ŷ, a point of the text side's projection space P_t(y), and F_{t→v}: z_t → x̂ in
  P_v(x) (each FC → BN → ReLU → FC → BN → ReLU: non-negative like h_0).
- **Cycles**: image x → z_v → ŷ → E_t(ŷ) → F_{t→v} → x̃ (the image **reconstructed** in its own projection space);
  text y → z_t → x̂ → E_v(x̂) → F_{v→t} → ỹ. The cycle reuses the encoders and mappings: no extra weights.
- Loss L = L_lat + λ_d L_dual + λ_r L_rec (`loss.dual_weight`, `loss.rec_weight`): L_lat = the ranking loss
  (bi-rank by default) of (z_v, z_t); L_dual = ranking of (ŷ, P_t(y)) plus of (P_v(x), x̂); L_rec = ranking of
  (x̃, P_v(x)) plus of (ỹ, P_t(y)) (`loss.rec_loss: rank`), or the L1 distance of the normalised vectors
  (`l1`). Cosines everywhere; captions of the same image are never negatives.
- **Three similarity matrices** for image i and caption j:
  S_lat = z_v·z_t; S_dual = ½(ŷ_i·P_t(y_j) + P_v(x_i)·x̂_j); S_rec = ½(x̃_i·x̂_j + ŷ_i·ỹ_j) — each side's
  reconstruction against the other side's dual expression, in the same space (all vectors L2-normalised).
  Each is a dot product of per-side vectors, so any fixed weighting w of the three is one dot product of
  concatenated embeddings [w_1 u_lat, w_2 u_dual, w_3 u_rec]·[v_lat, v_dual, v_rec]: a FAISS index, the chunked
  recall code and ensembles all work unchanged.
- **Late fusion** (`--fusion`): one space alone (`latent`, `dual`, `reconstructed`), `average` (w = ⅓ each),
  `adaptive` (per query, w = softmax(c / τ) of each matrix's confidence c = (top-1 − top-2) / std of the query's
  scores over the candidates — images are the candidates of a caption, and of an image the captions' images,
  each scored by its best caption), or `fitted` (fixed weights, the best R@sum on the validation split over a
  0.1-step grid of the simplex).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from imagexplore.errors import ConfigError
from imagexplore.matching.models import RRFBranch, _fc  # _fc: Gaussian std 0.05, bias 0, as the branches
from imagexplore.models import register_model

__all__ = [
    "FUSIONS",
    "SPACES",
    "CycleMatchNet",
    "adaptive_weights",
    "cyclematch_net",
    "fit_fusion_weights",
    "fusion_weights",
]

SPACES = ("latent", "dual", "reconstructed")
FUSIONS = (*SPACES, "average", "adaptive", "fitted")
_HALF = 1.0 / math.sqrt(2.0)


def fusion_weights(fusion: str) -> tuple[float, float, float]:
    """The fixed weights of a named fusion (adaptive: 1 each — the per-query weights are applied later)."""
    if fusion in SPACES:
        return tuple(float(s == fusion) for s in SPACES)
    if fusion == "average":
        return (1 / 3, 1 / 3, 1 / 3)
    if fusion == "adaptive":
        return (1.0, 1.0, 1.0)
    raise ConfigError(f"unknown fusion {fusion!r}; choices: {', '.join(FUSIONS)}")


class DualMapping(nn.Module):
    """z (dim) → a point of the other modality's projection space (dim, non-negative like h_0)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.bn1 = _fc(dim, hidden), nn.BatchNorm1d(hidden)
        self.fc2, self.bn2 = _fc(hidden, dim), nn.BatchNorm1d(dim)

    def forward(self, z: Tensor) -> Tensor:
        return F.relu(self.bn2(self.fc2(F.relu(self.bn1(self.fc1(z))))))


class CycleMatchNet(nn.Module):
    """Two RRF branches + two dual mappings; `cycle(x, y)` gives every vector the loss needs, `encode_image` /
    `encode_text` the fused per-side embeddings for the weights set by `set_fusion` (default average)."""

    kind = "cyclematch"

    def __init__(
        self,
        image_dim: int,
        text_dim: int,
        steps: int = 0,
        hidden: int = 2048,
        dim: int = 512,
        fusion: str = "scalar",
        dropout: float = 0.5,
        map_hidden: int = 512,
        image_stem: nn.Module | None = None,
        text_stem: nn.Module | None = None,
    ):
        super().__init__()
        kw = dict(hidden=hidden, dim=dim, steps=steps, fusion=fusion, dropout=dropout)
        self.image_branch = RRFBranch(image_dim, stem=image_stem, **kw)
        self.text_branch = RRFBranch(text_dim, stem=text_stem, **kw)
        if isinstance(map_hidden, bool) or not isinstance(map_hidden, int) or map_hidden < 1:
            raise ConfigError(f"CycleMatch: map_hidden must be an integer >= 1, got {map_hidden!r}")
        self.v2t = DualMapping(dim, map_hidden)  # F_{v→t}
        self.t2v = DualMapping(dim, map_hidden)  # F_{t→v}
        self.steps, self.dim = steps, dim
        self.weights = fusion_weights("average")

    def set_fusion(self, weights) -> None:
        """Fixed weights of (latent, dual, reconstructed), carried by the image side's embedding."""
        w = tuple(float(v) for v in weights)
        if len(w) != 3 or any(v < 0 or not math.isfinite(v) for v in w) or not any(w):
            raise ConfigError(f"fusion weights must be 3 non-negative numbers, not all 0; got {weights!r}")
        self.weights = w

    # ----------------------------------------------------------------------------------------- per side
    def image_side(self, x: Tensor) -> dict[str, Tensor]:
        p = self.image_branch.project(x)
        z = self.image_branch.embed(p)
        y_hat = self.v2t(z)
        x_rec = self.t2v(self.text_branch.embed(y_hat))
        return {"p": p, "z": z, "dual": y_hat, "rec": x_rec}

    def text_side(self, y: Tensor) -> dict[str, Tensor]:
        p = self.text_branch.project(y)
        z = self.text_branch.embed(p)
        x_hat = self.t2v(z)
        y_rec = self.v2t(self.image_branch.embed(x_hat))
        return {"p": p, "z": z, "dual": x_hat, "rec": y_rec}

    def cycle(self, x: Tensor, y: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        return self.image_side(x), self.text_side(y)

    # ----------------------------------------------------------------------------------------- embeddings
    @staticmethod
    def image_spaces(v: dict[str, Tensor]) -> list[Tensor]:
        """u_lat, u_dual, u_rec of the image side (see the module docstring for the matching text vectors)."""
        n = F.normalize
        return [
            v["z"],
            torch.cat([n(v["dual"], dim=1), n(v["p"], dim=1)], 1) * _HALF,
            torch.cat([n(v["rec"], dim=1), n(v["dual"], dim=1)], 1) * _HALF,
        ]

    @staticmethod
    def text_spaces(v: dict[str, Tensor]) -> list[Tensor]:
        n = F.normalize
        return [
            v["z"],
            torch.cat([n(v["p"], dim=1), n(v["dual"], dim=1)], 1) * _HALF,
            torch.cat([n(v["dual"], dim=1), n(v["rec"], dim=1)], 1) * _HALF,
        ]

    def space_dims(self) -> list[int]:
        return [self.dim, 2 * self.dim, 2 * self.dim]

    def encode_image(self, x: Tensor) -> Tensor:
        parts = self.image_spaces(self.image_side(x))
        return torch.cat([w * u for w, u in zip(self.weights, parts) if w], 1)

    def encode_text(self, y: Tensor) -> Tensor:
        parts = self.text_spaces(self.text_side(y))
        return torch.cat([v for w, v in zip(self.weights, parts) if w], 1)

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return self.encode_image(x), self.encode_text(y)


@register_model(task="match")
def cyclematch_net(image_dim: int, text_dim: int, **kwargs) -> CycleMatchNet:
    """CycleMatch: latent, dual and reconstructed embeddings in two cycle branches (thesis ch. 6, reconstruction).
    Options as `CycleMatchNet`: steps (the RRF steps of each encoder; 0 = the plain branch), hidden, dim, fusion,
    dropout, map_hidden."""
    return CycleMatchNet(image_dim, text_dim, **kwargs)


def cyclematch_loss(
    model_out, image_ids, rank_loss, dual_weight: float = 1.0, rec_weight: float = 1.0, rec_loss="rank"
):
    """L = L_lat + λ_d L_dual + λ_r L_rec (module docstring) and its three terms for the log."""
    iv, tv = model_out
    n = F.normalize
    lat = rank_loss(iv["z"], tv["z"], image_ids)
    pv, pt = n(iv["p"], dim=1), n(tv["p"], dim=1)
    dual = rank_loss(n(iv["dual"], dim=1), pt, image_ids) + rank_loss(pv, n(tv["dual"], dim=1), image_ids)
    xr, yr = n(iv["rec"], dim=1), n(tv["rec"], dim=1)
    if rec_loss == "rank":
        rec = rank_loss(xr, pv, image_ids) + rank_loss(yr, pt, image_ids)
    else:
        rec = (xr - pv).abs().sum(1).mean() + (yr - pt).abs().sum(1).mean()
    total = lat + dual_weight * dual + rec_weight * rec
    return total, {"lat": float(lat.detach()), "dual": float(dual.detach()), "rec": float(rec.detach())}


# --------------------------------------------------------------------------------------------- late fusion
def _split(emb: Tensor, dims: list[int]) -> list[Tensor]:
    return list(torch.split(emb, dims, dim=1))


def _confidence(scores: Tensor) -> Tensor:
    """(top-1 − top-2) / std per row: how clearly a query's best candidate stands out, comparable across spaces."""
    top = scores.topk(2, dim=1).values
    return (top[:, 0] - top[:, 1]) / scores.std(dim=1).clamp_min(1e-6)


def adaptive_weights(
    queries: Tensor,
    candidates: Tensor,
    dims: list[int],
    temperature: float = 1.0,
    candidate_group: np.ndarray | None = None,
    chunk: int = 1024,
) -> Tensor:
    """Per-query fusion weights (Q×3): softmax over the spaces of each space's confidence / temperature.

    `queries`, `candidates`: the concatenated per-space vectors (weights 1). `candidate_group` (one id per
    candidate, e.g. the image of each caption): candidates are scored per group, by their best member."""
    if temperature <= 0:
        raise ConfigError(f"adaptive fusion temperature must be > 0, got {temperature!r}")
    q_parts, c_parts = _split(queries, dims), _split(candidates, dims)
    groups = None
    if candidate_group is not None:
        groups = torch.as_tensor(np.asarray(candidate_group), dtype=torch.long)
        n_groups = int(groups.max()) + 1
    out = []
    for start in range(0, queries.shape[0], chunk):
        conf = []
        for q, c in zip(q_parts, c_parts):
            s = q[start : start + chunk] @ c.T
            if groups is not None:
                g = s.new_full((s.shape[0], n_groups), -float("inf"))
                s = g.scatter_reduce(1, groups.expand(s.shape[0], -1), s, reduce="amax")
            conf.append(_confidence(s))
        out.append(torch.softmax(torch.stack(conf, 1) / temperature, dim=1))
    return torch.cat(out) if out else queries.new_zeros((0, 3))


def weigh(emb: Tensor, weights: Tensor, dims: list[int]) -> Tensor:
    """Each row's space blocks scaled by its own weights (Q×3)."""
    return torch.cat([p * weights[:, m : m + 1] for m, p in enumerate(_split(emb, dims))], 1)


def adaptive_recalls(
    img: Tensor, txt: Tensor, caption_image: np.ndarray, dims: list[int], temperature: float = 1.0, chunk=2048
) -> dict[str, float]:
    """R@K both ways under adaptive fusion: image queries weigh the image side by their own weights (i→t keys),
    caption queries the caption side (t→i keys)."""
    from imagexplore.matching.metrics import embedding_recalls

    w_img = adaptive_weights(img, txt, dims, temperature, candidate_group=caption_image)
    w_txt = adaptive_weights(txt, img, dims, temperature)
    i2t = embedding_recalls(weigh(img, w_img, dims), txt, caption_image, chunk=chunk)
    t2i = embedding_recalls(img, weigh(txt, w_txt, dims), caption_image, chunk=chunk)
    out = {k: v for k, v in i2t.items() if k.startswith("i2t")}
    out.update({k: v for k, v in t2i.items() if k.startswith("t2i")})
    out["rsum"] = sum(out[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10))
    return out


def fit_fusion_weights(
    img: Tensor, txt: Tensor, caption_image: np.ndarray, dims: list[int], step: float = 0.1
):
    """The fixed (latent, dual, reconstructed) weights with the best R@sum over a `step` grid of the simplex
    (ties: the earlier grid point, latent-heavy first). `img`, `txt`: unweighted concatenations (e.g. val)."""
    from imagexplore.matching.metrics import embedding_recalls

    n = round(1 / step)
    best, best_w = -1.0, (1.0, 0.0, 0.0)
    img_parts = _split(img, dims)
    for a, b in itertools.product(range(n + 1), repeat=2):
        if a + b > n:
            continue
        w = (1 - (a + b) / n, a / n, b / n)
        scaled = torch.cat([p * wm for p, wm in zip(img_parts, w)], 1)
        r = embedding_recalls(scaled, txt, caption_image)["rsum"]
        if r > best + 1e-9:
            best, best_w = r, w
    return tuple(round(v, 6) for v in best_w), best
