"""Vocabularies that grow with the collection (issue 16): training and assignment cost of k = 1k-64k words.

For each vocabulary size ``k`` (``--ks``, default 1024 16384 65536), on synthetic clustered 128-d float32 patches
(``--centres`` random unit centres plus Gaussian noise, L2-normalised like the index's patch features):

- training time of the vocabulary by flat k-means (``faiss.Kmeans``, `IndexConfig(vocab_training="flat")`) and
  by two-level k-means (`two_level_kmeans`, ``"two_level"``), both through `train_vocabulary` on
  ``--points-per-word`` x k training patches and ``--niter`` iterations. The defaults (5 patches a word, 5
  iterations) are far below what an index uses (up to ``max_points_per_word`` = 256 a word, 20 iterations) so that
  the default run stays under 3 minutes on 2 cores; both methods scale linearly in both, so their ratio holds.
  Flat k-means is skipped above ``--flat-max-k`` (default 16384: at 65536 it costs ~16x the 16384 run);
- assignment time of ``--patches`` (default 100,000) new patches to the two-level vocabulary, exact
  (``IndexFlatL2``, ``assignment="exact"``) vs HNSW (``IndexHNSWFlat(D, 32)``, efSearch ``--ef-search``, its
  single-threaded, deterministic build timed apart), and the HNSW recall: the fraction of patches whose HNSW word
  is the exact nearest word.

FAISS uses all its OpenMP threads (printed) except for the HNSW build (one thread, as `build_quantizer` does).
Prints a table; ``--json``: stdout holds only JSON, one object a k a line. Writes bench/results/vocabulary.json.
Run: python bench/bench_vocabulary.py [--ks 1024 16384 65536] [--points-per-word 5] [--niter 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from imagexplore.retrieval.index import IndexConfig
from imagexplore.retrieval.index.config import HIERARCHICAL_FROM, HNSW_FROM
from imagexplore.retrieval.index.vocabulary import build_quantizer, train_vocabulary

DIM = 128


def clustered(rng: np.random.Generator, centres: np.ndarray, n: int, noise: float) -> np.ndarray:
    """``n`` unit vectors around ``centres`` (Gaussian noise of norm ~``noise``), float32."""
    x = centres[rng.integers(0, centres.shape[0], n)]
    x = x + noise * rng.standard_normal(x.shape, dtype=np.float32) / math.sqrt(centres.shape[1])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run_k(k: int, args, centres: np.ndarray, patches: np.ndarray) -> dict:
    rng = np.random.default_rng(args.seed + k)
    train = clustered(rng, centres, args.points_per_word * k, args.noise)
    common = dict(kmeans_niter=args.niter, kmeans_seed=args.seed, points_per_word=1)
    common["max_points_per_word"] = args.points_per_word
    row = {"k": k, "train_patches": train.shape[0], "niter": args.niter, "dim": DIM}
    row["flat_train_s"] = None
    if k <= args.flat_max_k:
        _, row["flat_train_s"] = timed(
            lambda: train_vocabulary(train, k, IndexConfig(vocab_training="flat", **common))
        )
    words, row["two_level_train_s"] = timed(
        lambda: train_vocabulary(train, k, IndexConfig(vocab_training="two_level", **common))
    )
    exact = build_quantizer(words, "exact")
    (_, want), row["exact_assign_s"] = timed(lambda: exact.search(patches, 1))
    hnsw, row["hnsw_build_s"] = timed(lambda: build_quantizer(words, "hnsw", args.ef_search))
    (_, got), row["hnsw_assign_s"] = timed(lambda: hnsw.search(patches, 1))
    row["hnsw_recall"] = round(float(np.mean(got == want)), 4)
    row["patches"] = patches.shape[0]
    row["ef_search"] = args.ef_search
    training = "two_level" if k >= HIERARCHICAL_FROM else "flat"
    row["auto_uses"] = f"{training} + {'hnsw' if k >= HNSW_FROM else 'exact'}"
    for key, value in row.items():
        if key.endswith("_s") and value is not None:
            row[key] = round(value, 2)
    return row


def fmt(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[1024, 16384, 65536])
    ap.add_argument("--points-per-word", type=int, default=5, help="training patches per word")
    ap.add_argument("--niter", type=int, default=5, help="k-means iterations (both levels)")
    ap.add_argument("--flat-max-k", type=int, default=16384, help="largest k trained by flat k-means")
    ap.add_argument("--patches", type=int, default=100_000, help="patches assigned to the words")
    ap.add_argument("--ef-search", type=int, default=128, help="HNSW efSearch (IndexConfig.hnsw_ef_search)")
    ap.add_argument("--centres", type=int, default=4096, help="clusters of the synthetic patches")
    ap.add_argument("--noise", type=float, default=0.5, help="noise around a centre (norm, before L2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="stdout: one JSON object a k a line")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "vocabulary.json"))
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((args.centres, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    patches = clustered(rng, centres, args.patches, args.noise)
    threads = faiss.omp_get_max_threads()
    if not args.json:
        print(
            f"{DIM}-d clustered patches ({args.centres} centres, noise {args.noise}), {args.points_per_word} "
            f"training patches a word, {args.niter} k-means iterations, {args.patches:,} patches assigned, "
            f"HNSW M=32 efSearch={args.ef_search}, FAISS {faiss.__version__} on {threads} threads",
            flush=True,
        )
        print(
            f"{'k':>8} {'train pts':>10} {'flat s':>8} {'2-level s':>10} {'exact s':>8} {'hnsw build s':>13} "
            f"{'hnsw s':>7} {'recall':>7}  auto",
            flush=True,
        )
    rows = []
    for k in args.ks:
        row = run_k(k, args, centres, patches)
        row["threads"] = threads
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(
                f"{k:>8} {row['train_patches']:>10,} {fmt(row['flat_train_s']):>8} "
                f"{fmt(row['two_level_train_s']):>10} {fmt(row['exact_assign_s']):>8} "
                f"{fmt(row['hnsw_build_s']):>13} {fmt(row['hnsw_assign_s']):>7} {row['hnsw_recall']:>7.4f}  "
                f"{row['auto_uses']}",
                flush=True,
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2) + "\n")
    if not args.json:
        print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
