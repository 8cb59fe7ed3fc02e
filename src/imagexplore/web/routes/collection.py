"""GET /api/collection (paged listing) and GET /api/image/{id} (the file's bytes, by opaque id only)."""

from __future__ import annotations

import math

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse

from imagexplore.web.routes.common import hub
from imagexplore.web.uploads import RequestError

router = APIRouter()
MEDIA = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


@router.get("/api/collection", summary="a page of the collection")
async def collection_route(
    request: Request,
    page: int = Query(1, ge=1, description="page number, from 1"),
    per_page: int = Query(24, ge=1, le=200, description="images per page, 1..200"),
) -> dict:
    """`{"page", "pages", "total", "items": [{"id", "name", "url"}]}`; a page past the end has no items."""
    c = hub(request).collection
    total = len(c)
    start = (page - 1) * per_page
    items = [
        {"id": c.id_of(p), "name": p.name, "url": f"/api/image/{c.id_of(p)}"}
        for p in c.paths[start : start + per_page]
    ]
    return {"page": page, "pages": max(1, math.ceil(total / per_page)), "total": total, "items": items}


@router.get("/api/image/{ident}", summary="a collection image by id", response_class=FileResponse)
async def image_route(request: Request, ident: str):
    """The image file (PNG or JPEG as stored; other formats re-encoded as PNG). Only ids of the collection
    are served; any other string, a path included, is 404."""
    h = hub(request)
    path = h.collection.path_of(ident)
    if path is None:
        raise RequestError(404, "no collection image with that id")
    media = MEDIA.get(path.suffix.lower())
    if media is not None:
        return FileResponse(path, media_type=media)
    from fastapi.responses import Response

    from imagexplore.web.routes.common import _read_collection_image

    img = await h.run(_read_collection_image, path, h.settings.max_upload_bytes)
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return Response(buf.getvalue(), media_type="image/png")
