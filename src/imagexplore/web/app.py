"""The ASGI app of `imagexplore serve`: `create_app(Settings(...))`.

- ``/`` the page (``web/static/index.html``), ``/static/...`` its files, ``/docs`` the OpenAPI UI.
- ``/api/...`` JSON routes, one module per panel (`imagexplore.web.routes`); with ``Settings.token`` set, every
  ``/api`` request must carry ``Authorization: Bearer TOKEN`` or ``?token=TOKEN`` (401 otherwise).
- Every error is ``{"error": "one line"}`` with its status; an unexpected exception is a 500 of one line and
  the server keeps serving. A full worker queue answers 503 with ``Retry-After``.
"""

from __future__ import annotations

import hmac
import importlib
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from imagexplore import __version__
from imagexplore.errors import UserError
from imagexplore.web.hub import RETRY_AFTER_S, Busy, Hub
from imagexplore.web.routes import ROUTE_MODULES
from imagexplore.web.uploads import RequestError

STATIC = Path(__file__).parent / "static"
MB = 1024 * 1024
MULTIPART_SLACK = 64 * 1024  # a multipart body's boundaries and headers around the file
log = logging.getLogger(__name__)


@dataclass
class Settings:
    """What `imagexplore serve` was started with (every field has the command's default)."""

    collection: str | Path | None = None  # a folder of images (recursive); default: the demo's photos
    index: str | Path | None = None  # an existing DeepIndex directory (`imagexplore retrieve build`)
    checkpoints: list[str] = field(
        default_factory=list
    )  # classify / segment / edges / match / synth checkpoints
    token: str | None = None  # required on every /api call when set
    max_upload_bytes: int = 20 * MB
    workers: int = 2  # inference threads
    queue_size: int = 8  # jobs that may wait for a worker; one more → 503
    device: str = "cpu"
    cache_dir: str | Path | None = None  # default: $IMAGEXPLORE_CACHE, else ~/.cache/imagexplore (+ /serve)
    max_side: int = 1024  # edges / segment run on the image shrunk to this longer side (0 = as uploaded)
    progress: bool = True  # progress bar while the index is built
    fusion: str | None = None  # a CycleMatch text checkpoint's late fusion (default: its own, adaptive)
    persons: str | Path | None = (
        None  # the swap panel's persons (our person form); default: shapes-world ones
    )
    gallery_size: int = 8  # shapes-world persons exported for the swap panel when `persons` is not given

    def __post_init__(self):
        for name in ("max_upload_bytes", "workers", "gallery_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.queue_size < 0 or self.max_side < 0:
            raise ValueError("queue_size and max_side must be ≥ 0")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    line = " ".join(str(message).split())[:500] or "error"
    return JSONResponse({"error": line}, status_code=status, headers=headers)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    hub = Hub(settings)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        hub.close()

    app = FastAPI(
        lifespan=lifespan,
        title="imagexplore",
        version=__version__,
        description="The explorer's JSON API: every route takes an image as a multipart upload (field `image`) "
        'or as `{"id": ...}` of a collection image; images come back as PNG data URLs '
        "(`data:image/png;base64,...`) or, for collection images, as `/api/image/{id}` URLs. See docs/serve.md.",
    )
    app.state.hub = hub
    app.state.settings = settings

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if request.url.path.startswith("/api"):
            if settings.token is not None and not _token_ok(request, settings.token):
                return _error(
                    401, "missing or wrong token: send 'Authorization: Bearer TOKEN' or ?token=TOKEN"
                )
            length = request.headers.get("content-length")
            limit = settings.max_upload_bytes + MULTIPART_SLACK
            if length is not None:
                try:
                    too_big = int(length) > limit
                except ValueError:
                    return _error(400, "bad Content-Length header")
                if too_big:
                    return _error(
                        413, f"request is {length} bytes; uploads are limited to {settings.max_upload_bytes}"
                    )
        return await call_next(request)

    @app.exception_handler(RequestError)
    async def on_request_error(_request, exc: RequestError):
        return _error(exc.status, exc.message, exc.headers)

    @app.exception_handler(Busy)
    async def on_busy(_request, _exc):
        return _error(
            503,
            "busy: every worker and queue slot is taken; retry shortly",
            {"Retry-After": str(RETRY_AFTER_S)},
        )

    @app.exception_handler(UserError)
    async def on_known(_request, exc: UserError):
        return _error(400, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_request, exc: StarletteHTTPException):
        return _error(exc.status_code, exc.detail if isinstance(exc.detail, str) else "error", exc.headers)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("query", "body", "path"))
        return _error(400, f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request")

    @app.exception_handler(Exception)
    async def on_crash(_request, exc: Exception):
        log.exception("request failed")
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")

    for name in ROUTE_MODULES:
        app.include_router(importlib.import_module(name).router)

    @app.get("/api/health", summary="panels available, models loaded, version")
    async def health() -> dict:
        """`{"ok": true, "version", "panels": {panel: bool}, "models": {panel: {"name", "available", "loaded"}}}`."""
        return hub.health()

    @app.get("/", include_in_schema=False)
    async def index_page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _token_ok(request: Request, token: str) -> bool:
    given = request.query_params.get("token")
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    return given is not None and hmac.compare_digest(given.encode(), token.encode())
