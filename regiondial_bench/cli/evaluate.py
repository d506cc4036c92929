"""``regiondial evaluate``: run a model on a bench and print the per-round table."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click
from pydantic import ValidationError

from ..schema import REFERENCE_MODES, RunConfig
from ._display import print_results


@click.command("evaluate")
@click.option("--bench", "bench_specs", multiple=True, default=("sample",), show_default=True,
              help="'sample', a bench folder, an exported Hub folder, hf:org/name, or an official question .json; "
                   "repeat for a sweep (one model load, one run folder per bench and mode under --out)")
@click.option("--images", type=click.Path(file_okay=False, path_type=Path),
              help="image folder for an official question file (upstream or COCO train2014 layout)")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="run config YAML (adapter, adapter_options, mask_producer, reference_mode, batch_size)")
@click.option("--model", "adapter", help="adapter name (overrides the config's); see `regiondial adapters`")
@click.option("--preset", help="model preset for the hf/vllm/openai adapters (sets adapter_options.preset)")
@click.option("--model-path", help="checkpoint or served model name (sets adapter_options.model)")
@click.option("--reference-mode", "reference_modes", multiple=True, type=click.Choice(REFERENCE_MODES),
              help="what fills reference placeholders; repeat for a sweep")
@click.option("--masks", "mask_producer", help="mask producer: sam2, or box (box-as-mask, named so in results)")
@click.option("--batch-size", type=int, help="turns per adapter call")
@click.option("--limit", type=int, help="evaluate only the first N dialogues")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="run folder [default: runs/<adapter>-<reference mode>-<timestamp>]")
@click.option("--resume", is_flag=True, help="continue a killed run: finished turns are skipped")
@click.option("--overwrite", is_flag=True, help="discard an earlier run in --out")
@click.option("--bootstrap", "n_bootstrap", default=1000, show_default=True, help="bootstrap resamples for CIs")
@click.option("--no-progress", is_flag=True, help="no progress bar")
@click.option("--shard", "shard_text", default="auto", show_default=True,
              help="I/N: evaluate shard I of N (merge the folders with `regiondial merge`); auto: the shard "
                   "of a torchrun/accelerate rank or SLURM array task, written to OUT/shard-I-of-N and merged "
                   "into OUT; none: the whole bench even under a launcher")
def command(bench_specs, images, config_file, adapter, preset, model_path, reference_modes, mask_producer,
            batch_size, limit, out_dir, resume, overwrite, n_bootstrap, no_progress, shard_text) -> None:
    """Evaluate a model round by round, its own answers filling later references.

    \b
    Examples:
      regiondial evaluate --model reference-copy
      regiondial evaluate --config baselines/regionreasoner-7b/config.yaml --bench hf:org/regiondial
      regiondial evaluate --model oracle --bench refcocoplus.json --reference-mode upstream
      regiondial evaluate --model oracle --shard 0/2 --out runs/s0   # then: regiondial merge runs/s0 runs/s1 --out runs/all
      torchrun --nproc-per-node 8 -m regiondial_bench.cli evaluate --config c.yaml --out runs/x
      regiondial evaluate --config c.yaml --bench a.json --bench b.json \\
          --reference-mode predicted --reference-mode gold --out runs/sweep
    """
    from .. import api

    data: dict = {}
    if config_file is not None:
        try:
            data = api.load_run_config(config_file).model_dump(exclude_unset=True)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
    overrides = {"adapter": adapter, "reference_mode": reference_modes[0] if reference_modes else None,
                 "mask_producer": mask_producer,
                 "batch_size": batch_size, "limit": limit}
    data.update({k: v for k, v in overrides.items() if v is not None})
    options = dict(data.get("adapter_options", {}))
    if preset:
        options["preset"] = preset
    if model_path:
        options["model"] = model_path
    data["adapter_options"] = options
    if "adapter" not in data:
        raise click.UsageError("name a model: --model NAME or --config FILE (try --model reference-copy)")
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise click.UsageError(f"invalid run configuration:\n{exc}") from exc
    modes = list(dict.fromkeys(reference_modes)) or [config.reference_mode]
    sweep = len(set(bench_specs)) * len(modes) > 1
    shard, launch = _shard_choice(shard_text)
    if out_dir is None:
        if resume:
            raise click.UsageError("--resume needs --out: the folder of the run to continue")
        if launch is not None:
            raise click.UsageError(f"under a launcher ({launch.describe()}) every rank needs the same --out folder")
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out_dir = Path("runs") / (f"sweep-{config.adapter}-{stamp}" if sweep else
                                  f"{config.adapter}-{config.reference_mode}-{stamp}")
    if launch is not None:
        click.echo(f"{launch.describe()}: writing {out_dir}/{launch.folder_name}", err=True)
    try:
        benches = [(api.load_bench(spec, images=images), str(spec)) for spec in dict.fromkeys(bench_specs)]
        runs = api.plan_sweep(benches, modes, out_dir)
        runs = api.evaluate_sweep(runs, config, shard=shard, launch=launch, resume=resume, overwrite=overwrite,
                                  progress=not no_progress, n_bootstrap=n_bootstrap,
                                  log=lambda message: click.echo(message, err=True))
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    for run in runs:
        if launch is not None and not run.merged:
            continue
        if sweep:
            click.echo(f"\n{run.bench.name} ({run.reference_mode}) -> {run.run_dir}")
        print_results(run.results)
        t = run.results.provenance.timings
        if run.merged:
            click.echo(f"{int(t['turns'])} turns from {int(t['shards'])} shards (slowest shard "
                       f"{t.get('run_s', 0.0):.2f}s) -> {run.run_dir}")
        else:
            click.echo(f"{int(t['turns'])} turns in {t['run_s']:.2f}s (model {t['model_s']:.2f}s, "
                       f"harness {t['harness_s']:.2f}s, scoring {t['score_s']:.2f}s) -> {run.run_dir}")


def _shard_choice(text: str):  # noqa: ANN202
    """``--shard``: ``(I, N)`` and no launch, or no shard and the launcher's rank (auto), or neither."""
    from ..shards import ShardError, detect_launch, parse_shard

    try:
        if text == "none":
            return None, None
        if text == "auto":
            return None, detect_launch()
        return parse_shard(text), None
    except ShardError as exc:
        raise click.UsageError(str(exc)) from exc
