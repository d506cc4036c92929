"""What the coordinate-frame check costs next to scoring, on RefCOCOg-sized runs.

Builds, in memory, a bench with RefCOCOg's dialogue-length histogram (1,580 dialogues, 4,115
turns; UPSTREAM.md 2.1) times ``--scale``, and a prediction log of 1 to 3 boxes per turn near the
gold box; then times (CPU, best of ``--repeat``) ``frames.check_frames`` under a squash preset's
frames and ``metrics.score_records`` with the default 1,000 bootstrap resamples, boxes only.

    python benchmarks/frame_check.py [--scale 1 10] [--repeat 3]
    python benchmarks/frame_check.py --tiny          # the test's quick path

Prints the figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import time

from regiondial_bench.adapters.options import run_frames
from regiondial_bench.frames import check_frames
from regiondial_bench.metrics import score_records
from regiondial_bench.schema import Bench, Dialogue, ImageRef, PredictionRecord, Provenance, Region, Turn

REFCOCOG_LENGTHS = {2: 1012, 3: 299, 4: 188, 5: 53, 6: 21, 7: 6, 9: 1}
"""Turns per dialogue -> dialogues (RefCOCOg multi-turn file: 1,580 dialogues, 4,115 turns)."""


def build(scale: int, seed: int = 0) -> tuple[Bench, list[PredictionRecord]]:
    rng = random.Random(seed)
    dialogues, records = [], []
    lengths = [n for n, count in REFCOCOG_LENGTHS.items() for _ in range(count * scale)]
    for d, length in enumerate(lengths):
        width, height = rng.choice([(640, 480), (480, 640), (640, 427), (500, 375)])
        turns = []
        for t in range(length):
            x1, y1 = rng.uniform(0, width * 0.6), rng.uniform(0, height * 0.6)
            gold = (x1, y1, x1 + rng.uniform(20, width * 0.4), y1 + rng.uniform(20, height * 0.4))
            turns.append(Turn(index=t, question="Find it.", gold_boxes=[gold]))
            jitter = [(v + rng.uniform(-8, 8)) for v in gold]
            regions = [Region(box=(min(jitter[0], jitter[2] - 1), min(jitter[1], jitter[3] - 1), jitter[2], jitter[3]))
                       for _ in range(rng.randint(1, 3))]
            records.append(PredictionRecord(dialogue_id=f"d{d}", turn=t, round=t + 1, question="Find it.",
                                            raw_text="", regions=regions))
        dialogues.append(Dialogue(dialogue_id=f"d{d}", image=ImageRef(width=width, height=height), turns=turns))
    return Bench(dialogues, name="refcocog-shaped"), records


def best_cpu(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--tiny", action="store_true", help="a quick check of the code path (tests)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.scale, args.repeat, args.bootstrap = [1], 1, 10
    declared, frames = run_frames("hf", {"preset": "regionreasoner-7b"})
    provenance = Provenance(bench_name="refcocog-shaped", bench_hash="-", adapter="hf", reference_mode="predicted",
                            package_version="-")
    print(f"{'turns':>7} {'boxes':>7} {'frame check ms':>15} {'us/turn':>8} {'score_records ms':>17} {'ratio':>6}")
    for scale in args.scale:
        bench, records = build(scale)
        if args.tiny:
            bench = Bench(bench.dialogues[:40], name=bench.name)
            keep = {d.dialogue_id for d in bench}
            records = [r for r in records if r.dialogue_id in keep]
        check = check_frames(bench, records, declared, frames)
        frame_s = best_cpu(lambda b=bench, r=records: check_frames(b, r, declared, frames), args.repeat)
        score_s = best_cpu(lambda b=bench, r=records: score_records(b, r, provenance=provenance, masks=False,
                                                                   n_bootstrap=args.bootstrap), args.repeat)
        print(f"{check.turns:>7} {check.boxes:>7} {frame_s * 1e3:>15.1f} {frame_s / check.turns * 1e6:>8.1f} "
              f"{score_s * 1e3:>17.1f} {frame_s / score_s:>6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
