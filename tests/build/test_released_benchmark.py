"""The released-masks benchmark's tiny CPU path, so that the script cannot rot."""

from __future__ import annotations

import subprocess
import sys

from ..conftest import PROJECT_ROOT, UPSTREAM_DIR


def test_the_benchmark_prints_speed_memory_and_cache_rows(tmp_path):
    args = [sys.executable, str(PROJECT_ROOT / "benchmarks" / "released_masks.py"), "--sizes-mb", "0.5",
            "--encoding", "indent", "bool", "--tmp", str(tmp_path)]
    if (UPSTREAM_DIR / "refcocoplus.json").is_file():
        args += ["--cache-turns", "30"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| indent") or line.startswith("| bool")]
    assert len(rows) == 2 and all(len(row.split("|")) == 15 for row in rows), out.stdout
    if "--cache-turns" in args:
        assert "30 turns" in out.stdout and "loading the entry" in out.stdout
    assert not list(tmp_path.iterdir())  # the generated files are deleted
