"""`imagexplore match eval`: R@K both ways of one checkpoint or an ensemble, on any caption set.

Each checkpoint embeds the caption set with the feature encoders it was trained on (features extracted once and
cached by content). An ensemble (several `--checkpoint`) averages the models' cosine similarity matrices — done
exactly, and in bounded memory, as the similarity of the models' concatenated embeddings (Σ_m a_m·b_m = [a_1 …
a_M]·[b_1 … b_M]; the 1/M factor does not change a ranking).

Protocols: `all` (the whole split), `1k` (COCO 1K: mean over 5 folds of 1,000 images, captions following their
images), `5k` (the first 5,000 images).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from imagexplore.errors import ConfigError

PROTOCOLS = ("all", "1k", "5k")
METRIC_KEYS = (
    "i2t_r1",
    "i2t_r5",
    "i2t_r10",
    "i2t_medr",
    "i2t_meanr",
    "t2i_r1",
    "t2i_r5",
    "t2i_r10",
    "t2i_medr",
    "t2i_meanr",
    "rsum",
)


def evaluate(
    checkpoints,
    data: str | None = None,
    root: str | None = None,
    split: str = "test",
    protocol: str = "all",
    chunk: int = 2048,
    progress: bool = True,
    reader_options: dict[str, Any] | None = None,
    matchers=None,
    fusion: str | None = None,
    temperature: float = 1.0,
) -> dict[str, Any]:
    """Metrics of `checkpoints` (or ready `matchers`) on a split. `fusion` (CycleMatch checkpoints): latent | dual |
    reconstructed | average | adaptive (the default) | fitted. A JMC checkpoint alone adds acc_image / acc_text /
    acc_fused (%, on the split's labelled images, classes as trained)."""
    from imagexplore.matching.matcher import Matcher
    from imagexplore.matching.metrics import coco_1k_folds, embedding_recalls
    from imagexplore.matching.task import text_inputs
    from imagexplore.matching.train import cache_root, split_features

    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol {protocol!r}: choose from {', '.join(PROTOCOLS)}")
    matchers = matchers or [Matcher.load(c, fusion=fusion, temperature=temperature) for c in checkpoints]
    first = matchers[0]
    adaptive = [m for m in matchers if m.kind == "cyclematch" and m.adaptive]
    if adaptive and len(matchers) > 1:
        raise ConfigError(
            f"adaptive fusion weighs each query by its own model's spaces and cannot join an ensemble "
            f"({adaptive[0].checkpoint}): give that checkpoint --fusion average (or fitted) for an ensemble"
        )
    name = data or first.meta["dataset"]
    if reader_options is None:
        same = data is None or data == first.meta["dataset"]
        reader_options = dict(first.meta.get("reader_options") or {}) if same else {}
    if root is None and (data is None or data == first.meta["dataset"]) and first.cfg is not None:
        root = first.cfg.data.root
    img_parts, txt_parts = [], []
    caption_image = None
    for m in matchers:
        feats = split_features(
            name, root, split, reader_options, m.image_encoder, m.text_encoder, cache_root(), progress
        )
        if caption_image is None:
            caption_image = np.asarray(feats.caption_image, dtype=np.int64)
            num_images, labels = len(feats.images), feats.labels
        img_m = m.embed_image_features(feats.image_feats)
        if m.kind == "cyclematch" and not m.adaptive:  # fixed weights: on the image side, one dot product
            img_m = m.fuse_queries(img_m, None)
        img_parts.append(img_m)
        txt_parts.append(m.embed_text_features(text_inputs(feats)))
    img = np.concatenate(img_parts, axis=1)
    txt = np.concatenate(txt_parts, axis=1)
    recalls = None
    if adaptive:
        from imagexplore.matching.cyclematch import adaptive_recalls

        m = adaptive[0]

        def recalls(i, t, ci):
            return adaptive_recalls(torch.as_tensor(i), torch.as_tensor(t), ci, m.dims, m.temperature, chunk)

    if protocol == "1k":
        if num_images < 5000:
            raise ConfigError(
                f"--protocol 1k needs 5,000 test images (COCO 1K folds); this split has {num_images}"
            )
        metrics = coco_1k_folds(img[:5000], *_captions_of(txt, caption_image, 5000), recalls=recalls)
    elif protocol == "5k":
        if num_images < 5000:
            raise ConfigError(f"--protocol 5k needs 5,000 test images; this split has {num_images}")
        args = (img[:5000], *_captions_of(txt, caption_image, 5000))
        metrics = recalls(*args) if recalls else embedding_recalls(*args, chunk=chunk)
    else:
        metrics = (
            recalls(img, txt, caption_image)
            if recalls
            else embedding_recalls(img, txt, caption_image, chunk=chunk)
        )
    out = {k: float(metrics[k]) for k in METRIC_KEYS}
    if len(matchers) == 1 and first.kind == "jmc":
        out.update(_accuracies(first, img, txt, caption_image, labels))
    if first.kind == "cyclematch":
        out["fusion"] = first.fusion
        if first.weights is not None:
            out["fusion_weights"] = list(first.weights)
    out.update(
        dataset=name,
        split=split,
        protocol=protocol,
        images=int(num_images if protocol == "all" else 5000),
        captions=int(len(caption_image) if protocol == "all" else int((caption_image < 5000).sum())),
        checkpoints=[str(m.checkpoint) for m in matchers],
    )
    target = first.cfg.published_target if first.cfg is not None else ""
    if target and name == first.meta["dataset"]:
        out["published_target"] = target
    return out


def _accuracies(
    matcher, img: np.ndarray, txt: np.ndarray, caption_image: np.ndarray, labels
) -> dict[str, float]:
    """acc_image (per image), acc_text and acc_fused (per caption, with its image) of a JMC checkpoint."""
    from imagexplore.matching.task import accuracies

    index = {c: k for k, c in enumerate(matcher.meta["classes"])}
    if not labels:
        return {}
    y = torch.tensor([index.get(v, -1) for v in labels])[torch.as_tensor(caption_image)]
    preds = matcher.predictions(img[caption_image], txt)
    results = {f"pred_{k}": torch.as_tensor(v) for k, v in preds.items()} | {"label": y}
    return accuracies(results, caption_image)


def _captions_of(txt: np.ndarray, caption_image: np.ndarray, n_images: int):
    keep = caption_image < n_images
    return txt[keep], caption_image[keep]
