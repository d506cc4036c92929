"""``regiondial publish``: push built benches to the Hugging Face Hub (or write the dry-run folder)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("publish")
@click.argument("bench_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--repo", required=True, help="dataset repo on the Hub, org/name")
@click.option("--private", is_flag=True, help="create the repo private")
@click.option("--token", envvar="HF_TOKEN", help="Hub token [default: $HF_TOKEN or the huggingface-cli login]")
@click.option("--dry-run", type=click.Path(file_okay=False, path_type=Path), help="write the exact folder that would be pushed here; push nothing")
@click.option("--no-progress", is_flag=True, help="no progress bar")
def command(bench_dirs, repo, private, token, dry_run, no_progress) -> None:
    """Publish BENCH_DIRS (build outputs or bench folders), one Hub config per benchmark.

    \b
    Example:
      regiondial publish benches/refcocoplus benches/refcocog --repo me/regiondial-bench --dry-run /tmp/export
      regiondial publish benches/refcocoplus benches/refcocog --repo me/regiondial-bench --private
    """
    from ..bench.hub import publish

    try:
        folder = publish(bench_dirs, repo, private=private, token=token, dry_run=dry_run, progress=not no_progress)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if dry_run is not None:
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        click.echo(f"dry run: {len(files)} files in {folder} (nothing pushed)")
        for name in files:
            click.echo(f"  {name}")
        click.echo(f"check: python -c \"import datasets; print(datasets.load_dataset('{folder}', '<config>'))\"")
    else:
        click.echo(f"published to https://huggingface.co/datasets/{repo}")
