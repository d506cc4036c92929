"""``regiondial evaluate``: run a model on a bench and print the per-round table."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click
from pydantic import ValidationError

from ..schema import REFERENCE_MODES, RunConfig
from ._display import print_results


@click.command("evaluate")
@click.option("--bench", "bench_spec", default="sample", show_default=True,
              help="'sample', a bench folder, an exported Hub folder, hf:org/name, or an official question .json")
@click.option("--images", type=click.Path(file_okay=False, path_type=Path),
              help="image folder for an official question file (upstream or COCO train2014 layout)")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="run config YAML (adapter, adapter_options, mask_producer, reference_mode, batch_size)")
@click.option("--model", "adapter", help="adapter name (overrides the config's); see `regiondial adapters`")
@click.option("--preset", help="model preset for the hf/vllm/openai adapters (sets adapter_options.preset)")
@click.option("--model-path", help="checkpoint or served model name (sets adapter_options.model)")
@click.option("--reference-mode", type=click.Choice(REFERENCE_MODES), help="what fills reference placeholders")
@click.option("--masks", "mask_producer", help="mask producer: sam2, or box (box-as-mask, named so in results)")
@click.option("--batch-size", type=int, help="turns per adapter call")
@click.option("--limit", type=int, help="evaluate only the first N dialogues")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="run folder [default: runs/<adapter>-<reference mode>-<timestamp>]")
@click.option("--resume", is_flag=True, help="continue a killed run: finished turns are skipped")
@click.option("--overwrite", is_flag=True, help="discard an earlier run in --out")
@click.option("--bootstrap", "n_bootstrap", default=1000, show_default=True, help="bootstrap resamples for CIs")
@click.option("--no-progress", is_flag=True, help="no progress bar")
@click.option("--constrained/--unconstrained", default=None,
              help="decode under the preset's answer grammar (hf/vllm/openai; sets adapter_options.constrained)")
def command(bench_spec, images, config_file, adapter, preset, model_path, reference_mode, mask_producer,
            batch_size, limit, out_dir, resume, overwrite, n_bootstrap, no_progress, constrained) -> None:
    """Evaluate a model round by round, its own answers filling later references.

    \b
    Examples:
      regiondial evaluate --model reference-copy
      regiondial evaluate --config baselines/regionreasoner-7b/config.yaml --bench hf:org/regiondial
      regiondial evaluate --model oracle --bench refcocoplus.json --reference-mode upstream
    """
    from .. import api

    data: dict = {}
    if config_file is not None:
        try:
            data = api.load_run_config(config_file).model_dump(exclude_unset=True)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
    overrides = {"adapter": adapter, "reference_mode": reference_mode, "mask_producer": mask_producer,
                 "batch_size": batch_size, "limit": limit}
    data.update({k: v for k, v in overrides.items() if v is not None})
    options = dict(data.get("adapter_options", {}))
    if preset:
        options["preset"] = preset
    if model_path:
        options["model"] = model_path
    if constrained is not None:
        options["constrained"] = constrained
    data["adapter_options"] = options
    if "adapter" not in data:
        raise click.UsageError("name a model: --model NAME or --config FILE (try --model reference-copy)")
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise click.UsageError(f"invalid run configuration:\n{exc}") from exc
    if out_dir is None:
        if resume:
            raise click.UsageError("--resume needs --out: the folder of the run to continue")
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out_dir = Path("runs") / f"{config.adapter}-{config.reference_mode}-{stamp}"
    try:
        bench = api.load_bench(bench_spec, images=images)
        results = api.evaluate(bench, config, out_dir, bench_location=str(bench_spec), resume=resume,
                               overwrite=overwrite, progress=not no_progress, n_bootstrap=n_bootstrap)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    print_results(results)
    t = results.provenance.timings
    click.echo(f"{int(t['turns'])} turns in {t['run_s']:.2f}s (model {t['model_s']:.2f}s, "
               f"harness {t['harness_s']:.2f}s, scoring {t['score_s']:.2f}s) -> {out_dir}")
