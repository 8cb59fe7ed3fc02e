"""Person data for SwapGAN: our on-disk form, shapes swap pairs with exact truth, DeepFashion/Market readers."""

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from imagexplore.cli import main
from imagexplore.data.shapes import KEYPOINT_NAMES, PARSING_LABELS, SPLIT_OFFSETS, ShapesWorld
from imagexplore.errors import ConfigError, DataError
from imagexplore.synthesis.persons import (
    COCO18_KEYPOINTS,
    LIP20_LABELS,
    DeepFashionPersons,
    MarketPersons,
    Person,
    SwapPairs,
    convert_deepfashion,
    export_persons,
    parsing_onehot,
    pose_heatmaps,
    read_person,
    swap_clothes_parsing,
    write_person,
)

S = 32


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and msg
    return msg


def coco_person(h=40, w=24, seed=0) -> Person:
    """A small non-square coco18 person (random pixels, LIP labels, two missing keypoints)."""
    rng = np.random.default_rng(seed)
    kp = np.stack([rng.uniform(0, w, 18), rng.uniform(0, h, 18)], axis=1).astype(np.float32)
    kp[[3, 16]] = -1
    return Person(
        image=rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        keypoints=kp,
        parsing=rng.integers(0, 20, (h, w), dtype=np.uint8),
        order="coco18",
    )


# ------------------------------------------------------------------------------------------- our form
def test_export_round_trip(tmp_path):
    paths = export_persons(tmp_path, 3, size=S, seed=1)
    manifest = json.loads((tmp_path / "persons.json").read_text())
    assert [p.name for p in paths] == [f"{r['name']}.png" for r in manifest["persons"]]
    assert sorted(r["outfit"] for r in manifest["persons"]) == [0, 1, 2]  # each pose and outfit once
    world = ShapesWorld(seed=1, size=S)
    for path, row in zip(paths, manifest["persons"]):
        assert (
            re.fullmatch(r"p\d{4}_o\d{4}", row["name"])
            and row["name"] == f"p{row['pose']:04d}_o{row['outfit']:04d}"
        )
        assert {q.name for q in tmp_path.glob(row["name"] + ".*")} == {
            f"{row['name']}.png", f"{row['name']}.pose.json", f"{row['name']}.parsing.png"
        }  # fmt: skip
        person, truth = read_person(path), world.person(row["pose"], row["outfit"])
        assert person.order == "shapes" and person.labels == PARSING_LABELS
        assert np.array_equal(person.image, truth["image"])
        assert person.keypoints.dtype == np.float32 and np.array_equal(person.keypoints, truth["keypoints"])
        assert person.parsing.dtype == np.uint8 and np.array_equal(person.parsing, truth["parsing"])
    pose = json.loads(paths[0].with_name(paths[0].stem + ".pose.json").read_text())
    assert pose["order"] == "shapes" and len(pose["keypoints"]) == len(KEYPOINT_NAMES)


def test_write_read_coco18_with_missing_keypoints(tmp_path):
    p = coco_person()
    path = write_person(tmp_path, "df_0001", p)
    q = read_person(path, order="coco18")
    assert np.array_equal(q.image, p.image) and np.array_equal(q.parsing, p.parsing)
    assert np.array_equal(q.keypoints, p.keypoints) and q.labels == LIP20_LABELS
    assert json.loads((tmp_path / "df_0001.pose.json").read_text())["keypoints"][3] == [-1, -1]
    # other file names through pose_path / parsing_path
    (tmp_path / "df_0001.pose.json").rename(tmp_path / "elsewhere.json")
    q = read_person(path, pose_path=tmp_path / "elsewhere.json")
    assert np.array_equal(q.keypoints, p.keypoints)


def test_cli_export_and_errors(tmp_path, capsys):
    out = tmp_path / "persons"
    assert (
        main(["data", "export-persons", "--out", str(out), "--count", "2", "--size", "32", "--seed", "3"])
        == 0
    )
    assert "wrote 2 persons" in capsys.readouterr().out
    rows = json.loads((out / "persons.json").read_text())["persons"]
    assert len(rows) == 2 and len(list(out.glob("*.pose.json"))) == 2
    world = ShapesWorld(seed=3, size=32)
    for r in rows:
        assert np.array_equal(
            read_person(out / f"{r['name']}.png").image, world.person(r["pose"], r["outfit"])["image"]
        )
    rc = main(
        ["data", "convert-persons", "--from", "market", "--root", str(tmp_path / "nope"), "--out", str(out)]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "nope" in err


def _write_pose(path, keypoints, order="shapes"):
    path.write_text(json.dumps({"keypoints": keypoints, "order": order}))


@pytest.fixture
def shapes_files(tmp_path):
    """One written shapes person; returns (image path, keypoints list)."""
    world = ShapesWorld(seed=0, size=S)
    p = world.person(2, 5)
    path = write_person(tmp_path, "p0002_o0005", Person(p["image"], p["keypoints"], p["parsing"]))
    return path, p["keypoints"].tolist()


def test_bad_pose_files(shapes_files):
    path, kp = shapes_files
    pose = path.with_name("p0002_o0005.pose.json")
    cases = [
        (lambda: _write_pose(pose, kp[:13]), "has 13 keypoints; expected 14 for order 'shapes'"),
        (lambda: pose.write_text("{not json"), "is not valid JSON"),
        (lambda: pose.write_text(json.dumps({"order": "shapes"})), "has no 'keypoints' key"),
        (lambda: pose.write_text(json.dumps({"keypoints": kp})), "has no 'order' key"),
        (lambda: _write_pose(pose, kp, "mpii"), "has order 'mpii'; expected one of shapes, coco18"),
        (lambda: _write_pose(pose, kp[:13] + [["a", 1]]), 'keypoint 13 is ["a", 1]; expected [x, y] numbers'),
        (lambda: _write_pose(pose, kp[:13] + [[float("nan"), 1]]), "expected finite x, y"),
        (lambda: _write_pose(pose, kp[:13] + [[3 * S, 5.0]]), "is far outside the 32×32 image"),
        (lambda: _write_pose(pose, kp, "coco18"), "has 14 keypoints; expected 18 for order 'coco18'"),
    ]
    for write, expected in cases:
        write()
        with pytest.raises(DataError) as e:
            read_person(path)
        msg = one_line(e)
        assert expected in msg and str(pose) in msg, msg
    # slightly outside (within a quarter of the size) is accepted as it is; -1 in one coordinate means missing
    _write_pose(pose, kp[:12] + [[-0.2 * S, 1.2 * S], [5.0, -1]])
    q = read_person(path)
    assert np.allclose(q.keypoints[12], (-0.2 * S, 1.2 * S)) and q.keypoints[13].tolist() == [-1, -1]
    with pytest.raises(DataError) as e:  # the file says shapes, the caller expects coco18
        read_person(path, order="coco18")
    assert "has order 'shapes'; expected 'coco18'" in one_line(e)


def test_bad_parsing_and_missing_files(tmp_path, shapes_files):
    path, _ = shapes_files
    parsing = path.with_name("p0002_o0005.parsing.png")
    Image.fromarray(np.full((S, S), 8, np.uint8), "L").save(parsing)
    with pytest.raises(DataError) as e:
        read_person(path)
    assert one_line(e) == f"{parsing} has labels {{8}}; expected 0..7 (shapes)"
    Image.fromarray(np.zeros((S, S + 1), np.uint8), "L").save(parsing)
    with pytest.raises(DataError) as e:
        read_person(path)
    assert one_line(e) == f"{parsing} is 33×32; expected the size of {path}, 32×32"
    rgb = np.zeros((S, S, 3), np.uint8)
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb, "RGB").save(parsing)
    with pytest.raises(DataError) as e:
        read_person(path)
    assert "is a RGB image; expected a label map" in one_line(e)
    # a palette PNG (as human parsers write them) is read by index, not by colour
    pal = Image.fromarray(np.full((S, S), 4, np.uint8), "P")
    pal.putpalette([v for i in range(256) for v in (i * 7 % 256, 200, 10)])
    pal.save(parsing)
    assert (read_person(path).parsing == 4).all()
    # the example: labels past LIP's 20
    coco = coco_person()
    coco.parsing[0, :2] = (21, 40)
    with pytest.raises(DataError) as e:
        write_person(tmp_path / "x", "bad", coco)
    assert "has labels {21, 40}; expected 0..19 (lip20)" in one_line(e)
    coco.parsing[0, :2] = 0
    good = write_person(tmp_path / "x", "good", coco)
    bad_parsing = np.asarray(coco.parsing).copy()
    bad_parsing[1, :2] = (21, 40)
    Image.fromarray(bad_parsing, "L").save(good.with_name("good.parsing.png"))
    with pytest.raises(DataError) as e:
        read_person(good)
    assert (
        one_line(e) == f"{good.with_name('good.parsing.png')} has labels {{21, 40}}; expected 0..19 (lip20)"
    )
    # missing siblings: the message names the expected file and the overriding flag
    for sibling, flag in (("good.parsing.png", "--person-parsing"), ("good.pose.json", "--person-pose")):
        good.with_name(sibling).unlink()
        with pytest.raises(DataError) as e:
            read_person(good)
        msg = one_line(e)
        assert str(good.with_name(sibling)) in msg and flag in msg
    with pytest.raises(DataError) as e:
        read_person(
            tmp_path / "absent.png", pose_path=path.with_name("p0002_o0005.pose.json"), parsing_path=parsing
        )
    assert "absent.png" in one_line(e)
    with pytest.raises(ConfigError):
        write_person(tmp_path, "../escape", coco)


# ------------------------------------------------------------------------------------------- inputs
def test_heatmaps_match_the_world():
    world = ShapesWorld(seed=4, size=48)
    for pose in (0, 7):
        p = world.person(pose, 1)
        assert np.allclose(pose_heatmaps(p["keypoints"], 48), p["pose_map"], atol=1e-6)
    kp = np.array([[3.5, 10.5], [-1, -1]], np.float32)
    maps = pose_heatmaps(kp, (16, 8), sigma=2)
    assert maps.shape == (2, 16, 8) and maps.dtype == np.float32 and not maps[1].any()
    assert np.unravel_index(maps[0].argmax(), (16, 8)) == (10, 3) and maps[0, 10, 3] == 1


def test_parsing_onehot():
    parsing = np.array([[0, 2], [1, 2]], np.uint8)
    a = parsing_onehot(parsing, 3)
    assert (
        a.shape == (3, 2, 2)
        and a.dtype == torch.float32
        and torch.equal(a.argmax(0), torch.from_numpy(parsing).long())
    )
    b = parsing_onehot(torch.from_numpy(np.stack([parsing, parsing])), 3)
    assert b.shape == (2, 3, 2, 2) and torch.equal(b[1], a)
    with pytest.raises(DataError, match=r"labels in 0\.\.2; expected 0\.\.1"):
        parsing_onehot(parsing, 2)


def test_swap_clothes_parsing_lip():
    a = np.array([[13, 5, 5], [9, 9, 18]], np.uint8)  # face, upper clothes, pants, left shoe
    b = np.array([[2, 7, 7], [7, 12, 0]], np.uint8)  # hair, coat (mostly), skirt
    assert swap_clothes_parsing(a, b, "coco18").tolist() == [[13, 7, 7], [12, 12, 18]]
    assert swap_clothes_parsing(a, np.zeros_like(b), "coco18").tolist() == a.tolist()  # B without clothes


# ------------------------------------------------------------------------------------------- SwapPairs
def test_swap_pairs_items_and_truth():
    ds = SwapPairs(4, size=S, seed=2, split="test")
    world = ShapesWorld(seed=2, size=S)
    for i in range(len(ds)):
        pa, oa, pb, ob = ds.persons(i)
        assert pa != pb and oa != ob
        it = ds[i]
        assert it["I_A"].shape == (3, S, S) and -1 <= it["I_A"].min() and it["I_A"].max() <= 1
        assert (
            it["P_A"].shape == (14, S, S)
            and it["S_A"].shape == (8, S, S)
            and it["parsing_A"].dtype == torch.long
        )
        assert torch.equal(it["S_B"].sum(0), torch.ones(S, S))
        truth = world.person(pa, ob)
        assert torch.equal(it["truth"], torch.from_numpy(truth["image"]).permute(2, 0, 1) / 127.5 - 1)
        assert torch.equal(
            it["I_B"], torch.from_numpy(world.person(pb, ob)["image"]).permute(2, 0, 1) / 127.5 - 1
        )
        assert np.allclose(it["P_A"].numpy(), pose_heatmaps(world.person(pa, oa)["keypoints"], S), atol=1e-6)
        # the parsing depends on the pose only: the truth's layout is A's, and so is G2's condition
        assert torch.equal(it["truth_parsing"], it["parsing_A"])
        assert torch.equal(it["S_A_with_B_clothes"], it["S_A"])
        assert it["name_A"] == f"p{pa:04d}_o{oa:04d}" and it["name_B"] == f"p{pb:04d}_o{ob:04d}"
        # what a swap keeps of A (head, hair, skin, background) is exactly the truth outside the clothes,
        # and B's kept pixels are B's image there; clothes pixels (upper, lower, shoes) are zeroed
        clothes_a = torch.isin(it["parsing_A"], torch.tensor([3, 4, 5]))
        clothes_b = torch.isin(it["parsing_B"], torch.tensor([3, 4, 5]))
        assert clothes_a.any() and (~clothes_a).any()
        # (up to the renderer's anti-aliased clothes borders: compare beyond 2 px of any clothes pixel)
        near = torch.nn.functional.max_pool2d(clothes_a[None, None].float(), 5, 1, 2)[0, 0] > 0
        assert torch.equal(it["I_A_kept"][:, ~near], it["truth"][:, ~near])
        assert torch.equal(it["I_B_kept"][:, ~clothes_b], it["I_B"][:, ~clothes_b])
        assert not it["I_A_kept"][:, clothes_a].any() and not it["I_B_kept"][:, clothes_b].any()
    for pose in (3, 11):
        assert all(
            np.array_equal(world.person(pose, 0)["parsing"], world.person(pose, o)["parsing"])
            for o in (1, 9, 40)
        )
    assert not np.array_equal(world.person(3, 0)["parsing"], world.person(11, 0)["parsing"])
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["S_A_with_B_clothes"].shape == (2, 8, S, S) and len(batch["name_A"]) == 2


def test_swap_pairs_deterministic_and_split_disjoint():
    a, b = SwapPairs(6, size=S, seed=0), SwapPairs(6, size=S, seed=0)
    assert [a.persons(i) for i in range(6)] == [b.persons(i) for i in range(6)]
    assert all(torch.equal(a[1][k], b[1][k]) for k in ("I_A", "I_B", "truth", "P_B", "S_A"))
    assert a.persons(-1) == a.persons(5)
    assert [a.persons(i) for i in range(6)] != [SwapPairs(6, size=S, seed=1).persons(i) for i in range(6)]
    span = SPLIT_OFFSETS["val"]
    poses, outfits = {}, {}
    for split in ("train", "val", "test"):
        ds = SwapPairs(200, size=S, split=split, num_poses=5, num_outfits=7)
        ids = np.array([ds.persons(i) for i in range(len(ds))])
        lo = SPLIT_OFFSETS[split]
        assert ((ids >= lo) & (ids < lo + span)).all()
        poses[split], outfits[split] = set(ids[:, [0, 2]].ravel()), set(ids[:, [1, 3]].ravel())
        assert len(poses[split]) == 5 and len(outfits[split]) == 7  # the finite pools are used
    for s, t in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not poses[s] & poses[t] and not outfits[s] & outfits[t]
    with pytest.raises(IndexError):
        a.persons(6)
    with pytest.raises(ConfigError):
        SwapPairs(2, split="dev")
    with pytest.raises(ConfigError):
        SwapPairs(2, num_poses=1)


# ------------------------------------------------------------------------------------------- DeepFashion / Market
H, W = 40, 24  # non-square, so that rows and columns cannot be swapped unnoticed


def _published_heatmap(row, col, sigma=6.0):
    """The pose-transfer code's Gaussian: integer pixel indices, meshgrid of np.arange."""
    xx, yy = np.meshgrid(np.arange(W), np.arange(H))
    return np.exp(-((yy - row) ** 2 + (xx - col) ** 2) / (2 * sigma**2))


def make_layout(root, prefix, image_dir, split, names, parsing=True):
    """A tiny dataset in the published layout: CSVs exactly as pose-gan writes them, JPEG images, parsing PNGs."""
    rng = np.random.default_rng(len(names))
    (root / image_dir).mkdir(parents=True)
    if parsing:
        (root / "parsing").mkdir(exist_ok=True)
    rows = {}
    for k, name in enumerate(names):
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(
            root / image_dir / name, quality=95
        )
        if parsing:
            Image.fromarray(np.full((H, W), k + 1, np.uint8), "L").save(root / "parsing" / f"{name[:-4]}.png")
        ys, xs = rng.integers(0, H, 18), rng.integers(0, W, 18)
        ys[[14, 17]] = -1
        xs[[14, 17]] = -1
        rows[name] = (ys, xs)
    with open(root / f"{prefix}-annotation-{split}.csv", "w") as f:
        print("name:keypoints_y:keypoints_x", file=f)
        for name, (ys, xs) in rows.items():
            print(f"{name}: {[int(v) for v in ys]}: {[int(v) for v in xs]}", file=f)
    with open(root / f"{prefix}-pairs-{split}.csv", "w") as f:
        print("from,to", file=f)
        print(f"{names[0]},{names[1]}", file=f)
        print(f"{names[2]},{names[0]}", file=f)
    return rows


DF_NAMES = [
    "fashionWOMENDressesid0000262902_1front.jpg",
    "fashionWOMENDressesid0000262902_3back.jpg",
    "fashionMENDenimid0000008001_2side.jpg",
]


def test_deepfashion_reader(tmp_path):
    rows = make_layout(tmp_path, "fasion", "train", "train", DF_NAMES)
    ds = DeepFashionPersons(tmp_path, "train")
    assert len(ds) == 2 and ds.names == DF_NAMES and ds.num_keypoints == len(COCO18_KEYPOINTS) == 18
    it = ds[0]  # pair (from, to) = (B, A)
    assert it["name_B"] == DF_NAMES[0] and it["name_A"] == DF_NAMES[1] and "truth" not in it
    image_a = np.array(Image.open(tmp_path / "train" / DF_NAMES[1]).convert("RGB"))
    assert torch.equal(it["I_A"], torch.from_numpy(image_a).permute(2, 0, 1) / 127.5 - 1)
    assert it["P_A"].shape == (18, H, W) and it["S_A"].shape == (20, H, W)
    assert (it["parsing_A"] == 2).all() and (it["parsing_B"] == 1).all()
    ys, xs = rows[DF_NAMES[1]]
    for k in (0, 5, 13):
        assert np.allclose(it["P_A"][k].numpy(), _published_heatmap(ys[k], xs[k]), atol=1e-6)
    assert not it["P_A"][14].any() and not it["P_A"][17].any()  # missing (-1) keypoints
    person = ds.person(DF_NAMES[1])
    assert person.keypoints[0].tolist() == [xs[0] + 0.5, ys[0] + 0.5] and person.keypoints[14].tolist() == [
        -1,
        -1,
    ]

    out = tmp_path / "converted"
    paths = convert_deepfashion(tmp_path, out, "train", limit=2)
    assert [p.name for p in paths] == [f"{n[:-4]}.png" for n in DF_NAMES[:2]]
    back = read_person(paths[1])
    assert back.order == "coco18" and np.array_equal(back.keypoints, person.keypoints)
    assert np.array_equal(back.image, person.image) and np.array_equal(back.parsing, person.parsing)


def test_market_reader_and_cli_convert(tmp_path, capsys):
    names = ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg", "0007_c2s3_070952_01.jpg"]
    make_layout(tmp_path, "market", "bounding_box_test", "test", names)
    ds = MarketPersons(tmp_path, "test")
    it = ds[1]
    assert it["name_A"] == names[0] and it["name_B"] == names[2] and it["I_B"].shape == (3, H, W)
    out = tmp_path / "out"
    rc = main(
        [
            "data",
            "convert-persons",
            "--from",
            "market",
            "--root",
            str(tmp_path),
            "--out",
            str(out),
            "--split",
            "test",
        ]
    )
    assert rc == 0 and "wrote 3 market test persons" in capsys.readouterr().out
    assert read_person(out / "test" / "0007_c2s3_070952_01.png").parsing.max() == 3


def test_published_layout_errors(tmp_path):
    with pytest.raises(DataError) as e:
        DeepFashionPersons(tmp_path / "missing")
    assert "is not a folder" in one_line(e)
    make_layout(tmp_path, "fasion", "train", "train", DF_NAMES, parsing=False)
    with pytest.raises(DataError) as e:
        DeepFashionPersons(tmp_path, "train")
    msg = one_line(e)
    assert "SwapGAN's G2 needs a parsing map" in msg and str(tmp_path / "parsing") in msg
    with pytest.raises(DataError) as e:
        DeepFashionPersons(tmp_path, "test")
    assert "fasion-annotation-test.csv" in one_line(e)
    (tmp_path / "parsing").mkdir()
    ds = DeepFashionPersons(tmp_path, "train")
    with pytest.raises(DataError) as e:  # the folder exists, one map is missing
        ds[0]
    assert str(tmp_path / "parsing" / f"{DF_NAMES[1][:-4]}.png") in one_line(e)
    ann = tmp_path / "fasion-annotation-train.csv"
    lines = ann.read_text().splitlines()
    ann.write_text("\n".join([*lines[:2], f"{DF_NAMES[1]}: [1, 2]: [3, 4]", lines[3]]) + "\n")
    with pytest.raises(DataError) as e:
        DeepFashionPersons(tmp_path, "train")
    assert one_line(e).startswith(
        f"{ann} line 3: keypoints_y and keypoints_x have 2 and 2 values; expected 18"
    )
    ann.write_text("\n".join(lines[:3]) + "\n")  # the third image loses its row; a pair still names it
    with pytest.raises(DataError) as e:
        DeepFashionPersons(tmp_path, "train")
    assert f"line 3: from image '{DF_NAMES[2]}' has no row in {ann}" in one_line(e)
    # keypoints of a bigger image (e.g. the 256×256 annotations with 256×176 images) are refused
    ann.write_text("\n".join([lines[0], f"{DF_NAMES[0]}: {[5] * 18}: {[100] * 18}", *lines[2:]]) + "\n")
    Image.fromarray(np.zeros((H, W), np.uint8), "L").save(tmp_path / "parsing" / f"{DF_NAMES[0][:-4]}.png")
    with pytest.raises(DataError) as e:
        DeepFashionPersons(tmp_path, "train").person(DF_NAMES[0])
    assert f"row {DF_NAMES[0]}: keypoint 0 (nose) at (100.5, 5.5) is far outside the 24×40 image" in one_line(
        e
    )
