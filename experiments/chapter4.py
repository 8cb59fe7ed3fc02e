"""Chapter-4 evidence without the benchmarks: DeepIndex variants on real photos (Copydays-style edited copies and
same-scene pairs, `photo-copies`) and on shapes-world view groups (`shapes`).

Features are extracted once per set; every row then builds its own index from them. Rows: the raw-pixel baseline,
signature only, votes only and votes × signature in 1-D (high, and mid for the layer ablation) and 2-D (mid ×
high); then the codebook-size, patch-set and multiple-assignment ablations, and per-edit mAP on photo-copies.

Run: python experiments/chapter4.py [--patch-size 224] [--groups 40] [--distractors 0] [--out runs/chapter4]
Prints markdown tables and writes <out>/results.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from imagexplore.retrieval.evaluate import evaluate_index, evaluate_pixels, extract_benchmark, load_benchmark
from imagexplore.retrieval.features import load_backbone
from imagexplore.retrieval.index import IndexConfig
from imagexplore.retrieval.metrics import average_precision
from imagexplore.retrieval.querysets import EDITS, tuxpaint_stamps

ONE_D = IndexConfig(types=("high",), mode="1d")
TWO_D = IndexConfig(types=("mid", "high"), mode="2d")
MAIN_ROWS = {
    "1-D high, signature only": dataclasses.replace(ONE_D, scoring="signature"),
    "1-D high, votes only": dataclasses.replace(ONE_D, scoring="votes"),
    "1-D high, votes × signature": ONE_D,
    "1-D mid, votes × signature": IndexConfig(types=("mid",), mode="1d"),
    "2-D mid × high, votes only": dataclasses.replace(TWO_D, scoring="votes"),
    "2-D mid × high, votes × signature": TWO_D,
}


def per_query_ap(bench, rankings) -> np.ndarray:
    """AP of every query (photo-copies: to split mAP by edit)."""
    return np.array([average_precision(r, p, j) for r, p, j in zip(rankings, bench.positives, bench.junk)])


def run_set(name: str, bench, extractor, args) -> dict:
    start = time.perf_counter()
    feats = extract_benchmark(bench, extractor, batch_size=args.batch_size, progress=True)
    print(f"{name}: {len(bench.images)} images, {len(bench.queries)} queries, features in "
          f"{time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip
    out = {"notes": bench.notes, "images": len(bench.images), "queries": len(bench.queries)}
    out["main"] = {"raw pixels 16×16": evaluate_pixels(bench)["metrics"]["map"]}
    for label, cfg in MAIN_ROWS.items():
        out["main"][label] = evaluate_index(bench, feats, cfg)["metrics"]["map"]
    out["codebook"] = {}
    for k in args.ks:
        for label, base in (("1-D", ONE_D), ("2-D", TWO_D)):
            res = evaluate_index(bench, feats, dataclasses.replace(base, k=k, points_per_word=1))
            out["codebook"][f"{label} k={k}"] = {"map": res["metrics"]["map"], "k": res["k"]}
    out["patches"] = {
        f"{label} {p} patches": evaluate_index(bench, feats, cfg, patches=p)["metrics"]["map"]
        for p in (1, 5, 14)
        for label, cfg in (("1-D", ONE_D), ("2-D", TWO_D))
    }
    out["ma"] = {
        f"{label} ma={m}": evaluate_index(bench, feats, dataclasses.replace(cfg, ma=m))["metrics"]["map"]
        for m in (1, 3)
        for label, cfg in (("1-D", ONE_D), ("2-D", TWO_D))
    }
    if name == "photo-copies":
        kinds = [Path(q).stem.rsplit("__", 1)[1] for q in bench.queries]
        aps = {
            "raw pixels": per_query_ap(bench, evaluate_pixels(bench, keep_rankings=True)["rankings"]),
            "1-D": per_query_ap(bench, evaluate_index(bench, feats, ONE_D, keep_rankings=True)["rankings"]),
            "2-D": per_query_ap(bench, evaluate_index(bench, feats, TWO_D, keep_rankings=True)["rankings"]),
        }
        out["per_edit"] = {
            kind: {m: float(a[[k == kind for k in kinds]].mean()) for m, a in aps.items()}
            for kind in [*EDITS, "pair"]
            if kind in kinds
        }
    return out


def table(title: str, rows: dict) -> None:
    print(f"\n| {title} | mAP |\n|---|---|")
    for label, value in rows.items():
        v = value["map"] if isinstance(value, dict) else value
        extra = f" (k used {value['k']})" if isinstance(value, dict) else ""
        print(f"| {label}{extra} | {100 * v:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patch-size", type=int, default=224, help="CNN input per patch (Lite0: 224)")
    ap.add_argument("--groups", type=int, default=40, help="shapes scenes (4 views each)")
    ap.add_argument("--originals", type=int, default=24, help="photos queried by edited copies")
    ap.add_argument("--distractors", type=int, default=0, help="tuxpaint stamps added to photo-copies")
    ap.add_argument("--ks", type=int, nargs="+", default=[8, 32, 128, 512])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sets", nargs="+", default=["photo-copies", "shapes"])
    ap.add_argument("--out", default="runs/chapter4")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    extractor = load_backbone(input_size=args.patch_size)
    results = {"patch_size": args.patch_size, "backbone": "efficientnet-lite0"}
    for name in args.sets:
        if name == "shapes":
            options = {"groups": args.groups}
        else:
            options = {"originals": args.originals, "distractors": tuxpaint_stamps(args.distractors)}
        bench = load_benchmark(name, out / "data" / name, **options)
        results[name] = run_set(name, bench, extractor, args)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    for name in args.sets:
        res = results[name]
        print(f"\n### {name}: {res['images']} database images, {res['queries']} queries")
        table("method", res["main"])
        table("codebook", res["codebook"])
        table("patches", res["patches"])
        table("multiple assignment", res["ma"])
        if "per_edit" in res:
            methods = list(next(iter(res["per_edit"].values())))
            print("\n| edit | " + " | ".join(methods) + " |\n|---|" + "---|" * len(methods))
            for kind, row in res["per_edit"].items():
                print(f"| {kind} | " + " | ".join(f"{100 * row[m]:.2f}" for m in methods) + " |")


if __name__ == "__main__":
    main()
