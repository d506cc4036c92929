"""The normalised record every source reader yields: one image with its referred objects.

Readers of the ``refer`` layout, of Hugging Face copies and of the synthetic generator all turn
their own conventions (xywh boxes, split names, embedded or external images) into these records,
so the builder sees one shape. Boxes are xyxy in original-image pixels, as everywhere in the
project.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ...schema import RLE, Box


@dataclass(frozen=True)
class SourceObject:
    """One referred object (a RefCOCO "ref"): its category, box, mask and expressions.

    Attributes:
        ann_id: The COCO annotation id of the object.
        category: The category name (``"person"``, ``"red circle"`` ...); ``"object"`` when the
            source has none.
        box: ``(x1, y1, x2, y2)`` in original pixels.
        expressions: The referring expressions, in the source's order (at least one).
        polygons: COCO polygons (flat ``x, y, x, y, ...`` tuples), when the source has them.
        rle: A COCO RLE mask, when the source stores one instead of polygons.
        ref_id: The RefCOCO ref id, when known.
    """

    ann_id: int
    category: str
    box: Box
    expressions: tuple[str, ...]
    polygons: tuple[tuple[float, ...], ...] = ()
    rle: RLE | None = None
    ref_id: int | None = None

    def __post_init__(self) -> None:
        x1, y1, x2, y2 = self.box
        if not (x2 > x1 and y2 > y1):
            raise ValueError(f"object {self.ann_id}: box {list(self.box)} is not xyxy with x2>x1, y2>y1")
        if not self.expressions:
            raise ValueError(f"object {self.ann_id} has no referring expression")

    def mask(self, height: int, width: int) -> RLE | None:
        """The object's gold mask as RLE (from polygons via pycocotools), or None without one."""
        if self.rle is not None:
            return self.rle
        if self.polygons:
            from ...geometry import polygons_to_rle

            return polygons_to_rle(self.polygons, height, width)
        return None


@dataclass(frozen=True)
class SourceImage:
    """One image and the referred objects of one split on it.

    Attributes:
        image_id: The COCO image id.
        file_name: The image's file name (``COCO_train2014_000000000839.jpg``).
        width: Image width in pixels.
        height: Image height in pixels.
        split: The source split the objects come from (``testA``, ``val`` ...).
        objects: The referred objects, ordered by annotation id.
        path: Where the image file lives, for sources with external images.
        data: The encoded image bytes, for sources that embed images (HF copies).
        dataset: Which dataset the record comes from (``refcoco+``, ``refcocog`` ...).
    """

    image_id: int
    file_name: str
    width: int
    height: int
    split: str
    objects: tuple[SourceObject, ...]
    path: Path | None = None
    data: bytes | None = field(default=None, repr=False)
    dataset: str = ""

    def read_bytes(self) -> bytes:
        """The encoded image file.

        Raises:
            FileNotFoundError: When the image is neither embedded nor present at ``path``.
        """
        if self.data is not None:
            return self.data
        if self.path is None:
            raise FileNotFoundError(f"image {self.image_id} ({self.file_name}) has no file and no embedded bytes")
        if not self.path.is_file():
            raise FileNotFoundError(f"image {self.image_id}: {self.path} does not exist")
        return self.path.read_bytes()


def xywh_to_xyxy(box: Sequence[float]) -> Box:
    """COCO ``[x, y, w, h]`` to ``(x1, y1, x2, y2)``.

    >>> xywh_to_xyxy([10, 20, 5, 4])
    (10.0, 20.0, 15.0, 24.0)
    >>> xywh_to_xyxy([117.67, 44.02, 77.7, 77.69])
    (117.67, 44.02, 195.37, 121.71)
    """
    x, y, w, h = (float(v) for v in box)
    return (x, y, round(x + w, 6), round(y + h, 6))  # drop float noise such as 121.71000000000001
