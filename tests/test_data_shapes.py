"""The shapes world: determinism, every key's dtype/shape/values, consistency between keys, the wrappers."""

from __future__ import annotations

import hashlib
import inspect
import subprocess
import sys

import numpy as np
import pytest
import torch

from imagexplore.data.preview import preview_shapes
from imagexplore.data.shapes import (
    COLOUR_NAMES,
    IGNORE_INDEX,
    KEYPOINT_NAMES,
    PARSING_LABELS,
    SCENE_KEYS,
    SHAPE_CLASSES,
    SPLIT_OFFSETS,
    ShapesCaptions,
    ShapesClassification,
    ShapesEdges,
    ShapesPairs,
    ShapesRetrieval,
    ShapesSegmentation,
    ShapesWorld,
)
from imagexplore.errors import ConfigError, DataError

C = len(SHAPE_CLASSES)


@pytest.fixture(scope="module")
def world() -> ShapesWorld:
    return ShapesWorld(seed=0, size=64)


@pytest.fixture(scope="module")
def scenes(world) -> list[dict]:
    return [world.scene(i) for i in range(12)]


def _digest(s: dict) -> str:
    """A hash of every array and text of a scene (its source also runs in a fresh interpreter below)."""
    h = hashlib.sha256()
    for k in ("image", "mask", "edges", "sketch", "label_rgb", "instances"):
        h.update(np.ascontiguousarray(s[k]).tobytes())
    for a in s["annotators"]:
        h.update(a.tobytes())
    h.update(repr((s["captions"], s["label"], s["objects"])).encode())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------- determinism
def test_same_seed_and_index_give_identical_scenes(world):
    a, b = world.scene(5), ShapesWorld(seed=0, size=64).scene(5)
    assert _digest(a) == _digest(b)
    assert a["objects"] == b["objects"]


def test_other_index_or_seed_differs(world):
    base = world.scene(5)["image"]
    assert not np.array_equal(base, world.scene(6)["image"])
    assert not np.array_equal(base, ShapesWorld(seed=1, size=64).scene(5)["image"])


def test_determinism_across_processes(world):
    code = "\n".join(
        [
            "import hashlib",
            "import numpy as np",
            "from imagexplore.data.shapes import ShapesWorld",
            inspect.getsource(_digest),
            "print(_digest(ShapesWorld(seed=0, size=64).scene(7)))",
        ]
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == _digest(world.scene(7))


def test_render_subset_matches_full_scene(world):
    full = world.scene(3)
    part = world.render(3, ("image", "label", "mask"))
    assert set(part) == {"image", "label", "mask"}
    assert np.array_equal(part["image"], full["image"]) and part["label"] == full["label"]
    assert np.array_equal(part["mask"], full["mask"])


# ------------------------------------------------------------------------------------------- scene keys
def test_scene_keys_dtypes_and_shapes(scenes):
    for s in scenes:
        assert set(SCENE_KEYS) <= set(s)
        assert s["image"].shape == (64, 64, 3) and s["image"].dtype == np.uint8
        assert isinstance(s["label"], int) and 0 <= s["label"] < C
        assert s["mask"].shape == (64, 64) and s["mask"].dtype == np.uint8
        assert s["edges"].shape == (64, 64) and s["edges"].dtype == bool
        assert s["sketch"].shape == (64, 64) and s["sketch"].dtype == np.uint8
        assert s["label_rgb"].shape == (64, 64, 3) and s["label_rgb"].dtype == np.uint8
        assert 1 <= len(s["objects"]) <= 4
        for o in s["objects"]:
            assert o["class"] == SHAPE_CLASSES[o["class_index"]] and o["colour"] in COLOUR_NAMES
            assert o["area"] <= o["full_area"]
        # image is not flat: shapes are drawn
        assert s["image"].std() > 5


def test_label_is_class_of_largest_visible_object(scenes):
    for s in scenes:
        areas = [o["area"] for o in s["objects"]]
        assert s["label"] == s["objects"][int(np.argmax(areas))]["class_index"]
        # visible areas agree with the instance map
        assert areas == [int((s["instances"] == j + 1).sum()) for j in range(len(areas))]


def test_mask_values_and_consistency(scenes):
    for s in scenes:
        vals = set(np.unique(s["mask"]).tolist())
        assert vals <= set(range(C + 1)) | {IGNORE_INDEX}
        assert 0 in vals and IGNORE_INDEX in vals
        # away from the ignore band the mask is the class of the visible instance
        lut = np.array([0] + [o["class_index"] + 1 for o in s["objects"]])
        inner = s["mask"] != IGNORE_INDEX
        assert np.array_equal(s["mask"][inner], lut[s["instances"]][inner])
        # the label's class covers the most pixels among the classes present (usually)
    labels_dominant = [
        np.bincount(s["mask"][s["mask"] != IGNORE_INDEX], minlength=C + 1)[1:].argmax() == s["label"]
        for s in scenes
    ]
    assert np.mean(labels_dominant) >= 0.8


def test_edges_are_thin_boundaries_of_the_mask(scenes):
    for s in scenes:
        e, ids = s["edges"], s["instances"]
        assert e.any()
        assert np.array_equal(e, s["mask"] == IGNORE_INDEX)  # VOC: the ignore band is the boundary
        # every edge pixel has a 4-neighbour with another instance
        pad = np.pad(ids, 1, mode="edge")
        nb_differs = (
            (pad[1:-1, :-2] != ids)
            | (pad[1:-1, 2:] != ids)
            | (pad[:-2, 1:-1] != ids)
            | (pad[2:, 1:-1] != ids)
        )
        assert not (e & ~nb_differs).any()
        # and every change between instances is marked on at least one side (no gaps)
        assert (e[:, :-1] | e[:, 1:])[ids[:, :-1] != ids[:, 1:]].all()
        assert (e[:-1] | e[1:])[ids[:-1] != ids[1:]].all()
        # thin: edges cover a small fraction of the object pixels
        assert e.sum() < 0.5 * (ids > 0).sum()


def test_annotators_differ_and_stay_near_edges(scenes):
    for s in scenes:
        ann = s["annotators"]
        assert len(ann) >= 3
        assert all(a.shape == (64, 64) and a.dtype == bool for a in ann)
        assert len({a.tobytes() for a in ann}) >= 2
        assert all(a.any() for a in ann)
        # outlines are jittered by at most 1 px; only details (stripes, dots) lie inside objects
        e = np.pad(s["edges"], 1)
        near = np.zeros((64, 64), bool)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                near |= e[1 + dy : 65 + dy, 1 + dx : 65 + dx]
        for k, a in enumerate(ann):
            assert not (a & ~near & (s["instances"] == 0)).any()
            if k < 2:  # careful and lazy annotators draw outlines only
                assert not (a & ~near).any()
    # the lazy annotator (1) always draws less of the boundary than the careful one (0)
    assert all(s["annotators"][1].sum() < s["annotators"][0].sum() for s in scenes)


def test_captions_are_five_distinct_sentences_naming_the_label(world, scenes):
    for s in scenes:
        caps = s["captions"]
        assert len(caps) == 5 and len(set(caps)) == 5
        name = world.classes[s["label"]]
        main = max(s["objects"], key=lambda o: o["area"])
        for c in caps:
            assert isinstance(c, str) and c[0].isupper() and c.endswith(".")
            assert name in c and main["colour"] in c


def test_sketch_is_dark_lines_on_white(scenes):
    for s in scenes:
        sk = s["sketch"]
        assert np.median(sk) == 255  # mostly white paper
        assert sk.min() < 128  # with dark strokes
        # strokes lie near the object boundaries
        dark = sk < 200
        assert dark.sum() > 0.5 * s["edges"].sum()


def test_label_rgb_uses_fixed_palette(scenes):
    colour_of = {}
    for s in scenes:
        assert (s["label_rgb"][s["mask"] == 0] == 0).all()  # background black
        for k in np.unique(s["mask"]):
            cols = np.unique(s["label_rgb"][s["mask"] == k], axis=0)
            assert len(cols) == 1
            assert colour_of.setdefault(int(k), tuple(cols[0])) == tuple(cols[0])
    assert len(set(colour_of.values())) == len(colour_of)


def test_views_are_closer_to_each_other_than_to_other_scenes():
    w = ShapesWorld(seed=3, size=64)
    G, V = 10, 4
    groups = [[v["image"] for v in w.views(i, V)] for i in range(G)]

    def hist(img):  # joint colour histogram, 4 levels per channel
        q = (img // 64).reshape(-1, 3).astype(int)
        h = np.bincount(q[:, 0] * 16 + q[:, 1] * 4 + q[:, 2], minlength=64).astype(float)
        return h / h.sum()

    H = np.array([hist(v) for g in groups for v in g])
    D = np.abs(H[:, None] - H[None]).sum(-1)
    group = np.repeat(np.arange(G), V)
    same, other = group[:, None] == group[None], group[:, None] != group[None]
    np.fill_diagonal(same, False)
    assert D[same].mean() < 0.7 * D[other].mean()
    np.fill_diagonal(D, np.inf)
    nn_accuracy = (group[D.argmin(1)] == group).mean()
    assert nn_accuracy >= 0.5  # chance is (V - 1) / (G·V - 1) ≈ 0.08
    # views really change the image, and keep its shape
    assert all(v.shape == (64, 64, 3) and v.dtype == np.uint8 for v in groups[0])
    assert not np.array_equal(groups[0][0], groups[0][1])
    assert not np.array_equal(groups[0][0], w.scene(0)["image"])
    assert np.array_equal(w.views(2, 2)[1]["image"], w.view(2, 1)["image"])


# ------------------------------------------------------------------------------------------- persons
def test_person_outputs(world):
    p = world.person(3, 1)
    K = len(KEYPOINT_NAMES)
    assert p["image"].shape == (64, 64, 3) and p["image"].dtype == np.uint8
    assert p["keypoints"].shape == (K, 2) and p["keypoints"].dtype == np.float32
    assert ((p["keypoints"] >= 0) & (p["keypoints"] < 64)).all()
    assert p["parsing"].dtype == np.uint8 and set(np.unique(p["parsing"])) == set(range(len(PARSING_LABELS)))
    assert p["pose_map"].shape == (K, 64, 64) and p["pose_map"].dtype == np.float32
    # each heat map peaks at its keypoint
    for k in range(K):
        y, x = np.unravel_index(p["pose_map"][k].argmax(), (64, 64))
        assert abs(x + 0.5 - p["keypoints"][k, 0]) <= 1 and abs(y + 0.5 - p["keypoints"][k, 1]) <= 1
    # keypoints fall on the body
    kx, ky = p["keypoints"].astype(int).T
    assert (p["parsing"][ky, kx] > 0).mean() >= 0.8


def test_person_keypoints_inside_for_many_poses():
    w = ShapesWorld(seed=0, size=32)
    for pose in range(50):
        kp = w.person(pose, 0)["keypoints"]
        assert ((kp >= 0) & (kp < 32)).all()


def test_clothes_swap_keeps_layout(world):
    a, b, c = world.person(2, 0), world.person(2, 7), world.person(5, 0)
    assert np.array_equal(a["parsing"], b["parsing"])  # same pose → same parsing, whatever the outfit
    assert np.array_equal(a["keypoints"], b["keypoints"])
    clothes = np.isin(a["parsing"], (3, 4))
    assert not np.array_equal(a["image"][clothes], b["image"][clothes])  # the clothes changed
    # the person did not change: skin and hair pixels away from the (anti-aliased) clothes borders
    pad = np.pad(np.isin(a["parsing"], (3, 4, 5)), 2)  # clothes and shoes, grown by 2 px
    near_clothes = np.zeros_like(clothes)
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            near_clothes |= pad[2 + dy : 66 + dy, 2 + dx : 66 + dx]
    skin = np.isin(a["parsing"], (1, 2, 6, 7)) & ~near_clothes
    assert skin.sum() > 100 and np.array_equal(a["image"][skin], b["image"][skin])
    assert not np.allclose(a["keypoints"], c["keypoints"])  # another pose moves the limbs
    assert not np.array_equal(a["parsing"], c["parsing"])
    assert np.array_equal(world.person(2, 7)["image"], b["image"])


# ------------------------------------------------------------------------------------------- datasets
def test_classification_dataset():
    ds = ShapesClassification(10, size=32, seed=0)
    x, y = ds[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert isinstance(y, int) and 0 <= y < ds.num_classes
    assert ds.classes == list(SHAPE_CLASSES) and ds.num_classes == C and ds.in_chans == 3 and len(ds) == 10
    assert torch.equal(x, torch.from_numpy(ShapesWorld(size=32).scene(0)["image"]).permute(2, 0, 1) / 255)
    assert torch.equal(ds[-1][0], ds[9][0])
    with pytest.raises(IndexError):
        ds[10]
    t = ShapesClassification(4, size=32, transform=lambda im: im * 0 + 0.5)
    assert torch.all(t[1][0] == 0.5)
    small = ShapesClassification(4, size=32, num_classes=3)
    assert small.num_classes == 3 and all(small[i][1] < 3 for i in range(4))


def test_segmentation_dataset():
    ds = ShapesSegmentation(4, size=32)
    x, m = ds[1]
    assert x.shape == (3, 32, 32) and m.shape == (32, 32) and m.dtype == torch.long
    assert ds.num_classes == C + 1 and ds.classes[0] == "background"
    assert set(m.unique().tolist()) <= set(range(C + 1)) | {255}


def test_edges_dataset():
    x, e = ShapesEdges(3, size=32)[0]
    assert x.shape == (3, 32, 32) and e.shape == (32, 32) and e.dtype == torch.float32
    assert set(e.unique().tolist()) <= {0.0, 1.0} and e.sum() > 0
    x, a = ShapesEdges(3, size=32, annotators=True)[0]
    assert a.dtype == torch.bool and a.shape[0] >= 3 and a.shape[1:] == (32, 32)


def test_retrieval_dataset():
    ds = ShapesRetrieval(5, views_per_group=3, size=32)
    assert len(ds) == 15
    groups = [ds[k][1] for k in range(len(ds))]
    assert groups == [g for g in range(5) for _ in range(3)]
    assert ds[4][0].shape == (3, 32, 32)
    assert not torch.equal(ds[3][0], ds[4][0])


def test_captions_dataset():
    ds = ShapesCaptions(3, size=32)
    assert len(ds) == 15
    items = [ds[k] for k in range(5)]
    assert {it[2] for it in items} == {0} and len({it[1] for it in items}) == 5
    assert all(torch.equal(items[0][0], it[0]) for it in items)
    assert ds[5][2] == 1 and ds.captions(1)[0] == ds[5][1]


@pytest.mark.parametrize("direction", ["label2photo", "photo2label", "sketch2photo", "photo2sketch"])
def test_pairs_dataset(direction):
    ds = ShapesPairs(2, size=32, direction=direction)
    a, b = ds[0]
    assert a.shape == b.shape == (3, 32, 32) and a.dtype == b.dtype == torch.float32
    photo = ShapesClassification(2, size=32)[0][0]
    assert torch.equal(a if direction.startswith("photo") else b, photo)
    assert not torch.equal(a, b)


def test_splits_are_disjoint():
    tr, va, te = (ShapesClassification(20, size=32, split=s) for s in ("train", "val", "test"))
    assert [ds.offset for ds in (tr, va, te)] == [SPLIT_OFFSETS[s] for s in ("train", "val", "test")]
    ranges = [set(range(ds.offset, ds.offset + len(ds))) for ds in (tr, va, te)]
    assert not (ranges[0] & ranges[1] or ranges[1] & ranges[2] or ranges[0] & ranges[2])
    imgs = {s: {ds[k][0].numpy().tobytes() for k in range(20)} for s, ds in zip("tvs", (tr, va, te))}
    assert not (imgs["t"] & imgs["v"] or imgs["v"] & imgs["s"] or imgs["t"] & imgs["s"])


# ------------------------------------------------------------------------------------------- bad input
def test_bad_arguments_raise_user_errors():
    with pytest.raises(ConfigError, match="train, val, test"):
        ShapesClassification(10, split="training")
    with pytest.raises(ConfigError, match="label2photo"):
        ShapesPairs(2, direction="photo2photo")
    with pytest.raises(ConfigError):
        ShapesWorld(size=16)
    with pytest.raises(ConfigError):
        ShapesWorld(num_classes=99)
    with pytest.raises(ConfigError):
        ShapesWorld(min_objects=3, max_objects=2)
    with pytest.raises(ConfigError):
        ShapesClassification(0)
    with pytest.raises(ConfigError, match="num_classes"):
        ShapesClassification(4, colour_mode="hsv")
    with pytest.raises(ConfigError, match="valid keys"):
        ShapesWorld().render(0, ("image", "depth"))
    with pytest.raises(DataError):
        ShapesWorld().scene(-1)


def test_world_options():
    w = ShapesWorld(seed=0, size=32, min_objects=1, max_objects=1, textures=False, backgrounds=("flat",))
    for i in range(5):
        s = w.scene(i)
        assert len(s["objects"]) == 1 and s["objects"][0]["pattern"] == "solid"
        corner = s["image"][0, 0]
        # flat background: the far corner has the same colour (unless the one object reaches it)
        assert (s["image"][-1, -1] == corner).all() or s["mask"][-1, -1] != 0
    big = ShapesWorld(size=256).scene(0)
    assert big["image"].shape == (256, 256, 3) and big["mask"].shape == (256, 256)


def test_preview_writes_sheets(tmp_path):
    paths = preview_shapes(tmp_path / "prev", size=48, n=4)
    names = {p.name for p in paths}
    for want in ("scenes.png", "masks.png", "label_rgb.png", "edges.png", "annotators.png", "sketches.png"):
        assert want in names
    assert {"views.png", "persons.png", "captions.txt"} <= names
    assert all(p.exists() and p.stat().st_size > 100 for p in paths)
    from PIL import Image

    with Image.open(tmp_path / "prev" / "scenes.png") as im:
        assert im.mode == "RGB" and im.width >= 4 * 48
    assert "scene 3" in (tmp_path / "prev" / "captions.txt").read_text()
