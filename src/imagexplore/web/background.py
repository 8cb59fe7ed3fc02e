"""The explorer in a thread of this process: tests, `make screenshots`, the serve benchmark and notebooks.

    with serve_in_background(Settings(collection="photos")) as url:
        httpx.get(f"{url}/api/health")

It binds a free port of 127.0.0.1 (or the one given) *before* the thread starts, so the URL is known and
taken at once; leaving the block stops uvicorn the graceful way (requests in flight finish) and joins it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from imagexplore.web.app import Settings, create_app


@contextmanager
def serve_in_background(
    settings: Settings | None = None, host: str = "127.0.0.1", port: int = 0, app=None, warm: bool = True
) -> Iterator[str]:
    """Yield the base URL (``http://127.0.0.1:PORT``) of the app served by uvicorn in a daemon thread.
    ``warm``: build/load the collection's index before serving, as `imagexplore serve` does."""
    import uvicorn

    app = app if app is not None else create_app(settings)
    hub = app.state.hub
    if warm and hub.models["similar"].available:
        hub.index()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=10))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="imagexplore-serve"
    )
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the explorer did not start")
            time.sleep(0.02)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
