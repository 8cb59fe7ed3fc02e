"""Fashion-MNIST recipe sweep behind configs/classify/fashion_mnist_*.yaml (9 epochs per variant).

Run on a GPU (about 30 s per variant on an H200): PYTHONPATH=src python3 experiments/fashion_mnist_sweep.py
    [--root DIR_WITH_IDX_FILES] [--device cuda] [--only NAME ...]
Prints one "SWEEP name final ... per-epoch [...]" line per variant. No fusion lr multipliers here.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from imagexplore.classification.train import train
from imagexplore.config import load_config

CFN, PLAIN = "model.name=cfn_cifar10", "model.name=plain_cifar10"


def kw(width: float, drop: float | None = None) -> str:
    d = "" if drop is None else f", drop_rate: {drop}"
    return f"model.kwargs={{width_mult: {width}, norm: true{d}}}"


VARIANTS = {
    "cfn_w25_d5_aug": [CFN, kw(0.25), "data.augment=true"],
    "cfn_w25_d2_aug": [CFN, kw(0.25, 0.2), "data.augment=true"],
    "plain_w25_d2_aug": [PLAIN, kw(0.25, 0.2), "data.augment=true"],
    "cfn_w25_d2_noaug": [CFN, kw(0.25, 0.2)],
    "cfn_w375_d2_aug": [CFN, kw(0.375, 0.2), "data.augment=true"],
    "cfn_w25_d2_aug_sgd": [
        CFN,
        kw(0.25, 0.2),
        "data.augment=true",
        "optim.name=sgd",
        "optim.lr=0.1",
        "optim.nesterov=true",
    ],
    "cfn_w375_d2_noaug": [CFN, kw(0.375, 0.2)],
    "cfn_w5_d2_noaug": [CFN, kw(0.5, 0.2)],
    "cfn_w25_d3_noaug_b256_lr4": [CFN, kw(0.25, 0.3), "data.batch_size=256", "optim.lr=0.004"],
    "cfn_w25_d2_noaug_7ep": [CFN, kw(0.25, 0.2), "train.epochs=7"],
    "cfn_w375_d3_noaug_b256": [CFN, kw(0.375, 0.3), "data.batch_size=256"],
    "plain_w375_d2_noaug": [PLAIN, kw(0.375, 0.2)],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=None, help="folder of the idx files (default: found automatically)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--only", nargs="*", default=None, choices=sorted(VARIANTS))
    args = ap.parse_args()
    base = [
        "data.name=fashion_mnist",
        f"data.root={args.root or 'null'}",
        "data.image_size=null",
        "data.train_samples=null",
        "data.val_samples=null",
        "data.val_split=test",
        "data.batch_size=128",
        "data.workers=4",
        "train.epochs=9",
        f"train.device={args.device}",
        "train.tensorboard=false",
        "train.log_every=100",
        "schedule.name=cosine",
        "schedule.warmup_iters=200",
        "optim.name=adamw",
        "optim.lr=0.003",
        "optim.weight_decay=0.0005",
    ]
    for name in args.only or VARIANTS:
        t0 = time.time()
        run_dir = tempfile.mkdtemp()
        summary = train(load_config(None, base + VARIANTS[name]), run_dir, show_progress=False)
        accs = [json.loads(line).get("val/acc1") for line in open(f"{run_dir}/metrics.jsonl")]
        accs = [round(a, 4) for a in accs if a is not None]
        print(
            "SWEEP",
            name,
            "final",
            summary["final"]["val/acc1"],
            "per-epoch",
            accs,
            f"{time.time() - t0:.0f}s",
            flush=True,
        )


if __name__ == "__main__":
    main()
