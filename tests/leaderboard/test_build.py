"""The leaderboard build: content, escaping, determinism and the stale check."""

from __future__ import annotations

import re
import shutil

import pytest
from click.testing import CliRunner

from regiondial_bench.cli import main
from regiondial_bench.publish.leaderboard import StaleLeaderboardError, build_leaderboard

from .conftest import XSS


@pytest.fixture(scope="module")
def built(submissions_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "leaderboard"
    reports, written = build_leaderboard(submissions_root, out)
    return out, {r.name: r for r in reports}, written


def test_statuses_and_files(built):
    out, reports, written = built
    assert {p.name for p in written} == {"index.html", "LEADERBOARD.md"}
    assert reports["2026-03-01_oracle"].status == "verified"
    assert reports["2026-02-04_paper-regionreasoner-7b"].status == "reported"
    assert reports["2026-03-02_markup"].status == "reported"


def test_markdown_lists_entries_in_avg_order(built):
    out, _, _ = built
    md = (out / "LEADERBOARD.md").read_text()
    assert "## refcocoplus: Detection (AP50)" in md and "## sample: Segmentation (gIoU)" in md
    section = md.split("## sample: Detection (AP50)")[1].split("##")[0]
    models = [
        line.split("|")[2].strip()
        for line in section.splitlines()
        if line.startswith("| ") and "---" not in line
    ][1:]
    assert models == ["Oracle", "&lt;script&gt;alert(1)&lt;/script&gt;", "Whole image"]
    assert (
        "| 1 | RegionReasoner-7B | reported | upstream | 7B | 89.3 | 83.2 | 81.6 | 69.6 | 61.9 | 69.1 | 64.7 | – | 80.7 |"
        in md
    )


def test_html_escapes_submitted_text(built):
    out, _, _ = built
    page = (out / "index.html").read_text()
    assert XSS not in page and "<i>1</i>" not in page and "&lt;i&gt;1&lt;/i&gt;" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert len(re.findall(r"<script>", page)) == 1  # only the page's own script
    assert "Content-Security-Policy" in page and "script-src 'sha256-" in page
    assert 'class="badge verified"' in page and 'class="badge reported"' in page
    assert 'href="https://huggingface.co/org/oracle/tree/v1"' in page
    assert '<svg class="plot" data-benchmark="sample" data-task="detection"' in page


def test_build_is_deterministic_and_check_detects_staleness(built, submissions_root):
    out, _, _ = built
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    build_leaderboard(submissions_root, out, check=True)  # up to date: no error
    build_leaderboard(submissions_root, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    (out / "LEADERBOARD.md").write_text(before["LEADERBOARD.md"].decode().replace("89.3", "99.3"))
    with pytest.raises(StaleLeaderboardError, match="LEADERBOARD.md"):
        build_leaderboard(submissions_root, out, check=True)
    result = CliRunner().invoke(
        main, ["leaderboard", "build", "--check", "--submissions", str(submissions_root), "--out", str(out)]
    )
    assert result.exit_code != 0 and "stale" in result.output
    (out / "LEADERBOARD.md").write_bytes(before["LEADERBOARD.md"])


def test_rejected_submission_fails_the_build(submissions_root, tmp_path):
    root = tmp_path / "submissions"
    shutil.copytree(submissions_root, root)
    results = root / "2026-03-01_oracle" / "results.json"
    results.write_text(results.read_text().replace('"ap50": 100.0', '"ap50": 99.0', 1))
    with pytest.raises(ValueError, match="2026-03-01_oracle: rejected"):
        build_leaderboard(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_committed_leaderboard_is_up_to_date(official_benches):
    """The repository's leaderboard/ must equal a fresh build of submissions/ (CI's stale check),
    the official RefCOCO+ entry re-scored on ../shared's question file as run_tests.sh points it."""
    from .conftest import PROJECT

    if not (PROJECT / "leaderboard").is_dir():
        pytest.skip("no committed leaderboard/ in this checkout")
    reports, _ = build_leaderboard(PROJECT / "submissions", PROJECT / "leaderboard", check=True)
    official = [r for r in reports if r.meta and r.meta.benchmark == "refcocoplus" and r.meta.status == "submitted"]
    assert official and all(r.status == "verified" for r in official)


@pytest.fixture(scope="module")
def with_gold_entry(submissions_root, tmp_path_factory):
    """The test submissions plus a gold-reference oracle entry on the sample bench."""
    import datetime as dt

    from regiondial_bench.api import evaluate, load_bench
    from regiondial_bench.publish.submission import create_submission
    from regiondial_bench.schema import RunConfig

    root = tmp_path_factory.mktemp("modes") / "submissions"
    shutil.copytree(submissions_root, root)
    run = root.parent / "runs" / "oracle-gold"
    evaluate(load_bench("sample"), RunConfig(adapter="oracle", reference_mode="gold", mask_producer="box"), run,
             bench_location="sample", progress=False, n_bootstrap=100)
    report = create_submission(run, "oracle-gold", root=root, model="Oracle (gold refs)", date=dt.date(2026, 3, 3))
    assert report.status == "verified", report.summary()
    out = root.parent / "leaderboard"
    build_leaderboard(root, out)
    return out


def test_reference_modes_are_ranked_apart(with_gold_entry):
    md = (with_gold_entry / "LEADERBOARD.md").read_text()
    sections = {block.split("\n", 1)[0]: block for block in md.split("\n## ")[1:]}
    gold = sections["sample: Detection (AP50), gold references"]
    predicted = sections["sample: Detection (AP50), predicted references"]
    assert "| 1 | Oracle (gold refs) | verified | gold |" in gold and "predicted" not in gold.split("|---")[-1]
    assert "Oracle (gold refs)" not in predicted and "| 1 | Oracle | verified | predicted |" in predicted
    assert "sample: Segmentation (gIoU), gold references" in sections
    assert "refcocoplus: Detection (AP50), upstream references" in sections
    page = (with_gold_entry / "index.html").read_text()
    assert '<select id="filter-mode">' in page and 'data-mode="gold"' in page
    assert '<svg class="plot" data-benchmark="sample" data-task="detection" data-mode="gold"' in page
