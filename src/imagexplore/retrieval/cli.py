"""`imagexplore retrieve build | search`: chapter 4's DeepIndex over a folder of images."""

from __future__ import annotations

import json
import time


def add_commands(sub) -> None:
    r = sub.add_parser("retrieve", help="chapter 4: DeepIndex image retrieval (build an index, search it)")
    r.set_defaults(handler=run)
    rsub = r.add_subparsers(dest="cmd", metavar="SUBCOMMAND")

    p = rsub.add_parser("build", help="index a folder of images (recursively) into INDEX_DIR")
    p.add_argument("--images", required=True, help="folder of images to index")
    p.add_argument("--out", required=True, help="index directory to write (replaced if it is an index)")
    p.add_argument("--config", default=None, help="YAML of IndexConfig fields (k, ma, scoring, ...)")
    p.add_argument("--mode", choices=["1d", "2d"], default=None, help="1d: high features; 2d: mid × high")
    p.add_argument("--k", type=int, default=None, help="vocabulary size per feature type (default 1024)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")

    p = rsub.add_parser("search", help="the best matches of each query image in an index")
    p.add_argument("--index", required=True, help="index directory of `retrieve build`")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top", type=int, default=10, help="results per query (default 10)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args) -> int | None:
    from imagexplore.retrieval.api import Index, resolve_config

    if args.cmd == "build":
        start = time.perf_counter()
        config = resolve_config(args.config, mode=args.mode, k=args.k)
        index = Index.build(args.images, config, progress=not args.json)
        index.save(args.out)
        stats = index.stats
        res = {
            "index": args.out,
            "images": stats["images"],
            "skipped": stats["skipped"],
            "bytes_per_image": stats["bytes_per_image"],
            "seconds": round(time.perf_counter() - start, 3),
            "stats": stats,
        }
        if args.json:
            print(json.dumps(res, indent=2))
        else:
            print(
                f"{args.out}: {res['images']} images, {len(res['skipped'])} skipped, "
                f"{res['bytes_per_image']:.0f} B/image, {res['seconds']:.1f} s"
            )
            for path in res["skipped"]:
                print(f"  skipped {path}")
        return 0
    if args.cmd == "search":
        index = Index.load(args.index)
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
    return None  # no sub-command: the caller prints the group's help
