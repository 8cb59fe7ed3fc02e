"""The RDS/HED loss against a naive per-pixel reference; relaxed pixels give exactly zero loss and gradient."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from imagexplore.edges.benchmark import best_counts
from imagexplore.edges.losses import IGNORE, EdgeLoss, weighted_bce
from imagexplore.errors import ConfigError


def naive_loss(logits, targets, beta, reduction):
    """Pixel by pixel, straight from the formula L = −(1/N)[β Σ_{y=1} log σ + Σ_{y=0} log(1 − σ)]."""
    n, m, h, w = logits.shape
    out = []
    for j in range(m):
        total = 0.0
        for i in range(n):
            pos = sum(1 for a in range(h) for b in range(w) if targets[i, j, a, b] == 1)
            neg = sum(1 for a in range(h) for b in range(w) if targets[i, j, a, b] == 0)
            bet = (neg / pos if pos else 0.0) if beta == "auto" else beta
            s = 0.0
            for a in range(h):
                for b in range(w):
                    x, y = float(logits[i, j, a, b]), int(targets[i, j, a, b])
                    sig = 1 / (1 + math.exp(-x))
                    if y == 1:
                        s -= bet * math.log(sig)
                    elif y == 0:
                        s -= math.log(1 - sig)
            if reduction == "mean":
                s /= max(pos + neg, 1)
            total += s
        out.append(total / n)
    return torch.tensor(out, dtype=torch.float64)


def random_case(seed=0, n=2, m=3, h=5, w=6):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, m, h, w, generator=g, dtype=torch.float64) * 3
    targets = torch.randint(0, 3, (n, m, h, w), generator=g).to(torch.uint8)
    targets[targets == 2] = IGNORE
    return logits, targets


@pytest.mark.parametrize("beta", [9.0, 1.0, "auto"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_weighted_bce_matches_naive_reference(beta, reduction):
    logits, targets = random_case(seed=1)
    got = weighted_bce(logits, targets, beta, reduction).double()
    want = naive_loss(logits, targets, beta, reduction)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-9)


def test_relaxed_pixels_have_exactly_zero_loss_and_gradient():
    logits, targets = random_case(seed=2)
    ignored = targets == IGNORE
    assert ignored.any()
    x = logits.clone().requires_grad_(True)
    loss, _ = EdgeLoss(beta="auto")(x, targets)
    loss.backward()
    assert torch.all(x.grad[ignored] == 0)
    assert torch.all(x.grad[~ignored] != 0)
    # any value (even extreme logits) at ignored pixels leaves the loss bit-identical
    y = logits.clone()
    y[ignored] = 1e4 * torch.sign(torch.randn_like(y[ignored]))
    loss2, _ = EdgeLoss(beta="auto")(y, targets)
    assert loss2.item() == loss.item()


def test_total_is_sides_plus_fusion_with_weights():
    logits, targets = random_case(seed=3, m=6)
    per_map = weighted_bce(logits, targets, 9.0, "sum")
    total, logs = EdgeLoss(side_weight=0.5, fuse_weight=2.0)(logits, targets)
    torch.testing.assert_close(total, 0.5 * per_map[:5].sum() + 2.0 * per_map[5])
    assert logs["loss_fuse"] == pytest.approx(float(per_map[5]))


def test_auto_beta_of_an_image_without_edges_is_finite():
    logits = torch.randn(1, 2, 4, 4)
    targets = torch.zeros(1, 2, 4, 4, dtype=torch.uint8)
    loss, _ = EdgeLoss(beta="auto")(logits, targets)
    assert torch.isfinite(loss)


def test_loss_options_are_validated():
    assert EdgeLoss.from_options({"beta": "auto", "reduction": "mean"}).beta == "auto"
    with pytest.raises(ConfigError, match="unknown config key .loss.betta."):
        EdgeLoss.from_options({"betta": 9})
    with pytest.raises(ConfigError, match="beta"):
        EdgeLoss.from_options({"beta": -1})
    with pytest.raises(ConfigError, match="reduction"):
        EdgeLoss.from_options({"reduction": "max"})


def test_best_image_counts_takes_the_last_maximum_as_the_benchmark():
    # thresholds 1..3: F = 0.5, 2/3, 2/3 → the benchmark's ff(end) is the third row
    counts = np.array([[1, 2, 1, 2], [2, 2, 1, 2], [1, 2, 1, 1]])
    assert best_counts(counts).tolist() == [1, 2, 1, 1]
