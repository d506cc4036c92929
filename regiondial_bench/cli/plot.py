"""``regiondial plot RUN... --out DIR``: per-round curves, error accumulation, conditional accuracy."""

from __future__ import annotations

from pathlib import Path

import click

from ..results.report import load_runs, mixed_bench_warning


@click.command("plot")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--label", "labels", multiple=True, help="Legend label per run, in order.")
@click.option("--format", "formats", multiple=True, type=click.Choice(["png", "svg", "pdf"]),
              help="File format(s), repeatable [default: png and svg].")
def command(runs: tuple[Path, ...], out_dir: Path, labels: tuple[str, ...], formats: tuple[str, ...]) -> None:
    """Write plots of RUN folders into DIR (PNG and SVG, or each --format given).

    Pass the same adapter run with --reference-mode predicted and gold to get the error-
    accumulation plot; conditional-accuracy and failure-breakdown plots need each run's
    predictions.jsonl.

    \b
    Example:
      regiondial plot runs/noisy-pred runs/noisy-gold --out plots/ --format pdf
    """
    from ..results.plots import DEFAULT_FORMATS, plot_all
    from ._display import finished_runs

    kept = finished_runs(runs, "plot")
    if labels and len(kept) != len(runs):
        labels = tuple(label for run, label in zip(runs, labels, strict=False) if run in kept)
    try:
        loaded = load_runs(kept, labels)
        mixed = mixed_bench_warning(loaded)
        if mixed:
            click.echo(mixed, err=True)
        written, skipped = plot_all(loaded, out_dir, formats or DEFAULT_FORMATS)
    except ImportError as exc:
        raise click.ClickException(f"{exc}") from exc
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    for path in written:
        click.echo(str(path))
    for reason in skipped:
        click.echo(f"skipped {reason}", err=True)
