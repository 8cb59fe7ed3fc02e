"""Checkpoints: atomic writes, weights-only loading, a format version and a checksum.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
`torch.load(weights_only=True)`: no arbitrary object is ever unpickled. It is written to a temporary file in
the same folder, fsynced and renamed over the target, so a crash leaves either the old or the new file, never a
half-written one. A SHA-256 of the file is stored beside it (`<name>.sha256`) and checked on load.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from imagexplore.errors import CheckpointError

FORMAT_VERSION = 1


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: Path, writer) -> None:
    """Call writer(file_object) on a temp file next to `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    state = {"format_version": FORMAT_VERSION, **state}
    atomic_write_bytes(path, lambda f: torch.save(state, f))
    digest = _sha256(path)
    atomic_write_bytes(
        path.with_name(path.name + ".sha256"), lambda f: f.write(f"{digest}  {path.name}\n".encode())
    )
    return path


def resolve_checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file as given, or a run directory's checkpoint: RUN_DIR/checkpoints/best.pt (else last.pt),
    said on stderr so the choice is never silent."""
    path = Path(path)
    if not path.is_dir():
        return path
    for name in ("checkpoints/best.pt", "checkpoints/last.pt", "best.pt", "last.pt"):
        if (path / name).is_file():
            print(f"using {path / name}", file=sys.stderr)
            return path / name
    raise CheckpointError(
        f"{path} is a folder without checkpoints/best.pt or last.pt; give a checkpoint file"
    )


def _safe_load(path: Path, map_location, what: str):
    """torch.load(weights_only=True) with a one-line error. PyTorch's own message for a file that needs code to
    load advises disabling weights_only, which would let a malicious file run code: it is never passed on."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - a text file, a truncated zip, a pickle of objects: many error types
        text = str(e)
        match = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if match:
            reason = f"loading it would run code ({match.group(1)}), which imagexplore refuses"
        elif "weights_only" in text or "WeightsUnpickler" in text:
            reason = "it holds objects that only a code-running unpickler could load"
        else:
            line = text.strip().splitlines()[0] if text.strip() else type(e).__name__
            reason = f"unreadable ({line.split('. ')[0][:120].rstrip('.')})"
        raise CheckpointError(f"{path} is not a {what} (or not a safe one): {reason}") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (weights only); verify checksum and format version.

    A run directory is accepted for its best checkpoint. A checkpoint without its `.sha256` beside it (copied
    alone, say) still loads, with a one-line notice that it could not be verified."""
    path = resolve_checkpoint_path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    sidecar = path.with_name(path.name + ".sha256")
    if sidecar.is_file():
        expected = sidecar.read_text().split()[0] if sidecar.read_text().split() else ""
        if _sha256(path) != expected:
            raise CheckpointError(
                f"checkpoint {path} is corrupted: its SHA-256 does not match {sidecar.name}"
            )
    state = _safe_load(path, map_location, "checkpoint")
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(
            f"{path} is not an imagexplore checkpoint (expected a dict with a 'model' entry)"
        )
    version = state.get("format_version", 0)
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version}; this imagexplore reads up to {FORMAT_VERSION}"
        )
    if not sidecar.is_file():  # said once it is known to be a checkpoint at all
        print(f"notice: {path} has no {sidecar.name} beside it, so it could not be verified", file=sys.stderr)
    return state


def load_model_state(model: nn.Module, state: dict[str, Any], path: str | Path = "<checkpoint>") -> None:
    """Load weights into `model`, with a one-line error when the checkpoint is for another architecture."""
    expected = getattr(model, "registry_name", type(model).__name__)
    found = state.get("model_name")
    if found is not None and found != expected:
        raise CheckpointError(f"checkpoint {path} is for model '{found}', not '{expected}'")
    weights = state["model"]
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [k for k in own if k in weights and tuple(own[k].shape) != tuple(weights[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shapes:
            k = shapes[0]
            parts.append(
                f"{len(shapes)} of another shape (e.g. {k}: {tuple(weights[k].shape)} vs {tuple(own[k].shape)})"
            )
        raise CheckpointError(f"checkpoint {path} does not fit model '{expected}': " + "; ".join(parts))
    model.load_state_dict(weights)


# --------------------------------------------------------------------------------------------------------------
# RNG state, stored as tensors and plain lists so it survives weights-only loading


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
        "python": [list(random.getstate()[1]), random.getstate()[0]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    keys, version = state["python"]
    random.setstate((version, tuple(keys), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_state_dict(path: str | Path, what: str = "pretrained_path") -> dict[str, torch.Tensor]:
    """A weights file from elsewhere (a timm/torchvision state_dict, or a checkpoint wrapping one under
    'state_dict' or 'model'), loaded weights-only; one-line CheckpointError when it is none of these."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} '{path}' does not exist")
    sd = _safe_load(path, "cpu", f"state_dict ({what})")
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise CheckpointError(f"{what} '{path}' does not hold a state_dict")
    return sd


def restore_model(checkpoint: str | Path, *, task: str, overrides: list[str] | None = None):
    """Rebuild the model a run's checkpoint was trained with (from its stored config) and load its weights.

    `task` is the command's task (imagexplore.tasks): a checkpoint of another task is refused in one line naming
    both. Returns (model on the CPU, cfg, meta); with `train.ema.evaluate`, the averaged weights are loaded."""
    from imagexplore.config import ExperimentConfig, apply_overrides, from_dict
    from imagexplore.tasks import check_checkpoint_task, get_task

    checkpoint = resolve_checkpoint_path(checkpoint)
    ck = load_checkpoint(checkpoint, map_location="cpu")
    if "config" not in ck:
        raise CheckpointError(f"checkpoint {checkpoint} holds no config; cannot rebuild its model")
    meta = ck.get("meta", {})
    check_checkpoint_task(meta, task, checkpoint)
    spec = get_task(task)
    cfg = from_dict(ExperimentConfig, apply_overrides(ck["config"], overrides or [], ExperimentConfig))
    extra = {"for_checkpoint": meta} if spec.model_needs_meta else {}
    model = spec.load("build_model")(cfg, len(meta.get("classes") or [0]), meta.get("in_chans", 3), **extra)
    load_model_state(model, ck, checkpoint)
    ema = ck.get("ema")
    if ema is not None and cfg.train.ema is not None and cfg.train.ema.evaluate:
        target = model if not ema["module"] else getattr(model, ema["module"])
        target.load_state_dict(ema["state"])
    return model, cfg, meta
