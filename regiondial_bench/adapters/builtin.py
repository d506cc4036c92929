"""Adapters that need no weights: ``oracle``, ``reference-copy`` and ``whole-image``.

They anchor the scale: ``oracle`` must score 100 AP50 in every reference mode, ``whole-image``
is the floor of a model that localises nothing, and ``reference-copy`` measures how much a bench
rewards answering with the referenced box itself.
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
    """The ``<answer>`` JSON a model would write for these regions (original pixels)."""
    items = []
    for region in regions:
        item: dict[str, list[float]] = {"bbox_2d": [round(v, 2) for v in region.box]}
        if region.point is not None:
            item["point_2d"] = [round(v, 2) for v in region.point]
        items.append(item)
    return f"<answer>{json.dumps(items)}</answer>"


@register_adapter("oracle")
class OracleAdapter(Adapter):
    """Answers every turn with its gold box, point and mask: the harness's self-check (100 AP50)."""

    needs_pixels = False
    needs_image_size = False

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
