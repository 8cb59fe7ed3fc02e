"""HED-style augmentation of an edge training sample: rotation, horizontal flip, scale, then a random crop.

HED built its BSDS training set offline: 16 rotations (every 22.5°; for angles that are not a multiple of 90°
the rotated image was cropped to the largest axis-aligned rectangle inside it, so no empty corners appear),
each flipped or not, at scales 0.5, 1 and 1.5. We draw one of those combinations per item online, which gives
the same distribution without storing 96 copies. Image, annotator maps and a precomputed detector response go
through one geometric transform (rotation + inner-rectangle crop + scale in a single resampling), so they stay
aligned to the pixel.

Boundary maps must stay thin and binary. Nearest-neighbour resampling of a one-pixel line breaks it into dashes
under rotation and downscaling, bilinear resampling blurs it into a soft band; so boundary planes are resampled
bilinearly, every pixel the line touches (value > 0) is kept — a connected band about two pixels wide — and the
band is thinned back to a one-pixel, 8-connected skeleton (`skimage.morphology.thin`). The value of a soft plane
(HED's fraction-of-annotators maps) on the skeleton is the largest value within one source pixel. Sparse detector
responses (Canny's ridges) are treated the same way; dense ones (Sobel, HED, SE) bilinearly. Multiples of 90° at
scale 1 use exact array rotations instead.

The crop pads images smaller than ``crop_size`` (bottom/right, image 0) and returns a ``valid`` mask that is
False on the padding, so the targets there become 255 (ignored). Every random draw comes from the given numpy
Generator, so an item is a pure function of its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import thin

from imagexplore.errors import ConfigError

HED_ANGLES: tuple[float, ...] = tuple(22.5 * k for k in range(16))
HED_SCALES: tuple[float, ...] = (0.5, 1.0, 1.5)


@dataclass(frozen=True)
class AugmentConfig:
    """One angle (degrees, counter-clockwise), a flip with probability 1/2 and one scale, drawn uniformly."""

    angles: tuple[float, ...] = HED_ANGLES
    flip: bool = True
    scales: tuple[float, ...] = HED_SCALES

    def __post_init__(self):
        try:
            angles = tuple(float(a) for a in self.angles)
            scales = tuple(float(s) for s in self.scales)
        except (TypeError, ValueError):
            raise ConfigError(
                f"angles and scales must be lists of numbers, got {self.angles!r} and {self.scales!r}"
            ) from None
        if not angles or not scales or min(scales) <= 0:
            raise ConfigError(f"need at least one angle and one positive scale, got {angles} and {scales}")
        object.__setattr__(self, "angles", angles)
        object.__setattr__(self, "scales", scales)
        object.__setattr__(self, "flip", bool(self.flip))


@dataclass
class Augmented:
    image: np.ndarray  # float32 3×h×w
    annotators: np.ndarray  # A×h×w, the input's dtype (bool, or float fractions)
    response: np.ndarray | None  # float32 h×w
    valid: np.ndarray  # bool h×w, False on padding


def inner_rectangle(h: float, w: float, angle: float) -> tuple[float, float]:
    """(height, width) of the largest axis-aligned rectangle inside an h×w rectangle rotated by ``angle`` (rad).

    With s = |sin|, c = |cos|, a centred i_h×i_w rectangle fits when i_w c + i_h s ≤ w and i_w s + i_h c ≤ h.
    The best area has either one constraint active (then the area-optimal point of that line, i_w = w/2c,
    i_h = w/2s — thin rectangles at large angles) or both (the corners touch all four sides).
    """
    s, c = abs(math.sin(angle)), abs(math.cos(angle))
    if s < 1e-9:
        return h, w
    if c < 1e-9:
        return w, h
    candidates = []
    ih, iw = w / (2 * s), w / (2 * c)  # only the "width" side active
    if iw * s + ih * c <= h + 1e-9:
        candidates.append((ih, iw))
    ih, iw = h / (2 * c), h / (2 * s)  # only the "height" side active
    if iw * c + ih * s <= w + 1e-9:
        candidates.append((ih, iw))
    det = c * c - s * s
    if abs(det) > 1e-9:
        iw, ih = (w * c - h * s) / det, (h * c - w * s) / det
        if iw > 0 and ih > 0:
            candidates.append((ih, iw))
    return max(candidates, key=lambda r: r[0] * r[1])


def _warp(planes: np.ndarray, matrix: np.ndarray, offset: np.ndarray, shape, order: int) -> np.ndarray:
    """Resample n×H×W planes: output pixel p reads input ``matrix @ p + offset`` (row, col; centres integer)."""
    m3 = np.eye(3)
    m3[1:, 1:] = matrix
    return ndi.affine_transform(
        planes, m3, offset=(0.0, *offset), output_shape=(len(planes), *shape), order=order, mode="nearest"
    )


def _warp_thin(planes: np.ndarray, matrix: np.ndarray, offset: np.ndarray, shape) -> np.ndarray:
    """Resample thin line maps (bool or values ≥ 0) so that the lines stay one pixel wide and connected."""
    support = _warp((planes > 0).astype(np.float32), matrix, offset, shape, order=1) > 1e-3
    skeleton = np.stack([thin(p) for p in support])
    if planes.dtype == bool:
        return skeleton
    values = _warp(ndi.maximum_filter(planes, size=(1, 3, 3)), matrix, offset, shape, order=0)
    return np.where(skeleton, values, 0).astype(planes.dtype)


def _geometric(image, annotators, response, angle_deg, scale, sparse_response):
    """Rotate by ``angle_deg``, crop to the inner rectangle and scale, in one resampling per map."""
    quarter = angle_deg / 90.0
    if scale == 1.0 and quarter == round(quarter):
        k = int(round(quarter)) % 4
        rot = (lambda a: np.rot90(a, k, axes=(-2, -1))) if k else (lambda a: a)
        return rot(image), rot(annotators), None if response is None else rot(response)
    h, w = image.shape[-2:]
    theta = math.radians(angle_deg)
    ih, iw = inner_rectangle(h, w, theta)
    out_shape = (max(1, int(math.floor(ih * scale))), max(1, int(math.floor(iw * scale))))
    cos, sin = math.cos(theta), math.sin(theta)
    # (row, col) with rows pointing down: a counter-clockwise rotation on screen
    matrix = np.array([[cos, sin], [-sin, cos]]) / scale
    centre_in = np.array([(h - 1) / 2, (w - 1) / 2])
    centre_out = np.array([(out_shape[0] - 1) / 2, (out_shape[1] - 1) / 2])
    offset = centre_in - matrix @ centre_out
    src = image
    if scale < 1:  # anti-alias before minifying, as skimage's rescale does
        sigma = (1 / scale - 1) / 2
        src = ndi.gaussian_filter(image, (0, sigma, sigma), mode="nearest")
    img = _warp(src, matrix, offset, out_shape, order=1)
    ann = _warp_thin(annotators, matrix, offset, out_shape)
    resp = None
    if response is not None:
        resp = (
            _warp_thin(response[None], matrix, offset, out_shape)[0]
            if sparse_response
            else _warp(response[None], matrix, offset, out_shape, order=1)[0]
        )
    return img, ann, resp


def random_crop(
    image: np.ndarray,
    annotators: np.ndarray,
    response: np.ndarray | None,
    crop_size: int,
    rng: np.random.Generator,
) -> Augmented:
    """A ``crop_size``² window at a random place; smaller images are padded (image 0, valid False)."""
    h, w = image.shape[-2:]
    ph, pw = max(crop_size - h, 0), max(crop_size - w, 0)
    valid = np.ones((h, w), bool)
    if ph or pw:
        pad = ((0, ph), (0, pw))
        image = np.pad(image, ((0, 0), *pad))
        annotators = np.pad(annotators, ((0, 0), *pad))
        response = None if response is None else np.pad(response, pad)
        valid = np.pad(valid, pad)
    top = int(rng.integers(0, image.shape[-2] - crop_size + 1))
    left = int(rng.integers(0, image.shape[-1] - crop_size + 1))
    win = (slice(top, top + crop_size), slice(left, left + crop_size))
    return Augmented(
        image[(slice(None), *win)],
        annotators[(slice(None), *win)],
        None if response is None else response[win],
        valid[win],
    )


def augment_edges(
    image: np.ndarray,
    annotators: np.ndarray,
    response: np.ndarray | None = None,
    config: AugmentConfig | None = None,
    *,
    rng: np.random.Generator,
    crop_size: int | None = None,
    sparse_response: bool = False,
) -> Augmented:
    """Augment one sample (image float 3×H×W, annotators A×H×W, response H×W or None) jointly.

    ``config`` None: no rotation/flip/scale (only the crop, if any). Draw order: angle, flip, scale, crop.
    """
    image = np.asarray(image, np.float32)
    annotators = np.asarray(annotators)
    if response is not None:
        response = np.asarray(response, np.float32)
    if config is not None:
        angle = config.angles[int(rng.integers(len(config.angles)))]
        flip = config.flip and bool(rng.integers(2))
        scale = config.scales[int(rng.integers(len(config.scales)))]
        image, annotators, response = _geometric(image, annotators, response, angle, scale, sparse_response)
        if flip:
            image, annotators = image[..., ::-1], annotators[..., ::-1]
            response = None if response is None else response[..., ::-1]
    if crop_size:
        out = random_crop(image, annotators, response, int(crop_size), rng)
    else:
        out = Augmented(image, annotators, response, np.ones(image.shape[-2:], bool))
    return Augmented(
        np.ascontiguousarray(out.image),
        np.ascontiguousarray(out.annotators),
        None if out.response is None else np.ascontiguousarray(out.response),
        out.valid,
    )


def check_crop_size(crop_size) -> int | None:
    """``crop_size`` as a positive int or None; anything else is a ConfigError."""
    if crop_size is None:
        return None
    if isinstance(crop_size, bool) or not isinstance(crop_size, int) or crop_size < 1:
        raise ConfigError(f"crop_size must be a positive int, got {crop_size!r}")
    return crop_size
