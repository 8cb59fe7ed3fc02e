"""Caption-set readers on tiny fixtures in the published layouts, and their one-line errors."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagexplore.errors import ConfigError, DataError
from imagexplore.matching import data as md
from imagexplore.matching.data import (
    CaptionSet,
    load_image,
    precomputed_image_features,
    read_caption_set,
)
from imagexplore.matching.openclipart import parse_svg_metadata


def _img(path: Path, colour=(200, 30, 30), size=(40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------------------------------- CaptionSet
def test_caption_set_helpers_and_validation():
    cs = CaptionSet(
        ["a", "b", "c"], ["x1", "x2", "y", "z1", "z2"], np.array([0, 0, 1, 2, 2]), ["p", "q", "p"]
    )
    assert len(cs) == 5 and cs.num_images == 3
    assert cs.image_captions(2) == ["z1", "z2"]
    sub = cs.subset([2, 0])
    assert sub.images == ["c", "a"] and sub.labels == ["p", "p"]
    assert sub.captions == ["x1", "x2", "z1", "z2"] and sub.caption_image.tolist() == [1, 1, 0, 0]
    assert sub.image_captions(0) == ["z1", "z2"]
    assert CaptionSet.from_dict(cs.to_dict()).content_hash() == cs.content_hash()
    with pytest.raises(DataError, match="points to image 3"):
        CaptionSet(["a"], ["x"], np.array([3]))
    with pytest.raises(DataError, match="f.txt:2: empty caption"):
        CaptionSet(["a"], ["x", " "], np.array([0, 0]), origins=["f.txt:1", "f.txt:2"])
    with pytest.raises(DataError, match="have no caption"):
        CaptionSet(["a", "b"], ["x"], np.array([0]))
    with pytest.raises(ConfigError):
        cs.subset([0, 0])


# ------------------------------------------------------------------------------------------- karpathy
def _karpathy(tmp_path: Path, entries) -> Path:
    (tmp_path / "dataset_flickr30k.json").write_text(json.dumps({"dataset": "flickr30k", "images": entries}))
    return tmp_path


def _entry(name, split, n=5):
    return {"filename": name, "split": split, "sentences": [{"raw": f"{name} caption {k}"} for k in range(n)]}


def test_karpathy_splits_and_restval(tmp_path):
    for k in range(4):
        _img(tmp_path / "flickr30k-images" / f"{k}.jpg")
    root = _karpathy(
        tmp_path,
        [
            _entry("0.jpg", "train"),
            _entry("1.jpg", "restval"),
            _entry("2.jpg", "val"),
            _entry("3.jpg", "test"),
        ],
    )
    test = read_caption_set("karpathy", root, "test")
    assert test.name == "karpathy:flickr30k" and test.num_images == 1 and len(test) == 5
    assert Path(test.images[0]) == tmp_path / "flickr30k-images" / "3.jpg"
    assert test.image_captions(0)[0] == "3.jpg caption 0"
    assert read_caption_set("karpathy", root, "train").num_images == 1
    assert read_caption_set("karpathy", root, "train", restval_in_train=True).num_images == 2
    assert load_image(test.images[0]).mode == "RGB"


def test_karpathy_coco_filepath_and_tokens(tmp_path):
    _img(tmp_path / "val2014" / "a.jpg")
    e = {"filepath": "val2014", "filename": "a.jpg", "split": "test", "sentences": [{"tokens": ["a", "cat"]}]}
    (tmp_path / "dataset_coco.json").write_text(json.dumps({"dataset": "coco", "images": [e]}))
    cs = read_caption_set("karpathy", tmp_path, "test")
    assert cs.captions == ["a cat"] and Path(cs.images[0]) == tmp_path / "val2014" / "a.jpg"


@pytest.mark.parametrize("missing", ["split", "sentences"])
def test_karpathy_missing_key(tmp_path, missing):
    e = _entry("0.jpg", "test")
    del e[missing]
    root = _karpathy(tmp_path, [e])
    with pytest.raises(DataError) as exc:
        read_caption_set("karpathy", root, "test")
    msg = _one_line(exc)
    assert "dataset_flickr30k.json" in msg and f"lacks '{missing}'" in msg


def test_karpathy_empty_caption_and_missing_image(tmp_path):
    e = _entry("0.jpg", "test", 2)
    e["sentences"][1]["raw"] = "  "
    _img(tmp_path / "0.jpg")
    with pytest.raises(DataError) as exc:
        read_caption_set("karpathy", _karpathy(tmp_path, [e]), "test")
    assert "images[0].sentences[1]" in _one_line(exc) and "empty caption" in str(exc.value)
    root = _karpathy(tmp_path, [_entry("0.jpg", "test"), _entry("9.jpg", "test")])
    with pytest.raises(DataError, match=r"1 of 2 images .* not found .*9\.jpg"):
        read_caption_set("karpathy", root, "test")


# ------------------------------------------------------------------------------------------- precomputed
def _precomputed(tmp_path, n_images, n_caps, repeat=False, blank_at=None):
    feats = np.arange(n_images * 3, dtype=np.float32).reshape(n_images, 3)
    np.save(tmp_path / "test_ims.npy", np.repeat(feats, 5, axis=0) if repeat else feats)
    lines = [f"caption {k}" for k in range(n_caps)]
    if blank_at is not None:
        lines[blank_at] = ""
    (tmp_path / "test_caps.txt").write_text("\n".join(lines) + "\n")
    return feats


@pytest.mark.parametrize("repeat", [False, True])
def test_precomputed(tmp_path, repeat):
    feats = _precomputed(tmp_path, 3, 15, repeat)
    cs = read_caption_set("precomputed", tmp_path, "test")
    assert (
        cs.num_images == 3 and len(cs) == 15 and cs.caption_image.tolist() == np.repeat(range(3), 5).tolist()
    )
    assert cs.images == ([0, 5, 10] if repeat else [0, 1, 2])
    np.testing.assert_array_equal(precomputed_image_features(tmp_path, "test"), feats)
    with pytest.raises(DataError, match="pre-computed"):
        load_image(cs.images[0])


def test_precomputed_count_mismatch_and_blank(tmp_path):
    _precomputed(tmp_path, 3, 10)
    with pytest.raises(DataError) as exc:
        read_caption_set("precomputed", tmp_path, "test")
    msg = _one_line(exc)
    assert "test_caps.txt has 10 captions" in msg and "3 image rows" in msg and "expected 15" in msg
    _precomputed(tmp_path, 3, 14)
    with pytest.raises(DataError, match="14 captions, not a multiple of 5"):
        read_caption_set("precomputed", tmp_path, "test")
    _precomputed(tmp_path, 3, 15, blank_at=6)
    with pytest.raises(DataError, match=r"test_caps\.txt:7: empty caption"):
        read_caption_set("precomputed", tmp_path, "test")


# ------------------------------------------------------------------------------------------- caption folder
def _folder(tmp_path):
    root = tmp_path / "set"
    _img(root / "cats" / "a.png")
    (root / "cats" / "a.txt").write_text("A red square.\n\n  a  crimson   block \n")
    _img(root / "dogs" / "b.jpg", (0, 0, 200))
    (root / "dogs" / "b.txt").write_text("A blue square.\n")
    _img(root / "dogs" / "c.png")  # no .txt: skipped, counted
    (root / "dogs" / "orphan.txt").write_text("no image here\n")  # ignored
    return root


def test_caption_folder(tmp_path):
    root = _folder(tmp_path)
    cs = read_caption_set("caption-folder", root)
    assert cs.num_images == 2 and cs.captions == ["A red square.", "a crimson block", "A blue square."]
    assert cs.labels == ["cats", "dogs"] and cs.split == "test"
    assert len(cs.skipped) == 1 and cs.skipped[0][0].endswith("c.png")
    with pytest.raises(DataError, match="no splits/train.txt"):
        read_caption_set("caption-folder", root, "train")
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("# the training images\ndogs/b\n")
    tr = read_caption_set("caption-folder", root, "train")
    assert tr.captions == ["A blue square."]
    (root / "splits" / "val.txt").write_text("dogs/zzz.png\n")
    with pytest.raises(DataError, match=r"val\.txt: 1 listed image.*dogs/zzz\.png"):
        read_caption_set("caption-folder", root, "val")
    other = tmp_path / "mine.txt"
    other.write_text("cats/a.png\n")
    assert read_caption_set("caption-folder", root, "test", split_files={"test": other}).num_images == 1


def test_caption_folder_not_utf8(tmp_path):
    root = _folder(tmp_path)
    (root / "cats" / "a.txt").write_bytes(b"caf\xe9 au lait\n")
    with pytest.raises(DataError) as exc:
        read_caption_set("caption-folder", root)
    assert "a.txt is not UTF-8" in _one_line(exc)


def test_unknown_reader_and_option(tmp_path):
    with pytest.raises(ConfigError, match="unknown caption set"):
        read_caption_set("flickr", tmp_path)
    with pytest.raises(ConfigError, match="unknown option"):
        read_caption_set("shapes", split="test", colour=True)


# ------------------------------------------------------------------------------------------- shapes
def test_shapes():
    cs = read_caption_set("shapes", split="val", num_images=4, size=48, seed=3)
    assert cs.num_images == 4 and len(cs) == 20 and len(cs.labels) == 4
    assert cs.images[1] == "shapes:val:3:1:48"
    img = load_image(cs.images[1])
    assert img.size == (48, 48) and img.mode == "RGB"
    again = read_caption_set("shapes", split="val", num_images=4, size=48, seed=3)
    assert again.captions == cs.captions
    np.testing.assert_array_equal(np.asarray(load_image(cs.images[1])), np.asarray(img))
    with pytest.raises(DataError, match="bad shapes image key"):
        load_image("shapes:nope")


# ------------------------------------------------------------------------------------------- open clip art
SVG = """<?xml version="1.0"?>
{doctype}<svg xmlns="http://www.w3.org/2000/svg" xmlns:dc="http://purl.org/dc/elements/1.1/"
 xmlns:cc="http://web.resource.org/cc/" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<metadata><rdf:RDF><cc:Work rdf:about="">
 <dc:title>{title}</dc:title><dc:description>{desc}</dc:description>
 <dc:subject><rdf:Bag><rdf:li>cat</rdf:li><rdf:li>unsorted</rdf:li><rdf:li>pet</rdf:li></rdf:Bag></dc:subject>
 <dc:creator><cc:Agent><dc:title>Somebody</dc:title></cc:Agent></dc:creator>
</cc:Work></rdf:RDF></metadata><rect width="1" height="1"/></svg>
"""


def test_svg_metadata_and_guards(tmp_path):
    p = tmp_path / "a.svg"
    p.write_text(SVG.format(doctype="", title="A cat", desc="sitting"))
    assert parse_svg_metadata(p) == {
        "title": "A cat",
        "keywords": ["cat", "unsorted", "pet"],
        "description": "sitting",
    }
    ns = '<!DOCTYPE svg [<!ENTITY ns_svg "http://www.w3.org/2000/svg">]>\n'
    p.write_text(SVG.format(doctype=ns, title="ok", desc=""))
    assert parse_svg_metadata(p)["title"] == "ok"
    lol = '<!DOCTYPE svg [<!ENTITY a "xx"><!ENTITY b "&a;&a;&a;">]>\n'
    p.write_text(SVG.format(doctype=lol, title="&b;", desc=""))
    with pytest.raises(DataError, match="entity 'b' refused"):
        parse_svg_metadata(p)
    p.write_text("<svg><metadata>")
    with pytest.raises(DataError, match="not well-formed"):
        parse_svg_metadata(p)
    with pytest.raises(DataError, match="over the 10-byte limit"):
        parse_svg_metadata(p, max_bytes=10)


def test_openclipart_fixture(tmp_path):
    root = tmp_path / "openclipart"
    for k, (cat, title) in enumerate(
        [("animals", "A cat"), ("animals", ""), ("food", "Pie"), ("people", "Bob")]
    ):
        _img(root / "png" / cat / f"d{k}.png", (k * 40, 10, 10))
        svg = root / "svg" / cat / f"d{k}.svg"
        svg.parent.mkdir(parents=True, exist_ok=True)
        svg.write_text(SVG.format(doctype="", title=title, desc="desc" if k == 2 else ""))
    _img(root / "png" / "food" / "copy.png", (2 * 40, 10, 10))  # a byte-identical copy of d2: pooled
    (root / "svg" / "food" / "copy.svg").write_text(SVG.format(doctype="", title="Pie copy", desc=""))
    (root / "svg" / "people" / "d3.svg").write_text("<svg><metadata>")  # unparsable: counted, no text
    kw = dict(cache_dir=tmp_path / "cache", test_size=1, val_size=1)
    parts = {s: read_caption_set("openclipart", root, s, **kw) for s in ("train", "val", "test", "all")}
    every = parts["all"]
    assert every.num_images == 3 and sum(parts[s].num_images for s in ("train", "val", "test")) == 3
    assert {r for _, r in every.skipped if r == "no text"} == {"no text"}
    assert any("not well-formed" in r for _, r in every.skipped)
    pie = every.images.index(str(root / "png" / "food" / "copy.png"))  # the first path of the pooled pair
    assert every.image_captions(pie) == ["Pie copy", "Pie", "keywords: cat, pet", "desc"]
    assert every.labels[pie] == "food"
    assert len(list((tmp_path / "cache").glob("openclipart_*.json"))) == 1
    assert read_caption_set("openclipart", root, "all", **kw).captions == every.captions  # from the cache


def test_openclipart_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGEXPLORE_CACHE", str(tmp_path))  # a cold parse of the 8,121 SVGs (~3 s)
    if not (md.OPENCLIPART / "png").is_dir() or not (md.OPENCLIPART / "svg").is_dir():
        pytest.skip("Debian openclipart-png / openclipart-svg are not installed (make data)")
    test = read_caption_set("openclipart", split="test")
    val = read_caption_set("openclipart", split="val")
    assert test.num_images == 1000 and val.num_images == 500
    assert not set(test.images) & set(val.images)
    assert all(1 <= len(test.image_captions(i)) <= 3 for i in range(0, 1000, 97))
    assert len(set(test.labels)) > 10


def test_tuxpaint(tmp_path):
    if not md.TUXPAINT_STAMPS.is_dir():
        pytest.skip("Debian tuxpaint-stamps-default is not installed (make data)")
    cs = read_caption_set("tuxpaint")
    assert cs.num_images > 700 and len(cs) == cs.num_images and "animals" in cs.labels
    assert not any("utf8=" in c for c in cs.captions)
    assert all(r == "no .txt" for _, r in cs.skipped)
    val = read_caption_set("tuxpaint", split="val", split_sizes={"test": 100, "val": 50})
    test = read_caption_set("tuxpaint", split="test", split_sizes={"test": 100, "val": 50})
    assert val.num_images == 50 and test.num_images == 100 and not set(val.images) & set(test.images)
    with pytest.raises(ConfigError, match="split_sizes"):
        read_caption_set("tuxpaint", split="train")


def test_tuxpaint_missing(tmp_path):
    with pytest.raises(DataError, match="make data"):
        read_caption_set("tuxpaint", tmp_path / "nowhere")
