"""`imagexplore synth train | eval | translate | swap`: the command group of chapter 8 (image synthesis)."""

from __future__ import annotations

import json
import sys

from imagexplore.clitools import POSITIVE_INT, add_train_arguments, check_out_dir, eval_device, shared_flags


def add_commands(sub) -> None:
    g = sub.add_parser("synth", help="chapter 8: image synthesis (pix2pix, instantiation network, SwapGAN)")
    g.set_defaults(handler=run)
    s = g.add_subparsers(dest="cmd", metavar="SUBCOMMAND")
    p = s.add_parser("train", help="train a synth model from a config (configs/synth/*.yaml)")
    add_train_arguments(p)

    p = s.add_parser(
        "eval", help="SSIM, PSNR, L1, Lite0 Fréchet distance (and FCN-score, mask L1) of a checkpoint"
    )
    p.add_argument("--checkpoint", default=None, help="a checkpoint (or run folder) of `synth train`")
    p.add_argument(
        "--baseline",
        choices=["identity", "copy-paste"],
        default=None,
        help="instead of a checkpoint: a trivial baseline (identity: output = input; copy-paste: B's clothes "
        "boxes pasted on A's layout) on the data of --config",
    )
    p.add_argument("--config", default=None, help="with --baseline: the synth config whose data to use")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="with --config"
    )
    p.add_argument("--split", default="test", help="split of the data trained on (default: test)")
    p.add_argument("--limit", type=POSITIVE_INT, default=None, help="evaluate the first N items only")
    p.add_argument("--batch-size", type=POSITIVE_INT, default=16, help="items per batch (default 16)")
    p.add_argument(
        "--no-fd", dest="fd", action="store_false", help="skip the Lite0 Fréchet distance (fd_lite0)"
    )
    p.add_argument(
        "--fid-weights",
        default=None,
        metavar="FILE",
        help="also true FID on these Inception weights (torch-fidelity's pt_inception-2015-12-05 file)",
    )
    p.add_argument(
        "--segmenter",
        default=None,
        metavar="CHECKPOINT",
        help="a `segment train` checkpoint of the same domain: the label → photo FCN-score",
    )
    p.add_argument("--samples", type=POSITIVE_INT, default=None, help="samples per input for diversity")
    shared_flags(p)

    p = s.add_parser("translate", help="translate images (label map / sketch → photo, ...), N samples each")
    p.add_argument("--checkpoint", required=True, help="a checkpoint (or run folder) of `synth train`")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--samples", type=POSITIVE_INT, default=1, help="samples per input (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the samples' style codes (default 0)")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    shared_flags(p)

    p = s.add_parser("swap", help="person A wearing person B's clothes (SwapGAN)")
    p.add_argument("--checkpoint", required=True, help="a SwapGAN (or persons pix2pix) checkpoint")
    p.add_argument("--person", required=True, help="A.png (A.pose.json and A.parsing.png beside it)")
    p.add_argument("--clothes", required=True, help="B.png, whose clothes A gets (with its pose and parsing)")
    for who in ("person", "clothes"):
        p.add_argument(
            f"--{who}-pose", default=None, help=f"the {who} image's pose file (default: beside it)"
        )
        p.add_argument(
            f"--{who}-parsing", default=None, help=f"the {who} image's parsing map (default: beside it)"
        )
    p.add_argument("--out", required=True, help="output PNG")
    shared_flags(p)


def run(args) -> int | None:
    if args.cmd == "train":
        from imagexplore.clitools import run_train_command

        return run_train_command(args, "synth")
    if args.cmd == "eval":
        from imagexplore.synthesis.evaluate import evaluate

        if (args.checkpoint is None) == (args.baseline is None):
            from imagexplore.errors import ConfigError

            raise ConfigError("synth eval needs --checkpoint, or --baseline with --config")
        res = evaluate(
            args.checkpoint,
            config=args.config,
            baseline=args.baseline,
            overrides=args.overrides,
            split=args.split,
            num_samples=args.limit,
            batch_size=args.batch_size,
            fd=args.fd,
            fid_weights=args.fid_weights,
            segmenter=args.segmenter,
            samples=args.samples,
            device=eval_device(args),
            progress=not args.json,
        )
        if args.json:
            print(json.dumps(res, indent=2))
        else:
            for k, v in res.items():
                print(f"{k:16s} {v:.4f}" if isinstance(v, float) else f"{k:16s} {v}")
        return 0
    if args.cmd == "translate":
        from imagexplore.synthesis.evaluate import translate

        out = check_out_dir(args.out)
        res = translate(
            args.checkpoint, args.images, out, samples=args.samples, device=eval_device(args), seed=args.seed
        )
        if args.json:
            print(json.dumps(res, indent=2))
        n = sum(len(r["outputs"]) for r in res)
        print(f"wrote {n} image{'s' if n != 1 else ''} for {len(res)} input(s) to {out}", file=sys.stderr)
        return 0
    if args.cmd == "swap":
        from pathlib import Path

        from imagexplore.synthesis.evaluate import swap_clothes

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        res = swap_clothes(
            args.checkpoint,
            args.person,
            args.clothes,
            args.out,
            person_pose=args.person_pose,
            person_parsing=args.person_parsing,
            clothes_pose=args.clothes_pose,
            clothes_parsing=args.clothes_parsing,
            device=eval_device(args),
        )
        print(json.dumps(res, indent=2) if args.json else f"wrote {res['output']}")
        return 0
    return None
