"""Chapter-3 evidence on the shapes world: the pretrained HED zero-shot, then HED vs RDS-Canny vs FCFN-edge
fine-tuned from the same initialisation (hed-bsds500) with the same budget; each scored with and without NMS.

Run: python experiments/chapter3_shapes.py [--recipe adam|sgd] [--iterations 300] [--val 50] [--seed 0]
Prints a markdown table and writes runs/chapter3_shapes[_seedN]/results.json. ``--seed`` is the training seed
(initialisation of new parts, data order, augmentation); the scenes, and so the held-out set, stay the same.
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
# --recipe sgd: the released SGD recipe (shapes_rds_sgd_quick.yaml) for all three, only model/labels changed
SGD_VARIANTS = {
    "HED": ["model.name=hed_vgg16", "data.options.relaxed=false"],
    "RDS-Canny": [],
    "FCFN-edge": ["model.name=fcfn_edge_vgg16"],
}


def scores(res: dict) -> dict:
    return {k: round(res[k], 4) for k in ("ods", "ois", "ap")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--val", type=int, default=50, help="held-out scenes scored")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--recipe", choices=["adam", "sgd"], default="adam", help="optimiser recipe of all three")
    ap.add_argument(
        "--seed", type=int, default=0, help="training seed (init of new parts, data order, augmentation)"
    )
    ap.add_argument("--out", default=None, help="default: runs/chapter3_shapes[_seedN]")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    suffix = ("_sgd" if args.recipe == "sgd" else "") + (f"_seed{args.seed}" if args.seed else "")
    out = Path(args.out or f"runs/chapter3_shapes{suffix}")
    common = dict(data="shapes", split="val", image_size=args.size, limit=args.val)
    rows = {}
    zero = {nms: evaluate(pretrained="hed-bsds500", nms=nms, **common) for nms in (True, False)}
    rows["HED-BSDS500, zero-shot"] = {"nms": scores(zero[True]), "no_nms": scores(zero[False]), "seconds": 0}
    for label, name in CONFIGS.items():
        variant = []
        if args.recipe == "sgd":
            name, variant = "shapes_rds_sgd_quick", SGD_VARIANTS[label]
        cfg = load_config(
            f"edges/{name}.yaml",
            [
                *variant,
                f"train.iterations={args.iterations}",
                f"data.val_samples={args.val}",
                f"data.image_size={args.size}",
                "train.tensorboard=false",
                f"train.seed={args.seed}",
            ],
        )
        run = out / label
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
