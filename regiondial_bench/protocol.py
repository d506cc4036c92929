"""Render a round's question (reference substitution) and parse model text into regions.

There is one parser for the whole project: evaluation, baselines and training rewards all call
:func:`parse_answer`. It never raises on model text, never returns a non-finite coordinate, and
takes time linear in the text (no regex backtracking; the tolerant reader is capped by
:data:`MAX_SCAN_TOKENS` and :data:`MAX_DEPTH`). Every failure comes back as a reason.

Two readings: ``tolerant`` (the default) accepts the common variants of an answer; ``upstream``
(:func:`parse_answer_upstream`) reads exactly as the upstream evaluator does, for parity runs.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .geometry import CoordinateFrame, box_validity_error, round_half_up
from .schema import (
    Box,
    Dialogue,
    ParserName,
    PredictionRecord,
    Reference,
    ReferenceSource,
    Region,
    Turn,
    UsedReference,
)

NO_REGION_TEXT = "[no region]"
"""Rendered in place of a reference whose turn produced no box (``predicted`` mode)."""

TAGS = ("scene", "focus", "think", "answer")

ReferenceFormatter = Callable[[Box | None], str]


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def format_box(box: Sequence[float]) -> str:
    """Python list text of an integer box, as upstream writes references.

    >>> format_box((47.2, 106.5, 303, 466))
    '[47, 107, 303, 466]'
    """
    return "[" + ", ".join(str(round_half_up(v)) for v in box) + "]"


def default_reference_text(box: Box | None) -> str:
    """``[x1, y1, x2, y2]`` in original pixels, or :data:`NO_REGION_TEXT`."""
    return NO_REGION_TEXT if box is None else format_box(box)


def resolve_reference(
    mode: str,
    dialogue: Dialogue,
    turn: Turn,
    reference: Reference,
    answered: Callable[[int], PredictionRecord | None],
) -> tuple[ReferenceSource, Box | None] | None:
    """What fills one reference of ``turn`` under a reference mode: ``(source, box)``.

    ``answered(c)`` returns the logged answer of turn ``c`` of the same dialogue, if any. Returns
    None when the placeholder stays literal (the ``upstream`` evaluator never fills a second
    placeholder). The runner uses this to ask a turn; submission validation replays it over a log.

    >>> from regiondial_bench.schema import ImageRef
    >>> d = Dialogue(dialogue_id="d", image=ImageRef(), turns=[
    ...     Turn(index=0, question="a", gold_boxes=[(0, 0, 5, 5)]),
    ...     Turn(index=1, question="b <box>{context_bbox}</box>", gold_boxes=[(1, 1, 6, 6)],
    ...          references=[Reference(turn=0)])])
    >>> [resolve_reference(m, d, d.turns[1], d.turns[1].references[0], lambda c: None)
    ...  for m in ("predicted", "gold", "upstream")]
    [('no-region', None), ('gold', (0.0, 0.0, 5.0, 5.0)), ('gold-fallback', (0.0, 0.0, 5.0, 5.0))]
    """
    if mode == "upstream" and not reference.upstream_fill:
        return None
    target = dialogue.turns[reference.turn] if reference.turn < len(dialogue.turns) else None
    gold = target.gold_boxes[0] if target is not None else None
    record = answered(reference.turn) if reference.turn < turn.index else None
    predicted = record.regions[0].box if record is not None and record.regions else None
    if mode == "gold":
        return ("gold", gold) if gold is not None else ("no-region", None)
    if predicted is not None:
        return "predicted", predicted
    if mode == "upstream" and gold is not None:
        return "gold-fallback", gold  # the official evaluator's fallback
    return "no-region", None


def render_question(turn: Turn, used: Sequence[UsedReference]) -> str:
    """Fill each reference placeholder of ``turn.question`` with the text of its used reference.

    ``used`` is aligned with ``turn.references``. A reference without a placeholder leaves the
    question unchanged (an upstream defect, kept as upstream does); so does a ``None`` entry.

    >>> from regiondial_bench.schema import Reference
    >>> t = Turn(index=1, question="Find the guy near the <box>{context_bbox}</box>.",
    ...          gold_boxes=[(1, 1, 5, 5)], references=[Reference(turn=0)])
    >>> render_question(t, [UsedReference(turn=0, source="gold", box=(47, 107, 303, 466),
    ...                                   text="[47, 107, 303, 466]")])
    'Find the guy near the [47, 107, 303, 466].'
    """
    question = turn.question
    for reference, filled in zip(turn.references, used, strict=False):
        if filled is None or reference.placeholder is None:
            continue
        question = question.replace(reference.placeholder, filled.text)
    return question


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


@dataclass
class ParsedAnswer:
    """What :func:`parse_answer` read from a model's text.

    ``regions`` are in original-image pixels. ``error`` is set when no usable region was found
    (the turn scores as a miss); ``notes`` list items that were dropped while others survived.
    """

    regions: list[Region] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    tags: dict[str, str | None] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


PARSERS: tuple[str, ...] = ("tolerant", "upstream")
UPSTREAM_STYLES: tuple[str, ...] = ("regionreasoner", "seg-zero", "qwen")
"""The upstream evaluator reads each baseline with that model's own reader (UPSTREAM.md 3.1-3.4)."""
PRESET_UPSTREAM_STYLE = {"seg-zero-7b": "seg-zero", "qwen2.5-vl-7b": "qwen"}
RELEASED_READER_PRESETS = frozenset({"regionreasoner-7b", "visionreasoner-7b", "seg-zero-7b", "qwen2.5-vl-7b"})
"""The presets whose answers the released evaluation code read (the upstream parser reproduces those readers)."""


def upstream_parser_problem(preset: Any) -> str | None:
    """Why the upstream parser cannot read a preset's answers (None when it can).

    The upstream parser is the released code's reader; a model the released code never evaluated has
    none, and reading its answers with RegionReasoner's strict reader would fail every turn.

    >>> upstream_parser_problem("qwen2.5-vl-7b") is None, upstream_parser_problem(None) is None
    (True, True)
    >>> upstream_parser_problem("qwen3-vl-instruct")[:63]
    "preset 'qwen3-vl-instruct' has no released reader: the upstream"
    """
    if not isinstance(preset, str) or preset in RELEASED_READER_PRESETS:
        return None
    return (f"preset {preset!r} has no released reader: the upstream parser (a run config's 'parser: upstream', "
            f"or --reference-mode upstream when the config sets no parser) reproduces the released code's readers "
            f"of {', '.join(sorted(RELEASED_READER_PRESETS))}; set 'parser: tolerant' in the run config to keep "
            "upstream's references and read this preset's answers with its own format")


def upstream_style_for(preset: Any) -> str:
    """The upstream reader of a model preset (``regionreasoner`` unless the preset has its own).

    >>> upstream_style_for("seg-zero-7b"), upstream_style_for("regionreasoner-7b"), upstream_style_for(None)
    ('seg-zero', 'regionreasoner', 'regionreasoner')
    """
    return PRESET_UPSTREAM_STYLE.get(preset, "regionreasoner") if isinstance(preset, str) else "regionreasoner"


DEFAULT_MAX_REGIONS = 100
"""Most objects the tolerant reader takes from one answer when no cap is given (a bound on a runaway
answer; the upstream reader keeps every object, as upstream does)."""

MAX_BOX_TAGS = 100
"""Most InternVL ``<box>`` blocks read from one answer."""

MAX_SCAN_TOKENS = 10_000
"""How many tokens the tolerant reader reads per answer, over all candidate texts together.

Strict JSON is tried first on a whole candidate (C speed, linear, no cap); only text that is not
strict JSON is read token by token (Python literals, JSON inside prose), and that reading stops
after this many tokens (a valid answer of 100 regions is about 2,200 tokens); an answer whose
reading stops there is a failure, never scored on the part that was read.
"""

MAX_DEPTH = 32
"""Deepest bracket nesting the tolerant reader follows (an answer needs 3)."""

MAX_UPSTREAM_ANSWER_CHARS = 256 * 1024
"""Longest ``<answer>`` content the strict upstream reader decodes; a longer one is a failure.

Upstream generates at most 2,048 new tokens, and no answer within that budget comes near this
size (one object is about 25 tokens), so parity is unchanged for every answer upstream's settings
can produce; what it bounds is a hostile or runaway reply, whose every item the all-or-nothing
rule would otherwise check (about 80 ms for 1 MB)."""

MAX_FENCES = 8
"""How many fenced code blocks of one answer are tried."""

_OPEN_TAG = {tag: re.compile(re.escape(f"<{tag}>"), re.IGNORECASE) for tag in TAGS}
_CLOSE_TAG = {tag: re.compile(re.escape(f"</{tag}>"), re.IGNORECASE) for tag in TAGS}
# the fence head after ```: optional language name, then an optional newline (unambiguous: linear)
_FENCE_HEAD = re.compile(r"[ \t]*(?:json|python|JSON)?[ \t]*\n?")
_START = re.compile(r"[\[{]")
_TRAILING_SPACE = re.compile(r"\s*\Z")
MAX_STRING_RETRIES = 16  # starts tried inside unclosed quotes before the rest of their line is skipped
# one token of JSON / Python-literal text; every alternative starts with a distinct character
# class and has one way to match, so a failed match costs at most one pass over its characters
_TOKEN = re.compile(
    r"""[ \t\n\r\f\v]*(?:"""
    r"""(?P<punct>[\[\]{}(),:])"""
    r"""|(?P<string>"(?:[^"\\\n]|\\.)*(?P<dq>")?|'(?:[^'\\\n]|\\.)*(?P<sq>')?)"""
    r"""|(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"""
    r"""|(?P<word>-?[A-Za-z_]\w*))"""
)
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|.)", re.DOTALL)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/", "\\": "\\", '"': '"', "'": "'"}
_WORDS: dict[str, Any] = {
    "true": True, "True": True, "false": False, "False": False, "null": None, "None": None,
    "NaN": math.nan, "nan": math.nan, "Infinity": math.inf, "-Infinity": -math.inf,
}
_BOX_KEYS = ("bbox_2d", "bbox", "box_2d", "box")
_POINT_KEYS = ("point_2d", "point", "points_1", "points")


def _tag_span(text: str, tag: str) -> tuple[int, int | None] | None:
    """``(content start, content end)`` of the first ``<tag>``; end None when it is never closed.

    Two literal searches, so linear: the first ``<tag>`` followed by a ``</tag>`` is the first
    ``<tag>`` at all (a later one cannot have a closing tag the first one lacks).
    """
    opened = _OPEN_TAG[tag].search(text)
    if opened is None:
        return None
    closed = _CLOSE_TAG[tag].search(text, opened.end())
    return opened.end(), (closed.start() if closed else None)


def extract_tags(text: str) -> dict[str, str | None]:
    """The stripped content of the first ``<scene>``, ``<focus>``, ``<think>``, ``<answer>`` blocks.

    Tags match case-insensitively; an unclosed tag gives None. Linear in the text.

    >>> extract_tags("<think> a </think><answer>[]</answer>")["think"]
    'a'
    >>> extract_tags("<think>never closed")["think"] is None
    True
    """
    found: dict[str, str | None] = {}
    for tag in TAGS:
        span = _tag_span(text, tag)
        found[tag] = text[span[0]:span[1]].strip() if span is not None and span[1] is not None else None
    return found


def parse_answer(
    text: str | None,
    *,
    frame: CoordinateFrame | None = None,
    image_size: tuple[int, int] | None = None,
    require_answer_tag: bool = False,
    max_regions: int | None = None,
    parser: ParserName = "tolerant",
    upstream_style: str = "regionreasoner",
) -> ParsedAnswer:
    """Read regions from model text; never raises, never returns a non-finite coordinate.

    ``parser="tolerant"`` (default) accepts an ``<answer>`` JSON list of
    ``{"bbox_2d": [...], "point_2d": [...]}`` objects and the common variants: code fences, a
    single object, ``bbox``/``points_1`` keys, a bare ``[x1, y1, x2, y2]`` list, Python-literal
    quoting, JSON inside prose, InternVL's ``<ref>...</ref><box>[[...]]</box>`` (every ``<box>``
    block), and, without an ``<answer>`` tag, only the text after a closed ``</think>`` (a
    thinking model's answer follows its reasoning); unusable items are dropped with a note.
    ``parser="upstream"`` reads as the upstream evaluator does (:func:`parse_answer_upstream`, in
    ``upstream_style``).

    ``max_regions`` caps the objects read: None means the reader's own rule, the first
    :data:`DEFAULT_MAX_REGIONS` for the tolerant reader and every object for the upstream reader
    (upstream keeps them all); a preset's ``max_objects`` (Seg-Zero: 1) applies to both.

    Coordinates are read in ``frame`` and returned in original pixels of an image of
    ``image_size`` = ``(width, height)``; without a frame they are taken as original pixels
    already. The time is linear in ``len(text)``: tags are found by literal search, strict JSON
    is decoded in C, and anything else is read by a bounded tokenizer (:data:`MAX_SCAN_TOKENS`,
    :data:`MAX_DEPTH`, :data:`MAX_FENCES`).

    >>> p = parse_answer('<think>t</think><answer>[{"bbox_2d": [10, 20, 30, 40], "point_2d": [15, 25]}]</answer>')
    >>> p.regions[0].box, p.regions[0].point
    ((10.0, 20.0, 30.0, 40.0), (15.0, 25.0))
    >>> parse_answer("no idea").error
    'no JSON found in the text'
    >>> parse_answer('```json\\n[{"bbox_2d": [0, 0, 500, 500]}]\\n```',
    ...              frame=CoordinateFrame.normalized(1000), image_size=(640, 480)).regions[0].box
    (0.0, 0.0, 320.0, 240.0)
    """
    if not isinstance(text, str):
        return ParsedAnswer(error=f"model output is {type(text).__name__}, not text")
    if parser == "upstream":
        return parse_answer_upstream(text, frame=frame, image_size=image_size, max_regions=max_regions,
                                     style=upstream_style)
    if parser != "tolerant":
        return ParsedAnswer(error=f"unknown parser {_short(parser)}; choose one of {PARSERS}")
    if max_regions is None:
        max_regions = DEFAULT_MAX_REGIONS
    tags = extract_tags(text)
    body = tags["answer"]
    if body is None:
        span = _tag_span(text, "answer")
        if span is not None:
            body = text[span[0]:]  # an unclosed <answer>: the rest of the text
        elif require_answer_tag:
            return ParsedAnswer(error="no <answer> tag", tags=tags)
        else:
            body = _after_thinking(text)
    boxes = _box_tag_blocks(body)
    if boxes:
        items, error = _box_tag_items(boxes)
    else:
        data, error = _load_json(body)
        items = []
        if error is None:
            items, error = _as_items(data)
    if error is not None:
        return ParsedAnswer(error=error, tags=tags)

    regions: list[Region] = []
    notes: list[str] = []
    for position, item in enumerate(items[:max_regions]):
        region, problem = _read_plain_item(item, frame, image_size), None
        if region is None:
            region, problem = _read_item(item, frame, image_size)
        if problem is not None:
            notes.append(f"item {position}: {problem}")
        else:
            regions.append(region)
    if len(items) > max_regions:
        notes.append(f"{len(items) - max_regions} items beyond the first {max_regions} ignored")
    if not regions:
        reason = notes[0] if notes else "answer holds no region"
        return ParsedAnswer(error=reason, notes=notes, tags=tags)
    return ParsedAnswer(regions=regions, notes=notes, tags=tags)


# --------------------------------------------------------------------------------------------
# The upstream evaluator's reading (exact parity)
# --------------------------------------------------------------------------------------------


def parse_answer_upstream(
    text: str | None,
    *,
    frame: CoordinateFrame | None = None,
    image_size: tuple[int, int] | None = None,
    max_regions: int | None = None,
    style: str = "regionreasoner",
) -> ParsedAnswer:
    r"""Read an answer exactly as the upstream RegionReasoner evaluator does (UPSTREAM.md 1, 3.1).

    ``style="seg-zero"`` and ``style="qwen"`` read as upstream's Seg-Zero and Qwen2.5-VL model
    classes do (UPSTREAM.md 3.3, 3.4; :func:`_upstream_seg_zero`, :func:`_upstream_qwen`).
    The RegionReasoner / VisionReasoner reading:

    * the content of the first ``<answer>`` ... ``</answer>`` (case-sensitive), stripped of
      whatever Python's ``\s`` matches (Unicode whitespace such as U+00A0 and U+3000 included, as
      upstream's ``<answer>\s*(.*?)\s*</answer>`` does), is decoded with strict ``json.loads``: no
      fences, no prose, no single quotes; it must be a list; every object is kept (no cap);
    * every item must be an object with ``bbox_2d`` holding at least 4 numbers (the first 4 are
      read), or **the whole answer** gives no boxes;
    * each coordinate is rescaled to original pixels and rounded half up as upstream does,
      ``int(v * factor + 0.5)``; a value that cannot be (NaN, infinite, too large) loses the
      whole answer;
    * boxes are kept whatever their validity (degenerate, outside the image): the first one is
      what upstream propagates as the next round's reference;
    * points (``point_2d``, first 2 numbers) are read the same way, all or nothing: one item
      without a usable point gives no points at all, while its boxes are kept.

    >>> parse_answer_upstream('<answer>[{"bbox_2d": [9, 9, 2, 2]}, {"bbox_2d": [1, 2, 3, 4]}]</answer>').regions[0].box
    (9.0, 9.0, 2.0, 2.0)
    >>> parse_answer_upstream("<answer>[{'bbox_2d': [1, 2, 3, 4]}]</answer>").error
    'upstream parser: the answer is not strict JSON'
    """
    if not isinstance(text, str):
        return ParsedAnswer(error=f"model output is {type(text).__name__}, not text")
    if style not in UPSTREAM_STYLES:
        return ParsedAnswer(error=f"unknown upstream style {_short(style)}; choose one of {UPSTREAM_STYLES}")
    tags = extract_tags(text)
    fx = fy = 1.0
    if frame is not None and image_size is not None:
        fx, fy = image_size[0] / frame.width, image_size[1] / frame.height
    if style == "seg-zero":
        return _upstream_seg_zero(text, fx, fy, tags)
    if style == "qwen":
        return _upstream_qwen(text, fx, fy, tags, max_regions)
    start = text.find("<answer>")
    end = text.find("</answer>", start + 8) if start >= 0 else -1
    if start < 0 or end < 0:
        return ParsedAnswer(error="upstream parser: no <answer>...</answer> block", tags=tags)
    if end - start - 8 > MAX_UPSTREAM_ANSWER_CHARS:
        return ParsedAnswer(error=f"upstream parser: the answer is longer than {MAX_UPSTREAM_ANSWER_CHARS} "
                                  "characters (MAX_UPSTREAM_ANSWER_CHARS)", tags=tags)
    try:
        # upstream's <answer>\s*(.*?)\s*</answer> strips every character Python's \s matches
        # (U+00A0, U+3000, \x1c-\x1f, ...), not only JSON's four: str.strip() strips exactly those
        data = json.loads(text[start + 8:end].strip())
    except (ValueError, RecursionError):  # also integers beyond the int string-conversion limit
        return ParsedAnswer(error="upstream parser: the answer is not strict JSON", tags=tags)
    if not isinstance(data, list):
        return ParsedAnswer(error=f"upstream parser: the answer is a {_type_name(data)}, not a list", tags=tags)
    if not data:
        return ParsedAnswer(error="answer is an empty list", tags=tags)
    boxes, problem = _upstream_coordinates(data, "bbox_2d", 4, fx, fy)
    if problem is not None:
        return ParsedAnswer(error=f"upstream parser: {problem}; the whole answer is lost", tags=tags)
    points, point_problem = _upstream_coordinates(data, "point_2d", 2, fx, fy)
    notes = [] if point_problem is None else [f"upstream parser: no points ({point_problem})"]
    if max_regions is not None and len(boxes) > max_regions:  # every item was checked; fewer are kept
        notes.append(f"{len(boxes) - max_regions} items beyond the first {max_regions} ignored")
        boxes = boxes[:max_regions]
    regions = [
        Region(box=tuple(box), point=tuple(points[i]) if points is not None else None)
        for i, box in enumerate(boxes)
    ]
    return ParsedAnswer(regions=regions, notes=notes, tags=tags)


def _upstream_seg_zero(text: str, fx: float, fy: float, tags: dict[str, str | None]) -> ParsedAnswer:
    """Seg-Zero's reader: the first ``{...}`` by strict ``json.loads``, exactly one object.

    The first key containing ``bbox`` gives the box and the first two keys containing
    ``points`` the points; each coordinate is made an int, then scaled and rounded half up. The
    span is the first ``{`` to the first ``}`` after it (the answer is a flat object). A missing
    or malformed points key drops the points, not the box.
    """
    start = text.find("{")
    end = text.find("}", start) if start >= 0 else -1
    if start < 0 or end < 0:
        return ParsedAnswer(error="upstream parser: no {...} object in the answer", tags=tags)
    try:
        data = json.loads(text[start:end + 1])
    except (ValueError, RecursionError):
        return ParsedAnswer(error="upstream parser: the answer is not strict JSON", tags=tags)
    box_key = next((k for k in data if "bbox" in k), None)
    point_keys = [k for k in data if "points" in k][:2]
    if box_key is None:
        return ParsedAnswer(error="upstream parser: the object has no bbox key", tags=tags)
    boxes, problem = _upstream_coordinates([data], box_key, 4, fx, fy, truncate_first=True)
    if problem is not None:
        return ParsedAnswer(error=f"upstream parser: {problem}; the whole answer is lost", tags=tags)
    points = [_upstream_coordinates([data], k, 2, fx, fy, truncate_first=True)[0] for k in point_keys]
    notes = []
    if len(point_keys) < 2 or any(p is None for p in points):
        notes.append("upstream parser: no points (Seg-Zero needs two usable points keys)")
        points = []
    region = Region(box=tuple(boxes[0]), point=tuple(points[0][0]) if points else None,
                    extra_points=(tuple(points[1][0]),) if points else ())
    return ParsedAnswer(regions=[region], notes=notes, tags=tags)


def _upstream_qwen(
    text: str, fx: float, fy: float, tags: dict[str, str | None], max_regions: int | None
) -> ParsedAnswer:
    r"""The Qwen2.5-VL baseline's reader (``qwen_vl.py``), as released (UPSTREAM.md 3.4).

    * The JSON is the first ````` ```json ````` block (stripped of Python's ``\s``), else the text
      from the first ``[`` to the **first** ``]`` after it (upstream's non-greedy ``\[(.*?)\]``,
      so a list of objects stops inside its first box and fails), else the first ``{`` to the first
      ``}``; a fenced block or bracket span that is not strict JSON gives no boxes (no further
      fallback).
    * The JSON must be a **list** (a top-level object gives no boxes).
    * For each item, for each key in order ``bbox`` then ``bbox_2d``: if the item has it and its
      value has length exactly 4, the box ``[int(v * factor) for v]`` is appended, so floats
      **truncate**, an item with both keys gives **two** boxes and a 5-number box is skipped;
      with factor 1 (Qwen2.5-VL) ``"10" * 1`` is ``"10"`` and ``int("10")`` reads a quoted number.
      Points likewise from ``point`` then ``point_2d`` (length exactly 2), in a list of their own
      that pairs with the boxes by position (upstream zips them).
    * Any exception on the way (an item that is not an object, a value ``int`` cannot take, a
      non-finite number) loses the whole answer, as upstream's ``try``/``except`` returns no boxes.
    """
    body = None
    fence = text.find("```json")
    if fence >= 0:
        close = text.find("```", fence + 7)
        if close >= 0:
            body = text[fence + 7:close].strip()
    if body is None:
        for opening, closing in (("[", "]"), ("{", "}")):
            start = text.find(opening)
            end = text.find(closing, start + 1) if start >= 0 else -1
            if end >= 0:
                body = text[start:end + 1]
                break
    if body is None:
        return ParsedAnswer(error="upstream parser: no JSON block in the answer", tags=tags)
    if len(body) > MAX_UPSTREAM_ANSWER_CHARS:
        return ParsedAnswer(error=f"upstream parser: the JSON is longer than {MAX_UPSTREAM_ANSWER_CHARS} "
                                  "characters (MAX_UPSTREAM_ANSWER_CHARS)", tags=tags)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return ParsedAnswer(error="upstream parser: the answer is not strict JSON", tags=tags)
    if not isinstance(data, list) or not data:
        what = "an empty list" if isinstance(data, list) else f"a {_type_name(data)}, not a list"
        return ParsedAnswer(error=f"upstream parser: the answer is {what}", tags=tags)
    # upstream multiplies by the int 1 for Qwen2.5-VL: keep it an int, so a quoted number reads
    xf = 1 if fx == 1 else fx
    yf = 1 if fy == 1 else fy
    boxes: list[list[int]] = []
    points: list[list[int]] = []
    try:
        for item in data:
            for key in ("bbox", "bbox_2d"):
                if key in item and len(item[key]) == 4:
                    value = item[key]
                    boxes.append([int(value[0] * xf), int(value[1] * yf), int(value[2] * xf), int(value[3] * yf)])
            for key in ("point", "point_2d"):
                if key in item and len(item[key]) == 2:
                    value = item[key]
                    points.append([int(value[0] * xf), int(value[1] * yf)])
        regions = [Region(box=tuple(float(v) for v in box),
                          point=tuple(float(v) for v in points[i]) if i < len(points) else None)
                   for i, box in enumerate(boxes)]
    except (TypeError, ValueError, KeyError, IndexError, OverflowError, AttributeError, MemoryError) as exc:
        return ParsedAnswer(error=f"upstream parser: {type(exc).__name__} reading the items; the whole answer "
                                  f"is lost", tags=tags)
    if not regions:
        return ParsedAnswer(error="upstream parser: the answer holds no box", tags=tags)
    notes = []
    if max_regions is not None and len(regions) > max_regions:
        notes.append(f"{len(regions) - max_regions} boxes beyond the first {max_regions} ignored")
        regions = regions[:max_regions]
    return ParsedAnswer(regions=regions, notes=notes, tags=tags)


def _upstream_coordinates(
    items: list[Any], key: str, count: int, fx: float, fy: float, truncate_first: bool = False
) -> tuple[list[list[float]] | None, str | None]:
    """All items' ``key`` values, rescaled and rounded as upstream; None with the first problem."""
    out = []
    factors = (fx, fy, fx, fy)[:count]  # x coordinates scale by fx, y by fy
    for position, item in enumerate(items):
        if not isinstance(item, dict) or key not in item:
            return None, f"item {position} has no {key!r}"
        values = item[key]
        if not isinstance(values, list) or len(values) < count:
            return None, f"item {position}: {key!r} is not a list of {count} numbers"
        head = values[:count]
        for v in head:
            if not isinstance(v, int | float):  # bool is an int, as in Python arithmetic
                return None, f"item {position}: non-numeric {key!r} value {_short(v)}"
        try:  # int() truncates, exactly as upstream: int(v * factor + 0.5) (Seg-Zero: int(v) first)
            if truncate_first:
                head = [int(v) for v in head]
            coords = [float(int(float(v) * f + 0.5)) for v, f in zip(head, factors, strict=False)]
        except (OverflowError, ValueError):
            return None, f"item {position}: a {key!r} value cannot be rounded (non-finite)"
        out.append(coords)
    return out, None


# --------------------------------------------------------------------------------------------
# The tolerant reader
# --------------------------------------------------------------------------------------------


def _load_json(body: str) -> tuple[Any, str | None]:
    """Find the first JSON (or Python-literal) list/object in ``body``, in linear time."""
    budget = _Budget(MAX_SCAN_TOKENS)
    for candidate in [*_fenced_blocks(body), body]:
        candidate = candidate.strip()
        if not candidate:
            continue
        try:
            return json.loads(candidate), None
        except (ValueError, RecursionError):
            pass
        value = _read_lenient(candidate, budget)
        if value is not _FAIL:
            return value, None
        if budget.left <= 0:
            return None, f"answer is not valid JSON (reading stopped after {MAX_SCAN_TOKENS} tokens)"
    if "[" in body or "{" in body:
        return None, "answer is not valid JSON"
    return None, "no JSON found in the text"


def _fenced_blocks(body: str) -> list[str]:
    """The contents of the first :data:`MAX_FENCES` ````` ```lang ... ``` ````` blocks."""
    blocks: list[str] = []
    pos = 0
    while len(blocks) < MAX_FENCES:
        opened = body.find("```", pos)
        if opened < 0:
            break
        head = _FENCE_HEAD.match(body, opened + 3)
        content = head.end() if head else opened + 3
        closed = body.find("```", content)
        if closed < 0:
            break
        blocks.append(body[content:closed])
        pos = closed + 3
    return blocks


def _after_thinking(text: str) -> str:
    """The text after the last ``</think>``: a thinking model's answer (the whole text without one).

    Qwen3-VL-Thinking's chat template opens ``<think>`` in the prompt, so its output holds only the
    closing tag; its authors split the output at the last ``</think>`` the same way.
    """
    closed = text.rfind("</think>")
    return text if closed < 0 else text[closed + len("</think>"):]


def _box_tag_blocks(body: str) -> list[str]:
    """The contents of InternVL's ``<box>[[x1, y1, x2, y2], ...]</box>`` blocks (at most
    :data:`MAX_BOX_TAGS`); blocks that do not hold a list (a question's ``<box>{context_bbox}</box>``
    echoed back) are skipped. Literal searches only, so linear."""
    blocks: list[str] = []
    pos = 0
    while len(blocks) < MAX_BOX_TAGS:
        opened = body.find("<box>", pos)
        if opened < 0:
            break
        closed = body.find("</box>", opened + 5)
        if closed < 0:
            break
        content = body[opened + 5:closed].strip()
        if content.startswith("["):
            blocks.append(content)
        pos = closed + 6
    return blocks


def _box_tag_items(blocks: list[str]) -> tuple[list[Any], str | None]:
    """The boxes of all ``<box>`` blocks, in order: each block is one ``[x1, y1, x2, y2]`` or a list of them."""
    items: list[Any] = []
    problem = None
    for block in blocks:
        data, error = _load_json(block)
        if error is not None:
            problem = problem or f"a <box> block is not a list of boxes ({error})"
            continue
        if isinstance(data, list) and data and all(isinstance(v, list | tuple) for v in data):
            items.extend(data)
        else:
            items.append(data)
    if not items:
        return [], problem or "the <box> blocks hold no box"
    return items, None


_FAIL = object()


class _Budget:
    def __init__(self, tokens: int) -> None:
        self.left = tokens


class _Stop(Exception):
    """The reader cannot go on: ``pos`` is where it failed (``exhausted``: out of tokens)."""

    def __init__(self, pos: int, exhausted: bool = False, unterminated_end: int | None = None) -> None:
        self.pos = pos
        self.exhausted = exhausted
        self.unterminated_end = unterminated_end


def _read_lenient(text: str, budget: _Budget) -> Any:
    """The whole ``text`` as one Python-literal value, else the first list/object found in it.

    Tries each ``[``/``{`` in order, as a scan for the first decodable value would. A try that
    fails at position p cannot be bettered by a start before p: a container that closed before p
    is itself decodable (the earliest such one is taken), and one still open at p fails at p too.
    So the scan resumes at p and every character is read at most once.
    """
    reader = _Reader(text, budget)
    if text[0] not in "[{":
        try:
            value = reader.value(0, 0)
            if reader.at_end():
                return value
        except _Stop as stop:
            if stop.exhausted:
                return _FAIL
    pos = 0
    retries_in_strings = 0
    while budget.left > 0:
        found = _START.search(text, pos)
        if found is None:
            return _FAIL
        reader = _Reader(text, budget)
        try:
            return reader.value(found.start(), 0)
        except _Stop as stop:
            if stop.exhausted:
                return _FAIL
            if reader.best is not None:
                return reader.best[1]
            if stop.unterminated_end is not None:
                # brackets after an unclosed quote are tried a few times, then its line is skipped
                retries_in_strings += 1
                resume = stop.pos + 1 if retries_in_strings <= MAX_STRING_RETRIES else stop.unterminated_end
            else:
                resume = stop.pos
            pos = max(resume, found.start() + 1)
    return _FAIL


class _Reader:
    """Recursive descent over :data:`_TOKEN` tokens: JSON plus Python literals, depth-bounded."""

    def __init__(self, text: str, budget: _Budget) -> None:
        self.text = text
        self.budget = budget
        self.pos = 0
        self.best: tuple[int, Any] | None = None  # the earliest-starting list/object that closed

    def at_end(self) -> bool:
        return _TRAILING_SPACE.match(self.text, self.pos) is not None

    def _token(self) -> re.Match:
        if self.budget.left <= 0:
            raise _Stop(self.pos, exhausted=True)
        self.budget.left -= 1
        match = _TOKEN.match(self.text, self.pos)
        if match is None:
            raise _Stop(self.pos)
        self.pos = match.end()
        return match

    def _peek_close(self, closing: str) -> bool:
        """Consume ``closing`` if it is the next token."""
        saved = self.pos
        match = self._token()
        if match.group("punct") == closing:
            return True
        self.pos = saved  # a look-ahead read still counts against the budget
        return False

    def value(self, pos: int, depth: int) -> Any:
        self.pos = pos
        return self._value(depth)

    def _value(self, depth: int) -> Any:
        match = self._token()
        kind = _kind(match)
        start = match.start(kind)
        token = match.group(kind)
        if kind == "number":
            return float(token)  # no int conversion: no digit limit, huge values become inf
        if kind == "string":
            if match.group("dq") is None and match.group("sq") is None:
                raise _Stop(start, unterminated_end=match.end())  # no closing quote on this line
            return _unquote(token)
        if kind == "word":
            if token in _WORDS:
                return _WORDS[token]
            raise _Stop(start)
        if token not in "[({":
            raise _Stop(start)
        if depth >= MAX_DEPTH:
            raise _Stop(start)
        closing = {"[": "]", "(": ")", "{": "}"}[token]
        if token == "{":
            value: Any = self._mapping(depth)
        else:
            items, commas = self._sequence(closing, depth)
            value = items if token == "[" else (tuple(items) if commas or len(items) != 1 else items[0])
        if token != "(" and (self.best is None or start < self.best[0]):
            self.best = (start, value)
        return value

    def _sequence(self, closing: str, depth: int) -> tuple[list[Any], bool]:
        items: list[Any] = []
        commas = False
        while True:
            if self._peek_close(closing):
                return items, commas
            items.append(self._value(depth + 1))
            match = self._token()
            punct = match.group("punct")
            if punct == closing:
                return items, commas
            if punct != ",":
                raise _Stop(match.start(_kind(match)))
            commas = True

    def _mapping(self, depth: int) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        while True:
            if self._peek_close("}"):
                return out
            key_pos = self.pos
            key = self._value(depth + 1)
            if isinstance(key, list | dict):
                raise _Stop(key_pos)
            match = self._token()
            if match.group("punct") != ":":
                raise _Stop(match.start(_kind(match)))
            out[key] = self._value(depth + 1)
            match = self._token()
            punct = match.group("punct")
            if punct == "}":
                return out
            if punct != ",":
                raise _Stop(match.start(_kind(match)))


def _kind(match: re.Match) -> str:
    for kind in ("punct", "string", "number", "word"):
        if match.group(kind) is not None:
            return kind
    raise AssertionError("every token alternative is a named group")


def _unquote(token: str) -> str:
    content = token[1:-1]
    if "\\" in content:
        content = _ESCAPE.sub(_unescape, content)
    return _clean_text(content)


def _unescape(match: re.Match) -> str:
    code = match.group(1)
    if code[0] in "ux" and len(code) > 1:
        return chr(int(code[1:], 16))
    return _SIMPLE_ESCAPES.get(code, "\\" + code)


def _clean_text(value: str) -> str:
    """``value`` with surrogate pairs joined and lone surrogates replaced (always UTF-8 encodable)."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _type_name(value: Any) -> str:
    return {dict: "dict", list: "list", str: "str", bool: "bool", int: "int", float: "float"}.get(
        type(value), type(value).__name__)


def _short(value: Any, limit: int = 40) -> str:
    """A bounded, printable, encodable description of a value from outside (for reasons)."""
    if isinstance(value, list | tuple | dict):
        return f"a {_type_name(value)} of {len(value)} items"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**40:
        return "a huge integer"
    text = repr(value[: limit + 1] if isinstance(value, str) else value)
    text = _clean_text(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_items(data: Any) -> tuple[list[Any], str | None]:
    if isinstance(data, dict):
        return [data], None
    if isinstance(data, list | tuple):
        if not data:
            return [], "answer is an empty list"
        if len(data) == 4 and all(_is_number(v) for v in data):
            return [list(data)], None  # a bare [x1, y1, x2, y2]
        return list(data), None
    return [], f"answer JSON is a {_type_name(data)}, expected a list of objects"


def _numbers(value: Any, count: int) -> tuple[list[float] | None, str | None]:
    if isinstance(value, list | tuple) and len(value) == count // 2 and all(
        isinstance(v, list | tuple) and len(v) == 2 for v in value
    ):
        value = [c for pair in value for c in pair]  # [[x1, y1], [x2, y2]]
    if not isinstance(value, list | tuple):
        return None, f"expected {count} numbers, got {_type_name(value)}"
    if len(value) != count:
        return None, f"expected {count} numbers, got {len(value)}"
    out = []
    for v in value:
        if isinstance(v, str):
            try:
                v = float(v) if len(v) <= 100 else math.nan
            except ValueError:
                return None, f"non-numeric coordinate {_short(v)}"
        if not _is_number(v):
            return None, f"non-numeric coordinate {_short(v)}"
        try:
            v = float(v)
        except OverflowError:  # an int beyond the float range (its repr may be too long to print)
            return None, "non-finite coordinate (an integer too large for a float)"
        if not math.isfinite(v):
            return None, f"non-finite coordinate {v!r}"
        out.append(v)
    return out, None


def _finite(values: Sequence[float]) -> bool:
    return all(math.isfinite(v) for v in values)


def _find_key(item: dict, preferred: Sequence[str], fragment: str) -> str | None:
    for key in preferred:
        if key in item:
            return key
    for key in item:
        if isinstance(key, str) and fragment in key.lower():
            return key
    return None


def _read_plain_item(item: Any, frame: CoordinateFrame | None, image_size: tuple[int, int] | None) -> Region | None:
    """The region of an item of the common, well-formed shape; None for anything else.

    The common shape is what the reasoning models write almost always:
    ``{"bbox_2d": [4 numbers], "point_2d": [2 numbers]}`` (the point optional), every number a
    plain ``int`` or ``float`` that is finite before and after mapping, and a valid box. For such
    an item this gives exactly the region :func:`_read_item` gives, in half its time
    (``_read_item``'s key search, pair flattening and per-value checks cannot change anything
    here); for every other item (other keys, a label, strings, bools, overflowing or non-finite
    numbers, an invalid box) it gives None and the general reader decides, notes and reasons
    included. ``tests/core/test_parser_fast_path.py`` checks the two agree.
    """
    if type(item) is not dict or not 1 <= len(item) <= 2:
        return None
    box_raw = item.get("bbox_2d")
    point_raw = item.get("point_2d")
    if type(box_raw) is not list or len(box_raw) != 4 or len(item) != (1 if point_raw is None else 2):
        return None
    if point_raw is not None and (type(point_raw) is not list or len(point_raw) != 2):
        return None
    numbers = box_raw if point_raw is None else box_raw + point_raw
    try:
        values = [float(v) for v in numbers if type(v) is int or type(v) is float]  # bool is neither
    except OverflowError:  # an int beyond the float range: the general reader words the reason
        return None
    if len(values) != len(numbers):
        return None
    box, point = values[:4], values[4:] or None
    if frame is not None and image_size is not None:
        box = list(frame.box_to_original(box, image_size))
        if point is not None:
            point = list(frame.point_to_original(point, image_size))
    # one test for all values: a sum is finite only if every term is (a non-finite value read
    # in the model's frame stays non-finite once mapped); a sum that overflows merely defers
    if not math.isfinite(sum(box) + (sum(point) if point is not None else 0.0)):
        return None
    if box_validity_error(box, image_size) is not None:
        return None
    return Region(box=tuple(box), point=tuple(point) if point is not None else None, extra_points=(), label=None)


def _read_item(
    item: Any, frame: CoordinateFrame | None, image_size: tuple[int, int] | None
) -> tuple[Region | None, str | None]:
    label = None
    point_raw = None
    extra_raw: list[Any] = []
    if isinstance(item, dict):
        box_key = _find_key(item, _BOX_KEYS, "bbox")
        if box_key is None:
            keys = ", ".join(_short(k, 20) for k in list(item)[:6])
            return None, f"object without a box key (keys: {keys})"
        box_raw = item[box_key]
        point_key = _find_key(item, _POINT_KEYS, "point")
        point_raw = item.get(point_key) if point_key else None
        extra_raw = [item[k] for k in item if isinstance(k, str) and k != point_key and "point" in k.lower()]
        label = _clean_text(item["label"][:200]) if isinstance(item.get("label"), str) else None
    elif isinstance(item, list | tuple):
        box_raw = item
    else:
        return None, f"item is a {_type_name(item)}, expected an object"
    box, problem = _numbers(box_raw, 4)
    if problem is not None:
        return None, f"bad box: {problem}"
    point = None
    if point_raw is not None:
        point, _ = _numbers(point_raw, 2)  # a malformed point drops the point, not the box
    extra = [p for p in (_numbers(raw, 2)[0] for raw in extra_raw[:8]) if p is not None]
    if frame is not None and image_size is not None:
        box = list(frame.box_to_original(box, image_size))
        if not _finite(box):  # finite in the model's frame, beyond the float range once mapped
            return None, "box is not finite after mapping to image pixels"
        if point is not None:
            point = list(frame.point_to_original(point, image_size))
        extra = [list(frame.point_to_original(p, image_size)) for p in extra]
    if point is not None and not _finite(point):
        point = None  # a point that overflows when mapped is dropped like a malformed one
    extra = [p for p in extra if _finite(p)]
    problem = box_validity_error(box, image_size)
    if problem is not None:
        return None, problem
    region = Region(
        box=tuple(box),
        point=tuple(point) if point else None,
        extra_points=tuple(tuple(p) for p in extra),
        label=label,
    )
    return region, None
