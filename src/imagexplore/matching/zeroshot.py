"""The zero-shot floor of chapter 5's evidence, and a text search that needs no training.

An image is embedded as its ImageNet class distribution (the bundled EfficientNet-Lite0's softmax, from the
same 1280-d pooled features the matching nets read, through Lite0's own classifier) mapped into the MiniLM
sentence space: e = Σ_c p_c · MiniLM("a photo of a <class name>"), L2-normalised. A caption is its MiniLM
embedding; cosine similarity ranks both ways. Every trained model should be far above this floor.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from imagexplore.errors import ConfigError


class ZeroShot:
    """`encode_images(paths_or_features)` / `encode_text(texts)` into MiniLM space, with no training."""

    def __init__(self):
        import timm
        import torchvision

        from imagexplore.matching.encoders import image_encoder, text_encoder
        from imagexplore.retrieval.features import _LITE0_ARCH, _bundled_lite0_path, _load_weights

        model = timm.create_model(_LITE0_ARCH, pretrained=False)
        _load_weights(model, _bundled_lite0_path(), _LITE0_ARCH)
        self.head = model.classifier.eval()
        self.classes = list(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
        self.image_encoder, self.text_encoder = image_encoder("lite0"), text_encoder("minilm")
        self.names = torch.from_numpy(
            self.text_encoder.encode_all([f"a photo of a {c}" for c in self.classes])
        )

    @torch.inference_mode()
    def from_features(self, feats: np.ndarray, batch: int = 2048) -> np.ndarray:
        """Embeddings of raw (unnormalised) Lite0 pooled features."""
        feats = np.asarray(feats, dtype=np.float32)
        out = []
        for i in range(0, len(feats), batch):
            probs = self.head(torch.from_numpy(np.array(feats[i : i + batch]))).softmax(1)
            out.append(torch.nn.functional.normalize(probs @ self.names, dim=1).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.names.shape[1]), np.float32)

    def encode_images(self, images: Sequence) -> np.ndarray:
        return self.from_features(self.image_encoder.encode_all(list(images)))

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        return self.text_encoder.encode_all([str(t) for t in texts])


def zero_shot_recalls(cache, zero_shot: ZeroShot | None = None) -> dict[str, float]:
    """R@K of the floor on a FeatureCache extracted with lite0 (raw features) + minilm."""
    from imagexplore.matching.metrics import embedding_recalls

    if cache.image_spec.get("name") != "lite0" or cache.image_spec.get("l2"):
        raise ConfigError("the zero-shot floor needs a cache of raw (unnormalised) lite0 image features")
    if cache.text_spec.get("name") != "minilm":
        raise ConfigError("the zero-shot floor needs a cache of minilm caption features")
    zs = zero_shot or ZeroShot()
    img = zs.from_features(cache.image_feats)
    return embedding_recalls(
        img, np.asarray(cache.text_feats, dtype=np.float32), np.asarray(cache.caption_image)
    )
