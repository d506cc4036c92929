"""Regenerate the bundled sample bench, bit-identically, with the project's own builder.

    python scripts/make_sample.py            # writes regiondial_bench/data/sample/
    python scripts/make_sample.py --check    # rebuilds into a temp folder and compares bytes

The sample is the synthetic source (refer layout) -> ``build_split`` -> ``write_split``: the same
code path as ``regiondial build --source synthetic``. Its settings live here, in SAMPLE_*.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from regiondial_bench.bench.build import BuildConfig, build_split, write_split
from regiondial_bench.bench.sources import SyntheticSpec, read_refer, write_synthetic_refer

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = ROOT / "regiondial_bench" / "data" / "sample"
SAMPLE_SPEC = SyntheticSpec(
    images_per_split={"testA": 44},
    objects_per_image={2: 7, 3: 7, 4: 6, 5: 5, 6: 4, 7: 4, 8: 3, 9: 2, 10: 2},
    image_size=(320, 240),
    seed=7,
    jpeg_quality=80,
)
SAMPLE_CONFIG = BuildConfig(name="sample", seed=7, target_images=40, reference_rate=0.8)


def make_sample(out: Path) -> None:
    """Write the sample bench into ``out`` (replaced)."""
    with tempfile.TemporaryDirectory() as tmp:
        source = write_synthetic_refer(Path(tmp) / "refer", SAMPLE_SPEC, dataset="refcoco+", split_by="unc")
        built = build_split(
            read_refer(source, "refcoco+", "unc", ["testA"]),
            SAMPLE_CONFIG,
            "test",
            source_info={"reader": "synthetic", "synthetic": {"seed": SAMPLE_SPEC.seed, "images": 44}},
        )
        if out.exists():
            shutil.rmtree(out)
        write_split(built, out, created_by="scripts/make_sample.py")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="rebuild into a temp folder and compare with the bundled one")
    args = parser.parse_args()
    if not args.check:
        make_sample(SAMPLE_DIR)
        print(f"wrote {SAMPLE_DIR}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "sample"
        make_sample(fresh)
        cmp = filecmp.dircmp(SAMPLE_DIR, fresh)
        stack, different = [cmp], []
        cmp.subdirs = {k: v for k, v in cmp.subdirs.items() if not k.startswith(".")}
        while stack:
            node = stack.pop()
            _, mismatch, errors = filecmp.cmpfiles(node.left, node.right, node.common_files, shallow=False)
            listed = mismatch + errors + node.left_only + node.right_only
            different += [str(Path(node.left) / f) for f in listed if not f.startswith(".")]  # others' caches
            stack += node.subdirs.values()
        if different:
            print("sample differs:", *different, sep="\n  ")
            return 1
        print("sample is bit-identical")
        return 0


if __name__ == "__main__":
    sys.exit(main())
