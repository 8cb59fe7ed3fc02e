"""`imagexplore classify eval | predict`: a trained checkpoint on a dataset, or on image files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from imagexplore.classification.task import Normalize
from imagexplore.classification.train import build_model
from imagexplore.config import ExperimentConfig, apply_overrides, from_dict
from imagexplore.data.classification import build_classification_dataset
from imagexplore.engine import ClassificationEvaluator, load_checkpoint, load_model_state
from imagexplore.errors import CheckpointError


def load_classifier(checkpoint: str | Path, device: str = "cpu", overrides: list[str] | None = None):
    """Rebuild the model a checkpoint was trained with and load its weights: (model, cfg, meta)."""
    ck = load_checkpoint(checkpoint, map_location="cpu")
    if "config" not in ck:
        raise CheckpointError(f"checkpoint {checkpoint} holds no config; cannot rebuild its model")
    cfg = from_dict(ExperimentConfig, apply_overrides(ck["config"], overrides or [], ExperimentConfig))
    meta = ck.get("meta", {})
    classes = meta.get("classes")
    if not classes:
        raise CheckpointError(f"checkpoint {checkpoint} is not a classification checkpoint (no class names)")
    model = build_model(cfg, len(classes), meta.get("in_chans", 3))
    load_model_state(model, ck, checkpoint)
    return model.to(device).eval(), cfg, meta


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
) -> dict[str, Any]:
    model, cfg, meta = load_classifier(checkpoint, device)
    d = cfg.data
    ds = build_classification_dataset(
        data or d.name,
        split or d.val_split,
        root=root or d.root,
        image_size=d.image_size,
        num_samples=d.val_samples if data is None else None,
        seed=d.seed,
        on_bad_file=d.on_bad_file,
        options=d.options if data is None else None,
    )
    if meta.get("mean") is not None:
        ds.transform = Normalize(meta["mean"], meta["std"])
    ev = ClassificationEvaluator(len(meta["classes"]))
    for x, y in DataLoader(ds, batch_size=batch_size, num_workers=d.workers):
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
