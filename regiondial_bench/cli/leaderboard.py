"""``regiondial leaderboard build [--check]``: the static leaderboard from submissions/."""

from __future__ import annotations

from pathlib import Path

import click

from ..leaderboard import StaleLeaderboardError, build_leaderboard
from ..submission import default_bench_resolver
from .submit import parse_bench_overrides


@click.group("leaderboard")
def command() -> None:
    """Build or check the static leaderboard (leaderboard/index.html, LEADERBOARD.md)."""


@command.command("build")
@click.option(
    "--submissions",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("submissions"),
    show_default=True,
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("leaderboard"),
    show_default=True,
)
@click.option(
    "--check", is_flag=True, help="Fail if the committed output differs from a fresh build (for CI)."
)
@click.option("--bench", "benches", multiple=True, help="NAME=PATH of a bench other than the bundled sample.")
def build(submissions: Path, out_dir: Path, check: bool, benches: tuple[str, ...]) -> None:
    """Validate every submission (re-scoring verified ones) and write the leaderboard."""
    resolver = default_bench_resolver(parse_bench_overrides(benches))
    try:
        reports, written = build_leaderboard(submissions, out_dir, check=check, resolve_bench=resolver)
    except (StaleLeaderboardError, ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    for rep in reports:
        click.echo(f"{rep.name}: {rep.status}")
    if check:
        click.echo(f"{out_dir} is up to date")
    for path in written:
        click.echo(f"wrote {path}")
