"""Render a round's question (reference substitution) and parse model text into regions.

There is one parser for the whole project: evaluation, baselines and training rewards all call
:func:`parse_answer`. It never raises on model text; every failure comes back as a reason.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .geometry import CoordinateFrame, box_validity_error, round_half_up
from .schema import Box, Dialogue, PredictionRecord, Reference, ReferenceSource, Region, Turn, UsedReference

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


_TAG_RE = {tag: re.compile(rf"<{tag}>\s*(.*?)\s*</{tag}>", re.DOTALL | re.IGNORECASE) for tag in TAGS}
_OPEN_ANSWER_RE = re.compile(r"<answer>\s*(.*)\Z", re.DOTALL | re.IGNORECASE)
_FENCE_RE = re.compile(r"```[ \t]*(?:json|python|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
_BOX_KEYS = ("bbox_2d", "bbox", "box_2d", "box")
_POINT_KEYS = ("point_2d", "point", "points_1", "points")


def extract_tags(text: str) -> dict[str, str | None]:
    """The stripped content of the first ``<scene>``, ``<focus>``, ``<think>``, ``<answer>`` blocks.

    >>> extract_tags("<think> a </think><answer>[]</answer>")["think"]
    'a'
    """
    found: dict[str, str | None] = {}
    for tag, pattern in _TAG_RE.items():
        match = pattern.search(text)
        found[tag] = match.group(1) if match else None
    return found


def parse_answer(
    text: str | None,
    *,
    frame: CoordinateFrame | None = None,
    image_size: tuple[int, int] | None = None,
    require_answer_tag: bool = False,
    max_regions: int = 100,
) -> ParsedAnswer:
    """Read regions from model text; never raises.

    Accepts an ``<answer>`` JSON list of ``{"bbox_2d": [...], "point_2d": [...]}`` objects and the
    common variants: code fences, a single object, ``bbox``/``points_1`` keys, a bare
    ``[x1, y1, x2, y2]`` list, Python-literal quoting. Coordinates are read in ``frame`` and
    returned in original pixels of an image of ``image_size`` = ``(width, height)``; without a
    frame they are taken as original pixels already.

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
    tags = extract_tags(text)
    body = tags["answer"]
    if body is None:
        open_answer = _OPEN_ANSWER_RE.search(text)
        if open_answer:
            body = open_answer.group(1)
        elif require_answer_tag:
            return ParsedAnswer(error="no <answer> tag", tags=tags)
        else:
            body = text
    data, error = _load_json(body)
    if error is not None:
        return ParsedAnswer(error=error, tags=tags)
    items, error = _as_items(data)
    if error is not None:
        return ParsedAnswer(error=error, tags=tags)

    regions: list[Region] = []
    notes: list[str] = []
    for position, item in enumerate(items[:max_regions]):
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


def _load_json(body: str) -> tuple[Any, str | None]:
    """Find the first JSON (or Python-literal) list/object in ``body``."""
    candidates = [m.group(1) for m in _FENCE_RE.finditer(body)] + [body]
    for candidate in candidates:
        candidate = candidate.strip()
        if not candidate:
            continue
        value = _decode(candidate)
        if value is not _FAIL:
            return value, None
        # scan for the first decodable list/object inside surrounding prose; each try costs
        # O(len), so the number of failed starts is capped (degenerate "[[[[..." output would
        # otherwise take quadratic time: tens of seconds for one 2048-token answer)
        failed_starts = 0
        for start, char in enumerate(candidate):
            if char in "[{":
                value = _decode_prefix(candidate[start:])
                if value is not _FAIL:
                    return value, None
                failed_starts += 1
                if failed_starts >= MAX_FAILED_STARTS:
                    break
    if "[" in body or "{" in body:
        return None, "answer is not valid JSON"
    return None, "no JSON found in the text"


MAX_FAILED_STARTS = 64
"""How many ``[``/``{`` positions of one candidate text may fail to decode before giving up."""

_FAIL = object()
_DECODER = json.JSONDecoder()


def _decode(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    if len(text) <= 20000:  # literal_eval on huge garbage is slow; JSON already failed
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
    return _FAIL


def _decode_prefix(text: str) -> Any:
    try:
        return _DECODER.raw_decode(text)[0]
    except (ValueError, RecursionError):
        pass
    closing = "]" if text[0] == "[" else "}"
    end = text.find(closing)
    depth_end = _matching_close(text)
    for stop in {end, depth_end}:
        if stop > 0:
            value = _decode(text[: stop + 1])
            if value is not _FAIL:
                return value
    return _FAIL


def _matching_close(text: str) -> int:
    depth = 0
    for i, char in enumerate(text):
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth == 0:
                return i
    return -1


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
    return [], f"answer JSON is a {type(data).__name__}, expected a list of objects"


def _numbers(value: Any, count: int) -> tuple[list[float] | None, str | None]:
    if isinstance(value, list | tuple) and len(value) == count // 2 and all(
        isinstance(v, list | tuple) and len(v) == 2 for v in value
    ):
        value = [c for pair in value for c in pair]  # [[x1, y1], [x2, y2]]
    if not isinstance(value, list | tuple):
        return None, f"expected {count} numbers, got {type(value).__name__}"
    if len(value) != count:
        return None, f"expected {count} numbers, got {len(value)}"
    out = []
    for v in value:
        if isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                return None, f"non-numeric coordinate {v!r}"
        if not _is_number(v):
            return None, f"non-numeric coordinate {v!r}"
        try:
            v = float(v)
        except OverflowError:  # an int beyond the float range (its repr may be too long to print)
            return None, "non-finite coordinate (an integer too large for a float)"
        if not math.isfinite(v):
            return None, f"non-finite coordinate {v!r}"
        out.append(v)
    return out, None


def _find_key(item: dict, preferred: Sequence[str], fragment: str) -> str | None:
    for key in preferred:
        if key in item:
            return key
    for key in item:
        if isinstance(key, str) and fragment in key.lower():
            return key
    return None


def _read_item(
    item: Any, frame: CoordinateFrame | None, image_size: tuple[int, int] | None
) -> tuple[Region | None, str | None]:
    label = None
    point_raw = None
    extra_raw: list[Any] = []
    if isinstance(item, dict):
        box_key = _find_key(item, _BOX_KEYS, "bbox")
        if box_key is None:
            return None, f"object without a box key (keys: {sorted(map(str, item))[:6]})"
        box_raw = item[box_key]
        point_key = _find_key(item, _POINT_KEYS, "point")
        point_raw = item.get(point_key) if point_key else None
        extra_raw = [item[k] for k in item if isinstance(k, str) and k != point_key and "point" in k.lower()]
        label = item.get("label") if isinstance(item.get("label"), str) else None
    elif isinstance(item, list | tuple):
        box_raw = item
    else:
        return None, f"item is a {type(item).__name__}, expected an object"
    box, problem = _numbers(box_raw, 4)
    if problem is not None:
        return None, f"bad box: {problem}"
    point = None
    if point_raw is not None:
        point, _ = _numbers(point_raw, 2)  # a malformed point drops the point, not the box
    extra = [p for p in (_numbers(raw, 2)[0] for raw in extra_raw) if p is not None]
    if frame is not None and image_size is not None:
        box = list(frame.box_to_original(box, image_size))
        if point is not None:
            point = list(frame.point_to_original(point, image_size))
        extra = [list(frame.point_to_original(p, image_size)) for p in extra]
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
