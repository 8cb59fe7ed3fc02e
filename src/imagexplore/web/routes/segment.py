"""POST /api/segment: an FCFN (or any segmentation checkpoint's) class overlay with a legend; on only when
`serve --checkpoint` is given a segmentation checkpoint."""

from __future__ import annotations

from fastapi import APIRouter, Request

from imagexplore.web.routes.common import IMAGE_BODY, Timer, hub, limit_side, png_data_url, request_image

router = APIRouter()
ALPHA = 0.55  # the class colour's weight in the overlay


class Segmenter:
    def __init__(self, checkpoint: str, device: str = "cpu"):
        from imagexplore.segmentation.evaluate import load_segmenter

        self.model, _, meta = load_segmenter(checkpoint, device)
        self.device = device
        self.names = list(meta["classes"])
        self.mean, self.std = meta.get("mean"), meta.get("std")

    def __call__(self, img):
        import numpy as np
        import torch
        import torch.nn.functional as F
        from PIL import Image

        from imagexplore.data.images import pil_to_tensor
        from imagexplore.segmentation.voc import voc_palette

        x = pil_to_tensor(img)
        if self.mean is not None:
            mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
            std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
            x = (x - mean) / std
        with torch.inference_mode():
            logits = self.model(x[None].to(self.device)).float()
            if tuple(logits.shape[-2:]) != (img.height, img.width):
                logits = F.interpolate(
                    logits, size=(img.height, img.width), mode="bilinear", align_corners=False
                )
            pred = logits.argmax(1)[0].to("cpu").numpy().astype(np.int64)
        pal = np.array(voc_palette(), dtype=np.float32).reshape(-1, 3)
        colours = pal[np.clip(pred, 0, 255)]
        blend = (1 - ALPHA) * np.asarray(img, np.float32) + ALPHA * colours
        overlay = Image.fromarray(np.clip(np.rint(blend), 0, 255).astype(np.uint8), "RGB")
        counts = np.bincount(pred.ravel(), minlength=len(self.names))
        legend = [
            {
                "name": self.names[i] if i < len(self.names) else str(i),
                "color": "#{:02x}{:02x}{:02x}".format(*(int(c) for c in pal[i])),
                "fraction": round(float(c) / pred.size, 4),
            }
            for i, c in enumerate(counts.tolist())
            if c
        ]
        legend.sort(key=lambda e: -e["fraction"])
        return overlay, legend


def segment(h, img) -> dict:
    model = h.get("segment", lambda: Segmenter(h.checkpoints["segment"], h.settings.device))
    img = limit_side(img, h.settings.max_side)
    overlay, legend = model(img)
    return {"overlay_png": png_data_url(overlay), "legend": legend, "width": img.width, "height": img.height}


@router.post("/api/segment", openapi_extra=IMAGE_BODY, summary="segmentation overlay and legend")
async def segment_route(request: Request) -> dict:
    """`{"overlay_png": data URL, "legend": [{"name", "color": "#rrggbb", "fraction"}], "ms"}`; 503 when no
    segmentation checkpoint was given (the health route's ``panels.segment`` is false)."""
    h = hub(request)
    t = Timer()
    img, _, _ = await request_image(request)
    out = await h.run(segment, h, img)
    return out | {"ms": t.ms}
