"""`imagexplore classify eval | predict`: a trained checkpoint on a dataset, or on image files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from imagexplore.classification.preprocess import CenterCrop, from_meta
from imagexplore.data.classification import build_classification_dataset
from imagexplore.data.images import load_image, pil_to_tensor, resize_center_crop
from imagexplore.data.inputs import expand_inputs
from imagexplore.engine import ClassificationEvaluator
from imagexplore.engine.checkpoint import restore_model
from imagexplore.errors import ConfigError, DataError


class Preprocessed(torch.nn.Module):
    """A trained classifier that takes images in [0, 1] and applies its own stored preprocessing first
    (GCN+ZCA or mean/std); forwards `forward_features` / `forward_head` and the registry name."""

    def __init__(self, model: torch.nn.Module, preprocess: torch.nn.Module | None):
        super().__init__()
        self.model, self.preprocess = model, preprocess
        self.registry_name = getattr(model, "registry_name", type(model).__name__)
        self.num_features = getattr(model, "num_features", None)

    def _prep(self, x):
        return x if self.preprocess is None else self.preprocess(x)

    def forward(self, x):
        return self.model(self._prep(x))

    def forward_features(self, x):
        return self.model.forward_features(self._prep(x))


def load_classifier(checkpoint: str | Path, device: str = "cpu", overrides: list[str] | None = None):
    """Rebuild the model a checkpoint was trained with, load its weights and its preprocessing.

    Returns (model, cfg, meta); the model takes images in [0, 1] (see `Preprocessed`)."""
    model, cfg, meta = restore_model(
        checkpoint,
        task="classify",
        overrides=overrides,
    )
    wrapped = Preprocessed(model, from_meta(meta.get("preprocess")))
    return wrapped.to(device).eval(), cfg, meta


@torch.inference_mode()
def evaluate(
    checkpoint,
    *,
    split: str | None = None,
    root: str | None = None,
    data: str | None = None,
    device: str = "cpu",
    batch_size: int = 256,
    out_dir: str | Path | None = None,
    class_subset: bool = False,
    on_bad_file: str | None = None,
) -> dict[str, Any]:
    """Top-1/top-5 error of a checkpoint on a dataset split.

    The dataset's class names must be the checkpoint's, in the same order (labels are indices): otherwise the
    error would be silently wrong, so it is refused. With ``class_subset`` the dataset's classes may be any
    subset of the checkpoint's, matched by name (e.g. a folder holding 3 of the 8 shapes)."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be ≥ 1; got {batch_size}")
    if out_dir is not None:
        from imagexplore.outputs import check_out_dir

        check_out_dir(out_dir)
    model, cfg, meta = load_classifier(checkpoint, device)
    d = cfg.data
    ds = build_classification_dataset(
        data or d.name,
        split or d.val_split,
        root=root or d.root,
        image_size=d.image_size,
        num_samples=d.val_samples if data is None else None,
        seed=d.seed,
        on_bad_file=on_bad_file or d.on_bad_file,
        options=d.options if data is None else None,
    )
    if meta.get("crop_size"):
        ds.transform = CenterCrop(meta["crop_size"])
    label_map = match_classes(list(meta["classes"]), getattr(ds, "classes", None), checkpoint, class_subset)
    ev = ClassificationEvaluator(len(meta["classes"]))
    for x, y in DataLoader(ds, batch_size=batch_size, num_workers=d.workers):
        y = y if label_map is None else label_map[y]
        ev.update(model(x.to(device)).float(), y.to(device))
    metrics = ev.compute()
    result = {
        "checkpoint": str(checkpoint),
        "dataset": data or d.name,
        "split": split or d.val_split,
        **metrics,
    }
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = plot_confusion(ev.last_confusion.numpy(), meta["classes"], out_dir / "confusion.png")
        result["confusion_png"] = str(path)
    result["confusion"] = ev.last_confusion.tolist()
    return result


def match_classes(
    trained: list[str], data: list[str] | None, checkpoint, subset: bool = False
) -> torch.Tensor | None:
    """None when the dataset's labels are the checkpoint's; with ``subset``, the dataset-label → checkpoint-label
    map by name. Anything else is refused in one line naming the first differences."""
    if data is None or list(data) == trained:
        return None
    where = f"the checkpoint {checkpoint}"
    unknown = [c for c in data if c not in trained]
    if subset and not unknown:
        return torch.tensor([trained.index(c) for c in data])
    if subset:
        raise DataError(
            f"{len(unknown)} of the dataset's classes are not among {where}'s {len(trained)}: "
            f"{', '.join(unknown[:5])}{' …' if len(unknown) > 5 else ''}"
        )
    if sorted(data) == sorted(trained):
        raise DataError(
            f"the dataset has {where}'s classes in another order ({', '.join(data[:4])} … vs "
            f"{', '.join(trained[:4])} …); pass --class-subset to match them by name"
        )
    hint = "; pass --class-subset to match them by name" if not unknown else ""
    first = f"first unknown: {', '.join(unknown[:3])}" if unknown else f"dataset: {', '.join(data[:6])}"
    raise DataError(
        f"the dataset's {len(data)} classes are not {where}'s {len(trained)} "
        f"({', '.join(trained[:6])}{' …' if len(trained) > 6 else ''}); {first}{hint}"
    )


def plot_confusion(
    cm: np.ndarray, classes: list[str], path: str | Path, title: str = "confusion matrix"
) -> Path:
    """Row-normalised confusion matrix as a PNG (rows: true class, columns: prediction)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * n, 1.0 + 0.45 * n), dpi=100)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        int(cm[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


@torch.inference_mode()
def predict(
    checkpoint,
    inputs: list[str | Path],
    *,
    topk: int = 5,
    device: str = "cpu",
    batch_size: int = 64,
    on_bad_file: str = "fail",
) -> tuple[list[dict[str, Any]], list[str]]:
    """Top-k classes for image files or folders. Returns (results in input order, skipped files' messages).

    Every image goes through `load_image` (grey, RGBA, palette, 16-bit and CMYK converted; truncated or non-image
    files raise one-line errors, or are skipped with on_bad_file='skip'), is resized so its shorter side is the
    training size and centre-cropped, then the checkpoint's own preprocessing applies.
    """
    if topk < 1 or batch_size < 1:
        raise ConfigError(f"top-k and batch size must be ≥ 1; got {topk} and {batch_size}")
    paths = expand_inputs(inputs)  # before loading the model: a wrong path fails at once
    model, cfg, meta = load_classifier(checkpoint, device)
    classes = meta["classes"]
    size = meta.get("image_size") or cfg.data.image_size
    crop = meta.get("crop_size")
    mode = "L" if meta.get("in_chans", 3) == 1 else "RGB"
    k = min(topk, len(classes))  # a checkpoint of 8 classes has no 9th guess
    results, skipped = [], []
    for start in range(0, len(paths), batch_size):
        batch, kept = [], []
        for p in paths[start : start + batch_size]:
            try:
                img = load_image(p, mode)
            except DataError as e:
                if on_bad_file != "skip":
                    raise
                skipped.append(str(e))
                continue
            if size:
                img = resize_center_crop(img, size)
            x = pil_to_tensor(img)
            batch.append(CenterCrop(crop)(x) if crop else x)
            kept.append(p)
        if not batch:
            continue
        probs = torch.softmax(model(torch.stack(batch).to(device)).float(), dim=1)
        top = probs.topk(k, dim=1)
        for p, vals, idxs in zip(kept, top.values.tolist(), top.indices.tolist()):
            results.append(
                {
                    "path": str(p),
                    "top": [{"label": classes[i], "index": i, "prob": v} for v, i in zip(vals, idxs)],
                }
            )
    return results, skipped
