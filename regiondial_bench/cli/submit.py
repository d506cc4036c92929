"""``regiondial submit RUN --name NAME``: turn a scored run into a leaderboard submission."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from ..publish.submission import (
    SubmissionError,
    create_submission,
    default_bench_resolver,
    validate_submission,
)
from ._display import os_error


def parse_bench_overrides(values: tuple[str, ...]) -> dict[str, str]:
    """``NAME=SPEC`` pairs from ``--bench``."""
    out = {}
    for value in values:
        name, sep, spec = value.partition("=")
        if not sep or not name or not spec:
            raise click.BadParameter(f"{value!r}: expected NAME=PATH", param_hint="--bench")
        out[name] = spec
    return out


@click.command("submit")
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", help="Folder name part: submissions/<date>_<name>/ (letters, digits, . _ -).")
@click.option("--model", help="Display name (default: --name).")
@click.option("--hub-id", help="Hugging Face Hub id, owner/name.")
@click.option("--revision", help="Hub revision (commit sha or tag) that was evaluated.")
@click.option("--size", help="Parameter count, e.g. 7B.")
@click.option("--adapter-preset", help="Adapter and preset used (default: the run's adapter).")
@click.option("--author", "authors", multiple=True, help="Author (repeatable).")
@click.option("--link", help="Paper or code URL (http/https).")
@click.option("--notes", default="", help="Free text shown with the entry.")
@click.option("--date", "date", type=click.DateTime(formats=["%Y-%m-%d"]), help="Date (default: today).")
@click.option(
    "--root", type=click.Path(file_okay=False, path_type=Path), default=Path("submissions"), show_default=True
)
@click.option("--bench", "benches", multiple=True,
              help="NAME=SPEC: where a registered bench is (wins over leaderboard/benches.yaml's env/hub/location).")
@click.option("--registry", type=click.Path(dir_okay=False, path_type=Path),
              help="bench registry [default: leaderboard/benches.yaml]")
@click.option(
    "--validate-only", is_flag=True, help="RUN is a submission folder: validate it and print the verdict."
)
def command(
    run: Path,
    name: str | None,
    model: str | None,
    hub_id: str | None,
    revision: str | None,
    size: str | None,
    adapter_preset: str | None,
    authors: tuple[str, ...],
    link: str | None,
    notes: str,
    date: dt.datetime | None,
    root: Path,
    benches: tuple[str, ...],
    validate_only: bool,
    registry: Path | None = None,
) -> None:
    """Create submissions/<date>_<name>/ from a scored RUN folder and validate it.

    The entry is verified when its predictions cover every turn of the bench exactly once, the
    bench hash matches and re-scoring reproduces results.json; otherwise nothing is written.
    """
    from ..bench.registry import RegistryError

    try:
        resolver = default_bench_resolver(parse_bench_overrides(benches), registry)
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from exc
    if validate_only:
        report = validate_submission(run, resolver)
        click.echo(report.summary())
        if report.status in ("rejected", "unavailable"):
            raise SystemExit(1)
        return
    if not name:
        raise click.UsageError("--name is required (the folder becomes submissions/<date>_<name>/)")
    try:
        report = create_submission(
            run,
            name,
            root=root,
            model=model,
            date=date.date() if date else None,
            resolve_bench=resolver,
            hub_id=hub_id,
            revision=revision,
            size=size,
            adapter_preset=adapter_preset,
            authors=list(authors),
            link=link,
            notes=notes,
        )
    except (SubmissionError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:  # the half-written folder was removed again
        raise os_error(exc) from exc
    click.echo(f"{report.folder}: {report.status}")
    click.echo("next: regiondial leaderboard build, then commit the folder and leaderboard/")
