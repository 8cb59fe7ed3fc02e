"""`imagexplore retrieve extract | build | merge | search | eval`: chapter 4's DeepIndex over folders of images.

`extract` runs alone or as torchrun workers (one feature file per rank), `build --features` indexes what they
wrote, `build --vocab-from` + `merge` / `search --index A --index B` handle shards made on separate machines
(docs/retrieval_scaling.md).
"""

from __future__ import annotations

import json
import time

from imagexplore.errors import ConfigError
from imagexplore.retrieval import evaluate
from imagexplore.retrieval.distributed import DEFAULT_BATCH_IMAGES, DEVICES, resolve_device
from imagexplore.retrieval.features import DEFAULT_BACKBONE


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
        type=int,
        default=DEFAULT_BATCH_IMAGES,
        help=f"images per forward pass (default {DEFAULT_BATCH_IMAGES}; larger on a GPU)",
    )
    p.add_argument(
        "--device", choices=DEVICES, default="auto", help="auto: cuda:LOCAL_RANK if a GPU is visible"
    )
    p.add_argument("--json", action="store_true", help="print one JSON line per rank")

    p = rsub.add_parser(
        "build", help="index a folder of images (recursively), or extracted features, into OUT"
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="folder of images to index")
    src.add_argument("--features", help="FEAT_DIR written by `retrieve extract` (all ranks)")
    p.add_argument("--out", required=True, help="index directory to write (replaced if it is an index)")
    p.add_argument("--config", default=None, help="YAML of IndexConfig fields (k, ma, scoring, ...)")
    p.add_argument("--mode", choices=["1d", "2d"], default=None, help="1d: high features; 2d: mid × high")
    p.add_argument("--k", type=int, default=None, help="vocabulary size per feature type (default 1024)")
    p.add_argument(
        "--backbone",
        default=None,
        help=f"with --images: {DEFAULT_BACKBONE} (default), timm:<model>[=<weights>], or two joined by '+'",
    )
    p.add_argument("--weights", default=None, help="with --images: local state_dict of a timm backbone")
    p.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_IMAGES,
        help=f"with --images: images per forward pass (default {DEFAULT_BATCH_IMAGES}; larger on a GPU)",
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
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")

    p = rsub.add_parser("merge", help="join shard indexes that share vocabularies into one index (exact)")
    p.add_argument("--out", required=True, help="index directory to write")
    p.add_argument("shards", nargs="+", metavar="SHARD_DIR", help="indexes built with the same --vocab-from")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")

    p = rsub.add_parser("search", help="the best matches of each query image in an index (or several as one)")
    p.add_argument(
        "--index",
        required=True,
        action="append",
        help="index directory of `retrieve build`; repeat it to search shards as one index",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top", type=int, default=10, help="results per query (default 10)")
    p.add_argument(
        "--device", choices=DEVICES, default=None, help="where queries are described (default auto)"
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")

    evaluate.add_parser(rsub)


def run(args) -> int | None:
    if args.cmd == "extract":
        return _extract(args)
    if args.cmd == "build":
        return _build(args)
    if args.cmd == "merge":
        return _merge(args)
    if args.cmd == "search":
        return _search(args)
    if args.cmd == "eval":
        return evaluate.run(args)
    return None  # no sub-command: the caller prints the group's help


def _extract(args) -> int:
    from imagexplore.retrieval.distributed import extract_shard

    res = extract_shard(
        args.images,
        args.out,
        backbone=args.backbone,
        weights=args.weights,
        batch_size=args.batch_size,
        device=args.device,
        progress=not args.json,
    )
    if args.json:  # one line per rank: the ranks of a torchrun share this stdout
        print(json.dumps(res), flush=True)
    else:
        print(
            f"rank {res['rank']}/{res['world_size']} on {res['device']}: {res['file']}: {res['images']} images, "
            f"{len(res['skipped'])} skipped, {res['seconds']:.1f} s",
            flush=True,
        )
    return 0


def _build(args) -> int:
    from imagexplore.retrieval.api import Index, resolve_config

    start = time.perf_counter()
    if args.vocab_from is None:
        config = resolve_config(args.config, mode=args.mode, k=args.k)
    elif args.mode is not None or args.k is not None:
        raise ConfigError(
            f"--mode and --k are those of the --vocab-from index {args.vocab_from}: leave them out"
        )
    else:
        config = args.config  # laid over the --vocab-from index's config; only query options may change
    if args.features is not None:
        if args.backbone is not None or args.weights is not None or args.device is not None:
            raise ConfigError(
                "--backbone/--weights/--device belong to `retrieve extract`: leave them out with --features"
            )
        index = Index.build_from_features(
            args.features, config, vocab_from=args.vocab_from, progress=not args.json
        )
    else:
        index = Index.build(
            args.images,
            config,
            backbone=args.backbone,
            weights=args.weights,
            progress=not args.json,
            vocab_from=args.vocab_from,
            batch_size=args.batch_size,
            device=str(resolve_device(args.device or "auto")),
        )
    index.save(args.out)
    return _report(index, args.out, start, args.json)


def _merge(args) -> int:
    from imagexplore.retrieval.api import Index

    start = time.perf_counter()
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
        print(
            f"{out}: {res['images']} images, {len(res['skipped'])} skipped, "
            f"{res['bytes_per_image']:.0f} B/image, {res['seconds']:.1f} s"
        )
        for path in res["skipped"]:
            print(f"  skipped {path}")
    return 0


def _search(args) -> int:
    from imagexplore.retrieval.api import Index, ShardedSearch

    index = Index.load(args.index[0]) if len(args.index) == 1 else ShardedSearch.load(args.index)
    index.to(str(resolve_device(args.device or "auto")))
    found = index.search_many(args.images, k=args.top)
    out = [
        {"query": q, "results": [{"path": p, "score": s} for p, s in hits]}
        for q, hits in zip(args.images, found, strict=True)
    ]
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for item in out:
            print(item["query"])
            for rank, hit in enumerate(item["results"], 1):
                print(f"  {rank:3d}  {hit['score']:.4f}  {hit['path']}")
    return 0
