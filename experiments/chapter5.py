"""Chapter-5 evidence: zero-shot floor, plain two-branch, RRF T = 1…4 and the T = 1…4 ensemble, each with the
bi-rank loss and with VSE++ max-violation, at equal budget (the dataset's quick config), over seeds.

Run: python experiments/chapter5.py --data shapes|openclipart|tuxpaint [--seeds 0 1 2] [--steps 0 1 2 3 4]
     [--losses bi_rank vsepp_max] [--cross tuxpaint] [--iterations N]
Writes runs/chapter5_<data>/results.json and prints a markdown table: mean ± std over seeds of R@1 both ways and
R@sum on the test split. ``--cross tuxpaint`` also scores every model trained on Open Clip Art on all 785 Tux
Paint stamps (a cross-set test). Features are extracted once per split (cached); training reads the cache.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from common import ensure_trained, mean_std
from imagexplore.config import load_config
from imagexplore.matching.evaluate import evaluate
from imagexplore.matching.matcher import Matcher
from imagexplore.matching.train import (
    cache_root,
    config_features,
    encoders_from_options,
    split_features,
    split_options,
)
from imagexplore.matching.zeroshot import zero_shot_recalls

LOSS_CONFIG = {"bi_rank": "rrf", "vsepp_max": "vsepp"}
KEYS = ("i2t_r1", "t2i_r1", "rsum")


def label(steps: int) -> str:
    return "plain (T=0)" if steps == 0 else f"RRF T={steps}"


def summarise(rows: list[dict]) -> dict:
    return mean_std(rows, KEYS)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="shapes", choices=["shapes", "openclipart", "tuxpaint"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--losses", nargs="+", default=["bi_rank", "vsepp_max"], choices=list(LOSS_CONFIG))
    ap.add_argument("--iterations", type=int, default=None, help="default: the quick config's")
    ap.add_argument("--cross", default=None, choices=["tuxpaint"], help="also score on this whole set")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out or f"runs/chapter5_{args.data}")
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"data": args.data, "seeds": args.seeds, "rows": {}, "cross": {}}

    # zero-shot floor on the test split (and on the cross set)
    cfg = load_config(f"{args.data}_rrf_quick")
    test = config_features(cfg, "test")
    ienc, tenc = encoders_from_options(split_options(dict(cfg.data.options))[0])
    results["zero_shot"] = {k: round(v, 2) for k, v in zero_shot_recalls(test).items()}
    if args.cross:
        cross = split_features(args.cross, None, "test", {}, ienc, tenc, cache_root())
        results["cross_zero_shot"] = {k: round(v, 2) for k, v in zero_shot_recalls(cross).items()}
    print(f"zero-shot floor: {results['zero_shot']}", flush=True)

    for loss in args.losses:
        for seed in args.seeds:
            ens = []
            for steps in args.steps:
                name = f"{label(steps)}, {loss}"
                run = out / f"{loss}_t{steps}_seed{seed}"
                overrides = [f"model.kwargs.steps={steps}", f"train.seed={seed}", "train.tensorboard=false"]
                if args.iterations:
                    overrides.append(f"train.iterations={args.iterations}")
                config = f"{args.data}_{LOSS_CONFIG[loss]}_quick"
                ensure_trained(lambda: load_config(config, overrides), run)  # noqa: B023 (called at once)
                m = Matcher.load(run)
                r = evaluate(None, split="test", matchers=[m], progress=False)
                results["rows"].setdefault(name, []).append({k: r[k] for k in KEYS} | {"seed": seed})
                if args.cross:
                    c = evaluate(
                        None, data=args.cross, split="test", matchers=[m], progress=False, reader_options={}
                    )
                    results["cross"].setdefault(name, []).append({k: c[k] for k in KEYS} | {"seed": seed})
                print(f"{name} seed {seed}: R@sum {r['rsum']:.1f}", flush=True)
                if steps > 0:
                    ens.append(m)
            if len(ens) > 1:
                name = f"RRF T={'+'.join(str(s) for s in args.steps if s)} ensemble, {loss}"
                r = evaluate(None, split="test", matchers=ens, progress=False)
                results["rows"].setdefault(name, []).append({k: r[k] for k in KEYS} | {"seed": seed})
                if args.cross:
                    c = evaluate(
                        None, data=args.cross, split="test", matchers=ens, progress=False, reader_options={}
                    )
                    results["cross"].setdefault(name, []).append({k: c[k] for k in KEYS} | {"seed": seed})
                print(f"{name} seed {seed}: R@sum {r['rsum']:.1f}", flush=True)

    results["summary"] = {name: summarise(rows) for name, rows in results["rows"].items()}
    results["cross_summary"] = {name: summarise(rows) for name, rows in results["cross"].items()}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    zs = results["zero_shot"]
    print(f"\n{args.data} test split, {len(args.seeds)} seed(s): mean ± std")
    print("| model | i→t R@1 | t→i R@1 | R@sum |\n|---|---|---|---|")
    print(
        f"| zero-shot floor (ImageNet softmax → MiniLM class names) | {zs['i2t_r1']:.1f} | {zs['t2i_r1']:.1f} | {zs['rsum']:.1f} |"
    )
    for name, s in results["summary"].items():
        print(
            f"| {name} | {s['i2t_r1']:.1f} ± {s['i2t_r1_std']:.1f} | {s['t2i_r1']:.1f} ± {s['t2i_r1_std']:.1f} | "
            f"{s['rsum']:.1f} ± {s['rsum_std']:.1f} |"
        )
    if args.cross:
        zs = results["cross_zero_shot"]
        print(f"\ncross-set: {args.cross} (all), models trained on {args.data}")
        print("| model | i→t R@1 | t→i R@1 | R@sum |\n|---|---|---|---|")
        print(f"| zero-shot floor | {zs['i2t_r1']:.1f} | {zs['t2i_r1']:.1f} | {zs['rsum']:.1f} |")
        for name, s in results["cross_summary"].items():
            print(
                f"| {name} | {s['i2t_r1']:.1f} ± {s['i2t_r1_std']:.1f} | {s['t2i_r1']:.1f} ± {s['t2i_r1_std']:.1f} | "
                f"{s['rsum']:.1f} ± {s['rsum_std']:.1f} |"
            )


if __name__ == "__main__":
    main()
