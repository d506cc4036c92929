"""A logged record checked against what it was derived from.

A prediction record holds what was asked (the question, the references that filled it) and what
was answered (``raw_text``), plus what the harness derived from those (regions, mask, failure).
Whoever reads a log they did not write (``merge``, the leaderboard's validator) derives those
again and compares, instead of trusting them:

* **the question**: re-rendered from the bench's turn and the record's references
  (:func:`~regiondial_bench.protocol.render_question`), each reference's text being the rendering
  of its box (original pixels, or the model's frame the run read its answers in);
* **the regions**: ``raw_text`` read again through :func:`.records.build_record`, the runner's
  own path, with the run's parser and upstream reader and the record's
  :class:`~regiondial_bench.schema.AnswerReading` (coordinate frame, image size, answer tag);
  adapters that give regions themselves (:attr:`Adapter.renders_regions`) write them into
  ``raw_text`` as original pixels, so theirs are read that way too;
* **the mask**: only with regions, of the image's size, equal to the ``box`` producer's mask when
  that producer made it, and absent when nothing in the run makes masks.

Each disagreement is a :class:`Mismatch` naming the dialogue, turn and field.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..adapters.base import ImageInput, RoundRequest, RoundResponse
from ..geometry import CoordinateFrame
from ..protocol import default_reference_text, format_box, parse_answer, render_question
from ..schema import Bench, Dialogue, PredictionRecord, Region, RunSpec, Turn, UsedReference
from .records import build_record, parse_options_for

QuestionForm = Literal["text", "digest", "either"]
"""How a log holds its questions: as text (a run folder), as ``sha256:`` digests (a redacted
bench's submission), or either."""

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}\Z")
MAX_SHOWN = 160  # characters of a logged value shown in a mismatch


@dataclass(frozen=True)
class Mismatch:
    """One record field that is not what it derives from."""

    dialogue_id: str
    turn: int
    field: str
    detail: str

    def __str__(self) -> str:
        return f"dialogue {self.dialogue_id!r} turn {self.turn} {self.field}: {self.detail}"


@dataclass(frozen=True)
class RunRules:
    """The run settings records are derived with (from its ``run.json`` and adapter class)."""

    reference_mode: str
    parse_options: dict[str, str]
    renders_regions: bool = False
    gives_masks: bool = False
    mask_producer: str | None = None

    @classmethod
    def of(cls, spec: RunSpec) -> RunRules:
        """The rules of a run; an adapter that is not installed here counts as a text adapter
        that makes no masks (the strictest reading)."""
        from ..adapters import get_adapter_class

        try:
            adapter = get_adapter_class(spec.adapter)
        except Exception:  # noqa: BLE001 - an unknown or broken plugin: no claims taken on its word
            adapter = None
        return cls(
            reference_mode=spec.reference_mode,
            parse_options=parse_options_for(spec),
            renders_regions=bool(getattr(adapter, "renders_regions", False)),
            gives_masks=bool(getattr(adapter, "gives_masks", False)),
            mask_producer=spec.mask_producer,
        )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 3] + "..."


def _boxes(regions: Sequence[Region]) -> str:
    shown = [list(r.box) for r in regions[:3]]
    return _short(shown) + (f" and {len(regions) - 3} more" if len(regions) > 3 else "")


# --------------------------------------------------------------------------------------------
# Questions
# --------------------------------------------------------------------------------------------


def aligned_references(mode: str, turn: Turn, record: PredictionRecord) -> list[UsedReference | None]:
    """The record's references aligned with ``turn.references``: None where the mode leaves a
    placeholder literal (``upstream`` fills only the first), as the runner renders them."""
    logged = iter(record.references)
    return [None if mode == "upstream" and not ref.upstream_fill else next(logged, None) for ref in turn.references]


def expected_question(mode: str, turn: Turn, record: PredictionRecord) -> str:
    """The question the runner asks for ``turn`` with the record's references."""
    return render_question(turn, aligned_references(mode, turn, record))


def _reference_texts(used: UsedReference, frames: set[tuple[tuple[float, float], tuple[int, int]]]) -> set[str]:
    """Every text the runner could have written for a reference: original pixels, or the box in
    the model's frame of the dialogue's image."""
    texts = {default_reference_text(used.box)}
    if used.box is not None:
        for (width, height), image in frames:
            frame = CoordinateFrame(width, height)
            texts.add(format_box(frame.box_from_original(used.box, image)))
    return texts


def question_mismatch(mode: str, dialogue: Dialogue, record: PredictionRecord, *, form: QuestionForm = "text",
                      frames: set[tuple[tuple[float, float], tuple[int, int]]] = frozenset()) -> Mismatch | None:
    """Whether the record was asked the question the bench gives with its references (and the round
    its turn is in); ``frames`` are the reading frames of the dialogue's image (see :class:`AnswerReading`)."""
    from ..bench.registry import question_digest

    turn = dialogue.turns[record.turn]
    key = (record.dialogue_id, record.turn)
    if record.round != turn.round:
        return Mismatch(*key, "round", f"logged {record.round}, the bench's turn is in round {turn.round}")
    for used in record.references:
        allowed = _reference_texts(used, frames)
        if used.text not in allowed:
            return Mismatch(*key, f"references[turn {used.turn}].text",
                            f"logged {_short(used.text)}, its box {_short(used.box)} is written {_short(min(allowed))}")
    expected = expected_question(mode, turn, record)
    digest = DIGEST.match(record.question) is not None
    if form == "digest" and not digest:
        return Mismatch(*key, "question", "holds text, but this bench's questions may only be logged as sha256 digests")
    if digest and form in ("digest", "either"):
        if record.question != question_digest(expected):
            return Mismatch(*key, "question", "the digest is not the one of the question the bench and the logged "
                                              f"references give ({_short(expected)})")
        return None
    if record.question != expected:
        return Mismatch(*key, "question", f"logged {_short(record.question)}, the bench and the logged references "
                                          f"give {_short(expected)}")
    return None


# --------------------------------------------------------------------------------------------
# Answers
# --------------------------------------------------------------------------------------------


def _reading_key(record: PredictionRecord) -> tuple[bool, int | None] | None:
    return None if record.reading is None else (record.reading.answer_tag, record.reading.max_regions)


def reread(record: PredictionRecord, rules: RunRules, image_size: tuple[int, int] | None) -> PredictionRecord:
    """The record the runner builds from this record's ``raw_text`` with the run's parser and the
    record's reading (what :func:`.records.build_record` gives for it)."""
    reading = record.reading
    if reading is not None and reading.image is not None:
        image_size = reading.image
    frame = None
    if reading is not None and reading.frame is not None:
        frame = CoordinateFrame(*reading.frame)
    width, height = image_size if image_size is not None else (None, None)
    request = RoundRequest(dialogue_id=record.dialogue_id, turn=record.turn, image=ImageInput(width=width, height=height),
                           question=record.question, question_template="", references=tuple(record.references))
    response = RoundResponse(raw_text=record.raw_text, frame=frame,
                             require_answer_tag=bool(reading and reading.answer_tag),
                             max_regions=reading.max_regions if reading is not None else None)
    return build_record(request, response, 0.0, batch=0, parse_options=rules.parse_options)


def answer_mismatch(record: PredictionRecord, rules: RunRules, image_size: tuple[int, int] | None,
                    run_reading: tuple[bool, int | None] | None) -> Mismatch | None:
    """Whether the record's failure, regions and mask are what its ``raw_text`` gives.

    ``image_size`` is the bench's size of the dialogue's image (None: unknown); ``run_reading`` the
    ``(answer_tag, max_regions)`` every parsed answer of the run was read with (None: defaults).
    """
    key = (record.dialogue_id, record.turn)
    if (record.error is None) != (record.failure_kind is None):
        return Mismatch(*key, "failure_kind", f"logged {record.failure_kind!r} with error {_short(record.error)}")
    if record.error is not None:
        if record.regions:
            return Mismatch(*key, "regions", f"a failed turn ({_short(record.error)}) holds {_boxes(record.regions)}")
        return _mask_mismatch(record, rules, image_size)
    reading = record.reading
    if reading is not None and rules.renders_regions:
        return Mismatch(*key, "reading", "this adapter writes its regions into raw_text as original pixels; "
                                         f"a reading {_short(reading.model_dump(exclude_defaults=True))} is not its own")
    if _reading_key(record) != run_reading:
        return Mismatch(*key, "reading", f"answer tag and region limit {_reading_key(record)}, other answers of the "
                                         f"run were read with {run_reading}")
    if reading is not None and reading.image is not None and image_size is not None and reading.image != image_size:
        return Mismatch(*key, "reading.image", f"logged {list(reading.image)}, the bench's image is {list(image_size)}")
    again = reread(record, rules, image_size)
    same = again.error is None and again.regions == record.regions
    if not same and rules.renders_regions:
        rendered = parse_answer(record.raw_text)  # the adapter's own rendering: original pixels
        same = rendered.error is None and rendered.regions == record.regions
    if not same:
        reads_as = _boxes(again.regions) if again.error is None else f"no region ({again.error})"
        return Mismatch(*key, "regions", f"logged {_boxes(record.regions)}, raw_text reads as {reads_as}")
    return _mask_mismatch(record, rules, reading.image if reading is not None and reading.image else image_size)


def _mask_mismatch(record: PredictionRecord, rules: RunRules, image_size: tuple[int, int] | None) -> Mismatch | None:
    key = (record.dialogue_id, record.turn)
    mask = record.mask
    if mask is None:
        if record.regions and rules.mask_producer == "box" and not rules.gives_masks:
            return Mismatch(*key, "mask", "missing: the run's box producer makes one for every answer with regions")
        return None
    if not record.regions:
        return Mismatch(*key, "mask", "a turn without regions holds a mask")
    if image_size is not None and tuple(mask.size) != (image_size[1], image_size[0]):
        return Mismatch(*key, "mask", f"size {list(mask.size)} (height, width), the image is "
                                      f"{image_size[1]}x{image_size[0]}")
    if rules.gives_masks:
        return None  # the adapter's own masks: consistent with the regions, not re-derivable here
    if rules.mask_producer is None:
        return Mismatch(*key, "mask", "the run names no mask producer and its adapter makes no masks")
    if rules.mask_producer == "box":
        from .segment import create_mask_producer

        height, width = mask.size
        expected = create_mask_producer("box").masks([(ImageInput(width=width, height=height), record.regions)])[0]
        if expected != mask:
            return Mismatch(*key, "mask", "not the box producer's mask of the logged regions")
    return None


# --------------------------------------------------------------------------------------------
# A whole log
# --------------------------------------------------------------------------------------------


@dataclass
class LogCheck:
    """The mismatches of a log: questions (what was asked) and answers (what was derived)."""

    questions: list[Mismatch]
    answers: list[Mismatch]

    def problems(self, what: str = "record(s)") -> list[str]:
        """One line per kind of mismatch: how many, and the first, named exactly."""
        out = []
        if self.questions:
            out.append(f"{len(self.questions)} {what} were not asked what the bench asks (first: {self.questions[0]})")
        if self.answers:
            out.append(f"{len(self.answers)} {what} do not hold what their raw_text gives (first: {self.answers[0]})")
        return out


def check_log(bench: Bench, records: Sequence[PredictionRecord], rules: RunRules, *,
              questions: QuestionForm = "text") -> LogCheck:
    """Re-derive every record of a log that names a turn of ``bench`` (others are the caller's to
    report) and collect the mismatches, in log order."""
    frames: dict[str, set[tuple[tuple[float, float], tuple[int, int]]]] = {}
    run_reading = None
    for record in records:
        reading = record.reading
        if reading is not None and reading.frame is not None and reading.image is not None:
            frames.setdefault(record.dialogue_id, set()).add((reading.frame, reading.image))
        if record.error is None and reading is not None and run_reading is None:
            run_reading = _reading_key(record)
    check = LogCheck([], [])
    for record in records:
        try:
            dialogue = bench.dialogue(record.dialogue_id)
        except KeyError:
            continue
        if not 0 <= record.turn < len(dialogue.turns):
            continue
        dialogue_frames = frames.get(record.dialogue_id, set())
        if len(dialogue_frames) > 1:
            check.answers.append(Mismatch(record.dialogue_id, record.turn, "reading.frame",
                                          f"answers about one image were read in {len(dialogue_frames)} frames "
                                          f"{_short(sorted(dialogue_frames))}"))
            continue
        mismatch = question_mismatch(rules.reference_mode, dialogue, record, form=questions, frames=dialogue_frames)
        if mismatch is not None:
            check.questions.append(mismatch)
        mismatch = answer_mismatch(record, rules, dialogue.image.size, run_reading)
        if mismatch is not None:
            check.answers.append(mismatch)
    return check
