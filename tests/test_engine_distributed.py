"""A 2-process torchrun (gloo, CPU) run: training works and evaluation counts every sample exactly once."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import BlobDataset, quick_cfg
from imagexplore import models
from imagexplore.classification.task import ClassificationTask
from imagexplore.engine import Trainer, load_checkpoint, load_model_state

HERE = Path(__file__).parent


@pytest.mark.slow
def test_two_process_run_counts_each_sample_once(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(HERE / "dist_worker.py"),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    res = json.loads((tmp_path / "dist_result.json").read_text())
    assert res["world_size"] == 2
    assert res["iters_per_epoch"] == 256 // 2 // 32  # each rank takes half of every epoch
    assert res["summary"]["final"]["val/count"] == 101
    assert res["eval"]["val/count"] == 101

    # The same weights evaluated by one process give the same numbers.
    cfg = quick_cfg("train.epochs=1", "train.device=cpu")
    model = models.create("simple_cnn", num_classes=4, **cfg.model.kwargs)
    ck = load_checkpoint(tmp_path / "checkpoints/last.pt")
    load_model_state(model, ck)
    val = BlobDataset(101, seed=1)
    single = Trainer(
        cfg,
        model,
        ClassificationTask(val.classes),
        BlobDataset(256),
        val,
        tmp_path / "single",
        show_progress=False,
    ).evaluate()
    assert single["val/count"] == 101
    assert single["val/acc1"] == pytest.approx(res["eval"]["val/acc1"], abs=1e-9)
    assert single["val/loss"] == pytest.approx(res["eval"]["val/loss"], rel=1e-5)
    assert torch.equal(ck["model"]["fc.weight"], model.fc.weight.detach())
