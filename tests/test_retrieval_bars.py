"""Bars: the scale numbers of docs/retrieval_scaling.md must not regress (issue 16's targets as floors/ceilings).

On 30,000 images of the bench's synthetic codes (`bench/bench_retrieval.py`'s `make_collection`, seed 0; 14
patches, k = 1,024, 512-d signatures), pruned with the `scale` preset's values (max_df 0.1, max_candidates 2,000,
stop words rescored), which applies from 100,000 images on:
- candidates ≤ 10 % of the collection and top-10 agreement with the unpruned ranking ≥ 0.95 (the targets);
- bytes per image as published (2,104 in 1-D, 4,152 in 2-D), exactly;
- the index's own arrays (postings, signatures, norms, caches made by a search, the vocabularies and PCA),
  counted by their nbytes — deterministic, unlike RSS — at most the bar below, which is what they are today plus
  2 %: a change that grows them fails here and must say why in the docs.
Measured (`pytest -s tests/test_retrieval_bars.py`, after the pruned search and before the unpruned one): 1-D
candidates 0.0664, agreement 0.997, arrays 2,235.0 B/image; 2-D 0.0492, 1.000, 4,496.8 B/image. In 1-D that is
the published 2,104, the norms (8), the count columns of the stop lists that rescoring their votes makes (18: a
byte an image for each of the 18 lists above max_df) and the codes-only index's placeholder vocabulary and PCA
(3 MiB, 105 B/image at 30,000 images): without the vocabularies, 2,130 B/image, 1.2 % above the published bytes
(issue 16's target: within 10 %). History: 2,680.7 / 4,828.0 with the derived (list, image) arrays of `Postings`
kept in int64, 2,511.1 / 4,633.0 in narrow dtypes, 2,390.0 / 4,493.8 once they were no longer kept (made as
temporaries), 2,390.0 / 4,665.8 once rescoring the stop words built the 12 B-an-entry forward matrix in 2-D too,
2,278.0 / 4,553.8 with 4 B-an-entry forward rows instead (measured after both searches), 2,235.0 / 4,496.8 with
the stop lists' count columns instead of the forward rows (which only batches that match most entries, such as
the unpruned search, still make).
About 1 s a mode.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench_modules import load_bench
from imagexplore.retrieval.index import IndexConfig, InvertedIndex
from imagexplore.retrieval.index.config import SCALE_PRESET

N, QUERIES = 30_000, 30
# mode: (published bytes/image, ceiling of the index's array bytes per image = today's × 1.02)
BARS = {"1d": (2104, 2280), "2d": (4152, 4587)}


def array_bytes(obj, seen=None) -> int:
    """nbytes of every numpy array reachable from ``obj`` through attributes, dicts, lists and tuples, each
    memory buffer counted once (views of one base count the base)."""
    seen = set() if seen is None else seen
    if isinstance(obj, np.ndarray):
        base = obj
        while isinstance(base.base, np.ndarray):
            base = base.base
        if id(base) in seen:
            return 0
        seen.add(id(base))
        return int(base.nbytes)
    if id(obj) in seen or isinstance(obj, str | bytes | int | float | bool | type(None)):
        return 0
    seen.add(id(obj))
    if isinstance(obj, dict):
        return sum(array_bytes(v, seen) for v in obj.values())
    if isinstance(obj, list | tuple | set | frozenset):
        return sum(array_bytes(v, seen) for v in obj)
    fields = getattr(obj, "__dict__", None)
    slots = [getattr(obj, s) for s in getattr(type(obj), "__slots__", ()) if hasattr(obj, s)]
    return (array_bytes(fields, seen) if fields is not None else 0) + sum(array_bytes(v, seen) for v in slots)


@pytest.mark.parametrize("mode", ["1d", "2d"])
def test_scale_numbers_do_not_regress(mode):
    bench = load_bench("bench_retrieval")
    rng = np.random.default_rng(0)
    words, sigs, q_words, q_sigs, _ = bench.make_collection(rng, N, mode, 1.0, QUERIES)
    types = bench.TYPES[mode]
    config = IndexConfig(types=types, mode=mode, k=bench.K, signature_dim=bench.DIM, pruning="none")
    index = InvertedIndex.from_codes(words, sigs, config)
    del words, sigs
    pruned = index.with_query_options(**SCALE_PRESET, stop_words="rescore")
    ids = pruned.search_codes_batch(q_words, q_sigs, 10)[0]
    per_image = array_bytes(index) / N  # what the pruned search made, before the unpruned one adds its own
    full_ids = index.search_codes_batch(q_words, q_sigs, 10)[0]
    frac = bench.candidates_frac(pruned, q_words, QUERIES)
    agree = bench.agreement(ids, full_ids)
    published, ceiling = BARS[mode]
    print(f"{mode}: candidates {frac:.4f}, agreement {agree:.4f}, arrays {per_image:.1f} B/image")
    assert frac <= 0.10
    assert agree >= 0.95
    assert index.stats["bytes_per_image"] == published
    assert published < per_image <= ceiling, per_image
