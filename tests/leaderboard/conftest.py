"""A small submissions folder (paper rows, two verified runs, a markup name) for leaderboard tests."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from regiondial_bench.api import evaluate, load_bench
from regiondial_bench.publish.submission import create_submission
from regiondial_bench.schema import RunConfig

PROJECT = Path(__file__).resolve().parents[2]
XSS = "<script>alert(1)</script>"


@pytest.fixture(scope="session")
def submissions_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lb") / "submissions"
    root.mkdir()
    for paper in sorted((PROJECT / "submissions").glob("*_paper-*")):
        shutil.copytree(paper, root / paper.name)
    bench = load_bench("sample")
    runs = tmp_path_factory.mktemp("lb-runs")
    for adapter, name in (("oracle", "Oracle"), ("whole-image", "Whole image")):
        out = runs / adapter
        evaluate(
            bench,
            RunConfig(adapter=adapter, mask_producer="box"),
            out,
            bench_location="sample",
            progress=False,
            n_bootstrap=100,
        )
        create_submission(
            out,
            adapter,
            root=root,
            model=name,
            date=dt.date(2026, 3, 1),
            hub_id="org/" + adapter,
            revision="v1",
            size="0B",
        )
    xss = root / "2026-03-02_markup"
    xss.mkdir()
    (xss / "submission.yaml").write_text(
        f"model: '{XSS}'\nbenchmark: sample\ndate: 2026-03-02\nstatus: reported\n"
        "size: '<i>1</i>'\n"
        "reported_scores:\n  detection: [50, 60, 40, 30, 20, 10, 5, 45]\n"
    )
    return root


@pytest.fixture
def official_benches(monkeypatch):
    """Point the registry's official benches at ../shared's question files, as run_tests.sh does."""
    from tests.conftest import UPSTREAM_DIR

    if not (UPSTREAM_DIR / "refcocoplus.json").is_file():
        pytest.skip("the official question files (../shared/upstream_regiondial) are not present")
    monkeypatch.setenv("REGIONDIAL_BENCH_REFCOCOPLUS", str(UPSTREAM_DIR / "refcocoplus.json"))
    monkeypatch.setenv("REGIONDIAL_BENCH_REFCOCOG", str(UPSTREAM_DIR / "refcocog.json"))
    return UPSTREAM_DIR
