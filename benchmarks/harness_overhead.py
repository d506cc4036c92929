"""How much time the harness itself costs: the RefCOCO+ question file with ``oracle``, at 1x..50x.

The oracle answers instantly, so everything measured is the harness's own work: importing the
question file, scheduling, rendering questions, building requests, writing and syncing the
prediction log, parsing, then scoring with 1000 bootstrap resamples.

    python benchmarks/harness_overhead.py [--questions ../shared/upstream_regiondial/refcocoplus.json]
    python benchmarks/harness_overhead.py --scale 1 10 50     # synthetic benches: N copies of the file

``--scale N`` replicates the file's dialogues N times under new ids (so 50x is 114,450 turns) and
prints CPU ms per turn for the run and for scoring (and the run's wall time, which includes
waiting on fsync), the oracle's own ``prepare`` (the adapter's
work, reported apart from the harness's), and the peak RSS. Each scale runs in its own process, so
the peak RSS is that scale's. Prints the figures; it asserts nothing (targets are in the issue
tracker, not in tests).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "upstream_regiondial" / "refcocoplus.json"


def replicated(bench, copies: int):
    """``copies`` copies of every dialogue, under new ids (``<id>~<k>``)."""
    from regiondial_bench.schema import Bench

    if copies == 1:
        return bench
    dialogues = [d.model_copy(update={"dialogue_id": f"{d.dialogue_id}~{k}"}) for k in range(copies) for d in bench]
    return Bench(dialogues, name=f"{bench.name}-x{copies}", source=bench.source)


def measure_scale(questions: Path, copies: int, batch_size: int, mode: str) -> dict:
    """One scale, in this process: CPU seconds of the run, the adapter's prepare, scoring; peak RSS."""
    from regiondial_bench.adapters import create_adapter
    from regiondial_bench.api import make_provenance
    from regiondial_bench.bench.sources.upstream import import_upstream
    from regiondial_bench.metrics import score_records
    from regiondial_bench.run.runner import Runner
    from regiondial_bench.schema import RunSpec

    cpu = time.process_time
    start = cpu()
    bench = replicated(import_upstream(questions), copies)
    loaded = cpu()
    adapter = create_adapter("oracle")
    prepare_s = 0.0
    real_prepare = adapter.prepare

    def timed_prepare(b):
        nonlocal prepare_s
        t = cpu()
        real_prepare(b)
        prepare_s += cpu() - t

    adapter.prepare = timed_prepare
    spec = RunSpec(adapter="oracle", reference_mode=mode, batch_size=batch_size, bench_name=bench.name,
                   bench_hash=bench.content_hash, bench_location="")
    with tempfile.TemporaryDirectory() as out:
        run_start, run_wall = cpu(), time.perf_counter()
        records = Runner(bench, adapter, spec, out, progress=False).run()
        run_s, run_wall = cpu() - run_start, time.perf_counter() - run_wall
        score_start = cpu()
        results = score_records(bench, records, provenance=make_provenance(spec), n_bootstrap=1000)
        score_s = cpu() - score_start
    return {
        "copies": copies, "turns": bench.num_turns, "dialogues": len(bench), "import_s": loaded - start,
        "run_s": run_s, "run_wall_s": run_wall, "prepare_s": prepare_s, "score_s": score_s, "ap50": results.overall.ap50,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, default=DEFAULT)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--mode", default="predicted", choices=["predicted", "gold", "upstream"])
    parser.add_argument("--scale", type=int, nargs="+", help="synthetic benches of N copies of the file")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one scale, print JSON
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure_scale(args.questions, args.one, args.batch_size, args.mode)))
        return
    if args.scale:
        rows = []
        for copies in args.scale:
            out = subprocess.run([sys.executable, __file__, "--questions", str(args.questions), "--one", str(copies),
                                  "--batch-size", str(args.batch_size), "--mode", args.mode],
                                 capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        base = rows[0]
        print(f"questions {args.questions.name}, oracle, --mode {args.mode}, batch {args.batch_size}, "
              "1000 bootstrap resamples; CPU time of the process")
        print("| scale | turns | run ms/turn (harness) | oracle prepare ms/turn | scoring ms/turn | "
              "run vs 1x | scoring vs 1x | peak RSS | run wall ms/turn |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            harness = 1000 * (r["run_s"] - r["prepare_s"]) / r["turns"]
            scoring = 1000 * r["score_s"] / r["turns"]
            base_h = 1000 * (base["run_s"] - base["prepare_s"]) / base["turns"]
            base_s = 1000 * base["score_s"] / base["turns"]
            print(f"| {r['copies']}x | {r['turns']} | {harness:.3f} | {1000 * r['prepare_s'] / r['turns']:.3f} | "
                  f"{scoring:.3f} | {harness / base_h:.2f} | {scoring / base_s:.2f} | {r['peak_rss_mib']:.0f} MiB | "
                  f"{1000 * r['run_wall_s'] / r['turns']:.3f} |")
        return

    from regiondial_bench import api
    from regiondial_bench.bench.sources.upstream import import_upstream
    from regiondial_bench.schema import RunConfig

    start = time.perf_counter()
    bench = import_upstream(args.questions)
    loaded = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        results = api.evaluate(bench, RunConfig(adapter="oracle", reference_mode=args.mode, batch_size=args.batch_size),
                               out, progress=False)
    end = time.perf_counter()
    t = results.provenance.timings
    turns = bench.num_turns
    total = end - start
    print(f"questions         {args.questions.name}: {len(bench)} dialogues, {turns} turns")
    print(f"import            {loaded - start:.3f} s")
    print(f"run (harness)     {t['run_s']:.3f} s  ({1000 * t['harness_s'] / turns:.3f} ms/turn, model {t['model_s']:.3f} s)")
    print(f"scoring           {t['score_s']:.3f} s  (1000 bootstrap resamples)")
    print(f"total             {total:.3f} s  ({1000 * total / turns:.3f} ms/turn)  AP50 {results.overall.ap50:.1f}")


if __name__ == "__main__":
    main()
