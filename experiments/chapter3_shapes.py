"""Chapter-3 evidence on the shapes world: the pretrained HED zero-shot, then HED vs RDS-Canny vs FCFN-edge
fine-tuned from the same initialisation (hed-bsds500) with the same budget; each scored with and without NMS.

Run: python experiments/chapter3_shapes.py [--iterations 300] [--val 50] [--threads 2]
Prints a markdown table and writes runs/chapter3_shapes/results.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from imagexplore.config import load_config
from imagexplore.edges.evaluate import evaluate
from imagexplore.edges.train import train

CONFIGS = {"HED": "shapes_hed_quick", "RDS-Canny": "shapes_rds_quick", "FCFN-edge": "shapes_fcfn_quick"}


def scores(res: dict) -> dict:
    return {k: round(res[k], 4) for k in ("ods", "ois", "ap")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--val", type=int, default=50, help="held-out scenes scored")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/chapter3_shapes")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    common = dict(data="shapes", split="val", image_size=args.size, limit=args.val)
    rows = {}
    zero = {nms: evaluate(pretrained="hed-bsds500", nms=nms, **common) for nms in (True, False)}
    rows["HED-BSDS500, zero-shot"] = {"nms": scores(zero[True]), "no_nms": scores(zero[False]), "seconds": 0}
    for label, name in CONFIGS.items():
        cfg = load_config(
            f"edges/{name}.yaml",
            [
                f"train.iterations={args.iterations}",
                f"data.val_samples={args.val}",
                f"data.image_size={args.size}",
                "train.tensorboard=false",
            ],
        )
        run = out / name
        if run.exists():
            shutil.rmtree(run)
        summary = train(cfg, run, show_progress=False)
        ck = run / "checkpoints" / "last.pt"  # the end of the budget, not a checkpoint picked on val
        res = {nms: evaluate(checkpoint=ck, nms=nms, **common) for nms in (True, False)}
        rows[label] = {
            "nms": scores(res[True]),
            "no_nms": scores(res[False]),
            "seconds": round(summary["seconds"], 1),
        }
        print(label, rows[label], flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    print(f"\n{args.val} held-out {args.size}-px scenes, {args.iterations} iterations of batch 4 per model\n")
    print("| model | ODS | OIS | AP | ODS no NMS | OIS no NMS | AP no NMS | train s |")
    print("|---|---|---|---|---|---|---|---|")
    for label, r in rows.items():
        a, b = r["nms"], r["no_nms"]
        print(
            f"| {label} | {a['ods']:.3f} | {a['ois']:.3f} | {a['ap']:.3f} | {b['ods']:.3f} | {b['ois']:.3f} "
            f"| {b['ap']:.3f} | {r['seconds']} |"
        )


if __name__ == "__main__":
    main()
