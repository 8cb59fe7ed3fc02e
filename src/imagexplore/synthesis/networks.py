"""Networks of chapter 8: pix2pix's generators and PatchGAN, the instantiation network and SwapGAN.

**Published** (pix2pix, Isola et al. 2017, and its released Torch/PyTorch code; our own implementation):

- `UNetGenerator` — pix2pix's U-Net. ``depth`` stride-2 4×4 convolutions down, as many transposed ones up, a skip
  from every encoder level to its decoder level (concatenation). Widths ``ngf·min(2^i, 8)``: with ``depth=8``
  and ``ngf=64`` the encoder is C64-C128-C256-C512-C512-C512-C512-C512, "U-Net-256" (256 px down to 1×1). The
  first encoder conv has no norm, the innermost (bottleneck) none either; LeakyReLU 0.2 before every encoder
  conv but the first, ReLU before every decoder conv, Tanh at the output. Dropout 0.5 after the first three
  decoder blocks (counted from the bottleneck) — the paper's "CD512-CD1024-CD1024-C1024…" and its original
  Torch code. *The PyTorch port shifts the three dropouts one block outwards* (it skips the innermost block);
  the parameter count is the same either way. pix2pix applies that dropout at test time too, as its only noise:
  ``dropout_at_test=True`` (or `set_dropout_at_test`) keeps it on in ``eval()``.
- `ResnetGenerator` — CycleGAN's (after Johnson et al.): reflect-pad 7×7 conv, two stride-2 3×3 convs,
  ``n_blocks`` residual blocks (9 for 256 px), two stride-2 transposed convs, reflect-pad 7×7 conv, Tanh.
- `PatchDiscriminator` — the PatchGAN: 4×4 convs C64 (stride 2, no norm)-C128-C256 (stride 2)-C512 (stride 1)
  then a 1-channel conv (stride 1), LeakyReLU 0.2; each output logit sees a 70×70 patch for ``n_layers=3``
  (`receptive_field`). pix2pix's D is conditional: it sees the input and the output concatenated.
- Norms: ``"batch"`` (the pix2pix default; a conv followed by batch norm has no bias, and, as in the PyTorch port,
  neither has the U-Net's first encoder conv, though no norm follows it), ``"instance"`` (affine False and no
  running statistics, as the current PyTorch port; convs keep their bias) or ``"none"``. The original Torch code
  gave every conv a bias.
- `init_weights`: conv/linear weights N(0, 0.02), batch-norm weights N(1, 0.02), biases 0.

Parameter counts of this implementation (``tests/test_synth_networks.py`` builds them): U-Net-256 with ngf 64,
3 → 3 channels, batch norm: **54,413,955** (the PyTorch port prints "54.414 M"); 70×70 PatchGAN on 6 input
channels, batch norm: **2,768,705** ("2.769 M").

**Our extensions**: ``depth`` below 8 for small images (depth 6 takes 64 px to 1×1; any depth ≥ 2 works; the
three dropouts stay on the 8·ngf-wide decoder blocks, so shallower nets have fewer); ``style_dim > 0`` injects a
style code z (B×style_dim) into a generator, broadcast over the pixels and concatenated to the input and to the
bottleneck (U-Net: after the bottleneck's activation, so z is not rectified; ResNet: before the residual blocks,
fused back to 4·ngf channels by a 1×1 conv) — BicycleGAN's way of making one input give several outputs;
`StyleEncoder` (BicycleGAN-style: strided 4×4 convs → global average pool → two linear heads giving (mu,
logvar)).

**Reconstructions** (THESIS.md ch. 8; the publications' details were not available; every choice is a
constructor argument):

- `InstantiationNet` (8.1): pix2pix's paired translation (``G``: abstract → photo, conditional PatchGAN ``D`` on
  (abstract, photo)) plus a reverse generator ``F`` (photo → abstract) with its own conditional PatchGAN
  ``D_rev`` on (photo, abstract), trained jointly with cycle consistency, and a style code: ``G`` takes z,
  ``E`` encodes a real photo into (mu, logvar) during training (BicycleGAN's cVAE-GAN path), and at test time
  z ~ N(0, I) gives several instantiations of one abstract input (`InstantiationNet.sample`).
- `SwapGAN` (8.2): G1(I_B ⊕ P_A) re-poses B's clothes to A's pose (``pose_channels`` heat maps, default the 14
  keypoints of the shapes persons); G2(G1 output ⊕ S_A) lays them on A's layout (S_A: one-hot parsing map,
  ``parsing_labels`` channels, default the shapes persons' 8 labels, with B's clothes regions); G3(G2 output ⊕
  P_B ⊕ S_B) maps the result back to B's pose and shape so that it can be compared with the real I_B. One
  conditional PatchGAN ``D`` on (P ⊕ S ⊕ image): the real pair (P_B, S_B, I_B) against the two fakes
  (P_A, S_A, G2 output) and (P_B, S_B, G3 output). U-Net generators by default.

Composite models are one `nn.Module` with one child per optimizer — ``G`` (every generator and encoder, trained
together) and ``D`` (every discriminator) — so the engine gives each its own optimizer and, under DDP, one
wrapper (docs/engine.md, "Several networks"). Where a side holds several networks it is a `NetworkGroup`, called
through its own forward with the member's name (``model.G("F", y)``, ``model.D("rev", pair)``): a DDP wrapper
only synchronises what runs through its forward. Members are also plain attributes for inference
(``model.G.F(y)``). The helper methods (`InstantiationNet.sample`, `SwapGAN.swap`) call the plain networks and
are meant for inference. Channel order of every concatenation: condition first, image last, as listed above.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from imagexplore.data.shapes.persons import KEYPOINT_NAMES, PARSING_LABELS
from imagexplore.errors import ConfigError
from imagexplore.models import register_model

__all__ = [
    "DISCRIMINATORS",
    "ENCODERS",
    "GENERATORS",
    "INIT_KINDS",
    "NORMS",
    "InstantiationNet",
    "NoiseDropout",
    "PatchDiscriminator",
    "Pix2Pix",
    "ResnetGenerator",
    "StyleEncoder",
    "SwapGAN",
    "UNetGenerator",
    "build_discriminator",
    "build_encoder",
    "build_generator",
    "init_weights",
    "receptive_field",
    "reparameterize",
    "set_dropout_at_test",
]

NORMS = ("batch", "instance", "none")
INIT_KINDS = ("normal", "xavier", "kaiming", "orthogonal")


# ---------------------------------------------------------------------------------------------- building blocks


def _positive_int(owner: str, name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_norm(owner: str, norm: str) -> bool:
    """Validate ``norm``; return whether the conv before it keeps its bias (no bias before batch norm)."""
    if norm not in NORMS:
        raise ConfigError(f"{owner}: unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    return norm != "batch"


def _norm(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    return nn.Identity()


def _check_dropout(owner: str, p) -> float:
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p < 1:
        raise ConfigError(f"{owner}: dropout must lie in [0, 1), got {p!r}")
    return float(p)


class NoiseDropout(nn.Module):
    """Dropout that can stay active in ``eval()`` (``at_test=True``): pix2pix's only source of noise."""

    def __init__(self, p: float, at_test: bool = False):
        super().__init__()
        self.p, self.at_test = p, at_test

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, training=self.training or self.at_test)

    def extra_repr(self) -> str:
        return f"p={self.p}, at_test={self.at_test}"


def set_dropout_at_test(module: nn.Module, enabled: bool) -> nn.Module:
    """Switch test-time dropout on or off in every `NoiseDropout` of ``module``; returns ``module``."""
    for m in module.modules():
        if isinstance(m, NoiseDropout):
            m.at_test = bool(enabled)
    return module


def _broadcast_style(z: Tensor, like: Tensor) -> Tensor:
    return z[:, :, None, None].expand(-1, -1, like.shape[2], like.shape[3])


class _Styled(nn.Module):
    """Input checks shared by the generators: channel count, size multiple, and the style code."""

    in_chans: int
    style_dim: int
    size_multiple: int

    def _check_input(self, x: Tensor, z: Tensor | None) -> Tensor | None:
        name = type(self).__name__
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ConfigError(f"{name}: expected a B×{self.in_chans}×H×W input, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % self.size_multiple or w % self.size_multiple:
            raise ConfigError(
                f"{name}: input size {h}×{w} is not a multiple of {self.size_multiple}; "
                f"resize or crop the images to a multiple of {self.size_multiple}"
            )
        if self.style_dim == 0:
            if z is not None:
                raise ConfigError(f"{name}: built with style_dim=0 but given a style code")
            return None
        if z is None:
            return torch.randn(x.shape[0], self.style_dim, device=x.device, dtype=x.dtype)
        if z.shape != (x.shape[0], self.style_dim):
            raise ConfigError(
                f"{name}: style code must have shape ({x.shape[0]}, {self.style_dim}), got {tuple(z.shape)}"
            )
        return z


# ---------------------------------------------------------------------------------------------- generators


class UNetGenerator(_Styled):
    """pix2pix's U-Net generator (published; module docstring), ``depth`` levels, optional style code.

    ``forward(x, z=None)``: x is B×in_chans×H×W with H and W multiples of 2**depth (else a one-line
    `ConfigError`); z is B×style_dim when ``style_dim > 0`` (None draws z ~ N(0, I)). Output in [-1, 1].
    ``dropout_blocks`` decoder blocks next to the bottleneck (only the 8·ngf-wide ones) get dropout ``dropout``.
    """

    def __init__(
        self,
        in_chans: int = 3,
        out_chans: int = 3,
        depth: int = 8,
        ngf: int = 64,
        norm: str = "batch",
        dropout: float = 0.5,
        dropout_blocks: int = 3,
        dropout_at_test: bool = False,
        style_dim: int = 0,
    ):
        super().__init__()
        own = "UNetGenerator"
        self.in_chans = _positive_int(own, "in_chans", in_chans)
        self.out_chans = _positive_int(own, "out_chans", out_chans)
        self.depth = _positive_int(own, "depth", depth, minimum=2)
        ngf = _positive_int(own, "ngf", ngf)
        self.style_dim = _positive_int(own, "style_dim", style_dim, minimum=0)
        dropout = _check_dropout(own, dropout)
        dropout_blocks = _positive_int(own, "dropout_blocks", dropout_blocks, minimum=0)
        bias = _check_norm(own, norm)
        self.size_multiple = 2**self.depth
        widths = [ngf * min(2**i, 8) for i in range(self.depth)]
        inner = self.depth - 1

        # encoder level i: (LeakyReLU, applied in forward for i > 0) conv ↓2 → norm (none at levels 0 and inner)
        self.down = nn.ModuleList()
        for i, w in enumerate(widths):
            c_in = self.in_chans + self.style_dim if i == 0 else widths[i - 1]
            layers = [nn.Conv2d(c_in, w, 4, stride=2, padding=1, bias=bias)]
            if 0 < i < inner:
                layers.append(_norm(norm, w))
            self.down.append(nn.Sequential(*layers))

        # decoder level i: (ReLU, in forward) transposed conv ↑2 → norm [→ dropout]; level 0: → Tanh
        self.up = nn.ModuleList()
        for i, w in enumerate(widths):
            if i == 0:
                self.up.append(nn.ConvTranspose2d(2 * w, self.out_chans, 4, stride=2, padding=1))
                continue
            c_in = w + self.style_dim if i == inner else 2 * w
            c_out = widths[i - 1]
            layers = [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=bias), _norm(norm, c_out)]
            if dropout > 0 and inner - i < dropout_blocks and c_out == 8 * ngf:
                layers.append(NoiseDropout(dropout, dropout_at_test))
            self.up.append(nn.Sequential(*layers))

    def forward(self, x: Tensor, z: Tensor | None = None) -> Tensor:
        z = self._check_input(x, z)
        h = x if z is None else torch.cat([x, _broadcast_style(z, x)], 1)
        skips = []
        for i, down in enumerate(self.down):
            h = down(h if i == 0 else F.leaky_relu(h, 0.2))
            skips.append(h)
        h = F.relu(skips.pop())
        if z is not None:
            h = torch.cat([h, _broadcast_style(z, h)], 1)
        h = self.up[-1](h)
        for i in range(self.depth - 2, -1, -1):
            h = self.up[i](F.relu(torch.cat([skips[i], h], 1)))
        return torch.tanh(h)


class ResnetBlock(nn.Module):
    """x + (reflect-pad, conv 3×3, norm, ReLU, [dropout], reflect-pad, conv 3×3, norm)(x)."""

    def __init__(self, dim: int, norm: str, bias: bool, dropout: float = 0.0, dropout_at_test: bool = False):
        super().__init__()
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), _norm(norm, dim), nn.ReLU(True)]
        if dropout > 0:
            layers.append(NoiseDropout(dropout, dropout_at_test))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), _norm(norm, dim)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResnetGenerator(_Styled):
    """CycleGAN's ResNet generator (published; module docstring), optional style code.

    ``forward(x, z=None)`` as `UNetGenerator`; H and W must be multiples of 4.
    """

    def __init__(
        self,
        in_chans: int = 3,
        out_chans: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        norm: str = "batch",
        dropout: float = 0.0,
        dropout_at_test: bool = False,
        style_dim: int = 0,
    ):
        super().__init__()
        own = "ResnetGenerator"
        self.in_chans = _positive_int(own, "in_chans", in_chans)
        self.out_chans = _positive_int(own, "out_chans", out_chans)
        ngf = _positive_int(own, "ngf", ngf)
        n_blocks = _positive_int(own, "n_blocks", n_blocks, minimum=0)
        self.style_dim = _positive_int(own, "style_dim", style_dim, minimum=0)
        dropout = _check_dropout(own, dropout)
        bias = _check_norm(own, norm)
        self.size_multiple = 4
        self.encoder = nn.Sequential(
            nn.ReflectionPad2d(3),
            nn.Conv2d(self.in_chans + self.style_dim, ngf, 7, bias=bias),
            _norm(norm, ngf),
            nn.ReLU(True),
            nn.Conv2d(ngf, 2 * ngf, 3, stride=2, padding=1, bias=bias),
            _norm(norm, 2 * ngf),
            nn.ReLU(True),
            nn.Conv2d(2 * ngf, 4 * ngf, 3, stride=2, padding=1, bias=bias),
            _norm(norm, 4 * ngf),
            nn.ReLU(True),
        )
        self.style_fuse = nn.Conv2d(4 * ngf + self.style_dim, 4 * ngf, 1) if self.style_dim else None
        self.blocks = nn.Sequential(
            *(ResnetBlock(4 * ngf, norm, bias, dropout, dropout_at_test) for _ in range(n_blocks))
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(4 * ngf, 2 * ngf, 3, stride=2, padding=1, output_padding=1, bias=bias),
            _norm(norm, 2 * ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(2 * ngf, ngf, 3, stride=2, padding=1, output_padding=1, bias=bias),
            _norm(norm, ngf),
            nn.ReLU(True),
            nn.ReflectionPad2d(3),
            nn.Conv2d(ngf, self.out_chans, 7),
            nn.Tanh(),
        )

    def forward(self, x: Tensor, z: Tensor | None = None) -> Tensor:
        z = self._check_input(x, z)
        if z is not None:
            x = torch.cat([x, _broadcast_style(z, x)], 1)
        h = self.encoder(x)
        if z is not None:
            h = self.style_fuse(torch.cat([h, _broadcast_style(z, h)], 1))
        return self.decoder(self.blocks(h))


# ---------------------------------------------------------------------------------------------- discriminator, encoder


def receptive_field(n_layers: int = 3) -> int:
    """Side (pixels) of the input patch one output logit of a `PatchDiscriminator` sees: 70 for n_layers=3.

    The layers are 4×4 convs with strides ``[2] * n_layers + [1, 1]``; walking back from one output pixel, a
    layer of kernel k and stride s turns a span of r into ``(r - 1)·s + k``.
    """
    n_layers = _positive_int("receptive_field", "n_layers", n_layers)
    r = 1
    for stride in reversed([2] * n_layers + [1, 1]):
        r = (r - 1) * stride + 4
    return r


class PatchDiscriminator(nn.Module):
    """The PatchGAN discriminator (published; module docstring): B×in_chans×H×W → B×1×H'×W' logits.

    Widths ``ndf·min(2^i, 8)``; with n_layers=3 and 256 px input the logits are 30×30, each seeing a
    `receptive_field` (70×70) patch. Any input of at least 2**n_layers·4 px works.
    """

    def __init__(self, in_chans: int = 6, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        own = "PatchDiscriminator"
        self.in_chans = _positive_int(own, "in_chans", in_chans)
        ndf = _positive_int(own, "ndf", ndf)
        self.n_layers = _positive_int(own, "n_layers", n_layers)
        bias = _check_norm(own, norm)
        layers: list[nn.Module] = [
            nn.Conv2d(self.in_chans, ndf, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, True),
        ]
        width = ndf
        for n in range(1, self.n_layers + 1):
            w = ndf * min(2**n, 8)
            stride = 2 if n < self.n_layers else 1
            layers += [nn.Conv2d(width, w, 4, stride=stride, padding=1, bias=bias), _norm(norm, w)]
            layers.append(nn.LeakyReLU(0.2, True))
            width = w
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ConfigError(
                f"PatchDiscriminator: expected a B×{self.in_chans}×H×W input, got shape {tuple(x.shape)}"
            )
        return self.model(x)


class StyleEncoder(nn.Module):
    """Image → (mu, logvar) of its style code, BicycleGAN-style (our extension; module docstring).

    ``n_down`` 4×4 stride-2 convs (widths ``ndf·min(2^i, 4)``, no norm on the first, LeakyReLU 0.2), global
    average pooling, two linear heads of ``style_dim``. Instance norm by default, so that one image's code does
    not depend on the rest of the batch.
    """

    def __init__(
        self, in_chans: int = 3, style_dim: int = 8, ndf: int = 64, n_down: int = 4, norm: str = "instance"
    ):
        super().__init__()
        own = "StyleEncoder"
        self.in_chans = _positive_int(own, "in_chans", in_chans)
        self.style_dim = _positive_int(own, "style_dim", style_dim)
        ndf = _positive_int(own, "ndf", ndf)
        n_down = _positive_int(own, "n_down", n_down)
        bias = _check_norm(own, norm)
        layers: list[nn.Module] = []
        width = self.in_chans
        for i in range(n_down):
            w = ndf * min(2**i, 4)
            layers.append(nn.Conv2d(width, w, 4, stride=2, padding=1, bias=bias or i == 0))
            if i > 0:
                layers.append(_norm(norm, w))
            layers.append(nn.LeakyReLU(0.2, True))
            width = w
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.mu = nn.Linear(width, self.style_dim)
        self.logvar = nn.Linear(width, self.style_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.features(x)
        return self.mu(h), self.logvar(h)


def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """z = mu + exp(logvar / 2) · ε with ε ~ N(0, I): a differentiable sample of the encoded style."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


# ---------------------------------------------------------------------------------------------- init, registries


def init_weights(module: nn.Module, kind: str = "normal", gain: float = 0.02) -> nn.Module:
    """pix2pix's initialisation, in place; returns ``module``.

    Conv, transposed conv and linear weights: ``"normal"`` N(0, gain) (pix2pix), ``"xavier"`` (normal, gain),
    ``"kaiming"`` (fan-in) or ``"orthogonal"`` (gain); their biases 0. Batch-norm weights N(1, gain), biases 0.
    """
    if kind not in INIT_KINDS:
        raise ConfigError(f"unknown init {kind!r}; choose one of {', '.join(INIT_KINDS)}")
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            if kind == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif kind == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif kind == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return module


GENERATORS: dict[str, type[nn.Module]] = {"unet": UNetGenerator, "resnet": ResnetGenerator}
DISCRIMINATORS: dict[str, type[nn.Module]] = {"patch": PatchDiscriminator}
ENCODERS: dict[str, type[nn.Module]] = {"style": StyleEncoder}


def _build(kind: str, registry: Mapping[str, Callable[..., nn.Module]], name: str, kwargs: dict) -> nn.Module:
    if name not in registry:
        raise ConfigError(f"unknown {kind} {name!r}; choose one of {', '.join(sorted(registry))}")
    valid = [p for p in inspect.signature(registry[name]).parameters]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ConfigError(
            f"{kind} {name!r} does not accept {', '.join(unknown)}; valid options: {', '.join(valid)}, "
            "init, init_gain"
        )
    return registry[name](**kwargs)


def build_generator(name: str = "unet", init: str = "normal", init_gain: float = 0.02, **kwargs) -> nn.Module:
    """A generator of `GENERATORS` built with ``kwargs`` and initialised by `init_weights` (as pix2pix's define_G);
    an unknown name or option is a one-line `ConfigError` listing the valid ones."""
    return init_weights(_build("generator", GENERATORS, name, kwargs), init, init_gain)


def build_discriminator(
    name: str = "patch", init: str = "normal", init_gain: float = 0.02, **kwargs
) -> nn.Module:
    """A discriminator of `DISCRIMINATORS`, as `build_generator`."""
    return init_weights(_build("discriminator", DISCRIMINATORS, name, kwargs), init, init_gain)


def build_encoder(name: str = "style", init: str = "normal", init_gain: float = 0.02, **kwargs) -> nn.Module:
    """A style encoder of `ENCODERS`, as `build_generator`."""
    return init_weights(_build("encoder", ENCODERS, name, kwargs), init, init_gain)


def _options(owner: str, what: str, given: Mapping | None, fixed: dict) -> dict:
    """``given`` (a config's ``g_kwargs`` …) plus the channel counts the composite sets itself."""
    given = dict(given or {})
    clash = sorted(set(given) & set(fixed))
    if clash:
        raise ConfigError(f"{owner}: {what} must not set {', '.join(clash)} (the model sets it)")
    return {**given, **fixed}


# ---------------------------------------------------------------------------------------------- composite models


class NetworkGroup(nn.ModuleDict):
    """Networks trained by one optimizer, called through one forward: ``group(name, *args)`` = ``group[name](*args)``.

    The engine wraps each optimizer's child in one DDP module, which synchronises only what runs through its
    forward; routing every member through ``forward`` keeps that true for a side with several networks."""

    def forward(self, name: str, *args, **kwargs):
        return self[name](*args, **kwargs)


class Pix2Pix(nn.Module):
    """pix2pix (published): generator ``G`` (input → output) and conditional PatchGAN ``D`` on input ⊕ output.

    ``g_kwargs`` / ``d_kwargs`` go to `build_generator` / `build_discriminator` (``init`` / ``init_gain`` too);
    the channel counts come from ``in_chans`` and ``out_chans``. ``forward(x)`` = ``G(x)``.
    """

    def __init__(
        self,
        in_chans: int = 3,
        out_chans: int = 3,
        generator: str = "unet",
        g_kwargs: Mapping | None = None,
        d_kwargs: Mapping | None = None,
    ):
        super().__init__()
        self.in_chans, self.out_chans = in_chans, out_chans
        self.G = build_generator(
            generator,
            **_options("Pix2Pix", "g_kwargs", g_kwargs, {"in_chans": in_chans, "out_chans": out_chans}),
        )
        self.D = build_discriminator(
            **_options("Pix2Pix", "d_kwargs", d_kwargs, {"in_chans": in_chans + out_chans})
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.G(x)


class InstantiationNet(nn.Module):
    """The instantiation network (THESIS.md 8.1, **reconstruction**; module docstring).

    Children (`NetworkGroup` s): ``G`` = {``G``: abstract → photo with a ``style_dim`` style code, ``F``: photo →
    abstract (no style code), ``E``: a `StyleEncoder` on photos} and ``D`` = {``fwd``: conditional PatchGAN on
    (abstract ⊕ photo), ``rev``: on (photo ⊕ abstract)}. ``g_kwargs`` go to both generators, ``e_kwargs`` to E,
    ``d_kwargs`` to both discriminators. ``forward(x, z=None)`` = ``G.G(x, z)``.
    """

    def __init__(
        self,
        abstract_chans: int = 3,
        photo_chans: int = 3,
        style_dim: int = 8,
        generator: str = "unet",
        g_kwargs: Mapping | None = None,
        e_kwargs: Mapping | None = None,
        d_kwargs: Mapping | None = None,
    ):
        super().__init__()
        own = "InstantiationNet"
        self.style_dim = _positive_int(own, "style_dim", style_dim)
        self.abstract_chans, self.photo_chans = abstract_chans, photo_chans
        a, p = abstract_chans, photo_chans
        self.G = NetworkGroup(
            {
                "G": build_generator(
                    generator,
                    **_options(
                        own, "g_kwargs", g_kwargs, {"in_chans": a, "out_chans": p, "style_dim": style_dim}
                    ),
                ),
                "F": build_generator(
                    generator,
                    **_options(own, "g_kwargs", g_kwargs, {"in_chans": p, "out_chans": a, "style_dim": 0}),
                ),
                "E": build_encoder(
                    **_options(own, "e_kwargs", e_kwargs, {"in_chans": p, "style_dim": style_dim})
                ),
            }
        )
        self.D = NetworkGroup(
            {
                "fwd": build_discriminator(**_options(own, "d_kwargs", d_kwargs, {"in_chans": a + p})),
                "rev": build_discriminator(**_options(own, "d_kwargs", d_kwargs, {"in_chans": p + a})),
            }
        )

    def forward(self, x: Tensor, z: Tensor | None = None) -> Tensor:
        return self.G.G(x, z)

    def sample(self, x: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` instantiations of every input (B×n×photo_chans×H×W), each with its own z ~ N(0, I)."""
        n = _positive_int("InstantiationNet.sample", "n", n)
        b = x.shape[0]
        z = torch.randn(b * n, self.style_dim, generator=generator, device=x.device, dtype=x.dtype)
        out = self.G.G(x.repeat_interleave(n, 0), z)
        return out.view(b, n, *out.shape[1:])


def compose(generated: Tensor, kept: Tensor, keep: Tensor) -> Tensor:
    """A person's kept pixels (``kept`` = image × ``keep``, 0 on the clothes) over a generated image: the
    generator paints only where ``keep`` is 0."""
    return kept + (1 - keep) * generated


class SwapGAN(nn.Module):
    """SwapGAN (THESIS.md 8.2: **published** structure, **reconstructed** details; module docstring).

    Children: ``G`` (a `NetworkGroup`, trained end to end by one optimizer) = {``G1`` on I_B ⊕ P_A (3 +
    pose_channels), ``G2`` on G1's output ⊕ S_A (3 + parsing_labels), ``G3`` on G2's output ⊕ P_B ⊕ S_B (3 +
    pose_channels + parsing_labels)}, and one conditional PatchGAN ``D`` on P ⊕ S ⊕ image. Pose maps are ``pose_channels`` heat maps (default ``len(KEYPOINT_NAMES)`` = 14), parsing maps
    one-hot over ``parsing_labels`` (default ``len(PARSING_LABELS)`` = 8) — the shapes persons' conventions.
    ``identity=True`` (our reconstruction's default) also gives G2 person A's own non-clothes pixels and G3 B's
    (image × `persons.keep_mask`: head, hair, skin, background), 3 more input channels each: the swap must keep A's
    head and skin, which neither B's image nor the maps carry — without them G2 can only guess them.
    ``composite=True`` (default, needs ``identity``) pastes those kept pixels over the generated image, so G2 and G3
    paint only the clothes regions (as try-on networks compose a generated region with the person).
    ``forward`` = `swap`.
    """

    def __init__(
        self,
        pose_channels: int = len(KEYPOINT_NAMES),
        parsing_labels: int = len(PARSING_LABELS),
        image_chans: int = 3,
        generator: str = "unet",
        g_kwargs: Mapping | None = None,
        d_kwargs: Mapping | None = None,
        identity: bool = True,
        composite: bool = True,
    ):
        super().__init__()
        own = "SwapGAN"
        for name, value in (("identity", identity), ("composite", composite)):
            if not isinstance(value, bool):
                raise ConfigError(f"SwapGAN: {name} must be true or false, got {value!r}")
        if composite and not identity:
            raise ConfigError("SwapGAN: composite pastes the kept pixels, so it needs identity: true")
        self.identity, self.composite = identity, composite
        k = self.pose_channels = _positive_int(own, "pose_channels", pose_channels)
        s = self.parsing_labels = _positive_int(own, "parsing_labels", parsing_labels)
        c = self.image_chans = _positive_int(own, "image_chans", image_chans)

        def gen(extra: int) -> nn.Module:
            return build_generator(
                generator, **_options(own, "g_kwargs", g_kwargs, {"in_chans": c + extra, "out_chans": c})
            )

        kept = c if identity else 0
        self.G = NetworkGroup({"G1": gen(k), "G2": gen(s + kept), "G3": gen(k + s + kept)})
        self.D = build_discriminator(**_options(own, "d_kwargs", d_kwargs, {"in_chans": k + s + c}))

    def swap(
        self, image_b: Tensor, pose_a: Tensor, parsing_a: Tensor, keep_a: Tensor | None = None, image_a=None
    ) -> Tensor:
        """Person B's clothes in A's pose and layout: G2(G1(I_B ⊕ P_A) ⊕ S_A [⊕ K_A]) [composed with K_A], where
        K_A = ``image_a`` × ``keep_a`` (`persons.keep_mask`) — needed with ``identity``."""
        y1 = self.G.G1(torch.cat([image_b, pose_a], 1))
        if not self.identity:
            return self.G.G2(torch.cat([y1, parsing_a], 1))
        if keep_a is None or image_a is None:
            raise ConfigError("this SwapGAN (identity: true) needs person A's image and keep mask")
        kept = image_a * keep_a
        return self.paste(self.G.G2(torch.cat([y1, parsing_a, kept], 1)), kept, keep_a)

    def paste(self, generated: Tensor, kept: Tensor, keep: Tensor) -> Tensor:
        """With ``composite``, the kept pixels over the generated image (`compose`); else the generated image."""
        return compose(generated, kept, keep) if self.composite else generated

    def forward(
        self, image_b: Tensor, pose_a: Tensor, parsing_a: Tensor, keep_a=None, image_a=None
    ) -> Tensor:
        return self.swap(image_b, pose_a, parsing_a, keep_a, image_a)


# ---------------------------------------------------------------------------------------------- model registry
# the synth task's models by the names configs use (`model.name`); channel counts come from the data


@register_model(task="synth")
def pix2pix(in_chans: int = 3, out_chans: int = 3, **kwargs) -> Pix2Pix:
    """pix2pix: U-Net (or ResNet) generator + 70×70 conditional PatchGAN (chapter 8.1 baseline, published)."""
    return Pix2Pix(in_chans, out_chans, **kwargs)


@register_model(task="synth")
def instantiation_net(**kwargs) -> InstantiationNet:
    """Instantiation network: both directions, cycle consistency, a style code (chapter 8.1, reconstruction)."""
    return InstantiationNet(**kwargs)


@register_model(task="synth")
def swapgan(**kwargs) -> SwapGAN:
    """SwapGAN: G1 pose-, G2 parsing-conditioned, G3 back-mapping, one PatchGAN on two fake pairs (chapter 8.2)."""
    return SwapGAN(**kwargs)
