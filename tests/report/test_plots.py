"""Plots are written as non-empty PNG and SVG files, and their data is right."""

from __future__ import annotations

import pytest

from regiondial_bench.metrics import turn_scores
from regiondial_bench.results.plots import (
    conditional_accuracy,
    plot_all,
    plot_error_accumulation,
    reference_pairs,
)
from regiondial_bench.results.report import load_runs
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


def test_rescoring_keeps_the_provenance_that_pairs_a_run_with_its_gold_twin(fresh_run, tmp_path):
    """Observed: `regiondial score RUN` rewrote results.json without the adapter's options and timings,
    and `plot` silently skipped the error-accumulation figure afterwards."""
    import json

    from regiondial_bench.api import score

    predicted, gold = fresh_run("test-fallible-predicted"), fresh_run("test-fallible-gold")
    before = json.loads((predicted / "results.json").read_text())["provenance"]
    score(predicted, n_bootstrap=50)
    after = json.loads((predicted / "results.json").read_text())["provenance"]
    assert after["adapter_config"] == before["adapter_config"] == {"accuracy": 0.85, "salt": "a"}
    assert after["timings"] == before["timings"] and after["mask_producer_config"] == before["mask_producer_config"]
    written, skipped = plot_all(load_runs([predicted, gold]), tmp_path / "plots")
    assert "error_accumulation.png" in {p.name for p in written}, skipped


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
    from regiondial_bench.results.plots import _COLORS, plot_conditional_accuracy, run_turn_scores

    (run,) = load_runs([sample_runs["oracle-gold"]])
    paths = plot_conditional_accuracy(run, run_turn_scores(run), tmp_path)
    svg = next(p for p in paths if p.suffix == ".svg").read_text().lower()
    assert "#1f77b4" not in svg
    assert _COLORS[1].lower() in svg and _COLORS[2].lower() in svg


# ---------------------------------------------------------------- layout at any count of runs


@pytest.fixture(scope="module")
def many_runs(tmp_path_factory, sample_bench):
    """Twelve noisy-oracle runs (different seeds and error rates) and one gold run."""
    from regiondial_bench.api import evaluate
    from regiondial_bench.schema import RunConfig

    root = tmp_path_factory.mktemp("many")
    paths = []
    for seed in range(12):
        out = root / f"seed-{seed}"
        evaluate(sample_bench, RunConfig(adapter="noisy-oracle", adapter_options={"seed": seed}), out,
                 bench_location="sample", progress=False, n_bootstrap=20)
        paths.append(out)
    return paths


def _captured(monkeypatch):
    """Figures as plot functions hand them to save_figure (before they are closed)."""
    import regiondial_bench.results.plots as plots

    figures = []
    original = plots.save_figure

    def keep(fig, out_dir, stem, formats=plots.DEFAULT_FORMATS):
        fig.canvas.draw()
        figures.append((stem, fig, fig.get_size_inches().tolist(), fig.canvas.get_renderer()))
        return original(fig, out_dir, stem, formats)

    monkeypatch.setattr(plots, "save_figure", keep)
    return figures


def test_many_runs_keep_the_width_and_get_distinct_styles(many_runs, tmp_path, monkeypatch):
    from PIL import Image

    from regiondial_bench.results.plots import FIGSIZE, plot_round_curves

    one = plot_round_curves(load_runs(many_runs[:1]), tmp_path / "one")
    figures = _captured(monkeypatch)
    twelve = plot_round_curves(load_runs(many_runs), tmp_path / "twelve")
    (_, fig, size, renderer), = figures
    assert size[0] == FIGSIZE[0]  # the documented width; only the height grows with legend rows
    width_one, width_twelve = Image.open(one[0]).size[0], Image.open(twelve[0]).size[0]
    assert width_twelve <= max(width_one, FIGSIZE[0] * 300) * 1.01
    styles = {(line.get_color(), line.get_marker()) for line in fig.axes[0].get_lines()}
    assert len(styles) == 12
    legend = fig.legends[0].get_window_extent(renderer)
    assert legend.x0 >= 0 and legend.x1 <= fig.bbox.width  # the legend lies inside the figure
    axes = fig.axes[0].get_window_extent(renderer)
    assert legend.y1 <= axes.y0  # and under the axes, covering no curve


def test_too_many_runs_are_refused_clearly(many_runs, tmp_path):
    from regiondial_bench.results.plots import MAX_RUNS_PER_FIGURE, plot_round_curves

    runs = load_runs(many_runs) * 2
    assert len(runs) > MAX_RUNS_PER_FIGURE
    with pytest.raises(ValueError, match=f"plot at most {MAX_RUNS_PER_FIGURE}"):
        plot_round_curves(runs, tmp_path)


def test_value_labels_do_not_overlap(tmp_path, monkeypatch, sample_bench):
    from regiondial_bench.api import evaluate
    from regiondial_bench.results.plots import plot_conditional_accuracy, plot_population, run_turn_scores
    from regiondial_bench.schema import RunConfig

    from ..core.helpers import make_bench

    bench = make_bench(tmp_path / "long", n_dialogues=30, turns=12, size=(128, 96), masks=False)  # boxes inside
    runs = []
    for name, b, loc in (("long", bench, str(tmp_path / "long")), ("sample", sample_bench, "sample")):
        evaluate(b, RunConfig(adapter="noisy-oracle"), tmp_path / name, bench_location=loc, progress=False,
                 n_bootstrap=0)
        runs.append(tmp_path / name)
    loaded = load_runs(runs)
    figures = _captured(monkeypatch)
    plot_population(_big_benches(), tmp_path / "plots")  # 2 x 12 bars with four-digit counts
    plot_conditional_accuracy(loaded[0], run_turn_scores(loaded[0]), tmp_path / "plots")
    plot_population([*loaded, *_big_benches()], tmp_path / "dense")  # 4 x 12 bars: too narrow to label
    for i, (stem, fig, _, renderer) in enumerate(figures):
        ax = fig.axes[0]
        labels = [t for t in ax.texts if t.get_text()]
        assert len(labels) >= 12 or i == 2, stem
        boxes = [t.get_window_extent(renderer) for t in labels]
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert not a.overlaps(b), (stem, a, b)


def _big_benches():
    """Results of two large 12-round benches (four-digit turn counts), for the population plot."""
    from regiondial_bench.results.report import RunResults
    from regiondial_bench.schema import Provenance, Results, RoundRow

    runs = []
    for k in range(2):
        rows = [RoundRow(round=str(r), n=4000 - 300 * r - k, ap50=50.0, ap50_top1=50.0, mean_iou=40.0)
                for r in range(1, 13)]
        prov = Provenance(bench_name=f"big{k}", bench_hash=f"sha256:{k}", adapter="x", reference_mode="gold",
                          package_version="0")
        runs.append(RunResults(f"big{k}", Results(provenance=prov, rounds=rows, overall=rows[0])))
    return runs


# ---------------------------------------------------------------- formats, intervals, failures


def test_formats_are_chosen_and_pdf_is_deterministic(sample_runs, tmp_path):
    from click.testing import CliRunner

    from regiondial_bench.cli import main

    runner = CliRunner()
    args = ["plot", str(sample_runs["oracle-gold"]), "--format", "pdf", "--format", "svg"]
    first = runner.invoke(main, [*args, "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    written = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert "ap50_by_round.pdf" in written and "failures_oracle-gold.svg" in written
    assert not any(name.endswith(".png") for name in written)
    runner.invoke(main, [*args, "--out", str(tmp_path / "b")])
    for name in written:
        data = (tmp_path / "a" / name).read_bytes()
        assert data == (tmp_path / "b" / name).read_bytes(), name
        assert data.startswith(b"%PDF") if name.endswith(".pdf") else b"<svg" in data
    bad = runner.invoke(main, [*args[:2], "--format", "jpg", "--out", str(tmp_path / "c")])
    assert bad.exit_code == 2 and "jpg" in bad.output


def test_the_gap_band_is_the_paired_interval_and_falls_back_to_the_runs_own(sample_runs, tmp_path):
    import shutil

    from regiondial_bench.results.compare import compare_runs
    from regiondial_bench.results.plots import PLOT_RESAMPLES, error_gaps

    predicted, gold = load_runs([sample_runs["test-fallible-predicted"], sample_runs["test-fallible-gold"]])
    columns = ["R1", "R2", "R5", "R8+"]
    gaps = error_gaps(predicted, gold, columns)
    paired = compare_runs(gold, predicted, n_bootstrap=PLOT_RESAMPLES, seed=0)
    for column in columns:
        row = paired.row("ap50", column)
        assert gaps[column] == (row.diff, row.low, row.high)
    assert gaps["R5"][1] < gaps["R5"][0] < gaps["R5"][2]
    # without the logs: the runs' own intervals combined as if independent (wider than paired)
    for name in ("test-fallible-predicted", "test-fallible-gold"):
        shutil.copytree(sample_runs[name], tmp_path / name, ignore=shutil.ignore_patterns("predictions.jsonl"))
    bare_predicted, bare_gold = load_runs([tmp_path / "test-fallible-predicted", tmp_path / "test-fallible-gold"])
    wide = error_gaps(bare_predicted, bare_gold, columns)
    for column in columns:
        ci_g, ci_p = gold.results.row(column[1:]).ap50_ci, predicted.results.row(column[1:]).ap50_ci
        half = ((ci_g.high - ci_g.low) ** 2 + (ci_p.high - ci_p.low) ** 2) ** 0.5 / 2
        assert wide[column][0] == pytest.approx(gaps[column][0], abs=1e-3)
        assert wide[column][2] - wide[column][1] == pytest.approx(2 * half)
    # the two runs err on the same turns, so pairing narrows the interval
    assert wide["R2"][2] - wide["R2"][1] > gaps["R2"][2] - gaps["R2"][1]


def test_conditional_intervals_resample_dialogues():
    """Turns of one dialogue succeed or fail together here, so an interval over dialogues is about
    three times as wide as one over turns; it must match a bootstrap loop written out here."""
    import numpy as np

    from regiondial_bench.metrics import TurnScore
    from regiondial_bench.results.plots import conditional_intervals

    scores = []
    for d in range(24):  # turn 0 always right; turns 1..10 refer to it and share the dialogue's fate
        scores.append(TurnScore(f"d{d}", 0, 1, 1.0, True, True, None, None, None, ()))
        scores += [TurnScore(f"d{d}", t, t + 1, 1.0, d % 2 == 0, d % 2 == 0, None, None, None, (0,))
                   for t in range(1, 11)]
    low, high = conditional_intervals(scores, n_bootstrap=4000)["Avg"]["ref correct"]
    rng = np.random.RandomState(7)  # another generator, one resample at a time
    draws = [100 * np.mean([d % 2 == 0 for d in rng.randint(0, 24, 24)]) for _ in range(4000)]
    ref_low, ref_high = np.percentile(draws, [2.5, 97.5])
    assert low == pytest.approx(ref_low, abs=2.5) and high == pytest.approx(ref_high, abs=2.5)
    assert high - low > 30  # turns resampled alone would give about 13 points


def test_failure_breakdown_counts_each_outcome(fresh_run, sample_bench, tmp_path):
    import json

    from regiondial_bench.results.plots import (
        OUTCOMES,
        failure_breakdown,
        plot_failure_breakdown,
        run_turn_scores,
    )

    run = fresh_run()
    log = run / "predictions.jsonl"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    for record in lines[:3]:  # three turns lost to the server
        record.update(regions=[], error="server error 503 after 3 tries", failure_kind="infra")
    lines[3].update(regions=[], error="no JSON found in the text")
    log.write_text("".join(json.dumps(r) + "\n" for r in lines))
    scores = turn_scores(sample_bench, read_prediction_log(log))
    table = failure_breakdown(scores)
    names = [name for name, _ in OUTCOMES]
    avg = table["Avg"]
    assert sum(avg.values()) == len(scores) and avg[names[3]] == 3
    assert avg[names[2]] == sum(1 for s in scores if s.error and s.failure_kind != "infra") >= 1
    assert avg[names[0]] == sum(1 for s in scores if s.hit and not s.error)
    assert sum(sum(table[c].values()) for c in table if c != "Avg") == len(scores)
    (loaded,) = load_runs([run])
    paths = plot_failure_breakdown(loaded, run_turn_scores(loaded), tmp_path)
    assert [p.suffix for p in paths] == [".png", ".svg"]
