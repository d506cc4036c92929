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
    return observed, np.percentile(diffs, 2.5), np.percentile(diffs, 97.5), p


@pytest.mark.parametrize("other", ["predicted", "seed1"])
def test_matches_an_independent_paired_bootstrap(sample_runs, other):
    comparison = compare_runs(sample_runs["gold"], sample_runs[other], n_bootstrap=B, seed=0)
    fa, fb = _frame(sample_runs["gold"]), _frame(sample_runs[other])
    checked = 0
    for column in ("R2", "R5", "R8+", "Avg"):
        row = comparison.row("ap50", column)
        observed, low, high, p = _reference(fa, fb, column)
        assert row.diff == pytest.approx(observed, abs=1e-3)
        # Monte-Carlo error of a percentile: differences move in steps of one turn (100/n points),
        # and a percentile of 4000 resamples may land one step either way
        step = 100 / row.n
        assert row.low == pytest.approx(low, abs=step + 0.5), column
        assert row.high == pytest.approx(high, abs=step + 0.5), column
        assert row.p_value == pytest.approx(p, abs=0.03 + 0.1 * p), column
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
