"""The explorer's synthesis panels: translate (a synth checkpoint on paired data) and swap (on person data).

Two tiny checkpoints trained once through the CLI as `test_synth_task.py` trains them (32 px, depth-5 U-Nets 8
wide, 4 iterations): `shapes_instantiation_quick` (label map → photo, with a style code) and
`shapes_swapgan_quick`. The API in-process (fastapi.testclient): health and info, N samples at the upload's size
that differ and repeat with the seed, the person gallery (exported shapes persons, or `--persons DIR`), swaps equal
to `synth swap`'s, every bad input a one-line 4xx. One page test in Chromium (skipped without it) draws on the
translate canvas and picks two persons. All on one thread: tiny convs on a shared 2-core machine run faster so.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from helpers import single_thread  # noqa: E402
from imagexplore.cli import main  # noqa: E402
from imagexplore.errors import UserError  # noqa: E402
from imagexplore.synthesis.metrics import label_palette  # noqa: E402
from imagexplore.synthesis.persons import export_persons  # noqa: E402
from imagexplore.web.app import Settings, create_app  # noqa: E402
from imagexplore.web.hub import Hub  # noqa: E402

# as tests/test_synth_task.py: 32-px scenes, depth-5 U-Nets 8 wide, 4 iterations
TINY = [
    "data.image_size=32",
    "data.train_samples=16",
    "data.val_samples=8",
    "data.batch_size=4",
    "data.eval_batch_size=8",
    "train.iterations=4",
    "train.eval_every_iters=2",
    "train.log_every=2",
    "train.tensorboard=false",
    "model.kwargs.g_kwargs.depth=5",
    "model.kwargs.g_kwargs.ngf=8",
    "model.kwargs.d_kwargs.ndf=8",
    "evaluation.gallery=3",
]


def _train(config, out, *extra):
    sets = [a for s in [*TINY, *extra] for a in ("--set", s)]
    assert main(["synth", "train", "--config", config, "--out", str(out), "--no-progress", *sets]) == 0
    return out


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("synth_runs")
    return {
        "translate": _train("shapes_instantiation_quick", root / "inst", "model.kwargs.e_kwargs.ndf=8"),
        "swap": _train("shapes_swapgan_quick", root / "swap"),
    }


@pytest.fixture(scope="module")
def empty(tmp_path_factory):
    return tmp_path_factory.mktemp("empty_collection")  # no index to build: the similar panel is off


@pytest.fixture(scope="module")
def client(runs, empty, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    settings = Settings(
        collection=empty,
        cache_dir=cache,
        checkpoints=[str(runs["translate"]), str(runs["swap"])],
        progress=False,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _decode(url: str) -> np.ndarray:
    head, data = url.split(",", 1)
    assert head == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))


def _label_map(h=37, w=45) -> np.ndarray:
    """A shapes label map in the world's colours: background with a 'circle' block and a 'square' block."""
    pal = label_palette(5).numpy()
    m = np.zeros((h, w, 3), np.uint8)
    m[:] = pal[0]
    m[4:20, 5:22] = pal[1]
    m[18:33, 25:40] = pal[2]
    return m


def _one_line_error(r, status):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"] and "\n" not in body["error"], body
    return body["error"]


# ---------------------------------------------------------------------------------------------- health, info
def test_health_and_translate_info(client):
    h = client.get("/api/health").json()
    assert h["panels"]["translate"] is True and h["panels"]["swap"] is True
    assert "label → photo" in h["models"]["translate"]["name"] and "swapgan" in h["models"]["swap"]["name"]
    info = client.get("/api/translate/info").json()
    assert info["kind"] == "instantiation" and (info["input_kind"], info["target_kind"]) == ("label", "photo")
    assert info["image_size"] == 32 and info["samples"] == {"default": 3, "max": 8}
    # the quick config's world has 4 shape classes: background + 4 colours, the VOC map's first five
    assert [p["name"] for p in info["palette"]] == ["background", "circle", "square", "triangle", "star"]
    expected = ["#{:02x}{:02x}{:02x}".format(*c) for c in label_palette(5).tolist()]
    assert [p["color"] for p in info["palette"]] == expected
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/translate", "/api/translate/info", "/api/persons", "/api/swap"} <= set(paths)


def test_panels_off_without_synth_checkpoints(empty, tmp_path):
    c = TestClient(create_app(Settings(collection=empty, cache_dir=tmp_path)), raise_server_exceptions=False)
    h = c.get("/api/health").json()
    assert h["panels"]["translate"] is False and h["panels"]["swap"] is False
    assert "synth" in h["models"]["translate"]["reason"] and "person" in h["models"]["swap"]["reason"]
    assert "translate" in _one_line_error(c.get("/api/translate/info"), 503)
    r = c.post("/api/translate", files={"image": ("x.png", _png(_label_map()), "image/png")})
    assert "translate panel is off" in _one_line_error(r, 503)
    assert "swap" in _one_line_error(c.get("/api/persons"), 503)
    assert "swap" in _one_line_error(c.post("/api/swap", json={"person": "a", "clothes": "b"}), 503)


def test_synth_checkpoints_route_by_their_data(empty, tmp_path):
    """pairs → translate, persons → swap; a coco18 person checkpoint without --persons: swap off, said why."""

    def ck(name, meta):
        torch.save({"model": {}, "meta": {"task": "synth", **meta}}, tmp_path / name)
        return str(tmp_path / name)

    pairs = ck(
        "p.pt", {"kind": "pix2pix", "data_kind": "pairs", "input_kind": "sketch", "target_kind": "photo"}
    )
    coco = ck("c.pt", {"kind": "swapgan", "data_kind": "persons", "order": "coco18"})
    hub = Hub(Settings(collection=empty, cache_dir=tmp_path, checkpoints=[pairs, coco]))
    assert hub.checkpoints["translate"] == pairs and hub.checkpoints["swap"] == coco
    assert hub.models["translate"].available and "sketch → photo" in hub.models["translate"].name
    assert not hub.models["swap"].available and "--persons" in hub.models["swap"].reason
    with pytest.raises(UserError, match="two checkpoints for the translate panel"):
        Hub(
            Settings(
                collection=empty, cache_dir=tmp_path, checkpoints=[pairs, ck("q.pt", {"data_kind": "pairs"})]
            )
        )
    hub.close()


# ------------------------------------------------------------------------------------------------- translate
def test_translate_gives_n_samples_at_the_upload_size(client):
    files = {"image": ("map.png", _png(_label_map()), "image/png")}
    r = client.post("/api/translate", files=files, data={"samples": "4", "seed": "7"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["kind"], out["input_kind"], out["target_kind"]) == ("instantiation", "label", "photo")
    assert (out["width"], out["height"], out["seed"]) == (45, 37, 7) and out["ms"] > 0
    samples = [_decode(u) for u in out["samples"]]
    assert len(samples) == 4 and all(s.shape == (37, 45, 3) for s in samples)
    assert not np.array_equal(samples[0], samples[1])  # different style codes, different photos
    again = client.post("/api/translate", files=files, data={"samples": "4", "seed": "7"}).json()
    assert again["samples"] == out["samples"]  # the seed fixes them
    default = client.post("/api/translate", files=files).json()
    assert len(default["samples"]) == 3 and 0 <= default["seed"] < 2**31
    by_query = client.post("/api/translate?samples=1&seed=7", files=files).json()
    assert len(by_query["samples"]) == 1


def test_translate_bad_inputs_are_one_line_4xx(client):
    good = {"image": ("map.png", _png(_label_map()), "image/png")}
    _one_line_error(
        client.post("/api/translate", files={"image": ("x.png", b"<html>no image</html>" * 9)}), 415
    )
    _one_line_error(client.post("/api/translate", files={"image": ("x.png", b"")}), 400)
    for samples in ("0", "100", "x", "2.5"):
        msg = _one_line_error(client.post("/api/translate", files=good, data={"samples": samples}), 400)
        assert "samples" in msg
    assert "seed" in _one_line_error(client.post("/api/translate", files=good, data={"seed": "-1"}), 400)
    _one_line_error(client.post("/api/translate", json={"id": "deadbeefdeadbeef"}), 404)
    _one_line_error(client.post("/api/translate", content=b"x", headers={"content-type": "text/plain"}), 415)


def test_upload_limit_holds_for_translate(runs, empty, tmp_path):
    settings = Settings(
        collection=empty, cache_dir=tmp_path, checkpoints=[str(runs["translate"])], max_upload_bytes=1000
    )
    c = TestClient(create_app(settings), raise_server_exceptions=False)
    noise = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    assert "limit" in _one_line_error(c.post("/api/translate", files={"image": ("n.png", _png(noise))}), 413)


# ------------------------------------------------------------------------------------------------------ swap
def test_person_gallery_and_swap(client, runs, tmp_path):
    listing = client.get("/api/persons").json()
    persons = listing["persons"]
    assert len(persons) == 8 and listing["kind"] == "swapgan" and listing["order"] == "shapes"
    assert "shapes world" in listing["source"]
    for p in persons[:2]:
        r = client.get(p["url"])
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(r.content)).size == (p["width"], p["height"]) == (32, 32)
    a, b = persons[0], persons[3]
    r = client.post("/api/swap", json={"person": a["id"], "clothes": b["id"]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["width"], out["height"], out["kind"]) == (32, 32, "swapgan") and out["person"] == a["id"]
    swapped = _decode(out["image"])
    assert swapped.shape == (32, 32, 3)
    # the same pixels as `synth swap` on the exported files (A's image as served is the file's)
    served_a = Image.open(io.BytesIO(client.get(a["url"]).content))
    folder = next((Path(client.app.state.settings.cache_dir) / "serve" / "persons").iterdir())
    path_a, path_b = folder / f"{a['name']}.png", folder / f"{b['name']}.png"
    assert np.array_equal(np.asarray(served_a), np.asarray(Image.open(path_a)))
    cli_out = tmp_path / "swap.png"
    args = [
        "synth",
        "swap",
        "--checkpoint",
        str(runs["swap"]),
        "--person",
        str(path_a),
        "--clothes",
        str(path_b),
    ]
    assert main([*args, "--out", str(cli_out)]) == 0
    assert np.array_equal(swapped, np.asarray(Image.open(cli_out)))


def test_swap_bad_requests(client):
    ident = client.get("/api/persons").json()["persons"][0]["id"]
    assert "no person" in _one_line_error(
        client.post("/api/swap", json={"person": ident, "clothes": "x"}), 404
    )
    _one_line_error(client.post("/api/swap", json={"person": "../etc/passwd", "clothes": ident}), 404)
    _one_line_error(client.get("/api/persons/deadbeefdeadbeef/image"), 404)
    _one_line_error(client.post("/api/swap", json={"person": ident}), 400)
    _one_line_error(client.post("/api/swap", json={"person": 1, "clothes": ident}), 400)
    _one_line_error(client.post("/api/swap", json=[ident, ident]), 400)
    _one_line_error(
        client.post("/api/swap", content=b"{nope", headers={"content-type": "application/json"}), 400
    )
    _one_line_error(client.post("/api/swap", data={"person": ident, "clothes": ident}), 415)


def test_persons_folder(runs, empty, tmp_path, capsys):
    """`serve --persons DIR`: its persons (a broken one skipped and said), sizes checked at swap time."""
    folder = tmp_path / "persons"
    export_persons(folder, 3, size=32, seed=5)
    bad = sorted(folder.glob("*.pose.json"))[0]
    other = tmp_path / "other"
    export_persons(other, 1, size=48, seed=5)  # a 48-px person: not swappable with the 32-px ones
    for f in other.glob("p0000_*"):
        shutil.copy(f, folder / f.name.replace("p0000", "big"))
    pose = json.loads(bad.read_text())
    pose["keypoints"] = pose["keypoints"][:3]
    bad.write_text(json.dumps(pose))
    settings = Settings(
        collection=empty, cache_dir=tmp_path / "c", checkpoints=[str(runs["swap"])], persons=folder
    )
    c = TestClient(create_app(settings), raise_server_exceptions=False)
    assert bad.name.removesuffix(".pose.json") in capsys.readouterr().err  # skipped, and said
    listing = c.get("/api/persons").json()
    by_size = {p["width"]: p for p in listing["persons"]}
    assert len(listing["persons"]) == 3 and set(by_size) == {32, 48} and "persons" in listing["source"]
    r = c.post("/api/swap", json={"person": by_size[32]["id"], "clothes": by_size[48]["id"]})
    assert "same size" in _one_line_error(r, 400)

    with pytest.raises(UserError, match="no usable person"):
        Hub(
            Settings(
                collection=empty, cache_dir=tmp_path / "c", checkpoints=[str(runs["swap"])], persons=empty
            )
        )
    with pytest.raises(UserError, match="--persons needs"):
        Hub(Settings(collection=empty, cache_dir=tmp_path / "c", persons=folder))

    from imagexplore.cli import build_parser
    from imagexplore.web.cli import settings_from_args

    args = build_parser().parse_args(["serve", "--persons", str(folder), "--device", "cpu"])
    assert settings_from_args(args).persons == str(folder)


# ----------------------------------------------------------------------------------------- the page, Chromium
def test_page_draw_translate_and_swap(runs, empty, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    from imagexplore.web.background import serve_in_background
    from imagexplore.web.browser import CHROMIUM, launch_chromium

    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (make data installs it)")
    import httpx

    settings = Settings(
        collection=empty,
        cache_dir=tmp_path,
        checkpoints=[str(runs["translate"]), str(runs["swap"])],
        progress=False,
    )
    with serve_in_background(settings) as url, sync_api.sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)

        # translate: a few strokes in two classes on the label-map canvas, 2 samples
        canvas = page.locator("[data-testid='translate-canvas']")
        canvas.wait_for(timeout=30_000)
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        for colour, (y0, y1) in ((1, (0.2, 0.5)), (3, (0.6, 0.8))):
            page.check(f"[data-testid='translate-colour-{colour}']")
            page.mouse.move(box["x"] + 0.2 * box["width"], box["y"] + y0 * box["height"])
            page.mouse.down()
            for t in np.linspace(0.2, 0.8, 8):
                page.mouse.move(box["x"] + t * box["width"], box["y"] + y1 * box["height"])
            page.mouse.up()
        painted = canvas.evaluate(
            """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; const seen = new Set();
                      for (let i = 0; i < d.length; i += 4) seen.add(`${d[i]},${d[i+1]},${d[i+2]}`); return [...seen]; }"""
        )
        pal = ["{},{},{}".format(*c) for c in label_palette(5).tolist()]
        assert sorted(painted) == sorted([pal[0], pal[1], pal[3]])  # exact class colours, no anti-aliasing
        page.fill("[data-testid='translate-samples']", "2")
        page.click("[data-testid='translate-run']")
        page.wait_for_selector("#panel-translate[data-state='done']", timeout=60_000)
        results = page.locator("[data-testid='translate-sample']")
        assert results.count() == 2
        assert results.first.evaluate("img => img.decode().then(() => img.naturalWidth)") == 32

        # swap: the first pair is swapped on load; pick two others
        page.wait_for_selector("#panel-swap[data-state='done']", timeout=60_000)
        page.locator("[data-testid='swap-person'] button").nth(2).click()
        page.locator("[data-testid='swap-clothes'] button").nth(5).click()
        page.wait_for_function(
            "document.querySelectorAll(\"[data-testid='swap-clothes'] button\")[5].getAttribute('aria-pressed') === 'true'"
        )
        page.wait_for_selector("#panel-swap[data-state='done']", timeout=60_000)
        persons = httpx.get(f"{url}/api/persons").json()["persons"]
        want = httpx.post(
            f"{url}/api/swap", json={"person": persons[2]["id"], "clothes": persons[5]["id"]}
        ).json()
        shown = page.locator("[data-testid='swap-result']")
        shown.wait_for()
        page.wait_for_function(
            "src => document.querySelector(\"[data-testid='swap-result']\").src === src", arg=want["image"]
        )
        assert shown.evaluate("img => img.decode().then(() => img.naturalWidth)") == 32
        page.screenshot(path=str(tmp_path / "synth.png"), full_page=True)
        browser.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
