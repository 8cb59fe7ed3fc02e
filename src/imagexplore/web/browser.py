"""Debian's Chromium driven by Playwright (nothing downloads a browser): the page test and `make screenshots`.

    python -m imagexplore.web.browser --out docs/img/explorer.png [--image PHOTO] [--collection DIR]

serves the explorer in this process (defaults as `imagexplore serve`), loads the page in headless Chromium,
uploads a photo (scikit-image's ``chelsea.png`` by default), waits for every panel and saves a full-page PNG.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

CHROMIUM = os.environ.get("IMAGEXPLORE_CHROMIUM", "/usr/bin/chromium")
# Headless as root in a sandboxed machine; and no background traffic: the network is closed here, and Chromium
# would otherwise keep trying to reach Google's hosts.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch_chromium(playwright):
    """A headless browser of Playwright's sync or async API, on the system Chromium."""
    if not Path(CHROMIUM).exists():
        from imagexplore.errors import UserError

        raise UserError(
            f"no Chromium at {CHROMIUM}: install Debian's chromium (make data), or set IMAGEXPLORE_CHROMIUM"
        )
    return playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)


def screenshot(url: str, image: Path, out: Path, width: int = 1280, timeout_ms: int = 300_000) -> Path:
    """Load the page at ``url``, upload ``image``, wait for every panel to finish, save a full-page PNG."""
    from playwright.sync_api import sync_playwright

    out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": width, "height": 900}, device_scale_factor=1)
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']", timeout=60_000)
        page.set_input_files("#file", str(image))
        page.wait_for_function(
            "[...document.querySelectorAll('.panel')].every(p => p.dataset.state === 'done' || "
            "p.dataset.state === 'error')",
            timeout=timeout_ms,
        )
        page.evaluate("Promise.all([...document.images].map(i => i.decode().catch(() => null)))")
        page.screenshot(path=str(out), full_page=True)
        browser.close()
    return out


def main(argv=None) -> int:
    from imagexplore.data.assets import skimage_photos
    from imagexplore.web.app import Settings
    from imagexplore.web.background import serve_in_background

    photos = {p.name: p for p in skimage_photos()}
    ap = argparse.ArgumentParser(
        prog="python -m imagexplore.web.browser", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--out", type=Path, default=Path("docs/img/explorer.png"))
    ap.add_argument("--image", type=Path, default=photos.get("chelsea.png"), help="the photo to upload")
    ap.add_argument("--collection", help="collection folder (default: as imagexplore serve)")
    ap.add_argument("--checkpoint", action="append", default=[], help="as `imagexplore serve --checkpoint`")
    args = ap.parse_args(argv)
    if args.image is None or not args.image.exists():
        ap.error("--image: no such photo")
    settings = Settings(collection=args.collection, checkpoints=args.checkpoint)
    with serve_in_background(settings) as url:
        out = screenshot(url + "/", args.image, args.out)
    print(f"[screenshots] wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
