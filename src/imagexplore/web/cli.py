"""`imagexplore serve`: the explorer — a web page and a JSON API over every capability (docs/serve.md).

Nothing heavy at import: fastapi, uvicorn and torch load only when the command runs.
"""

from __future__ import annotations

import ipaddress
import secrets
import sys

from imagexplore.clitools import POSITIVE_INT, add_no_progress, float_range, int_range

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000


def add_commands(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="the explorer: a web page and JSON API (classify, edges, segment, similar images, text search, "
        "image synthesis) on localhost",
    )
    p.set_defaults(handler=run)
    p.add_argument(
        "--collection",
        default=None,
        metavar="DIR",
        help="folder of images to browse and search (recursive; default: scikit-image's photos plus Debian opencv-doc's when installed)",
    )
    p.add_argument(
        "--index",
        default=None,
        metavar="DIR",
        help="an existing DeepIndex (`imagexplore retrieve build`) instead of indexing the collection",
    )
    p.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="C",
        help="a classify, segment, edges, match or synth checkpoint (repeatable; its task decides its panel: a "
        "synth checkpoint on paired data → translate, on person data → swap)",
    )
    p.add_argument(
        "--persons",
        default=None,
        metavar="DIR",
        help="the swap panel's persons: a folder of NAME.png + NAME.pose.json + NAME.parsing.png (default: 8 "
        "shapes-world persons at the checkpoint's size, exported into the cache)",
    )
    p.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}; others need a token)"
    )
    p.add_argument(
        "--port", type=int_range(0, 65535), default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})"
    )
    p.add_argument(
        "--token",
        default=None,
        help="require this token on every /api call (Authorization: Bearer T, or ?token=T); with a "
        "non-loopback --host and no token, one is generated and printed",
    )
    p.add_argument(
        "--max-upload-mb",
        type=float_range(0, lo_open=True),
        default=20.0,
        metavar="N",
        help="largest upload in MB (default 20)",
    )
    p.add_argument(
        "--fusion",
        default=None,
        choices=["latent", "dual", "reconstructed", "average", "adaptive", "fitted"],
        help="the text panel's late fusion for a CycleMatch checkpoint (default adaptive)",
    )
    p.add_argument("--workers", type=POSITIVE_INT, default=2, help="inference threads (default 2)")
    p.add_argument(
        "--queue",
        type=int_range(0),
        default=8,
        metavar="N",
        help="requests that may wait for a worker; beyond, 503 with Retry-After (default 8)",
    )
    p.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="device (default: CUDA if present)"
    )
    p.add_argument(
        "--graceful-timeout",
        type=int_range(0),
        default=30,
        metavar="S",
        help="on SIGINT/SIGTERM, seconds the requests in flight may take to finish (default 30)",
    )
    add_no_progress(p)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def settings_from_args(args):
    """The `Settings` of the parsed command (the token generated and printed for a non-loopback host)."""
    from imagexplore.web.app import MB, Settings

    token = args.token
    if token is not None and not token.strip():
        from imagexplore.errors import UserError

        raise UserError("--token must not be empty")
    if token is None and not is_loopback(args.host):
        token = secrets.token_urlsafe(24)
        print(f"[serve] --host {args.host} is not loopback: API token generated: {token}", file=sys.stderr)
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return Settings(
        collection=args.collection,
        index=args.index,
        checkpoints=list(args.checkpoint),
        fusion=args.fusion,
        persons=args.persons,
        token=token,
        max_upload_bytes=int(args.max_upload_mb * MB),
        workers=args.workers,
        queue_size=args.queue,
        device=device,
        progress=args.progress is not False,
    )


def run(args) -> int:
    """Build the app (and the collection's index, once, with a progress line), then serve until SIGINT/SIGTERM
    (uvicorn's own handling: it stops accepting, finishes the requests in flight, then exits)."""
    import uvicorn

    from imagexplore.web.app import create_app

    settings = settings_from_args(args)
    app = create_app(settings)
    hub = app.state.hub
    if hub.models["similar"].available:
        hub.index()  # built or loaded now, not at the first request
    shown = f"[{args.host}]" if ":" in args.host else args.host
    suffix = f"/?token={settings.token}" if settings.token else "/"
    print(
        f"[serve] imagexplore explorer on http://{shown}:{args.port}{suffix}  (API docs: /docs)",
        file=sys.stderr,
    )
    uvicorn.run(
        app, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=args.graceful_timeout
    )
    return 0
