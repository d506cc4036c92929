"""How many extra questions multi-round rollouts ask per GRPO step, on real dialogue structure.

Draws training batches as the 4xH100 recipe does (16 prompts per step, each repeated for its 8
generations, consecutively) from the turns of a bench, and plans each batch's reference answers
with :class:`regiondial_bench.training.rollouts.ReferenceResolver` at several depths. A stand-in
policy answers every question with a box (a different one per question), so every chain is
followed to its full depth: the counts are upper bounds of what a real policy asks. No model runs;
the figures are question counts, and each auxiliary answer costs about what one sampled
completion costs.

The previous trainer answered every row of the batch in one greedy pass (128 answers a step,
whether or not the row had a reference); the planner asks each distinct referenced turn once.

    python benchmarks/multi_round_aux.py --bench ../shared/upstream_regiondial/refcocoplus.json \\
        --bench ../shared/upstream_regiondial/refcocog.json --steps 2000
    python benchmarks/multi_round_aux.py --bench sample --steps 20    # the quick check a test runs

Prints one table row per (bench, depth) and, last, one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from regiondial_bench.bench.specs import load_bench  # noqa: E402
from regiondial_bench.training.data import reference_rows  # noqa: E402
from regiondial_bench.training.rollouts import ReferenceResolver  # noqa: E402


def stand_in_answer(question: str) -> str:
    """A box for every question, different per question (so no two questions collapse by accident)."""
    digest = hashlib.sha256(question.encode()).digest()
    x, y = digest[0] * 2, digest[1] * 2
    return f'<answer>[{{"bbox_2d": [{x}, {y}, {x + 40 + digest[2] % 100}, {y + 40 + digest[3] % 100}]}}]</answer>'


def plan_batch(batch: list[dict], depth: int | None) -> dict[str, float]:
    resolver = ReferenceResolver(batch, depth)
    start = time.perf_counter()
    waves = 0
    while queries := resolver.pending():
        resolver.record(queries, [stand_in_answer(q.problem) for q in queries])
        waves += 1
    rows = resolver.resolved_rows()
    return {
        "questions": resolver.answered,
        "waves": waves,
        "substituted_rows": sum(r["reference_source"] == "predicted" for r in rows),
        "plan_ms": (time.perf_counter() - start) * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", action="append", help="bench spec (repeatable; default: sample)")
    parser.add_argument("--steps", type=int, default=500, help="batches drawn per bench and depth")
    parser.add_argument("--prompts", type=int, default=16, help="prompts per step (the recipe: 16)")
    parser.add_argument("--generations", type=int, default=8, help="generations per prompt (the recipe: 8)")
    parser.add_argument("--depths", default="1,2,full", help="comma-separated depths (an integer or full)")
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args(argv)
    depths = [None if d == "full" else int(d) for d in options.depths.split(",")]
    rows_per_step = options.prompts * options.generations
    figures = []
    print(f"{'bench':<14} {'depth':>5} {'turns':>6} {'chained':>7} {'questions/step':>15} {'max':>4} "
          f"{'waves':>5} {'no pass':>7} {'vs old':>7} {'plan ms':>7}")
    for spec in options.bench or ["sample"]:
        bench = load_bench(spec)
        rows = reference_rows(bench)
        chained = sum(len(r["reference_chain"]) >= 2 for r in rows)
        for depth in depths:
            rng = random.Random(options.seed)
            steps = []
            for _ in range(options.steps):
                prompts = rng.sample(rows, min(options.prompts, len(rows)))
                steps.append(plan_batch([dict(p) for p in prompts for _ in range(options.generations)], depth))
            questions = [s["questions"] for s in steps]
            entry = {
                "bench": bench.name, "spec": spec, "depth": depth or "full", "turns": len(rows),
                "chained_turns": chained, "steps": options.steps, "rows_per_step": rows_per_step,
                "questions_mean": round(statistics.fmean(questions), 2), "questions_max": max(questions),
                "waves_mean": round(statistics.fmean(s["waves"] for s in steps), 2),
                "steps_without_pass": round(sum(q == 0 for q in questions) / len(steps), 4),
                "share_of_old_pass": round(statistics.fmean(questions) / rows_per_step, 4),
                "plan_ms_mean": round(statistics.fmean(s["plan_ms"] for s in steps), 3),
            }
            figures.append(entry)
            print(f"{bench.name[:14]:<14} {entry['depth']:>5} {len(rows):>6} {chained:>7} "
                  f"{entry['questions_mean']:>15} {entry['questions_max']:>4} {entry['waves_mean']:>5} "
                  f"{entry['steps_without_pass']:>7.1%} {entry['share_of_old_pass']:>7.1%} {entry['plan_ms_mean']:>7}")
    print(json.dumps({"figures": figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
