"""`Matcher`: a trained matching checkpoint as a search tool — it embeds new images and captions with exactly the
feature encoders it was trained on, then with its two branches.

    m = Matcher.load("runs/openclipart_rrf")            # a run folder or a checkpoint file
    index = m.build_index("photos/", "photos.mindex")    # FAISS inner product over the image embeddings
    index.search_text("a red car", k=5)                  # [(path, score), ...]
    m.search_image("cat.png", captions, k=5)            # [(caption, score), ...] among a caption list
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imagexplore.errors import CheckpointError


class Matcher:
    def __init__(self, model, meta: dict[str, Any], cfg=None, checkpoint: Path | None = None, device="cpu"):
        self.model = model.eval().to(device)
        self.meta, self.cfg, self.checkpoint, self.device = meta, cfg, checkpoint, torch.device(device)
        self._image_enc = self._text_enc = None

    @classmethod
    def load(cls, checkpoint: str | Path, device: str = "cpu") -> Matcher:
        from imagexplore.engine.checkpoint import resolve_checkpoint_path, restore_model

        path = resolve_checkpoint_path(checkpoint)
        model, cfg, meta = restore_model(path, task="match")
        for key in ("image_encoder", "text_encoder", "image_dim", "text_dim"):
            if key not in meta:
                raise CheckpointError(
                    f"checkpoint {path} records no {key}; it is not a usable match checkpoint"
                )
        return cls(model, meta, cfg, Path(path), device)

    # ------------------------------------------------------------------------------------------- encoders
    @property
    def image_encoder(self):
        if self._image_enc is None:
            from imagexplore.matching.encoders import build_encoder

            self._image_enc = build_encoder(self.meta["image_encoder"])
        return self._image_enc

    @property
    def text_encoder(self):
        if self._text_enc is None:
            from imagexplore.matching.encoders import build_encoder

            self._text_enc = build_encoder(self.meta["text_encoder"])
        return self._text_enc

    @property
    def name(self) -> str:
        return self.checkpoint.parent.parent.name if self.checkpoint else "matcher"

    # ------------------------------------------------------------------------------------------- embeddings
    @torch.inference_mode()
    def embed_image_features(self, feats: np.ndarray, batch: int = 1024) -> np.ndarray:
        feats = np.asarray(feats, dtype=np.float32)
        self._check_width(feats, "image_dim", "image")
        out = [
            self.model.encode_image(torch.from_numpy(np.array(feats[i : i + batch])).to(self.device))
            .cpu()
            .numpy()
            for i in range(0, len(feats), batch)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.model_dim), np.float32)

    @torch.inference_mode()
    def embed_text_features(self, feats, batch: int = 1024) -> np.ndarray:
        """Joint-space embeddings of caption features — or, for a GRU model, of (word ids, lengths)."""
        if isinstance(feats, tuple):
            ids, lengths = (torch.from_numpy(np.array(a, dtype=np.int64)) for a in feats)
            out = [
                self.model.encode_text((ids[i : i + batch].to(self.device), lengths[i : i + batch]))
                .cpu()
                .numpy()
                for i in range(0, len(ids), batch)
            ]
            return np.concatenate(out) if out else np.zeros((0, self.model_dim), np.float32)
        feats = np.asarray(feats, dtype=np.float32)
        self._check_width(feats, "text_dim", "text")
        out = [
            self.model.encode_text(torch.from_numpy(np.array(feats[i : i + batch])).to(self.device))
            .cpu()
            .numpy()
            for i in range(0, len(feats), batch)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.model_dim), np.float32)

    @property
    def model_dim(self) -> int:
        return int(self.cfg.model.kwargs.get("dim", 512)) if self.cfg is not None else 512

    def _check_width(self, feats: np.ndarray, key: str, side: str) -> None:
        want = int(self.meta[key])
        if feats.ndim != 2 or feats.shape[1] != want:
            got = feats.shape[1] if feats.ndim == 2 else f"shape {feats.shape}"
            raise CheckpointError(
                f"{side} features are {got}-d; this checkpoint ({self.checkpoint}) takes {want}-d {side} features"
            )

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised joint-space embeddings of captions (N × dim)."""
        texts = [str(t) for t in texts]
        return self.embed_text_features(self.text_encoder.encode_all(texts, progress=False))

    def encode_images(self, images: Sequence, progress: bool = False) -> np.ndarray:
        """L2-normalised joint-space embeddings of images (paths or PIL images)."""
        return self.embed_image_features(self.image_encoder.encode_all(list(images), progress=progress))

    # ------------------------------------------------------------------------------------------- search
    def build_index(self, images, out: str | Path | None = None, progress: bool = True):
        """A `MatchIndex` of a folder (recursive) or a list of image files; saved to `out` when given."""
        from imagexplore.matching.index import MatchIndex

        return MatchIndex.build(self, images, out=out, progress=progress)

    def search_image(self, image, captions: Sequence[str], k: int = 5) -> list[tuple[str, float]]:
        """The `k` best captions of `captions` for one image (a path or PIL image), best first."""
        q = self.encode_images([image])[0]
        c = self.encode_text(captions)
        scores = c @ q
        order = np.argsort(-scores, kind="stable")[:k]
        return [(captions[i], float(scores[i])) for i in order]
