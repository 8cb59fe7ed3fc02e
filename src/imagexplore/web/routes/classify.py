"""POST /api/classify: top-5 classes. Default: the bundled ImageNet EfficientNet-Lite0; a classification
checkpoint given to `serve --checkpoint` replaces it."""

from __future__ import annotations

from fastapi import APIRouter, Request

from imagexplore.web.routes.common import IMAGE_BODY, Timer, hub, request_image

router = APIRouter()
TOPK = 5


class ImageNetLite0:
    """timm ``tf_efficientnet_lite0`` with the bundled ImageNet weights (as retrieval's backbone loads them);
    preprocessing of the release: RGB, shorter side 256, centre crop 224, (x − 127) / 128."""

    def __init__(self, device: str = "cpu"):
        import timm
        import torchvision

        from imagexplore.retrieval.features import _LITE0_ARCH, _bundled_lite0_path, _load_weights

        self.model = timm.create_model(_LITE0_ARCH, pretrained=False)
        _load_weights(self.model, _bundled_lite0_path(), _LITE0_ARCH)
        self.model = self.model.to(device).eval()
        self.device = device
        self.classes = list(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])

    def __call__(self, img) -> list[dict]:
        import numpy as np
        import torch

        from imagexplore.data.images import resize_center_crop

        crop = resize_center_crop(img, 256)
        left = top = (256 - 224) // 2
        crop = crop.crop((left, top, left + 224, top + 224))
        x = (torch.from_numpy(np.array(crop, dtype=np.float32)).permute(2, 0, 1) - 127.0) / 128.0
        with torch.inference_mode():
            probs = torch.softmax(self.model(x[None].to(self.device)).float(), dim=1)[0]
        return _top(probs, self.classes)


class CheckpointClassifier:
    """A classification checkpoint, preprocessed as `imagexplore classify predict` does."""

    def __init__(self, checkpoint: str, device: str = "cpu"):
        from imagexplore.classification.evaluate import load_classifier

        self.model, cfg, meta = load_classifier(checkpoint, device)
        self.device = device
        self.classes = list(meta["classes"])
        self.size = meta.get("image_size") or cfg.data.image_size
        self.crop = meta.get("crop_size")
        self.mode = "L" if meta.get("in_chans", 3) == 1 else "RGB"

    def __call__(self, img) -> list[dict]:
        import torch

        from imagexplore.classification.preprocess import CenterCrop
        from imagexplore.data.images import convert_mode, pil_to_tensor, resize_center_crop

        img = convert_mode(img, self.mode)
        if self.size:
            img = resize_center_crop(img, self.size)
        x = pil_to_tensor(img)
        if self.crop:
            x = CenterCrop(self.crop)(x)
        with torch.inference_mode():
            probs = torch.softmax(self.model(x[None].to(self.device)).float(), dim=1)[0]
        return _top(probs, self.classes)


def _top(probs, classes: list[str]) -> list[dict]:
    vals, idxs = probs.topk(min(TOPK, len(classes)))
    return [
        {"label": classes[i], "index": i, "prob": round(float(v), 6)}
        for v, i in zip(vals.tolist(), idxs.tolist())
    ]


def load(h):
    ck = h.checkpoints.get("classify")
    device = h.settings.device
    return CheckpointClassifier(ck, device) if ck else ImageNetLite0(device)


def classify(h, img) -> list[dict]:
    return h.get("classify", lambda: load(h))(img)


@router.post("/api/classify", openapi_extra=IMAGE_BODY, summary="top-5 classes of an image")
async def classify_route(request: Request) -> dict:
    """`{"model": NAME, "top": [{"label", "index", "prob"} × 5], "ms"}`; ``ms`` includes a first model load."""
    h = hub(request)
    t = Timer()
    img, _, _ = await request_image(request)
    top = await h.run(classify, h, img)
    return {"model": h.models["classify"].name, "top": top, "ms": t.ms}
