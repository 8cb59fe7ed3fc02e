"""Edge datasets: the dispatcher, training targets (RDS relaxed labels) and evaluation sets over the readers of
`imagexplore.edges.readers` (official layouts, mask folders), which are importable from here too.

Every reader yields ``(image float 3×H×W in [0, 1], annotators A×H×W, stem)`` at the image's own size:

- `BSDS500`: ``root/images/{train,val,test}/<id>.jpg`` + ``root/groundTruth/<split>/<id>.mat`` (``root`` may also
  be the folder holding ``BSR/BSDS500/data`` or ``BSDS500/data``); ``trainval`` = train + val, the 300 images
  the edge papers train on. Annotators: bool, one plane per person (`load_ground_truth`).
- `NYUD`: NYUD-v2 edges as the Structured Edges / HED / RDS papers use them, in the same layout
  (``root/images/<split>/<id>.png|jpg``, ``root/groundTruth/<split>/<id>.mat``, BSDS-structured); the benchmark's
  maxDist for NYUD is 0.011 (``max_dist``).
- `HEDBSDSList`: HED's augmented BSDS set (``HED-BSDS/train_pair.lst``: lines ``image_path gt_path`` relative to
  the list's folder). Its ground truth is a grey PNG whose value / 255 is the fraction of annotators that marked
  the pixel (interpolated by HED's offline rotation/scaling): the item carries it as ONE float32 plane of
  fractions, which `consensus_labels` thresholds by ``fraction`` (edge ≥ η, 0 < value < η ignored).
- `ShapesEdgeSource`: the shapes world's "human-like" annotators; `MaskEdges`: boundaries of segmentation masks
  (shapes world, VOC/SBD) as one annotator — the coarse pre-training edges of the thesis.
- `MaskFolderEdges` (``masks``): a folder of images with object masks beside them (``NAME.jpg`` + ``NAME.png``, or
  ``images/NAME.*`` + ``masks/NAME.png``; split folders optional): the mask's region boundaries as one annotator.

Validation without a validation folder (bsds500, nyud, masks): when ``data.val_split`` names a split the dataset
does not have, `build_edge_dataset` carves it out of ``train`` (`carve_validation`: a stable hash of each stem,
option ``val_fraction``), and training reads ``train`` without those images.

`EdgeTrainingSet` turns a reader into ``(image, target uint8 (S+1)×h×w)`` (see `imagexplore.edges.labels`):
detector response on the un-augmented image, joint HED-style augmentation, then relaxed side labels and the
consensus fusion label. `EdgeEvalSet` keeps native sizes and bool annotators (batch size 1 is the benchmark's
protocol). `collate` stacks either kind, padding to the largest size (image 0, target 255, annotators False).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from imagexplore.config import AtLeastOne, NonNegative, Positive, Range, from_dict
from imagexplore.edges.augment import HED_ANGLES, HED_SCALES, AugmentConfig, augment_edges, check_crop_size
from imagexplore.edges.labels import (
    DETECTORS,
    IGNORE,
    RDS_COEFFICIENTS,
    build_targets,
    make_detector,
    response_mean,
)
from imagexplore.edges.readers import (  # noqa: F401 - readers are also imported from here
    BSDS500,
    BSDS_MAX_DIST,
    MASK_LAYOUT,
    MASK_NAME_SUFFIXES,
    MASK_SPLITS,
    NYUD,
    NYUD_MAX_DIST,
    HEDBSDSList,
    MaskEdges,
    MaskFolderEdges,
    ShapesEdgeSource,
    limit_samples,
    read_mask,
)
from imagexplore.errors import ConfigError, DataError

EDGE_DATASETS = ("shapes", "shapes_masks", "bsds500", "hed_bsds", "nyud", "voc_masks", "masks")
# datasets whose missing validation split is carved out of train (see `build_edge_dataset`)
CARVED_DATASETS = ("bsds500", "nyud", "masks")
FIXED_SPLITS = ("train", "trainval", "test")  # never carved: a missing one is an error


@dataclass
class EdgeTrainingOptions:
    """The `data.options` keys of edge training sets (typed, with ranges; an unknown key or bad value is one
    ConfigError). The training-label and augmentation keys apply to training sets only; evaluation sets accept and
    ignore them, so one options mapping serves both. A reader's own keys (below) come on top."""

    detector: str = "canny"  # canny | sobel | hed | se
    detector_options: dict[str, Any] = field(default_factory=dict)  # {sigma: 2.0} (canny), {model: PATH} (se)
    coefficients: list[float | None] = field(default_factory=lambda: list(RDS_COEFFICIENTS))  # null: plain GT
    relaxed: bool = True  # False: the HED baseline (every side supervised by the fusion label)
    relax_dilate: Annotated[int, NonNegative] = 1  # disk radius dilating each side's relaxed set
    relax_mean: Literal["image", "nonzero"] = (
        "image"  # thresholds c_k × mean of the response over: (labels.py)
    )
    relax_within: Annotated[int | None, NonNegative] = None  # relax only near GT edges (px); None: anywhere
    min_annotators: Annotated[int | None, AtLeastOne] = None  # consensus: None → 3 (fraction maps: 0.5)
    fraction: Annotated[float | None, Range(0, 1, lo_open=True)] = (
        None  # consensus by a fraction of annotators
    )
    gt_dilate: Annotated[int, NonNegative] = 1  # disk radius dilating the consensus edges (as the release)
    ignore_partial: bool = True  # marked by fewer annotators than the threshold → 255 (else 0)
    augment: bool | None = (
        None  # HED-style rotation / flip / scale; None: on, except hed_bsds (pre-augmented)
    )
    angles: list[float] = field(default_factory=lambda: list(HED_ANGLES))
    flip: bool = True
    scales: Annotated[list[float], Positive] = field(default_factory=lambda: list(HED_SCALES))
    crop_size: Annotated[int | None, AtLeastOne] = None  # random crop (padding ignored); None = whole images
    cache_dir: str | None = None  # disk cache of hed/se responses
    # bsds500 / nyud / masks without a folder for data.val_split: the fraction of train carved out for validation
    # (read by training and evaluation sets alike, see `carve_validation`)
    val_fraction: Annotated[float, Range(0, 0.5, lo_open=True)] = 0.15


@dataclass
class MaskFolderOptions:
    """The `data.options` keys of the ``masks`` dataset (`MaskFolderEdges`), on top of `EdgeTrainingOptions`."""

    mask_ignore: Annotated[int | None, NonNegative] = None  # a mask value whose pixels are ignored (VOC: 255)


TRAIN_OPTIONS = tuple(f.name for f in dataclasses.fields(EdgeTrainingOptions))
_DATASET_OPTIONS: dict[str, set[str]] = {
    "hed_bsds": {"list_file"},
    "voc_masks": {"sbd_root", "aug_root", "aug_list", "prefer_voc_masks"},
    "masks": {f.name for f in dataclasses.fields(MaskFolderOptions)},
}


def _stem_hash(stem: str) -> float:
    """A stem's place in [0, 1): SHA-1 (the same on every machine and run, unlike Python's hash())."""
    return int(hashlib.sha1(stem.encode()).hexdigest()[:15], 16) / 16**15


def carve_validation(stems: list[str], fraction: float, where: str = "the training split") -> set[str]:
    """The stems a validation part carved out of training takes: those whose `_stem_hash` is below ``fraction``
    (so adding images never moves one already placed), at least 2 (the lowest hashes), and never all — at least
    one stays for training. `DataError` with fewer than 3 images."""
    if len(stems) < 3:
        raise DataError(
            f"{where} has {len(stems)} image(s): too few to carve a validation part out of it (2 for "
            "validation, 1 to train); add a validation folder or more images"
        )
    ranked = sorted(stems, key=lambda s: (_stem_hash(s), s))
    below = sum(_stem_hash(s) < fraction for s in ranked)
    return set(ranked[: min(max(below, 2), len(stems) - 1)])


# ------------------------------------------------------------------------------------ training / evaluation
class EdgeTrainingSet(Dataset):
    """(image float 3×h×w, target uint8 (S+1)×h×w) from a reader: relaxed side labels + consensus fusion label.

    The detector runs on the un-augmented image; its response is augmented with the image and labels, and the
    relaxation thresholds use the un-augmented response's mean (so crops and padding do not move them).
    Responses of expensive detectors (hed, se) are cached: on disk under ``cache_dir`` if given (one .npy per
    image, keyed by detector options and stem), else in memory (per process: DataLoader workers recompute).

    Augmentation randomness of item i is ``np.random.default_rng([seed, i, epoch])`` once `set_epoch` has been
    called; otherwise the epoch word is the DataLoader's per-epoch worker base seed (the same for every worker)
    or, without workers, a draw from torch's global generator (seeded by the trainer).
    """

    in_chans = 3

    def __init__(
        self,
        base: Dataset,
        detector: str = "canny",
        detector_options: dict | None = None,
        coefficients=RDS_COEFFICIENTS,
        relaxed: bool = True,
        relax_dilate: int = 1,
        relax_mean: str = "image",
        relax_within: int | None = None,
        min_annotators: int | None = None,
        fraction: float | None = None,
        gt_dilate: int = 1,
        ignore_partial: bool = True,
        augment: AugmentConfig | None = None,
        crop_size: int | None = None,
        cache_dir: str | Path | None = None,
        seed: int = 0,
    ):
        self.base = base
        self.relaxed = bool(relaxed)
        self.detector = detector
        self.respond = make_detector(detector, detector_options) if self.relaxed else None
        self.sparse = DETECTORS[detector].sparse if self.relaxed else False
        self.expensive = self.relaxed and DETECTORS[detector].expensive
        if not isinstance(coefficients, list | tuple):
            raise ConfigError(f"coefficients must be a list (one per side output), got {coefficients!r}")
        self.coefficients = tuple(coefficients)
        self.label_kw = dict(
            relaxed=self.relaxed,
            min_annotators=min_annotators,
            fraction=fraction,
            gt_dilate=gt_dilate,
            relax_dilate=relax_dilate,
            relax_within=relax_within,
            ignore_partial=ignore_partial,
        )
        self.relax_mean = relax_mean
        self.augment = augment
        self.crop_size = check_crop_size(crop_size)
        key = json.dumps([detector, detector_options or {}], sort_keys=True, default=str)
        self.cache_dir = (
            Path(cache_dir).expanduser() / f"{detector}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"
            if cache_dir and self.expensive
            else None
        )
        self._memory: dict[int, np.ndarray] = {}
        self.seed, self.epoch = int(seed), None
        self.num_sides = len(self.coefficients)
        self.max_dist = getattr(base, "max_dist", BSDS_MAX_DIST)

    def set_epoch(self, epoch: int) -> None:
        """Make item i's augmentation a function of (seed, i, epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def _rng(self, idx: int) -> np.random.Generator:
        if self.epoch is not None:
            word = self.epoch
        else:
            info = torch.utils.data.get_worker_info()
            word = info.seed - info.id if info is not None else int(torch.randint(2**62, ()).item())
        return np.random.default_rng([self.seed, idx, word])

    def _response(self, idx: int, stem: str, image_hwc: np.ndarray) -> np.ndarray:
        if not self.expensive:
            return self.respond(image_hwc)
        if self.cache_dir is None:
            if idx not in self._memory:
                self._memory[idx] = self.respond(image_hwc)
            return self._memory[idx]
        path = self.cache_dir / f"{str(stem).replace('/', '__')}.npy"
        if path.is_file():
            return np.load(path)
        resp = self.respond(image_hwc)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, resp)
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old state or the whole file
        return resp

    def __getitem__(self, idx: int):
        image, annotators, stem = self.base[idx]
        img = image.numpy()
        ann = annotators.numpy()
        response = mean = None
        if self.relaxed:
            response = self._response(idx, stem, img.transpose(1, 2, 0))
            mean = response_mean(response, self.relax_mean)
        valid = None
        if self.augment is not None or self.crop_size:
            out = augment_edges(
                img,
                ann,
                response,
                self.augment,
                rng=self._rng(idx),
                crop_size=self.crop_size,
                sparse_response=self.sparse,
            )
            img, ann, response, valid = out.image, out.annotators, out.response, out.valid
        target = build_targets(ann, response, self.coefficients, mean=mean, valid=valid, **self.label_kw)
        return torch.from_numpy(np.ascontiguousarray(img)), torch.from_numpy(target)

    def __repr__(self) -> str:
        return (
            f"EdgeTrainingSet({self.base!r}, detector={self.detector if self.relaxed else None!r}, "
            f"coefficients={list(self.coefficients)}, augment={self.augment is not None}, "
            f"crop_size={self.crop_size})"
        )


class EdgeEvalSet(Dataset):
    """(image, annotators bool A×H×W, stem) at native size — the benchmark's input (batch size 1)."""

    in_chans = 3

    def __init__(self, base: Dataset):
        self.base = base
        self.max_dist = getattr(base, "max_dist", BSDS_MAX_DIST)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, idx: int):
        image, annotators, stem = self.base[idx]
        return image, annotators.bool(), stem

    def __repr__(self) -> str:
        return f"EdgeEvalSet({self.base!r})"


def collate(batch):
    """Stack training items (image, target) or evaluation items (image, annotators, stem).

    Sizes may differ (no crop, scale augmentation, native evaluation sizes): everything is padded at the
    bottom/right to the largest — image 0, target 255 (ignored), annotators False — and annotator counts to the
    largest with empty planes (an empty annotator changes neither recall nor precision). Padded evaluation
    pixels still receive predictions, so batch size 1 remains the exact benchmark protocol.
    """
    h = max(b[0].shape[-2] for b in batch)
    w = max(b[0].shape[-1] for b in batch)
    planes = max(b[1].shape[0] for b in batch)
    fill = IGNORE if batch[0][1].dtype == torch.uint8 else 0
    images = torch.zeros(len(batch), batch[0][0].shape[0], h, w, dtype=batch[0][0].dtype)
    labels = torch.full((len(batch), planes, h, w), fill, dtype=batch[0][1].dtype)
    for i, item in enumerate(batch):
        x, y = item[0], item[1]
        images[i, :, : x.shape[-2], : x.shape[-1]] = x
        labels[i, : y.shape[0], : y.shape[-2], : y.shape[-1]] = y
    if len(batch[0]) > 2:
        return images, labels, [b[2] for b in batch]
    return images, labels


# ------------------------------------------------------------------------------------------------ dispatch
def _dataset_root(name: str, root) -> str | Path:
    """The folder of a file-based dataset: ``root``, else the catalogue's places for bsds500 / nyud."""
    if not root and name in ("bsds500", "nyud"):  # the catalogue's places: $IMAGEXPLORE_DATA, ~/data, ...
        from imagexplore.data.assets import benchmark_root

        root = benchmark_root(name)
    if not root:
        raise ConfigError(
            f"dataset '{name}' was not found: give its folder (--root DIR, or data.root in a config); "
            "`imagexplore data list` shows where it is looked for"
        )
    return root


def has_split(name: str, root, split: str) -> bool:
    """Whether dataset ``name`` (bsds500, nyud, masks) at ``root`` (None: the catalogue's places) has a folder for
    ``split``; `DataError` / `ConfigError` if the dataset itself is not there."""
    root = _dataset_root(name, root)
    if name == "masks":
        return MaskFolderEdges.has_split(root, split)
    return {"bsds500": BSDS500, "nyud": NYUD}[name].has_split(root, split)


def detect_layout(root: str | Path) -> str | None:
    """The edge dataset a folder is in: ``bsds500`` (``images/`` + ``groundTruth/``, also under ``BSR/BSDS500/data``
    or ``data``), ``masks`` (`MaskFolderEdges.looks_like`), or None."""
    root = Path(root).expanduser()
    try:
        BSDS500._find_root(root)
        return "bsds500"
    except DataError:
        pass
    return "masks" if MaskFolderEdges.looks_like(root) else None


def _reader(name: str, split: str, root, image_size, num_samples, seed, opts: dict[str, Any]) -> Dataset:
    if name in ("shapes", "shapes_masks"):
        size = image_size or 64
        n = num_samples or 1000
        if name == "shapes":
            return ShapesEdgeSource(n, size=size, seed=seed, split=split, **opts)
        from imagexplore.data.shapes import ShapesSegmentation

        return MaskEdges(ShapesSegmentation(n, size=size, seed=seed, split=split, **opts))
    root = _dataset_root(name, root)
    if name == "masks":
        typed = from_dict(MaskFolderOptions, opts, "data.options.")
        return MaskFolderEdges(root, split, num_samples, **dataclasses.asdict(typed))
    if name == "bsds500":
        return BSDS500(root, split, num_samples)
    if name == "nyud":
        return NYUD(root, split, num_samples)
    if name == "hed_bsds":
        if split not in ("train", "trainval"):
            raise ConfigError(
                f"hed_bsds holds only BSDS's augmented training pairs (split train or trainval, got {split!r}); "
                "evaluate on bsds500"
            )
        return HEDBSDSList(root, num_samples=num_samples, **opts)
    from imagexplore.segmentation.voc import VOCSegmentation

    return MaskEdges(VOCSegmentation(root, split, num_samples=num_samples, **opts))


def _carves(name: str, split: str, root, val_split: str | None) -> bool:
    """Whether `build_edge_dataset` carves validation out of train for this request (see there)."""
    if name not in CARVED_DATASETS or not val_split or val_split in FIXED_SPLITS:
        return False
    if split not in (val_split, "train", "trainval"):
        return False
    return not has_split(name, root, val_split)


def build_edge_dataset(
    name: str,
    split: str,
    *,
    train: bool,
    root: str | None = None,
    image_size: int | None = None,
    num_samples: int | None = None,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    val_split: str | None = None,
) -> Dataset:
    """An edge dataset by name (`EDGE_DATASETS`): an `EdgeTrainingSet` if ``train`` else an `EdgeEvalSet`.

    ``options`` (data.options): the `TRAIN_OPTIONS` keys (labels, detector, augmentation; used in training
    only; ``val_fraction`` in both), plus the reader's own — shapes / shapes_masks: the world's (num_classes,
    max_objects, ...); hed_bsds: list_file; voc_masks: sbd_root, aug_root, aug_list, prefer_voc_masks; masks:
    mask_ignore. ``image_size`` is the shapes canvas; real datasets keep their native size (``crop_size`` sets the
    training size).

    ``val_split``: the name of the validation split (data.val_split), for bsds500 / nyud / masks. When the dataset
    has no folder for it (and it is not train, trainval or test), validation is carved out of ``train``
    (`carve_validation`, ``val_fraction`` of it): ``split == val_split`` gives the carved images (said once on
    stderr), ``train`` / ``trainval`` give train without them. None: nothing is carved (a missing split is an
    error), as for every other dataset.
    """
    if name not in EDGE_DATASETS:
        raise ConfigError(f"unknown edge dataset '{name}'; choose one of {', '.join(EDGE_DATASETS)}")
    opts = dict(options or {})
    opts.pop("train_split", None)  # the split trained on: read by the training command, not by a reader
    if name in ("shapes", "shapes_masks"):
        from imagexplore.data.shapes import WORLD_OPTIONS

        own = set(WORLD_OPTIONS)
    else:
        own = _DATASET_OPTIONS.get(name, set())
    unknown = sorted(set(opts) - set(TRAIN_OPTIONS) - own)
    if unknown:
        raise ConfigError(
            f"unknown data option(s) {unknown} for edge dataset '{name}'; valid: "
            f"{', '.join(sorted(set(TRAIN_OPTIONS) | own))}"
        )
    own_opts = {k: v for k, v in opts.items() if k in own}
    if _carves(name, split, root, val_split):
        fraction = from_dict(
            EdgeTrainingOptions, {k: v for k, v in opts.items() if k == "val_fraction"}, "data.options."
        ).val_fraction
        reader = _reader(name, "train", root, image_size, None, seed, own_opts)
        held = carve_validation(reader.ids, fraction, f"the train split of {reader.root}")
        if split == "trainval" and has_split(
            name, root, "trainval"
        ):  # a val folder beside a missing val_split
            reader = _reader(name, split, root, image_size, None, seed, own_opts)
        keep = [s for s in reader.samples if (s[0] in held) == (split == val_split)]
        reader.samples = limit_samples(keep, num_samples)
        reader.ids = [s[0] for s in reader.samples]
        reader.split, reader.carved_from = split, "train"
        if split == val_split:
            from imagexplore.engine import distributed as dist

            if dist.is_main():
                print(
                    f"no {val_split} split in {reader.root}: validating on {len(reader)} images carved out of "
                    f"train (val_fraction {fraction:g})",
                    file=sys.stderr,
                )
    else:
        reader = _reader(name, split, root, image_size, num_samples, seed, own_opts)
    if not train:
        if name == "hed_bsds":
            raise ConfigError("hed_bsds has no evaluation split; evaluate on bsds500 (split val or test)")
        return EdgeEvalSet(reader)
    typed = from_dict(
        EdgeTrainingOptions, {k: v for k, v in opts.items() if k in TRAIN_OPTIONS}, "data.options."
    )
    kw = dataclasses.asdict(typed)
    kw.pop("val_fraction")  # read above, when a validation part is carved
    angles, flip, scales = kw.pop("angles"), kw.pop("flip"), kw.pop("scales")
    augment = kw.pop("augment")
    augment = (
        AugmentConfig(angles, flip, scales) if (name != "hed_bsds" if augment is None else augment) else None
    )
    return EdgeTrainingSet(reader, augment=augment, seed=seed, **kw)
