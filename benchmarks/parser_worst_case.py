"""Worst-case time of the answer parser on adversarial model output, at growing sizes.

Each family is an answer an undertrained or degenerate policy can write (whitespace runs,
unclosed or repeated tags, deep nesting, megabyte answers, bracket-heavy garbage). For sizes from
1 kB to 1 MB it times ``parse_answer`` (CPU time, best of ``--repeat`` runs), prints the time per answer,
and fits the growth exponent k of time ~ size^k over the sizes (k = 1: linear; below 1: the
capped reader stops early while the linear part is tiny).

    python benchmarks/parser_worst_case.py [--parser tolerant|upstream|both|all] [--repeat 5]

Prints the figures; it asserts nothing (the targets are in the issue tracker, not in tests).
"""

from __future__ import annotations

import argparse
import math
import time

from regiondial_bench.geometry import CoordinateFrame
from regiondial_bench.protocol import UPSTREAM_STYLES, parse_answer

ITEM = '{"bbox_2d": [10, 20, 300, 400], "point_2d": [50, 60]}'


def _repeat(unit: str, size: int) -> str:
    return unit * max(1, size // len(unit))


FAMILIES = {
    "whitespace run (unclosed <answer>)": lambda n: "<answer>" + " " * n,
    "newline run (unclosed <think>, valid answer)": lambda n: "<think>" + "\n" * n + f"<answer>[{ITEM}]</answer>",
    "repeated <answer> tags": lambda n: _repeat("<answer>", n),
    "repeated <think> tags + answer": lambda n: _repeat("<think>", n) + f"<answer>[{ITEM}]</answer>",
    "repeated fences": lambda n: _repeat("```json\n[1,", n),
    "deep nesting [[[[": lambda n: "<answer>" + "[" * n + "</answer>",
    "deep nesting {\"a\": {\"a\": ...": lambda n: "<answer>" + _repeat('{"a": ', n) + "</answer>",
    "valid JSON answer of n bytes": lambda n: "<answer>[" + ", ".join([ITEM] * max(1, n // (len(ITEM) + 2))) + "]</answer>",
    "Python-literal answer of n bytes": lambda n: "<answer>[" + ", ".join([ITEM.replace('"', "'")] * max(1, n // (len(ITEM) + 2))) + "]</answer>",
    "unterminated number list [1, 1, ...": lambda n: "<answer>[" + _repeat("1, ", n),
    "bracket garbage [{]}(": lambda n: "<answer>" + _repeat("[{]}(", n) + "</answer>",
    "unclosed quotes [' [' ...": lambda n: "<answer>" + _repeat("[' ", n) + "</answer>",
    "prose then a box": lambda n: _repeat("the object is near the x ", n) + "[10, 20, 300, 400]",
}
SIZES = (1_000, 10_000, 100_000, 1_000_000)


def time_one(text: str, parser: str, repeat: int) -> float:
    frame, size = CoordinateFrame(840, 840), (640, 480)
    style = "regionreasoner"
    if parser.startswith("upstream:"):
        parser, style = "upstream", parser.split(":", 1)[1]
    best = math.inf
    for _ in range(repeat):  # CPU time of this process: the parser is single-threaded pure CPU work
        start = time.process_time()
        parse_answer(text, frame=frame, image_size=size, parser=parser, upstream_style=style)
        best = min(best, time.process_time() - start)
    return best


def exponent(sizes: list[int], seconds: list[float]) -> float:
    """Least-squares slope of log(time) against log(size)."""
    xs = [math.log(s) for s in sizes]
    ys = [math.log(max(t, 1e-9)) for t in seconds]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    styles = [f"upstream:{s}" for s in UPSTREAM_STYLES if s != "regionreasoner"]
    parser.add_argument("--parser", choices=["tolerant", "upstream", "both", *styles, "all"], default="both",
                        help="both = tolerant + upstream (RegionReasoner); all adds the Seg-Zero and Qwen readers")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    parsers = {"both": ["tolerant", "upstream"], "all": ["tolerant", "upstream", *styles]}.get(args.parser, [args.parser])
    header = " | ".join(f"{s // 1000:>5} kB" for s in SIZES)
    worst = 0.0
    for name in parsers:
        print(f"\nparser={name}: CPU ms per answer (best of {args.repeat})")
        print(f"| family | {header} | exponent |")
        print("|---|" + "---|" * len(SIZES) + "---|")
        for family, make in FAMILIES.items():
            texts = [make(n) for n in SIZES]
            seconds = [time_one(t, name, args.repeat) for t in texts]
            worst = max(worst, max(seconds))
            cells = " | ".join(f"{1000 * s:8.3f}" for s in seconds)
            print(f"| {family} | {cells} | {exponent([len(t) for t in texts], seconds):.2f} |")
    print(f"\nslowest answer: {1000 * worst:.1f} ms")


if __name__ == "__main__":
    main()
