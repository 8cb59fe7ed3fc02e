"""Chapter-2 evidence on the shapes world: CFN vs plain classification over seeds (same configs, same budget).

Run: python experiments/chapter2_shapes.py [--seeds 0 1 2] [--threads 2]
Prints a markdown table (per seed and mean ± std) and writes runs/chapter2_shapes.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from imagexplore.classification.train import train
from imagexplore.config import load_config


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/chapter2_shapes")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, list[dict]] = {}
    for name in ("shapes_cfn_quick", "shapes_plain_quick"):
        for seed in args.seeds:
            # the seed moves everything: the model's init, the data order and the generated scenes
            cfg = load_config(
                f"classify/{name}.yaml",
                [f"train.seed={seed}", f"data.seed={seed}", "train.tensorboard=false"],
            )
            s = train(cfg, Path(args.out) / f"{name}_seed{seed}", show_progress=False)
            results.setdefault(name, []).append(
                {
                    "seed": seed,
                    "acc1": s["final"]["val/acc1"],
                    "best_acc1": s["best"]["value"],
                    "seconds": s["seconds"],
                }
            )
            print(
                f"{name} seed {seed}: final acc {s['final']['val/acc1']:.4f} ({s['seconds']:.0f} s)",
                flush=True,
            )
    print("\n| config | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean ± std |")
    print("|---|" + "---|" * (len(args.seeds) + 1))
    for name, rows in results.items():
        accs = [r["acc1"] for r in rows]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        cells = " | ".join(f"{100 * a:.1f}" for a in accs)
        print(f"| {name} | {cells} | {100 * statistics.mean(accs):.1f} ± {100 * std:.1f} |")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
