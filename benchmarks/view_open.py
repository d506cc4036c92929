"""Big runs: the run viewer and ``compare`` on the RefCOCO+ question file, repeated N times.

    python benchmarks/view_open.py                  # 1x: 2,289 turns, 715 dialogues
    python benchmarks/view_open.py --scale 20       # 20x: 45,780 turns, 14,300 dialogues
    python benchmarks/view_open.py --images         # with a generated 640x480 JPEG per image

``--scale N`` writes the file's dialogues N times under new image ids (the same image files), then
makes two ``noisy-oracle`` runs on it (seeds 0 and 1) and measures, each command in its own
process so the peak memory is that command's alone:

* ``regiondial view A B --out DIR``: wall and CPU time, peak RSS, the size of ``index.html``, the
  number and largest size of the data files, the image copies;
* the page in headless Chromium: time until the first page is drawn, a filter ("misses"), "runs
  differ", and the next page;
* ``regiondial compare A B`` (10,000 paired resamples): wall and CPU time, peak RSS.

The runs are made in a child process too: Linux counts the memory a process had when it forked
into its child's peak RSS, so the measuring process itself stays small.

Prints the figures; it asserts nothing. ``--dialogues N`` keeps the first N dialogues of the file
(the test suite runs the script that way, on CPU, so it cannot rot).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "upstream_regiondial" / "refcocoplus.json"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
IMAGE_ID_STEP = 10_000_000  # copy k of an image id: id + k * step (the file's ids are below 1e6)


def replicate(questions: Path, copies: int, dialogues: int | None, out: Path) -> Path:
    """The question file's dialogues ``copies`` times (new image ids, the same ``image_path``)."""
    items = json.loads(questions.read_text(encoding="utf-8"))[:dialogues]
    replicated = [{**item, "image_id": item["image_id"] + k * IMAGE_ID_STEP} for k in range(copies) for item in items]
    path = out / questions.name
    path.write_text(json.dumps(replicated), encoding="utf-8")
    return path


def make_images(questions: Path, out: Path) -> Path:
    """One 640x480 JPEG per ``image_path`` of the file (upstream layout)."""
    from PIL import Image, ImageDraw

    for item in json.loads(questions.read_text(encoding="utf-8")):
        path = out / item.get("image_path", f"{questions.stem}_test_multi_bbox_images/{item['image_id']}.jpg")
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        img = Image.new("RGB", (640, 480), (item["image_id"] * 37 % 255, 120, 160))
        ImageDraw.Draw(img).rectangle((100, 100, 300, 300), fill=(200, 200, 60))
        img.save(path, quality=90)
    return out


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


def make_runs(questions: Path, images: Path | None, out: Path) -> dict[str, Any]:
    """Two noisy-oracle runs (seeds 0 and 1) on the file: ``{"turns", "dialogues", "runs"}``."""
    from regiondial_bench import api
    from regiondial_bench.schema import RunConfig

    bench = api.load_bench(str(questions), images=images)
    runs = []
    for seed in (0, 1):
        run = out / f"seed{seed}"
        api.evaluate(bench, RunConfig(adapter="noisy-oracle", adapter_options={"seed": seed}), run,
                     bench_location=str(questions), progress=False, n_bootstrap=0)
        runs.append(str(run))
    return {"turns": bench.num_turns, "dialogues": len(bench), "runs": runs}


def measured(command: list[str]) -> dict[str, float]:
    """Run a command; its wall and CPU seconds and its own peak RSS (``wait4`` of that child)."""
    env = _env()
    start = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    stderr = child.stderr.read().decode(errors="replace")
    child.stderr.close()
    if status != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr[-2000:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}


def open_in_browser(index: Path, chromium: str) -> dict[str, float]:
    """Seconds until the first page is drawn, a filter re-render, "runs differ", the next page."""
    from playwright.sync_api import sync_playwright

    def settled(page: Any, start: float) -> float:
        page.wait_for_selector("body[data-ready='1']", timeout=120_000)
        return time.perf_counter() - start

    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        start = time.perf_counter()
        page.goto(index.as_uri())
        out["open_s"] = settled(page, start)
        for name, action in (("filter_s", lambda: page.select_option("#f-turns", "miss")),
                             ("differ_s", lambda: page.check("#f-differ")),
                             ("next_page_s", lambda: page.click("#next"))):
            start = time.perf_counter()
            action()
            out[name] = settled(page, start)
        out["status"] = page.text_content("#status")
        browser.close()
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, default=DEFAULT)
    parser.add_argument("--scale", type=int, default=1, help="copies of the file's dialogues")
    parser.add_argument("--dialogues", type=int, default=None, help="keep only the first N dialogues of the file")
    parser.add_argument("--images", action="store_true", help="generate a 640x480 image per image_path")
    parser.add_argument("--bootstrap", type=int, default=10_000, help="compare's paired resamples")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--no-browser", action="store_true", help="skip opening the page")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--make-runs", type=Path, help=argparse.SUPPRESS)  # the child that makes the runs
    parser.add_argument("--image-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.make_runs:
        print(json.dumps(make_runs(args.questions, args.image_dir, args.make_runs)))
        return {}

    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        questions = replicate(args.questions, args.scale, args.dialogues, tmp)
        images = make_images(questions, tmp / "images") if args.images else None
        child = [sys.executable, __file__, "--questions", str(questions), "--make-runs", str(tmp)]
        made = subprocess.run([*child, *(["--image-dir", str(images)] if images else [])], env=_env(), check=True,
                              capture_output=True, text=True)
        made = json.loads(made.stdout.strip().splitlines()[-1])
        runs = made["runs"]
        figures.update(turns=made["turns"], dialogues=made["dialogues"], images=bool(images))
        cli = [sys.executable, "-m", "regiondial_bench.cli"]
        view = tmp / "view"
        command = [*cli, "view", *runs, "--out", str(view), "--no-progress"]
        if images:
            command += ["--images", str(images)]
        figures["view"] = measured(command)
        # (a viewer from before the paging wrote no data/ folder: all of it was in index.html)
        data = sorted((p.stat().st_size for p in (view / "data").iterdir()), reverse=True) if (
            view / "data").is_dir() else [0]
        copies = list((view / "images").glob("*.jpg"))
        figures["view"].update(index_mb=(view / "index.html").stat().st_size / 1e6, data_files=len(data) - (not data[0]),
                               largest_data_mb=data[0] / 1e6, data_mb=sum(data) / 1e6,
                               image_copies_mb=sum(p.stat().st_size for p in copies) / 1e6)
        figures["compare"] = measured([*cli, "compare", *runs, "--format", "json", "--bootstrap", str(args.bootstrap)])
        if not args.no_browser:  # last: playwright grows this process
            figures["browser"] = open_in_browser(view / "index.html", args.chromium)

    v, c = figures["view"], figures["compare"]
    print(f"{figures['turns']} turns, {figures['dialogues']} dialogues, two runs, "
          f"images: {'generated 640x480' if images else 'none'}")
    print(f"view:    {v['wall_s']:.2f} s wall, {v['cpu_s']:.2f} s CPU, peak RSS {v['peak_rss_mb']:.0f} MB; "
          f"index.html {v['index_mb']:.2f} MB; {v['data_files']} data files, {v['data_mb']:.2f} MB, the largest "
          f"{v['largest_data_mb']:.2f} MB; image copies {v['image_copies_mb']:.2f} MB")
    if "browser" in figures:
        b = figures["browser"]
        print(f"browser: first page drawn {b['open_s']:.2f} s; filter 'misses' {b['filter_s']:.2f} s; "
              f"'runs differ' {b['differ_s']:.2f} s; next page {b['next_page_s']:.2f} s ({b['status']})")
    print(f"compare: {c['wall_s']:.2f} s wall, {c['cpu_s']:.2f} s CPU, peak RSS {c['peak_rss_mb']:.0f} MB "
          f"({args.bootstrap} resamples)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return figures


if __name__ == "__main__":
    main()
