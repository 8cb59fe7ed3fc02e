"""Reading boundary ground truth (BSDS500 / NYUD `.mat`, or an image) and edge-probability predictions.

Both readers return exactly what the Matlab benchmark sees: boundaries as stored by the annotators (no
thinning, no dilation), predictions as ``double(imread(f)) / 255`` for 8-bit files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from imagexplore.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp")
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, what Matlab's rgb2gray uses


def _read_grey(path: Path) -> tuple[np.ndarray, float]:
    """Image as float64 grey values plus the maximum of its value range (255 or 65535); alpha is ignored."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
            mode = im.mode
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read the image ({e}); give a PNG/JPEG/TIFF file") from None
    if arr.dtype == bool:
        return arr.astype(np.float64), 1.0
    if arr.dtype not in (np.uint8, np.uint16, np.int32) or arr.ndim not in (2, 3):
        raise DataError(f"{path}: unsupported image type {mode} {arr.dtype}; give 8- or 16-bit grey or RGB")
    top = 255.0 if arr.dtype == np.uint8 else 65535.0
    arr = arr.astype(np.float64)
    if arr.ndim == 3:
        if arr.shape[2] < 3:  # grey + alpha
            arr = arr[..., 0]
        else:
            arr = arr[..., :3] @ _LUMA
    return arr, top


def load_prediction(path: str | Path) -> np.ndarray:
    """Edge probabilities in [0, 1] as float32 H×W: 8-bit grey / 255 (as Matlab's ``double(imread)/255``),
    16-bit / 65535, RGB(A) → BT.601 luminance of RGB (alpha ignored)."""
    arr, top = _read_grey(Path(path))
    return (arr / top).astype(np.float32)


def _mat_boundaries(path: Path) -> np.ndarray:
    import scipy.io as sio

    try:
        mat = sio.loadmat(path)
    except Exception as e:  # scipy raises several types for non-.mat / truncated files
        raise DataError(
            f"{path}: not a readable .mat file ({type(e).__name__}); give a BSDS-style groundTruth .mat"
        ) from None
    if "groundTruth" not in mat:
        raise DataError(f"{path}: no variable 'groundTruth'; expected a BSDS500/NYUD ground-truth .mat")
    cell = np.asarray(mat["groundTruth"]).ravel()
    if cell.size == 0:
        raise DataError(f"{path}: 'groundTruth' holds zero annotators; each image needs at least one")
    planes = []
    for k, s in enumerate(cell):
        if not isinstance(s, np.ndarray) or s.dtype.names is None or "Boundaries" not in s.dtype.names:
            raise DataError(
                f"{path}: annotator {k + 1} has no 'Boundaries' field; expected a cell of structs"
            )
        b = np.asarray(s["Boundaries"].ravel()[0])
        if b.ndim != 2:
            raise DataError(f"{path}: annotator {k + 1}'s Boundaries is {b.ndim}-D; expected an H×W map")
        planes.append(b != 0)
    if len({p.shape for p in planes}) > 1:
        sizes = ", ".join(f"{p.shape[0]}×{p.shape[1]}" for p in planes)
        raise DataError(f"{path}: annotators have different sizes ({sizes}); all must share the image size")
    return np.stack(planes)


def load_ground_truth(path: str | Path) -> np.ndarray:
    """Boundary maps as bool (A, H, W), one plane per annotator.

    ``.mat``: the BSDS500/NYUD ``groundTruth`` cell, field ``Boundaries``. Any image file: one annotator, grey
    (RGB → luminance), a pixel is a boundary when its value exceeds half of its type's maximum.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: ground-truth file not found")
    if path.suffix.lower() == ".mat":
        return _mat_boundaries(path)
    arr, top = _read_grey(path)
    return (arr > 0.5 * top)[None]
