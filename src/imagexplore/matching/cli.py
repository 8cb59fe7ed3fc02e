"""`imagexplore match extract | train | eval | index | search`: chapter 5's image–text matching (RRF-Net)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from imagexplore.clitools import (
    POSITIVE_INT,
    add_no_progress,
    add_train_arguments,
    check_out_dir,
    run_train_command,
    show_progress,
)
from imagexplore.errors import UserError

READERS = (
    "karpathy | precomputed | caption-folder | shapes | tuxpaint | openclipart | cub | flowers | food101 | "
    "pascal-sentences"
)


def add_commands(sub) -> None:
    m = sub.add_parser(
        "match", help="chapters 5–7: image–text matching (RRF-Net, CycleMatch, JMC), text → image search"
    )
    m.set_defaults(handler=run)
    msub = m.add_subparsers(dest="cmd", metavar="SUBCOMMAND")

    p = msub.add_parser("extract", help="compute a caption set's image and text features once, into a cache")
    p.add_argument("--data", required=True, help=READERS)
    p.add_argument(
        "--root", default=None, help="dataset folder (not needed for shapes, tuxpaint, openclipart)"
    )
    p.add_argument(
        "--split", nargs="+", default=["train", "val", "test"], help="splits (default: train val test)"
    )
    p.add_argument(
        "--image-encoder",
        default="lite0",
        help="lite0 (default) | lite0_mid (a middle stage) | pixels (raw, for a CNN from scratch) | timm:NAME | "
        "resnet152",
    )
    p.add_argument("--image-weights", default=None, help="local weights file of the image encoder")
    p.add_argument(
        "--text-encoder",
        default="minilm",
        help="minilm (default) | precomputed (--text-features) | tokens (word ids) | bow (TF-IDF); tokens and bow "
        "build their vocabulary from the train split",
    )
    p.add_argument("--text-features", default=None, help="the .npy of precomputed text features")
    p.add_argument("--cache", default=None, help="cache folder (default: $IMAGEXPLORE_CACHE/match)")
    add_no_progress(p)

    p = msub.add_parser(
        "train", help="train a matching model from a config (RRF-Net, plain, CycleMatch, JMC)"
    )
    add_train_arguments(p)

    p = msub.add_parser("eval", help="R@1/5/10 both ways, median/mean rank, R@sum (an ensemble if several)")
    p.add_argument(
        "--checkpoint", action="append", required=True, help="a match checkpoint or run (repeatable)"
    )
    p.add_argument("--data", default=None, help=f"{READERS} (default: the one trained on)")
    p.add_argument("--root", default=None, help="dataset folder")
    p.add_argument("--split", default="test", help="split (default test)")
    p.add_argument(
        "--protocol",
        choices=["all", "1k", "5k"],
        default="all",
        help="all (default) | 1k (COCO 5 folds) | 5k",
    )
    p.add_argument(
        "--fusion",
        default=None,
        choices=["latent", "dual", "reconstructed", "average", "adaptive", "fitted"],
        help="CycleMatch late fusion of its three similarity spaces (default adaptive); refused for other models",
    )
    p.add_argument(
        "--temperature", type=float, default=1.0, help="adaptive fusion: softmax temperature (default 1)"
    )
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    add_no_progress(p)

    p = msub.add_parser("index", help="embed a folder of images for text search")
    p.add_argument("--checkpoint", required=True, help="a match checkpoint or run")
    p.add_argument("--images", required=True, help="folder of images (recursive)")
    p.add_argument("--out", required=True, help="index folder (replaced atomically)")
    add_no_progress(p)

    p = msub.add_parser("search", help="text → images of an index (or image → captions of a caption file)")
    p.add_argument("--index", default=None, help="a match index (imagexplore match index)")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--text", action="append", help="a sentence (repeatable)")
    q.add_argument(
        "--image", help="an image: its best captions among --captions (or the index's best images)"
    )
    p.add_argument("--captions", default=None, help="caption file (one per line) for --image")
    p.add_argument("--checkpoint", default=None, help="the model (default: the one the index remembers)")
    p.add_argument("--top", type=POSITIVE_INT, default=5, help="results per query (default 5)")
    p.add_argument(
        "--fusion",
        default=None,
        choices=["latent", "dual", "reconstructed", "average", "adaptive", "fitted"],
        help="CycleMatch late fusion of its three similarity spaces (default adaptive); refused for other models",
    )
    p.add_argument(
        "--temperature", type=float, default=1.0, help="adaptive fusion: softmax temperature (default 1)"
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")


def run(args) -> int:
    if args.cmd is None:
        from imagexplore.cli import build_parser

        build_parser().parse_args(["match", "--help"])
        return 2
    return {"extract": _extract, "train": _train, "eval": _eval, "index": _index, "search": _search}[
        args.cmd
    ](args)


def _train(args) -> int:
    return run_train_command(args, "match")


def _extract(args) -> int:
    from imagexplore.matching.data import read_caption_set
    from imagexplore.matching.encoders import image_encoder, text_encoder
    from imagexplore.matching.train import cache_root, split_features

    # the data is checked before any model loads (and read once)
    sets = {split: read_caption_set(args.data, root=args.root, split=split) for split in args.split}
    image_opts = {"weights": args.image_weights} if args.image_weights else {}
    text_opts = {"features": args.text_features} if args.text_features else {}
    if args.text_encoder in ("tokens", "bow"):  # the vocabulary (and IDF) from the training captions only
        text_opts["train_captions"] = read_caption_set(args.data, root=args.root, split="train").captions
    ienc, tenc = image_encoder(args.image_encoder, **image_opts), text_encoder(args.text_encoder, **text_opts)
    root = cache_root({"cache": args.cache})
    world = int(os.environ.get("WORLD_SIZE", "1"))
    shard = "env" if world > 1 else None  # under torchrun: each rank extracts its rows, the last one merges
    for split in args.split:
        cache = split_features(
            args.data,
            args.root,
            split,
            {},
            ienc,
            tenc,
            root,
            show_progress(args),
            shard,
            captions=sets[split],
        )
        if isinstance(cache, Path):
            print(f"{split}: rank {os.environ.get('RANK')} of {world} done → {cache}", file=sys.stderr)
        else:
            print(
                f"{split}: {len(cache.images)} images, {len(cache.captions)} captions → {cache.root}",
                file=sys.stderr,
            )
    return 0


def _eval(args) -> int:
    from imagexplore.matching.evaluate import evaluate

    out = evaluate(
        args.checkpoint,
        data=args.data,
        root=args.root,
        split=args.split,
        protocol=args.protocol,
        progress=show_progress(args),
        fusion=args.fusion,
        temperature=args.temperature,
    )
    if args.json:
        print(json.dumps(out))
        return 0
    print(
        f"{out['dataset']} {out['split']} ({out['images']} images, {out['captions']} captions, protocol {out['protocol']})"
    )
    print(
        f"image→text  R@1 {out['i2t_r1']:.1f}  R@5 {out['i2t_r5']:.1f}  R@10 {out['i2t_r10']:.1f}  "
        f"medr {out['i2t_medr']:.0f}  meanr {out['i2t_meanr']:.1f}"
    )
    print(
        f"text→image  R@1 {out['t2i_r1']:.1f}  R@5 {out['t2i_r5']:.1f}  R@10 {out['t2i_r10']:.1f}  "
        f"medr {out['t2i_medr']:.0f}  meanr {out['t2i_meanr']:.1f}"
    )
    print(f"R@sum {out['rsum']:.1f}")
    if "fusion" in out:
        w = out.get("fusion_weights")
        print(f"fusion {out['fusion']}" + (f" (latent, dual, reconstructed weights {w})" if w else ""))
    for key in ("acc_fused", "acc_image", "acc_text"):
        if key in out:
            print(f"classification {key[4:]}: {out[key]:.1f} %")
    if out.get("published_target"):
        print(f"published target (thesis): {out['published_target']}")
    return 0


def _index(args) -> int:
    from imagexplore.matching.matcher import Matcher

    check_out_dir(args.out, "--out")
    matcher = Matcher.load(args.checkpoint)
    index = matcher.build_index(args.images, out=args.out, progress=show_progress(args))
    skipped = index.meta.get("skipped") or []
    line = f"indexed {len(index)} images into {args.out}"
    if skipped:
        line += f"; skipped {len(skipped)} unreadable file{'s' if len(skipped) > 1 else ''}: {Path(skipped[0]).name}"
    print(line, file=sys.stderr)
    return 0


def _search(args) -> int:
    from imagexplore.matching.index import MatchIndex
    from imagexplore.matching.matcher import Matcher

    def load(ck):
        return Matcher.load(ck, fusion=args.fusion, temperature=args.temperature)

    matcher = load(args.checkpoint) if args.checkpoint else None
    if matcher is None and args.index and args.fusion:  # the index's own checkpoint, with the asked fusion
        ck = MatchIndex.load(args.index).meta.get("checkpoint")
        matcher = load(ck) if ck and Path(ck).is_file() else None
    if args.image and args.captions:
        matcher = matcher or (MatchIndex.load(args.index).matcher if args.index else None)
        if matcher is None:
            raise UserError("--image with --captions needs --checkpoint (or an --index that remembers one)")
        try:
            captions = [
                c.strip() for c in Path(args.captions).read_text(encoding="utf-8").splitlines() if c.strip()
            ]
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"--captions {args.captions}: cannot read it as UTF-8 text ({exc})") from None
        if not captions:
            raise UserError(f"--captions {args.captions} holds no caption")
        results = {
            args.image: [
                {"caption": c, "score": s} for c, s in matcher.search_image(args.image, captions, args.top)
            ]
        }
    else:
        if args.index is None:
            raise UserError("--index is required for a text query (or --image without --captions)")
        index = MatchIndex.load(args.index, matcher=matcher)
        if args.image:
            hits = {args.image: index.search_image(args.image, args.top)}
        else:
            hits = dict(zip(args.text, index.search_text(args.text, args.top), strict=True))
        results = {q: [{"path": str(p), "score": s} for p, s in r] for q, r in hits.items()}
    if args.json:
        print(json.dumps(results))
        return 0
    for q, rows in results.items():
        print(q)
        for r in rows:
            print(f"  {r['score']:.3f}  {r.get('path') or r.get('caption')}")
    return 0
