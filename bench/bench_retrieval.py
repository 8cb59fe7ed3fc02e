"""DeepIndex at scale (thesis ch. 4, issue 16): build speed, query latency, candidate pruning and memory of the 1-D
and 2-D inverted index on synthetic codes and signatures, against FAISS over the same signatures: exact search
(`IndexFlatIP`) and inverted files (`IndexIVFFlat`, `IndexIVFPQ`) at matched recall.

The index is built with `InvertedIndex.from_codes` (no CNN, no k-means: what is measured is the index). Every
image has 14 patches whose words follow a Zipf law (rank r drawn with probability ∝ 1/r^s, ``--zipf`` s, default
1.0) over k words per type (``--k``: by default the library's default ``k: auto``, 1,024 at 10k images, 8,192
at 100k, 65,536 at 1M); in 2-D the two types are drawn independently, so cells spread over k×k.
Signatures are random unit 512-d vectors per type, float32 (``--float16``: stored as float16). Queries are noisy
copies of indexed images (30% of their words re-drawn, signature plus noise at cosine ~0.9), so each has one right
answer: the top-1 rate below checks that the index works, it is not a retrieval-quality figure.

``--data realistic``: the codes come from real photos instead. Up to ``--realistic-images`` (default 200) of the
photos available offline (scikit-image's colour photos, then the opencv-doc samples and Tux Paint's photo-like
stamps when installed) go through EfficientNet-Lite0 as `Index.build` extracts them (`extract_batched`, 14
patches of ``--patch-size`` px); their features are cached as an .npz in ``--realistic-cache`` (keyed by the
photo list and patch size). `IndexModels.learn` makes the vocabularies (k = min(1024, patches / 2)) and PCA, and
`IndexModels` the words and signatures (1-D: ``high``; 2-D: ``mid`` and ``high``; signatures zero-padded to 512
dims). Image i of the collection copies base photo i mod N with 20% of its words redrawn from the real words and
its signature plus Gaussian noise (norm ~0.3), renormalised; queries are noisy copies of collection images as
above (words redrawn from the real words). Every row says which in ``"data"``.

Pruning (``--pruning``, default ``scale``: `IndexConfig(pruning="scale")`, which prunes from 100,000 images on;
``none``: the exact scoring of the thesis; ``--max-df`` / ``--max-candidates`` / ``--burst`` set the options
themselves). The pruned DeepIndex is timed and its top 10 compared with the unpruned one's (``agreement_top10``).

For each size and mode, in one run: build throughput (images/s of `from_codes`), latency of single `search_codes`
calls (median, p95) and of `search_codes_batch` (per query), whether the batch equals the single calls bit for
bit, the index's bytes/image (published: 2,104 B in 1-D, 4,152 B in 2-D with float32 signatures; the run fails if
they differ) and its resident-memory growth per image; the same latencies for the unpruned index, for
``"signature"`` scoring (exhaustive cosine) and for FAISS on the signatures (in 2-D both types concatenated and
scaled by 1/√2: its inner product is the mean cosine, our 2-D signature score). FAISS `IndexFlatIP` is exact;
`IndexIVFFlat` and `IndexIVFPQ` (nlist = 4√N, PQ of 8 dims a byte) take the smallest power-of-two nprobe whose
recall@10 of the exact signature ranking reaches our ``agreement_top10`` (matched recall; the largest tried, nlist,
when none does). FAISS and numpy's BLAS get ``--faiss-threads`` threads (default 1, as our search is one thread);
FAISS's flat batch goes through BLAS (forced: its default skips BLAS for small batches, ~20x slower per query).
A memory estimate is printed first; sizes whose estimate exceeds the available RAM are refused.
Writes bench/results/retrieval.json. ``--json``: stdout holds only JSON, one object a (size, mode) row a line.
Run: python bench/bench_retrieval.py [--quick] [--sizes 10000 100000] [--queries 200] [--pruning scale|none]
     [--float16] [--json] [--data synthetic|realistic] [--realistic-images 200]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import gc
import json
import math
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import faiss
import numpy as np

from imagexplore.retrieval.index import IndexConfig, InvertedIndex
from imagexplore.retrieval.index.config import BURSTS, PRUNINGS, STOP_WORDS, auto_k

P, K, DIM = 14, 1024, 512
TYPES = {"1d": ("a",), "2d": ("a", "b")}
PUBLISHED_BYTES = {"1d": 2104, "2d": 4152}
WORD_NOISE, SIGNATURE_NOISE = 0.3, 0.5
CHUNK = 65536
# Bytes per image alive while `from_codes` runs, besides the signatures and what the index keeps: the isfinite
# mask of the signatures, int64 copies of the words, keys, sort order, sorted ids, the temporary per-(list, image)
# arrays of `Postings` and the terms of the document norms (~90 B an entry counted; 100 leaves a margin).
BUILD_BYTES_PER_ENTRY = 100
# Bytes per image the index keeps besides ids and signatures: document norms (8 B), the image id in
# `Collection.images` (~40 B), and from the first batch on the forward matrix of `Collection.forward` (12 B an
# entry, 4 B an image).
KEPT_BYTES = 12 * P + 52
# Above the interpreter and imports (measured at start): queries, scoring chunks (65,536 rows) and FAISS buffers.
SLACK_BYTES = 200 * 2**20


def zipf_words(rng: np.random.Generator, shape: tuple, s: float, k: int = K) -> np.ndarray:
    """Word ids (int32) among ``k`` drawn with probability ∝ 1/(rank+1)^s; word id = rank."""
    cdf = np.cumsum(1.0 / np.arange(1, k + 1) ** s)
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(shape), side="right"), k - 1).astype(np.int32)


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, DIM) float32 random unit vectors, made in chunks so no float64 copy of the whole set exists."""
    out = np.empty((n, DIM), dtype=np.float32)
    for lo in range(0, n, CHUNK):
        x = rng.standard_normal((min(CHUNK, n - lo), DIM), dtype=np.float32)
        out[lo : lo + x.shape[0]] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def estimate_bytes(n: int, mode: str, float16: bool, base: int) -> int:
    """Peak resident memory of one size and mode above ``base``: the larger of the build (generated and stored
    signatures, the build's temporaries) and the FAISS phase (stored signatures, what the index keeps, and one
    FAISS copy at a time - flat, then IVF - counted twice: its storage grows by reallocation as rows are added)."""
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


def limit_blas_threads(threads: int = 1) -> None:
    """numpy's BLAS (our batches' signature pre-selection) on as many threads as FAISS gets, when threadpoolctl
    is installed (it is with scikit-learn); else BLAS keeps its default and the docs' tables say so."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(threads, user_api="blas")


@contextlib.contextmanager
def faiss_threads(threads: int):
    """FAISS on ``threads`` OpenMP threads inside the block, also when `set_up_process` was skipped (tests): on a
    loaded machine OpenMP's spinning threads slow FAISS's IVF training and searches down many times."""
    saved = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(saved)


def set_up_process(faiss_threads: int) -> None:
    """Process-wide settings of a run: FAISS's and BLAS's thread count, and glibc's malloc set for measuring
    resident memory (`malloc_phase`) until the first timings."""
    faiss.omp_set_num_threads(faiss_threads)
    limit_blas_threads(faiss_threads)
    global _MALLOC_TUNED
    _MALLOC_TUNED = True
    malloc_phase("measure")


_MALLOC_TUNED = False


def malloc_phase(phase: str) -> None:
    """glibc's malloc for resident-memory growth (``"measure"``): mmap threshold fixed at 128 kB and the free
    heap trimmed, so that what grows is what is kept (glibc raises the threshold after big frees, and freed
    arrays of up to 32 MB would then stay in the heap and be counted); for timings (``"time"``): freed blocks of
    up to 32 MB kept for reuse, as glibc's dynamic default does in a long-running process, instead of every
    temporary above 128 kB being mapped and page-faulted anew. Only after `set_up_process` (not in tests)."""
    if not _MALLOC_TUNED:
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        if phase == "measure":
            libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
            libc.mallopt(-1, 128 * 1024)  # M_TRIM_THRESHOLD
            libc.malloc_trim(0)
        else:
            libc.mallopt(-3, 32 * 2**20)
            libc.mallopt(-1, 256 * 2**20)
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


def make_collection(rng, n: int, mode: str, zipf: float, n_queries: int, k: int = K):
    """Words (among ``k``) and signatures of ``n`` images, and queries made from ``n_queries`` of them (and
    which)."""
    types = TYPES[mode]
    words = {t: zipf_words(rng, (n, P), zipf, k) for t in types}
    sigs = {t: unit_vectors(rng, n) for t in types}
    source = rng.choice(n, size=n_queries, replace=False)
    q_words, q_sigs = {}, {}
    for t in types:
        w = words[t][source].copy()
        redraw = rng.random(w.shape) < WORD_NOISE
        w[redraw] = zipf_words(rng, (int(redraw.sum()),), zipf, k)
        q_words[t] = w
        s = sigs[t][source] + SIGNATURE_NOISE * rng.standard_normal((n_queries, DIM)) / np.sqrt(DIM)
        q_sigs[t] = (s / np.linalg.norm(s, axis=1, keepdims=True)).astype(np.float32)
    return words, sigs, q_words, q_sigs, source


REALISTIC_WORD_NOISE, REALISTIC_SIGNATURE_NOISE = 0.2, 0.3
# the vocabulary of the few hundred base photos: k = min(K, patches // this), so 200 photos (2,800 patches) still
# give K words (the library's 20 points a word would leave 140 words)
REALISTIC_POINTS_PER_WORD = 2
OPENCV_SAMPLES = Path("/usr/share/doc/opencv-doc/examples/data")


def realistic_photos(limit: int) -> list[Path]:
    """Up to ``limit`` real photos available offline: scikit-image's colour photos, the opencv-doc samples (if
    installed) and Tux Paint's photo-like stamps (if installed), in that order."""
    from imagexplore.data.assets import skimage_photos
    from imagexplore.errors import DataError

    files = list(skimage_photos())
    if OPENCV_SAMPLES.is_dir():
        files += sorted(p for p in OPENCV_SAMPLES.glob("*") if p.suffix.lower() in (".jpg", ".png"))
    try:
        from imagexplore.edges.cutouts import photo_stamps

        files += photo_stamps()
    except DataError:
        pass
    return files[:limit]


def base_features(files: list[Path], patch_size: int, cache_dir: Path | None) -> dict[str, np.ndarray]:
    """EfficientNet-Lite0 patch features ``{type: (N, P, D)}`` of ``files`` (`distributed.extract_batched`, the
    path of `Index.build`), cached in ``cache_dir`` as an .npz keyed by the file list and the patch size."""
    import hashlib

    key = hashlib.sha1(("\n".join(map(str, files)) + f"\n{patch_size}").encode()).hexdigest()[:16]
    cached = None if cache_dir is None else cache_dir / f"realistic_features_{key}.npz"
    if cached is not None and cached.is_file():
        with np.load(cached) as z:
            return {t: z[t] for t in z.files}
    from imagexplore.retrieval.distributed import extract_batched
    from imagexplore.retrieval.features import load_backbone

    t0 = time.perf_counter()
    feats, skipped = extract_batched(load_backbone(input_size=patch_size), files, batch_size=8)
    if skipped:
        say(f"realistic data: {len(skipped)} unreadable photos left out")
    say(f"realistic data: features of {len(files) - len(skipped)} photos in {time.perf_counter() - t0:.1f} s")
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cached, **feats)
    return feats


def base_codes(feats: dict[str, np.ndarray], mode: str) -> tuple[dict, dict]:
    """Words (type -> (N, P) int32) and signatures (type -> (N, DIM) float32, zero-padded past the PCA's dims)
    of the base photos, as `InvertedIndex.build` makes them: vocabularies and PCA learned on the photos
    (`IndexModels.learn`), nearest word per patch and PCA signature of the whole image (`IndexModels`)."""
    from imagexplore.retrieval.configs import DEFAULT_TYPES
    from imagexplore.retrieval.index.vocabulary import IndexModels

    names = DEFAULT_TYPES[mode]
    config = IndexConfig(
        types=names, mode=mode, k=K, signature_dim=DIM, points_per_word=REALISTIC_POINTS_PER_WORD
    )
    models = IndexModels.learn({t: feats[t] for t in names}, config, "collection")
    words, sigs = {}, {}
    for bench_type, t in zip(TYPES[mode], names):
        x = feats[t]
        n, p = x.shape[:2]
        words[bench_type] = (
            models.nearest(t, x.reshape(-1, x.shape[2]), 1)[1][:, 0].reshape(n, p).astype(np.int32)
        )
        s = models.signature(t, x[:, 0])
        sigs[bench_type] = np.zeros((n, DIM), dtype=np.float32)
        sigs[bench_type][:, : s.shape[1]] = s
    return words, sigs


def noisy_copies(
    rng, words: np.ndarray, sigs: np.ndarray, rows: np.ndarray, word_noise: float, sig_noise: float
):
    """Copies of ``rows`` of (words, signatures): a ``word_noise`` share of words redrawn from the words' own
    distribution (all of ``words``), signatures plus Gaussian noise of norm ~``sig_noise``, renormalised."""
    pool = words.reshape(-1)
    w = np.empty((rows.size, words.shape[1]), dtype=np.int32)
    s = np.empty((rows.size, DIM), dtype=np.float32)
    for lo in range(0, rows.size, CHUNK):
        r = rows[lo : lo + CHUNK]
        chunk = words[r].copy()
        redraw = rng.random(chunk.shape) < word_noise
        chunk[redraw] = pool[rng.integers(pool.size, size=int(redraw.sum()))]
        w[lo : lo + r.size] = chunk
        x = sigs[r] + sig_noise * rng.standard_normal((r.size, DIM), dtype=np.float32) / np.float32(
            np.sqrt(DIM)
        )
        s[lo : lo + r.size] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return w, s


def realistic_collection(rng, n: int, mode: str, n_queries: int, base: tuple[dict, dict]):
    """`make_collection` from real codes: image i copies base photo ``i mod N`` with a ``REALISTIC_WORD_NOISE``
    share of its words redrawn from the real words and its signature perturbed (``REALISTIC_SIGNATURE_NOISE``);
    queries are noisy copies of collection images, as in the synthetic mode."""
    base_words, base_sigs = base
    types = TYPES[mode]
    n_base = base_words[types[0]].shape[0]
    of = np.arange(n) % n_base
    words, sigs = {}, {}
    for t in types:
        words[t], sigs[t] = noisy_copies(
            rng, base_words[t], base_sigs[t], of, REALISTIC_WORD_NOISE, REALISTIC_SIGNATURE_NOISE
        )
    source = rng.choice(n, size=n_queries, replace=False)
    q_words, q_sigs = {}, {}
    for t in types:
        q_words[t], q_sigs[t] = noisy_copies(rng, words[t], sigs[t], source, WORD_NOISE, SIGNATURE_NOISE)
    return words, sigs, q_words, q_sigs, source


def latencies(search_one, search_all, n_queries: int) -> tuple[dict, np.ndarray]:
    """Single-query times (median, p95 ms), the batch time per query (ms), and the batch's result."""
    times = []
    for i in range(n_queries):
        t0 = time.perf_counter()
        search_one(i)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    got = search_all()
    batch = time.perf_counter() - t0
    ms = np.array(times) * 1e3
    out = {
        "single_median_ms": round(float(np.median(ms)), 3),
        "single_p95_ms": round(float(np.percentile(ms, 95)), 3),
        "batch_ms_per_query": round(batch * 1e3 / n_queries, 3),
    }
    return out, got


def vocabulary_size(spec: str, n: int) -> int:
    """The synthetic codes' vocabulary for ``n`` images: ``--k`` as a number, or the library's ``k: auto`` rule."""
    if spec == "auto":
        return auto_k(n * P)
    return int(spec)


def query_keys(q_words: dict, mode: str, k: int = K) -> np.ndarray:
    """The posting-list keys of the query words: the word in 1-D, the cell ``a * k + b`` in 2-D."""
    return q_words["a"] if mode == "1d" else q_words["a"].astype(np.int64) * k + q_words["b"]


def candidates(index: InvertedIndex, keys: np.ndarray, max_df: float | None = None) -> int:
    """How many images share at least one posting list with a query of these keys (the votes' candidates),
    lists held by more than ``max_df`` of the images left out."""
    return candidates_in(index.postings, index.postings.df, len(index), keys, max_df)


def candidates_in(postings, df: np.ndarray, n_total: int, keys: np.ndarray, max_df: float | None) -> int:
    """`candidates` in one part of a collection of ``n_total`` images, whose lists have document frequencies
    ``df`` over the whole collection (a shard of a `ShardedIndex`: the global df)."""
    keys = np.unique(keys)
    pos = np.minimum(np.searchsorted(postings.keys, keys), postings.keys.size - 1)
    pos = pos[postings.keys[pos] == keys]
    if max_df is not None:
        pos = pos[df[pos] <= max_df * n_total]
    lists = [postings.ids[postings.offsets[j] : postings.offsets[j + 1]] for j in pos]
    return int(np.unique(np.concatenate(lists)).size) if lists else 0


def candidates_frac(index: InvertedIndex, q_words: dict, n_queries: int | None = None) -> float:
    """Mean fraction of the images that reach the signature stage for ``index``'s pruning (first queries)."""
    mode = index.config.mode
    keys = query_keys(q_words, mode, index.models.k(index.config.types[-1]))
    max_df, max_cands = index.config.pruning_for(len(index))
    counts = [candidates(index, row, max_df) for row in keys[:n_queries]]
    if max_cands is not None:
        counts = [min(c, max_cands) for c in counts]
    return float(np.mean(counts)) / len(index)


def agreement(ids: np.ndarray, reference: np.ndarray) -> float:
    """Mean share of each reference top list (padding -1 left out) found in the same row of ``ids``."""
    shares = []
    for got, want in zip(ids, reference):
        want = set(want[want >= 0].tolist())
        if want:
            shares.append(len(want & set(got[got >= 0].tolist())) / len(want))
    return float(np.mean(shares)) if shares else 1.0


def signature_rows(index: InvertedIndex, types: tuple, which) -> np.ndarray:
    """Rows ``which`` (a slice or positions) of the index's signatures as FAISS sees them (2-D: concatenated,
    scaled to the mean cosine)."""
    sigs = index.signatures
    rows = np.concatenate([sigs[t][which].astype(np.float32) for t in types], axis=1)
    return rows * np.float32(1 / np.sqrt(len(types))) if len(types) > 1 else rows


def faiss_flat(index: InvertedIndex, types: tuple) -> faiss.IndexFlatIP:
    """Exact inner-product search over the index's signatures (2-D: concatenated, scaled to the mean cosine)."""
    flat = faiss.IndexFlatIP(DIM * len(types))
    for lo in range(0, len(index), CHUNK):
        flat.add(signature_rows(index, types, slice(lo, lo + CHUNK)))
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


def faiss_ivf(index: InvertedIndex, types: tuple, rng, quantizer=None, pq: bool = False):
    """`IndexIVFFlat` (or `IndexIVFPQ`, 8 dims a byte) with nlist = 4√N over the index's signatures; the coarse
    quantizer is trained (10 k-means iterations on at most 40 points a list) unless one is given."""
    n, dim = len(index), DIM * len(types)
    nlist = max(1, round(4 * math.sqrt(n)))
    train = signature_rows(index, types, np.sort(rng.choice(n, size=min(n, 40 * nlist), replace=False)))
    if quantizer is None:
        quantizer = faiss.IndexFlatIP(dim)
        kmeans = faiss.Clustering(dim, nlist)
        kmeans.niter, kmeans.seed, kmeans.spherical = 10, 1234, True
        kmeans.max_points_per_centroid, kmeans.min_points_per_centroid = 40, 1  # no warning at small sizes
        kmeans.train(train, quantizer)
    if pq:
        ivf = faiss.IndexIVFPQ(quantizer, dim, nlist, dim // 8, 8, faiss.METRIC_INNER_PRODUCT)
        ivf.pq.cp.min_points_per_centroid = 1
    else:
        ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.train(train)  # with a trained quantizer of nlist centroids only the PQ (if any) is trained
    for lo in range(0, n, CHUNK):
        ivf.add(signature_rows(index, types, slice(lo, lo + CHUNK)))
    return ivf, quantizer


def at_matched_recall(ivf, query_rows: np.ndarray, exact: np.ndarray, target: float, n_queries: int) -> dict:
    """The smallest power-of-two nprobe whose recall@10 of ``exact`` reaches ``target`` (else nlist), and the
    latencies there."""
    nprobe, recall = 1, 0.0
    while True:
        ivf.nprobe = min(nprobe, ivf.nlist)
        recall = agreement(ivf.search(query_rows, 10)[1], exact)
        if recall >= target or ivf.nprobe == ivf.nlist:
            break
        nprobe *= 2
    timing, ids = latencies(
        lambda i: ivf.search(query_rows[i : i + 1], 10), lambda: ivf.search(query_rows, 10)[1], n_queries
    )
    return timing | {
        "nlist": ivf.nlist,
        "nprobe": ivf.nprobe,
        "recall10": round(agreement(ids, exact), 4),
        "matched": bool(recall >= target),
    }


def pruned_config(config: IndexConfig, args) -> IndexConfig:
    """``config`` with the pruning the command line asks for."""
    return dataclasses.replace(
        config,
        pruning=args.pruning,
        max_df=args.max_df,
        max_candidates=args.max_candidates,
        burst=args.burst,
        stop_words=args.stop_words,
    )


def run_one(n: int, mode: str, args, rng) -> dict:
    with faiss_threads(args.faiss_threads):
        return _run_one(n, mode, args, rng)


def _run_one(n: int, mode: str, args, rng) -> dict:
    types = TYPES[mode]
    q = args.queries
    k = vocabulary_size(args.k, n) if args.data == "synthetic" else K
    if args.data == "realistic":
        words, sigs, q_words, q_sigs, source = realistic_collection(
            rng, n, mode, q, args.realistic_base[mode]
        )
    else:
        words, sigs, q_words, q_sigs, source = make_collection(rng, n, mode, args.zipf, q, k)
    config = IndexConfig(
        types=types, mode=mode, k=k, signature_dim=DIM, float16_signatures=args.float16, pruning="none"
    )  # the unpruned reference; `pruned_config` is what is measured
    gc.collect()
    malloc_phase("measure")
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    index = InvertedIndex.from_codes(words, sigs, config)
    build_s = time.perf_counter() - t0
    rss1 = rss_bytes()
    del sigs, words
    gc.collect()
    malloc_phase("measure")
    rss_built = rss_bytes()
    malloc_phase("time")
    stats = index.stats
    resident = None if rss0 is None else round((rss1 - rss0) / n, 1)
    res = {
        "images": n,
        "mode": mode,
        "data": args.data,
        "queries": q,
        "build_seconds": round(build_s, 3),
        "build_images_per_s": round(n / build_s),
        "bytes_per_image": stats["bytes_per_image"],
        "published_bytes_per_image": None if args.float16 else PUBLISHED_BYTES[mode],
        "resident_bytes_per_image": resident,
        "rss_growth_bytes_per_image": resident,
        "posting_lists": stats["posting_lists"],
        "k": k,
    }
    keys = query_keys(q_words, mode, k)
    res["candidates_median"] = int(statistics.median(candidates(index, keys[i]) for i in range(min(q, 20))))
    pruned = index.with_query_options(**_pruning_fields(pruned_config(config, args)))
    max_df, max_cands = pruned.config.pruning_for(n)
    res["pruning"] = {
        "preset": args.pruning,
        "max_df": max_df,
        "max_candidates": max_cands,
        "burst": pruned.config.burst,
        "stop_words": pruned.config.stop_words_for(n),
        "active": pruned.config.pruning_for(n) != (None, None) or pruned.config.burst != "none",
    }
    res["candidates_frac"] = round(candidates_frac(pruned, q_words, min(q, 20)), 5)

    def ours(view):
        view.search_codes_batch(
            q_words, q_sigs, 10
        )  # once untimed: what a first batch makes (forward matrix)
        return latencies(
            lambda i: view.search_codes(
                {t: q_words[t][i] for t in types}, {t: q_sigs[t][i] for t in types}, 10
            ),
            lambda: view.search_codes_batch(q_words, q_sigs, 10),
            q,
        )

    def single_equals_batch(view, batch) -> bool:
        for i in range(q):
            ids, scores = view.search_codes(
                {t: q_words[t][i] for t in types}, {t: q_sigs[t][i] for t in types}, 10
            )
            if not (
                np.array_equal(batch[0][i, : ids.size], ids)
                and np.array_equal(batch[1][i, : ids.size], scores)
            ):
                return False
        return True

    top = {}
    views = {"votes_signature": pruned, "signature": index.with_query_options(scoring="signature")}
    if res["pruning"]["active"]:
        views["votes_signature_unpruned"] = index
    for name, view in views.items():
        timing, got = ours(view)
        top[name] = got[0]
        res[name] = timing | {"top1_is_source": float(np.mean(got[0][:, 0] == source))}
        if name == "votes_signature":
            res["batch_equals_single"] = single_equals_batch(view, got)
    full = top.get("votes_signature_unpruned", top["votes_signature"])
    res["agreement_top10"] = round(agreement(top["votes_signature"], full), 4)
    res["ms_single"] = res["votes_signature"]["single_median_ms"]
    res["ms_batch"] = res["votes_signature"]["batch_ms_per_query"]
    unpruned = res.get("votes_signature_unpruned", res["votes_signature"])
    res["unpruned_ms_single"] = unpruned["single_median_ms"]
    res["unpruned_ms_batch"] = unpruned["batch_ms_per_query"]

    query_rows = np.concatenate([q_sigs[t] for t in types], axis=1) / np.float32(np.sqrt(len(types)))
    gc.collect()
    malloc_phase("measure")
    rss2 = rss_bytes()
    # what searching added (document norms, caches, the forward matrix of batches), measured after the free
    # heap is trimmed
    res["search_resident_bytes_per_image"] = None if rss2 is None else round((rss2 - rss_built) / n, 1)
    flat = faiss_flat(index, types)
    rss3 = rss_bytes()
    malloc_phase("time")
    timing, exact = latencies(
        lambda i: flat.search(query_rows[i : i + 1], 10), lambda: blas_batch(flat, query_rows), q
    )
    res["faiss_flat"] = timing | {
        "top1_is_source": float(np.mean(exact[:, 0] == source)),
        "bytes_per_image": flat.code_size,
        "rss_growth_bytes_per_image": None if rss2 is None else round((rss3 - rss2) / n, 1),
        "top10_agreement_with_signature_scoring": float(
            np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, top["signature"])])
        ),
    }
    res["faiss_flat_ms_single"] = timing["single_median_ms"]
    res["faiss_flat_ms_batch"] = timing["batch_ms_per_query"]
    flat.reset()  # its memory back before the IVF copies
    gc.collect()
    quantizer = None
    for name, pq in (("faiss_ivf", False), ("faiss_ivfpq", True)) if args.ivf else ():
        ivf, quantizer = faiss_ivf(index, types, rng, quantizer, pq=pq)
        got = at_matched_recall(ivf, query_rows, exact, res["agreement_top10"], q)
        got["bytes_per_image"] = ivf.code_size + 8  # codes + the 8-byte id of every entry
        res[name] = got
        for key in ("nlist", "nprobe", "recall10", "matched", "bytes_per_image"):
            res[f"{name}_{key}"] = got[key]
        res[f"{name}_ms_single"] = got["single_median_ms"]
        res[f"{name}_ms_batch"] = got["batch_ms_per_query"]
        del ivf
        gc.collect()
    res["ratio_over_faiss"] = {
        f"{scoring}_{what}": round(res[scoring][what] / res["faiss_flat"][what], 3)
        for scoring in ("votes_signature", "signature")
        for what in ("single_median_ms", "batch_ms_per_query")
    }
    return res


def _pruning_fields(config: IndexConfig) -> dict:
    names = ("pruning", "max_df", "max_candidates", "burst", "stop_words")
    return {name: getattr(config, name) for name in names}


def show(r: dict) -> None:
    """A (size, mode) row for people: on stdout, or on stderr with ``--json``."""
    published = f" (published {r['published_bytes_per_image']:,})" if r["published_bytes_per_image"] else ""
    p = r["pruning"]
    say(
        f"{r['mode']} {r['images']:>9,} images: build {r['build_images_per_s']:,} images/s, "
        f"{r['bytes_per_image']:,.0f} B/image{published}, resident +{r['resident_bytes_per_image']} B/image, "
        f"{r['posting_lists']:,} lists, median {r['candidates_median']:,} candidates/query unpruned"
    )
    say(
        f"    pruning {p['preset']} (max_df {p['max_df']}, max_candidates {p['max_candidates']}, burst {p['burst']}):"
        f" {r['candidates_frac']:.4f} of the images reach the signatures, top-10 agreement with unpruned "
        f"{r['agreement_top10']:.3f}, batch == single: {r['batch_equals_single']}"
    )
    for name in (
        "votes_signature",
        "votes_signature_unpruned",
        "signature",
        "faiss_flat",
        "faiss_ivf",
        "faiss_ivfpq",
    ):
        if name not in r:
            continue
        t = r[name]
        extra = f"  top-1 {t['top1_is_source']:.2f}" if "top1_is_source" in t else ""
        if "nprobe" in t:
            extra = f"  nprobe {t['nprobe']}/{t['nlist']}, recall@10 {t['recall10']:.3f}"
        say(
            f"    {name:24s} single median {t['single_median_ms']:8.2f} ms  p95 {t['single_p95_ms']:8.2f} ms  "
            f"batch {t['batch_ms_per_query']:8.2f} ms/query{extra}"
        )
    say("    ours / FAISS flat: " + ", ".join(f"{k} {v}" for k, v in r["ratio_over_faiss"].items()))


_LOG = sys.stdout


def say(*parts) -> None:
    """Everything but the JSON rows: stdout, or stderr under ``--json`` (stdout then holds JSON alone)."""
    print(*parts, file=_LOG, flush=True)


def index_rows(args) -> Iterator[dict]:
    """The DeepIndex rows: one a (size, mode)."""
    rng = np.random.default_rng(args.seed)
    if args.data == "realistic" and not hasattr(args, "realistic_base"):
        files = realistic_photos(args.realistic_images)
        if not files:
            raise SystemExit("--data realistic: no real photos found (scikit-image's, opencv-doc, tuxpaint)")
        cache = None if args.realistic_cache == "" else Path(args.realistic_cache)
        feats = base_features(files, args.patch_size, cache)
        args.realistic_base = {m: base_codes(feats, m) for m in args.modes}
        say(f"realistic data: {len(files)} base photos, {next(iter(feats.values())).shape[1]} patches each")
    for n in args.sizes:
        for mode in args.modes:
            yield run_one(n, mode, args, rng)
            gc.collect()


def photo_files(folder: Path, count: int, long_side: int) -> list[Path]:
    """``count`` real photos as JPEGs of a camera's size (long side ``long_side``, quality 90) in ``folder``:
    the opencv-doc sample photos (`make data`), else scikit-image's, upscaled — what `retrieve build` meets in
    a folder of holiday photos, where decoding and cropping a multi-megapixel file is the cost to hide."""
    from PIL import Image

    sources = sorted(Path("/usr/share/doc/opencv-doc/examples/data").glob("*.jpg"))
    if sources:
        images = [Image.open(p).convert("RGB") for p in sources]
    else:
        import skimage.data

        names = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")
        images = [Image.fromarray(getattr(skimage.data, n)()).convert("RGB") for n in names]
    images = [im for im in images if min(im.size) >= 200] or images
    files = []
    for i in range(count):
        im = images[i % len(images)]
        scale = long_side / max(im.size)
        size = (round(im.width * scale), round(im.height * scale))
        files.append(folder / f"photo_{i:04d}.jpg")
        im.resize(size, Image.Resampling.BICUBIC).save(files[-1], quality=90)
    return files


def extraction_rows(args) -> Iterator[dict]:
    """Indexing speed against the network's own limit, measured in this run (``--extraction``): the forward
    passes alone (14 patches of an image in one batch, channels-last, inference mode, random pixels) give the
    limit; `distributed.extract_batched` on real photo files - decoded at reduced scale and cut, in a loader
    process or in this process between the passes (``workers="auto"`` picks one: `loader_workers`), then the
    forward pass - gives ``images_per_s``. ``--extraction-rounds`` rounds of the photos, each against the faster
    of the limits timed just before and after it; the median round is the row's ``images_per_s`` /
    ``forward_limit_images_per_s`` / ``fraction_of_forward_limit`` (``fraction_loader`` / ``_in_process``:
    both ways). The old path (full decode in this process) gives ``images_per_s_full_decode``."""
    import tempfile

    import torch

    from imagexplore.retrieval.distributed import extract_batched, loader_workers
    from imagexplore.retrieval.features import load_backbone

    torch.set_num_threads(os.cpu_count() or 1)
    extractor = load_backbone(input_size=args.patch_size)
    x = torch.rand(14, 3, args.patch_size, args.patch_size)

    def forward_seconds() -> float:
        with torch.inference_mode():
            for _ in range(3):  # warm-up: oneDNN picks its kernels
                extractor(x)
            start = time.perf_counter()
            for _ in range(args.extraction_images):
                extractor(x)
        return (time.perf_counter() - start) / args.extraction_images

    # This machine's speed drifts by tens of percent within a minute, so the limit is timed between rounds of
    # the photos, and each round is compared with the faster of the two limits around it (a fraction of the
    # best the network did at that moment, never of a slow one); the row gives the median round. Each round
    # runs both ways of feeding the network, a loader process and this process between passes, one after the
    # other; `images_per_s` is the way `workers="auto"` takes on this machine (`loader_workers`).
    ways = {"loader": 1, "in_process": 0}
    auto = "loader" if loader_workers(extractor) else "in_process"
    limits = [forward_seconds()]
    rates: dict[str, list[float]] = {way: [] for way in ways}
    with tempfile.TemporaryDirectory() as tmp:
        files = photo_files(Path(tmp), args.extraction_images, args.photo_side)
        for workers in ways.values():  # warm-up, loader start included below
            extract_batched(extractor, files[:2], batch_size=1, workers=workers)
        for _ in range(args.extraction_rounds):
            for way, workers in ways.items():
                start = time.perf_counter()
                extract_batched(extractor, files, batch_size=1, workers=workers)
                rates[way].append(len(files) / (time.perf_counter() - start))
            limits.append(forward_seconds())
        start = time.perf_counter()
        extract_batched(extractor, files, batch_size=1, workers=0, min_side=None)
        full_decode = len(files) / (time.perf_counter() - start)
        stages = loader_stages(extractor, files[:8])
    limit_per_round = [1 / min(a, b) for a, b in zip(limits, limits[1:])]
    fractions = {way: [r / lim for r, lim in zip(got, limit_per_round)] for way, got in rates.items()}
    middle = {way: int(np.argsort(f)[len(f) // 2]) for way, f in fractions.items()}
    row = {
        "mode": "extraction",
        "images": len(files),
        "patch_size": args.patch_size,
        "photo_long_side": args.photo_side,
        "torch_threads": torch.get_num_threads(),
        "rounds": args.extraction_rounds,
        "workers_auto": auto,
        "forward_ms_per_image": round(1000 / limit_per_round[middle[auto]], 2),
        "forward_limit_images_per_s": round(limit_per_round[middle[auto]], 3),
        "images_per_s": round(rates[auto][middle[auto]], 3),
        "fraction_of_forward_limit": round(fractions[auto][middle[auto]], 3),
        "rounds_images_per_s": [round(r, 3) for r in rates[auto]],
        "rounds_forward_limit_images_per_s": [round(r, 3) for r in limit_per_round],
        "rounds_fraction": [round(f, 3) for f in fractions[auto]],
        **{f"images_per_s_{way}": round(rates[way][middle[way]], 3) for way in ways},
        **{f"fraction_{way}": round(fractions[way][middle[way]], 3) for way in ways},
        **{f"rounds_fraction_{way}": [round(f, 3) for f in fractions[way]] for way in ways},
        "images_per_s_full_decode": round(full_decode, 3),
        **stages,
    }
    say(
        f"extraction ({auto}): {row['images_per_s']:.2f} img/s = {row['fraction_of_forward_limit']:.0%} of the forward "
        f"limit {row['forward_limit_images_per_s']:.2f} img/s (loader {row['fraction_loader']:.0%}, in-process "
        f"{row['fraction_in_process']:.0%}; full decode in-process: {row['images_per_s_full_decode']:.2f}); "
        f"loader per photo on one thread: decode {row['loader_ms_decode']} ms, to tensor {row['loader_ms_to_tensor']} ms, "
        f"crop {row['loader_ms_crop']} ms"
    )
    yield row


def loader_stages(extractor, files: list[Path]) -> dict:
    """What the loader process spends per photo, on one thread as it runs: decoding at reduced scale
    (`load_image` with `decode_side`), the uint8 -> float tensor, and cutting the 14 patches (`crop_patches`,
    roi_align's weights as two sparse products) - the CPU that the forward passes lose to it on a 2-core machine."""
    import torch

    from imagexplore.data.images import load_image, pil_to_tensor
    from imagexplore.retrieval.features import crop_patches, decode_side, patch_boxes

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    side = decode_side(extractor)
    spent = {"decode": 0.0, "to_tensor": 0.0, "crop": 0.0}
    try:
        for path in files:
            t0 = time.perf_counter()
            img = load_image(path, "RGB", min_side=side)
            t1 = time.perf_counter()
            x = pil_to_tensor(img)
            t2 = time.perf_counter()
            crop_patches(x, torch.from_numpy(patch_boxes(x.shape[2], x.shape[1])), extractor.input_size)
            t3 = time.perf_counter()
            for key, dt in zip(spent, (t1 - t0, t2 - t1, t3 - t2)):
                spent[key] += dt
    finally:
        torch.set_num_threads(threads)
    return {f"loader_ms_{key}": round(v * 1000 / len(files), 1) for key, v in spent.items()}


def producers(args) -> list[Callable[[argparse.Namespace], Iterator[dict]]]:
    """The row producers of this run, in order. Each takes the parsed arguments and yields dict rows (each is
    printed as one JSON line with ``--json`` and stored in the results file); add another here (and its flags in
    `parse_args`) to put more rows into the same run."""
    return [index_rows] + ([extraction_rows] if args.extraction else [])


def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2,000 images, 20 queries: a smoke test")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--modes", nargs="+", choices=sorted(TYPES), default=sorted(TYPES))
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent of the word frequencies")
    ap.add_argument(
        "--k",
        default="auto",
        help="words of the synthetic codes' vocabulary: 'auto' (default), the library's default rule that ties k "
        "to the collection (IndexConfig k: auto: 1,024 at 10k images, 8,192 at 100k, 65,536 at 1M), or a "
        "number (1024: the thesis configs' fixed vocabulary); --data realistic keeps its photos' vocabulary",
    )
    ap.add_argument("--float16", action="store_true", help="store the signatures as float16")
    ap.add_argument(
        "--pruning",
        choices=PRUNINGS,
        default="scale",
        help="IndexConfig.pruning (default scale; none: exact)",
    )
    ap.add_argument("--max-df", type=float, default=None, help="IndexConfig.max_df (default: the preset's)")
    ap.add_argument(
        "--max-candidates",
        type=lambda x: float(x) if "." in x or "e" in x else int(x),
        default=None,
        help="IndexConfig.max_candidates: a count, or a fraction below 1 (default: the preset's)",
    )
    ap.add_argument("--burst", choices=BURSTS, default="none", help="IndexConfig.burst")
    ap.add_argument(
        "--stop-words",
        choices=STOP_WORDS,
        default=None,
        help="IndexConfig.stop_words (default: the preset's, rescore from 100,000 images on)",
    )
    ap.add_argument(
        "--no-ivf",
        dest="ivf",
        action="store_false",
        help="leave FAISS IVFFlat / IVFPQ out (their training and nprobe search take most of a 1M run)",
    )
    ap.add_argument("--faiss-threads", type=int, default=1, help="FAISS's and numpy's BLAS threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--extraction",
        action="store_true",
        help="also a row of indexing speed on real photos against the network's forward-pass limit",
    )
    ap.add_argument(
        "--data",
        choices=("synthetic", "realistic"),
        default="synthetic",
        help="codes: synthetic (Zipf words, random signatures) or realistic (real Lite0 features, replicated)",
    )
    ap.add_argument("--realistic-images", type=int, default=200, help="base photos of --data realistic")
    ap.add_argument(
        "--realistic-cache",
        default=str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "imagexplore" / "bench"),
        help="folder caching the base photos' features of --data realistic ('' : no cache)",
    )
    ap.add_argument("--extraction-images", type=int, default=24, help="photos timed by --extraction")
    ap.add_argument(
        "--extraction-rounds",
        type=int,
        default=3,
        help="rounds of the photos, each between two forward-limit timings",
    )
    ap.add_argument(
        "--patch-size",
        type=int,
        default=224,
        help="CNN input size per patch for --extraction and --data realistic",
    )
    ap.add_argument("--photo-side", type=int, default=2048, help="long side of the --extraction photos (px)")
    ap.add_argument(
        "--json", action="store_true", help="stdout: one JSON object a row, one a line, nothing else"
    )
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "retrieval.json"))
    args = ap.parse_args(argv)
    if args.k != "auto" and not (args.k.isdigit() and int(args.k) >= 1):
        ap.error(f"--k must be a number of words >= 1 or 'auto', got {args.k!r}")
    if args.quick:
        args.sizes, args.queries = [2000], 20
    return ap, args


def main(argv: list[str] | None = None) -> int:
    global _LOG
    ap, args = parse_args(argv)
    _LOG = sys.stderr if args.json else sys.stdout
    if min(args.sizes) < args.queries:
        ap.error(f"--queries {args.queries} needs every size to hold at least that many images")
    base = rss_bytes() or 2**30
    estimate = {n: max(estimate_bytes(n, m, args.float16, base) for m in args.modes) for n in args.sizes}
    available = available_bytes()
    for n, need in estimate.items():
        say(f"memory estimate for {n:,} images: {need / 2**30:.2f} GiB peak")
    if available is not None:
        say(f"available RAM: {available / 2**30:.2f} GiB")
        too_big = [n for n, need in estimate.items() if need > available]
        if too_big:
            say(
                f"refused: {', '.join(f'{n:,}' for n in too_big)} images need more than the available RAM; "
                "run smaller --sizes, fewer --modes or --float16 (FAISS still holds float32)"
            )
            return 2
    meta = {
        "benchmark": "retrieval",
        "entries_per_image": P,
        "k": args.k,
        "signature_dim": DIM,
        "signature_dtype": "float16" if args.float16 else "float32",
        "data": args.data,
        "realistic_images": args.realistic_images if args.data == "realistic" else None,
        "zipf": args.zipf,
        "queries": args.queries,
        "top_k": 10,
        "pruning": args.pruning,
        "seed": args.seed,
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()]
        if hasattr(os, "getloadavg")
        else None,
        "faiss_threads": args.faiss_threads,
        "memory_estimate_bytes": {str(n): v for n, v in estimate.items()},
    }
    set_up_process(args.faiss_threads)
    started = time.perf_counter()
    runs, wrong = [], []
    for produce in producers(args):
        for r in produce(args):
            runs.append(r)
            if args.json:
                print(json.dumps(r), flush=True)
            if "ratio_over_faiss" in r:  # an index row
                show(r)
            published = r.get("published_bytes_per_image")
            if published and r["bytes_per_image"] != published:
                wrong.append(f"{r['mode']} at {r['images']:,}: {r['bytes_per_image']} B/image")
    meta |= {"peak_rss_bytes": peak_rss_bytes(), "seconds": round(time.perf_counter() - started, 1)}
    res = {"meta": meta, "runs": runs}
    say(f"peak resident memory of the run: {meta['peak_rss_bytes'] / 2**30:.2f} GiB, {meta['seconds']} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    if wrong:
        say(f"memory per image differs from the published table: {'; '.join(wrong)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
