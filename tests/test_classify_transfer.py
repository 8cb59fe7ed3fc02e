"""Transfer of fused features: retrieval mAP (hand case, sklearn), linear probe, run_transfer and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from imagexplore.classification.transfer import (
    adapt_channels,
    average_precisions,
    extract_features,
    feature_name,
    linear_probe,
    retrieval_map,
    run_transfer,
)
from imagexplore.cli import main
from imagexplore.errors import UserError

# Four 2-D unit vectors a, b, c, d. Cosines: ab .8, ac .6, ad 0, bc .96, bd .6, cd .8.
HAND_FEATS = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])


def test_map_hand_case_two_classes():
    # labels a0 b1 c0 d1; rankings (query excluded):
    #   a: b .8, c .6, d 0   → its one relevant item (c) at rank 2 → AP 1/2
    #   b: c .96, a .8, d .6 → d at rank 3 → AP 1/3
    #   c: b .96, d .8, a .6 → a at rank 3 → AP 1/3
    #   d: c .8, b .6, a 0   → b at rank 2 → AP 1/2
    # mAP = (1/2 + 1/3 + 1/3 + 1/2) / 4 = 5/12
    labels = np.array([0, 1, 0, 1])
    np.testing.assert_allclose(average_precisions(HAND_FEATS, labels), [1 / 2, 1 / 3, 1 / 3, 1 / 2])
    assert retrieval_map(HAND_FEATS, labels) == pytest.approx(5 / 12)
    # scaling a vector changes nothing (cosine)
    assert retrieval_map(HAND_FEATS * np.array([[3.0], [0.5], [1.0], [7.0]]), labels) == pytest.approx(5 / 12)


def test_map_hand_case_with_singleton_query():
    # labels a0 b0 c0 d1:
    #   a: b(rel) c(rel) d        → (1/1 + 2/2) / 2 = 1
    #   b: c(rel) a(rel) d        → 1
    #   c: b(rel) d a(rel)        → (1/1 + 2/3) / 2 = 5/6
    #   d: no other item of class 1 → AP undefined, left out of the mean
    # mAP = (1 + 1 + 5/6) / 3 = 17/18
    labels = np.array([0, 0, 0, 1])
    ap = average_precisions(HAND_FEATS, labels)
    np.testing.assert_allclose(ap[:3], [1, 1, 5 / 6])
    assert np.isnan(ap[3])
    assert retrieval_map(HAND_FEATS, labels) == pytest.approx(17 / 18)


def test_map_agrees_with_sklearn():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    n = 60
    labels = rng.integers(0, 4, n)
    feats = rng.normal(size=(n, 8)) + 0.8 * np.eye(4, 8)[labels]
    ap = average_precisions(feats, labels, query_batch=7)  # several query batches, uneven last one
    fn = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    for q in range(n):
        others = np.arange(n) != q
        ref = average_precision_score(labels[others] == labels[q], fn[others] @ fn[q])
        assert ap[q] == pytest.approx(ref, abs=1e-9)
    assert retrieval_map(feats, labels) == pytest.approx(np.mean(ap))


def test_linear_probe_easy_and_random():
    rng = np.random.default_rng(1)
    n, d = 400, 16
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, d)) + 3.0 * np.eye(3, d)[y]
    res = linear_probe(x[:300], y[:300], x[300:], y[300:])
    assert res["accuracy"] > 0.95
    assert set(res["per_class"]) == {0, 1, 2} and all(v > 0.8 for v in res["per_class"].values())
    assert res["C"] in (0.01, 0.1, 1.0, 10.0, 100.0) and res["val_accuracy"] is not None
    # random labels on random features: chance (0.5) for two balanced classes
    xr = rng.normal(size=(1200, 32))
    yr = np.tile([0, 1], 600)
    res = linear_probe(xr[:800], yr[:800], xr[800:], yr[800:])
    assert res["accuracy"] < 0.7


def test_adapt_channels_and_feature_names():
    grey = torch.rand(2, 1, 4, 4)
    assert torch.equal(adapt_channels(grey, 3), grey.expand(-1, 3, -1, -1))
    rgb = torch.rand(2, 3, 4, 4)
    assert torch.allclose(adapt_channels(rgb, 1), rgb.mean(1, keepdim=True))
    assert adapt_channels(rgb, 3) is rgb
    assert feature_name("cfn_cifar10") == "fused"
    assert feature_name("cfn_cifar10", {"fusion": "none"}) == "main GAP"
    assert feature_name("plain_cifar10") == feature_name("simple_cnn") == "main GAP"


def test_extract_features_batches():
    from helpers import BlobDataset
    from imagexplore import models

    model = models.create("simple_cnn", num_classes=4, width=4, depth=2)
    ds = BlobDataset(n=10, size=8)
    f, y = extract_features(model, ds, batch_size=3, device="cpu")
    assert f.shape == (10, model.num_features) and f.dtype == np.float32
    np.testing.assert_array_equal(y, ds.y.numpy())
    with torch.inference_mode():
        np.testing.assert_allclose(f, model.forward_features(ds.x).numpy(), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------- end to end


def _write_folder(root, n_train: int = 48, n_val: int = 32):
    from imagexplore.data.shapes import SHAPE_CLASSES, ShapesWorld

    world = ShapesWorld(seed=5, size=32)
    for split, start, n in (("train", 0, n_train), ("val", 10_000, n_val)):
        for i in range(start, start + n):
            s = world.render(i, ("image", "label"))
            d = root / split / SHAPE_CLASSES[s["label"]]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(s["image"]).save(d / f"{i}.png")


@pytest.fixture(scope="module")
def transfer_setup(tmp_path_factory):
    from imagexplore.classification.train import train
    from imagexplore.config import load_config

    tmp = tmp_path_factory.mktemp("transfer")
    tiny = [
        "data.train_samples=96",
        "data.val_samples=32",
        "data.batch_size=32",
        "train.epochs=1",
        "train.tensorboard=false",
        "train.device=cpu",
    ]
    ckpts = {}
    for name, model in (
        ("plain", ["model.name=simple_cnn", "model.kwargs={width: 8, depth: 3}"]),
        ("cfn", ["model.name=cfn_cifar10", "model.kwargs={widths: [8, 16, 16, 24]}"]),
    ):
        cfg = load_config("classify/shapes_baseline_quick.yaml", tiny + model)
        train(cfg, tmp / name, show_progress=False)
        ckpts[name] = str(tmp / name / "checkpoints" / "best.pt")
    folder = tmp / "folder"
    _write_folder(folder)
    return ckpts, folder


def _check_rows(rows, ckpts):
    assert [r["checkpoint"] for r in rows] == [ckpts["plain"], ckpts["cfn"]]
    plain, cfn = rows
    assert (plain["model"], plain["feature"], plain["dim"]) == ("simple_cnn", "main GAP", 32)
    assert (cfn["model"], cfn["feature"], cfn["dim"]) == ("cfn_cifar10", "fused", 24)
    for r in rows:
        assert {"checkpoint", "model", "feature", "dim", "linear_acc", "retrieval_map"} <= set(r)
        assert (r["train_images"], r["test_images"]) == (48, 32)
        assert 0.0 <= r["linear_acc"] <= 1.0 and 0.0 < r["retrieval_map"] <= 1.0


def test_run_transfer_end_to_end(transfer_setup):
    ckpts, folder = transfer_setup
    res = run_transfer([ckpts["plain"], ckpts["cfn"]], data="imagefolder", root=str(folder))
    _check_rows(res["rows"], ckpts)
    assert res["train_split"] == "train" and res["test_split"] == "val"
    # grey data into RGB models: the channel is repeated (digits: 1×8×8 → resized to the model's 32 px)
    res = run_transfer([ckpts["plain"]], data="digits", num_samples=40)
    assert res["rows"][0]["test_images"] == 40 and res["rows"][0]["dim"] == 32


def test_cli_transfer_json_and_table(transfer_setup, capsys):
    ckpts, folder = transfer_setup
    args = ["classify", "transfer", "--checkpoint", ckpts["plain"], "--checkpoint", ckpts["cfn"]]
    args += ["--data", "imagefolder", "--root", str(folder), "--device", "cpu"]
    assert main([*args, "--json"]) == 0
    _check_rows(json.loads(capsys.readouterr().out)["rows"], ckpts)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "fused" in out and "main GAP" in out and "retrieval mAP" in out


def test_transfer_user_errors(tmp_path, transfer_setup):
    ckpts, _ = transfer_setup
    with pytest.raises(UserError, match="not found"):
        run_transfer([str(tmp_path / "missing.pt")], root=str(tmp_path))
    with pytest.raises(UserError, match="nowhere"):
        run_transfer([ckpts["plain"]], root=str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="differ"):
        run_transfer([ckpts["plain"]], root=str(tmp_path), test_split="train")
