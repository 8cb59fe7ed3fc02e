"""Matching losses (thesis ch. 5) against per-anchor loops written straight from the formulas."""

import time

import pytest
import torch
import torch.nn.functional as F

from imagexplore.errors import ConfigError
from imagexplore.matching.losses import LOSSES, bi_rank_loss, make_loss, vsepp_loss


def relu(v):
    return torch.clamp(v, min=0)


def ref_bi_rank(img, txt, ids, margin, K, alphas):
    """Per-anchor loop: select the K hardest violators each way, sum the four hinges, divide by K·N."""
    a1, a2, a3, a4 = alphas
    vi, vt = img.detach(), txt.detach()  # the selection reads values only
    n = img.shape[0]
    total = img.new_zeros(())
    for i in range(n):
        sii = img[i] @ txt[i]
        others = [j for j in range(n) if int(ids[j]) != int(ids[i])]
        vii = float(vi[i] @ vt[i])
        i2t = [j for j in others if margin - vii + float(vi[i] @ vt[j]) > 0]
        i2t = sorted(i2t, key=lambda j: -float(vi[i] @ vt[j]))[:K]
        for j in i2t:
            total = (
                total + a1 * relu(margin - sii + img[i] @ txt[j]) + a2 * relu(margin - sii + txt[i] @ txt[j])
            )
        t2i = [j for j in others if margin - vii + float(vi[j] @ vt[i]) > 0]
        t2i = sorted(t2i, key=lambda j: -float(vi[j] @ vt[i]))[:K]
        for j in t2i:
            total = (
                total + a3 * relu(margin - sii + img[j] @ txt[i]) + a4 * relu(margin - sii + img[i] @ img[j])
            )
    return total / (K * n)


def ref_vsepp(img, txt, ids, margin, max_violation):
    n = img.shape[0]
    total = img.new_zeros(())
    for i in range(n):  # image anchor i, sentence negatives j
        costs = [
            relu(margin - img[i] @ txt[i] + img[i] @ txt[j]) for j in range(n) if int(ids[j]) != int(ids[i])
        ]
        if costs:
            total = total + (torch.stack(costs).max() if max_violation else torch.stack(costs).sum())
    for j in range(n):  # sentence anchor j, image negatives i
        costs = [
            relu(margin - img[j] @ txt[j] + img[i] @ txt[j]) for i in range(n) if int(ids[i]) != int(ids[j])
        ]
        if costs:
            total = total + (torch.stack(costs).max() if max_violation else torch.stack(costs).sum())
    return total


def batch(n, d, n_images, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, n_images, (n,), generator=g)
    proto = torch.randn(n_images, d, generator=g, dtype=torch.float64)
    img = F.normalize(proto[ids] + 0.3 * torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    txt = F.normalize(proto[ids] + 0.8 * torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    return img.requires_grad_(), txt.requires_grad_(), ids


def values_and_grads(fn, img, txt):
    loss = fn(img, txt)
    gi, gt = torch.autograd.grad(loss, (img, txt))
    return loss.detach(), gi, gt


CASES = [  # (N, D, images, K, margin, alphas, seed)
    (12, 6, 5, 50, 0.1, (1.0, 0.5, 2.0, 1.0), 0),  # K > N − 1
    (16, 4, 6, 3, 0.5, (1.0, 0.5, 2.0, 1.0), 1),  # more violators than K
    (20, 8, 7, 5, 0.2, (0.7, 1.3, 0.4, 2.1), 2),
    (24, 5, 6, 1, 1.0, (1.0, 0.5, 2.0, 1.0), 3),
    (15, 3, 15, 20, 0.05, (1.0, 0.0, 2.0, 0.0), 4),  # ids all distinct, no structure terms
    (18, 6, 3, 7, 0.3, (1.0, 0.5, 2.0, 1.0), 5),  # many repeats of the same image
]


@pytest.mark.parametrize("n,d,n_images,k,margin,alphas,seed", CASES)
def test_bi_rank_matches_loop(n, d, n_images, k, margin, alphas, seed):
    img, txt, ids = batch(n, d, n_images, seed)
    assert len(set(ids.tolist())) < n  # repeated image ids
    ours = values_and_grads(lambda a, b: bi_rank_loss(a, b, ids, margin, k, alphas), img, txt)
    ref = values_and_grads(lambda a, b: ref_bi_rank(a, b, ids, margin, k, alphas), img, txt)
    assert ours[0] > 0
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_bi_rank_k_clips_but_normaliser_does_not():
    img, txt, ids = batch(10, 4, 4, 7)
    big = bi_rank_loss(img, txt, ids, margin=0.5, k=1000)
    nine = bi_rank_loss(img, txt, ids, margin=0.5, k=9)  # N − 1: every negative is available
    torch.testing.assert_close(big * 1000, nine * 9, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("max_violation", [False, True])
@pytest.mark.parametrize(
    "n,d,n_images,margin,seed", [(12, 6, 5, 0.2, 0), (20, 4, 8, 0.5, 1), (9, 3, 2, 0.1, 2)]
)
def test_vsepp_matches_loop(n, d, n_images, margin, seed, max_violation):
    img, txt, ids = batch(n, d, n_images, seed)
    ours = values_and_grads(lambda a, b: vsepp_loss(a, b, ids, margin, max_violation), img, txt)
    ref = values_and_grads(lambda a, b: ref_vsepp(a, b, ids, margin, max_violation), img, txt)
    assert ours[0] > 0
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_hand_case_orthogonal():
    eye = torch.eye(4, dtype=torch.float64)
    ids = torch.arange(4)
    # s(x_i,y_i) = 1 and every other similarity 0: a hinge is m − 1, positive only when m > 1
    assert bi_rank_loss(eye, eye, ids, margin=0.9).item() == 0
    # m = 1.5: every negative violates, all hinges 0.5; per anchor 3·(1·.5 + .5·.5) + 3·(2·.5 + 1·.5) = 6.75
    assert bi_rank_loss(eye, eye, ids, margin=1.5, k=50).item() == pytest.approx(4 * 6.75 / (50 * 4))
    # K = 2 keeps two of the three tied negatives each way: 2·0.75 + 2·1.5 = 4.5 per anchor
    assert bi_rank_loss(eye, eye, ids, margin=1.5, k=2).item() == pytest.approx(4 * 4.5 / (2 * 4))
    # VSE++: 4 anchors × 3 negatives × 2 directions × 0.5, or the hardest only: 4 × 2 × 0.5
    assert vsepp_loss(eye, eye, ids, margin=1.5).item() == pytest.approx(12.0)
    assert vsepp_loss(eye, eye, ids, margin=1.5, max_violation=True).item() == pytest.approx(4.0)
    # the same image twice: rows 0 and 1 share id 0, so they are not negatives of each other
    ids2 = torch.tensor([0, 0, 1, 2])
    assert vsepp_loss(eye, eye, ids2, margin=1.5).item() == pytest.approx(12.0 - 2 * 2 * 0.5)


def test_zero_when_positives_beat_negatives_by_the_margin():
    ids = torch.tensor([0, 0, 1, 2, 2, 2, 3])
    emb = F.one_hot(ids, 4).to(torch.float64).requires_grad_()  # captions of an image coincide with it
    txt = emb.detach().clone().requires_grad_()
    for name in LOSSES:
        loss = make_loss(name, margin=0.99)(emb, txt, ids)
        assert loss.item() == 0, name
        gi, gt = torch.autograd.grad(loss, (emb, txt))
        assert gi.abs().sum() == 0 and gt.abs().sum() == 0


def test_masks_carry_no_gradient_and_float32_works():
    img, txt, ids = batch(30, 8, 10, 3)
    img32, txt32 = img.detach().float().requires_grad_(), txt.detach().float().requires_grad_()
    loss32 = bi_rank_loss(img32, txt32, ids, k=4)
    loss64 = bi_rank_loss(img, txt, ids, k=4)
    assert loss32.dtype == torch.float32
    assert loss32.item() == pytest.approx(loss64.item(), rel=1e-5)
    loss32.backward()
    assert torch.isfinite(img32.grad).all() and img32.grad.abs().sum() > 0


def test_large_batch_is_fast():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 300, (1500,), generator=g)
    img = F.normalize(torch.randn(1500, 512, generator=g), dim=1).requires_grad_()
    txt = F.normalize(torch.randn(1500, 512, generator=g), dim=1).requires_grad_()
    bi_rank_loss(img, txt, ids).backward()  # warm-up
    t0 = time.perf_counter()
    loss = bi_rank_loss(img, txt, ids)
    loss.backward()
    assert time.perf_counter() - t0 < 3.0
    assert loss.item() > 0


def test_make_loss_and_registry():
    assert set(LOSSES) == {"bi_rank", "vsepp_sum", "vsepp_max"}
    img, txt, ids = batch(10, 4, 5, 0)
    torch.testing.assert_close(
        make_loss("bi_rank", margin=0.3, k=3, alphas=[1, 1, 1, 1])(img, txt, ids),
        bi_rank_loss(img, txt, ids, margin=0.3, k=3, alphas=(1.0, 1.0, 1.0, 1.0)),
    )
    torch.testing.assert_close(
        make_loss("vsepp_max")(img, txt, ids), vsepp_loss(img, txt, ids, margin=0.2, max_violation=True)
    )
    torch.testing.assert_close(LOSSES["vsepp_sum"](img, txt, ids), vsepp_loss(img, txt, ids))


@pytest.mark.parametrize(
    "name,options",
    [
        ("triplet", {}),
        ("bi_rank", {"gamma": 1}),
        ("vsepp_max", {"k": 5}),
        ("vsepp_sum", {"max_violation": True}),
        ("bi_rank", {"k": 0}),
        ("bi_rank", {"k": 2.5}),
        ("bi_rank", {"margin": "big"}),
        ("bi_rank", {"alphas": (1, 2, 3)}),
    ],
)
def test_make_loss_refuses(name, options):
    with pytest.raises(ConfigError) as e:
        make_loss(name, **options)
    assert "\n" not in str(e.value)


def test_cases_cover_both_sides_of_k():
    """The parametrised cases include anchors with fewer violators than K and anchors with more."""
    fewer = more = False
    for n, d, n_images, k, margin, _, seed in CASES:
        img, txt, ids = batch(n, d, n_images, seed)
        s = (img @ txt.T).detach()
        viol = ((margin - s.diagonal()[:, None] + s > 0) & (ids[:, None] != ids[None, :])).sum(1)
        fewer |= bool((viol < k).any())
        more |= bool((viol > k).any())
    assert fewer and more
