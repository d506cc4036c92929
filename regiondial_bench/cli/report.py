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
    mixed_bench_warning,
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
@click.option("--format", "fmt", type=click.Choice([*FORMATS, "lmms-eval"]), default="terminal", show_default=True,
              help="lmms-eval: an lmms-eval results JSON (one model's runs; a task per run, a subtask per round)")
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
    """Tabulate per-round scores of RUN folders (or results.json / submission folders) side by side.

    A folder of `evaluate --repeats` shows each round's mean ± standard deviation over the repeats,
    and the consensus (turns a majority of the repeats hit).
    """
    if not runs and not paper_table:
        raise click.UsageError("give at least one RUN folder (or --paper-table for the paper's rows alone)")
    from ..results.repeats import REPEAT_NOTE, is_repeats_folder, load_repeats, repeat_rows
    from ._display import emit, finished_runs

    kept = tuple(finished_runs(runs, "report"))
    if labels and len(kept) != len(runs):
        labels = tuple(label for run, label in zip(runs, labels, strict=False) if run in kept)
    label_of = dict(zip(kept, labels, strict=False)) if labels else {}
    repeat_dirs = [run for run in kept if is_repeats_folder(run)]
    runs = tuple(run for run in kept if run not in repeat_dirs)
    try:
        loaded = load_runs(runs, tuple(label_of[run] for run in runs) if labels else ())
        groups = [load_repeats(path, label_of.get(path)) for path in repeat_dirs]
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if fmt == "lmms-eval":
        if groups:
            raise click.UsageError(f"{groups[0].path} holds {len(groups[0].runs)} repeats of one task, and an lmms-eval "
                                   f"file holds one result per task: export one repeat ({groups[0].path}/repeat-0)")
        _lmms_eval(loaded, output, emit)
        return
    tables: list[Table] = []
    if paper_table:
        tables = [paper_table_for(loaded, task, compare_to) for task in TASK_METRIC]
    else:
        chosen = list(metrics) or ["ap50"] + (
            ["giou"] if any(r.cell("giou", "Avg") is not None for r in loaded) else []
        )
        columns = all_round_columns(loaded + [r for g in groups for r in g.runs]) if all_rounds else None
        tables = [round_table(loaded, m, columns) for m in chosen]
        for table, metric in zip(tables, chosen, strict=True):
            table.rows.extend(repeat_rows(groups, metric, table.columns))
            if groups:
                table.notes.append(REPEAT_NOTE)
            extra = mixed_bench_warning(loaded + [g.runs[0] for g in groups]) if groups and loaded else None
            if extra and extra not in table.warnings:
                table.warnings.append(extra)
                table.notes.append(extra)
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


def _lmms_eval(loaded, output: Path | None, emit) -> None:  # noqa: ANN001
    import json

    from ..results.lmms_eval import lmms_eval_results

    try:
        document = lmms_eval_results(loaded)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    emit(json.dumps(document, indent=2, ensure_ascii=False) + "\n", output)


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
