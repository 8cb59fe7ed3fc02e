"""`imagexplore serve`'s API in-process (fastapi.testclient): every route and every bad input.

One app over a tiny collection (3 scikit-image photos, copied to a tmp folder) with its index in a tmp cache;
HED runs on a small image. The other apps (small upload limit, token, one worker) load no model of their own.
"""

import asyncio
import base64
import io
import shutil
import struct
import threading
import zlib

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from imagexplore.data.assets import skimage_photos  # noqa: E402
from imagexplore.web.app import Settings, create_app  # noqa: E402
from imagexplore.web.hub import Busy, Hub  # noqa: E402
from imagexplore.web.uploads import RequestError, decode_upload  # noqa: E402

PHOTOS = {p.name: p for p in skimage_photos()}
NAMES = ("coffee.png", "chelsea.png", "rocket.jpg")
pytestmark = pytest.mark.skipif(not all(n in PHOTOS for n in NAMES), reason="scikit-image photos missing")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("collection")
    for n in NAMES:
        shutil.copy(PHOTOS[n], d / n)
    (d / "notes.txt").write_text("not an image")
    return d


@pytest.fixture(scope="module")
def client(folder, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    app = create_app(Settings(collection=folder, cache_dir=cache, progress=False))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def ids(client):
    items = client.get("/api/collection", params={"per_page": 50}).json()["items"]
    return {i["name"]: i["id"] for i in items}


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _small(name="chelsea.png", side=96) -> Image.Image:
    img = Image.open(PHOTOS[name]).convert("RGB")
    img.thumbnail((side, side))
    return img


def _decode_data_url(url: str) -> Image.Image:
    head, data = url.split(",", 1)
    assert head == "data:image/png;base64"
    return Image.open(io.BytesIO(base64.b64decode(data)))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb_png(side=100_000) -> bytes:
    """A tiny PNG whose header claims side × side pixels (far over Pillow's MAX_IMAGE_PIXELS)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + _chunk(b"IEND", b"")
    )


def _upload(data: bytes, name="x.png", ctype="image/png"):
    return {"image": (name, data, ctype)}


# ------------------------------------------------------------------------------------------------ page, health
def test_health_panels_and_version(client):
    h = client.get("/api/health").json()
    assert h["ok"] is True and h["version"]
    assert h["panels"] == {
        "classify": True,
        "edges": True,
        "segment": False,
        "similar": True,
        "text": False,
        "translate": False,
        "swap": False,
    }
    assert set(h["models"]) == {"classify", "edges", "segment", "similar", "text", "translate", "swap"}
    assert h["collection"] == 3


def test_page_static_and_docs(client):
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert client.get("/static/index.html").status_code == 200
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for route in (
        "/api/health",
        "/api/classify",
        "/api/edges",
        "/api/segment",
        "/api/similar",
        "/api/collection",
    ):
        assert route in paths
    assert "multipart/form-data" in paths["/api/classify"]["post"]["requestBody"]["content"]


# ------------------------------------------------------------------------------------------------- collection
def test_collection_paging(client):
    r = client.get("/api/collection", params={"page": 1, "per_page": 2}).json()
    assert (r["page"], r["pages"], r["total"], len(r["items"])) == (1, 2, 3, 2)
    assert {"id", "name", "url"} <= set(r["items"][0])
    assert r["items"][0]["url"] == f"/api/image/{r['items'][0]['id']}"
    last = client.get("/api/collection", params={"page": 2, "per_page": 2}).json()
    assert len(last["items"]) == 1
    assert client.get("/api/collection", params={"page": 9}).json()["items"] == []
    bad = client.get("/api/collection", params={"page": 0})
    assert bad.status_code == 400 and "error" in bad.json()
    assert client.get("/api/collection", params={"per_page": "x"}).status_code == 400


def test_image_by_id(client, ids):
    r = client.get(f"/api/image/{ids['coffee.png']}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == PHOTOS["coffee.png"].read_bytes()
    r = client.get(f"/api/image/{ids['rocket.jpg']}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize(
    "ident",
    [
        "0",
        "deadbeefdeadbeef",
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "%252e%252e%252fetc%252fpasswd",
        "..%5C..%5Cwindows",
        "%2Fetc%2Fpasswd",
        "coffee.png",
    ],
)
def test_image_bad_id_and_traversal_404(client, ident):
    r = client.get(f"/api/image/{ident}")
    assert r.status_code == 404 and set(r.json()) == {"error"}


def test_image_traversal_raw_and_absolute(client, folder):
    for url in (
        "/api/image/../../etc/passwd",
        "/api/image//etc/passwd",
        f"/api/image/{folder / 'coffee.png'}",
    ):
        r = client.get(url)
        assert r.status_code == 404, url
    # the file's own absolute path, URL-encoded into one segment, is no id either
    from urllib.parse import quote

    r = client.get("/api/image/" + quote(str(folder / "coffee.png"), safe=""))
    assert r.status_code == 404
    r = client.post("/api/classify", json={"id": str(folder / "coffee.png")})
    assert r.status_code == 404
    r = client.post("/api/similar", json={"id": "../coffee.png"})
    assert r.status_code == 404


# --------------------------------------------------------------------------------------------------- classify
def test_classify_coffee_is_espresso(client, ids):
    r = client.post(
        "/api/classify", files=_upload(PHOTOS["coffee.png"].read_bytes(), "photo.bin", "text/plain")
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert "lite0" in out["model"].lower() and out["ms"] > 0
    top = out["top"]
    assert len(top) == 5 and top[0]["label"] == "espresso" and top[0]["index"] == 967
    probs = [t["prob"] for t in top]
    assert probs == sorted(probs, reverse=True) and 0.5 < probs[0] <= 1
    by_id = client.post("/api/classify", json={"id": ids["coffee.png"]}).json()
    assert by_id["top"][0]["label"] == "espresso"
    assert client.get("/api/health").json()["models"]["classify"]["loaded"] is True


# ------------------------------------------------------------------------------------------------------ edges
def test_edges_png_data_urls_of_the_image_size(client):
    img = _small()
    r = client.post("/api/edges", files=_upload(_png(img)))
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["width"], out["height"]) == img.size and out["ms"] > 0
    for key in ("edges_png", "thin_png"):
        png = _decode_data_url(out[key])
        assert png.size == img.size and png.mode == "L"
    raw = np.asarray(_decode_data_url(out["edges_png"]))
    thin = np.asarray(_decode_data_url(out["thin_png"]))
    assert raw.max() > 100 and (thin > 0).sum() < (raw > 0).sum()


# ---------------------------------------------------------------------------------------------------- similar
def test_similar_by_id_finds_itself_first(client, ids):
    for name in ("coffee.png", "chelsea.png"):
        r = client.post("/api/similar", json={"id": ids[name], "k": 3})
        assert r.status_code == 200, r.text
        res = r.json()["results"]
        assert res and res[0]["id"] == ids[name] and res[0]["url"] == f"/api/image/{ids[name]}"
        assert len(res) <= 3 and all(isinstance(x["score"], float) for x in res)


def test_similar_by_upload(client, ids):
    r = client.post("/api/similar", files=_upload(_png(_small("rocket.jpg", 200))), data={"k": "2"})
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert res[0]["id"] == ids["rocket.jpg"] and len(res) <= 2
    bad = client.post("/api/similar", json={"id": ids["rocket.jpg"], "k": 0})
    assert bad.status_code == 400


def test_segment_off_without_checkpoint(client, ids):
    r = client.post("/api/segment", json={"id": ids["coffee.png"]})
    assert r.status_code == 503 and "segment" in r.json()["error"]


# ---------------------------------------------------------------------------------------------- bad requests
def test_non_image_is_415_whatever_its_name(client):
    for name, ctype in (("x.png", "image/png"), ("x.jpg", "image/jpeg"), ("x.txt", "text/plain")):
        r = client.post("/api/classify", files=_upload(b"<html>not an image</html>" * 10, name, ctype))
        assert r.status_code == 415, (name, r.text)
        assert "\n" not in r.json()["error"]


def test_bomb_header_is_refused(client):
    r = client.post("/api/classify", files=_upload(_bomb_png()))
    assert r.status_code == 413 and "pixels" in r.json()["error"]


def test_truncated_and_empty(client):
    data = _png(_small())
    assert client.post("/api/classify", files=_upload(data[: len(data) // 2])).status_code == 400
    assert client.post("/api/classify", files=_upload(b"")).status_code == 400


def test_bad_bodies(client):
    assert (
        client.post(
            "/api/classify", content=b"{not json", headers={"content-type": "application/json"}
        ).status_code
        == 400
    )
    assert client.post("/api/classify", json={"name": "x"}).status_code == 400
    assert client.post("/api/classify", json=[1, 2]).status_code == 400
    assert client.post("/api/classify", json={"id": None}).status_code == 400
    assert (
        client.post("/api/classify", content=b"raw", headers={"content-type": "image/png"}).status_code == 415
    )
    assert client.post("/api/classify", data={"other": "1"}, files={"f": ("a", b"b")}).status_code == 400


def test_a_failing_request_is_one_line_500_and_the_server_keeps_serving(client, ids, monkeypatch):
    import imagexplore.web.routes.classify as mod

    def boom(*_a):
        raise RuntimeError("model exploded\nsecond line")

    monkeypatch.setattr(mod, "classify", boom)
    r = client.post("/api/classify", json={"id": ids["coffee.png"]})
    assert r.status_code == 500 and r.json() == {
        "error": "internal error: RuntimeError: model exploded second line"
    }
    monkeypatch.undo()
    assert client.post("/api/classify", json={"id": ids["coffee.png"]}).status_code == 200


def test_oversize_upload_is_413(folder, tmp_path):
    app = create_app(Settings(collection=folder, cache_dir=tmp_path, max_upload_bytes=10_000))
    c = TestClient(app)
    rng = np.random.default_rng(0)
    big = _png(Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)))
    assert len(big) > 10_000 + 64 * 1024  # over the limit plus the multipart slack: refused by Content-Length
    r = c.post("/api/classify", files=_upload(big))
    assert r.status_code == 413 and "limit" in r.json()["error"]
    mid = _png(Image.fromarray(rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)))
    assert 10_000 < len(mid) < 10_000 + 64 * 1024  # within the slack: refused by the upload's own size
    r = c.post("/api/classify", files=_upload(mid))
    assert r.status_code == 413 and "limit" in r.json()["error"]
    with pytest.raises(RequestError) as e:  # just over: the upload's own size check
        decode_upload(b"x" * 10_001, 10_000)
    assert e.value.status == 413
    assert c.get("/api/health").status_code == 200


def test_upload_is_reencoded():
    img = Image.new("RGBA", (20, 10), (255, 0, 0, 128))
    buf = io.BytesIO()
    from PIL import PngImagePlugin

    meta = PngImagePlugin.PngInfo()
    meta.add_text("Comment", "payload")
    img.save(buf, format="PNG", pnginfo=meta)
    out = decode_upload(buf.getvalue() + b"trailing junk", 1 << 20)
    assert out.mode == "RGB" and out.size == (20, 10) and out.info == {} and out.format is None
    grey16 = Image.fromarray(np.full((4, 5), 40000, np.uint16))
    assert decode_upload(_png(grey16), 1 << 20).mode == "RGB"


# ----------------------------------------------------------------------------------------------------- token
def test_token_required_on_every_api_call(folder, tmp_path):
    app = create_app(Settings(collection=folder, cache_dir=tmp_path, token="s3cret"))
    c = TestClient(app)
    for method, url in (
        ("get", "/api/health"),
        ("get", "/api/collection"),
        ("get", "/api/image/x"),
        ("post", "/api/classify"),
    ):
        r = getattr(c, method)(url)
        assert r.status_code == 401 and "token" in r.json()["error"], url
    assert c.get("/api/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/api/health", params={"token": "s3cre"}).status_code == 401
    assert c.get("/api/health", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert c.get("/api/health", params={"token": "s3cret"}).status_code == 200
    assert c.get("/").status_code == 200  # the page itself carries no data


# ------------------------------------------------------------------------------------------------ full queue
def test_full_queue_is_503_with_retry_after(folder, tmp_path, client, ids):
    app = create_app(Settings(collection=folder, cache_dir=tmp_path, workers=1, queue_size=0))
    hub = app.state.hub
    c = TestClient(app)
    assert hub._slots.acquire(blocking=False)  # the only slot taken, as by a long inference
    r = c.post("/api/classify", json={"id": ids["coffee.png"]})
    assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0 and "busy" in r.json()["error"]
    hub._slots.release()
    assert c.get("/api/health").status_code == 200


def test_hub_pool_admits_workers_plus_queue(folder, tmp_path):
    hub = Hub(Settings(collection=folder, cache_dir=tmp_path, workers=1, queue_size=1))
    gate = threading.Event()

    async def main():
        first = asyncio.ensure_future(hub.run(gate.wait, 10))
        second = asyncio.ensure_future(hub.run(lambda: 2))
        await asyncio.sleep(0.05)
        with pytest.raises(Busy):
            await hub.run(lambda: 3)
        gate.set()
        assert await first is True and await second == 2
        assert await hub.run(lambda: 4) == 4  # slots are given back

    asyncio.run(main())
    hub.close()


# ---------------------------------------------------------------------------------------- checkpoints, CLI
def test_checkpoint_task_decides_its_panel(folder, tmp_path):
    import torch

    from imagexplore.errors import UserError

    def ck(name, meta):
        path = tmp_path / name
        torch.save({"model": {}, "meta": meta}, path)
        return str(path)

    hub = Hub(Settings(collection=folder, cache_dir=tmp_path, checkpoints=[ck("s.pt", {"task": "segment"})]))
    assert hub.health()["panels"]["segment"] is True and hub.checkpoints["segment"].endswith("s.pt")
    with pytest.raises(UserError, match="task"):
        Hub(Settings(collection=folder, cache_dir=tmp_path, checkpoints=[ck("r.pt", {"task": "retrieve"})]))
    with pytest.raises(UserError, match="two checkpoints"):
        Hub(
            Settings(
                collection=folder,
                cache_dir=tmp_path,
                checkpoints=[ck("a.pt", {"classes": ["a"]}), ck("b.pt", {"task": "classify"})],
            )
        )


def test_cli_settings_and_loopback(capsys, folder):
    from imagexplore.cli import build_parser
    from imagexplore.web.cli import is_loopback, settings_from_args

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
    args = build_parser().parse_args(
        ["serve", "--collection", str(folder), "--device", "cpu", "--max-upload-mb", "2"]
    )
    s = settings_from_args(args)
    assert s.token is None and s.max_upload_bytes == 2 * 1024 * 1024 and s.workers == 2
    args = build_parser().parse_args(["serve", "--host", "0.0.0.0", "--device", "cpu"])
    s = settings_from_args(args)
    assert s.token and s.token in capsys.readouterr().err
    args = build_parser().parse_args(["serve", "--host", "0.0.0.0", "--token", "T", "--device", "cpu"])
    assert settings_from_args(args).token == "T"
