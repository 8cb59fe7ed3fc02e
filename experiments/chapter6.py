"""Chapter-6 evidence: CycleMatch's three embeddings alone, average and adaptive (and val-fitted) late fusion,
against the chapter-5 plain two-branch net and RRF-Net T = 3 at the same budget (the dataset's quick configs),
over seeds; and the feature-encoder study (`--encoders`).

Run: python experiments/chapter6.py --data shapes|openclipart [--seeds 0 1 2]
     python experiments/chapter6.py --data shapes --encoders [--seeds 0]
Writes runs/chapter6_<data>/results.json and prints markdown tables (mean ± std over seeds of R@1 both ways and
R@sum on the test split). The chapter-5 runs are reused from runs/chapter5_<data>/ when experiments/chapter5.py
made them (same configs, seeds and budget), else trained here.

The encoder study trains CycleMatch once per encoder pair, one side changed at a time from Lite0 head + MiniLM:
image side Lite0 head (1280-d) / Lite0 mid-stage (pooled 112-d stride-16 block) / a small CNN trained from scratch
on 32×32 pixels; text side MiniLM / a learned word-embedding + GRU / TF-IDF bag of words (training vocabulary).
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

KEYS = ("i2t_r1", "t2i_r1", "rsum")
FUSIONS = ("latent", "dual", "reconstructed", "average", "adaptive", "fitted")
ENCODER_STUDY = [  # (image encoder, text encoder); one side changed at a time
    ("lite0", "minilm"),
    ("lite0_mid", "minilm"),
    ("pixels", "minilm"),
    ("lite0", "tokens"),
    ("lite0", "bow"),
]


def summarise(rows: list[dict]) -> dict:
    return mean_std(rows, KEYS)


EXTRA: list[str] = []  # --set


def trained(config: str, run: Path, overrides: list[str]) -> Path:
    return ensure_trained(lambda: load_config(config, [*EXTRA, *overrides, "train.tensorboard=false"]), run)


def scores(run: Path, fusion: str | None = None) -> dict:
    r = evaluate(None, split="test", matchers=[Matcher.load(run, fusion=fusion)], progress=False)
    return {k: r[k] for k in KEYS} | ({"weights": r["fusion_weights"]} if "fusion_weights" in r else {})


def table(title: str, summary: dict) -> None:
    print(f"\n{title}\n| model | i→t R@1 | t→i R@1 | R@sum |\n|---|---|---|---|")
    for name, s in summary.items():
        print(
            f"| {name} | {s['i2t_r1']:.1f} ± {s['i2t_r1_std']:.1f} | {s['t2i_r1']:.1f} ± {s['t2i_r1_std']:.1f} | "
            f"{s['rsum']:.1f} ± {s['rsum_std']:.1f} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="shapes", choices=["shapes", "openclipart"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--encoders", action="store_true", help="the feature-encoder study instead")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="overrides of the base config, before each run's own",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    EXTRA.extend(args.set)
    out = Path(args.out or f"runs/chapter6_{args.data}")
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list] = {}
    if args.encoders:
        for seed in args.seeds:
            for image, text in ENCODER_STUDY:
                name = f"image {image}, text {text}"
                run = trained(
                    f"{args.data}_cyclematch_quick",
                    out / f"enc_{image}_{text}_seed{seed}",
                    [
                        f"train.seed={seed}",
                        f"data.options.image_encoder={image}",
                        f"data.options.text_encoder={text}",
                    ],
                )
                for fusion in ("latent", "average", "adaptive"):
                    rows.setdefault(f"{name}, {fusion}", []).append(scores(run, fusion) | {"seed": seed})
                print(
                    f"{name} seed {seed}: adaptive R@sum {rows[f'{name}, adaptive'][-1]['rsum']:.1f}",
                    flush=True,
                )
        summary = {n: summarise(r) for n, r in rows.items()}
        (out / "encoders.json").write_text(json.dumps({"rows": rows, "summary": summary}, indent=2))
        table(f"{args.data} test split, CycleMatch by feature encoder, {len(args.seeds)} seed(s)", summary)
        return

    ch5 = (
        Path(f"runs/chapter5_{args.data}") if not args.set else out / "chapter5"
    )  # reuse only at equal budget
    for seed in args.seeds:
        for steps, label in ((0, "plain two-branch (ch. 5)"), (3, "RRF-Net T=3 (ch. 5)")):
            run = trained(
                f"{args.data}_rrf_quick",
                ch5 / f"bi_rank_t{steps}_seed{seed}",
                [f"model.kwargs.steps={steps}", f"train.seed={seed}"],
            )
            rows.setdefault(label, []).append(scores(run) | {"seed": seed})
        run = trained(f"{args.data}_cyclematch_quick", out / f"cyclematch_seed{seed}", [f"train.seed={seed}"])
        for fusion in FUSIONS:
            rows.setdefault(f"CycleMatch, {fusion}", []).append(scores(run, fusion) | {"seed": seed})
        print(f"seed {seed}: " + ", ".join(f"{n} {r[-1]['rsum']:.1f}" for n, r in rows.items()), flush=True)
    summary = {n: summarise(r) for n, r in rows.items()}
    (out / "results.json").write_text(json.dumps({"rows": rows, "summary": summary}, indent=2))
    table(f"{args.data} test split, {len(args.seeds)} seed(s): mean ± std", summary)


if __name__ == "__main__":
    main()
