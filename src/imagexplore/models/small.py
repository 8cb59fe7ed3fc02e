"""Small baselines used by the engine's learning tests and quick examples."""

from __future__ import annotations

import torch
import torch.nn as nn

from imagexplore.models import register_model


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class SimpleCNN(nn.Module):
    """Conv-BN-ReLU stages with max pooling, global average pooling and a linear classifier."""

    def __init__(
        self, num_classes: int = 10, in_chans: int = 3, width: int = 16, depth: int = 4, dropout: float = 0.0
    ):
        super().__init__()
        layers, c = [], in_chans
        for i in range(depth):
            out = width * 2**i
            layers += [_conv_bn_relu(c, out), nn.MaxPool2d(2, ceil_mode=True)]
            c = out
        self.features = nn.Sequential(*layers)
        self.num_features = c
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(c, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean((2, 3))

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(feats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def simple_cnn(
    num_classes: int = 10, in_chans: int = 3, width: int = 16, depth: int = 4, dropout: float = 0.0
):
    """Small conv-BN-ReLU baseline (the engine's learning tests and quick examples)."""
    return SimpleCNN(num_classes, in_chans, width, depth, dropout)
