"""The `imagexplore` command: one sub-command group per task. Thin: parse, then call the Python API.

Errors the user can fix (`UserError`) print one line and exit with status 2; nothing else is caught.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from imagexplore import __version__
from imagexplore.clitools import NON_NEGATIVE_INT, POSITIVE_INT, Parser, check_out_dir, int_range
from imagexplore.errors import UserError

# Task command groups: each module has add_commands(subparsers) and run(args). Later chapters append theirs.
TASK_CLIS = (
    "imagexplore.classification.cli",
    "imagexplore.segmentation.cli",
    "imagexplore.edges.cli",
    "imagexplore.retrieval.cli",
    "imagexplore.matching.cli",
    "imagexplore.synthesis.cli",
    "imagexplore.web.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="imagexplore",
        description="Deep learning for image classification, retrieval and synthesis. Built: CFN classification "
        "and FCFN segmentation (ch. 2), HED/RDS edges with a BSDS benchmark (ch. 3), DeepIndex retrieval (ch. 4), "
        "RRF-Net image-text matching and text search (ch. 5), CycleMatch and joint matching + classification "
        "(ch. 6-7), image synthesis: pix2pix, the instantiation network and SwapGAN (ch. 8), the explorer (serve).",
    )
    parser.add_argument("--version", action="version", version=f"imagexplore {__version__}")
    sub = parser.add_subparsers(dest="group", metavar="COMMAND")

    p = sub.add_parser("demo", help="every capability on built-in data → DIR/report.html")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--quick", action="store_true", help="smallest budget (about a minute)")
    p.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="device (default: CUDA if present)"
    )

    data = sub.add_parser("data", help="datasets: list what is known and found, preview the shapes world")
    dsub = data.add_subparsers(dest="cmd", metavar="SUBCOMMAND")
    p = dsub.add_parser("list", help="datasets and weights known, where found, how to get the rest")
    p.add_argument("--root", default=None, help="an extra folder to search for datasets")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p = dsub.add_parser("preview", help="contact sheets (PNG) of a dataset")
    p.add_argument("dataset", choices=["shapes"], help="the dataset to preview")
    p.add_argument("--out", required=True, help="folder for the PNG sheets (created if missing)")
    p.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    p.add_argument(
        "--size", type=int_range(32, 256), default=96, help="canvas size in pixels, 32–256 (default 96)"
    )
    p.add_argument("-n", "--num", type=POSITIVE_INT, default=16, help="scenes per sheet (default 16)")
    p = dsub.add_parser(
        "export-persons", help="shapes persons as NAME.png + NAME.pose.json + NAME.parsing.png"
    )
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--count", type=POSITIVE_INT, required=True, help="how many persons")
    p.add_argument(
        "--size", type=int_range(32, 256), default=64, help="image size in pixels, 32–256 (default 64)"
    )
    p.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help="world seed (default 0)")
    p = dsub.add_parser(
        "export-edges",
        help="a real-photo edge set: photo cut-outs on texture photos (BSDS layout + masks/; needs make data)",
    )
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--train", type=NON_NEGATIVE_INT, default=48, help="training images (default 48)")
    p.add_argument("--val", type=NON_NEGATIVE_INT, default=0, help="validation images (default 0)")
    p.add_argument("--test", type=NON_NEGATIVE_INT, default=24, help="test images (default 24)")
    p.add_argument("--size", default="320x240", help="WIDTHxHEIGHT (default 320x240)")
    p.add_argument("--annotators", type=POSITIVE_INT, default=2, help="boundary sets per image (default 2)")
    p.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help="seed (default 0)")
    p = dsub.add_parser(
        "convert-persons", help="DeepFashion / Market-1501 (pose-transfer layout) → person files"
    )
    p.add_argument("--from", dest="source", choices=["deepfashion", "market"], required=True, help="layout")
    p.add_argument(
        "--root", required=True, help="the dataset folder (annotation and pairs CSVs, images, parsing/)"
    )
    p.add_argument("--out", required=True, help="output folder: OUT/train, OUT/test (created if missing)")
    p.add_argument("--split", choices=["train", "test"], default=None, help="one split (default: both)")
    p.add_argument("--limit", type=POSITIVE_INT, default=None, help="at most N persons per split")

    mdl = sub.add_parser("models", help="the model registry")
    msub = mdl.add_subparsers(dest="cmd", metavar="SUBCOMMAND")
    p = msub.add_parser("list", help="registered models and pretrained tags")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style name pattern (default: all)")
    p.add_argument("--task", default=None, help="only this task's models (classify, segment, edges)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")

    for mod in TASK_CLIS:
        importlib.import_module(mod).add_commands(sub)
    return parser


def cmd_data(args) -> int:
    if args.cmd == "list":
        import dataclasses
        from pathlib import Path

        if args.root is not None and not Path(args.root).is_dir():
            raise UserError(f"--root {args.root} is not a folder")

        from imagexplore.data.assets import format_table, list_datasets

        infos = list_datasets(args.root)
        if args.json:
            print(json.dumps([dataclasses.asdict(i) for i in infos], indent=2))
        else:
            print(format_table(infos))
        return 0
    if args.cmd == "preview":
        from imagexplore.data.preview import preview_shapes

        paths = preview_shapes(check_out_dir(args.out), seed=args.seed, size=args.size, n=args.num)
        for p in paths:
            print(p)
        return 0
    if args.cmd == "export-edges":
        from imagexplore.edges.cutouts import make_cutout_edges

        try:
            w, h = (int(v) for v in args.size.lower().split("x"))
        except ValueError:
            raise UserError(f"--size must be WIDTHxHEIGHT, e.g. 320x240, got {args.size!r}") from None
        out = check_out_dir(args.out)
        written = make_cutout_edges(
            out,
            train=args.train,
            val=args.val,
            test=args.test,
            size=(w, h),
            annotators=args.annotators,
            seed=args.seed,
        )
        print(
            f"{out}: " + ", ".join(f"{n} {s}" for s, n in written.items()) + " images (BSDS layout + masks/)"
        )
        return 0
    if args.cmd in ("export-persons", "convert-persons"):
        from imagexplore.synthesis.persons import run_data_command

        return run_data_command(args)
    return _missing(args)


def cmd_models(args) -> int:
    from imagexplore.models import list_models, model_entry

    names = list_models(args.pattern, args.task)
    tasks = sorted({model_entry(n).task for n in list_models()})
    if args.task is not None and args.task not in tasks:
        raise UserError(f"--task {args.task!r} is no task of the registry; tasks: {', '.join(tasks)}")
    if not names:
        print(f"no registered model matches {args.pattern!r}", file=sys.stderr)
    rows = [model_entry(n) for n in names]
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": e.name,
                        "task": e.task,
                        "description": e.description,
                        "pretrained": e.pretrained_tags,
                    }
                    for e in rows
                ],
                indent=2,
            )
        )
    else:
        w = max((len(n) for n in names), default=4)
        for e in rows:
            tags = f"  [pretrained: {', '.join(e.pretrained_tags)}]" if e.pretrained_tags else ""
            print(f"{e.name:<{w}}  {e.task:<9} {e.description}{tags}")
    return 0


def cmd_demo(args) -> int:
    from imagexplore.demo import run_demo

    report = run_demo(check_out_dir(args.out), quick=args.quick, device=args.device)
    print(f"report: {report}")
    return 0


def _missing(args) -> int:
    build_parser().parse_args([args.group, "--help"])
    return 2


def _subparser(parser: argparse.ArgumentParser, names: list[str | None]) -> argparse.ArgumentParser:
    """The parser of `imagexplore GROUP CMD` (as deep as `names` go), to word errors as that command's."""
    for name in names:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not name or not subs or name not in subs[0].choices:
            break
        parser = subs[0].choices[name]
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # also while the parser and its imports are still loading
        print("imagexplore: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `imagexplore ... | head`: the reader left; stop quietly, as Unix tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # an unknown option belongs to the sub-command that was given: word the error as its own
        names = [getattr(args, "group", None), getattr(args, "cmd", None)]
        _subparser(parser, names).error(f"unrecognized arguments: {' '.join(extra)}")
    if args.group is None:
        parser.print_help()
        return 0
    handlers = {"data": cmd_data, "models": cmd_models, "demo": cmd_demo}
    try:
        if getattr(args, "cmd", "x") is None:
            return _missing(args)
        handler = handlers.get(args.group) or args.handler
        rc = handler(args)
        return _missing(args) if rc is None else rc
    except UserError as e:
        print(f"imagexplore: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
