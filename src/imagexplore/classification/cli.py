"""`imagexplore classify train | eval`: the command group of chapter 2's classification."""

from __future__ import annotations

import json

from imagexplore.clitools import (
    POSITIVE_INT,
    add_on_bad_file,
    add_train_arguments,
    check_out_dir,
    eval_device,
    run_train_command,
    shared_flags,
)


def add_commands(sub) -> None:
    cls = sub.add_parser("classify", help="chapter 2: image classification (CFN)")
    cls.set_defaults(handler=run)
    csub = cls.add_subparsers(dest="cmd", metavar="SUBCOMMAND")
    p = csub.add_parser("train", help="train a classifier from a config")
    add_train_arguments(p)
    p = csub.add_parser("eval", help="top-1/top-5 error of a checkpoint, and a confusion-matrix plot")
    p.add_argument("--checkpoint", required=True, help="a checkpoint of `classify train`, or its run folder")
    p.add_argument("--data", default=None, help="dataset name (default: the one trained on)")
    p.add_argument("--root", default=None, help="dataset folder")
    p.add_argument("--split", default=None, help="split (default: the config's val_split)")
    p.add_argument("--out", default=None, help="folder for confusion.png")
    p.add_argument(
        "--class-subset",
        action="store_true",
        help="the dataset's classes are a subset of the checkpoint's (or in another order): match them by name",
    )
    p.add_argument("--batch-size", type=POSITIVE_INT, default=256, help="images per batch (default 256)")
    p.add_argument(
        "--on-bad-file",
        choices=["fail", "skip"],
        default=None,
        help="unreadable dataset images: stop with an error or skip them (default: the config's data.on_bad_file)",
    )
    shared_flags(p)
    p = csub.add_parser("predict", help="top-k labels of image files or folders")
    p.add_argument("--checkpoint", required=True, help="a checkpoint of `classify train`, or its run folder")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of images")
    p.add_argument(
        "--topk",
        "--top",
        dest="topk",
        type=POSITIVE_INT,
        default=5,
        help="labels per image (default 5; at most the number of classes)",
    )
    p.add_argument("--batch-size", type=POSITIVE_INT, default=64, help="images per batch (default 64)")
    add_on_bad_file(p)
    shared_flags(p)
    # transfer: frozen features of trained checkpoints → linear probe + retrieval mAP (see docs/transfer.md)
    p = csub.add_parser("transfer", help="fused vs main-GAP features on another dataset: linear probe, mAP")
    p.add_argument("--checkpoint", action="append", required=True, help="a checkpoint (repeatable)")
    p.add_argument("--data", default="imagefolder", help="dataset name (default: imagefolder)")
    p.add_argument("--root", default=None, help="dataset folder (image folders: root/train, root/val)")
    p.add_argument("--train-split", default="train", help="split the linear probe is fit on")
    p.add_argument("--test-split", default="val", help="split for accuracy and retrieval")
    p.add_argument("--image-size", type=POSITIVE_INT, default=None, help="default: the checkpoint's")
    p.add_argument("--num-samples", type=POSITIVE_INT, default=None, help="cap each split at N images")
    p.add_argument("--batch-size", type=POSITIVE_INT, default=128, help="images per batch (default 128)")
    shared_flags(p)


def run(args) -> int | None:
    if args.cmd == "train":
        return run_train_command(args, "classify")
    if args.cmd == "eval":
        from imagexplore.classification.evaluate import evaluate

        res = evaluate(
            args.checkpoint,
            split=args.split,
            root=args.root,
            data=args.data,
            device=eval_device(args),
            batch_size=args.batch_size,
            out_dir=check_out_dir(args.out) if args.out else None,
            class_subset=args.class_subset,
            on_bad_file=args.on_bad_file,
        )
        if args.json:
            print(json.dumps({k: v for k, v in res.items() if k != "confusion"}, indent=2))
        else:
            err5 = f"  top-5 error {100 * res['err5']:.2f}%" if "err5" in res else ""
            print(
                f"{res['dataset']}/{res['split']}: {int(res['count'])} images  top-1 error "
                f"{100 * res['err1']:.2f}%{err5}  loss {res['loss']:.4f}"
            )
            if "confusion_png" in res:
                print(f"confusion matrix: {res['confusion_png']}")
        return 0
    if args.cmd == "transfer":
        from imagexplore.classification.transfer import format_table, run_transfer

        res = run_transfer(
            args.checkpoint,
            data=args.data,
            root=args.root,
            train_split=args.train_split,
            test_split=args.test_split,
            image_size=args.image_size,
            device=eval_device(args),
            batch_size=args.batch_size,
            num_samples=args.num_samples,
        )
        print(json.dumps(res, indent=2) if args.json else format_table(res))
        return 0
    if args.cmd == "predict":
        import sys

        from imagexplore.classification.evaluate import predict

        results, skipped = predict(
            args.checkpoint,
            args.images,
            topk=args.topk,
            device=eval_device(args),
            batch_size=args.batch_size,
            on_bad_file=args.on_bad_file,
        )
        if args.json:
            print(json.dumps(results, indent=2))
        else:
            for r in results:
                tops = "  ".join(f"{t['label']} {t['prob']:.3f}" for t in r["top"])
                print(f"{r['path']}: {tops}")
        for msg in skipped:
            print(f"skipped: {msg}", file=sys.stderr)
        return 0
    return None  # no sub-command: the caller prints the group's help
