"""Every command with bad input: exit status 2 and one line on stderr, never a traceback (issue 10).

The commands run in-process through `main()` (no subprocess per case). Each row is
(command line, text the one line must contain); `{ckpt}`, `{run}`, `{file}`, `{dir}`, `{img}`, `{tmp}` are filled
from fixtures: a tiny classification checkpoint and its run folder, an ordinary file, an empty folder, an image.
"""

from __future__ import annotations

import shlex

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import tiny_classifier_cfg
from imagexplore.cli import main


def run_main(argv, capsys):
    """(exit status, stdout, stderr) of `imagexplore ARGV`, argparse's SystemExit included."""
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, expected):
    lines = err.strip().splitlines()
    assert rc == 2, (rc, err)
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert expected in lines[0], (expected, lines[0])


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    from imagexplore.classification.train import train

    tmp = tmp_path_factory.mktemp("bad")
    run = tmp / "run"
    train(tiny_classifier_cfg("model.kwargs={width: 8}"), run, show_progress=False)
    (tmp / "file.txt").write_text("not a folder, not a checkpoint, not an image")
    (tmp / "empty").mkdir()
    img = tmp / "img.png"
    Image.fromarray((np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)).save(img)
    for cls in ("animals", "food"):  # an image folder whose classes are not the checkpoint's shapes
        (tmp / "other" / cls).mkdir(parents=True)
        for i in range(2):
            Image.open(img).save(tmp / "other" / cls / f"{i}.png")
    torch.save({"model": _RunsCode()}, tmp / "evil.pt")  # a pickle that would run code if unpickled
    from imagexplore.engine import save_checkpoint

    edges_meta = {"task": "edges", "classes": ["edge"], "in_chans": 3}  # refused before any model is built
    save_checkpoint({"model": {}, "config": {"task": "edges"}, "meta": edges_meta}, tmp / "edges.pt")
    return {
        "ckpt": str(run / "checkpoints" / "best.pt"),
        "run": str(run),
        "file": str(tmp / "file.txt"),
        "dir": str(tmp / "empty"),
        "img": str(img),
        "tmp": str(tmp),
        "evil": str(tmp / "evil.pt"),
        "edgeck": str(tmp / "edges.pt"),
    }


class _RunsCode:
    def __reduce__(self):
        return (print, ("this file ran code",))


def fill(cmd: str, places) -> list[str]:
    return [part.format(**places) for part in shlex.split(cmd)]


# --------------------------------------------------------------------------------------------------------------
# The command line itself and configs

GENERAL = [
    (
        "classify predict --checkpoint {ckpt} {img} --bogus",
        "imagexplore classify predict: error: unrecognized",
    ),
    ("classify train --set optim.lrr=1 --out {tmp}/r1", "unknown config key 'optim.lrr'"),
    ("classify train --set train.epochs=abc --out {tmp}/r2", "'train.epochs' expects"),
    ("classify train --config nope.yaml --out {tmp}/r3", "config file not found: nope.yaml"),
    ("classify train --set model.name=resnet9000 --out {tmp}/r4", "unknown model 'resnet9000'"),
    ("classify eval --checkpoint /nonexistent/x.pt", "checkpoint not found: /nonexistent/x.pt"),
]

# --------------------------------------------------------------------------------------------------------------
# classify / segment / data (wrong results, ranges, outputs, checkpoints)

CLASSIFY = [
    # silently wrong results
    (
        "classify eval --checkpoint {ckpt} --data imagefolder --root {tmp}/other",
        "the dataset's 2 classes are not the checkpoint",
    ),
    (
        "classify eval --checkpoint {ckpt} --data imagefolder --root {tmp}/other --class-subset",
        "2 of the dataset's classes are not among the checkpoint",
    ),
    ("classify train --set train.epochs=-1 --out {tmp}/r5", "'train.epochs' must be ≥ 1; got -1"),
    ("classify train --set train.iterations=0 --out {tmp}/r5", "'train.iterations' must be ≥ 1"),
    ("classify train --set train.seed=-1 --out {tmp}/r5", "'train.seed' must be ≥ 0 and ≤ 4294967295"),
    ("classify predict --checkpoint {ckpt} {img} --topk 0", "argument --topk/--top: must be ≥ 1, got 0"),
    ("classify predict --checkpoint {ckpt} {img} --top -1", "argument --topk/--top: must be ≥ 1, got -1"),
    # numeric ranges, checked when the config is read
    ("classify train --set optim.lr=-0.003 --out {tmp}/r6", "'optim.lr' must be > 0; got -0.003"),
    ("classify train --set optim.lr=nan --out {tmp}/r6", "'optim.lr' must be a finite number"),
    ("classify train --set data.batch_size=0 --out {tmp}/r6", "'data.batch_size' must be ≥ 1; got 0"),
    ("classify train --set optim.momentum=1.5 --out {tmp}/r6", "'optim.momentum' must be ≥ 0 and < 1"),
    (
        "classify train --set schedule.milestones=[10,-5] --out {tmp}/r6",
        "'schedule.milestones[1]' must be ≥ 0",
    ),
    ("classify train --set data.std=[0.2,0,0.2] --out {tmp}/r6", "'data.std[1]' must be > 0"),
    ("classify train --batch-size 0 --out {tmp}/r6", "'data.batch_size' must be ≥ 1; got 0"),
    ("classify predict --checkpoint {ckpt} {img} --batch-size 0", "argument --batch-size: must be ≥ 1"),
    ("classify eval --checkpoint {ckpt} --batch-size -1", "argument --batch-size: must be ≥ 1, got -1"),
    ("classify transfer --checkpoint {ckpt} --num-samples 0", "argument --num-samples: must be ≥ 1"),
    ("data preview shapes --out {tmp}/p --size 8", "argument --size: must be ≥ 32, got 8"),
    ("data preview shapes --out {tmp}/p -n 0", "argument -n/--num: must be ≥ 1, got 0"),
    # --out naming a file
    ("classify eval --checkpoint {ckpt} --out {file}", "--out {file} is a file, not a folder"),
    ("classify train --out {file}", "--out {file} is a file, not a folder"),
    ("data preview shapes --out {file}", "--out {file} is a file, not a folder"),
    ("data preview shapes --out {file}/sub", "{file} is a file, not a folder"),
    # files that are no checkpoints
    ("classify eval --checkpoint {file}", "{file} is not a checkpoint"),
    ("classify predict --checkpoint {evil} {img}", "{evil} is not a checkpoint (or not a safe one)"),
    ("classify eval --checkpoint {dir}", "{dir} is a folder without checkpoints/best.pt or last.pt"),
    # resuming nothing
    ("classify train --resume --out {tmp}/never", "nothing to resume: {tmp}/never/checkpoints/last.pt"),
    ("classify train --resume {tmp}/nope.pt --out {tmp}/r7", "checkpoint not found: {tmp}/nope.pt"),
    # a config or checkpoint of another task
    (
        "classify train --config edges/shapes_hed_quick.yaml --out {tmp}/r8",
        "config edges/shapes_hed_quick.yaml is for the edges task (imagexplore edges train), not classify",
    ),
    (
        "edges train --config classify/shapes_cfn_quick.yaml --out {tmp}/r8",
        "is for the classify task (imagexplore classify train), not edges",
    ),
    (
        "classify train --set task=bogus --out {tmp}/r8",
        "unknown task 'bogus'; tasks: classify, segment, edges",
    ),
    (
        "classify eval --checkpoint {edgeck}",
        "checkpoint {edgeck} was trained by the edges task, not classify (use imagexplore edges ...)",
    ),
    ("segment eval --checkpoint {ckpt}", "was trained by the classify task, not segment"),
    ("edges predict --checkpoint {ckpt} {img} --out {tmp}/e8", "was trained by the classify task, not edges"),
    # inputs checked before the model is loaded
    ("classify predict --checkpoint {ckpt} {tmp}/missing.png", "no such file or folder: {tmp}/missing.png"),
]

# --------------------------------------------------------------------------------------------------------------
# edges

EDGES = [
    ("data export-edges --out {tmp}/e --size 320by240", "--size must be WIDTHxHEIGHT"),
    ("data export-edges --out {tmp}/e --size 16x16", "size must be at least 32×32"),
    ("data export-edges --out {tmp}/e --train 0 --test 0", "not all zero"),
    (
        "edges train --config finetune_rds --set data.name=shapes --set data.options.relax_mean=median",
        "relax_mean",
    ),
    (
        "edges train --config finetune_hed",
        "'bsds500' was not found: give its folder (--root DIR, or data.root",
    ),
    ("edges eval --pretrained hed-bsds500 --root {tmp}", "layout"),
    # ranges: refused by the flag, not silently replaced (0 thresholds used to become 99)
    ("edges score --pred {dir} --gt {dir} --thresholds 0", "argument --thresholds: must be ≥ 1"),
    ("edges score --pred {dir} --gt {dir} --max-dist 0", "argument --max-dist: must be > 0"),
    ("edges score --pred {dir} --gt {dir} --workers 0", "argument --workers: must be ≥ 1"),
    (
        "edges eval --pretrained hed-bsds500 --data shapes --thresholds 0",
        "argument --thresholds: must be ≥ 1",
    ),
    ("edges eval --pretrained hed-bsds500 --data shapes --limit 0", "argument --limit: must be ≥ 1"),
    (
        "edges eval --pretrained hed-bsds500 --data shapes --image-size 0",
        "argument --image-size: must be ≥ 1",
    ),
    ("edges eval --pretrained hed-bsds500 --data shapes --max-dist -1", "argument --max-dist: must be > 0"),
    ("edges predict --pretrained hed-bsds500 {img} --out {tmp}/e1 --tile 100", "argument --tile: must be 0"),
    ("segment eval --checkpoint {ckpt} --batch-size 0", "argument --batch-size: must be ≥ 1"),
    ("segment eval --checkpoint {ckpt} --limit 0", "argument --limit: must be ≥ 1"),
    ("segment predict --checkpoint {ckpt} {img} --out {tmp}/s1 --size 0", "argument --size: must be ≥ 1"),
    # outputs checked before any work (FileExistsError, or a plot written only after scoring)
    ("edges predict --pretrained hed-bsds500 {img} --out {file}", "--out {file} is a file"),
    ("edges eval --pretrained hed-bsds500 --data shapes --out {file}", "--out {file} is a file"),
    ("segment predict --checkpoint {ckpt} {img} --out {file}", "--out {file} is a file"),
    ("edges score --pred {dir} --gt {dir} --plot {dir}", "--plot {dir} is a folder"),
    # bad inputs: found up front, one line (a file named as a folder, a folder without images, a non-image)
    ("edges score --pred {file} --gt {dir}", "--pred {file}: not a folder"),
    ("edges score --pred {tmp}/nope --gt {dir}", "--pred {tmp}/nope: folder not found"),
    ("edges predict --pretrained hed-bsds500 {dir} --out {tmp}/e2", "no images found in {dir}"),
    ("edges predict --checkpoint {ckpt} {img} {file} --out {tmp}/e3", "cannot read image {file}"),
    ("segment predict --checkpoint {ckpt} {img} {file} --out {tmp}/s2", "cannot read image {file}"),
    ("segment predict --checkpoint {ckpt} {tmp}/nope.png --out {tmp}/s3", "no such file or folder"),
]

# --------------------------------------------------------------------------------------------------------------
# retrieve

RETRIEVE = [
    # outputs checked before any work (issue item 10): a file, a folder that is not an index
    ("retrieve build --images {dir} --out {file}", "--out {file} is a file, not a folder"),
    ("retrieve build --images {dir} --out {tmp}", "--out {tmp} exists and is not a DeepIndex directory"),
    ("retrieve build --features {dir} --out {file}", "--out {file} is a file"),
    ("retrieve merge --out {file} {dir}", "--out {file} is a file"),
    ("retrieve extract --images {dir} --out {file}", "--out {file} is a file, not a folder"),
    ("retrieve eval --dataset shapes --root {tmp}/shapes --out {dir}", "--out {dir} is a folder"),
    (
        "retrieve eval --dataset shapes --root {tmp}/shapes --out {file}/r.json",
        "{file} is a file, not a folder",
    ),
    # inputs checked before any work
    ("retrieve build --images {file} --out {tmp}/i1", "--images {file} is a file, not a folder"),
    ("retrieve build --images {dir} --out {tmp}/i1", "--images {dir}: no image files in it"),
    (
        "retrieve build --images {tmp} --out {tmp}/i1 --vocab-from {dir}",
        "--vocab-from {dir} is not a DeepIndex",
    ),
    ("retrieve build --images {tmp} --out {tmp}/i1 --vocab-from {file}", "--vocab-from {file} is a file"),
    (
        "retrieve build --images {tmp} --out {tmp}/i1 --weights {tmp}/no.pt",
        "--weights {tmp}/no.pt: not found",
    ),
    ("retrieve build --features {file} --out {tmp}/i1", "--features {file} is a file"),
    ("retrieve search --index {dir} {img}", "--index {dir} is not a DeepIndex directory"),
    ("retrieve search --index {file} {img}", "--index {file} is a file, not an index directory"),
    ("retrieve search --index {tmp}/none {img}", "--index {tmp}/none: index not found"),
    ("retrieve merge --out {tmp}/m {dir}", "shard {dir} is not a DeepIndex directory"),
    ("retrieve extract --images {dir} --out {tmp}/f", "--images {dir}: no image files in it"),
    ("retrieve eval --dataset holidays --root {file}", "--root {file} is a file, not a folder"),
    ("retrieve eval --dataset shapes --root {tmp}/shapes --train {dir}", "--train {dir}: no image files"),
    ("retrieve eval --dataset shapes --root {tmp}/shapes --weights {dir}", "--weights {dir}: is a folder"),
    # ranges: refused by the flag, never clamped
    ("retrieve search --index {dir} {img} --top 0", "argument --top/--topk: must be ≥ 1, got 0"),
    ("retrieve search --index {dir} {img} --topk -1", "argument --top/--topk: must be ≥ 1, got -1"),
    ("retrieve build --images {dir} --out {tmp}/i1 --k 0", "argument --k: must be ≥ 1, got 0"),
    ("retrieve build --images {dir} --out {tmp}/i1 --batch-size 0", "argument --batch-size: must be ≥ 1"),
    ("retrieve extract --images {tmp} --out {tmp}/f --batch-size -2", "argument --batch-size: must be ≥ 1"),
    ("retrieve eval --dataset shapes --k 0", "argument --k: must be ≥ 1, got 0"),
    ("retrieve eval --dataset shapes --ma 0", "argument --ma: must be ≥ 1, got 0"),
    ("retrieve eval --dataset shapes --batch-size 0", "argument --batch-size: must be ≥ 1, got 0"),
    ("retrieve eval --dataset shapes --patch-size 8", "argument --patch-size: must be ≥ 32, got 8"),
    ("retrieve eval --dataset photo-copies --distractors -1", "argument --distractors: must be ≥ 0, got -1"),
    # one spelling across groups: --topk and --on-bad-file accepted (the index is then what is wrong)
    ("retrieve search --index {dir} {img} --topk 3", "--index {dir} is not a DeepIndex directory"),
    ("retrieve search --index {dir} {img} --on-bad-file skip", "--index {dir} is not a DeepIndex directory"),
    ("retrieve build --images {dir} --out {tmp}/i1 --on-bad-file fail", "--images {dir}: no image files"),
]


MATCH = [
    (
        "match eval --checkpoint {ckpt}",
        "was trained by the classify task, not match (use imagexplore classify",
    ),
    ("match eval --checkpoint {file}", "is not a checkpoint (or not a safe one)"),
    ("match eval --checkpoint {tmp}/none.pt", "{tmp}/none.pt"),
    ("match index --checkpoint {ckpt} --images {dir} --out {file}", "--out {file} is a file, not a folder"),
    ("match index --checkpoint {ckpt} --images {dir} --out {tmp}/mi", "not match"),
    ("match search --text hello", "--index is required for a text query"),
    ("match search --index {dir} --text hello", "{dir}/format.json"),
    ("match search --index {tmp}/none --text hello", "match index {tmp}/none not found"),
    ("match search --index {dir} --text hello --top 0", "argument --top: must be ≥ 1, got 0"),
    ("match search --image {img} --captions {file}", "needs --checkpoint"),
    (
        "match train --config configs/edges/shapes_rds_quick.yaml",
        "is for the edges task (imagexplore edges train), not match",
    ),
    ("match train --set loss.name=triplet", "loss.name"),
    ("match train --set loss.alphas=[1,2]", "loss.alphas needs 4 values"),
    ("match train --set model.kwargs.steps=-1 --set data.name=shapes", "steps"),
    ("match extract --data nowhere", "unknown caption set 'nowhere'"),
    ("match extract --data caption-folder", "needs root="),
    ("match extract --data shapes --image-encoder resnet152", "resnet152"),
    ("match eval --checkpoint {ckpt} --protocol 3k", "argument --protocol: invalid choice"),
    # chapters 6–7: CycleMatch and JMC options are checked before any feature is extracted
    ("match eval --checkpoint {ckpt} --fusion median", "argument --fusion: invalid choice"),
    ("match train --config shapes_cyclematch_quick --set loss.rec_loss=l2", "loss.rec_loss"),
    ("match train --config shapes_cyclematch_quick --set model.kwargs.map_hidden=0", "map_hidden must be"),
    ("match train --config shapes_jmc_quick --set model.kwargs.cls_fusion=max", "unknown cls_fusion 'max'"),
    ("match train --config shapes_jmc_quick --set model.kwargs.classify=audio", "unknown classify 'audio'"),
    ("match train --config shapes_jmc_quick --set train.stages[7].start=3", "has 3 entries; index 7"),
    ("match train --config shapes_jmc_quick --set loss.cls_weight=-1", "loss.cls_weight"),
]
SYNTH = [
    ("synth eval", "synth eval needs --checkpoint, or --baseline with --config"),
    ("synth eval --baseline identity", "give --config"),
    ("synth eval --baseline copy-paste --config shapes_pix2pix_quick", "does not apply to pairs data"),
    (
        "synth eval --checkpoint {ckpt}",
        "was trained by the classify task, not synth (use imagexplore classify",
    ),
    ("synth translate --checkpoint {ckpt} {img} --out {tmp}/t", "not synth"),
    (
        "synth translate --checkpoint {ckpt} {img} --out {tmp}/t --samples 0",
        "argument --samples: must be ≥ 1",
    ),
    ("synth swap --checkpoint {ckpt} --person {img} --clothes {img} --out {tmp}/s.png", "not synth"),
    ("synth train --config shapes_pix2pix_quick --set loss.gan_mode=wgan", "loss.gan_mode"),
    ("synth train --config shapes_pix2pix_quick --set model.kwargs.g_kwargs.depth=1", "depth"),
    ("synth train --config shapes_pix2pix_quick --set data.options.fit=stretch", "fit"),
    ("synth train --config shapes_pix2pix_quick --set data.name=nowhere", "nowhere"),
    (
        "synth train --config shapes_pix2pix_quick --set optimizers.E.module=D",
        "two optimizers, G (generators) and D",
    ),
    (
        "synth train --config shapes_swapgan_quick --set model.name=instantiation_net",
        "person data is for swapgan",
    ),
]


@pytest.mark.parametrize("cmd, expected", GENERAL + CLASSIFY + EDGES + RETRIEVE + MATCH + SYNTH)
def test_bad_input_is_one_line(cmd, expected, places, capsys):
    rc, _, err = run_main(fill(cmd, places), capsys)
    assert_one_line_error(rc, err, expected.format(**places))


def test_safe_load_never_advises_disabling_weights_only(places, capsys):
    rc, _, err = run_main(["classify", "eval", "--checkpoint", places["evil"]], capsys)
    assert rc == 2 and "weights_only" not in err and "this file ran code" not in err


def test_run_folder_is_its_best_checkpoint(places, capsys):
    rc, out, err = run_main(
        ["classify", "predict", "--checkpoint", places["run"], places["img"], "--json"], capsys
    )
    assert rc == 0, err
    assert f"using {places['run']}/checkpoints/best.pt" in err


def test_unverified_checkpoint_gets_a_notice(places, tmp_path, capsys):
    import shutil

    lone = tmp_path / "lone.pt"
    shutil.copy(places["ckpt"], lone)  # without its .sha256
    rc, _, err = run_main(["classify", "predict", "--checkpoint", str(lone), places["img"]], capsys)
    assert rc == 0 and f"{lone} has no lone.pt.sha256 beside it" in err
    rc, _, err = run_main(["classify", "predict", "--checkpoint", places["ckpt"], places["img"]], capsys)
    assert rc == 0 and "could not be verified" not in err


def test_class_subset_matches_by_name(places, tmp_path, capsys):
    """Two of the shapes' classes, in the other order: refused as is, scored by name with --class-subset."""
    from imagexplore.engine.checkpoint import load_checkpoint

    classes = load_checkpoint(places["ckpt"])["meta"]["classes"]
    for cls in (classes[2], classes[0]):
        (tmp_path / "sub" / cls).mkdir(parents=True)
        Image.open(places["img"]).save(tmp_path / "sub" / cls / "a.png")
    cmd = ["classify", "eval", "--checkpoint", places["ckpt"], "--data", "imagefolder", "--root"]
    rc, _, err = run_main([*cmd, str(tmp_path / "sub")], capsys)
    assert_one_line_error(rc, err, "pass --class-subset to match them by name")
    rc, out, err = run_main([*cmd, str(tmp_path / "sub"), "--class-subset", "--json"], capsys)
    assert rc == 0, err
    import json

    assert json.loads(out)["count"] == 2


def test_auto_resume_starts_fresh_and_says_so(tmp_path, capsys):
    from imagexplore.clitools import add_train_arguments, run_dir_for
    from imagexplore.engine.trainer import resume_path

    assert resume_path(tmp_path, "auto") is None
    assert "starting a new run" in capsys.readouterr().err
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"x")
    assert resume_path(tmp_path, "auto") == tmp_path / "checkpoints" / "last.pt"
    import argparse

    p = argparse.ArgumentParser()
    add_train_arguments(p)
    args = p.parse_args(["--auto-resume", "--out", str(tmp_path)])
    assert args.resume == "auto" and run_dir_for(None, args) == tmp_path


def test_interrupt_while_loading_is_one_line(monkeypatch, capsys):
    import imagexplore.cli as cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["--help"]) == 130
    assert capsys.readouterr().err.strip() == "imagexplore: interrupted"


def test_every_option_has_help():
    import argparse

    from imagexplore.cli import build_parser

    missing = []

    def walk(parser, prog):
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    walk(sub, f"{prog} {name}")
            elif not isinstance(a, argparse._HelpAction | argparse._VersionAction) and not a.help:
                missing.append(f"{prog} {'/'.join(a.option_strings) or a.dest}")

    walk(build_parser(), "imagexplore")
    assert not missing, missing


def test_help_imports_no_torch():
    """`imagexplore --help` must be quick: building the parser imports no torch (the task CLIs import lazily)."""
    import subprocess
    import sys

    code = (
        "import sys; from imagexplore.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
