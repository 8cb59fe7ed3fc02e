"""Chapter 2 FCFN segmentation: model shapes and fusion, metrics (golden + torchmetrics), the VOC/SBD reader,
a learning check on the shapes world and the `segment train | eval | predict` commands."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from helpers import single_thread
from imagexplore.classification.fusion import local_fusion
from imagexplore.cli import main
from imagexplore.config import OptimConfig, ParamGroupConfig
from imagexplore.engine.optim import param_groups
from imagexplore.errors import CheckpointError, ConfigError, DataError
from imagexplore.models import create, list_models
from imagexplore.models.backbones import VGG16Features, load_vgg_state
from imagexplore.segmentation.metrics import SegmentationEvaluator, confusion_matrix, scores
from imagexplore.segmentation.models import bilinear_kernel, pixel_local_fusion
from imagexplore.segmentation.task import segmentation_loss
from imagexplore.segmentation.voc import (
    VOCSegmentation,
    joint_transform,
    pad_collate,
    voc_palette,
)

NARROW = dict(width_mult=0.125)


# ------------------------------------------------------------------------------------------------ models


def test_registered():
    names = list_models(task="segment")
    assert {"fcfn_vgg16", "fcn_vgg16", "fcfn_timm"} <= set(names)


@pytest.mark.parametrize(
    "name,kw",
    [
        ("fcfn_vgg16", {}),
        ("fcfn_vgg16", {"upsample": "deconv"}),
        ("fcfn_vgg16", {"tap": "conv", "stages": ["conv2", "conv4", "conv5"], "bn": True}),
        ("fcfn_vgg16", {"fusion": "concat"}),
        ("fcfn_vgg16", {"fusion": "none"}),
        ("fcn_vgg16", {}),
        ("fcn_vgg16", {"upsample": "deconv"}),
    ],
)
def test_output_is_input_size_for_odd_sizes(name, kw):
    m = create(name, num_classes=21, **NARROW, **kw).eval()
    with torch.no_grad():
        for h, w in [(65, 97), (33, 31), (64, 64)]:
            assert m(torch.rand(1, 3, h, w)).shape == (1, 21, h, w)


def test_timm_backbone_output_size():
    m = create("fcfn_timm", backbone="resnet18", num_classes=5, dim=8).eval()
    with torch.no_grad():
        assert m(torch.rand(1, 3, 65, 97)).shape == (1, 5, 65, 97)
    m = create("fcn_vgg16", backbone="resnet18", num_classes=5, upsample="deconv").eval()
    with torch.no_grad():
        assert m(torch.rand(1, 3, 65, 97)).shape == (1, 5, 65, 97)


def test_full_vgg16_structure():
    m = create("fcfn_vgg16", num_classes=21)
    convs = [x for x in m.backbone.features if isinstance(x, torch.nn.Conv2d)]
    assert len(convs) == 13 and [c.out_channels for c in convs][-1] == 512
    assert m.backbone.reductions == [8, 16, 32] and m.backbone.channels == [256, 512, 512]
    assert m.classifier.out_channels == 21
    fcn = create("fcn_vgg16", num_classes=21)
    assert fcn.backbone.reductions == [32] and fcn.score.in_channels == 512


def test_fusion_init_and_naive_per_pixel_loop():
    torch.manual_seed(0)
    m = create("fcfn_vgg16", num_classes=4, dim=6, **NARROW)
    s = 3
    assert m.fusion.weight.shape == (s, 6)
    assert torch.allclose(m.fusion.weight, torch.full((s, 6), 1 / s)) and torch.all(m.fusion.bias == 0)
    with torch.no_grad():
        m.fusion.weight.normal_()
        m.fusion.bias.normal_()
        branches = [torch.randn(2, 6, 5, 7) for _ in range(s)]
        got = pixel_local_fusion(branches, m.fusion.weight, m.fusion.bias)
        naive = torch.zeros(2, 6, 5, 7)
        for b in range(2):
            for k in range(6):
                for y in range(5):
                    for x in range(7):
                        v = m.fusion.bias[k].item()
                        for i in range(s):
                            v += m.fusion.weight[i, k].item() * branches[i][b, k, y, x].item()
                        naive[b, k, y, x] = v
        assert torch.allclose(got, naive, atol=1e-5)
        # the same as chapter 2's `local` fusion applied at every pixel …
        g = torch.stack(branches, 1)  # B, S, K, H, W
        per_pixel = local_fusion(g.permute(0, 3, 4, 1, 2).reshape(-1, s, 6), m.fusion.weight, m.fusion.bias)
        assert torch.allclose(got, per_pixel.reshape(2, 5, 7, 6).permute(0, 3, 1, 2), atol=1e-5)
        # … and a grouped 1×1 conv over channels interleaved (k, s)
        conv = m.fusion.as_grouped_conv()
        interleaved = g.permute(0, 2, 1, 3, 4).reshape(2, 6 * s, 5, 7)
        assert torch.allclose(got, conv(interleaved), atol=1e-5)
        assert torch.allclose(m.fusion(branches), got.clamp_min(0), atol=1e-6)  # ReLU after fusion


def test_fusion_lr_multipliers_apply():
    m = create("fcfn_vgg16", num_classes=3, dim=4, **NARROW)
    cfg = OptimConfig(
        lr=1.0,
        param_groups=[
            ParamGroupConfig(pattern=r"fusion\.weight", lr_mult=0.1),
            ParamGroupConfig(pattern=r"fusion\.bias", lr_mult=0.2),
        ],
    )
    by_name = {n: g["lr"] for g in param_groups(m, cfg) for n in g["param_names"]}
    assert by_name["fusion.weight"] == pytest.approx(0.1) and by_name["fusion.bias"] == pytest.approx(0.2)
    assert by_name["classifier.weight"] == 1.0


def test_deconv_is_bilinear_initialised():
    k = bilinear_kernel(2)
    assert k.shape == (4, 4) and torch.allclose(k[1, :], torch.tensor([0.1875, 0.5625, 0.5625, 0.1875]))
    m = create("fcfn_vgg16", num_classes=3, dim=4, upsample="deconv", **NARROW)
    up = m.upsamplers[0]
    x = torch.rand(1, 4, 6, 6)
    with torch.no_grad():
        out = up(x, (48, 48))
        ref = torch.nn.functional.interpolate(x, size=(48, 48), mode="bilinear", align_corners=False)
    # equal to interpolation away from the border
    assert torch.allclose(out[..., 8:-8, 8:-8], ref[..., 8:-8, 8:-8], atol=1e-5)


def test_pretrained_path_loads_vgg_state(tmp_path):
    src = VGG16Features([2, 3, 4], widths=(8, 16, 32, 64, 64))
    sd = {"module." + k: v for k, v in src.state_dict().items()}
    sd["module.classifier.0.weight"] = torch.zeros(3)
    torch.save(sd, tmp_path / "vgg.pt")
    m = create("fcfn_vgg16", num_classes=3, dim=4, pretrained_path=str(tmp_path / "vgg.pt"), **NARROW)
    assert torch.equal(m.backbone.features[0].weight, src.features[0].weight)
    with pytest.raises(CheckpointError, match="does not fit"):
        create("fcfn_vgg16", num_classes=3, pretrained_path=str(tmp_path / "vgg.pt"))
    dst = VGG16Features([2, 3, 4], widths=(8, 16, 32, 64, 64), bn=True)
    with pytest.raises(CheckpointError, match="lacks"):
        load_vgg_state(dst, tmp_path / "vgg.pt")


def test_bad_model_options():
    with pytest.raises(ConfigError):
        create("fcfn_vgg16", stages=["conv6"])
    with pytest.raises(ConfigError):
        create("fcfn_vgg16", upsample="nearest")
    with pytest.raises(ConfigError):
        create("fcfn_vgg16", fusion="max")


# ------------------------------------------------------------------------------------------------ metrics


def test_metrics_hand_computed():
    # 3 classes; ground truth and prediction of 8 pixels (255 = ignored):
    target = torch.tensor([0, 0, 0, 1, 1, 2, 255, 255])
    pred = torch.tensor([0, 0, 1, 1, 2, 2, 1, 0])
    cm = confusion_matrix(pred, target, 3)
    # rows = truth: class 0 → (0,0,1 pred) = [2,1,0]; class 1 → [0,1,1]; class 2 → [0,0,1]
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    s = scores(cm)
    # pixel acc = (2+1+1)/6; class acc = 2/3, 1/2, 1/1; IoU = 2/3, 1/(2+2-1)=1/3, 1/(1+2-1)=1/2
    assert s["pixel_acc"] == pytest.approx(4 / 6)
    assert s["mean_acc"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert s["class_iou"] == pytest.approx([2 / 3, 1 / 3, 1 / 2])
    assert s["miou"] == pytest.approx((2 / 3 + 1 / 3 + 1 / 2) / 3)


def test_metrics_absent_classes_excluded():
    # 4 classes: class 3 is never in truth nor prediction (excluded); class 2 only predicted (IoU 0, no acc)
    target = torch.tensor([0, 0, 1, 1])
    pred = torch.tensor([0, 2, 1, 1])
    s = scores(confusion_matrix(pred, target, 4))
    assert np.isnan(s["class_iou"][3]) and s["class_iou"][2] == 0.0
    assert s["miou"] == pytest.approx((1 / 2 + 1 + 0) / 3)  # IoU0 = 1/(2+1-1)... = 1/2
    assert s["mean_acc"] == pytest.approx((1 / 2 + 1) / 2)  # only classes present in the ground truth


def test_metrics_agree_with_torchmetrics():
    from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

    g = torch.Generator().manual_seed(0)
    c = 6
    target = torch.randint(0, c, (4, 17, 23), generator=g)
    target[torch.rand(target.shape, generator=g) < 0.1] = 255
    logits = torch.randn(4, c, 17, 23, generator=g)
    logits[:, 2] += 1.0  # an unbalanced prediction
    pred = logits.argmax(1)
    ev = SegmentationEvaluator(c)
    ev.update(logits[:2], target[:2])  # accumulated in two batches
    ev.update(logits[2:], target[2:])
    out = ev.compute()
    jac_macro = MulticlassJaccardIndex(c, ignore_index=255, average="macro")(pred, target)
    jac_none = MulticlassJaccardIndex(c, ignore_index=255, average="none")(pred, target)
    acc_macro = MulticlassAccuracy(c, ignore_index=255, average="macro")(pred, target)
    acc_micro = MulticlassAccuracy(c, ignore_index=255, average="micro")(pred, target)
    assert out["miou"] == pytest.approx(jac_macro.item(), abs=1e-6)
    assert ev.last_scores["class_iou"] == pytest.approx(jac_none.tolist(), abs=1e-6)
    assert out["mean_acc"] == pytest.approx(acc_macro.item(), abs=1e-6)
    assert out["pixel_acc"] == pytest.approx(acc_micro.item(), abs=1e-6)
    assert out["count"] == int((target != 255).sum())


# ------------------------------------------------------------------------------------------------ VOC


def _jpeg(path, h=12, w=16, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path, quality=95)


def _palette_png(path, mask):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.asarray(mask, np.uint8), mode="P")
    img.putpalette(voc_palette())
    img.save(path)


def _mask(h=12, w=16, cls=1):
    m = np.zeros((h, w), np.uint8)
    m[2:8, 3:10] = cls
    m[2, 3:10] = 255  # a boundary
    return m


@pytest.fixture
def voc_root(tmp_path):
    """VOC 2012 (train A, B; val C, D) + SBD (train B, E, C; val F) in the official layouts."""
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    ids = {
        "2007_000001": 1,
        "2007_000002": 2,
        "2007_000003": 3,
        "2007_000004": 4,
        "2008_000005": 5,
        "2008_000006": 6,
    }
    a, b, c, d, e, f = ids
    for i, cls in ids.items():
        _jpeg(voc / "JPEGImages" / f"{i}.jpg", value=20 * cls)
    for i in (a, b, c, d):
        _palette_png(voc / "SegmentationClass" / f"{i}.png", _mask(cls=ids[i]))
    lists = voc / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text(f"{a}\n{b}\n")
    (lists / "val.txt").write_text(f"{c}\n{d}\n")
    (lists / "trainval.txt").write_text(f"{a}\n{b}\n{c}\n{d}\n")
    sbd = tmp_path / "benchmark_RELEASE" / "dataset"
    (sbd / "cls").mkdir(parents=True)
    for i in (b, e, c, f):
        seg = np.zeros((12, 16), np.uint8)
        seg[4:10, 5:12] = 10 + ids[i]  # SBD's own labels differ from VOC's (to see which mask was read)
        scipy.io.savemat(
            sbd / "cls" / f"{i}.mat",
            {"GTcls": {"Segmentation": seg, "Boundaries": np.zeros((20, 1), object), "CategoriesPresent": 1}},
        )
    (sbd / "train.txt").write_text(f"{b}\n{e}\n{c}\n")
    (sbd / "val.txt").write_text(f"{f}\n")
    return tmp_path


def test_voc_splits_and_masks(voc_root):
    for root in (voc_root, voc_root / "VOCdevkit", voc_root / "VOCdevkit" / "VOC2012"):
        ds = VOCSegmentation(root, "train")
        assert ds.ids == ["2007_000001", "2007_000002"]
    val = VOCSegmentation(voc_root, "val")
    x, y = val[0]
    assert x.shape == (3, 12, 16) and y.dtype == torch.int64 and y.shape == (12, 16)
    assert set(y.unique().tolist()) == {0, 3, 255}
    assert len(VOCSegmentation(voc_root, "trainval")) == 4


def test_voc_train_aug_union(voc_root):
    ds = VOCSegmentation(voc_root, "train_aug")
    # (SBD train {B, E, C} ∪ SBD val {F} ∪ VOC train {A, B}) − VOC val {C, D} = {A, B, E, F}
    assert ds.ids == ["2007_000001", "2007_000002", "2008_000005", "2008_000006"]
    kinds = {s[0]: s[3] for s in ds.samples}
    assert kinds == {"2007_000001": "voc", "2007_000002": "voc", "2008_000005": "mat", "2008_000006": "mat"}
    assert set(ds[1][1].unique().tolist()) == {0, 2, 255}  # B: VOC's mask preferred
    assert set(ds[2][1].unique().tolist()) == {0, 15}  # E: from SBD's GTcls.Segmentation
    sbd_b = VOCSegmentation(voc_root, "train_aug", prefer_voc_masks=False)
    assert set(sbd_b[1][1].unique().tolist()) == {0, 12}


def test_voc_train_aug_from_segmentationclassaug(voc_root):
    voc = voc_root / "VOCdevkit" / "VOC2012"
    aug = voc / "SegmentationClassAug"
    aug.mkdir()
    for i, cls in (("2007_000002", 2), ("2008_000005", 5), ("2007_000003", 3)):
        Image.fromarray(_mask(cls=cls)).save(aug / f"{i}.png")  # grey (mode L) label PNGs
    ds = VOCSegmentation(voc_root, "train_aug")
    assert ds.ids == ["2007_000001", "2007_000002", "2008_000005"]  # 2007_000003 is in VOC val
    assert ds.samples[2][3] == "aug" and set(ds[2][1].unique().tolist()) == {0, 5, 255}
    (voc / "ImageSets" / "SegmentationAug").mkdir()
    (voc / "ImageSets" / "SegmentationAug" / "train_aug.txt").write_text(
        "/JPEGImages/2008_000005.jpg /SegmentationClassAug/2008_000005.png\n"
    )
    assert VOCSegmentation(voc_root, "train_aug").ids == ["2007_000001", "2007_000002", "2008_000005"]


def test_voc_bad_mask_value_names_file(voc_root):
    bad = voc_root / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000001.png"
    m = _mask()
    m[0, 0] = 50
    _palette_png(bad, m)
    ds = VOCSegmentation(voc_root, "train")
    with pytest.raises(DataError, match=re.escape(str(bad)) + ".*50"):
        ds[0]


def test_voc_non_palette_mask_is_an_error(voc_root):
    bad = voc_root / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000002.png"
    Image.fromarray(np.stack([_mask()] * 3, -1)).save(bad)  # an RGB rendering
    with pytest.raises(DataError, match=re.escape(str(bad)) + ".*mode RGB.*P"):
        VOCSegmentation(voc_root, "train")[1]


def test_voc_missing_layout(voc_root, tmp_path):
    import shutil

    shutil.rmtree(voc_root / "VOCdevkit" / "VOC2012" / "JPEGImages")
    with pytest.raises(DataError, match="JPEGImages"):
        VOCSegmentation(voc_root, "train")
    with pytest.raises(DataError, match="no PASCAL VOC 2012 folder"):
        VOCSegmentation(tmp_path / "benchmark_RELEASE", "train")


def test_voc_train_aug_without_sbd(tmp_path):
    voc = tmp_path / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    (voc / "ImageSets/Segmentation/train.txt").write_text("x\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("y\n")
    with pytest.raises(DataError, match="needs SBD"):
        VOCSegmentation(tmp_path, "train_aug")


def test_joint_transform_and_pad_collate():
    x = torch.rand(3, 10, 14)
    y = torch.randint(0, 3, (10, 14))
    g = torch.Generator().manual_seed(0)
    xo, yo = joint_transform(x, y, crop_size=16, scale_range=(0.5, 1.5), flip=True, generator=g)
    assert xo.shape == (3, 16, 16) and yo.shape == (16, 16)
    assert set(yo.unique().tolist()) <= {0, 1, 2, 255}
    bx, by = pad_collate([(x, y), (torch.rand(3, 12, 9), torch.zeros(12, 9, dtype=torch.long))])
    assert bx.shape == (2, 3, 12, 14) and (by[0, 10:] == 255).all() and (by[1, :, 9:] == 255).all()


# ------------------------------------------------------------------------------------------------ learning


def test_fcfn_learns_shapes():
    from imagexplore.data.shapes import ShapesSegmentation

    with single_thread():
        torch.manual_seed(0)
        tr = ShapesSegmentation(2000, size=32, seed=0, num_classes=3)
        va = ShapesSegmentation(100, size=32, seed=0, split="val", num_classes=3)
        x = torch.stack([tr[i][0] for i in range(len(tr))])
        y = torch.stack([tr[i][1] for i in range(len(tr))])
        xv = torch.stack([va[i][0] for i in range(len(va))])
        yv = torch.stack([va[i][1] for i in range(len(va))])
        m = create("fcfn_vgg16", num_classes=4, width_mult=0.125, bn=True, dim=16)
        opt = torch.optim.AdamW(m.parameters(), 0.005)
        for _ in range(200):
            idx = torch.randint(0, len(x), (16,))
            loss = segmentation_loss(m(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        m.eval()
        with torch.no_grad():
            miou = scores(confusion_matrix(m(xv), yv, 4))["miou"]
    base = scores(confusion_matrix(torch.zeros_like(yv), yv, 4))["miou"]  # all background
    assert miou > base + 0.15 and miou > 2 * base, (miou, base)


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_train_eval_predict(tmp_path, capsys):
    run = tmp_path / "run"
    with single_thread():
        rc = main(
            [
                "segment",
                "train",
                "--config",
                "segment/shapes_fcfn_quick.yaml",
                "--out",
                str(run),
                "--no-progress",
                "--set",
                "train.iterations=6",
                "--set",
                "data.image_size=32",
                "--set",
                "data.train_samples=64",
                "--set",
                "data.val_samples=8",
                "--set",
                "data.batch_size=8",
            ]
        )
        assert rc == 0
        ckpt = run / "checkpoints" / "best.pt"
        assert ckpt.is_file() and (run / "summary.json").is_file()
        capsys.readouterr()
        assert main(["segment", "eval", "--checkpoint", str(ckpt), "--json", "--device", "cpu"]) == 0
        res = json.loads(capsys.readouterr().out)
        assert res["images"] == 8 and 0 <= res["miou"] <= 1
        assert {"pixel_acc", "mean_acc", "per_class_iou"} <= set(res) and "background" in res["per_class_iou"]
        assert main(["segment", "eval", "--checkpoint", str(ckpt), "--device", "cpu"]) == 0
        assert "mean IoU" in capsys.readouterr().out
        # a 16-bit grey and an RGBA input, sizes not multiples of 32
        a16 = tmp_path / "grey16.png"
        Image.fromarray(np.arange(45 * 37, dtype=np.uint16).reshape(37, 45) * 30).save(a16)
        rgba = tmp_path / "cut.png"
        Image.new("RGBA", (50, 21), (200, 10, 10, 128)).save(rgba)
        out = tmp_path / "pred"
        argv = ["segment", "predict", "--checkpoint", str(ckpt), str(a16), str(rgba), "--out", str(out)]
        assert main([*argv, "--json", "--device", "cpu"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [r["size"] for r in res] == [[45, 37], [50, 21]]
    for name, size in (("grey16.png", (45, 37)), ("cut.png", (50, 21))):
        with Image.open(out / name) as img:
            assert img.mode == "P" and img.size == size
            assert img.getpalette()[:6] == [0, 0, 0, 128, 0, 0]
            assert np.array(img).max() < 5


def test_cli_errors(tmp_path, capsys):
    assert main(["segment", "eval", "--checkpoint", str(tmp_path / "nope.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    rc = main(
        [
            "segment",
            "train",
            "--out",
            str(tmp_path / "r"),
            "--set",
            "data.name=voc",
            "--set",
            "model.name=fcfn_vgg16",
        ]
    )
    assert rc == 2 and "data.root" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["voc_fcfn", "voc_fcn"])
def test_voc_configs_build(voc_root, name):
    from imagexplore.config import load_config
    from imagexplore.segmentation.train import build_datasets, build_model

    cfg = load_config(f"segment/{name}.yaml", [f"data.root={voc_root}"])
    assert cfg.published_target.startswith("FCN-8s 62.7") and cfg.train.best_metric == "val/miou"
    train_set, val_set = build_datasets(cfg)
    assert len(train_set) == 4 and len(val_set) == 2  # train_aug of the fixture; val
    x, y = train_set[0]
    assert x.shape == (3, 320, 320) and y.shape == (320, 320) and (y == 255).any()  # padded crop
    assert abs(float(x.mean())) < 3  # normalised
    x, y = val_set[0]
    assert x.shape == (3, 12, 16)  # full size
    model = build_model(cfg, 21)
    assert model.registry_name == cfg.model.name
