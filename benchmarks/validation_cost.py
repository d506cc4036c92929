"""What verifying a leaderboard entry costs, now that every record is re-derived (issue 21).

Runs ``noisy-oracle`` (predicted references, box masks) on a bench, turns the run into a submission
and times: the whole ``validate_submission``, its re-derivation of the records alone
(``run.rederive.check_log``: questions re-rendered, raw answers re-parsed, masks re-derived), and
the re-score; then how long a log of blank lines (64 KB of gzip that decompresses to 64 MiB, the
attack of issue 21) takes to be refused, against parsing a smaller one line by line as before.

    python benchmarks/validation_cost.py [--questions ../shared/upstream_regiondial/refcocoplus.json] [--scale 4]
    python benchmarks/validation_cost.py --quick      # the bundled sample bench (the test suite runs this)

``--scale N`` repeats the bench's dialogues N times (new ids). Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import tempfile
import time
from pathlib import Path

from regiondial_bench import api
from regiondial_bench.publish.submission import COMPRESSED_LOG, create_submission, validate_submission
from regiondial_bench.run.folder import load_run_spec
from regiondial_bench.run.rederive import RunRules, check_log
from regiondial_bench.schema import Bench, RunConfig, read_prediction_log

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "upstream_regiondial" / "refcocoplus.json"


def scaled(bench: Bench, factor: int) -> Bench:
    """The bench's dialogues ``factor`` times, each copy with its own ids (so never the official bench,
    whose rules refuse an oracle-like log: the cost measured is the checks', not a refusal's)."""
    dialogues = [d.model_copy(update={"dialogue_id": f"{d.dialogue_id}~{k}"}) for k in range(factor) for d in bench]
    return Bench(dialogues, name=bench.name, root=bench.root, image_files={
        f"{d}~{k}": path for d, path in bench.image_files.items() for k in range(factor)})


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, default=DEFAULT)
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="the bundled sample bench, 1 MiB of blank lines")
    args = parser.parse_args(argv)

    bench = api.load_bench("sample" if args.quick else str(args.questions))
    bench = scaled(bench, args.scale)
    masks = "box" if all(d.image.size for d in bench) else None  # box masks need image sizes
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = tmp / "run"
        api.evaluate(bench, RunConfig(adapter="noisy-oracle", mask_producer=masks), run, progress=False,
                     n_bootstrap=1000)
        report, created = timed(create_submission, run, "bench", root=tmp / "subs", date=dt.date(2026, 1, 1),
                                resolve_bench=lambda name: bench)
        assert report.status == "verified", report.summary()
        again, validated = timed(validate_submission, report.folder, lambda name: bench)
        records = read_prediction_log(report.folder / COMPRESSED_LOG)
        check, rederived = timed(check_log, bench, records, RunRules.of(load_run_spec(run)))
        _, rescored = timed(api.score, run, bench=bench, write=False)
        turns = bench.num_turns
        print(f"{turns} turns, {len(bench)} dialogues (x{args.scale}), masks: {masks or 'none'}, bootstrap 1000")
        print(f"validate_submission: {validated:.2f} s ({validated / turns * 1e3:.3f} ms/turn); "
              f"create_submission (writes, then validates): {created:.2f} s")
        print(f"  re-derivation of the records (check_log): {rederived:.2f} s ({rederived / turns * 1e3:.3f} ms/turn)")
        print(f"  re-score (api.score, not written): {rescored:.2f} s")
        assert again.status == "verified" and not check.questions and not check.answers

        mib = 1 if args.quick else 64
        with gzip.open(report.folder / COMPRESSED_LOG, "wb", compresslevel=9) as f:
            for _ in range(mib):
                f.write(b"\n" * (1 << 20))
        size = (report.folder / COMPRESSED_LOG).stat().st_size
        refused, seconds = timed(validate_submission, report.folder, lambda name: bench)
        print(f"{mib} MiB of blank lines ({size / 1024:.0f} KiB of gzip): refused in {seconds:.2f} s "
              f"({refused.problems[-1][:70]}...)")
        sample = tmp / "blank.jsonl.gz"
        with gzip.open(sample, "wb", compresslevel=9) as f:
            f.write(b"\n" * ((1 << 20) if args.quick else (8 << 20)))
        _, parsed = timed(read_prediction_log, sample)
        print(f"  parsing {1 if args.quick else 8} MiB of blank lines line by line (what was done before): {parsed:.2f} s")


if __name__ == "__main__":
    main()
