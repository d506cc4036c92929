"""``regiondial report RUN...``: per-round tables of several runs, or the paper's tables."""

from __future__ import annotations

from pathlib import Path

import click

from ..results.report import (
    FORMATS,
    METRICS,
    TASK_METRIC,
    Table,
    all_round_columns,
    load_runs,
    paper_rows,
    paper_table,
    render_tables,
    render_terminal,
    round_table,
)


@click.command("report")
@click.argument("runs", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--label", "labels", multiple=True, help="Row label per run, in order (default: adapter (mode))."
)
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    type=click.Choice(list(METRICS)),
    help="Metric(s) to tabulate (default: ap50, and giou when a run has masks).",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="terminal", show_default=True)
@click.option("--all-rounds", is_flag=True, help="One column per round index instead of R1..R7 + R8+.")
@click.option("--ci", "with_ci", is_flag=True, help="Show 95% bootstrap intervals next to AP50/gIoU.")
@click.option("--mde", "with_mde", is_flag=True,
              help="Also the minimum detectable effect per round (points, alpha 0.05, 80% power) at each run's size.")
@click.option("--paper-table", is_flag=True, help="The paper's two 7-round tables with the runs added.")
@click.option(
    "--compare-to", default=None, help="Paper row the differences refer to (default: RegionReasoner-7B)."
)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file.")
def command(
    runs: tuple[Path, ...],
    labels: tuple[str, ...],
    metrics: tuple[str, ...],
    fmt: str,
    all_rounds: bool,
    with_ci: bool,
    with_mde: bool,
    paper_table: bool,
    compare_to: str | None,
    output: Path | None,
) -> None:
    """Tabulate per-round scores of RUN folders (or results.json / submission folders) side by side."""
    if not runs and not paper_table:
        raise click.UsageError("give at least one RUN folder (or --paper-table for the paper's rows alone)")
    from ._display import emit, finished_runs

    kept = tuple(finished_runs(runs, "report"))
    if labels and len(kept) != len(runs):
        labels = tuple(label for run, label in zip(runs, labels, strict=False) if run in kept)
    runs = kept
    try:
        loaded = load_runs(runs, labels)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    tables: list[Table] = []
    if paper_table:
        tables = [paper_table_for(loaded, task, compare_to) for task in TASK_METRIC]
    else:
        chosen = list(metrics) or ["ap50"] + (
            ["giou"] if any(r.cell("giou", "Avg") is not None for r in loaded) else []
        )
        columns = all_round_columns(loaded) if all_rounds else None
        tables = [round_table(loaded, m, columns) for m in chosen]
        if with_mde:
            from ..results.power import mde_table

            tables += [mde_table(loaded, m, columns) for m in chosen if m in ("ap50", "giou")]
    for warning in dict.fromkeys(w for table in tables for w in table.warnings):
        click.echo(warning, err=True)
    if fmt == "terminal" and output is None:
        for table in tables:
            render_terminal(table, with_ci=with_ci)
        return
    text = render_tables(tables, "markdown" if fmt == "terminal" else fmt, with_ci=with_ci)
    emit(text, output)


def paper_table_for(loaded, task: str, compare_to: str | None) -> Table:  # noqa: ANN001
    # A row of only one table (Qwen2.5-VL-7B: detection; SegLLM-7B: segmentation) is compared
    # with there; the other table keeps its default row. A row of neither table is an error.
    elsewhere = any(compare_to in paper_rows(other) for other in TASK_METRIC if other != task)
    if compare_to is not None and compare_to not in paper_rows(task) and elsewhere:
        compare_to = None
    try:
        return paper_table(loaded, task, compare_to)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
