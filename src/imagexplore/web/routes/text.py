"""The text panel (a match checkpoint given to `serve --checkpoint`): POST /api/search_text — a sentence → the
collection's best images; POST /api/captions — an image → the best captions of the caption set the checkpoint
was trained on (its test split)."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request

from imagexplore.web.routes.common import IMAGE_BODY, Timer, hub, int_field, request_image
from imagexplore.web.uploads import RequestError

router = APIRouter()
DEFAULT_K, MAX_K, MAX_TEXT = 8, 50, 500


def search_text(h, text: str, k: int) -> list[dict]:
    _, index, _ = h.text_index()
    results = []
    for path, score in index.search_text(text, k):
        ident = h.collection.id_of(path)
        if ident is None:
            continue
        results.append(
            {"id": ident, "name": path.name, "score": round(score, 6), "url": f"/api/image/{ident}"}
        )
    return results


def captions(h, img, k: int) -> dict:
    """The best captions; for a JMC checkpoint also the image's top categories and the category of the image with
    its best caption (the fused classifier)."""
    matcher, _, pool = h.text_index()
    texts, emb = pool.get()
    img_emb = matcher.encode_images([img])
    scores = emb @ matcher.fuse_queries(img_emb, emb)[0]
    order = np.argsort(-scores, kind="stable")[:k]
    out: dict = {"captions": [{"text": texts[i], "score": round(float(scores[i]), 6)} for i in order]}
    if matcher.kind == "jmc":
        out["categories"] = [{"name": c, "p": round(p, 6)} for c, p in matcher.classify_image(img, 3)]
        fused = matcher.predictions(img_emb, emb[order[:1]]).get("fused")
        if fused is not None:
            out["category_with_caption"] = matcher.meta["classes"][int(fused[0])]
    return out


@router.post(
    "/api/search_text",
    summary="a sentence → the collection's best images",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {"text": {"type": "string"}, "k": {"type": "integer"}},
                        "required": ["text"],
                    }
                }
            },
        }
    },
)
async def search_text_route(request: Request) -> dict:
    """`{"results": [{"id", "name", "score", "url"}], "ms"}`, best first; body `{"text": "...", "k": 8}`."""
    h = hub(request)
    t = Timer()
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise RequestError(415, 'send JSON: {"text": "a sentence", "k": 8}')
    try:
        body = await request.json()
    except ValueError:
        raise RequestError(400, "the body is not valid JSON") from None
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise RequestError(400, 'give a non-empty "text"')
    if len(text) > MAX_TEXT:
        raise RequestError(400, f"text is {len(text)} characters; at most {MAX_TEXT}")
    k = int_field(body, request, "k", DEFAULT_K, 1, MAX_K)
    return {"results": await h.run(search_text, h, text.strip(), k), "ms": t.ms}


@router.post("/api/captions", openapi_extra=IMAGE_BODY, summary="an image → the best captions")
async def captions_route(request: Request) -> dict:
    """`{"captions": [{"text", "score"}], "ms"}`, best first, among the checkpoint's test-split captions; a JMC
    checkpoint adds `categories` [{"name", "p"}] (the image alone) and `category_with_caption`."""
    h = hub(request)
    t = Timer()
    img, _, extra = await request_image(request)
    k = int_field(extra, request, "k", 5, 1, MAX_K)
    return {**await h.run(captions, h, img, k), "ms": t.ms}
