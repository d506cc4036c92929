"""Turning an adapter's answer into the prediction record the log keeps.

A record is built from the request (what was asked, with which references) and the response (the
answer's text, or regions the adapter parsed itself, or a failure). Nothing here raises: an answer
that cannot be recorded becomes a failure of its turn with the reason, so one bad answer never
loses its batch, and what is kept in memory is exactly what its log line reads back as.
"""

from __future__ import annotations

import math
from typing import get_args

from ..adapters.base import RoundRequest, RoundResponse
from ..protocol import parse_answer, upstream_style_for
from ..schema import AnswerReading, PredictionRecord, ReferenceSource, Region, RunSpec, UsedReference
from .folder import MAX_RECORD_TEXT


def clean_text(text: str) -> str:
    """``text`` as valid unicode: each lone surrogate becomes U+FFFD (a split pair is rejoined).

    >>> clean_text("ok \\ud800!")
    'ok \\ufffd!'
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def answer_text(content: object) -> tuple[str, str | None]:
    """An adapter's ``raw_text`` as loggable text, plus a failure reason when it is not text.

    A list of OpenAI-style content parts (``[{"type": "text", "text": ...}, ...]``) is joined
    into its text; bytes are decoded as UTF-8; other types are a failure. Text longer than
    :data:`MAX_RECORD_TEXT` is cut (the parser never reads that far).
    """
    error = None
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    elif isinstance(content, (bytes, bytearray)):
        text = bytes(content).decode("utf-8", "replace")
    elif isinstance(content, (list, tuple)) and all(isinstance(p, (str, dict)) for p in content):
        parts = [p if isinstance(p, str) else p.get("text") for p in content
                 if isinstance(p, str) or p.get("type", "text") in ("text", "output_text")]
        if all(isinstance(p, str) for p in parts):
            text = "".join(parts)
        else:
            text, error = "", "the answer's content parts hold no text"
    else:
        text, error = "", f"the answer is a {type(content).__name__}, not text"
    text = clean_text(text)
    if len(text) > MAX_RECORD_TEXT:
        text = text[:MAX_RECORD_TEXT] + f" ... [cut: {len(text)} characters]"
    return text, error


def _plain_floats(values: object, count: int) -> bool:
    """Whether ``values`` is a tuple of ``count`` finite ``float``s (exactly those types)."""
    return (type(values) is tuple and len(values) == count
            and all(type(v) is float and math.isfinite(v) for v in values))  # type: ignore[union-attr]


def _reads_back_unchanged(record: PredictionRecord) -> bool:
    """Whether ``record``'s log line reads back as an equal record, known without decoding it.

    Building a record validates its own fields (exact ``str``/``int``/``float``), but model
    instances inside it are taken as they are: a region, reference or mask made without
    validation can hold anything. This accepts a record only when everything that reaches the
    line is a value JSON carries exactly: no mask, a finite ``latency_s``, regions and references
    of exactly their model types holding finite floats of the right counts (a finite float
    round-trips through its shortest repr; ints, validated strings and literals do too, and a
    string that is not valid unicode fails the dump before this is asked). Whatever it refuses
    is read back for real, so a refusal costs time, never correctness.
    """
    if record.mask is not None or not math.isfinite(record.latency_s):
        return False
    reading = record.reading
    if reading is not None and not (
        type(reading) is AnswerReading and (reading.frame is None or _plain_floats(reading.frame, 2))
        and (reading.image is None or (type(reading.image) is tuple and len(reading.image) == 2
                                       and all(type(v) is int for v in reading.image)))
        and type(reading.answer_tag) is bool
        and (reading.max_regions is None or type(reading.max_regions) is int)):
        return False
    for region in record.regions:
        if not (type(region) is Region and _plain_floats(region.box, 4)
                and (region.point is None or _plain_floats(region.point, 2))
                and type(region.extra_points) is tuple and all(_plain_floats(p, 2) for p in region.extra_points)
                and (region.label is None or type(region.label) is str)):
            return False
    for used in record.references:
        if not (type(used) is UsedReference and type(used.turn) is int and type(used.source) is str
                and used.source in _REFERENCE_SOURCES
                and (used.box is None or _plain_floats(used.box, 4)) and type(used.text) is str):
            return False
    return True


_REFERENCE_SOURCES = frozenset(get_args(ReferenceSource))


def _finite_region(region: object) -> bool:
    values = [*region.box, *(region.point or ()), *(v for p in region.extra_points for v in p)]  # type: ignore[attr-defined]
    return all(math.isfinite(v) for v in values)


def build_record(request: RoundRequest, response: RoundResponse, latency: float, *, batch: int,
                 parse_options: dict[str, str]) -> PredictionRecord:
    """The log record of one answered turn; never raises (a record that cannot be built or
    serialized becomes a failure of that turn with the reason)."""
    try:
        return _build_record(request, response, latency, batch, parse_options)
    except Exception as exc:  # noqa: BLE001 - one bad answer must not lose its batch
        return failed_record(request, getattr(response, "raw_text", ""), latency, exc, batch=batch)

def failed_record(request: RoundRequest, raw: object, latency: float, exc: Exception, *, batch: int
                  ) -> PredictionRecord:
    """The record of a turn whose answer could not be recorded, with the reason."""
    reason = f"the answer could not be recorded: {type(exc).__name__}: {clean_text(str(exc))[:500]}"
    return PredictionRecord(
        dialogue_id=request.dialogue_id,
        turn=request.turn,
        round=request.round,
        question=clean_text(request.question),
        raw_text=clean_text(raw) if isinstance(raw, str) else "",
        references=list(request.references),
        error=reason,
        latency_s=round(latency, 6) if math.isfinite(latency) else 0.0,
        batch=batch,
        failure_kind="answer",
    )

def loggable(request: RoundRequest, record: PredictionRecord, *, batch: int) -> tuple[PredictionRecord, str]:
    """The record as it reads back from its log line, and the line; a record that does not read
    back (or reads back with a non-finite coordinate) becomes a failure of its turn.

    A record of plain values (:func:`_reads_back_unchanged`: what the runner builds from a
    parsed answer) provably reads back as itself, so its line is not decoded again; any other
    record (a mask producer's or an adapter's unvalidated objects) is read back for real.
    """
    try:
        line = record.model_dump_json(exclude_defaults=True, warnings="error")
        if _reads_back_unchanged(record):
            return record, line
        back = PredictionRecord.model_validate_json(line)
        if not all(_finite_region(r) for r in back.regions):  # e.g. an int beyond float range
            raise ValueError("a coordinate is not a finite number once written")
        return back, line  # what is kept in memory is exactly what the log holds
    except Exception as exc:  # noqa: BLE001 - e.g. an adapter's mask or region of the wrong type
        failed = failed_record(request, record.raw_text, record.latency_s, exc, batch=batch)
        return failed, failed.model_dump_json(exclude_defaults=True)

def parse_options_for(spec: RunSpec) -> dict[str, str]:
    """The parser and upstream reader a run's answers are read with."""
    return {
        "parser": spec.parser or "tolerant",
        "upstream_style": upstream_style_for(spec.adapter_options.get("preset")),
    }

def _build_record(request: RoundRequest, response: RoundResponse, latency: float, batch: int,
                  parse_options: dict[str, str]) -> PredictionRecord:
    raw_text, content_error = answer_text(response.raw_text)
    kind = reading = None
    if response.error is not None:
        regions, error = [], clean_text(str(response.error))[:10_000]
        kind = "infra" if response.failure_kind == "infra" else "answer"
    elif content_error is not None:
        regions, error = [], content_error
    elif response.regions is not None:
        regions, error = list(response.regions), None
    elif response.frame is not None and request.image.size is None:
        regions, error = [], "cannot map the answer back to pixels: the image size is unknown"
    else:
        parsed = parse_answer(
            raw_text,
            frame=response.frame,
            image_size=request.image.size,
            require_answer_tag=response.require_answer_tag,
            **({"max_regions": response.max_regions} if response.max_regions else {}),
            **parse_options,
        )
        regions, error = parsed.regions, parsed.error
        reading = answer_reading(response, request.image.size)
    if error is None and not all(_finite_region(r) for r in regions):
        regions, error = [], "the answer holds a non-finite coordinate (after mapping to pixels)"
    if error is not None and kind is None:
        kind = "answer"
    return PredictionRecord(
        dialogue_id=request.dialogue_id,
        turn=request.turn,
        round=request.round,
        question=clean_text(request.question),
        raw_text=raw_text,
        regions=regions,
        mask=response.mask,
        references=list(request.references),
        error=error,
        latency_s=round(latency, 6),
        batch=batch,
        failure_kind=kind,
        reading=reading,
    )


def answer_reading(response: RoundResponse, image_size: tuple[int, int] | None) -> AnswerReading | None:
    """How a text answer was read, when not as plain original pixels with the defaults (None then)."""
    frame = response.frame
    if frame is None and not response.require_answer_tag and not response.max_regions:
        return None
    return AnswerReading(
        frame=None if frame is None else (float(frame.width), float(frame.height)),
        image=None if frame is None or image_size is None else (int(image_size[0]), int(image_size[1])),
        answer_tag=bool(response.require_answer_tag),
        max_regions=response.max_regions or None,
    )
