"""`imagexplore serve` as a process: it starts, answers, and on SIGTERM / SIGINT lets the request in flight finish
before it exits (uvicorn's graceful shutdown; uvicorn then re-raises the signal, so SIGTERM ends the process
with -15; SIGINT ends it with 0 or, when the re-raised signal lands as a KeyboardInterrupt, the CLI's 130).

An empty collection keeps the start fast (no index to build); the request in flight is an edge map of a
640-pixel photo, whose first call also loads HED: over a second on this CPU, so the signal lands during it
(and well within `--graceful-timeout`'s 30 s).
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from PIL import Image

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from imagexplore.data.assets import skimage_photos  # noqa: E402

PHOTOS = {p.name: p for p in skimage_photos()}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif("astronaut.png" not in PHOTOS, reason="scikit-image photos missing")
@pytest.mark.parametrize("sig, codes", [(signal.SIGTERM, {-signal.SIGTERM}), (signal.SIGINT, {0, 130})])
def test_signal_lets_the_request_in_flight_finish(tmp_path, sig, codes):
    (tmp_path / "empty").mkdir()
    img = tmp_path / "big.png"
    Image.open(PHOTOS["astronaut.png"]).convert("RGB").resize((640, 640)).save(img)
    port = _port()
    env = os.environ | {"IMAGEXPLORE_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "imagexplore", "serve", "--collection", str(tmp_path / "empty")]
    proc = subprocess.Popen(
        cmd + ["--port", str(port), "--device", "cpu", "--no-progress"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                health = httpx.get(f"{url}/api/health", timeout=2).json()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        assert health["panels"]["similar"] is False and health["panels"]["edges"] is True

        answer = {}

        def request():
            r = httpx.post(f"{url}/api/edges", files={"image": img.read_bytes()}, timeout=120)
            answer["status"], answer["body"] = r.status_code, r.json()

        t = threading.Thread(target=request)
        t.start()
        time.sleep(0.8)  # the upload is in, HED is loading or running
        assert t.is_alive(), "the request finished before the signal: the test proves nothing"
        proc.send_signal(sig)
        t.join(timeout=120)
        assert answer.get("status") == 200, answer
        assert answer["body"]["width"] == 640
        assert proc.wait(timeout=60) in codes
        log = proc.stdout.read()
        assert "Waiting for background tasks" in log or "Finished server process" in log, log[-2000:]
        assert "Traceback" not in log, log[-3000:]
        with pytest.raises(httpx.HTTPError):  # and it no longer listens
            httpx.get(f"{url}/api/health", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
