import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from helpers import tiny_classifier_cfg
from imagexplore.classification.evaluate import evaluate
from imagexplore.classification.preprocess import (
    GCNZCA,
    StandardAugment,
    from_meta,
    global_contrast_normalize,
)
from imagexplore.classification.train import train


def test_gcn_matches_pylearn2_formula():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 12)) * 3 + 1
    # pylearn2: X -= mean(axis=1); normalizers = sqrt((X**2).sum(axis=1)) / scale; X /= normalizers
    ref = x - x.mean(1, keepdims=True)
    ref = ref / (np.sqrt((ref**2).sum(1, keepdims=True)) / 55.0)
    got = global_contrast_normalize(torch.from_numpy(x), 55.0).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    # constant rows: divisor below min_divisor is replaced by 1 (no division by zero)
    assert torch.equal(global_contrast_normalize(torch.ones(2, 4)), torch.zeros(2, 4))


def test_zca_whitens_training_data():
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(12, 12, generator=g)
    x = (torch.randn(4000, 12, generator=g) @ mix).view(4000, 3, 2, 2)  # correlated "pixels"
    ds = TensorDataset(x, torch.zeros(4000, dtype=torch.long))
    zca = GCNZCA.fit(ds, scale=1.0, bias=1e-9)  # (almost) no regularisation: exact whitening
    flat = global_contrast_normalize(x.flatten(1).double(), 1.0)
    w = (flat - zca.mean.double()) @ zca.whiten.double()
    cov = w.T @ w / len(w)
    # GCN removes one dimension (each row sums to zero), so the whitened covariance is a projection: λ ∈ {0, 1}
    evals = torch.linalg.eigvalsh(cov)
    assert torch.allclose(evals[1:], torch.ones(11, dtype=torch.float64), atol=1e-3) and evals[0].abs() < 1e-3
    assert torch.allclose(zca.whiten, zca.whiten.T, atol=1e-5)  # ZCA (not PCA) whitening is symmetric
    again = from_meta(zca.to_meta())
    torch.testing.assert_close(again(x[:7]), zca(x[:7]))


def test_standard_augment_keeps_shape_and_content():
    torch.manual_seed(0)
    x = torch.arange(3 * 8 * 8, dtype=torch.float32).view(3, 8, 8)
    outs = [StandardAugment(pad=2)(x) for _ in range(20)]
    assert all(o.shape == x.shape for o in outs)
    assert any(not torch.equal(o, x) for o in outs)


@pytest.mark.parametrize(
    "extra",
    [
        ["data.preprocess=gcn_zca", "data.zca_bias=0.1"],
        ["data.mean=[0.5, 0.5, 0.5]", "data.std=[0.25, 0.25, 0.25]"],
    ],
)
def test_checkpoint_carries_preprocessing(tmp_path, extra):
    cfg = tiny_classifier_cfg("model.kwargs={width: 8}", *extra)
    summary = train(cfg, tmp_path, show_progress=False)
    res = evaluate(tmp_path / "checkpoints/best.pt")
    # eval rebuilds model + preprocessing from the checkpoint alone and reproduces the training-time numbers
    assert res["acc1"] == pytest.approx(summary["final"]["val/acc1"])
    assert res["loss"] == pytest.approx(summary["final"]["val/loss"], rel=1e-4)
