"""`imagexplore edges predict | eval | score`: edge maps of images, and the BSDS benchmark of a model or a folder.

``predict`` writes, per input, ``<stem>.png``: the fused edge probability as 8-bit grey (white = edge) at the
input's own size, thinned by NMS with ``--nms``. ``eval`` runs a model over a dataset split at native size
(batch 1, the protocol), applies NMS (the papers' default) and scores with the boundary benchmark; ``score``
does the benchmark alone on any folder of edge maps.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from imagexplore.data.images import check_on_bad_file, load_image, pil_to_tensor
from imagexplore.data.inputs import expand_inputs, probe_image, unique_stems
from imagexplore.edges.task import EVAL_DEFAULTS
from imagexplore.edges.tiling import (
    DEFAULT_TILE,
    available_memory,
    check_memory,
    check_tile,
    model_bytes_per_pixel,
    tiles,
)
from imagexplore.engine.checkpoint import restore_model
from imagexplore.errors import ConfigError, DataError, UserError


def load_edge_model(checkpoint: str | Path | None = None, pretrained: str | None = None, device: str = "cpu"):
    """A trained edge checkpoint, or a pretrained tag / weights file: (model in eval mode, cfg or None, meta)."""
    if (checkpoint is None) == (pretrained is None):
        raise UserError("give exactly one of --checkpoint CKPT or --pretrained TAG")
    if pretrained is not None:
        from imagexplore.edges.pretrained import load_pretrained

        return load_pretrained(pretrained).to(device).eval(), None, {"pretrained": str(pretrained)}

    model, cfg, meta = restore_model(
        checkpoint,
        task="edges",
    )
    return model.to(device).eval(), cfg, meta


def _per_pixel_bytes(model) -> int:
    """Estimated peak bytes per pixel of one forward pass of `model` (see `tiling.model_bytes_per_pixel`)."""
    bb = getattr(model, "backbone", None)
    chans, reds = getattr(bb, "channels", None), getattr(bb, "reductions", None)
    if not chans or not reds:
        return model_bytes_per_pixel(64)  # unknown: assume VGG-16's 64 full-resolution channels
    return model_bytes_per_pixel(chans[0], reds[0], getattr(model, "num_sides", len(chans)))


@torch.inference_mode()
def edge_probability(model, image: torch.Tensor, device: str = "cpu", tile: int = 0) -> np.ndarray:
    """Fused edge probability (float32 H×W) of one RGB [0, 1] 3×H×W image, at the image's own size.

    ``tile`` > 0: an image with a side longer than ``tile`` runs as overlapping tiles (`edges.tiling`), at the
    same scale, so the network's memory is bounded by the tile size instead of the image's."""
    h, w = image.shape[-2:]
    parts = tiles(h, w, tile)
    if len(parts) == 1:
        logits = model(image[None].to(device))
        return torch.sigmoid(logits[0, -1].float()).cpu().numpy()
    out = np.empty((h, w), np.float32)
    for (y0, y1, ky0, ky1), (x0, x1, kx0, kx1) in parts:
        logits = model(image[None, :, y0:y1, x0:x1].to(device))
        prob = torch.sigmoid(logits[0, -1, ky0 - y0 : ky1 - y0, kx0 - x0 : kx1 - x0].float())
        out[ky0:ky1, kx0:kx1] = prob.cpu().numpy()
    return out


def to_png(prob: np.ndarray) -> Image.Image:
    """8-bit grey, white = edge: round(255 p), the inverse of the benchmark's reading (value / 255)."""
    return Image.fromarray(np.clip(np.rint(prob * 255.0), 0, 255).astype(np.uint8), mode="L")


def _unique_stems(images: list[str | Path]) -> None:
    unique_stems(images)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def predict_report(
    images: list[str | Path],
    out_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    pretrained: str | None = None,
    device: str = "cpu",
    nms: bool = False,
    progress: bool = False,
    on_bad_file: str = "fail",
    tile: int = DEFAULT_TILE,
) -> tuple[list[dict[str, Any]], list[str]]:
    """`predict`, also returning the one-line messages of the files skipped (``on_bad_file="skip"``).

    Before the model loads: inputs expanded (folders: their images, recursive, sorted), output stems checked
    unique, ``out_dir`` checked (an existing file is refused), every header read (missing, non-image and
    over-the-bomb-limit files found) and each image's memory estimated at the given ``tile``. With ``"fail"``
    the first bad file stops the run (naming the file and how many edge maps were already written); with
    ``"skip"`` bad files are left out and returned."""
    from tqdm.auto import tqdm

    from imagexplore.edges.nms import nms as edge_nms
    from imagexplore.outputs import check_out_dir

    on_bad_file = check_on_bad_file(on_bad_file)
    check_tile(tile)
    out_dir = check_out_dir(out_dir)
    paths = expand_inputs(images)
    unique_stems(paths)
    skipped: list[str] = []

    def bad(path, error: DataError, written: int) -> None:
        if on_bad_file == "fail":
            done = f"; wrote {_plural(written, 'edge map')} to {out_dir} before it" if written else ""
            raise DataError(f"{error}{done} (--on-bad-file skip leaves unreadable files out)") from None
        skipped.append(str(error))

    sizes: dict[Path, tuple[int, int]] = {}
    for p in paths:
        try:
            sizes[p] = probe_image(p)
        except DataError as e:
            bad(p, e, 0)
    good = [p for p in paths if p in sizes]
    if not good:
        raise DataError(f"none of the {_plural(len(paths), 'input')} could be read (first: {skipped[0]})")
    model, _, _ = load_edge_model(checkpoint, pretrained, device)
    per_px = _per_pixel_bytes(model) if device == "cpu" else 0  # on a GPU only the host arrays count here
    avail = available_memory()
    kept = []
    for p in good:
        w, h = sizes[p]
        reason = check_memory(p, h, w, tile, per_px, avail)
        if reason is None:
            kept.append(p)
        elif on_bad_file == "fail":
            raise UserError(f"image too large for memory: {reason}")
        else:
            skipped.append(f"image too large for memory: {reason}")
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for path in tqdm(kept, desc="edges", unit="img", disable=not progress):
        try:
            x = pil_to_tensor(load_image(path, "RGB"))
        except DataError as e:
            bad(path, e, len(results))
            continue
        t0 = time.perf_counter()
        prob = edge_probability(model, x, device, tile=tile)
        if nms:
            prob = edge_nms(prob)
        out = out_dir / f"{Path(path).stem}.png"
        to_png(prob).save(out)
        h, w = prob.shape
        results.append(
            {"path": str(path), "output": str(out), "size": [w, h], "seconds": time.perf_counter() - t0}
        )
    return results, skipped


def predict(
    images: list[str | Path],
    out_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    pretrained: str | None = None,
    device: str = "cpu",
    nms: bool = False,
    progress: bool = False,
    on_bad_file: str = "fail",
    tile: int = DEFAULT_TILE,
) -> list[dict[str, Any]]:
    """Write ``<stem>.png`` per image (files, or folders of images) into out_dir; returns [{path, output, size,
    seconds}]. See `predict_report` for the checks, ``on_bad_file`` and ``tile``."""
    return predict_report(
        images,
        out_dir,
        checkpoint=checkpoint,
        pretrained=pretrained,
        device=device,
        nms=nms,
        progress=progress,
        on_bad_file=on_bad_file,
        tile=tile,
    )[0]


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
    tile: int = DEFAULT_TILE,
) -> dict[str, Any]:
    """Run a model over a split and score it with the boundary benchmark (the `edges score` result shape).

    The dataset and split default to the checkpoint's config; the scoring to the benchmark's protocol (99
    thresholds, NMS on, maxDist 0.0075 or the dataset's own, e.g. 0.011 for NYUD), whatever cheaper settings
    validation used during training.

    Without ``data`` and without a checkpoint config (``--pretrained``), ``root``'s layout names the dataset
    (`detect_layout`): a BSDS folder (``images/`` + ``groundTruth/``) is bsds500, a mask folder is masks.

    The split, when not given: with the checkpoint's own dataset, its ``data.val_split``; if the dataset has no
    folder for it (training validated on a part carved out of train, see `build_edge_dataset`), the ``test``
    split if there is one — a held-out benchmark rather than the images that chose best.pt — else that same
    carved part (the result then says ``carved_from: train``). Otherwise ``test`` for bsds500 / nyud, for masks
    the first of ``test`` / ``val`` the folder has, else ``train`` (an unsplit folder: all its images), and
    ``val`` for the rest. An explicit split the dataset lacks (not train/trainval/test) is carved likewise.

    ``out_dir`` keeps the edge maps (``<stem>.png``), ``pr_curve.png`` and ``results.json``; it is checked (an
    existing file is refused) and the numeric options are range-checked (`ConfigError`) before the model loads.
    ``tile``: images with a side longer than this run as overlapping tiles (`edges.tiling`; 0 = never)."""
    from tqdm.auto import tqdm

    from imagexplore.outputs import check_out_dir

    check_eval_options(image_size=image_size, limit=limit, thresholds=thresholds, max_dist=max_dist)
    check_tile(tile)
    if out_dir is not None:
        out_dir = check_out_dir(out_dir)

    from imagexplore.edges.benchmark import collect, evaluate_image, plot_pr
    from imagexplore.edges.data import build_edge_dataset
    from imagexplore.edges.nms import nms as edge_nms

    if data is None and checkpoint is None and pretrained is not None:
        data = _detect_data(root)  # before the model loads: a folder that is no dataset fails fast
    model, cfg, meta = load_edge_model(checkpoint, pretrained, device)
    ev = EVAL_DEFAULTS  # the benchmark's protocol, not the (possibly cheaper) validation settings of training
    if data is None:
        data = cfg.data.name if cfg is not None else _detect_data(root)
    same = cfg is not None and data == cfg.data.name
    data_root = root or (cfg.data.root if same else None)
    if split is None:
        split = _default_split(data, data_root, cfg.data.val_split if same else None)
    ds = build_edge_dataset(
        data,
        split,
        train=False,
        val_split=cfg.data.val_split if same else split,
        root=data_root,
        image_size=image_size if image_size is not None else (cfg.data.image_size if same else None),
        num_samples=limit if limit is not None else (cfg.data.val_samples if same else None),
        seed=cfg.data.seed if same else 0,
        options=options if options is not None else (cfg.data.options if same else None),
    )
    thresholds = int(ev["thresholds"] if thresholds is None else thresholds)
    nms = ev["nms"] if nms is None else nms
    max_dist = float(max_dist if max_dist is not None else getattr(ds, "max_dist", None) or ev["max_dist"])
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
        prob = edge_probability(model, image, device, tile=tile)
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
            **({"carved_from": ds.base.carved_from} if getattr(ds.base, "carved_from", None) else {}),
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


EVAL_LAYOUTS = (
    "a BSDS folder (images/<split>/*.jpg + groundTruth/<split>/*.mat) or a mask folder (NAME.jpg + NAME.png "
    "masks, or images/ + masks/, optionally per split)"
)


def _detect_data(root: str | None) -> str:
    """The dataset of a ``--root`` given without ``--data`` (and without a checkpoint config)."""
    from imagexplore.edges.data import detect_layout

    if root is None:
        raise UserError(
            "with --pretrained, say which data to evaluate on: --data shapes|bsds500|nyud|masks ..., or give "
            f"--root DIR holding {EVAL_LAYOUTS}"
        )
    data = detect_layout(root)
    if data is None:
        raise UserError(
            f"--root {root}: not a dataset layout recognised without --data; expected {EVAL_LAYOUTS} — or say "
            "which data it is: --data shapes|bsds500|nyud|masks ..."
        )
    print(f"--root {root}: evaluating it as --data {data} (detected)", file=sys.stderr)
    return data


def _default_split(data: str, root, val_split: str | None) -> str:
    """The split `evaluate` reads when none is given (see its docstring); ``val_split``: the checkpoint's
    data.val_split when it trained on ``data``, else None."""
    from imagexplore.edges.data import CARVED_DATASETS, FIXED_SPLITS, has_split

    if val_split is not None:
        if data in CARVED_DATASETS and val_split not in FIXED_SPLITS and not has_split(data, root, val_split):
            if has_split(data, root, "test"):
                print(
                    f"the run validated on images carved out of train (no {val_split} split in the dataset): "
                    "evaluating on its test split",
                    file=sys.stderr,
                )
                return "test"
        return val_split
    if data == "masks":
        return next((s for s in ("test", "val") if has_split(data, root, s)), "train")
    return "test" if data in ("bsds500", "nyud") else "val"


def check_eval_options(
    *,
    image_size: int | None = None,
    limit: int | None = None,
    thresholds: int | None = None,
    max_dist: float | None = None,
) -> None:
    """`ConfigError` for an out-of-range option of `evaluate` (None = the default): never a silent substitute."""
    for name, value in (("image_size", image_size), ("limit", limit), ("thresholds", thresholds)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if max_dist is not None and not (isinstance(max_dist, int | float) and 0 < max_dist < float("inf")):
        raise ConfigError(
            f"max_dist must be a finite number > 0 (a fraction of the diagonal), got {max_dist!r}"
        )


def format_result(res: dict[str, Any]) -> str:
    """The human summary of a benchmark result: ODS / OIS / AP / R50 and where the ODS lies."""
    from imagexplore.edges.benchmark import unmatched_text

    head = f"{res.get('dataset', 'edges')}/{res.get('split', '')}: " if "dataset" in res else ""
    line = (
        f"{head}{res['images']} images  ODS F {res['ods']:.4f} (threshold {res['ods_threshold']:.3f}, "
        f"P {res['ods_precision']:.4f}, R {res['ods_recall']:.4f})  OIS F {res['ois']:.4f}  "
        f"AP (area under PR) {res['ap']:.4f}  R50 {res['r50']:.4f}"
    )
    only_pred, only_gt = res.get("unmatched_pred") or [], res.get("unmatched_gt") or []
    if only_pred or only_gt:
        line += f"  [{unmatched_text(res['images'], only_pred, only_gt)}; left out]"
    return line
