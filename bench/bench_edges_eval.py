"""Boundary benchmark speed: our `evaluate_image` vs pyEdgeEval on the same inputs, same number of processes.

Inputs: full-size 321×481 soft edge maps (blurred shapes-world boundaries with texture responses and missed
parts, 8-bit) against 5 jittered annotators, 99 thresholds, thinning on, no NMS. Both run in this process
(or in `--workers` processes each), one after the other; prints per-image seconds, the ratio and both scores.
Writes bench/results/edges_eval.json.
Run: python bench/bench_edges_eval.py [--quick] [--images N] [--workers W] [--source shapes|hed] [--json]
``--source hed``: the edge maps are the pretrained HED-BSDS500's output on the scenes' images (realistic).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from imagexplore.data.shapes import ShapesWorld
from imagexplore.edges.benchmark import collect, evaluate_image, thresholds_of

H, W, TILE = 321, 481, 256


def _shapes_image(k: int, annotators: int) -> tuple[np.ndarray, np.ndarray]:
    """2×2 tiled 256-px scenes cropped to 321×481 (the world renders squares of at most 256 px)."""
    world = ShapesWorld(seed=7, size=TILE, num_annotators=annotators, max_objects=6)
    sc = [world.render(4 * k + j, ("edges", "annotators")) for j in range(4)]
    edges = np.block([[sc[0]["edges"], sc[1]["edges"]], [sc[2]["edges"], sc[3]["edges"]]])[:H, :W]
    gts = np.stack(
        [
            np.block(
                [
                    [sc[0]["annotators"][a], sc[1]["annotators"][a]],
                    [sc[2]["annotators"][a], sc[3]["annotators"][a]],
                ]
            )
            for a in range(annotators)
        ]
    )[:, :H, :W]
    rng = np.random.default_rng(k)
    soft = gaussian_filter(edges.astype(float), 1.5) * 3 * rng.uniform(0.4, 1.0, edges.shape)
    soft *= gaussian_filter(rng.random(edges.shape), 8) > 0.42  # missed parts
    soft += 0.45 * np.clip(gaussian_filter(rng.standard_normal(edges.shape), 2) * 3, 0, None)  # texture
    return np.round(np.clip(soft, 0, 1) * 255).astype(np.uint8), gts


def _hed_image(k: int, annotators: int, model) -> tuple[np.ndarray, np.ndarray]:
    """The pretrained HED's fused map of the same tiled 321×481 scene (real detector output, not synthetic)."""
    from imagexplore.edges.pretrained import predict_edges

    world = ShapesWorld(seed=7, size=TILE, num_annotators=annotators, max_objects=6)
    sc = [world.render(4 * k + j, ("image",)) for j in range(4)]
    top = np.concatenate([sc[0]["image"], sc[1]["image"]], axis=1)
    bottom = np.concatenate([sc[2]["image"], sc[3]["image"]], axis=1)
    image = np.concatenate([top, bottom], axis=0)[:H, :W]
    prob = predict_edges(model, image)
    return np.round(np.clip(prob, 0, 1) * 255).astype(np.uint8), _shapes_image(k, annotators)[1]


def make_inputs(n: int, source: str = "shapes", annotators: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """n (uint8 H×W edge map, bool A×H×W ground truth) pairs: synthetic soft maps (``shapes``) or the
    pretrained HED-BSDS500 run on the scenes' images (``hed``)."""
    if source == "shapes":
        return [_shapes_image(k, annotators) for k in range(n)]
    if source == "hed":
        from imagexplore.edges.pretrained import load_pretrained

        model = load_pretrained("hed-bsds500")
        return [_hed_image(k, annotators, model) for k in range(n)]
    raise SystemExit(f"--source {source}: choose shapes or hed")


def ours(args: tuple) -> np.ndarray:
    pred, gts, nt = args
    return evaluate_image(pred / 255.0, gts, nt)


def theirs(args: tuple) -> np.ndarray:
    from pyEdgeEval.common.binary_label import evaluate_boundaries_threshold_multiple_gts

    pred, gts, nt = args
    out = evaluate_boundaries_threshold_multiple_gts(
        thresholds_of(nt), pred / 255.0, list(gts), max_dist=0.0075
    )
    return np.stack(out, axis=1).astype(np.int64)


def timed(fn, jobs: list, workers: int) -> tuple[float, list[np.ndarray]]:
    t0 = time.perf_counter()
    if workers > 1:
        with ProcessPoolExecutor(workers) as ex:
            out = list(ex.map(fn, jobs))
    else:
        out = [fn(j) for j in jobs]
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="3 images")
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--thresholds", type=int, default=99)
    ap.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes, the same for both (default: all cores)",
    )
    ap.add_argument("--source", default="shapes")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--profile", action="store_true", help="only profile ours on the first image (cProfile)")
    args = ap.parse_args()
    if args.profile:
        import cProfile
        import pstats

        pred, gts = make_inputs(1, args.source)[0]
        with cProfile.Profile() as prof:
            evaluate_image(pred / 255.0, gts, args.thresholds)
        pstats.Stats(prof).sort_stats("cumtime").print_stats(8)
        return
    n = 3 if args.quick else args.images
    jobs = [(p, g, args.thresholds) for p, g in make_inputs(n, args.source)]
    res = {"benchmark": "edges_eval", "images": n, "size": [H, W], "thresholds": args.thresholds}
    res["workers"] = args.workers
    t_ours, c_ours = timed(ours, jobs, args.workers)
    s_ours = collect(args.thresholds, c_ours)
    res["ours"] = {"s_per_image": t_ours / n} | {k: s_ours[k] for k in ("ods", "ois", "ap")}
    try:
        import pyEdgeEval  # noqa: F401
    except ImportError:
        print("pyEdgeEval is not installed: pip install -e '.[bench]' to compare; timing ours only")
    else:
        t_ref, c_ref = timed(theirs, jobs, args.workers)
        s_ref = collect(args.thresholds, c_ref)
        res["pyedgeeval"] = {"s_per_image": t_ref / n} | {k: s_ref[k] for k in ("ods", "ois", "ap")}
        res["speedup"] = t_ref / t_ours
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{n} images {H}×{W}, 5 annotators, {args.thresholds} thresholds, {args.workers} process(es)")
        for k in ("ours", "pyedgeeval"):
            if k in res:
                r = res[k]
                print(
                    f"  {k:10s} {r['s_per_image']:.3f} s/image  "
                    f"ODS {r['ods']:.4f}  OIS {r['ois']:.4f}  AP {r['ap']:.4f}"
                )
        if "speedup" in res:
            print(f"  speed-up (pyEdgeEval time / ours): {res['speedup']:.1f}x")
    out = Path(__file__).parent / "results" / "edges_eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
