"""Edge data: official-layout readers, consensus / relaxed labels, mask boundaries, HED-style augmentation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.io as sio
import torch
from PIL import Image
from scipy import ndimage as ndi
from skimage.morphology import thin

from imagexplore.edges.augment import AugmentConfig, augment_edges, inner_rectangle
from imagexplore.edges.data import (
    BSDS500,
    NYUD,
    EdgeTrainingSet,
    HEDBSDSList,
    MaskEdges,
    build_edge_dataset,
    collate,
)
from imagexplore.edges.labels import (
    build_targets,
    canny_response,
    consensus_labels,
    make_detector,
    mask_boundaries,
    relaxed_labels,
)
from imagexplore.errors import ConfigError, DataError

SHARED = Path(__file__).resolve().parents[2] / "shared"


# ------------------------------------------------------------------------------------------------ fixtures
def _scene(h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A rectangle on a background: uint8 RGB image and its boundary."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), np.int64)
    mask[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 1
    img = np.where(mask[..., None] == 1, rng.integers(150, 255, 3), rng.integers(0, 90, 3)).astype(np.uint8)
    return img, mask_boundaries(mask)


def _write_mat(path, boundaries: list[np.ndarray]) -> None:
    """A BSDS groundTruth .mat: a 1×N cell of structs with Segmentation and Boundaries (as the release)."""
    cell = np.empty((1, len(boundaries)), dtype=object)
    for k, b in enumerate(boundaries):
        cell[0, k] = {"Segmentation": np.ones(b.shape, np.uint16), "Boundaries": b.astype(np.uint8)}
    sio.savemat(path, {"groundTruth": cell})


def _mat_layout(root, splits: dict[str, int], suffix: str = ".jpg", h: int = 20, w: int = 30) -> None:
    n = 0
    for split, count in splits.items():
        (root / "images" / split).mkdir(parents=True)
        (root / "groundTruth" / split).mkdir(parents=True)
        for _ in range(count):
            n += 1
            img, edge = _scene(h, w, n)
            Image.fromarray(img).save(root / "images" / split / f"{1000 + n}{suffix}")
            _write_mat(root / "groundTruth" / split / f"{1000 + n}.mat", [edge, edge, np.roll(edge, 1, 0)])


@pytest.fixture
def bsds_root(tmp_path):
    data = tmp_path / "BSR" / "BSDS500" / "data"
    _mat_layout(data, {"train": 2, "val": 1, "test": 1})
    return tmp_path


# ------------------------------------------------------------------------------------------------ readers
def test_bsds_reader_shapes_stems_and_trainval(bsds_root):
    train = BSDS500(bsds_root, "train")  # root above BSR/BSDS500/data is accepted
    assert train.ids == ["1001", "1002"]
    image, ann, stem = train[0]
    assert (
        image.shape == (3, 20, 30) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    )
    assert ann.shape == (3, 20, 30) and ann.dtype == torch.bool and stem == "1001"
    trainval = BSDS500(bsds_root / "BSR" / "BSDS500" / "data", "trainval")
    assert trainval.ids == ["1001", "1002", "1003"]  # the papers' "300 images" = train ∪ val
    assert BSDS500(bsds_root, "trainval", num_samples=2).ids == ["1001", "1002"]
    ev = build_edge_dataset("bsds500", "test", train=False, root=str(bsds_root))
    assert ev.max_dist == 0.0075 and ev[0][1].shape == (3, 20, 30) and ev[0][2] == "1004"


def test_bsds_reader_errors(bsds_root, tmp_path):
    data = bsds_root / "BSR" / "BSDS500" / "data"
    (data / "groundTruth" / "val" / "1003.mat").unlink()
    with pytest.raises(DataError, match=r"1003\.jpg has no ground truth .*1003\.mat"):
        BSDS500(bsds_root, "trainval")
    with pytest.raises(DataError, match="BSDS500 not found"):
        BSDS500(tmp_path / "nowhere", "train")
    (tmp_path / "empty" / "images" / "test").mkdir(parents=True)
    (tmp_path / "empty" / "groundTruth").mkdir()
    with pytest.raises(DataError, match="no images in"):
        BSDS500(tmp_path / "empty", "test")
    with pytest.raises(ConfigError, match="split must be one of"):
        BSDS500(bsds_root, "training")
    with pytest.raises(ConfigError, match="was not found: give its folder"):
        build_edge_dataset("bsds500", "train", train=True)


def test_nyud_reader(tmp_path):
    _mat_layout(tmp_path / "data", {"train": 1, "val": 1, "test": 2}, suffix=".png", h=24, w=32)
    ds = NYUD(tmp_path, "test")
    assert ds.max_dist == 0.011 and len(ds) == 2 and ds[1][1].shape == (3, 24, 32)
    assert len(NYUD(tmp_path, "trainval")) == 2
    assert build_edge_dataset("nyud", "test", train=False, root=str(tmp_path)).max_dist == 0.011


def test_hed_pair_list(tmp_path):
    (tmp_path / "data" / "aug").mkdir(parents=True)
    lines = []
    for k in range(2):
        img, edge = _scene(16, 24, k)
        frac = (edge * (51 * (k + 2))).astype(np.uint8)  # 2/5 and 3/5 of the annotators
        Image.fromarray(img).save(tmp_path / "data" / "aug" / f"{k}.jpg")
        Image.fromarray(frac).save(tmp_path / "data" / "aug" / f"{k}.png")
        lines.append(f"data/aug/{k}.jpg data/aug/{k}.png")
    (tmp_path / "train_pair.lst").write_text("\n".join(lines) + "\n")
    ds = HEDBSDSList(tmp_path)
    image, frac, stem = ds[1]
    assert stem == "data/aug/1" and frac.shape == (1, 16, 24) and frac.dtype == torch.float32
    assert np.allclose(np.unique(frac.numpy()), [0, 0.6])
    # fraction 0.5: 3/5 is an edge, 2/5 a partial (ignored) mark
    train = build_edge_dataset(
        "hed_bsds", "train", train=True, root=str(tmp_path), options={"augment": False}
    )
    fuse0, fuse1 = train[0][1][-1].numpy(), train[1][1][-1].numpy()
    assert set(np.unique(fuse0)) == {0, 255} and set(np.unique(fuse1)) == {0, 1}
    with pytest.raises(ConfigError, match="evaluate on bsds500"):
        build_edge_dataset("hed_bsds", "test", train=False, root=str(tmp_path))
    (tmp_path / "bad.lst").write_text("data/aug/0.jpg\n")
    with pytest.raises(DataError, match="line 1: expected 'image_path gt_path'"):
        HEDBSDSList(tmp_path, "bad.lst")
    with pytest.raises(DataError, match="not found"):
        HEDBSDSList(tmp_path, "missing.lst")


# ------------------------------------------------------------------------------------------------ labels
def test_consensus_thresholds():
    a = np.zeros((5, 1, 5), bool)
    for k in range(5):  # pixel k is marked by k annotators (pixel 0 by none)
        a[:k, 0, k] = True
    assert consensus_labels(a, dilate=0).ravel().tolist() == [0, 255, 255, 1, 1]  # release: ≥ 3
    assert consensus_labels(a, min_annotators=2, ignore_partial=False).ravel().tolist() == [0, 0, 1, 1, 1]
    assert consensus_labels(a, fraction=0.7).ravel().tolist() == [0, 255, 255, 255, 1]  # ≥ 4 of 5
    one = np.zeros((1, 1, 5), bool)
    one[0, 0, 2] = True
    assert consensus_labels(one).ravel().tolist() == [0, 0, 1, 0, 0]  # one annotator: its own map
    assert consensus_labels(one, dilate=1).ravel().tolist() == [0, 1, 1, 1, 0]
    frac = np.array([[[0.0, 0.2, 0.4, 0.6, 1.0]]], np.float32)
    assert consensus_labels(frac).ravel().tolist() == [0, 255, 255, 1, 1]
    with pytest.raises(ConfigError, match="set fraction instead"):
        consensus_labels(frac, min_annotators=3)
    with pytest.raises(ConfigError, match="not both"):
        consensus_labels(a, min_annotators=3, fraction=0.5)


def test_relaxed_labels_follow_coefficients():
    rng = np.random.default_rng(0)
    response = ndi.gaussian_filter(rng.random((48, 48)), 1.5).astype(np.float32) ** 4
    gt = np.zeros((48, 48), np.uint8)
    gt[10:12, :] = 1
    gt[30, :] = 255  # below the annotator consensus
    coefficients = (0.5, 1.0, 1.5, 2.0, 2.5)
    sides = relaxed_labels(gt, response, coefficients, dilate=1)
    assert sides.shape == (5, 48, 48) and sides.dtype == np.uint8
    assert set(np.unique(sides)) <= {0, 1, 255}
    relaxed = (sides == 255) & (gt != 255)
    counts = relaxed.sum((1, 2))
    assert np.all(np.diff(counts) <= 0) and counts[0] > counts[-1] > 0  # lower layers: looser supervision
    assert np.all(relaxed[:-1] >= relaxed[1:])  # nested sets
    assert np.all(sides[:, gt == 1] == 1) and np.all(sides[:, gt == 255] == 255)  # never relax a GT edge
    # exactly the definition: (response > c·mean) dilated, minus GT edges
    plain = ndi.binary_dilation(response > 1.5 * response.mean(), [[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    assert np.array_equal(sides[2] == 255, (plain & (gt != 1)) | (gt == 255))
    no_relax = relaxed_labels(gt, response, (None, 1.0))
    assert np.array_equal(no_relax[0], gt)  # a side without relaxation gets the plain ground truth
    with pytest.raises(ConfigError, match="positive numbers"):
        relaxed_labels(gt, response, (0.5, -1))


def test_build_targets_layout_and_hed_baseline():
    ann = np.zeros((3, 16, 16), bool)
    ann[:, 8, 2:14] = True
    img = np.zeros((16, 16, 3), np.float32)
    img[8:] = 1.0
    resp = canny_response(img)
    t = build_targets(ann, resp, relaxed=True)
    assert t.shape == (6, 16, 16) and t.dtype == np.uint8
    assert np.array_equal(t[-1], consensus_labels(ann, dilate=1))
    base = build_targets(ann, None, (0.5, 1.0, 1.5), relaxed=False)
    assert base.shape == (4, 16, 16) and all(np.array_equal(p, base[-1]) for p in base)


def test_canny_response_is_graded_and_thin():
    import skimage.data

    img = skimage.data.astronaut()[::4, ::4].astype(np.float32) / 255
    r = canny_response(img)
    assert r.shape == img.shape[:2] and r.dtype == np.float32 and r.min() >= 0
    frac = [(r > c * r.mean()).mean() for c in (0.5, 1.5, 2.5)]
    assert frac[0] > frac[1] > frac[2] > 0  # the coefficients select a hierarchy
    assert 0 < (r > 0).mean() < 0.3  # NMS ridges, not a dense map


def test_mask_boundaries_hand_case():
    mask = np.array(
        [
            [0, 0, 1, 1],
            [0, 0, 1, 1],
            [2, 2, 2, 2],
            [255, 255, 2, 2],
        ]
    )
    want = np.array(
        [
            [0, 1, 0, 0],
            [1, 1, 1, 1],
            [0, 0, 0, 0],
            [0, 0, 0, 0],
        ],
        bool,
    )
    assert np.array_equal(mask_boundaries(mask), want)  # ignore pixels take the nearest label (2): no edge
    assert np.array_equal(mask_boundaries(mask, fill_ignore=False), want)
    band = np.array([[1, 1, 255, 255, 0, 0]] * 2)  # an ignore band between two regions → one boundary in it
    assert mask_boundaries(band).sum(1).tolist() == [1, 1]
    assert mask_boundaries(band, fill_ignore=False).sum() == 0
    assert mask_boundaries(np.zeros((4, 4), int)).sum() == 0

    class Seg(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return torch.zeros(3, 4, 4), torch.from_numpy(mask)

    image, ann, stem = MaskEdges(Seg())[0]
    assert ann.shape == (1, 4, 4) and ann.dtype == torch.bool and stem == "000000"


# ------------------------------------------------------------------------------------------------ augmentation
def test_inner_rectangle():
    h, w = inner_rectangle(100, 100, math.radians(45))
    assert h == pytest.approx(100 / math.sqrt(2)) and w == pytest.approx(100 / math.sqrt(2))
    assert inner_rectangle(30, 50, math.radians(90)) == pytest.approx((50, 30))
    h, w = inner_rectangle(60, 100, math.radians(22.5))
    s, c = math.sin(math.radians(22.5)), math.cos(math.radians(22.5))
    assert w * c + h * s <= 100 + 1e-6 and w * s + h * c <= 60 + 1e-6 and h * w > 0.4 * 6000


@pytest.mark.parametrize("angle,scale,flip", [(22.5, 1.5, True), (67.5, 0.5, False), (180.0, 1.0, True)])
def test_augmentation_keeps_boundaries_on_image_edges(angle, scale, flip):
    """The rotated square's annotated boundary lies on the rotated image's own edge, thin and binary."""
    mask = np.zeros((60, 80), np.int64)
    mask[15:45, 20:60] = 1
    image = np.repeat(mask[None].astype(np.float32), 3, axis=0)
    ann = np.stack([mask_boundaries(mask), mask_boundaries(mask)])
    cfg = AugmentConfig(angles=(angle,), flip=flip, scales=(scale,))
    out = augment_edges(image, ann, None, cfg, rng=np.random.default_rng(0))
    assert out.annotators.dtype == bool and out.image.shape[1:] == out.annotators.shape[1:]
    assert out.valid.all()  # the inner-rectangle crop leaves no empty corners
    a = out.annotators[0]
    assert (a & ~thin(a)).sum() <= 4 and a.sum() > 0.5 * scale * 2 * (30 + 40)  # thin (corners aside)
    inside = (out.image[0] > 0.5).astype(np.int64)  # both sides of the image's own edge (a 2-px band)
    truth = mask_boundaries(inside) | mask_boundaries(inside[::-1, ::-1])[::-1, ::-1]
    inner = (slice(2, -2), slice(2, -2))  # at the crop border the image shows no class change to compare with
    d_to_truth = ndi.distance_transform_edt(~truth)[inner]
    d_to_ann = ndi.distance_transform_edt(~a)[inner]
    assert d_to_truth[a[inner]].max() <= 1.5 and d_to_ann[truth[inner]].max() <= 2.5


def test_augmentation_exact_quarter_turns_and_sparse_response():
    rng = np.random.default_rng(1)
    ann = rng.random((2, 10, 14)) > 0.8
    image = rng.random((3, 10, 14)).astype(np.float32)
    resp = np.where(ann[0], rng.random((10, 14)), 0).astype(np.float32)
    cfg = AugmentConfig(angles=(90,), flip=False, scales=(1,))
    out = augment_edges(image, ann, resp, cfg, rng=rng, sparse_response=True)
    assert np.array_equal(out.annotators, np.rot90(ann, 1, axes=(1, 2)))
    assert np.array_equal(out.response, np.rot90(resp))
    # a sparse ridge (or a soft fraction plane) stays thin and keeps its values under rotation + scaling
    line = np.zeros((40, 40), np.float32)
    line[20, 5:35] = np.linspace(1, 2, 30)
    cfg = AugmentConfig(angles=(30,), flip=False, scales=(1.5,))
    blank = np.zeros((3, 40, 40), np.float32)
    out = augment_edges(blank, line[None] / 2, line, cfg, rng=rng, sparse_response=True)
    r, frac = out.response, out.annotators[0]
    assert np.array_equal(thin(r > 0), r > 0) and 1 <= r[r > 0].min() and r.max() <= 2
    assert frac.dtype == np.float32 and np.array_equal(frac > 0, r > 0) and frac.max() <= 1
    # the same generator state gives the same sample
    full = AugmentConfig()
    a = augment_edges(image, ann, resp, full, rng=np.random.default_rng(7), crop_size=8)
    b = augment_edges(image, ann, resp, full, rng=np.random.default_rng(7), crop_size=8)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.annotators, b.annotators)


def test_padding_is_ignored_and_crop_sizes():
    ann = np.zeros((2, 20, 24), bool)
    ann[:, 10, :] = True
    image = np.ones((3, 20, 24), np.float32)
    out = augment_edges(image, ann, None, None, rng=np.random.default_rng(0), crop_size=32)
    assert out.image.shape == (3, 32, 32) and out.valid.sum() == 20 * 24
    assert np.all(out.image[:, ~out.valid] == 0)
    t = build_targets(out.annotators, None, relaxed=False, valid=out.valid)
    assert np.all(t[:, ~out.valid] == 255) and (t[-1][out.valid] == 1).any()


def test_training_set_targets_and_determinism():
    ds = build_edge_dataset(
        "shapes", "train", train=True, num_samples=4, image_size=48, seed=3, options={"crop_size": 40}
    )
    assert isinstance(ds, EdgeTrainingSet) and ds.num_sides == 5
    ds.set_epoch(0)
    x, y = ds[1]
    assert x.shape == (3, 40, 40) and y.shape == (6, 40, 40) and y.dtype == torch.uint8
    assert set(torch.unique(y).tolist()) <= {0, 1, 255}
    x2, y2 = ds[1]
    assert torch.equal(x, x2) and torch.equal(y, y2)  # a pure function of (seed, index, epoch)
    ds.set_epoch(1)
    other = [ds[i][0] for i in range(4)]
    ds.set_epoch(0)
    assert any(not torch.equal(o, ds[i][0]) for i, o in enumerate(other))  # epochs see new augmentations
    batch = collate([ds[0], ds[1]])
    assert batch[0].shape == (2, 3, 40, 40) and batch[1].shape == (2, 6, 40, 40)
    # relaxed pixels on the side planes, none on the fusion plane beyond the consensus' own ignores
    y = ds[2][1]
    assert ((y[0] == 255) & (y[-1] != 255)).any() and (y[0] == 255).sum() >= (y[4] == 255).sum()


def test_collate_pads_with_ignore():
    a = (torch.ones(3, 4, 5), torch.ones(6, 4, 5, dtype=torch.uint8))
    b = (torch.ones(3, 6, 3), torch.zeros(6, 6, 3, dtype=torch.uint8))
    x, y = collate([a, b])
    assert x.shape == (2, 3, 6, 5) and x[0, :, 4:].eq(0).all() and y[0, :, 4:].eq(255).all()
    e1 = (torch.ones(3, 4, 5), torch.ones(2, 4, 5, dtype=torch.bool), "a")
    e2 = (torch.ones(3, 4, 5), torch.ones(3, 4, 5, dtype=torch.bool), "b")
    x, ann, stems = collate([e1, e2])
    assert ann.shape == (2, 3, 4, 5) and not ann[0, 2].any() and stems == ["a", "b"]


# ------------------------------------------------------------------------------------------------ options
def test_unknown_option_and_detector_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown data option\(s\) \['colour'\].*valid: .*coefficients"):
        build_edge_dataset("shapes", "train", train=True, options={"colour": 1})
    with pytest.raises(ConfigError, match="unknown edge dataset"):
        build_edge_dataset("bsds", "train", train=True)
    with pytest.raises(ConfigError, match="unknown detector 'prewitt'"):
        build_edge_dataset("shapes", "train", train=True, options={"detector": "prewitt"})
    with pytest.raises(
        ConfigError, match=r"unknown option\(s\) \['radius'\] for detector 'canny'; valid: sigma"
    ):
        make_detector("canny", {"radius": 2})
    with pytest.raises(ConfigError, match="needs the Structured Edges model file"):
        build_edge_dataset("shapes", "train", train=True, options={"detector": "se"})
    with pytest.raises(DataError, match="SE model file .* not found"):
        make_detector("se", {"model": str(tmp_path / "model.yml.gz")})
    model = tmp_path / "model.yml.gz"
    model.write_bytes(b"")
    try:
        import cv2

        has_contrib = hasattr(cv2, "ximgproc")
    except ImportError:
        has_contrib = False
    if not has_contrib:
        with pytest.raises(ConfigError, match="pip install opencv-contrib-python-headless"):
            make_detector("se", {"model": str(model)})
    # the HED baseline needs no detector; eval sets accept (and ignore) training options
    ds = build_edge_dataset("shapes", "val", train=False, num_samples=2, options={"relaxed": False})
    assert ds[0][1].dtype == torch.bool


def test_bsds_reader_reads_the_release_mat(tmp_path):
    """A ground-truth file of the BSDS500 distribution itself (shared benchmark data), in the official layout."""
    real = SHARED / "data" / "bsds_bench" / "groundTruth" / "2018.mat"
    if not real.is_file():
        pytest.skip("shared BSDS benchmark data not present")
    (tmp_path / "images" / "test").mkdir(parents=True)
    (tmp_path / "groundTruth" / "test").mkdir(parents=True)
    (tmp_path / "groundTruth" / "test" / "2018.mat").write_bytes(real.read_bytes())
    Image.fromarray(np.zeros((481, 321, 3), np.uint8)).save(tmp_path / "images" / "test" / "2018.jpg")
    image, ann, stem = BSDS500(tmp_path, "test")[0]
    assert image.shape == (3, 481, 321) and ann.shape == (5, 481, 321) and ann.any() and stem == "2018"


def test_voc_mask_edges(tmp_path):
    from imagexplore.segmentation.voc import mask_to_palette_image

    voc = tmp_path / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    mask = np.zeros((12, 16), np.uint8)
    mask[3:9, 4:12] = 7
    mask[2, 4:12] = 255  # VOC's ignore outline
    Image.fromarray(np.full((12, 16, 3), 90, np.uint8)).save(voc / "JPEGImages" / "2007_000001.jpg")
    mask_to_palette_image(mask).save(voc / "SegmentationClass" / "2007_000001.png")
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_000001\n")
    ev = build_edge_dataset("voc_masks", "train", train=False, root=str(tmp_path))
    image, ann, stem = ev[0]
    assert stem == "2007_000001" and ann.shape == (1, 12, 16)
    assert np.array_equal(ann[0].numpy(), mask_boundaries(mask))
    x, y = build_edge_dataset(
        "voc_masks", "train", train=True, root=str(tmp_path), options={"augment": False}
    )[0]
    assert y.shape == (6, 12, 16) and (y[-1] == 1).sum() > 0


def test_expensive_responses_are_cached_on_disk(tmp_path, monkeypatch):
    from imagexplore.edges import labels

    calls = []

    def fake_hed(image, device="cpu"):
        calls.append(device)
        return image.mean(axis=2)

    monkeypatch.setitem(labels.DETECTORS, "hed", labels.Detector(fake_hed, expensive=True))
    opts = {"detector": "hed", "cache_dir": str(tmp_path / "cache"), "augment": False}
    ds = build_edge_dataset("shapes", "train", train=True, num_samples=2, options=opts)
    first = ds[1]
    files = list((tmp_path / "cache").rglob("*.npy"))
    assert len(files) == 1 and files[0].name == "000001.npy" and files[0].parent.name.startswith("hed-")
    again = build_edge_dataset("shapes", "train", train=True, num_samples=2, options=opts)[1]
    assert len(calls) == 1 and torch.equal(first[1], again[1])  # the second dataset read the cache


def test_detectors_refuse_uint8_images():
    """A uint8 image would be read as 0..255 'probability' units: refused, not silently wrong."""
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="divide uint8 by 255"):
        canny_response(img)


# ------------------------------------------------------------------------------------------------ carved validation
def _hash01(stem: str) -> float:
    import hashlib

    return int(hashlib.sha1(stem.encode()).hexdigest()[:15], 16) / 16**15


def test_validation_is_carved_out_of_train_without_a_val_folder(tmp_path, capsys):
    from imagexplore.config import load_config
    from imagexplore.edges.train import build_datasets

    data = tmp_path / "data"
    _mat_layout(data, {"train": 10, "test": 2})
    stems = [str(1001 + k) for k in range(10)]
    val = build_edge_dataset("bsds500", "val", train=False, root=str(data), val_split="val")
    train = build_edge_dataset("bsds500", "train", train=False, root=str(data), val_split="val")
    held, kept = set(val.base.ids), set(train.base.ids)
    assert not held & kept and held | kept == set(stems)  # disjoint, together the whole train folder
    by_hash = sorted(stems, key=_hash01)
    want = max(2, sum(_hash01(s) < 0.15 for s in stems))  # the lowest hashes, at least 2
    assert sorted(held, key=_hash01) == by_hash[:want] and len(kept) == 10 - want
    assert val.base.carved_from == "train" and val[0][1].shape == (3, 20, 30)
    assert f"no val split in {data}: validating on {want} images carved out of train (val_fraction 0.15)" in (
        capsys.readouterr().err
    )
    # deterministic, trainval (the papers' default training split) = train without the carved images, and a
    # larger fraction keeps the images already carved (a stem's place never depends on the others)
    again = build_edge_dataset("bsds500", "val", train=False, root=str(data), val_split="val")
    assert again.base.ids == val.base.ids
    trainval = build_edge_dataset("bsds500", "trainval", train=False, root=str(data), val_split="val")
    assert trainval.base.ids == train.base.ids
    half = build_edge_dataset(
        "bsds500", "val", train=False, root=str(data), val_split="val", options={"val_fraction": 0.5}
    )
    assert held <= set(half.base.ids) and len(half) == max(2, sum(_hash01(s) < 0.5 for s in stems))
    # training reads the same split through the config: EdgeTrainingSet accepts the option
    cfg = load_config(
        None,
        [
            "task=edges",
            "data.name=bsds500",
            f"data.root={data}",
            "data.val_split=val",
            "data.options={train_split: trainval, val_fraction: 0.15, augment: false}",
            "model.name=hed_vgg16",
        ],
    )
    train_set, val_set = build_datasets(cfg)
    assert train_set.base.ids == train.base.ids and val_set.base.ids == val.base.ids
    assert train_set[0][1].shape[-2:] == (20, 30)
    # a split that exists is never carved; the test split is read as before
    test = build_edge_dataset("bsds500", "test", train=False, root=str(data), val_split="val")
    assert test.base.ids == ["1011", "1012"]


def test_a_real_val_folder_is_used_and_nothing_is_carved(tmp_path, capsys):
    data = tmp_path / "data"
    _mat_layout(data, {"train": 4, "val": 2, "test": 1})
    val = build_edge_dataset("bsds500", "val", train=False, root=str(data), val_split="val")
    train = build_edge_dataset("bsds500", "trainval", train=False, root=str(data), val_split="val")
    assert val.base.ids == ["1005", "1006"] and len(train) == 6
    assert not hasattr(val.base, "carved_from") and "carved" not in capsys.readouterr().err
    # no val folder and no val_split given: no carving, the missing folder is an error as before
    _mat_layout(tmp_path / "other", {"train": 4})
    with pytest.raises(DataError, match="no images in"):
        build_edge_dataset("bsds500", "val", train=False, root=str(tmp_path / "other"))


def test_carving_options_and_too_few_images(tmp_path):
    from imagexplore.edges.data import carve_validation

    # SHA-1 places: 1005 0.017, 1010 0.099, 1007 0.112, 1002 0.647, 1009 0.670, 1001 0.863, 1008 0.997
    assert carve_validation(["1008", "1001", "1009", "1002"], 0.15) == {
        "1009",
        "1002",
    }  # none below: 2 lowest
    assert carve_validation(["1005", "1010", "1007"], 0.5) == {"1005", "1010"}  # all below: 1 left to train
    assert carve_validation(["1005", "1010", "1007", "1001", "1008"], 0.15) == {"1005", "1010", "1007"}
    data = tmp_path / "data"
    _mat_layout(data, {"train": 2, "test": 1})
    with pytest.raises(DataError, match="has 2 image.*too few to carve a validation part"):
        build_edge_dataset("bsds500", "val", train=False, root=str(data), val_split="val")
    for bad in (0, 0.6, "x"):
        with pytest.raises(ConfigError, match="data.options.val_fraction"):
            build_edge_dataset(
                "bsds500", "val", train=False, root=str(data), val_split="val", options={"val_fraction": bad}
            )


# ------------------------------------------------------------------------------------------------ mask folders
def _two_regions(h: int = 12, w: int = 16) -> np.ndarray:
    """Labels 0 (background), 1 (left box), 2 (right box), touching each other."""
    m = np.zeros((h, w), np.uint8)
    m[3:9, 2:8] = 1
    m[3:9, 8:14] = 2
    return m


def _photo(path: Path, h: int = 12, w: int = 16) -> None:
    Image.fromarray(np.random.default_rng(len(path.name)).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
        path
    )


def test_mask_folder_beside_layout(tmp_path):
    from imagexplore.edges.data import MaskFolderEdges

    m = _two_regions()
    _photo(tmp_path / "a.jpg")
    Image.fromarray(m).save(tmp_path / "a.png")  # the PNG beside a JPEG is its mask
    _photo(tmp_path / "b.png")
    Image.fromarray(m * 50).save(tmp_path / "b_mask.png")  # a PNG image: NAME_mask.png ...
    _photo(tmp_path / "c.png")
    Image.fromarray(m).save(tmp_path / "c.mask.png")  # ... or NAME.mask.png
    ds = MaskFolderEdges(tmp_path)
    assert ds.ids == ["a", "b", "c"] and [s[2].name for s in ds.samples] == [
        "a.png",
        "b_mask.png",
        "c.mask.png",
    ]
    want = mask_boundaries(m.astype(np.int64), None)
    for k in range(3):
        image, ann, stem = ds[k]
        assert image.shape == (3, 12, 16) and ann.dtype == torch.bool and ann.shape == (1, 12, 16)
        assert np.array_equal(ann[0].numpy(), want), stem
    assert want[:, 7].any()  # the two touching boxes are two regions: a boundary between them
    train = build_edge_dataset("masks", "train", train=True, root=str(tmp_path), options={"augment": False})
    assert train[0][1].shape == (6, 12, 16) and (train[0][1][-1] == 1).sum() > 0
    assert build_edge_dataset("masks", "train", train=False, root=str(tmp_path)).max_dist == 0.0075


def test_mask_folder_images_masks_layout_and_splits(tmp_path):
    from imagexplore.edges.data import MaskFolderEdges, has_split

    m = _two_regions()
    # root/images/<split> + root/masks/<split>
    for split, names in (("train", ["p", "q"]), ("test", ["r"])):
        (tmp_path / "a" / "images" / split).mkdir(parents=True)
        (tmp_path / "a" / "masks" / split).mkdir(parents=True)
        for n in names:
            _photo(tmp_path / "a" / "images" / split / f"{n}.png")  # a PNG image: its mask is in masks/
            Image.fromarray(m).save(tmp_path / "a" / "masks" / split / f"{n}.png")
    assert MaskFolderEdges(tmp_path / "a", "train").ids == ["p", "q"]
    assert MaskFolderEdges(tmp_path / "a", "test").ids == ["r"]
    assert has_split("masks", tmp_path / "a", "test") and not has_split("masks", tmp_path / "a", "val")
    with pytest.raises(DataError, match="no 'val' split in .*it has train, test"):
        MaskFolderEdges(tmp_path / "a", "val")
    # root/<split>/ holding either form; trainval = train + val
    (tmp_path / "b" / "train" / "images").mkdir(parents=True)
    (tmp_path / "b" / "train" / "masks").mkdir(parents=True)
    _photo(tmp_path / "b" / "train" / "images" / "s.jpg")
    Image.fromarray(m).save(tmp_path / "b" / "train" / "masks" / "s.png")
    (tmp_path / "b" / "val").mkdir()
    _photo(tmp_path / "b" / "val" / "t.jpg")
    Image.fromarray(m).save(tmp_path / "b" / "val" / "t.png")
    assert MaskFolderEdges(tmp_path / "b", "train").ids == ["s"]
    assert MaskFolderEdges(tmp_path / "b", "trainval").ids == ["s", "t"]
    ev = build_edge_dataset("masks", "val", train=False, root=str(tmp_path / "b"), val_split="val")
    assert ev.base.ids == ["t"] and not hasattr(ev.base, "carved_from")


def test_unsplit_mask_folder_is_train_and_carves_validation(tmp_path, capsys):
    from imagexplore.edges.data import MaskFolderEdges

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    stems = [f"img{k:02d}" for k in range(8)]
    for s in stems:
        _photo(tmp_path / "images" / f"{s}.jpg")
        Image.fromarray(_two_regions()).save(tmp_path / "masks" / f"{s}.png")
    assert MaskFolderEdges(tmp_path, "train").ids == stems
    with pytest.raises(DataError, match="has no split folders .* there is no 'test' split"):
        MaskFolderEdges(tmp_path, "test")
    val = build_edge_dataset("masks", "val", train=False, root=str(tmp_path), val_split="val")
    train = build_edge_dataset("masks", "train", train=True, root=str(tmp_path), val_split="val")
    assert len(val) >= 2 and set(val.base.ids) | set(train.base.ids) == set(stems)
    assert not set(val.base.ids) & set(train.base.ids)
    assert (
        f"no val split in {tmp_path}: validating on {len(val)} images carved out of train"
        in capsys.readouterr().err
    )


def test_mask_values_binary_rgb_and_ignore(tmp_path):
    from imagexplore.edges.data import MaskFolderEdges

    obj = np.zeros((12, 16), np.uint8)
    obj[3:9, 4:12] = 255
    _photo(tmp_path / "bin.jpg")
    Image.fromarray(obj).save(tmp_path / "bin.png")
    # an RGB mask: two colours with the same luminance (L 29) are two regions, touching at column 8
    rgb = np.zeros((12, 16, 3), np.uint8)
    rgb[3:9, 2:8] = (0, 0, 255)
    rgb[3:9, 8:14] = (97, 0, 0)
    _photo(tmp_path / "col.jpg")
    Image.fromarray(rgb).save(tmp_path / "col.png")
    # a label mask with an ignore band (255) between regions 1 and 2
    band = np.ones((12, 16), np.uint8)
    band[:, 7:10] = 255
    band[:, 10:] = 2
    _photo(tmp_path / "ign.jpg")
    Image.fromarray(band).save(tmp_path / "ign.png")
    plain = MaskFolderEdges(tmp_path)
    ignoring = MaskFolderEdges(tmp_path, mask_ignore=255)
    assert plain.ids == ["bin", "col", "ign"]
    box = mask_boundaries((obj > 0).astype(np.int64), None)
    # binary {0, 255}: 255 is the object (never ignored, also with mask_ignore=255)
    assert np.array_equal(plain[0][1][0].numpy(), box) and np.array_equal(ignoring[0][1][0].numpy(), box)
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    assert len(np.unique(grey)) == 2  # as grey the two boxes would be one region
    col = plain[1][1][0].numpy()  # the boundaries of the labels 0 / 1 / 2 in the same places
    assert np.array_equal(col, mask_boundaries(_two_regions().astype(np.int64), None)) and col[3:9, 7].all()
    # ignore: the band takes the nearest region → one boundary in its middle; without: two (its sides)
    assert ignoring[2][1][0].numpy().sum(1).tolist() == [1] * 12
    assert plain[2][1][0].numpy().sum(1).tolist() == [2] * 12
    assert (
        build_edge_dataset("masks", "train", train=False, root=str(tmp_path), options={"mask_ignore": 255})[
            2
        ][1].sum()
        == 12
    )
    for bad in (-1, "x"):
        with pytest.raises(ConfigError, match="data.options.mask_ignore"):
            build_edge_dataset(
                "masks", "train", train=False, root=str(tmp_path), options={"mask_ignore": bad}
            )
    # a palette PNG is read by index (not by colour), a {0, 1} mask is binary too
    pal = Image.fromarray(band).convert("P")
    pal.putpalette([0, 0, 0, 9, 9, 9] + [200, 10, 10] * 254)
    labels, ign = read_mask_of(pal, tmp_path / "pal.png", 255)
    assert np.array_equal(labels, band) and ign == 255
    labels, ign = read_mask_of(Image.fromarray((obj > 0).astype(np.uint8)), tmp_path / "01.png", 1)
    assert ign is None and set(np.unique(labels)) == {0, 1}


def read_mask_of(image: Image.Image, path: Path, ignore):
    from imagexplore.edges.data import read_mask

    image.save(path)
    return read_mask(path, ignore)


def test_mask_folder_errors(tmp_path):
    from imagexplore.edges.data import MaskFolderEdges

    m = _two_regions()
    flat = tmp_path / "flat"
    flat.mkdir()
    _photo(flat / "a.jpg")
    Image.fromarray(m).save(flat / "a.png")
    _photo(flat / "b.jpg")
    with pytest.raises(
        DataError, match=r"image .*b\.jpg has no mask: expected b\.png or b_mask\.png or b\.mask\.png"
    ):
        MaskFolderEdges(flat)
    _photo(flat / "b_mask.jpg")
    with pytest.raises(DataError, match=r"mask .*b_mask\.jpg is not a PNG"):
        MaskFolderEdges(flat)
    (flat / "b_mask.jpg").unlink()
    Image.fromarray(m[:, :10]).save(flat / "b.png")  # wrong size
    with pytest.raises(DataError, match=r"mask .*b\.png is 10×12 but image .*b\.jpg is 16×12"):
        MaskFolderEdges(flat)[1]
    Image.fromarray(np.dstack([m] * 4)).save(flat / "b.png")  # RGBA
    with pytest.raises(DataError, match=r"mask .*b\.png has mode RGBA; expected a grey, palette or RGB PNG"):
        MaskFolderEdges(flat)[1]
    Image.fromarray(m).save(flat / "b.png", format="JPEG")  # a JPEG named .png
    with pytest.raises(DataError, match=r"mask .*b\.png is a JPEG file; expected a PNG"):
        MaskFolderEdges(flat)[1]
    # images/ + masks/: a missing or non-PNG mask
    (tmp_path / "two" / "images").mkdir(parents=True)
    (tmp_path / "two" / "masks").mkdir()
    _photo(tmp_path / "two" / "images" / "x.jpg")
    with pytest.raises(DataError, match=r"image .*x\.jpg has no mask: expected .*masks/x\.png"):
        MaskFolderEdges(tmp_path / "two")
    Image.fromarray(m).save(tmp_path / "two" / "masks" / "x.jpg")
    with pytest.raises(DataError, match=r"mask .*masks/x\.jpg of image .*x\.jpg is not a PNG"):
        MaskFolderEdges(tmp_path / "two")
    with pytest.raises(DataError, match="mask folder .* not found"):
        MaskFolderEdges(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="masks: no images in"):
        MaskFolderEdges(tmp_path / "empty")
    with pytest.raises(ConfigError, match="dataset 'masks' was not found: give its folder"):
        build_edge_dataset("masks", "train", train=False)
