"""Repeats of a sampled evaluation (``evaluate --repeats N --seed S``) in reports and plots.

A repeats folder holds one run folder per repeat (``repeat-<i>/``) and ``repeats.json``
(:class:`~regiondial_bench.schema.RepeatsSummary`). The per-repeat scores, their mean and standard
deviation are re-derived here from each repeat's own ``results.json`` (a ``repeats.json`` that
disagrees with them is refused); the consensus and agreement need the gold data, so they are read
from ``repeats.json``, which ``evaluate`` computed from the repeats' predictions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..schema import REPEATS_FILE, RepeatsSummary, validation_summary
from .report import (
    DEFAULT_COLUMNS,
    MAX_RESULTS_BYTES,
    METRICS,
    RunResults,
    Table,
    TableRow,
    bench_label,
    load_run,
)

TOLERANCE = 0.01
"""Points by which a repeat's score in ``repeats.json`` may differ from its ``results.json``."""


def is_repeats_folder(path: str | Path) -> bool:
    """Whether ``path`` is the folder of ``evaluate --repeats`` (it holds ``repeats.json``)."""
    return (Path(path) / REPEATS_FILE).is_file()


@dataclass(frozen=True)
class RepeatGroup:
    """The repeats of one evaluation: their summary and each repeat's results."""

    label: str
    path: Path
    summary: RepeatsSummary
    runs: tuple[RunResults, ...]

    def values(self, metric: str, column: str) -> list[float | None]:
        """Each repeat's ``metric`` in ``column`` (from its own ``results.json``)."""
        return [run.cell(metric, column) for run in self.runs]

    def mean_sd(self, metric: str, column: str) -> tuple[float | None, float | None]:
        """Mean and sample standard deviation over the repeats (None: no value, or one repeat)."""
        present = [v for v in self.values(metric, column) if v is not None]
        if not present:
            return None, None
        mean = sum(present) / len(present)
        if len(present) < 2:
            return mean, None
        return mean, math.sqrt(sum((v - mean) ** 2 for v in present) / (len(present) - 1))

    def consensus(self, column: str) -> float | None:
        """AP50 of the turns a majority of the repeats hit, in ``column``."""
        row = self.summary.row(_row_name(column))
        return None if row is None else row.ap50_consensus

    def agreement(self, column: str) -> float | None:
        row = self.summary.row(_row_name(column))
        return None if row is None else row.agreement


def _row_name(column: str) -> str:
    return "all" if column == "Avg" else column[1:]


def load_repeats(path: str | Path, label: str | None = None) -> RepeatGroup:
    """Read a repeats folder, checking ``repeats.json`` against the repeats' own results.

    Raises:
        FileNotFoundError: a repeat folder or its ``results.json`` is missing.
        ValueError: ``repeats.json`` is malformed or disagrees with a repeat's results.
    """
    folder = Path(path)
    source = folder / REPEATS_FILE
    if source.stat().st_size > MAX_RESULTS_BYTES:
        raise ValueError(f"{source}: larger than any repeats summary ({MAX_RESULTS_BYTES} bytes at most); "
                         "refusing to read it")
    try:
        summary = RepeatsSummary.model_validate(json.loads(source.read_text(encoding="utf-8"),
                                                           parse_constant=_reject_constant))
    except (ValueError, RecursionError) as exc:
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            why = validation_summary(exc, limit=3)
        elif isinstance(exc, UnicodeDecodeError):
            why = f"not UTF-8 text (byte {exc.start})"
        elif isinstance(exc, RecursionError):
            why = "nested too deeply"
        else:
            why = str(exc)
        raise ValueError(f"{source}: not a valid repeats summary: {why[:300]}") from None
    runs = []
    for name in summary.runs:
        child = (folder / name).resolve()
        if not child.is_relative_to(folder.resolve()):
            raise ValueError(f"{source}: repeat folder {name!r} is outside {folder}")
        runs.append(load_run(child))
    if len(runs) != summary.repeats or not runs:
        raise ValueError(f"{source}: names {len(runs)} repeat folders for {summary.repeats} repeats")
    for i, run in enumerate(runs):
        prov = run.results.provenance
        if prov.bench_hash != summary.bench_hash or prov.adapter != summary.adapter:
            raise ValueError(f"{source}: {summary.runs[i]} is {prov.adapter} on {prov.bench_hash}, not "
                             f"{summary.adapter} on {summary.bench_hash}")
        for row in [*summary.rounds, *summary.buckets, summary.overall]:
            claimed = row.ap50[i] if i < len(row.ap50) else None
            actual = run.results.row(row.round)
            value = None if actual is None else actual.ap50
            if (claimed is None) != (value is None) or (value is not None and abs(claimed - value) > TOLERANCE):
                raise ValueError(f"{source}: round {row.round} of {summary.runs[i]}: AP50 {claimed} here, "
                                 f"{value} in its results.json; re-run the repeats")
    name = label or f"{summary.adapter} ({summary.reference_mode}) ×{summary.repeats}"
    return RepeatGroup(name, folder, summary, tuple(runs))


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not a valid number")


def repeat_rows(groups: Sequence[RepeatGroup], metric: str, columns: Sequence[str] | None = None) -> list[TableRow]:
    """Table rows of repeat groups: the mean with its standard deviation, and for AP50 the consensus."""
    cols = list(columns or DEFAULT_COLUMNS)
    rows = []
    for group in groups:
        pairs = [group.mean_sd(metric, c) for c in cols]
        rows.append(TableRow(f"{group.label} mean", [m for m, _ in pairs], "run", sd=[s for _, s in pairs],
                             bench=bench_label(group.runs[0].results)))
        if metric == "ap50":
            rows.append(TableRow(f"{group.label} consensus", [group.consensus(c) for c in cols], "run",
                                 bench=bench_label(group.runs[0].results)))
    return rows


def repeats_table(groups: Sequence[RepeatGroup], metric: str = "ap50") -> Table:
    """The repeat groups alone, as one table (what ``evaluate --repeats`` prints at the end)."""
    cols = [c for c in DEFAULT_COLUMNS if any(g.summary.row(_row_name(c)) is not None for g in groups)]
    return Table(f"{METRICS[metric]} by round over repeats (%)", cols, repeat_rows(groups, metric, cols),
                 [REPEAT_NOTE, "agreement (turns every repeat scores alike): " + ", ".join(
                     f"{g.label} {g.agreement('Avg'):.1f}%" for g in groups if g.agreement("Avg") is not None)])


REPEAT_NOTE = ("mean ± sd: over the repeats (sample standard deviation); consensus: turns a majority of the "
               "repeats hit.")


def plot_repeats(groups: Sequence[RepeatGroup], out_dir: str | Path, metric: str = "ap50",
                 formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """``repeats_<metric>_by_round``: each group's mean per round with a ±1 sd band, each repeat as a
    thin line, and (AP50) the consensus dashed."""
    from .plots import (
        _check_count,
        _columns_present,
        _figure,
        _legend,
        _pyplot,
        _round_axis,
        run_style,
        save_figure,
    )

    if not any(group.mean_sd(metric, "R1")[0] is not None for group in groups):
        raise ValueError(f"no repeats have {METRICS[metric]} scores")
    _check_count(len(groups), "repeat groups")
    plt = _pyplot()
    cols = _columns_present([run for group in groups for run in group.runs])
    fig, ax = _figure(plt)
    for i, group in enumerate(groups):
        color, marker = run_style(i)
        for repeat in range(len(group.runs)):
            points = [(x, group.values(metric, c)[repeat]) for x, c in enumerate(cols, 1)]
            points = [(x, y) for x, y in points if y is not None]
            ax.plot([x for x, _ in points], [y for _, y in points], color=color, alpha=0.25, linewidth=0.6)
        stats = [(x, *group.mean_sd(metric, c)) for x, c in enumerate(cols, 1)]
        stats = [(x, m, s or 0.0) for x, m, s in stats if m is not None]
        xs = [x for x, _, _ in stats]
        ax.fill_between(xs, [m - s for _, m, s in stats], [m + s for _, m, s in stats], color=color, alpha=0.18,
                        linewidth=0)
        ax.plot(xs, [m for _, m, _ in stats], color=color, marker=marker, label=f"{group.label} mean")
        if metric == "ap50":
            agreed = [(x, group.consensus(c)) for x, c in enumerate(cols, 1)]
            agreed = [(x, y) for x, y in agreed if y is not None]
            ax.plot([x for x, _ in agreed], [y for _, y in agreed], color=color, linestyle="--", linewidth=0.9,
                    label=f"{group.label} consensus")
    _round_axis(ax, cols)
    ax.set_ylabel(f"{METRICS[metric]} (%)")
    ax.set_ylim(0, 102)
    _legend(ax, len(groups) * (2 if metric == "ap50" else 1), loc="lower left")
    ax.set_title(f"{METRICS[metric]} over repeats (band: ±1 sd; thin: each repeat)")
    return save_figure(fig, out_dir, f"repeats_{metric}_by_round", formats)
