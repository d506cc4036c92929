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
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import yaml
from pydantic import ValidationError

from . import __version__
from .adapters import create_adapter
from .metrics import score_records
from .runner import AllInfraFailedError, RunLock, Runner, frozen_gc, load_run_spec, read_predictions
from .schema import (
    PREDICTIONS_FILE,
    RESULTS_FILE,
    Bench,
    Provenance,
    Results,
    RunConfig,
    RunSpec,
    read_prediction_log,
)
from .segment import create_mask_producer

SAMPLE_BENCH = Path(__file__).parent / "data" / "sample"
_REPORTED_PACKAGES = ("numpy", "pycocotools", "pydantic", "torch", "transformers", "vllm", "datasets", "trl")


def load_bench(
    spec: str | Path | None = "sample",
    *,
    images: str | Path | None = None,
    annotations: str | Path | None = None,
    notice=None,
) -> Bench:
    """Load a bench from ``spec``: the one loader every command (and sweep) calls.

    Args:
        spec: ``"sample"`` (the bundled sample); a bench folder (``manifest.json``); a build
            folder (``build.json`` + split folders) as ``PATH[:split]``; an exported Hub folder
            or ``"hf:org/name"`` as ``...[:config[:split]]``; a folder of the released
            ``*_multi_turn.json`` files as ``PATH[:config]``; the released test data on the Hub
            as ``"hf:lmsdss/regionreasoner_test_data[@revision]:refcocoplus"``; or an official
            question file / released ``*_multi_turn.json`` file (``.json``).
        images: image folder for an official question file (upstream or COCO layout).
        annotations: COCO instances JSON that gives a question file's turns their gold masks.
        notice: ``callable(str)`` told about choices made for the caller (e.g. the default split).
    """
    if spec is None or str(spec) == "sample":
        return Bench.load(SAMPLE_BENCH)
    from .hub import resolve_bench_spec

    return resolve_bench_spec(str(spec), images=images, annotations=annotations, notice=notice)


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
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{path}: invalid run config ({problems})") from exc


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
    from .hub import split_bench_spec

    location = spec.bench_location or "sample"
    if location == str(SAMPLE_BENCH) or location == "sample" or location.startswith("hf:"):
        return "sample" if location == str(SAMPLE_BENCH) else location
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
    retry_infra: bool = False,
) -> Results:
    """Run ``config.adapter`` on ``bench`` and write ``run.json``, ``predictions.jsonl``, ``results.json``.

    The run's spec records the *full* bench's hash; ``config.limit`` evaluates the first N
    dialogues only (the results then cover those). The run folder is locked for the whole call.

    Raises:
        ValueError: the bench has no turns.
        RunFolderError: ``out_dir`` holds another run, or another process is using it.
        AllInfraFailedError: every turn failed for infrastructure reasons (no ``results.json``
            is written; fix the server and pass ``resume=True, retry_infra=True``).
    """
    start = time.perf_counter()
    spec = RunSpec(**config.model_dump(), bench_name=bench.name, bench_hash=bench.content_hash,
                   bench_location=bench_location or str(bench.root or ""),
                   working_dir=_recorded_working_dir(out_dir) if resume else os.getcwd())
    run_bench = _limited(bench, config.limit)
    if run_bench.num_turns == 0:
        raise ValueError(f"bench {bench.name!r} ({bench_location or bench.root or 'in memory'}) has no turns to "
                         f"evaluate ({len(bench.issues)} import issues; see `regiondial bench validate`)")
    with RunLock(out_dir), frozen_gc():
        return _evaluate_locked(run_bench, config, spec, out_dir, start, resume=resume, overwrite=overwrite,
                                progress=progress, n_bootstrap=n_bootstrap, retry_infra=retry_infra)


def _evaluate_locked(run_bench: Bench, config: RunConfig, spec: RunSpec, out_dir: str | Path, start: float, *,
                     resume: bool, overwrite: bool, progress: bool, n_bootstrap: int, retry_infra: bool) -> Results:
    adapter = create_adapter(config.adapter, **config.adapter_options)
    producer = create_mask_producer(config.mask_producer, **config.mask_producer_options) if config.mask_producer else None
    runner = Runner(run_bench, adapter, spec, out_dir, mask_producer=producer, progress=progress)
    try:
        records = runner.run(resume=resume, overwrite=overwrite, retry_infra=retry_infra)
    finally:
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
    results = score_records(run_bench, records, provenance=provenance, n_bootstrap=n_bootstrap)
    timings = {
        "run_s": round(wall, 3),
        "model_s": round(runner.model_seconds, 3),
        "mask_s": round(runner.mask_seconds, 3),
        "harness_s": round(max(wall - runner.model_seconds - runner.mask_seconds, 0.0), 3),
        "score_s": round(time.perf_counter() - score_start, 3),
        "turns": float(run_bench.num_turns),
    }
    results = results.model_copy(update={"provenance": results.provenance.model_copy(update={"timings": timings})})
    results.write(Path(out_dir) / RESULTS_FILE)
    return results


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
    log = run_dir / PREDICTIONS_FILE
    if partial:
        records = read_predictions(log)  # an unfinished run: a torn last line is expected (reported)
    else:
        if not log.is_file():
            raise FileNotFoundError(f"{run_dir} has no {PREDICTIONS_FILE}: the run answered no turn yet")
        records = read_prediction_log(log, strict=True)  # every unreadable line is an error naming its line
    with frozen_gc():  # the bench and the records stay alive while they are scored
        results = score_records(bench, records, provenance=make_provenance(spec), n_bootstrap=n_bootstrap,
                                require_complete=not partial)
    if write and not partial:
        with RunLock(run_dir):  # not while a run is still writing this folder
            results.write(run_dir / RESULTS_FILE)
    return results
