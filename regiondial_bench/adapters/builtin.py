"""Adapters that need no weights: ``oracle``, ``noisy-oracle``, ``reference-copy`` and ``whole-image``.

They anchor the scale: ``oracle`` must score 100 AP50 in every reference mode, ``whole-image``
is the floor of a model that localises nothing, and ``reference-copy`` measures how much a bench
rewards answering with the referenced box itself. ``noisy-oracle`` is a seeded stand-in for a
real model: it errs more often when the reference it was given is wrong, so a run shows error
accumulation over rounds without any weights.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..schema import Region
from .base import Adapter, AdapterError, RoundRequest, RoundResponse
from .registry import register_adapter

if TYPE_CHECKING:
    from ..schema import Bench


def answer_text(regions: Sequence[Region]) -> str:
    """The ``<answer>`` JSON a model would write for these regions (original pixels), every
    coordinate written in full (its shortest exact form), so that reading the text gives back
    exactly these regions: a validator re-derives them from it.

    >>> answer_text([Region(box=(0.1, 2, 30.25, 40))])
    '<answer>[{"bbox_2d": [0.1, 2.0, 30.25, 40.0]}]</answer>'
    """
    items = []
    for region in regions:
        item: dict[str, list[float]] = {"bbox_2d": [float(v) for v in region.box]}
        if region.point is not None:
            item["point_2d"] = [float(v) for v in region.point]
        items.append(item)
    return f"<answer>{json.dumps(items)}</answer>"


@register_adapter("oracle")
class OracleAdapter(Adapter):
    """Answers every turn with its gold box, point and mask: the harness's self-check (100 AP50)."""

    needs_pixels = False
    needs_image_size = False
    renders_regions = True
    gives_masks = True

    def __init__(self) -> None:
        self._gold: dict[tuple[str, int], RoundResponse] = {}

    def prepare(self, bench: Bench) -> None:
        for dialogue in bench:
            for turn in dialogue.turns:
                regions = [Region(box=box, point=turn.gold_point) for box in turn.gold_boxes[:1]]
                self._gold[(dialogue.dialogue_id, turn.index)] = RoundResponse(
                    raw_text=answer_text(regions), regions=regions, mask=turn.gold_mask
                )

    def generate(self, requests: Sequence[RoundRequest]) -> list[RoundResponse]:
        if not self._gold:
            raise AdapterError("the oracle adapter was not prepared with a bench")
        return [self._gold[r.key] for r in requests]


@register_adapter("whole-image")
class WholeImageAdapter(Adapter):
    """Answers every turn with the whole image: the score of localising nothing."""

    needs_pixels = False
    renders_regions = True

    def generate(self, requests: Sequence[RoundRequest]) -> list[RoundResponse]:
        responses = []
        for request in requests:
            w, h = request.image.require_size()
            regions = [Region(box=(0.0, 0.0, float(w), float(h)))]
            responses.append(RoundResponse(raw_text=answer_text(regions), regions=regions))
        return responses


@register_adapter("reference-copy")
class ReferenceCopyAdapter(Adapter):
    """Answers with the first referenced box that exists, else the whole image."""

    needs_pixels = False
    renders_regions = True

    def generate(self, requests: Sequence[RoundRequest]) -> list[RoundResponse]:
        responses = []
        for request in requests:
            box = next((ref.box for ref in request.references if ref.box is not None), None)
            if box is None:
                w, h = request.image.require_size()
                box = (0.0, 0.0, float(w), float(h))
            regions = [Region(box=tuple(box))]
            responses.append(RoundResponse(raw_text=answer_text(regions), regions=regions))
        return responses


def _box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@register_adapter("noisy-oracle")
class NoisyOracleAdapter(Adapter):
    """A seeded oracle that makes the mistakes real models make, so error accumulation shows.

    Each turn is answered with its gold box, except with probability ``error_rate`` (plus
    ``round_drift`` per round after the first), or ``wrong_reference_error_rate`` when a reference
    it was given does not overlap the referenced turn's gold box (IoU <= 0.5): a model that is
    told the wrong region tends to follow it. A mistake is one of

    * *follow the reference*: answer the (wrong) referenced box itself, when there is one;
    * *confusion*: the gold box of another turn of the same dialogue (another object);
    * *sloppy box*: the gold box shifted and rescaled until its IoU is about 0.2-0.45;
    * *format error*: an answer without a parsable ``<answer>`` (one in ``format_error_share``).

    Outcomes depend only on ``seed``, the dialogue id, the turn and the references it was given,
    so batch size, resuming and scheduling order never change them. Needs no weights or pixels.
    """

    needs_pixels = False
    needs_image_size = False
    renders_regions = True
    gives_masks = True

    def __init__(
        self,
        error_rate: float = 0.12,
        wrong_reference_error_rate: float = 0.65,
        round_drift: float = 0.03,
        format_error_share: float = 0.1,
        seed: int = 0,
    ) -> None:
        for name, value in (("error_rate", error_rate), ("wrong_reference_error_rate", wrong_reference_error_rate),
                            ("round_drift", round_drift), ("format_error_share", format_error_share)):
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise AdapterError(f"noisy-oracle: {name} must be a number in [0, 1]; got {value!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise AdapterError(f"noisy-oracle: seed must be an integer; got {seed!r}")
        self.error_rate = float(error_rate)
        self.wrong_reference_error_rate = float(wrong_reference_error_rate)
        self.round_drift = float(round_drift)
        self.format_error_share = float(format_error_share)
        self.seed = seed
        self._turns: dict[str, list] = {}

    def prepare(self, bench: Bench) -> None:
        self._turns = {d.dialogue_id: list(d.turns) for d in bench}

    @property
    def samples(self) -> bool:
        return True  # its mistakes are drawn from its seed: repeats with other seeds differ

    def reseed(self, seed: int) -> None:
        self.seed = seed

    def config(self) -> dict[str, float | int]:
        return {"error_rate": self.error_rate, "wrong_reference_error_rate": self.wrong_reference_error_rate,
                "round_drift": self.round_drift, "format_error_share": self.format_error_share, "seed": self.seed}

    def _reference_wrong(self, request: RoundRequest, turns: list) -> bool:
        for ref in request.references:
            if ref.box is None or ref.source == "no-region":
                return True
            if ref.turn < len(turns) and _box_iou(ref.box, turns[ref.turn].gold_boxes[0]) <= 0.5:
                return True
        return False

    def _answer(self, request: RoundRequest) -> RoundResponse:
        import random

        turns = self._turns.get(request.dialogue_id)
        if turns is None or request.turn >= len(turns):
            raise AdapterError("the noisy-oracle adapter was not prepared with this bench")
        turn = turns[request.turn]
        gold = turn.gold_boxes[0]
        wrong_ref = self._reference_wrong(request, turns)
        refs = ";".join(f"{r.turn}:{r.box}" for r in request.references)
        rng = random.Random(f"{self.seed}|{request.dialogue_id}|{request.turn}|{refs}")
        p = self.wrong_reference_error_rate if wrong_ref else min(1.0, self.error_rate + self.round_drift * request.turn)
        if rng.random() >= p:
            regions = [Region(box=gold, point=turn.gold_point)]
            return RoundResponse(raw_text=answer_text(regions), regions=regions, mask=turn.gold_mask)
        if rng.random() < self.format_error_share:
            x1, y1, x2, y2 = (round(v) for v in gold)
            return RoundResponse(raw_text=f"<think>It is the one at about ({x1}, {y1}).</think> "
                                          f"The object spans ({x1}, {y1}) to ({x2}, {y2}).")
        followed = [r.box for r in request.references if r.box is not None]
        if wrong_ref and followed and rng.random() < 0.6:
            regions = [Region(box=tuple(followed[0]))]
            return RoundResponse(raw_text=answer_text(regions), regions=regions)
        others = [t for t in turns if t.index != turn.index and _box_iou(t.gold_boxes[0], gold) <= 0.5]
        if others and rng.random() < 0.5:
            other = rng.choice(others)
            regions = [Region(box=other.gold_boxes[0], point=other.gold_point)]
            return RoundResponse(raw_text=answer_text(regions), regions=regions, mask=other.gold_mask)
        # text only: the runner parses it like a model's answer
        return RoundResponse(raw_text=answer_text([Region(box=_sloppy(gold, rng))]))

    def generate(self, requests: Sequence[RoundRequest]) -> list[RoundResponse]:
        if not self._turns:
            raise AdapterError("the noisy-oracle adapter was not prepared with a bench")
        return [self._answer(r) for r in requests]


def _sloppy(gold: Sequence[float], rng) -> tuple[float, float, float, float]:  # noqa: ANN001
    """The gold box shifted by most of its size: IoU with gold below 0.5, still nearby."""
    x1, y1, x2, y2 = gold
    w, h = x2 - x1, y2 - y1
    for _ in range(20):
        dx, dy = rng.uniform(-0.7, 0.7) * w, rng.uniform(-0.7, 0.7) * h
        s = rng.uniform(0.7, 1.4)
        box = (max(0.0, x1 + dx), max(0.0, y1 + dy), max(0.0, x1 + dx) + w * s, max(0.0, y1 + dy) + h * s)
        if 0.15 < _box_iou(box, gold) <= 0.45:
            return tuple(round(v, 2) for v in box)
    return (x2, y2, x2 + w, y2 + h)  # beside the gold box, touching its corner
