"""The shapes world: a procedural, deterministic dataset with the ground truth of every chapter.

A scene is a square canvas (32–256 px) with a background (flat, gradient, mottled noise or a crop of one of
scikit-image's bundled CC0 texture photos) and 1–4 shapes drawn in order (later ones occlude earlier ones).
From one scene the world yields a class label, a VOC-style mask, thin edges, several "human-like" edge
annotations, five captions, a sketch and a colour-coded label map; `views` re-renders a scene under
geometric and photometric changes (a retrieval group) and `person` draws a clothed figure with keypoints and
a parsing map. Everything is a pure function of (seed, index): every random draw comes from
``np.random.default_rng([seed, index, purpose])``, never from global state.

Rendering evaluates a signed distance function (SDF) per shape on the pixel grid of its bounding box and turns
it into anti-aliased coverage (``clip(0.5 - distance_in_pixels, 0, 1)``), so it is exact to a pixel, cheap
and vectorised. Views reuse the same code with the pixel grid mapped through an affine transform.
"""

from __future__ import annotations

import colorsys
import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from imagexplore.errors import ConfigError, DataError

SHAPE_CLASSES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "ring",
    "cross",
    "hexagon",
    "crescent",
)

# Named object colours (captions name them), saturated so that they stand out from the muted backgrounds.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.12, 0.12),
    "orange": (0.98, 0.55, 0.05),
    "yellow": (0.97, 0.88, 0.12),
    "green": (0.15, 0.68, 0.20),
    "cyan": (0.10, 0.80, 0.86),
    "blue": (0.12, 0.25, 0.86),
    "purple": (0.55, 0.18, 0.76),
    "pink": (0.98, 0.47, 0.72),
    "white": (0.97, 0.97, 0.97),
    "black": (0.07, 0.07, 0.07),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
_COLOUR_RGB = np.array(list(COLOURS.values()), np.float32)

BACKGROUNDS: tuple[str, ...] = ("flat", "gradient", "noise", "texture")
TEXTURE_NAMES: tuple[str, ...] = ("brick", "grass", "gravel")  # skimage.data textures (public domain / CC0)
PATTERNS: tuple[str, ...] = ("solid", "stripes", "dots")
SCENE_KEYS: tuple[str, ...] = (
    "image", "label", "mask", "edges", "annotators", "captions", "sketch", "label_rgb", "objects", "instances",
)  # fmt: skip

IGNORE_INDEX = 255
SPLIT_OFFSETS: dict[str, int] = {"train": 0, "val": 10_000_000, "test": 20_000_000}
MIN_SIZE, MAX_SIZE = 32, 256

# Person parsing labels (index = value in the parsing map) and pose keypoints (LSP order, person's left/right).
PARSING_LABELS: tuple[str, ...] = (
    "background", "skin", "hair", "upper_clothes", "lower_clothes", "shoes", "arms", "legs",
)  # fmt: skip
KEYPOINT_NAMES: tuple[str, ...] = (
    "head", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
)  # fmt: skip
SKELETON: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (2, 8), (5, 11), (8, 11), (8, 9), (9, 10),
    (11, 12), (12, 13),
)  # fmt: skip

# Purposes: the third word of every seed, so that e.g. the captions of scene i never shift its layout.
_LAYOUT, _VIEW, _ANNOT, _CAPTION, _SKETCH, _POSE, _OUTFIT, _PERSON_BG = range(8)


def _voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map (bit-interleaved class index); index 255 is VOC's cream 'ignore' colour."""
    idx = np.arange(n)
    pal = np.zeros((n, 3), np.int64)
    for j in range(8):
        for ch in range(3):
            pal[:, ch] |= ((idx >> (3 * j + ch)) & 1) << (7 - j)
    return pal.astype(np.uint8)


VOC_PALETTE = _voc_palette()


# ----------------------------------------------------------------------------------------------- textures
@functools.lru_cache(maxsize=1)
def _texture_bank() -> tuple[tuple[np.ndarray, ...], ...]:
    """Grey texture photos as float32 pyramids (512, 256, 128, 64 px), loaded once per process.

    Falls back to deterministic procedural noise if scikit-image's data files cannot be read.
    """
    bank = []
    for k, name in enumerate(TEXTURE_NAMES):
        try:
            import skimage.data

            tex = np.asarray(getattr(skimage.data, name)(), np.float32)
            if tex.ndim == 3:
                tex = tex.mean(axis=2)
            tex = tex[:512, :512] / 255.0
            if tex.shape != (512, 512):
                raise ValueError("unexpected texture shape")
        except Exception:  # noqa: BLE001 - any failure (missing file, old version) → procedural stand-in
            rng = np.random.default_rng([0, k, 99])
            tex = np.zeros((512, 512), np.float32)
            for octave in (8, 16, 32, 64, 128):  # sum of upsampled random grids = cheap fractal noise
                g = rng.random((octave, octave)).astype(np.float32)
                tex += np.kron(g, np.ones((512 // octave, 512 // octave), np.float32)) / 5
        levels = [tex]
        while levels[-1].shape[0] > 64:  # box-filter pyramid so that minified crops do not alias
            t = levels[-1]
            levels.append(0.25 * (t[0::2, 0::2] + t[1::2, 0::2] + t[0::2, 1::2] + t[1::2, 1::2]))
        bank.append(tuple(np.ascontiguousarray(t) for t in levels))
    return tuple(bank)


def load_textures() -> None:
    """Load the texture photos now (otherwise the first textured scene does, ~0.3 s) — e.g. before timing."""
    _texture_bank()


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray, wrap: bool) -> np.ndarray:
    """Sample ``img`` (h×w or h×w×c) at continuous coordinates (pixel centres at +0.5; x, y broadcastable)."""
    h, w = img.shape[:2]
    x = x - 0.5
    y = y - 0.5
    x0f, y0f = np.floor(x), np.floor(y)
    fx, fy = (x - x0f).astype(np.float32), (y - y0f).astype(np.float32)
    x0, y0 = x0f.astype(np.intp), y0f.astype(np.intp)
    if wrap:
        x0, y0 = x0 % w, y0 % h
        x1, y1 = (x0 + 1) % w, (y0 + 1) % h
    else:
        x1, y1 = np.clip(x0 + 1, 0, w - 1), np.clip(y0 + 1, 0, h - 1)
        x0, y0 = np.clip(x0, 0, w - 1), np.clip(y0, 0, h - 1)
    if img.ndim == 3:
        fx, fy = fx[..., None], fy[..., None]
    if x0.shape[0] == 1 and y0.ndim == 2 and y0.shape[1] == 1:
        # Separable grid (x varies along columns only, y along rows only): interpolate the rows first, then
        # the columns — two small gathers instead of four full-size ones.
        rows = img[y0[:, 0]] * (1 - fy) + img[y1[:, 0]] * fy
        return rows[:, x0[0]] * (1 - fx) + rows[:, x1[0]] * fx
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


# ------------------------------------------------------------------------------------------ signed distances
def _box_sdf(u, v, hx: float, hy: float):
    qx, qy = np.abs(u) - hx, np.abs(v) - hy
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    return outside + np.minimum(np.maximum(qx, qy), 0)


def _star_sdf(u, v, n: int, r_out: float, r_in: float, offset: float):
    """Star/regular polygon with n outer vertices (at ``offset`` + k·2π/n) and inner vertices between them.

    Folds the plane into one half-sector (symmetry) and measures the distance to the one edge segment there;
    a regular n-gon is the star with r_in = r_out·cos(π/n).
    """
    sector = 2 * math.pi / n
    a = np.abs(np.mod(np.arctan2(v, u) - offset + sector / 2, sector) - sector / 2)
    rad = np.hypot(u, v)
    qx, qy = rad * np.cos(a), rad * np.sin(a)
    ex, ey = r_in * math.cos(sector / 2) - r_out, r_in * math.sin(sector / 2)
    wx, wy = qx - r_out, qy
    t = np.clip((wx * ex + wy * ey) * (1.0 / (ex * ex + ey * ey)), 0, 1)
    d = np.hypot(wx - t * ex, wy - t * ey)
    return np.where(ex * wy - ey * wx > 0, -d, d)  # the origin's side of the edge is inside


_UP = -math.pi / 2  # image y points down, so "pointing up" is angle -90°
_POLYGONS = {  # n, inner radius / outer radius, angle of the first vertex
    "triangle": (3, math.cos(math.pi / 3), _UP),
    "square": (4, math.cos(math.pi / 4), math.pi / 4),
    "hexagon": (6, math.cos(math.pi / 6), 0.0),
    "star": (5, 0.45, _UP),
}


def _shape_sdf(kind: str, u, v, r: float):
    """Signed distance (negative inside) of shape ``kind`` with circumradius ``r`` in its local frame."""
    if kind == "circle":
        return np.hypot(u, v) - r
    if kind == "ring":
        return np.abs(np.hypot(u, v) - 0.7 * r) - 0.3 * r
    if kind == "cross":
        return np.minimum(_box_sdf(u, v, 0.95 * r, 0.3 * r), _box_sdf(u, v, 0.3 * r, 0.95 * r))
    if kind == "crescent":
        return np.maximum(np.hypot(u, v) - r, 0.82 * r - np.hypot(u - 0.45 * r, v))
    n, inner, offset = _POLYGONS[kind]
    return _star_sdf(u, v, n, r, inner * r, offset)


def _segment_sdf(u, v, bx: float, by: float, r: float):
    """Capsule from (0, 0) to (bx, by) with radius r."""
    t = np.clip((u * bx + v * by) * (1.0 / max(bx * bx + by * by, 1e-9)), 0, 1)
    return np.hypot(u - t * bx, v - t * by) - r


def _pattern_alpha(kind: int, u, v, period: float, angle: float, phase: float, scale: float):
    """Anti-aliased coverage (0..1) of the second colour of a stripes/dots pattern in local coordinates."""
    if kind == 1:  # stripes: sin scaled so that its slope at the zero crossings is one pixel per pixel
        w = u * math.cos(angle) + v * math.sin(angle)
        s = np.sin(w * (2 * math.pi / period) + phase) * (period / (2 * math.pi) * scale)
        return np.clip(s + 0.5, 0, 1)
    du = np.mod(u + phase, period) - period / 2
    dv = np.mod(v + phase, period) - period / 2
    return np.clip(0.5 - (np.hypot(du, dv) - 0.28 * period) * scale, 0, 1)


# ------------------------------------------------------------------------------------------------- canvas
class _Canvas:
    """A float RGB image plus an id map; draws SDF shapes through an optional view→scene affine transform."""

    def __init__(self, size: int, view_to_scene: np.ndarray | None = None, want_pattern: bool = False):
        self.size = size
        self.img = np.empty((size, size, 3), np.float32)
        self.ids = np.zeros((size, size), np.uint8)
        self.pattern = np.zeros((size, size), bool) if want_pattern else None
        self.coords = np.arange(size, dtype=np.float32) + 0.5
        self.identity = view_to_scene is None
        if self.identity:  # the common case: skip the matrix algebra
            self.A = self.A_inv = np.eye(3)
            self.scale = 1.0
        else:
            self.A, self.A_inv = view_to_scene, np.linalg.inv(view_to_scene)
            self.scale = 1.0 / math.sqrt(abs(np.linalg.det(self.A[:2, :2])))  # view pixels per scene pixel

    def scene_xy(self):
        """Scene coordinates of every view pixel (broadcastable arrays)."""
        xs, ys = self.coords[None, :], self.coords[:, None]
        if self.identity:
            return xs, ys
        (a, b, c), (d, e, f) = self.A[:2].tolist()
        return a * xs + b * ys + c, d * xs + e * ys + f

    def window(self, to_local: np.ndarray, cx: float, cy: float, radius: float):
        """Local coordinates (u, v) on the view-pixel bounding box of a shape centred at scene (cx, cy).

        ``to_local`` maps scene coordinates to the shape's frame; returns None when the box is off canvas.
        """
        vx, vy = (cx, cy) if self.identity else (self.A_inv @ (cx, cy, 1.0))[:2]
        r = radius * self.scale + 1.5
        x0, x1 = max(int(vx - r), 0), min(int(math.ceil(vx + r)), self.size)
        y0, y1 = max(int(vy - r), 0), min(int(math.ceil(vy + r)), self.size)
        if x0 >= x1 or y0 >= y1:
            return None
        m = to_local if self.identity else to_local @ self.A
        (a, b, c), (d, e, f) = m[:2].tolist()  # python floats keep the arrays float32
        xs, ys = self.coords[None, x0:x1], self.coords[y0:y1, None]
        return (slice(y0, y1), slice(x0, x1)), a * xs + b * ys + c, d * xs + e * ys + f

    def paint(self, sl, sdf, fill, ident: int, pattern=None) -> np.ndarray:
        """Composite ``fill`` (rgb or h×w×3) with the SDF's coverage; returns the shape's pixels in ``sl``."""
        cov = 0.5 - sdf if self.scale == 1.0 else 0.5 - sdf * self.scale
        np.minimum(np.maximum(cov, 0, out=cov), 1, out=cov)  # = clip, without np.clip's Python overhead
        sub = self.img[sl]
        sub += (fill - sub) * cov[..., None]
        inside = cov >= 0.5
        self.ids[sl][inside] = ident
        if self.pattern is not None:
            self.pattern[sl][inside] = False if pattern is None else (pattern >= 0.5)[inside]
        return inside


def _translate_rotate(cx: float, cy: float, angle: float) -> np.ndarray:
    """Scene → local frame of a shape at (cx, cy) rotated by ``angle``."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, s, -c * cx - s * cy], [-s, c, s * cx - c * cy], [0, 0, 1]])


def _instance_edges(ids: np.ndarray) -> np.ndarray:
    """1-px boundaries between regions of an id map, on the side of the higher id (the occluder)."""
    e = np.zeros(ids.shape, bool)
    a, b = ids[:, :-1], ids[:, 1:]
    e[:, :-1] |= a > b
    e[:, 1:] |= b > a
    a, b = ids[:-1], ids[1:]
    e[:-1] |= a > b
    e[1:] |= b > a
    return e


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


# ------------------------------------------------------------------------------------------------ layouts
@dataclass(frozen=True)
class _Object:
    cls: int
    colour: int
    rgb: np.ndarray  # float32 (3,)
    rgb2: np.ndarray  # pattern colour: a shade of rgb, so the colour name stays right
    cx: float
    cy: float
    radius: float  # circumradius in scene pixels
    angle: float  # radians
    pattern: int  # index into PATTERNS
    period: float
    pattern_angle: float
    phase: float


@dataclass(frozen=True)
class _Background:
    kind: str
    c1: np.ndarray
    c2: np.ndarray
    value: float  # lightness of c1, for captions
    angle: float = 0.0
    grid: np.ndarray | None = None  # noise: g×g×3 colours
    texture: int = 0
    tex_level: int = 0  # pyramid level of the texture photo
    tex_scale: float = 1.0
    tex_offset: tuple[float, float] = (0.0, 0.0)
    contrast: float = 1.0


@dataclass(frozen=True)
class _Layout:
    background: _Background
    objects: tuple[_Object, ...]


_NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight")


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


class ShapesWorld:
    """The procedural world. ``scene(i)`` / ``render(i, keys)`` / ``views(i, n)`` / ``person(pose, outfit)``.

    Args:
        seed: world seed (non-negative int); with the index it fixes every pixel.
        size: canvas side in pixels (32–256).
        num_classes: how many of `SHAPE_CLASSES` are used (2..8, default all).
        max_objects / min_objects: objects per scene (1..8).
        textures: allow striped / dotted objects.
        backgrounds: the background kinds drawn from (subset of `BACKGROUNDS`).
        num_annotators: how many annotator edge maps a scene has (>= 3).
    """

    def __init__(
        self,
        seed: int = 0,
        size: int = 64,
        num_classes: int | None = None,
        max_objects: int = 4,
        min_objects: int = 1,
        textures: bool = True,
        backgrounds: Sequence[str] = BACKGROUNDS,
        num_annotators: int = 5,
    ):
        num_classes = len(SHAPE_CLASSES) if num_classes is None else num_classes
        if not isinstance(seed, int | np.integer) or seed < 0:
            raise ConfigError(f"seed must be a non-negative int, got {seed!r}")
        if not isinstance(size, int | np.integer) or not MIN_SIZE <= size <= MAX_SIZE:
            raise ConfigError(f"size must be an int in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}")
        if not isinstance(num_classes, int | np.integer) or not 2 <= num_classes <= len(SHAPE_CLASSES):
            raise ConfigError(f"num_classes must be an int in [2, {len(SHAPE_CLASSES)}], got {num_classes!r}")
        if not (
            isinstance(min_objects, int)
            and isinstance(max_objects, int)
            and 1 <= min_objects <= max_objects <= 8
        ):
            raise ConfigError(
                f"need 1 <= min_objects <= max_objects <= 8, got {min_objects!r}, {max_objects!r}"
            )
        bad = [b for b in backgrounds if b not in BACKGROUNDS]
        if bad or not backgrounds:
            raise ConfigError(
                f"backgrounds must be a non-empty subset of {', '.join(BACKGROUNDS)}, got {bad or '[]'}"
            )
        if not isinstance(num_annotators, int) or num_annotators < 3:
            raise ConfigError(f"num_annotators must be an int >= 3, got {num_annotators!r}")
        self.seed, self.size, self.num_classes = int(seed), int(size), int(num_classes)
        self.min_objects, self.max_objects = min_objects, max_objects
        self.textures = bool(textures)
        self.backgrounds = tuple(backgrounds)
        self.num_annotators = num_annotators
        self.classes: list[str] = list(SHAPE_CLASSES[: self.num_classes])

    def __repr__(self) -> str:
        return (
            f"ShapesWorld(seed={self.seed}, size={self.size}, num_classes={self.num_classes}, "
            f"objects={self.min_objects}..{self.max_objects}, textures={self.textures})"
        )

    def _rng(self, index: int, purpose: int, *extra: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, index, purpose, *extra])

    @staticmethod
    def _check_index(i) -> int:
        if not isinstance(i, int | np.integer) or i < 0:
            raise DataError(f"scene index must be a non-negative int, got {i!r}")
        return int(i)

    # ---------------------------------------------------------------------------------------- layout
    def layout(self, i: int) -> _Layout:
        """The random parameters of scene i (background and objects in drawing order).

        All draws come in two batches (one per object, one for the background) and are mapped with plain
        Python arithmetic: a generator call costs about a microsecond, which matters at thousands of scenes/s.
        """
        rng = self._rng(self._check_index(i), _LAYOUT)
        S = self.size
        n = int(rng.integers(self.min_objects, self.max_objects + 1))
        main_at = int(rng.integers(n))  # where the big "label" object sits in the occlusion order
        objects = []
        for j, q in enumerate(rng.random((n, 13)).tolist()):
            main = j == main_at
            # The main object is clearly bigger than the distractors, so the label (largest visible object)
            # is learnable; distractors are placed anywhere and may occlude it.
            r = S * (0.28 + 0.14 * q[0] if main else 0.06 + 0.06 * q[0])
            lo, hi = (0.75 * r, S - 0.75 * r) if main else (0.08 * S, 0.92 * S)
            colour = int(q[3] * len(COLOURS))
            rgb = [
                min(1.0, max(0.0, c + 0.08 * d - 0.04)) for c, d in zip(COLOURS[COLOUR_NAMES[colour]], q[4:7])
            ]
            lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
            rgb2 = [c * 0.55 for c in rgb] if lum > 0.45 else [c + (1 - c) * 0.5 for c in rgb]
            # Patterns only where they stay visible (at least 4-px periods on objects of 8+ px radius).
            pattern = (0 if q[7] < 0.5 else 1 if q[7] < 0.8 else 2) if self.textures and r >= 8 else 0
            objects.append(
                _Object(
                    cls=int(q[8] * self.num_classes),
                    colour=colour,
                    rgb=np.array(rgb, np.float32),
                    rgb2=np.array(rgb2, np.float32),
                    cx=lo + (hi - lo) * q[1],
                    cy=lo + (hi - lo) * q[2],
                    radius=r,
                    angle=2 * math.pi * q[9],
                    pattern=pattern,
                    period=max(4.0, r * (0.25 + 0.2 * q[10])),
                    pattern_angle=math.pi * q[11],
                    phase=2 * math.pi * q[12],
                )
            )
        q = rng.random(12).tolist()
        kind = self.backgrounds[int(q[0] * len(self.backgrounds))]
        h, s, v = q[1], 0.28 * q[2], 0.3 + 0.42 * q[3]
        c1 = np.array(colorsys.hsv_to_rgb(h, s, v), np.float32)
        v2 = min(0.9, max(0.15, v + (0.25 if q[4] < 0.5 else -0.25)))
        c2 = np.array(colorsys.hsv_to_rgb((h + 0.3 * q[5] - 0.15) % 1, s, v2), np.float32)
        bg = _Background(kind, c1, c2, v, angle=2 * math.pi * q[6])
        if kind == "noise":
            g = 3 + int(4 * q[7])
            grid = np.clip(c1 + rng.uniform(-0.16, 0.16, (g, g, 3)), 0, 1).astype(np.float32)
            bg = _Background(kind, c1, c2, v, grid=grid)
        elif kind == "texture":
            span = 0.3 + 0.3 * q[8]  # fraction of the 512-px photo the canvas shows
            # Coarsest pyramid level that still has >= 1 texture pixel per canvas pixel (no aliasing).
            level = max(0, min(3, int(math.log2(max(1.0, span * 512 / S)))))
            side = 512 >> level
            bg = _Background(
                kind, c1, c2, v,
                texture=int(q[7] * len(TEXTURE_NAMES)),
                tex_level=level,
                tex_scale=span * side / S,
                tex_offset=(side * q[9], side * q[10]),
                contrast=0.5 + 0.4 * q[11],
            )  # fmt: skip
        return _Layout(bg, tuple(objects))

    # ---------------------------------------------------------------------------------------- drawing
    def _draw_background(self, bg: _Background, cv: _Canvas) -> None:
        S = self.size
        if bg.kind == "flat":
            cv.img[:] = bg.c1
            return
        X, Y = cv.scene_xy()
        if bg.kind == "gradient":
            t = ((X - S / 2) * math.cos(bg.angle) + (Y - S / 2) * math.sin(bg.angle)) * (1 / (0.8 * S)) + 0.5
            cv.img[:] = bg.c1 + (bg.c2 - bg.c1) * np.clip(t, 0, 1)[..., None]
        elif bg.kind == "noise":
            g = bg.grid.shape[0]
            cv.img[:] = _bilinear(bg.grid, X * (g / S), Y * (g / S), wrap=False)
        else:
            tex = _texture_bank()[bg.texture][bg.tex_level]
            val = _bilinear(
                tex, X * bg.tex_scale + bg.tex_offset[0], Y * bg.tex_scale + bg.tex_offset[1], wrap=True
            )
            shade = 1 + bg.contrast * (val - 0.5)
            cv.img[:] = np.clip(bg.c1 * shade[..., None], 0, 1)

    def _draw_objects(self, lay: _Layout, cv: _Canvas) -> list:
        """Draws the objects in order; returns each one's (window, unoccluded pixels) or None if off canvas."""
        full = []
        for j, o in enumerate(lay.objects):
            win = cv.window(_translate_rotate(o.cx, o.cy, o.angle), o.cx, o.cy, o.radius)
            if win is None:
                full.append(None)
                continue
            sl, u, v = win
            sdf = _shape_sdf(SHAPE_CLASSES[o.cls], u, v, o.radius)
            fill, pat = o.rgb, None
            if o.pattern:
                pat = _pattern_alpha(o.pattern, u, v, o.period, o.pattern_angle, o.phase, cv.scale)
                fill = o.rgb + (o.rgb2 - o.rgb) * pat[..., None]
            full.append((sl, cv.paint(sl, sdf, fill, j + 1, pat)))
        return full

    # ---------------------------------------------------------------------------------------- scenes
    def scene(self, i: int) -> dict:
        """Scene i with every key of `SCENE_KEYS` (see `render` for a cheaper subset)."""
        return self.render(i, SCENE_KEYS)

    def render(self, i: int, keys: Iterable[str] = ("image", "label")) -> dict:
        """Scene i with only the requested keys computed (image and label are the cheap path).

        Keys: image (H×W×3 uint8), label (int), mask (H×W uint8, 0 background, k+1 class k, 255 ignore band),
        edges (H×W bool), annotators (list of H×W bool), captions (list of 5 str), sketch (H×W uint8),
        label_rgb (H×W×3 uint8), objects (list of dicts), instances (H×W uint8, 0 background, j+1 object j).
        """
        keys = tuple(keys)
        unknown = [k for k in keys if k not in SCENE_KEYS]
        if unknown:
            raise ConfigError(f"unknown scene keys {unknown}; valid keys: {', '.join(SCENE_KEYS)}")
        i = self._check_index(i)
        lay = self.layout(i)
        cv = _Canvas(self.size, want_pattern="annotators" in keys)
        self._draw_background(lay.background, cv)
        full = self._draw_objects(lay, cv)
        ids = cv.ids
        areas = np.bincount(ids.ravel(), minlength=len(lay.objects) + 1)[1:]
        label_j = int(np.argmax(areas))
        out: dict = {"image": _to_uint8(cv.img), "label": lay.objects[label_j].cls}

        need = set(keys)
        edges = (
            _instance_edges(ids) if need & {"mask", "edges", "annotators", "sketch", "label_rgb"} else None
        )
        if need & {"mask", "label_rgb"}:
            lut = np.array([0] + [o.cls + 1 for o in lay.objects], np.uint8)
            mask = lut[ids]
            mask[edges] = IGNORE_INDEX
            out["mask"] = mask
            if "label_rgb" in need:
                out["label_rgb"] = VOC_PALETTE[mask]
        if "edges" in need:
            out["edges"] = edges
        if "instances" in need:
            out["instances"] = ids
        if need & {"objects", "captions", "annotators"}:
            objects = []
            for j, (o, a, f) in enumerate(zip(lay.objects, areas, full)):
                # Who covers this object: the ids now shown where it was drawn, later objects by pixels covered.
                cover = np.bincount(ids[f[0]][f[1]], minlength=len(lay.objects) + 1)[j + 2 :] if f else []
                by = [j + 1 + int(k) for k in np.argsort(-np.asarray(cover), kind="stable") if cover[k] > 0]
                objects.append(self._describe(o, int(a), int(np.count_nonzero(f[1])) if f else 0, by))
            out["objects"] = objects
        if "annotators" in need:
            full_areas = [o["full_area"] for o in objects]
            out["annotators"] = self._annotators(i, lay, ids, edges, cv.pattern, areas, full_areas, label_j)
        if "captions" in need:
            out["captions"] = self._captions(i, lay, objects, label_j)
        if "sketch" in need:
            out["sketch"] = self._sketch(i, edges)
        return {k: out[k] for k in keys}

    def _size_word(self, radius: float) -> str:
        r = radius / self.size
        return "small" if r < 0.15 else "medium-sized" if r < 0.33 else "large"

    def _describe(self, o: _Object, area: int, full_area: int, occluded_by: list[int]) -> dict:
        return {
            "class": SHAPE_CLASSES[o.cls],
            "class_index": o.cls,
            "colour": COLOUR_NAMES[o.colour],
            "centre": (o.cx, o.cy),
            "size": o.radius,
            "size_word": self._size_word(o.radius),
            "angle": math.degrees(o.angle),
            "pattern": PATTERNS[o.pattern],
            "area": area,
            "full_area": full_area,
            "occluded_by": occluded_by,
        }

    # ---------------------------------------------------------------------------------------- annotators
    def _annotators(self, i, lay, ids, edges, pattern, areas, full, label_j) -> list[np.ndarray]:
        """Edge maps as different people would draw them (BSDS-like): jittered, partial, some with details.

        Styles cycle careful / lazy / detailed: careful draws every object with occasional ±1 px jitter; lazy
        skips small or occluded objects and draws only part of some outlines (always part of the main one, so
        no two annotators coincide); detailed also traces the stripes and dots inside objects.
        """
        S, n = self.size, len(lay.objects)
        ys, xs = np.nonzero(edges)
        owner = ids[ys, xs].astype(np.intp) - 1
        cx = np.array([o.cx for o in lay.objects])
        cy = np.array([o.cy for o in lay.objects])
        ang = np.arctan2(ys + 0.5 - cy[owner], xs + 0.5 - cx[owner])
        areas = np.asarray(areas, float)
        hard = (areas < 0.02 * S * S) | (areas < 0.7 * np.maximum(np.asarray(full, float), 1))
        hard[label_j] = False
        # Internal edges: where the pattern flips inside one object (the flipped pixel's side).
        tex = np.zeros((S, S), bool)
        if pattern is not None:
            same_h, same_v = ids[:, :-1] == ids[:, 1:], ids[:-1] == ids[1:]
            flip_h, flip_v = (
                (pattern[:, :-1] != pattern[:, 1:]) & same_h,
                (pattern[:-1] != pattern[1:]) & same_v,
            )
            tex[:, :-1] |= flip_h & pattern[:, :-1]
            tex[:, 1:] |= flip_h & pattern[:, 1:]
            tex[:-1] |= flip_v & pattern[:-1]
            tex[1:] |= flip_v & pattern[1:]
            tex &= (ids > 0) & ~edges
        maps = []
        for a in range(self.num_annotators):
            rng = self._rng(i, _ANNOT, a)
            style = a % 3 if a < 3 else int(rng.integers(3))
            p_skip, p_arc, p_jit = ((0.0, 0.15, 0.3), (0.75, 0.5, 0.5), (0.1, 0.1, 0.4))[style]
            skip = hard & (rng.random(n) < p_skip)
            arc_len = np.where(rng.random(n) < p_arc, rng.uniform(0.5, 2.0, n), 0.0)
            if style == 1:
                arc_len[label_j] = rng.uniform(0.8, 2.4)
            arc_start = rng.uniform(-math.pi, math.pi, n)
            shift = rng.integers(-1, 2, (n, 2)) * (rng.random((n, 1)) < p_jit)
            keep = ~skip[owner] & (np.mod(ang - arc_start[owner], 2 * math.pi) >= arc_len[owner])
            m = np.zeros((S, S), bool)
            m[
                np.clip(ys + shift[owner, 1], 0, S - 1)[keep], np.clip(xs + shift[owner, 0], 0, S - 1)[keep]
            ] = True
            if style == 2:
                m |= tex & (rng.random((S, S)) < 0.85)
            maps.append(m)
        return maps

    # ---------------------------------------------------------------------------------------- sketch
    def _sketch(self, i: int, edges: np.ndarray) -> np.ndarray:
        """A pencil-like line drawing: the visible outlines, wobbled by a smooth displacement field."""
        rng = self._rng(i, _SKETCH)
        S = self.size
        lines = edges.astype(np.float32)
        if S >= 96:  # thicker strokes on bigger canvases
            lines[:, 1:] = np.maximum(lines[:, 1:], edges[:, :-1])
            lines[1:] = np.maximum(lines[1:], lines[:-1])
        coords = np.arange(S, dtype=np.float32) + 0.5
        g = 4
        disp = rng.normal(0, 0.9 * S / 64, (g, g, 2)).astype(np.float32)
        pressure = rng.uniform(0.55, 1.0, (g, g)).astype(np.float32)
        gx, gy = coords[None, :] * (g / S), coords[:, None] * (g / S)
        d = _bilinear(disp, gx, gy, wrap=False)
        warped = _bilinear(lines, coords[None, :] + d[..., 0], coords[:, None] + d[..., 1], wrap=False)
        dark = np.clip(warped * 1.7, 0, 1) * _bilinear(pressure, gx, gy, wrap=False)
        return (255 - 215 * dark + 0.5).astype(np.uint8)

    # ---------------------------------------------------------------------------------------- captions
    def _captions(self, i: int, lay: _Layout, objects: list[dict], label_j: int) -> list[str]:
        """Five different sentences (relation, position, inventory, largest/occlusion, background).

        Each names the label object's colour and class; phrasings vary per scene.
        """
        rng = self._rng(i, _CAPTION)
        S = self.size
        main = objects[label_j]
        min_area = max(4, 0.002 * S * S)  # objects smaller than this are not mentioned
        others = sorted(
            (o for j, o in enumerate(objects) if j != label_j and o["area"] >= min_area),
            key=lambda o: -o["area"],
        )

        def pick(*options: str) -> str:
            return options[int(rng.integers(len(options)))]

        def noun(o: dict, size: bool = True, pattern: bool = False) -> str:
            words = [o["size_word"]] if size else []
            if pattern and o["pattern"] != "solid":
                words.append({"stripes": "striped", "dots": "dotted"}[o["pattern"]])
            return " ".join([*words, o["colour"], o["class"]])

        x, y = main["centre"][0] / S, main["centre"][1] / S
        v = "top" if y < 0.38 else "bottom" if y > 0.62 else ""
        h = "left" if x < 0.38 else "right" if x > 0.62 else ""
        if v and h:
            where = f"in the {v} {h} corner"
        else:
            where = {"": "in the centre", "top": "at the top", "bottom": "at the bottom", "left": "on the left",
                     "right": "on the right"}[v or h]  # fmt: skip
        a_main, a_plain, a_big = (
            _article(noun(main)),
            _article(noun(main, False)),
            _article(noun(main, False, True)),
        )

        caps = []
        if others:  # 1. relation to the next biggest object
            b = others[0]
            dx, dy = b["centre"][0] - main["centre"][0], b["centre"][1] - main["centre"][1]
            if abs(dx) > abs(dy):
                rel = "to the left of" if dx > 0 else "to the right of"
            else:
                rel = "above" if dy > 0 else "below"
            a_b = _article(noun(b))
            caps.append(
                pick(f"{a_main} {rel} {a_b}.", f"{a_main} is {rel} {a_b}.", f"{rel} {a_b} there is {a_main}.")
            )
        else:
            caps.append(pick(f"{a_main} alone on the canvas.", f"just one {noun(main, False)}, {main['size_word']} and by itself."))  # fmt: skip
        # 2. position
        caps.append(pick(f"there is {a_plain} {where} of the image.", f"{a_plain} sits {where}.", f"{where} of the picture you can see {a_plain}."))  # fmt: skip
        # 3. inventory
        if others:
            items = [_article(noun(o, size=False)) for o in [main, *others]]
            listing, count = ", ".join(items[:-1]) + " and " + items[-1], _NUMBERS[len(items)]
            caps.append(pick(f"{count} shapes: {listing}.", f"the picture shows {count} shapes, {listing}."))
        else:
            caps.append(pick(f"the picture shows exactly one shape: {a_plain}.", f"a single {noun(main, False)} and nothing else."))  # fmt: skip
        # 4. the largest object, and what hides part of it
        hiders = [objects[j] for j in main["occluded_by"] if objects[j]["area"] >= min_area]
        if hiders and main["area"] < 0.95 * main["full_area"]:
            caps.append(
                f"the largest shape, {a_big}, is partly hidden behind {_article(noun(hiders[0], False))}."
            )
        else:
            caps.append(pick(f"the biggest shape is {a_big}.", f"the largest object in the picture is {a_big}.", f"most of the space is taken by {a_big}."))  # fmt: skip
        # 5. the background
        bg = lay.background
        tone = "dark" if bg.value < 0.45 else "light" if bg.value > 0.6 else "grey"
        bg_words = {"flat": f"plain {tone}", "gradient": "softly shaded", "noise": "mottled",
                    "texture": f"{TEXTURE_NAMES[bg.texture]}-textured"}[bg.kind]  # fmt: skip
        caps.append(pick(f"{a_big} on {_article(bg_words)} background.", f"on {_article(bg_words)} background lies {a_big}."))  # fmt: skip
        return [c[0].upper() + c[1:] for c in caps]

    # ---------------------------------------------------------------------------------------- views
    def view(self, i: int, k: int) -> dict:
        """View k of scene i: re-rendered through a random similarity transform (rotation ±25°, scale 0.85–1.15,
        shift ±8 %, horizontal flip) and photometric change (brightness, contrast, hue, blur, noise).

        Returns dict(image H×W×3 uint8, mask H×W uint8 (as in `render`, without the ignore band), params).
        """
        i = self._check_index(i)
        if not isinstance(k, int | np.integer) or k < 0:
            raise DataError(f"view index must be a non-negative int, got {k!r}")
        rng = self._rng(i, _VIEW, int(k))
        S = self.size
        angle = rng.uniform(-25, 25)
        scale = rng.uniform(0.85, 1.15)
        tx, ty = rng.uniform(-0.08, 0.08, 2) * S
        flip = bool(rng.random() < 0.5)
        # scene → view: translate to centre, flip, rotate, scale, translate back and shift
        c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        f = -1.0 if flip else 1.0
        to_c = np.array([[1, 0, -S / 2], [0, 1, -S / 2], [0, 0, 1.0]])
        lin = np.array([[scale * c * f, -scale * s, 0], [scale * s * f, scale * c, 0], [0, 0, 1.0]])
        back = np.array([[1, 0, S / 2 + tx], [0, 1, S / 2 + ty], [0, 0, 1.0]])
        scene_to_view = back @ lin @ to_c
        lay = self.layout(i)
        cv = _Canvas(S, view_to_scene=np.linalg.inv(scene_to_view))
        self._draw_background(lay.background, cv)
        self._draw_objects(lay, cv)
        img = cv.img
        # photometric: hue rotation in YIQ, contrast, brightness, blur, sensor noise
        hue = rng.uniform(-0.05, 0.05) * 2 * math.pi
        yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
        rot = np.array([[1, 0, 0], [0, math.cos(hue), -math.sin(hue)], [0, math.sin(hue), math.cos(hue)]])
        contrast, brightness = rng.uniform(0.8, 1.2), rng.uniform(-0.1, 0.1)
        mix = (np.linalg.inv(yiq) @ rot @ yiq).T.astype(np.float32)
        img = (img @ mix - 0.5) * np.float32(contrast) + np.float32(0.5 + brightness)
        blur = rng.uniform(0, 1.0) * S / 64
        if blur > 0.3:
            from scipy.ndimage import gaussian_filter

            img = gaussian_filter(img, (blur, blur, 0), mode="nearest")
        noise = rng.uniform(0, 0.03)
        img = img + rng.normal(0, noise, img.shape).astype(np.float32)
        lut = np.array([0] + [o.cls + 1 for o in lay.objects], np.uint8)
        params = dict(angle=angle, scale=scale, shift=(tx, ty), hue=hue, contrast=contrast, brightness=brightness,
                      blur=blur, noise=noise)  # fmt: skip
        params = {k: tuple(map(float, p)) if isinstance(p, tuple) else float(p) for k, p in params.items()}
        params["flip"] = flip
        return {"image": _to_uint8(img), "mask": lut[cv.ids], "params": params}

    def views(self, i: int, n: int) -> list[dict]:
        """n views of scene i (one retrieval group): similar to each other, different from other scenes."""
        if not isinstance(n, int | np.integer) or n < 1:
            raise DataError(f"number of views must be a positive int, got {n!r}")
        return [self.view(i, k) for k in range(n)]

    # ---------------------------------------------------------------------------------------- persons
    def _pose_keypoints(self, pose: int) -> tuple[np.ndarray, np.random.Generator]:
        """Keypoints (14×2, canvas fractions) of pose id ``pose``: constant body, random limb angles."""
        rng = self._rng(pose, _POSE)
        kp = np.zeros((14, 2))
        kp[0], kp[1] = (0.5, 0.13), (0.5, 0.22)
        for side, (sh, el, wr, hip, kn, an) in ((-1, (2, 3, 4, 8, 9, 10)), (1, (5, 6, 7, 11, 12, 13))):
            # person's right is the image's left (the figure faces us); angles from "straight down", outward
            kp[sh], kp[hip] = (0.5 + side * 0.11, 0.27), (0.5 + side * 0.065, 0.53)
            a_up = math.radians(rng.uniform(5, 120))
            a_lo = math.radians(np.clip(math.degrees(a_up) + rng.uniform(-70, 90), -30, 150))
            kp[el] = kp[sh] + 0.14 * np.array([side * math.sin(a_up), math.cos(a_up)])
            kp[wr] = kp[el] + 0.13 * np.array([side * math.sin(a_lo), math.cos(a_lo)])
            a_th = math.radians(rng.uniform(-5, 30))
            a_sh = math.radians(np.clip(math.degrees(a_th) + rng.uniform(-25, 25), -20, 45))
            kp[kn] = kp[hip] + 0.19 * np.array([side * math.sin(a_th), math.cos(a_th)])
            kp[an] = kp[kn] + 0.18 * np.array([side * math.sin(a_sh), math.cos(a_sh)])
        return kp, rng

    def person(self, pose: int, outfit: int) -> dict:
        """A clothed figure: pose id → limb angles, skin and hair (the "person"); outfit id → clothes.

        The body parts and their parsing labels depend on the pose only, so rendering pose A with outfit B is
        the exact ground truth of a clothes swap. Returns image (H×W×3 uint8), keypoints (14×2 float32, x, y
        pixels, `KEYPOINT_NAMES` order), parsing (H×W uint8, `PARSING_LABELS`), pose_map (14×H×W float32
        Gaussian heat maps), pose and outfit.
        """
        pose, outfit = self._check_index(pose), self._check_index(outfit)
        S = self.size
        kp, prng = self._pose_keypoints(pose)
        skin = np.array(((0.96, 0.80, 0.69), (0.88, 0.67, 0.52), (0.72, 0.52, 0.36), (0.55, 0.37, 0.25), (0.38, 0.26, 0.18))[int(prng.integers(5))], np.float32)  # fmt: skip
        hair = np.array(((0.1, 0.07, 0.05), (0.35, 0.2, 0.1), (0.75, 0.6, 0.3), (0.55, 0.15, 0.05), (0.6, 0.6, 0.6))[int(prng.integers(5))], np.float32)  # fmt: skip
        hair_cut = prng.uniform(-0.03, 0.01)  # hair line relative to the head centre

        orng = self._rng(outfit, _OUTFIT)

        def cloth():
            c1 = np.array(
                colorsys.hsv_to_rgb(orng.uniform(), orng.uniform(0.3, 0.9), orng.uniform(0.3, 0.95)),
                np.float32,
            )
            c2 = np.array(
                colorsys.hsv_to_rgb(orng.uniform(), orng.uniform(0.0, 0.9), orng.uniform(0.15, 1.0)),
                np.float32,
            )
            return (
                c1,
                c2,
                int(orng.integers(5)),
                orng.uniform(0.03, 0.07) * S,
            )  # kind: solid/h/v stripes/checks/dots

        upper, lower = cloth(), cloth()
        shoes = np.array(
            colorsys.hsv_to_rgb(orng.uniform(), orng.uniform(0, 0.6), orng.uniform(0.05, 0.6)), np.float32
        )

        def fabric(spec, X, Y):
            c1, c2, kind, p = spec
            if kind == 0:
                return c1
            w = 2 * math.pi / p
            if kind == 1:
                t = np.sin(Y * w)
            elif kind == 2:
                t = np.sin(X * w)
            elif kind == 3:
                t = np.sin(X * w) * np.sin(Y * w)
            else:
                t = np.cos(X * w) * np.cos(Y * w) - 0.4
            a = np.clip(t * (p / (2 * math.pi)) + 0.5, 0, 1)
            return c1 + (c2 - c1) * a[..., None]

        cv = _Canvas(S)
        bgr = self._rng(0, _PERSON_BG)  # the backdrop depends on the world seed only
        top, bottom = np.array(colorsys.hsv_to_rgb(bgr.uniform(), 0.12, 0.85), np.float32), np.float32(0.6)
        t = (cv.coords[:, None] / S)[..., None]
        cv.img[:] = top * (1 - t) + top * bottom * t
        P = kp * S

        def capsule(a, b, r, label, fill):
            (ax, ay), (bx, by) = a, b
            to_local = np.array([[1, 0, -ax], [0, 1, -ay], [0, 0, 1.0]])
            win = cv.window(to_local, (ax + bx) / 2, (ay + by) / 2, math.hypot(bx - ax, by - ay) / 2 + r)
            if win is not None:
                sl, u, v = win
                f = fill(u + ax, v + ay) if callable(fill) else fill
                cv.paint(sl, _segment_sdf(u, v, bx - ax, by - ay, r), f, label)

        up = lambda X, Y: fabric(upper, X, Y)  # noqa: E731
        lo = lambda X, Y: fabric(lower, X, Y)  # noqa: E731
        for side in ((8, 9, 10), (11, 12, 13)):  # legs: shorts over the thighs, bare shins, shoes
            hip, knee, ankle = P[list(side)]
            foot = ankle + (np.sign(ankle[0] - S / 2) * 0.035 * S, 0.03 * S)
            capsule(knee, ankle, 0.033 * S, 7, skin)
            capsule(ankle, foot, 0.026 * S, 5, shoes)
            capsule(hip, knee, 0.045 * S, 4, lo)
        capsule(P[8], P[11], 0.055 * S, 4, lo)  # pelvis
        capsule((S / 2, 0.33 * S), (S / 2, 0.45 * S), 0.1 * S, 3, up)  # torso
        capsule(P[1] - (0, 0.04 * S), P[1] + (0, 0.02 * S), 0.03 * S, 1, skin)  # neck
        capsule(P[0], P[0], 0.075 * S, 1, skin)  # head
        hx, hy = P[0]
        win = cv.window(np.array([[1, 0, -hx], [0, 1, -hy], [0, 0, 1.0]]), hx, hy, 0.085 * S)
        sl, u, v = win
        cv.paint(sl, np.maximum(np.hypot(u, v) - 0.085 * S, v - hair_cut * S), hair, 2)  # hair: top cap
        for sh, el, wr in ((2, 3, 4), (5, 6, 7)):  # arms in front of the torso: sleeves, forearms, hands
            capsule(P[sh], P[el], 0.032 * S, 3, up)
            capsule(P[el], P[wr], 0.025 * S, 6, skin)
            capsule(P[wr], P[wr], 0.03 * S, 6, skin)

        sigma = max(1.0, S / 40)
        g = np.exp(-((cv.coords[None, :] - P[:, :1]) ** 2) / (2 * sigma**2)).astype(np.float32)  # K×W
        h = np.exp(-((cv.coords[None, :] - P[:, 1:]) ** 2) / (2 * sigma**2)).astype(np.float32)  # K×H
        return {
            "image": _to_uint8(cv.img),
            "keypoints": P.astype(np.float32),
            "parsing": cv.ids.copy(),
            "pose_map": h[:, :, None] * g[:, None, :],
            "pose": pose,
            "outfit": outfit,
        }


# --------------------------------------------------------------------------------------------- datasets
def _to_tensor(img: np.ndarray) -> torch.Tensor:
    """H×W×3 (or H×W) uint8 → float32 C×H×W in [0, 1].

    Converted in numpy: torch would run this small op through its thread pool, which costs more than the
    work (and stalls badly when the cores are busy training).
    """
    chw = img[None] if img.ndim == 2 else img.transpose(2, 0, 1)
    return torch.from_numpy(chw.astype(np.float32) / np.float32(255))


_WORLD_OPTIONS = {"num_classes", "max_objects", "min_objects", "textures", "backgrounds", "num_annotators"}


class _ShapesDataset(Dataset):
    """Base: a split of the world (disjoint index ranges), tensors in [0, 1], an optional image transform."""

    def __init__(
        self,
        num_samples: int,
        size: int = 64,
        seed: int = 0,
        split: str = "train",
        transform: Callable | None = None,
        **world_kwargs,
    ):
        if split not in SPLIT_OFFSETS:
            raise ConfigError(f"split must be one of {', '.join(SPLIT_OFFSETS)}, got {split!r}")
        span = SPLIT_OFFSETS["val"] - SPLIT_OFFSETS["train"]
        if not isinstance(num_samples, int | np.integer) or not 1 <= num_samples <= span:
            raise ConfigError(f"num_samples must be an int in [1, {span}], got {num_samples!r}")
        unknown = sorted(set(world_kwargs) - _WORLD_OPTIONS)
        if unknown:
            raise ConfigError(
                f"unknown shapes option(s) {unknown}; valid: {', '.join(sorted(_WORLD_OPTIONS))}"
            )
        if transform is not None and not callable(transform):
            raise ConfigError(f"transform must be callable, got {type(transform).__name__}")
        self.world = ShapesWorld(seed=seed, size=size, **world_kwargs)
        self.num_samples, self.split, self.transform = int(num_samples), split, transform
        self.offset = SPLIT_OFFSETS[split]
        self.classes: list[str] = list(self.world.classes)
        self.num_classes = len(self.classes)
        self.in_chans = 3

    def __len__(self) -> int:
        return self.num_samples

    def _scene_index(self, idx: int, length: int | None = None) -> int:
        n = len(self) if length is None else length
        if idx < 0:
            idx += n
        if not 0 <= idx < n:
            raise IndexError(f"index {idx} out of range for {type(self).__name__} of length {n}")
        return self.offset + int(idx)

    def _image(self, img: np.ndarray) -> torch.Tensor:
        t = _to_tensor(img)
        return self.transform(t) if self.transform is not None else t

    def __repr__(self) -> str:
        return f"{type(self).__name__}(len={len(self)}, split={self.split!r}, {self.world!r})"


class ShapesClassification(_ShapesDataset):
    """(image 3×H×W float, label int): the class of the largest visible object."""

    def __getitem__(self, idx):
        s = self.world.render(self._scene_index(idx), ("image", "label"))
        return self._image(s["image"]), s["label"]


class ShapesSegmentation(_ShapesDataset):
    """(image, mask LongTensor H×W: 0 background, k+1 class k, 255 ignore); num_classes = C + 1."""

    ignore_index = IGNORE_INDEX

    def __init__(
        self, num_samples: int, size: int = 64, seed: int = 0, split: str = "train", transform=None, **kw
    ):
        super().__init__(num_samples, size, seed, split, transform, **kw)
        self.classes = ["background", *self.classes]
        self.num_classes = len(self.classes)

    def __getitem__(self, idx):
        s = self.world.render(self._scene_index(idx), ("image", "mask"))
        return self._image(s["image"]), torch.from_numpy(s["mask"].astype(np.int64))


class ShapesEdges(_ShapesDataset):
    """(image, edges float H×W) or, with ``annotators=True``, (image, annotator maps bool A×H×W)."""

    def __init__(
        self,
        num_samples: int,
        size: int = 64,
        seed: int = 0,
        split: str = "train",
        transform=None,
        annotators: bool = False,
        **kw,
    ):
        super().__init__(num_samples, size, seed, split, transform, **kw)
        self.annotators = bool(annotators)

    def __getitem__(self, idx):
        key = "annotators" if self.annotators else "edges"
        s = self.world.render(self._scene_index(idx), ("image", key))
        if self.annotators:
            return self._image(s["image"]), torch.from_numpy(np.stack(s["annotators"]))
        return self._image(s["image"]), torch.from_numpy(s["edges"].astype(np.float32))


class ShapesRetrieval(_ShapesDataset):
    """(image, group id): ``views_per_group`` views of each of ``num_groups`` scenes; item = group·V + view."""

    def __init__(
        self,
        num_groups: int,
        views_per_group: int = 4,
        size: int = 64,
        seed: int = 0,
        split: str = "train",
        transform=None,
        **kw,
    ):
        super().__init__(num_groups, size, seed, split, transform, **kw)
        if not isinstance(views_per_group, int) or views_per_group < 1:
            raise ConfigError(f"views_per_group must be a positive int, got {views_per_group!r}")
        self.num_groups, self.views_per_group = int(num_groups), views_per_group

    def __len__(self) -> int:
        return self.num_groups * self.views_per_group

    def __getitem__(self, idx):
        i = self._scene_index(idx) - self.offset
        group, k = divmod(i, self.views_per_group)
        return self._image(self.world.view(self.offset + group, k)["image"]), group


class ShapesCaptions(_ShapesDataset):
    """(image, caption str, image index): five caption items per scene; item = scene·5 + caption."""

    captions_per_image = 5

    def __init__(
        self, num_samples: int, size: int = 64, seed: int = 0, split: str = "train", transform=None, **kw
    ):
        super().__init__(num_samples, size, seed, split, transform, **kw)
        self._cache: tuple[int, dict] | None = None  # consecutive items share a scene: render it once

    def __len__(self) -> int:
        return self.num_samples * self.captions_per_image

    def __getitem__(self, idx):
        i = self._scene_index(idx) - self.offset
        image_idx, c = divmod(i, self.captions_per_image)
        if self._cache is None or self._cache[0] != image_idx:
            self._cache = (image_idx, self.world.render(self.offset + image_idx, ("image", "captions")))
        s = self._cache[1]
        return self._image(s["image"]), s["captions"][c], image_idx

    def captions(self, image_idx: int) -> list[str]:
        """The five captions of scene ``image_idx`` of this split."""
        return self.world.render(self._scene_index(image_idx, self.num_samples), ("captions",))["captions"]


PAIR_DIRECTIONS: tuple[str, ...] = ("label2photo", "photo2label", "sketch2photo", "photo2sketch")


class ShapesPairs(_ShapesDataset):
    """(input, target) 3×H×W float pairs for image-to-image translation.

    label2photo / photo2label pair `label_rgb` with the photo; sketch2photo / photo2sketch pair the sketch
    (repeated to 3 channels) with the photo. ``transform`` is applied to both tensors (e.g. normalisation).
    """

    def __init__(
        self,
        num_samples: int,
        size: int = 64,
        seed: int = 0,
        split: str = "train",
        transform=None,
        direction: str = "label2photo",
        **kw,
    ):
        if direction not in PAIR_DIRECTIONS:
            raise ConfigError(f"direction must be one of {', '.join(PAIR_DIRECTIONS)}, got {direction!r}")
        super().__init__(num_samples, size, seed, split, transform, **kw)
        self.direction = direction
        self.out_chans = 3

    def __getitem__(self, idx):
        other = "label_rgb" if "label" in self.direction else "sketch"
        s = self.world.render(self._scene_index(idx), ("image", other))
        photo = self._image(s["image"])
        o = _to_tensor(s[other])
        if o.shape[0] == 1:
            o = o.expand(3, -1, -1).clone()
        if self.transform is not None:
            o = self.transform(o)
        return (photo, o) if self.direction.startswith("photo") else (o, photo)
