"""Compare a built split's turns per round with an official question file (read in place).

    python benchmarks/compare_official.py BUILT_SPLIT_DIR OFFICIAL_JSON
    python benchmarks/compare_official.py benches/refcocoplus/test ../shared/upstream_regiondial/refcocoplus.json

Prints dialogues, turns, referring turns, chained references and turns per round for both.
"""

from __future__ import annotations

import sys

from regiondial_bench.bench.sources.upstream import import_upstream
from regiondial_bench.schema import Bench, turns_per_round


def describe(bench: Bench) -> dict:
    refs = [(d, t) for d in bench for t in d.turns if t.references]
    chained = sum(1 for d, t in refs if t.references[0].turn < t.index and d.turns[t.references[0].turn].references)
    return {
        "dialogues": len(bench),
        "turns": bench.num_turns,
        "referring turns": len(refs),
        "chained": chained,
        "per round": turns_per_round(bench.dialogues),
    }


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    ours, theirs = describe(Bench.load(sys.argv[1])), describe(import_upstream(sys.argv[2]))
    for key in ours:
        print(f"{key:>16}: built {ours[key]}")
        print(f"{'':>16}  official {theirs[key]}")


if __name__ == "__main__":
    main()
