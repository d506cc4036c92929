"""``regiondial leaderboard build [--check]``: the static leaderboard from submissions/."""

from __future__ import annotations

from pathlib import Path

import click

from ..bench.registry import RegistryError
from ..publish.leaderboard import StaleLeaderboardError, UnavailableBenchError, build_leaderboard
from ..publish.submission import default_bench_resolver
from ._display import os_error
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
@click.option("--bench", "benches", multiple=True,
              help="NAME=SPEC: where a registered bench is (wins over benches.yaml's env/hub/location).")
@click.option("--registry", type=click.Path(dir_okay=False, path_type=Path),
              help="bench registry [default: <out>/benches.yaml]")
def build(submissions: Path, out_dir: Path, check: bool, benches: tuple[str, ...], registry: Path | None) -> None:
    """Validate every submission (re-scoring verified ones on their registered bench) and write the leaderboard."""
    try:
        resolver = default_bench_resolver(parse_bench_overrides(benches), registry or _registry_beside(out_dir))
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        reports, written = build_leaderboard(submissions, out_dir, check=check, resolve_bench=resolver)
    except (StaleLeaderboardError, UnavailableBenchError, ValueError, FileNotFoundError) as exc:
        _print_benches(resolver)
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise os_error(exc) from exc
    _print_benches(resolver)
    for rep in reports:
        click.echo(f"{rep.name}: {rep.status}")
    if check:
        click.echo(f"{out_dir} is up to date")
    for path in written:
        click.echo(f"wrote {path}")


def _print_benches(resolver) -> None:
    for name, state in resolver.status().items():
        click.echo(f"bench {name}: {state}", err=True)


def _registry_beside(out_dir: Path) -> Path | None:
    file = out_dir / "benches.yaml"
    return file if file.is_file() else None
