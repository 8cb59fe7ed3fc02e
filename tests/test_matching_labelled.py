"""The image-text-label readers (ch. 7) on tiny fixtures in their published layouts, and their one-line errors."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagexplore.errors import ConfigError, DataError
from imagexplore.matching import data as md
from imagexplore.matching.data import read_caption_set

PARTS = ("train", "val", "test")


def _img(path: Path, k: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), (k * 37 % 256, 40, 90)).save(path)
    return path


def _text(path: Path, lines) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{ln}\n" for ln in lines))
    return path


def _one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def _check_partition(name, root, **options):
    """train, val and test are disjoint and together make ``all``; labels follow their images."""
    every = read_caption_set(name, root, "all", **options)
    parts = {s: read_caption_set(name, root, s, **options) for s in PARTS}
    seen = [img for s in PARTS for img in parts[s].images]
    assert len(seen) == len(set(seen)) and set(seen) == set(every.images)
    label_of = dict(zip(every.images, every.labels, strict=True))
    for cs in parts.values():
        assert cs.labels == [label_of[i] for i in cs.images]
    return every, parts


# ------------------------------------------------------------------------------------------- cub / flowers
def _cub(tmp_path, classes=("001.Albatross", "002.Auklet", "003.Cardinal", "004.Dove"), per_class=4, sub=""):
    root = tmp_path / "cub"
    for c, cls in enumerate(classes):
        for i in range(per_class):
            stem = f"{cls[4:]}_{i:04d}"
            _img(root / sub / "images" / cls / f"{stem}.jpg", c * 10 + i)
            _text(
                root / "text_c10" / cls / f"{stem}.txt",
                [f"a {cls[4:].lower()} number {i} line {k}" for k in range(10)],
            )
    return root


def test_cub_image_split(tmp_path):
    root = _cub(tmp_path, sub="CUB_200_2011")
    _text(root / "text_c10" / "002.Auklet" / "Orphan_0001.txt", ["no image for this one"])  # skipped
    every, parts = _check_partition("cub", root, split_sizes={"test": 1, "val": 1})
    assert every.num_images == 16 and len(every) == 160 and every.name == "cub"
    assert every.skipped == [(str(root / "text_c10" / "002.Auklet" / "Orphan_0001.txt"), "no image")]
    assert np.array_equal(every.caption_image, np.repeat(np.arange(16), 10))
    assert every.image_captions(0)[3] == "a albatross number 0 line 3" and every.labels[0] == "001.Albatross"
    assert every.origins[3].endswith("Albatross_0000.txt:4")
    assert [parts[s].num_images for s in PARTS] == [8, 4, 4]
    assert sorted(parts["test"].labels) == ["001.Albatross", "002.Auklet", "003.Cardinal", "004.Dove"]
    assert Path(parts["test"].images[0]).stem == Path(parts["test"].origins[0].rsplit(":", 1)[0]).stem
    again = read_caption_set("cub", root, "test", split_sizes={"test": 1, "val": 1})
    assert again.images == parts["test"].images  # seeded: the same split every time
    other = read_caption_set("cub", root, "test", split_sizes={"test": 1, "val": 1}, seed=1)
    assert other.num_images == 4
    few = read_caption_set("cub", root, "all", captions_per_image=2)
    assert len(few) == 32 and few.image_captions(5) == every.image_captions(5)[:2]
    default = {s: read_caption_set("cub", root, s).num_images for s in ("train", "test")}  # 0.2 of 4 → 1
    assert default == {"train": 12, "test": 4}
    with pytest.raises(DataError) as exc:  # 0.1 of 4 → 0 a class
        read_caption_set("cub", root, "val")
    assert "split 'val' has no image" in _one_line(exc)
    with pytest.raises(ConfigError, match="do not fit class"):
        read_caption_set("cub", root, "test", split_sizes={"test": 3, "val": 2})
    with pytest.raises(ConfigError, match="captions_per_image"):
        read_caption_set("cub", root, "test", captions_per_image=0)


def test_cub_class_split_files(tmp_path):
    root = _cub(tmp_path)
    (root / "trainclasses.txt").write_text("001.Albatross\n002.Auklet\n")
    (root / "valclasses.txt").write_text("003.Cardinal\n")
    (root / "testclasses.txt").write_text("004.Dove\n")
    _, parts = _check_partition("cub", root)
    assert set(parts["train"].labels) == {"001.Albatross", "002.Auklet"} and parts["train"].num_images == 8
    assert set(parts["val"].labels) == {"003.Cardinal"} and set(parts["test"].labels) == {"004.Dove"}
    assert (
        read_caption_set("cub", root, "trainval").num_images == 12
    )  # train ∪ val without trainvalclasses.txt
    (root / "trainvalclasses.txt").write_text("001.Albatross\n003.Cardinal\n")
    assert set(read_caption_set("cub", root, "trainval").labels) == {"001.Albatross", "003.Cardinal"}
    image_split = read_caption_set("cub", root, "test", class_split=False, split_sizes={"test": 1})
    assert len(set(image_split.labels)) == 4  # the files ignored: every class in test
    with pytest.raises(ConfigError, match="class_split=False"):
        read_caption_set("cub", root, "test", split_sizes={"test": 1})
    (root / "testclasses.txt").write_text("004.Dove\n005.Eagle\n")
    with pytest.raises(DataError) as exc:
        read_caption_set("cub", root, "test")
    assert "testclasses.txt: 1 class(es) without a folder" in _one_line(exc) and "005.Eagle" in str(exc.value)
    (root / "testclasses.txt").write_text("003.Cardinal\n")
    with pytest.raises(DataError, match="share 1 class"):
        read_caption_set("cub", root, "test")
    (root / "testclasses.txt").unlink()
    with pytest.raises(DataError, match=r"testclasses\.txt not found"):
        read_caption_set("cub", root, "test")
    plain = _cub(tmp_path / "plain")
    with pytest.raises(DataError, match="class_split=True but"):
        read_caption_set("cub", plain, "test", class_split=True)


def test_flowers_images_by_stem(tmp_path):
    root = tmp_path / "flowers"
    n = 0
    for cls in ("class_00001", "class_00002"):
        for _ in range(3):
            n += 1
            _img(root / "jpg" / f"image_{n:05d}.jpg", n)
            _text(
                root / "text_c10" / cls / f"image_{n:05d}.txt", [f"flower {n} caption {k}" for k in range(10)]
            )
    (root / "trainclasses.txt").write_text("class_00001\n")
    (root / "testclasses.txt").write_text("class_00002\n")
    test = read_caption_set("flowers", root, "test")
    assert test.images == [str(root / "jpg" / f"image_{k:05d}.jpg") for k in (4, 5, 6)]
    assert test.labels == ["class_00002"] * 3 and len(test) == 30 and test.name == "flowers"
    with pytest.raises(DataError, match=r"valclasses\.txt not found"):
        read_caption_set("flowers", root, "val")
    _, parts = _check_partition("flowers", root, class_split=False, split_sizes={"test": 1, "val": 1})
    assert [parts[s].num_images for s in PARTS] == [2, 2, 2]


def test_reed_bad_input(tmp_path):
    with pytest.raises(ConfigError) as exc:
        read_caption_set("cub")
    assert "'cub' needs root=" in _one_line(exc)
    with pytest.raises(ConfigError, match="'flowers' needs root="):
        md._labelled_readers()["flowers"](None)
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError) as exc:
        read_caption_set("cub", tmp_path)
    assert "text_c10 not found" in _one_line(exc) and "text_c10/<class>/<image>.txt" in str(exc.value)
    (tmp_path / "images").rmdir()
    (tmp_path / "text_c10").mkdir()
    with pytest.raises(DataError, match=r"no images/ or CUB_200_2011/images/"):
        read_caption_set("cub", tmp_path)
    with pytest.raises(DataError, match="not found"):
        read_caption_set("cub", tmp_path / "nowhere")
    root = _cub(tmp_path / "x", per_class=1)
    txt = root / "text_c10" / "002.Auklet" / "Auklet_0000.txt"
    txt.write_text("\n  \n")
    with pytest.raises(DataError) as exc:
        read_caption_set("cub", root, "all")
    assert f"{txt}: no caption" in _one_line(exc)
    txt.write_bytes(b"caf\xe9 bird\n")
    with pytest.raises(DataError) as exc:
        read_caption_set("cub", root, "all")
    assert "Auklet_0000.txt is not UTF-8" in _one_line(exc)


# ------------------------------------------------------------------------------------------- food-101
def _food(tmp_path, header=False):
    root = tmp_path / "food"
    rows = ["name,text,class"] if header else []
    for part, n in (("train", 6), ("test", 2)):
        for cls in ("apple_pie", "sushi"):
            for i in range(n):
                name = f"{cls}_{part}{i}.jpg"
                _img(root / "images" / part / cls / name, i)
                rows.append(
                    f'{name},"Best {cls}, recipe {i}",{cls}' if i == 0 else f"{name},{cls} page {i},{cls}"
                )
        _text(root / "texts" / f"{part}_titles.csv", rows)
        rows = []
    return root


def test_food101(tmp_path):
    root = _food(tmp_path, header=True)
    every, parts = _check_partition("food101", root, val_size=3)
    assert every.num_images == 16 and len(every) == 16 and every.name == "food101"
    assert np.array_equal(every.caption_image, np.arange(16))
    assert [parts[s].num_images for s in PARTS] == [9, 3, 4]
    assert set(parts["test"].labels) == {"apple_pie", "sushi"}
    first = every.images.index(str(root / "images" / "train" / "apple_pie" / "apple_pie_train0.jpg"))
    assert every.image_captions(first) == ["Best apple_pie, recipe 0"] and every.labels[first] == "apple_pie"
    assert every.origins[first] == f"{root / 'texts' / 'train_titles.csv'}:2"
    trainval = read_caption_set("food101", root, "trainval")
    assert set(trainval.images) == set(parts["train"].images) | set(parts["val"].images)
    assert read_caption_set("food101", root, "val", val_size=3).images == parts["val"].images  # seeded
    assert read_caption_set("food101", root, "val").num_images == 1  # 5 % of 12, rounded
    (root / "images" / "test" / "sushi" / "sushi_test1.jpg").unlink()
    test = read_caption_set("food101", root, "test")
    assert test.num_images == 3 and len(test.skipped) == 1 and "sushi_test1.jpg" in test.skipped[0][0]


def test_food101_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="'food101' needs root="):
        read_caption_set("food101")
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError) as exc:
        read_caption_set("food101", tmp_path)
    assert "texts not found" in _one_line(exc) and "texts/{train,test}_titles.csv" in str(exc.value)
    root = _food(tmp_path / "x")
    csv = root / "texts" / "test_titles.csv"
    csv.write_text("sushi_test0.jpg,nice,sushi\nsushi_test1.jpg, ,sushi\n")
    with pytest.raises(DataError) as exc:
        read_caption_set("food101", root, "test")
    assert f"{csv}:2: empty text" in _one_line(exc)
    csv.write_text("sushi_test0.jpg,sushi\n")
    with pytest.raises(DataError, match=r"test_titles\.csv:1: 2 field\(s\), expected name,text,class"):
        read_caption_set("food101", root, "test")
    with pytest.raises(ConfigError, match="val_size"):
        read_caption_set("food101", root, "val", val_size=1.5)


# ------------------------------------------------------------------------------------------- pascal sentences
def _pascal(tmp_path, per_class=10):
    root = tmp_path / "pascal"
    for c, cls in enumerate(("aeroplane", "bird", "cat")):
        for i in range(per_class):
            name = f"2008_{c}{i:05d}"
            _img(root / "dataset" / cls / f"{name}.jpg", i)
            _text(
                root / "sentence" / cls / f"{name}.txt", [f" A {cls} {i}, sentence {k}. " for k in range(5)]
            )
    return root


def test_pascal_sentences(tmp_path):
    root = _pascal(tmp_path)
    every, parts = _check_partition("pascal-sentences", root, split_sizes={"test": 2, "val": 0.2})
    assert every.num_images == 30 and len(every) == 150 and every.name == "pascal-sentences"
    assert np.array_equal(every.caption_image, np.repeat(np.arange(30), 5))
    assert every.image_captions(0)[1] == "A aeroplane 0, sentence 1."
    assert [parts[s].num_images for s in PARTS] == [18, 6, 6]
    for s in PARTS:
        assert sorted(set(parts[s].labels)) == ["aeroplane", "bird", "cat"]
    again = read_caption_set("pascal-sentences", root, "val", split_sizes={"test": 2, "val": 0.2})
    assert again.images == parts["val"].images and again.captions == parts["val"].captions
    default = {s: read_caption_set("pascal-sentences", root, s).num_images for s in ("val", "test")}
    assert default == {"val": 15, "test": 15}  # 5 / 5 a class (40 / 5 / 5 of 50)
    with pytest.raises(ConfigError, match="split_sizes takes 'test' and 'val'"):
        read_caption_set("pascal-sentences", root, "test", split_sizes={"train": 8})


def test_pascal_full_size_split(tmp_path):
    root = _pascal(tmp_path, per_class=50)
    sizes = {s: read_caption_set("pascal-sentences", root, s).num_images for s in PARTS}
    assert sizes == {"train": 120, "val": 15, "test": 15}


def test_pascal_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="'pascal-sentences' needs root="):
        read_caption_set("pascal-sentences", split="test")
    (tmp_path / "dataset").mkdir()
    with pytest.raises(DataError) as exc:
        read_caption_set("pascal-sentences", tmp_path)
    assert "sentence not found" in _one_line(exc) and "sentence/<class>/<name>.txt" in str(exc.value)
    with pytest.raises(ConfigError, match="unknown option"):
        read_caption_set("pascal-sentences", tmp_path, val_size=3)
