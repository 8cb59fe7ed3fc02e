"""Chapter-8 evidence on the shapes world: each model's quick config over seeds against its trivial baseline.

Run: python experiments/chapter8.py [--seeds 0 1 2] [--only translation|tuxpaint|swap] [--limit 200] [--report]
Writes runs/chapter8/results.json and prints markdown tables (mean ± std over seeds, test split):

- label → photo: pix2pix vs the instantiation network (equal data, generator size, iterations) vs the identity
  baseline: FCN-score (the FCFN segmenter of configs/segment/shapes_fcfn_quick.yaml, trained here once on the
  same 4-class world), Lite0 Fréchet distance, SSIM / L1, and the instantiation network's sample diversity;
- real sketch → photo on the Tux Paint stamps (XDoG sketches): pix2pix (tuxpaint_sketch2photo_quick) vs the
  identity baseline: SSIM, L1, Lite0 Fréchet distance (needs `make data`);
- clothes swap: SwapGAN vs its single-generator pix2pix baseline (shapes_swap_pix2pix_quick) vs copy-paste:
  SSIM, mask L1 and Lite0 Fréchet distance against the exact swap (persons of the test split never seen).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from common import mean_std
from imagexplore.config import load_config
from imagexplore.synthesis.evaluate import evaluate

KEYS = ("fcn_pixel_acc", "fcn_mean_acc", "fcn_miou", "fd_lite0", "ssim", "l1", "diversity_l1", "mask_l1")
TRANSLATION = {"pix2pix": "shapes_pix2pix_quick", "instantiation network": "shapes_instantiation_quick"}
SWAP = {"SwapGAN": "shapes_swapgan_quick", "pix2pix on (I_B, P_A, K_A)": "shapes_swap_pix2pix_quick"}


def trained(config: str, run: Path, overrides: list[str], task: str = "synth") -> Path:
    """Train unless finished (summary.json); an interrupted run resumes."""
    if not (run / "summary.json").is_file():
        from imagexplore.tasks import get_task

        cfg = load_config(f"{task}/{config}.yaml", overrides)
        get_task(task).load("train")(cfg, run, resume="auto", show_progress=False)
    return run


def cell(s: dict, k: str) -> str:
    if k not in s:
        return "—"
    fmt = "{:.1f}" if k == "fd_lite0" else "{:.3f}"  # a distance in feature units; the rest in [0, 1]
    text = fmt.format(s[k])
    return text + " ± " + fmt.format(s[k + "_std"]) if s["seeds"] > 1 else text


def table(title: str, summary: dict, keys: list[str]) -> None:
    print(f"\n{title}\n| model | " + " | ".join(keys) + " |\n" + "|---" * (len(keys) + 1) + "|")
    for name, s in summary.items():
        seeds = f"{s['seeds']} seed{'s' if s['seeds'] > 1 else ''}"
        print(f"| {name} ({seeds}) | " + " | ".join(cell(s, k) for k in keys) + " |")


def report(rows: dict) -> dict:
    """Mean ± std over seeds of every row (4 decimals), printed as the three markdown tables."""
    summary = {n: mean_std(r, KEYS, digits=4) | {"seeds": len(r)} for n, r in rows.items()}
    labels = [n for n in summary if n in TRANSLATION or n.startswith("identity")]
    tux = [n for n in summary if n.startswith("Tux Paint")]
    swaps = [n for n in summary if n not in labels and n not in tux]
    keys = ["fcn_pixel_acc", "fcn_mean_acc", "fcn_miou", "fd_lite0", "ssim", "l1", "diversity_l1"]
    table("shapes label → photo, test split", {n: summary[n] for n in labels}, keys)
    table("Tux Paint sketch → photo, test split", {n: summary[n] for n in tux}, ["ssim", "l1", "fd_lite0"])
    swap_keys = ["ssim", "mask_l1", "l1", "fd_lite0"]
    table("shapes clothes swap, test split", {n: summary[n] for n in swaps}, swap_keys)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--only", choices=["translation", "tuxpaint", "swap"], default=None)
    ap.add_argument("--limit", type=int, default=200, help="test items scored per model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/chapter8")
    ap.add_argument("--report", action="store_true", help="only print the tables of OUT/results.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.report:
        report(json.loads((out / "results.json").read_text())["rows"])
        return
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list] = {}
    common = {"num_samples": args.limit, "progress": False}

    if args.only in (None, "translation"):
        seg = trained("shapes_fcfn_quick", out / "segmenter", ["train.seed=0"], task="segment")
        base = evaluate(
            config=f"synth/{TRANSLATION['pix2pix']}.yaml", baseline="identity", segmenter=seg, **common
        )
        rows["identity (label map as the photo)"] = [base]
        for seed in args.seeds:
            for name, config in TRANSLATION.items():
                run = trained(config, out / f"{config}_seed{seed}", [f"train.seed={seed}"])
                rows.setdefault(name, []).append(evaluate(run, segmenter=seg, **common) | {"seed": seed})
                print(f"{name} seed {seed}: {rows[name][-1]}", flush=True)
    if args.only in (None, "tuxpaint"):
        config = "tuxpaint_sketch2photo_quick"
        rows["Tux Paint: identity (sketch as the photo)"] = [
            evaluate(config=f"synth/{config}.yaml", baseline="identity", **common)
        ]
        for seed in args.seeds:
            run = trained(config, out / f"{config}_seed{seed}", [f"train.seed={seed}"])
            rows.setdefault("Tux Paint: pix2pix", []).append(evaluate(run, **common) | {"seed": seed})
            print(f"Tux Paint pix2pix seed {seed}: {rows['Tux Paint: pix2pix'][-1]}", flush=True)
    if args.only in (None, "swap"):
        rows["copy-paste"] = [
            evaluate(config=f"synth/{SWAP['SwapGAN']}.yaml", baseline="copy-paste", **common)
        ]
        for seed in args.seeds:
            for name, config in SWAP.items():
                run = trained(config, out / f"{config}_seed{seed}", [f"train.seed={seed}"])
                rows.setdefault(name, []).append(evaluate(run, **common) | {"seed": seed})
                print(f"{name} seed {seed}: {rows[name][-1]}", flush=True)
    if args.only and (out / "results.json").is_file():  # keep the other sections' rows from an earlier run
        rows = json.loads((out / "results.json").read_text())["rows"] | rows
    summary = report(rows)
    (out / "results.json").write_text(json.dumps({"rows": rows, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
