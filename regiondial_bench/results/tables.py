"""Per-round tables of run folders as text: :func:`report`, the public form of ``regiondial report``.

It reads plain runs (:mod:`.report`) and repeats folders (:mod:`.repeats`) alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .repeats import REPEAT_NOTE, is_repeats_folder, load_repeats, repeat_rows
from .report import all_round_columns, load_runs, render_tables, round_table


def report(
    runs: Sequence[str | Path],
    *,
    metrics: Sequence[str] = (),
    fmt: str = "markdown",
    all_rounds: bool = False,
    with_ci: bool = False,
    labels: Sequence[str] = (),
) -> str:
    """Per-round tables of run folders side by side, as text: what ``regiondial report`` prints.

    Args:
        runs: run folders, ``results.json`` files, submission folders, a sweep's folder (its runs)
            or a repeats folder (its mean ± sd and consensus).
        metrics: keys of :data:`METRICS` (default: AP50, and gIoU when a run has masks).
        fmt: ``markdown``, ``csv`` or ``latex``.
        all_rounds: one column per round index instead of R1..R7, R8+, Avg.
        with_ci: add the 95% bootstrap intervals.
        labels: one row label per run.

    Warnings (runs on different benches, runs of fewer turns) are in the tables' notes.
    """
    paths = [Path(p) for p in runs]
    label_of = dict(zip(paths, labels, strict=True)) if labels else {}
    groups = [load_repeats(p, label_of.get(p)) for p in paths if is_repeats_folder(p)]
    plain = [p for p in paths if not is_repeats_folder(p)]
    loaded = load_runs(plain, [label_of[p] for p in plain] if labels else ())
    everything = loaded + [run for group in groups for run in group.runs]
    chosen = list(metrics) or ["ap50"] + (["giou"] if any(r.cell("giou", "Avg") is not None for r in everything)
                                          else [])
    columns = all_round_columns(everything) if all_rounds else None
    tables = []
    for metric in chosen:
        table = round_table(loaded, metric, columns)
        table.rows.extend(repeat_rows(groups, metric, table.columns))
        if groups:
            table.notes.append(REPEAT_NOTE)
        tables.append(table)
    return render_tables(tables, fmt, with_ci=with_ci)
