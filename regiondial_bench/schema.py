"""Typed artefacts of RegionDial-Bench, defined once.

Every arrow of the pipeline (bench files -> prediction log -> results -> reports) is one of the
models below, so any stage can be rerun alone.

Coordinate convention (everywhere in these artefacts): boxes are ``[x1, y1, x2, y2]`` in
**original-image pixels** (xyxy, continuous, x2 > x1 and y2 > y1); points are ``[x, y]`` in the
same frame; masks are COCO RLE dictionaries ``{"size": [height, width], "counts": str}``.
Turns are 0-based (``index``); the paper's "round k" is ``index + 1``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = "1.0"
BENCH_FILE = "dialogues.jsonl"
MANIFEST_FILE = "manifest.json"
# the files of a run folder
RUN_FILE = "run.json"
PREDICTIONS_FILE = "predictions.jsonl"
RESULTS_FILE = "results.json"

Box = tuple[float, float, float, float]
Point = tuple[float, float]

ReferenceMode = Literal["predicted", "gold", "upstream"]
REFERENCE_MODES: tuple[str, ...] = ("predicted", "gold", "upstream")
ParserName = Literal["tolerant", "upstream"]  # how model text is read (protocol.parse_answer)

UPSTREAM_PLACEHOLDER = "<box>{context_bbox}</box>"
"""The literal placeholder of the official question files; filled with the reference box."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RLE(_Model):
    """A COCO run-length-encoded mask (``counts`` as the compressed string)."""

    size: tuple[int, int]  # (height, width), as pycocotools
    counts: str


# --------------------------------------------------------------------------------------------
# Bench
# --------------------------------------------------------------------------------------------


class Reference(_Model):
    """A link from a turn to an earlier turn whose answer fills a placeholder of its question.

    ``placeholder`` is the exact text replaced in the question; ``None`` means the question has
    no placeholder for this link (an upstream defect: the question is used unchanged).
    """

    turn: int = Field(ge=0)
    placeholder: str | None = UPSTREAM_PLACEHOLDER
    upstream_fill: bool = True  # False: the official evaluator never fills this placeholder


class Turn(_Model):
    """One round of a dialogue: a referring question and its gold region(s)."""

    index: int = Field(ge=0)
    question: str
    gold_boxes: list[Box] = Field(min_length=1)
    gold_mask: RLE | None = None
    gold_point: Point | None = None
    references: list[Reference] = Field(default_factory=list)
    ann_ids: list[int] = Field(default_factory=list)
    category: str | None = None

    @property
    def round(self) -> int:
        return self.index + 1

    @field_validator("gold_boxes")
    @classmethod
    def _boxes_ordered(cls, boxes: list[Box]) -> list[Box]:
        for box in boxes:
            if not all(math.isfinite(v) for v in box):
                raise ValueError(f"gold box {list(box)} holds a non-finite number")
            if not (box[2] > box[0] and box[3] > box[1]):
                raise ValueError(f"gold box {list(box)} is not xyxy with x2>x1, y2>y1")
        return boxes

    @field_validator("gold_point")
    @classmethod
    def _point_finite(cls, point: Point | None) -> Point | None:
        if point is not None and not all(math.isfinite(v) for v in point):
            raise ValueError(f"gold point {list(point)} holds a non-finite number")
        return point


class ImageRef(_Model):
    """Where a dialogue's image lives. ``path`` is relative to the bench folder (or absolute)."""

    path: str | None = None
    width: int | None = Field(default=None, gt=0)
    height: int | None = Field(default=None, gt=0)
    coco_id: int | None = None
    file_name: str | None = None

    @property
    def size(self) -> tuple[int, int] | None:
        """``(width, height)`` when known."""
        if self.width is None or self.height is None:
            return None
        return (self.width, self.height)


class Dialogue(_Model):
    """One image and its ordered turns."""

    dialogue_id: str
    image: ImageRef
    turns: list[Turn] = Field(min_length=1)
    source: dict[str, Any] = Field(default_factory=dict)

    @field_validator("turns")
    @classmethod
    def _indices_in_order(cls, turns: list[Turn]) -> list[Turn]:
        for expected, turn in enumerate(turns):
            if turn.index != expected:
                raise ValueError(f"turn indices must be 0..n-1 in order; got {turn.index} at {expected}")
        return turns


class ValidationIssue(_Model):
    """A data defect found while importing or validating a bench; never fatal on its own."""

    code: str
    message: str
    dialogue_id: str | None = None
    turn: int | None = None
    severity: Literal["warning", "error"] = "warning"


class Manifest(_Model):
    """Describes a bench folder: name, version, counts and the content hash of its dialogues."""

    schema_version: str = SCHEMA_VERSION
    name: str
    version: str = "1"
    content_hash: str
    num_dialogues: int
    num_turns: int
    turns_per_round: dict[str, int]
    source: dict[str, Any] = Field(default_factory=dict)
    created_by: str = ""
    issues: list[ValidationIssue] = Field(default_factory=list)


def dialogue_json(dialogue: Dialogue) -> str:
    """The canonical one-line JSON of a dialogue (sorted keys): what the content hash covers."""
    return json.dumps(dialogue.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def content_hash(dialogues: Iterable[Dialogue]) -> str:
    """``sha256:<hex>`` over the canonical JSON lines of the dialogues, in order."""
    digest = hashlib.sha256()
    for dialogue in dialogues:
        digest.update(dialogue_json(dialogue).encode())
        digest.update(b"\n")
    return "sha256:" + digest.hexdigest()


def turns_per_round(dialogues: Iterable[Dialogue]) -> dict[str, int]:
    """``{"1": n1, "2": n2, ...}``: how many turns each round index has."""
    counts: dict[int, int] = {}
    for dialogue in dialogues:
        for turn in dialogue.turns:
            counts[turn.round] = counts.get(turn.round, 0) + 1
    return {str(k): counts[k] for k in sorted(counts)}


class Bench:
    """An in-memory bench: dialogues plus the folder their relative image paths resolve against."""

    def __init__(
        self,
        dialogues: list[Dialogue],
        *,
        name: str,
        version: str = "1",
        root: Path | None = None,
        source: dict[str, Any] | None = None,
        issues: list[ValidationIssue] | None = None,
        image_files: dict[str, Path] | None = None,
    ) -> None:
        ids = [d.dialogue_id for d in dialogues]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
            raise ValueError(f"duplicate dialogue ids in bench {name!r}: {dup}")
        self.dialogues = dialogues
        self.name = name
        self.version = version
        self.root = root
        self.source = dict(source or {})
        self.issues = list(issues or [])
        # dialogue id -> image file found outside the bench (e.g. a user's COCO folder); not part
        # of the content hash, so the same question file hashes the same wherever the images are
        self.image_files = dict(image_files or {})
        self._hash: str | None = None
        self._by_id = {d.dialogue_id: d for d in dialogues}

    def __len__(self) -> int:
        return len(self.dialogues)

    def __iter__(self) -> Iterator[Dialogue]:
        return iter(self.dialogues)

    def dialogue(self, dialogue_id: str) -> Dialogue:
        return self._by_id[dialogue_id]

    @property
    def num_turns(self) -> int:
        return sum(len(d.turns) for d in self.dialogues)

    @property
    def content_hash(self) -> str:
        if self._hash is None:
            self._hash = content_hash(self.dialogues)
        return self._hash

    def image_path(self, dialogue: Dialogue) -> Path | None:
        """The absolute image path of a dialogue, or None when the bench has no image for it."""
        if dialogue.dialogue_id in self.image_files:
            return self.image_files[dialogue.dialogue_id]
        if dialogue.image.path is None:
            return None
        path = Path(dialogue.image.path)
        if not path.is_absolute() and self.root is not None:
            path = self.root / path
        return path

    def manifest(self, created_by: str = "") -> Manifest:
        return Manifest(
            name=self.name,
            version=self.version,
            content_hash=self.content_hash,
            num_dialogues=len(self.dialogues),
            num_turns=self.num_turns,
            turns_per_round=turns_per_round(self.dialogues),
            source=self.source,
            created_by=created_by,
            issues=self.issues,
        )

    def save(self, folder: str | Path, created_by: str = "") -> Manifest:
        """Write ``dialogues.jsonl`` and ``manifest.json`` into ``folder`` (images are not copied)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / BENCH_FILE, "w", encoding="utf-8") as f:
            for dialogue in self.dialogues:
                f.write(dialogue_json(dialogue) + "\n")
        manifest = self.manifest(created_by)
        (folder / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return manifest

    @classmethod
    def load(cls, folder: str | Path, *, verify: bool = True, lenient: bool = False) -> Bench:
        """Read a bench folder; with ``verify`` the manifest's content hash must match.

        Every defect of the files (not UTF-8, not JSON, too deeply nested, wrong types,
        non-finite numbers) is a ``ValueError`` naming the file and line; an empty bench loads
        (``bench validate`` reports it and ``evaluate`` refuses it). With ``lenient`` (for
        ``bench validate``), unreadable lines, duplicate ids and a hash mismatch become error
        issues of the returned bench instead, so that every one of them is reported.
        """
        folder = Path(folder)
        manifest_path = folder / MANIFEST_FILE
        if not manifest_path.is_file():
            raise FileNotFoundError(
                f"{folder} is not a bench folder: {MANIFEST_FILE} is missing "
                f"(expected {MANIFEST_FILE} + {BENCH_FILE})"
            )
        try:
            manifest = Manifest.model_validate_json(manifest_path.read_bytes())
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"{manifest_path}: not a valid bench manifest: {_short(exc)}") from exc
        except OSError as exc:
            raise ValueError(f"{manifest_path}: cannot read the manifest ({exc})") from exc
        bench_path = folder / BENCH_FILE
        if not bench_path.is_file():
            raise FileNotFoundError(f"{folder} is not a bench folder: {BENCH_FILE} is missing")
        dialogues = []
        problems: list[ValidationIssue] = []
        seen: set[str] = set()
        with open(bench_path, "rb") as f:
            for line_no, line in enumerate(f, 1):
                if line.strip():
                    try:
                        dialogue = Dialogue.model_validate_json(line)
                    except (ValueError, RecursionError) as exc:
                        message = f"{bench_path}:{line_no}: not a dialogue: {_short(exc)}"
                        if not lenient:
                            raise ValueError(message) from exc
                        problems.append(ValidationIssue(code="bad_line", message=message, severity="error"))
                        continue
                    if lenient and dialogue.dialogue_id in seen:
                        problems.append(ValidationIssue(code="duplicate_dialogue", severity="error",
                                                        dialogue_id=dialogue.dialogue_id,
                                                        message=f"{bench_path}:{line_no}: duplicate dialogue id"))
                        continue
                    seen.add(dialogue.dialogue_id)
                    dialogues.append(dialogue)
        try:
            bench = cls(
                dialogues,
                name=manifest.name,
                version=manifest.version,
                root=folder,
                source=manifest.source,
                issues=[*manifest.issues, *problems],
            )
        except ValueError as exc:
            raise ValueError(f"{bench_path}: {exc}") from exc
        if verify and bench.content_hash != manifest.content_hash:
            if lenient:
                bench.issues.append(ValidationIssue(
                    code="hash_mismatch", severity="error",
                    message=f"content hash {bench.content_hash} does not match the manifest's {manifest.content_hash}"))
                return bench
            raise ValueError(
                f"{folder}: content hash {bench.content_hash} does not match the manifest's "
                f"{manifest.content_hash}; the dialogues were edited after the bench was built"
            )
        return bench


def _short(exc: BaseException, limit: int = 600) -> str:
    """An exception's message cut to ``limit`` characters (a hostile file can make it huge)."""
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + " ..."


def validation_summary(exc: Any, *, whole: str = "the file", limit: int | None = None) -> str:
    """A pydantic ``ValidationError`` as one line, ``field.sub: message; ...`` (``whole`` names an
    error about the value as a whole; at most ``limit`` errors).

    >>> from pydantic import ValidationError
    >>> try:
    ...     RunConfig.model_validate({"adapter": "x", "batch_size": 0})
    ... except ValidationError as exc:
    ...     print(validation_summary(exc))
    batch_size: Input should be greater than or equal to 1
    """
    errors = exc.errors()[:limit] if limit is not None else exc.errors()
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or whole}: {e['msg']}" for e in errors)


def is_file(path: str | Path) -> bool:
    """``Path.is_file`` that answers False instead of raising for a hostile name (too long, NUL)."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def path_inside(path: str | Path, root: str | Path) -> bool:
    """Whether ``path`` (relative paths: under ``root``) stays inside ``root``, compared lexically.

    ``..`` steps and absolute paths elsewhere leave the root; symlinks inside it are allowed
    (an images folder may well be a link to a COCO copy).
    """
    root_text = os.path.normpath(os.path.abspath(root))
    full = os.path.normpath(os.path.join(root_text, os.fspath(path)))
    return full == root_text or full.startswith(root_text.rstrip(os.sep) + os.sep)


# --------------------------------------------------------------------------------------------
# Predictions
# --------------------------------------------------------------------------------------------


class Region(_Model):
    """A predicted region in original-image pixels: a box, optionally a point inside it."""

    box: Box
    point: Point | None = None
    extra_points: tuple[Point, ...] = ()
    label: str | None = None


ReferenceSource = Literal["predicted", "gold", "gold-fallback", "no-region"]
FailureKind = Literal["answer", "infra"]


class UsedReference(_Model):
    """What actually filled a reference when a turn was asked (recorded for audit)."""

    turn: int
    source: ReferenceSource
    box: Box | None = None
    text: str


class AnswerReading(_Model):
    """How the runner read a text answer other than as plain original pixels, kept with the record so
    that a validator reads ``raw_text`` again the same way (a run's images may not travel with it).

    ``frame`` is the coordinate frame's ``(width, height)`` in its own units and ``image`` the original
    image's ``(width, height)`` it spans; ``answer_tag``: only ``<answer>`` text counts;
    ``max_regions``: at most this many objects are read.
    """

    frame: tuple[float, float] | None = None
    image: tuple[int, int] | None = None
    answer_tag: bool = False
    max_regions: int | None = None


class PredictionRecord(_Model):
    """One line of ``predictions.jsonl``: a turn as asked and answered."""

    dialogue_id: str
    turn: int
    round: int
    question: str
    raw_text: str
    regions: list[Region] = Field(default_factory=list)
    mask: RLE | None = None
    references: list[UsedReference] = Field(default_factory=list)
    error: str | None = None
    latency_s: float = 0.0
    batch: int = 0
    # why the turn failed (None when it did not): "answer" = the model's answer was unusable,
    # "infra" = the server/backend failed (connection, timeout, 5xx after retries)
    failure_kind: FailureKind | None = None
    reading: AnswerReading | None = None  # None: raw_text was read as original pixels, with the defaults

    @property
    def key(self) -> tuple[str, int]:
        return (self.dialogue_id, self.turn)


def iter_prediction_log(
    path: str | Path,
    *,
    strict: bool = True,
    skipped: list[tuple[int, str]] | None = None,
) -> Iterator[PredictionRecord]:
    """The records of a prediction log (``.jsonl`` or ``.jsonl.gz``), one at a time, in file order.

    Only one line is held at a time, so a reader that keeps little per record (``compare``,
    ``view``) stays small on a log of any length. Duplicates are yielded as they come; ``strict``
    and ``skipped`` are as in :func:`read_prediction_log`.
    """
    import gzip

    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    line_no = 0
    try:
        with opener(path, "rb") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    if not line.endswith(b"\n") and not strict:
                        raise ValueError("the last line is torn (the run was killed while writing it)")
                    record = PredictionRecord.model_validate_json(line)
                except (ValueError, RecursionError) as exc:
                    if strict:
                        torn = "" if line.endswith(b"\n") else (
                            " (a torn last line: the run was killed while writing it; `evaluate --resume` repairs it)")
                        raise ValueError(f"{path}:{line_no}: not a prediction record{torn}: {_short(exc, 300)}") from exc
                    if skipped is not None:
                        skipped.append((line_no, _short(exc, 300)))
                    continue
                yield record
    except (OSError, EOFError) as exc:
        where = f"{path}:{line_no + 1}" if line_no else str(path)
        raise ValueError(f"{where}: cannot read the prediction log ({exc})") from exc


def read_prediction_log(
    path: str | Path,
    *,
    strict: bool = True,
    skipped: list[tuple[int, str]] | None = None,
) -> list[PredictionRecord]:
    """Read a prediction log (``.jsonl`` or ``.jsonl.gz``), in file order.

    ``strict`` (validation, scoring): every line must be a record, duplicates are kept for the
    caller to reject, and errors name the file and line. Not strict (resuming a killed run):
    every unreadable line (a torn tail, a corrupted line anywhere) is skipped and reported in
    ``skipped`` as ``(line number, reason)``; every valid record around it is kept, and a later
    record for a turn replaces an earlier one.
    """
    records: list[PredictionRecord] = []
    latest: dict[tuple[str, int], int] = {}
    for record in iter_prediction_log(path, strict=strict, skipped=skipped):
        if strict:
            records.append(record)
        elif record.key in latest:
            records[latest[record.key]] = record
        else:
            latest[record.key] = len(records)
            records.append(record)
    return records


class RunConfig(_Model):
    """How to run a model on a bench; the YAML of ``regiondial evaluate --config``.

    >>> RunConfig(adapter="oracle", reference_mode="gold").batch_size
    16
    """

    adapter: str
    adapter_options: dict[str, Any] = Field(default_factory=dict)
    mask_producer: str | None = None
    mask_producer_options: dict[str, Any] = Field(default_factory=dict)
    reference_mode: ReferenceMode = "predicted"
    batch_size: int = Field(default=16, ge=1)
    with_history: bool = False
    limit: int | None = Field(default=None, ge=1, description="evaluate only the first N dialogues")
    parser: ParserName | None = Field(
        default=None,
        description="answer parser: 'tolerant', or 'upstream' (exact upstream parity); "
        "None derives it from reference_mode (upstream -> upstream, else tolerant)",
    )
    seed: int | None = Field(
        default=None, ge=0,
        description="the seed sampling adapters draw from in this run (evaluate --repeats N --seed S "
        "gives repeat i the seed S + i); None leaves the adapter's own",
    )

    @property
    def answer_parser(self) -> ParserName:
        """The parser this run uses: ``parser``, else derived from the reference mode.

        >>> RunConfig(adapter="oracle", reference_mode="upstream").answer_parser
        'upstream'
        """
        if self.parser is not None:
            return self.parser
        return "upstream" if self.reference_mode == "upstream" else "tolerant"


class ShardInfo(_Model):
    """Which share of the bench a sharded run evaluates (``regiondial evaluate --shard I/N``).

    ``dialogue_ids`` are the shard's dialogues in bench order; the run's ``bench_hash`` stays the
    full bench's, so shards of one bench can be checked against each other and merged.
    """

    index: int = Field(ge=0)
    count: int = Field(ge=1)
    dialogue_ids: list[str]

    @model_validator(mode="after")
    def _index_below_count(self) -> ShardInfo:
        if self.index >= self.count:
            raise ValueError(f"shard index {self.index} is not below the shard count {self.count}")
        return self


class RunSpec(RunConfig):
    """A run's configuration plus the bench it ran on; stored as ``run.json`` beside the log."""

    schema_version: str = SCHEMA_VERSION
    bench_name: str
    bench_hash: str
    bench_location: str
    working_dir: str = ""  # where the run was started: a relative bench_location resolves against it

    @model_validator(mode="before")
    @classmethod
    def _record_parser(cls, data: Any) -> Any:
        """run.json always names the parser (older run.json files get the derived one)."""
        if isinstance(data, dict) and data.get("parser") is None:
            data = {**data, "parser": "upstream" if data.get("reference_mode") == "upstream" else "tolerant"}
        return data
    shard: ShardInfo | None = None  # None: the whole bench (or a merge of all its shards)

    def fingerprint(self) -> str:
        """A hash of the settings that must not change across ``--resume``."""
        payload = self.model_dump(mode="json", exclude={"bench_location", "batch_size", "working_dir"})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


class ConfidenceInterval(_Model):
    low: float
    high: float


class RoundRow(_Model):
    """Scores of one round index (``"1"``, ``"2"``, ...), a bucket (``"8+"``) or ``"all"``.

    Scores are percentages. ``giou``/``ciou`` are None when the run produced no masks.
    """

    round: str
    n: int
    ap50: float | None
    ap50_top1: float | None
    mean_iou: float | None
    giou: float | None = None
    ciou: float | None = None
    ap50_ci: ConfidenceInterval | None = None
    giou_ci: ConfidenceInterval | None = None
    failures: int = 0
    # share of the turns with masks whose mask IoU is above each threshold ("0.3", "0.5", "0.7", "0.9"),
    # as upstream's per-round evaluator prints them; None when the run produced no masks
    mask_pass: dict[str, float | None] | None = None


class Provenance(_Model):
    bench_name: str
    bench_hash: str
    bench_location: str = ""
    adapter: str
    adapter_config: dict[str, Any] = Field(default_factory=dict)
    reference_mode: str
    parser: str | None = None
    mask_producer: str | None = None
    mask_producer_config: dict[str, Any] = Field(default_factory=dict)
    batch_size: int | None = None
    limit: int | None = None
    package_version: str
    packages: dict[str, str] = Field(default_factory=dict)
    git_revision: str | None = None
    python: str = ""
    platform: str = ""
    created_at: str = ""
    timings: dict[str, float] = Field(default_factory=dict)
    bootstrap: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None  # the run's sampling seed (RunConfig.seed)
    # what the response cache did: {"enabled": true, "hits": n, "misses": m, "stored": k, ...} or why it was off
    response_cache: dict[str, Any] = Field(default_factory=dict)


class FrameCheck(_Model):
    """The coordinate-frame diagnostic of a run (:mod:`regiondial_bench.frames`); it never changes a score.

    Shares and AP50 are percentages over the turns with at least one box (``turns``) or over their
    boxes (``boxes``). ``ap50_by_frame`` holds the AP50 the same answers would get if read in each
    common frame; ``warning`` names the likely frame when it is not the declared one.
    """

    declared: str
    turns: int = 0
    boxes: int = 0
    outside_image: float | None = None
    fits_unit: float | None = None
    fits_1000: float | None = None
    ap50_by_frame: dict[str, float] = Field(default_factory=dict)
    best: str | None = None
    warning: str | None = None


class Results(_Model):
    """``results.json``: per-round rows (every round index), the ``8+`` bucket and ``all``."""

    schema_version: str = SCHEMA_VERSION
    provenance: Provenance
    rounds: list[RoundRow]
    buckets: list[RoundRow] = Field(default_factory=list)
    overall: RoundRow
    failure_reasons: dict[str, int] = Field(default_factory=dict)
    # failed turns by kind: {"answer": n, "infra": m} (see PredictionRecord.failure_kind)
    failure_kinds: dict[str, int] = Field(default_factory=dict)
    frame_check: FrameCheck | None = None

    def row(self, name: str) -> RoundRow | None:
        """The row named ``"1"``..``"12"``, ``"8+"`` or ``"all"``."""
        if name == "all":
            return self.overall
        for row in [*self.rounds, *self.buckets]:
            if row.round == name:
                return row
        return None

    @classmethod
    def read(cls, path: str | Path) -> Results:
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Repeats (evaluate --repeats N --seed S)
# --------------------------------------------------------------------------------------------

REPEATS_FILE = "repeats.json"


class RepeatRow(_Model):
    """One round (``"1"``..., ``"8+"``, ``"all"``) over the repeats of a sampled evaluation.

    Scores are percentages; ``*_sd`` is the sample standard deviation across repeats (None for one
    repeat). ``ap50_consensus``: the share of turns a majority (more than half) of the repeats hit;
    ``agreement``: the share of turns every repeat scores alike (all hit or all miss).
    """

    round: str
    n: int
    ap50: list[float | None]
    ap50_mean: float | None
    ap50_sd: float | None
    ap50_consensus: float | None
    agreement: float | None
    giou: list[float | None] | None = None
    giou_mean: float | None = None
    giou_sd: float | None = None


class RepeatsSummary(_Model):
    """``repeats.json``: the repeats of one evaluation (one run folder each, ``repeat-<i>/``) together."""

    schema_version: str = SCHEMA_VERSION
    repeats: int
    seeds: list[int | None]
    runs: list[str]  # the repeat folders, relative to the folder holding this file
    bench_name: str
    bench_hash: str
    adapter: str
    reference_mode: str
    rounds: list[RepeatRow]
    buckets: list[RepeatRow] = Field(default_factory=list)
    overall: RepeatRow

    def row(self, name: str) -> RepeatRow | None:
        """The row named ``"1"``..``"12"``, ``"8+"`` or ``"all"``."""
        if name == "all":
            return self.overall
        return next((r for r in [*self.rounds, *self.buckets] if r.round == name), None)
