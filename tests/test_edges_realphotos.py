"""Real-photo edge adaptation: the relaxation options measured in docs/chapter3.md and the cut-out set maker."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

from imagexplore.edges.data import BSDS500, build_edge_dataset
from imagexplore.edges.labels import IGNORE, mask_boundaries, relaxed_labels, response_mean
from imagexplore.errors import ConfigError


def _gt_and_texture(seed: int = 0):
    """A square outline (the only true edge) on a background whose detector response is noise everywhere."""
    rng = np.random.default_rng(seed)
    gt = np.zeros((40, 40), np.uint8)
    gt[10, 10:30] = gt[29, 10:30] = gt[10:30, 10] = gt[10:30, 29] = 1
    response = rng.random((40, 40)).astype(np.float32)
    return gt, response


def test_relax_within_keeps_far_responses_as_negatives():
    gt, response = _gt_and_texture()
    anywhere = relaxed_labels(gt, response, (0.5, 1.5), dilate=1)
    near = relaxed_labels(gt, response, (0.5, 1.5), dilate=1, within=3)
    dist = ndi.distance_transform_edt(gt != 1)
    far = dist > 3
    assert (anywhere[:, far] == IGNORE).any()  # the release relaxes texture far from any edge …
    assert not (near[:, far] == IGNORE).any()  # … within=3 never does
    close = ~far
    np.testing.assert_array_equal(near[:, close], anywhere[:, close])  # near the edges: exactly the release's
    np.testing.assert_array_equal(near[:, gt == 1], 1)
    # within=0 relaxes nothing (GT edges are never relaxed); an image without edges relaxes nothing either
    assert not (relaxed_labels(gt, response, (0.5,), within=0) == IGNORE).any()
    assert not (relaxed_labels(np.zeros_like(gt), response, (0.5,), within=5) == IGNORE).any()


def test_response_mean_of_the_image_or_of_the_ridges():
    r = np.zeros((4, 5), np.float32)
    r[1, 1], r[2, 3] = 2.0, 4.0
    assert response_mean(r, "image") == pytest.approx(6.0 / 20)
    assert response_mean(r, "nonzero") == pytest.approx(3.0)
    assert response_mean(np.zeros((3, 3)), "nonzero") == 0.0
    with pytest.raises(ConfigError, match="relax_mean"):
        response_mean(r, "median")


def _stamps(root, n: int = 12):
    """Cut-out stamps: ellipses with transparency (and one opaque PNG, which is not a cut-out)."""
    for i in range(n):
        yy, xx = np.mgrid[:60, :80]
        inside = ((yy - 30) / (18 + i % 5)) ** 2 + ((xx - 40) / (25 + i % 7)) ** 2 <= 1
        rgba = np.zeros((60, 80, 4), np.uint8)
        rgba[..., :3] = (40 * i % 255, 120, 200)
        rgba[..., 3] = inside * 255
        (root / "animals").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgba).save(root / "animals" / f"thing{i}.png")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "animals" / "opaque.png")
    (root / "symbols").mkdir()
    Image.fromarray(np.zeros((20, 20, 4), np.uint8)).save(root / "symbols" / "letter.png")


def test_cutout_set_layout_annotators_and_masks(tmp_path):
    from imagexplore.edges.cutouts import make_cutout_edges, photo_stamps

    _stamps(tmp_path / "stamps")
    assert "letter" not in {p.stem for p in photo_stamps(tmp_path / "stamps")}
    out = tmp_path / "set"
    written = make_cutout_edges(
        out, train=3, val=1, test=2, size=(64, 48), stamps_root=tmp_path / "stamps", seed=1
    )
    assert written == {"train": 3, "val": 1, "test": 2}
    ds = BSDS500(out, "train")
    assert len(ds) == 3 and len(BSDS500(out, "test")) == 2
    image, ann, stem = ds[0]
    assert tuple(image.shape) == (3, 48, 64) and tuple(ann.shape) == (2, 48, 64)
    labels = np.asarray(Image.open(out / "masks" / "train" / f"{stem}.png"))
    assert labels.max() >= 1  # at least one visible object
    # annotator 1 traces the visible objects' exact outline: the boundaries of the written label map
    np.testing.assert_array_equal(ann[0].numpy(), mask_boundaries(labels, ignore_index=None))
    # annotator 2 is a smoother tracing of the same objects: mostly the same pixels
    a, b = ann[0].numpy(), ann[1].numpy()
    assert (a & b).sum() >= 0.5 * a.sum()
    # image i of a split is a function of (seed, split, i): the same call writes the same files
    again = tmp_path / "again"
    make_cutout_edges(again, train=3, val=0, test=0, size=(64, 48), stamps_root=tmp_path / "stamps", seed=1)
    for name in ("images/train/train_0002.jpg", "masks/train/train_0002.png"):
        assert (out / name).read_bytes() == (again / name).read_bytes()
    # the training pipeline reads it with the relaxation options of docs/chapter3.md
    train = build_edge_dataset(
        "bsds500",
        "train",
        train=True,
        root=str(out),
        options={"relax_within": 3, "relax_mean": "nonzero", "augment": False},
    )
    target = train[0][1].numpy()
    dist = ndi.distance_transform_edt(target[-1] != 1)
    assert not (target[:-1, dist > 3] == IGNORE).any()


def test_cutout_set_errors(tmp_path):
    from imagexplore.edges.cutouts import make_cutout_edges

    _stamps(tmp_path / "stamps")
    with pytest.raises(ConfigError, match="32"):
        make_cutout_edges(tmp_path / "a", size=(16, 16), stamps_root=tmp_path / "stamps")
    with pytest.raises(ConfigError, match="not all zero"):
        make_cutout_edges(tmp_path / "a", train=0, val=0, test=0, stamps_root=tmp_path / "stamps")
    from imagexplore.errors import DataError

    with pytest.raises(DataError, match="tuxpaint"):
        make_cutout_edges(tmp_path / "a", stamps_root=tmp_path / "missing")


def test_relax_options_are_checked():
    with pytest.raises(ConfigError, match="relax_mean"):
        build_edge_dataset("shapes", "train", train=True, num_samples=2, options={"relax_mean": "median"})
    with pytest.raises(ConfigError, match="relax_within"):
        build_edge_dataset("shapes", "train", train=True, num_samples=2, options={"relax_within": -1})
