"""How the ``pruning="scale"`` preset of the DeepIndex was chosen (issue 16): top-10 agreement with the unpruned
ranking, candidates reaching the signature stage and single-query time over a grid of ``max_df`` x
``max_candidates``, on the synthetic codes of bench/bench_retrieval.py (another seed than its table: default 1).

Prints one JSON object a (size, mode, max_df, max_candidates) on stdout.
Run: python bench/tune_pruning.py [--sizes 10000 100000] [--modes 1d 2d] [--queries 50] [--seed 1]
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

from imagexplore.retrieval.index import IndexConfig, InvertedIndex

_spec = importlib.util.spec_from_file_location(
    "bench_retrieval", Path(__file__).with_name("bench_retrieval.py")
)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

MAX_DF = (None, 0.5, 0.3, 0.2, 0.1, 0.05)
MAX_CANDIDATES = (None, 0.05, 0.02, 0.01, 0.005, 0.002)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--modes", nargs="+", choices=sorted(bench.TYPES), default=sorted(bench.TYPES))
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    bench.limit_blas_threads()
    rng = np.random.default_rng(args.seed)
    for n, mode in itertools.product(args.sizes, args.modes):
        types = bench.TYPES[mode]
        words, sigs, q_words, q_sigs, _ = bench.make_collection(rng, n, mode, 1.0, args.queries)
        config = IndexConfig(types=types, mode=mode, k=bench.K, signature_dim=bench.DIM)
        index = InvertedIndex.from_codes(words, sigs, config)
        del words, sigs
        full = index.search_codes_batch(q_words, q_sigs, 10)[0]
        for max_df, max_cands in itertools.product(MAX_DF, MAX_CANDIDATES):
            view = index.with_query_options(max_df=max_df, max_candidates=max_cands)
            times = []
            for i in range(args.queries):
                t0 = time.perf_counter()
                view.search_codes({t: q_words[t][i] for t in types}, {t: q_sigs[t][i] for t in types}, 10)
                times.append(time.perf_counter() - t0)
            ids = view.search_codes_batch(q_words, q_sigs, 10)[0]
            row = {
                "images": n,
                "mode": mode,
                "max_df": max_df,
                "max_candidates": max_cands,
                "agreement_top10": round(bench.agreement(ids, full), 4),
                "candidates_frac": round(bench.candidates_frac(view, q_words, n), 5),
                "ms_single": round(float(np.median(times)) * 1e3, 3),
            }
            print(json.dumps(row), flush=True)
        print(f"done {n} {mode}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
