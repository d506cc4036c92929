"""``regiondial compare RUN_A RUN_B``: paired bootstrap of per-round differences."""

from __future__ import annotations

from pathlib import Path

import click


def _resolve(spec: str, submissions: Path) -> Path:
    """A run folder, a submission folder, or ``leaderboard:<entry>`` as a folder to compare."""
    from ..publish.leaderboard import ENTRY_PREFIX, check_baseline, entry_folder
    from ..publish.submission import SUBMISSION_FILE

    if spec.startswith(ENTRY_PREFIX):
        return entry_folder(spec[len(ENTRY_PREFIX):], submissions)
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"{spec}: no such run folder (a leaderboard entry is named leaderboard:<entry>)")
    if path.is_dir() and (path / SUBMISSION_FILE).is_file():
        check_baseline(path)
    return path


@click.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--format", "fmt", type=click.Choice(["terminal", "markdown", "json"]), default="terminal",
              show_default=True)
@click.option("--bootstrap", "n_bootstrap", type=click.IntRange(min=1, max=1_000_000), default=10_000,
              show_default=True, help="paired resamples of dialogues")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--submissions", type=click.Path(file_okay=False, path_type=Path), default=Path("submissions"),
              show_default=True, help="where leaderboard:<entry> is looked up")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="write to a file instead")
def command(run_a: str, run_b: str, fmt: str, n_bootstrap: int, seed: int, submissions: Path,
            output: Path | None) -> None:
    """Is RUN_A better than RUN_B? Per-round AP50 (and gIoU) differences A - B with 95% paired
    bootstrap intervals over dialogues, two-sided p-values and the minimum detectable effect.
    Both must be on the same bench. Either may be a leaderboard entry, `leaderboard:<entry>`
    (a folder of submissions/, with or without its date), or a submission folder.

    \b
    Examples:
      regiondial compare runs/noisy-oracle-gold runs/noisy-oracle-predicted --format markdown
      regiondial compare runs/my-model leaderboard:fixed-box-refcocoplus
    """
    from ..results.compare import compare_runs, render_markdown, render_terminal
    from ._display import emit

    try:
        comparison = compare_runs(_resolve(run_a, submissions), _resolve(run_b, submissions),
                                  n_bootstrap=n_bootstrap, seed=seed)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if fmt == "terminal" and output is None:
        render_terminal(comparison)
        return
    text = comparison.to_json() if fmt == "json" else render_markdown(comparison)
    emit(text, output)
