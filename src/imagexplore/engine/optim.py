"""Optimizers with per-parameter-group multipliers, and iteration-based learning-rate schedules."""

from __future__ import annotations

import math
import re

import torch
import torch.nn as nn

from imagexplore.config import OptimConfig, ScheduleConfig
from imagexplore.errors import ConfigError

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """Split parameters into groups by (lr multiplier, weight-decay multiplier).

    Rules in `cfg.param_groups` are regexes on parameter names; the first match wins. Each group records its
    multipliers (`lr_mult`, `wd_mult`) so the schedule scales every group's own base lr.
    """
    try:
        rules = [(re.compile(r.pattern), r.lr_mult, r.wd_mult) for r in cfg.param_groups]
    except re.error as e:
        raise ConfigError(f"optim.param_groups: invalid regex: {e}") from None
    norm_params = set()
    if cfg.no_decay_norm_bias:
        for m in model.modules():
            if isinstance(m, _NORM_TYPES):
                norm_params.update(id(p) for p in m.parameters(recurse=False))
    groups: dict[tuple[float, float], list] = {}
    names: dict[tuple[float, float], list[str]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr_mult, wd_mult = 1.0, 1.0
        for rx, lm, wm in rules:
            if rx.search(name):
                lr_mult, wd_mult = lm, wm
                break
        if cfg.no_decay_norm_bias and (id(p) in norm_params or name.endswith(".bias")):
            wd_mult = 0.0
        key = (lr_mult, wd_mult)
        groups.setdefault(key, []).append(p)
        names.setdefault(key, []).append(name)
    return [
        {
            "params": ps,
            "lr": cfg.lr * lm,
            "weight_decay": cfg.weight_decay * wm,
            "lr_mult": lm,
            "wd_mult": wm,
            "param_names": names[(lm, wm)],
        }
        for (lm, wm), ps in groups.items()
    ]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg)
    if not groups:
        raise ConfigError("the model has no trainable parameters")
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.betas))
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))
    raise ConfigError(f"optim.name must be one of sgd, adam, adamw; got {cfg.name!r}")


def lr_factor(cfg: ScheduleConfig, it: int, total: int, iters_per_epoch: int = 1) -> float:
    """Multiplier of the base lr at iteration `it` (0-based) of `total` iterations."""
    scale = iters_per_epoch if cfg.unit == "epochs" else 1
    warmup = cfg.warmup_iters * scale
    if warmup > 0 and it < warmup:
        alpha = it / warmup
        warm = cfg.warmup_factor * (1 - alpha) + alpha
    else:
        warm = 1.0
    if cfg.name == "constant":
        f = 1.0
    elif cfg.name == "step":
        step = cfg.step_size * scale or max(1, total // 3)
        f = cfg.gamma ** (it // step)
    elif cfg.name == "multistep":
        f = cfg.gamma ** sum(it >= m * scale for m in cfg.milestones)
    elif cfg.name == "cosine":
        span = max(1, total - warmup)
        t = min(1.0, max(0, it - warmup) / span)
        f = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    elif cfg.name == "linear":
        start = cfg.decay_start * total
        t = min(1.0, max(0.0, it - start) / max(1.0, total - start))
        f = 1 - (1 - cfg.min_lr_ratio) * t
    else:
        raise ConfigError(
            f"schedule.name must be one of constant, step, multistep, cosine, linear; got {cfg.name!r}"
        )
    return warm * f


def build_scheduler(optimizer, cfg: ScheduleConfig, total_iters: int, iters_per_epoch: int = 1):
    """A LambdaLR stepped once per optimizer step; every group keeps its own multiplier."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: lr_factor(cfg, it, total_iters, iters_per_epoch)
    )
