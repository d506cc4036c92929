"""How much time the harness itself costs: the whole RefCOCO+ question file with ``oracle``.

The oracle answers instantly, so everything measured is the harness's own work: importing the
question file, scheduling, rendering questions, building requests, writing and syncing the
prediction log, parsing, then scoring with 1000 bootstrap resamples.

    python benchmarks/harness_overhead.py [--questions ../shared/upstream_regiondial/refcocoplus.json]

Prints the figures; it asserts nothing (targets are in the issue tracker, not in tests).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from regiondial_bench import api
from regiondial_bench.schema import RunConfig
from regiondial_bench.sources.upstream import import_upstream

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "upstream_regiondial" / "refcocoplus.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, default=DEFAULT)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--mode", default="predicted", choices=["predicted", "gold", "upstream"])
    args = parser.parse_args()

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
