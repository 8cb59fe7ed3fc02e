"""Chapter-7 evidence: joint matching and classification (JMC) against its parts trained alone, at the same budget
(the dataset's `*_jmc_quick.yaml`), over seeds; then the parameter analysis (λ, the classifier's fusion), the
component analysis (one part left out) and the computational cost.

Run: python experiments/chapter7.py --data openclipart|tuxpaint|shapes [--seeds 0 1 2] [--analysis] [--only TEXT...]
Writes runs/chapter7_<data>/results.json and prints markdown tables: accuracy of the fused, image-only and text-only
classifiers and matching R@sum on the test split (mean ± std over seeds).

Baselines, each the JMC config with overrides (same data, features, iterations, optimiser):
- image-only / text-only classifier trained alone: `classify: image|text`, no stages, no matching loss;
- matching trained alone: no stages, no classification loss (the chapter-5 plain two-branch net).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from common import ensure_trained, mean_std
from imagexplore.config import load_config
from imagexplore.matching.evaluate import evaluate
from imagexplore.matching.matcher import Matcher

KEYS = ("acc_fused", "acc_image", "acc_text", "rsum")
ALONE = ["train.stages=[]", "train.best_metric=val/rsum"]
VARIANTS = {
    "JMC (three stages)": [],
    "image-only classifier, trained alone": [
        "model.kwargs.classify=image",
        "loss.match_weight=0",
        "train.stages=[]",
        "train.best_metric=val/acc_image",
    ],
    "text-only classifier, trained alone": [
        "model.kwargs.classify=text",
        "loss.match_weight=0",
        "train.stages=[]",
        "train.best_metric=val/acc_text",
    ],
    "matching trained alone": ["loss.cls_weight=0", *ALONE],
}
# what each baseline trains: its other heads stay at their random initialisation, so their numbers mean nothing
# and the table prints "—" for them (results.json keeps them all)
TRAINED = {
    "image-only classifier, trained alone": ("acc_image",),
    "text-only classifier, trained alone": ("acc_text",),
    "matching trained alone": ("rsum",),
}
ANALYSIS = {  # one seed each: the parameter analysis, then the component analysis
    "λ = 0.1": ["loss.cls_weight=0.1"],
    "λ = 10": ["loss.cls_weight=10"],
    "fusion concat": ["model.kwargs.cls_fusion=concat"],
    "fusion sum": ["model.kwargs.cls_fusion=sum"],
    "fusion product": ["model.kwargs.cls_fusion=product"],
    "+ auxiliary unimodal classifiers": ["model.kwargs.aux=true"],
    "no stage 1 (classifier from the start)": ["train.stages[1].start=0"],
    "no stage 2 (joint right after matching)": [
        "train.stages[1].loss_weights={}",
        "train.stages[1].freeze=[]",
    ],
    "one stage (everything jointly throughout)": ["train.stages=[]"],
}


def summarise(rows: list[dict]) -> dict:
    return mean_std(rows, KEYS)


def cost(run: Path) -> dict:
    """Parameters and the time to score one image–caption pair (embed both, classify the fused pair)."""
    m = Matcher.load(run)
    params = sum(p.numel() for p in m.model.parameters())
    x = torch.randn(256, m.meta["image_dim"])
    y = torch.randn(256, m.meta["text_dim"])
    with torch.inference_mode():
        m.model(x, y)
        t0 = time.perf_counter()
        for _ in range(5):
            e_v, e_t = m.model(x, y)
            m.model.logits(e_v, e_t)
        ms = (time.perf_counter() - t0) / (5 * 256) * 1000
    return {"params": params, "ms_per_pair": round(ms, 4)}


def fmt(s: dict, k: str, name: str) -> str:
    if k not in s or k not in TRAINED.get(name, KEYS):
        return "—"
    return f"{s[k]:.1f} ± {s[k + '_std']:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="shapes", choices=["shapes", "openclipart", "tuxpaint"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument(
        "--analysis", action="store_true", help="also the parameter and component analysis (seed 0)"
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="overrides of the base config, before each variant's own",
    )
    ap.add_argument(
        "--only",
        nargs="+",
        default=None,
        metavar="TEXT",
        help="run only the variants whose name contains one of these (e.g. --only 'no stage 2' 'one stage')",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out or f"runs/chapter7_{args.data}")
    out.mkdir(parents=True, exist_ok=True)
    config = f"{args.data}_jmc_quick"
    runs = dict(VARIANTS)
    plan = [(name, seed) for seed in args.seeds for name in runs]
    if args.analysis:
        runs.update(ANALYSIS)
        plan += [(name, args.seeds[0]) for name in ANALYSIS]
    if args.only:
        plan = [(n, s) for n, s in plan if any(t.lower() in n.lower() for t in args.only)]
        if not plan:
            ap.error(f"--only {args.only} matches no variant of: {', '.join(runs)}")
    rows: dict[str, list] = {}
    costs: dict[str, dict] = {}
    for name, seed in plan:
        slug = "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")
        run = out / f"{slug}_seed{seed}"
        overrides = [*args.set, *runs[name], f"train.seed={seed}", "train.tensorboard=false"]
        ensure_trained(lambda: load_config(config, overrides), run)  # noqa: B023 (called at once)
        r = evaluate(None, split="test", matchers=[Matcher.load(run)], progress=False)
        rows.setdefault(name, []).append({k: r[k] for k in KEYS if k in r} | {"seed": seed})
        costs.setdefault(name, cost(run))
        print(f"{name} seed {seed}: " + ", ".join(f"{k} {r[k]:.1f}" for k in KEYS if k in r), flush=True)
    summary = {n: summarise(r) for n, r in rows.items()}
    (out / "results.json").write_text(json.dumps({"rows": rows, "summary": summary, "cost": costs}, indent=2))
    print(f"\n{args.data} test split, mean ± std over the seeds run")
    print("| model | fused acc % | image-only acc % | text-only acc % | R@sum | params | ms / pair |")
    print("|---|---|---|---|---|---|---|")
    for name, s in summary.items():
        c = costs[name]
        print(
            f"| {name} ({len(rows[name])} seed{'s' if len(rows[name]) > 1 else ''}) | {fmt(s, 'acc_fused', name)} | "
            f"{fmt(s, 'acc_image', name)} | {fmt(s, 'acc_text', name)} | {fmt(s, 'rsum', name)} | {c['params'] / 1e6:.2f} M | "
            f"{c['ms_per_pair']:.3f} |"
        )


if __name__ == "__main__":
    main()
