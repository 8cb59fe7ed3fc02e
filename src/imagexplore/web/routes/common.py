"""What the POST routes share: reading the request's image (upload or collection id), the hub, data URLs."""

from __future__ import annotations

import base64
import io
import json
import time
from typing import Any

from fastapi import Request
from PIL import Image

from imagexplore.web.uploads import RequestError, decode_upload

# The OpenAPI description of every POST route's body: a multipart upload, or a collection image by id.
IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"image": {"type": "string", "format": "binary"}},
                    "required": ["image"],
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"id": {"type": "string", "description": "a collection image's id"}},
                    "required": ["id"],
                }
            },
        },
    }
}


def hub(request: Request):
    return request.app.state.hub


def panel_on(h, panel: str) -> None:
    """503 (the one-line JSON error) when ``panel`` is off, before any work (e.g. reading an upload) is done."""
    m = h.models[panel]
    if not m.available:
        raise RequestError(503, f"the {panel} panel is off: {m.reason or 'no model'}")


class Timer:
    def __init__(self):
        self.start = time.perf_counter()

    @property
    def ms(self) -> float:
        return round((time.perf_counter() - self.start) * 1000.0, 1)


async def request_image(request: Request) -> tuple[Image.Image, str | None, dict]:
    """The request's image as a fresh RGB Pillow image, the collection id it came from (None for an upload),
    and the other fields (form fields or JSON keys) as a dict."""
    h = hub(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=16)
        except Exception as exc:  # noqa: BLE001 - a malformed multipart body
            raise RequestError(400, f"malformed multipart body: {str(exc).splitlines()[0][:200]}") from None
        upload = form.get("image")
        extra = {k: v for k, v in form.items() if k != "image" and isinstance(v, str)}
        if upload is None or isinstance(upload, str):
            if "id" in form and isinstance(form["id"], str):
                return await _by_id(h, form["id"]), form["id"], extra
            raise RequestError(
                400, "expected a file in the multipart field 'image' (or a JSON body {\"id\": ...})"
            )
        data = await upload.read(h.settings.max_upload_bytes + 1)
        await upload.close()
        return await h.run(decode_upload, data, h.settings.max_upload_bytes), None, extra
    if ctype == "application/json":
        body = await request.body()
        try:
            obj = json.loads(body)
        except ValueError:
            raise RequestError(400, "the JSON body is not valid JSON") from None
        if not isinstance(obj, dict) or "id" not in obj:
            raise RequestError(400, 'expected a JSON object {"id": "<collection image id>"}')
        ident = obj["id"]
        if not isinstance(ident, str | int) or isinstance(ident, bool):
            raise RequestError(400, "'id' must be a string")
        return await _by_id(h, str(ident)), str(ident), {k: v for k, v in obj.items() if k != "id"}
    raise RequestError(
        415, f"content type {ctype or 'none'!r}: send multipart/form-data (field 'image') or application/json"
    )


async def _by_id(h, ident: str) -> Image.Image:
    path = h.collection.path_of(ident)
    if path is None:
        raise RequestError(404, f"no collection image with id {ident[:80]!r}")
    return await h.run(_read_collection_image, path, h.settings.max_upload_bytes)


def _read_collection_image(path, max_bytes: int) -> Image.Image:
    # collection files go through the same sniffing and re-encoding as uploads (no size limit of their own)
    with open(path, "rb") as f:
        data = f.read()
    return decode_upload(data, max(max_bytes, len(data)))


def png_data_url(img: Image.Image) -> str:
    """A Pillow image as ``data:image/png;base64,...``."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=3)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def limit_side(img: Image.Image, max_side: int) -> Image.Image:
    """Shrink so the longer side is at most ``max_side`` (0 = no limit), keeping the aspect ratio."""
    if not max_side or max(img.size) <= max_side:
        return img
    scale = max_side / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)


def int_field(extra: dict, request: Request, name: str, default: int, lo: int, hi: int) -> int:
    """An optional integer parameter from the body fields, else the query string, checked in [lo, hi]."""
    raw = extra.get(name, request.query_params.get(name))
    if raw is None:
        return default
    try:
        value = int(raw)
        if isinstance(raw, bool) or (isinstance(raw, float) and raw != value):
            raise ValueError
    except (TypeError, ValueError):
        raise RequestError(400, f"'{name}' must be an integer, got {str(raw)[:40]!r}") from None
    if not lo <= value <= hi:
        raise RequestError(400, f"'{name}' must be in {lo}..{hi}, got {value}")
    return value
