"""A cross-modal index on disk: the joint-space embeddings of a folder of images, searched by text.

    INDEX/format.json     format name, version, sha256 of every other file (written last, atomically)
    INDEX/meta.json       the checkpoint it was built with (path + sha256 + feature encoders), embedding dim
    INDEX/images.json     the images' paths, relative to the index folder when under its parent
    INDEX/embeddings.npy  N × dim float32, L2-normalised

Search is FAISS inner product (= cosine) over the embeddings. The index remembers its checkpoint: a text query
embeds with exactly that model, and a Matcher of another checkpoint is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from imagexplore.errors import DataError
from imagexplore.retrieval.index.storage import (
    _json_bytes,
    _npy_bytes,
    _parse_json,
    _read_bytes,
    _write_atomically,
)

FORMAT_NAME = "imagexplore-matchindex"
FORMAT_VERSION = 1


def file_sha256(path: Path) -> str:
    """The full sha256 of a checkpoint file (the encoders' helper, untruncated)."""
    from imagexplore.matching.encoders import file_sha256 as sha

    return sha(path, prefix=None)


class MatchIndex:
    def __init__(self, embeddings: np.ndarray, paths: list[Path], meta: dict, matcher=None):
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        self.paths, self.meta, self._matcher = list(paths), meta, matcher
        self._faiss = None

    def __len__(self) -> int:
        return len(self.paths)

    # ---------------------------------------------------------------------------------------- building
    @classmethod
    def build(cls, matcher, images, out: str | Path | None = None, progress: bool = True) -> MatchIndex:
        paths = _image_list(images)
        emb, kept = _embed(matcher, paths, progress)
        meta = {
            "checkpoint": str(matcher.checkpoint.resolve()) if matcher.checkpoint else None,
            "checkpoint_sha256": file_sha256(matcher.checkpoint) if matcher.checkpoint else None,
            "image_encoder": matcher.meta["image_encoder"],
            "text_encoder": matcher.meta["text_encoder"],
            "dim": int(emb.shape[1]),
            "skipped": [str(p) for p in paths if p not in set(kept)],
        }
        index = cls(emb, kept, meta, matcher)
        if out is not None:
            index.save(out)
        return index

    def add(self, images, progress: bool = True) -> int:
        """Embed more images with the index's own model and append them; returns how many were added."""
        known = {p.resolve() for p in self.paths}
        paths = [p for p in _image_list(images) if p.resolve() not in known]
        if not paths:
            return 0
        emb, kept = _embed(self.matcher, paths, progress)
        self.embeddings = np.concatenate([self.embeddings, emb])
        self.paths += kept
        self._faiss = None
        return len(kept)

    # ---------------------------------------------------------------------------------------- disk
    def save(self, out: str | Path) -> Path:
        out = Path(out)
        base = out.resolve().parent
        names = [
            os.path.relpath(p.resolve(), out.resolve())
            if p.resolve().is_relative_to(base)
            else str(p.resolve())
            for p in self.paths
        ]
        blobs = {
            "meta.json": _json_bytes(self.meta),
            "images.json": _json_bytes(names),
            "embeddings.npy": _npy_bytes(self.embeddings),
        }
        digests = {n: hashlib.sha256(b).hexdigest() for n, b in blobs.items()}
        blobs["format.json"] = _json_bytes(
            {"format": FORMAT_NAME, "version": FORMAT_VERSION, "files": digests}
        )
        _write_atomically(out, blobs)
        return out

    @classmethod
    def load(cls, directory: str | Path, matcher=None) -> MatchIndex:
        import io

        root = Path(directory)
        if not root.is_dir():
            raise DataError(f"match index {root} not found: build one with imagexplore match index")
        fmt = _parse_json(
            _read_bytes(root / "format.json", "the match index's format.json"), root / "format.json"
        )
        if not isinstance(fmt, dict) or fmt.get("format") != FORMAT_NAME:
            raise DataError(f"{root} is not a match index (format.json does not say {FORMAT_NAME!r})")
        if fmt.get("version") != FORMAT_VERSION:
            raise DataError(f"{root} holds match index version {fmt.get('version')!r}; this release reads 1")
        blobs = {}
        for name, digest in (fmt.get("files") or {}).items():
            blob = _read_bytes(root / Path(name).name, "a match index file listed in format.json")
            if hashlib.sha256(blob).hexdigest() != digest:
                raise DataError(
                    f"{root / name} is damaged (sha256 differs from format.json): rebuild the index"
                )
            blobs[name] = blob
        if set(blobs) != {"meta.json", "images.json", "embeddings.npy"}:
            raise DataError(f"{root}/format.json does not list a match index's files: rebuild the index")
        meta = json.loads(blobs["meta.json"])
        names = json.loads(blobs["images.json"])
        emb = np.load(io.BytesIO(blobs["embeddings.npy"]), allow_pickle=False)
        if emb.shape[0] != len(names):
            raise DataError(f"{root}: {emb.shape[0]} embeddings for {len(names)} images: rebuild the index")
        paths = [(root / n).resolve() if not os.path.isabs(n) else Path(n) for n in names]
        index = cls(emb, paths, meta)
        if matcher is not None:
            index.matcher = matcher
        return index

    # ---------------------------------------------------------------------------------------- model
    @property
    def matcher(self):
        if self._matcher is None:
            from imagexplore.matching.matcher import Matcher

            ck = self.meta.get("checkpoint")
            if not ck or not Path(ck).is_file():
                raise DataError(
                    f"the index's checkpoint {ck} is gone: give the checkpoint it was built with (--checkpoint)"
                )
            self.matcher = Matcher.load(ck)
        return self._matcher

    @matcher.setter
    def matcher(self, matcher) -> None:
        want = self.meta.get("checkpoint_sha256")
        got = file_sha256(matcher.checkpoint) if matcher.checkpoint else None
        if want and got != want:
            raise DataError(
                f"this index was built by another model ({self.meta.get('checkpoint')}); checkpoint "
                f"{matcher.checkpoint} would embed queries into a different space: rebuild the index with it"
            )
        self._matcher = matcher

    # ---------------------------------------------------------------------------------------- search
    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        if self._faiss is None:
            self._faiss = faiss.IndexFlatIP(self.embeddings.shape[1])
            self._faiss.add(self.embeddings)
        k = max(1, min(int(k), len(self)))
        return self._faiss.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    def search_text(self, text: str | Sequence[str], k: int = 5):
        """The `k` images closest to a sentence: [(path, score), ...] best first (a list of such lists for a
        list of sentences)."""
        texts = [text] if isinstance(text, str) else list(text)
        if not len(self):
            return [] if isinstance(text, str) else [[] for _ in texts]
        q = self.matcher.fuse_queries(self.matcher.encode_text(texts), self.embeddings)
        scores, ids = self._search(q, k)
        out = [
            [(self.paths[i], float(s)) for s, i in zip(row_s, row_i) if i >= 0]
            for row_s, row_i in zip(scores, ids)
        ]
        return out[0] if isinstance(text, str) else out

    def search_image(self, image, k: int = 5):
        """The `k` images of the index closest to an image in the joint space."""
        if not len(self):
            return []
        q = self.matcher.fuse_queries(self.matcher.encode_images([image]), self.embeddings)
        scores, ids = self._search(q, k)
        return [(self.paths[i], float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0]


def _image_list(images) -> list[Path]:
    from imagexplore.data.images import list_images

    if isinstance(images, str | os.PathLike) and Path(images).is_dir():
        return list_images(images)
    if isinstance(images, str | os.PathLike):
        raise DataError(f"image folder {images} not found: expected a folder of images")
    return [Path(p) for p in images]


def _embed(matcher, paths: list[Path], progress: bool) -> tuple[np.ndarray, list[Path]]:
    """Embeddings of the readable images, and those images (unreadable files are skipped)."""
    from PIL import Image

    kept = []
    for p in paths:
        try:
            with Image.open(p) as im:
                im.verify()
            kept.append(p)
        except (OSError, SyntaxError, ValueError):
            continue
    if not kept:
        raise DataError(f"no readable image among {len(paths)} files")
    return matcher.encode_images(kept, progress=progress), kept
