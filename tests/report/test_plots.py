"""Plots are written as non-empty PNG and SVG files, and their data is right."""

from __future__ import annotations

import pytest

from regiondial_bench.metrics import turn_scores
from regiondial_bench.plots import (
    conditional_accuracy,
    plot_all,
    plot_error_accumulation,
    reference_pairs,
)
from regiondial_bench.report import load_runs
from regiondial_bench.schema import read_prediction_log


def test_plot_all_writes_every_plot(sample_runs, tmp_path):
    runs = load_runs(list(sample_runs.values()))
    written, skipped = plot_all(runs, tmp_path)
    names = {p.name for p in written}
    for stem in (
        "ap50_by_round",
        "giou_by_round",
        "error_accumulation",
        "population",
        "conditional_test-fallible-predicted",
    ):
        assert f"{stem}.png" in names and f"{stem}.svg" in names
    for path in written:
        data = path.read_bytes()
        assert len(data) > 2000
        assert data.startswith(b"\x89PNG") if path.suffix == ".png" else b"<svg" in data
    assert skipped == []


def test_svg_output_is_deterministic(sample_runs, tmp_path):
    runs = load_runs([sample_runs["oracle-gold"]])
    a, _ = plot_all(runs, tmp_path / "a")
    b, _ = plot_all(runs, tmp_path / "b")
    for pa, pb in zip(a, b, strict=True):
        assert pa.read_bytes() == pb.read_bytes(), pa.name


def test_error_accumulation_pairs_and_needs_both_modes(sample_runs, tmp_path):
    runs = load_runs(list(sample_runs.values()))
    pairs = reference_pairs(runs)
    assert sorted(label for label, _, _ in pairs) == ["oracle", "test-fallible"]
    for _, predicted, gold in pairs:
        assert predicted.reference_mode == "predicted" and gold.reference_mode == "gold"
    with pytest.raises(ValueError, match="--reference-mode gold"):
        plot_error_accumulation(load_runs([sample_runs["oracle-gold"]]), tmp_path)


def test_conditional_accuracy_splits_on_the_referenced_turn(sample_runs, sample_bench):
    records = read_prediction_log(sample_runs["test-fallible-predicted"] / "predictions.jsonl")
    scores = turn_scores(sample_bench, records)
    table = conditional_accuracy(scores)
    # The test adapter never answers right after a wrong reference, and often does after a right one.
    hits_wrong, n_wrong = table["Avg"]["ref wrong"]
    hits_right, n_right = table["Avg"]["ref correct"]
    assert n_wrong > 0 and hits_wrong == 0
    assert n_right > 0 and hits_right / n_right > 0.7
    referring = sum(1 for s in scores if s.reference_turns and min(s.reference_turns) < s.turn)
    assert n_wrong + n_right == referring


def test_conditional_legend_colours_match_the_bars_when_a_group_is_empty(sample_runs, tmp_path):
    """The oracle is never wrong, so "referenced turn wrong" has no bars; its legend entry must
    still be drawn in that group's colour, not in matplotlib's default blue."""
    from regiondial_bench.plots import _COLORS, plot_conditional_accuracy, run_turn_scores

    (run,) = load_runs([sample_runs["oracle-gold"]])
    paths = plot_conditional_accuracy(run, run_turn_scores(run), tmp_path)
    svg = next(p for p in paths if p.suffix == ".svg").read_text().lower()
    assert "#1f77b4" not in svg
    assert _COLORS[1].lower() in svg and _COLORS[2].lower() in svg
