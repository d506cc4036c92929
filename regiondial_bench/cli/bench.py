"""``regiondial bench info|validate``: look at a bench before evaluating on it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table


def _load(path: str, images: Path | None, *, lenient: bool = False):
    from ..api import load_bench
    from ..schema import MANIFEST_FILE, Bench

    try:
        if lenient and (Path(path) / MANIFEST_FILE).is_file():
            return Bench.load(path, lenient=True)  # every bad line becomes an issue, not the first an error
        return load_bench(path, images=images)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


@click.group("bench")
def command() -> None:
    """Inspect benches: 'sample', a bench folder, an exported Hub folder or an official question .json."""


@command.command("info")
@click.argument("path")
@click.option("--images", type=click.Path(file_okay=False, path_type=Path), help="image folder for a question .json")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def info(path: str, images: Path | None, as_json: bool) -> None:
    """Print dialogues, turns and turns per round index of the bench at PATH."""
    from ..validation import bench_stats

    stats = bench_stats(_load(path, images))
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    console = Console()
    console.print(f"[bold]{stats['name']}[/]  {stats['content_hash']}")
    console.print(f"{stats['dialogues']} dialogues, {stats['turns']} turns, "
                  f"{stats['turns_with_reference']} with a reference ({stats['chained_references']} chained), "
                  f"{stats['turns_with_gold_mask']} with a gold mask, "
                  f"{stats['dialogues_with_image_file']} dialogues with an image file")
    table = Table(title="turns per round")
    rounds = stats["turns_per_round"]
    for r in rounds:
        table.add_column(f"R{r}", justify="right")
    table.add_row(*[str(v) for v in rounds.values()])
    console.print(table)
    console.print("turns per dialogue: " + ", ".join(f"{k}:{v}" for k, v in stats["turns_per_dialogue"].items()))


@command.command("validate")
@click.argument("path")
@click.option("--images", type=click.Path(file_okay=False, path_type=Path), help="image folder for a question .json")
@click.option("--json", "as_json", is_flag=True, help="print every issue as JSON")
def validate(path: str, images: Path | None, as_json: bool) -> None:
    """Report the data defects of the bench at PATH; exit 1 when any is an error."""
    from ..validation import check_bench

    issues = check_bench(_load(path, images, lenient=True))
    errors = sum(i.severity == "error" for i in issues)
    if as_json:
        click.echo(json.dumps([i.model_dump(mode="json") for i in issues], indent=2))
    else:
        console = Console()
        counts = Counter((i.severity, i.code) for i in issues)
        table = Table(title=f"{len(issues)} issues ({errors} errors)")
        for col in ("severity", "code", "count", "example"):
            table.add_column(col)
        for (severity, code), n in sorted(counts.items()):
            example = next(i for i in issues if i.code == code and i.severity == severity)
            where = f"{example.dialogue_id}#{example.turn}: " if example.dialogue_id else ""
            table.add_row(severity, code, str(n), where + example.message)
        console.print(table)
    if errors:
        raise SystemExit(1)
