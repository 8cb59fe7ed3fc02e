"""The shapes world: a procedural, deterministic dataset with the ground truth of every chapter.

A scene is a square canvas (32–256 px) with a background (flat, gradient, mottled noise or a crop of one of
scikit-image's bundled CC0 texture photos) and 1–4 shapes drawn in order (later ones occlude earlier ones).
From one scene the world yields a class label, a VOC-style mask, thin edges, several "human-like" edge
annotations, five captions (`captions`), a sketch and a colour-coded label map; `views` re-renders a scene under
geometric and photometric changes (a retrieval group) and `person` draws a clothed figure with keypoints and
a parsing map (`persons`). Everything is a pure function of (seed, index): every random draw comes from
``np.random.default_rng([seed, index, purpose])``, never from global state. The drawing primitives (signed
distances, anti-aliased coverage, the canvas) are in `render`.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Iterable, Sequence

import numpy as np

from imagexplore.data.shapes.captions import scene_captions
from imagexplore.data.shapes.layout import Background, Layout, SceneObject
from imagexplore.data.shapes.persons import draw_person
from imagexplore.data.shapes.render import (
    TEXTURE_NAMES,
    Canvas,
    bilinear,
    instance_edges,
    pattern_alpha,
    shape_sdf,
    texture_bank,
    to_uint8,
    translate_rotate,
)
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
PATTERNS: tuple[str, ...] = ("solid", "stripes", "dots")
SCENE_KEYS: tuple[str, ...] = (
    "image", "label", "mask", "edges", "annotators", "captions", "sketch", "label_rgb", "objects", "instances",
)  # fmt: skip

IGNORE_INDEX = 255
MIN_SIZE, MAX_SIZE = 32, 256

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
    def layout(self, i: int) -> Layout:
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
                SceneObject(
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
        bg = Background(kind, c1, c2, v, angle=2 * math.pi * q[6])
        if kind == "noise":
            g = 3 + int(4 * q[7])
            grid = np.clip(c1 + rng.uniform(-0.16, 0.16, (g, g, 3)), 0, 1).astype(np.float32)
            bg = Background(kind, c1, c2, v, grid=grid)
        elif kind == "texture":
            span = 0.3 + 0.3 * q[8]  # fraction of the 512-px photo the canvas shows
            # Coarsest pyramid level that still has >= 1 texture pixel per canvas pixel (no aliasing).
            level = max(0, min(3, int(math.log2(max(1.0, span * 512 / S)))))
            side = 512 >> level
            bg = Background(
                kind, c1, c2, v,
                texture=int(q[7] * len(TEXTURE_NAMES)),
                tex_level=level,
                tex_scale=span * side / S,
                tex_offset=(side * q[9], side * q[10]),
                contrast=0.5 + 0.4 * q[11],
            )  # fmt: skip
        return Layout(bg, tuple(objects))

    # ---------------------------------------------------------------------------------------- drawing
    def _draw_background(self, bg: Background, cv: Canvas) -> None:
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
            cv.img[:] = bilinear(bg.grid, X * (g / S), Y * (g / S), wrap=False)
        else:
            tex = texture_bank()[bg.texture][bg.tex_level]
            val = bilinear(
                tex, X * bg.tex_scale + bg.tex_offset[0], Y * bg.tex_scale + bg.tex_offset[1], wrap=True
            )
            shade = 1 + bg.contrast * (val - 0.5)
            cv.img[:] = np.clip(bg.c1 * shade[..., None], 0, 1)

    def _draw_objects(self, lay: Layout, cv: Canvas) -> list:
        """Draws the objects in order; returns each one's (window, unoccluded pixels) or None if off canvas."""
        full = []
        for j, o in enumerate(lay.objects):
            win = cv.window(translate_rotate(o.cx, o.cy, o.angle), o.cx, o.cy, o.radius)
            if win is None:
                full.append(None)
                continue
            sl, u, v = win
            sdf = shape_sdf(SHAPE_CLASSES[o.cls], u, v, o.radius)
            fill, pat = o.rgb, None
            if o.pattern:
                pat = pattern_alpha(o.pattern, u, v, o.period, o.pattern_angle, o.phase, cv.scale)
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
        cv = Canvas(self.size, want_pattern="annotators" in keys)
        self._draw_background(lay.background, cv)
        full = self._draw_objects(lay, cv)
        ids = cv.ids
        areas = np.bincount(ids.ravel(), minlength=len(lay.objects) + 1)[1:]
        label_j = int(np.argmax(areas))
        out: dict = {"image": to_uint8(cv.img), "label": lay.objects[label_j].cls}

        need = set(keys)
        edges = instance_edges(ids) if need & {"mask", "edges", "annotators", "sketch", "label_rgb"} else None
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
            out["captions"] = scene_captions(
                self._rng(i, _CAPTION), self.size, lay.background, objects, label_j
            )
        if "sketch" in need:
            out["sketch"] = self._sketch(i, edges)
        return {k: out[k] for k in keys}

    def _size_word(self, radius: float) -> str:
        r = radius / self.size
        return "small" if r < 0.15 else "medium-sized" if r < 0.33 else "large"

    def _describe(self, o: SceneObject, area: int, full_area: int, occluded_by: list[int]) -> dict:
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
        d = bilinear(disp, gx, gy, wrap=False)
        warped = bilinear(lines, coords[None, :] + d[..., 0], coords[:, None] + d[..., 1], wrap=False)
        dark = np.clip(warped * 1.7, 0, 1) * bilinear(pressure, gx, gy, wrap=False)
        return (255 - 215 * dark + 0.5).astype(np.uint8)

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
        cv = Canvas(S, view_to_scene=np.linalg.inv(scene_to_view))
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
        return {"image": to_uint8(img), "mask": lut[cv.ids], "params": params}

    def views(self, i: int, n: int) -> list[dict]:
        """n views of scene i (one retrieval group): similar to each other, different from other scenes."""
        if not isinstance(n, int | np.integer) or n < 1:
            raise DataError(f"number of views must be a positive int, got {n!r}")
        return [self.view(i, k) for k in range(n)]

    # ---------------------------------------------------------------------------------------- persons
    def person(self, pose: int, outfit: int) -> dict:
        """A clothed figure: pose id → limb angles, skin and hair (the "person"); outfit id → clothes.

        The body parts and their parsing labels depend on the pose only, so rendering pose A with outfit B is
        the exact ground truth of a clothes swap. Returns image (H×W×3 uint8), keypoints (14×2 float32, x, y
        pixels, `KEYPOINT_NAMES` order), parsing (H×W uint8, `PARSING_LABELS`), pose_map (14×H×W float32
        Gaussian heat maps), pose and outfit.
        """
        pose, outfit = self._check_index(pose), self._check_index(outfit)
        return draw_person(
            self.size,
            pose,
            outfit,
            pose_rng=self._rng(pose, _POSE),
            outfit_rng=self._rng(outfit, _OUTFIT),
            backdrop_rng=self._rng(0, _PERSON_BG),  # the backdrop depends on the world seed only
        )
