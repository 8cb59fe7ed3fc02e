"""`imagexplore segment eval | predict`: a trained checkpoint on a dataset, or on image files.

``eval`` runs the model on every image of a split at the dataset's evaluation size (VOC: the full image, batch 1
by default) and reports mean IoU, pixel accuracy, mean class accuracy and per-class IoU over one confusion matrix.
``predict`` writes, per input image, ``<stem>.png``: the predicted class of every pixel as a VOC-palette PNG
(mode P, the pixel value is the class index) of the input's own size.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from imagexplore.data.images import check_on_bad_file, load_image, pil_to_tensor
from imagexplore.data.inputs import expand_inputs, probe_image, unique_stems
from imagexplore.engine.checkpoint import restore_model
from imagexplore.errors import ConfigError, DataError
from imagexplore.segmentation.metrics import SegmentationEvaluator
from imagexplore.segmentation.task import Normalize
from imagexplore.segmentation.train import build_segmentation_dataset
from imagexplore.segmentation.voc import mask_to_palette_image, pad_collate


def load_segmenter(checkpoint: str | Path, device: str = "cpu", overrides: list[str] | None = None):
    """Rebuild the model a segmentation checkpoint was trained with and load its weights: (model, cfg, meta)."""
    model, cfg, meta = restore_model(
        checkpoint,
        task="segment",
        overrides=overrides,
    )
    return model.to(device).eval(), cfg, meta


@torch.inference_mode()
def evaluate(
    checkpoint,
    *,
    split: str | None = None,
    root: str | None = None,
    data: str | None = None,
    device: str = "cpu",
    batch_size: int = 1,
    num_samples: int | None = None,
) -> dict[str, Any]:
    """Metrics of a checkpoint on a split (default: the config's val split of the dataset trained on).

    ``batch_size`` ≥ 1 and ``num_samples`` (None or ≥ 1) are checked before the model loads (`ConfigError`)."""
    _positive("batch_size", batch_size)
    if num_samples is not None:
        _positive("limit", num_samples)
    model, cfg, meta = load_segmenter(checkpoint, device)
    d = cfg.data
    same = data is None or data == d.name
    ds = build_segmentation_dataset(
        data or d.name,
        split or d.val_split,
        train=False,
        root=root or d.root,
        image_size=d.image_size,
        num_samples=num_samples if num_samples is not None else (d.val_samples if same else None),
        seed=d.seed,
        options=d.options if same else None,
        mean=meta.get("mean"),
        std=meta.get("std"),
    )
    classes = meta["classes"]
    ev = SegmentationEvaluator(len(classes), meta.get("ignore_index", 255), classes)
    loader = DataLoader(ds, batch_size=batch_size, num_workers=d.workers, collate_fn=pad_collate)
    images = 0
    for x, y in loader:
        ev.update(model(x.to(device)).float(), y.to(device))
        images += x.shape[0]
    metrics = ev.compute()
    return {
        "checkpoint": str(checkpoint),
        "dataset": data or d.name,
        "split": split or d.val_split,
        "images": images,
        "miou": metrics["miou"],
        "pixel_acc": metrics["pixel_acc"],
        "mean_acc": metrics["mean_acc"],
        "fwiou": metrics["fwiou"],
        "pixels": metrics["count"],
        "per_class_iou": ev.per_class_iou(),
        "confusion": ev.last_confusion.tolist(),
    }


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


@torch.inference_mode()
def predict_report(
    checkpoint,
    images: list[str | Path],
    out_dir: str | Path,
    *,
    device: str = "cpu",
    size: int | None = None,
    on_bad_file: str = "fail",
) -> tuple[list[dict[str, Any]], list[str]]:
    """`predict`, also returning the one-line messages of the files skipped (``on_bad_file="skip"``).

    Before the model loads: ``size`` checked, inputs expanded (folders: their images, recursive, sorted), output
    stems checked unique, ``out_dir`` checked (an existing file is refused) and every header read. With
    ``"fail"`` the first bad file stops the run, naming it and how many label maps were already written."""
    from imagexplore.outputs import check_out_dir

    if size is not None:
        _positive("size", size)
    on_bad_file = check_on_bad_file(on_bad_file)
    out_dir = check_out_dir(out_dir)
    paths = expand_inputs(images)
    unique_stems(paths)
    skipped: list[str] = []

    def bad(error: DataError, written: int) -> None:
        if on_bad_file == "fail":
            n = f"{written} label map{'' if written == 1 else 's'}"
            done = f"; wrote {n} to {out_dir} before it" if written else ""
            raise DataError(f"{error}{done} (--on-bad-file skip leaves unreadable files out)") from None
        skipped.append(str(error))

    good = []
    for p in paths:
        try:
            probe_image(p)
            good.append(p)
        except DataError as e:
            bad(e, 0)
    if not good:
        raise DataError(f"none of the {len(paths)} inputs could be read (first: {skipped[0]})")
    model, _, meta = load_segmenter(checkpoint, device)
    names = meta["classes"]
    norm = Normalize(meta["mean"], meta["std"]) if meta.get("mean") is not None else None
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for path in good:
        try:
            img = load_image(path, "RGB")
        except DataError as e:
            bad(e, len(results))
            continue
        x = pil_to_tensor(img)
        if norm is not None:
            x = norm(x)
        x = x[None].to(device)
        h, w = x.shape[-2:]
        if size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        logits = model(x).float()
        if tuple(logits.shape[-2:]) != (h, w):
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        pred = logits.argmax(1)[0].to("cpu", torch.uint8).numpy()
        out = out_dir / f"{Path(path).stem}.png"
        mask_to_palette_image(pred).save(out)
        counts = torch.bincount(torch.from_numpy(pred).long().flatten(), minlength=len(names))
        present = {names[i]: round(float(c) / pred.size, 4) for i, c in enumerate(counts.tolist()) if c}
        results.append({"path": str(path), "output": str(out), "size": [w, h], "classes": present})
    return results, skipped


def predict(
    checkpoint,
    images: list[str | Path],
    out_dir: str | Path,
    *,
    device: str = "cpu",
    size: int | None = None,
    on_bad_file: str = "fail",
) -> list[dict[str, Any]]:
    """Write ``<stem>.png`` (VOC palette, the input's size) per image; returns [{path, output, classes}].

    ``images``: files, or folders of images (recursive, sorted). ``size``: run the model on the image resized to
    size×size and bring the logits back to the input size (None = the image's own size). Images go through
    `load_image` (grey, RGBA, 16-bit, EXIF all handled). Checks and ``on_bad_file``: see `predict_report`.
    """
    return predict_report(checkpoint, images, out_dir, device=device, size=size, on_bad_file=on_bad_file)[0]


def format_eval(res: dict[str, Any]) -> str:
    """The human summary of `evaluate`: totals, then one line per class."""
    lines = [
        f"{res['dataset']}/{res['split']}: {res['images']} images  mean IoU {100 * res['miou']:.2f}%  "
        f"pixel acc {100 * res['pixel_acc']:.2f}%  mean acc {100 * res['mean_acc']:.2f}%"
    ]
    w = max(len(n) for n in res["per_class_iou"])
    for name, v in res["per_class_iou"].items():
        shown = (
            "  n/a (absent from ground truth and prediction)"
            if v is None or math.isnan(v)
            else f"{100 * v:6.2f}%"
        )
        lines.append(f"  {name:<{w}}  {shown}")
    return "\n".join(lines)
