"""Multi-round rollouts whose errors compound: which earlier turns the policy answers, in which order.

A training row whose question refers to an earlier turn carries that turn and the turns it refers
to in turn (``reference_chain``, nearest first; :mod:`regiondial_bench.training.data`). With depth
d, the policy answers the first d turns of the chain before the row is sampled, farthest first:
the farthest answered turn is asked with its gold reference, every nearer one with the box the
policy gave for the turn it refers to, and finally the row itself is asked with the box the policy
gave for its referenced turn. Depth 1 substitutes one level (the referenced turn answered with its
gold reference); a larger depth lets an early mistake propagate down the chain as it does at
evaluation time. A turn whose answer has no box leaves the gold reference in the next question
(upstream's fallback).

:class:`ReferenceResolver` plans this for one batch without touching a model: it hands out the
questions of one *wave* at a time (every question of a wave depends only on earlier waves), each
distinct (image, question) once however many rows need it, and never the rows' own questions. The
trainer answers a wave in one batched generation call and records the answers.

>>> chain = [{"id": "d-2", "problem": "the table left of bbox=[1, 1, 2, 2]", "reference_text": "bbox=[1, 1, 2, 2]"},
...          {"id": "d-1", "problem": "the chair near bbox=[7, 7, 8, 8]", "reference_text": "bbox=[7, 7, 8, 8]"},
...          {"id": "d-0", "problem": "the lamp", "reference_text": ""}]
>>> rows = [{"id": "d-3", "dialogue_id": "d", "problem": "the cup on bbox=[5, 5, 9, 9]",
...          "reference_text": "bbox=[5, 5, 9, 9]", "reference_chain": chain}]
>>> resolver = ReferenceResolver(rows, depth=2)
>>> [q.problem for q in resolver.pending()]  # wave 0: the farthest answered turn, with its gold reference
['the chair near bbox=[7, 7, 8, 8]']
>>> resolver.record(resolver.pending(), ['<answer>[{"bbox_2d": [3, 3, 4, 4]}]</answer>'])
>>> [q.problem for q in resolver.pending()]  # wave 1: the policy's box went into the next question
['the table left of bbox=[3, 3, 4, 4]']
>>> resolver.record(resolver.pending(), ['<answer>[{"bbox_2d": [0, 0, 8, 8]}]</answer>'])
>>> resolver.pending(), resolver.resolved_rows()[0]["problem"]
([], 'the cup on bbox=[0, 0, 8, 8]')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..protocol import format_box, parse_answer

REFERENCE_FORMAT = "bbox={box}"
"""How a predicted box is written into a training question (the released training surface form)."""


@dataclass(frozen=True)
class Query:
    """One question the policy answers before the batch is sampled.

    Attributes:
        key: ``(image key, question)``: equal keys get one answer.
        problem: The question, references already substituted.
        row: Index of a batch row showing the same image (its image goes with the question).
        depth: Its distance from the row that needs it (1: the row's referenced turn).
    """

    key: tuple[str, str]
    problem: str
    row: int
    depth: int


@dataclass
class _RowPlan:
    levels: list[Mapping[str, Any]]  # the chain entries this row answers, nearest first
    answers: list[str | None] = field(default_factory=list)
    boxes: list[tuple[float, ...] | None] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.answers = [None] * len(self.levels)
        self.boxes = [None] * len(self.levels)
        self.asked = [""] * len(self.levels)


def _usable(row: Mapping[str, Any]) -> bool:
    """Whether the row's own reference can be substituted: its text is in the problem and the chain names a turn."""
    text = row.get("reference_text") or ""
    return bool(text) and text in (row.get("problem") or "") and bool(row.get("reference_chain"))


def first_box(answer: str) -> tuple[float, ...] | None:
    """The first box of an answer (the shared tolerant parser, ``<answer>`` required), or None.

    >>> first_box('<answer>[{"bbox_2d": [1, 2, 3, 4]}, {"bbox_2d": [5, 6, 7, 8]}]</answer>')
    (1.0, 2.0, 3.0, 4.0)
    >>> first_box("no answer") is None
    True
    """
    parsed = parse_answer(answer, require_answer_tag=True)
    return tuple(parsed.regions[0].box) if parsed.regions else None


def substitute(problem: str, reference_text: str, box: Sequence[float] | None) -> str:
    """``problem`` with ``reference_text`` replaced by ``box`` (unchanged when there is no box).

    >>> substitute("left of bbox=[1, 1, 2, 2].", "bbox=[1, 1, 2, 2]", (7.4, 8, 9, 10.5))
    'left of bbox=[7, 8, 9, 11].'
    """
    if box is None or not reference_text or reference_text not in problem:
        return problem
    return problem.replace(reference_text, REFERENCE_FORMAT.format(box=format_box(box)))


class ReferenceResolver:
    """Plans the reference answers of one batch of training rows, wave by wave (see the module docstring).

    Args:
        rows: The batch (dicts with ``id``, ``dialogue_id``, ``problem``, ``reference_text`` and
            ``reference_chain``); rows without a usable reference need nothing.
        depth: How many turns of each chain the policy answers (>= 1), or None for whole chains.

    Raises:
        ValueError: ``depth`` below 1.
    """

    def __init__(self, rows: Sequence[Mapping[str, Any]], depth: int | None = 1) -> None:
        if depth is not None and depth < 1:
            raise ValueError(f"the multi-round depth must be >= 1 (or None for whole chains), got {depth}")
        self.rows = list(rows)
        self.plans: list[_RowPlan | None] = []
        for row in self.rows:
            chain = list(row.get("reference_chain") or []) if _usable(row) else []
            self.plans.append(_RowPlan(chain[:depth] if depth is not None else chain) if chain else None)
        self.waves = max((len(p.levels) for p in self.plans if p is not None), default=0)
        self.wave = 0
        self.cache: dict[tuple[str, str], str] = {}
        self.answered = 0  # questions sent to the policy (cache misses)
        self._waiting: dict[tuple[str, str], list[tuple[int, int]]] = {}

    def _image_key(self, index: int) -> str:
        row = self.rows[index]
        return str(row.get("dialogue_id") or row.get("id") or index)

    def _question(self, index: int, level: int) -> str:
        plan = self.plans[index]
        entry = plan.levels[level]
        problem = str(entry.get("problem") or "")
        if level + 1 < len(plan.levels):  # the next turn down was answered: its box replaces the gold one
            return substitute(problem, str(entry.get("reference_text") or ""), plan.boxes[level + 1])
        return problem

    def pending(self) -> list[Query]:
        """The distinct questions of the current wave still to be answered ([] when all are done)."""
        while self.wave < self.waves:
            if self._waiting:
                return [Query(key, key[1], rows[0][0], rows[0][1] + 1) for key, rows in self._waiting.items()]
            for index, plan in enumerate(self.plans):
                if plan is None or len(plan.levels) <= self.wave:
                    continue
                level = len(plan.levels) - 1 - self.wave
                question = self._question(index, level)
                plan.asked[level] = question
                key = (self._image_key(index), question)
                if key in self.cache:
                    self._assign(index, level, self.cache[key])
                else:
                    self._waiting.setdefault(key, []).append((index, level))
            if self._waiting:
                continue
            self.wave += 1  # every question of this wave was answered before
        return []

    def _assign(self, index: int, level: int, answer: str) -> None:
        plan = self.plans[index]
        plan.answers[level] = answer
        plan.boxes[level] = first_box(answer)

    def record(self, queries: Sequence[Query], answers: Sequence[str]) -> None:
        """Store the policy's answers to ``queries`` (as :meth:`pending` returned them) and move on.

        Raises:
            ValueError: The answers do not match the pending questions.
        """
        if len(queries) != len(answers) or {q.key for q in queries} != set(self._waiting):
            raise ValueError("record() needs one answer for each question pending() returned, in its order")
        for query, answer in zip(queries, answers, strict=True):
            self.cache[query.key] = answer
            for index, level in self._waiting[query.key]:
                self._assign(index, level, answer)
        self.answered += len(queries)
        self._waiting = {}
        self.wave += 1

    def resolved_rows(self) -> list[dict[str, Any]]:
        """The rows with their own reference replaced by the policy's box, plus what happened.

        Added keys: ``reference_source`` (``predicted``, ``gold-fallback`` when the referenced
        turn's answer had no box, ``none`` without a usable reference), ``reference_predicted``
        (the substituted text) and ``reference_levels`` (one record per answered turn, nearest
        first: ``depth``, ``id``, the ``question`` asked, whether it carried a ``predicted``,
        ``gold`` or ``none`` reference, and the ``box`` the policy answered). The ``prompt`` is
        left to the caller (it knows the template).

        Raises:
            RuntimeError: Called before every wave was answered.
        """
        if self.pending():
            raise RuntimeError("resolved_rows() before every pending question was answered")
        out = []
        for row, plan in zip(self.rows, self.plans, strict=True):
            row = dict(row)
            row["reference_source"], row["reference_predicted"], row["reference_levels"] = "none", "", []
            if plan is not None:
                box = plan.boxes[0]
                if box is not None:
                    row["reference_predicted"] = REFERENCE_FORMAT.format(box=format_box(box))
                    row["problem"] = substitute(row["problem"], row["reference_text"], box)
                    row["reference_source"] = "predicted"
                else:
                    row["reference_source"] = "gold-fallback"
                row["reference_levels"] = [self._level_record(plan, level) for level in range(len(plan.levels))]
            out.append(row)
        return out

    @staticmethod
    def _level_record(plan: _RowPlan, level: int) -> dict[str, Any]:
        entry = plan.levels[level]
        has_reference = bool(entry.get("reference_text"))
        predicted = level + 1 < len(plan.levels) and plan.boxes[level + 1] is not None
        box = plan.boxes[level]
        return {
            "depth": level + 1,
            "id": entry.get("id"),
            "question": plan.asked[level],
            "reference": "predicted" if predicted else ("gold" if has_reference else "none"),
            "box": [round(v, 2) for v in box] if box is not None else None,
        }

    def substitutions_by_depth(self) -> dict[int, int]:
        """Rows whose question at each depth carried a predicted box: depth 1 is the row's own
        reference, depth d the reference inside the question of its depth d-1 turn.

        Counted per distinct row ``id`` (a group's copies count once).
        """
        counts: dict[int, int] = {}
        seen: set[str] = set()
        for row, plan in zip(self.rows, self.plans, strict=True):
            if plan is None or str(row.get("id")) in seen:
                continue
            seen.add(str(row.get("id")))
            for level, box in enumerate(plan.boxes):
                if box is not None:
                    counts[level + 1] = counts.get(level + 1, 0) + 1
        return counts
