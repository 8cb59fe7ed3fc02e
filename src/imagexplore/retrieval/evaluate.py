"""`imagexplore retrieve eval`: DeepIndex on a retrieval benchmark, scored with the benchmark's own protocol.

The CNN is the slow part, so features are extracted once per benchmark (`extract_benchmark`) and any number of
index variants are built and scored from them (`evaluate_index`): 1-D / 2-D, scoring, vocabulary size, and the
patch ablation — patches are ordered whole image, 2×2, 3×3, so the first 1 / 5 / 14 rows are the nested patch
sets. `evaluate_pixels` is the raw-pixel baseline (tiny images, Torralba et al. 2008) on the same rankings code.

Rankings are the index's candidates, best first; images sharing no word with a query are not returned and count
as misses, as docs/retrieval_evaluation.md says for top-k rankings (UKBench's N-S only needs the top 4, padded
by database order in the rare case a query has fewer candidates).

Experiment configs (``configs/retrieval/*.yaml``) are read by `configs.read_experiment`, re-exported here with
``CONFIG_DIR``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imagexplore.errors import ConfigError, DataError
from imagexplore.retrieval.benchmarks import OFFICIAL, RetrievalBenchmark, load_official
from imagexplore.retrieval.configs import CONFIG_DIR, read_experiment, resolve_config  # noqa: F401 - see above
from imagexplore.retrieval.index import IndexConfig, InvertedIndex
from imagexplore.retrieval.metrics import NS_TOP, mean_average_precision, revisited_map, ukbench_ns_score
from imagexplore.retrieval.options import DATASETS, PATCH_SETS


@dataclass
class BenchmarkFeatures:
    """Patch features of a benchmark: database rows (readable images only) and query rows."""

    db: dict[str, np.ndarray]  # type -> (N_readable, P, D)
    kept: np.ndarray  # database position of each row
    skipped: list[str]  # unreadable database images
    queries: dict[str, np.ndarray]  # type -> (Q, P, D)
    seconds: float


def default_root(name: str) -> Path:
    """Where a generated set is written, or where an official benchmark is found (`imagexplore data list`)."""
    if name in OFFICIAL:
        from imagexplore.data.assets import benchmark_root

        found = benchmark_root(name)
        if found is None:
            raise DataError(
                f"{name} not found under the data roots: give --root DIR (its official layout, "
                "see docs/chapter4.md) or put it at $IMAGEXPLORE_DATA/" + name
            )
        return found.parent if found.name in ("jpg", "full") else found
    return Path.home() / ".cache" / "imagexplore" / "retrieval" / name


def load_benchmark(name: str, root: str | Path | None = None, **options) -> RetrievalBenchmark:
    """An official benchmark read from ``root``, or a generated one written there (``options`` go to it;
    Holidays takes ``upright``)."""
    from imagexplore.retrieval import querysets

    root = Path(root) if root is not None else default_root(name)
    if name in OFFICIAL:
        unknown = sorted(set(options) - {"upright"})
        if unknown:
            raise ConfigError(f"{name} takes no generation options, got {unknown}")
        return load_official(name, root, **options)
    if name == "shapes":
        return querysets.make_shapes(root, **options)
    if name == "photo-copies":
        return querysets.make_photo_copies(root, **options)
    raise ConfigError(f"unknown retrieval dataset {name!r}: choose one of {DATASETS}")


def extract_benchmark(
    bench: RetrievalBenchmark,
    extractor,
    *,
    batch_size: int = 32,
    progress: bool = True,
    on_bad_file: str = "skip",
) -> BenchmarkFeatures:
    """Features of the database (unreadable images skipped and listed; ``on_bad_file="fail"``: the first one
    raises) and of the queries (cropped to boxes; an unreadable query always raises)."""
    from imagexplore.retrieval.features import extract

    start = time.perf_counter()
    got = extract(extractor, bench.images, batch_size=batch_size, progress=progress, on_bad=on_bad_file)
    db, skipped = got if on_bad_file == "skip" else (got, [])  # "fail" returns the features alone
    bad = {str(p) for p in skipped}
    kept = np.array([i for i, p in enumerate(bench.images) if str(p) not in bad], dtype=np.int64)
    if bench.query_ids is not None and bench.query_boxes is None:
        row_of = np.full(len(bench.images), -1)
        row_of[kept] = np.arange(kept.size)
        rows = row_of[bench.query_ids]
        if (rows < 0).any():
            lost = bench.images[int(bench.query_ids[np.argmax(rows < 0)])]
            raise DataError(f"query image {lost} of {bench.name} cannot be read: fix or restore the file")
        queries = {t: f[rows] for t, f in db.items()}
    else:
        queries = extract(
            extractor, bench.queries, batch_size=batch_size, progress=progress, boxes=bench.query_boxes
        )
    return BenchmarkFeatures(db, kept, [str(p) for p in skipped], queries, time.perf_counter() - start)


def _patch_subset(feats: dict[str, np.ndarray], patches: int) -> dict[str, np.ndarray]:
    if patches not in PATCH_SETS:
        raise ConfigError(f"patches must be one of {PATCH_SETS} (whole; + 2×2; + 3×3), not {patches}")
    if next(iter(feats.values())).shape[1] < patches:
        raise ConfigError(f"the features have fewer than {patches} patches per image")
    return {t: f[:, :patches] for t, f in feats.items()}


def score_rankings(bench: RetrievalBenchmark, rankings: list[np.ndarray]) -> dict[str, float]:
    """The benchmark's metrics for rankings of database positions, one per query, best first."""
    if bench.protocol == "map":
        return {"map": mean_average_precision(rankings, bench.positives, bench.junk)}
    if bench.protocol == "ns":
        padded = []
        for r in rankings:
            if r.size < NS_TOP:  # fill from database order, skipping what is already ranked
                rest = np.setdiff1d(np.arange(len(bench.images)), r)[: NS_TOP - r.size]
                r = np.concatenate([r, rest])
            padded.append(r[:NS_TOP])
        return {"ns": ukbench_ns_score(padded, bench.groups, queries=bench.query_ids)}
    return revisited_map(rankings, bench.gnd)


def evaluate_index(
    bench: RetrievalBenchmark,
    feats: BenchmarkFeatures,
    config: IndexConfig,
    *,
    patches: int = 14,
    train: dict[str, np.ndarray] | None = None,
    keep_rankings: bool = False,
) -> dict:
    """Build the index on the database features, search with every query, score: metrics and costs
    (and, with ``keep_rankings``, each query's ranking of database positions)."""
    missing = [t for t in config.types if t not in feats.db]
    if missing:
        raise ConfigError(
            f"the backbone has no feature type(s) {missing}: choose types among {sorted(feats.db)}"
        )
    db = _patch_subset({t: feats.db[t] for t in config.types}, patches)
    queries = _patch_subset({t: feats.queries[t] for t in config.types}, patches)
    if train is not None:
        train = _patch_subset({t: train[t] for t in config.types}, patches)
    index = InvertedIndex.build(db, config, images=feats.kept.tolist(), train=train)
    depth = NS_TOP if bench.protocol == "ns" else len(index)
    start = time.perf_counter()
    ids, _ = index.search_batch(queries, k=depth)
    seconds = time.perf_counter() - start
    rankings = [feats.kept[row[row >= 0]] for row in ids]
    stats = index.stats
    out = {
        "metrics": score_rankings(bench, rankings),
        "query_ms": 1000 * seconds / len(rankings),
        "build_seconds": stats["build_seconds"],
        "bytes_per_image": stats["bytes_per_image"],
        "k": stats["k"],
        "vocab_source": stats["vocab_source"],
        "patches": patches,
        "config": config.to_json(),
    }
    return {**out, "rankings": rankings} if keep_rankings else out


def pixel_descriptors(paths, boxes=None, size: int = 16) -> np.ndarray:
    """Raw-pixel baseline: each image (or its box) shrunk to size×size RGB, mean-removed, L2-normalised."""
    from PIL import Image

    from imagexplore.data.images import load_image

    out = np.zeros((len(paths), size * size * 3), dtype=np.float32)
    for i, path in enumerate(paths):
        try:
            img = load_image(path, "RGB")
        except DataError:
            continue  # an unreadable image gets a zero descriptor: similar to nothing
        if boxes is not None and boxes[i] is not None:
            img = img.crop(tuple(int(round(v)) for v in boxes[i]))
        x = np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32).ravel()
        x -= x.mean()
        out[i] = x / max(float(np.linalg.norm(x)), 1e-12)
    return out


def evaluate_pixels(bench: RetrievalBenchmark, size: int = 16, keep_rankings: bool = False) -> dict:
    """The raw-pixel baseline scored like the index: cosine ranking of every database image."""
    start = time.perf_counter()
    db = pixel_descriptors(bench.images, size=size)
    if bench.query_ids is not None and bench.query_boxes is None:
        queries = db[bench.query_ids]
    else:
        queries = pixel_descriptors(bench.queries, bench.query_boxes, size=size)
    depth = NS_TOP if bench.protocol == "ns" else len(bench.images)
    sims = queries @ db.T
    rankings = list(np.argsort(-sims, axis=1, kind="stable")[:, :depth])
    out = {
        "metrics": score_rankings(bench, rankings),
        "seconds": time.perf_counter() - start,
        "descriptor": f"{size}x{size} RGB pixels, mean-removed, L2",
    }
    return {**out, "rankings": rankings} if keep_rankings else out


def run_eval(
    dataset: str,
    root: str | Path | None = None,
    *,
    config: dict | IndexConfig | None = None,
    backbone: str | None = None,
    weights: str | None = None,
    patch_size: int | None = None,
    patches: int = 14,
    train: str | Path | None = None,
    baseline: bool = False,
    upright: bool = False,
    distractors: int = 0,
    batch_size: int = 32,
    device: str = "cpu",
    progress: bool = True,
    on_bad_file: str = "skip",
) -> dict:
    """Everything `retrieve eval` does: load the benchmark, extract, build, search, score (and the baseline).

    Out-of-range numbers (``patches``, ``batch_size``, ``distractors``, ``patch_size``) raise `ConfigError`
    before any work."""
    from imagexplore.data.images import check_on_bad_file
    from imagexplore.retrieval.features import extract, load_backbone
    from imagexplore.retrieval.options import DEFAULT_BACKBONE, MIN_PATCH_SIZE, check_positive, image_files

    cfg = resolve_config(config)
    if patches not in PATCH_SETS:
        raise ConfigError(f"patches must be one of {PATCH_SETS} (whole; + 2×2; + 3×3), not {patches}")
    check_positive("batch_size (patches per CNN forward)", batch_size)
    check_positive("distractors", distractors, minimum=0)
    if patch_size is not None:
        check_positive("patch_size (CNN input size per patch)", patch_size, minimum=MIN_PATCH_SIZE)
    check_on_bad_file(on_bad_file)
    train_files = None if train is None else image_files(train, "training images")
    options: dict = {"upright": True} if upright else {}
    if distractors:
        if dataset != "photo-copies":
            raise ConfigError(f"--distractors adds tuxpaint stamps to photo-copies only, not to {dataset}")
        from imagexplore.retrieval.querysets import tuxpaint_stamps

        options["distractors"] = tuxpaint_stamps(distractors)
    bench = load_benchmark(dataset, root, **options)
    name = backbone or DEFAULT_BACKBONE
    extractor = load_backbone(name, weights=weights, device=device, input_size=patch_size)
    feats = extract_benchmark(
        bench, extractor, batch_size=batch_size, progress=progress, on_bad_file=on_bad_file
    )
    train_feats = None
    if train_files is not None:
        got = extract(extractor, train_files, batch_size=batch_size, progress=progress, on_bad=on_bad_file)
        train_feats = got[0] if on_bad_file == "skip" else got
    result = evaluate_index(bench, feats, cfg, patches=patches, train=train_feats)
    out = {
        "dataset": bench.name,
        "protocol": bench.protocol,
        "images": len(bench.images),
        "queries": len(bench.queries),
        "skipped": feats.skipped,
        "backbone": name,
        "patch_size": extractor.input_size,
        "extract_seconds": round(feats.seconds, 3),
        **result,
        "notes": bench.notes,
    }
    if baseline:
        out["pixel_baseline"] = evaluate_pixels(bench)
    return out
