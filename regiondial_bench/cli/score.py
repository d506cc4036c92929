"""``regiondial score``: re-score a prediction log without calling a model."""

from __future__ import annotations

from pathlib import Path

import click

from ._display import os_error, print_results


@click.command("score")
@click.argument("run", type=click.Path(exists=True, path_type=Path))
@click.option("--bench", "bench_spec", help="the bench the run used [default: the one recorded in run.json]")
@click.option("--images", type=click.Path(file_okay=False, path_type=Path), help="images for a question .json bench")
@click.option("--annotations", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="COCO instances JSON the question-file bench was loaded with (gold masks)")
@click.option("--partial", is_flag=True, help="score the answered turns of an unfinished run")
@click.option("--json", "as_json", is_flag=True, help="print results.json instead of the table")
def command(run, bench_spec, images, partial, as_json, annotations=None) -> None:
    """Re-score RUN (a run folder or its predictions.jsonl) and rewrite its results.json."""
    from .. import api

    try:
        bench = api.load_bench(bench_spec, images=images, annotations=annotations) if bench_spec else None
        results = api.score(run, bench=bench, images=images, partial=partial, annotations=annotations)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:  # RuntimeError: a broken or busy run folder
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:  # results.json could not be written: the old one is left as it was
        raise os_error(exc) from exc
    if as_json:
        click.echo(results.model_dump_json(indent=2))
    else:
        print_results(results)
