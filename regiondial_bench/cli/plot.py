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
    """Write plots of RUN folders into DIR (PNG and SVG, or each --format given); needs the plots
    extra (pip install 'regiondial-bench[plots]').

    Pass the same adapter run with --reference-mode predicted and gold to get the error-
    accumulation plot; conditional-accuracy and failure-breakdown plots need each run's
    predictions.jsonl. A folder of `evaluate --repeats` is drawn as its mean per round with a
    ±1 sd band and its consensus.

    \b
    Example:
      regiondial plot runs/noisy-pred runs/noisy-gold --out plots/ --format pdf
    """
    from ..results.plots import DEFAULT_FORMATS, plot_all
    from ..results.repeats import is_repeats_folder, load_repeats, plot_repeats
    from ._display import finished_runs

    kept = finished_runs(runs, "plot")
    if labels and len(kept) != len(runs):
        labels = tuple(label for run, label in zip(runs, labels, strict=False) if run in kept)
    label_of = dict(zip(kept, labels, strict=False)) if labels else {}
    repeat_dirs = [run for run in kept if is_repeats_folder(run)]
    kept = [run for run in kept if run not in repeat_dirs]
    try:
        loaded = load_runs(kept, tuple(label_of[run] for run in kept) if labels else ())
        groups = [load_repeats(path, label_of.get(path)) for path in repeat_dirs]
        mixed = mixed_bench_warning(loaded + [g.runs[0] for g in groups])
        if mixed:
            click.echo(mixed, err=True)
        formats = formats or DEFAULT_FORMATS
        written, skipped = plot_all(loaded, out_dir, formats) if loaded else ([], [])
        for metric in ("ap50", "giou"):
            if groups and any(g.mean_sd(metric, "R1")[0] is not None for g in groups):
                written += plot_repeats(groups, out_dir, metric, formats)
    except ImportError as exc:
        raise click.ClickException(f"{exc}") from exc
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    for path in written:
        click.echo(str(path))
    for reason in skipped:
        click.echo(f"skipped {reason}", err=True)
