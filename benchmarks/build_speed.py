"""Time a build from a synthetic source the size of RefCOCO+ testA+testB.

    python benchmarks/build_speed.py [--images-per-split 750] [--keep DIR]

RefCOCO+ unc testA+testB hold 1,500 images and 3,773 referred objects (UPSTREAM.md 2.5); the
synthetic spec's default objects-per-image weights average about 2.5. Scene generation is timed
apart from the build (read refer layout -> dialogues with masks -> bench folder with images).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from regiondial_bench.bench.build import BuildConfig, build_benchmark
from regiondial_bench.bench.sources import SyntheticSpec, read_refer, write_synthetic_refer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images-per-split", type=int, default=750)
    parser.add_argument("--keep", type=Path, help="keep the source and bench here instead of a temp folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        spec = SyntheticSpec(images_per_split={"testA": args.images_per_split, "testB": args.images_per_split}, seed=0)
        t0 = time.perf_counter()
        write_synthetic_refer(root / "refer", spec, progress=True)
        t1 = time.perf_counter()
        objects = sum(len(r.objects) for r in read_refer(root / "refer", "refcoco+", "unc", ["testA", "testB"]))
        t2 = time.perf_counter()
        info = build_benchmark(
            lambda s: read_refer(root / "refer", "refcoco+", "unc", s),
            root / "bench",
            benchmark="refcocoplus_multiturn",
            splits={"test": ["testA", "testB"]},
            configs={"test": BuildConfig(name="refcocoplus_multiturn")},
            progress=True,
        )
        t3 = time.perf_counter()
        test = info["splits"]["test"]
        print(f"source: {2 * args.images_per_split} images, {objects} referred objects; generated in {t1 - t0:.1f} s")
        print(f"build: {test['dialogues']} dialogues, {test['turns']} turns; turns per round {test['turns_per_round']}")
        print(f"build time (read + dialogues + masks + write bench with images): {t3 - t2:.1f} s")


if __name__ == "__main__":
    main()
