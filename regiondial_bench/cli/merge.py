"""``regiondial merge SHARD_DIR... --out DIR``: join the shard folders of one run into one run folder."""

from __future__ import annotations

from pathlib import Path

import click

from ._display import os_error, print_results


@click.command("merge")
@click.argument("shard_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="the merged run folder (score, report, plot and submit read it like an unsharded run)")
@click.option("--bench", "bench_spec", help="the bench the shards used [default: the one recorded in their run.json]")
@click.option("--images", type=click.Path(file_okay=False, path_type=Path), help="images for a question .json bench")
@click.option("--overwrite", is_flag=True, help="replace another run in --out")
@click.option("--bootstrap", "n_bootstrap", type=int, help="bootstrap resamples [default: the shards']")
def command(shard_dirs, out_dir, bench_spec, images, overwrite, n_bootstrap) -> None:
    """Merge the shard folders of `evaluate --shard I/N` (all N of them) into --out and score it.

    The shards must come from the same bench and settings and cover every dialogue exactly once;
    a missing, duplicated or unfinished shard or dialogue is an error that names it. A folder that
    holds shard-I-of-N folders (a launched run's --out) stands for them.

    \b
    Example:
      regiondial evaluate --model oracle --shard 0/2 --out runs/s0
      regiondial evaluate --model oracle --shard 1/2 --out runs/s1
      regiondial merge runs/s0 runs/s1 --out runs/oracle
    """
    from .. import api

    try:
        bench = api.load_bench(bench_spec, images=images) if bench_spec else None
        results = api.merge(list(shard_dirs), out_dir, bench=bench, images=images, overwrite=overwrite,
                            n_bootstrap=n_bootstrap)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:  # RuntimeError: --out is held by a run
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise os_error(exc, "The shards are untouched") from exc
    print_results(results)
    t = results.provenance.timings
    click.echo(f"{int(t['turns'])} turns from {int(t['shards'])} shards -> {out_dir}")
