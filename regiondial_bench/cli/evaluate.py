"""``regiondial evaluate``: run a model on a bench and print the per-round table."""

from __future__ import annotations

import math
import re
import shlex
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from pydantic import ValidationError

    from ..schema import RunConfig

# The module is imported for `regiondial evaluate --help`: everything heavier than click (pydantic,
# yaml, the schema, rich) is imported where it is used.
REFERENCE_MODES = ("predicted", "gold", "upstream")
"""The choices of --reference-mode: :data:`regiondial_bench.schema.REFERENCE_MODES` (a test keeps them equal)."""


@click.command("evaluate")
@click.option("--bench", "bench_specs", multiple=True,
              help="'sample' (the default), a bench or build folder, an exported Hub folder, hf:org/name, "
                   "hf:lmsdss/regionreasoner_test_data:refcocoplus, or an official question .json; "
                   "folders and hf: take :config[:split]; repeat for a sweep (one model load, one run folder "
                   "per bench and mode under --out) [with --resume: the bench recorded in run.json]")
@click.option("--images", type=click.Path(file_okay=False, path_type=Path),
              help="image folder for an official question file (upstream or COCO train2014 layout)")
@click.option("--annotations", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="COCO instances JSON: gold masks for an official question file's turns")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="run config YAML (adapter, adapter_options, mask_producer, reference_mode, batch_size)")
@click.option("--model", "adapter", help="adapter name (overrides the config's); see `regiondial adapters`")
@click.option("--preset", help="model preset for the hf/vllm/openai adapters (sets adapter_options.preset)")
@click.option("--model-path", help="checkpoint or served model name (sets adapter_options.model)")
@click.option("-o", "--option", "option_pairs", multiple=True, metavar="KEY=VALUE",
              help="adapter option, repeatable (VALUE is read as a YAML scalar: 8, 0.5, true, null, text); "
                   "e.g. -o squash_size=448 -o dtype=float16")
@click.option("--max-new-tokens", type=click.IntRange(min=1), help="generation budget (sets adapter_options.max_new_tokens)")
@click.option("--reference-mode", "reference_modes", multiple=True, type=click.Choice(REFERENCE_MODES),
              help="what fills reference placeholders; repeat for a sweep")
@click.option("--masks", "mask_producer", help="mask producer: sam2, or box (box-as-mask, named so in results)")
@click.option("--batch-size", type=int, help="turns per adapter call")
@click.option("--limit", type=int, help="evaluate only the first N dialogues")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="run folder [default: runs/<adapter>-<reference mode>-<timestamp>]")
@click.option("--resume", is_flag=True, help="continue a killed run: finished turns are skipped")
@click.option("--overwrite", is_flag=True, help="discard an earlier run in --out")
@click.option("--retry-infra", is_flag=True,
              help="with --resume: ask again the turns that failed for infrastructure reasons (and their dependents)")
@click.option("--bootstrap", "n_bootstrap", default=1000, show_default=True, help="bootstrap resamples for CIs")
@click.option("--no-progress", is_flag=True, help="no progress bar")
@click.option("--constrained/--unconstrained", default=None,
              help="decode under the preset's answer grammar (hf/vllm/openai; sets adapter_options.constrained)")
@click.option("--shard", "shard_text", default="auto", show_default=True,
              help="I/N: evaluate shard I of N (merge the folders with `regiondial merge`); auto: the shard "
                   "of a torchrun/accelerate rank or SLURM array task, written to OUT/shard-I-of-N and merged "
                   "into OUT; none: the whole bench even under a launcher")
@click.option("--repeats", type=click.IntRange(min=1), default=1, show_default=True,
              help="N sampled passes, repeat i seeded with --seed + i, each in OUT/repeat-<i>; OUT/repeats.json "
                   "holds the per-round mean, standard deviation and consensus (set a temperature, e.g. "
                   "-o temperature=0.7)")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="the seed sampling adapters draw from [with --repeats: default 0]")
@click.option("--no-cache", is_flag=True,
              help="use no cache: ask the model every turn (no answer reused from the response cache, none "
                   "stored) and import a question file again instead of reading the import cache")
@click.option("--cache-sampled", is_flag=True,
              help="also reuse sampled answers (temperature > 0) from the response cache; by default only greedy "
                   "answers are reused")
def command(bench_specs, images, config_file, adapter, preset, model_path, option_pairs, max_new_tokens,
            reference_modes, mask_producer, batch_size, limit, out_dir, resume, overwrite, n_bootstrap, no_progress,
            shard_text, annotations=None, retry_infra=False, constrained=None, repeats=1, seed=None, no_cache=False,
            cache_sampled=False) -> None:
    """Evaluate a model round by round, its own answers filling later references.

    \b
    Examples:
      regiondial evaluate --model reference-copy
      regiondial evaluate --config baselines/regionreasoner-7b/config.yaml --bench hf:org/regiondial
      regiondial evaluate --model oracle --bench refcocoplus.json --reference-mode upstream
      regiondial evaluate --model noisy-oracle -o error_rate=0.3 -o seed=2
      regiondial evaluate --out runs/my-run --resume        # adapter, options and bench from run.json
      regiondial evaluate --model oracle --shard 0/2 --out runs/s0   # then: regiondial merge runs/s0 runs/s1 --out runs/all
      torchrun --nproc-per-node 8 -m regiondial_bench.cli evaluate --config c.yaml --out runs/x
      regiondial evaluate --config c.yaml --bench a.json --bench b.json \\
          --reference-mode predicted --reference-mode gold --out runs/sweep
      regiondial evaluate --model noisy-oracle --repeats 5 --seed 0 --out runs/rep   # mean, sd, consensus
      regiondial evaluate --model oracle --bench refcocoplus    # a bench by name (regiondial bench list)
    """

    from .. import api
    from ..run.response_cache import ResponseCacheSettings
    from ._display import os_error

    config, bench_specs, repeats, seed = _run_config(
        bench_specs, config_file, adapter, preset, model_path, option_pairs, max_new_tokens, reference_modes,
        mask_producer, batch_size, limit, out_dir, resume, constrained, repeats, seed)
    if retry_infra and not resume:
        raise click.UsageError("--retry-infra continues a run: pass it with --resume --out DIR")
    seeds = None
    if repeats > 1:
        first = seed if seed is not None else (config.seed or 0)
        seeds = list(range(first, first + repeats))
    elif seed is not None:
        config = config.model_copy(update={"seed": seed})
    _check_names_early(config)
    for spec in bench_specs:
        _check_hub(config, spec)
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
        with _sigterm_interrupts():
            benches = [(api.load_bench(spec, images=images, annotations=annotations, cache=not no_cache,
                                       notice=lambda text: click.echo(text, err=True)), str(spec))
                       for spec in dict.fromkeys(bench_specs)]
            runs = api.plan_sweep(benches, modes, out_dir, seeds=seeds)
            runs = api.evaluate_sweep(runs, config, shard=shard, launch=launch, resume=resume, overwrite=overwrite,
                                      retry_infra=retry_infra,
                                      progress=not no_progress, n_bootstrap=n_bootstrap,
                                      log=lambda message: click.echo(message, err=True),
                                      response_cache=ResponseCacheSettings(enabled=not no_cache,
                                                                           cache_sampled=cache_sampled))
    except KeyboardInterrupt as exc:
        status, what = (143, "terminated") if isinstance(exc, Terminated) else (130, "interrupted")
        if sweep or launch is not None:
            click.echo(f"\n{what}: finished turns are saved under {out_dir}; run the same command "
                       "again with --resume to continue", err=True)
            raise SystemExit(status) from None
        _interrupted(out_dir, images, status, what)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:  # no space, read-only, permission denied, a file in the way
        saved = (out_dir / "run.json").is_file() if out_dir.is_dir() else False
        raise os_error(exc, "Finished turns are kept: run the same command with --resume once it is fixed"
                       if saved else "") from exc
    _print_runs(runs, out_dir, sweep=sweep, launch=launch)


def _run_config(bench_specs, config_file, adapter, preset, model_path, option_pairs, max_new_tokens,  # noqa: ANN202
                reference_modes, mask_producer, batch_size, limit, out_dir, resume, constrained, repeats, seed):
    """The validated run config of the command line: ``run.json`` when resuming without --model/--config,
    else the --config file, with the flags and ``-o`` options over it; also the bench specs, the number
    of repeats and the seed (a resumed repeats folder brings its own)."""
    from pydantic import ValidationError

    from .. import api
    from ..schema import RunConfig

    data: dict = {}
    cli_options = parse_option_pairs(option_pairs)
    if max_new_tokens is not None:
        cli_options["max_new_tokens"] = max_new_tokens
    if resume and out_dir is not None and config_file is None and adapter is None:
        recorded, recorded_repeats = _recorded_run(out_dir)
        if recorded is None:
            raise click.UsageError(_nothing_to_resume(out_dir))
        if recorded_repeats > 1 and repeats == 1:
            repeats = recorded_repeats
            seed = recorded.seed if seed is None else seed
        if recorded is not None:
            per_repeat = {"seed"} if recorded_repeats > 1 else set()  # each repeat's seed comes from --repeats
            data = recorded.model_dump(include=set(RunConfig.model_fields) - per_repeat)
            bench_specs = bench_specs or (recorded.bench_location or "sample",)
            click.echo(f"resuming {out_dir}: {recorded.adapter} ({recorded.reference_mode} references) on "
                       f"{', '.join(bench_specs)}, settings from run.json", err=True)
    bench_specs = bench_specs or ("sample",)
    if config_file is not None:
        try:
            data = api.load_run_config(config_file).model_dump(exclude_unset=True)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
    overrides = {"adapter": adapter, "reference_mode": reference_modes[0] if reference_modes else None,
                 "mask_producer": mask_producer,
                 "batch_size": batch_size, "limit": limit}
    config_adapter = data.get("adapter")
    data.update({k: v for k, v in overrides.items() if v is not None})
    options = dict(data.get("adapter_options", {}))
    if adapter and config_adapter and adapter != config_adapter and options:
        options = _drop_foreign_options(adapter, config_adapter, options)
    if preset:
        options["preset"] = preset
    if model_path:
        options["model"] = model_path
    merge_options(options, cli_options)
    if constrained is not None:
        options["constrained"] = constrained
    data["adapter_options"] = options
    if "adapter" not in data:
        raise click.UsageError("name a model: --model NAME or --config FILE (try --model noisy-oracle)")
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise click.UsageError(f"invalid run configuration: {one_line(exc)}") from exc
    return config, bench_specs, repeats, seed


def _print_runs(runs: list, out_dir: Path, *, sweep: bool, launch: Any) -> None:
    """Each finished run's table, cache line and timing line; the repeats summary; the infra warning."""
    from ._display import print_results

    for run in runs:
        if launch is not None and not run.merged:
            continue
        if sweep or run.repeat is not None:
            seeded = f", repeat {run.repeat}, seed {run.seed}" if run.repeat is not None else ""
            click.echo(f"\n{run.bench.name} ({run.reference_mode}{seeded}) -> {run.run_dir}")
        print_results(run.results)
        click.echo(_cache_line(run.results.provenance.response_cache))
        t = run.results.provenance.timings
        if run.merged:
            click.echo(f"{int(t['turns'])} turns from {int(t['shards'])} shards (slowest shard "
                       f"{t.get('run_s', 0.0):.2f}s) -> {run.run_dir}")
        else:
            click.echo(f"{int(t['turns'])} turns in {t['run_s']:.2f}s (model {t['model_s']:.2f}s, "
                       f"harness {t['harness_s']:.2f}s, scoring {t['score_s']:.2f}s) -> {run.run_dir}")
    _print_repeats(runs)
    infra = sum(run.results.failure_kinds.get("infra", 0) for run in runs if run.results is not None)
    if infra:
        click.echo(f"warning: {infra} turns failed for infrastructure reasons; once the server is healthy, "
                   f"run the same command with --resume --retry-infra (--out {out_dir}) to ask them again", err=True)


_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,3}")


def parse_option_pairs(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``-o KEY=VALUE`` pairs as a dict; VALUE is a YAML scalar (``8``, ``0.5``, ``true``, ``null``, text).

    A dotted KEY sets a nested option (``grammar.box_step=16`` is ``{"grammar": {"box_step": 16}}``).

    >>> parse_option_pairs(("squash_size=448", "dtype=float16", "trust_remote_code=true", "model="))
    {'squash_size': 448, 'dtype': 'float16', 'trust_remote_code': True, 'model': ''}
    >>> parse_option_pairs(("constrained=true", "grammar.box_step=16", "grammar.max_objects=4"))
    {'constrained': True, 'grammar': {'box_step': 16, 'max_objects': 4}}
    """
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not _KEY.fullmatch(key):
            raise click.BadParameter(f"expected KEY=VALUE with KEY a name like max_new_tokens (or grammar.box_step "
                                     f"for a nested option); got {pair[:80]!r}", param_hint="-o")
        import yaml

        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text  # not YAML: the literal text
        if isinstance(value, dict | list) or not isinstance(value, str | int | float | bool | type(None)):
            value = text  # only scalars: "[1, 2]" stays the text it is
        if isinstance(value, float) and not math.isfinite(value):
            raise click.BadParameter(f"{key}={text}: not a finite number", param_hint="-o")
        *parents, leaf = key.split(".")
        target = options
        for depth, part in enumerate(parents):
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise click.BadParameter(f"{key}: {'.'.join(parents[:depth + 1])} is given a value already",
                                         param_hint="-o")
        if leaf in target:
            raise click.BadParameter(f"option {key!r} is given twice", param_hint="-o")
        target[leaf] = value
    return options


def merge_options(options: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Apply ``-o`` options over a config's: nested mappings merge key by key, anything else replaces.

    >>> merge_options({"grammar": {"max_objects": 4}, "dtype": "bfloat16"}, {"grammar": {"box_step": 16}})
    {'grammar': {'max_objects': 4, 'box_step': 16}, 'dtype': 'bfloat16'}
    """
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(options.get(key), dict):
            options[key] = merge_options(dict(options[key]), value)
        else:
            options[key] = value
    return options


def _print_repeats(runs: list) -> None:
    """The mean, spread and consensus of each repeats folder the runs wrote."""
    from ..results.repeats import is_repeats_folder, load_repeats, repeats_table
    from ..results.report import render_terminal

    folders = list(dict.fromkeys(run.run_dir.parent for run in runs if run.repeat is not None))
    groups = [load_repeats(folder) for folder in folders if is_repeats_folder(folder)]
    if groups:
        click.echo("")
        render_terminal(repeats_table(groups))
        click.echo(f"-> {', '.join(str(g.path) for g in groups)} (regiondial report / plot take the folder)")


def _cache_line(record: dict[str, Any]) -> str:
    """One line on what the response cache did for a run."""
    if not record:
        return "response cache: not recorded"
    if not record.get("enabled"):
        return f"response cache: off ({record.get('reason', 'turned off')})"
    line = (f"response cache: {record.get('hits', 0)} answers reused, {record.get('misses', 0)} asked, "
            f"{record.get('stored', 0)} stored ({record.get('path', '')}; --no-cache to ask every turn)")
    if record.get("disabled_mid_run"):
        line += f"; turned off mid-run: {record['disabled_mid_run']}"
    return line


def _nothing_to_resume(out_dir: Path) -> str:
    """What to do when ``--resume --out DIR`` names a folder that holds no run."""
    where = "does not exist" if not out_dir.exists() else "holds no run.json"
    return (f"--resume continues a run, but {out_dir} {where}. Start the run there first: "
            f"regiondial evaluate --model NAME --out {out_dir} (then --resume --out {out_dir} continues it "
            "if it is interrupted); or pass --model/--config with --resume to start it if it is missing")


def one_line(exc: ValidationError) -> str:
    """A pydantic error as one line: ``field: message; field: message``."""
    from ..schema import validation_summary

    return validation_summary(exc, whole="value")


def _recorded_run(out_dir: Path):  # noqa: ANN202
    """The run spec recorded in ``out_dir`` (or its first repeat's) and the number of repeats; (None, 0) when none."""
    from ..api import REPEAT_FOLDER
    from ..run.folder import load_run_spec
    from ..schema import RUN_FILE

    folder, repeats = out_dir, 1
    if not (out_dir / RUN_FILE).is_file():
        folder = out_dir / REPEAT_FOLDER.format(index=0)
        if not (folder / RUN_FILE).is_file():
            return None, 0
        while (out_dir / REPEAT_FOLDER.format(index=repeats)).is_dir():
            repeats += 1
    try:
        return load_run_spec(folder), repeats
    except RuntimeError as exc:  # RunFolderError: names the file and the way out that keeps the predictions
        raise click.ClickException(str(exc)) from exc
    except (ValueError, OSError) as exc:
        raise click.ClickException(f"cannot resume {out_dir}: its {RUN_FILE} is unreadable ({exc})") from exc


def _drop_foreign_options(adapter: str, config_adapter: str, options: dict[str, Any]) -> dict[str, Any]:
    """The config's options that ``adapter`` takes; the others are dropped with a notice."""
    from ..adapters import AdapterError
    from ..adapters.registry import split_adapter_options

    try:
        kept, dropped = split_adapter_options(adapter, options)
    except AdapterError as exc:
        raise click.UsageError(str(exc)) from exc
    if dropped:
        click.echo(f"note: --model {adapter} does not take these options of the config's {config_adapter!r} "
                   f"adapter, dropped: {', '.join(dropped)}", err=True)
    return kept


def _check_names_early(config: RunConfig) -> None:
    """Unknown adapter, option or preset names fail here, before any heavy import."""
    from ..adapters import AdapterError
    from ..adapters.registry import check_adapter_options

    try:
        check_adapter_options(config.adapter, config.adapter_options)
        preset = config.adapter_options.get("preset")
        if isinstance(preset, str):
            from ..adapters.presets import get_preset

            get_preset(preset)
    except AdapterError as exc:
        raise click.UsageError(str(exc)) from exc
    if config.answer_parser == "upstream":
        from ..protocol import upstream_parser_problem

        problem = upstream_parser_problem(config.adapter_options.get("preset"))
        if problem:
            raise click.UsageError(problem)


def _check_hub(config: RunConfig, bench_spec: str) -> None:
    """Hub models and benches that cannot be had fail here in seconds, with one line."""
    from ..bench.hub_check import HubUnavailableError, check_hub_ids

    ids = []
    if config.adapter in ("hf", "vllm"):
        model = config.adapter_options.get("model")
        if model is None and isinstance(config.adapter_options.get("preset"), str):
            from ..adapters.presets import get_preset

            model = get_preset(config.adapter_options["preset"]).model
        if isinstance(model, str):
            ids.append((model, "model", "model"))
    if config.mask_producer == "sam2":
        sam = config.mask_producer_options.get("model", "facebook/sam2-hiera-large")
        if isinstance(sam, str):
            ids.append((sam, "model", "SAM2 checkpoint"))
    if bench_spec.startswith("hf:"):
        ids.append((bench_spec[3:].split(":")[0].split("@")[0], "dataset", "bench"))
    try:
        check_hub_ids(ids)
    except HubUnavailableError as exc:
        raise click.ClickException(str(exc)) from exc


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's kill, ``timeout``, ``docker stop``), handled as Ctrl-C: the finished
    turns are flushed and the resume command printed; exit status 143."""


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (as SIGINT raises
    KeyboardInterrupt), so the run closes its log and says how to continue."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupted(out_dir: Path, images: Path | None, status: int = 130, what: str = "interrupted") -> None:
    from ..schema import PREDICTIONS_FILE, RUN_FILE

    if not (out_dir / RUN_FILE).is_file():
        click.echo(f"\n{what} before the run started; nothing was saved", err=True)
        raise SystemExit(status)
    log = out_dir / PREDICTIONS_FILE
    saved = 0
    if log.is_file():
        with open(log, "rb") as f:
            saved = sum(1 for line in f if line.endswith(b"\n"))
    command = ["regiondial", "evaluate", "--out", str(out_dir), "--resume"]
    if images is not None:
        command += ["--images", str(images)]
    click.echo(f"\n{what}: {saved} turns are saved in {log}. Continue with:\n  {shlex.join(command)}", err=True)
    raise SystemExit(status)


def _shard_choice(text: str):  # noqa: ANN202
    """``--shard``: ``(I, N)`` and no launch, or no shard and the launcher's rank (auto), or neither."""
    from ..run.shards import ShardError, detect_launch, parse_shard

    try:
        if text == "none":
            return None, None
        if text == "auto":
            return None, detect_launch()
        return parse_shard(text), None
    except ShardError as exc:
        raise click.UsageError(str(exc)) from exc
