"""The build/publish commands and the bundled sample bench."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from click.testing import CliRunner

from regiondial_bench.cli import main
from regiondial_bench.schema import Bench

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "regiondial_bench" / "data" / "sample"


def test_build_synthetic_then_publish_dry_run(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["build", "--source", "synthetic", "--synthetic-images", "25", "--out", str(tmp_path / "b"),
                                  "--target-images", "12", "--target-rounds", "30", "--train"])
    assert result.exit_code == 0, result.output
    assert "test: 12 dialogues, 30 turns" in result.output
    assert (tmp_path / "b" / "train" / "train_samples.json").is_file()
    result = runner.invoke(main, ["publish", str(tmp_path / "b"), "--repo", "me/x", "--dry-run", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert "refcocoplus_multiturn/test-00000-of-00001.parquet" in result.output
    assert (tmp_path / "d" / "refcocoplus_multiturn" / "train-00000-of-00001.parquet").is_file()


def test_build_errors_name_missing_files(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["build", "--source", "refer", "--refer-root", str(tmp_path), "--dataset", "refcocog", "--out", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert "refcocog/refs(umd).p" in result.output and "expected the refer layout" in result.output
    result = runner.invoke(main, ["build", "--source", "hf", "--hf-repo", "jxu124/refcocog", "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and "--image-dir" in result.output
    result = runner.invoke(main, ["build", "--source", "refer", "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and "needs --refer-root" in result.output
    result = runner.invoke(main, ["build", "--source", "synthetic", "--split", "test", "--out", str(tmp_path / "o")])
    assert result.exit_code != 0 and "OUT=SRC" in result.output


def test_sample_bench_meets_its_contract():
    bench = Bench.load(SAMPLE)  # verifies the content hash
    assert 35 <= len(bench) <= 45
    rounds = Counter(t.round for d in bench for t in d.turns)
    assert all(rounds[k] > 0 for k in range(1, 8))
    assert sum(1 for d in bench if len(d.turns) >= 8) >= 3
    assert all(t.gold_mask is not None for d in bench for t in d.turns)
    assert all(bench.image_path(d).is_file() for d in bench)
    refs = [(d, t) for d in bench for t in d.turns if t.references]
    assert any(d.turns[t.references[0].turn].references for d, t in refs)
    ours = [SAMPLE / "manifest.json", SAMPLE / "dialogues.jsonl", SAMPLE / "official_questions.json",
            *(SAMPLE / "images").iterdir()]
    assert sum(p.stat().st_size for p in ours) < 2 * 1024 * 1024


def test_sample_regenerates_bit_identically():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_sample.py"), "--check"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bit-identical" in result.stdout
