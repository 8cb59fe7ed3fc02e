"""Pieces shared by the task command groups (`classify`, `segment`, ...): flags, overrides, run directories."""

from __future__ import annotations

import argparse
import ctypes
import math
import sys
from pathlib import Path

from imagexplore.errors import UserError
from imagexplore.outputs import check_out_dir  # noqa: F401 - re-exported for the task CLIs


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors that name the (sub)command and point at its --help."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# --------------------------------------------------------------------------------------------------------------
# Flag types with ranges: declared once on the flag, checked by argparse before any work (one-line error).


def _number(kind, lo=None, hi=None, *, lo_open=False, name=None):
    """An argparse `type=` that parses `kind` and checks lo ≤ x ≤ hi (lo < x with lo_open); NaN/inf refused."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expects {kind.__name__ if name is None else name}, got {text!r}"
            ) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if lo is not None and (value <= lo if lo_open else value < lo):
            raise argparse.ArgumentTypeError(f"must be {'>' if lo_open else '≥'} {lo}, got {text}")
        if hi is not None and value > hi:
            raise argparse.ArgumentTypeError(f"must be ≤ {hi}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def int_range(lo: int | None = None, hi: int | None = None):
    """`type=int_range(1)`: an integer flag of at least `lo` (and at most `hi`)."""
    return _number(int, lo, hi)


def float_range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False):
    """`type=float_range(0, lo_open=True)`: a finite float flag in the range (lo, hi] or [lo, hi]."""
    return _number(float, lo, hi, lo_open=lo_open)


POSITIVE_INT = int_range(1)
NON_NEGATIVE_INT = int_range(0)


def add_on_bad_file(p: argparse.ArgumentParser) -> None:
    """`--on-bad-file fail|skip`, the one spelling wherever a command reads the user's images."""
    p.add_argument(
        "--on-bad-file",
        choices=["fail", "skip"],
        default="fail",
        help="unreadable files: stop with an error (default) or skip them and report them",
    )


def add_no_progress(p: argparse.ArgumentParser) -> None:
    """`--no-progress`, the one spelling on every command that shows progress bars."""
    p.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        default=None,
        help="no progress bars (default: shown unless --json)",
    )


def shared_flags(p: argparse.ArgumentParser, *, training: bool = False) -> None:
    """--device and --json everywhere; --seed/--workers/--batch-size for training commands."""
    p.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default=None, help="device (default: config/auto)"
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    if not training:  # training commands get --progress/--no-progress from add_train_arguments
        add_no_progress(p)
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
        metavar="CHECKPOINT",
        help="resume from RUN_DIR/checkpoints/last.pt, which must exist (or from the checkpoint given)",
    )
    p.add_argument(
        "--auto-resume",
        dest="resume",
        action="store_const",
        const="auto",
        help="resume if RUN_DIR has checkpoints/last.pt, else start a new run (for requeued jobs)",
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
    run_dir = check_out_dir(Path(args.out) if args.out else Path("runs") / cfg.name)
    last = run_dir / "checkpoints" / "last.pt"
    if last.exists() and not args.resume:
        raise UserError(
            f"{run_dir} already holds a run ({last}); pass --resume to continue it or --out NEW_DIR"
        )
    from imagexplore.engine.trainer import resume_path

    if args.resume != "auto":
        resume_path(run_dir, args.resume)  # nothing to resume is refused before any data is read
    return run_dir


def show_progress(args) -> bool:
    """Progress bars: --no-progress turns them off; by default shown unless --json asks for clean output."""
    progress = getattr(args, "progress", None)
    return (not getattr(args, "json", False)) if progress is None else bool(progress)


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


def run_train_command(args, task: str) -> int:
    """The body of every `<task> train`: config + overrides → checked against the task → run dir →
    the task's train(cfg, run_dir, ...) → summary.

    Under torchrun only rank 0 prints, and workers leave through `distributed.shutdown_and_exit`."""
    from imagexplore.config import load_config, resolve_config_path
    from imagexplore.engine import distributed as dist
    from imagexplore.tasks import bind_config, get_task

    source = (
        resolve_config_path(args.config, task) if args.config else None
    )  # a bare name: the task's own first
    cfg = bind_config(load_config(source, args.overrides + flag_overrides(args)), task, args.config)
    run_dir = run_dir_for(cfg, args)
    summary = get_task(task).load("train")(cfg, run_dir, resume=args.resume, show_progress=args.progress)
    if dist.is_main():
        print_train_summary(summary, run_dir, args.json)
    if dist.is_initialized():
        dist.shutdown_and_exit(0)
    return 0


def predict_summary(written: int, what: str, out, skipped: list[str]) -> str:
    """`wrote 3 edge maps to O; skipped 1 unreadable file: bad.jpg (reason)` (one line, stderr)."""
    line = f"wrote {written} {what}{'' if written == 1 else 's'} to {out}"
    if skipped:
        first = skipped[0].removeprefix("cannot read image ")
        more = f" (+{len(skipped) - 1} more)" if len(skipped) > 1 else ""
        line += f"; skipped {len(skipped)} unreadable file{'' if len(skipped) == 1 else 's'}: {first}{more}"
    return line


def reuse_freed_memory() -> bool:
    """glibc's malloc set for a process that runs forward passes for minutes (`retrieve extract | build | eval`):
    freed blocks of up to 32 MB are kept in the heap for the next pass (M_MMAP_THRESHOLD) and the heap is
    trimmed only above 256 MB free (M_TRIM_THRESHOLD), instead of every large activation being mapped and
    page-faulted anew: 1.12x faster Lite0 forward passes at one thread (`bench/bench_kernels.py`).
    Process-wide, so commands call it, not the library; a no-op (False) off glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, 32 * 2**20)) and bool(libc.mallopt(-1, 256 * 2**20))
    except (OSError, AttributeError):  # musl or another libc: keep its defaults
        return False
