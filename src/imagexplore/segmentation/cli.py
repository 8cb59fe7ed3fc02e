"""`imagexplore segment train | eval | predict`: the command group of chapter 2's pixel labelling (FCFN)."""

from __future__ import annotations

import json
import sys

from imagexplore.clitools import (
    POSITIVE_INT,
    add_on_bad_file,
    add_train_arguments,
    check_out_dir,
    eval_device,
    predict_summary,
    run_train_command,
    shared_flags,
)


def add_commands(sub) -> None:
    seg = sub.add_parser("segment", help="chapter 2: semantic segmentation (FCFN, FCN)")
    seg.set_defaults(handler=run)
    ssub = seg.add_subparsers(dest="cmd", metavar="SUBCOMMAND")
    p = ssub.add_parser("train", help="train a segmentation model from a config")
    add_train_arguments(p)
    p = ssub.add_parser(
        "eval", help="mean IoU, pixel accuracy, mean accuracy and per-class IoU of a checkpoint"
    )
    p.add_argument("--checkpoint", required=True, help="a checkpoint of `segment train`")
    p.add_argument("--data", default=None, help="dataset name: shapes | voc (default: the one trained on)")
    p.add_argument("--root", default=None, help="dataset folder (VOC: the folder holding VOCdevkit)")
    p.add_argument("--split", default=None, help="split (default: the config's val_split)")
    p.add_argument(
        "--batch-size", type=POSITIVE_INT, default=1, help="images per batch (1 = exact full-size protocol)"
    )
    p.add_argument("--limit", type=POSITIVE_INT, default=None, help="evaluate only the first N images")
    shared_flags(p)
    p = ssub.add_parser("predict", help="label map of each image as a VOC-palette PNG <stem>.png in --out")
    p.add_argument("--checkpoint", required=True, help="a checkpoint of `segment train`")
    p.add_argument(
        "images", nargs="+", metavar="IMAGE", help="image files or folders of images (recursive, sorted)"
    )
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument(
        "--size", type=POSITIVE_INT, default=None, help="run the model at size×size (default: native size)"
    )
    add_on_bad_file(p)
    shared_flags(p)


def run(args) -> int | None:
    if args.cmd == "train":
        return run_train_command(args, "segment")
    if args.cmd == "eval":
        from imagexplore.segmentation.evaluate import evaluate, format_eval

        res = evaluate(
            args.checkpoint,
            split=args.split,
            root=args.root,
            data=args.data,
            device=eval_device(args),
            batch_size=args.batch_size,
            num_samples=args.limit,
        )
        if args.json:
            print(json.dumps({k: v for k, v in res.items() if k != "confusion"}, indent=2))
        else:
            print(format_eval(res))
        return 0
    if args.cmd == "predict":
        out = check_out_dir(args.out)
        from imagexplore.segmentation.evaluate import predict_report

        res, skipped = predict_report(
            args.checkpoint,
            args.images,
            out,
            device=eval_device(args),
            size=args.size,
            on_bad_file=args.on_bad_file,
        )
        if args.json:
            print(json.dumps(res, indent=2))
        else:
            for r in res:
                top = ", ".join(
                    f"{k} {100 * v:.1f}%" for k, v in sorted(r["classes"].items(), key=lambda kv: -kv[1])
                )
                print(f"{r['path']} -> {r['output']}  ({top})")
        print(predict_summary(len(res), "label map", out, skipped), file=sys.stderr)
        return 0
    return None  # no sub-command: the caller prints the group's help
