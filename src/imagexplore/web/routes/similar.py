"""POST /api/similar: the DeepIndex' top-k images of the collection (``k``: 1..50, default 8; a form field, a
JSON key or a query parameter). A query by id searches with that collection image's pixels."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request

from imagexplore.web.routes.common import IMAGE_BODY, Timer, hub, int_field, request_image

router = APIRouter()
DEFAULT_K, MAX_K = 8, 50


def similar(h, img, k: int) -> list[dict]:
    index = h.index()
    results = []
    for path, score in index.search(img, k=k):
        ident = h.collection.id_of(path)
        if ident is None:  # cannot happen for the index of the collection; never expose a path
            continue
        results.append(
            {
                "id": ident,
                "name": Path(path).name,
                "score": round(float(score), 6),
                "url": f"/api/image/{ident}",
            }
        )
    return results


@router.post("/api/similar", openapi_extra=IMAGE_BODY, summary="similar images of the collection")
async def similar_route(request: Request) -> dict:
    """`{"results": [{"id", "name", "score", "url": "/api/image/<id>"}], "ms"}`, best first."""
    h = hub(request)
    t = Timer()
    img, _, extra = await request_image(request)
    k = int_field(extra, request, "k", DEFAULT_K, 1, MAX_K)
    results = await h.run(similar, h, img, k)
    return {"results": results, "ms": t.ms}
