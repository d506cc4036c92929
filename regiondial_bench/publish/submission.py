"""Leaderboard submissions: one folder per entry, validated by re-scoring its predictions.

Layout (``submissions/<YYYY-MM-DD>_<name>/``)::

    submission.yaml          model, Hub id + revision, size, adapter preset, reference mode,
                             authors, link, date, benchmark, status
    results.json             the claimed scores (schema.Results), as ``regiondial score`` wrote them
    predictions.jsonl.gz     the prediction log (required to be verified)
    run.json                 the run spec (required to be verified: the records are re-derived with it)

Two kinds of entries:

* ``status: submitted`` (the default): :func:`validate_submission` checks the schema, that the
  prediction log answers every turn of the bench exactly once, that the bench hash matches, that
  every record derives from what it logs (:mod:`regiondial_bench.run.rederive`: its question from the
  bench, its regions from its raw answer, its mask from its regions), that the provenance agrees with
  ``run.json`` and that every claim of ``results.json`` equals the re-score (cells within 0.01
  points); a submission that passes is **verified**, any failure **rejects** it and names the
  reason (the first mismatching dialogue, turn and field).
* ``status: reported``: numbers copied from a paper, never verified. ``paper_row`` names a row of
  the paper's tables (``regiondial_bench/data/paper_tables.json``); other reported entries give
  ``reported_scores`` inline.
"""

from __future__ import annotations

import datetime as dt
import gzip
import math
import re
import shutil
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..bench.registry import default_bench_resolver
from ..metrics import MAX_RESAMPLES
from ..protocol import resolve_reference
from ..results.report import (
    PAPER_COLUMNS,
    PREDICTIONS_FILES,
    TASK_METRIC,
    cell_value,
    paper_rows,
    read_results,
)
from ..schema import (
    PREDICTIONS_FILE,
    RESULTS_FILE,
    RUN_FILE,
    Bench,
    PredictionRecord,
    Results,
    RoundRow,
    RunSpec,
    read_prediction_log,
    validation_summary,
)

SUBMISSION_FILE = "submission.yaml"
COMPRESSED_LOG = PREDICTIONS_FILE + ".gz"  # a submission carries its log gzipped
ALLOWED_FILES = frozenset({SUBMISSION_FILE, RESULTS_FILE, COMPRESSED_LOG, RUN_FILE, "README.md"})
TOLERANCE = 0.01
"""Largest difference (percentage points) between a claimed and a recomputed score."""
MAX_LOG_BYTES = 128 * 1024 * 1024
"""Largest ``predictions.jsonl.gz`` accepted (compressed); a full 7B run on RefCOCOg is ~10 MB."""
MAX_LOG_UNCOMPRESSED_BYTES = 512 * 1024 * 1024
"""Largest decompressed log; counted while streaming, so a gzip bomb stops here."""
MAX_LOG_BYTES_PER_TURN = 64 * 1024
"""Decompressed bytes a log may spend per turn of its bench, on average: a record with a long
answer and a mask is a few KB (upstream's 2,048-token budget is about 8 KB of text)."""
MAX_LOG_LINES_PER_TURN = 2
"""Lines a log may hold per turn of its bench (plus :data:`MAX_LOG_EXTRA_LINES`): one is right; a
few more are reported as duplicates, a flood of (blank) lines is refused before it is parsed."""
MAX_LOG_EXTRA_LINES = 64
MAX_RESULTS_BYTES = 16 * 1024 * 1024
"""Largest ``results.json`` accepted."""
MAX_SEED = 2**63 - 1

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")  # \Z: "$" would allow a final newline
FOLDER_PATTERN = re.compile(r"^([0-9]{4}-[0-9]{2}-[0-9]{2})_([A-Za-z0-9][A-Za-z0-9._-]{0,63})\Z")
HUB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*\Z")
LEADERBOARD_COLUMNS: tuple[str, ...] = ("R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8+", "Avg")

Status = Literal["verified", "reported", "rejected", "unavailable"]
"""``unavailable``: the entry's bench cannot be found here, so it could not be re-scored."""


class SubmissionError(ValueError):
    """A submission cannot be created or read; the message names the problem."""


class SubmissionMeta(BaseModel):
    """The contents of ``submission.yaml``."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=120, description="display name of the model")
    benchmark: str = Field(min_length=1, max_length=64, description="bench name (manifest name)")
    date: dt.date
    status: Literal["submitted", "reported"] = "submitted"
    reference_mode: Literal["predicted", "gold", "upstream"] = "predicted"
    hub_id: str | None = None
    revision: str | None = Field(default=None, max_length=64)
    size: str | None = Field(default=None, max_length=16, description="parameter count, e.g. 7B")
    adapter_preset: str | None = Field(default=None, max_length=120)
    authors: list[str] = Field(default_factory=list, max_length=50)
    link: str | None = Field(default=None, max_length=500)
    bench_hash: str | None = None
    notes: str = Field(default="", max_length=2000)
    paper_row: str | None = Field(default=None, description="reported: a row of the paper's tables")
    reported_scores: dict[str, list[float]] | None = Field(
        default=None, description="reported: {task: [R1..R7, Avg]}"
    )

    @field_validator("model", "benchmark", "hub_id", "revision", "size", "adapter_preset", "link", "paper_row",
                     mode="before")
    @classmethod
    def _plain_text(cls, value: Any) -> Any:
        problem = text_problem(value) if isinstance(value, str) else None
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("notes", mode="before")
    @classmethod
    def _plain_notes(cls, value: Any) -> Any:
        problem = text_problem(value, multiline=True) if isinstance(value, str) else None
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("authors")
    @classmethod
    def _plain_authors(cls, value: list[str]) -> list[str]:
        for i, author in enumerate(value):
            problem = text_problem(author)
            if problem:
                raise ValueError(f"author {i + 1}: {problem}")
        return value

    @field_validator("benchmark")
    @classmethod
    def _benchmark_name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a bench name (letters, digits, '.', '_', '-')")
        return value

    @field_validator("hub_id")
    @classmethod
    def _hub_id(cls, value: str | None) -> str | None:
        if value is not None and not HUB_ID_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a Hub id of the form owner/name")
        return value

    @field_validator("revision")
    @classmethod
    def _revision(cls, value: str | None) -> str | None:
        # a commit sha, tag or branch name: it becomes part of a Hub URL, so no path tricks
        if value is not None and (not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z", value) or ".." in value):
            raise ValueError(f"{value!r} is not a revision (a commit sha, tag or branch name)")
        return value

    @field_validator("link")
    @classmethod
    def _http_link(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s<>\"']+\Z", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @field_validator("reported_scores")
    @classmethod
    def _finite_scores(cls, value: dict[str, list[float]] | None) -> dict[str, list[float]] | None:
        for task, values in (value or {}).items():
            if task not in TASK_METRIC:
                raise ValueError(f"unknown task {task!r}; use {', '.join(TASK_METRIC)}")
            if len(values) != len(PAPER_COLUMNS):
                raise ValueError(f"{task}: give {len(PAPER_COLUMNS)} numbers ({', '.join(PAPER_COLUMNS)})")
            for v in values:
                if not math.isfinite(v) or not 0 <= v <= 100:
                    raise ValueError(f"{task}: {v} is not a percentage between 0 and 100")
        return value

    @model_validator(mode="after")
    def _reported_has_scores(self) -> SubmissionMeta:
        if self.status == "reported":
            if (self.paper_row is None) == (self.reported_scores is None):
                raise ValueError("a reported entry needs exactly one of paper_row or reported_scores")
            if self.paper_row is not None and not any(
                self.paper_row in paper_rows(task) for task in TASK_METRIC
            ):
                raise ValueError(f"paper_row {self.paper_row!r} is not a row of the paper's tables")
        elif self.paper_row is not None or self.reported_scores is not None:
            raise ValueError("paper_row/reported_scores are only for status: reported")
        return self


@dataclass
class SubmissionReport:
    """The outcome of validating one submission folder."""

    folder: Path
    status: Status
    problems: list[str] = field(default_factory=list)
    meta: SubmissionMeta | None = None
    results: Results | None = None
    scores: dict[str, dict[str, float | None]] = field(default_factory=dict)
    """``{task: {column: value}}`` with columns R1..R7, R8+, Avg (percent)."""

    @property
    def name(self) -> str:
        return self.folder.name

    def summary(self) -> str:
        head = f"{self.folder.name}: {self.status}"
        return head if not self.problems else head + "\n" + "\n".join(f"  - {p}" for p in self.problems)


BenchResolver = Callable[[str], Bench]


def _bench_policy(resolve_bench: Any, name: str, bench_hash: str | None) -> tuple[bool, bool]:
    """``(redact_questions, forbid_gold)`` for a bench: the registry's, and always both for the
    official question files (recognised by hash), whatever resolver is used."""
    from ..bench.registry import official_bench

    entry = getattr(resolve_bench, "entry", lambda _: None)(name)
    official = official_bench(bench_hash) is not None
    return (bool(entry and entry.redact_questions) or official, bool(entry and entry.forbid_gold) or official)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _format_validation_error(exc: ValidationError) -> str:
    return validation_summary(exc, whole="(top level)")


def read_meta(path: str | Path) -> SubmissionMeta:
    """Read and validate ``submission.yaml``; errors say what is wrong and where."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise SubmissionError(f"{path.name}: not valid YAML{line}: {getattr(exc, 'problem', exc)}") from exc
    except UnicodeDecodeError as exc:
        raise SubmissionError(f"{path.name}: not UTF-8 text") from exc
    except ValueError as exc:  # PyYAML's own converters, e.g. an impossible date 2026-13-45
        raise SubmissionError(f"{path.name}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SubmissionError(f"{path.name}: expected a mapping of fields, got {type(data).__name__}")
    try:
        return SubmissionMeta.model_validate(data)
    except ValidationError as exc:
        raise SubmissionError(f"{path.name}: {_format_validation_error(exc)}") from exc


def _check_folder(folder: Path) -> list[str]:
    problems = []
    match = FOLDER_PATTERN.match(folder.name)
    if not match:
        problems.append(
            f"folder name {folder.name!r} is not <YYYY-MM-DD>_<name> (name: letters, digits, '.', '_', '-')"
        )
    for entry in sorted(folder.iterdir()):
        if entry.is_symlink():
            problems.append(f"{entry.name}: symbolic links are not allowed in a submission")
        elif entry.is_dir():
            problems.append(f"{entry.name}/: sub-folders are not allowed in a submission")
        elif entry.name not in ALLOWED_FILES:
            problems.append(f"{entry.name}: unexpected file (allowed: {', '.join(sorted(ALLOWED_FILES))})")
    return problems


def leaderboard_scores(results: Results) -> dict[str, dict[str, float | None]]:
    """``{task: {column: value}}`` of a results file (segmentation only when it has gIoU)."""
    out: dict[str, dict[str, float | None]] = {}
    for task, metric in TASK_METRIC.items():
        values = {c: cell_value(results, metric, c) for c in LEADERBOARD_COLUMNS}
        if any(v is not None for v in values.values()):
            out[task] = values
    return out


def _reported_scores(meta: SubmissionMeta) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for task in TASK_METRIC:
        values = None
        if meta.paper_row is not None:
            values = paper_rows(task).get(meta.paper_row)
        elif meta.reported_scores is not None:
            values = meta.reported_scores.get(task)
        if values is not None:
            row: dict[str, float | None] = {c: None for c in LEADERBOARD_COLUMNS}
            row.update(zip(PAPER_COLUMNS, values, strict=True))
            out[task] = row
    return out


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def completeness_problems(bench: Bench, keys: list[tuple[str, int]]) -> list[str]:
    """Every turn of the bench exactly once: duplicates, missing and unknown turns, named."""
    problems = []
    counts = Counter(keys)
    dups = sorted(k for k, n in counts.items() if n > 1)
    if dups:
        shown = ", ".join(f"{d}#{t} ({counts[(d, t)]}x)" for d, t in dups[:5])
        problems.append(f"duplicated turns: {len(dups)} turn(s) answered more than once: {shown}")
    expected = [(d.dialogue_id, t.index) for d in bench for t in d.turns]
    expected_set = set(expected)
    missing = [k for k in expected if k not in counts]
    if missing:
        shown = ", ".join(f"{d}#{t}" for d, t in missing[:5])
        problems.append(f"missing turns: {len(missing)} of {len(expected)} turns have no prediction: {shown}")
    extra = sorted(k for k in counts if k not in expected_set)
    if extra:
        shown = ", ".join(f"{d}#{t}" for d, t in extra[:5])
        problems.append(
            f"unknown turns: {len(extra)} prediction(s) name turns the bench does not have: {shown}"
        )
    return problems


_ROW_FIELDS = ("n", "ap50", "ap50_top1", "mean_iou", "giou", "ciou", "failures")


def _row_cells(row: RoundRow) -> dict[str, float | None]:
    cells: dict[str, float | None] = {f: getattr(row, f) for f in _ROW_FIELDS}
    for name in ("ap50_ci", "giou_ci"):
        ci = getattr(row, name)
        cells[f"{name}.low"] = None if ci is None else ci.low
        cells[f"{name}.high"] = None if ci is None else ci.high
    return cells


def _row_label(name: str) -> str:
    return "Avg" if name == "all" else f"R{name}"


def compare_results(claimed: Results, recomputed: Results, tolerance: float = TOLERANCE) -> list[str]:
    """The cells where claimed and recomputed results differ, e.g. ``R3 ap50: claimed 81.6 ...``."""
    diffs = []

    def rows(results: Results) -> dict[str, RoundRow]:
        return {r.round: r for r in [*results.rounds, *results.buckets, results.overall]}

    if claimed.overall.round != "all":
        diffs.append(f"Avg: the overall row is named {claimed.overall.round!r}, not 'all'")
    counts = Counter(r.round for r in [*claimed.rounds, *claimed.buckets, claimed.overall])
    diffs += [f"{_row_label(name)}: the claimed results hold {n} rows for it"
              for name, n in sorted(counts.items()) if n > 1]
    for what in ("failure_reasons", "failure_kinds"):
        va, vb = getattr(claimed, what), getattr(recomputed, what)
        if va != vb:
            keys = sorted(set(va) | set(vb), key=str)
            first = next(k for k in keys if va.get(k) != vb.get(k))
            diffs.append(f"{what}[{first!r}]: claimed {va.get(first)}, recomputed {vb.get(first)}")
    a, b = rows(claimed), rows(recomputed)
    for name in sorted(
        set(a) | set(b),
        key=lambda k: (k == "all", k.endswith("+"), int(k.rstrip("+") or 0) if k != "all" else 0),
    ):
        if name not in a:
            diffs.append(f"{_row_label(name)}: row missing from the claimed results")
            continue
        if name not in b:
            diffs.append(f"{_row_label(name)}: claimed, but the predictions have no such round")
            continue
        ca, cb = _row_cells(a[name]), _row_cells(b[name])
        for key in ca:
            va, vb = ca[key], cb[key]
            if va is None and vb is None:
                continue
            if va is None or vb is None or not math.isfinite(va) or abs(va - vb) > tolerance:
                diffs.append(f"{_row_label(name)} {key}: claimed {va}, recomputed {vb}")
    return diffs


def validate_submission(folder: str | Path, resolve_bench: BenchResolver | None = None) -> SubmissionReport:
    """Validate one submission folder; never raises for a bad submission, returns its problems.

    Args:
        folder: ``submissions/<date>_<name>``.
        resolve_bench: maps the ``benchmark`` name to a bench (default:
            :func:`default_bench_resolver`).

    Returns:
        A report with status ``verified`` (re-scored and equal), ``reported`` (copied numbers,
        well-formed) or ``rejected`` (``problems`` says why).
    """
    folder = Path(folder)
    report = SubmissionReport(folder, "rejected")
    if not folder.is_dir() or folder.is_symlink():
        report.problems.append(f"{folder} is not a submission folder")
        return report
    report.problems += _check_folder(folder)
    if not (folder / SUBMISSION_FILE).is_file():
        report.problems.append(f"{SUBMISSION_FILE} is missing")
        return report
    try:
        meta = read_meta(folder / SUBMISSION_FILE)
    except SubmissionError as exc:
        report.problems.append(str(exc))
        return report
    report.meta = meta
    match = FOLDER_PATTERN.match(folder.name)
    if match and match.group(1) != meta.date.isoformat():
        report.problems.append(f"folder date {match.group(1)} differs from the date field {meta.date}")

    if meta.status == "reported":
        report.scores = _reported_scores(meta)
        if not report.problems:
            report.status = "reported"
        return report

    results_file = folder / RESULTS_FILE
    if results_file.is_file() and results_file.stat().st_size > MAX_RESULTS_BYTES:
        report.problems.append(f"{RESULTS_FILE} is {results_file.stat().st_size} bytes; the limit is "
                               f"{MAX_RESULTS_BYTES}")
        return report
    try:
        claimed = read_results(results_file)
    except (OSError, ValueError, RecursionError) as exc:
        report.problems.append(f"{RESULTS_FILE}: {exc}".replace(f"{folder / RESULTS_FILE}: ", ""))
        return report
    report.results = claimed
    report.scores = leaderboard_scores(claimed)
    spec = _read_run_spec(folder, report.problems)
    prov = claimed.provenance
    if spec is not None:
        report.problems += provenance_problems(prov, spec)
    if prov.reference_mode != meta.reference_mode:
        report.problems.append(
            f"reference mode: submission.yaml says {meta.reference_mode!r}, results.json {prov.reference_mode!r}"
        )
    if prov.bench_name != meta.benchmark:
        report.problems.append(
            f"benchmark: submission.yaml says {meta.benchmark!r}, results.json {prov.bench_name!r}"
        )

    from ..bench.registry import BenchUnavailable

    resolve_bench = resolve_bench or default_bench_resolver()
    try:
        bench = resolve_bench(meta.benchmark)
    except BenchUnavailable as exc:
        report.problems.append(f"bench: {exc}")
        if len(report.problems) == 1:
            report.status = "unavailable"
        return report
    except (SubmissionError, OSError, ValueError) as exc:
        report.problems.append(f"bench: {exc}")
        return report
    redact, forbid_gold = _bench_policy(resolve_bench, meta.benchmark, bench.content_hash)
    if prov.bench_hash != bench.content_hash:
        report.problems.append(
            f"bench hash mismatch: results.json was scored on {prov.bench_hash}, "
            f"but {bench.name!r} is {bench.content_hash}"
        )
    if meta.bench_hash is not None and meta.bench_hash != bench.content_hash:
        report.problems.append(
            f"bench hash mismatch: submission.yaml names {meta.bench_hash}, but {bench.name!r} is {bench.content_hash}"
        )

    log = folder / COMPRESSED_LOG
    if not log.is_file():
        report.problems.append(
            f"{COMPRESSED_LOG} is missing: a verified entry needs its prediction log "
            "(or mark the entry status: reported)"
        )
        return report
    size_problem = log_size_problem(log, bench.num_turns)
    if size_problem:
        report.problems.append(size_problem)
        return report
    try:
        records = read_prediction_log(log)
    except ValueError as exc:
        report.problems.append(str(exc).replace(str(folder) + "/", ""))
        return report
    report.problems += reference_problems(bench, records, meta.reference_mode)
    if spec is not None:
        from ..run.rederive import RunRules, check_log

        report.problems += check_log(bench, records, RunRules.of(spec),
                                     questions="digest" if redact else "either").problems()
    if forbid_gold:
        report.problems += gold_problems(bench, records, prov.adapter, meta.reference_mode)
    completeness = completeness_problems(bench, [r.key for r in records])
    report.problems += completeness
    if completeness or spec is None or any("bench hash" in p for p in report.problems):
        return report

    from ..metrics import score_records

    settings = bootstrap_settings(prov.bootstrap)
    if isinstance(settings, str):
        report.problems.append(settings)
        return report
    resamples, seed = settings
    recomputed = score_records(
        bench,
        records,
        provenance=prov,
        n_bootstrap=resamples,
        seed=seed,
    )
    problem = scores_problem(claimed, recomputed)
    if problem:
        report.problems.append(problem)
    if not report.problems:
        report.status = "verified"
    return report


MAX_SHOWN_DIFFERENCES = 10


def scores_problem(claimed: Results, recomputed: Results) -> str | None:
    """The differences of :func:`compare_results` as one problem (the first
    :data:`MAX_SHOWN_DIFFERENCES` named, the rest counted), or None when the claims hold."""
    diffs = compare_results(claimed, recomputed)
    if not diffs:
        return None
    shown = "; ".join(diffs[:MAX_SHOWN_DIFFERENCES])
    if len(diffs) > MAX_SHOWN_DIFFERENCES:
        shown += f"; and {len(diffs) - MAX_SHOWN_DIFFERENCES} more"
    return f"scores differ from the recomputed ones in {len(diffs)} cell(s): {shown}"


def _read_run_spec(folder: Path, problems: list[str]) -> RunSpec | None:
    """The entry's ``run.json``: the parser, preset and mask producer its records are re-derived with."""
    path = folder / RUN_FILE
    if not path.is_file():
        problems.append(f"{RUN_FILE} is missing: a verified entry needs the run's settings to re-derive its "
                        "records (regiondial submit copies it from the run folder)")
        return None
    if path.stat().st_size > MAX_RESULTS_BYTES:
        problems.append(f"{RUN_FILE} is {path.stat().st_size} bytes; the limit is {MAX_RESULTS_BYTES}")
        return None
    try:
        return RunSpec.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        problems.append(f"{RUN_FILE}: not a valid run spec: {_format_validation_error(exc)}")
    except OSError as exc:
        problems.append(f"{RUN_FILE}: cannot be read ({exc.strerror or exc})")
    except (ValueError, RecursionError) as exc:
        problems.append(f"{RUN_FILE}: not a valid run spec: {str(exc)[:300]}")
    return None


_PROVENANCE_FIELDS = ("bench_name", "bench_hash", "adapter", "reference_mode", "parser", "mask_producer", "limit",
                      "batch_size")


def provenance_problems(prov: Any, spec: RunSpec) -> list[str]:
    """Where ``results.json``'s provenance disagrees with ``run.json`` (the run's own record of how it
    was made), and a ``run.json`` of one shard only."""
    claimed = {name: getattr(prov, name) for name in _PROVENANCE_FIELDS}
    if claimed["parser"] is None:  # results written before the parser was recorded: the one its mode implies
        claimed["parser"] = "upstream" if prov.reference_mode == "upstream" else "tolerant"
    problems = [f"provenance.{name}: results.json says {claimed[name]!r}, {RUN_FILE} {getattr(spec, name)!r}"
                for name in _PROVENANCE_FIELDS if claimed[name] != getattr(spec, name)]
    if spec.shard is not None:
        problems.append(f"{RUN_FILE} is the run of shard {spec.shard.index}/{spec.shard.count}; submit the merge "
                        "of all shards (regiondial merge)")
    return problems


def bootstrap_settings(boot: Any) -> tuple[int, int] | str:
    """``(resamples, seed)`` from ``provenance.bootstrap``, or the problem with them.

    >>> bootstrap_settings({"resamples": 100, "seed": 3})
    (100, 3)
    >>> bootstrap_settings({"seed": "x"})
    "provenance.bootstrap.seed must be an integer in 0..9223372036854775807, got 'x'"
    """
    if boot is None:
        boot = {}
    if not isinstance(boot, dict):
        return f"provenance.bootstrap must be a mapping, got {type(boot).__name__}"
    resamples, seed = boot.get("resamples", 1000), boot.get("seed", 0)
    for key, value, top in (("resamples", resamples, MAX_RESAMPLES), ("seed", seed, MAX_SEED)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            return f"provenance.bootstrap.{key} must be an integer in 0..{top}, got {shown}"
    return resamples, seed


def log_size_problem(log: Path, turns: int | None = None) -> str | None:
    """Whether a gzipped log is too big, compressed or decompressed, or not gzip at all; None when it
    is fine. Decompressed, it is measured in bytes and lines against the bench's ``turns``
    (:data:`MAX_LOG_BYTES_PER_TURN`, :data:`MAX_LOG_LINES_PER_TURN`), streamed, so a bomb stops
    at the limit before a line of it is parsed."""
    size = log.stat().st_size
    if size > MAX_LOG_BYTES:
        return f"{COMPRESSED_LOG} is {size} bytes; the limit is {MAX_LOG_BYTES}"
    byte_cap, line_cap = MAX_LOG_UNCOMPRESSED_BYTES, None
    if turns is not None:
        byte_cap = min(byte_cap, max(turns, 1) * MAX_LOG_BYTES_PER_TURN)
        line_cap = turns * MAX_LOG_LINES_PER_TURN + MAX_LOG_EXTRA_LINES
    total = lines = 0
    per_bench = "" if turns is None else f" for a bench of {turns} turns"
    try:
        with gzip.open(log, "rb") as f:
            while chunk := f.read(1 << 20):
                total += len(chunk)
                lines += chunk.count(b"\n")
                if total > byte_cap:
                    return f"{COMPRESSED_LOG} decompresses to more than {byte_cap} bytes{per_bench}; refusing to read it"
                if line_cap is not None and lines > line_cap:
                    return f"{COMPRESSED_LOG} holds more than {line_cap} lines{per_bench}; refusing to read it"
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        return f"{COMPRESSED_LOG} is not a readable gzip file ({exc})"
    return None


def reference_problems(bench: Bench, records: list[PredictionRecord], mode: str) -> list[str]:
    """Replay the reference mode over the log: every turn must have been asked with the references
    that mode gives (the model's own earlier boxes, gold boxes, or the no-region marker).

    Catches a log that claims ``predicted`` references but was run with gold ones.
    """
    answers = {r.key: r for r in records}
    wrong: list[str] = []
    for record in records:
        try:
            dialogue = bench.dialogue(record.dialogue_id)
        except KeyError:
            continue  # reported by the completeness check
        if record.turn >= len(dialogue.turns):
            continue
        turn = dialogue.turns[record.turn]
        expected = []
        for ref in turn.references:
            resolved = resolve_reference(mode, dialogue, turn, ref,
                                         lambda c, d=dialogue.dialogue_id: answers.get((d, c)))
            if resolved is not None:
                expected.append((ref.turn, *resolved))
        logged = [(u.turn, u.source, u.box) for u in record.references]
        if logged != expected:
            wrong.append(f"{record.dialogue_id}#{record.turn} logged {logged}, {mode} mode gives {expected}")
    if not wrong:
        return []
    return [f"{len(wrong)} turn(s) were not asked with {mode!r} references (first: {wrong[0]})"]


GOLD_COPY_SHARE = 0.5
"""A log whose first boxes equal the gold box exactly in more than this share of turns republishes
the gold boxes (an oracle under another name)."""


def gold_problems(bench: Bench, records: list[PredictionRecord], adapter: str, mode: str) -> list[str]:
    """On a bench whose gold data may not be republished: no oracle, no gold references, no log
    that copies the gold boxes."""
    problems = []
    if adapter == "oracle":
        problems.append("an oracle entry republishes the gold boxes; it is not allowed on this bench")
    gold_refs = sum(any(u.source in ("gold", "gold-fallback") for u in r.references) for r in records)
    if gold_refs:
        problems.append(f"{gold_refs} record(s) carry gold reference boxes ({mode!r} mode); entries on this bench "
                        "must not republish gold boxes (use reference mode 'predicted')")
    copies = 0
    for record in records:
        try:
            gold = bench.dialogue(record.dialogue_id).turns[record.turn].gold_boxes
        except (KeyError, IndexError):
            continue
        if record.regions and tuple(record.regions[0].box) in {tuple(b) for b in gold}:
            copies += 1
    if records and adapter != "oracle" and copies > GOLD_COPY_SHARE * len(records):
        problems.append(f"{copies} of {len(records)} answers equal the gold box exactly; the log republishes "
                        "the gold boxes")
    return problems


def validate_all(root: str | Path, resolve_bench: BenchResolver | None = None) -> list[SubmissionReport]:
    """Validate every folder under ``root`` (sorted), and flag duplicate entries."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no submissions folder")
    resolve_bench = resolve_bench or default_bench_resolver()
    reports = [
        validate_submission(p, resolve_bench) for p in sorted(root.iterdir()) if p.is_dir() or p.is_symlink()
    ]
    seen: dict[tuple[Any, ...], str] = {}
    for rep in reports:
        if rep.meta is None:
            continue
        key = duplicate_key(rep.meta)
        if key in seen:
            rep.problems.append(f"duplicate of {seen[key]} (same model, revision, bench and reference mode)")
            rep.status = "rejected"
        else:
            seen[key] = rep.name
    return reports


def _icu() -> Any:
    """PyICU (the ``leaderboard`` extra): Unicode's own confusables data and character properties."""
    import icu  # ModuleNotFoundError names "icu"; the CLI turns it into the pip command

    return icu


BLANK_LETTERS = frozenset("\u2800\u115f\u1160\u3164\uffa0")
"""Letters and symbols that draw nothing (braille blank, Hangul fillers) but are not Unicode
default-ignorable code points."""


def _invisible(icu: Any, ch: str) -> bool:
    prop = icu.UProperty
    return (ch in BLANK_LETTERS or icu.Char.hasBinaryProperty(ch, prop.WHITE_SPACE)
            or icu.Char.hasBinaryProperty(ch, prop.DEFAULT_IGNORABLE_CODE_POINT))


def text_problem(text: str, *, multiline: bool = False) -> str | None:
    """Why a text field of a submission cannot be shown as it is, or None.

    Refused: control characters (C0, DEL, C1; newlines and tabs only where ``multiline``),
    bidirectional controls (which reorder what is displayed: an RLO shows a name reversed), and
    a text made only of invisible characters (white space, default-ignorable code points such as
    zero-width spaces, blank letters).

    >>> text_problem("RegionReasoner-7B") is None
    True
    >>> text_problem("\u202eB7-renosaeR")
    'must not contain bidirectional control characters (U+202E)'
    """
    icu = _icu()
    for ch in text:
        if unicodedata.category(ch) == "Cc" and not (multiline and ch in "\n\t"):
            return f"must not contain control characters (U+{ord(ch):04X})"
        if icu.Char.hasBinaryProperty(ch, icu.UProperty.BIDI_CONTROL):
            return f"must not contain bidirectional control characters (U+{ord(ch):04X})"
    if text and all(_invisible(icu, ch) for ch in text):
        return "must not be made only of invisible characters"
    return None


_SPOOF_CHECKER: list[Any] = []


def comparable_name(text: str | None) -> str | None:
    """A name as duplicates are compared: NFKC, invisible characters removed, runs of white space
    collapsed, case folded, then reduced to its Unicode TR39 confusables skeleton (ICU's
    ``SpoofChecker``), so that names which look alike (Greek Ο or Cyrillic А for Latin O and A,
    ``l`` for ``I``, fullwidth forms) compare equal.

    >>> comparable_name("Ｍｏｄｅｌ\u200b-7B") == comparable_name("model-7b") == comparable_name("MОDEL-7B")
    True
    """
    if text is None:
        return None
    icu = _icu()
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in text if ch.isspace() or not _invisible(icu, ch))
    text = " ".join(text.split())
    if not _SPOOF_CHECKER:
        _SPOOF_CHECKER.append(icu.SpoofChecker())
    skeleton = _SPOOF_CHECKER[0].getSkeleton
    # skeletons keep case (Greek Β -> B, but β stays), so: skeleton, fold case, skeleton the folded text
    return skeleton(0, skeleton(0, text).casefold())


def duplicate_key(meta: SubmissionMeta) -> tuple[Any, ...]:
    """What makes two entries the same: model, Hub id and revision, bench, reference mode, status, preset."""
    return (
        comparable_name(meta.model),
        comparable_name(meta.hub_id),
        comparable_name(meta.revision),
        meta.benchmark,
        meta.reference_mode,
        meta.status,
        comparable_name(meta.adapter_preset),
    )


def _existing_duplicate(root: Path, meta: SubmissionMeta) -> str | None:
    if not root.is_dir():
        return None
    key = duplicate_key(meta)
    for folder in sorted(root.iterdir()):
        file = folder / SUBMISSION_FILE
        if folder.is_dir() and not folder.is_symlink() and file.is_file():
            try:
                other = read_meta(file)
            except SubmissionError:
                continue
            if duplicate_key(other) == key:
                return folder.name
    return None


def _write_log(src: Path, dst: Path, redact: bool) -> None:
    """The submission's gzipped log (deterministic bytes); questions as digests when ``redact``."""
    if not redact:
        if src.name.endswith(".gz"):
            shutil.copyfile(src, dst)
        else:
            _gzip_deterministic(src, dst)
        return
    from ..bench.registry import question_digest

    with (
        open(dst, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as fout,
    ):
        for record in read_prediction_log(src):
            if not re.match(r"^sha256:[0-9a-f]{64}\Z", record.question):
                record = record.model_copy(update={"question": question_digest(record.question)})
            fout.write((record.model_dump_json(exclude_defaults=True) + "\n").encode("utf-8"))


# --------------------------------------------------------------------------------------------
# Creating
# --------------------------------------------------------------------------------------------


def _gzip_deterministic(src: Path, dst: Path) -> None:
    with (
        open(src, "rb") as fin,
        open(dst, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as fout,
    ):
        shutil.copyfileobj(fin, fout)


def create_submission(
    run_dir: str | Path,
    name: str,
    *,
    root: str | Path = "submissions",
    model: str | None = None,
    date: dt.date | None = None,
    resolve_bench: BenchResolver | None = None,
    **fields: Any,
) -> SubmissionReport:
    """Turn a scored run folder into ``<root>/<date>_<name>/`` and validate it.

    Args:
        run_dir: a run folder with ``results.json`` and ``predictions.jsonl`` (from
            ``regiondial evaluate``).
        name: the folder name part (letters, digits, '.', '_', '-'; at most 64 characters).
        root: the submissions folder.
        model: display name (default: ``name``).
        date: the submission date (default: today).
        resolve_bench: maps bench names to benches (default: :func:`default_bench_resolver`).
        **fields: other :class:`SubmissionMeta` fields (hub_id, revision, size, adapter_preset,
            authors, link, notes).

    Raises:
        SubmissionError: bad name or fields, an existing folder, or a run that does not validate
            (the folder is removed again and the message lists the problems).
    """
    if not NAME_PATTERN.match(name):
        raise SubmissionError(
            f"submission name {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    run_dir = Path(run_dir)
    if not (run_dir / RESULTS_FILE).is_file():
        from ..run.folder import load_run_spec

        try:
            load_run_spec(run_dir)  # not a run folder (or a repeats folder): that is the error to give
        except RuntimeError as exc:  # RunFolderError: an unreadable run.json
            raise SubmissionError(str(exc)) from None
        raise SubmissionError(f"{run_dir} has no {RESULTS_FILE}: score the run first (regiondial score {run_dir})")
    results = read_results(run_dir / RESULTS_FILE)
    date = date or dt.date.today()
    prov = results.provenance
    meta_fields = {
        "model": model or name,
        "benchmark": prov.bench_name,
        "date": date,
        "reference_mode": prov.reference_mode,
        "bench_hash": prov.bench_hash,
        "adapter_preset": fields.pop("adapter_preset", None) or prov.adapter,
        **{k: v for k, v in fields.items() if v not in (None, [], "")},
    }
    try:
        meta = SubmissionMeta.model_validate(meta_fields)
    except ValidationError as exc:
        raise SubmissionError(_format_validation_error(exc)) from exc
    log = next((run_dir / f for f in PREDICTIONS_FILES if (run_dir / f).is_file()), None)
    if log is None:
        raise SubmissionError(
            f"{run_dir} has no predictions.jsonl; a verified entry needs the prediction log"
        )

    folder = Path(root) / f"{date.isoformat()}_{name}"
    if folder.exists():
        raise SubmissionError(f"{folder} already exists; choose another --name")
    duplicate = _existing_duplicate(Path(root), meta)
    if duplicate is not None:
        raise SubmissionError(
            f"duplicate of {duplicate} (same model, revision, bench and reference mode); "
            "change the model name, revision or preset, or remove the old entry"
        )
    resolve_bench = resolve_bench or default_bench_resolver()
    redact, _ = _bench_policy(resolve_bench, meta.benchmark, meta.bench_hash)
    folder.mkdir(parents=True)
    try:
        import yaml

        from ..run.folder import naming

        data = meta.model_dump(mode="json", exclude_none=True, exclude_defaults=False)
        data = {k: v for k, v in data.items() if v not in ("", [])}
        with naming(folder / SUBMISSION_FILE):  # a full disk's error names the file it was writing
            (folder / SUBMISSION_FILE).write_text(
                yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8"
            )
        for name in (RESULTS_FILE, RUN_FILE):
            if name == RESULTS_FILE or (run_dir / name).is_file():
                with naming(folder / name):
                    shutil.copyfile(run_dir / name, folder / name)
        with naming(folder / COMPRESSED_LOG):
            _write_log(log, folder / COMPRESSED_LOG, redact)
        report = validate_submission(folder, resolve_bench)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if report.status in ("rejected", "unavailable"):
        shutil.rmtree(folder, ignore_errors=True)
        raise SubmissionError("the run does not validate:\n" + "\n".join(f"  - {p}" for p in report.problems))
    return report
