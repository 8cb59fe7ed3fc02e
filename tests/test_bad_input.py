"""Every command with bad input: exit status 2 and one line on stderr, never a traceback (DESIGN.md, issue 10).

The commands run in-process through `main()` (no subprocess per case). Each row is
(command line, text the one line must contain); `{ckpt}`, `{run}`, `{file}`, `{dir}`, `{img}`, `{tmp}` are filled
from fixtures: a tiny classification checkpoint and its run folder, an ordinary file, an empty folder, an image.
"""

from __future__ import annotations

import shlex

import numpy as np
import pytest
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
    return {
        "ckpt": str(run / "checkpoints" / "best.pt"),
        "run": str(run),
        "file": str(tmp / "file.txt"),
        "dir": str(tmp / "empty"),
        "img": str(img),
        "tmp": str(tmp),
    }


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

CLASSIFY = []

# --------------------------------------------------------------------------------------------------------------
# edges

EDGES = []

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


@pytest.mark.parametrize("cmd, expected", GENERAL + CLASSIFY + EDGES + RETRIEVE)
def test_bad_input_is_one_line(cmd, expected, places, capsys):
    rc, _, err = run_main(fill(cmd, places), capsys)
    assert_one_line_error(rc, err, expected.format(**places))
