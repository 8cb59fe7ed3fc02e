"""DeepIndex larger than the bench can hold in memory: 1-D shards built one at a time, saved, and searched
memory-mapped as one `ShardedIndex` (issue 16's 10M-image row).

`bench_retrieval.py` builds every index in memory (~6.2 GiB a million 1-D images), so it cannot reach 10M images
on a 24 GB machine. Here each shard of ``--shard-images`` images is made from the same synthetic codes
(`bench_retrieval.make_collection`'s generator: Zipf words, random unit 512-d signatures), indexed with
`InvertedIndex.from_codes` (every shard shares the first one's models, as shards must), saved to ``--dir`` and
dropped; then all shards are loaded with ``mmap=True`` and searched together. Reported, one JSON object with
``--json``:
- the build (images/s, bytes on disk per image: a file hard-linked into several shards, such as the shared
  vocabulary, counts once) and what loading the mapped shards keeps resident;
- the preset (`pruning="scale"`: max_df 0.1, 2,000 candidates, stop words rescored) single and batched query
  times, the fraction of images that reach the signature stage, and top-10 agreement with the unpruned
  ranking of the same shards (``--reference-queries`` queries: an unpruned query reads every posting);
- a flat scan of the same mapped signatures (one BLAS product per shard for the whole batch, the top 10 merged:
  what FAISS `IndexFlatIP` does, without first copying 20 GB into one array) as the baseline.

    python bench/bench_disk_shards.py --images 10000000 --dir /work/idx10m --json   # ~21 GiB on disk, ~9 min
    python bench/bench_disk_shards.py --quick                                       # 20,000 images, seconds
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from imagexplore.retrieval.index import IndexConfig, InvertedIndex, ShardedIndex
from imagexplore.retrieval.index.config import auto_k

# the bench's generator, helpers and constants (as bench/tune_pruning.py loads them)
_spec = importlib.util.spec_from_file_location(
    "bench_retrieval", Path(__file__).with_name("bench_retrieval.py")
)
br = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(br)


def shard_codes(rng, n: int, k: int, zipf: float) -> tuple[np.ndarray, np.ndarray]:
    """Words (n, P) and float32 unit signatures (n, DIM) of one shard."""
    return br.zipf_words(rng, (n, br.P), zipf, k), br.unit_vectors(rng, n)


def build_shards(args, k: int) -> tuple[list[Path], dict, np.ndarray, np.ndarray]:
    """Shards written to ``args.dir`` one at a time; queries are noisy copies of random images of them (as
    `make_collection` makes them). Returns the shard folders, build stats and the query words / signatures."""
    rng = np.random.default_rng(args.seed)
    config = IndexConfig(types=("feature",), mode="1d", k=k, signature_dim=br.DIM, pruning="none")
    sources = np.sort(rng.choice(args.images, size=args.queries, replace=False))
    q_words = np.empty((args.queries, br.P), dtype=np.int64)
    q_sigs = np.empty((args.queries, br.DIM), dtype=np.float32)
    folders, first, seconds, disk = [], None, 0.0, 0
    stored: set[tuple[int, int]] = set()  # (device, inode): the shards hard-link the shared vocabulary files
    for lo in range(0, args.images, args.shard_images):
        n = min(args.shard_images, args.images - lo)
        words, sigs = shard_codes(rng, n, k, args.zipf)
        mine = (sources >= lo) & (sources < lo + n)
        q_words[mine], q_sigs[mine] = words[sources[mine] - lo], sigs[sources[mine] - lo]
        start = time.perf_counter()
        shard = InvertedIndex.from_codes({"feature": words}, {"feature": sigs}, config, models_from=first)
        folder = args.dir / f"shard_{lo // args.shard_images:03d}"
        shard.save(folder)
        seconds += time.perf_counter() - start
        for f in folder.rglob("*"):
            st = f.stat()
            if f.is_file() and (st.st_dev, st.st_ino) not in stored:
                stored.add((st.st_dev, st.st_ino))
                disk += st.st_size
        first = first or shard
        folders.append(folder)
        del words, sigs, shard
        gc.collect()
        br.say(f"shard {len(folders)}: {lo + n:,} images built and saved ({seconds:.0f} s so far)")
    redraw = rng.random(q_words.shape) < br.WORD_NOISE  # the noise of `make_collection`'s queries
    q_words[redraw] = br.zipf_words(rng, (int(redraw.sum()),), args.zipf, k)
    noisy = q_sigs + br.SIGNATURE_NOISE * rng.standard_normal(q_sigs.shape) / np.sqrt(br.DIM)
    q_sigs = (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)
    stats = {"build_seconds": round(seconds, 1), "disk_bytes_per_image": round(disk / args.images, 1)}
    return folders, stats, q_words, q_sigs


def candidates_frac(index: ShardedIndex, q_words: np.ndarray) -> float:
    """Mean fraction of the images that reach the signature stage under ``index``'s pruning: images sharing a
    list of global df <= max_df with the query, in every shard, at most max_candidates."""
    snap = index._snapshot()
    max_df, max_cands = index.config.pruning_for(snap.n_images)
    counts = []
    for row in q_words:  # shards hold disjoint images: their candidates add up
        found = sum(
            br.candidates_in(part.data.postings, part.df, snap.n_images, row, max_df) for part in snap.parts
        )
        counts.append(found if max_cands is None else min(found, max_cands))
    return float(np.mean(counts)) / snap.n_images


def flat_scan(index: ShardedIndex, q_sigs: np.ndarray, k: int = 10) -> np.ndarray:
    """Top-``k`` ids by signature cosine, one BLAS product per shard for all queries (FAISS flat's work)."""
    best_ids = np.full((len(q_sigs), 0), -1, dtype=np.int64)
    best = np.empty((len(q_sigs), 0), dtype=np.float32)
    for part in index._snapshot().parts:
        sims = q_sigs @ part.data.signatures["feature"].T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        best = np.concatenate([best, np.take_along_axis(sims, top, 1)], axis=1)
        best_ids = np.concatenate([best_ids, top + part.first_id], axis=1)
    order = np.argsort(-best, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(best_ids, order, 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1_000_000, help="images in all (the 10M row: 10000000)")
    ap.add_argument("--shard-images", type=int, default=1_000_000)
    ap.add_argument(
        "--dir", type=Path, default=None, help="where the shards are written (replaced; default: a temp dir)"
    )
    ap.add_argument(
        "--quick", action="store_true", help="20,000 images in 4 shards, 10 queries: a smoke test"
    )
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "disk_shards.json")
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--reference-queries", type=int, default=20, help="queries also run unpruned")
    ap.add_argument(
        "--k", default="auto", help="vocabulary size, or 'auto' (the library's rule for the images)"
    )
    ap.add_argument("--zipf", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="leave the shards on disk")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.images, args.shard_images, args.queries, args.reference_queries = 20_000, 5_000, 10, 5
    if args.dir is None:
        args.dir = Path(tempfile.mkdtemp(prefix="disk_shards_"))
    if args.json:
        br._LOG = sys.stderr  # progress lines off stdout, which then holds the JSON alone
    k = auto_k(args.images * br.P) if args.k == "auto" else int(args.k)
    br.set_up_process(1)
    if args.dir.exists():  # only ever a folder of this bench's shards is replaced
        if any(not p.name.startswith("shard_") for p in args.dir.iterdir()):
            ap.error(
                f"--dir {args.dir} holds other files than this bench's shards: give a new or empty folder"
            )
        shutil.rmtree(args.dir)
    args.dir.mkdir(parents=True)
    try:
        folders, row, q_words, q_sigs = build_shards(args, k)
        gc.collect()
        br.malloc_phase("measure")
        rss0 = br.rss_bytes()
        shards = [InvertedIndex.load(f, mmap=True) for f in folders]
        unpruned = ShardedIndex(shards)
        pruned = ShardedIndex([s.with_query_options(pruning="scale") for s in shards])
        row["resident_bytes_per_image_loaded"] = round((br.rss_bytes() - rss0) / args.images, 1)
        br.malloc_phase("time")
        words = {"feature": q_words}
        sigs = {"feature": q_sigs}

        def one(view, i):
            return view.search_codes({"feature": q_words[i]}, {"feature": q_sigs[i]}, 10)

        pruned.search_codes_batch(words, sigs, 10)  # once untimed: the forward rows of the stop words
        times = []
        for i in range(args.queries):
            start = time.perf_counter()
            one(pruned, i)
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        ids, _ = pruned.search_codes_batch(words, sigs, 10)
        batch = time.perf_counter() - start
        start = time.perf_counter()
        flat_ids = flat_scan(pruned, q_sigs)
        flat = time.perf_counter() - start
        m = args.reference_queries
        start = time.perf_counter()
        ref = unpruned.search_codes_batch({"feature": q_words[:m]}, {"feature": q_sigs[:m]}, 10)[0]
        ref_s = time.perf_counter() - start
        max_df, max_cands = pruned.config.pruning_for(args.images)
        row.update(
            {
                "images": args.images,
                "mode": "1d",
                "k": k,
                "shards": len(folders),
                "queries": args.queries,
                "pruning": {"max_df": max_df, "max_candidates": max_cands},
                "candidates_frac": round(candidates_frac(pruned, q_words[:20]), 5),
                "ms_single": round(statistics.median(times) * 1e3, 2),
                "ms_batch": round(batch * 1e3 / args.queries, 2),
                "flat_scan_ms_batch": round(flat * 1e3 / args.queries, 2),
                "agreement_top10": round(br.agreement(ids[:m], ref), 3),
                "unpruned_ms_batch": round(ref_s * 1e3 / m, 1),
                "resident_bytes_after_search": round((br.rss_bytes() - rss0) / args.images, 1),
                "flat_top1_equals_ours": round(float(np.mean(flat_ids[:, 0] == ids[:, 0])), 3),
                "peak_rss_gib": round(br.peak_rss_bytes() / 2**30, 2),
            }
        )
    finally:
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(row, indent=1) + "\n")
    if args.json:
        print(json.dumps(row))
    else:
        for key, value in row.items():
            print(f"{key:>36}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
