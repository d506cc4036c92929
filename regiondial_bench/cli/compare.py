"""``regiondial compare RUN_A RUN_B``: paired bootstrap of per-round differences."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("compare")
@click.argument("run_a", type=click.Path(exists=True, path_type=Path))
@click.argument("run_b", type=click.Path(exists=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["terminal", "markdown", "json"]), default="terminal",
              show_default=True)
@click.option("--bootstrap", "n_bootstrap", type=click.IntRange(min=1, max=1_000_000), default=10_000,
              show_default=True, help="paired resamples of dialogues")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="write to a file instead")
def command(run_a: Path, run_b: Path, fmt: str, n_bootstrap: int, seed: int, output: Path | None) -> None:
    """Is RUN_A better than RUN_B? Per-round AP50 (and gIoU) differences A - B with 95% paired
    bootstrap intervals over dialogues and two-sided p-values. Both runs must be on the same bench.

    \b
    Example:
      regiondial compare runs/noisy-oracle-gold runs/noisy-oracle-predicted --format markdown
    """
    from ..results.compare import compare_runs, render_markdown, render_terminal
    from ._display import emit

    try:
        comparison = compare_runs(run_a, run_b, n_bootstrap=n_bootstrap, seed=seed)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if fmt == "terminal" and output is None:
        render_terminal(comparison)
        return
    text = comparison.to_json() if fmt == "json" else render_markdown(comparison)
    emit(text, output)
