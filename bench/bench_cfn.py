"""CFN vs plain at CIFAR size on the CPU: training-step time ratio (target ≤ 1.10), inference throughput, and the
data pipeline's rate against the step rate (the loader must not starve the model).

Both nets are measured in the same run, interleaved, median of repeats; writes bench/results/cfn.json.
Run: python bench/bench_cfn.py [--quick] [--width-mult W]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from imagexplore import models
from imagexplore.classification.preprocess import GCNZCA
from imagexplore.data.shapes import ShapesClassification


def train_rate(model, x, y, steps: int) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return x.shape[0] * steps / (time.perf_counter() - t0)


@torch.inference_mode()
def infer_rate(model, x, steps: int) -> float:
    model.eval()
    model(x)
    t0 = time.perf_counter()
    for _ in range(steps):
        model(x)
    return x.shape[0] * steps / (time.perf_counter() - t0)


def pipeline_rate(n: int, batch: int) -> float:
    """Images/s of the GPU-free input pipeline: shapes-world generation + GCN/ZCA whitening of batches."""
    ds = ShapesClassification(n, size=32, seed=0)
    zca = GCNZCA.fit(ShapesClassification(400, size=32, seed=1), max_samples=400)
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        x = torch.stack([ds[i][0] for i in range(start, min(n, start + batch))])
        zca(x)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--width-mult", type=float, default=1.0, help="1.0 = the thesis widths")
    args = ap.parse_args()
    torch.set_num_threads(2)
    batch, steps, repeats = (32, 3, 3) if args.quick else (64, 5, 5)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    nets = {
        n: models.create(n, num_classes=10, width_mult=args.width_mult)
        for n in ("cfn_cifar10", "plain_cifar10")
    }
    train = {n: [] for n in nets}
    infer = {n: [] for n in nets}
    for _ in range(repeats):  # interleaved so machine noise hits both alike
        for n, m in nets.items():
            train[n].append(train_rate(m, x, y, steps))
            infer[n].append(infer_rate(m, x, steps))
    tr = {n: statistics.median(v) for n, v in train.items()}
    inf = {n: statistics.median(v) for n, v in infer.items()}
    ratio = tr["plain_cifar10"] / tr["cfn_cifar10"]  # step time CFN / plain
    pipe = pipeline_rate(256 if args.quick else 1024, batch)
    res = {
        "benchmark": "cfn_vs_plain_cpu",
        "width_mult": args.width_mult,
        "batch": batch,
        "train_images_per_s": tr,
        "inference_images_per_s": inf,
        "step_time_ratio_cfn_over_plain": round(ratio, 4),
        "target_ratio": 1.10,
        "pipeline_images_per_s": round(pipe, 1),
        "pipeline_over_cfn_step_rate": round(pipe / tr["cfn_cifar10"], 3),
    }
    print(
        f"CFN vs plain at 32x32, width x{args.width_mult}, batch {batch}, median of {repeats} (CPU, 2 threads)"
    )
    print(
        f"  training: CFN {tr['cfn_cifar10']:.0f} img/s, plain {tr['plain_cifar10']:.0f} img/s, "
        f"step-time ratio {ratio:.3f} (target <= 1.10)"
    )
    print(f"  inference: CFN {inf['cfn_cifar10']:.0f} img/s, plain {inf['plain_cifar10']:.0f} img/s")
    print(
        f"  input pipeline (shapes + GCN/ZCA, one process): {pipe:.0f} img/s = "
        f"{pipe / tr['cfn_cifar10']:.1f}x the CFN training step rate"
    )
    out = Path(__file__).parent / "results" / "cfn.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f"  written {out}")


if __name__ == "__main__":
    main()
