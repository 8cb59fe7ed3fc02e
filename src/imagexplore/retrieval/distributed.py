"""Feature extraction of large collections under `torchrun`, and the shard files it leaves (DeepIndex, ch. 4).

Why: the CNN pass over every patch of every image is what costs when indexing a large collection; vocabularies,
postings and signatures over pre-computed features are cheap next to it. So only the extraction is spread over
processes and machines, and the index is then built once from all the features (`read_features`, used by
`Index.build_from_features`): the result is identical to a single-process `Index.build` of the folder.

Sharding: the image list (sorted, as `Index.build` lists a folder) is cut into groups of ``batch_size``
consecutive images, one forward pass each, and rank r of W takes the r-th contiguous block of groups.
Contiguous blocks make reassembly a concatenation in rank order. Groups at fixed global positions make every
image pass through the CNN in exactly the batch it has in a single process; that matters because some kernels
give batch-dependent bits (timm's ``test_efficientnet`` on CPU does: one image alone vs. two together differ),
and bit-identical features are what make the index identical. Unreadable files are skipped inside their group.
The other thing that changes the bits is the device, and on CPUs the thread count (measured: Lite0 with 1 vs 2
threads differs by up to 1e-6): torchrun gives every worker one thread (OMP_NUM_THREADS=1), so the single-process
reference is a build with OMP_NUM_THREADS=1. Each rank file records its device and threads.

No process group is created: ranks share nothing while extracting. Each writes its own
``features-RRRRR-of-WWWWW.npz`` atomically and rank 0 writes ``manifest.json``; completeness (every rank,
one run, no path twice) is checked when the folder is read. This avoids gloo's occasional abort at interpreter
exit (docs/retrieval_scaling.md) and lets one failed rank be rerun alone with ``RANK=r WORLD_SIZE=W``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from imagexplore.data.images import BadFileCounter, check_on_bad_file, list_images, load_image, pil_to_tensor
from imagexplore.engine.checkpoint import atomic_write_bytes
from imagexplore.engine.distributed import local_rank
from imagexplore.errors import ConfigError, DataError, UserError
from imagexplore.retrieval.features import (
    DEFAULT_BACKBONE,
    FeatureExtractor,
    crop_patches,
    decode_side,
    extract,
    load_backbone,
    patch_boxes,
)
from imagexplore.retrieval.options import DEFAULT_BATCH_IMAGES, DEVICES, check_positive

FORMAT_NAME = "imagexplore-features"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SHARD_FILE = re.compile(r"features-(\d{5})-of-(\d{5})\.npz")

log = logging.getLogger(__name__)


def shard_file_name(rank: int, world_size: int) -> str:
    return f"features-{rank:05d}-of-{world_size:05d}.npz"


def env_rank() -> tuple[int, int]:
    """``(RANK, WORLD_SIZE)`` as torchrun (or Slurm via torchrun) sets them; ``(0, 1)`` outside a launcher."""
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(
            f"RANK={os.environ.get('RANK')!r} / WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} are not integers: "
            "start the command with torchrun, or set both to whole numbers"
        ) from None
    return rank, world


def shard_bounds(n_images: int, batch_size: int, rank: int, world_size: int) -> tuple[int, int]:
    """The ``[start, stop)`` positions of rank ``rank``: its contiguous block of ``batch_size`` groups."""
    groups = -(-n_images // batch_size)
    first, last = rank * groups // world_size, (rank + 1) * groups // world_size
    return min(first * batch_size, n_images), min(last * batch_size, n_images)


class _DecodedFiles(torch.utils.data.Dataset):
    """Each file decoded (`load_image` with ``min_side``) to a uint8 ``3×H×W`` tensor — or, with ``crop_size``,
    already cut into its patches ``(P, 3, S, S)`` exactly as `features.extract` cuts them — or its error text:
    run in a loader process so decoding and cropping overlap the network's forward passes."""

    def __init__(self, files: Sequence[Path], min_side: int | None, crop_size: int | None = None):
        self.files, self.min_side, self.crop_size = files, min_side, crop_size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        try:
            img = load_image(self.files[i], "RGB", min_side=self.min_side)
        except DataError as exc:
            return str(exc)
        if self.crop_size is None:
            return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous()
        # as `features._as_tensor` makes a Pillow image (the same bits as x.float() / 255)
        x = pil_to_tensor(img)
        rois = patch_boxes(x.shape[2], x.shape[1])
        out = None
        if torch.utils.data.get_worker_info() is not None:  # cut straight into shared memory: sent uncopied
            out = torch.empty((len(rois), x.shape[0], self.crop_size, self.crop_size)).share_memory_()
        return crop_patches(x, torch.from_numpy(rois), self.crop_size, out)


def loader_workers(extractor: FeatureExtractor) -> int:
    """``workers="auto"`` of `extract_batched`: one loader process when it has a core to itself - the network
    runs on a GPU, or on fewer CPU threads than this process may use (torchrun ranks run one each) - else 0.

    When the forward passes' threads take every core, the loader cannot overlap them; it only takes turns, and
    each of its turns stalls a whole multi-threaded pass. Measured on the 2-core machine of docs/benchmarks.md
    (BatchNorm folded, `bench_retrieval.py --extraction`): decoding and cutting in this process, between the
    passes, is faster than the loader there."""
    if extractor.device.type != "cpu":
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return 1 if torch.get_num_threads() < cores else 0


def _background_loader(_worker_id: int) -> None:
    """A loader process runs on one thread at the lowest priority: where cores are few, the forward passes'
    threads keep them and the loader fills their gaps (at equal priority its preemptions stall a whole
    2-thread forward pass; docs/benchmarks.md, "The contract command, and indexing speed")."""
    torch.set_num_threads(1)
    try:
        os.nice(19)
    except (OSError, AttributeError):  # not permitted, or not POSIX: equal priority
        pass


def extract_batched(
    extractor: FeatureExtractor,
    files: Sequence[Path],
    batch_size: int,
    progress: bool = False,
    on_bad: str = "skip",
    workers: int | str = "auto",
    min_side: int | None | str = "auto",
) -> tuple[dict[str, np.ndarray], list[tuple[Path, str]]]:
    """Features ``{type: (N, P, D)}`` of the readable ``files`` and ``(path, reason)`` of the unreadable ones.

    Files ``[0, batch_size)``, ``[batch_size, 2 batch_size)``, ... each make one forward pass, whatever is
    unreadable among them: an image's features then depend only on its group, never on where a shard starts or
    which earlier file was skipped. One warning line sums up the skipped files; with ``on_bad="fail"`` the
    first unreadable file raises its `DataError` instead.

    ``workers`` loader processes decode (on the CPU also crop) the files ahead of the network (0: in this
    process; ``"auto"``: `loader_workers`; the features are the same bits either way). ``min_side``: large
    images are decoded smaller (`features.decode_side`; None: in full).
    """
    batch_size = check_positive("batch size (images per forward pass)", batch_size)
    if workers == "auto":
        workers = loader_workers(extractor)
    counter = BadFileCounter(on_bad, what="images")
    if min_side == "auto":
        min_side = decode_side(extractor)
    parts: dict[str, list[np.ndarray]] = {t: [] for t in extractor.dims}
    # on the CPU the loader also cuts the patches (the same `crop_patches`, the same bits); on a GPU they are cut there
    crop = extractor.input_size if workers and extractor.device.type == "cpu" else None
    loader = torch.utils.data.DataLoader(
        _DecodedFiles(files, min_side, crop),
        batch_size=None,
        num_workers=workers if len(files) > 1 else 0,
        worker_init_fn=_background_loader if workers else None,
        prefetch_factor=2 * batch_size if workers and len(files) > 1 else None,
    )
    decoded = iter(loader)
    with tqdm(total=len(files), desc="features", unit="img", disable=not progress) as bar:
        for lo in range(0, len(files), batch_size):
            group = []
            for path in files[lo : lo + batch_size]:
                item = next(decoded)
                if isinstance(item, str):
                    counter.handle(path, DataError(item))
                else:
                    group.append(item)
            if group and crop:  # the group's patches in a single forward pass, as `extract` runs them below
                with torch.inference_mode():
                    out = extractor((group[0] if len(group) == 1 else torch.cat(group)).to(extractor.device))
                for ftype, v in out.items():
                    parts[ftype].append(v.cpu().numpy().reshape(len(group), -1, v.shape[1]))
            elif group:  # sys.maxsize: the whole group in a single forward pass
                feats = extract(extractor, group, batch_size=sys.maxsize, progress=False, min_side=None)
                for ftype, v in feats.items():
                    parts[ftype].append(v)
            bar.update(len(files[lo : lo + batch_size]))
    counter.report("the images given")
    n_patches = len(patch_boxes(1, 1))
    feats = {
        t: np.concatenate(v) if v else np.zeros((0, n_patches, extractor.dims[t]), np.float32)
        for t, v in parts.items()
    }
    return feats, [(Path(p), reason) for p, reason in counter.skipped]


def resolve_device(device: str) -> torch.device:
    """``cuda:LOCAL_RANK`` when asked or (``auto``) available, else the CPU."""
    if device not in DEVICES:
        raise ConfigError(f"device must be one of {DEVICES}, not {device!r}")
    if device == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        gpu, count = local_rank(), torch.cuda.device_count()
        if gpu >= count:
            raise ConfigError(
                f"LOCAL_RANK={gpu} but this machine shows {count} GPU(s): start at most {count} processes per "
                "machine (torchrun --nproc_per_node), or use --device cpu"
            )
        return torch.device("cuda", gpu)
    if device == "cuda":
        raise ConfigError("--device cuda but no CUDA GPU is visible: use --device cpu or --device auto")
    return torch.device("cpu")


def weights_identity(weights: str | os.PathLike | None) -> tuple[str | None, str | None]:
    """``(absolute path, sha256)`` of a weights file (None, None for the bundled weights).

    The hash tells whether ranks on different machines used the same weights; the absolute path is what an
    index records so that its queries are described by the same network, whatever the working directory.
    """
    if weights is None:
        return None, None
    if str(weights) == "random":
        raise ConfigError(
            "weights='random' differs in every process, so features of separate processes cannot be combined: "
            "save the state_dict once (torch.save(model.state_dict(), FILE)) and give FILE"
        )
    path = Path(weights).resolve()
    try:
        with open(path, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError as exc:
        raise DataError(
            f"cannot read weights file {path} ({exc.strerror}): give a local state_dict file"
        ) from exc
    return str(path), digest


def _run_id(
    images: Sequence[str], backbone: str, weights_sha256: str | None, batch_size: int, world: int
) -> str:
    """What makes features combinable: same image list, network, weights, grouping and number of ranks."""
    key = {
        "images": list(images),
        "backbone": backbone,
        "weights_sha256": weights_sha256,
        "batch_size": batch_size,
        "world_size": world,
    }
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()


def extract_shard(
    images: str | os.PathLike,
    out: str | os.PathLike,
    *,
    rank: int | None = None,
    world_size: int | None = None,
    backbone: str = DEFAULT_BACKBONE,
    weights: str | os.PathLike | None = None,
    batch_size: int = DEFAULT_BATCH_IMAGES,
    device: str = "auto",
    progress: bool = True,
    on_bad_file: str = "skip",
) -> dict:
    """Extract rank ``rank``'s share of the folder ``images`` into ``out`` (one file) and return a summary.

    ``rank`` / ``world_size`` default to the RANK / WORLD_SIZE that torchrun sets (a world of one without them),
    so the same call runs alone, in-process per rank (tests), or as one of many torchrun workers. Unreadable
    images are skipped and listed (``on_bad_file="fail"``: the first one stops the rank with its `DataError`). The
    manifest records the folder as an absolute path, so `build --features` may run from any directory.
    """
    env = env_rank()
    rank = env[0] if rank is None else rank
    world_size = env[1] if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} of world size {world_size}: need 0 <= rank < world size")
    check_positive("batch size (images per forward pass)", batch_size)
    check_on_bad_file(on_bad_file)
    dest = Path(out)
    if dest.exists() and not dest.is_dir():
        raise UserError(f"{dest} exists and is not a folder: give a folder for the feature files")
    weights_path, weights_sha256 = weights_identity(weights)
    root = Path(images)
    files = list_images(root)
    if not files:
        raise UserError(f"no image files in {root}: give a folder holding .jpg/.png images")
    rel = [p.relative_to(root).as_posix() for p in files]
    run = _run_id(rel, backbone, weights_sha256, batch_size, world_size)
    start, stop = shard_bounds(len(files), batch_size, rank, world_size)
    head = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "run": run,
        "world_size": world_size,
        "images": len(files),
        "batch_size": batch_size,
        "backbone": backbone,
        "weights": weights_path,
        "weights_sha256": weights_sha256,
    }
    began = time.perf_counter()
    dev = resolve_device(device)
    # the network is loaded before anything is written, so a bad backbone or weights file leaves no files
    extractor = load_backbone(backbone, weights_path, device=dev) if start < stop else None
    if rank == 0:
        manifest = {
            **head,
            "root": str(root.absolute()),
            "files": [shard_file_name(r, world_size) for r in range(world_size)],
        }
        atomic_write_bytes(
            dest / MANIFEST, lambda fh: fh.write((json.dumps(manifest, indent=1) + "\n").encode())
        )
    feats: dict[str, np.ndarray] = {}
    skipped: list[tuple[Path, str]] = []
    if extractor is not None:
        feats, skipped = extract_batched(
            extractor, files[start:stop], batch_size, progress and rank == 0, on_bad=on_bad_file
        )
    seconds = round(time.perf_counter() - began, 3)
    meta = {
        **head,
        "rank": rank,
        "start": start,
        "stop": stop,
        "device": dev.type,
        "threads": torch.get_num_threads(),
        "paths": rel[start:stop],
        "skipped": [[p.relative_to(root).as_posix(), reason] for p, reason in skipped],
        "seconds": seconds,
    }
    arrays = {f"feat_{t}": v for t, v in feats.items()}
    name = shard_file_name(rank, world_size)
    blob = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)  # UTF-8: a quarter of a numpy str array
    atomic_write_bytes(dest / name, lambda fh: np.savez(fh, meta=blob, **arrays))
    return {
        "file": str(dest / name),
        "rank": rank,
        "world_size": world_size,
        "images": stop - start - len(skipped),
        "skipped": [str(p) for p, _ in skipped],
        "device": str(dev),
        "seconds": seconds,
    }


@dataclass(frozen=True)
class ExtractedFeatures:
    """A whole extract run reassembled: features of the readable images in listing order, and the rest."""

    features: dict[str, np.ndarray]
    images: list[str]
    skipped: list[tuple[str, str]]
    backbone: str
    weights: str | None
    seconds: float | None = None  # the ranks' extraction times summed (None: a rank file does not say)


def read_features(directory: str | os.PathLike) -> ExtractedFeatures:
    """Gather the shard files of ``directory`` in rank order, checking that they make one complete run."""
    root = Path(directory)
    if not root.is_dir():
        raise DataError(
            f"feature folder {root} not found: write it with `imagexplore retrieve extract --out {root}`"
        )
    manifest = read_manifest(root)
    world = manifest["world_size"]
    expected = manifest["files"]
    strays = sorted(p.name for p in root.iterdir() if SHARD_FILE.fullmatch(p.name) and p.name not in expected)
    if strays:
        raise DataError(
            f"{root} holds feature files of another extract run ({', '.join(strays[:3])}; {MANIFEST} says "
            f"{world} ranks): extract each run into an empty folder, or remove those files"
        )
    missing = [(r, name) for r, name in enumerate(expected) if not (root / name).is_file()]
    if missing:
        r, name = missing[0]
        raise DataError(
            f"{root} lacks {name} ({len(missing)} of {world} rank files missing, first rank {r}): that rank did "
            f"not finish; rerun it alone (RANK={r} WORLD_SIZE={world} imagexplore retrieve extract ...) or the run"
        )
    shards = [_read_shard(root / name, r, manifest) for r, name in enumerate(expected)]
    paths = [p for meta, _ in shards for p in meta["paths"]]
    if len(set(paths)) != len(paths):
        dup = next(p for p, n in Counter(paths).items() if n > 1)
        raise DataError(
            f"{root}: image {dup} is in two rank files: extract the run again into an empty folder"
        )
    bounds = [(meta["start"], meta["stop"]) for meta, _ in shards]
    covers = bounds[0][0] == 0 and bounds[-1][1] == manifest["images"]
    if (
        not covers
        or any(a[1] != b[0] for a, b in zip(bounds, bounds[1:]))
        or len(paths) != manifest["images"]
    ):
        raise DataError(
            f"the rank files in {root} do not cover the {manifest['images']} images once each "
            f"(positions {bounds}): extract the run again into an empty folder"
        )
    if (
        _run_id(paths, manifest["backbone"], manifest["weights_sha256"], manifest["batch_size"], world)
        != (manifest["run"])
    ):
        raise DataError(
            f"the rank files in {root} do not reassemble the image list of {MANIFEST}: extract the run again"
        )
    types = [sorted(arrays) for _, arrays in shards if arrays]
    if not types:
        first = next(reason for meta, _ in shards for _, reason in meta["skipped"])
        raise DataError(f"none of the {len(paths)} images could be read (first: {first})")
    if any(t != types[0] for t in types):
        raise DataError(
            f"the rank files in {root} hold different feature types {types}: extract the run again"
        )
    feats = {t: np.concatenate([arrays[t] for _, arrays in shards if arrays]) for t in types[0]}
    base = Path(manifest["root"])
    kept, skipped = [], []
    for meta, _ in shards:
        bad = dict(meta["skipped"])
        kept += [str(base / p) for p in meta["paths"] if p not in bad]
        skipped += [(str(base / p), reason) for p, reason in meta["skipped"]]
    used = [meta for meta, _ in shards if meta["paths"]]
    devices = sorted(
        {m["device"] if m["device"] != "cpu" else f"cpu with {m['threads']} thread(s)" for m in used}
    )
    if len(devices) > 1:
        log.warning(
            "features in %s were extracted on %s: valid, but only a run on one kind of device (and, on CPUs, "
            "one thread count) gives bit-identical features",
            root,
            ", ".join(devices),
        )
    times = [meta.get("seconds") for meta, _ in shards]
    seconds = None
    if all(isinstance(t, int | float) and not isinstance(t, bool) for t in times):
        seconds = round(float(sum(times)), 3)
    return ExtractedFeatures(feats, kept, skipped, manifest["backbone"], manifest["weights"], seconds)


def read_manifest(root: Path) -> dict:
    """The manifest of a `retrieve extract` folder, checked (format, keys, version) before any shard is read."""
    path = root / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(
            f"{root} has no {MANIFEST}: it is not the output of `imagexplore retrieve extract`, or rank 0 never "
            "started; run the extraction (again)"
        ) from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is unreadable ({exc}): run the extraction again") from exc
    keys = {
        "format",
        "version",
        "run",
        "world_size",
        "images",
        "batch_size",
        "backbone",
        "weights",
        "root",
        "files",
    }
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME or not keys <= set(manifest):
        raise DataError(
            f"{path} is not a manifest of `imagexplore retrieve extract`: run the extraction again"
        )
    if manifest["version"] != FORMAT_VERSION:
        raise DataError(
            f"{path} is feature format version {manifest['version']!r}; this imagexplore reads version "
            f"{FORMAT_VERSION}: extract again with this release"
        )
    return manifest


def _read_shard(path: Path, rank: int, manifest: dict) -> tuple[dict, dict[str, np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(npz["meta"].tobytes())
            arrays = {name.removeprefix("feat_"): npz[name] for name in npz.files if name.startswith("feat_")}
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path} is not a readable feature file ({exc}): rerun rank {rank}") from exc
    if meta.get("run") != manifest["run"]:
        why = next(
            (
                f"{key} {meta.get(key)!r}, not {manifest[key]!r}"
                for key in ("backbone", "weights_sha256", "batch_size", "images")
                if meta.get(key) != manifest[key]
            ),
            "another image list",
        )
        raise DataError(
            f"{path.name} comes from another extract run than {MANIFEST} ({why}): extract each run into an "
            "empty folder, or rerun that rank"
        )
    n_kept = len(meta["paths"]) - len(meta["skipped"])
    if meta.get("rank") != rank or any(len(v) != n_kept for v in arrays.values()) or (n_kept and not arrays):
        raise DataError(f"{path} does not hold rank {rank}'s {n_kept} feature rows: rerun rank {rank}")
    return meta, arrays
