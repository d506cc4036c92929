"""``regiondial bench info|validate``: look at a bench before evaluating on it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from ..bench.import_cache import ImportCache
    from ..schema import Bench


def _load(path: str, images: Path | None, annotations: Path | None = None, *, lenient: bool = False,
          cache: ImportCache | bool = True) -> Bench:
    from ..bench.hub_check import HubUnavailableError, check_hub_id
    from ..bench.specs import load_bench
    from ..schema import MANIFEST_FILE, Bench

    try:
        if path.startswith("hf:"):
            check_hub_id(path[3:].split(":")[0].split("@")[0], "dataset", "bench")
        if lenient and _is(Path(path) / MANIFEST_FILE, "file"):
            return Bench.load(path, lenient=True)  # every bad line becomes an issue, not the first an error
        return load_bench(path, images=images, annotations=annotations,
                          notice=lambda text: click.echo(text, err=True), cache=cache)
    except (FileNotFoundError, ValueError, HubUnavailableError) as exc:
        raise click.ClickException(_one_line(str(exc))) from exc


def _one_line(text: str, limit: int = 2000) -> str:
    """An error message on one line, cut to ``limit`` characters (hostile input can be huge)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + " ..."


def _is(path: Path, kind: str) -> bool:
    """``path.is_dir()`` or ``is_file()`` (``kind``), False for names the OS refuses (too long, NUL)."""
    try:
        return path.is_dir() if kind == "dir" else path.is_file()
    except (OSError, ValueError):
        return False


def _build_splits(path: str) -> dict | None:
    """The splits of a build folder given as PATH (no :split), else None."""
    from ..bench.specs import bench_folder_kind, build_splits

    folder = Path(path)
    if not _is(folder, "dir") or bench_folder_kind(folder) != "build":
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
@click.option("--no-cache", is_flag=True, help="import a question file again instead of reading the import cache")
@click.option("--full-hash", is_flag=True,
              help="recognise a cached question file by the hash of all its bytes (reads the whole file)")
def info(path: str, images: Path | None, annotations: Path | None, as_json: bool, no_cache: bool,
         full_hash: bool) -> None:
    """Print dialogues, turns and turns per round index of the bench at PATH.

    PATH may name a config and split (PATH:config:split); a build folder lists its splits. A
    question file is imported once into the user cache ($REGIONDIAL_CACHE_DIR/imports); the 'cache'
    line says whether this load read it.
    """
    from ..bench.import_cache import ImportCache
    from ..bench.validation import bench_stats

    splits = _build_splits(path)
    cache = ImportCache(enabled=not no_cache, full_hash=full_hash)
    bench = _load(path, images, annotations, cache=cache)
    stats = bench_stats(bench)
    if splits is not None:
        stats["splits"] = {name: {k: v for k, v in meta.items() if k in ("dialogues", "turns", "content_hash")}
                           for name, meta in splits.items()}
    outcome = cache.outcomes[-1] if cache.outcomes else None
    if as_json:
        stats["cache"] = outcome.as_dict() if outcome else None
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
    click.echo(outcome.line() if outcome else "cache: not used (only question files are imported)")


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
@click.argument("repo", required=False)
@click.option("--revision", help="commit sha, tag or branch [default: leaderboard/benches.yaml's pin, else main]")
@click.option("--config", "configs", multiple=True, help="refcocoplus, refcocog (repeatable) [default: all]")
@click.option("--no-images", is_flag=True, help="only the question files, not the benchmark images")
@click.option("--training", is_flag=True,
              help="fetch the training data (lmsdss/regionreasoner_data) instead of the test data")
@click.option("--local-dir", type=click.Path(file_okay=False, path_type=Path),
              help="put the files in this folder instead of the Hub cache (e.g. data/ for the trainer)")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), help="Hub cache [default: HF_HOME's]")
def fetch(repo: str | None, revision: str | None, configs: tuple[str, ...], no_images: bool, training: bool,
          local_dir: Path | None, cache_dir: Path | None) -> None:
    """Download the released data from the Hub: the test files, their images, or the training data.

    \b
    By default: lmsdss/regionreasoner_test_data's raw/<config>_multi_turn.json (questions + gold
    masks) and raw/<config>_test_multi_bbox_images/ (the benchmark's images), into the Hub cache.
    Benches loaded from these files find their images beside them: no --images needed.
    --training: lmsdss/regionreasoner_data (regionreasoner_train.json and its images); with
    --local-dir data it lands where the trainer's configs read it (data/regionreasoner_train.json).
    Offline later (HF_HUB_OFFLINE=1, or no network) the cached copy is used.
    """
    from ..bench.hub import (
        RELEASED_TEST_DATA,
        RELEASED_TRAINING_DATA,
        HubCacheError,
        fetch_released,
        fetch_training,
    )
    from ..bench.registry import pinned_revision

    if training and (configs or no_images):
        raise click.UsageError("--config and --no-images choose test files; --training fetches the training data")
    repo = repo or (RELEASED_TRAINING_DATA if training else RELEASED_TEST_DATA)
    revision = revision or pinned_revision(repo)
    progress = lambda text: click.echo(text, err=True)  # noqa: E731
    try:
        if training:
            file = fetch_training(repo, revision=revision, cache_dir=cache_dir, local_dir=local_dir, progress=progress)
            click.echo(f"training data: {file}")
            if local_dir is None:
                click.echo("next: point the trainer's data.source at it (and data.image_root at its folder), or "
                           "fetch again with --local-dir data for the configs' data/regionreasoner_train.json")
            return
        files = fetch_released(repo, revision=revision, configs=list(configs) or None, images=not no_images,
                               cache_dir=cache_dir, local_dir=local_dir, progress=progress)
    except (FileNotFoundError, ValueError, HubCacheError) as exc:
        raise click.ClickException(_one_line(str(exc))) from exc
    from ..bench.sources.upstream import released_images

    for config, file in sorted(files.items()):
        folder = released_images(file)
        click.echo(f"{config}: {file}" + (f" (images: {folder})" if folder else " (no images)"))
    first = sorted(files)[0]
    at = f"@{revision}" if revision else ""
    spec = f"{local_dir}:{first}" if local_dir is not None else f"hf:{repo}{at}:{first}"
    click.echo(f"next: regiondial bench info {spec}")
