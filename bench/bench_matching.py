"""Matching evaluation: all recalls of a 5,000 × 25,000 image-caption similarity (COCO-5K size, 5 captions per
image, random normalised 512-d embeddings), ours (`embedding_recalls`: torch products by blocks of rows, ranks
by counting the captions/images that score at least the matching one) vs a naive NumPy reference (the full
matrix, then an argsort per image and per caption, as the VSE++ evaluation does), measured in the same run.

Prints the seconds of each and the ratio (target: ours ≤ 2 s on 2 cores), checks both give the same numbers,
and writes bench/results/matching.json.
Run: python bench/bench_matching.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from imagexplore.matching.metrics import embedding_recalls


def embeddings(m: int, caps: int, d: int):
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(m, d, generator=g), dim=1)
    ci = torch.arange(m).repeat_interleave(caps)
    txt = torch.nn.functional.normalize(img[ci] + 6.0 * torch.randn(m * caps, d, generator=g) / d**0.5, dim=1)
    return img, txt, ci


def naive_recalls(img: np.ndarray, txt: np.ndarray, ci: np.ndarray, ks=(1, 5, 10), block: int = 500) -> dict:
    """Full similarity matrix, then argsort: image→text per row, text→image per column (by blocks of rows of
    the transposed matrix to keep the index arrays small)."""
    sims = img @ txt.T
    m, n = sims.shape
    i2t = np.empty(m)
    for r0 in range(0, m, block):
        order = np.argsort(-sims[r0 : r0 + block], axis=1, kind="stable")
        hit = ci[order] == np.arange(r0, r0 + order.shape[0])[:, None]
        i2t[r0 : r0 + block] = hit.argmax(axis=1) + 1
    sims_t = np.ascontiguousarray(sims.T)
    t2i = np.empty(n)
    for c0 in range(0, n, block):
        order = np.argsort(-sims_t[c0 : c0 + block], axis=1, kind="stable")
        t2i[c0 : c0 + block] = (order == ci[c0 : c0 + block, None]).argmax(axis=1) + 1
    res = {}
    for name, r in (("i2t", i2t), ("t2i", t2i)):
        for k in ks:
            res[f"{name}_r{k}"] = float(100.0 * np.mean(r <= k))
        res[f"{name}_medr"] = float(np.median(r))
        res[f"{name}_meanr"] = float(np.mean(r))
    res["rsum"] = float(sum(res[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in ks))
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--chunk", type=int, default=2048)
    args = ap.parse_args()
    torch.set_num_threads(2)
    m, caps, d, repeats = (1000, 5, 512, 3) if args.quick else (5000, 5, 512, 3)
    img, txt, ci = embeddings(m, caps, d)
    embedding_recalls(img[:256], txt[: 256 * caps], ci[: 256 * caps], chunk=args.chunk)  # warm-up
    ours_t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ours = embedding_recalls(img, txt, ci, chunk=args.chunk)
        ours_t.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    ref = naive_recalls(img.numpy(), txt.numpy(), ci.numpy())
    naive_s = time.perf_counter() - t0
    same = all(abs(ours[k] - ref[k]) < 1e-9 for k in ref)
    best = min(ours_t)
    res = {
        "benchmark": "matching_recalls",
        "images": m,
        "captions": m * caps,
        "dim": d,
        "chunk": args.chunk,
        "threads": torch.get_num_threads(),
        "ours_seconds_best": round(best, 4),
        "ours_all": [round(v, 4) for v in ours_t],
        "naive_numpy_seconds": round(naive_s, 4),
        "ratio_naive_over_ours": round(naive_s / best, 2),
        "target_ours_seconds": 2.0,
        "same_numbers": same,
        "metrics": {k: round(v, 4) for k, v in ours.items()},
    }
    print(f"matching recalls: {m} images x {m * caps} captions, {d}-d, best of {repeats}")
    print(
        f"  ours {best:.3f} s   naive numpy {naive_s:.3f} s   naive/ours {naive_s / best:.1f}x (target ours <= 2 s)"
    )
    print(f"  same numbers: {same}   rsum {ours['rsum']:.2f}")
    out = Path(__file__).parent / "results" / "matching.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f"  written {out}")
    if not same:
        raise SystemExit("ours and the naive reference disagree")


if __name__ == "__main__":
    main()
