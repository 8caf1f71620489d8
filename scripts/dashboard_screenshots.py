"""Screenshots of the dashboard's pages for docs/dashboard/: `abtest serve` on a log, Debian's headless
Chromium through Playwright, each page drawn, then shrunk to a small palette PNG (Pillow).

    .venv/bin/python scripts/dashboard_screenshots.py --log data/demo/events.duckdb \
        --artifacts data/demo/artifacts --world data/world --track 12
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import urllib3
from PIL import Image
from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
WIDTH_PX = 800  # width of the saved images
COLOURS = 48  # palette size of the saved images (keeps each under about 150 KB)


def shrink(png: bytes, width: int) -> Image.Image:
    """The screenshot scaled to `width` pixels and reduced to a small palette."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)
    return image.quantize(colors=COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", type=Path, default=Path("data/demo/events.duckdb"))
    parser.add_argument("--experiment", default=None, help="experiment to show (default: the first listed)")
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard"))
    parser.add_argument("--artifacts", type=Path, default=None, help="also the recommender and track pages")
    parser.add_argument("--world", type=Path, default=None)
    parser.add_argument("--track", type=int, default=12, help="track of the track page")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    extra = [*(["--artifacts", str(args.artifacts)] if args.artifacts else []), *(["--world", str(args.world)] if args.world else [])]
    server = subprocess.Popen([sys.executable, "-m", "abtest", "serve", "--log", str(args.log), "--port", str(port), *extra],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        http = urllib3.PoolManager(retries=False, timeout=60.0)
        for _ in range(300):
            try:
                listing = http.request("GET", url + "/experiments.json")
                break
            except urllib3.exceptions.HTTPError:
                time.sleep(0.2)
        else:
            raise SystemExit("abtest serve did not answer")
        name = args.experiment or listing.json()["experiments"][0]["name"]
        shots = [
            ("experiments.png", "/experiments", 1280, "#experiments"),
            ("experiment.png", f"/experiments/{name}", 1280, "#latency .main-svg .trace"),
            ("experiment-phone.png", f"/experiments/{name}", 390, "#latency .main-svg .trace"),
        ]
        if args.artifacts:
            shots += [
                ("recommenders.png", "/recommenders", 1280, ".history .main-svg .trace"),
                ("track.png", f"/tracks/{args.track}", 1280, "#tags-chart .main-svg .trace" if args.world else ".neighbours"),
            ]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            for filename, path, width, ready in shots:
                page = browser.new_page(viewport={"width": width, "height": 800})
                page.goto(url + path)
                page.wait_for_selector(ready, timeout=180_000)
                page.wait_for_timeout(500)
                image = shrink(page.screenshot(full_page=True), min(width, WIDTH_PX) if width > 500 else width)
                image.save(args.out / filename, optimize=True)
                print(f"{args.out / filename}: {image.width}x{image.height}, {(args.out / filename).stat().st_size / 1024:.0f} KiB")
                page.close()
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


if __name__ == "__main__":
    main()
