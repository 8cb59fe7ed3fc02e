"""An exponential moving average of a network's weights (GAN generators, mean-teacher style evaluation)."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


class EMA:
    """A frozen copy of `module` whose floating-point parameters and buffers follow
    ``ema ← decay · ema + (1 − decay) · current`` after every optimizer iteration; integer buffers (BatchNorm's
    step counter) are copied. The copy is a plain module: evaluate with it, or load its state for export."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = float(decay)
        self.module = copy.deepcopy(module).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        current = module.state_dict()
        for name, value in self.module.state_dict().items():
            source = current[name].detach()
            if value.dtype.is_floating_point:
                value.lerp_(source.to(value.dtype), 1.0 - self.decay)
            else:
                value.copy_(source)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
