"""The runner's own CPU per turn on the streaming path, with an adapter that answers instantly.

Runs :class:`~regiondial_bench.run.runner.Runner` over the RefCOCO+ question file with an in-process
streaming adapter: a :class:`~regiondial_bench.adapters.presets.PresetAdapter` on the
``regionreasoner-7b`` preset (so reference boxes are written in its 840x840 frame and answers are
read with its parse rules) whose ``submit`` returns an already-completed
``concurrent.futures.Future`` holding a fixed, well-formed answer. Nothing waits on a model, so
the figure is what the runner itself spends per turn: building requests, scheduling, parsing,
building and logging records. It is the main-thread cost that bounds ``evaluate --model openai``
against a fast server.

    python benchmarks/stream_loop_cost.py [--questions ../shared/upstream_regiondial/refcocoplus.json]
    python benchmarks/stream_loop_cost.py --repeat 3 --concurrency 256
    python benchmarks/stream_loop_cost.py --profile          # cProfile top 15 of one run

The question file has no image sizes; the benchmark gives each image one that holds its gold
boxes (at least 640x480), as a run with ``--images`` reads from the files. Prints process-CPU and wall milliseconds per turn of the run loop (importing the question file
is not included) and the load average; it asserts nothing.
"""

from __future__ import annotations

import argparse
import cProfile
import math
import os
import pstats
import tempfile
import time
from concurrent.futures import Future
from pathlib import Path

from regiondial_bench.adapters.base import RoundRequest, RoundResponse
from regiondial_bench.adapters.presets import PresetAdapter, get_preset
from regiondial_bench.bench.sources.upstream import import_upstream
from regiondial_bench.run.runner import Runner
from regiondial_bench.schema import Bench, RunConfig, RunSpec

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "upstream_regiondial" / "refcocoplus.json"
ANSWER = '<think> fixed </think><answer>[{"bbox_2d": [2, 2, 20, 20], "point_2d": [11, 11]}]</answer>'
"""A plain answer in the regionreasoner-7b format (840x840 frame), as a fast server would send it."""


class InstantStreamingAdapter(PresetAdapter):
    """A streaming preset adapter whose futures are complete when ``submit`` returns them."""

    name = "instant-stream"
    needs_pixels = False
    needs_image_size = True
    streaming = True

    def __init__(self, concurrency: int, answer: str = ANSWER) -> None:
        self.preset = get_preset("regionreasoner-7b")
        self.max_concurrency = concurrency
        self.answer = answer

    def submit(self, request: RoundRequest) -> Future:
        size = request.image.require_size()
        future: Future = Future()
        future.set_result(self.response(self.answer, size))
        return future

    def generate(self, requests: list[RoundRequest]) -> list[RoundResponse]:
        return [self.submit(r).result() for r in requests]


def with_image_sizes(bench: Bench) -> Bench:
    """The bench with every image's size known (the question file has none; a real run reads them
    from the image files), so references are rendered in the preset's frame as in a real run."""
    dialogues = []
    for d in bench:
        x2 = max(b[2] for t in d.turns for b in t.gold_boxes)
        y2 = max(b[3] for t in d.turns for b in t.gold_boxes)
        size = {"width": max(640, math.ceil(x2)), "height": max(480, math.ceil(y2))}
        dialogues.append(d.model_copy(update={"image": d.image.model_copy(update=size)}))
    return Bench(dialogues, name=bench.name, root=bench.root, source=bench.source)


def run_once(bench: Bench, concurrency: int, profile: cProfile.Profile | None = None) -> tuple[float, float]:
    """Wall and process-CPU seconds of one ``Runner.run`` (a fresh run folder)."""
    spec = RunSpec(**RunConfig(adapter="instant-stream", adapter_options={"preset": "regionreasoner-7b"}).model_dump(),
                   bench_name=bench.name, bench_hash=bench.content_hash, bench_location="")
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as out:
        runner = Runner(bench, InstantStreamingAdapter(concurrency), spec, out, progress=False)
        wall, cpu = time.perf_counter(), time.process_time()
        if profile is not None:
            profile.enable()
        runner.run()
        if profile is not None:
            profile.disable()
        return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, default=DEFAULT)
    parser.add_argument("--concurrency", type=int, default=256, help="requests the runner keeps in flight")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (after one warm-up run)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile top 15 of one more run")
    args = parser.parse_args()

    bench = with_image_sizes(import_upstream(args.questions))
    turns = bench.num_turns
    print(f"{args.questions.name}: {len(bench)} dialogues, {turns} turns, {args.concurrency} in flight; "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    run_once(bench, args.concurrency)  # warm-up: imports, first-call caches
    for k in range(args.repeat):
        wall, cpu = run_once(bench, args.concurrency)
        print(f"run {k + 1}: cpu {1000 * cpu / turns:6.3f} ms/turn  wall {1000 * wall / turns:6.3f} ms/turn  "
              f"({cpu:5.2f} s cpu)")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.profile:
        profile = cProfile.Profile()
        run_once(bench, args.concurrency, profile)
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
