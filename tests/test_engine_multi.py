"""Several networks and optimizers through the one Trainer (GANs, CycleMatch, JMC): isolation of gradients,
steps per optimizer, freezing by stage, EMA, bit-exact resume, and a toy GAN that learns."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from imagexplore.config import load_config
from imagexplore.engine import Task, Trainer


class Ring(Dataset):
    """(real 2-D point from 8 Gaussians on a ring, noise z): the noise is part of the sample, so every loss is a
    fixed function of (parameters, batch) and a hand-computed reference can follow the Trainer exactly."""

    def __init__(self, n: int = 512, seed: int = 0, modes: int = 8, std: float = 0.05):
        g = torch.Generator().manual_seed(seed)
        k = torch.randint(0, modes, (n,), generator=g)
        angle = 2 * math.pi * k.float() / modes
        self.x = torch.stack([angle.cos(), angle.sin()], 1) + std * torch.randn(n, 2, generator=g)
        self.z = torch.randn(n, 2, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.z[i]


def mlp(i, o, h=32):
    return nn.Sequential(nn.Linear(i, h), nn.LeakyReLU(0.2), nn.Linear(h, h), nn.LeakyReLU(0.2), nn.Linear(h, o))


class ToyGAN(nn.Module):
    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.G, self.D = mlp(2, 2), mlp(2, 1)


def d_loss(model, real, z):
    fake = model.G(z).detach()
    return F.softplus(-model.D(real)).mean() + F.softplus(model.D(fake)).mean()


def g_loss(model, z):
    return F.softplus(-model.D(model.G(z))).mean()


class GANTask(Task):
    def __init__(self, own_optimizers: bool = False, lr: float = 0.1):
        self.own, self.lr = own_optimizers, lr

    def configure_optimizers(self, model, cfg):
        if not self.own:
            return super().configure_optimizers(model, cfg)
        return {  # built by the task itself, as the engine allowed before named optimizer sections
            "D": torch.optim.SGD(model.D.parameters(), lr=self.lr),
            "G": torch.optim.SGD(model.G.parameters(), lr=self.lr),
        }

    def training_step(self, model, batch, optimizer):
        real, z = batch
        loss = d_loss(model, real, z) if optimizer == "D" else g_loss(model, z)
        return loss, {}


def gan_cfg(*overrides):
    base = [
        "data.batch_size=32",
        "train.device=cpu",
        "train.tensorboard=false",
        "train.log_every=1000",
        "schedule.name=constant",
        "optim.momentum=0",
        "optim.weight_decay=0",
    ]
    return load_config(None, base + list(overrides))


def test_generator_backward_does_not_leak_into_discriminator_when_accumulating(tmp_path):
    """accumulate=2, one iteration over all 64 samples: D must move by exactly -lr ∇_D L_D(all; G0, D0). Before the
    fix, G's backward on the first micro-batch left its gradient in D.grad, which D's step then used."""
    data = Ring(64)
    model = ToyGAN()
    ref = ToyGAN()
    real, z = data.x, data.z
    grads = torch.autograd.grad(d_loss(ref, real, z), list(ref.D.parameters()))
    expected = [p.detach() - 0.1 * g for p, g in zip(ref.D.parameters(), grads)]
    cfg = gan_cfg("train.iterations=1", "train.accumulate=2", "train.eval_every=0")
    Trainer(cfg, model, GANTask(own_optimizers=True), data, None, tmp_path, show_progress=False).fit()
    for p, e in zip(model.D.parameters(), expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-6)
