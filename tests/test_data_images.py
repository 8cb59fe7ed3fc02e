"""Safe image loading: modes, bad files, the decompression-bomb guard, listing, the bad-file policy."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from imagexplore.data.images import (
    BadFileCounter,
    UInt8ImageDataset,
    check_on_bad_file,
    list_images,
    load_image,
    pil_to_tensor,
    resize_center_crop,
    verify_images,
)
from imagexplore.errors import ConfigError, DataError


def _rgb(tmp_path, name="rgb.png", size=(20, 10), color=(10, 200, 30)):
    p = tmp_path / name
    Image.new("RGB", size, color).save(p)
    return p


def test_rgb_png_roundtrip(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (12, 17, 3), dtype=np.uint8)
    p = tmp_path / "x.png"
    Image.fromarray(a).save(p)
    img = load_image(p)
    assert img.mode == "RGB" and img.size == (17, 12)
    assert np.array_equal(np.asarray(img), a)
    t = pil_to_tensor(img)
    assert t.dtype == torch.float32 and t.shape == (3, 12, 17)
    assert torch.allclose(t[1], torch.from_numpy(a[..., 1]).float() / 255)


def test_grey_modes_become_rgb_and_l(tmp_path):
    Image.new("L", (8, 6), 77).save(tmp_path / "l.png")
    img = load_image(tmp_path / "l.png")
    assert img.mode == "RGB" and np.asarray(img).reshape(-1, 3).tolist()[0] == [77, 77, 77]
    assert load_image(tmp_path / "l.png", mode="L").mode == "L"

    bilevel = Image.new("1", (8, 6), 1)
    bilevel.save(tmp_path / "b.png")
    assert np.asarray(load_image(tmp_path / "b.png", "L")).min() == 255

    rgb = _rgb(tmp_path, color=(255, 0, 0))
    grey = np.asarray(load_image(rgb, "L"))
    assert grey.shape == (10, 20) and 70 < grey[0, 0] < 80  # ITU-R 601 luma of pure red = 76


def test_rgba_composited_onto_white(tmp_path):
    a = np.zeros((4, 4, 4), dtype=np.uint8)
    a[..., 0] = 200  # red-ish colour everywhere
    a[:2, :, 3] = 255  # top half opaque
    a[2:, :, 3] = 0  # bottom half fully transparent
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    out = np.asarray(load_image(tmp_path / "a.png"))
    assert out[0, 0].tolist() == [200, 0, 0]
    assert out[3, 3].tolist() == [255, 255, 255]

    la = Image.new("LA", (4, 4), (0, 0))  # black, fully transparent → white
    la.save(tmp_path / "la.png")
    assert np.asarray(load_image(tmp_path / "la.png", "L")).min() == 255


def test_palette_with_transparency(tmp_path):
    p = Image.new("P", (4, 4), 0)
    p.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    p.putpixel((0, 0), 1)
    p.info["transparency"] = 0  # palette entry 0 (black) is transparent
    p.save(tmp_path / "p.png", transparency=0)
    out = np.asarray(load_image(tmp_path / "p.png"))
    assert out[0, 0].tolist() == [0, 255, 0]
    assert out[3, 3].tolist() == [255, 255, 255]


def test_16bit_png_rescaled_by_257(tmp_path):
    a = np.array([[0, 257 * 100, 65535, 1000]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "d.png")
    with Image.open(tmp_path / "d.png") as raw:
        assert raw.mode.startswith("I")  # really a 16-bit image on disk
    out = load_image(tmp_path / "d.png", "L")
    assert np.asarray(out).tolist() == [[0, 100, 255, 4]]  # fixed /257, not stretched to the image's range
    assert load_image(tmp_path / "d.png").mode == "RGB"


def test_32bit_int_and_float_tiff(tmp_path):
    Image.fromarray(np.array([[-5, 70000, 257 * 3]], dtype=np.int32), mode="I").save(tmp_path / "i.tif")
    assert np.asarray(load_image(tmp_path / "i.tif", "L")).tolist() == [[0, 255, 3]]
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F").save(tmp_path / "f.tif")
    assert np.asarray(load_image(tmp_path / "f.tif", "L")).tolist() == [[0, 128, 255]]


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg")  # pure red in CMYK
    out = np.asarray(load_image(tmp_path / "c.jpg"))
    assert out.shape == (8, 8, 3)
    r, g, b = out[4, 4].tolist()
    assert r > 200 and g < 60 and b < 60


def test_exif_orientation_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.new("RGB", (40, 20), (0, 0, 255)).save(tmp_path / "o.jpg", exif=exif)
    assert load_image(tmp_path / "o.jpg").size == (20, 40)


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("empty.png", b"", "not an image"),
        ("notes.jpg", b"this is a text file, not a JPEG\n" * 10, "not an image"),
    ],
)
def test_non_images_raise_dataerror(tmp_path, name, content, reason):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(DataError) as e:
        load_image(p)
    msg = str(e.value)
    assert msg.startswith(f"cannot read image {p}: ") and reason in msg and "\n" not in msg


def test_truncated_jpeg_and_png(tmp_path):
    a = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for suffix in (".jpg", ".png"):
        good = tmp_path / f"good{suffix}"
        Image.fromarray(a).save(good)
        bad = tmp_path / f"bad{suffix}"
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        load_image(good)
        with pytest.raises(DataError, match=rf"cannot read image {bad}: .*trunc"):
            load_image(bad)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DataError, match=rf"cannot read image {tmp_path / 'nope.png'}: file not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(DataError, match="it is a folder"):
        load_image(tmp_path)
    with pytest.raises(ConfigError, match="image mode"):
        load_image(_rgb(tmp_path), mode="CMYK")


def test_decompression_bomb_guard_becomes_dataerror(tmp_path, monkeypatch):
    p = _rgb(tmp_path, "big.png", size=(50, 50))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 2,500 px is over twice the limit
    with pytest.raises(DataError) as e:
        load_image(p)
    assert str(p) in str(e.value) and "MAX_IMAGE_PIXELS=100" in str(e.value)


def test_list_images(tmp_path):
    (tmp_path / "b" / "deep").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    for rel in ["z.PNG", "a.jpg", "b/c.jpeg", "b/deep/d.webp", ".hidden/e.png", "._f.jpg", "notes.txt"]:
        (tmp_path / rel).write_bytes(b"x")
    got = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert got == ["a.jpg", "b/c.jpeg", "b/deep/d.webp", "z.PNG"]
    assert [p.name for p in list_images(tmp_path, recursive=False)] == ["a.jpg", "z.PNG"]
    with pytest.raises(DataError, match=str(tmp_path / "missing")):
        list_images(tmp_path / "missing")


def test_bad_file_policy(tmp_path, caplog):
    good = _rgb(tmp_path, "good.png")
    bad1, bad2 = tmp_path / "bad1.jpg", tmp_path / "bad2.png"
    bad1.write_bytes(b"nope")
    bad2.write_bytes(b"")
    with pytest.raises(DataError, match="bad1.jpg"):
        verify_images([good, bad1, bad2], "fail")
    with caplog.at_level(logging.WARNING, logger="imagexplore.data"):
        kept, counter = verify_images([good, bad1, bad2], "skip", where=tmp_path)
    assert kept == [good] and counter.count == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 2 unreadable images" in warnings[0].getMessage()

    c = BadFileCounter("skip")
    c.report(tmp_path)  # nothing skipped: nothing to say
    assert c.count == 0
    assert check_on_bad_file("skip") == "skip"
    with pytest.raises(ConfigError, match="on_bad_file must be one of fail, skip"):
        check_on_bad_file("ignore")


def test_resize_center_crop():
    img = Image.fromarray(np.tile(np.arange(60, dtype=np.uint8), (30, 1)))  # 60 wide, 30 high, ramp in x
    out = resize_center_crop(img, 10)
    assert out.size == (10, 10)
    # shorter side 30 → 10, width 60 → 20, centre crop keeps the middle of the ramp
    a = np.asarray(out).astype(int)
    assert 15 < a[5, 0] < 20 and 38 < a[5, -1] < 45


def test_uint8_dataset_resize_and_transform():
    imgs = torch.full((2, 1, 4, 4), 255, dtype=torch.uint8)
    ds = UInt8ImageDataset(imgs, [0, 1], ["a", "b"], transform=lambda x: x * 2, image_size=8)
    x, y = ds[1]
    assert x.shape == (1, 8, 8) and torch.allclose(x, torch.full_like(x, 2.0)) and y == 1
    assert (ds.num_classes, ds.in_chans, len(ds)) == (2, 1, 2)
