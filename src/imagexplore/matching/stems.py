"""Learned input stems of a matching model: the networks that turn a cache's raw text or image inputs into the
feature vector a branch reads, trained end to end with the model (thesis ch. 6, the feature-encoder study).

- `SmallCNN`: a small CNN trained from scratch on the ``pixels`` encoder's flattened images (B × 3·S·S).
- `TokenStem`: the word-embedding + GRU sentence encoder (`GRUTextEncoder`) on the ``tokens`` encoder's
  ``(word ids, lengths)``.
- `build_stem`: the stem an encoder spec needs, or None for fixed features (``lite0``, ``minilm``, ``bow``, …).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from imagexplore.errors import ConfigError
from imagexplore.matching.encoders import GRUTextEncoder

__all__ = ["SmallCNN", "TokenStem", "build_stem"]


class SmallCNN(nn.Module):
    """Flattened images (B × 3·size·size, the ``pixels`` encoder's layout: channel-first) → (B, ``out_dim``).

    One block per entry of ``channels`` (default 32, 64, 128): conv 3×3 (padding 1, no bias) → BatchNorm →
    ReLU → max-pool 2; then a global average pool. ``out_dim`` = ``channels[-1]``.
    """

    def __init__(self, size: int = 32, channels: Sequence[int] = (32, 64, 128)):
        super().__init__()
        channels = [int(c) for c in channels]
        if not channels or min(channels) < 1:
            raise ConfigError(f"SmallCNN: channels must be positive integers, got {channels!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 2 ** len(channels):
            raise ConfigError(
                f"SmallCNN: size must be an integer of at least {2 ** len(channels)} ({len(channels)} max-pools "
                f"halve it), got {size!r}"
            )
        layers: list[nn.Module] = []
        c_in = 3
        for c in channels:
            layers += [
                nn.Conv2d(c_in, c, 3, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.size = size
        self.channels = tuple(channels)
        self.out_dim = channels[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.size
        if x.ndim != 2 or x.shape[1] != 3 * s * s:
            raise ConfigError(
                f"SmallCNN(size={s}) reads B × {3 * s * s} flattened images, got shape {tuple(x.shape)}"
            )
        return self.features(x.reshape(x.shape[0], 3, s, s)).mean(dim=(2, 3))


class TokenStem(nn.Module):
    """`GRUTextEncoder` behind a one-argument ``forward((tokens, lengths)) → (B, out_dim)``."""

    def __init__(self, encoder: GRUTextEncoder):
        super().__init__()
        self.encoder = encoder
        self.out_dim = encoder.dim

    def forward(self, x) -> torch.Tensor:
        tokens, lengths = x
        return self.encoder(tokens, lengths)


_STEM_OPTIONS = {
    "pixels": {"channels"},
    "tokens": {"word_dim", "gru_hidden", "pooling", "num_layers", "bidirectional", "dropout"},
}


def build_stem(kind: str, spec: dict, **options) -> nn.Module | None:
    """The learned stem for one side (``kind``: "image" or "text") of a model reading the features of the
    encoder ``spec`` describes: ``pixels`` → `SmallCNN` (``size`` from the spec; option ``channels``),
    ``tokens`` → `TokenStem` over a `GRUTextEncoder` of the spec's vocabulary size (options ``word_dim`` 300,
    ``gru_hidden`` 1024, ``pooling`` "last", ``num_layers`` 1, ``bidirectional`` False, ``dropout`` 0, as
    the former `rrf_gru_net`); any other encoder gives fixed features: None (its options are ignored)."""
    if kind not in ("image", "text"):
        raise ConfigError(f"build_stem: kind must be 'image' or 'text', got {kind!r}")
    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError(f"build_stem: not an encoder spec (needs a name): {spec!r}"[:200])
    if spec.get("modality", kind) != kind:
        raise ConfigError(
            f"build_stem: a {spec['modality']} encoder spec ({spec['name']}) on the {kind} side"
        )
    name = spec["name"]
    if name not in _STEM_OPTIONS:
        return None
    unknown = sorted(set(options) - _STEM_OPTIONS[name])
    if unknown:
        raise ConfigError(
            f"stem for {name!r}: unknown option(s) {unknown}; options: {', '.join(sorted(_STEM_OPTIONS[name]))}"
        )
    if name == "pixels":
        return SmallCNN(int(spec["size"]), **options)
    vocab_size = len(spec["vocabulary"]) if "vocabulary" in spec else int(spec["dim"])
    return TokenStem(
        GRUTextEncoder(
            vocab_size,
            word_dim=options.get("word_dim", 300),
            hidden=options.get("gru_hidden", 1024),
            num_layers=options.get("num_layers", 1),
            bidirectional=options.get("bidirectional", False),
            pooling=options.get("pooling", "last"),
            dropout=options.get("dropout", 0.0),
        )
    )
