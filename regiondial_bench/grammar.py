"""Answer grammars for constrained decoding, derived from a preset's answer format and coordinate frame.

A :class:`ResponseGrammar` is the grammar of a whole model response, as data: EBNF text in the
GBNF dialect that xgrammar (vLLM's default structured-output backend) and llguidance accept, with
root rule ``root``. It fixes

- the reasoning tags in the preset's order (``<scene>``, optional ``<focus>``, ``<think>`` for
  RegionReasoner; ``<think>`` for VisionReasoner and Seg-Zero), each holding free ASCII text of
  bounded length with no ``<`` (so no nested or stray tags);
- the ``<answer>`` JSON of the preset's schema: a list of ``{"bbox_2d": [x1, y1, x2, y2],
  "point_2d": [x, y]}`` objects (RegionReasoner, VisionReasoner), one ``{'bbox': ...,
  'points_1': ..., 'points_2': ...}`` object (Seg-Zero), Qwen-VL's fenced ```json list of
  ``{"bbox_2d": [...], "label": "..."}`` objects (Qwen2.5-VL, Qwen3-VL), the same list unfenced and
  without labels (``json-objects``: the hosted presets ask for JSON only), or InternVL's
  ``<ref>label</ref><box>[[x1, y1, x2, y2]]</box>`` per object;
- for a thinking model (Qwen3-VL-Thinking), free reasoning text closed by ``</think>`` before the answer;
- integer coordinates inside the frame (``0..width``, ``0..height``), with ``x2 > x1`` and
  ``y2 > y1`` (see *Box order* below), so every answer the grammar admits parses into at least one
  valid region.

The grammar's longest string fits the token budget (free text is ASCII, so one token covers at
least one character): a constrained answer always closes before ``max_new_tokens`` runs out.

Box order: ``x2 > x1`` links two numbers with ``y1`` between them, which a context-free grammar can
only express with one rule per ``(x1, y1)`` pair. The grammar instead splits each axis into
buckets of ``box_step`` units: ``x1`` in bucket ``[lo, hi]`` requires ``x2`` in ``[hi + 1, width]``.
Every admitted box is therefore non-degenerate; the cost is that a box narrower than a bucket whose
both edges fall in the same bucket cannot be written (``box_step`` 1 is exact, at
``(width * height)`` rules).

>>> from regiondial_bench.adapters.presets import get_preset
>>> g = response_grammar(get_preset("regionreasoner-7b"), (840, 840))
>>> g.tags, g.answer_format, g.frame
(('scene', 'focus', 'think'), 'objects', (840, 840))
>>> g.ebnf.splitlines()[0].split(" sep ")
['root ::= "<scene>" text_351 "</scene>"', '("<focus>" text_351 "</focus>" sep)? "<think>" text_735 "</think>"', '"<answer>" answer "</answer>"']
>>> g.text_limits, g.box_step
({'scene': 351, 'focus': 351, 'think': 735}, (27, 27))
>>> int_range_alternatives(0, 840)
['[0-9]', '[1-9] [0-9]', '[1-7] [0-9] [0-9]', '"8" [0-3] [0-9]', '"840"']
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


class Preset(Protocol):
    """What a grammar needs of a model's preset (:class:`regiondial_bench.adapters.presets.Preset`
    has it): its answer format, its prompt (for the reasoning tags), its token budget and frame.

    Two attributes are read when present: ``answer_format`` (the schema, else derived from the
    answer tag and ``max_objects``) and ``thinking`` (reasoning closed by ``</think>`` first)."""

    require_answer_tag: bool
    max_objects: int | None
    prompt_template: str
    max_new_tokens: int

    def frame(self, original_size: tuple[int, int], input_size: tuple[int, int] | None = None) -> Any: ...

AnswerFormat = Literal["objects", "single-object", "fenced-objects", "json-objects", "box-tags"]

REASONING_TAGS = ("scene", "focus", "think")
OPTIONAL_TAGS = frozenset({"focus"})
"""``<focus>`` describes the reference box, which round 1 and unreferenced rounds do not have."""

TEXT_CHARS = r"[\x20-\x3b\x3d-\x7e\t\n]"
"""Free text: printable ASCII, tab and newline, without ``<`` (a tag can only be the closing one)."""

LABEL_CHARS = r"[\x20-\x21\x23-\x5b\x5d-\x7e]"
"""A JSON label: printable ASCII without ``"`` and ``\\`` (no escapes needed)."""

REF_CHARS = r"[\x20-\x3b\x3d-\x5a\x5c\x5e-\x7e]"
"""An InternVL ``<ref>`` phrase: printable ASCII without ``<`` (no stray tag) or brackets (no box)."""

DEFAULT_MAX_OBJECTS = 8
MAX_BUCKETS = 32
MAX_BOX_BUCKETS = 64
"""Most buckets per axis a ``box_step`` may give: the rules grow with the square of the buckets
(64 per axis is about 0.1 s to build and a few seconds to compile; ``box_step: 1`` on an 840
frame, 840 per axis, stalled start-up for over 30 CPU-seconds)."""
MAX_FRAME_SIDE = 1 << 16
"""Default bucket count per axis for the box-order rules (32 x 32 = 1024 alternatives)."""
LABEL_MAX = 63
"""Most characters of a Qwen2.5-VL ``label``."""
TEXT_SHARE = {"scene": 1, "focus": 1, "think": 2}
"""How the free-text budget is split among the reasoning tags present."""
SEPARATOR = "[ \\n]{0,2}"
JSON_SPACE = '" "?'
FENCE_SPACE = '[ \\t\\n]? [ \\t\\n]?'


class GrammarError(ValueError):
    """A grammar cannot be built as asked (unsupported frame, budget too small, bad option)."""


@dataclass(frozen=True)
class ResponseGrammar:
    """The grammar of a whole response for one preset and coordinate frame.

    Attributes:
        ebnf: The grammar (GBNF/xgrammar EBNF, root rule ``root``).
        answer_format: ``objects``, ``single-object`` or ``fenced-objects``.
        tags: Reasoning tags in order (``focus`` is optional).
        frame: ``(width, height)``: coordinates are integers in ``0..width`` / ``0..height``.
        max_objects: Most objects in the answer.
        text_limits: Most characters of free text per reasoning tag.
        box_step: Bucket size of the box-order rules.
        max_chars: Length of the longest response the grammar admits.
    """

    ebnf: str
    answer_format: AnswerFormat
    tags: tuple[str, ...]
    frame: tuple[int, int]
    max_objects: int
    text_limits: dict[str, int] = field(default_factory=dict)
    box_step: tuple[int, int] = (1, 1)
    max_chars: int = 0

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.ebnf.encode()).hexdigest()

    def describe(self, *, with_text: bool = True) -> dict[str, Any]:
        """The fields recorded in ``run.json`` (the EBNF itself unless ``with_text`` is False)."""
        out: dict[str, Any] = {
            "dialect": "gbnf",
            "answer_format": self.answer_format,
            "tags": list(self.tags),
            "frame": list(self.frame),
            "max_objects": self.max_objects,
            "text_limits": dict(self.text_limits),
            "box_step": list(self.box_step),
            "max_chars": self.max_chars,
            "sha256": self.sha256,
        }
        if with_text:
            out["ebnf"] = self.ebnf
        return out

    def accepts(self, text: str) -> bool:
        """Whether ``text`` is a complete response of this grammar (checked with xgrammar)."""
        xgr = _xgrammar()
        matcher = xgr.GrammarMatcher(_compiled_for_text(self.ebnf), terminate_without_stop_token=True)
        return bool(matcher.accept_string(text.encode("utf-8"))) and matcher.is_terminated()


def answer_format(preset: Preset) -> AnswerFormat:
    """The answer schema a preset's model writes (its ``answer_format`` when it names one)."""
    explicit = getattr(preset, "answer_format", None)
    if explicit is not None:
        return explicit
    if not preset.require_answer_tag:
        return "fenced-objects"
    if preset.max_objects == 1:
        return "single-object"
    return "objects"


def preset_tags(preset: Preset) -> tuple[str, ...]:
    """The reasoning tags the preset's prompt asks for, in their fixed order."""
    if not preset.require_answer_tag:
        return ()
    return tuple(tag for tag in REASONING_TAGS if f"<{tag}>" in preset.prompt_template)


def grammar_frame(preset: Preset, original_size: tuple[int, int], input_size: tuple[int, int] | None = None
                  ) -> tuple[int, int]:
    """The integer ``(width, height)`` range of a preset's answer coordinates for one image."""
    frame = preset.frame(original_size, input_size)
    width, height = frame.width, frame.height
    if not (math.isfinite(width) and math.isfinite(height)) or width > MAX_FRAME_SIDE or height > MAX_FRAME_SIDE:
        raise GrammarError(f"the frame {frame.name} ({width:g}x{height:g}) is not a finite size up to {MAX_FRAME_SIDE}")
    if width < 2 or height < 2 or width != int(width) or height != int(height):
        raise GrammarError(
            f"constrained decoding writes integer coordinates; the frame {frame.name} "
            f"({width:g}x{height:g}) has too few integer positions (use coordinate_frame input or norm-1000)"
        )
    return int(width), int(height)


def _frame_sides(frame: Sequence[Any]) -> tuple[int, int]:
    """``(width, height)`` of a grammar frame as integers, refusing anything but whole sides in range.

    >>> _frame_sides((840, 840.0))
    (840, 840)
    >>> _frame_sides((float("inf"), 840))
    Traceback (most recent call last):
    ...
    regiondial_bench.grammar.GrammarError: the frame must be two whole numbers in 2..65536, got (inf, 840)
    """
    try:
        width, height = frame
        ok = all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v == int(v)
                 and 2 <= v <= MAX_FRAME_SIDE for v in (width, height))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        shown = repr(tuple(frame))[:80] if isinstance(frame, Sequence) else repr(frame)[:80]
        raise GrammarError(f"the frame must be two whole numbers in 2..{MAX_FRAME_SIDE}, got {shown}")
    return int(width), int(height)


def response_grammar(
    preset: Preset,
    frame: tuple[int, int],
    *,
    max_new_tokens: int | None = None,
    max_objects: int | None = None,
    box_step: int | None = None,
) -> ResponseGrammar:
    """Build the grammar of a whole response of ``preset`` with coordinates in ``frame``.

    Args:
        preset: The model's preset (answer format, tags, token budget).
        frame: ``(width, height)`` of the coordinate range (see :func:`grammar_frame`).
        max_new_tokens: Token budget the response must fit (default: the preset's).
        max_objects: Most objects in a list answer (default: 8; Seg-Zero always 1).
        box_step: Bucket size for the box-order rules (default: ``ceil(side / 24)`` per axis).

    Raises:
        GrammarError: The budget cannot hold even the answer, or an option is out of range.
    """
    width, height = _frame_sides(frame)
    fmt = answer_format(preset)
    tags = preset_tags(preset)
    thinking = bool(getattr(preset, "thinking", False)) and not tags
    budget = int(max_new_tokens if max_new_tokens is not None else preset.max_new_tokens)
    if fmt == "single-object":
        objects = 1
    else:
        objects = int(max_objects if max_objects is not None else min(DEFAULT_MAX_OBJECTS, preset.max_objects or 99))
    if objects < 1:
        raise GrammarError(f"max_objects must be >= 1, got {objects}")
    if box_step is not None and box_step < 1:
        raise GrammarError(f"box_step must be >= 1, got {box_step}")
    if box_step is not None and math.ceil(max(width, height) / box_step) > MAX_BOX_BUCKETS:
        smallest = math.ceil(max(width, height) / MAX_BOX_BUCKETS)
        raise GrammarError(
            f"box_step {box_step} gives {math.ceil(max(width, height) / box_step)} buckets per axis on the "
            f"{width}x{height} frame; at most {MAX_BOX_BUCKETS} keep the grammar buildable in seconds "
            f"(use box_step >= {smallest}, or leave it unset)"
        )
    step = (box_step or math.ceil(width / MAX_BUCKETS), box_step or math.ceil(height / MAX_BUCKETS))
    builder = _Builder()
    answer_rule, answer_chars = _answer_rules(builder, fmt, width, height, objects, step)

    # The budget left for free text once the tags, separators, answer and stop token are counted.
    fixed = answer_chars + 1  # + the stop token
    if tags:
        fixed += len("<answer></answer>") + sum(len(f"<{t}></{t}>") + 2 for t in tags)
    if thinking:
        fixed += len("</think>") + 2
    spare = budget - fixed
    if spare < 0:
        raise GrammarError(
            f"max_new_tokens={budget} cannot hold a constrained answer of up to {objects} object(s) "
            f"(up to {fixed} tokens); raise max_new_tokens or lower max_objects"
        )
    shares = sum(TEXT_SHARE[t] for t in tags) or 1
    text_rules = {t: _bounded_text(builder, spare * TEXT_SHARE[t] // shares) for t in tags}
    if thinking:  # the whole spare budget is the reasoning's
        text_rules = {"think": _bounded_text(builder, spare)}
    limits = {t: chars for t, (_, chars) in text_rules.items()}

    if tags:
        parts = []
        for tag in tags:
            piece = f'"<{tag}>" {text_rules[tag][0]} "</{tag}>" sep'
            parts.append(f"({piece})?" if tag in OPTIONAL_TAGS else piece)
        root = " ".join([*parts, f'"<answer>" {answer_rule} "</answer>"'])
    elif thinking:
        root = f'{text_rules["think"][0]} "</think>" sep {answer_rule}'
    else:
        root = answer_rule
    lines = [f"root ::= {root}"]
    if tags or thinking:
        lines.append(f"sep ::= {SEPARATOR}")
    lines.extend(builder.lines)
    max_chars = fixed - 1 + sum(limits.values())
    return ResponseGrammar(
        ebnf="\n".join(lines) + "\n",
        answer_format=fmt,
        tags=tags,
        frame=(width, height),
        max_objects=objects,
        text_limits=limits,
        box_step=step,
        max_chars=max_chars,
    )


# ---------------------------------------------------------------------- answer rules


def _answer_rules(builder: _Builder, fmt: AnswerFormat, width: int, height: int, objects: int,
                  step: tuple[int, int]) -> tuple[str, int]:
    """Add the answer's rules; return the answer rule's name and its longest length."""
    box, box_chars = _box_rule(builder, width, height, step)
    point = builder.rule("point", f'"[" {_int(builder, 0, width)} "," {JSON_SPACE} {_int(builder, 0, height)} "]"')
    point_chars = 2 + len(str(width)) + 2 + len(str(height))
    sp = JSON_SPACE
    if fmt == "objects":
        item = builder.rule("object", f'"{{\\"bbox_2d\\":" {sp} {box} "," {sp} "\\"point_2d\\":" {sp} {point} "}}"')
        item_chars = len('{"bbox_2d": , "point_2d": }') + box_chars + point_chars
        answer = builder.rule("answer", f'"[" {item} ("," {sp} {item}){{0,{objects - 1}}} "]"')
        return answer, 2 + objects * item_chars + (objects - 1) * 2
    if fmt == "single-object":
        single = _segzero_object(builder, box, point, "'") + " | " + _segzero_object(builder, box, point, '\\"')
        answer = builder.rule("answer", single)
        return answer, len("{'bbox': , 'points_1': , 'points_2': }") + box_chars + 2 * point_chars
    if fmt == "box-tags":  # InternVL: <ref>label</ref><box>[[x1, y1, x2, y2]]</box> per object
        ref_text, ref_chars = _bounded_text(builder, LABEL_MAX, REF_CHARS, "ref_text")
        item = builder.rule("object", f'"<ref>" {ref_text} "</ref><box>[" {box} "]</box>"')
        item_chars = len("<ref></ref><box>[]</box>") + ref_chars + box_chars
        answer = builder.rule("answer", f'{item} ("," {sp} {item}){{0,{objects - 1}}}')
        return answer, objects * item_chars + (objects - 1) * 2
    if fmt == "json-objects":  # a bare JSON list of {"bbox_2d": [...]} (the hosted presets' prompt)
        item = builder.rule("object", f'"{{\\"bbox_2d\\":" {sp} {box} "}}"')
        item_chars = len('{"bbox_2d": }') + box_chars
        answer = builder.rule("answer", f'"[" {item} ("," {sp} {item}){{0,{objects - 1}}} "]"')
        return answer, 2 + objects * item_chars + (objects - 1) * 2
    # fenced-objects: Qwen-VL's ```json list with an optional label per object
    label_text, label_chars = _bounded_text(builder, LABEL_MAX, LABEL_CHARS, "label_text")
    label = builder.rule("label", f'"\\"" {label_text} "\\""')
    ws = builder.rule("fence_space", FENCE_SPACE)
    item = builder.rule(
        "object", f'"{{\\"bbox_2d\\":" {sp} {box} ("," {sp} "\\"label\\":" {sp} {label})? "}}"'
    )
    item_chars = len('{"bbox_2d": , "label": ""}') + box_chars + label_chars
    answer = builder.rule(
        "answer", f'"```json\\n" "[" {ws} {item} ("," {ws} {item}){{0,{objects - 1}}} {ws} "]" "\\n```"'
    )
    return answer, len("```json\n[]\n```") + objects * (item_chars + 3) + 2


def _bounded_text(builder: _Builder, limit: int, chars: str = TEXT_CHARS, name: str = "text") -> tuple[str, int]:
    """A rule for free text of at most ``limit`` characters; returns its name and exact maximum.

    Written as 32- and 4-character blocks (``text_32{0,a} text_4{0,7} char{0,3}``): xgrammar
    compiles a plain ``char{0,N}`` into N states, each needing its own token mask (a minute for
    N = 400 over a 150k-token vocabulary), while the blocks share a handful of states. The
    decomposition of a length into blocks is unique, so matching stays deterministic.
    """
    c4 = builder.rule(f"{name}_4", " ".join([chars] * 4))
    c32 = builder.rule(f"{name}_32", f"{c4}{{8}}")
    if limit >= 31:
        blocks, fours, ones = (limit - 31) // 32, 7, 3
    else:
        blocks, fours, ones = 0, max(0, limit - 3) // 4, min(3, limit)
    maximum = 32 * blocks + 4 * fours + ones
    parts = []
    if blocks:
        parts.append(f"{c32}{{0,{blocks}}}")
    if fours:
        parts.append(f"{c4}{{0,{fours}}}")
    if ones:
        parts.append(f"{chars}{{0,{ones}}}")
    if not parts:
        return builder.rule(f"{name}_0", '""'), 0
    return builder.rule(f"{name}_{maximum}", " ".join(parts)), maximum


def _segzero_object(builder: _Builder, box: str, point: str, quote: str) -> str:
    sp = JSON_SPACE
    key = lambda name: f'"{quote}{name}{quote}:" {sp}'  # noqa: E731
    return (f'"{{" {key("bbox")} {box} "," {sp} {key("points_1")} {point} '
            f'("," {sp} {key("points_2")} {point})? "}}"')


def _box_rule(builder: _Builder, width: int, height: int, step: tuple[int, int]) -> tuple[str, int]:
    """``[x1, y1, x2, y2]`` with integers in the frame and ``x2 > x1``, ``y2 > y1`` (bucketed)."""
    x_buckets = _buckets(width, step[0])
    y_buckets = _buckets(height, step[1])
    sp = JSON_SPACE
    alternatives = []
    for ai, (x_lo, x_hi) in enumerate(x_buckets):
        after = []
        for y_lo, y_hi in y_buckets:
            after.append(
                f'{_int(builder, y_lo, y_hi)} "," {sp} {_int(builder, x_hi + 1, width)} "," {sp} '
                f'{_int(builder, y_hi + 1, height)}'
            )
        rest = builder.rule(f"box_after_x{ai}", " | ".join(after))
        alternatives.append(f'{_int(builder, x_lo, x_hi)} "," {sp} {rest}')
    rule = builder.rule("box", '"[" (' + " | ".join(alternatives) + ') "]"')
    return rule, 2 + 3 * 2 + 2 * len(str(width)) + 2 * len(str(height))


def _buckets(side: int, step: int) -> list[tuple[int, int]]:
    """``[lo, hi]`` ranges covering ``0..side-1`` (the first coordinate of a pair), ``step`` wide."""
    out = []
    lo = 0
    while lo <= side - 1:
        hi = min(lo + step - 1, side - 1)
        out.append((lo, hi))
        lo = hi + 1
    return out


def _int(builder: _Builder, lo: int, hi: int) -> str:
    """The name of a rule matching the decimal integers ``lo..hi`` (no leading zeros)."""
    return builder.rule(f"int_{lo}_{hi}", " | ".join(int_range_alternatives(lo, hi)))


def int_range_alternatives(lo: int, hi: int) -> list[str]:
    """EBNF alternatives (digit classes) matching exactly the decimal integers ``lo..hi``.

    >>> int_range_alternatives(5, 5)
    ['"5"']
    >>> int_range_alternatives(7, 23)
    ['[7-9]', '"1" [0-9]', '"2" [0-3]']
    """
    if lo < 0 or hi < lo:
        raise GrammarError(f"bad integer range {lo}..{hi}")
    out: list[str] = []
    for digits in range(len(str(lo)), len(str(hi)) + 1):
        start = max(lo, 10 ** (digits - 1) if digits > 1 else 0)
        stop = min(hi, 10**digits - 1)
        if start <= stop:
            out.extend(_same_length(str(start), str(stop)))
    return out


def _same_length(lo: str, hi: str) -> list[str]:
    """Alternatives for the equal-length digit strings ``lo..hi``."""
    if lo == hi:
        return [f'"{lo}"']
    if len(lo) == 1:
        return [f"[{lo}-{hi}]"]
    if lo[0] == hi[0]:
        prefix = f'"{lo[0]}"'
        return [_join(prefix, tail) for tail in _same_length(lo[1:], hi[1:])]
    n = len(lo) - 1
    out: list[str] = []
    first_full = int(lo[0]) if lo[1:] == "0" * n else int(lo[0]) + 1
    last_full = int(hi[0]) if hi[1:] == "9" * n else int(hi[0]) - 1
    if first_full != int(lo[0]):
        out.extend(_join(f'"{lo[0]}"', tail) for tail in _same_length(lo[1:], "9" * n))
    if first_full <= last_full:
        head = f'"{first_full}"' if first_full == last_full else f"[{first_full}-{last_full}]"
        out.append(" ".join([head] + ["[0-9]"] * n))
    if last_full != int(hi[0]):
        out.extend(_join(f'"{hi[0]}"', tail) for tail in _same_length("0" * n, hi[1:]))
    return out


def _join(prefix: str, tail: str) -> str:
    if prefix.startswith('"') and tail.startswith('"') and " " not in tail:
        return prefix[:-1] + tail[1:]  # "8" "4" -> "84"
    if prefix.startswith('"') and tail.startswith('"'):
        first, rest = tail.split(" ", 1)
        return prefix[:-1] + first[1:] + " " + rest
    return f"{prefix} {tail}"


class _Builder:
    """Collects named rules once each, in first-use order."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._seen: dict[str, str] = {}

    def rule(self, name: str, body: str) -> str:
        known = self._seen.get(name)
        if known is None:
            self._seen[name] = body
            self.lines.append(f"{name} ::= {body}")
        elif known != body:
            raise GrammarError(f"rule {name!r} defined twice with different bodies")
        return name


# ---------------------------------------------------------------------- xgrammar helpers


def _xgrammar() -> Any:
    try:
        import xgrammar
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise GrammarError(
            "constrained decoding needs xgrammar: pip install 'regiondial-bench[constrained]'"
        ) from exc
    return xgrammar


_TEXT_COMPILER: Any = None


def _text_compiler() -> Any:
    """A compiler over an empty vocabulary, for checking whole strings against a grammar."""
    global _TEXT_COMPILER
    if _TEXT_COMPILER is None:
        xgr = _xgrammar()
        _TEXT_COMPILER = xgr.GrammarCompiler(xgr.TokenizerInfo([]), max_threads=1)
    return _TEXT_COMPILER


_COMPILED_FOR_TEXT: dict[str, Any] = {}


def _compiled_for_text(ebnf: str) -> Any:
    """``ebnf`` compiled for whole-string checks (the last few kept)."""
    compiled = _COMPILED_FOR_TEXT.get(ebnf)
    if compiled is None:
        if len(_COMPILED_FOR_TEXT) >= 8:
            _COMPILED_FOR_TEXT.pop(next(iter(_COMPILED_FOR_TEXT)))
        compiled = _COMPILED_FOR_TEXT[ebnf] = _text_compiler().compile_grammar(ebnf)
    return compiled


def check_ebnf(ebnf: str) -> None:
    """Raise :class:`GrammarError` when xgrammar cannot parse ``ebnf``."""
    xgr = _xgrammar()
    try:
        xgr.Grammar.from_ebnf(ebnf)
    except Exception as exc:  # noqa: BLE001  (xgrammar raises RuntimeError/ValueError subclasses)
        raise GrammarError(f"invalid grammar: {exc}") from exc


def grammars_description(grammars: Sequence[ResponseGrammar], limit: int = 4) -> dict[str, Any]:
    """What a run records about the grammars it used: the first ``limit`` in full, then hashes."""
    return {
        "library": "xgrammar",
        "count": len(grammars),
        "grammars": [g.describe(with_text=i < limit) for i, g in enumerate(grammars)],
    }
