"""Pieces shared by the task command groups (`classify`, `segment`, ...): flags, overrides, run directories."""

from __future__ import annotations

import argparse
from pathlib import Path

from imagexplore.errors import UserError


def shared_flags(p: argparse.ArgumentParser, *, training: bool = False) -> None:
    """--device and --json everywhere; --seed/--workers/--batch-size for training commands."""
    p.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default=None, help="device (default: config/auto)"
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    if training:
        p.add_argument("--seed", type=int, default=None, help="random seed (train.seed)")
        p.add_argument("--workers", type=int, default=None, help="data-loading processes (data.workers)")
        p.add_argument(
            "--batch-size", type=int, default=None, help="batch size per process (data.batch_size)"
        )


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of every `<task> train` command."""
    p.add_argument("--config", default=None, help="YAML config (default: built-in defaults)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=0.1 (repeatable)",
    )
    p.add_argument("--out", default=None, help="run directory (default: runs/<config name>)")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        help="resume from RUN_DIR/checkpoints/last.pt (or from the checkpoint given)",
    )
    p.add_argument(
        "--progress", dest="progress", action="store_true", default=None, help="force progress bars"
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    shared_flags(p, training=True)


def flag_overrides(args) -> list[str]:
    """The shorthand flags as config overrides (they win over --set, being applied after it)."""
    out = []
    for flag, key in (
        ("device", "train.device"),
        ("seed", "train.seed"),
        ("workers", "data.workers"),
        ("batch_size", "data.batch_size"),
    ):
        v = getattr(args, flag, None)
        if v is not None:
            out.append(f"{key}={v}")
    return out


def run_dir_for(cfg, args) -> Path:
    run_dir = Path(args.out) if args.out else Path("runs") / cfg.name
    last = run_dir / "checkpoints" / "last.pt"
    if last.exists() and not args.resume:
        raise UserError(
            f"{run_dir} already holds a run ({last}); pass --resume to continue it or --out NEW_DIR"
        )
    return run_dir


def eval_device(args) -> str:
    """Evaluation/prediction device: the flag, else CUDA when available."""
    import torch

    if args.device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return args.device


def print_train_summary(summary: dict, run_dir: Path, as_json: bool) -> None:
    import json

    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        best = summary["best"]
        print(
            f"run: {run_dir}  best {best['metric']}={best['value']} (epoch {best['epoch']})  "
            f"{summary['seconds']:.1f} s"
        )


def run_train_command(args, train_fn) -> int:
    """The body of every `<task> train`: config + overrides → run dir → train_fn(cfg, run_dir, ...) → summary.

    Under torchrun only rank 0 prints, and workers leave through `distributed.shutdown_and_exit`."""
    from imagexplore.config import load_config
    from imagexplore.engine import distributed as dist

    cfg = load_config(args.config, args.overrides + flag_overrides(args))
    run_dir = run_dir_for(cfg, args)
    summary = train_fn(cfg, run_dir, resume=args.resume, show_progress=args.progress)
    if dist.is_main():
        print_train_summary(summary, run_dir, args.json)
    if dist.is_initialized():
        dist.shutdown_and_exit(0)
    return 0
