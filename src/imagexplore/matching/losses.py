"""Ranking losses for image-text matching (thesis ch. 5): the bi-rank loss of RRF-Net and VSE++ for comparison.

All losses take a batch of N (image, sentence) pairs: ``img`` and ``txt`` are N×D L2-normalised embeddings (row i
of both is pair i, so the similarity s(x_i, y_j) is the dot product ``img[i] · txt[j]``) and ``image_ids`` is the
length-N integer id of each pair's image. Captions of the same image share the id and are never negatives of each
other, also when the same image appears in several rows of the batch.

`make_loss(name, **options)` builds a loss of the registry `LOSSES` as a callable ``(img, txt, image_ids)``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from numbers import Real

import torch
from torch import Tensor

from imagexplore.errors import ConfigError

__all__ = ["LOSSES", "bi_rank_loss", "make_loss", "vsepp_loss"]


def _negatives(image_ids, n: int, device) -> Tensor:
    """N×N bool: True where rows i and j belong to different images (j may be a negative of anchor i)."""
    ids = torch.as_tensor(image_ids, device=device)
    if ids.shape != (n,):
        raise ValueError(f"image_ids must have shape ({n},), got {tuple(ids.shape)}")
    return ids[:, None] != ids[None, :]


def _check_pairs(img: Tensor, txt: Tensor) -> int:
    if img.dim() != 2 or img.shape != txt.shape:
        raise ValueError(
            f"img and txt must be N×D of the same shape, got {tuple(img.shape)}, {tuple(txt.shape)}"
        )
    return img.shape[0]


def _k_hardest(scores: Tensor, valid: Tensor, k: int) -> Tensor:
    """Bool mask keeping, in every row, the (at most) k entries of largest ``scores`` among the ``valid`` ones.

    Rows with fewer than k valid entries keep all of them. Among equal scores `torch.topk` decides which are
    kept (only matters when the k-th and (k+1)-th hardest negatives tie exactly).
    """
    kk = min(k, scores.shape[1])
    idx = scores.masked_fill(~valid, -math.inf).topk(kk, dim=1).indices
    return torch.zeros_like(valid).scatter_(1, idx, valid.gather(1, idx))


def bi_rank_loss(
    img: Tensor,
    txt: Tensor,
    image_ids,
    margin: float = 0.1,
    k: int = 50,
    alphas: Sequence[float] = (1.0, 0.5, 2.0, 1.0),
) -> Tensor:
    """The bi-rank loss of RRF-Net (thesis ch. 5), exactly as its formula.

    For anchor i, with m the margin and s the cosine (dot product of the normalised embeddings):

    - image→text: sentences j with l_j ≠ l_i that violate m − s(x_i,y_i) + s(x_i,y_j) > 0; the K hardest (largest
      s(x_i,y_j)) form mask M1;
    - text→image: images j with l_j ≠ l_i that violate m − s(x_i,y_i) + s(x_j,y_i) > 0; the K hardest form M2.

    L = 1/(K·N) Σ_i Σ_j M1[i,j]·(α1 [m − s(x_i,y_i) + s(x_i,y_j)]_+ + α2 [m − s(x_i,y_i) + s(y_i,y_j)]_+)
                     + M2[i,j]·(α3 [m − s(x_i,y_i) + s(x_j,y_i)]_+ + α4 [m − s(x_i,y_i) + s(x_i,x_j)]_+)

    The division is by the configured K times N even where fewer than K violators exist (K larger than N − 1
    included: the selection is clipped to what is available, the normaliser is not). The masks are a selection
    and carry no gradient; the hinges do. Vectorised: three N×N similarity products and two top-k.
    """
    n = _check_pairs(img, txt)
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if len(alphas) != 4:
        raise ValueError(f"alphas must be 4 numbers (α1..α4), got {alphas!r}")
    k = int(k)
    a1, a2, a3, a4 = (float(a) for a in alphas)
    s = img @ txt.T  # s[i, j] = s(x_i, y_j)
    base = margin - s.diagonal()[:, None]  # m − s(x_i, y_i), per anchor row
    with torch.no_grad():
        neg = _negatives(image_ids, n, img.device)
        sd, bd = s.detach(), base.detach()
        m1 = _k_hardest(sd, neg & (bd + sd > 0), k)
        m2 = _k_hardest(sd.T, neg & (bd + sd.T > 0), k)
    zero = s.new_zeros(())
    total = s.new_zeros(())
    if a1 or a2:
        h = a1 * torch.relu(base + s)
        if a2:
            h = h + a2 * torch.relu(base + txt @ txt.T)
        total = total + torch.where(m1, h, zero).sum()
    if a3 or a4:
        h = a3 * torch.relu(base + s.T)
        if a4:
            h = h + a4 * torch.relu(base + img @ img.T)
        total = total + torch.where(m2, h, zero).sum()
    return total / (k * n)


def vsepp_loss(
    img: Tensor, txt: Tensor, image_ids, margin: float = 0.2, max_violation: bool = False
) -> Tensor:
    """VSE++ hinge loss (Faghri et al. 2018), aware of image ids.

    cost_s[i,j] = [m − s(x_i,y_i) + s(x_i,y_j)]_+ (image anchor i, negative sentence j) and
    cost_im[i,j] = [m − s(x_j,y_j) + s(x_i,y_j)]_+ (sentence anchor j, negative image i), over pairs with
    l_i ≠ l_j. ``max_violation=False`` sums all of them (VSE0); ``max_violation=True`` keeps only the hardest
    negative of each anchor (VSE++). Returned as the **sum over the batch**, as the VSE++ reference code does (not
    a mean): scale the learning rate with the batch size accordingly.
    """
    n = _check_pairs(img, txt)
    s = img @ txt.T
    pos = s.diagonal()
    not_neg = ~_negatives(image_ids, n, img.device)
    cost_s = (margin + s - pos[:, None]).clamp(min=0).masked_fill(not_neg, 0)
    cost_im = (margin + s - pos[None, :]).clamp(min=0).masked_fill(not_neg, 0)
    if max_violation:
        return cost_s.max(dim=1).values.sum() + cost_im.max(dim=0).values.sum()
    return cost_s.sum() + cost_im.sum()


LossFn = Callable[..., Tensor]

# name -> (function, fixed keywords, options a user may set)
_SPECS: dict[str, tuple[LossFn, dict, tuple[str, ...]]] = {
    "bi_rank": (bi_rank_loss, {}, ("margin", "k", "alphas")),
    "vsepp_sum": (vsepp_loss, {"max_violation": False}, ("margin",)),
    "vsepp_max": (vsepp_loss, {"max_violation": True}, ("margin",)),
}

LOSSES: dict[str, LossFn] = {name: functools.partial(fn, **fixed) for name, (fn, fixed, _) in _SPECS.items()}
"""Matching losses by name, each ``(img, txt, image_ids, **options) -> scalar``."""


def _check_option(name: str, key: str, value) -> None:
    def bad(expected: str):
        raise ConfigError(f"loss '{name}': option {key}={value!r} must be {expected}")

    def real(v) -> bool:
        return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)

    if key == "margin" and not real(value):
        bad("a finite number")
    if key == "k" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        bad("a positive integer")
    if key == "alphas" and (
        isinstance(value, str | bytes)
        or not isinstance(value, Sequence)
        or len(value) != 4
        or not all(real(a) for a in value)
    ):
        bad("a list of 4 numbers (α1, α2, α3, α4)")


def make_loss(name: str, **options) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """The loss ``name`` of `LOSSES` with ``options`` bound, as a callable ``(img, txt, image_ids) -> loss``.

    Options: bi_rank takes margin, k, alphas; vsepp_sum / vsepp_max take margin. An unknown name, option or a
    value of the wrong kind raises `ConfigError`.
    """
    if name not in _SPECS:
        raise ConfigError(f"unknown matching loss '{name}'; losses: {', '.join(_SPECS)}")
    fn, fixed, allowed = _SPECS[name]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"loss '{name}' has no option {', '.join(unknown)}; options: {', '.join(allowed) or 'none'}"
        )
    for key, value in options.items():
        _check_option(name, key, value)
    if "alphas" in options:
        options["alphas"] = tuple(float(a) for a in options["alphas"])
    return functools.partial(fn, **fixed, **options)
