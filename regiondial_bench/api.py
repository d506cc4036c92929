"""The public verbs: load a bench, evaluate an adapter on it, re-score a run.

The CLI is a thin layer over these functions.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import yaml
from pydantic import ValidationError

from . import __version__
from .adapters import Adapter, create_adapter, get_adapter_class
from .adapters.registry import adapter_option_names
from .bench.specs import SAMPLE_BENCH, is_bench_name, load_bench, split_bench_spec
from .metrics import MAX_RESAMPLES, score_records, summarize_repeats
from .protocol import upstream_parser_problem
from .run.folder import RunLock, atomic_write, load_run_spec, read_predictions
from .run.response_cache import ResponseCacheSettings, open_for_run
from .run.runner import AllInfraFailedError, Runner, frozen_gc
from .run.segment import MaskProducer, create_mask_producer
from .run.shards import Launch
from .schema import (
    PREDICTIONS_FILE,
    REPEATS_FILE,
    RESULTS_FILE,
    Bench,
    PredictionRecord,
    Provenance,
    RepeatsSummary,
    Results,
    RunConfig,
    RunSpec,
    read_prediction_log,
    validation_summary,
)

_REPORTED_PACKAGES = ("numpy", "pycocotools", "pydantic", "torch", "transformers", "vllm", "datasets", "trl")


MAX_CONFIG_BYTES = 1_000_000
MAX_CONFIG_DEPTH = 100  # PyYAML's time grows with the square of the bracket depth


def _flow_depth(text: str) -> int:
    """The deepest ``[``/``{`` nesting of ``text`` (quotes ignored: an upper bound, in linear time)."""
    depth = deepest = 0
    for char in re.sub(r"[^\[\]{}]+", "", text):
        depth = depth + 1 if char in "[{" else max(depth - 1, 0)
        deepest = max(deepest, depth)
    return deepest


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` without aliases: ``*name`` references let a few lines expand into a
    structure whose validation takes exponential time (a "billion laughs" config)."""

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"aliases (*{event.anchor}) are not allowed in a run config "
                                 f"(line {event.start_mark.line + 1})")
        return super().compose_node(parent, index)


def load_run_config(path: str | Path) -> RunConfig:
    """Read a run config YAML (``adapter``, ``adapter_options``, ``reference_mode``, ...)."""
    try:
        text = Path(path).read_bytes()
        if len(text) > MAX_CONFIG_BYTES:
            raise ValueError(f"{path}: a run config is at most {MAX_CONFIG_BYTES} bytes, this one has {len(text)}")
        source = text.decode("utf-8")
        if _flow_depth(source) > MAX_CONFIG_DEPTH:
            raise ValueError(f"{path}: the YAML is nested too deeply to be a run config "
                             f"(more than {MAX_CONFIG_DEPTH} brackets)")
        data = yaml.load(source, Loader=_ConfigLoader) or {}  # noqa: S506 (a SafeLoader)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text: {exc}") from exc
    except RecursionError as exc:
        raise ValueError(f"{path}: the YAML is nested too deeply to be a run config") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a run config is a YAML mapping with at least 'adapter'")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{path}: invalid run config ({validation_summary(exc, whole='(top level)')})") from exc


def git_revision() -> str | None:
    """The checkout's revision (``git describe --always --dirty``), when run from a git checkout."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def package_versions() -> dict[str, str]:
    versions = {}
    for name in _REPORTED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def make_provenance(spec: RunSpec, adapter_config: dict | None = None, mask_config: dict | None = None,
                    timings: dict[str, float] | None = None) -> Provenance:
    return Provenance(
        bench_name=spec.bench_name,
        bench_hash=spec.bench_hash,
        bench_location=spec.bench_location,
        adapter=spec.adapter,
        adapter_config=adapter_config if adapter_config is not None else spec.adapter_options,
        reference_mode=spec.reference_mode,
        parser=spec.parser,
        mask_producer=spec.mask_producer,
        mask_producer_config=mask_config if mask_config is not None else spec.mask_producer_options,
        batch_size=spec.batch_size,
        limit=spec.limit,
        seed=spec.seed,
        package_version=__version__,
        packages=package_versions(),
        git_revision=git_revision(),
        python=sys.version.split()[0],
        platform=platform.platform(),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        timings=timings or {},
    )


def _recorded_working_dir(out_dir: str | Path) -> str:
    """A resumed run keeps the working directory recorded in its run.json (empty for runs made
    before it was recorded, so that their settings still match)."""
    try:
        return load_run_spec(Path(out_dir)).working_dir
    except (OSError, ValueError):
        return os.getcwd()


def resolve_recorded_bench(spec: RunSpec, run_dir: Path) -> str:
    """The bench spec recorded in ``run.json``, a relative path resolved against the run's
    recorded working directory (not the current one).

    Raises:
        FileNotFoundError: The recorded bench is not there any more (the message says how to
            pass ``--bench``).
    """
    location = spec.bench_location or "sample"
    if location == str(SAMPLE_BENCH) or location == "sample" or location.startswith("hf:"):
        return "sample" if location == str(SAMPLE_BENCH) else location
    if is_bench_name(location):  # a registered name (--bench refcocoplus): looked up again, hash checked
        return location
    text, selectors = split_bench_spec(location)
    path = Path(text)
    if not path.is_absolute() and spec.working_dir:
        path = Path(spec.working_dir) / path
    if not path.exists():
        where = f" (relative to the run's working directory {spec.working_dir})" if spec.working_dir and \
            not Path(text).is_absolute() else ""
        raise FileNotFoundError(
            f"the bench the run used, {location!r}{where}, is not there any more; pass it with "
            f"'regiondial score {run_dir} --bench PATH' (bench {spec.bench_name}, hash {spec.bench_hash})"
        )
    return ":".join([str(path), *selectors])


def _limited(bench: Bench, limit: int | None) -> Bench:
    if limit is None or limit >= len(bench):
        return bench
    return Bench(bench.dialogues[:limit], name=bench.name, version=bench.version, root=bench.root,
                 source=bench.source, issues=bench.issues, image_files=bench.image_files)


def evaluate(
    bench: Bench,
    config: RunConfig,
    out_dir: str | Path,
    *,
    bench_location: str = "",
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    n_bootstrap: int = 1000,
    shard: tuple[int, int] | None = None,
    device: str | None = None,
    adapter: Adapter | None = None,
    mask_producer: MaskProducer | None = None,
    retry_infra: bool = False,
    response_cache: ResponseCacheSettings | None = None,
) -> Results:
    """Run ``config.adapter`` on ``bench`` and write ``run.json``, ``predictions.jsonl``, ``results.json``.

    The run's spec records the *full* bench's hash; ``config.limit`` evaluates the first N
    dialogues only (the results then cover those). The run folder is locked for the whole call.

    Args:
        shard: ``(I, N)``: evaluate shard I of N of the (limited) bench (see
            :func:`regiondial_bench.run.shards.split_dialogues`); ``run.json`` records it.
        device: a device for adapters that take one (``cuda:LOCAL_RANK`` under a launcher),
            unless the adapter options name one; not part of the run's settings.
        adapter: an adapter already built (a sweep shares one); it is not closed here.
        mask_producer: a mask producer already built (shared like ``adapter``).
        retry_infra: with ``resume``, ask again the turns that failed for infrastructure reasons.
        response_cache: whether and where answers are reused across runs (default: on, in the user
            cache; see :mod:`regiondial_bench.run.response_cache`); ``results.json`` records the hits.

    Raises:
        ValueError: the bench has no turns.
        RunFolderError: ``out_dir`` holds another run, or another process is using it.
        AllInfraFailedError: every turn failed for infrastructure reasons (no ``results.json``
            is written; fix the server and pass ``resume=True, retry_infra=True``).
    """
    start = time.perf_counter()
    run_bench = _limited(bench, config.limit)
    shard_info = None
    if shard is not None:
        from .run.shards import shard_info as make_shard_info
        from .run.shards import subset

        shard_info = make_shard_info(run_bench, *shard)
        run_bench = subset(run_bench, shard_info.dialogue_ids)
    spec = RunSpec(**config.model_dump(), bench_name=bench.name, bench_hash=bench.content_hash,
                   bench_location=bench_location or str(bench.root or ""), shard=shard_info,
                   working_dir=_recorded_working_dir(out_dir) if resume else os.getcwd())
    if run_bench.num_turns == 0:
        raise ValueError(f"bench {bench.name!r} ({bench_location or bench.root or 'in memory'}) has no turns to "
                         f"evaluate ({len(bench.issues)} import issues; see `regiondial bench validate`)")
    from .bench.validation import blocking_problem

    problem = blocking_problem(bench, bench_location)
    if problem is None and spec.parser == "upstream":
        problem = upstream_parser_problem(config.adapter_options.get("preset"))
    if problem is not None:  # an error `bench validate` reports, or a parser that cannot read this model
        raise ValueError(problem)
    with RunLock(out_dir), frozen_gc():
        return _evaluate_locked(run_bench, config, spec, out_dir, start, resume=resume, overwrite=overwrite,
                                progress=progress, n_bootstrap=n_bootstrap, retry_infra=retry_infra,
                                device=device, adapter=adapter, mask_producer=mask_producer,
                                response_cache=response_cache)


def _evaluate_locked(run_bench: Bench, config: RunConfig, spec: RunSpec, out_dir: str | Path, start: float, *,
                     resume: bool, overwrite: bool, progress: bool, n_bootstrap: int, retry_infra: bool,
                     device: str | None, adapter: Adapter | None, mask_producer: MaskProducer | None,
                     response_cache: ResponseCacheSettings | None) -> Results:
    owned = adapter is None
    if adapter is None:
        adapter = create_run_adapter(config, device)
    if config.seed is not None:
        adapter.reseed(config.seed)
    producer = mask_producer
    if producer is None and config.mask_producer:
        producer = create_mask_producer(config.mask_producer, **config.mask_producer_options)
    cached, cache_record = open_for_run(adapter, response_cache, config.adapter)
    runner = Runner(run_bench, cached or adapter, spec, out_dir, mask_producer=producer, progress=progress)
    try:
        records = runner.run(resume=resume, overwrite=overwrite, retry_infra=retry_infra)
    finally:
        if cached is not None:
            cache_record = cached.finish()
        if owned:
            adapter.close()
    infra = [r for r in records if r.failure_kind == "infra"]
    if records and len(infra) == len(records):
        raise AllInfraFailedError(
            f"all {len(records)} turns failed for infrastructure reasons (first: {infra[0].error}); nothing was "
            f"scored. Fix the server or backend, then run the same command with --resume --retry-infra --out {out_dir}"
        )
    wall = time.perf_counter() - start
    score_start = time.perf_counter()
    provenance = make_provenance(spec, adapter.config() or config.adapter_options,
                                 producer.config() if producer else None)
    results = with_frame_check(score_records(run_bench, records, provenance=provenance, n_bootstrap=n_bootstrap),
                               run_bench, records, spec)
    timings = {
        "run_s": round(wall, 3),
        "model_s": round(runner.model_seconds, 3),
        "mask_s": round(runner.mask_seconds, 3),
        "harness_s": round(max(wall - runner.model_seconds - runner.mask_seconds, 0.0), 3),
        "score_s": round(time.perf_counter() - score_start, 3),
        "turns": float(run_bench.num_turns),
    }
    provenance = results.provenance.model_copy(update={"timings": timings, "response_cache": cache_record})
    results = results.model_copy(update={"provenance": provenance})
    write_results(results, Path(out_dir))
    return results


def with_frame_check(results: Results, bench: Bench, records: Sequence[PredictionRecord], spec: RunSpec) -> Results:
    """``results`` with the run's coordinate-frame diagnostic (:mod:`regiondial_bench.frames`) added;
    the scores are unchanged."""
    from .adapters.options import run_frames
    from .frames import check_frames

    declared, frames = run_frames(spec.adapter, spec.adapter_options)
    return results.model_copy(update={"frame_check": check_frames(bench, records, declared, frames)})


def write_results(results: Results, run_dir: Path) -> None:
    """``run_dir/results.json``, replaced atomically (a full disk or a kill leaves the old file, never a torn one)."""
    atomic_write(run_dir / RESULTS_FILE, results.model_dump_json(indent=2) + "\n")


def recorded_provenance(run_dir: Path, spec: RunSpec) -> Provenance:
    """The provenance to score a run folder with: the run's settings, and how the run was made (adapter
    and mask producer options as the adapter reported them, timings, response-cache counts) from its
    ``results.json`` when that describes this run; re-scoring keeps them (``plot`` pairs runs by their
    adapter options)."""
    provenance = make_provenance(spec)
    try:
        previous = Results.read(run_dir / RESULTS_FILE).provenance
    except (OSError, ValueError, RecursionError):
        return provenance
    same_run = (previous.adapter, previous.bench_hash, previous.reference_mode, previous.mask_producer) == (
        spec.adapter, spec.bench_hash, spec.reference_mode, spec.mask_producer)
    if not same_run:
        return provenance
    return provenance.model_copy(update={"adapter_config": previous.adapter_config,
                                         "mask_producer_config": previous.mask_producer_config,
                                         "timings": previous.timings,
                                         "response_cache": previous.response_cache})


def score(
    run_dir: str | Path,
    *,
    bench: Bench | None = None,
    images: str | Path | None = None,
    partial: bool = False,
    n_bootstrap: int = 1000,
    write: bool = True,
    annotations: str | Path | None = None,
) -> Results:
    """Re-score a run folder's prediction log without calling a model.

    Args:
        run_dir: the run folder (``run.json`` + ``predictions.jsonl``); a path to the log itself works too.
        bench: the bench; defaults to the location recorded in ``run.json``.
        partial: score only the answered turns of an unfinished run.

    The run's provenance is kept (:func:`recorded_provenance`); ``results.json`` is replaced atomically.
    """
    run_dir = Path(run_dir)
    if run_dir.is_file():
        run_dir = run_dir.parent
    spec = load_run_spec(run_dir)
    if bench is None:
        bench = load_bench(resolve_recorded_bench(spec, run_dir), images=images, annotations=annotations)
    if bench.content_hash != spec.bench_hash:
        raise ValueError(
            f"the bench at {spec.bench_location or 'the given path'} has hash {bench.content_hash}, "
            f"but the run was made on {spec.bench_hash}; pass the bench the run used with --bench "
            "(and the --images/--annotations it was loaded with)"
        )
    bench = _limited(bench, spec.limit)
    if spec.shard is not None:
        from .run.shards import subset

        bench = subset(bench, spec.shard.dialogue_ids)
    log = run_dir / PREDICTIONS_FILE
    if partial:
        records = read_predictions(log)  # an unfinished run: a torn last line is expected (reported)
    else:
        if not log.is_file():
            raise FileNotFoundError(f"{run_dir} has no {PREDICTIONS_FILE}: the run answered no turn yet")
        records = read_prediction_log(log, strict=True)  # every unreadable line is an error naming its line
    with frozen_gc():  # the bench and the records stay alive while they are scored
        results = score_records(bench, records, provenance=recorded_provenance(run_dir, spec),
                                n_bootstrap=n_bootstrap, require_complete=not partial)
        results = with_frame_check(results, bench, records, spec)
    if write and not partial:
        with RunLock(run_dir):  # not while a run is still writing this folder
            write_results(results, run_dir)
    return results


def _takes_device(config: RunConfig) -> bool:
    """Whether the adapter is placed by a ``device`` option (or its options place it already)."""
    if "device" in config.adapter_options or "device_map" in config.adapter_options:
        return True
    return "device" in (adapter_option_names(get_adapter_class(config.adapter)) or ())


def create_run_adapter(config: RunConfig, device: str | None = None) -> Adapter:
    """Build ``config.adapter``; ``device`` goes to adapters that take a ``device`` option, unless
    ``adapter_options`` already names a device (or a ``device_map``)."""
    options = dict(config.adapter_options)
    if device is not None and "device" not in options and "device_map" not in options \
            and "device" in (adapter_option_names(get_adapter_class(config.adapter)) or ()):
        options["device"] = device
    return create_adapter(config.adapter, **options)


def create_run_mask_producer(config: RunConfig, device: str | None = None) -> MaskProducer | None:
    """Build ``config.mask_producer`` (None without one); ``device`` as for :func:`create_run_adapter`."""
    if not config.mask_producer:
        return None
    options = dict(config.mask_producer_options)
    if device is not None and "device" not in options:
        import inspect

        from .run.segment import _PRODUCERS, _load_optional

        _load_optional()
        cls = _PRODUCERS.get(config.mask_producer)
        if cls is not None and "device" in inspect.signature(cls).parameters:
            options["device"] = device
    return create_mask_producer(config.mask_producer, **options)


def _bench_of_run(spec: RunSpec, images: str | Path | None) -> Bench:
    location = spec.bench_location or "sample"
    if location == str(SAMPLE_BENCH):
        location = "sample"
    return load_bench(location, images=images)


def merge(
    shard_dirs: list[str | Path],
    out_dir: str | Path,
    *,
    bench: Bench | None = None,
    images: str | Path | None = None,
    overwrite: bool = False,
    n_bootstrap: int | None = None,
) -> Results:
    """Merge the run folders of all shards of one run into ``out_dir`` and score the merge.

    The shards must come from the same bench and settings and together answer every turn exactly
    once (:func:`regiondial_bench.run.shards.check_shards`: a log answering a turn twice is refused,
    as ``score`` refuses it), and every record must derive from the bench (its question re-rendered,
    its regions re-read from its raw text: :mod:`regiondial_bench.run.rederive`). The shards are
    locked while they are read, ``out_dir`` while it is written (a folder a running ``evaluate``
    holds is refused), and ``out_dir`` may not be one of the shards. The merged folder's
    ``run.json`` has no shard, so ``score``, ``report``, ``plot`` and ``submit`` read it as an
    unsharded run.

    Args:
        shard_dirs: the shard folders (a folder holding ``shard-I-of-N`` children stands for them).
        bench: the bench; defaults to the location recorded in the shards' ``run.json``.
        n_bootstrap: bootstrap resamples; default: the shards' (from their ``results.json``).
    """
    from contextlib import ExitStack

    from .run.shards import check_output, expand_shard_dirs

    folders = expand_shard_dirs(shard_dirs)
    check_output(out_dir, folders)
    with ExitStack() as held:
        for folder in folders:  # no shard is read while a run still writes it
            if Path(folder).is_dir():
                held.enter_context(RunLock(folder))
        return _merge_locked(folders, out_dir, bench, images, overwrite, n_bootstrap)


def _merge_locked(folders: list[Path], out_dir: str | Path, bench: Bench | None, images: str | Path | None,
                  overwrite: bool, n_bootstrap: int | None) -> Results:
    from .run.rederive import RunRules, check_log
    from .run.shards import (
        ShardError,
        check_shards,
        merged_records,
        merged_spec,
        read_shard,
        write_merged_folder,
    )

    shards = [read_shard(p) for p in folders]
    if not shards:
        raise ShardError("no shard folders given")
    spec = merged_spec(shards)
    if bench is None:
        bench = _bench_of_run(spec, images)
    full = _limited(bench, spec.limit)
    check_shards(shards, full, bench.content_hash)
    records = merged_records(shards, full)
    problems = check_log(full, records, RunRules.of(spec)).problems("merged record(s)")
    if problems:  # merge applies the rules a validator applies: nothing it cannot re-derive is merged
        raise ShardError(f"the shards' logs do not derive from bench {full.name!r}: " + "; ".join(problems))
    shard_results = []
    for s in shards:
        try:
            shard_results.append(Results.read(s.folder / RESULTS_FILE))
        except (OSError, ValueError):
            shard_results.append(None)
    first = next((r for r in shard_results if r is not None), None)
    boot = (first.provenance.bootstrap if first is not None else {}) or {}
    resamples = n_bootstrap if n_bootstrap is not None else boot.get("resamples", 1000)
    seed = boot.get("seed", 0)
    if not isinstance(resamples, int) or not 0 <= resamples <= MAX_RESAMPLES or not isinstance(seed, int):
        raise ShardError(f"bootstrap settings in the shards' results.json are invalid (resamples={resamples!r}, "
                         f"seed={seed!r}); pass --bootstrap N (0..{MAX_RESAMPLES})")
    provenance = make_provenance(spec, first.provenance.adapter_config if first else None,
                                 first.provenance.mask_producer_config if first else None)
    results = with_frame_check(score_records(full, records, provenance=provenance, n_bootstrap=resamples, seed=seed),
                               full, records, spec)
    timings = [r.provenance.timings for r in shard_results if r is not None]
    merged_timings = {"shards": float(len(shards)), "turns": float(full.num_turns)}
    if timings:
        merged_timings["run_s"] = max(t.get("run_s", 0.0) for t in timings)
        for key in ("model_s", "mask_s", "harness_s"):
            merged_timings[f"{key[:-2]}_sum_s"] = round(sum(t.get(key, 0.0) for t in timings), 3)
    caches = [r.provenance.response_cache for r in shard_results if r is not None and r.provenance.response_cache]
    cache_record = {"enabled": any(c.get("enabled") for c in caches),
                    **{k: sum(int(c.get(k, 0)) for c in caches) for k in ("hits", "misses", "stored", "unusable")},
                    "shards": len(caches)} if caches else {}
    update = {"timings": merged_timings, "response_cache": cache_record}
    results = results.model_copy(update={"provenance": results.provenance.model_copy(update=update)})
    with RunLock(out_dir):  # not into a folder that a running evaluate (or another merge) holds
        write_merged_folder(out_dir, spec, records, shard_dirs=[s.folder for s in shards], overwrite=overwrite)
        write_results(results, Path(out_dir))
    return results


@dataclass
class SweepRun:
    """One (bench, reference mode) run of a sweep: its folder, and its results once known.

    ``results`` is the merged run's under a launcher when this process merged it, the run's
    own otherwise; ``shard_dir`` is the folder this process wrote when sharded.
    """

    bench: Bench
    bench_location: str
    reference_mode: str
    run_dir: Path
    shard_dir: Path | None = None
    results: Results | None = None
    merged: bool = False
    seed: int | None = None  # the run's sampling seed (a repeat of --repeats), None: the config's
    repeat: int | None = None  # the repeat index under a repeats folder (``repeat-<i>``)


def sweep_folder_name(bench: Bench, mode: str) -> str:
    """``<bench name>-<reference mode>``, safe as a folder name."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", bench.name).strip(".-") or "bench"
    return f"{name}-{mode}"


REPEAT_FOLDER = "repeat-{index}"
"""The run folder of repeat ``index`` under a repeats folder (``evaluate --repeats N``)."""


def plan_sweep(benches: Sequence[tuple[Bench, str]], modes: Sequence[str], out_dir: str | Path,
               seeds: Sequence[int] | None = None) -> list[SweepRun]:
    """One :class:`SweepRun` per (bench, mode, seed); a single run uses ``out_dir`` itself.

    Args:
        seeds: one run per seed (``--repeats N --seed S``: ``S .. S+N-1``), each in
            ``<run folder>/repeat-<i>``, the run folder holding their ``repeats.json``; a single
            seed is one run with that seed.
    """
    out_dir = Path(out_dir)
    seeds = list(seeds) if seeds else [None]
    single = len(benches) * len(modes) == 1
    runs, used = [], set()
    for bench, location in benches:
        for mode in modes:
            name = sweep_folder_name(bench, mode)
            k = 2
            while name in used:
                name = f"{sweep_folder_name(bench, mode)}-{k}"
                k += 1
            used.add(name)
            folder = out_dir if single else out_dir / name
            for index, seed in enumerate(seeds):
                if len(seeds) == 1:
                    runs.append(SweepRun(bench, location, mode, folder, seed=seed))
                else:
                    runs.append(SweepRun(bench, location, mode, folder / REPEAT_FOLDER.format(index=index),
                                         seed=seed, repeat=index))
    return runs


def evaluate_sweep(
    runs: Sequence[SweepRun],
    config: RunConfig,
    *,
    shard: tuple[int, int] | None = None,
    launch: Launch | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    n_bootstrap: int = 1000,
    retry_infra: bool = False,
    log: Callable[[str], None] = lambda message: None,
    response_cache: ResponseCacheSettings | None = None,
) -> list[SweepRun]:
    """Evaluate every planned run with one adapter and one mask producer instance.

    Args:
        runs: from :func:`plan_sweep`.
        config: the run settings; each run overrides ``reference_mode``.
        shard: ``(I, N)``: every run evaluates that shard, in its own folder.
        launch: a launched rank (:func:`regiondial_bench.run.shards.detect_launch`): every run
            writes ``RUN/shard-I-of-N/`` and is merged into ``RUN`` by rank 0 after a barrier
            (torchrun) or by the last shard to finish (no process group).
        log: receives one line per finished shard or merge.
        response_cache: as for :func:`evaluate`.

    Repeats (runs with a ``repeat`` index) get their ``seed``; once all repeats of a run folder are
    scored, its ``repeats.json`` is written (:func:`write_repeats`).
    """
    from .run.shards import ShardError, open_process_group, shard_folder_name, shards_complete

    group = open_process_group(launch)
    if launch is not None:
        shard = (launch.index, launch.count)
    device = launch.device() if launch is not None else None
    if device is not None and not _takes_device(config):
        log(f"warning: adapter {config.adapter!r} takes no device, so it uses the GPUs this process sees; "
            "give each rank its own with CUDA_VISIBLE_DEVICES (docs/adapters.md, 'Scale-out')")
    adapter = create_run_adapter(config, device)
    producer = create_run_mask_producer(config, device)
    if any(run.repeat is not None for run in runs) and not adapter.samples:
        log(f"warning: adapter {config.adapter!r} decodes greedily, so its repeats will be identical; sample "
            "with -o temperature=0.7 (hf, vllm, openai)")
    try:
        for run in runs:
            run.shard_dir = run.run_dir / launch.folder_name if launch is not None else None
            target = run.shard_dir or run.run_dir
            update = {"reference_mode": run.reference_mode, **({"seed": run.seed} if run.seed is not None else {})}
            run.results = evaluate(run.bench, config.model_copy(update=update),
                                   target, bench_location=run.bench_location, resume=resume, overwrite=overwrite,
                                   progress=progress, n_bootstrap=n_bootstrap, shard=shard, adapter=adapter,
                                   mask_producer=producer, retry_infra=retry_infra, response_cache=response_cache)
            if launch is not None:
                log(f"{launch.describe()} of {run.run_dir} finished -> {target}")
    finally:
        adapter.close()
    if launch is None:
        _write_all_repeats(runs, log, complete=lambda run: run.results is not None)
        return list(runs)
    if group is not None:
        group.barrier()  # every shard of every run is written
    # the group holds every shard under torchrun alone; with torchrun inside SLURM array tasks it
    # holds one task's shards, and the other tasks' are merged by whichever task finishes last
    whole_job = group is not None and launch.source == "torchrun"
    try:
        for run in runs:
            if group is not None and group.rank != 0:
                continue
            if not whole_job and not shards_complete(run.run_dir, launch.count):
                log(f"{run.run_dir}: other shards still running; the last one to finish merges")
                continue
            try:
                folders = [run.run_dir / shard_folder_name(i, launch.count) for i in range(launch.count)]
                run.results = merge(folders, run.run_dir, bench=run.bench, n_bootstrap=n_bootstrap)
                run.merged = True
                how = "rank 0 after a barrier" if whole_job else "the last shard to finish"
                log(f"merged {launch.count} shards into {run.run_dir} ({how})")
            except ShardError as exc:
                if whole_job:
                    raise
                log(f"{run.run_dir}: not merged yet ({exc})")
        _write_all_repeats(runs, log, complete=lambda run: run.merged)
    finally:
        if group is not None:
            group.barrier()  # no rank leaves before rank 0 has merged
            group.close()
    return list(runs)


def _write_all_repeats(runs: Sequence[SweepRun], log: Callable[[str], None],
                       complete: Callable[[SweepRun], bool]) -> None:
    groups: dict[Path, list[SweepRun]] = {}
    for run in runs:
        if run.repeat is not None:
            groups.setdefault(run.run_dir.parent, []).append(run)
    for folder, members in groups.items():
        if not all(complete(m) for m in members):
            continue  # another process merges the rest (a SLURM array): not all repeats are scored here
        summary = write_repeats(folder, members[0].bench, [m.run_dir for m in members])
        log(f"{len(members)} repeats -> {folder / REPEATS_FILE} (AP50 {summary.overall.ap50_mean:.1f} "
            f"± {summary.overall.ap50_sd or 0.0:.1f}, consensus {summary.overall.ap50_consensus:.1f})")


def write_repeats(folder: str | Path, bench: Bench, run_dirs: Sequence[str | Path]) -> RepeatsSummary:
    """Score the repeats of one evaluation together and write ``folder/repeats.json``.

    Per round: each repeat's AP50 (and gIoU), their mean and sample standard deviation, the
    consensus AP50 (turns a majority of the repeats hit) and the agreement (turns every repeat
    scores alike). Every repeat must be finished and on ``bench``.
    """
    folder = Path(folder)
    records, specs = [], []
    for run_dir in run_dirs:
        spec = load_run_spec(Path(run_dir))
        if spec.bench_hash != bench.content_hash:
            raise ValueError(f"{run_dir} was run on {spec.bench_hash}, not {bench.content_hash}")
        specs.append(spec)
        records.append(read_prediction_log(Path(run_dir) / PREDICTIONS_FILE, strict=True))
    run_bench = _limited(bench, specs[0].limit)
    if specs[0].shard is not None:
        from .run.shards import subset

        run_bench = subset(run_bench, specs[0].shard.dialogue_ids)
    summary = summarize_repeats(run_bench, records, specs=specs,
                                runs=[os.path.relpath(d, folder) for d in run_dirs])
    atomic_write(folder / REPEATS_FILE, summary.model_dump_json(indent=2) + "\n")
    return summary
