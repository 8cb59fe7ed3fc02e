"""The `imagexplore` command: help, version, data/models listing, train → eval, resume, and one-line errors."""

import json
import subprocess
import sys

import pytest

from helpers import TINY_RUN
from imagexplore import __version__
from imagexplore.cli import main


def run_cli(*args, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "imagexplore", *args], capture_output=True, text=True, timeout=300
    )
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert __version__ in capsys.readouterr().out
    assert main([]) == 0
    out = capsys.readouterr().out
    for group in ("demo", "data", "models", "classify"):
        assert group in out


def test_models_and_data_list(capsys):
    assert main(["models", "list", "--json"]) == 0
    names = [m["name"] for m in json.loads(capsys.readouterr().out)]
    assert "simple_cnn" in names
    assert main(["data", "list", "--json"]) == 0
    infos = {d["name"]: d for d in json.loads(capsys.readouterr().out)}
    assert infos["shapes"]["found"] is True
    assert {"cifar10", "fashion-mnist", "imagenet"} <= set(infos) or {"cifar10", "fashion_mnist"} <= set(
        infos
    )
    assert main(["data", "list"]) == 0
    assert "shapes" in capsys.readouterr().out


def test_data_preview_writes_pngs(tmp_path, capsys):
    assert main(["data", "preview", "shapes", "--out", str(tmp_path), "--size", "48", "-n", "4"]) == 0
    pngs = list(tmp_path.glob("*.png"))
    assert len(pngs) >= 5
    assert all(p.stat().st_size > 0 for p in pngs)


QUICK = [arg for o in [*TINY_RUN, "model.kwargs={width: 8, depth: 3}"] for arg in ("--set", o)]


def test_train_eval_and_resume(tmp_path):
    run = tmp_path / "run"
    proc = run_cli(
        "classify",
        "train",
        "--config",
        "configs/classify/shapes_baseline_quick.yaml",
        "--out",
        str(run),
        "--json",
        *QUICK,
    )
    summary = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert summary["best"]["metric"] == "val/acc1" and summary["iterations"] == 8
    assert json.loads((run / "summary.json").read_text())["iterations"] == 8
    # the same run directory again without --resume is refused, with one line
    again = run_cli(
        "classify",
        "train",
        "--config",
        "configs/classify/shapes_baseline_quick.yaml",
        "--out",
        str(run),
        *QUICK,
        check=False,
    )
    assert (
        again.returncode == 2 and "--resume" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    )
    # resuming a finished run with a longer budget continues from its last iteration
    res = run_cli(
        "classify",
        "train",
        "--config",
        "configs/classify/shapes_baseline_quick.yaml",
        "--out",
        str(run),
        "--resume",
        *QUICK,
        "--set",
        "train.epochs=2",
        "--json",
    )
    assert "resumed from" in res.stderr
    assert json.loads((run / "summary.json").read_text())["iterations"] == 16
    ev = run_cli(
        "classify",
        "eval",
        "--checkpoint",
        str(run / "checkpoints/best.pt"),
        "--out",
        str(tmp_path / "ev"),
        "--json",
    )
    metrics = json.loads(ev.stdout)
    assert metrics["count"] == 64 and 0 <= metrics["err1"] <= 1
    assert (tmp_path / "ev" / "confusion.png").is_file()


def test_checkpoint_of_another_model_is_refused(tmp_path):
    import torch

    from imagexplore import models
    from imagexplore.engine import save_checkpoint

    m = models.create("simple_cnn", num_classes=3, width=4, depth=1)
    cfg = {"model": {"name": "simple_cnn", "kwargs": {"width": 8, "depth": 3}}, "data": {"name": "shapes"}}
    ck = save_checkpoint(
        {
            "model": m.state_dict(),
            "model_name": "simple_cnn",
            "config": cfg,
            "meta": {"classes": ["a", "b", "c"], "in_chans": 3},
        },
        tmp_path / "x.pt",
    )
    proc = run_cli("classify", "eval", "--checkpoint", str(ck), check=False)
    assert proc.returncode == 2 and "does not fit model 'simple_cnn'" in proc.stderr
    assert torch.load(ck, weights_only=True)["model_name"] == "simple_cnn"
