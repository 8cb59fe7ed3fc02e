"""Edge non-maximum suppression as in Dollár's structured-edge toolbox (``convTri``, ``edgesNmsMex``).

HED/RCF/BDCN evaluation scripts thin soft edge maps this way before the BSDS benchmark, so scores are only
comparable when the same NMS is used. Everything follows the Mex code's float32 arithmetic, vectorised.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d


def conv_tri(img: np.ndarray, r: float) -> np.ndarray:
    """Separable triangle blur (Dollár's ``convTri``) with 'symmetric' borders; r >= 1 integer or 0 < r < 1."""
    img = np.asarray(img, np.float32)
    if r <= 0:
        return img.copy()
    if r < 1:
        p = 12 / r / (r + 2) - 2
        f = np.array([1, p, 1]) / (2 + p)
    else:
        r = int(round(r))
        f = np.concatenate([np.arange(1, r + 2), np.arange(r, 0, -1)]) / (r + 1) ** 2
    f = f.astype(np.float32)
    out = correlate1d(img, f, axis=0, mode="reflect")  # scipy 'reflect' == Matlab 'symmetric'
    return correlate1d(out, f, axis=1, mode="reflect")


def edge_orientation(edges: np.ndarray) -> np.ndarray:
    """Normal orientation in [0, pi) from second derivatives of the blurred map (Dollár's edgesNms recipe)."""
    oy, ox = np.gradient(conv_tri(edges, 4))  # Matlab gradient: x along columns, y along rows
    oxx = np.gradient(ox, axis=1)
    oyy, oxy = np.gradient(oy)
    return np.mod(np.arctan(oyy * np.sign(-oxy) / (oxx + 1e-5)), np.pi).astype(np.float32)


def _interp(e: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear lookup with edgesNmsMex's clamping to [0, w-1.001] × [0, h-1.001] (float32 like the Mex)."""
    h, w = e.shape
    x = np.clip(x, np.float32(0), np.float32(w - 1.001))
    y = np.clip(y, np.float32(0), np.float32(h - 1.001))
    x0, y0 = x.astype(np.intp), y.astype(np.intp)
    dx0, dy0 = x - x0, y - y0
    dx1, dy1 = 1 - dx0, 1 - dy0
    return (e[y0, x0] * dx1 * dy1 + e[y0, x0 + 1] * dx0 * dy1 + e[y0 + 1, x0] * dx1 * dy0) + e[
        y0 + 1, x0 + 1
    ] * dx0 * dy0


def edge_nms(edges: np.ndarray, orient: np.ndarray, r: int = 1, s: int = 5, m: float = 1.01) -> np.ndarray:
    """Suppress pixels weaker than their neighbours at ±1..r along the normal, then fade an s-pixel border."""
    e0 = np.asarray(edges, np.float32)
    h, w = e0.shape
    out = e0.copy()
    ys, xs = np.nonzero(e0)
    val = e0[ys, xs] * np.float32(m)
    o = orient[ys, xs].astype(np.float32)
    co, si = np.cos(o), np.sin(o)
    xf, yf = xs.astype(np.float32), ys.astype(np.float32)
    weaker = np.zeros(len(ys), bool)
    for d in range(-r, r + 1):
        if d:
            weaker |= val < _interp(e0, xf + np.float32(d) * co, yf + np.float32(d) * si)
    out[ys[weaker], xs[weaker]] = 0
    s = min(s, w // 2, h // 2)
    if s > 0:
        ramp = np.arange(s, dtype=np.float32) / np.float32(s)
        fx, fy = np.ones(w, np.float32), np.ones(h, np.float32)
        fx[:s], fx[w - s :] = ramp, ramp[::-1]
        fy[:s], fy[h - s :] = ramp, ramp[::-1]
        out *= fx[None, :]
        out *= fy[:, None]
    return out


def nms(edges: np.ndarray, r: int = 1, s: int = 5, m: float = 1.01) -> np.ndarray:
    """Thin a soft edge map to 1-px ridges: `edge_orientation` + `edge_nms` with the toolbox defaults."""
    edges = np.asarray(edges, np.float32)
    return edge_nms(edges, edge_orientation(edges), r=r, s=s, m=m)
