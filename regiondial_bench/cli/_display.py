"""Terminal output of ``evaluate`` and ``score``."""

from __future__ import annotations

from rich.console import Console

from ..report import render_terminal, summary_table
from ..schema import Results


def print_results(results: Results, console: Console | None = None) -> None:
    """The per-round table in the paper's layout, the Avg CI and the commonest failure reasons."""
    render_terminal(summary_table(results), console=console)
    console = console or Console()
    overall = results.overall
    if overall.ap50_ci is not None:
        console.print(f"Avg AP50 {overall.ap50:.1f} (95% CI {overall.ap50_ci.low:.1f}–{overall.ap50_ci.high:.1f}, "
                      f"bootstrap over dialogues)", highlight=False)
    if results.failure_reasons:
        top = ", ".join(f"{k} ×{v}" for k, v in list(results.failure_reasons.items())[:3])
        console.print(f"[yellow]failed turns (scored as misses):[/] {top}", markup=True, highlight=False)
