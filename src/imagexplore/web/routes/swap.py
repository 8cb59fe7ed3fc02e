"""The swap panel (a `synth train` checkpoint on person data given to `serve --checkpoint`): GET /api/persons —
the server's person gallery (`imagexplore.web.persons`); GET /api/persons/{id}/image; POST /api/swap — person A
wearing person B's clothes (`imagexplore.synthesis.evaluate.swap_array`). Persons are named by id only."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import Response
from PIL import Image

from imagexplore.web.routes.common import Timer, hub, panel_on, png_data_url
from imagexplore.web.uploads import RequestError

router = APIRouter()


class Swapper:
    def __init__(self, checkpoint: str, device: str):
        from imagexplore.synthesis.evaluate import load_synth

        self.model, _, self.meta = load_synth(checkpoint, device)
        self.device = device

    def __call__(self, person, clothes):
        from imagexplore.synthesis.evaluate import swap_array

        return swap_array(self.model, self.meta, person, clothes, device=self.device)


def swap(h, a, b) -> dict:
    model = h.get("swap", lambda: Swapper(h.checkpoints["swap"], h.settings.device))
    out = model(a.person, b.person)
    return {
        "image": png_data_url(Image.fromarray(out)),
        "width": int(out.shape[1]),
        "height": int(out.shape[0]),
        "person": a.id,
        "clothes": b.id,
        "kind": model.meta["kind"],
    }


def _gallery(request: Request):
    h = hub(request)
    panel_on(h, "swap")
    return h, h.persons


@router.get("/api/persons", summary="the swap panel's persons")
async def persons_route(request: Request) -> dict:
    """`{"persons": [{"id", "name", "url": "/api/persons/<id>/image", "width", "height"}], "source", "kind",
    "order"}`; 503 when no person-data synth checkpoint was given."""
    h, gallery = _gallery(request)
    meta = h.checkpoint_meta["swap"]
    return {
        "persons": [p.info() for p in gallery.persons],
        "source": gallery.source,
        "kind": meta.get("kind"),
        "order": meta.get("order"),
    }


@router.get("/api/persons/{ident}/image", summary="a person's image by id", response_class=Response)
async def person_image_route(request: Request, ident: str):
    """The person's image as PNG; any string that is not a gallery id is 404."""
    _, gallery = _gallery(request)
    p = gallery.get(ident)
    if p is None:
        raise RequestError(404, "no person with that id")
    return Response(p.png, media_type="image/png")


@router.post(
    "/api/swap",
    summary="person A wearing person B's clothes",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "person": {"type": "string", "description": "id of A (pose and body)"},
                            "clothes": {"type": "string", "description": "id of B (whose clothes A wears)"},
                        },
                        "required": ["person", "clothes"],
                    }
                }
            },
        }
    },
)
async def swap_route(request: Request) -> dict:
    """`{"image": data URL (A's size), "width", "height", "person", "clothes", "kind", "ms"}`; body
    `{"person": id, "clothes": id}` of `GET /api/persons`; an unknown id is 404."""
    t = Timer()
    h, gallery = _gallery(request)
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise RequestError(415, 'send JSON: {"person": "<id>", "clothes": "<id>"}')
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise RequestError(400, "the body is not valid JSON") from None
    if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in ("person", "clothes")):
        raise RequestError(400, 'expected {"person": "<id>", "clothes": "<id>"} (ids of GET /api/persons)')
    picked = []
    for key in ("person", "clothes"):
        p = gallery.get(body[key])
        if p is None:
            raise RequestError(404, f"no person with id {body[key][:80]!r} ({key})")
        picked.append(p)
    a, b = picked
    if a.person.image.shape != b.person.image.shape:
        (ha, wa), (hb, wb) = a.person.image.shape[:2], b.person.image.shape[:2]
        raise RequestError(
            400, f"{a.name} is {wa}×{ha} and {b.name} {wb}×{hb}: pick two persons of the same size"
        )
    out = await h.run(swap, h, a, b)
    return out | {"ms": t.ms}
