"""The checksummed, resumable feature cache that matching networks train on (thesis ch. 5: pre-extracted features).

A cache folder holds:

- ``items.json``: the caption set (images, captions, caption_image, labels, name, split), both encoder specs,
  the dims and the run key (a hash of all that);
- ``images.npy`` (M × D float32) and either ``texts.npy`` (N × D float32) or, for the ``tokens`` encoder,
  ``tokens.npy`` (N × L int64, 0-padded) + ``lengths.npy`` (N int64); written in place through
  ``np.lib.format.open_memmap`` and read back memory-mapped;
- ``progress.json`` while extracting: the rows done so far, rewritten atomically after every chunk (the
  chunk's rows are flushed first), so an extraction killed at any point resumes at the next chunk;
- ``manifest.json``, written LAST: the sha256 of every other file. A folder without it is never taken as
  complete; `FeatureCache.load` checks every sha256.

Chunks sit at fixed positions (rows ``[k·batch, (k+1)·batch)``), so a resumed run, or one split over
processes, gives the very bits of an uninterrupted single run on the same device and thread count.

Sharding (``shard=(rank, world)`` or ``shard="env"`` for torchrun's RANK / WORLD_SIZE): rank r extracts its
contiguous block of chunks of both the images and the captions into ``out/shards/RRRRR-of-WWWWW/`` (itself
resumable, with its own manifest). No process group is needed; when every shard is complete, `merge_shards`
(called by rank 0 when it finishes last, and by `FeatureCache.load` otherwise) writes the merged cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from imagexplore.engine.checkpoint import atomic_write_bytes
from imagexplore.errors import ConfigError, DataError
from imagexplore.matching.data import CaptionSet
from imagexplore.matching.encoders import Encoder

log = logging.getLogger("imagexplore.matching")

FORMAT_NAME = "imagexplore-match-features"
FORMAT_VERSION = 1
ITEMS, MANIFEST, PROGRESS = "items.json", "manifest.json", "progress.json"
SHARDS = "shards"


def _write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, lambda fh: fh.write((json.dumps(obj, indent=1) + "\n").encode()))


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _file_stamps(images: list) -> list:
    """Size and mtime of every image file (keys and row indices as they are): part of a content key."""
    out = []
    for p in images:
        if isinstance(p, str) and os.path.isfile(p):
            st = os.stat(p)
            out.append([st.st_size, st.st_mtime_ns])
        else:
            out.append(None)
    return out


def run_key(caption_set: CaptionSet, image_spec: dict, text_spec: dict, stamps: bool = False) -> str:
    """What makes two extractions the same: the set's content and both encoder specs (and, with ``stamps``,
    the images' sizes and modification times)."""
    key = {
        "items": caption_set.content_hash(),
        "image": image_spec,
        "text": text_spec,
        "format": FORMAT_VERSION,
    }
    if stamps:
        key["stamps"] = _file_stamps(caption_set.images)
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _text_files(tokens: bool) -> tuple[str, ...]:
    return ("tokens.npy", "lengths.npy") if tokens else ("texts.npy",)


def _shard_bounds(n: int, batch: int, rank: int, world: int) -> tuple[int, int]:
    groups = -(-n // batch)
    first, last = rank * groups // world, (rank + 1) * groups // world
    return min(first * batch, n), min(last * batch, n)


def _resolve_shard(shard) -> tuple[int, int] | None:
    if shard is None:
        return None
    if shard == "env":
        from imagexplore.retrieval.distributed import env_rank

        rank, world = env_rank()
        return None if world == 1 else (rank, world)
    try:
        rank, world = (int(v) for v in shard)
    except (TypeError, ValueError):
        raise ConfigError(f"shard must be (rank, world size) or 'env', got {shard!r}") from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"shard rank {rank} of world size {world}: need 0 <= rank < world size")
    return rank, world


def extract_features(
    caption_set: CaptionSet,
    image_encoder: Encoder,
    text_encoder: Encoder,
    out_dir: str | os.PathLike,
    batch_size: int = 64,
    progress: bool = True,
    shard=None,
) -> Path:
    """Encode every image and caption of ``caption_set`` into the cache folder ``out_dir``; returns it.

    A complete folder of the same run (same content and encoders) is returned as it is, a complete folder of
    another run is refused; a partial one of the same run (and ``batch_size``) is resumed from its
    ``progress.json``, a partial one of another run is started over. With ``shard`` only that rank's
    rows are extracted (see the module docstring) and the path of the merged cache is returned once every
    shard is complete, else the shard's own folder.
    """
    if image_encoder.modality != "image" or text_encoder.modality != "text":
        raise ConfigError(
            f"extract_features needs an image encoder then a text encoder, got {image_encoder.modality} "
            f"and {text_encoder.modality}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder: give a folder for the feature cache")
    key = run_key(caption_set, image_encoder.spec, text_encoder.spec)
    items = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "key": key,
        **caption_set.to_dict(),
        "image_spec": image_encoder.spec,
        "text_spec": text_encoder.spec,
        "image_dim": image_encoder.dim,
        "text_dim": text_encoder.dim,
        "text_kind": text_encoder.kind,
        "batch_size": batch_size,
    }
    sh = _resolve_shard(shard)
    done = _complete_key(out)
    if done is not None:
        if done != key:
            raise DataError(
                f"{out} holds features of another caption set or encoder: extract into an empty folder"
            )
        return out
    if sh is None:
        _extract_into(out, items, caption_set, image_encoder, text_encoder, None, batch_size, progress)
        return out
    rank, world = sh
    if (out / ITEMS).is_file():
        _check_items_key(out, key)
    else:
        _write_json(out / ITEMS, items)
    sdir = out / SHARDS / f"{rank:05d}-of-{world:05d}"
    bounds = (
        _shard_bounds(caption_set.num_images, batch_size, rank, world),
        _shard_bounds(len(caption_set), batch_size, rank, world),
    )
    _extract_into(
        sdir, items, caption_set, image_encoder, text_encoder, bounds, batch_size, progress and rank == 0
    )
    if rank == 0 and shards_complete(out):
        merge_shards(out)
        return out
    return sdir


def _check_items_key(folder: Path, key: str) -> None:
    try:
        old = json.loads((folder / ITEMS).read_text()).get("key")
    except (OSError, ValueError):
        old = None
    if old != key:
        raise DataError(
            f"{folder} holds (part of) an extraction of another caption set or encoder: extract into an "
            "empty folder, or remove it"
        )


def _complete_key(folder: Path) -> str | None:
    try:
        return json.loads((folder / MANIFEST).read_text())["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _open_arrays(folder: Path, shapes: dict[str, tuple[tuple, str]], fresh: bool) -> dict[str, np.ndarray]:
    arrays = {}
    for name, (shape, dtype) in shapes.items():
        path = folder / name
        if not fresh:
            try:
                mm = np.lib.format.open_memmap(path, mode="r+")
                if mm.shape == shape and mm.dtype == np.dtype(dtype):
                    arrays[name] = mm
                    continue
            except (OSError, ValueError):
                pass
            return {}
        arrays[name] = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    return arrays


def _extract_into(
    folder: Path,
    items: dict,
    cs: CaptionSet,
    ienc: Encoder,
    tenc: Encoder,
    bounds: tuple[tuple[int, int], tuple[int, int]] | None,
    batch_size: int,
    progress: bool,
) -> None:
    """Extract rows ``bounds`` (images, captions; all when None) into ``folder``, resuming, manifest last."""
    key = items["key"]
    if _complete_key(folder) == key:
        return
    folder.mkdir(parents=True, exist_ok=True)
    (ilo, ihi), (tlo, thi) = bounds or ((0, cs.num_images), (0, len(cs)))
    tokens = tenc.kind == "tokens"
    token_len = 0
    if tokens:  # the padded width must be known before the file is made: the whole set's longest caption
        token_len = tenc.max_len or int(tenc.vocabulary.encode(cs.captions)[1].max())
    shapes: dict[str, tuple[tuple, str]] = {"images.npy": ((ihi - ilo, ienc.dim), "float32")}
    if tokens:
        shapes["tokens.npy"] = ((thi - tlo, token_len), "int64")
        shapes["lengths.npy"] = ((thi - tlo,), "int64")
    else:
        shapes["texts.npy"] = ((thi - tlo, tenc.dim), "float32")
    state = {"key": key, "images": 0, "texts": 0, "unknown": 0, "words": 0, "seconds": 0.0}
    arrays: dict[str, np.ndarray] = {}
    try:
        old = json.loads((folder / PROGRESS).read_text())
        if old.get("key") == key and (folder / ITEMS).is_file() and old.get("batch_size") == batch_size:
            arrays = _open_arrays(folder, shapes, fresh=False)
            if arrays:
                state.update({k: old[k] for k in state if k in old})
                log.info("resuming %s at %d images, %d captions", folder, state["images"], state["texts"])
    except (OSError, ValueError):
        pass
    if not arrays:
        (folder / MANIFEST).unlink(missing_ok=True)
        _write_json(folder / ITEMS, items)
        arrays = _open_arrays(folder, shapes, fresh=True)
        _write_json(folder / PROGRESS, {**state, "batch_size": batch_size})
    began = time.perf_counter() - state["seconds"]

    def save_progress():
        for a in arrays.values():
            a.flush()
        state["seconds"] = round(time.perf_counter() - began, 3)
        _write_json(folder / PROGRESS, {**state, "batch_size": batch_size})

    n_img, n_txt = ihi - ilo, thi - tlo
    with tqdm(
        total=n_img, initial=state["images"], desc="image features", unit="img", disable=not progress
    ) as bar:
        for lo in range(state["images"], n_img, batch_size):
            hi = min(lo + batch_size, n_img)
            arrays["images.npy"][lo:hi] = ienc.encode(
                cs.images[ilo + lo : ilo + hi], np.arange(ilo + lo, ilo + hi)
            )
            state["images"] = hi
            save_progress()
            bar.update(hi - lo)
    with tqdm(
        total=n_txt, initial=state["texts"], desc="text features", unit="caption", disable=not progress
    ) as bar:
        for lo in range(state["texts"], n_txt, batch_size):
            hi = min(lo + batch_size, n_txt)
            caps, rows = cs.captions[tlo + lo : tlo + hi], np.arange(tlo + lo, tlo + hi)
            if tokens:
                before = (tenc.unknown, tenc.words)
                ids, lengths = tenc.encode(caps, rows)
                state["unknown"] += tenc.unknown - before[0]
                state["words"] += tenc.words - before[1]
                arrays["tokens.npy"][lo:hi, : ids.shape[1]] = ids
                arrays["lengths.npy"][lo:hi] = lengths
            else:
                arrays["texts.npy"][lo:hi] = tenc.encode(caps, rows)
            state["texts"] = hi
            save_progress()
            bar.update(hi - lo)
    save_progress()
    arrays.clear()  # close the memmaps before hashing the files
    _write_manifest(folder, key, list(shapes), state, bounds)


def _write_manifest(folder: Path, key: str, names: list[str], state: dict, bounds=None) -> None:
    manifest = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "key": key,
        "files": {name: _sha256(folder / name) for name in [ITEMS, *names]},
        "rows": {"images": state["images"], "texts": state["texts"]},
        "bounds": bounds,
        "unknown_words": state.get("unknown", 0),
        "words": state.get("words", 0),
        "seconds": state.get("seconds"),
    }
    _write_json(folder / MANIFEST, manifest)  # last: only now is the folder complete
    (folder / PROGRESS).unlink(missing_ok=True)


def _shard_dirs(root: Path) -> list[Path]:
    base = root / SHARDS
    return sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []


def shards_complete(root: str | os.PathLike) -> bool:
    """Whether every rank's shard folder of ``root`` has its manifest (same key, one world size)."""
    root = Path(root)
    dirs = _shard_dirs(root)
    if not dirs:
        return False
    worlds = {d.name.split("-of-")[-1] for d in dirs}
    if len(worlds) != 1 or len(dirs) != int(worlds.pop()):
        return False
    try:
        key = json.loads((root / ITEMS).read_text())["key"]
    except (OSError, ValueError, KeyError):
        return False
    return all(_complete_key(d) == key for d in dirs)


def merge_shards(root: str | os.PathLike) -> Path:
    """Concatenate the complete shards of ``root`` (rank order) into the cache files; manifest last."""
    root = Path(root)
    if not shards_complete(root):
        dirs = _shard_dirs(root)
        raise DataError(
            f"cache {root} is incomplete ({sum(_complete_key(d) is not None for d in dirs)} shard(s) done): "
            "re-run match extract (every rank)"
        )
    items = json.loads((root / ITEMS).read_text())
    dirs = _shard_dirs(root)
    names = list(_text_files(items["text_kind"] == "tokens"))
    state = {"images": 0, "texts": 0, "unknown": 0, "words": 0, "seconds": 0.0}
    for name in ["images.npy", *names]:
        parts = [np.load(d / name, mmap_mode="r") for d in dirs]
        shape = (sum(len(p) for p in parts), *parts[0].shape[1:])
        out = np.lib.format.open_memmap(root / name, mode="w+", dtype=parts[0].dtype, shape=shape)
        lo = 0
        for p in parts:
            out[lo : lo + len(p)] = p
            lo += len(p)
        out.flush()
        del out
    for d in dirs:
        m = json.loads((d / MANIFEST).read_text())
        for k in ("unknown", "words"):
            state[k] += m.get(f"{k}_words" if k == "unknown" else k, 0)
        state["images"] += m["rows"]["images"]
        state["texts"] += m["rows"]["texts"]
        state["seconds"] += m.get("seconds") or 0.0
    _write_manifest(root, items["key"], ["images.npy", *names], state)
    shutil.rmtree(root / SHARDS, ignore_errors=True)
    return root


class FeatureCache:
    """A complete cache folder, memory-mapped: ``image_feats`` (M × D), ``text_feats`` (N × D, or for the
    ``tokens`` encoder the N × L ids, with ``text_lengths``), ``caption_image``, ``captions``, ``images``,
    ``labels``, ``image_spec``, ``text_spec``, ``caption_set`` and the unknown-word counts."""

    def __init__(self, root: Path, items: dict, manifest: dict):
        self.root = root
        self.items, self.manifest = items, manifest
        mm = {
            name: np.load(root / name, mmap_mode="r") for name in manifest["files"] if name.endswith(".npy")
        }
        self.image_feats = mm["images.npy"]
        self.text_kind = items["text_kind"]
        if self.text_kind == "tokens":
            self.text_feats, self.text_lengths = mm["tokens.npy"], mm["lengths.npy"]
        else:
            self.text_feats, self.text_lengths = mm["texts.npy"], None
        self.caption_set = CaptionSet.from_dict(items)
        self.images, self.captions = self.caption_set.images, self.caption_set.captions
        self.caption_image, self.labels = self.caption_set.caption_image, self.caption_set.labels
        self.image_spec, self.text_spec = items["image_spec"], items["text_spec"]
        self.unknown_words, self.words = manifest.get("unknown_words", 0), manifest.get("words", 0)
        if len(self.image_feats) != len(self.images) or len(self.text_feats) != len(self.captions):
            raise DataError(f"cache {root} is incomplete or changed: re-run match extract")

    @classmethod
    def load(cls, directory: str | os.PathLike, verify: bool = True) -> FeatureCache:
        root = Path(directory)
        if not (root / MANIFEST).is_file() and shards_complete(root):
            log.info("merging the complete shards of %s", root)
            merge_shards(root)
        incomplete = f"cache {root} is incomplete or changed: re-run match extract"
        try:
            manifest = json.loads((root / MANIFEST).read_text())
            items = json.loads((root / ITEMS).read_text())
        except (OSError, ValueError):
            raise DataError(incomplete) from None
        if manifest.get("format") != FORMAT_NAME or manifest.get("version") != FORMAT_VERSION:
            raise DataError(
                f"{root / MANIFEST} is not a match feature cache of version {FORMAT_VERSION}: re-run match extract"
            )
        if manifest.get("key") != items.get("key"):
            raise DataError(incomplete)
        for name, digest in manifest["files"].items():
            if not (root / name).is_file() or (verify and _sha256(root / name) != digest):
                raise DataError(f"cache {root} is incomplete or changed ({name}): re-run match extract")
        return cls(root, items, manifest)

    def __repr__(self) -> str:
        return (
            f"FeatureCache({str(self.root)!r}, images={self.image_feats.shape}, texts={self.text_feats.shape}, "
            f"image={self.image_spec['name']}, text={self.text_spec['name']})"
        )


def cached_features(
    caption_set: CaptionSet,
    image_encoder: Encoder,
    text_encoder: Encoder,
    cache_root: str | os.PathLike | None = None,
    batch_size: int = 64,
    progress: bool = True,
    shard=None,
) -> FeatureCache | Path:
    """Extract once by content: the cache folder is ``cache_root/<key>`` with key = hash of the set's content
    (images — with their files' sizes and times —, captions, labels) and both encoder specs; a later call
    with the same content loads it (resuming a partial one). With ``shard`` (``"env"`` under torchrun) only this
    rank's rows are extracted; until every shard is done the shard folder's path is returned. ``cache_root`` defaults to
    ``$IMAGEXPLORE_CACHE/match`` (else ``~/.cache/imagexplore/match``)."""
    if cache_root is None:
        base = os.environ.get("IMAGEXPLORE_CACHE") or Path.home() / ".cache" / "imagexplore"
        cache_root = Path(base) / "match"
    key = run_key(caption_set, image_encoder.spec, text_encoder.spec, stamps=True)
    folder = Path(cache_root) / f"{caption_set.name.replace(':', '_').replace('/', '_') or 'set'}-{key[:16]}"
    if _complete_key(folder) is None:
        done = extract_features(caption_set, image_encoder, text_encoder, folder, batch_size, progress, shard)
        if shard is not None and _complete_key(folder) is None:
            return done  # this rank's shard; the last rank to finish merges them into `folder`
    return FeatureCache.load(folder, verify=True)
