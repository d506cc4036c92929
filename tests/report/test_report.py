"""Per-round tables and the paper table, on real runs of the bundled sample."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from regiondial_bench.cli import main
from regiondial_bench.results.report import (
    escape_latex,
    escape_markdown,
    load_run,
    load_runs,
    paper_rows,
    paper_table,
    render_csv,
    render_latex,
    render_markdown,
    round_table,
)


def test_round_table_reads_results(sample_runs):
    runs = load_runs([sample_runs["oracle-predicted"], sample_runs["test-fallible-predicted"]])
    table = round_table(runs, "ap50")
    assert table.columns == ["R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8+", "Avg"]
    oracle, fallible = table.rows
    assert oracle.values == [100.0] * 9
    results = json.loads((sample_runs["test-fallible-predicted"] / "results.json").read_text())
    assert fallible.values[2] == results["rounds"][2]["ap50"]
    assert fallible.values[-1] == results["overall"]["ap50"]
    assert fallible.values[-2] == results["buckets"][0]["ap50"]
    assert fallible.label == "test-fallible (predicted)"


def test_renderers_agree_on_numbers(sample_runs):
    runs = load_runs([sample_runs["test-fallible-gold"]], labels=["fallible | gold"])
    table = round_table(runs, "giou")
    md = render_markdown(table)
    assert "fallible \\| gold" in md  # a pipe in a label cannot split the row
    row = next(line for line in md.splitlines() if line.startswith("| fallible"))
    assert row.count("|") - row.count("\\|") == 12  # label, bench, 9 columns
    rows = list(csv.reader(io.StringIO(render_csv(table))))
    assert rows[0][:5] == ["table", "kind", "model", "bench", "R1"]
    assert rows[1][3] == "sample aa8f8a4c"
    assert abs(float(rows[1][4]) - table.rows[0].values[0]) < 0.01
    tex = render_latex(table)
    assert "\\begin{tabular}{llrrrrrrrrr}" in tex and "fallible | gold" in tex


def test_paper_table_has_paper_and_new_rows_and_differences(sample_runs):
    run = load_run(sample_runs["test-fallible-predicted"])
    table = paper_table([run], "detection")
    kinds = [r.kind for r in table.rows]
    assert kinds == ["paper"] * 4 + ["run", "diff"]
    assert table.columns == ["R1", "R2", "R3", "R4", "R5", "R6", "R7", "Avg"]
    assert table.rows[3].values == [89.3, 83.2, 81.6, 69.6, 61.9, 69.1, 64.7, 80.7]
    diff = table.rows[-1].values
    assert diff[0] == round(run.cell("ap50", "R1") - 89.3, 1)
    seg = paper_table([run], "segmentation", compare_to="SegLLM-7B")
    assert [r.label for r in seg.rows if r.kind == "paper"][1] == "SegLLM-7B (paper)"
    assert seg.rows[-1].values[-1] == round(run.cell("giou", "Avg") - 60.7, 1)


def test_paper_rows_match_upstream_tables():
    assert paper_rows("detection")["Qwen2.5-VL-7B"] == [65.5, 49.0, 48.1, 36.5, 30.0, 38.2, 25.9, 49.9]
    assert paper_rows("segmentation")["SegLLM-7B"][-1] == 60.7
    assert "Qwen2.5-VL-7B" not in paper_rows("segmentation")


def test_cli_paper_table_prints_paper_and_run_rows(sample_runs):
    result = CliRunner().invoke(
        main, ["report", "--paper-table", "--format", "markdown", str(sample_runs["oracle-predicted"])]
    )
    assert result.exit_code == 0, result.output
    assert "| *RegionReasoner-7B (paper)* | RefCOCO+ multi-turn (paper) | 89.3 | 83.2" in result.output
    assert "| oracle (predicted) | sample aa8f8a4c | 100.0 | 100.0" in result.output
    assert "| Δ oracle (predicted) | sample aa8f8a4c | +10.7 | +16.8" in result.output
    assert "7-Round Segmentation" in result.output


def test_cli_report_terminal_and_errors(sample_runs, tmp_path):
    ok = CliRunner().invoke(main, ["report", str(sample_runs["oracle-gold"]), "--ci", "--all-rounds"])
    assert ok.exit_code == 0, ok.output
    assert "R10" in ok.output and "oracle (gold)" in ok.output
    missing = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert missing.exit_code != 0 and "has no results.json" in missing.output


def test_nan_in_results_is_a_clear_error(sample_runs, tmp_path):
    text = (sample_runs["oracle-gold"] / "results.json").read_text()
    (tmp_path / "results.json").write_text(text.replace('"ap50": 100.0', '"ap50": NaN', 1))
    try:
        load_run(tmp_path)
    except ValueError as exc:
        assert "NaN is not a valid number" in str(exc)
    else:
        raise AssertionError("NaN was accepted")


@pytest.mark.parametrize(("name", "content", "message"), [
    ("results.json", b"[" * 100_000, "results.json: nested too deeply to be a results file"),
    ("results.json", b"\xff\xfe{}", "results.json: not UTF-8 text (byte 0)"),
    ("run.json", b"[" * 100_000, "run.json is unreadable"),
    ("run.json", b"\xff\xfe{}", "run.json is unreadable"),
    ("run.json", b'{"a": 1}', "run.json is unreadable (adapter: Field required"),
])
def test_a_hostile_results_or_run_file_is_one_line_naming_it(sample_runs, tmp_path, name, content, message):
    """report, compare and plot read runs through load_run: a broken file is an error naming it,
    never a traceback."""
    run = tmp_path / "run"
    shutil.copytree(sample_runs["oracle-gold"], run)
    (run / name).write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_run(run)
    for command in (["report", str(run)], ["compare", str(sample_runs["oracle-gold"]), str(run)]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 1 and message in result.output, result.output
        assert not isinstance(result.exception, RecursionError | UnicodeDecodeError), result.exception


def test_a_results_file_larger_than_any_results_file_is_refused_unread(sample_runs, tmp_path, monkeypatch):
    from regiondial_bench.results import report as report_module

    run = tmp_path / "run"
    shutil.copytree(sample_runs["oracle-gold"], run)
    monkeypatch.setattr(report_module, "MAX_RESULTS_BYTES", 1000)
    with pytest.raises(ValueError, match="larger than any results file"):
        load_run(run)


def test_escaping():
    assert escape_markdown("<b>x</b>") == "&lt;b&gt;x&lt;/b&gt;"
    assert escape_latex("50% of $x_1$") == "50\\% of \\$x\\_1\\$"


def _header_line(text):
    return next(line for line in text.splitlines() if line.strip().startswith(("model", "metric")))


def test_terminal_table_keeps_the_avg_column_when_narrow(sample_runs):
    """Rich crops what does not fit: the label column must give way, never the Avg column."""
    from rich.console import Console

    from regiondial_bench.results.report import all_round_columns, render_terminal

    runs = load_runs([sample_runs["test-fallible-predicted"], sample_runs["test-fallible-gold"]])
    for width in (80, 100, 140):
        for with_ci in (False, True):
            for columns in (None, all_round_columns(runs)):
                console = Console(width=width, record=True, file=io.StringIO())
                render_terminal(round_table(runs, "ap50", columns), with_ci=with_ci, console=console)
                header = _header_line(console.export_text())
                assert header.rstrip().endswith("Avg"), (width, with_ci, columns, header)
    result = CliRunner().invoke(main, ["report", str(sample_runs["oracle-gold"]), "--ci", "--all-rounds"])
    assert _header_line(result.output).rstrip().endswith("Avg"), result.output


def test_compare_to_a_row_of_only_one_paper_table(sample_runs):
    """Qwen2.5-VL-7B is only in the detection table, SegLLM-7B only in segmentation: comparing
    with either must still print both tables (the other one against the default row)."""
    run = str(sample_runs["oracle-predicted"])
    for row in ("Qwen2.5-VL-7B", "SegLLM-7B"):
        result = CliRunner().invoke(
            main, ["report", "--paper-table", run, "--compare-to", row, "--format", "markdown"]
        )
        assert result.exit_code == 0, result.output
        assert "7-Round Detection" in result.output and "7-Round Segmentation" in result.output
        assert f"Δ rows: the run minus {row} (paper)" in result.output
        assert "Δ rows: the run minus RegionReasoner-7B (paper)" in result.output
    bad = CliRunner().invoke(main, ["report", "--paper-table", run, "--compare-to", "GPT-5"])
    assert bad.exit_code != 0 and "no paper row 'GPT-5'" in bad.output


def test_csv_of_several_tables_is_one_csv(sample_runs):
    """The CSV has a `table` column so that several tables share one header: no repeated header
    row and no blank line in the middle."""
    result = CliRunner().invoke(
        main, ["report", "--paper-table", str(sample_runs["oracle-predicted"]), "--format", "csv"]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))  # the not-the-official-bench warning is on stderr
    assert rows[0][:4] == ["table", "kind", "model", "bench"]
    assert all(row and row[0] != "table" for row in rows[1:]), rows
    assert {row[0].split(":")[1].split("(")[0].strip() for row in rows[1:]} == {
        "7-Round Detection",
        "7-Round Segmentation",
    }


# --------------------------------------------------------------------------------------------
# Like with like: benches in tables, CSV, legends, warnings
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def refcocoplus_run(tmp_path_factory):
    from regiondial_bench.api import evaluate, load_bench
    from regiondial_bench.schema import RunConfig
    from tests.conftest import UPSTREAM_DIR

    path = UPSTREAM_DIR / "refcocoplus.json"
    if not path.is_file():
        pytest.skip("the official question files (../shared/upstream_regiondial) are not present")
    out = tmp_path_factory.mktemp("rp") / "fixed-box"
    evaluate(load_bench(str(path)), RunConfig(adapter="fixed-box"), out, bench_location=str(path),
             progress=False, n_bootstrap=20)
    return out


def test_report_of_two_benches_shows_both_and_warns(sample_runs, refcocoplus_run):
    result = CliRunner().invoke(
        main, ["report", str(sample_runs["oracle-predicted"]), str(refcocoplus_run), "--format", "csv"]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0][3] == "bench"
    assert {row[3] for row in rows[1:]} == {"sample aa8f8a4c", "refcocoplus 36018ca1"}
    assert "different benches (refcocoplus 36018ca1, sample aa8f8a4c)" in result.stderr
    md = CliRunner().invoke(main, ["report", str(sample_runs["oracle-predicted"]), str(refcocoplus_run),
                                   "--format", "markdown"])
    assert "| oracle (predicted) | sample aa8f8a4c |" in md.stdout
    assert "not comparable" in md.stdout  # the warning is also a note under the table
    same = CliRunner().invoke(main, ["report", str(sample_runs["oracle-predicted"]),
                                     str(sample_runs["oracle-gold"]), "--format", "markdown"])
    assert "different benches" not in same.output


def test_paper_table_warns_unless_the_run_is_on_the_official_bench(sample_runs, refcocoplus_run):
    off = CliRunner().invoke(main, ["report", "--paper-table", str(sample_runs["oracle-predicted"]),
                                    "--format", "markdown"])
    assert "not the official RefCOCO+ bench" in off.stderr
    on = CliRunner().invoke(main, ["report", "--paper-table", str(refcocoplus_run), "--format", "markdown"])
    assert on.exit_code == 0, on.output
    assert "warning" not in on.stderr
    assert "| fixed-box (predicted) | refcocoplus 36018ca1 |" in on.stdout


def test_plot_legends_name_the_bench(sample_runs, refcocoplus_run, tmp_path, monkeypatch):
    import regiondial_bench.results.plots as plots
    from regiondial_bench.results.plots import plot_round_curves

    runs = load_runs([sample_runs["oracle-predicted"], refcocoplus_run])
    paths = plot_round_curves(runs, tmp_path, "ap50")
    svg = next(p for p in paths if p.suffix == ".svg").read_text()
    assert "oracle (predicted) [sample aa8f8a4c]" in svg
    assert "fixed-box (predicted) [refcocoplus 36018ca1]" in svg
    one = plot_round_curves(load_runs([sample_runs["oracle-predicted"]]), tmp_path / "one", "ap50")
    svg = next(p for p in one if p.suffix == ".svg").read_text()
    assert "bench: sample aa8f8a4c" in svg  # one bench: named once, in the legend's title
    monkeypatch.setattr(plots, "plot_all", lambda runs, out, formats=(): ([], []))  # the CLI's warning only, no drawing
    result = CliRunner().invoke(main, ["plot", str(sample_runs["oracle-predicted"]), str(refcocoplus_run),
                                       "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert "different benches" in result.stderr


def test_score_resolves_a_relative_bench_against_the_runs_working_directory(tmp_path, monkeypatch):
    from regiondial_bench.api import score

    work = tmp_path / "work"
    shutil.copytree(Path(__file__).resolve().parents[2] / "regiondial_bench" / "data" / "sample", work / "bench")
    monkeypatch.chdir(work)
    run = CliRunner().invoke(main, ["evaluate", "--model", "oracle", "--bench", "bench", "--out", "run",
                                    "--no-progress", "--bootstrap", "0"])
    assert run.exit_code == 0, run.output
    assert json.loads((work / "run" / "run.json").read_text())["working_dir"] == str(work)
    monkeypatch.chdir(tmp_path)  # "bench" does not exist here
    assert score(work / "run", n_bootstrap=0).overall.ap50 == 100.0
    shutil.move(work / "bench", tmp_path / "moved")
    result = CliRunner().invoke(main, ["score", str(work / "run")])
    assert result.exit_code != 0
    assert f"relative to the run's working directory {work}" in result.output
    assert "--bench PATH" in result.output
    ok = CliRunner().invoke(main, ["score", str(work / "run"), "--bench", str(tmp_path / "moved")])
    assert ok.exit_code == 0, ok.output


def test_resume_keeps_the_recorded_working_directory(tmp_path, monkeypatch):
    from regiondial_bench.api import evaluate, load_bench
    from regiondial_bench.schema import RunConfig

    monkeypatch.chdir(tmp_path)
    evaluate(load_bench("sample"), RunConfig(adapter="oracle"), tmp_path / "run", bench_location="sample",
             progress=False, n_bootstrap=0)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    evaluate(load_bench("sample"), RunConfig(adapter="oracle"), tmp_path / "run", bench_location="sample",
             resume=True, progress=False, n_bootstrap=0)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["working_dir"] == str(tmp_path)
    # a run.json from before working_dir was recorded still resumes
    spec = json.loads((tmp_path / "run" / "run.json").read_text())
    del spec["working_dir"]
    (tmp_path / "run" / "run.json").write_text(json.dumps(spec))
    evaluate(load_bench("sample"), RunConfig(adapter="oracle"), tmp_path / "run", bench_location="sample",
             resume=True, progress=False, n_bootstrap=0)
