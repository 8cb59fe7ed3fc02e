"""`imagexplore edges predict | eval | score`: edge maps of images, and the BSDS benchmark of a model or a folder.

``predict`` writes, per input, ``<stem>.png``: the fused edge probability as 8-bit grey (white = edge) at the
input's own size, thinned by NMS with ``--nms``. ``eval`` runs a model over a dataset split at native size
(batch 1, the protocol), applies NMS (the papers' default) and scores with the boundary benchmark; ``score``
does the benchmark alone on any folder of edge maps.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from imagexplore.data.images import load_image, pil_to_tensor
from imagexplore.edges.task import EVAL_DEFAULTS
from imagexplore.engine.checkpoint import restore_model
from imagexplore.errors import UserError


def load_edge_model(checkpoint: str | Path | None = None, pretrained: str | None = None, device: str = "cpu"):
    """A trained edge checkpoint, or a pretrained tag / weights file: (model in eval mode, cfg or None, meta)."""
    if (checkpoint is None) == (pretrained is None):
        raise UserError("give exactly one of --checkpoint CKPT or --pretrained TAG")
    if pretrained is not None:
        from imagexplore.edges.pretrained import load_pretrained

        return load_pretrained(pretrained).to(device).eval(), None, {"pretrained": str(pretrained)}
    from imagexplore.edges.train import build_model

    model, cfg, meta = restore_model(
        checkpoint,
        build_model,
        task="edge-detection",
        accepts=lambda m: m.get("task") == "edges",
        pass_meta=True,
    )
    return model.to(device).eval(), cfg, meta


@torch.inference_mode()
def edge_probability(model, image: torch.Tensor, device: str = "cpu") -> np.ndarray:
    """Fused edge probability (float32 H×W) of one RGB [0, 1] 3×H×W image, at the image's own size."""
    logits = model(image[None].to(device))
    return torch.sigmoid(logits[0, -1].float()).cpu().numpy()


def to_png(prob: np.ndarray) -> Image.Image:
    """8-bit grey, white = edge: round(255 p), the inverse of the benchmark's reading (value / 255)."""
    return Image.fromarray(np.clip(np.rint(prob * 255.0), 0, 255).astype(np.uint8), mode="L")


def _unique_stems(images: list[str | Path]) -> None:
    stems = [Path(p).stem for p in images]
    if len(set(stems)) != len(stems):
        dup = next(s for s in stems if stems.count(s) > 1)
        raise UserError(
            f"two inputs share the name '{dup}'; their outputs {dup}.png would overwrite each other"
        )


def predict(
    images: list[str | Path],
    out_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    pretrained: str | None = None,
    device: str = "cpu",
    nms: bool = False,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Write ``<stem>.png`` per image into out_dir; returns [{path, output, size, seconds}]."""
    from tqdm.auto import tqdm

    from imagexplore.edges.nms import nms as edge_nms

    _unique_stems(images)
    model, _, _ = load_edge_model(checkpoint, pretrained, device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for path in tqdm(images, desc="edges", unit="img", disable=not progress):
        x = pil_to_tensor(load_image(path, "RGB"))
        t0 = time.perf_counter()
        prob = edge_probability(model, x, device)
        if nms:
            prob = edge_nms(prob)
        out = out_dir / f"{Path(path).stem}.png"
        to_png(prob).save(out)
        h, w = prob.shape
        results.append(
            {"path": str(path), "output": str(out), "size": [w, h], "seconds": time.perf_counter() - t0}
        )
    return results


def evaluate(
    *,
    checkpoint: str | Path | None = None,
    pretrained: str | None = None,
    data: str | None = None,
    root: str | None = None,
    split: str | None = None,
    image_size: int | None = None,
    limit: int | None = None,
    thresholds: int | None = None,
    nms: bool | None = None,
    max_dist: float | None = None,
    device: str = "cpu",
    out_dir: str | Path | None = None,
    options: dict[str, Any] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run a model over a split and score it with the boundary benchmark (the `edges score` result shape).

    The dataset and split default to the checkpoint's config; the scoring to the benchmark's protocol (99
    thresholds, NMS on, maxDist 0.0075 or the dataset's own, e.g. 0.011 for NYUD), whatever cheaper settings
    validation used during training.
    ``out_dir`` keeps the edge maps (``<stem>.png``), ``pr_curve.png`` and ``results.json``."""
    from tqdm.auto import tqdm

    from imagexplore.edges.benchmark import collect, evaluate_image, plot_pr
    from imagexplore.edges.data import build_edge_dataset
    from imagexplore.edges.nms import nms as edge_nms

    model, cfg, meta = load_edge_model(checkpoint, pretrained, device)
    ev = EVAL_DEFAULTS  # the benchmark's protocol, not the (possibly cheaper) validation settings of training
    if data is None:
        if cfg is None:
            raise UserError(
                "with --pretrained, say which data to evaluate on: --data shapes|bsds500|nyud ..."
            )
        data = cfg.data.name
    same = cfg is not None and data == cfg.data.name
    if same and split is None:
        split = cfg.data.val_split
    split = split or ("test" if data in ("bsds500", "nyud") else "val")
    ds = build_edge_dataset(
        data,
        split,
        train=False,
        root=root or (cfg.data.root if same else None),
        image_size=image_size or (cfg.data.image_size if same else None),
        num_samples=limit or (cfg.data.val_samples if same else None),
        seed=cfg.data.seed if same else 0,
        options=options if options is not None else (cfg.data.options if same else None),
    )
    thresholds = int(thresholds or ev["thresholds"])
    nms = ev["nms"] if nms is None else nms
    max_dist = float(max_dist or getattr(ds, "max_dist", None) or ev["max_dist"])
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
    per_image, names = [], []
    t_model = t_bench = 0.0
    for i in tqdm(range(len(ds)), desc="eval", unit="img", disable=not progress):
        item = ds[i]
        image, annotators = item[0], item[1]
        name = str(item[2]) if len(item) > 2 else f"{i:05d}"
        t0 = time.perf_counter()
        prob = edge_probability(model, image, device)
        if nms:
            prob = edge_nms(prob)
        t1 = time.perf_counter()
        gts = annotators.numpy().astype(bool) if torch.is_tensor(annotators) else np.asarray(annotators, bool)
        per_image.append(evaluate_image(prob, gts, thresholds=thresholds, max_dist=max_dist))
        t_bench += time.perf_counter() - t1
        t_model += t1 - t0
        names.append(name)
        if out_dir is not None:
            to_png(prob).save(out_dir / f"{name}.png")
    if not per_image:
        raise UserError(f"dataset '{data}' split '{split}' has no images")
    res = collect(thresholds, per_image)
    for entry, name in zip(res["per_image"], names):
        entry["name"] = name
    res.update(
        {
            "model": str(checkpoint or pretrained),
            "dataset": data,
            "split": split,
            "nms": bool(nms),
            "max_dist": max_dist,
            "seconds_model": t_model,
            "seconds_benchmark": t_bench,
        }
    )
    if out_dir is not None:
        import json

        plot_pr(res, out_dir / "pr_curve.png", label=Path(str(checkpoint or pretrained)).stem)
        (out_dir / "results.json").write_text(json.dumps(res, indent=2))
    return res


def format_result(res: dict[str, Any]) -> str:
    """The human summary of a benchmark result: ODS / OIS / AP / R50 and where the ODS lies."""
    head = f"{res.get('dataset', 'edges')}/{res.get('split', '')}: " if "dataset" in res else ""
    return (
        f"{head}{res['images']} images  ODS F {res['ods']:.4f} (threshold {res['ods_threshold']:.3f}, "
        f"P {res['ods_precision']:.4f}, R {res['ods_recall']:.4f})  OIS F {res['ois']:.4f}  "
        f"AP (area under PR) {res['ap']:.4f}  R50 {res['r50']:.4f}"
    )
