"""Bounded-memory edge prediction: overlapping tiles and a memory estimate (pure Python, no torch import).

A full-resolution VGG-16 HED keeps 64-channel float maps of the whole image: about 0.7 kB per pixel on the CPU,
so a 1600×1200 photo peaks near 2.7 GB. `edges predict` and `edges eval` therefore run any image with a side
longer than ``tile`` (default `DEFAULT_TILE`) as overlapping tiles of at most about tile×tile pixels, at the
image's own scale (nothing is resized, so the edges are those of the scale the model was trained at):

- tile origins are multiples of `TILE_ALIGN` (32), so every tile sees the pooling grid of the whole image;
- neighbouring tiles overlap by at least ``2 × TILE_MARGIN`` (2 × 128) pixels and each keeps only the part of its
  output nearest its own centre (cut in the middle of the overlap), so every kept pixel has at least 128 pixels of
  real context on each inner side — more than the half receptive field of HED's deepest side output (conv5_3:
  196 px, so 98 each side). What differs from an untiled run is only the zero padding / ceil-mode pooling seen
  beyond 128 px, measured in `tests/test_edges_cli.py` (max abs difference of the probability ≪ 1/255);
- the cost: pixels in overlaps are computed twice or more (e.g. 1600×1200 at tile 1024: 4 tiles, 2.2× the work
  of one pass), for a peak of about 0.7 kB × tile² instead of 0.7 kB × H × W.

``tile=0`` turns tiling off (one pass, exact; needs memory for the whole image). Whatever the tiling, the image
itself, its probability map and the PNG still scale with H × W; `check_memory` refuses, before any work, an image
whose estimated peak exceeds the memory available, instead of letting the machine swap.
"""

from __future__ import annotations

import os

DEFAULT_TILE = 1024
TILE_MARGIN = 128
TILE_ALIGN = 32
MIN_TILE = 2 * TILE_MARGIN + 2 * TILE_ALIGN  # 320: at least 64 kept pixels per tile

# Bytes per input pixel, besides the network: the decoded RGB image (3), its float tensor (12), the probability
# (4), NMS / PNG conversion temporaries (float64 8 + uint8 1) and slack.
IMAGE_BYTES_PER_PIXEL = 48


def check_tile(tile: int) -> int:
    """``tile`` is 0 (off) or at least `MIN_TILE`; anything else is a `ConfigError`."""
    from imagexplore.errors import ConfigError

    if isinstance(tile, bool) or not isinstance(tile, int) or (tile != 0 and tile < MIN_TILE):
        raise ConfigError(f"tile must be 0 (no tiling) or at least {MIN_TILE} pixels, got {tile!r}")
    return tile


def tile_windows(length: int, tile: int) -> list[tuple[int, int, int, int]]:
    """1-D windows over ``length`` pixels: [(start, end, keep_start, keep_end)], keeps covering 0..length once.

    ``tile=0`` or ``length <= tile``: one window. Otherwise windows of ``tile`` pixels (the last up to
    ``tile + TILE_ALIGN - 1``, so its origin stays aligned) start at multiples of `TILE_ALIGN`, step
    ``tile - 2 × TILE_MARGIN`` (rounded down to the alignment), and neighbours cut in the middle of their overlap.
    """
    check_tile(tile)
    if tile == 0 or length <= tile:
        return [(0, length, 0, length)]
    step = (tile - 2 * TILE_MARGIN) // TILE_ALIGN * TILE_ALIGN
    starts = [0]
    last = (length - tile) // TILE_ALIGN * TILE_ALIGN  # the last window's origin: it ends at `length`
    while last > starts[-1] + step:
        starts.append(starts[-1] + step)
    if last > starts[-1]:
        starts.append(last)
    ends = [min(s + tile, length) for s in starts[:-1]] + [length]
    cuts = [0] + [(starts[i + 1] + ends[i]) // 2 for i in range(len(starts) - 1)] + [length]
    return [(s, e, cuts[i], cuts[i + 1]) for i, (s, e) in enumerate(zip(starts, ends))]


def tiles(
    height: int, width: int, tile: int
) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """2-D tiles: [((y0, y1, keep_y0, keep_y1), (x0, x1, keep_x0, keep_x1))], row by row."""
    return [(wy, wx) for wy in tile_windows(height, tile) for wx in tile_windows(width, tile)]


def largest_tile_pixels(height: int, width: int, tile: int) -> int:
    """Pixels of the largest window the network sees for an image of this size."""
    hy = max(e - s for s, e, _, _ in tile_windows(height, tile))
    wx = max(e - s for s, e, _, _ in tile_windows(width, tile))
    return hy * wx


def model_bytes_per_pixel(first_channels: int, first_reduction: int = 1, sides: int = 5) -> int:
    """Estimated peak bytes per pixel of one forward pass: about 12 bytes per channel of the first (full
    resolution) feature maps — measured 0.51–0.72 kB/px for VGG-16 HED (64 channels) on the CPU at
    0.1–0.5 Mpx — plus the side outputs at the input size."""
    return int(12 * first_channels / first_reduction**2) + 8 * (sides + 1) + 16


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation without swapping (Linux MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def estimate_bytes(height: int, width: int, tile: int, per_pixel: int) -> int:
    """Estimated peak bytes for one image: the network on its largest window plus the whole-image arrays."""
    return per_pixel * largest_tile_pixels(height, width, tile) + IMAGE_BYTES_PER_PIXEL * height * width


def check_memory(
    path, height: int, width: int, tile: int, per_pixel: int, available: int | None = None
) -> str | None:
    """A one-line reason if the image would not fit in memory (None if it fits or memory is unknown)."""
    available = available_memory() if available is None else available
    need = estimate_bytes(height, width, tile, per_pixel)
    if available is None or need <= available:
        return None
    hint = (
        f"; tiling (--tile {DEFAULT_TILE}) would bound the network's part"
        if tile == 0 and width * height > DEFAULT_TILE**2
        else "; use a smaller --tile or downscale the image"
    )
    return (
        f"{path} ({width}×{height}) needs about {need / 2**30:.1f} GiB, "
        f"{available / 2**30:.1f} GiB available{hint}"
    )
