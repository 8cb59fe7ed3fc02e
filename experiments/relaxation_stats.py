"""What RDS relaxation does to the side-output labels: real photos (cut-outs on textures) vs the shapes world.

Run: python experiments/relaxation_stats.py --root runs/edges_real/case0 [--detectors canny sobel hed]
       [--mean image|nonzero] [--within R] [--limit 48] [--json OUT]
For each detector and side k (c_k = 0.5 … 2.5), over the training images (un-augmented, the release's labels:
consensus ≥ 3 annotators (lowered to A), dilated by 1; relaxed set dilated by 1):
- relaxed: fraction of all pixels ignored on side k because of the detector (not counting consensus-ignored);
- near: fraction of the true-edge neighbourhood (pixels 1–3 px from a fusion-label edge) that is relaxed;
- far: fraction of the pixels farther than 3 px from any edge (texture, object interiors) that is relaxed —
  the negatives side k no longer learns from;
- pos/neg: positives ÷ remaining negatives of side k (with β = 9 each positive weighs 9 negatives).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy import ndimage as ndi

from imagexplore.edges.data import BSDS500, ShapesEdgeSource
from imagexplore.edges.labels import IGNORE, RDS_COEFFICIENTS, build_targets, make_detector, response_mean


def stats(reader, detector: str, limit: int, mean_mode: str, within: int | None) -> dict:
    respond = make_detector(detector)
    acc = {k: np.zeros(5) for k in range(len(RDS_COEFFICIENTS))}
    for i in range(min(limit, len(reader))):
        image, ann, _ = reader[i]
        img = image.numpy().transpose(1, 2, 0)
        resp = respond(img)
        mean = response_mean(resp, mean_mode)
        t = build_targets(ann.numpy().astype(bool), resp, RDS_COEFFICIENTS, mean=mean, relax_within=within)
        fuse = t[-1]
        dist = ndi.distance_transform_edt(fuse != 1)
        near = (dist > 0) & (dist <= 3) & (fuse == 0)
        far = (dist > 3) & (fuse == 0)
        for k in range(len(RDS_COEFFICIENTS)):
            relaxed = (t[k] == IGNORE) & (fuse == 0)
            acc[k] += [
                relaxed.mean(),
                relaxed[near].mean() if near.any() else 0.0,
                relaxed[far].mean() if far.any() else 0.0,
                (t[k] == 1).sum() / max((t[k] == 0).sum(), 1),
                1,
            ]
    return {
        f"side{k + 1} c={c}": dict(
            zip(("relaxed", "near", "far", "pos_per_neg"), (acc[k][:4] / acc[k][4]).round(4).tolist())
        )
        for k, c in enumerate(RDS_COEFFICIENTS)
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True, help="a BSDS-layout folder (imagexplore data export-edges)")
    ap.add_argument("--detectors", nargs="+", default=["canny", "sobel", "hed"])
    ap.add_argument("--mean", choices=["image", "nonzero"], default="image")
    ap.add_argument("--within", type=int, default=None, help="data.options.relax_within")
    ap.add_argument("--limit", type=int, default=48)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    out = {}
    sets = {
        "real (cut-outs on textures, 320×240)": BSDS500(args.root, "train"),
        "shapes (96 px, shapes_rds_quick)": ShapesEdgeSource(args.limit, size=96, seed=0, split="train"),
    }
    for name, reader in sets.items():
        for det in args.detectors:
            out[f"{name} / {det}"] = s = stats(reader, det, args.limit, args.mean, args.within)
            print(f"\n{name} / {det}  (mean: {args.mean})")
            print("| side | relaxed | near-edge relaxed | far relaxed | pos/neg |\n|---|---|---|---|---|")
            for side, v in s.items():
                print(
                    f"| {side} | {v['relaxed']:.3f} | {v['near']:.3f} | {v['far']:.3f} | {v['pos_per_neg']:.4f} |"
                )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
