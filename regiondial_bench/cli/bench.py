"""``regiondial bench info|validate``: look at a bench before evaluating on it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table


def _load(path: str, images: Path | None, annotations: Path | None = None, *, lenient: bool = False):
    from ..bench.specs import load_bench
    from ..schema import MANIFEST_FILE, Bench

    try:
        if lenient and (Path(path) / MANIFEST_FILE).is_file():
            return Bench.load(path, lenient=True)  # every bad line becomes an issue, not the first an error
        return load_bench(path, images=images, annotations=annotations,
                          notice=lambda text: click.echo(text, err=True))
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


def _build_splits(path: str) -> dict | None:
    """The splits of a build folder given as PATH (no :split), else None."""
    from ..bench.specs import bench_folder_kind, build_splits

    folder = Path(path)
    if not folder.is_dir() or bench_folder_kind(folder) != "build":
        return None
    try:
        return build_splits(folder)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


_ANNOTATIONS = click.option(
    "--annotations", type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="COCO instances JSON (instances_train2014.json or refer's instances.json): gold masks for a question file",
)


@click.group("bench")
def command() -> None:
    """Inspect benches: 'sample', a bench folder, an exported Hub folder or an official question .json."""


@command.command("info")
@click.argument("path")
@click.option("--images", type=click.Path(file_okay=False, path_type=Path), help="image folder for a question .json")
@_ANNOTATIONS
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def info(path: str, images: Path | None, annotations: Path | None, as_json: bool) -> None:
    """Print dialogues, turns and turns per round index of the bench at PATH.

    PATH may name a config and split (PATH:config:split); a build folder lists its splits.
    """
    from ..bench.validation import bench_stats

    splits = _build_splits(path)
    bench = _load(path, images, annotations)
    stats = bench_stats(bench)
    if splits is not None:
        stats["splits"] = {name: {k: v for k, v in meta.items() if k in ("dialogues", "turns", "content_hash")}
                           for name, meta in splits.items()}
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    console = Console()
    if splits is not None:
        console.print(f"build folder {path}: splits " + ", ".join(
            f"{name} ({meta.get('dialogues', '?')} dialogues, {meta.get('turns', '?')} turns)"
            for name, meta in splits.items()))
        console.print(f"showing {bench.root.name if bench.root else '?'} (choose another with {path}:<split>)")
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
@_ANNOTATIONS
@click.option("--json", "as_json", is_flag=True, help="print every issue as JSON")
def validate(path: str, images: Path | None, annotations: Path | None, as_json: bool) -> None:
    """Report the data defects of the bench at PATH; exit 1 when any is an error."""
    from ..bench.validation import check_bench

    issues = check_bench(_load(path, images, annotations, lenient=True))
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


@command.command("list")
@click.option("--hub", is_flag=True, help="also look on the Hub for benches found nowhere else (may download)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def list_(hub: bool, as_json: bool) -> None:
    """The registered benches (leaderboard/benches.yaml): where each is found here, its hash and turns.

    Evaluate one with --bench NAME (its hash is checked), or --bench NAME=PATH for a copy elsewhere.
    """
    from ..bench.catalog import RegistryError, list_benches, named_registry, registry_file
    from ..bench.specs import load_bench

    try:
        registry = named_registry()
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from exc
    listings = list_benches(registry, load_bench, hub=hub)
    if as_json:
        click.echo(json.dumps([{"name": b.name, "available": b.available, "where": b.where, "spec": b.spec,
                                "content_hash": b.content_hash or b.entry.content_hash, "turns": b.turns,
                                "dialogues": b.dialogues, "problem": b.problem,
                                "description": b.entry.description} for b in listings], indent=2))
        return
    source = registry_file()
    click.echo(f"benches registered in {source}:" if source else "no bench registry here: the sample only")
    width = max(len(b.name) for b in listings)
    for b in listings:
        digest = (b.content_hash or b.entry.content_hash or "")[7:15] or "unpinned"
        if b.available:
            click.echo(f"  {b.name:<{width}}  {digest}  {b.turns} turns ({b.dialogues} dialogues)  "
                       f"found: {b.where} {b.spec}")
        else:
            click.echo(f"  {b.name:<{width}}  {digest}  {b.problem}")
        if b.entry.description:
            click.echo(f"  {'':<{width}}  {b.entry.description}")
    click.echo("evaluate one with --bench NAME (its content hash is checked)")


@command.command("fetch")
@click.argument("repo", default="lmsdss/regionreasoner_test_data")
@click.option("--revision", help="commit sha, tag or branch [default: leaderboard/benches.yaml's pin, else main]")
@click.option("--config", "configs", multiple=True, help="refcocoplus, refcocog (repeatable) [default: all]")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), help="Hub cache [default: HF_HOME's]")
def fetch(repo: str, revision: str | None, configs: tuple[str, ...], cache_dir: Path | None) -> None:
    """Download the released *_multi_turn.json test files (questions + gold masks) into the Hub cache.

    Offline later (HF_HUB_OFFLINE=1, or no network) the cached copy is used. Load them with
    --bench hf:lmsdss/regionreasoner_test_data:refcocoplus (images still come from --images).
    """
    from ..bench.hub import fetch_released
    from ..bench.registry import pinned_revision

    revision = revision or pinned_revision(repo)
    try:
        files = fetch_released(repo, revision=revision, configs=list(configs) or None, cache_dir=cache_dir,
                               progress=lambda text: click.echo(text, err=True))
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    for config, file in sorted(files.items()):
        click.echo(f"{config}: {file}")
    first = sorted(files)[0]
    at = f"@{revision}" if revision else ""
    click.echo(f"next: regiondial bench info hf:{repo}{at}:{first}")
