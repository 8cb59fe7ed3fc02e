"""A DeepIndex on disk: a versioned directory, written atomically and read back with every file checked.

The directory holds ``format.json`` (format name, version 1 and the sha256 of every other file),
``config.json``, ``images.json`` (the caller's ids/paths), ``stats.json``, ``vocab_<type>.npy``,
``pca_<type>.npz``, ``signatures_<type>.npy`` and ``postings_offsets.npy`` / ``postings_ids.npy``
(+ ``postings_cells.npy`` in 2-D), written to a temp dir beside it and renamed into place. The FAISS quantiser
(exact, or an HNSW graph built deterministically) is not stored: it is rebuilt from ``vocab_<type>.npy`` and the
config at load.

Every array is a plain uncompressed ``.npy`` file, so `read_index` with ``mmap=True`` maps the big ones
(`mappable`: signatures, postings and vocabularies) read-only from disk (``np.load(mmap_mode="r")``) instead
of reading them: their checksums are then computed by streaming each file, and the pages are read on demand by
searches.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imagexplore.errors import ConfigError, DataError
from imagexplore.retrieval.index.collection import Collection
from imagexplore.retrieval.index.config import IndexConfig
from imagexplore.retrieval.index.postings import Postings
from imagexplore.retrieval.index.vocabulary import IndexModels

FORMAT_NAME = "imagexplore-deepindex"
FORMAT_VERSION = 1
_HASH_CHUNK = 1 << 22  # bytes hashed at a time when a file is mapped rather than read


@dataclass(frozen=True)
class StoredFile:
    """A file of an index on disk holding bytes of sha256 ``sha256``, and its identity when it was read or written
    (inode, size, mtime): a later `write_index` links to it only while it is still that file."""

    path: Path
    sha256: str
    stat: tuple[int, int, int, int]

    @classmethod
    def at(cls, path: Path, sha256: str) -> StoredFile | None:
        identity = _identity(path)
        return None if identity is None else cls(path, sha256, identity)

    def unchanged(self) -> bool:
        return _identity(self.path) == self.stat


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        return _identity_of(os.stat(path))
    except OSError:
        return None


def _identity_of(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def shared_model_file(name: str) -> bool:
    """Whether file ``name`` holds models (vocabularies, PCA) that shards built with ``vocab_from`` share."""
    return name.startswith(("vocab_", "pca_"))


def mappable(name: str) -> bool:
    """Whether ``read_index(mmap=True)`` maps file ``name`` instead of reading it: the signatures, the postings
    and the vocabularies (a vocabulary grown with the collection is large, and each shard of a `ShardedIndex`
    holds its own copy; an assignment quantiser still copies a real vocabulary into FAISS, a codes-only index's
    placeholder is never read)."""
    return name.endswith(".npy") and name.startswith(("signatures_", "postings_", "vocab_"))


def write_index(
    dest: Path,
    config: IndexConfig,
    models: IndexModels,
    data: Collection,
    stats: dict,
    names: list,
    extra_files: dict[str, bytes] | None,
) -> None:
    """Write an index's files (``names`` in images.json, ``stats`` in stats.json, ``extra_files`` beside them)
    and a format.json of their sha256 into ``dest``, atomically."""
    blobs: dict[str, bytes] = {
        "config.json": _json_bytes(config.to_json()),
        "images.json": _json_bytes(names),
        "stats.json": _json_bytes(stats),
        "postings_offsets.npy": _npy_bytes(data.postings.offsets),
        "postings_ids.npy": _npy_bytes(data.postings.ids),
    }
    if config.mode == "2d":
        blobs["postings_cells.npy"] = _npy_bytes(data.postings.keys)
    for name in config.types:
        blobs[f"vocab_{name}.npy"] = _npy_bytes(models.vocab[name])
        buf = io.BytesIO()
        np.savez(buf, mean=models.pca_mean[name], components=models.pca_components[name])
        blobs[f"pca_{name}.npz"] = buf.getvalue()
        blobs[f"signatures_{name}.npy"] = _npy_bytes(data.signatures[name])
    blobs.update(extra_files or {})
    digests = {name: hashlib.sha256(blob).hexdigest() for name, blob in blobs.items()}
    blobs["format.json"] = _json_bytes({"format": FORMAT_NAME, "version": FORMAT_VERSION, "files": digests})
    # models already stored with the same bytes (another shard of the same vocabularies): hard-linked, not
    # written again - a k-auto vocabulary is 1 GiB a shard at 10M images (docs/benchmarks.md)
    links = {}
    for name, digest in digests.items():
        stored = models.files.get(name)
        if shared_model_file(name) and stored is not None and stored.sha256 == digest and stored.unchanged():
            links[name] = stored.path
    _write_atomically(dest, blobs, links)
    for name, digest in digests.items():
        if shared_model_file(name) and name not in links:  # written here: the copy later shards link to
            stored = StoredFile.at(dest / name, digest)
            if stored is not None:
                models.files[name] = stored


def read_index(
    directory: str | os.PathLike, mmap: bool = False
) -> tuple[IndexConfig, IndexModels, Collection, float]:
    """Config, models, collection and build seconds of an index written by `write_index`, checking version,
    presence, sha256 and shape of every file.

    ``mmap``: the signatures, posting and vocabulary arrays (`mappable`) are memory-mapped read-only from their
    ``.npy`` files rather than read into memory (their sha256 is computed by streaming the file); searches give
    the same results, reading the pages they touch from disk (or the page cache)."""
    root = Path(directory)
    fmt = _parse_json(_read_bytes(root / "format.json", "the index's format.json"), root / "format.json")
    if not isinstance(fmt, dict) or fmt.get("format") != FORMAT_NAME:
        raise DataError(f"{root} is not a DeepIndex directory (format.json does not say {FORMAT_NAME!r})")
    if fmt.get("version") != FORMAT_VERSION:
        raise DataError(
            f"{root} holds DeepIndex format version {fmt.get('version')!r}; this imagexplore reads version "
            f"{FORMAT_VERSION}: rebuild the index or use the imagexplore release that wrote it"
        )
    listed = fmt.get("files")
    if not isinstance(listed, dict) or not all(isinstance(v, str) for v in listed.values()):
        raise DataError(f"{root}/format.json has no valid 'files' table: the index is damaged, rebuild it")
    blobs = {}
    for name, digest in listed.items():
        if not isinstance(name, str) or Path(name).name != name:
            raise DataError(f"{root}/format.json lists {name!r}, not a file of the index: rebuild it")
        if mmap and mappable(name):
            got, blob = _mapped_sha256(root / name, digest), root / name
        else:
            blob = _read_bytes(root / name, "an index file listed in format.json")
            got = hashlib.sha256(blob).hexdigest()
        if got != digest:
            raise DataError(f"{root / name} is damaged (sha256 differs from format.json): rebuild the index")
        blobs[name] = blob
    config, models, data, seconds = _from_blobs(root, blobs)
    for name, digest in listed.items():
        if shared_model_file(name):
            stored = StoredFile.at(root / name, digest)
            if stored is not None:
                models.files[name] = stored
    return config, models, data, seconds


# (device, inode, size, mtime) -> sha256 of the hard-linked files this process has hashed to map them: the
# shards of one vocabulary link the same file (`write_index`), which is then hashed once, not once a shard
_HASHED: dict[tuple[int, int, int, int], str] = {}


def _mapped_sha256(path: Path, digest: str) -> str:
    """`_file_sha256` of a file to map; a file with several links is remembered by its identity for the rest
    of the process (index files are replaced, never rewritten in place, so a new identity means new bytes)."""
    try:
        st = os.stat(path)
    except OSError:  # reported by _file_sha256 below, with its message
        st = None
    identity = None if st is None else _identity_of(st)
    if identity is not None and _HASHED.get(identity) == digest:
        return digest
    got = _file_sha256(path, "an index file listed in format.json")
    if st is not None and st.st_nlink > 1 and _identity(path) == identity:
        _HASHED[identity] = got
    return got


def _file_sha256(path: Path, what: str) -> str:
    """The sha256 of a file, read ``_HASH_CHUNK`` bytes at a time (what a mapped file is checked with)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise DataError(
            f"cannot read {what} {path} ({exc.strerror}): is this a complete DeepIndex directory?"
        ) from exc
    return digest.hexdigest()


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=1) + "\n").encode()


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(
            f"cannot read {what} {path} ({exc.strerror}): is this a complete DeepIndex directory?"
        ) from exc


def _parse_json(blob: bytes, path: Path):
    try:
        return json.loads(blob)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON ({exc}): the index is damaged, rebuild it") from exc


def _write_atomically(dest: Path, blobs: dict[str, bytes], links: dict[str, Path] | None = None) -> None:
    """Write every file into a temp dir beside ``dest`` (format.json last), fsync, then rename it into place.
    A file of ``links`` is hard-linked from the path given (the same bytes, already on disk) where the file
    system allows it, else written.

    An existing index at ``dest`` is first renamed aside and removed after the swap, so a reader sees either the
    old or the new index; a crash between the two renames leaves the old one as ``.<name>.old-*`` beside it.
    """
    parent = dest.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=parent))
    try:
        for name in sorted(blobs, key=lambda n: n == "format.json"):
            if name in (links or {}):
                try:
                    os.link(links[name], tmp / name)
                    continue
                except OSError:  # another file system, or links not supported: a copy
                    pass
            with open(tmp / name, "wb") as fh:
                fh.write(blobs[name])
                fh.flush()
                os.fsync(fh.fileno())
        _fsync_dir(tmp)
        if dest.exists():
            old = parent / f".{dest.name}.old-{uuid.uuid4().hex}"
            os.rename(dest, old)
            os.rename(tmp, dest)
            shutil.rmtree(old)
        else:
            os.rename(tmp, dest)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _from_blobs(
    root: Path, blobs: dict[str, bytes | Path]
) -> tuple[IndexConfig, IndexModels, Collection, float]:
    """Rebuild an index from verified file contents (or, for arrays to map, verified files), checking every
    shape against config and stats."""

    def need(name: str) -> bytes | Path:
        if name not in blobs:
            raise DataError(
                f"{root} lacks {name} (not listed in format.json): the index is incomplete, rebuild it"
            )
        return blobs[name]

    def array(name: str, dtype, shape: tuple) -> np.ndarray:
        got = need(name)
        try:
            if isinstance(
                got, Path
            ):  # a plain ndarray view of the read-only map (np.asarray drops np.memmap)
                arr = np.asarray(np.load(got, mmap_mode="r", allow_pickle=False))
            else:
                arr = np.load(io.BytesIO(got), allow_pickle=False)
        except ValueError as exc:
            raise DataError(f"{root / name} is not a readable .npy array ({exc}): rebuild the index") from exc
        _check_shape(root / name, arr, dtype, shape)
        return arr

    raw_config = _parse_json(need("config.json"), root / "config.json")
    if isinstance(raw_config, dict) and "assignment" not in raw_config:
        # written before the field existed: its postings were assigned exactly, whatever the vocabulary's size
        raw_config = {**raw_config, "assignment": "exact"}
    try:
        config = IndexConfig.from_json(raw_config)
    except ConfigError as exc:
        raise DataError(f"{root / 'config.json'}: {exc}") from exc
    stats = _parse_json(need("stats.json"), root / "stats.json")
    images = _parse_json(need("images.json"), root / "images.json")
    try:
        n, p = int(stats["images"]), int(stats["entries_per_image"])
        ks = {t: int(stats["k"][t]) for t in config.types}
        k_requested = {t: int(stats["k_requested"][t]) for t in config.types}
        seconds, source = float(stats["build_seconds"]), str(stats["vocab_source"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(
            f"{root / 'stats.json'} lacks or garbles {exc}: the index is damaged, rebuild it"
        ) from exc
    if not isinstance(images, list) or len(images) != n or n < 1:
        raise DataError(
            f"{root / 'images.json'} must list the {n} indexed images: the index is damaged, rebuild it"
        )
    vocab, means, comps, signatures = {}, {}, {}, {}
    sig_dtype = np.float16 if config.float16_signatures else np.float32
    for name in config.types:
        vocab[name] = array(f"vocab_{name}.npy", np.float32, (ks[name], None))
        d = vocab[name].shape[1]
        dim = min(config.signature_dim, d)
        try:
            with np.load(io.BytesIO(need(f"pca_{name}.npz")), allow_pickle=False) as npz:
                means[name], comps[name] = npz["mean"], npz["components"]
        except (ValueError, KeyError, OSError) as exc:
            raise DataError(
                f"{root}/pca_{name}.npz is not a readable PCA ({exc}): rebuild the index"
            ) from exc
        _check_shape(root / f"pca_{name}.npz", means[name], np.float32, (d,))
        _check_shape(root / f"pca_{name}.npz", comps[name], np.float32, (dim, d))
        signatures[name] = array(f"signatures_{name}.npy", sig_dtype, (n, dim))
    ids = array("postings_ids.npy", np.uint32, (n * p,))
    if config.mode == "1d":
        keys = np.arange(ks[config.types[0]], dtype=np.int64)
    else:
        keys = array("postings_cells.npy", np.int64, (None,))
        if keys.size and (
            np.any(np.diff(keys) <= 0) or keys[0] < 0 or keys[-1] >= ks[config.types[0]] * ks[config.types[1]]
        ):
            raise DataError(
                f"{root}/postings_cells.npy is not a sorted list of valid cells: rebuild the index"
            )
    offsets = array("postings_offsets.npy", np.int64, (keys.size + 1,))
    if offsets[0] != 0 or offsets[-1] != ids.size or np.any(np.diff(offsets) < 0):
        raise DataError(f"{root}/postings_offsets.npy does not delimit the postings: rebuild the index")
    entry_list = np.repeat(np.arange(keys.size), np.diff(offsets))
    unsorted = (entry_list[1:] == entry_list[:-1]) & (ids[1:] < ids[:-1])
    if (ids.size and ids.max() >= n) or np.any(np.bincount(ids, minlength=n) != p) or np.any(unsorted):
        raise DataError(
            f"{root}/postings_ids.npy does not hold {p} sorted entries per image: rebuild the index"
        )
    models = IndexModels.from_arrays(
        vocab, means, comps, k_requested, source, config.assignment, config.hnsw_ef_search
    )
    data = Collection.create(Postings.from_arrays(keys, offsets, ids, n), signatures, images)
    return config, models, data, seconds


def _check_shape(path: Path, arr: np.ndarray, dtype, shape: tuple) -> None:
    """``shape`` may hold None for a free dimension."""
    ok = arr.dtype == dtype and arr.ndim == len(shape)
    ok = ok and all(want is None or got == want for got, want in zip(arr.shape, shape))
    if not ok:
        want = tuple("*" if s is None else s for s in shape)
        raise DataError(
            f"{path} holds {arr.dtype} {arr.shape}, expected {np.dtype(dtype)} {want}: rebuild the index"
        )
