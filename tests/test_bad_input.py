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

EDGES = [
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

RETRIEVE = []


@pytest.mark.parametrize("cmd, expected", GENERAL + CLASSIFY + EDGES + RETRIEVE)
def test_bad_input_is_one_line(cmd, expected, places, capsys):
    rc, _, err = run_main(fill(cmd, places), capsys)
    assert_one_line_error(rc, err, expected.format(**places))
