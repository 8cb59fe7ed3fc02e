"""Chapter 2 CFN models: shapes, exact parameter counts from the spec, init, fusion kinds, and a learning check."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import imagexplore.models as registry
from helpers import single_thread
from imagexplore.classification.fusion import FUSION_KINDS, build_fusion
from imagexplore.config import OptimConfig, ParamGroupConfig
from imagexplore.engine.optim import param_groups
from imagexplore.errors import ConfigError
from imagexplore.models import create, list_models, model_entry, register_model


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def output_sizes(model, names, x):
    sizes, hooks = {}, []
    for name in names:
        mod = model.get_submodule(name)
        hooks.append(
            mod.register_forward_hook(lambda m, i, o, name=name: sizes.__setitem__(name, o.shape[-1]))
        )
    with torch.no_grad():
        out = model(x)
    for h in hooks:
        h.remove()
    return sizes, out


CFN_MODELS = [
    "cfn_cifar10",
    "plain_cifar10",
    "cfn_cifar100",
    "plain_cifar100",
    "cfn11_imagenet",
    "plain11_imagenet",
    "cfn_resnet18",
    "cfn_resnet50",
    "cfn_vgg16",
    "cfn_timm",
]


def test_all_registered():
    names = list_models()
    assert set(CFN_MODELS) <= set(names)
    for name in CFN_MODELS:
        assert model_entry(name).task == "classify" and model_entry(name).description


def test_register_model_refuses_a_duplicate_name(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    owner = model_entry("simple_cnn").fn
    with pytest.raises(
        ConfigError, match=r"'simple_cnn' is already registered by imagexplore\.models\.small"
    ):

        @register_model
        def simple_cnn(num_classes: int = 10):
            return nn.Linear(1, num_classes)

    assert model_entry("simple_cnn").fn is owner


def test_create_names_only_arguments_that_do_not_fit(monkeypatch):
    """Unfit arguments (the registered function's, or those it forwards with **kw) → ConfigError naming them;
    a TypeError raised inside a constructor is a bug and propagates unchanged."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    class Broken(nn.Module):
        def __init__(self, width: int = 4):
            super().__init__()
            torch.zeros(width).view("not a shape")  # a TypeError from inside the constructor

    @register_model(task="test")
    def broken_forwarding(num_classes: int = 2, **kw):
        """Forwards **kw to the constructor."""
        return Broken(**kw)

    @register_model(task="test")
    def broken_plain(num_classes: int = 2, width: int = 4):
        """Calls the constructor with fixed arguments."""
        return Broken(width)

    with pytest.raises(ConfigError, match=r"'simple_cnn' does not accept these arguments \['bogus'\]"):
        create("simple_cnn", bogus=1)
    with pytest.raises(ConfigError, match=r"'broken_forwarding' does not accept these arguments \['depth'\]"):
        create("broken_forwarding", depth=3)  # binds broken_forwarding, not Broken
    with pytest.raises(ConfigError, match="does not accept"):
        create("broken_plain", depth=3)
    for name, kw in (
        ("broken_forwarding", {"width": 3}),
        ("broken_plain", {}),
        ("broken_plain", {"width": 3}),
    ):
        with pytest.raises(TypeError) as info:
            create(name, **kw)
        assert not isinstance(info.value, ConfigError) and "does not accept" not in str(info.value)


@pytest.mark.parametrize("name,classes", [("cfn_cifar10", 10), ("plain_cifar10", 10), ("cfn_cifar100", 100)])
def test_cifar_shapes(name, classes):
    model = create(name).eval()
    with single_thread():
        sizes, out = output_sizes(model, ["pool1", "pool2"], torch.randn(2, 3, 32, 32))
        feats = model.forward_features(torch.randn(2, 3, 32, 32))
    assert sizes == {"pool1": 16, "pool2": 8}  # Caffe's ceil rounding: 32 → 16 → 8
    assert out.shape == (2, classes)
    assert feats.shape == (2, 192) == (2, model.num_features)


def test_plain_cifar100_shape_and_in_chans():
    model = create("plain_cifar100", in_chans=1, num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 7)


@pytest.mark.parametrize("name", ["cfn11_imagenet", "plain11_imagenet"])
def test_imagenet_shapes(name):
    model = create(name).eval()
    names = ["conv1", "pool1", "pool2", "pool3", "pool4", "conv6"]
    with single_thread():
        sizes, out = output_sizes(model, names, torch.randn(1, 3, 224, 224))
    assert sizes == {"conv1": 112, "pool1": 56, "pool2": 28, "pool3": 14, "pool4": 7, "conv6": 7}
    assert out.shape == (1, 1000)
    assert model.num_features == 1024


def test_caffe_average_pooling_border():
    # Ceil-mode border windows are averaged over the valid inputs only (Caffe with pad 0): ones stay ones.
    pool = create("cfn_cifar10").pool2
    assert torch.equal(pool(torch.ones(1, 1, 16, 16)), torch.ones(1, 1, 8, 8))


def test_param_counts_cifar10():
    cfn, plain = create("cfn_cifar10"), create("plain_cifar10")
    # Plain net by hand: conv1_1, conv1_2, conv2_1, conv2_2, conv3_1, conv3_2, conv4, fc (weights + biases).
    plain_expected = (
        (3 * 96 * 9 + 96) + (96 * 96 * 9 + 96) + (96 * 192 * 9 + 192) + 3 * (192 * 192 * 9 + 192)
        + (192 * 192 + 192) + (192 * 10 + 10)
    )  # fmt: skip
    # Side 1 from pool1 (96 ch), side 2 from pool2 (192 ch), both 1×1 → 192; fusion S·K + K bias.
    extra = (96 * 192 + 192) + (192 * 192 + 192) + (3 * 192 + 192)
    assert n_params(plain) == plain_expected == 1_286_698
    assert n_params(cfn) - n_params(plain) == extra == 56_448


def test_param_counts_cifar100():
    cfn, plain = create("cfn_cifar100"), create("plain_cifar100")
    # Both sides 3×3 from 192-channel maps; fusion without bias.
    extra = 2 * (192 * 192 * 9 + 192) + 3 * 192
    assert n_params(cfn) - n_params(plain) == extra == 664_512


def test_param_counts_cfn11():
    cfn, plain = create("cfn11_imagenet"), create("plain11_imagenet")
    # Sides from pool2 (64), pool3 (128), pool4 (256): 1×1 conv 1024 without bias + BN (γ, β);
    # fusion 4 × 1024 without bias, then BN (γ, β) over 1024.
    extra = (64 + 128 + 256) * 1024 + 3 * 2 * 1024 + 4 * 1024 + 2 * 1024
    assert n_params(cfn) - n_params(plain) == extra == 471_040


def test_init():
    torch.manual_seed(0)
    model = create("cfn_cifar10")
    assert torch.equal(model.fusion.weight.data, torch.full((3, 192), 1 / 3))
    assert torch.equal(model.fusion.bias.data, torch.zeros(192))
    w = model.conv3_1[0].weight
    assert abs(w.std().item() - 0.05) < 1e-3 and abs(w.mean().item()) < 1e-3
    assert torch.count_nonzero(model.conv3_1[0].bias) == 0
    fc = create("cfn_cifar100").fc.weight  # 19,200 samples
    assert abs(fc.std().item() - 0.1) < 5e-3
    assert create("cfn_cifar100").fusion.bias is None
    c11 = create("cfn11_imagenet")
    assert torch.equal(c11.fusion.weight.data, torch.full((4, 1024), 0.25)) and c11.fusion.bias is None
    w = c11.conv5_2[0].weight
    fan_in = w[0].numel()
    assert w.abs().max() <= math.sqrt(3 / fan_in) and abs(w.std().item() - math.sqrt(1 / fan_in)) < 1e-3
    assert all(m.bias is None for m in c11.modules() if isinstance(m, torch.nn.Conv2d))


def test_fusion_regexes_match_exactly_the_fusion_parameters():
    names = [n for n, _ in create("cfn_cifar10").named_parameters()]
    assert [n for n in names if re.search(r"fusion\.weight", n)] == ["fusion.weight"]
    assert [n for n in names if re.search(r"fusion\.bias", n)] == ["fusion.bias"]
    model = create("cfn11_imagenet")
    names = [n for n, _ in model.named_parameters()]
    assert [n for n in names if re.search(r"fusion\.weight", n)] == ["fusion.weight"]
    assert [n for n in names if re.search(r"fusion\.bias", n)] == []  # the fusion BN keeps the normal lr
    cfg = OptimConfig(
        lr=0.1,
        param_groups=[
            ParamGroupConfig(pattern=r"fusion\.weight", lr_mult=0.1),
            ParamGroupConfig(pattern=r"fusion\.bias", lr_mult=0.2),
        ],
    )
    groups = {g["lr_mult"]: g["param_names"] for g in param_groups(create("cfn_cifar10"), cfg)}
    assert groups[0.1] == ["fusion.weight"] and groups[0.2] == ["fusion.bias"]


def test_fusion_kinds():
    torch.manual_seed(0)
    B, S, K = 4, 3, 5
    g = torch.rand(B, S, K)
    branches = list(g.unbind(1))
    for kind in FUSION_KINDS:
        for bn in (False, True):
            fusion = build_fusion(kind, S, K, bias=True, bn=bn).train()
            out = fusion(branches)
            assert out.shape == (B, K)
            assert torch.allclose(out, fusion(g))

    local = build_fusion("local", S, K, bias=True)
    with torch.no_grad():
        local.weight.normal_()
        local.bias.normal_()
    ref = torch.empty(B, K)
    for b in range(B):
        for k in range(K):
            z = sum(local.weight[s, k].item() * g[b, s, k].item() for s in range(S)) + local.bias[k].item()
            ref[b, k] = max(z, 0.0)
    assert torch.allclose(local(g), ref, atol=1e-6)
    assert sum(p.numel() for p in local.parameters()) == S * K + K

    scalar = build_fusion("scalar", S, K, bias=False)
    assert scalar.weight.shape == (S,) and torch.allclose(scalar.weight, torch.full((S,), 1 / S))
    with torch.no_grad():
        scalar.weight.copy_(torch.tensor([0.5, -1.0, 2.0]))
    assert torch.allclose(scalar(g), F.relu(0.5 * g[:, 0] - g[:, 1] + 2.0 * g[:, 2]))

    assert torch.equal(build_fusion("none", S, K)(g), g[:, -1])
    assert torch.allclose(build_fusion("sum", S, K)(g), g.sum(1))
    assert torch.allclose(build_fusion("mean", S, K)(g), g.mean(1))
    concat = build_fusion("concat", S, K)
    assert concat.fc.in_features == S * K and (concat(g) >= 0).all()
    with pytest.raises(ConfigError):
        build_fusion("median", S, K)


@pytest.mark.parametrize("kind", ["sum", "mean", "concat", "scalar", "none"])
def test_cfn_with_other_fusions(kind):
    model = create("cfn_cifar10", fusion=kind, width_mult=0.125).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    if kind == "none":
        assert n_params(model) == n_params(create("plain_cifar10", width_mult=0.125))


def test_narrow_cfn_learns_shapes():
    from imagexplore.data.shapes import ShapesClassification

    def load(n, split):
        ds = ShapesClassification(n, size=32, seed=0, split=split, num_classes=4)
        xs, ys = zip(*(ds[i] for i in range(n)))
        return (torch.stack(xs) - 0.5) / 0.25, torch.tensor(ys)

    xtr, ytr = load(2000, "train")
    xva, yva = load(200, "val")
    torch.manual_seed(0)
    # Widths 1/8 of the thesis (12, 24, 24, 24); dropout off so that 300 small steps suffice.
    model = create("cfn_cifar10", num_classes=4, width_mult=0.125, drop_rate=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    with single_thread():
        model.train()
        for _ in range(300):
            idx = torch.randint(0, len(ytr), (32,), generator=gen)
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = (model(xva).argmax(1) == yva).float().mean().item()
    assert acc > 0.4, f"val accuracy {acc:.3f} not clearly above chance (0.25)"


def test_cfn_resnet18_fused_vector():
    model = create("cfn_resnet18", num_classes=5).eval()
    with single_thread(), torch.no_grad():
        x = torch.randn(2, 3, 64, 64)
        branches = model.forward_branches(x)
        feats = model.forward_features(x)
        out = model.forward_head(feats)
    assert len(branches) == 4 and all(b.shape == (2, 512) for b in branches)
    assert feats.shape == (2, 512) == (2, model.num_features)
    assert torch.allclose(out, model(x), atol=1e-5) and out.shape == (2, 5)
    assert model.fusion.weight.shape == (4, 512)


@pytest.mark.parametrize("name", ["cfn_resnet50", "cfn_vgg16"])
def test_timm_backbones_forward(name):
    model = create(name, num_classes=3).eval()
    with single_thread(), torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)


def test_cfn_timm_pretrained_path_and_errors(tmp_path):
    import timm

    src = timm.create_model("resnet18", pretrained=False, num_classes=10)  # a full plain state_dict
    path = tmp_path / "resnet18.pth"
    torch.save(src.state_dict(), path)
    model = create("cfn_timm", backbone="resnet18", num_classes=4, pretrained_path=str(path), dim=32)
    assert torch.equal(model.backbone.conv1.weight, src.conv1.weight)
    assert model.num_features == 32
    with pytest.raises(ConfigError):
        create("cfn_timm", backbone="no_such_backbone_xyz")
    with pytest.raises(ConfigError):
        create("cfn_timm", backbone="resnet18", no_such_option=1)
