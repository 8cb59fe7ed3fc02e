"""`imagexplore serve` under load, on loopback only: N concurrent clients for T seconds over a mix of routes.

The server runs as its own process (`python -m imagexplore serve`, a small photo collection, its index in a tmp
cache); the clients are asyncio + httpx in this process. Three phases, each measured in this run:

1. baseline: one client, one request at a time (every route, `--baseline-rounds` times): the unloaded latency;
2. load: `--clients` clients for `--seconds`, each cycling through the route mix from its own offset;
3. the same load again, to see whether the server's memory keeps growing (it should be flat).

Prints requests/s, p50/p95 latency per route, errors (anything but 200; 503 "busy" counted apart), the server's
resident memory after each phase, and the ratios: loaded p50 / unloaded p50 per route, and throughput /
(1 / unloaded mean) — what concurrency bought on this machine's cores. Writes bench/results/serve.json.
Run: python bench/bench_serve.py [--clients 4] [--seconds 20] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

from imagexplore.retrieval.querysets import photo_sources

HERE = Path(__file__).parent
ROUTES = ("health", "collection", "classify", "edges", "similar", "similar_id")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mix:
    """The requests of each route (an upload of a real photo, or a collection id)."""

    def __init__(self, photo: bytes, ident: str):
        self.photo, self.ident = photo, ident

    async def send(self, client: httpx.AsyncClient, route: str) -> httpx.Response:
        if route == "health":
            return await client.get("/api/health")
        if route == "collection":
            return await client.get("/api/collection", params={"page": 1, "per_page": 24})
        if route == "similar_id":
            return await client.post("/api/similar", json={"id": self.ident, "k": 8})
        return await client.post(f"/api/{route}", files={"image": ("photo.png", self.photo, "image/png")})


async def timed(client, mix, route, out: dict):
    t0 = time.perf_counter()
    try:
        r = await mix.send(client, route)
        status = r.status_code
    except httpx.HTTPError:
        status = -1
    out.setdefault(route, []).append((time.perf_counter() - t0, status))


async def baseline(url, mix, rounds: int) -> dict:
    out: dict = {}
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        for _ in range(rounds):
            for route in ROUTES:
                await timed(client, mix, route, out)
    return out


async def load(url, mix, clients: int, seconds: float) -> tuple[dict, float]:
    out: dict = {}
    stop = time.perf_counter() + seconds

    async def one(offset: int):
        async with httpx.AsyncClient(base_url=url, timeout=300) as client:
            i = offset
            while time.perf_counter() < stop:
                await timed(client, mix, ROUTES[i % len(ROUTES)], out)
                i += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(one(k) for k in range(clients)))
    return out, time.perf_counter() - t0


def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


def summarise(samples: dict, wall: float | None = None) -> dict:
    rows = {}
    for route, xs in samples.items():
        ok = [t for t, s in xs if s == 200]
        rows[route] = {
            "requests": len(xs),
            "errors": sum(1 for _, s in xs if s not in (200, 503)),
            "busy_503": sum(1 for _, s in xs if s == 503),
            "p50_ms": round(1000 * statistics.median(ok), 1) if ok else None,
            "p95_ms": round(1000 * pct(ok, 0.95), 1) if ok else None,
            "mean_ms": round(1000 * statistics.fmean(ok), 1) if ok else None,
        }
        if wall:
            rows[route]["per_s"] = round(len(xs) / wall, 2)
    return rows


def start_server(collection: Path, cache: Path, port: int, workers: int, queue: int) -> subprocess.Popen:
    env = os.environ | {"IMAGEXPLORE_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "imagexplore", "serve", "--collection", str(collection), "--port", str(port)]
    cmd += ["--workers", str(workers), "--queue", str(queue), "--no-progress", "--device", "cpu"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("the server did not start within 10 minutes")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--baseline-rounds", type=int, default=3)
    ap.add_argument("--photos", type=int, default=24, help="collection size (the demo's photos)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--queue", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="2 clients, 5 s, 1 baseline round")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = ap.parse_args()
    if args.quick:
        args.clients, args.seconds, args.baseline_rounds = 2, 5.0, 1

    sources = photo_sources()[: args.photos]
    if not sources:
        raise SystemExit("no photos: install scikit-image")
    with tempfile.TemporaryDirectory() as tmp:
        collection = Path(tmp) / "photos"
        collection.mkdir()
        for p in sources:
            shutil.copy(p, collection / p.name)
        photo = Image.open(next(p for p in sources if p.name == "chelsea.png")).convert("RGB")
        buf = io.BytesIO()
        photo.save(buf, format="PNG")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        t0 = time.perf_counter()
        proc = start_server(collection, Path(tmp) / "cache", port, args.workers, args.queue)
        started_s = time.perf_counter() - t0
        try:
            ident = httpx.get(f"{url}/api/collection").json()["items"][0]["id"]
            mix = Mix(buf.getvalue(), ident)
            asyncio.run(baseline(url, mix, 1))  # warm-up: every model loads once
            rss = {"after_warmup": rss_bytes(proc.pid)}
            base = summarise(asyncio.run(baseline(url, mix, args.baseline_rounds)))
            first, wall1 = asyncio.run(load(url, mix, args.clients, args.seconds))
            rss["after_load_1"] = rss_bytes(proc.pid)
            second, wall2 = asyncio.run(load(url, mix, args.clients, args.seconds))
            rss["after_load_2"] = rss_bytes(proc.pid)
        finally:
            proc.terminate()
            try:
                exit_code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                exit_code = None

    loaded = summarise(second, wall2)
    total = sum(r["requests"] for r in loaded.values())
    unloaded_cycle_s = sum(base[r]["mean_ms"] for r in ROUTES) / 1000 / len(ROUTES)
    result = {
        "clients": args.clients,
        "seconds": args.seconds,
        "workers": args.workers,
        "queue": args.queue,
        "collection": len(sources),
        "server_start_s": round(started_s, 1),
        "requests_per_s": round(total / wall2, 2),
        "throughput_vs_sequential": round((total / wall2) * unloaded_cycle_s, 2),
        "errors": sum(r["errors"] for r in loaded.values())
        + sum(r["errors"] for r in summarise(first).values()),
        "busy_503": sum(r["busy_503"] for r in loaded.values()),
        "rss_mb": {k: round(v / 2**20, 1) for k, v in rss.items()},
        "rss_growth_second_load": round(rss["after_load_2"] / rss["after_load_1"] - 1, 4),
        "sigterm_exit_code": exit_code,
        "routes": {
            r: loaded[r]
            | {
                "unloaded_p50_ms": base[r]["p50_ms"],
                "p50_vs_unloaded": round(loaded[r]["p50_ms"] / base[r]["p50_ms"], 2)
                if loaded[r]["p50_ms"] and base[r]["p50_ms"]
                else None,
            }
            for r in ROUTES
            if r in loaded
        },
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "serve.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result))
        return 0 if result["errors"] == 0 else 1
    print(
        f"server: {len(sources)} photos, {args.workers} workers, queue {args.queue}; started in {started_s:.1f} s"
    )
    print(f"load: {args.clients} clients × {args.seconds:.0f} s (second run shown)")
    print(
        f"{'route':<12}{'req':>6}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'unloaded p50':>14}{'ratio':>7}{'err':>5}"
    )
    for r, row in result["routes"].items():
        print(
            f"{r:<12}{row['requests']:>6}{row['per_s']:>8}{row['p50_ms']!s:>9}{row['p95_ms']!s:>9}"
            f"{row['unloaded_p50_ms']!s:>14}{row['p50_vs_unloaded']!s:>7}{row['errors']:>5}"
        )
    print(
        f"total {result['requests_per_s']} req/s = {result['throughput_vs_sequential']}× one client's rate; "
        f"errors {result['errors']}, busy 503 {result['busy_503']}"
    )
    print(
        f"server RSS MB: {result['rss_mb']} (second load vs first: {100 * result['rss_growth_second_load']:+.2f} %)"
    )
    print(f"SIGTERM → exit code {exit_code}")
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
