"""Chapter 8 networks and losses: shapes, pix2pix's published sizes, receptive field, noise, style code, learning.

Losses are checked against per-pixel / per-element loops written straight from their definitions.
"""

import math

import pytest
import torch
import torch.nn as nn

from imagexplore.data.shapes.persons import KEYPOINT_NAMES, PARSING_LABELS
from imagexplore.errors import ConfigError
from imagexplore.synthesis.losses import GANLoss, global_l1, kl_loss, mask_consistency, masked_l1
from imagexplore.synthesis.networks import (
    DISCRIMINATORS,
    GENERATORS,
    InstantiationNet,
    NoiseDropout,
    PatchDiscriminator,
    Pix2Pix,
    ResnetGenerator,
    StyleEncoder,
    SwapGAN,
    UNetGenerator,
    build_discriminator,
    build_encoder,
    build_generator,
    init_weights,
    receptive_field,
    reparameterize,
    set_dropout_at_test,
)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_unet_shapes_64px_depth6(norm):
    torch.manual_seed(0)
    g = build_generator("unet", in_chans=3, out_chans=2, depth=6, ngf=4, norm=norm)
    for batch in (1, 4):
        for train in (True, False):
            g.train(train)
            y = g(torch.randn(batch, 3, 64, 64))
            assert y.shape == (batch, 2, 64, 64)
            assert y.abs().max() <= 1  # Tanh
    assert g(torch.randn(2, 3, 64, 128)).shape == (2, 2, 64, 128)  # non-square, multiples of 2**6


@pytest.mark.parametrize("norm", ["batch", "instance"])
@pytest.mark.parametrize("batch", [1, 4])
def test_unet_256_shapes_depth8_bottleneck_1x1(norm, batch):
    g = build_generator("unet", depth=8, ngf=4, norm=norm)
    seen = []
    g.down[-1].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    assert g(torch.randn(batch, 3, 256, 256)).shape == (batch, 3, 256, 256)
    assert seen == [(batch, 32, 1, 1)]  # 8 stride-2 levels: 256 px down to 1×1, width 8·ngf


def test_unet_layout_is_pix2pix():
    """C64-C128-C256-C512×5 down, no norm on the first and the innermost conv, dropout on the first 3 decoders."""
    with torch.device("meta"):
        g = UNetGenerator(depth=8, ngf=64, norm="batch")
    assert [blk[0].out_channels for blk in g.down] == [64, 128, 256, 512, 512, 512, 512, 512]
    assert [len(blk) for blk in g.down] == [1, 2, 2, 2, 2, 2, 2, 1]
    assert [blk[0].bias is None for blk in g.down] == [True] * 8  # batch norm → no conv bias (as the port)
    assert g.up[0].bias is not None and g.up[0].out_channels == 3
    dropped = [i for i, blk in enumerate(g.up) if i and any(isinstance(m, NoiseDropout) for m in blk)]
    assert dropped == [
        5,
        6,
        7,
    ]  # the three decoder blocks next to the bottleneck (paper, original Torch code)
    assert [g.up[i][0].out_channels for i in dropped] == [512, 512, 512]
    # shallower: the dropouts stay on the 8·ngf-wide decoder blocks
    g6 = UNetGenerator(depth=6, ngf=8)
    assert [i for i, blk in enumerate(g6.up) if i and any(isinstance(m, NoiseDropout) for m in blk)] == [4, 5]
    inst = UNetGenerator(depth=5, ngf=8, norm="instance")
    norms = [m for m in inst.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert norms and all(not m.affine and not m.track_running_stats for m in norms)
    assert all(blk[0].bias is not None for blk in inst.down)


def test_resnet_discriminator_encoder_shapes():
    for norm, batch in (("instance", 1), ("batch", 4)):
        g = build_generator("resnet", in_chans=4, out_chans=3, ngf=8, n_blocks=2, norm=norm)
        assert g(torch.randn(batch, 4, 32, 48)).shape == (batch, 3, 32, 48)
        d = build_discriminator(in_chans=6, ndf=8, norm=norm)
        assert d(torch.randn(batch, 6, 256, 256)).shape == (batch, 1, 30, 30)  # pix2pix's 30×30 patches
        assert d(torch.randn(batch, 6, 64, 64)).shape == (batch, 1, 6, 6)
        e = build_encoder(in_chans=3, style_dim=5, ndf=8, norm=norm)
        mu, logvar = e(torch.randn(batch, 3, 64, 64))
        assert mu.shape == logvar.shape == (batch, 5)


def test_wrong_input_size_or_channels_is_one_line_config_error():
    g = UNetGenerator(depth=6, ngf=4)
    with pytest.raises(ConfigError) as err:
        g(torch.randn(1, 3, 64, 96))
    msg = one_line(err)
    assert "64×96" in msg and "multiple of 64" in msg
    with pytest.raises(ConfigError) as err:
        g(torch.randn(1, 1, 64, 64))
    assert "B×3×H×W" in one_line(err)
    with pytest.raises(ConfigError) as err:
        ResnetGenerator(ngf=4, n_blocks=1)(torch.randn(1, 3, 30, 32))
    assert "30×32" in one_line(err) and "multiple of 4" in one_line(err)
    with pytest.raises(ConfigError):
        PatchDiscriminator(in_chans=6, ndf=4)(torch.randn(1, 3, 64, 64))


# ---------------------------------------------------------------------------------------------- receptive field


@pytest.mark.parametrize("n_layers,expected", [(1, 16), (2, 34), (3, 70)])
def test_receptive_field_equals_gradient_footprint(n_layers, expected):
    """The input pixels one interior logit depends on span exactly receptive_field(n_layers) on each axis."""
    assert receptive_field(n_layers) == expected
    torch.manual_seed(0)
    d = PatchDiscriminator(in_chans=2, ndf=4, n_layers=n_layers, norm="none").double()
    x = torch.randn(1, 2, 160, 160, dtype=torch.float64, requires_grad=True)
    out = d(x)
    h, w = out.shape[-2:]
    out[0, 0, h // 2, w // 2].backward()
    touched = x.grad.abs().sum((0, 1)) > 0
    rows = touched.any(1).nonzero().flatten()
    cols = touched.any(0).nonzero().flatten()
    assert 0 < rows[0] and rows[-1] < 159  # an interior logit: the footprint is not clipped by the border
    assert rows[-1] - rows[0] + 1 == expected and cols[-1] - cols[0] + 1 == expected


# ---------------------------------------------------------------------------------------------- noise, style


def test_dropout_as_noise_at_test_time():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    g = build_generator("unet", depth=6, ngf=8, dropout=0.5, dropout_at_test=True).eval()
    with torch.no_grad():
        assert not torch.equal(g(x), g(x))  # noise on at test time, as pix2pix
        set_dropout_at_test(g, False)
        assert torch.equal(g(x), g(x))
        set_dropout_at_test(g, True)
        assert not torch.equal(g(x), g(x))
    plain = build_generator("unet", depth=6, ngf=8, dropout=0.5).eval()  # default: deterministic eval
    no_drop = build_generator("unet", depth=6, ngf=8, dropout=0.0, dropout_at_test=True).eval()
    with torch.no_grad():
        assert torch.equal(plain(x), plain(x)) and torch.equal(no_drop(x), no_drop(x))
    assert not any(isinstance(m, NoiseDropout) for m in no_drop.modules())


@pytest.mark.parametrize("name", ["unet", "resnet"])
def test_style_code_changes_output_and_same_code_same_output(name):
    torch.manual_seed(0)
    kw = {"depth": 5, "ngf": 8} if name == "unet" else {"ngf": 8, "n_blocks": 1}
    g = build_generator(name, style_dim=4, dropout=0.0, **kw).eval()
    x = torch.randn(2, 3, 32, 32)
    z1, z2 = torch.randn(2, 4), torch.randn(2, 4)
    with torch.no_grad():
        a, b, c = g(x, z1), g(x, z1.clone()), g(x, z2)
        assert torch.equal(a, b)
        assert (a - c).abs().mean() > 0.05 * a.abs().mean()  # relative: N(0, 0.02) init gives small outputs
        assert g(x).shape == a.shape  # no code given: z ~ N(0, I)
    with pytest.raises(ConfigError):
        g(x, torch.randn(2, 3))
    with pytest.raises(ConfigError):
        build_generator(name, **kw)(x, z1)  # style_dim=0 takes no code


def test_unet_style_code_reaches_input_and_bottleneck():
    g = UNetGenerator(in_chans=3, depth=5, ngf=8, style_dim=6)
    assert g.down[0][0].in_channels == 3 + 6
    assert g.up[-1][0].in_channels == 64 + 6


def test_reparameterize():
    mu, logvar = torch.tensor([[1.0, -2.0]]), torch.log(torch.tensor([[4.0, 0.25]]))
    gen = torch.Generator().manual_seed(3)
    eps = torch.randn((1, 2), generator=torch.Generator().manual_seed(3))
    assert torch.allclose(reparameterize(mu, logvar, gen), mu + torch.tensor([[2.0, 0.5]]) * eps)


# ---------------------------------------------------------------------------------------------- init, registries


def test_init_statistics():
    torch.manual_seed(0)
    g = init_weights(UNetGenerator(depth=6, ngf=32), "normal", 0.02)
    convs = torch.cat(
        [m.weight.flatten() for m in g.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    )
    assert abs(convs.mean()) < 1e-3 and abs(convs.std() - 0.02) < 5e-4
    bns = torch.cat([m.weight for m in g.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(bns.mean() - 1) < 5e-3 and abs(bns.std() - 0.02) < 3e-3
    biases = [m.bias for m in g.modules() if getattr(m, "bias", None) is not None]
    assert biases and all(torch.count_nonzero(b) == 0 for b in biases)
    e = init_weights(StyleEncoder(ndf=8, style_dim=4), "normal", 0.02)
    assert abs(e.mu.weight.std() - 0.02) < 0.01 and torch.count_nonzero(e.mu.bias) == 0
    with pytest.raises(ConfigError) as err:
        init_weights(g, "uniform")
    assert "normal" in one_line(err)


def test_registry_errors_are_one_line_and_list_valid_choices():
    assert sorted(GENERATORS) == ["resnet", "unet"] and list(DISCRIMINATORS) == ["patch"]
    with pytest.raises(ConfigError) as err:
        build_generator("unet_512")
    assert "resnet, unet" in one_line(err)
    with pytest.raises(ConfigError) as err:
        build_generator("unet", n_blocks=3)
    msg = one_line(err)
    assert "n_blocks" in msg and "depth" in msg and "ngf" in msg
    with pytest.raises(ConfigError) as err:
        build_discriminator("pixel")
    assert "patch" in one_line(err)
    with pytest.raises(ConfigError) as err:
        build_discriminator(depth=3)
    assert "n_layers" in one_line(err)
    with pytest.raises(ConfigError) as err:
        build_generator("unet", norm="group")
    assert "batch, instance, none" in one_line(err)
    with pytest.raises(ConfigError):
        build_generator("unet", depth=1)
    with pytest.raises(ConfigError):
        build_generator("unet", dropout=1.0)
    with pytest.raises(ConfigError) as err:
        Pix2Pix(g_kwargs={"in_chans": 1})
    assert "in_chans" in one_line(err)


# ---------------------------------------------------------------------------------------------- published sizes


def test_parameter_counts_of_pix2pix_networks():
    """U-Net-256 (ngf 64, 3 → 3, batch norm) and the 70×70 PatchGAN on 6 channels, built (on the meta device).

    54,413,955 and 2,768,705 are what the PyTorch port's layout gives ("54.414 M" / "2.769 M" in its logs): the
    convs followed by batch norm have no bias, nor does the first encoder conv; the first D conv and both
    outermost convs have one. (Counts of 54,414,019 / 2,769,217 would need a bias on the first encoder conv
    (+64) / on D's stride-1 C512 conv (+512), which that layout does not have.)
    """
    with torch.device("meta"):
        g = UNetGenerator(3, 3, depth=8, ngf=64, norm="batch")
        d = PatchDiscriminator(6, ndf=64, n_layers=3, norm="batch")
        p = Pix2Pix(g_kwargs={"norm": "batch"})
    assert n_params(g) == 54_413_955
    assert n_params(d) == 2_768_705
    assert n_params(p.G) == n_params(g) and n_params(p.D) == n_params(d)
    # the same counts by hand: conv weights + the outermost biases + batch-norm affine pairs
    enc = [3, 64, 128, 256, 512, 512, 512, 512, 512]
    down = sum(16 * a * b for a, b in zip(enc[:-1], enc[1:]))
    up = 16 * 512 * 512 + sum(16 * 2 * b * a for a, b in zip(enc[1:-2], enc[2:-1])) + 16 * 2 * 64 * 3 + 3
    bn = 2 * (sum(enc[2:-1]) + sum(enc[1:-1]))
    assert down + up + bn == 54_413_955
    assert (16 * 6 * 64 + 64) + 16 * (64 * 128 + 128 * 256 + 256 * 512) + 2 * (128 + 256 + 512) + (
        16 * 512 + 1
    ) == 2_768_705


# ---------------------------------------------------------------------------------------------- composite models


def test_composite_models_children_are_the_networks():
    p = Pix2Pix(g_kwargs={"depth": 5, "ngf": 4}, d_kwargs={"ndf": 4})
    assert {n for n, _ in p.named_children()} == {"G", "D"}
    assert p.D.in_chans == 6
    x = torch.randn(2, 3, 32, 32)
    assert p(x).shape == (2, 3, 32, 32)

    inst = InstantiationNet(
        abstract_chans=1, photo_chans=3, style_dim=3, g_kwargs={"depth": 5, "ngf": 4},
        e_kwargs={"ndf": 4}, d_kwargs={"ndf": 4},
    )  # fmt: skip
    assert {n for n, _ in inst.named_children()} == {"G", "D"}  # one child per optimizer
    assert set(inst.G) == {"G", "F", "E"} and set(inst.D) == {"fwd", "rev"}
    assert inst.G.G.style_dim == 3 and inst.G.F.style_dim == 0
    assert (inst.G.G.in_chans, inst.G.G.out_chans, inst.G.F.in_chans, inst.G.F.out_chans) == (1, 3, 3, 1)
    assert inst.D.fwd.in_chans == inst.D.rev.in_chans == 4
    inst.eval()
    a = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        s = inst.sample(a, 3, generator=torch.Generator().manual_seed(0))
        again = inst.sample(a, 3, generator=torch.Generator().manual_seed(0))
    assert s.shape == (2, 3, 3, 32, 32) and torch.equal(s, again)
    assert (s[:, 0] - s[:, 1]).abs().mean() > 0.05 * s.abs().mean()  # several instantiations of one input
    mu, logvar = inst.G("E", s[:, 0])  # through the group's forward, as a training step calls it
    assert mu.shape == (2, 3)

    sw = SwapGAN(g_kwargs={"depth": 5, "ngf": 4}, d_kwargs={"ndf": 4})
    k, s_ = len(KEYPOINT_NAMES), len(PARSING_LABELS)
    assert (k, s_) == (14, 8) and (sw.pose_channels, sw.parsing_labels) == (14, 8)
    assert {n for n, _ in sw.named_children()} == {"G", "D"} and set(sw.G) == {"G1", "G2", "G3"}
    # G2 and G3 also read the person's own non-clothes pixels (identity=True, the default): 3 more channels
    assert (sw.G.G1.in_chans, sw.G.G2.in_chans, sw.G.G3.in_chans, sw.D.in_chans) == (
        3 + k,
        3 + s_ + 3,
        3 + k + s_ + 3,
        3 + k + s_,
    )
    img, pose = torch.randn(2, 3, 32, 32), torch.rand(2, k, 32, 32)
    parsing = nn.functional.one_hot(torch.randint(0, s_, (2, 32, 32)), s_).permute(0, 3, 1, 2).float()
    keep = (torch.rand(2, 1, 32, 32) > 0.5).float()
    person = torch.rand(2, 3, 32, 32) * 2 - 1
    out = sw.swap(img, pose, parsing, keep, person)
    assert out.shape == (2, 3, 32, 32)
    # composite: the kept pixels are A's, exactly; the rest is G2's
    assert torch.equal((out * keep), (person * keep)) and not torch.equal(out, person)
    with pytest.raises(ConfigError, match="keep mask"):
        sw.swap(img, pose, parsing)
    with pytest.raises(ConfigError, match="needs identity"):
        SwapGAN(identity=False, composite=True)
    plain = SwapGAN(g_kwargs={"depth": 5, "ngf": 4}, d_kwargs={"ndf": 4}, identity=False, composite=False)
    assert (plain.G.G2.in_chans, plain.G.G3.in_chans) == (3 + s_, 3 + k + s_)
    assert plain.swap(img, pose, parsing).shape == (2, 3, 32, 32)
    assert sw.D(torch.cat([pose, parsing, out], 1)).shape[:2] == (2, 1)
    # every parameter belongs to one named network, so the engine can give each its optimizer
    for model in (p, inst, sw):
        children = {n for n, _ in model.named_children()}
        assert all(name.split(".")[0] in children for name, _ in model.named_parameters())


def test_one_adversarial_step_runs_with_batch_1():
    torch.manual_seed(0)
    p = Pix2Pix(g_kwargs={"depth": 5, "ngf": 4, "norm": "instance"}, d_kwargs={"ndf": 4, "norm": "instance"})
    gan = GANLoss("vanilla")
    x, y = torch.randn(1, 3, 32, 32), torch.rand(1, 3, 32, 32) * 2 - 1
    fake = p.G(x)
    d_loss = gan.discriminator_loss(p.D(torch.cat([x, y], 1)), p.D(torch.cat([x, fake.detach()], 1)))
    d_loss.backward()
    assert p.D.model[0].weight.grad is not None and p.G.up[0].weight.grad is None
    g_loss = gan.generator_loss(p.D(torch.cat([x, fake], 1))) + 100 * global_l1(fake, y)
    g_loss.backward()
    assert p.G.up[0].weight.grad is not None and math.isfinite(g_loss.item())


def test_unet_learns_two_pairs_with_l1():
    """Pix2Pix's G alone (no D, L1 only) fits 2 fixed 32×32 pairs: L1 drops more than 3× in 30 Adam steps.

    Measured in train mode (batch statistics), as pix2pix tests by default; 5.5–7× over seeds 0–4.
    """
    torch.manual_seed(0)
    g = Pix2Pix(g_kwargs={"depth": 5, "ngf": 8, "dropout": 0.0}, d_kwargs={"ndf": 4}).G
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    y = torch.stack([torch.stack([xx, yy, xx * yy]), torch.stack([-yy, (xx**2 - 0.5), 0.8 * xx])]) * 0.9
    opt = torch.optim.Adam(g.parameters(), lr=5e-3, betas=(0.5, 0.999))
    first = None
    for _ in range(30):
        loss = global_l1(g(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    with torch.no_grad():
        final = global_l1(g(x), y).item()
    assert final < first / 3, (first, final)


# ---------------------------------------------------------------------------------------------- losses


def ref_bce(x, t):
    return -(t * math.log(1 / (1 + math.exp(-x))) + (1 - t) * math.log(1 - 1 / (1 + math.exp(-x))))


@pytest.mark.parametrize("mode", ["vanilla", "lsgan", "hinge"])
def test_gan_loss_against_per_logit_loops(mode):
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 3, 4) * 2
    vals = logits.flatten().tolist()
    loss = GANLoss(mode)
    for real in (True, False):
        t = 1.0 if real else 0.0
        if mode == "vanilla":
            ref = sum(ref_bce(v, t) for v in vals) / len(vals)
        elif mode == "lsgan":
            ref = sum((v - t) ** 2 for v in vals) / len(vals)
        else:
            ref = sum(max(0.0, 1 - v) if real else max(0.0, 1 + v) for v in vals) / len(vals)
        assert float(loss(logits, real)) == pytest.approx(ref, rel=1e-5)
    g_ref = -sum(vals) / len(vals) if mode == "hinge" else float(loss(logits, True))
    assert float(loss.generator_loss(logits)) == pytest.approx(g_ref, rel=1e-5)
    fake = torch.randn(2, 1, 3, 4)
    assert float(loss.discriminator_loss(logits, fake)) == pytest.approx(
        0.5 * (float(loss(logits, True)) + float(loss(fake, False))), rel=1e-6
    )


def test_gan_loss_labels_and_errors():
    logits = torch.tensor([0.3, -1.2])
    smooth = GANLoss("lsgan", real_label=0.9)
    assert float(smooth(logits, True)) == pytest.approx(((0.3 - 0.9) ** 2 + (-1.2 - 0.9) ** 2) / 2, rel=1e-6)
    with pytest.raises(ConfigError) as err:
        GANLoss("wgan")
    assert "vanilla, lsgan, hinge" in one_line(err)
    with pytest.raises(ValueError):
        GANLoss("hinge")(logits, False, for_discriminator=False)


def test_kl_loss_against_loop():
    torch.manual_seed(0)
    mu, logvar = torch.randn(3, 4), torch.randn(3, 4)
    ref = 0.0
    for b in range(3):
        for d in range(4):
            m, lv = float(mu[b, d]), float(logvar[b, d])
            var = math.exp(lv)
            ref += 0.5 * (var + m * m - 1 - math.log(var))  # KL(N(m, var) ‖ N(0, 1))
    assert float(kl_loss(mu, logvar)) == pytest.approx(ref / 3, rel=1e-5)
    assert float(kl_loss(torch.zeros(2, 3), torch.zeros(2, 3))) == 0.0


def ref_masked_l1(fake, real, masks):
    """Per-pixel loop: for each mask, the mean over its pixels (in every image, every channel) of |fake − real|."""
    b, c, h, w = fake.shape
    out = []
    for m in range(masks.shape[1]):
        total, count = 0.0, 0.0
        for i in range(b):
            for y in range(h):
                for x in range(w):
                    wt = float(masks[i, m, y, x])
                    if wt:
                        total += wt * sum(
                            abs(float(fake[i, ch, y, x] - real[i, ch, y, x])) for ch in range(c)
                        )
                        count += wt * c
        out.append(total / count if count else None)
    return out


def test_masked_l1_and_mask_consistency_against_loops():
    torch.manual_seed(0)
    fake, real = torch.randn(2, 3, 5, 6), torch.randn(2, 3, 5, 6)
    parsing = torch.randint(0, 3, (2, 5, 6))
    parsing[1, 0, 0] = 4  # label 4: one pixel; label 3: none (an empty mask)
    labels = [0, 1, 2, 3, 4]
    masks = torch.stack([parsing == lab for lab in labels], 1)
    ref = ref_masked_l1(fake, real, masks)
    got = masked_l1(fake, real, masks)
    assert ref[3] is None and float(got[3]) == 0.0  # an empty mask gives 0
    for r, v in zip(ref, got.tolist()):
        if r is not None:
            assert v == pytest.approx(r, rel=1e-5)
    glob = sum(abs(float(a - b)) for a, b in zip(fake.flatten(), real.flatten())) / fake.numel()
    assert float(global_l1(fake, real)) == pytest.approx(glob, rel=1e-5)
    present = [r for r in ref if r is not None]  # the empty mask is left out of the mean
    expected = sum(present) / len(present) + 0.5 * glob
    assert float(mask_consistency(fake, real, parsing, labels, weight_global=0.5)) == pytest.approx(
        expected, rel=1e-5
    )
    # default labels: every label present; a B×1×H×W map works too
    assert float(mask_consistency(fake, real, parsing[:, None])) == pytest.approx(
        sum(present) / len(present) + glob, rel=1e-5
    )
    # only an empty mask: the global term alone
    assert float(mask_consistency(fake, real, parsing, [3])) == pytest.approx(glob, rel=1e-5)
    # soft weights are weights
    soft = torch.rand(2, 2, 5, 6)
    for r, v in zip(ref_masked_l1(fake, real, soft), masked_l1(fake, real, soft).tolist()):
        assert v == pytest.approx(r, rel=1e-5)


def test_mask_consistency_gradient_is_finite_with_empty_masks():
    fake = torch.randn(1, 3, 4, 4, requires_grad=True)
    parsing = torch.zeros(1, 4, 4, dtype=torch.long)
    loss = mask_consistency(fake, torch.zeros(1, 3, 4, 4), parsing, [0, 5, 6])
    loss.backward()
    assert torch.isfinite(fake.grad).all() and fake.grad.abs().sum() > 0
