"""`imagexplore retrieve extract | build | merge | search | serve-shards | eval`: chapter 4's DeepIndex over
folders of images.

`extract` runs alone or as torchrun workers (one feature file per rank), `build --features` indexes what they
wrote, `build --vocab-from` + `merge` / `search --index A --index B` handle shards made on separate machines,
`search --backend ray` and `serve-shards` hold the shards in Ray actors (docs/retrieval_scaling.md).

This module imports nothing heavy (torch, faiss, timm are loaded by the commands when they run), so that
`imagexplore --help` stays fast; every command checks its outputs and inputs before any work.
"""

from __future__ import annotations

import json
import shutil
import sys
import time

from imagexplore.clitools import (
    POSITIVE_INT,
    add_no_progress,
    add_on_bad_file,
    int_range,
    reuse_freed_memory,
    show_progress,
)
from imagexplore.errors import ConfigError, DataError
from imagexplore.retrieval.options import (
    DATASETS,
    DEFAULT_BACKBONE,
    DEFAULT_BATCH_IMAGES,
    DEFAULT_CHUNK_IMAGES,
    DEVICES,
    MIN_PATCH_SIZE,
    PATCH_SETS,
    check_feature_out,
    check_folder,
    check_image_folder,
    check_index_dir,
    check_index_out,
    check_weights,
    checkpoint_dir,
)

NON_NEGATIVE = int_range(0)
PATCH_SIZE = int_range(MIN_PATCH_SIZE)


def vocab_size(text: str) -> int | str:
    """`--k`: a vocabulary size ≥ 1, or ``auto`` (sized from the collection, docs/retrieval_scaling.md)."""
    return "auto" if text.strip().lower() == "auto" else POSITIVE_INT(text)


vocab_size.__name__ = "vocabulary size"


def _on_bad_file(p, default: str, what: str) -> None:
    """The shared `--on-bad-file fail|skip` flag, with this command's default and wording."""
    add_on_bad_file(p)
    p.set_defaults(on_bad_file=default)
    action = next(a for a in p._actions if a.dest == "on_bad_file")
    action.help = (
        f"unreadable {what}: skip them and list them (default) or stop with an error"
        if default == "skip"
        else f"unreadable {what}: stop with an error (default) or skip them and report them"
    )


def add_commands(sub) -> None:
    r = sub.add_parser("retrieve", help="chapter 4: DeepIndex image retrieval (build an index, search it)")
    r.set_defaults(handler=run)
    rsub = r.add_subparsers(dest="cmd", metavar="SUBCOMMAND")

    p = rsub.add_parser(
        "extract",
        help="CNN features of a folder into FEAT_DIR, one file per torchrun rank (for `build --features`)",
    )
    p.add_argument("--images", required=True, help="folder of images (listed recursively, sorted)")
    p.add_argument("--out", required=True, help="folder for the feature files and manifest.json")
    p.add_argument(
        "--backbone",
        default=DEFAULT_BACKBONE,
        help=f"default {DEFAULT_BACKBONE}; or timm:<model>[=<weights>], or two joined by '+'",
    )
    p.add_argument("--weights", default=None, help="local state_dict of the backbone (default: bundled)")
    p.add_argument(
        "--batch-size",
        type=POSITIVE_INT,
        default=DEFAULT_BATCH_IMAGES,
        help=f"images per forward pass, ≥ 1 (default {DEFAULT_BATCH_IMAGES}; larger on a GPU)",
    )
    p.add_argument(
        "--device", choices=DEVICES, default="auto", help="auto: cuda:LOCAL_RANK if a GPU is visible"
    )
    _on_bad_file(p, "skip", "images")
    p.add_argument("--json", action="store_true", help="print one JSON line per rank")
    add_no_progress(p)

    p = rsub.add_parser(
        "build", help="index a folder of images (recursively), or extracted features, into OUT"
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="folder of images to index")
    src.add_argument("--features", help="FEAT_DIR written by `retrieve extract` (all ranks)")
    p.add_argument(
        "--out",
        required=True,
        help="index directory to write (a new path, an empty folder, or an index, which is replaced)",
    )
    p.add_argument("--config", default=None, help="YAML of IndexConfig fields (k, ma, scoring, ...)")
    p.add_argument("--mode", choices=["1d", "2d"], default=None, help="1d: high features; 2d: mid × high")
    p.add_argument(
        "--k",
        type=vocab_size,
        default=None,
        help="vocabulary size per feature type, ≥ 1, or 'auto' (from the collection's size: the default)",
    )
    p.add_argument(
        "--backbone",
        default=None,
        help=f"with --images: {DEFAULT_BACKBONE} (default), timm:<model>[=<weights>], or two joined by '+'",
    )
    p.add_argument("--weights", default=None, help="with --images: local state_dict of a timm backbone")
    p.add_argument(
        "--batch-size",
        type=POSITIVE_INT,
        default=DEFAULT_BATCH_IMAGES,
        help=f"with --images: images per forward pass, ≥ 1 (default {DEFAULT_BATCH_IMAGES}; larger on a GPU)",
    )
    p.add_argument(
        "--chunk-size",
        type=POSITIVE_INT,
        default=DEFAULT_CHUNK_IMAGES,
        help="with --images: images per checkpointed chunk of features, kept in OUT.partial until the index "
        "is saved; a build stopped midway resumes there when run again with the same arguments "
        f"(default {DEFAULT_CHUNK_IMAGES}, rounded up to a multiple of --batch-size)",
    )
    p.add_argument(
        "--device", choices=DEVICES, default=None, help="with --images: default auto (CUDA if present)"
    )
    p.add_argument(
        "--vocab-from",
        default=None,
        metavar="INDEX_DIR",
        help="reuse this index's vocabularies, PCA and config: a shard that can be merged with it",
    )
    _on_bad_file(p, "skip", "images of --images")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    add_no_progress(p)

    p = rsub.add_parser("merge", help="join shard indexes that share vocabularies into one index (exact)")
    p.add_argument(
        "--out", required=True, help="index directory to write (a new path, an empty folder, or an index)"
    )
    p.add_argument("shards", nargs="+", metavar="SHARD_DIR", help="indexes built with the same --vocab-from")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")

    p = rsub.add_parser("search", help="the best matches of each query image in an index (or several as one)")
    p.add_argument(
        "--index",
        action="append",
        help="index directory of `retrieve build`; repeat it to search shards as one index",
    )
    p.add_argument(
        "--backend",
        choices=["local", "ray"],
        default="local",
        help="local (default): shards searched in this process; ray: one Ray actor per shard "
        "(pip install imagexplore[ray])",
    )
    p.add_argument(
        "--address",
        default=None,
        help="with --backend ray or --served: the Ray cluster (auto, HEAD_HOST:6379 or ray://HOST:10001); "
        "default for --backend ray: a local Ray instance started for this command",
    )
    p.add_argument(
        "--served",
        default=None,
        metavar="NAME",
        help="search the shards `retrieve serve-shards --name NAME` keeps loaded (instead of --index)",
    )
    p.add_argument(
        "--mmap",
        action="store_true",
        help="memory-map the indexes' signatures and posting lists instead of reading them into memory "
        "(an index larger than RAM; same results; --backend local only)",
    )
    p.add_argument(
        "images", nargs="+", metavar="IMAGE", help="query image files, or folders (their images, recursively)"
    )
    p.add_argument(
        "--top",
        "--topk",
        dest="top",
        type=POSITIVE_INT,
        default=10,
        help="results per query, ≥ 1 (default 10)",
    )
    p.add_argument(
        "--device", choices=DEVICES, default=None, help="where queries are described (default auto)"
    )
    _on_bad_file(p, "fail", "query images")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")

    p = rsub.add_parser(
        "serve-shards",
        help="keep index shards loaded in Ray actors on a cluster, for `retrieve search --served NAME`",
    )
    p.add_argument(
        "--index", action="append", help="shard index directory (repeat; paths every node can read)"
    )
    p.add_argument(
        "--address",
        default=None,
        help="the Ray cluster started by `ray start --head`: auto (on its machines) or HEAD_HOST:6379",
    )
    p.add_argument("--name", default="deepindex", help="name the shards are served under (default deepindex)")
    p.add_argument("--stop", action="store_true", help="stop the shards served as --name")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")

    _add_eval_parser(rsub)


def _add_eval_parser(rsub) -> None:
    p = rsub.add_parser(
        "eval",
        help="index a benchmark and score it (Holidays, UKBench, Oxford/Paris, revisited, generated sets)",
    )
    p.add_argument("--dataset", default=None, choices=DATASETS, help="benchmark (default: the config's)")
    p.add_argument(
        "--root",
        default=None,
        help="benchmark folder in its official layout (shapes/photo-copies: where the set is written; "
        "default: the data roots / ~/.cache/imagexplore/retrieval)",
    )
    p.add_argument("--config", default=None, help="configs/retrieval/*.yaml or a YAML of IndexConfig fields")
    p.add_argument("--mode", choices=["1d", "2d"], default=None, help="1d: high features; 2d: mid × high")
    p.add_argument(
        "--k", type=vocab_size, default=None, help="vocabulary size per feature type, ≥ 1, or 'auto'"
    )
    p.add_argument(
        "--scoring",
        choices=["votes_signature", "votes", "signature"],
        default=None,
        help="votes_signature (default): tf-idf votes × signature kernel; votes; signature alone",
    )
    p.add_argument(
        "--ma", type=POSITIVE_INT, default=None, help="words per query patch (multiple assignment), ≥ 1"
    )
    p.add_argument(
        "--patches",
        type=int,
        choices=PATCH_SETS,
        default=None,
        help="patches per image: 1 (whole), 5 (+ 2×2) or 14 (+ 3×3, default)",
    )
    p.add_argument("--backbone", default=None, help=f"{DEFAULT_BACKBONE} (default) or timm:<model>")
    p.add_argument("--weights", default=None, help="local weights file for a timm backbone")
    p.add_argument(
        "--patch-size",
        type=PATCH_SIZE,
        default=None,
        help=f"CNN input size per patch, ≥ {MIN_PATCH_SIZE} (Lite0: 224)",
    )
    p.add_argument("--train", default=None, help="independent image folder for vocabularies and PCA")
    p.add_argument("--baseline", action="store_true", help="also score the raw-pixel baseline")
    p.add_argument(
        "--distractors",
        type=NON_NEGATIVE,
        default=0,
        help="photo-copies: add N Debian tuxpaint stamps to the database (default 0)",
    )
    p.add_argument(
        "--upright",
        action="store_true",
        help="Holidays: --root is the hand-rotated copy (recorded in the result)",
    )
    p.add_argument(
        "--batch-size", type=POSITIVE_INT, default=32, help="patches per CNN forward, ≥ 1 (default 32)"
    )
    p.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default=None, help="default auto (CUDA if present)"
    )
    _on_bad_file(p, "skip", "database images")
    p.add_argument("--out", default=None, help="also write the JSON result to this file")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    add_no_progress(p)


def run(args) -> int | None:
    if args.cmd in ("extract", "build", "eval"):  # they run the network over whole folders
        reuse_freed_memory()
    if args.cmd == "extract":
        return _extract(args)
    if args.cmd == "build":
        return _build(args)
    if args.cmd == "merge":
        return _merge(args)
    if args.cmd == "search":
        return _search(args)
    if args.cmd == "serve-shards":
        return _serve_shards(args)
    if args.cmd == "eval":
        return _eval(args)
    return None  # no sub-command: the caller prints the group's help


def _extract(args) -> int:
    check_feature_out(args.out)
    check_image_folder(args.images)
    check_weights(args.weights)
    from imagexplore.retrieval.distributed import extract_shard

    res = extract_shard(
        args.images,
        args.out,
        backbone=args.backbone,
        weights=args.weights,
        batch_size=args.batch_size,
        device=args.device,
        progress=show_progress(args),
        on_bad_file=args.on_bad_file,
    )
    if args.json:  # one line per rank: the ranks of a torchrun share this stdout
        print(json.dumps(res), flush=True)
    else:
        print(
            f"rank {res['rank']}/{res['world_size']} on {res['device']}: {res['file']}: {res['images']} images, "
            f"{len(res['skipped'])} skipped, {res['seconds']:.1f} s",
            flush=True,
        )
        for path in res["skipped"]:
            print(f"  skipped {path}", flush=True)
    return 0


def _build(args) -> int:
    """Every input and the output checked first (seconds), then the features (minutes), then the index."""
    start = time.perf_counter()
    check_index_out(args.out)
    if args.vocab_from is not None:
        check_index_dir(args.vocab_from, "--vocab-from")
        if args.mode is not None or args.k is not None:
            raise ConfigError(
                f"--mode and --k are those of the --vocab-from index {args.vocab_from}: leave them out"
            )
    if args.features is not None:
        if args.backbone is not None or args.weights is not None or args.device is not None:
            raise ConfigError(
                "--backbone/--weights/--device belong to `retrieve extract`: leave them out with --features"
            )
        from imagexplore.retrieval.distributed import read_manifest

        read_manifest(
            check_folder(args.features, "--features", "feature files of `imagexplore retrieve extract`")
        )
    else:
        check_image_folder(args.images)
        check_weights(args.weights)
    from imagexplore.retrieval.api import Index
    from imagexplore.retrieval.configs import resolve_config

    if args.vocab_from is None:
        config = resolve_config(args.config, mode=args.mode, k=args.k)
        vocab_from = None
    else:
        vocab_from = Index.load(args.vocab_from)
        # laid over the --vocab-from index's config (only query options may change), checked before any work
        from imagexplore.retrieval.api import config_for

        config_for(args.config, vocab_from)
        config = args.config
    if args.features is not None:
        index = Index.build_from_features(
            args.features, config, vocab_from=vocab_from, progress=show_progress(args)
        )
    else:
        from imagexplore.retrieval.distributed import resolve_device

        device = str(resolve_device(args.device or "auto"))
        index = Index.build(
            args.images,
            config,
            backbone=args.backbone,
            weights=args.weights,
            progress=show_progress(args),
            vocab_from=vocab_from,
            batch_size=args.batch_size,
            device=device,
            on_bad_file=args.on_bad_file,
            checkpoint=checkpoint_dir(args.out),
            chunk_size=args.chunk_size,
        )
    index.save(args.out)
    if args.features is None:
        shutil.rmtree(checkpoint_dir(args.out), ignore_errors=True)
    return _report(index, args.out, start, args.json)


def _merge(args) -> int:
    start = time.perf_counter()
    check_index_out(args.out)
    for shard in args.shards:
        check_index_dir(shard, "shard")
    from imagexplore.retrieval.api import Index

    index = Index.merge(args.shards)
    index.save(args.out)
    return _report(index, args.out, start, args.json, shards=args.shards)


def _report(index, out: str, start: float, as_json: bool, **extra) -> int:
    stats = index.stats
    res = {
        "index": out,
        "images": stats["images"],
        "skipped": stats["skipped"],
        "bytes_per_image": stats["bytes_per_image"],
        "seconds": round(time.perf_counter() - start, 3),
        **extra,
        "stats": stats,
    }
    if as_json:
        print(json.dumps(res, indent=2))
    else:
        times = f"{res['seconds']:.1f} s"
        if stats.get("extract_seconds") is not None:
            times += f" (features {stats['extract_seconds']:.1f} s, index {stats['index_seconds']:.1f} s)"
        print(
            f"{out}: {res['images']} images, {len(res['skipped'])} skipped, "
            f"{res['bytes_per_image']:.0f} B/image, {times}"
        )
        for path in res["skipped"]:
            print(f"  skipped {path}")
    return 0


def _search(args) -> int:
    """Indexes and queries checked (every query decoded) before the index and the CNN are loaded."""
    if (args.index is None) == (args.served is None):
        raise ConfigError(
            "give the indexes to search with --index DIR (repeatable) or --served NAME, not both"
        )
    if args.mmap and (args.backend != "local" or args.served is not None):
        raise ConfigError(
            "--mmap maps the indexes into this process: use it with --index and --backend local"
        )
    if args.served is not None and args.backend != "local":
        raise ConfigError("--served NAME searches through Ray already: leave --backend out")
    if args.address is not None and args.backend != "ray" and args.served is None:
        raise ConfigError("--address is the Ray cluster of --backend ray or --served: add --backend ray")
    if args.backend == "ray" or args.served is not None:
        from imagexplore.retrieval.ray_shards import import_ray

        import_ray()  # not installed: say how to install it before any work
    if args.backend == "local" and args.index is not None:
        for directory in args.index:  # Ray's actors read theirs where they run, and say what is wrong there
            check_index_dir(directory)
    from imagexplore.data.images import BadFileCounter, load_image
    from imagexplore.data.inputs import expand_inputs

    queries = [str(p) for p in expand_inputs(args.images)]  # folders stand for their images
    counter = BadFileCounter(args.on_bad_file, what="query images")
    kept = []
    for q in queries:  # decoded once here, so a bad query stops the command before the CNN is loaded
        try:
            load_image(q, "RGB")
        except DataError as exc:
            counter.handle(q, exc)  # --on-bad-file fail: raises the error that names the file
        else:
            kept.append(q)
    if counter.skipped:
        names = ", ".join(str(p) for p, _ in counter.skipped[:3]) + (" ..." if counter.count > 3 else "")
        if not kept:
            raise DataError(f"none of the {len(queries)} query images could be read ({names})")
        print(
            f"imagexplore: skipped {counter.count} of {len(queries)} query images (unreadable): {names}",
            file=sys.stderr,
        )
    from imagexplore.retrieval.api import Index, ShardedSearch
    from imagexplore.retrieval.distributed import resolve_device

    if args.served is not None:
        index = ShardedSearch.connect(args.served, args.address)
    elif args.backend == "ray":
        index = ShardedSearch.load(args.index, backend="ray", address=args.address)
    else:
        index = (
            Index.load(args.index[0], mmap=args.mmap)
            if len(args.index) == 1
            else ShardedSearch.load(args.index, mmap=args.mmap)
        )
    index.to(str(resolve_device(args.device or "auto")))
    try:
        found = index.search_many(kept, k=args.top)
    finally:
        if isinstance(index, ShardedSearch):
            index.close()
    out = [
        {"query": q, "results": [{"path": p, "score": s} for p, s in hits]}
        for q, hits in zip(kept, found, strict=True)
    ]
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for item in out:
            print(item["query"])
            for rank, hit in enumerate(item["results"], 1):
                print(f"  {rank:3d}  {hit['score']:.4f}  {hit['path']}")
    return 0


def _serve_shards(args) -> int:
    """Start (or `--stop`) the detached actors that keep shards loaded on a Ray cluster."""
    from imagexplore.retrieval.ray_shards import import_ray, serve, stop_served

    import_ray()
    if args.stop:
        if args.index:
            raise ConfigError("--stop ends the shards served as --name: leave --index out")
        stop_served(args.name, args.address)
        print(
            json.dumps({"stopped": args.name}) if args.json else f"stopped the shards served as {args.name}"
        )
        return 0
    if not args.index:
        raise ConfigError("give the shards to serve with --index DIR (repeatable)")
    start = time.perf_counter()
    info = serve(args.index, args.name, args.address)
    res = {
        "name": args.name,
        "shards": info["shards"],
        "images": len(info["images"]),
        "seconds": round(time.perf_counter() - start, 3),
    }
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(
            f"serving {res['images']} images in {len(res['shards'])} shards as {args.name} ({res['seconds']:.1f} s); "
            f"search them with `imagexplore retrieve search --served {args.name} --address ADDR IMAGE...`, "
            f"stop them with `imagexplore retrieve serve-shards --stop --name {args.name} --address ADDR`"
        )
    return 0


def _eval(args) -> int:
    """`retrieve eval` (its flags are declared in `retrieval.cli`): inputs and --out checked before any work."""
    from pathlib import Path

    from imagexplore.clitools import eval_device
    from imagexplore.retrieval.configs import read_experiment, resolve_config
    from imagexplore.retrieval.evaluate import DATASETS, OFFICIAL, run_eval
    from imagexplore.retrieval.options import check_folder, check_image_folder, check_out_file, check_weights

    if args.out:
        check_out_file(args.out)
    exp = read_experiment(args.config)
    dataset = args.dataset or exp.get("dataset")
    if dataset is None:
        raise ConfigError("give --dataset (or a config with a 'dataset' key)")
    if dataset not in DATASETS:
        raise ConfigError(f"unknown retrieval dataset {dataset!r} in {args.config}: choose one of {DATASETS}")
    if args.root is not None and (dataset in OFFICIAL or Path(args.root).exists()):
        check_folder(args.root, "--root", f"the {dataset} benchmark")
    if args.train is not None:
        check_image_folder(args.train, "--train")
    check_weights(args.weights, "--weights")
    overrides = {k: v for k, v in (("scoring", args.scoring), ("ma", args.ma)) if v is not None}
    cfg = resolve_config({**exp["index"], **overrides}, mode=args.mode, k=args.k)
    res = run_eval(
        dataset,
        args.root,
        config=cfg,
        backbone=args.backbone or exp.get("backbone"),
        weights=args.weights or exp.get("weights"),
        patch_size=args.patch_size or exp.get("patch_size"),
        patches=args.patches or exp.get("patches", 14),
        train=args.train,
        baseline=args.baseline,
        upright=args.upright,
        distractors=args.distractors,
        batch_size=args.batch_size,
        device=eval_device(args),
        progress=show_progress(args),
        on_bad_file=args.on_bad_file,
    )
    if "target" in exp:
        res["published_target"] = exp["target"]
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in res["metrics"].items())
    print(
        f"{res['dataset']}: {res['images']} images, {res['queries']} queries, {len(res['skipped'])} skipped | "
        f"{cfg.mode} k={res['k']} {cfg.scoring}, {res['patches']} patches | {metrics} | "
        f"{res['query_ms']:.1f} ms/query, {res['bytes_per_image']:.0f} B/image"
    )
    if "published_target" in res:
        print(f"  published target (thesis): {res['published_target']}")
    if "pixel_baseline" in res:
        base = ", ".join(f"{k} {v:.4f}" for k, v in res["pixel_baseline"]["metrics"].items())
        print(f"  raw-pixel baseline: {base}")
    for path in res["skipped"]:
        print(f"  skipped {path}")
    return 0
