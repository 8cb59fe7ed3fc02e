"""Engine overhead: the shared Trainer vs a bare hand-written loop, same model, data, batches and optimizer.

Prints the time ratio (target ≤ 1.05) measured in the same run, interleaving repeats so machine noise hits
both sides alike, and writes bench/results/engine.json.
Run: python bench/bench_engine.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from imagexplore import models
from imagexplore.classification.task import ClassificationTask
from imagexplore.config import load_config
from imagexplore.engine import Trainer


def dataset(n: int, size: int) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, size, size, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    ds = TensorDataset(x, y)
    ds.classes = [str(i) for i in range(10)]
    return ds


def bare_loop(ds, epochs: int, batch_size: int, width: int) -> float:
    torch.manual_seed(0)
    model = models.create("simple_cnn", num_classes=10, width=width)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    total = epochs * (len(ds) // batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda it: 0.5 * (1 + torch.cos(torch.tensor(it / total * 3.14159))).item()
    )
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, drop_last=True)
    t0 = time.perf_counter()
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            sched.step()
            loss.item()  # a real loop looks at its loss too
    return time.perf_counter() - t0


def engine_loop(ds, epochs: int, batch_size: int, width: int) -> float:
    cfg = load_config(
        None,
        [
            f"train.epochs={epochs}",
            f"data.batch_size={batch_size}",
            "optim.lr=0.05",
            "train.device=cpu",
            "train.tensorboard=false",
            f"model.kwargs={{width: {width}}}",
        ],
    )
    torch.manual_seed(0)
    model = models.create("simple_cnn", num_classes=10, width=width)
    with tempfile.TemporaryDirectory() as d:
        trainer = Trainer(cfg, model, ClassificationTask(ds.classes), ds, None, d, show_progress=False)
        t0 = time.perf_counter()
        trainer.fit()
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    n, size, bs, width, epochs, repeats = (1024, 32, 64, 16, 2, 3) if args.quick else (2048, 32, 64, 16, 3, 5)
    ds = dataset(n, size)
    bare_loop(ds, 1, bs, width)  # warm-up (allocator, kernels)
    bare, eng = [], []
    for _ in range(repeats):
        bare.append(bare_loop(ds, epochs, bs, width))
        eng.append(engine_loop(ds, epochs, bs, width))
    b, e = statistics.median(bare), statistics.median(eng)
    steps = epochs * (n // bs)
    res = {
        "benchmark": "engine_overhead",
        "steps": steps,
        "batch_size": bs,
        "image_size": size,
        "bare_seconds_median": round(b, 4),
        "engine_seconds_median": round(e, 4),
        "ratio_engine_over_bare": round(e / b, 4),
        "target_ratio": 1.05,
        "bare_all": [round(v, 4) for v in bare],
        "engine_all": [round(v, 4) for v in eng],
    }
    print(f"engine overhead: {steps} steps of batch {bs} at {size}px, median of {repeats}")
    print(f"  bare loop {b:.3f} s   engine {e:.3f} s   ratio {e / b:.3f} (target <= 1.05)")
    out = Path(__file__).parent / "results" / "engine.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f"  written {out}")


if __name__ == "__main__":
    main()
