"""How the ``pruning="scale"`` preset of the DeepIndex was chosen (issue 16): top-10 agreement with the unpruned
ranking, candidates reaching the signature stage and single-query / batched time over a grid of ``max_df`` x
``max_candidates`` x ``stop_words``, on the synthetic codes of bench/bench_retrieval.py (another seed than its
table: default 1).

Prints one JSON object a (size, mode, max_df, max_candidates, stop_words) on stdout.
Run: python bench/tune_pruning.py [--sizes 10000 100000] [--modes 1d 2d] [--queries 50] [--seed 1] [--k 1024|auto]
     [--max-df 0.5 0.05 ...] [--max-candidates 0.02 2000 ...] [--stop-words drop rescore]
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
from imagexplore.retrieval.index.config import STOP_WORDS

_spec = importlib.util.spec_from_file_location(
    "bench_retrieval", Path(__file__).with_name("bench_retrieval.py")
)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

MAX_DF = (None, 0.5, 0.3, 0.2, 0.1, 0.05)
MAX_CANDIDATES = (None, 0.05, 0.02, 0.01, 0.005, 0.002)


def _optional(kind):
    """An argparse type: ``none`` is None, anything else ``kind(text)``."""
    return lambda text: None if text.lower() == "none" else kind(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--modes", nargs="+", choices=sorted(bench.TYPES), default=sorted(bench.TYPES))
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--k", default=str(bench.K), help="words of the codes' vocabulary, or 'auto' (the library's rule)"
    )
    ap.add_argument(
        "--max-df",
        type=_optional(float),
        nargs="+",
        default=list(MAX_DF),
        help="grid of max_df ('none': off)",
    )
    ap.add_argument(
        "--max-candidates",
        type=_optional(lambda x: float(x) if "." in x else int(x)),
        nargs="+",
        default=list(MAX_CANDIDATES),
        help="grid of max_candidates: counts, fractions below 1, 'none'",
    )
    ap.add_argument(
        "--stop-words", nargs="+", choices=STOP_WORDS, default=["drop"], help="grid of stop_words"
    )
    args = ap.parse_args(argv)
    bench.limit_blas_threads()
    rng = np.random.default_rng(args.seed)
    for n, mode in itertools.product(args.sizes, args.modes):
        types = bench.TYPES[mode]
        k = bench.vocabulary_size(args.k, n)
        words, sigs, q_words, q_sigs, _ = bench.make_collection(rng, n, mode, 1.0, args.queries, k)
        config = IndexConfig(types=types, mode=mode, k=k, signature_dim=bench.DIM, pruning="none")
        index = InvertedIndex.from_codes(words, sigs, config)
        del words, sigs
        full = index.search_codes_batch(q_words, q_sigs, 10)[0]
        grid = itertools.product(args.max_df, args.max_candidates, args.stop_words)
        for max_df, max_cands, stop_words in grid:
            if max_df is None and stop_words == "rescore":
                continue  # no stop words to rescore
            view = index.with_query_options(max_df=max_df, max_candidates=max_cands, stop_words=stop_words)
            times = []
            for i in range(args.queries):
                t0 = time.perf_counter()
                view.search_codes({t: q_words[t][i] for t in types}, {t: q_sigs[t][i] for t in types}, 10)
                times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            ids = view.search_codes_batch(q_words, q_sigs, 10)[0]
            batch_ms = (time.perf_counter() - t0) * 1e3 / args.queries
            row = {
                "images": n,
                "mode": mode,
                "k": k,
                "max_df": max_df,
                "max_candidates": max_cands,
                "stop_words": stop_words,
                "agreement_top10": round(bench.agreement(ids, full), 4),
                "candidates_frac": round(bench.candidates_frac(view, q_words, 10), 5),  # first 10 queries
                "ms_single": round(float(np.median(times)) * 1e3, 3),
                "ms_batch": round(batch_ms, 3),  # after the single calls: the forward rows exist
            }
            print(json.dumps(row), flush=True)
        print(f"done {n} {mode}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
