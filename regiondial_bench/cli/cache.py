"""``regiondial cache info|prune|clear``: the response cache that runs share (``--no-cache`` skips it)."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import click

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)$", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_BYTES = {"": 1, "b": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "ki": 1024, "mi": 1024**2, "gi": 1024**3,
          "ti": 1024**4}
_LONGEST = 1e12  # seconds: 30,000 years
_LARGEST = 2**62  # bytes: below SQLite's largest integer


def parse_duration(text: str) -> float:
    """Seconds of ``30d``, ``12h``, ``90m``, ``2w``.

    >>> parse_duration("30d"), parse_duration("1.5h"), parse_duration("9" * 400 + "d")
    (2592000.0, 5400.0, 1000000000000.0)
    """
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise click.BadParameter(f"{text!r} is not a duration like 30d, 12h, 90m or 2w")
    return min(float(match.group(1)) * _SECONDS[match.group(2)], _LONGEST)  # 1e999d is "forever", not inf


def parse_size(text: str) -> int:
    """Bytes of ``500MB``, ``2GiB``, ``1g``.

    >>> parse_size("500MB"), parse_size("2GiB"), parse_size("9" * 400 + "GB") == 2**62
    (500000000, 2147483648, True)
    """
    match = _SIZE.match(text.strip())
    unit = match.group(2).lower().removesuffix("b") if match else None
    if match is None or unit not in _BYTES:
        raise click.BadParameter(f"{text!r} is not a size like 500MB, 2GB or 1GiB")
    return int(min(float(match.group(1)) * _BYTES[unit], _LARGEST))  # beyond SQLite's integers is "no limit"


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _when(stamp: float | None) -> str:
    return "-" if stamp is None else datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M")


def _folder(folder: Path | None) -> Path:
    from ..run.response_cache import ResponseCacheSettings

    return ResponseCacheSettings(folder=folder).location()


def _store(folder: Path):  # noqa: ANN202
    from ..run.response_cache import DATABASE_FILE, ResponseCacheError, ResponseStore

    if not (folder / DATABASE_FILE).is_file():
        return None
    try:
        return ResponseStore(folder)
    except ResponseCacheError as exc:
        raise click.ClickException(str(exc)) from exc


_FOLDER = click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path),
                       help="the cache folder [default: $REGIONDIAL_CACHE_DIR/responses, else "
                            "~/.cache/regiondial_bench/responses]")


@click.group("cache")
def command() -> None:
    """The response cache: answers of earlier runs, reused by later runs that ask the same thing."""


@command.command("info")
@_FOLDER
def info(folder: Path | None) -> None:
    """Where the cache is, how many answers it holds, for which adapters, and its size."""
    folder = _folder(folder)
    store = _store(folder)
    if store is None:
        click.echo(f"{folder}: empty (no answers stored yet)")
        return
    try:
        facts = store.info()
    finally:
        store.close()
    click.echo(f"{facts['path']}\n{facts['entries']} answers, {_human(facts['value_bytes'])} of answers, "
               f"{_human(facts['file_bytes'])} on disk; oldest {_when(facts['oldest'])}, "
               f"last used {_when(facts['last_used'])}")
    for adapter, count in facts["by_adapter"].items():
        click.echo(f"  {adapter}: {count}")


@command.command("prune")
@_FOLDER
@click.option("--unused-for", "unused_for", metavar="DURATION",
              help="drop answers no run has used for this long (30d, 12h, 2w)")
@click.option("--max-size", "max_size", metavar="SIZE",
              help="then drop the least recently used answers until they take at most SIZE (500MB, 2GB)")
def prune(folder: Path | None, unused_for: str | None, max_size: str | None) -> None:
    """Drop old answers: those unused for a while, and the least recently used beyond a size."""
    if unused_for is None and max_size is None:
        raise click.UsageError("say what to drop: --unused-for 30d and/or --max-size 2GB (or `cache clear`)")
    seconds = parse_duration(unused_for) if unused_for is not None else None
    limit = parse_size(max_size) if max_size is not None else None
    folder = _folder(folder)
    store = _store(folder)
    if store is None:
        click.echo(f"{folder}: empty, nothing to prune")
        return
    try:
        deleted = store.prune(unused_for_s=seconds, max_bytes=limit)
        facts = store.info()
    finally:
        store.close()
    click.echo(f"dropped {deleted} answers; {facts['entries']} left, {_human(facts['file_bytes'])} on disk")


@command.command("clear")
@_FOLDER
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
def clear(folder: Path | None, yes: bool) -> None:
    """Delete every stored answer (the next runs ask the model again)."""
    from ..run.response_cache import clear as clear_folder
    from ..run.response_cache import files_size

    folder = _folder(folder)
    size = files_size(folder)
    if size == 0:
        click.echo(f"{folder}: already empty")
        return
    if not yes:
        click.confirm(f"delete the response cache in {folder} ({_human(size)})?", abort=True)
    freed = clear_folder(folder)
    click.echo(f"deleted {folder} response cache ({_human(freed)})")
