"""Terminal rendering shared by the commands (rich)."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from ..schema import Results

PAPER_COLUMNS = ("1", "2", "3", "4", "5", "6", "7", "8+", "all")


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def results_table(results: Results, title: str | None = None) -> Table:
    """Rows = metrics, columns = R1..R7, R8+, Avg (all turns, micro-average), as in the paper."""
    p = results.provenance
    table = Table(title=title or f"{p.adapter} on {p.bench_name} ({p.reference_mode} references)",
                  caption="AP50 = Acc@0.5 (any box, IoU > 0.5); Avg = all turns (micro-average, R8+ included)",
                  box=box.SIMPLE_HEAD)
    table.add_column("metric", no_wrap=True)
    columns = [c for c in PAPER_COLUMNS if results.row(c) is not None]
    for column in columns:
        table.add_column("Avg" if column == "all" else f"R{column}", justify="right", no_wrap=True)
    rows = [results.row(c) for c in columns]
    table.add_row("n", *[str(r.n) for r in rows])
    table.add_row("AP50", *[_cell(r.ap50) for r in rows])
    table.add_row("AP50 top-1", *[_cell(r.ap50_top1) for r in rows])
    if any(r.giou is not None for r in rows):
        table.add_row("gIoU", *[_cell(r.giou) for r in rows])
        table.add_row("cIoU", *[_cell(r.ciou) for r in rows])
    table.add_row("failures", *[str(r.failures) for r in rows])
    return table


def print_results(results: Results, console: Console | None = None) -> None:
    console = console or Console()
    console.print(results_table(results))
    overall = results.overall
    if overall.ap50_ci is not None:
        console.print(f"Avg AP50 {overall.ap50:.1f} (95% CI {overall.ap50_ci.low:.1f}–{overall.ap50_ci.high:.1f}, "
                      f"bootstrap over dialogues)")
    if results.failure_reasons:
        top = ", ".join(f"{k} ×{v}" for k, v in list(results.failure_reasons.items())[:3])
        console.print(f"[yellow]failed turns (scored as misses):[/] {top}")
