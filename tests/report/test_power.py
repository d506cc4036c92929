"""Minimum detectable effects in ``report --mde``: from each run's own intervals, at its size."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest
from click.testing import CliRunner

from regiondial_bench.cli import main
from regiondial_bench.results.power import mde_factor, mde_table, two_run_mde
from regiondial_bench.results.report import load_runs


def test_the_mde_is_the_power_calculation_of_two_independent_runs():
    z = NormalDist()
    assert mde_factor() == pytest.approx(z.inv_cdf(0.975) + z.inv_cdf(0.8))
    assert mde_factor(0.01, 0.9) == pytest.approx(2.5758 + 1.2816, abs=1e-3)
    # a score of 50% on 400 independent turns: se 2.5 points, two runs' difference se 3.54
    se = 100 * math.sqrt(0.25 / 400)
    low, high = 50 - 1.96 * se, 50 + 1.96 * se
    assert two_run_mde(low, high) == pytest.approx(2.8016 * math.sqrt(2) * se, rel=1e-3)
    # the same check against the sample-size formula for two proportions (equal n, p = 0.5):
    # n = (z_a + z_b)^2 * 2 p (1 - p) / delta^2  solved for delta
    delta = mde_factor() * math.sqrt(2 * 0.25 / 400) * 100
    assert two_run_mde(low, high) == pytest.approx(delta, rel=1e-3)
    with pytest.raises(ValueError):
        mde_factor(alpha=0)


def test_mde_table_reads_each_runs_intervals(sample_runs):
    runs = load_runs([sample_runs["test-fallible-predicted"], sample_runs["oracle-gold"]])
    table = mde_table(runs, "ap50", ["R1", "R7", "Avg"])
    fallible = table.rows[0]
    for column, value in zip(table.columns, fallible.values, strict=True):
        ci = runs[0].results.row(column[1:]).ap50_ci if column != "Avg" else runs[0].results.overall.ap50_ci
        assert value == pytest.approx(two_run_mde(ci.low, ci.high), abs=1e-3)
    assert fallible.values[-1] < fallible.values[1]  # all turns detect less than round 7 alone
    assert table.rows[1].values == [0.0, 0.0, 0.0]  # the oracle never varies
    with pytest.raises(ValueError, match="ap50 and giou"):
        mde_table(runs, "n")


def test_report_mde_flag(sample_runs, tmp_path):
    from regiondial_bench.api import evaluate, load_bench
    from regiondial_bench.schema import RunConfig

    no_ci = tmp_path / "no-ci"
    evaluate(load_bench("sample"), RunConfig(adapter="oracle"), no_ci, bench_location="sample", progress=False,
             n_bootstrap=0)
    out = CliRunner().invoke(main, ["report", str(sample_runs["test-fallible-predicted"]), str(no_ci), "--mde",
                                    "--format", "markdown"])
    assert out.exit_code == 0, out.output
    assert "AP50 minimum detectable effect by round (points)" in out.output
    assert "gIoU minimum detectable effect" in out.output  # the fallible run has box masks
    assert "no bootstrap interval" in out.output  # the run scored with --bootstrap 0 shows '–'
    plain = CliRunner().invoke(main, ["report", str(sample_runs["test-fallible-predicted"]), "--format", "markdown"])
    assert "minimum detectable" not in plain.output
