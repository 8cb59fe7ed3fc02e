"""The random parameters of a shapes scene (`ShapesWorld.layout`): background and objects in drawing order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SceneObject:
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
class Background:
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
class Layout:
    background: Background
    objects: tuple[SceneObject, ...]
