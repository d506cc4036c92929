"""Terminal and file output of the commands (``evaluate``, ``score``, ``report``, ``compare``)."""

from __future__ import annotations

import errno
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


_OS_ERROR_ADVICE = {
    errno.ENOSPC: "no space left on the device; free some space or choose a folder on another disk",
    errno.EDQUOT: "the disk quota is exceeded; free some space or choose a folder on another disk",
    errno.EROFS: "the file system is read-only; choose a writable folder",
    errno.EACCES: "permission denied; choose a folder you may write, or change its permissions",
    errno.EPERM: "the operation is not permitted; choose a folder you may write, or change its permissions",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EEXIST: "a file is in the way of a folder; remove it or choose another path",
    errno.EISDIR: "a folder is in the way of a file; remove it or choose another path",
    errno.ENAMETOOLONG: "the path is too long; choose a shorter one",
}


def os_error(exc: OSError, then: str = "") -> click.ClickException:
    """One line for a failed read or write: the path, what happened and what to do, then ``then``
    (e.g. how to continue a run whose finished turns are kept)."""
    path = exc.filename if exc.filename is not None else "(a file)"
    if exc.filename2 is not None:
        path = f"{path} -> {exc.filename2}"
    reason = _OS_ERROR_ADVICE.get(exc.errno) or (exc.strerror or type(exc).__name__)
    return click.ClickException(f"{path}: {reason}" + (f". {then}" if then else ""))
