"""Leaderboard submissions: one folder per entry, validated by re-scoring its predictions.

Layout (``submissions/<YYYY-MM-DD>_<name>/``)::

    submission.yaml          model, Hub id + revision, size, adapter preset, reference mode,
                             authors, link, date, benchmark, status
    results.json             the claimed scores (schema.Results), as ``regiondial score`` wrote them
    predictions.jsonl.gz     the prediction log (required to be verified)
    run.json                 optional: the run spec

Two kinds of entries:

* ``status: submitted`` (the default): :func:`validate_submission` checks the schema, that the
  prediction log answers every turn of the bench exactly once, that the bench hash matches, and
  that the metrics recomputed from the predictions equal the claimed ones (0.01 points); a
  submission that passes is **verified**, any failure **rejects** it and names the reason.
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
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .protocol import resolve_reference
from .report import (
    PAPER_COLUMNS,
    PREDICTIONS_FILES,
    TASK_METRIC,
    cell_value,
    paper_rows,
    read_results,
)
from .schema import (
    PREDICTIONS_FILE,
    RESULTS_FILE,
    RUN_FILE,
    Bench,
    PredictionRecord,
    Results,
    RoundRow,
    RunSpec,
    read_prediction_log,
)

SUBMISSION_FILE = "submission.yaml"
COMPRESSED_LOG = PREDICTIONS_FILE + ".gz"  # a submission carries its log gzipped
ALLOWED_FILES = frozenset({SUBMISSION_FILE, RESULTS_FILE, COMPRESSED_LOG, RUN_FILE, "README.md"})
MAX_RESAMPLES = 10_000
"""Most bootstrap resamples a submission may ask the validator to recompute."""
TOLERANCE = 0.01
"""Largest difference (percentage points) between a claimed and a recomputed score."""

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")  # \Z: "$" would allow a final newline
FOLDER_PATTERN = re.compile(r"^([0-9]{4}-[0-9]{2}-[0-9]{2})_([A-Za-z0-9][A-Za-z0-9._-]{0,63})\Z")
HUB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*\Z")
LEADERBOARD_COLUMNS: tuple[str, ...] = ("R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8+", "Avg")

Status = Literal["verified", "reported", "rejected"]


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

    @field_validator("model", "adapter_preset", "notes", "revision", "size")
    @classmethod
    def _no_control_chars(cls, value: str | None) -> str | None:
        if value is not None and any(ord(ch) < 32 and ch not in "\n\t" for ch in value):
            raise ValueError("must not contain control characters")
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


def default_bench_resolver(benches: Mapping[str, str] | None = None) -> BenchResolver:
    """Resolve a submission's ``benchmark`` name to a bench.

    Args:
        benches: ``{bench name: spec}`` overrides (a bench folder or question file, as
            ``regiondial evaluate --bench`` takes). Without an override, the bundled sample bench
            is found by its manifest name.
    """
    overrides = dict(benches or {})
    cache: dict[str, Bench] = {}

    def resolve(name: str) -> Bench:
        if name in cache:
            return cache[name]
        from .api import load_bench

        if name in overrides:
            bench = load_bench(overrides[name])
        else:
            sample = load_bench("sample")
            if sample.name != name:
                raise SubmissionError(
                    f"unknown benchmark {name!r}: pass its bench folder with --bench {name}=PATH "
                    f"(the bundled sample is {sample.name!r})"
                )
            bench = sample
        cache[name] = bench
        return bench

    return resolve


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


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

    try:
        claimed = read_results(folder / RESULTS_FILE)
    except (OSError, ValueError) as exc:
        report.problems.append(f"{RESULTS_FILE}: {exc}".replace(f"{folder / RESULTS_FILE}: ", ""))
        return report
    report.results = claimed
    report.scores = leaderboard_scores(claimed)
    if (folder / RUN_FILE).is_file():
        try:
            RunSpec.model_validate_json((folder / RUN_FILE).read_bytes())
        except ValidationError as exc:
            report.problems.append(f"{RUN_FILE}: not a valid run spec: {_format_validation_error(exc)}")
    prov = claimed.provenance
    if prov.reference_mode != meta.reference_mode:
        report.problems.append(
            f"reference mode: submission.yaml says {meta.reference_mode!r}, results.json {prov.reference_mode!r}"
        )
    if prov.bench_name != meta.benchmark:
        report.problems.append(
            f"benchmark: submission.yaml says {meta.benchmark!r}, results.json {prov.bench_name!r}"
        )

    try:
        bench = (resolve_bench or default_bench_resolver())(meta.benchmark)
    except (SubmissionError, OSError, ValueError) as exc:
        report.problems.append(f"bench: {exc}")
        return report
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
    try:
        records = read_prediction_log(log)
    except ValueError as exc:
        report.problems.append(str(exc).replace(str(folder) + "/", ""))
        return report
    report.problems += reference_problems(bench, records, meta.reference_mode)
    completeness = completeness_problems(bench, [r.key for r in records])
    report.problems += completeness
    if completeness or any("bench hash" in p for p in report.problems):
        return report

    from .metrics import score_records

    boot = prov.bootstrap or {}
    resamples = boot.get("resamples", 1000)
    if not isinstance(resamples, int) or not 0 <= resamples <= MAX_RESAMPLES:
        report.problems.append(f"provenance.bootstrap.resamples must be an integer in 0..{MAX_RESAMPLES}, "
                               f"got {resamples!r}")
        return report
    recomputed = score_records(
        bench,
        records,
        provenance=prov,
        n_bootstrap=resamples,
        seed=int(boot.get("seed", 0)),
    )
    diffs = compare_results(claimed, recomputed)
    if diffs:
        shown = "; ".join(diffs[:10]) + (f"; and {len(diffs) - 10} more" if len(diffs) > 10 else "")
        report.problems.append(f"scores differ from the recomputed ones in {len(diffs)} cell(s): {shown}")
    if not report.problems:
        report.status = "verified"
    return report


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
        m = rep.meta
        key = (
            m.model.casefold(),
            m.hub_id,
            m.revision,
            m.benchmark,
            m.reference_mode,
            m.status,
            m.adapter_preset,
        )
        if key in seen:
            rep.problems.append(f"duplicate of {seen[key]} (same model, revision, bench and reference mode)")
            rep.status = "rejected"
        else:
            seen[key] = rep.name
    return reports


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
    folder.mkdir(parents=True)
    try:
        import yaml

        data = meta.model_dump(mode="json", exclude_none=True, exclude_defaults=False)
        data = {k: v for k, v in data.items() if v not in ("", [])}
        (folder / SUBMISSION_FILE).write_text(
            yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8"
        )
        shutil.copyfile(run_dir / RESULTS_FILE, folder / RESULTS_FILE)
        if (run_dir / RUN_FILE).is_file():
            shutil.copyfile(run_dir / RUN_FILE, folder / RUN_FILE)
        if log.name.endswith(".gz"):
            shutil.copyfile(log, folder / COMPRESSED_LOG)
        else:
            _gzip_deterministic(log, folder / COMPRESSED_LOG)
        report = validate_submission(folder, resolve_bench)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if report.status == "rejected":
        shutil.rmtree(folder, ignore_errors=True)
        raise SubmissionError("the run does not validate:\n" + "\n".join(f"  - {p}" for p in report.problems))
    return report
