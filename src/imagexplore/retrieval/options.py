"""Defaults and input checks of the retrieval commands, in a module that imports nothing heavy.

`imagexplore.retrieval.cli` builds its parser from these (so `imagexplore --help` never loads torch or faiss),
and runs the checks before any work: outputs and inputs are refused in a second, not after the feature pass.
The library modules import the same constants from here.
"""

from __future__ import annotations

import os
from pathlib import Path

from imagexplore.errors import ConfigError, DataError, UserError
from imagexplore.outputs import check_out_dir, check_out_file  # noqa: F401 - check_out_file: for the CLI

DEFAULT_BACKBONE = "efficientnet-lite0"
# One image per forward pass: fastest on CPU (Lite0, 2 cores: 14 patches a pass beat 56 or 112) and it makes
# features independent of any grouping. GPUs want larger batches (--batch-size).
DEFAULT_BATCH_IMAGES = 1
DEFAULT_CHUNK_IMAGES = 4096  # images per checkpointed chunk of a resumable build (`resumable`)
DEVICES = ("auto", "cpu", "cuda")
OFFICIAL = ("holidays", "ukbench", "oxford5k", "paris6k", "roxford5k", "rparis6k")
DATASETS = OFFICIAL + ("shapes", "photo-copies")
PATCH_SETS = (1, 5, 14)  # whole image; + 2×2 grid; + 3×3 grid (the default 14 patches)
# The CNNs downsample by 32: a smaller patch input leaves no feature map to pool.
MIN_PATCH_SIZE = 32
INDEX_FORMAT_FILE = "format.json"


def check_positive(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int of at least ``minimum`` (bools and floats refused): the library's range check."""
    if isinstance(value, bool) or not isinstance(value, int) and not hasattr(value, "__index__"):
        raise ConfigError(f"{name} must be an integer of at least {minimum}, not {value!r}")
    if int(value) < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def is_index_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / INDEX_FORMAT_FILE).is_file()


def check_index_dir(path: str | os.PathLike, flag: str = "--index") -> Path:
    """An existing index directory (what `retrieve build` / `merge` wrote), checked without reading it."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{flag} {p}: index not found; build one with `imagexplore retrieve build --out {p}`")
    if not p.is_dir():
        raise DataError(
            f"{flag} {p} is a file, not an index directory (the --out of `imagexplore retrieve build`)"
        )
    if not is_index_dir(p):
        raise DataError(
            f"{flag} {p} is not a DeepIndex directory (it has no {INDEX_FORMAT_FILE}): give the --out of "
            "`imagexplore retrieve build` or `retrieve merge`"
        )
    return p


def check_index_out(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Where an index will be written: a new path, an empty folder or an index (replaced); nothing else."""
    p = check_out_dir(path, flag)
    if p.is_dir() and not is_index_dir(p) and any(p.iterdir()):
        raise UserError(
            f"{flag} {p} exists and is not a DeepIndex directory (only an index or an empty folder is "
            "replaced): choose another path or remove it"
        )
    return p


def checkpoint_dir(out: str | os.PathLike) -> Path:
    """Where ``retrieve build --images ... --out OUT`` keeps its chunks of features until OUT is saved:
    ``OUT.partial`` beside it."""
    p = Path(os.path.abspath(out))
    return p.with_name(p.name + ".partial")


def check_feature_out(path: str | os.PathLike, flag: str = "--out") -> Path:
    """The folder of `retrieve extract`: new or a folder (an earlier run there is replaced rank by rank)."""
    return check_out_dir(path, flag)


def check_folder(path: str | os.PathLike, flag: str, what: str = "images") -> Path:
    """An existing folder (its content is checked by the caller)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{flag} {p} not found: give a folder of {what}")
    if not p.is_dir():
        raise DataError(f"{flag} {p} is a file, not a folder: give a folder of {what}")
    return p


def check_image_folder(path: str | os.PathLike, flag: str = "--images") -> Path:
    """An existing folder holding at least one image file (listed as `Index.build` lists it)."""
    from imagexplore.data.images import list_images

    p = check_folder(path, flag)
    if not list_images(p):
        raise DataError(f"{flag} {p}: no image files in it (.jpg, .png, ... searched recursively)")
    return p


def check_weights(weights: str | os.PathLike | None, flag: str = "--weights") -> None:
    """A local weights file that exists (``random`` is the untrained network, allowed where it is)."""
    if weights is None or str(weights) == "random":
        return
    p = Path(weights)
    if not p.is_file():
        raise DataError(
            f"{flag} {p}: {'is a folder' if p.is_dir() else 'not found'}; give a local state_dict file"
        )


def image_files(paths, what: str) -> list[Path]:
    """A folder (listed recursively) or a list of files; nothing to index is a `UserError`."""
    from imagexplore.data.images import list_images

    if isinstance(paths, str | os.PathLike):
        folder = Path(paths)
        files = list_images(folder)
        if not files:
            raise UserError(f"no image files in {folder}: give a folder holding .jpg/.png images")
        return files
    files = [Path(p) for p in paths]
    if not files:
        raise UserError(f"no {what} given: pass at least one image path")
    return files
