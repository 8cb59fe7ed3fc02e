"""Drawing primitives of the shapes world: texture photos, bilinear sampling, signed distances and the canvas.

Rendering evaluates a signed distance function (SDF) per shape on the pixel grid of its bounding box and turns
it into anti-aliased coverage (``clip(0.5 - distance_in_pixels, 0, 1)``), so it is exact to a pixel, cheap
and vectorised. Views reuse the same code with the pixel grid mapped through an affine transform (`Canvas`).
"""

from __future__ import annotations

import functools
import math

import numpy as np

TEXTURE_NAMES: tuple[str, ...] = ("brick", "grass", "gravel")  # skimage.data textures (public domain / CC0)


# ----------------------------------------------------------------------------------------------- textures
@functools.lru_cache(maxsize=1)
def texture_bank() -> tuple[tuple[np.ndarray, ...], ...]:
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
    texture_bank()


def bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray, wrap: bool) -> np.ndarray:
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
def box_sdf(u, v, hx: float, hy: float):
    qx, qy = np.abs(u) - hx, np.abs(v) - hy
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    return outside + np.minimum(np.maximum(qx, qy), 0)


def star_sdf(u, v, n: int, r_out: float, r_in: float, offset: float):
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


def shape_sdf(kind: str, u, v, r: float):
    """Signed distance (negative inside) of shape ``kind`` with circumradius ``r`` in its local frame."""
    if kind == "circle":
        return np.hypot(u, v) - r
    if kind == "ring":
        return np.abs(np.hypot(u, v) - 0.7 * r) - 0.3 * r
    if kind == "cross":
        return np.minimum(box_sdf(u, v, 0.95 * r, 0.3 * r), box_sdf(u, v, 0.3 * r, 0.95 * r))
    if kind == "crescent":
        return np.maximum(np.hypot(u, v) - r, 0.82 * r - np.hypot(u - 0.45 * r, v))
    n, inner, offset = _POLYGONS[kind]
    return star_sdf(u, v, n, r, inner * r, offset)


def segment_sdf(u, v, bx: float, by: float, r: float):
    """Capsule from (0, 0) to (bx, by) with radius r."""
    t = np.clip((u * bx + v * by) * (1.0 / max(bx * bx + by * by, 1e-9)), 0, 1)
    return np.hypot(u - t * bx, v - t * by) - r


def pattern_alpha(kind: int, u, v, period: float, angle: float, phase: float, scale: float):
    """Anti-aliased coverage (0..1) of the second colour of a stripes/dots pattern in local coordinates."""
    if kind == 1:  # stripes: sin scaled so that its slope at the zero crossings is one pixel per pixel
        w = u * math.cos(angle) + v * math.sin(angle)
        s = np.sin(w * (2 * math.pi / period) + phase) * (period / (2 * math.pi) * scale)
        return np.clip(s + 0.5, 0, 1)
    du = np.mod(u + phase, period) - period / 2
    dv = np.mod(v + phase, period) - period / 2
    return np.clip(0.5 - (np.hypot(du, dv) - 0.28 * period) * scale, 0, 1)


# ------------------------------------------------------------------------------------------------- canvas
class Canvas:
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


def translate_rotate(cx: float, cy: float, angle: float) -> np.ndarray:
    """Scene → local frame of a shape at (cx, cy) rotated by ``angle``."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, s, -c * cx - s * cy], [-s, c, s * cx - c * cy], [0, 0, 1]])


def instance_edges(ids: np.ndarray) -> np.ndarray:
    """1-px boundaries between regions of an id map, on the side of the higher id (the occluder)."""
    e = np.zeros(ids.shape, bool)
    a, b = ids[:, :-1], ids[:, 1:]
    e[:, :-1] |= a > b
    e[:, 1:] |= b > a
    a, b = ids[:-1], ids[1:]
    e[:-1] |= a > b
    e[1:] |= b > a
    return e


def to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
