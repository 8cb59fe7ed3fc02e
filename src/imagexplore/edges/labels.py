"""Training labels for edge detection: annotator consensus, RDS relaxed labels, detectors, mask boundaries.

Encoding (what `imagexplore.edges.losses` is written against): a training target is uint8 (S+1)×H×W, planes
0..S−1 for the S side outputs and plane S for the fusion; 1 = edge, 0 = non-edge, 255 = ignored.

Relaxed deep supervision (thesis ch. 3, docs/chapter3.md): side output k ignores the pixels where a simple
detector fires (response > c_k × mean response, dilated) but the ground truth has no edge — hard false positives
it should not be punished for. Small c_k (the lower layers) relax more pixels, large c_k (the deeper layers) fewer.

Detectors map an RGB float [0, 1] H×W×3 image to a float32 H×W response ≥ 0:

- ``canny`` (default, no weights): the colour gradient magnitude (Gaussian σ = 2, then Sobel; the strongest
  channel) kept on the ridges that survive Canny's non-maximum suppression, *without* Canny's hysteresis.
  Hysteresis keeps only strong edges, which all lie far above c_k × mean, so every side would get nearly the
  same relaxed set (skimage's astronaut at half size: 13.8 % of pixels for c = 0.5 … 1.5, 12.7 % at 2.5); the
  NMS ridges keep Canny's thin, localised contours and their strengths, so the c_k pick clearly nested subsets
  (19.9 % → 12.9 % from c = 0.5 to 2.5).
- ``sobel``: the dense Sobel gradient magnitude (strongest channel), no smoothing.
- ``hed``: the bundled pretrained HED's fused probability (`imagexplore.edges.pretrained`), loaded once per process.
- ``se``: OpenCV's Structured Edge detector (``cv2.ximgproc``, from opencv-contrib-python-headless) with the model
  file the user supplies (``model: PATH``, e.g. OpenCV's ``model.yml.gz``) — the detector of the RDS release.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import disk

from imagexplore.errors import ConfigError, DataError

IGNORE = 255
RDS_COEFFICIENTS: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 2.5)
RELEASE_MIN_ANNOTATORS = 3  # the RDS release: an edge is a pixel marked by at least 3 annotators
DEFAULT_FRACTION = 0.5  # soft (fraction-of-annotators) maps: RCF's η for BSDS


def _structure(radius: int) -> np.ndarray:
    return disk(int(radius)).astype(bool)


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ConfigError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------- consensus
def consensus_labels(
    annotators: np.ndarray,
    min_annotators: int | None = None,
    fraction: float | None = None,
    dilate: int = 0,
    ignore_partial: bool = True,
) -> np.ndarray:
    """The fusion label map (uint8 H×W: 1 edge, 0 non-edge, 255 ignored) from the annotators' boundaries.

    ``annotators`` is bool A×H×W (one plane per annotator; H×W = one annotator) or a float plane of fractions
    of annotators in [0, 1] (the HED-BSDS PNGs), which can only be thresholded by ``fraction``.
    Threshold: ``min_annotators`` (the release: 3) or ``fraction`` η (HED/RCF: a pixel is an edge when at least
    η of the annotators marked it); neither given → 3 annotators for bool maps, η = 0.5 for fraction maps.
    A count above A is lowered to A, so a single-annotator dataset (mask boundaries, a PNG) keeps its map.
    ``dilate`` grows the edge set by a disk of that radius (the release dilates its labels). Pixels that some
    annotators marked but fewer than the threshold become 255 with ``ignore_partial`` (RCF: neither call them
    edges nor punish the network for them), else 0.
    """
    a = np.asarray(annotators)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or 0 in a.shape:
        raise ValueError(f"annotators must be A×H×W with A >= 1, got shape {a.shape}")
    if min_annotators is not None and fraction is not None:
        raise ConfigError("set min_annotators or fraction for the annotator consensus, not both")
    if fraction is not None and not (isinstance(fraction, int | float) and 0 < fraction <= 1):
        raise ConfigError(f"fraction must be a number in (0, 1], got {fraction!r}")
    dilate = _check_int("gt_dilate", dilate, 0)
    if a.dtype == bool:
        votes = a.sum(0, dtype=np.int32)
        if fraction is not None:
            need = max(1, math.ceil(fraction * len(a) - 1e-9))
        else:
            need = _check_int(
                "min_annotators", RELEASE_MIN_ANNOTATORS if min_annotators is None else min_annotators, 1
            )
        edge = votes >= min(need, len(a))
    else:
        if min_annotators is not None:
            raise ConfigError(
                "min_annotators needs one map per annotator; this dataset gives fractions of annotators: "
                "set fraction instead"
            )
        votes = a.astype(np.float32).mean(0)
        # 8-bit fractions are k/255: a tolerance of half a grey level keeps e.g. 3/5 = 153/255 ≥ 0.6 exact
        edge = votes >= (DEFAULT_FRACTION if fraction is None else fraction) - 0.5 / 255
    if dilate:
        edge = ndi.binary_dilation(edge, _structure(dilate))
    out = edge.astype(np.uint8)
    if ignore_partial:
        out[(votes > 0) & ~edge] = IGNORE
    return out


# --------------------------------------------------------------------------------------------- detectors
def _gradient_magnitude(image: np.ndarray, sigma: float) -> np.ndarray:
    """Per-pixel maximum over channels of the Sobel magnitude of the (optionally Gaussian-smoothed) image."""
    img = np.asarray(image, np.float32)
    if sigma > 0:
        img = ndi.gaussian_filter(img, (sigma, sigma, 0), mode="nearest")
    gy = ndi.correlate1d(
        ndi.correlate1d(img, [-1, 0, 1], axis=0, mode="nearest"), [1, 2, 1], axis=1, mode="nearest"
    )
    gx = ndi.correlate1d(
        ndi.correlate1d(img, [-1, 0, 1], axis=1, mode="nearest"), [1, 2, 1], axis=0, mode="nearest"
    )
    return np.sqrt(gx * gx + gy * gy).max(axis=2)


def _check_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"detectors take an RGB H×W×3 image, got shape {img.shape}")
    if not np.issubdtype(
        img.dtype, np.floating
    ):  # a uint8 image cast to 0..255 floats would be read as [0, 1]
        raise ValueError(f"detectors take a float RGB image in [0, 1], got {img.dtype} (divide uint8 by 255)")
    return img.astype(np.float32, copy=False)


def canny_response(image: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Colour gradient magnitude on Canny's non-maximum-suppressed ridges (no hysteresis; module docstring)."""
    from skimage.feature import canny

    img = _check_image(image)
    mag = _gradient_magnitude(img, sigma)
    # NMS per channel (zero thresholds = every local maximum); a colour edge is a ridge in some channel
    ridges = np.zeros(mag.shape, bool)
    for c in range(3):
        ridges |= canny(img[..., c], sigma=sigma, low_threshold=0.0, high_threshold=0.0)
    return np.where(ridges, mag, 0.0).astype(np.float32)


def sobel_response(image: np.ndarray) -> np.ndarray:
    """Dense Sobel gradient magnitude (strongest channel)."""
    return _gradient_magnitude(_check_image(image), 0.0).astype(np.float32)


@functools.lru_cache(maxsize=2)
def _hed_model(device: str):
    from imagexplore.edges.pretrained import load_pretrained

    return load_pretrained("hed-bsds500").to(device).eval()


def hed_response(image: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Fused edge probability of the bundled pretrained HED (weights loaded once per process and device)."""
    from imagexplore.edges.pretrained import predict_edges

    return np.asarray(predict_edges(_hed_model(str(device)), _check_image(image), device), np.float32)


@functools.lru_cache(maxsize=2)
def _se_model(path: str):
    import cv2

    return cv2.ximgproc.createStructuredEdgeDetection(path)


def se_model(model: str | None):
    """The OpenCV Structured Edges detector for the user's model file; what is missing → a clear error."""
    if not model:
        raise ConfigError(
            "detector 'se' needs the Structured Edges model file: set detector_options.model to OpenCV's "
            "model.yml.gz (from opencv_extra's ximgproc testdata)"
        )
    path = Path(model).expanduser()
    if not path.is_file():
        raise DataError(f"SE model file {path} not found: give the path of OpenCV's model.yml.gz")
    try:
        import cv2

        cv2.ximgproc  # noqa: B018 - present only in the contrib build
    except (ImportError, AttributeError):
        raise ConfigError(
            "detector 'se' needs OpenCV's contrib modules: pip install opencv-contrib-python-headless"
        ) from None
    return _se_model(str(path.resolve()))


def se_response(image: np.ndarray, model: str | None = None) -> np.ndarray:
    """Structured Edges (Dollár & Zitnick) through OpenCV's ximgproc, with the user's model file."""
    img = np.ascontiguousarray(_check_image(image))
    return np.asarray(se_model(model).detectEdges(img), np.float32)


@dataclass(frozen=True)
class Detector:
    """A registered detector: ``sparse`` responses are thin ridges (augmented like boundaries, not bilinearly);
    ``expensive`` ones are worth caching (in memory, or on disk under a cache folder)."""

    fn: Callable[..., np.ndarray]
    sparse: bool = False
    expensive: bool = False


DETECTORS: dict[str, Detector] = {
    "canny": Detector(canny_response, sparse=True),
    "sobel": Detector(sobel_response),
    "hed": Detector(hed_response, expensive=True),
    "se": Detector(se_response, expensive=True),
}


def make_detector(name: str, options: dict | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """The response function of detector ``name`` with its options bound; bad names/keys raise ConfigError."""
    if name not in DETECTORS:
        raise ConfigError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
    fn = DETECTORS[name].fn
    options = dict(options or {})
    valid = [p for p in inspect.signature(fn).parameters if p != "image"]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {unknown} for detector {name!r}; valid: {', '.join(valid) or 'none'}"
        )
    if name == "se":
        se_model(options.get("model"))  # fail now, not in a DataLoader worker
    return functools.partial(fn, **options)


# ----------------------------------------------------------------------------------------- relaxed labels
def relaxed_labels(
    gt: np.ndarray,
    response: np.ndarray,
    coefficients: Sequence[float | None] = RDS_COEFFICIENTS,
    dilate: int = 1,
    mean: float | None = None,
    within: int | None = None,
) -> np.ndarray:
    """Side-output label maps (uint8 S×H×W): GT edges 1; relaxed pixels 255; the rest 0.

    ``gt`` is the consensus map (uint8 with 1 / 0 / 255, or bool); its 255 pixels stay ignored on every side.
    Side k relaxes ``response > c_k × mean`` dilated by a disk of radius ``dilate``, minus the GT edges; a
    coefficient None gives that side the plain ground truth (the "relaxed on a subset of sides" ablation).
    ``mean`` defaults to the response's own mean; pass the un-augmented image's mean so that rotation, scaling,
    cropping and padding do not move the thresholds.
    ``within`` (our option, not the release's): relax only pixels at most that many pixels from a GT edge, so
    detector responses far from every edge (texture, object interiors) stay negatives; None = anywhere (the
    release). docs/chapter3.md ("RDS on real photos") measures why real textured photos need it.
    """
    gt = np.asarray(gt)
    gt = gt.astype(np.uint8) if gt.dtype == bool else gt
    response = np.asarray(response, np.float32)
    if gt.shape != response.shape or gt.ndim != 2:
        raise ValueError(f"gt {gt.shape} and response {response.shape} must be the same H×W")
    if len(coefficients) == 0:
        raise ConfigError("coefficients must list one value per side output (e.g. [0.5, 1, 1.5, 2, 2.5])")
    bad = [c for c in coefficients if c is not None and not (isinstance(c, int | float) and c > 0)]
    if bad:
        raise ConfigError(f"coefficients must be positive numbers (or null for no relaxation), got {bad}")
    dilate = _check_int("relax_dilate", dilate, 0)
    m = float(response.mean()) if mean is None else float(mean)
    c = np.array([np.inf if v is None else v for v in coefficients], np.float32)
    relaxed = response[None] > (c * m)[:, None, None]  # inf: nothing relaxed (also when m = 0)
    if dilate:
        relaxed = ndi.binary_dilation(relaxed, _structure(dilate)[None])
    if within is not None:
        within = _check_int("relax_within", within, 0)
        edge = gt == 1
        near = ndi.distance_transform_edt(~edge) <= within if edge.any() else np.zeros(gt.shape, bool)
        relaxed &= near[None]
    out = np.where(relaxed, np.uint8(IGNORE), np.uint8(0))
    out[:, gt == IGNORE] = IGNORE
    out[:, gt == 1] = 1
    return out


RELAX_MEANS = ("image", "nonzero")


def response_mean(response: np.ndarray, of: str = "image") -> float:
    """The mean the thresholds c_k × mean are relative to: over the whole image (the release), or over the
    pixels where the detector responds at all (``nonzero``: for sparse ridge detectors such as ``canny``, whose
    whole-image mean is small wherever ridges are rare, so that c_k × mean relaxes nearly every ridge)."""
    r = np.asarray(response, np.float32)
    if of == "image":
        return float(r.mean())
    if of == "nonzero":
        nz = r[r > 0]
        return float(nz.mean()) if nz.size else 0.0
    raise ConfigError(f"relax_mean must be one of {', '.join(RELAX_MEANS)}, got {of!r}")


def build_targets(
    annotators: np.ndarray,
    response: np.ndarray | None,
    coefficients: Sequence[float | None] = RDS_COEFFICIENTS,
    *,
    relaxed: bool = True,
    min_annotators: int | None = None,
    fraction: float | None = None,
    gt_dilate: int = 1,
    relax_dilate: int = 1,
    relax_within: int | None = None,
    ignore_partial: bool = True,
    mean: float | None = None,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """The training target uint8 (S+1)×H×W: S relaxed side planes + the consensus fusion plane (S = number of
    coefficients). ``relaxed=False`` is the HED baseline: every side plane equals the fusion plane (no
    response needed). ``valid`` (bool H×W, False on padding) sets 255 where the image is not real."""
    fuse = consensus_labels(annotators, min_annotators, fraction, gt_dilate, ignore_partial)
    if relaxed:
        if response is None:
            raise ValueError("relaxed labels need a detector response")
        sides = relaxed_labels(fuse, response, coefficients, relax_dilate, mean, relax_within)
    else:
        sides = np.broadcast_to(fuse, (len(coefficients), *fuse.shape))
    out = np.concatenate([sides, fuse[None]])
    if valid is not None:
        out[:, ~valid] = IGNORE
    return out


# ----------------------------------------------------------------------------------------- mask boundaries
def mask_boundaries(
    mask: np.ndarray, ignore_index: int | None = 255, width: int = 1, fill_ignore: bool = True
) -> np.ndarray:
    """Coarse edges (bool H×W) where the class changes between 4-neighbours — pre-training labels from masks.

    A change between rows r and r+1 (columns c and c+1) marks the pixel in row r (column c), so boundaries are
    one pixel wide; ``width`` > 1 dilates them by a disk of radius width − 1. Ignored pixels never create an
    edge themselves: with ``fill_ignore`` they first take the class of the nearest labelled pixel, so an ignore
    band between two regions (VOC's and the shapes world's 255 outlines) gives one boundary along its middle;
    without it, pairs involving an ignored pixel are skipped (the band then hides the boundary).
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be H×W, got shape {m.shape}")
    width = _check_int("width", width, 1)
    ign = m == ignore_index if ignore_index is not None else np.zeros(m.shape, bool)
    if fill_ignore and ign.any() and not ign.all():
        idx = ndi.distance_transform_edt(ign, return_distances=False, return_indices=True)
        m, ign = m[tuple(idx)], np.zeros(m.shape, bool)
    edge = np.zeros(m.shape, bool)
    edge[:-1] |= (m[:-1] != m[1:]) & ~ign[:-1] & ~ign[1:]
    edge[:, :-1] |= (m[:, :-1] != m[:, 1:]) & ~ign[:, :-1] & ~ign[:, 1:]
    if width > 1:
        edge = ndi.binary_dilation(edge, _structure(width - 1))
    return edge
