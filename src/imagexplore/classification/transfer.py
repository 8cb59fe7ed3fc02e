"""Transferring fused features (thesis chapter 2): a trained classifier as a frozen feature extractor.

For each checkpoint the network's ``forward_features`` gives one vector per image:

- a CFN (registry name ``cfn*`` with a fusion other than ``none``): the **fused** K-vector
  ``f_k = ReLU(Σ_s w[s,k] g_s[k] + b[k])`` (after the fusion's BN on the ImageNet net), before dropout/FC;
- any other model (``plain_*``, ``simple_cnn``, a CFN built with ``fusion: none``): the **main GAP** vector
  (the top conv's output, ReLU, global average pooled), before dropout/FC.

Two protocols measure how well these features transfer to another dataset (any ImageFolder, or a built-in one):

- **linear probe** (`linear_probe`): L2-normalise each vector (option), standardise with the training features'
  mean/std, then multinomial logistic regression (scikit-learn ``LogisticRegression``, lbfgs). Its inverse
  regularisation C is picked from a small grid by accuracy on a stratified held-out 20 % of the *training*
  features, then the classifier is refit on all training features; the test split is never seen while choosing.
  Reported: top-1 accuracy on the test split, and per class.
- **retrieval** (`retrieval_map`): cosine similarity; every test image is a query against all other test images
  (the query itself excluded); non-interpolated average precision per query (mean of the precision at the rank
  of each relevant item; relevant = same label), mean over the queries that have at least one relevant item.

The task list (linear classifier for scene / fine-grained recognition, cosine ranking for retrieval) is
published; the datasets and the protocol details above are our **reconstruction** (see docs/transfer.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from imagexplore.errors import ConfigError, DataError

DEFAULT_C_GRID: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0)
# Native side lengths of the built-in datasets, used when a checkpoint's meta holds no image_size.
_NATIVE_SIZE = {"cifar10": 32, "cifar100": 32, "fashion_mnist": 28, "digits": 8, "shapes": 32}


# ------------------------------------------------------------------------------------------------ features


def adapt_channels(x: torch.Tensor, in_chans: int | None) -> torch.Tensor:
    """Make an N×C×H×W batch have ``in_chans`` channels: grey → RGB repeats the channel, RGB → grey averages."""
    if in_chans is None or x.shape[1] == in_chans:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, in_chans, -1, -1)
    if in_chans == 1:
        return x.mean(1, keepdim=True)
    raise DataError(f"cannot feed {x.shape[1]}-channel images to a model trained on {in_chans} channels")


@torch.inference_mode()
def extract_features(
    model: torch.nn.Module,
    dataset: Dataset,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    *,
    in_chans: int | None = None,
    workers: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``model.forward_features`` over ``dataset`` in batches: (float32 N×D features, int64 N labels).

    Each batch is first given ``in_chans`` channels (`adapt_channels`), then ``normalize`` (models from `load_classifier` apply their own stored preprocessing),
    then moved to ``device``. The model is put in eval mode (dropout off, BN running statistics).
    """
    if len(dataset) == 0:
        raise DataError("no images to extract features from (empty dataset)")
    model.eval()
    feats, labels = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, num_workers=workers):
        x, y = batch[0], batch[1]
        x = adapt_channels(x.float(), in_chans)
        if normalize is not None:
            x = normalize(x)
        f = model.forward_features(x.to(device))
        feats.append(f.float().flatten(1).cpu())
        labels.append(torch.as_tensor(y).long().cpu())
    return torch.cat(feats).numpy().astype(np.float32), torch.cat(labels).numpy()


def _l2n(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# ------------------------------------------------------------------------------------------------ linear probe


def linear_probe(
    train_feats: np.ndarray,
    train_labels: np.ndarray,
    test_feats: np.ndarray,
    test_labels: np.ndarray,
    *,
    l2_normalize: bool = True,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    val_fraction: float = 0.2,
    max_iter: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Multinomial logistic regression on frozen features; the test split's accuracy (overall and per class).

    Protocol: optional L2 normalisation per vector → standardisation fit on the training features →
    ``LogisticRegression(C)`` (lbfgs, multinomial). C is chosen from ``c_grid`` by accuracy on a stratified
    ``val_fraction`` of the training features (ties: the smaller C), then refit on all training features. With
    a single C, or too few training items to hold some out (a class with < 2 items), no selection is done.

    Returns ``{"accuracy", "per_class": {label: accuracy}, "C", "val_accuracy" (None without selection),
    "train_items", "test_items"}``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    xtr, ytr = np.asarray(train_feats, dtype=np.float64), np.asarray(train_labels).astype(np.int64)
    xte, yte = np.asarray(test_feats, dtype=np.float64), np.asarray(test_labels).astype(np.int64)
    if xtr.ndim != 2 or xte.ndim != 2 or xtr.shape[1] != xte.shape[1]:
        raise ConfigError(f"features must be N×D with equal D, got {xtr.shape} and {xte.shape}")
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise ConfigError("features and labels differ in length")
    if len(np.unique(ytr)) < 2:
        raise DataError("the linear probe needs at least 2 classes in the training split")
    if len(xte) == 0:
        raise DataError("the linear probe needs a non-empty test split")
    if l2_normalize:
        xtr, xte = _l2n(xtr), _l2n(xte)

    def fit(x, y, c):
        scaler = StandardScaler().fit(x)
        clf = LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
        clf.fit(scaler.transform(x), y)
        return scaler, clf

    grid = sorted(float(c) for c in c_grid)
    if not grid:
        raise ConfigError("c_grid needs at least one value")
    counts = np.bincount(ytr - ytr.min())
    n_val = int(round(val_fraction * len(ytr)))
    n_cls = len(np.unique(ytr))
    can_select = (
        len(grid) > 1 and counts[counts > 0].min() >= 2 and n_val >= n_cls and len(ytr) - n_val >= n_cls
    )
    best_c, best_val = (
        grid[len(grid) // 2],
        None,
    )  # without selection: the middle of the grid (1.0 by default)
    if can_select:
        a, b, ya, yb = train_test_split(xtr, ytr, test_size=n_val, stratify=ytr, random_state=seed)
        for c in grid:
            scaler, clf = fit(a, ya, c)
            acc = float((clf.predict(scaler.transform(b)) == yb).mean())
            if best_val is None or acc > best_val:
                best_c, best_val = c, acc
    scaler, clf = fit(xtr, ytr, best_c)
    pred = clf.predict(scaler.transform(xte))
    correct = pred == yte
    per_class = {int(c): float(correct[yte == c].mean()) for c in np.unique(yte)}
    return {
        "accuracy": float(correct.mean()),
        "per_class": per_class,
        "C": best_c,
        "val_accuracy": best_val,
        "train_items": int(len(ytr)),
        "test_items": int(len(yte)),
    }


# ------------------------------------------------------------------------------------------------ retrieval


def average_precisions(
    feats: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, *, query_batch: int | None = None
) -> np.ndarray:
    """Per-query non-interpolated AP of cosine ranking, each item a query against all others (itself excluded).

    AP = (1/R) Σ_{k: item at rank k relevant} precision@k, R = number of other items with the query's label.
    Queries with R = 0 get NaN. Ties in similarity are broken by item index (stable sort).
    Vectorised: one sort per batch of queries, cumulative sums along the rankings.
    """
    f = torch.as_tensor(np.asarray(feats), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels)).long()
    if f.ndim != 2 or len(f) != len(y):
        raise ConfigError(f"features must be N×D with N labels, got {tuple(f.shape)} and {len(y)} labels")
    n = len(f)
    if n < 2:
        return np.full(n, np.nan)
    f = torch.nn.functional.normalize(f, dim=1)
    qb = query_batch or max(1, min(n, 4_000_000 // n))
    ranks = torch.arange(1, n, dtype=torch.float64)  # ranks 1..n-1 (the query itself dropped)
    out = torch.empty(n, dtype=torch.float64)
    for s in range(0, n, qb):
        q = torch.arange(s, min(s + qb, n))
        sim = f[q] @ f.T
        sim[torch.arange(len(q)), q] = -torch.inf  # the query sorts last, then is dropped
        order = torch.sort(sim, dim=1, descending=True, stable=True).indices[:, : n - 1]
        rel = (y[order] == y[q, None]).double()
        hits = rel.cumsum(1)
        r = rel.sum(1)
        ap = (rel * hits / ranks).sum(1) / r.clamp(min=1)
        out[q] = torch.where(r > 0, ap, torch.full_like(ap, torch.nan))
    return out.numpy()


def retrieval_map(feats: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> float:
    """Mean of `average_precisions` over the queries with at least one relevant item (NaN if none has one)."""
    ap = average_precisions(feats, labels)
    ap = ap[~np.isnan(ap)]
    return float(ap.mean()) if len(ap) else float("nan")


# ------------------------------------------------------------------------------------------------ driver


def feature_name(model_name: str, model_kwargs: dict | None = None) -> str:
    """ "fused" for a CFN (registry name ``cfn*``, fusion not ``none``), else "main GAP"."""
    if model_name.startswith("cfn") and (model_kwargs or {}).get("fusion", "local") != "none":
        return "fused"
    return "main GAP"


def run_transfer(
    checkpoints: Sequence[str],
    data: str = "imagefolder",
    root: str | None = None,
    train_split: str = "train",
    test_split: str = "val",
    image_size: int | None = None,
    device: str = "cpu",
    batch_size: int = 128,
    num_samples: int | None = None,
    options: dict | None = None,
    *,
    seed: int = 0,
    l2_normalize: bool = True,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    workers: int = 0,
) -> dict[str, Any]:
    """Features of each checkpoint on ``data`` (train and test splits) → linear-probe accuracy and retrieval mAP.

    Image size: ``image_size``, else the checkpoint's (meta, then config), else the native size of the dataset it
    was trained on; image folders need one. Normalisation: the checkpoint's mean/std. Channels: the dataset's
    images are converted to the model's ``in_chans`` (grey repeated to 3 channels, RGB averaged to 1).
    ``num_samples`` caps each split (a seeded random subset). Retrieval runs on the test split.
    """
    from imagexplore.classification.evaluate import load_classifier
    from imagexplore.data.classification import build_classification_dataset

    if not checkpoints:
        raise ConfigError("give at least one checkpoint")
    if train_split == test_split:
        raise ConfigError(f"train and test splits must differ, both are {train_split!r}")
    datasets: dict[int | None, tuple[Dataset, Dataset]] = {}
    rows = []
    for ck in checkpoints:
        model, cfg, meta = load_classifier(ck, device)
        name = cfg.model.name
        size = image_size or meta.get("image_size") or cfg.data.image_size
        size = size or _NATIVE_SIZE.get(str(meta.get("dataset") or cfg.data.name).lower().replace("-", "_"))
        if size is None and data.lower() in ("imagefolder", "imagenet"):
            raise ConfigError(f"checkpoint {ck} records no image size: give the image size (--image-size N)")
        if size not in datasets:
            common = dict(root=root, image_size=size, num_samples=num_samples, seed=seed, options=options)
            datasets[size] = (
                build_classification_dataset(data, train_split, **common),
                build_classification_dataset(data, test_split, **common),
            )
        train_set, test_set = datasets[size]
        kw = dict(
            batch_size=batch_size,
            device=device,
            in_chans=meta.get("in_chans", 3),
            workers=workers,
        )
        ftr, ytr = extract_features(model, train_set, **kw)
        fte, yte = extract_features(model, test_set, **kw)
        probe = linear_probe(ftr, ytr, fte, yte, l2_normalize=l2_normalize, c_grid=c_grid, seed=seed)
        rows.append(
            {
                "checkpoint": str(ck),
                "model": name,
                "feature": feature_name(name, cfg.model.kwargs),
                "dim": int(ftr.shape[1]),
                "linear_acc": probe["accuracy"],
                "retrieval_map": retrieval_map(fte, yte),
                "train_images": int(len(ytr)),
                "test_images": int(len(yte)),
                "image_size": size,
                "probe_C": probe["C"],
                "linear_per_class": probe["per_class"],
            }
        )
        del model
    classes = getattr(next(iter(datasets.values()))[0], "classes", None)
    return {
        "rows": rows,
        "dataset": data,
        "root": None if root is None else str(root),
        "train_split": train_split,
        "test_split": test_split,
        "classes": list(classes) if classes is not None else None,
        "protocol": {
            "linear": f"l2_normalize={l2_normalize}, standardise, LogisticRegression, C from {list(c_grid)} "
            "on a stratified 20% of train",
            "retrieval": "cosine, each test image vs all other test images, non-interpolated AP, mean",
        },
    }


def format_table(result: dict[str, Any]) -> str:
    """The rows side by side: model, feature, dim, linear accuracy, retrieval mAP."""
    head = ("model", "feature", "dim", "linear acc", "retrieval mAP", "checkpoint")
    lines = [
        (r["model"], r["feature"], str(r["dim"]), f"{100 * r['linear_acc']:.2f}%",
         f"{100 * r['retrieval_map']:.2f}%", r["checkpoint"])
        for r in result["rows"]
    ]  # fmt: skip
    widths = [max(len(x) for x in col) for col in zip(head, *lines)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    title = (
        f"{result['dataset']}: linear probe {result['train_split']} → {result['test_split']}, "
        f"retrieval on {result['test_split']}"
    )
    return "\n".join([title, *(fmt.format(*ln).rstrip() for ln in [head, *lines])])
