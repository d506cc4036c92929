"""``regiondial view RUN [RUN2] --out DIR``: a static HTML viewer of one run or two side by side."""

from __future__ import annotations

from pathlib import Path

import click

from ._display import os_error


@click.command("view")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="folder for index.html, its data/ files and the downscaled images")
@click.option("--bench", "bench_spec", help="the bench the runs used [default: the one recorded in run.json]")
@click.option("--images", type=click.Path(file_okay=False, path_type=Path),
              help="images for a question .json bench (as given to evaluate --images)")
@click.option("--label", "labels", multiple=True, help="label per run, in order")
@click.option("--image-size", "max_image_side", type=click.IntRange(min=16, max=4096), default=512,
              show_default=True, help="longest side of the image copies, in pixels")
@click.option("--no-progress", is_flag=True, help="no progress bar")
def command(runs, out_dir, bench_spec, images, labels, max_image_side, no_progress) -> None:
    """Write DIR/index.html: every dialogue of RUN with its image, gold and predicted regions per
    round, the questions as asked and the raw answers; filters for misses, failures, rounds,
    wrong references and (with RUN2, same bench) the turns where the two runs differ. Open it
    from disk; keep it beside DIR/data/ (the turns, loaded a page at a time) and DIR/images/.

    \b
    Example:
      regiondial view runs/noisy-oracle-predicted runs/noisy-oracle-gold --out view/
    """
    from ..results.view import build_view

    if len(runs) > 2:
        raise click.UsageError(f"give one run, or two runs of the same bench; got {len(runs)}")
    try:
        bench = None
        if bench_spec or images:
            from ..bench.specs import SAMPLE_BENCH, load_bench
            from ..run.folder import load_run_spec

            if not bench_spec:  # --images alone: the recorded bench, with its pictures
                bench_spec = load_run_spec(runs[0]).bench_location or "sample"
                bench_spec = "sample" if bench_spec == str(SAMPLE_BENCH) else bench_spec
            bench = load_bench(bench_spec, images=images)
        index = build_view(runs, out_dir, bench=bench, labels=labels, max_image_side=max_image_side,
                           progress=not no_progress)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:  # RuntimeError: a broken run folder
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise os_error(exc) from exc
    click.echo(f"wrote {index} (open it in a browser: {index.resolve().as_uri()})")
