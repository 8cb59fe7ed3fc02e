"""RRF-Net (thesis ch. 5): structure, parameter counts, train/eval behaviour and a small learning test."""

import pytest
import torch
import torch.nn as nn

from imagexplore import models
from imagexplore.errors import ConfigError
from imagexplore.matching.losses import bi_rank_loss
from imagexplore.matching.metrics import recall_metrics
from imagexplore.matching.models import RRFBranch, RRFNet


@pytest.mark.parametrize("steps", [0, 1, 3])
@pytest.mark.parametrize("fusion", ["scalar", "local"])
def test_shapes_and_unit_norm(steps, fusion):
    net = RRFNet(20, 30, steps=steps, hidden=16, dim=8, fusion=fusion)
    img, txt = net(torch.randn(6, 20), torch.randn(6, 30))
    assert img.shape == txt.shape == (6, 8)
    torch.testing.assert_close(img.norm(dim=1), torch.ones(6))
    torch.testing.assert_close(txt.norm(dim=1), torch.ones(6))
    net.eval()
    torch.testing.assert_close(net.encode_image(torch.randn(1, 20)).norm(dim=1), torch.ones(1))


def test_recurrence_shares_w_and_b_with_one_bn_per_step():
    br = RRFBranch(10, hidden=12, dim=6, steps=3)
    assert isinstance(br.rec, nn.Linear) and br.rec.weight.shape == (6, 6)
    assert len(br.step_bns) == 4 and len({id(b) for b in br.step_bns}) == 4
    linears = [m for m in br.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 4  # fc1, fc2, the shared recurrent FC, fc_out
    states = br.hidden_states(torch.randn(5, 10))
    assert len(states) == 5  # h_0 and h_1..h_4
    # the step rule, by hand, with the same shared W, b and the step's own BN
    br.eval()
    states = br.hidden_states(torch.randn(5, 10))
    for t in range(4):
        want = states[t] + torch.relu(br.step_bns[t](br.rec(states[t])))
        torch.testing.assert_close(states[t + 1], want)


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_parameter_count_by_hand():
    a, h, d, t = 10, 12, 6, 3
    common = (
        2 * a + (a * h + h) + (h * d + d) + 2 * d + (d * d + d) + 2 * d
    )  # bn_in fc1 fc2 bn0 fc_out bn_out
    rrf = (d * d + d) + (t + 1) * 2 * d + 2 * d  # shared FC, step BNs, BN after fusion
    assert count(RRFBranch(a, h, d, t, "scalar")) == common + rrf + (t + 1) + 1
    assert count(RRFBranch(a, h, d, t, "local")) == common + rrf + (t + 1) * d + d
    assert count(RRFBranch(a, h, d, 0)) == common
    net = RRFNet(10, 14, steps=2, hidden=h, dim=d)
    assert count(net) == count(RRFBranch(10, h, d, 2)) + count(RRFBranch(14, h, d, 2))
    # the thesis sizes: 2048-d images, 6000-d Fisher vectors, T = 3
    full = RRFNet(2048, 6000)
    assert count(full.image_branch) == count(RRFBranch(2048)) and full.image_branch is not full.text_branch


def test_t0_is_the_plain_two_branch_network():
    br = RRFBranch(10, hidden=12, dim=6, steps=0)
    names = {n for n, _ in br.named_parameters()}
    assert not any(n.startswith(("rec", "step_bns", "fuse", "bn_fuse")) for n in names)
    br.eval()
    x = torch.randn(4, 10)
    h0 = torch.relu(br.bn0(br.fc2(torch.relu(br.fc1(br.bn_in(x))))))
    torch.testing.assert_close(br(x), torch.nn.functional.normalize(br.bn_out(br.fc_out(h0)), dim=1))


def test_init():
    torch.manual_seed(0)
    br = RRFBranch(300, hidden=400, dim=200, steps=3)
    for fc in (br.fc1, br.fc2, br.rec, br.fc_out):
        assert fc.bias.abs().sum() == 0
        assert abs(fc.weight.std().item() - 0.05) < 0.003
    assert br.fuse_weight.shape == (4,) and br.fuse_bias.shape == ()
    assert RRFBranch(3, 4, 5, steps=2, fusion="local").fuse_weight.shape == (3, 5)


def test_train_vs_eval():
    torch.manual_seed(0)
    net = RRFNet(12, 12, steps=2, hidden=32, dim=8, dropout=0.5)
    x, y = torch.randn(16, 12), torch.randn(16, 12)
    net.train()
    a1, a2 = net.encode_image(x), net.encode_image(x)
    assert not torch.allclose(a1, a2)  # dropout draws differ
    net.eval()
    e1, e2 = net.encode_image(x), net.encode_image(x)
    torch.testing.assert_close(e1, e2)
    # eval uses running statistics: a sample's embedding does not depend on the rest of the batch
    torch.testing.assert_close(net.encode_image(x[:3])[0], e1[0])
    assert net(x, y)[1].shape == (16, 8)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="fusion"):
        RRFNet(4, 4, fusion="concat")
    with pytest.raises(ConfigError, match="steps"):
        RRFNet(4, 4, steps=-1)
    with pytest.raises(ConfigError, match="dropout"):
        RRFBranch(4, dropout=1.0)


def test_registry():
    assert "rrf_net" in models.list_models(task="match")
    net = models.create("rrf_net", image_dim=16, text_dim=24, steps=1, hidden=8, dim=4)
    assert isinstance(net, RRFNet) and net.registry_name == "rrf_net" and net.steps == 1
    with pytest.raises(ConfigError):
        models.create("rrf_net", image_dim=16, text_dim=24, width=3)


def synthetic(n_classes, images_per_class, caps, gen, proto_i, proto_t):
    """Images: class prototype + noise; texts: the class's prototype in another random space + noise."""
    labels = torch.arange(n_classes).repeat_interleave(images_per_class)
    img = proto_i[labels] + 0.6 * torch.randn(len(labels), proto_i.shape[1], generator=gen)
    ci = torch.arange(len(labels)).repeat_interleave(caps)
    txt = proto_t[labels[ci]] + 0.6 * torch.randn(len(ci), proto_t.shape[1], generator=gen)
    return img, txt, ci


def test_learns_synthetic_matching():
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    n_classes, d_img, d_txt = 20, 64, 48
    proto_i = torch.randn(n_classes, d_img, generator=gen)
    proto_t = torch.randn(n_classes, d_img, generator=gen) @ torch.randn(d_img, d_txt, generator=gen) / 8
    img, txt, ci = synthetic(n_classes, 6, 5, gen, proto_i, proto_t)
    # held out: new images (one per class) with new captions
    t_img, t_txt, t_ci = synthetic(n_classes, 1, 5, gen, proto_i, proto_t)
    net = RRFNet(d_img, d_txt, steps=2, hidden=128, dim=32, dropout=0.1)

    def r1():
        net.eval()
        with torch.no_grad():
            a, b = net(t_img, t_txt)
        net.train()
        res = recall_metrics(a @ b.T, t_ci)
        return res["i2t_r1"], res["t2i_r1"]

    before = r1()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for _ in range(300):
        idx = torch.randperm(len(ci))[:100]
        a, b = net(img[ci[idx]], txt[idx])
        loss = bi_rank_loss(a, b, ci[idx], margin=0.1, k=20)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = r1()
    assert after[0] >= 90 and after[1] >= 90, (before, after)
    assert after[1] > before[1] + 30


def test_learned_stems_come_from_the_encoder_specs():
    """A pixels image encoder puts a small CNN in front of the image branch, a tokens text encoder a GRU in front
    of the text branch — for every matching model; fixed features get none."""
    from imagexplore.config import load_config
    from imagexplore.matching.stems import SmallCNN, TokenStem
    from imagexplore.matching.train import build_model

    pixels = {"modality": "image", "name": "pixels", "size": 16, "dim": 3 * 16 * 16}
    tokens = {"modality": "text", "name": "tokens", "dim": 30}
    minilm = {"modality": "text", "name": "minilm", "dim": 384}
    for name, extra in (("rrf_net", []), ("cyclematch_net", []), ("jmc_net", [])):
        cfg = load_config(
            None,
            [f"model.name={name}", "model.kwargs={hidden: 16, dim: 8, word_dim: 6, gru_hidden: 10}", *extra],
        )
        model = build_model(cfg, 3, dims=(768, 30), specs=(pixels, tokens)).eval()
        branches = [m for m in model.modules() if hasattr(m, "stem")]
        assert [type(b.stem) for b in branches] == [SmallCNN, TokenStem]
        img = torch.rand(2, 768)
        txt = (torch.randint(1, 30, (2, 5)), torch.tensor([5, 3]))
        a, b = model(img, txt)
        assert a.shape[0] == b.shape[0] == 2
        plain = build_model(cfg, 3, dims=(768, 384), specs=(pixels | {"name": "lite0"}, minilm))
        assert all(m.stem is None for m in plain.modules() if hasattr(m, "stem"))
