"""How long the run viewer takes to build and to open for the whole RefCOCO+ question file.

Runs ``noisy-oracle`` on the official RefCOCO+ file (2,289 turns, 715 dialogues), optionally
with generated 640x480 images (one per image id, in the upstream layout), writes the viewer,
opens it in headless Chromium and prints: build time, page size, time until the page has rendered
its first page, and the time a filter takes to re-render.

    python benchmarks/view_open.py [--images] [--questions ../shared/upstream_regiondial/refcocoplus.json]

Prints the figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from regiondial_bench import api
from regiondial_bench.results.view import build_view
from regiondial_bench.schema import RunConfig

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "upstream_regiondial" / "refcocoplus.json"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, default=DEFAULT)
    parser.add_argument("--images", action="store_true", help="generate one 640x480 image per image id")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = None
        if args.images:
            from PIL import Image, ImageDraw

            images = tmp / "images"
            folder = images / f"{args.questions.stem}_test_multi_bbox_images"
            folder.mkdir(parents=True)
            for item in json.loads(args.questions.read_text(encoding="utf-8")):
                img = Image.new("RGB", (640, 480), (item["image_id"] * 37 % 255, 120, 160))
                ImageDraw.Draw(img).rectangle((100, 100, 300, 300), fill=(200, 200, 60))
                img.save(folder / f"{item['image_id']}.jpg", quality=90)
        bench = api.load_bench(str(args.questions), images=images)
        run = tmp / "run"
        api.evaluate(bench, RunConfig(adapter="noisy-oracle"), run, progress=False, n_bootstrap=0)
        start = time.perf_counter()
        index = build_view([run], tmp / "view", bench=bench)
        built = time.perf_counter() - start
        size = index.stat().st_size
        copies = sum(p.stat().st_size for p in (tmp / "view" / "images").glob("*.jpg"))
        print(f"{bench.num_turns} turns, {len(bench)} dialogues, images: {'generated 640x480' if images else 'none'}")
        print(f"build_view: {built:.2f} s; index.html {size / 1e6:.2f} MB; image copies {copies / 1e6:.2f} MB")

        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            start = time.perf_counter()
            page.goto(index.as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=60_000)
            opened = time.perf_counter() - start
            start = time.perf_counter()
            page.select_option("#f-turns", "miss")
            page.text_content("#status")
            filtered = time.perf_counter() - start
            print(f"open until first page rendered: {opened:.2f} s; a filter re-render: {filtered:.2f} s "
                  f"({page.text_content('#status')})")
            browser.close()


if __name__ == "__main__":
    main()
