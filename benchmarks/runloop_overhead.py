"""What the run loop's durability and memory handling cost: fsync schedule and GC freezing.

Runs the ``oracle`` (instant answers, so only the harness is measured) over the RefCOCO+
question file replicated ``--scale`` times, once per setting:

* ``fsync per batch``: the old schedule (one ``fsync`` after every batch);
* ``fsync batched``: the default (at most every 256 records or 1 s, and at the end);
* ``no gc freeze``: the default fsync schedule, the collector left to rescan the whole bench.

    python benchmarks/runloop_overhead.py --scale 1 --batch-size 1
    python benchmarks/runloop_overhead.py --scale 20 --batch-size 64

Prints wall and process-CPU milliseconds per turn of the run loop (import and scoring are not
included) and the number of fsync calls. With ``--evaluate``, it also times the whole
``api.evaluate`` (run + scoring with 1000 bootstrap resamples) with and without GC freezing.
It asserts nothing.

    python benchmarks/runloop_overhead.py --scale 50 --batch-size 64 --evaluate
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from regiondial_bench import api
from regiondial_bench.adapters import create_adapter
from regiondial_bench.bench.sources.upstream import import_upstream
from regiondial_bench.run import runner as runner_module
from regiondial_bench.run.runner import Runner
from regiondial_bench.schema import Bench, RunConfig, RunSpec

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "upstream_regiondial" / "refcocoplus.json"


def replicated(bench: Bench, scale: int) -> Bench:
    dialogues = [d.model_copy(update={"dialogue_id": f"{d.dialogue_id}-x{k}"}) for k in range(scale) for d in bench]
    return Bench(dialogues, name=f"{bench.name}-x{scale}", root=bench.root)


def measure(bench: Bench, batch_size: int, *, fsync_every: int, fsync_s: float, freeze_gc: bool) -> tuple[float, float, int]:
    spec = RunSpec(**RunConfig(adapter="oracle", batch_size=batch_size).model_dump(), bench_name=bench.name,
                   bench_hash=bench.content_hash, bench_location="")
    syncs = 0
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        nonlocal syncs
        syncs += 1
        real_fsync(fd)

    with tempfile.TemporaryDirectory(dir=Path.cwd()) as out:
        runner = Runner(bench, create_adapter("oracle"), spec, out, progress=False)
        runner.fsync_every, runner.fsync_s, runner.freeze_gc = fsync_every, fsync_s, freeze_gc
        os.fsync = counting_fsync
        try:
            wall, cpu = time.perf_counter(), time.process_time()
            runner.run()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            os.fsync = real_fsync
    return wall, cpu, syncs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, default=DEFAULT)
    parser.add_argument("--scale", type=int, default=1, help="replicate the question file this many times")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--evaluate", action="store_true", help="also time api.evaluate with/without GC freezing")
    args = parser.parse_args()

    bench = replicated(import_upstream(args.questions), args.scale)
    turns = bench.num_turns
    print(f"{args.questions.name} x{args.scale}: {len(bench)} dialogues, {turns} turns, batch size {args.batch_size}")
    settings = {
        "fsync per batch": {"fsync_every": 1, "fsync_s": 0.0, "freeze_gc": True},
        "fsync batched": {"fsync_every": Runner.fsync_every, "fsync_s": Runner.fsync_s, "freeze_gc": True},
        "no gc freeze": {"fsync_every": Runner.fsync_every, "fsync_s": Runner.fsync_s, "freeze_gc": False},
    }
    measure(replicated(import_upstream(args.questions), 1), 64, **settings["fsync batched"])  # warm-up
    for name, options in settings.items():
        wall, cpu, syncs = measure(bench, args.batch_size, **options)
        print(f"{name:16s} wall {1000 * wall / turns:7.3f} ms/turn  cpu {1000 * cpu / turns:7.3f} ms/turn  "
              f"({wall:6.2f} s, {syncs} fsyncs)")
    if not args.evaluate:
        return
    for freeze in (True, False):
        runner_module.FREEZE_GC = freeze
        with tempfile.TemporaryDirectory(dir=Path.cwd()) as out:
            wall, cpu = time.perf_counter(), time.process_time()
            results = api.evaluate(bench, RunConfig(adapter="oracle", batch_size=args.batch_size), out, progress=False)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        t = results.provenance.timings
        print(f"evaluate, gc freeze {'on ' if freeze else 'off'}  wall {wall:6.2f} s  cpu {cpu:6.2f} s  "
              f"(run {t['run_s']:.2f} s, scoring {t['score_s']:.2f} s)")
    runner_module.FREEZE_GC = True


if __name__ == "__main__":
    main()
