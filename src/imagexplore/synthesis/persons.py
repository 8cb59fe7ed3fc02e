"""Person data for SwapGAN (chapter 8.2): our on-disk person form, clothes-swap pairs from the shapes world with
their exact ground truth, and readers of the DeepFashion / Market-1501 layouts that pose-transfer papers use.

**Our person form** (written by `write_person`, `export_persons`, `convert_deepfashion`/`convert_market`; read by
`read_person`). One person is three files with the same NAME:

- ``NAME.png``: the RGB image (W×H);
- ``NAME.pose.json``: ``{"keypoints": [[x, y], ...], "order": "shapes" | "coco18"}``. x, y are pixels in continuous
  coordinates, the shapes world's convention: pixel (row r, column c) covers [c, c+1) × [r, r+1), its centre is
  (c + 0.5, r + 0.5). A missing keypoint is ``[-1, -1]`` (a keypoint with x or y equal to -1 is read as missing).
  The number of keypoints must match the order: 14 for ``shapes``, 18 for ``coco18``;
- ``NAME.parsing.png``: the parsing map, an 8-bit grey PNG whose pixel values are labels (palette PNGs, as human
  parsers often write them, are read by palette index).

The order names both the keypoint order and the parsing label set (`PERSON_ORDERS`):
``shapes`` = the 14 `KEYPOINT_NAMES` (LSP order) and the 8 shapes `PARSING_LABELS`; ``coco18`` = the 18
COCO/OpenPose keypoints of the pose-transfer papers (`COCO18_KEYPOINTS`) and the 20 LIP labels (`LIP20_LABELS`,
which CIHP shares; what LIP-trained human parsers such as SCHP output).

Keypoints may lie outside the image by up to a quarter of its width (x) or height (y) — a cropped foot, a hand at
the border: they are kept as they are, and their heat map is the visible tail of the Gaussian. Anything farther is
refused: it means the pose belongs to another image size (e.g. annotations of 256×256 images used with the
256×176 resized ones).

**Published layouts** (read only). As released with PG2, Deformable GAN (pose-gan) and PATN (Pose-Transfer):

- annotation CSV ``fasion-annotation-{train,test}.csv`` (DeepFashion; PATN's ``fasion-resize-annotation-*`` too)
  and ``market-annotation-{train,test}.csv``: a header line ``name:keypoints_y:keypoints_x``, then one line per
  image, fields separated by ``:``, the two keypoint fields JSON lists of 18 integers — rows, then columns, pixel
  indices in the stored image — with ``-1`` where the pose estimator found nothing. The 18 keypoints come in
  OpenPose's COCO order (14 right eye, 15 left eye, 16 right ear, 17 left ear; pose-gan's ``LABELS`` list names
  14–17 the other way round, but its own limb table joins the right shoulder to 16, as OpenPose does);
- pairs CSV ``fasion-pairs-{train,test}.csv`` / ``market-pairs-{train,test}.csv``: a header ``from,to`` and one
  pair of image names per line — the same person (same clothes) in two poses;
- images: DeepFashion in ``{train,test}/``; Market-1501 in ``bounding_box_{train,test}/`` (its own folder names)
  or ``{train,test}/`` (as pose-gan and PATN rename them).

Neither release has parsing maps, but SwapGAN's G2 is conditioned on one, so the readers also expect
``ROOT/parsing/STEM.png`` (LIP-20 labels) for every image; that folder is our convention, not a published one.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from imagexplore.data.images import load_image, read_error_reason
from imagexplore.data.shapes import KEYPOINT_NAMES, PARSING_LABELS, SPLIT_OFFSETS, ShapesWorld
from imagexplore.errors import ConfigError, DataError
from imagexplore.outputs import check_out_dir

COCO18_KEYPOINTS: tuple[str, ...] = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
    "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "right_eye", "left_eye",
    "right_ear", "left_ear",
)  # fmt: skip
LIP20_LABELS: tuple[str, ...] = (
    "background", "hat", "hair", "glove", "sunglasses", "upper_clothes", "dress", "coat", "socks", "pants",
    "jumpsuits", "scarf", "skirt", "face", "left_arm", "right_arm", "left_leg", "right_leg", "left_shoe",
    "right_shoe",
)  # fmt: skip

MISSING = -1.0  # the value of both coordinates of a missing keypoint, in our form and in the published CSVs
OUTSIDE_MARGIN = 0.25  # keypoints up to this fraction of the image width/height outside it are accepted
PUBLISHED_SIGMA = 6.0  # heat-map sigma (pixels) of the pose-transfer papers' code, the readers' default


@dataclass(frozen=True)
class PersonOrder:
    """A keypoint order with its parsing label set.

    ``clothes`` groups the clothes labels by body zone; `swap_clothes_parsing` relabels A's clothes zone by zone.
    Accessories (hat, gloves, scarf, socks, shoes in LIP) are not swapped.
    """

    name: str
    keypoints: tuple[str, ...]
    labels: tuple[str, ...]
    label_set: str
    clothes: tuple[tuple[int, ...], ...]


PERSON_ORDERS: dict[str, PersonOrder] = {
    "shapes": PersonOrder("shapes", KEYPOINT_NAMES, PARSING_LABELS, "shapes", ((3,), (4,), (5,))),
    # LIP zones: upper body (upper clothes, dress, coat, jumpsuits), lower body (pants, skirt)
    "coco18": PersonOrder("coco18", COCO18_KEYPOINTS, LIP20_LABELS, "lip20", ((5, 6, 7, 10), (9, 12))),
}


def _order(name: str) -> PersonOrder:
    if name not in PERSON_ORDERS:
        raise ConfigError(f"keypoint order must be one of {', '.join(PERSON_ORDERS)}, got {name!r}")
    return PERSON_ORDERS[name]


@dataclass
class Person:
    """One person: image H×W×3 uint8, keypoints K×2 float32 (x, y; [-1, -1] missing), parsing H×W uint8.

    ``order`` (a key of `PERSON_ORDERS`) fixes the keypoint order and the parsing labels (`labels`).
    """

    image: np.ndarray
    keypoints: np.ndarray
    parsing: np.ndarray
    order: str = "shapes"

    @property
    def labels(self) -> tuple[str, ...]:
        return _order(self.order).labels


# --------------------------------------------------------------------------------------------------------------
# Checks shared by the reader of our form, the writer and the published-layout readers. `where` names the file.


def _fmt_labels(values) -> str:
    values = sorted(int(v) for v in values)
    shown = ", ".join(map(str, values[:8])) + (", ..." if len(values) > 8 else "")
    return "{" + shown + "}"


def _check_parsing(parsing: np.ndarray, order: PersonOrder, where: str) -> np.ndarray:
    """Labels in 0..L-1 (→ uint8), or a one-line DataError naming ``where``."""
    n = len(order.labels)
    present = np.unique(parsing)
    bad = present[(present < 0) | (present >= n)]
    if bad.size:
        raise DataError(f"{where} has labels {_fmt_labels(bad)}; expected 0..{n - 1} ({order.label_set})")
    return parsing.astype(np.uint8)


def _check_keypoints(kp: np.ndarray, order: PersonOrder, hw: tuple[int, int], where: str, image: str) -> None:
    """The count matches the order; every present keypoint is finite and within the margin around the image."""
    k = len(order.keypoints)
    if kp.shape != (k, 2):
        raise DataError(f"{where} has {len(kp)} keypoints; expected {k} for order {order.name!r}")
    if not np.isfinite(kp).all():
        j = int(np.nonzero(~np.isfinite(kp).all(axis=1))[0][0])
        raise DataError(
            f"{where}: keypoint {j} ({order.keypoints[j]}) is {kp[j].tolist()}; expected finite x, y"
        )
    h, w = hw
    present = ~(kp == MISSING).any(axis=1)
    far = present & (
        (kp[:, 0] < -OUTSIDE_MARGIN * w)
        | (kp[:, 0] > (1 + OUTSIDE_MARGIN) * w)
        | (kp[:, 1] < -OUTSIDE_MARGIN * h)
        | (kp[:, 1] > (1 + OUTSIDE_MARGIN) * h)
    )
    if far.any():
        j = int(np.nonzero(far)[0][0])
        x, y = kp[j].tolist()
        raise DataError(
            f"{where}: keypoint {j} ({order.keypoints[j]}) at ({x:g}, {y:g}) is far outside the {w}×{h} image "
            f"{image} (up to {OUTSIDE_MARGIN:.0%} of its size beyond a side is accepted); "
            "is it the pose of another image size?"
        )


def _normalise_missing(kp: np.ndarray) -> np.ndarray:
    kp = kp.astype(np.float32)
    kp[(kp == MISSING).any(axis=1)] = MISSING
    return kp


# --------------------------------------------------------------------------------------------------------------
# Our person form


def _pose_form(order: str = "shapes|coco18") -> str:
    return f'{{"keypoints": [[x, y], ...], "order": "{order}"}}'


def _read_pose(path: Path, order: str | None) -> tuple[np.ndarray, PersonOrder]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path} is not valid JSON ({exc.msg}, line {exc.lineno}); expected {_pose_form()}"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read pose file {path}: {read_error_reason(exc)}") from exc
    if not isinstance(data, dict) or "keypoints" not in data:
        raise DataError(f"{path} has no 'keypoints' key; expected {_pose_form()}")
    file_order = data.get("order")
    if file_order is None and order is None:
        raise DataError(f"{path} has no 'order' key; expected {_pose_form()} (or pass order=)")
    if file_order is not None and (not isinstance(file_order, str) or file_order not in PERSON_ORDERS):
        raise DataError(f"{path} has order {file_order!r}; expected one of {', '.join(PERSON_ORDERS)}")
    if file_order is not None and order is not None and file_order != order:
        raise DataError(f"{path} has order {file_order!r}; expected {order!r}")
    po = _order(file_order or order)
    raw = data["keypoints"]
    if not isinstance(raw, list):
        raise DataError(f"{path}: 'keypoints' is a {type(raw).__name__}; expected {_pose_form(po.name)}")
    for j, p in enumerate(raw):
        ok = isinstance(p, list) and len(p) == 2
        if not ok or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in p):
            raise DataError(
                f"{path}: keypoint {j} is {json.dumps(p)}; expected [x, y] numbers ([-1, -1] if missing)"
            )
    kp = np.array(raw, np.float64).reshape(len(raw), 2)
    return _normalise_missing(kp), po


def _read_label_map(path: Path) -> np.ndarray:
    """A parsing PNG as an int array: grey and 16-bit values, palette indices, or equal-channel RGB."""
    try:
        with Image.open(path) as im:
            im.load()
            mode, a = im.mode, np.asarray(im)
    except Exception as exc:  # Pillow raises many types for bad files
        raise DataError(f"cannot read parsing map {path}: {read_error_reason(exc)}") from exc
    if mode in ("RGB", "RGBA") and (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all():
        a = a[..., 0]
    elif mode not in ("L", "P", "I;16", "I;16B", "I;16L", "I"):
        raise DataError(
            f"{path} is a {mode} image; expected a label map (8-bit grey or palette PNG whose values are labels)"
        )
    return a.astype(np.int64)


def _sibling(image_path: Path, suffix: str) -> Path:
    return image_path.with_name(image_path.stem + suffix)


def read_person(
    image_path: str | os.PathLike,
    pose_path: str | os.PathLike | None = None,
    parsing_path: str | os.PathLike | None = None,
    order: str | None = None,
) -> Person:
    """Read one person of our form: ``NAME.png`` with ``NAME.pose.json`` and ``NAME.parsing.png`` beside it.

    ``pose_path`` / ``parsing_path`` name other files; ``order`` is the order to expect (the file's ``order`` key
    must agree, and supplies it when given). Any problem is a one-line `DataError` that names the file.
    """
    image_path = Path(image_path)
    paths = {}
    for key, given, suffix, flag in (
        ("pose", pose_path, ".pose.json", "--person-pose / pose_path="),
        ("parsing", parsing_path, ".parsing.png", "--person-parsing / parsing_path="),
    ):
        p = Path(given) if given is not None else _sibling(image_path, suffix)
        if not p.is_file():
            where = "" if given is not None else " beside it"
            raise DataError(
                f"no {key} file for {image_path}: {p} not found (expected{where}; name another with {flag})"
            )
        paths[key] = p
    if order is not None:
        _order(order)
    image = np.array(load_image(image_path), np.uint8)
    kp, po = _read_pose(paths["pose"], order)
    h, w = image.shape[:2]
    _check_keypoints(kp, po, (h, w), str(paths["pose"]), str(image_path))
    labels = _read_label_map(paths["parsing"])
    if labels.shape != (h, w):
        raise DataError(
            f"{paths['parsing']} is {labels.shape[1]}×{labels.shape[0]}; expected the size of {image_path}, {w}×{h}"
        )
    parsing = _check_parsing(labels, po, str(paths["parsing"]))
    return Person(image=image, keypoints=kp, parsing=parsing, order=po.name)


def _json_number(v: float) -> float | int:
    """The shortest decimal that reads back to the same float32 (so a round trip is exact); -1 as an int."""
    return -1 if v == MISSING else float(str(np.float32(v)))


def write_person(out_dir: str | os.PathLike, name: str, person: Person) -> Path:
    """Write ``person`` in our form as ``out_dir/name.png`` + ``.pose.json`` + ``.parsing.png``; returns the image
    path. The person is checked first (shapes, keypoint count and range, labels), so no bad file is written."""
    if not name or name in (".", "..") or any(c in name for c in "/\\"):
        raise ConfigError(f"a person name must be a plain file name, got {name!r}")
    po = _order(person.order)
    image, parsing = np.asarray(person.image), np.asarray(person.parsing)
    where = f"person {name!r}"
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"{where}: image is {image.dtype} {image.shape}; expected H×W×3 uint8")
    if parsing.shape != image.shape[:2]:
        raise DataError(f"{where}: parsing is {parsing.shape}; expected the image's H×W {image.shape[:2]}")
    parsing = _check_parsing(parsing.astype(np.int64), po, f"{where} parsing")
    kp = _normalise_missing(np.asarray(person.keypoints, np.float64).reshape(-1, 2))
    _check_keypoints(kp, po, image.shape[:2], f"{where} pose", f"{name}.png")
    out = check_out_dir(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    img_path = out / f"{name}.png"
    Image.fromarray(image, "RGB").save(img_path)
    pose = {"keypoints": [[_json_number(x), _json_number(y)] for x, y in kp.tolist()], "order": po.name}
    _sibling(img_path, ".pose.json").write_text(json.dumps(pose) + "\n", encoding="utf-8")
    Image.fromarray(parsing, "L").save(_sibling(img_path, ".parsing.png"))
    return img_path


# --------------------------------------------------------------------------------------------------------------
# Network inputs


def pose_heatmaps(keypoints, size: int | tuple[int, int], sigma: float | None = None) -> np.ndarray:
    """K×H×W float32 heat maps: a Gaussian of ``sigma`` pixels per keypoint (peak 1), zeros for a missing one.

    ``keypoints`` K×2 (x, y) in our continuous convention (evaluated at pixel centres, c + 0.5); ``size`` is
    H (square) or (H, W). ``sigma`` defaults to max(1, min(H, W) / 40), the shapes world's value, so for a shapes
    person this equals `ShapesWorld.person`'s ``pose_map``. The pose-transfer papers use 6 (`PUBLISHED_SIGMA`)
    with integer keypoints at pixel indices, which our +0.5 conversion reproduces exactly.
    """
    h, w = (size, size) if isinstance(size, int | np.integer) else (int(size[0]), int(size[1]))
    sigma = max(1.0, min(h, w) / 40) if sigma is None else float(sigma)
    if not sigma > 0:
        raise ConfigError(f"sigma must be > 0, got {sigma}")
    kp = np.asarray(keypoints, np.float64).reshape(-1, 2)
    xs = np.arange(w, dtype=np.float32) + 0.5
    ys = np.arange(h, dtype=np.float32) + 0.5
    g = np.exp(-((xs[None, :] - kp[:, :1]) ** 2) / (2 * sigma**2)).astype(np.float32)  # K×W
    r = np.exp(-((ys[None, :] - kp[:, 1:]) ** 2) / (2 * sigma**2)).astype(np.float32)  # K×H
    maps = r[:, :, None] * g[:, None, :]
    maps[(kp == MISSING).any(axis=1)] = 0
    return maps


def parsing_onehot(parsing, num_labels: int) -> torch.Tensor:
    """(..., H, W) label map (numpy or torch) → float32 one-hot tensor (..., L, H, W); labels must be < L."""
    if isinstance(parsing, torch.Tensor):
        t = parsing.long()
        lo, hi = (int(t.min()), int(t.max())) if t.numel() else (0, 0)
    else:
        a = np.asarray(parsing)
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    if lo < 0 or hi >= num_labels:
        raise DataError(f"parsing has labels in {lo}..{hi}; expected 0..{num_labels - 1}")
    if isinstance(parsing, torch.Tensor):
        return torch.nn.functional.one_hot(t, num_labels).movedim(-1, -3).to(torch.float32)
    # numpy for the data path: torch's thread pool costs more than this small op inside loader workers
    onehot = a[..., None, :, :] == np.arange(num_labels).reshape(num_labels, 1, 1)
    return torch.from_numpy(onehot.astype(np.float32))


def swap_clothes_parsing(parsing_a: np.ndarray, parsing_b: np.ndarray, order: str = "shapes") -> np.ndarray:
    """G2's condition: A's parsing layout wearing B's clothes labels (H×W uint8).

    Zone by zone (`PersonOrder.clothes`), A's clothes pixels take the clothes label B shows most in that zone
    (A's label stays where B has no clothes in the zone); everything else is A's. Exact for shapes persons, whose
    parsing depends on the pose only — there it equals A's parsing and the swap's true parsing. For real data it
    is an approximation: A's layout, B's label names (a dress onto shirt-and-pants stays one upper-zone label).
    """
    po = _order(order)
    a, b = np.asarray(parsing_a), np.asarray(parsing_b)
    out = a.astype(np.uint8, copy=True)
    for zone in po.clothes:
        in_b = np.isin(b, zone)
        if in_b.any():
            out[np.isin(a, zone)] = np.bincount(b[in_b].astype(np.int64), minlength=len(po.labels)).argmax()
    return out


def keep_mask(*parsings, order: str = "shapes") -> torch.Tensor:
    """1×H×W float mask, 1 where none of ``parsings`` (H×W label maps, numpy or torch) shows clothes
    (`PersonOrder.clothes`): what a swap keeps of a person — head, hair, skin, background — and the clothes image
    cannot give. SwapGAN's G2 gets A's (over A's parsing and S_A'), G3 B's (``identity=True``)."""
    labels = [c for zone in _order(order).clothes for c in zone]
    keep = None
    for parsing in parsings:
        p = parsing.numpy() if isinstance(parsing, torch.Tensor) else np.asarray(parsing)
        keep = ~np.isin(p, labels) if keep is None else keep & ~np.isin(p, labels)
    return torch.from_numpy(keep[None].astype(np.float32))


def _signed(image: np.ndarray) -> torch.Tensor:
    """H×W×3 uint8 → 3×H×W float32 in [-1, 1] (in numpy, as `data.shapes.datasets.to_tensor`)."""
    return torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32) / np.float32(127.5) - np.float32(1))


def _item(a: Person, b: Person, heat_a, heat_b, order: PersonOrder) -> dict:
    n = len(order.labels)
    image_a, image_b = _signed(a.image), _signed(b.image)
    s_a = swap_clothes_parsing(a.parsing, b.parsing, order.name)
    keep_a = keep_mask(a.parsing, s_a, order=order.name)
    keep_b = keep_mask(b.parsing, order=order.name)
    return {
        "I_A": image_a,
        "I_B": image_b,
        "I_A_kept": image_a * keep_a,
        "I_B_kept": image_b * keep_b,
        "keep_A": keep_a,
        "keep_B": keep_b,
        "P_A": torch.from_numpy(heat_a),
        "P_B": torch.from_numpy(heat_b),
        "S_A": parsing_onehot(a.parsing, n),
        "S_B": parsing_onehot(b.parsing, n),
        "parsing_A": torch.from_numpy(a.parsing.astype(np.int64)),
        "parsing_B": torch.from_numpy(b.parsing.astype(np.int64)),
        "S_A_with_B_clothes": parsing_onehot(s_a, n),
    }


# --------------------------------------------------------------------------------------------------------------
# The shapes world


def person_name(pose: int, outfit: int) -> str:
    """``p0003_o0017``: the file name of shapes person (pose, outfit)."""
    return f"p{pose:04d}_o{outfit:04d}"


def _shapes_person(p: dict) -> Person:
    return Person(image=p["image"], keypoints=p["keypoints"], parsing=p["parsing"], order="shapes")


_SWAP_PURPOSE, _EXPORT_PURPOSE = 8, 9  # after the world's own purposes (0..7): no seed meets a renderer's


def export_persons(out_dir: str | os.PathLike, count: int, size: int = 64, seed: int = 0) -> list[Path]:
    """Write ``count`` shapes-world persons in our form; returns the image paths.

    Person k has pose k and outfit ``perm[k]`` (a seeded permutation of 0..count-1), named `person_name` (pose,
    outfit), e.g. ``p0003_o0017``; ``persons.json`` records seed, size and every (name, pose, outfit). The exact
    truth of a swap — A's pose wearing B's clothes — is ``ShapesWorld(seed, size).person(pose_A, outfit_B)``.
    """
    if not isinstance(count, int | np.integer) or count < 1:
        raise ConfigError(f"count must be a positive int, got {count!r}")
    world = ShapesWorld(seed=seed, size=size)
    out = check_out_dir(out_dir)
    outfits = np.random.default_rng([world.seed, _EXPORT_PURPOSE, int(count)]).permutation(int(count))
    paths, rows = [], []
    for pose, outfit in enumerate(outfits.tolist()):
        name = person_name(pose, outfit)
        paths.append(write_person(out, name, _shapes_person(world.person(pose, outfit))))
        rows.append({"name": name, "pose": pose, "outfit": outfit})
    manifest = {
        "seed": world.seed,
        "size": world.size,
        "order": "shapes",
        "swap_truth": f"ShapesWorld(seed={world.seed}, size={world.size}).person(pose_A, outfit_B)",
        "persons": rows,
    }
    (out / "persons.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return paths


class SwapPairs(Dataset):
    """Clothes-swap items for SwapGAN from the shapes world, with the exact ground truth.

    Item i draws person A (pose a, outfit a') and person B (pose b, outfit b), a ≠ b and a' ≠ b, from
    ``np.random.default_rng([seed, 8, split number, i])``. Splits use disjoint pose ids AND disjoint outfit ids:
    split s draws both from ``SPLIT_OFFSETS[s] + [0, pool)`` (train 0.., val 10M.., test 20M..), so a test swap
    is always between persons — bodies and clothes — never seen in training. ``num_poses`` / ``num_outfits`` make
    the pools finite (default: the whole 10M range, i.e. nearly every item brings new persons).

    Items (dict): ``I_A``, ``I_B`` 3×H×W in [-1, 1]; ``P_A``, ``P_B`` 14×H×W heat maps (`pose_heatmaps`);
    ``S_A``, ``S_B`` 8×H×W one-hot parsing; ``parsing_A``, ``parsing_B`` H×W long; ``S_A_with_B_clothes``
    (`swap_clothes_parsing`, one-hot); ``keep_A``, ``keep_B`` (1×H×W `keep_mask`) and ``I_A_kept``, ``I_B_kept`` (the images times them); ``truth`` = A's pose in B's outfit, 3×H×W in [-1, 1], and
    ``truth_parsing`` H×W long; ``name_A``, ``name_B`` as `person_name`. A shapes person's parsing depends on
    its pose only, so ``truth_parsing`` equals ``parsing_A`` and ``S_A_with_B_clothes`` equals ``S_A``.
    """

    order = "shapes"

    def __init__(
        self,
        num_samples: int,
        size: int = 64,
        seed: int = 0,
        split: str = "train",
        num_poses: int | None = None,
        num_outfits: int | None = None,
    ):
        if split not in SPLIT_OFFSETS:
            raise ConfigError(f"split must be one of {', '.join(SPLIT_OFFSETS)}, got {split!r}")
        span = SPLIT_OFFSETS["val"] - SPLIT_OFFSETS["train"]
        if not isinstance(num_samples, int | np.integer) or num_samples < 1:
            raise ConfigError(f"num_samples must be a positive int, got {num_samples!r}")
        pools = []
        for key, n in (("num_poses", num_poses), ("num_outfits", num_outfits)):
            n = span if n is None else n
            if not isinstance(n, int | np.integer) or not 2 <= n <= span:
                raise ConfigError(f"{key} must be an int in [2, {span}], got {n!r}")
            pools.append(int(n))
        self.world = ShapesWorld(seed=seed, size=size)
        self.num_samples, self.split = int(num_samples), split
        self.num_poses, self.num_outfits = pools
        self.offset = SPLIT_OFFSETS[split]
        self._split_no = list(SPLIT_OFFSETS).index(split)
        self.labels = PARSING_LABELS
        self.num_labels, self.num_keypoints = len(PARSING_LABELS), len(KEYPOINT_NAMES)

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return f"SwapPairs(len={len(self)}, split={self.split!r}, {self.world!r})"

    def persons(self, idx: int) -> tuple[int, int, int, int]:
        """(pose_A, outfit_A, pose_B, outfit_B) world ids of item ``idx``."""
        n = len(self)
        if not isinstance(idx, int | np.integer) or not -n <= idx < n:
            raise IndexError(f"index {idx} out of range for SwapPairs of length {n}")
        rng = np.random.default_rng([self.world.seed, _SWAP_PURPOSE, self._split_no, int(idx) % n])
        pa, oa = int(rng.integers(self.num_poses)), int(rng.integers(self.num_outfits))
        pb = (pa + 1 + int(rng.integers(self.num_poses - 1))) % self.num_poses
        ob = (oa + 1 + int(rng.integers(self.num_outfits - 1))) % self.num_outfits
        return tuple(self.offset + v for v in (pa, oa, pb, ob))

    def __getitem__(self, idx: int) -> dict:
        pa, oa, pb, ob = self.persons(idx)
        a, b, t = (self.world.person(p, o) for p, o in ((pa, oa), (pb, ob), (pa, ob)))
        item = _item(
            _shapes_person(a), _shapes_person(b), a["pose_map"], b["pose_map"], PERSON_ORDERS["shapes"]
        )
        item["truth"] = _signed(t["image"])
        item["truth_parsing"] = torch.from_numpy(t["parsing"].astype(np.int64))
        item["name_A"], item["name_B"] = person_name(pa, oa), person_name(pb, ob)
        return item


# --------------------------------------------------------------------------------------------------------------
# DeepFashion In-shop / Market-1501 in the pose-transfer layouts


def _read_annotation_csv(path: Path) -> dict[str, np.ndarray]:
    """``name:keypoints_y:keypoints_x`` rows → {name: 18×2 float32 (x, y) in our convention, missing [-1, -1]}."""
    header = "name:keypoints_y:keypoints_x"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read annotation file {path}: {read_error_reason(exc)}") from exc
    if not lines or lines[0].replace(" ", "") != header:
        first = lines[0][:60] if lines else ""
        raise DataError(f"{path}: first line is {first!r}; expected the header {header}")
    k = len(COCO18_KEYPOINTS)
    out = {}
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split(":")
        try:
            ys, xs = (json.loads(parts[1]), json.loads(parts[2])) if len(parts) == 3 else (None, None)
        except ValueError:
            ys = xs = None
        if not (isinstance(ys, list) and isinstance(xs, list)):
            raise DataError(f"{path} line {n}: {line[:60]!r}; expected {header}, the keypoints as JSON lists")
        if len(ys) != k or len(xs) != k:
            raise DataError(
                f"{path} line {n}: keypoints_y and keypoints_x have {len(ys)} and {len(xs)} values; expected {k} "
                "each (COCO/OpenPose order, -1 for missing)"
            )
        try:
            rc = np.array([ys, xs], np.float64)
        except (TypeError, ValueError):
            raise DataError(f"{path} line {n}: keypoints must be numbers, got {line[:60]!r}") from None
        missing = (rc == MISSING).any(axis=0)
        kp = np.stack([rc[1] + 0.5, rc[0] + 0.5], axis=1)  # pixel index → pixel centre; (row, col) → (x, y)
        kp[missing] = MISSING
        out[parts[0].strip()] = kp.astype(np.float32)
    return out


def _read_pairs_csv(path: Path, names: dict, annotation: Path) -> list[tuple[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not {"from", "to"} <= {c.strip() for c in reader.fieldnames}:
                raise DataError(f"{path}: header is {reader.fieldnames}; expected the columns from,to")
            rows = [{k.strip(): (v or "").strip() for k, v in r.items() if k is not None} for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read pairs file {path}: {read_error_reason(exc)}") from exc
    pairs = []
    for n, r in enumerate(rows, start=2):
        for key in ("from", "to"):
            if r[key] not in names:
                raise DataError(f"{path} line {n}: {key} image {r[key]!r} has no row in {annotation}")
        pairs.append((r["from"], r["to"]))
    if not pairs:
        raise DataError(f"{path} lists no pairs; expected from,to lines")
    return pairs


class _PoseTransferPersons(Dataset):
    """A published pose-transfer layout (see the module docstring) read as SwapGAN items.

    Pair (from, to) is read as B = from (whose clothes are taken) and A = to (whose pose and layout receive them).
    The pairs show one person in two poses, so the clothes are the same and I_A is itself the truth of re-posing
    B (G1's target); there is no cross-person swap truth, hence no ``truth`` key. Items are `SwapPairs`' dict
    without ``truth``/``truth_parsing``, at the images' own size; heat maps with ``sigma`` (default 6, as the
    papers). Persons are checked as `read_person` checks ours (keypoints against the image size, labels < 20,
    parsing size).
    """

    dataset = ""  # the name in messages
    prefix = ""  # the CSV prefix: fasion, market
    image_dirs: tuple[str, ...] = ()  # candidate image folders, {split} filled in
    order = "coco18"

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        pairs_csv: str | os.PathLike | None = None,
        sigma: float = PUBLISHED_SIGMA,
    ):
        if split not in ("train", "test"):
            raise ConfigError(f"split must be train or test (the published splits), got {split!r}")
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{self.dataset} root {root} is not a folder; expected {self._layout(split)}")
        self.root, self.split, self.sigma = root, split, float(sigma)
        self.annotation_csv = self._first(
            [
                root / f"{self.prefix}-annotation-{split}.csv",
                root / f"{self.prefix}-resize-annotation-{split}.csv",
            ],
            "annotation CSV (name:keypoints_y:keypoints_x)",
        )
        if pairs_csv is not None:
            self.pairs_csv = self._first([Path(pairs_csv)], "pairs CSV (from,to)")
        else:
            self.pairs_csv = self._first(
                [root / f"{self.prefix}-pairs-{split}.csv", root / f"{self.prefix}-resize-pairs-{split}.csv"],
                "pairs CSV (from,to)",
            )
        self.image_dir = self._first(
            [root / d.format(split=split) for d in self.image_dirs], "image folder", True
        )
        self.parsing_dir = root / "parsing"
        if not self.parsing_dir.is_dir():
            raise DataError(
                f"SwapGAN's G2 needs a parsing map per image: expected the folder {self.parsing_dir} with "
                f"STEM.png label maps (LIP-20 labels, e.g. from a LIP-trained human parser) for the images in "
                f"{self.image_dir}"
            )
        self.keypoints = _read_annotation_csv(self.annotation_csv)
        self.names = list(self.keypoints)
        self.pairs = _read_pairs_csv(self.pairs_csv, self.keypoints, self.annotation_csv)
        self.labels = LIP20_LABELS
        self.num_labels, self.num_keypoints = len(LIP20_LABELS), len(COCO18_KEYPOINTS)

    def _layout(self, split: str) -> str:
        dirs = " or ".join(d.format(split=split) + "/" for d in self.image_dirs)
        return f"{self.prefix}-annotation-{split}.csv, {self.prefix}-pairs-{split}.csv, {dirs}, parsing/"

    def _first(self, candidates: list[Path], what: str, folder: bool = False) -> Path:
        for p in candidates:
            if p.is_dir() if folder else p.is_file():
                return p
        names = " or ".join(str(p) for p in candidates)
        raise DataError(f"{self.dataset} {what} not found: expected {names}")

    def __len__(self) -> int:
        return len(self.pairs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, pairs={len(self)})"

    def person(self, name: str) -> Person:
        """The annotated image ``name`` (as in the CSVs) with its keypoints and parsing map, checked."""
        if name not in self.keypoints:
            raise DataError(f"{name!r} has no row in {self.annotation_csv}")
        image_path = self.image_dir / name
        image = np.array(load_image(image_path), np.uint8)
        h, w = image.shape[:2]
        po = PERSON_ORDERS[self.order]
        kp = self.keypoints[name]
        _check_keypoints(kp, po, (h, w), f"{self.annotation_csv} row {name}", str(image_path))
        parsing_path = self.parsing_dir / f"{Path(name).stem}.png"
        if not parsing_path.is_file():
            raise DataError(
                f"no parsing map for {image_path}: expected {parsing_path} (LIP-20 labels; SwapGAN's G2 needs one)"
            )
        labels = _read_label_map(parsing_path)
        if labels.shape != (h, w):
            raise DataError(
                f"{parsing_path} is {labels.shape[1]}×{labels.shape[0]}; expected the size of {image_path}, {w}×{h}"
            )
        return Person(
            image=image, keypoints=kp, parsing=_check_parsing(labels, po, str(parsing_path)), order=po.name
        )

    def __getitem__(self, idx: int) -> dict:
        name_b, name_a = self.pairs[idx]
        a, b = self.person(name_a), self.person(name_b)
        heat_a = pose_heatmaps(a.keypoints, a.image.shape[:2], self.sigma)
        heat_b = pose_heatmaps(b.keypoints, b.image.shape[:2], self.sigma)
        item = _item(a, b, heat_a, heat_b, PERSON_ORDERS[self.order])
        item["name_A"], item["name_B"] = name_a, name_b
        return item


class DeepFashionPersons(_PoseTransferPersons):
    """DeepFashion In-shop in the pose-transfer layout: ``ROOT/fasion-annotation-{split}.csv``,
    ``fasion-pairs-{split}.csv`` (or PATN's ``fasion-resize-*``), images in ``{split}/``, our ``parsing/``.

    ``DeepFashionPersons(root, split="train"|"test", pairs_csv=None, sigma=6.0)``; item k is pair k read as
    B = from, A = to, in `SwapPairs`' dict form without ``truth`` (see `_PoseTransferPersons`)."""

    dataset, prefix, image_dirs = "DeepFashion", "fasion", ("{split}",)


class MarketPersons(_PoseTransferPersons):
    """Market-1501 in the pose-transfer layout: ``ROOT/market-annotation-{split}.csv``,
    ``market-pairs-{split}.csv``, images in ``bounding_box_{split}/`` (or ``{split}/``), our ``parsing/``.

    Same arguments and items as `DeepFashionPersons`."""

    dataset, prefix, image_dirs = "Market-1501", "market", ("bounding_box_{split}", "{split}")


def _convert(reader: _PoseTransferPersons, out_dir, limit: int | None) -> list[Path]:
    if limit is not None and (not isinstance(limit, int | np.integer) or limit < 1):
        raise ConfigError(f"limit must be a positive int, got {limit!r}")
    out = check_out_dir(out_dir)
    names = reader.names if limit is None else reader.names[: int(limit)]
    return [write_person(out, Path(n).stem, reader.person(n)) for n in names]


def convert_deepfashion(
    root: str | os.PathLike, out_dir: str | os.PathLike, split: str = "train", limit: int | None = None
) -> list[Path]:
    """Write every annotated image of a DeepFashion split (the first ``limit``) in our person form (order
    ``coco18``, keypoints +0.5 to pixel centres, LIP-20 parsing); returns the image paths."""
    return _convert(DeepFashionPersons(root, split), out_dir, limit)


def convert_market(
    root: str | os.PathLike, out_dir: str | os.PathLike, split: str = "train", limit: int | None = None
) -> list[Path]:
    """`convert_deepfashion` for the Market-1501 layout."""
    return _convert(MarketPersons(root, split), out_dir, limit)


# --------------------------------------------------------------------------------------------------------------
# `imagexplore data export-persons | convert-persons` (the parser is in cli.py)


def run_data_command(args) -> int:
    """The body of ``imagexplore data export-persons`` and ``data convert-persons``."""
    out = check_out_dir(args.out)
    if args.cmd == "export-persons":
        paths = export_persons(out, args.count, size=args.size, seed=args.seed)
        print(
            f"wrote {len(paths)} persons to {out} (NAME.png + NAME.pose.json + NAME.parsing.png, NAME = "
            f"pPOSE_oOUTFIT); swap truth: ShapesWorld(seed={args.seed}, size={args.size}).person(pose_A, outfit_B)"
        )
        return 0
    convert = {"deepfashion": convert_deepfashion, "market": convert_market}[args.source]
    splits = [args.split] if args.split else ["train", "test"]
    for split in splits:
        paths = convert(args.root, out / split, split, args.limit)
        print(f"wrote {len(paths)} {args.source} {split} persons to {out / split}")
    return 0


__all__ = [
    "COCO18_KEYPOINTS",
    "LIP20_LABELS",
    "keep_mask",
    "PERSON_ORDERS",
    "PUBLISHED_SIGMA",
    "DeepFashionPersons",
    "MarketPersons",
    "Person",
    "PersonOrder",
    "SwapPairs",
    "convert_deepfashion",
    "convert_market",
    "export_persons",
    "parsing_onehot",
    "person_name",
    "pose_heatmaps",
    "read_person",
    "swap_clothes_parsing",
    "write_person",
]
