"""The `imagexplore` command: one sub-command group per task. Thin: parse, then call the Python API.

Errors the user can fix (`UserError`) print one line and exit with status 2; nothing else is caught.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from imagexplore import __version__
from imagexplore.errors import UserError


def _shared_flags(p: argparse.ArgumentParser, *, training: bool = False) -> None:
    p.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default=None, help="device (default: config/auto)"
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    if training:
        p.add_argument("--seed", type=int, default=None, help="random seed (train.seed)")
        p.add_argument("--workers", type=int, default=None, help="data-loading processes (data.workers)")
        p.add_argument(
            "--batch-size", type=int, default=None, help="batch size per process (data.batch_size)"
        )


def _flag_overrides(args) -> list[str]:
    out = []
    for flag, key in (
        ("device", "train.device"),
        ("seed", "train.seed"),
        ("workers", "data.workers"),
        ("batch_size", "data.batch_size"),
    ):
        v = getattr(args, flag, None)
        if v is not None:
            out.append(f"{key}={v}")
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagexplore",
        description="Deep learning for image classification, retrieval and synthesis (CFN, RDS, DeepIndex, "
        "RRF-Net, CycleMatch, image translation).",
    )
    parser.add_argument("--version", action="version", version=f"imagexplore {__version__}")
    sub = parser.add_subparsers(dest="group", metavar="COMMAND")

    p = sub.add_parser("demo", help="every capability on built-in data → DIR/report.html")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--quick", action="store_true", help="smallest budget (about a minute)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")

    data = sub.add_parser("data", help="datasets: list what is known and found, preview the shapes world")
    dsub = data.add_subparsers(dest="cmd", metavar="SUBCOMMAND")
    p = dsub.add_parser("list", help="datasets and weights known, where found, how to get the rest")
    p.add_argument("--root", default=None, help="an extra folder to search for datasets")
    p.add_argument("--json", action="store_true")
    p = dsub.add_parser("preview", help="contact sheets (PNG) of a dataset")
    p.add_argument("dataset", choices=["shapes"])
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("-n", "--num", type=int, default=16, help="scenes per sheet")

    mdl = sub.add_parser("models", help="the model registry")
    msub = mdl.add_subparsers(dest="cmd", metavar="SUBCOMMAND")
    p = msub.add_parser("list", help="registered models and pretrained tags")
    p.add_argument("pattern", nargs="?", default="*")
    p.add_argument("--task", default=None)
    p.add_argument("--json", action="store_true")

    cls = sub.add_parser("classify", help="chapter 2: image classification")
    csub = cls.add_subparsers(dest="cmd", metavar="SUBCOMMAND")
    p = csub.add_parser("train", help="train a classifier from a config")
    p.add_argument("--config", default=None, help="YAML config (default: built-in defaults)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=0.1 (repeatable)",
    )
    p.add_argument("--out", default=None, help="run directory (default: runs/<config name>)")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        help="resume from RUN_DIR/checkpoints/last.pt (or from the checkpoint given)",
    )
    p.add_argument(
        "--progress", dest="progress", action="store_true", default=None, help="force progress bars"
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    _shared_flags(p, training=True)
    p = csub.add_parser("eval", help="top-1/top-5 error of a checkpoint, and a confusion-matrix plot")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default=None, help="dataset name (default: the one trained on)")
    p.add_argument("--root", default=None, help="dataset folder")
    p.add_argument("--split", default=None, help="split (default: the config's val_split)")
    p.add_argument("--out", default=None, help="folder for confusion.png")
    p.add_argument("--batch-size", type=int, default=256)
    _shared_flags(p)
    return parser


def _run_dir_for(cfg, args) -> Path:
    run_dir = Path(args.out) if args.out else Path("runs") / cfg.name
    last = run_dir / "checkpoints" / "last.pt"
    if last.exists() and not args.resume:
        raise UserError(
            f"{run_dir} already holds a run ({last}); pass --resume to continue it or --out NEW_DIR"
        )
    return run_dir


def cmd_classify(args) -> int:
    if args.cmd == "train":
        from imagexplore.classification.train import train
        from imagexplore.config import load_config
        from imagexplore.engine import distributed as dist

        cfg = load_config(args.config, args.overrides + _flag_overrides(args))
        run_dir = _run_dir_for(cfg, args)
        summary = train(cfg, run_dir, resume=args.resume, show_progress=args.progress)
        if dist.is_main():
            if args.json:
                print(json.dumps(summary, indent=2))
            else:
                best = summary["best"]
                print(
                    f"run: {run_dir}  best {best['metric']}={best['value']} (epoch {best['epoch']})  "
                    f"{summary['seconds']:.1f} s"
                )
        if dist.is_initialized():
            dist.shutdown_and_exit(0)
        return 0
    if args.cmd == "eval":
        from imagexplore.classification.evaluate import evaluate

        device = args.device if args.device not in (None, "auto") else "cpu"
        res = evaluate(
            args.checkpoint,
            split=args.split,
            root=args.root,
            data=args.data,
            device=device,
            batch_size=args.batch_size,
            out_dir=args.out,
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
    return _missing(args)


def cmd_data(args) -> int:
    if args.cmd == "list":
        import dataclasses

        from imagexplore.data.assets import format_table, list_datasets

        infos = list_datasets(args.root)
        if args.json:
            print(json.dumps([dataclasses.asdict(i) for i in infos], indent=2))
        else:
            print(format_table(infos))
        return 0
    if args.cmd == "preview":
        from imagexplore.data.preview import preview_shapes

        paths = preview_shapes(args.out, seed=args.seed, size=args.size, n=args.num)
        for p in paths:
            print(p)
        return 0
    return _missing(args)


def cmd_models(args) -> int:
    from imagexplore.models import list_models, model_entry

    names = list_models(args.pattern, args.task)
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

    report = run_demo(args.out, quick=args.quick, device=args.device)
    print(f"report: {report}")
    return 0


def _missing(args) -> int:
    build_parser().parse_args([args.group, "--help"])
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.group is None:
        parser.print_help()
        return 0
    handlers = {"classify": cmd_classify, "data": cmd_data, "models": cmd_models, "demo": cmd_demo}
    try:
        if getattr(args, "cmd", "x") is None:
            return _missing(args)
        return handlers[args.group](args)
    except UserError as e:
        print(f"imagexplore: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("imagexplore: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
