"""Run-directory records: env.json, metrics.jsonl, TensorBoard events and summary.json (rank 0 only)."""

from __future__ import annotations

import json
import math
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from imagexplore.engine import distributed as dist

_PACKAGES = ("imagexplore", "torch", "torchvision", "timm", "numpy", "Pillow", "scikit-image", "faiss-cpu")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: torch.device | str | None = None) -> dict[str, Any]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    info = {
        "command": sys.argv,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "device": str(device) if device is not None else None,
        "world_size": dist.world_size(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _clean(v):
    """JSON has no NaN/inf: write them as strings so the file stays valid JSON."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class RunLogger:
    """Writes the run directory's records. On ranks other than 0 every method is a no-op."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.active = dist.is_main()
        self.tb = None
        if self.active:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    self.tb = SummaryWriter(str(self.run_dir / "tb"))
                except ImportError:  # tensorboard is a declared dependency; keep running without it
                    self.tb = None

    def write_env(self, device) -> None:
        if self.active:
            (self.run_dir / "env.json").write_text(json.dumps(environment(device), indent=2))

    def log(self, step: int, epoch: float, metrics: dict[str, float]) -> None:
        if not self.active:
            return
        rec = {"iteration": step, "epoch": epoch, "time": round(time.time(), 3)}
        rec.update({k: _clean(float(v)) for k, v in metrics.items()})
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, int | float) and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)

    def write_summary(self, summary: dict[str, Any]) -> None:
        if self.active:
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=_clean))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None
