"""``fixed-box``: a floor baseline that needs neither pixels nor image sizes.

On the official question files without ``--images`` the image sizes are unknown, so
``whole-image`` and ``reference-copy`` cannot run. ``fixed-box`` answers one constant box (default
``[0, 0, 640, 640]``: COCO images are at most 640 px per side, so it covers every image and more);
with ``copy_reference`` it answers the first referenced box that exists instead, like
``reference-copy`` with the constant box as its fallback. It never reads gold data, so its log can
be published on benches whose gold boxes may not be.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..schema import Region
from .base import Adapter, AdapterError, RoundRequest, RoundResponse
from .builtin import answer_text

DEFAULT_BOX = (0.0, 0.0, 640.0, 640.0)


class FixedBoxAdapter(Adapter):
    """Answers ``box`` on every turn (or, with ``copy_reference``, the referenced box when there is one)."""

    name = "fixed-box"
    needs_pixels = False
    needs_image_size = False
    renders_regions = True

    def __init__(self, box: Sequence[float] = DEFAULT_BOX, copy_reference: bool = False) -> None:
        try:
            values = tuple(float(v) for v in box)
        except (TypeError, ValueError):
            raise AdapterError(f"fixed-box: box must be four numbers x1, y1, x2, y2, got {box!r}") from None
        if len(values) != 4 or not all(math.isfinite(v) for v in values) or not (
            values[2] > values[0] and values[3] > values[1]
        ):
            raise AdapterError(f"fixed-box: box must be four finite numbers with x2 > x1 and y2 > y1, got {box!r}")
        if not isinstance(copy_reference, bool):
            raise AdapterError("fixed-box: copy_reference must be true or false")
        self.box = values
        self.copy_reference = copy_reference

    def generate(self, requests: Sequence[RoundRequest]) -> list[RoundResponse]:
        responses = []
        for request in requests:
            box = None
            if self.copy_reference:
                box = next((tuple(ref.box) for ref in request.references if ref.box is not None), None)
            regions = [Region(box=box or self.box)]
            responses.append(RoundResponse(raw_text=answer_text(regions), regions=regions))
        return responses

    def config(self) -> dict[str, Any]:
        return {"box": list(self.box), "copy_reference": self.copy_reference}
