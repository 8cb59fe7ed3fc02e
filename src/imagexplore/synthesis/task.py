"""Chapter 8 on the shared engine: pix2pix, the instantiation network and SwapGAN as one `SynthTask`.

Every model is one module with a generator side ``G`` and a discriminator side ``D``, each with its own optimizer
(`optimizers: {G: ..., D: ...}` in the config, stepped in that order). The G step keeps its generated images
(detached) so the D step on the same batch scores them without running the generators again — pix2pix's own
order of work; with D listed first, the D step generates them itself.

Losses (every weight in the `loss:` section):

- **pix2pix** [published]: G: adv(D(x ⊕ G(x))) + λ_L1 |G(x) − y|; D: ½ (adv_real(D(x ⊕ y)) + adv_fake(D(x ⊕ G(x)))).
- **instantiation network** [reconstruction, docs/chapter8.md]: abstract a → photo p with a style code. G side:
  cVAE path (z_e = E(p), |G(a, z_e) − p|·λ_L1 + KL·λ_KL + adv), cLR path (z ~ N(0, I), adv on G(a, z) and
  |E(G(a, z)).mu − z|·λ_latent), reverse direction (|F(p) − a|·λ_L1 + adv on D_rev), both cycles
  (|F(G(a, z)) − a| and |G(F(p), z_e) − p|, ·λ_cycle), all times `reverse_weight` for F's terms. D side: the
  forward PatchGAN sees the real (a, p) against both fakes (each half weight), the reverse one (p, a) against
  (p, F(p)).
- **SwapGAN** [published structure, our details]: y1 = G1(I_B ⊕ P_A), y2 = G2(y1 ⊕ S_A' ⊕ K_A) (S_A' = A's layout
  with B's clothes; K_A = A's own non-clothes pixels, `model.kwargs.identity`; with `composite` K_A is pasted
  over G2's image), y3 = G3(y2 ⊕ P_B ⊕ S_B ⊕ K_B) (likewise). G: adv on both fake pairs + λ_mask (mask_consistency(y2, target,
  parsing_A) + mask_consistency(y3, I_B, parsing_B)); target = B's clothes in A's pose (the shapes world renders
  it; DeepFashion's pose pairs are one person, so it is I_A). D: the real pair (P_B ⊕ S_B ⊕ I_B) against the
  two fake pairs (P_A ⊕ S_A' ⊕ y2) and (P_B ⊕ S_B ⊕ y3).
- **pix2pix on persons** (SwapGAN's single-generator baseline): input I_B ⊕ P_A ⊕ K_A, K_A pasted over its
  output (as SwapGAN's `composite`), target as SwapGAN's y2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F

from imagexplore.config import AtLeastOne, NonNegative
from imagexplore.engine.trainer import Task

KINDS = ("pix2pix", "instantiation", "swapgan")


@dataclass
class SynthLossConfig:
    """`loss:` of a synth config (docs/chapter8.md). pix2pix's published values are the defaults it uses."""

    gan_mode: Literal["vanilla", "lsgan", "hinge"] = "vanilla"  # pix2pix: vanilla (BCE on patch logits)
    adv_weight: Annotated[float, NonNegative] = 1.0
    l1_weight: Annotated[float, NonNegative] = 100.0  # pix2pix's λ
    # instantiation network [reconstruction]
    kl_weight: Annotated[float, NonNegative] = 0.01  # BicycleGAN's λ_KL
    latent_weight: Annotated[float, NonNegative] = 0.5  # BicycleGAN's λ_latent
    cycle_weight: Annotated[float, NonNegative] = 10.0  # CycleGAN's λ
    reverse_weight: Annotated[float, NonNegative] = 1.0  # photo → abstract's own terms
    # SwapGAN [reconstruction]
    mask_weight: Annotated[float, NonNegative] = 10.0
    global_weight: Annotated[float, NonNegative] = 1.0  # global L1 inside the mask-consistency term


@dataclass
class SynthEvaluationConfig:
    """`evaluation:` of a synth config: what validation (and the gallery) computes."""

    fd: bool = (
        False  # Fréchet distance on Lite0 features at every validation (slow on a CPU; synth eval has it)
    )
    samples: Annotated[int, AtLeastOne] = 3  # instantiation network: samples per input (diversity, gallery)
    gallery: Annotated[int, NonNegative] = 8  # rows of RUN/gallery/index.html (0: none)
    # label → photo: a `segment train` checkpoint of the same domain; validation and `synth eval` then report
    # the FCN-score (fcn_pixel_acc, fcn_mean_acc, fcn_miou) of the generated photos
    segmenter: str | None = None


def person_condition(batch: dict) -> torch.Tensor:
    """The single-generator baseline's input: I_B ⊕ P_A ⊕ A's kept pixels (what SwapGAN's generators see)."""
    return torch.cat([batch["I_B"], batch["P_A"], batch["I_A_kept"]], 1)


def person_output(fake: torch.Tensor, batch: dict) -> torch.Tensor:
    """The single-generator baseline's swap: A's kept pixels pasted over its image, as SwapGAN's default
    ``composite`` does, so the two differ in their generators only."""
    from imagexplore.synthesis.networks import compose

    return compose(fake, batch["I_A_kept"], batch["keep_A"])


def _kept(model, batch: dict, who: str) -> list[torch.Tensor]:
    """Person ``who``'s kept pixels as an extra generator input, for a SwapGAN built with ``identity=True``."""
    return [batch[f"I_{who}_kept"]] if model.identity else []


def _paste(model, y: torch.Tensor, batch: dict, who: str) -> torch.Tensor:
    """With ``composite=True``, person ``who``'s kept pixels over the generated image (`SwapGAN.paste`)."""
    return y if not model.identity else model.paste(y, batch[f"I_{who}_kept"], batch[f"keep_{who}"])


def _g2(model, batch: dict) -> torch.Tensor:
    """y2 = G2(G1(I_B ⊕ P_A) ⊕ S_A' [⊕ K_A]) [with K_A pasted over]: B's clothes on A."""
    y1 = model.G("G1", torch.cat([batch["I_B"], batch["P_A"]], 1))
    y2 = model.G("G2", torch.cat([y1, batch["S_A_with_B_clothes"], *_kept(model, batch, "A")], 1))
    return _paste(model, y2, batch, "A")


def _g3(model, batch: dict, y2: torch.Tensor) -> torch.Tensor:
    """y3 = G3(y2 ⊕ P_B ⊕ S_B [⊕ K_B]) [with K_B pasted over]: the swap mapped back to B."""
    y3 = model.G("G3", torch.cat([y2, batch["P_B"], batch["S_B"], *_kept(model, batch, "B")], 1))
    return _paste(model, y3, batch, "B")


def swap_target(batch: dict) -> torch.Tensor:
    """B's clothes in A's pose: the shapes world's exact truth, else (pose pairs of one person) I_A."""
    return batch["truth"] if "truth" in batch else batch["I_A"]


class SynthTask(Task):
    def __init__(self, kind: str, loss: SynthLossConfig, evaluation: SynthEvaluationConfig, meta: dict):
        from imagexplore.synthesis.losses import GANLoss

        self.kind, self.loss, self.evaluation, self.meta = kind, loss, evaluation, dict(meta)
        self.persons = meta.get("data_kind") == "persons"
        self.gan = GANLoss(loss.gan_mode)
        self._kept: tuple[Any, dict] | None = None  # (the batch's input tensor, what the G step generated)
        self._shown: dict[str, torch.Tensor] = {}
        self._fcn: dict | None = (
            None  # FCN-score options (the loaded segmenter), made at the first evaluation
        )

    # ------------------------------------------------------------------------------------------------- training
    def _keep(self, key: torch.Tensor, **fakes: torch.Tensor) -> None:
        self._kept = (key, {k: v.detach() for k, v in fakes.items()})

    def _fakes(self, key: torch.Tensor) -> dict | None:
        if self._kept is not None and self._kept[0] is key:
            return self._kept[1]
        return None

    def _adv_g(self, logits: torch.Tensor) -> torch.Tensor:
        return self.loss.adv_weight * self.gan(logits, True, for_discriminator=False)

    def training_step(self, model, batch, optimizer):
        if optimizer not in ("G", "D"):
            from imagexplore.errors import ConfigError

            raise ConfigError(f"synth models train two optimizers named G and D; got {optimizer!r}")
        step = {"pix2pix": self._pix2pix, "instantiation": self._instantiation, "swapgan": self._swapgan}
        return step[self.kind](model, batch, optimizer == "G")

    def _pair(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input, target, cache key) of a translation batch or of a persons batch for the baseline."""
        if self.persons:
            return person_condition(batch), swap_target(batch), batch["I_B"]
        return batch[0], batch[1], batch[0]

    def _generate(self, model, x: torch.Tensor, batch) -> torch.Tensor:
        return person_output(model.G(x), batch) if self.persons else model.G(x)

    def _pix2pix(self, model, batch, generator_step: bool):
        x, y, key = self._pair(batch)
        if generator_step:
            fake = self._generate(model, x, batch)
            adv = self._adv_g(model.D(torch.cat([x, fake], 1)))
            l1 = F.l1_loss(fake, y)
            self._keep(key, fake=fake)
            return adv + self.loss.l1_weight * l1, {"g_adv": adv.item(), "l1": l1.item()}
        kept = self._fakes(key)
        if kept is None:
            with torch.no_grad():
                kept = {"fake": self._generate(model, x, batch)}
        d = self.gan.discriminator_loss(
            model.D(torch.cat([x, y], 1)), model.D(torch.cat([x, kept["fake"]], 1))
        )
        return d, {"d": d.item()}

    def _instantiation(self, model, batch, generator_step: bool):
        from imagexplore.synthesis.losses import kl_loss
        from imagexplore.synthesis.networks import reparameterize

        a, p = batch[0], batch[1]
        lw = self.loss
        if generator_step:
            mu, logvar = model.G("E", p)
            z_enc = reparameterize(mu, logvar)
            fake_enc = model.G("G", a, z_enc)
            z = torch.randn_like(z_enc)
            fake_rand = model.G("G", a, z)
            rev = model.G("F", p)
            adv = 0.5 * (
                self._adv_g(model.D("fwd", torch.cat([a, fake_enc], 1)))
                + self._adv_g(model.D("fwd", torch.cat([a, fake_rand], 1)))
            )
            l1 = F.l1_loss(fake_enc, p)
            kl = kl_loss(mu, logvar)
            latent = F.l1_loss(model.G("E", fake_rand)[0], z)
            rev_l1 = F.l1_loss(rev, a)
            rev_adv = self._adv_g(model.D("rev", torch.cat([p, rev], 1)))
            cycle = F.l1_loss(model.G("F", fake_rand), a) + F.l1_loss(model.G("G", rev, z_enc), p)
            loss = (
                adv
                + lw.l1_weight * l1
                + lw.kl_weight * kl
                + lw.latent_weight * latent
                + lw.reverse_weight * (rev_adv + lw.l1_weight * rev_l1)
                + lw.cycle_weight * cycle
            )
            self._keep(a, fake_enc=fake_enc, fake_rand=fake_rand, rev=rev)
            logs = {"g_adv": adv.item(), "l1": l1.item(), "kl": kl.item(), "latent": latent.item()}
            return loss, logs | {"rev_l1": rev_l1.item(), "cycle": cycle.item()}
        kept = self._fakes(a)
        if kept is None:
            with torch.no_grad():
                mu, _ = model.G("E", p)
                kept = {
                    "fake_enc": model.G("G", a, mu),
                    "fake_rand": model.G("G", a, torch.randn_like(mu)),
                    "rev": model.G("F", p),
                }
        real = model.D("fwd", torch.cat([a, p], 1))
        d_fwd = 0.5 * (
            self.gan.discriminator_loss(real, model.D("fwd", torch.cat([a, kept["fake_enc"]], 1)))
            + self.gan.discriminator_loss(real, model.D("fwd", torch.cat([a, kept["fake_rand"]], 1)))
        )
        d_rev = self.gan.discriminator_loss(
            model.D("rev", torch.cat([p, a], 1)), model.D("rev", torch.cat([p, kept["rev"]], 1))
        )
        return d_fwd + lw.reverse_weight * d_rev, {"d": d_fwd.item(), "d_rev": d_rev.item()}

    def _swapgan(self, model, batch, generator_step: bool):
        from imagexplore.synthesis.losses import mask_consistency

        lw = self.loss
        cond_a = torch.cat([batch["P_A"], batch["S_A_with_B_clothes"]], 1)
        cond_b = torch.cat([batch["P_B"], batch["S_B"]], 1)
        if generator_step:
            y2 = _g2(model, batch)
            y3 = _g3(model, batch, y2)
            adv = self._adv_g(model.D(torch.cat([cond_a, y2], 1))) + self._adv_g(
                model.D(torch.cat([cond_b, y3], 1))
            )
            m_swap = mask_consistency(
                y2, swap_target(batch), batch["parsing_A"], weight_global=lw.global_weight
            )
            m_back = mask_consistency(y3, batch["I_B"], batch["parsing_B"], weight_global=lw.global_weight)
            self._keep(batch["I_B"], y2=y2, y3=y3)
            loss = adv + lw.mask_weight * (m_swap + m_back)
            return loss, {"g_adv": adv.item(), "mask_swap": m_swap.item(), "mask_back": m_back.item()}
        kept = self._fakes(batch["I_B"])
        if kept is None:
            with torch.no_grad():
                y2 = _g2(model, batch)
                kept = {"y2": y2, "y3": _g3(model, batch, y2)}
        real = model.D(torch.cat([cond_b, batch["I_B"]], 1))
        d = 0.5 * (
            self.gan.discriminator_loss(real, model.D(torch.cat([cond_a, kept["y2"]], 1)))
            + self.gan.discriminator_loss(real, model.D(torch.cat([cond_b, kept["y3"]], 1)))
        )
        return d, {"d": d.item()}

    # ----------------------------------------------------------------------------------------------- evaluation
    def evaluators(self):
        from imagexplore.synthesis.metrics import TranslationMetrics

        self._shown = {}
        if self.persons:
            labels = list(range(self.meta["parsing_labels"]))
            return {"": TranslationMetrics(fd=self.evaluation.fd, mask_labels=labels)}
        if self._fcn is None:  # the segmenter is loaded once per run
            self._fcn = fcn_options(self.evaluation.segmenter, self.meta)
        return {"": TranslationMetrics(fd=self.evaluation.fd, **self._fcn)}

    def evaluation_step(self, model, batch, evaluators):
        out = generate(model, self.kind, batch, self.persons, samples=self.evaluation.samples)
        metrics = evaluators[""]
        if self.persons:
            parsing = batch.get("truth_parsing", batch["parsing_A"])
            metrics.update(out["output"], out["target"], parsing=parsing)
        else:
            if metrics.segmenter is not None:
                metrics.segmenter.to(out["output"].device)
            labels = true_labels(out, self.meta) if metrics.segmenter is not None else None
            metrics.update(out["output"], out["target"], labels=labels, samples=out.get("samples"))
        self._remember(out)

    def _remember(self, out: dict[str, torch.Tensor]) -> None:
        """Keep the first `evaluation.gallery` rows seen for the gallery (main process, first batches)."""
        room = self.evaluation.gallery - (len(self._shown["output"]) if self._shown else 0)
        if room <= 0:
            return
        for k, v in out.items():
            v = v[:room].detach().float().cpu()
            self._shown[k] = torch.cat([self._shown[k], v]) if k in self._shown else v

    def after_evaluation(self, model, metrics, run_dir, iteration, tensorboard):
        if not self._shown:
            return
        from imagexplore.synthesis.gallery import write_gallery

        order = (
            ["input", "output", "target", "samples"]
            if not self.persons
            else ["person", "clothes", "output", "target"]
        )
        columns = {k: self._shown[k] for k in order if k in self._shown}
        shown = ", ".join(f"{k.removeprefix('val/')} {v:.3f}" for k, v in metrics.items() if "count" not in k)
        write_gallery(
            run_dir / "gallery",
            columns,
            title=f"{self.meta.get('name', 'synth')}: iteration {iteration}",
            caption=shown,
            tensorboard=tensorboard,
            step=iteration,
        )

    def checkpoint_meta(self):
        return {"task": "synth", **self.meta}


def fcn_options(segmenter: str | None, meta: dict, device: str = "cpu") -> dict:
    """`TranslationMetrics` options of the FCN-score: the segmenter checkpoint loaded, its classes and input
    normalisation — for a label → photo model whose label colours are known (the shapes world's), else {}."""
    if not segmenter or meta.get("input_kind") != "label":
        return {}
    if not meta.get("label_classes"):
        from imagexplore.errors import ConfigError

        raise ConfigError(
            "the FCN-score needs label maps in known colours (the shapes world's); this data has none"
        )
    from imagexplore.engine.checkpoint import restore_model

    seg, _, seg_meta = restore_model(segmenter, task="segment")
    return {
        "segmenter": seg.to(device).eval(),
        "num_classes": len(seg_meta["classes"]),
        "segmenter_mean": seg_meta.get("mean"),
        "segmenter_std": seg_meta.get("std"),
    }


def true_labels(out: dict, meta: dict) -> torch.Tensor:
    """Class ids of a label-map batch read back from its colours (exact for the shapes world's palette)."""
    from imagexplore.synthesis.metrics import label_palette, labels_from_palette

    side = out["input"] if meta.get("input_kind") == "label" else out["target"]
    return labels_from_palette(side, label_palette(meta["label_classes"]).to(side.device))


def swap(model, batch: dict) -> torch.Tensor:
    """SwapGAN's swap through the G side's forward (`_g2`)."""
    return _g2(model, batch)


def generate(model, kind: str, batch, persons: bool, samples: int = 0) -> dict[str, torch.Tensor]:
    """What a model makes of one batch, for the metrics and the gallery: ``output`` and ``target`` (and ``input``;
    for persons ``person`` (A) and ``clothes`` (B); for the instantiation network ``samples``, B×N×3×H×W with z ~
    N(0, I), while ``output`` uses z = 0, the mode of the style prior)."""
    if persons:
        if kind == "swapgan":
            out = swap(model, batch)
        else:
            out = person_output(model.G(person_condition(batch)), batch)
        return {"person": batch["I_A"], "clothes": batch["I_B"], "output": out, "target": swap_target(batch)}
    x, y = batch[0], batch[1]
    if kind == "instantiation":
        style = model.G.G.style_dim
        out = {"input": x, "output": model.G("G", x, x.new_zeros(x.shape[0], style)), "target": y}
        if samples > 1:
            z = torch.randn(x.shape[0] * samples, style, device=x.device, dtype=x.dtype)
            s = model.G("G", x.repeat_interleave(samples, 0), z)
            out["samples"] = s.view(x.shape[0], samples, *s.shape[1:])
        return out
    return {"input": x, "output": model.G(x), "target": y}
