"""POST /api/edges: the fused edge probability (8-bit grey PNG, white = edge) and its NMS-thinned map, both at
the size of the image the model saw (longer side at most ``Settings.max_side``). Default model: the pretrained
HED (hed-bsds500); an edges checkpoint given to `serve --checkpoint` replaces it."""

from __future__ import annotations

from fastapi import APIRouter, Request

from imagexplore.web.routes.common import IMAGE_BODY, Timer, hub, limit_side, png_data_url, request_image

router = APIRouter()


def load(h):
    from imagexplore.edges.evaluate import load_edge_model

    ck = h.checkpoints.get("edges")
    device = h.settings.device
    if ck:
        return load_edge_model(checkpoint=ck, device=device)[0]
    return load_edge_model(pretrained="hed-bsds500", device=device)[0]


def edges(h, img) -> dict:
    from imagexplore.data.images import pil_to_tensor
    from imagexplore.edges.evaluate import edge_probability, to_png
    from imagexplore.edges.nms import nms
    from imagexplore.edges.tiling import DEFAULT_TILE

    model = h.get("edges", lambda: load(h))
    img = limit_side(img, h.settings.max_side)
    prob = edge_probability(model, pil_to_tensor(img), device=h.settings.device, tile=DEFAULT_TILE)
    return {
        "edges_png": png_data_url(to_png(prob)),
        "thin_png": png_data_url(to_png(nms(prob))),
        "width": img.width,
        "height": img.height,
    }


@router.post("/api/edges", openapi_extra=IMAGE_BODY, summary="edge map, raw and thinned")
async def edges_route(request: Request) -> dict:
    """`{"edges_png": data URL, "thin_png": data URL, "width", "height", "ms"}`."""
    h = hub(request)
    t = Timer()
    img, _, _ = await request_image(request)
    out = await h.run(edges, h, img)
    return out | {"ms": t.ms}
