"""Mask producers: turn predicted regions into a segmentation mask per turn.

Segmentation scores (gIoU, cIoU) come from real masks, so a run either takes masks from the
adapter itself, or names a producer: ``sam2`` (SAM2 prompted with each box and its points, as
upstream) or ``box`` (the box itself as the mask; only when chosen explicitly, and named so in
the results).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from ..adapters.base import AdapterError, ImageInput
from ..geometry import box_to_rle, merge_rles
from ..schema import RLE, Region


class MaskProducer:
    """Base class: ``masks(items)`` returns one mask (or None) per ``(image, regions)`` item."""

    name: ClassVar[str] = ""

    def masks(self, items: Sequence[tuple[ImageInput, Sequence[Region]]]) -> list[RLE | None]:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {}


_PRODUCERS: dict[str, Callable[..., MaskProducer]] = {}


def register_mask_producer(name: str):
    def decorate(cls):
        cls.name = name
        _PRODUCERS[name] = cls
        return cls

    return decorate


@register_mask_producer("box")
class BoxMaskProducer(MaskProducer):
    """The union of the predicted boxes as the mask (a crude stand-in for a segmenter)."""

    def masks(self, items: Sequence[tuple[ImageInput, Sequence[Region]]]) -> list[RLE | None]:
        out: list[RLE | None] = []
        for image, regions in items:
            if not regions:
                out.append(None)
                continue
            w, h = image.require_size()
            out.append(merge_rles([box_to_rle(r.box, h, w) for r in regions]))
        return out


def available_mask_producers() -> list[str]:
    _load_optional()
    return sorted(_PRODUCERS)


def _load_optional() -> None:
    """Import producers whose modules depend on heavy stacks (they register themselves)."""
    import importlib

    for module in ("regiondial_bench.run.segment_sam2",):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # the module exists but a dependency is missing: fine, lazy
                continue


def create_mask_producer(name: str, **options: Any) -> MaskProducer:
    """Build a mask producer by name (``box``, ``sam2``)."""
    if name not in _PRODUCERS:
        _load_optional()
    if name not in _PRODUCERS:
        raise AdapterError(f"unknown mask producer {name!r}; available: {', '.join(sorted(_PRODUCERS))}")
    return _PRODUCERS[name](**options)
