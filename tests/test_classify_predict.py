"""`classify predict`: any image mode and size, folders, --json shape, and one-line errors for bad files."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import tiny_classifier_cfg
from imagexplore.classification.evaluate import predict
from imagexplore.classification.train import train
from imagexplore.data.shapes import ShapesWorld
from imagexplore.errors import DataError


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    cfg = tiny_classifier_cfg("model.kwargs={width: 8}")
    train(cfg, run, show_progress=False)
    return run / "checkpoints" / "best.pt"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    rgb = ShapesWorld(seed=3, size=64).render(0, ("image",))["image"]
    Image.fromarray(rgb).save(d / "rgb.png")
    Image.fromarray(rgb).convert("L").save(d / "grey.png")
    Image.fromarray(rgb).convert("RGBA").save(d / "rgba.png")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(d / "sixteen.png")  # mode I;16
    Image.fromarray(rgb).resize((3000, 2000)).save(d / "large.jpg")
    return d


def test_any_mode_and_size(checkpoint, images):
    res, skipped = predict(checkpoint, [images], topk=3)
    assert [r["path"].rsplit("/", 1)[1] for r in res] == [
        "grey.png",
        "large.jpg",
        "rgb.png",
        "rgba.png",
        "sixteen.png",
    ]
    assert not skipped
    for r in res:
        probs = [t["prob"] for t in r["top"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert all(isinstance(t["label"], str) and isinstance(t["index"], int) for t in r["top"])
    assert Image.open(images / "sixteen.png").mode.startswith("I")


def test_bad_files(checkpoint, images, tmp_path):
    (tmp_path / "notes.png").write_text("this is not an image")
    data = (images / "rgb.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="notes.png"):
        predict(checkpoint, [tmp_path / "notes.png"])
    with pytest.raises(DataError, match="cut.png"):
        predict(checkpoint, [tmp_path / "cut.png"])
    res, skipped = predict(
        checkpoint, [tmp_path / "notes.png", images / "rgb.png", tmp_path / "cut.png"], on_bad_file="skip"
    )
    assert len(res) == 1 and len(skipped) == 2
    with pytest.raises(DataError, match="no such file"):
        predict(checkpoint, [tmp_path / "missing.jpg"])


def test_cli_json_shape_and_error_line(checkpoint, images, tmp_path):
    cmd = [sys.executable, "-m", "imagexplore", "classify", "predict", "--checkpoint", str(checkpoint)]
    out = subprocess.run(
        [*cmd, str(images / "rgb.png"), str(images / "grey.png"), "--json", "--topk", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert [r["path"] for r in res] == [str(images / "rgb.png"), str(images / "grey.png")]
    assert set(res[0]) == {"path", "top"} and set(res[0]["top"][0]) == {"label", "index", "prob"}
    (tmp_path / "bad.jpg").write_text("no")
    err = subprocess.run([*cmd, str(tmp_path / "bad.jpg")], capture_output=True, text=True, timeout=120)
    assert err.returncode == 2 and "bad.jpg" in err.stderr and len(err.stderr.strip().splitlines()) == 1
