"""CPU time of the commands a newcomer types first: ``regiondial --help``, ``evaluate --help``, ...

Each command runs ``--repeats`` times in a fresh interpreter (``python -m regiondial_bench.cli``, as the
``regiondial`` entry point does); the figure is the median CPU time (user + system) of the child
process, which does not depend on how busy the machine is the way wall time does.

    python benchmarks/cli_startup.py                  # --help, evaluate --help, report --help, cache --help
    python benchmarks/cli_startup.py --repeats 3      # fewer repeats (a test runs this)

Prints the figures; it asserts nothing (the target, evaluate --help under 0.15 CPU-s, is issue 22's).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (["--help"], ["evaluate", "--help"], ["report", "--help"], ["cache", "--help"], ["bench", "--help"])


def cpu_of(argv: list[str], env: dict[str, str]) -> float:
    """CPU seconds (user + system) of one run of ``argv`` in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # in the checkout's folder: `python -m` puts the working directory first on sys.path
    subprocess.run(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    baseline = statistics.median(cpu_of([sys.executable, "-c", "pass"], env) for _ in range(args.repeats))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, median of {args.repeats} runs\n")
    print("| command | CPU | of which the interpreter |")
    print("|---|---:|---:|")
    for command in COMMANDS:
        cpu = statistics.median(cpu_of([sys.executable, "-m", "regiondial_bench.cli", *command], env)
                                for _ in range(args.repeats))
        print(f"| regiondial {' '.join(command)} | {cpu:.3f} s | {baseline:.3f} s |")


if __name__ == "__main__":
    main()
