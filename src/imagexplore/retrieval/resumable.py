"""Feature extraction for `Index.build` over a large folder: a lazy walk, chunks on disk, resumable.

`walk_images` lists a folder's images lazily (``os.scandir``, each folder's entries sorted by name, depth
first), in the same order as `imagexplore.data.images.list_images` (sorted paths), without holding the
listing. `extract_chunks` takes the files ``chunk_files`` at a time (a multiple of the batch size, so that
every forward pass groups the same files as a single `distributed.extract_batched` over all of them: the
features are the same bits) and writes each chunk's features and file names into a checkpoint folder. A build
that stops (killed, out of memory, a power cut) and is started again with the same arguments skips the chunks
already written and gives exactly the same index.

Checkpoint folder: ``state.json`` (what is extracted: folder, backbone, weights, batch size, chunk size),
then per chunk ``chunk_<i>_<type>.npy`` (its features) and ``chunk_<i>.json`` (the positions of its kept
and skipped files, the sha256 of its files' absolute paths, the seconds it took), each written to a temp file and renamed, the
json last: a chunk counts as done only once its json exists.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from imagexplore.data.images import IMAGE_EXTENSIONS
from imagexplore.errors import DataError, UserError

STATE_FILE = "state.json"
STATE_VERSION = 1


def walk_images(folder: str | os.PathLike) -> Iterator[Path]:
    """The image files (by suffix, any case) under ``folder``, lazily, in sorted-path order; hidden files and
    folders are skipped and links followed, as `list_images` does. The folder is checked at once."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"image folder {root} not found or not a folder: expected a folder of images")
    return _walk(root)


def _walk(directory: Path) -> Iterator[Path]:
    try:
        with os.scandir(directory) as it:
            entries = sorted((e.name, e.is_dir()) for e in it if not e.name.startswith("."))
    except OSError:  # an unreadable folder is skipped, as os.walk skips it
        return
    for name, is_dir in entries:
        if is_dir:
            yield from _walk(directory / name)
        elif os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
            yield directory / name


def chunk_size_for(chunk_size: int, batch_size: int) -> int:
    """``chunk_size`` rounded up to a multiple of ``batch_size``: chunks then cut no forward pass in two."""
    return -(-chunk_size // batch_size) * batch_size


def extract_chunks(
    files: Iterable[Path],
    checkpoint: str | os.PathLike,
    described: dict,
    chunk_files: int,
    extract: Callable[[list[Path]], tuple[dict[str, np.ndarray], list[tuple[Path, str]]]],
    progress: bool = False,
) -> tuple[dict[str, np.ndarray], list[str], list[tuple[Path, str]], float, int]:
    """Features of ``files`` extracted ``chunk_files`` at a time by ``extract`` (one chunk's files -> features
    and skipped files), every chunk written into ``checkpoint``; chunks found there already are read back.

    ``described`` says what is extracted (JSON): a checkpoint of other settings is refused. Returns the
    features of all kept files, their names, the skipped files, the extraction seconds (summed over runs) and
    the number of files."""
    root = Path(checkpoint)
    state = {"version": STATE_VERSION, "chunk_files": chunk_files, **described}
    _open_checkpoint(root, state)
    it = iter(files)
    metas: list[dict] = []
    kept: list[str] = []
    skipped: list[tuple[Path, str]] = []
    from tqdm.auto import tqdm

    with tqdm(desc="features", unit="img", disable=not progress) as bar:
        for i in itertools.count():
            chunk = list(itertools.islice(it, chunk_files))
            if not chunk:
                break
            names = [str(p) for p in chunk]  # as given in this run; the checkpoint records positions
            digest = hashlib.sha256("\n".join(os.path.abspath(n) for n in names).encode()).hexdigest()
            meta_path = root / f"chunk_{i:06d}.json"
            if meta_path.exists():
                meta = json.loads(meta_path.read_text())
                if meta.get("files_sha256") != digest:
                    raise DataError(
                        f"the images under the folder changed since chunk {i} of {root} was written: remove "
                        f"{root} to start the build afresh"
                    )
            else:
                start = time.perf_counter()
                feats, bad_files = extract(chunk)
                pos = {n: i for i, n in enumerate(names)}
                bad = {pos[str(p)] for p, _ in bad_files}
                meta = {
                    "files_sha256": digest,
                    "files": len(chunk),
                    "kept": [i for i in range(len(names)) if i not in bad],
                    "skipped": [[pos[str(p)], reason] for p, reason in bad_files],
                    "types": sorted(feats),
                    "seconds": time.perf_counter() - start,
                }
                for t, x in feats.items():
                    _write(
                        root / f"chunk_{i:06d}_{t}.npy", lambda fh, x=x: np.save(fh, x, allow_pickle=False)
                    )
                _write(meta_path, lambda fh, meta=meta: fh.write(json.dumps(meta).encode()))
            metas.append(meta)
            kept += [names[i] for i in meta["kept"]]
            skipped += [(chunk[i], reason) for i, reason in meta["skipped"]]
            bar.update(len(chunk))
    feats = _gather(root, metas)
    return feats, kept, skipped, sum(m["seconds"] for m in metas), sum(m["files"] for m in metas)


def _open_checkpoint(root: Path, state: dict) -> None:
    if (root / STATE_FILE).exists():
        try:
            found = json.loads((root / STATE_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise DataError(
                f"{root / STATE_FILE} is unreadable ({exc}): remove {root} and build again"
            ) from exc
        if found != state:
            changed = sorted(k for k in state.keys() | found.keys() if state.get(k) != found.get(k))
            raise UserError(
                f"{root} holds a build begun with other settings ({', '.join(changed)}): run the same command "
                f"to resume it, or remove {root} to start afresh"
            )
        return
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise UserError(f"{root} exists and is not a build checkpoint: remove it or choose another --out")
    root.mkdir(parents=True, exist_ok=True)
    _write(root / STATE_FILE, lambda fh: fh.write((json.dumps(state, indent=1) + "\n").encode()))


def _gather(root: Path, metas: list[dict]) -> dict[str, np.ndarray]:
    """All chunks' features in one array per type, filled chunk by chunk (no second copy of the whole)."""
    n = sum(len(m["kept"]) for m in metas)
    types = metas[0]["types"] if metas else []
    out: dict[str, np.ndarray] = {}
    for t in types:
        pos = 0
        for i, m in enumerate(metas):
            x = np.load(root / f"chunk_{i:06d}_{t}.npy", mmap_mode="r", allow_pickle=False)
            if t not in out:
                out[t] = np.empty((n, *x.shape[1:]), dtype=x.dtype)
            if x.shape[0] != len(m["kept"]):
                raise DataError(f"{root}/chunk_{i:06d}_{t}.npy is damaged: remove {root} and build again")
            out[t][pos : pos + x.shape[0]] = x
            pos += x.shape[0]
    return out


def _write(path: Path, write: Callable) -> None:
    """Write a file under a temp name, fsync it and rename it into place."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
