"""``regiondial compare`` against a paired bootstrap written separately here (pandas + a loop)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from regiondial_bench.cli import main
from regiondial_bench.metrics import TurnScore
from regiondial_bench.results.compare import compare_runs, compare_scores
from regiondial_bench.results.plots import run_turn_scores
from regiondial_bench.results.report import load_run

B = 4000


def _frame(run_dir) -> pd.DataFrame:
    scores = run_turn_scores(load_run(run_dir))
    return pd.DataFrame({"dialogue": [s.dialogue_id for s in scores], "turn": [s.turn for s in scores],
                         "round": [s.round for s in scores], "hit": [float(s.hit) for s in scores]})


def _reference(frame_a: pd.DataFrame, frame_b: pd.DataFrame, column: str, seed: int = 12345):
    """Observed difference, percentile interval and null-shifted two-sided p, by resampling loop."""
    both = frame_a.merge(frame_b, on=["dialogue", "turn", "round"], suffixes=("_a", "_b"))
    if column != "Avg":
        r = int(column[1:].rstrip("+"))
        both = both[both["round"] >= 8] if column == "R8+" else both[both["round"] == r]
    per_dialogue = both.groupby("dialogue").agg(a=("hit_a", "sum"), b=("hit_b", "sum"), n=("hit_a", "size"))
    all_ids = frame_a["dialogue"].unique()
    per_dialogue = per_dialogue.reindex(all_ids, fill_value=0)
    observed = 100 * (per_dialogue.a.sum() - per_dialogue.b.sum()) / per_dialogue.n.sum()
    a, b, n = (per_dialogue[c].to_numpy(dtype=float) for c in ("a", "b", "n"))
    rng = np.random.RandomState(seed)  # another generator than the code under test
    diffs = []
    for _ in range(B):  # one resample at a time, by index, as the textbook describes it
        idx = rng.randint(0, len(n), len(n))
        if n[idx].sum() == 0:
            continue
        diffs.append(100 * (a[idx].sum() - b[idx].sum()) / n[idx].sum())
    diffs = np.array(diffs)
    p = (1 + np.sum(np.abs(diffs - observed) >= abs(observed) - 1e-9)) / (len(diffs) + 1)
    return observed, np.percentile(diffs, 2.5), np.percentile(diffs, 97.5), p, diffs.std(ddof=1)


@pytest.mark.parametrize("other", ["predicted", "seed1"])
def test_matches_an_independent_paired_bootstrap(sample_runs, other):
    comparison = compare_runs(sample_runs["gold"], sample_runs[other], n_bootstrap=B, seed=0)
    fa, fb = _frame(sample_runs["gold"]), _frame(sample_runs[other])
    checked = 0
    for column in ("R2", "R5", "R8+", "Avg"):
        row = comparison.row("ap50", column)
        observed, low, high, p, se = _reference(fa, fb, column)
        assert row.diff == pytest.approx(observed, abs=1e-3)
        # Monte-Carlo error of a percentile: differences move in steps of one turn (100/n points),
        # and a percentile of 4000 resamples may land one step either way
        step = 100 / row.n
        assert row.low == pytest.approx(low, abs=step + 0.5), column
        assert row.high == pytest.approx(high, abs=step + 0.5), column
        assert row.p_value == pytest.approx(p, abs=0.03 + 0.1 * p), column
        # MDE at alpha 0.05 and 80% power: (1.960 + 0.842) x the differences' standard deviation
        assert row.mde == pytest.approx(2.8016 * se, rel=0.06), column
        checked += 1
    assert checked == 4
    avg = comparison.row("ap50", "Avg")
    assert avg.a - avg.b == pytest.approx(avg.diff, abs=1e-3)


def test_identical_runs_differ_by_nothing(sample_runs):
    comparison = compare_runs(sample_runs["predicted"], sample_runs["predicted"], n_bootstrap=200)
    for row in comparison.rows:
        assert (row.diff, row.low, row.high, row.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_a_clear_difference_is_significant():
    # 60 one-turn dialogues; A hits every turn, B one in three
    a = [TurnScore(f"d{i}", 0, 1, 1.0, True, True, None, None, None, ()) for i in range(60)]
    b = [TurnScore(f"d{i}", 0, 1, 0.0, i % 3 == 0, i % 3 == 0, None, None, None, ()) for i in range(60)]
    row = compare_scores(a, b, n_bootstrap=2000).row("ap50", "R1")
    assert row.diff == pytest.approx(200 / 3, abs=1e-3)
    assert row.low > 50 and row.p_value < 0.001


def test_cli_formats_and_errors(sample_runs, tmp_path):
    runner = CliRunner()
    out = runner.invoke(main, ["compare", str(sample_runs["gold"]), str(sample_runs["predicted"]),
                               "--format", "json", "--bootstrap", "300"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert {r["column"] for r in data["rows"]} >= {"R1", "Avg"} and data["resamples"] == 300
    md = runner.invoke(main, ["compare", str(sample_runs["gold"]), str(sample_runs["predicted"]),
                              "--format", "markdown", "--bootstrap", "300"])
    assert "| A - B |" in md.output and "| p |" in md.output
    term = runner.invoke(main, ["compare", str(sample_runs["gold"]), str(sample_runs["predicted"]),
                                "--bootstrap", "300"])
    assert term.exit_code == 0 and "Avg" in term.output and "95% CI" in term.output
    # a run on another bench is refused with one line
    from regiondial_bench.api import evaluate
    from regiondial_bench.schema import RunConfig

    from ..core.helpers import make_bench

    bench = make_bench(tmp_path / "tiny")
    evaluate(bench, RunConfig(adapter="oracle"), tmp_path / "tiny-run", progress=False, n_bootstrap=0)
    bad = runner.invoke(main, ["compare", str(sample_runs["gold"]), str(tmp_path / "tiny-run")])
    assert bad.exit_code != 0 and "different benches" in bad.output and "Traceback" not in bad.output


def test_the_mde_shrinks_with_the_turns_and_is_reported(sample_runs):
    comparison = compare_runs(sample_runs["gold"], sample_runs["predicted"], n_bootstrap=1000)
    avg, late = comparison.row("ap50", "Avg"), comparison.row("ap50", "R8+")
    assert 0 < avg.mde < late.mde  # many turns detect smaller differences than few
    assert any("reference modes" in note for note in comparison.notes)  # gold vs predicted is said
    from regiondial_bench.results.compare import render_markdown

    assert f"| MDE | {comparison.row('ap50', 'R1').mde:.1f} |" in render_markdown(comparison)


# ---------------------------------------------------------------- streamed scores


def test_streamed_scores_equal_the_whole_log_scores(tmp_path):
    from regiondial_bench.api import evaluate, load_bench
    from regiondial_bench.metrics import IncompleteRunError, turn_scores
    from regiondial_bench.results.turns import stream_turn_scores
    from regiondial_bench.schema import RunConfig, read_prediction_log

    bench = load_bench("sample")
    run = tmp_path / "masks"
    evaluate(bench, RunConfig(adapter="noisy-oracle", mask_producer="box"), run, progress=False, n_bootstrap=0)
    log = run / "predictions.jsonl"
    expected = turn_scores(bench, read_prediction_log(log), require_complete=False)
    assert stream_turn_scores(bench, log) == expected and expected[0].mask_union is not None
    boxes_only = tmp_path / "boxes.jsonl"  # no record has a mask: masks are not scored, as turn_scores
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    boxes_only.write_text("".join(json.dumps({**r, "mask": None}) + "\n" for r in lines))
    streamed = stream_turn_scores(bench, boxes_only)
    assert streamed == turn_scores(bench, read_prediction_log(boxes_only)) and streamed[0].mask_union is None
    twice = tmp_path / "twice.jsonl"
    twice.write_text(log.read_text() + log.read_text().splitlines(keepends=True)[0])
    with pytest.raises(IncompleteRunError, match="answered twice"):
        stream_turn_scores(bench, twice)
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text(log.read_text() + json.dumps({**lines[0], "turn": -1}) + "\n")
    with pytest.raises(IncompleteRunError, match="turns the bench does not have"):
        stream_turn_scores(bench, unknown)


def test_scoring_a_log_holds_one_record_at_a_time(tmp_path):
    """A 40 MB log of long answers: reading it whole holds them all, streaming one at a time."""
    import tracemalloc

    from regiondial_bench.api import load_bench
    from regiondial_bench.results.turns import stream_turn_scores

    bench = load_bench("sample")
    records = []
    for d in bench:
        for t in d.turns:
            records.append({"dialogue_id": d.dialogue_id, "turn": t.index, "round": t.round, "question": "q",
                            "raw_text": "x" * 200_000, "regions": [{"box": list(t.gold_boxes[0])}]})
    log = tmp_path / "long.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert log.stat().st_size > 39_000_000
    tracemalloc.start()
    try:
        scores = stream_turn_scores(bench, log)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(scores) == bench.num_turns and all(s.hit for s in scores)
    assert peak < 8_000_000, peak


# ---------------------------------------------------------------- leaderboard entries as baselines


@pytest.fixture
def entries(sample_runs, tmp_path):
    """A submissions folder: a verified entry of the seed-1 run and a reported paper row."""
    import datetime as dt

    from regiondial_bench.publish.submission import create_submission

    root = tmp_path / "subs"
    report = create_submission(sample_runs["seed1"], "noisy-seed1", root=root, date=dt.date(2026, 3, 1),
                               model="Noisy seed 1")
    assert report.status == "verified", report.summary()
    paper = root / "2026-02-04_paper-row"
    paper.mkdir()
    (paper / "submission.yaml").write_text("model: RegionReasoner-7B\nbenchmark: refcocoplus\ndate: 2026-02-04\n"
                                           "status: reported\nreference_mode: upstream\npaper_row: RegionReasoner-7B\n")
    return root


def test_a_leaderboard_entry_is_a_baseline(sample_runs, entries):
    runner = CliRunner()
    out = runner.invoke(main, ["compare", str(sample_runs["predicted"]), "leaderboard:noisy-seed1", "--submissions",
                               str(entries), "--format", "json", "--bootstrap", "300"])
    assert out.exit_code == 0, out.output
    via_entry = json.loads(out.output)
    direct = compare_runs(sample_runs["predicted"], sample_runs["seed1"], n_bootstrap=300)
    assert via_entry["label_b"] == "Noisy seed 1"  # the entry's model name
    assert [r["diff"] for r in via_entry["rows"]] == [r.diff for r in direct.rows]
    assert [r["mde"] for r in via_entry["rows"]] == [r.mde for r in direct.rows]
    full = runner.invoke(main, ["compare", "leaderboard:2026-03-01_noisy-seed1", str(sample_runs["predicted"]),
                                "--submissions", str(entries), "--bootstrap", "100"])
    assert full.exit_code == 0 and "Noisy seed 1" in full.output


@pytest.mark.parametrize(("spec", "message"), [
    ("leaderboard:paper-row", "reported entry"),
    ("leaderboard:noisy-seed", "did you mean noisy-seed1"),
    ("leaderboard:../../etc", "no leaderboard entry"),
    ("runs/nowhere", "no such run folder"),
])
def test_entries_that_cannot_be_baselines_are_refused(sample_runs, entries, spec, message):
    out = CliRunner().invoke(main, ["compare", str(sample_runs["predicted"]), spec, "--submissions", str(entries)])
    assert out.exit_code == 1 and message in out.output and "Traceback" not in out.output


def test_a_gzip_bomb_entry_is_refused_before_it_is_read(sample_runs, entries, monkeypatch):
    import gzip

    import regiondial_bench.publish.submission as submission

    folder = next(entries.glob("*_noisy-seed1"))
    with gzip.open(folder / "predictions.jsonl.gz", "wb") as f:
        f.write(b"{" * 5_000_000)  # one line, far beyond the limit below
    monkeypatch.setattr(submission, "MAX_LOG_UNCOMPRESSED_BYTES", 1_000_000)
    for spec in ("leaderboard:noisy-seed1", str(folder)):
        out = CliRunner().invoke(main, ["compare", str(sample_runs["predicted"]), spec, "--submissions", str(entries)])
        assert out.exit_code == 1 and "decompresses to more than" in out.output, out.output
    import regiondial_bench.publish.leaderboard as leaderboard

    monkeypatch.setattr(leaderboard, "MAX_RESULTS_BYTES", 100)  # an oversized results.json is not parsed
    out = CliRunner().invoke(main, ["compare", str(sample_runs["predicted"]), str(folder)])
    assert out.exit_code == 1 and "results.json is" in out.output and "the limit is 100" in out.output
