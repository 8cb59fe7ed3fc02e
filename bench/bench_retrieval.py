"""DeepIndex at scale (thesis ch. 4): build speed, query latency and memory of the 1-D and 2-D inverted index on
synthetic codes and signatures, against FAISS exact search (`IndexFlatIP`) over the same signatures.

The index is built with `InvertedIndex.from_codes` (no CNN, no k-means: what is measured is the index). Every
image has 14 patches whose words follow a Zipf law (rank r drawn with probability ∝ 1/r^s, ``--zipf`` s, default
1.0) over k=1024 words per type; in 2-D the two types are drawn independently, so cells spread over 1024×1024.
Signatures are random unit 512-d vectors per type, float32 (``--float16``: stored as float16). Queries are noisy
copies of indexed images (30% of their words re-drawn, signature plus noise at cosine ~0.9), so each has one right
answer: the top-1 rate below checks that the index works, it is not a retrieval-quality figure.

For each size and mode, in one run: build throughput (images/s of `from_codes`), latency of single `search_codes`
calls (median, p95) and of `search_codes_batch` (per query), the index's bytes/image (published: 2,104 B in 1-D,
4,152 B in 2-D with float32 signatures; the run fails if they differ) and its resident-memory growth per image;
the same latencies for ``"signature"`` scoring (exhaustive cosine) and for FAISS `IndexFlatIP` on the signatures
(in 2-D both types concatenated and scaled by 1/√2: its inner product is the mean cosine, our 2-D signature
score). FAISS gets ``--faiss-threads`` threads (default 1, as our search is single-threaded numpy) and its batch
goes through BLAS (forced: its default skips BLAS for 200 512-d queries, ~20x slower per query).
A memory estimate is printed first; sizes whose estimate exceeds the available RAM are refused.
Writes bench/results/retrieval.json.
Run: python bench/bench_retrieval.py [--quick] [--sizes 10000 100000] [--queries 200] [--float16] [--json]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import resource
import statistics
import time
from pathlib import Path

import faiss
import numpy as np

from imagexplore.retrieval.index import IndexConfig, InvertedIndex

P, K, DIM = 14, 1024, 512
TYPES = {"1d": ("a",), "2d": ("a", "b")}
PUBLISHED_BYTES = {"1d": 2104, "2d": 4152}
WORD_NOISE, SIGNATURE_NOISE = 0.3, 0.5
CHUNK = 65536
# Bytes per image alive while `from_codes` runs, besides the signatures and what the index keeps: the isfinite
# mask of the signatures, int64 copies of the words, keys, sort order, sorted ids, the derived per-(list, image)
# arrays of `Postings` and the terms of the document norms (~90 B an entry counted; 100 leaves a margin).
BUILD_BYTES_PER_ENTRY = 100
# Bytes per image the built index keeps besides ids and signatures: `Postings._pair_*` (24 B an entry), norms.
KEPT_BYTES = 24 * P + 16
# Above the interpreter and imports (measured at start): queries, scoring chunks (65,536 rows) and FAISS buffers.
SLACK_BYTES = 200 * 2**20


def zipf_words(rng: np.random.Generator, shape: tuple, s: float) -> np.ndarray:
    """Word ids (int32) drawn with probability ∝ 1/(rank+1)^s; word id = rank."""
    cdf = np.cumsum(1.0 / np.arange(1, K + 1) ** s)
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(shape), side="right"), K - 1).astype(np.int32)


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, DIM) float32 random unit vectors, made in chunks so no float64 copy of the whole set exists."""
    out = np.empty((n, DIM), dtype=np.float32)
    for lo in range(0, n, CHUNK):
        x = rng.standard_normal((min(CHUNK, n - lo), DIM), dtype=np.float32)
        out[lo : lo + x.shape[0]] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def estimate_bytes(n: int, mode: str, float16: bool, base: int) -> int:
    """Peak resident memory of one size and mode above ``base``: the larger of the build (generated and stored
    signatures, the build's temporaries) and the FAISS phase (stored signatures, what the index keeps, and
    FAISS's copy counted twice: its storage is a vector that grows by reallocation while rows are added)."""
    types = len(TYPES[mode])
    generated = types * (DIM * 4 + P * 4)
    stored = types * DIM * (2 if float16 else 4) + P * 4 + KEPT_BYTES
    build = generated + stored + BUILD_BYTES_PER_ENTRY * P
    with_faiss = stored + 2 * types * DIM * 4
    return base + SLACK_BYTES + n * max(build, with_faiss)


def available_bytes() -> int | None:
    """RAM available to new allocations: psutil when installed, else /proc/meminfo, else free pages."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def set_up_process(faiss_threads: int) -> None:
    """Process-wide settings of a run: FAISS's thread count, and glibc's mmap threshold fixed at 128 kB so that
    resident-memory growth measures what is kept (glibc raises the threshold after big frees, and freed arrays
    of up to 32 MB would then stay in the heap and be counted)."""
    faiss.omp_set_num_threads(faiss_threads)
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def rss_bytes() -> int | None:
    """Current resident set size (Linux /proc), None elsewhere."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def make_collection(rng, n: int, mode: str, zipf: float, n_queries: int):
    """Words and signatures of ``n`` images, and queries made from ``n_queries`` of them (and which)."""
    types = TYPES[mode]
    words = {t: zipf_words(rng, (n, P), zipf) for t in types}
    sigs = {t: unit_vectors(rng, n) for t in types}
    source = rng.choice(n, size=n_queries, replace=False)
    q_words, q_sigs = {}, {}
    for t in types:
        w = words[t][source].copy()
        redraw = rng.random(w.shape) < WORD_NOISE
        w[redraw] = zipf_words(rng, (int(redraw.sum()),), zipf)
        q_words[t] = w
        s = sigs[t][source] + SIGNATURE_NOISE * rng.standard_normal((n_queries, DIM)) / np.sqrt(DIM)
        q_sigs[t] = (s / np.linalg.norm(s, axis=1, keepdims=True)).astype(np.float32)
    return words, sigs, q_words, q_sigs, source


def latencies(search_one, search_all, n_queries: int) -> tuple[dict, np.ndarray]:
    """Single-query times (median, p95 ms), the batch time per query (ms), and the batch's top-1 ids."""
    times = []
    for i in range(n_queries):
        t0 = time.perf_counter()
        search_one(i)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    ids = search_all()
    batch = time.perf_counter() - t0
    ms = np.array(times) * 1e3
    out = {
        "single_median_ms": round(float(np.median(ms)), 3),
        "single_p95_ms": round(float(np.percentile(ms, 95)), 3),
        "batch_ms_per_query": round(batch * 1e3 / n_queries, 3),
    }
    return out, ids


def candidates(index: InvertedIndex, keys: np.ndarray) -> int:
    """How many images share at least one posting list with a query of these keys (the votes' candidates)."""
    postings = index.postings
    keys = np.unique(keys)
    pos = np.minimum(np.searchsorted(postings.keys, keys), postings.keys.size - 1)
    lists = [
        postings.ids[postings.offsets[j] : postings.offsets[j + 1]] for j in pos[postings.keys[pos] == keys]
    ]
    return int(np.unique(np.concatenate(lists)).size) if lists else 0


def faiss_flat(index: InvertedIndex, types: tuple) -> faiss.IndexFlatIP:
    """Exact inner-product search over the index's signatures (2-D: concatenated, scaled to the mean cosine)."""
    sigs = index.signatures
    flat = faiss.IndexFlatIP(DIM * len(types))
    scale = np.float32(1 / np.sqrt(len(types)))
    for lo in range(0, len(index), CHUNK):
        rows = np.concatenate([sigs[t][lo : lo + CHUNK].astype(np.float32) for t in types], axis=1)
        flat.add(rows * scale if len(types) > 1 else rows)
    return flat


def blas_batch(flat: faiss.IndexFlatIP, rows: np.ndarray) -> np.ndarray:
    """FAISS's batched search at its best, through BLAS: faiss 1.15 takes BLAS only for batches above a size
    threshold that 200 queries of 512-d miss, and is ~20x slower per query without it."""
    saved = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = 1
    try:
        return flat.search(rows, 10)[1]
    finally:
        faiss.cvar.distance_compute_blas_threshold = saved


def run_one(n: int, mode: str, args, rng) -> dict:
    types = TYPES[mode]
    q = args.queries
    words, sigs, q_words, q_sigs, source = make_collection(rng, n, mode, args.zipf, q)
    config = IndexConfig(types=types, mode=mode, k=K, signature_dim=DIM, float16_signatures=args.float16)
    gc.collect()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    index = InvertedIndex.from_codes(words, sigs, config)
    build_s = time.perf_counter() - t0
    rss1 = rss_bytes()
    del sigs
    gc.collect()
    stats = index.stats
    res = {
        "images": n,
        "mode": mode,
        "build_seconds": round(build_s, 3),
        "build_images_per_s": round(n / build_s),
        "bytes_per_image": stats["bytes_per_image"],
        "published_bytes_per_image": None if args.float16 else PUBLISHED_BYTES[mode],
        "rss_growth_bytes_per_image": None if rss0 is None else round((rss1 - rss0) / n, 1),
        "posting_lists": stats["posting_lists"],
    }
    keys = q_words["a"] if mode == "1d" else q_words["a"].astype(np.int64) * K + q_words["b"]
    res["candidates_median"] = int(statistics.median(candidates(index, keys[i]) for i in range(min(q, 20))))

    def ours(view):
        return latencies(
            lambda i: view.search_codes(
                {t: q_words[t][i] for t in types}, {t: q_sigs[t][i] for t in types}, 10
            ),
            lambda: view.search_codes_batch(q_words, q_sigs, 10)[0],
            q,
        )

    top = {}
    for scoring in ("votes_signature", "signature"):
        timing, top[scoring] = ours(index.with_query_options(scoring=scoring))
        res[scoring] = timing | {"top1_is_source": float(np.mean(top[scoring][:, 0] == source))}
    rss2 = rss_bytes()
    flat = faiss_flat(index, types)
    rss3 = rss_bytes()
    query_rows = np.concatenate([q_sigs[t] for t in types], axis=1) / np.float32(np.sqrt(len(types)))
    timing, ids = latencies(
        lambda i: flat.search(query_rows[i : i + 1], 10), lambda: blas_batch(flat, query_rows), q
    )
    res["faiss_flat"] = timing | {
        "top1_is_source": float(np.mean(ids[:, 0] == source)),
        "bytes_per_image": flat.code_size,
        "rss_growth_bytes_per_image": None if rss2 is None else round((rss3 - rss2) / n, 1),
        "top10_agreement_with_signature_scoring": float(
            np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, top["signature"])])
        ),
    }
    res["ratio_over_faiss"] = {
        f"{scoring}_{what}": round(res[scoring][what] / res["faiss_flat"][what], 3)
        for scoring in ("votes_signature", "signature")
        for what in ("single_median_ms", "batch_ms_per_query")
    }
    return res


def show(r: dict) -> None:
    published = f" (published {r['published_bytes_per_image']:,})" if r["published_bytes_per_image"] else ""
    print(
        f"{r['mode']} {r['images']:>9,} images: build {r['build_images_per_s']:,} images/s, "
        f"{r['bytes_per_image']:,.0f} B/image{published}, resident +{r['rss_growth_bytes_per_image']} B/image, "
        f"{r['posting_lists']:,} lists, median {r['candidates_median']:,} candidates/query"
    )
    for name in ("votes_signature", "signature", "faiss_flat"):
        t = r[name]
        print(
            f"    {name:16s} single median {t['single_median_ms']:8.2f} ms  p95 {t['single_p95_ms']:8.2f} ms  "
            f"batch {t['batch_ms_per_query']:8.2f} ms/query  top-1 {t['top1_is_source']:.2f}"
        )
    f = r["faiss_flat"]
    print(
        f"    FAISS flat: {f['bytes_per_image']:,} B/image, resident +{f['rss_growth_bytes_per_image']} B/image, "
        f"top-10 agreement with 'signature' scoring {f['top10_agreement_with_signature_scoring']:.3f}"
    )
    print("    ours / FAISS: " + ", ".join(f"{k} {v}" for k, v in r["ratio_over_faiss"].items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2,000 images, 20 queries: a smoke test")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--modes", nargs="+", choices=sorted(TYPES), default=sorted(TYPES))
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent of the word frequencies")
    ap.add_argument("--float16", action="store_true", help="store the signatures as float16")
    ap.add_argument("--faiss-threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "retrieval.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.queries = [2000], 20
    if min(args.sizes) < args.queries:
        ap.error(f"--queries {args.queries} needs every size to hold at least that many images")
    base = rss_bytes() or 2**30
    estimate = {n: max(estimate_bytes(n, m, args.float16, base) for m in args.modes) for n in args.sizes}
    available = available_bytes()
    for n, need in estimate.items():
        print(f"memory estimate for {n:,} images: {need / 2**30:.2f} GiB peak", flush=True)
    if available is not None:
        print(f"available RAM: {available / 2**30:.2f} GiB")
        too_big = [n for n, need in estimate.items() if need > available]
        if too_big:
            print(
                f"refused: {', '.join(f'{n:,}' for n in too_big)} images need more than the available RAM; "
                "run smaller --sizes, fewer --modes or --float16 (FAISS still holds float32)"
            )
            return 2
    meta = {
        "benchmark": "retrieval",
        "entries_per_image": P,
        "k": K,
        "signature_dim": DIM,
        "signature_dtype": "float16" if args.float16 else "float32",
        "zipf": args.zipf,
        "queries": args.queries,
        "top_k": 10,
        "cpus": os.cpu_count(),
        "faiss_threads": args.faiss_threads,
        "memory_estimate_bytes": {str(n): v for n, v in estimate.items()},
    }
    set_up_process(args.faiss_threads)
    rng = np.random.default_rng(args.seed)
    runs, wrong = [], []
    for n in args.sizes:
        for mode in args.modes:
            r = run_one(n, mode, args, rng)
            gc.collect()
            runs.append(r)
            if not args.json:
                show(r)
            if r["published_bytes_per_image"] and r["bytes_per_image"] != r["published_bytes_per_image"]:
                wrong.append(f"{mode} at {n:,}: {r['bytes_per_image']} B/image")
    res = {"meta": meta | {"peak_rss_bytes": peak_rss_bytes()}, "runs": runs}
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"peak resident memory of the run: {res['meta']['peak_rss_bytes'] / 2**30:.2f} GiB")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    if wrong:
        print(f"memory per image differs from the published table: {'; '.join(wrong)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
