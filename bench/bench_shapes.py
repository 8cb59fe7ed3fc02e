"""How fast the shapes world generates scenes, against how fast a small CNN consumes them on the CPU.

    python bench/bench_shapes.py [--quick] [--learn]

Generation is measured on one core (one process, the way one DataLoader worker runs it); consumption is a
training step (forward, backward, SGD) of ``simple_cnn`` at batch 64 using all the threads torch is given.
The ratio generation/consumption (against the faster of the multi-thread and one-thread training rates)
must stay above 1 so that even a single loader worker never starves the model. Results are printed as a table and written to bench/results/shapes.json. ``--learn`` adds a
learnability check: simple_cnn trained on 8000 scenes at 32 px, validation accuracy per epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from imagexplore.data.shapes import SCENE_KEYS, ShapesClassification, ShapesWorld, load_textures
from imagexplore.models import create


def _rate(fn, seconds: float) -> float:
    """Calls of ``fn(k)`` per second, running for about ``seconds`` (after one warm-up call)."""
    fn(0)
    n, start = 0, time.perf_counter()
    while True:
        fn(n + 1)
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def generation_rates(size: int, seconds: float) -> dict[str, float]:
    world = ShapesWorld(seed=0, size=size)
    ds = ShapesClassification(10_000_000, size=size)
    return {
        "classification_item": _rate(lambda k: ds[k], seconds),  # render(image, label) + tensor conversion
        "scene_full": _rate(lambda k: world.scene(k), seconds),  # every key
        "view": _rate(lambda k: world.view(k, 0), seconds / 2),
        "person": _rate(lambda k: world.person(k, k), seconds / 2),
    }


def consumption_rate(size: int, num_classes: int, seconds: float, batch: int = 64, pool: int = 16) -> float:
    """Images per second a CPU training step of simple_cnn consumes, from the fastest quarter of the steps.

    Steps cycle through ``pool`` different batches: training on one batch over and over drives the gradients
    towards denormal floats, which slows the CPU many times over. The rate comes from the 25th percentile of
    the step times because on a busy machine torch's thread pool stalls whenever another process holds a core
    (a step then takes ten times longer); the fast steps are what the model consumes on a machine of its own,
    which is the conservative side for the generation/consumption ratio.
    """
    torch.manual_seed(0)
    model = create("simple_cnn", num_classes=num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    ds = ShapesClassification(batch * pool, size=size)
    x = torch.stack([ds[k][0] for k in range(len(ds))]).view(pool, batch, 3, size, size)
    y = torch.tensor([ds[k][1] for k in range(len(ds))]).view(pool, batch)
    model.train()
    times: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 8:
        k = len(times) % pool
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x[k]), y[k]).backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return batch / float(np.percentile(times[1:], 25))


def learnability(size: int, num_train: int, epochs: int, num_val: int = 1000) -> list[dict]:
    """Train simple_cnn on ``num_train`` scenes (SGD, one-cycle lr, flips) and report val accuracy per epoch."""
    torch.manual_seed(0)
    train, val = (
        ShapesClassification(num_train, size=size),
        ShapesClassification(num_val, size=size, split="val"),
    )
    x, y = (
        torch.stack([train[k][0] for k in range(len(train))]),
        torch.tensor([train[k][1] for k in range(len(train))]),
    )
    xv, yv = (
        torch.stack([val[k][0] for k in range(len(val))]),
        torch.tensor([val[k][1] for k in range(len(val))]),
    )
    model = create("simple_cnn", num_classes=train.num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    steps = len(x) // 64
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=epochs * steps)
    history = []
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x))
        for b in range(steps):
            idx = perm[b * 64 : (b + 1) * 64]
            xb = x[idx].flip(3) if torch.rand(()) < 0.5 else x[idx]
            loss = torch.nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.inference_mode():
            acc = (model(xv).argmax(1) == yv).float().mean().item()
        history.append({"epoch": epoch + 1, "train_loss": loss.item(), "val_acc": acc})
        print(
            f"learn size {size}: epoch {epoch + 1}/{epochs}  loss {loss.item():.3f}  val acc {acc:.3f}",
            flush=True,
        )
    return history


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="about 0.3 s per measurement instead of 1.5 s")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "shapes.json"))
    ap.add_argument("--learn", action="store_true",
                    help="also train simple_cnn on 8000 scenes at 32 px for 10 epochs (about 10 min on 2 cores)")  # fmt: skip
    args = ap.parse_args()
    seconds = 0.3 if args.quick else 1.5
    load_textures()  # a one-off cost per process, not part of the rate
    num_classes = ShapesWorld().num_classes

    threads = torch.get_num_threads()
    rows = []
    for size in (32, 64, 128):
        row = {"size": size, **generation_rates(size, seconds)}
        if size in (32, 64):
            # Training is timed with torch's threads and with one thread: on a machine shared with other jobs
            # the thread pool stalls and one thread is faster. The ratio uses the faster (the harder target).
            row["train_images_per_s"] = consumption_rate(size, num_classes, seconds)
            torch.set_num_threads(1)
            row["train_images_per_s_1thread"] = consumption_rate(size, num_classes, seconds)
            torch.set_num_threads(threads)
            fastest = max(row["train_images_per_s"], row["train_images_per_s_1thread"])
            row["ratio_generation_over_consumption"] = row["classification_item"] / fastest
        rows.append(row)

    head = (
        f"{'size':>4} | {'cls item/s':>10} | {'scene/s':>8} | {'view/s':>7} | {'person/s':>8} | "
        f"{f'train img/s ({threads} thr)':>20} | {'train img/s (1 thr)':>19} | {'gen/train':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        line = f"{r['size']:>4} | {r['classification_item']:10.0f} | {r['scene_full']:8.0f} | {r['view']:7.0f} | {r['person']:8.0f} | "
        if "train_images_per_s" in r:
            line += f"{r['train_images_per_s']:20.0f} | {r['train_images_per_s_1thread']:19.0f} | {r['ratio_generation_over_consumption']:9.2f}"
        else:
            line += f"{'-':>20} | {'-':>19} | {'-':>9}"
        print(line)
    print(
        f"(generation on 1 core; gen/train = cls item/s over the faster training rate; scene/s = every key: {', '.join(SCENE_KEYS)})"
    )

    learn = learnability(32, 8000, 10) if args.learn else None

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"quick": args.quick, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine()}  # fmt: skip
    out.write_text(json.dumps({"meta": meta, "rows": rows, "learnability": learn}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
