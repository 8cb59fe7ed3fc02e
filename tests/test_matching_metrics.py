"""Matching recalls: hand-computed cases, a naive loop reference, chunked == unchunked, ensembles, COCO-1K folds."""

import numpy as np
import pytest
import torch

from imagexplore.matching.metrics import (
    coco_1k_folds,
    embedding_recalls,
    ensemble_similarity,
    recall_metrics,
)

KEYS = "i2t_r1 i2t_r5 i2t_r10 i2t_medr i2t_meanr t2i_r1 t2i_r5 t2i_r10 t2i_medr t2i_meanr rsum".split()


def naive(sims, ci, ks=(1, 5, 10)):
    """Loops straight from the definitions; a non-matching item with an equal score ranks above (pessimistic)."""
    s = np.asarray(sims, dtype=np.float64)
    ci = [int(c) for c in ci]
    m, n = s.shape
    i2t = []
    for i in range(m):
        own = [c for c in range(n) if ci[c] == i]
        if not own:
            continue
        best = max(s[i, c] for c in own)
        i2t.append(1 + sum(1 for c in range(n) if ci[c] != i and s[i, c] >= best))
    t2i = [1 + sum(1 for k in range(m) if k != ci[c] and s[k, c] >= s[ci[c], c]) for c in range(n)]
    out = {}
    for name, r in (("i2t", np.array(i2t)), ("t2i", np.array(t2i))):
        for k in ks:
            out[f"{name}_r{k}"] = 100.0 * np.mean(r <= k)
        out[f"{name}_medr"] = float(np.median(r))
        out[f"{name}_meanr"] = float(np.mean(r))
    out["rsum"] = sum(out[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in ks)
    return out


def assert_same(a, b, exact=False):
    assert list(a) == list(b)
    for key in a:
        if exact:
            assert a[key] == b[key], key
        else:
            assert a[key] == pytest.approx(b[key], abs=1e-9), key


def test_keys_and_types():
    res = recall_metrics(np.eye(3), [0, 1, 2])
    assert list(res) == KEYS
    assert all(type(v) is float for v in res.values())
    assert res["rsum"] == 600.0 and res["i2t_medr"] == 1.0 and res["t2i_meanr"] == 1.0


def test_hand_ties():
    s = np.array([[0.5, 0.5, 0.1], [0.2, 0.3, 0.3]])
    # image 0: its caption 0 ties with caption 1 of image 1 → rank 2; image 1: own captions tie at the top → 1
    # captions: 0 → 1, 1 → 2 (image 0 scores 0.5 > 0.3), 2 → 1
    res = recall_metrics(s, [0, 1, 1], ks=(1, 2))
    assert res["i2t_r1"] == 50 and res["i2t_r2"] == 100 and res["i2t_medr"] == 1.5 and res["i2t_meanr"] == 1.5
    assert res["t2i_r1"] == pytest.approx(200 / 3) and res["t2i_r2"] == 100 and res["t2i_medr"] == 1.0
    assert res["t2i_meanr"] == pytest.approx(4 / 3)
    assert res["rsum"] == pytest.approx(50 + 100 + 200 / 3 + 100)


# images A (3 captions), B (7), C (none), D (1); 11 captions, interleaved
HAND_CI = [1, 0, 1, 3, 1, 0, 1, 1, 0, 1, 1]
HAND_S = [
    [0.9, 0.3, 0.8, 0.0, 0.1, 0.7, 0.2, 0.2, 0.5, 0.6, 0.4],  # A: best own 0.7 (c5); 0.9, 0.8 above → 3
    [0.1, 0.9, 0.2, 0.9, 0.3, 0.5, 0.4, 0.1, 0.2, 0.9, 0.0],  # B: best own 0.9 (c9); ties c1, c3 → 3
    [0.5] * 11,  # C: no caption, skipped for i2t, a competitor for every caption
    [0.0, 0.0, 0.0, 0.4, 0.0, 0.9, 0.0, 0.0, 0.0, 0.0, 0.0],  # D: own 0.4 (c3); 0.9 above → 2
]
# caption ranks column by column; caption 8 ties with C (→ 2), caption 10 has A, C above and D tied (→ 4)
HAND_T2I = [3, 3, 3, 3, 2, 2, 2, 3, 2, 1, 4]


@pytest.mark.parametrize("as_torch", [False, True])
def test_hand_uneven_captions(as_torch):
    s = torch.tensor(HAND_S, dtype=torch.float32) if as_torch else np.array(HAND_S)
    res = recall_metrics(s, HAND_CI, ks=(1, 2, 3))
    assert res["i2t_r1"] == 0 and res["i2t_r2"] == pytest.approx(100 / 3) and res["i2t_r3"] == 100
    assert res["i2t_medr"] == 3 and res["i2t_meanr"] == pytest.approx(8 / 3)
    assert res["t2i_r1"] == pytest.approx(100 / 11)
    assert res["t2i_r2"] == pytest.approx(500 / 11)
    assert res["t2i_r3"] == pytest.approx(1000 / 11)
    assert res["t2i_medr"] == 3 and res["t2i_meanr"] == pytest.approx(sum(HAND_T2I) / 11)
    assert_same(res, naive(HAND_S, HAND_CI, ks=(1, 2, 3)))


def random_case(seed, m=37, max_caps=7, d=6, ties=False):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, max_caps + 1, size=m)
    counts[[0, 1, 2]] = (3, 7, 0)
    ci = rng.permutation(np.repeat(np.arange(m), counts))
    if ties:  # small integers: every product is exact, ties are everywhere
        img = rng.integers(-1, 2, size=(m, d)).astype(np.float32)
        txt = rng.integers(-1, 2, size=(len(ci), d)).astype(np.float32)
    else:
        img = rng.normal(size=(m, d)).astype(np.float32)
        img /= np.linalg.norm(img, axis=1, keepdims=True)
        txt = img[ci] + 0.7 * rng.normal(size=(len(ci), d)).astype(np.float32)
        txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    return img, txt, ci


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_against_naive(seed, ties):
    img, txt, ci = random_case(seed, ties=ties)
    s = img @ txt.T
    want = naive(s, ci)
    assert_same(recall_metrics(s, ci), want)
    assert_same(recall_metrics(torch.from_numpy(s), torch.from_numpy(ci)), want)
    assert_same(recall_metrics(s.astype(np.float64), ci.tolist()), want)
    for chunk in (1, 5, 2048):
        assert_same(embedding_recalls(img, txt, ci, chunk=chunk), want)
        assert_same(embedding_recalls(torch.from_numpy(img), torch.from_numpy(txt), ci, chunk=chunk), want)


def test_caption_count_not_divisible_by_five_and_random_ks():
    img, txt, ci = random_case(5, m=23, max_caps=9)
    assert len(ci) % 5 != 0
    ks = (2, 3, 17)
    want = naive(img @ txt.T, ci, ks)
    assert_same(recall_metrics(img @ txt.T, ci, ks=ks), want)
    assert_same(embedding_recalls(img, txt, ci, ks=ks, chunk=4), want)


def test_chunked_equals_unchunked_large():
    rng = np.random.default_rng(3)
    m, d = 300, 32
    ci = rng.permutation(np.repeat(np.arange(m), 5))
    img = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(m, d)).astype(np.float32)), dim=1)
    txt = torch.nn.functional.normalize(img[ci] + 0.9 * torch.randn(len(ci), d), dim=1)
    full = recall_metrics(img @ txt.T, ci)
    for chunk in (1, 64, 299, 300, 5000):
        assert_same(embedding_recalls(img, txt, ci, chunk=chunk), full, exact=True)
    assert 0 < full["i2t_r1"] < 100 and 0 < full["t2i_r1"] < 100


def test_ensemble_is_the_mean_of_similarities():
    rng = np.random.default_rng(11)
    _, _, ci = random_case(0, m=20)
    imgs = [rng.normal(size=(20, d)).astype(np.float32) for d in (4, 6, 5)]  # members may differ in width
    txts = [a[ci] + rng.normal(size=(len(ci), a.shape[1])).astype(np.float32) for a in imgs]
    mean = np.mean([a.astype(np.float64) @ b.astype(np.float64).T for a, b in zip(imgs, txts)], axis=0)
    sim = ensemble_similarity(imgs, txts)
    np.testing.assert_allclose(sim.numpy(), mean, rtol=1e-5, atol=1e-5)
    want = naive(mean, ci)
    assert_same(recall_metrics(sim, ci), want)
    assert_same(embedding_recalls(imgs, txts, ci, chunk=3), want)
    assert_same(embedding_recalls(tuple(imgs), tuple(txts), ci, chunk=3000), want)
    # a single member is the plain product
    torch.testing.assert_close(ensemble_similarity(imgs[0], txts[0]), torch.from_numpy(imgs[0] @ txts[0].T))
    with pytest.raises(ValueError, match="2 image embedding matrices for 3"):
        embedding_recalls(imgs[:2], txts, ci)


def test_ensemble_with_ties_matches_its_similarity_exactly():
    # four members: the image side is divided by 4, exact in binary (a third is not, and how a third's rounding
    # adds up depends on the BLAS kernel, so 3 members tie differently on some CPUs)
    cases = [random_case(s, m=15, ties=True) for s in (4, 4, 4, 4)]
    ci = cases[0][2]
    rng = np.random.default_rng(0)
    imgs = [c[0] for c in cases]
    txts = [rng.integers(-1, 2, size=c[1].shape).astype(np.float32) for c in cases]
    assert_same(
        embedding_recalls(imgs, txts, ci, chunk=4), recall_metrics(ensemble_similarity(imgs, txts), ci)
    )


def test_image_without_caption_is_skipped():
    s = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.7]])
    res = recall_metrics(s, [0, 2])  # image 1 has no caption; for caption 0 it scores 0.8 < 0.9
    assert res["i2t_r1"] == 100 and res["t2i_r1"] == 100
    res = recall_metrics(s, [1, 2])  # caption 0 now belongs to image 1: image 0 (0.9) ranks above
    assert res["t2i_r1"] == 50 and res["i2t_r1"] == 100  # image 0 is now the one skipped


def test_coco_1k_folds():
    rng = np.random.default_rng(7)
    m, d = 30, 8
    counts = rng.integers(1, 7, size=m)
    ci = np.repeat(np.arange(m), counts)  # captions follow their images, in order
    img = rng.normal(size=(m, d)).astype(np.float32)
    txt = img[ci] + 1.0 * rng.normal(size=(len(ci), d)).astype(np.float32)
    got = coco_1k_folds(img, txt, ci, folds=3, fold_size=10)
    runs = []
    for f in range(3):
        keep = (ci >= 10 * f) & (ci < 10 * (f + 1))
        runs.append(naive(img[10 * f : 10 * (f + 1)] @ txt[keep].T, ci[keep] - 10 * f))
    want = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
    assert_same(got, want)
    assert_same(coco_1k_folds(img, txt, ci, folds=1, fold_size=30), naive(img @ txt.T, ci))
    with pytest.raises(ValueError, match="need 40 images"):
        coco_1k_folds(img, txt, ci, folds=4, fold_size=10)


@pytest.mark.parametrize(
    "args,match",
    [
        ((np.eye(2), [0, 2]), "0..1"),
        ((np.eye(2), [0]), "1 entries for 2"),
        ((np.eye(2), [0.0, 1.0]), "integer"),
        ((np.eye(2), [0, 1], (0,)), "positive"),
        ((np.ones(3), [0, 1, 2]), "2-D"),
    ],
)
def test_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        recall_metrics(*args)
