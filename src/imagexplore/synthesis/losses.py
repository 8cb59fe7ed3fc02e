"""Losses of chapter 8: the adversarial loss on PatchGAN logits, the style code's KL term, SwapGAN's mask consistency.

**Published**: pix2pix trains G with the conditional GAN loss plus λ·L1 (λ = 100) and D with the vanilla GAN loss
(binary cross-entropy on the logits of every patch, real → 1, fake → 0), D's loss halved
(`GANLoss.discriminator_loss`); CycleGAN's LSGAN variant (mean squared error to 1 / 0) and the hinge loss
(D: mean ReLU(1 − real) + mean ReLU(1 + fake), G: −mean fake) are the other ``mode``s. SwapGAN's loss is
"adversarial + mask-consistency" (THESIS.md 8.2).

**Reconstruction** (THESIS.md 8.2): mask consistency = the mean over the parsing masks of the L1 distance between
generated and target image restricted to each mask, plus ``weight_global`` × the global L1 (`mask_consistency`).
A mask's L1 is averaged over its pixels (and the channels) across the whole batch; a mask with no pixels in the
batch is left out of the mean over masks. The style code's KL term (`kl_loss`) is BicycleGAN's (cVAE-GAN),
summed over the code's dimensions and averaged over the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from imagexplore.errors import ConfigError

__all__ = ["GAN_MODES", "GANLoss", "global_l1", "kl_loss", "mask_consistency", "masked_l1"]

GAN_MODES = ("vanilla", "lsgan", "hinge")


class GANLoss(nn.Module):
    """Adversarial loss on discriminator logits (any shape; PatchGAN: B×1×H'×W'), averaged over every logit.

    ``loss(logits, real, for_discriminator=True)``: the loss of ``logits`` for the target real (True) or fake
    (False). ``vanilla``: BCE with logits against ``real_label`` / ``fake_label`` (pix2pix's default); ``lsgan``:
    MSE to the same targets; ``hinge``: for D ReLU(1 − x) (real) or ReLU(1 + x) (fake), for G −x (real targets
    only). For vanilla and lsgan G's loss is D's loss with the real target.
    """

    def __init__(self, mode: str = "vanilla", real_label: float = 1.0, fake_label: float = 0.0):
        super().__init__()
        if mode not in GAN_MODES:
            raise ConfigError(f"unknown GAN loss mode {mode!r}; choose one of {', '.join(GAN_MODES)}")
        self.mode, self.real_label, self.fake_label = mode, float(real_label), float(fake_label)

    def forward(self, logits: Tensor, real: bool, for_discriminator: bool = True) -> Tensor:
        if self.mode == "hinge":
            if not for_discriminator:
                if not real:
                    raise ValueError("the hinge generator loss takes real targets only")
                return -logits.mean()
            return F.relu(1 - logits).mean() if real else F.relu(1 + logits).mean()
        target = torch.full_like(logits, self.real_label if real else self.fake_label)
        if self.mode == "vanilla":
            return F.binary_cross_entropy_with_logits(logits, target)
        return F.mse_loss(logits, target)

    def discriminator_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """D's loss as pix2pix: (loss(real → real) + loss(fake → fake)) / 2."""
        return 0.5 * (self(real_logits, True) + self(fake_logits, False))

    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        """G's adversarial loss: its fakes judged against the real target."""
        return self(fake_logits, True, for_discriminator=False)

    def extra_repr(self) -> str:
        return f"mode={self.mode}"


def kl_loss(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) ‖ N(0, I)) of B×D codes: −½ Σ_d (1 + logvar − mu² − exp(logvar)), batch mean."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()


def global_l1(fake: Tensor, real: Tensor) -> Tensor:
    """Mean absolute difference over every element."""
    return (fake - real).abs().mean()


def masked_l1(fake: Tensor, real: Tensor, masks: Tensor) -> Tensor:
    """Per-mask L1: the M values Σ w·|fake − real| / (C · Σ w) over the batch, 0 for a mask with no pixels.

    fake, real: B×C×H×W; masks: B×M×H×W, binary (bool or 0/1) or non-negative weights.
    """
    if fake.shape != real.shape or fake.dim() != 4:
        raise ValueError(
            f"fake and real must be equal B×C×H×W, got {tuple(fake.shape)} and {tuple(real.shape)}"
        )
    b, _, h, w = fake.shape
    if masks.dim() != 4 or masks.shape[0] != b or masks.shape[2:] != (h, w):
        raise ValueError(f"masks must be {b}×M×{h}×{w}, got {tuple(masks.shape)}")
    weights = masks.to(fake.dtype)
    diff = (fake - real).abs().mean(1)  # B×H×W, mean over channels
    num = torch.einsum("bhw,bmhw->m", diff, weights)
    den = weights.sum((0, 2, 3))
    present = den > 0
    return torch.where(present, num / torch.where(present, den, torch.ones_like(den)), torch.zeros_like(num))


def mask_consistency(
    fake: Tensor,
    real: Tensor,
    parsing: Tensor,
    labels: Sequence[int] | None = None,
    weight_global: float = 1.0,
) -> Tensor:
    """SwapGAN's mask-consistency loss (reconstruction): mean per-mask L1 over the non-empty masks + w · global L1.

    parsing: B×H×W (or B×1×H×W) integer label map of the target; ``labels``: the labels whose regions are masks
    (default: every label present in ``parsing``).
    """
    if parsing.dim() == 4 and parsing.shape[1] == 1:
        parsing = parsing[:, 0]
    if labels is None:
        labels = torch.unique(parsing).tolist()
    ids = torch.as_tensor(list(labels), dtype=parsing.dtype, device=parsing.device)
    masks = parsing[:, None] == ids[None, :, None, None]
    per_mask = masked_l1(fake, real, masks)
    present = masks.any(3).any(2).any(0)
    region = per_mask[present].mean() if bool(present.any()) else fake.new_zeros(())
    return region + weight_global * global_l1(fake, real)
