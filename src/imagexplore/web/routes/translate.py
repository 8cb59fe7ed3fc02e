"""The translate panel (a `synth train` checkpoint on paired data given to `serve --checkpoint`):
GET /api/translate/info — what the model takes (label map, sketch, photo), its training size and, for label
maps, the colours to draw with; POST /api/translate — an image (upload, a drawing, or a collection id) → N
samples at its own size (`imagexplore.synthesis.evaluate.translate_array`)."""

from __future__ import annotations

import secrets
import threading

import numpy as np
from fastapi import APIRouter, Request
from PIL import Image

from imagexplore.web.routes.common import (
    IMAGE_BODY,
    Timer,
    hub,
    int_field,
    panel_on,
    png_data_url,
    request_image,
)

router = APIRouter()
DEFAULT_SAMPLES, MAX_SAMPLES = 3, 8
MAX_SEED = 2**31 - 1
MAX_SIDE = (
    512  # a larger image is shrunk to this longer side first (N samples of a U-Net at full size on a CPU)
)


class Translator:
    """A loaded synth checkpoint; one translation at a time (pix2pix's samples switch its shared dropout on)."""

    def __init__(self, checkpoint: str, device: str):
        from imagexplore.synthesis.evaluate import load_synth

        self.model, _, self.meta = load_synth(checkpoint, device)
        self.device = device
        self.lock = threading.Lock()

    def __call__(self, image: np.ndarray, samples: int, seed: int) -> list[np.ndarray]:
        import torch

        from imagexplore.synthesis.evaluate import translate_array

        gen = torch.Generator(device="cpu").manual_seed(seed)
        devices = [torch.device(self.device).index or 0] if self.device.startswith("cuda") else []
        with self.lock, torch.random.fork_rng(devices=devices):
            torch.manual_seed(
                seed
            )  # pix2pix's dropout draws from the global generator: seeded, then restored
            return translate_array(
                self.model, self.meta, image, samples=samples, generator=gen, device=self.device
            )


def palette(meta: dict, data: dict) -> list[dict] | None:
    """The colours of a label-map input, in class id order: for the shapes world, background and its shape
    classes in VOC colours (`synthesis.metrics.label_palette`, the world's ``label_rgb``). None for other inputs
    and for other label data, whose colours a checkpoint does not record (facades, cityscapes: upload a map)."""
    if meta.get("input_kind") != "label" or meta.get("dataset") != "shapes":
        return None
    from imagexplore.data.shapes.world import SHAPE_CLASSES
    from imagexplore.synthesis.metrics import label_palette

    options = data.get("options") if isinstance(data.get("options"), dict) else {}
    n = options.get("num_classes") or len(SHAPE_CLASSES)
    names = ["background", *SHAPE_CLASSES[: int(n)]]
    colours = label_palette(len(names)).tolist()
    return [
        {"id": i, "name": name, "color": "#{:02x}{:02x}{:02x}".format(*colours[i])}
        for i, name in enumerate(names)
    ]


def info(h) -> dict:
    meta = h.checkpoint_meta["translate"]
    return {
        "model": h.models["translate"].name,
        "kind": meta.get("kind"),
        "dataset": meta.get("dataset"),
        "input_kind": meta.get("input_kind"),
        "target_kind": meta.get("target_kind"),
        "image_size": meta.get("image_size") or 64,
        "palette": palette(meta, h.checkpoint_data.get("translate", {})),
        "samples": {"default": DEFAULT_SAMPLES, "max": MAX_SAMPLES},
    }


def _fit(img: Image.Image, max_side: int, label: bool) -> Image.Image:
    if not max_side or max(img.size) <= max_side:
        return img
    scale = max_side / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    # a label map stays a map of class colours: nearest, never a blend of two classes
    return img.resize(size, Image.Resampling.NEAREST if label else Image.Resampling.BICUBIC)


def _snap(image: np.ndarray, colours: list[dict]) -> np.ndarray:
    """Every pixel to its nearest palette colour (a JPEG'd or anti-aliased label map becomes a clean one)."""
    pal = np.array([[int(c["color"][i : i + 2], 16) for i in (1, 3, 5)] for c in colours], np.int32)
    d = ((image[:, :, None, :].astype(np.int32) - pal[None, None]) ** 2).sum(-1)
    return pal[d.argmin(-1)].astype(np.uint8)


def translate(h, img: Image.Image, samples: int, seed: int) -> dict:
    model = h.get("translate", lambda: Translator(h.checkpoints["translate"], h.settings.device))
    about = info(h)
    label = about["input_kind"] == "label"
    side = min(MAX_SIDE, h.settings.max_side) if h.settings.max_side else MAX_SIDE
    img = _fit(img, side, label)
    image = np.asarray(img, dtype=np.uint8)
    if label and about["palette"] is not None:
        image = _snap(image, about["palette"])
    outs = model(image, samples, seed)
    return {
        "samples": [png_data_url(Image.fromarray(y)) for y in outs],
        "width": img.width,
        "height": img.height,
        "input_kind": about["input_kind"],
        "target_kind": about["target_kind"],
        "kind": about["kind"],
        "seed": seed,
    }


@router.get("/api/translate/info", summary="what the translate panel's model takes and makes")
async def translate_info_route(request: Request) -> dict:
    """`{"model", "kind", "dataset", "input_kind", "target_kind", "image_size", "palette": [{"id", "name",
    "color": "#rrggbb"}] | null, "samples": {"default", "max"}}`; 503 when no paired synth checkpoint was given."""
    h = hub(request)
    panel_on(h, "translate")
    return info(h)


@router.post("/api/translate", openapi_extra=IMAGE_BODY, summary="a label map / sketch / photo → N samples")
async def translate_route(request: Request) -> dict:
    """`{"samples": [data URL] × N, "width", "height", "input_kind", "target_kind", "kind", "seed", "ms"}`;
    optional ``samples`` (1..8, default 3) and ``seed`` (0..2³¹−1, default random; the one used is returned).
    Samples differ by the style code (instantiation network) or test-time dropout (pix2pix); each has the size
    of the image the model saw (the upload's, its longer side at most 512 px)."""
    h = hub(request)
    t = Timer()
    panel_on(h, "translate")  # before reading the body: nothing to do with it
    img, _, extra = await request_image(request)
    samples = int_field(extra, request, "samples", DEFAULT_SAMPLES, 1, MAX_SAMPLES)
    if extra.get("seed", request.query_params.get("seed")) in (None, ""):
        seed = secrets.randbelow(MAX_SEED + 1)
    else:
        seed = int_field(extra, request, "seed", 0, 0, MAX_SEED)
    out = await h.run(translate, h, img, samples, seed)
    return out | {"ms": t.ms}
