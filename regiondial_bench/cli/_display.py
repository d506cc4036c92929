"""Terminal and file output of the commands (``evaluate``, ``score``, ``report``, ``compare``)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from ..results.report import frame_check_lines, render_terminal, summary_table
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
    summary, warning = frame_check_lines(results)
    if summary is not None:
        console.print(summary, markup=False, highlight=False)
    if warning is not None:
        console.print(f"[yellow]frame warning:[/] {escape(warning)}", markup=True, highlight=False)


def finished_runs(paths: tuple, command: str) -> list:  # noqa: ANN001
    """The paths that are not unfinished run folders; each unfinished one is skipped with a notice.

    A glob such as ``runs/*`` often catches a run still in progress (``run.json`` but no
    ``results.json`` yet): reporting the others is more useful than failing on it.
    """
    from ..schema import RESULTS_FILE, RUN_FILE

    kept = []
    for path in paths:
        if path.is_dir() and not (path / RESULTS_FILE).is_file() and (path / RUN_FILE).is_file():
            click.echo(f"skipped {path}: unfinished run (no {RESULTS_FILE}); finish it with "
                       f"`regiondial evaluate --out {path} --resume` or score what it answered with "
                       f"`regiondial score {path} --partial`", err=True)
            continue
        kept.append(path)
    if paths and not kept:
        raise click.UsageError(f"nothing to {command}: every RUN given is unfinished")
    return kept


def emit(text: str, output: Path | None) -> None:
    """Print ``text``, or write it to ``output`` (creating its folder) and say so on stderr."""
    if output is None:
        click.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    click.echo(f"wrote {output}", err=True)
