"""Clothed persons of the shapes world (`ShapesWorld.person`): pose keypoints, parsing map and pose heat maps.

The body parts and their parsing labels depend on the pose only, so rendering pose A with outfit B is the exact
ground truth of a clothes swap.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np

from imagexplore.data.shapes.render import Canvas, segment_sdf, to_uint8

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


def pose_keypoints(rng: np.random.Generator) -> np.ndarray:
    """Keypoints (14×2, canvas fractions) of a pose drawn from ``rng``: constant body, random limb angles."""
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
    return kp


def draw_person(
    size: int,
    pose: int,
    outfit: int,
    pose_rng: np.random.Generator,
    outfit_rng: np.random.Generator,
    backdrop_rng: np.random.Generator,
) -> dict:
    """The figure of pose id ``pose`` (limb angles, skin and hair from ``pose_rng``) in outfit ``outfit``
    (clothes from ``outfit_rng``) before a backdrop (``backdrop_rng``); see `ShapesWorld.person` for the keys."""
    S = size
    kp = pose_keypoints(pose_rng)
    skin = np.array(((0.96, 0.80, 0.69), (0.88, 0.67, 0.52), (0.72, 0.52, 0.36), (0.55, 0.37, 0.25), (0.38, 0.26, 0.18))[int(pose_rng.integers(5))], np.float32)  # fmt: skip
    hair = np.array(((0.1, 0.07, 0.05), (0.35, 0.2, 0.1), (0.75, 0.6, 0.3), (0.55, 0.15, 0.05), (0.6, 0.6, 0.6))[int(pose_rng.integers(5))], np.float32)  # fmt: skip
    hair_cut = pose_rng.uniform(-0.03, 0.01)  # hair line relative to the head centre

    def cloth():
        c1 = np.array(
            colorsys.hsv_to_rgb(
                outfit_rng.uniform(), outfit_rng.uniform(0.3, 0.9), outfit_rng.uniform(0.3, 0.95)
            ),
            np.float32,
        )
        c2 = np.array(
            colorsys.hsv_to_rgb(
                outfit_rng.uniform(), outfit_rng.uniform(0.0, 0.9), outfit_rng.uniform(0.15, 1.0)
            ),
            np.float32,
        )
        return (
            c1,
            c2,
            int(outfit_rng.integers(5)),
            outfit_rng.uniform(0.03, 0.07) * S,
        )  # kind: solid/h/v stripes/checks/dots

    upper, lower = cloth(), cloth()
    shoes = np.array(
        colorsys.hsv_to_rgb(outfit_rng.uniform(), outfit_rng.uniform(0, 0.6), outfit_rng.uniform(0.05, 0.6)),
        np.float32,
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

    cv = Canvas(S)
    top, bottom = (
        np.array(colorsys.hsv_to_rgb(backdrop_rng.uniform(), 0.12, 0.85), np.float32),
        np.float32(0.6),
    )
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
            cv.paint(sl, segment_sdf(u, v, bx - ax, by - ay, r), f, label)

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
        "image": to_uint8(cv.img),
        "keypoints": P.astype(np.float32),
        "parsing": cv.ids.copy(),
        "pose_map": h[:, :, None] * g[:, None, :],
        "pose": pose,
        "outfit": outfit,
    }
