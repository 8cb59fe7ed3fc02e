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
    """`kind` is the model's (rrf, cyclematch, jmc). A CycleMatch matcher fuses its three similarity spaces as
    `fusion` says (default adaptive; see `imagexplore.matching.cyclematch`): its embeddings hold every space
    unweighted, and the weights go on the query side (`fuse_queries`), so one index serves every fusion."""

    def __init__(
        self,
        model,
        meta: dict[str, Any],
        cfg=None,
        checkpoint: Path | None = None,
        device="cpu",
        fusion: str | None = None,
        temperature: float = 1.0,
    ):
        self.model = model.eval().to(device)
        self.meta, self.cfg, self.checkpoint, self.device = meta, cfg, checkpoint, torch.device(device)
        self._image_enc = self._text_enc = None
        self.kind = meta.get("kind", "rrf")
        self.fusion, self.temperature, self.weights = None, float(temperature), None
        if self.kind == "cyclematch":
            from imagexplore.matching.cyclematch import FUSIONS, fusion_weights

            self.fusion = fusion or "adaptive"
            if self.fusion not in FUSIONS:
                raise CheckpointError(f"--fusion {self.fusion!r}: choose from {', '.join(FUSIONS)}")
            if self.temperature <= 0:
                raise CheckpointError(f"--temperature must be > 0, got {temperature!r}")
            self.model.set_fusion((1.0, 1.0, 1.0))  # every space, unweighted
            self.dims = list(meta["space_dims"])
            if self.fusion == "fitted":
                self.weights = self._fit_weights()
            elif self.fusion != "adaptive":
                self.weights = fusion_weights(self.fusion)
        elif fusion is not None:
            raise CheckpointError(
                f"--fusion {fusion}: checkpoint {checkpoint} is a {self.kind} model; late fusion is CycleMatch's "
                "(a cyclematch_net checkpoint)"
            )

    @classmethod
    def load(
        cls, checkpoint: str | Path, device: str = "cpu", fusion: str | None = None, temperature: float = 1.0
    ) -> Matcher:
        from imagexplore.engine.checkpoint import resolve_checkpoint_path, restore_model

        path = resolve_checkpoint_path(checkpoint)
        model, cfg, meta = restore_model(path, task="match")
        for key in ("image_encoder", "text_encoder", "image_dim", "text_dim"):
            if key not in meta:
                raise CheckpointError(
                    f"checkpoint {path} records no {key}; it is not a usable match checkpoint"
                )
        return cls(model, meta, cfg, Path(path), device, fusion, temperature)

    @property
    def adaptive(self) -> bool:
        return self.fusion == "adaptive"

    def _fit_weights(self) -> tuple[float, float, float]:
        """CycleMatch `fitted` fusion: the best fixed weights on the validation split the model was trained with
        (its features cached by content, so this costs one embedding pass and a small grid)."""
        from imagexplore.matching.cyclematch import fit_fusion_weights
        from imagexplore.matching.task import text_inputs
        from imagexplore.matching.train import cache_root, split_features

        cfg = self.cfg
        split = cfg.data.val_split if cfg is not None else "val"
        root = cfg.data.root if cfg is not None else None
        feats = split_features(
            self.meta["dataset"],
            root,
            split,
            self.meta.get("reader_options") or {},
            self.image_encoder,
            self.text_encoder,
            cache_root(),
            progress=False,
        )
        img = torch.from_numpy(self.embed_image_features(feats.image_feats))
        txt = torch.from_numpy(self.embed_text_features(text_inputs(feats)))
        weights, _ = fit_fusion_weights(img, txt, np.asarray(feats.caption_image), self.dims)
        return weights

    def fuse_queries(self, queries: np.ndarray, candidates: np.ndarray, candidate_group=None) -> np.ndarray:
        """Queries weighted for ranking `candidates` (CycleMatch: fixed or per-query adaptive weights on the
        similarity spaces; other models: unchanged). `candidate_group`: the image of each candidate caption."""
        if self.kind != "cyclematch":
            return queries
        from imagexplore.matching.cyclematch import adaptive_weights, weigh

        q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
        if self.adaptive:
            c = torch.from_numpy(np.ascontiguousarray(candidates, dtype=np.float32))
            w = adaptive_weights(q, c, self.dims, self.temperature, candidate_group)
        else:
            w = torch.tensor(self.weights, dtype=torch.float32).expand(len(q), 3)
        return weigh(q, w, self.dims).numpy()

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
        if self.kind == "cyclematch":
            return sum(self.dims)
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
        c = self.encode_text(captions)
        q = self.fuse_queries(self.encode_images([image]), c)[0]
        scores = c @ q
        order = np.argsort(-scores, kind="stable")[:k]
        return [(captions[i], float(scores[i])) for i in order]

    # ------------------------------------------------------------------------------------------- JMC
    @torch.inference_mode()
    def predictions(self, img_emb: np.ndarray, txt_emb: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """A JMC model's class predictions (indices into meta['classes']) from joint-space embeddings: `image`
        (and, with `txt_emb` row-aligned to `img_emb`, `fused` and `text`)."""
        if self.kind != "jmc":
            raise CheckpointError(
                f"checkpoint {self.checkpoint} is a {self.kind} model; class predictions need a jmc_net checkpoint"
            )
        e_v = torch.from_numpy(np.ascontiguousarray(img_emb, dtype=np.float32)).to(self.device)
        e_t = (
            None
            if txt_emb is None
            else torch.from_numpy(np.ascontiguousarray(txt_emb, dtype=np.float32)).to(self.device)
        )
        return {k: v.argmax(1).cpu().numpy() for k, v in self.model.logits(e_v, e_t).items()}

    @torch.inference_mode()
    def classify_image(self, image, k: int = 3) -> list[tuple[str, float]]:
        """A JMC model's top-k categories of one image (path or PIL image): [(class, probability), ...]."""
        if self.kind != "jmc":
            raise CheckpointError(
                f"checkpoint {self.checkpoint} is a {self.kind} model; categories need a jmc_net checkpoint"
            )
        e_v = torch.from_numpy(self.encode_images([image])).to(self.device)
        logits = self.model.logits(e_v, None)
        if "image" not in logits:
            raise CheckpointError(
                f"checkpoint {self.checkpoint} classifies {self.model.classify} input, not images"
            )
        p = torch.softmax(logits["image"][0], 0)
        top = torch.topk(p, min(k, len(p)))
        classes = self.meta["classes"]
        return [(classes[i], float(v)) for v, i in zip(top.values.tolist(), top.indices.tolist())]
