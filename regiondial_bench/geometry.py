"""Boxes, coordinate frames and masks: the one implementation used by metrics, rewards and adapters.

Boxes are xyxy in continuous coordinates: a box ``[x1, y1, x2, y2]`` covers ``(x2-x1)*(y2-y1)``
units of area (no ``+1``), as the upstream evaluator computes IoU. The released training reward
uses the inclusive-pixel convention instead; :func:`box_iou_inclusive` provides it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .schema import RLE, Box

# --------------------------------------------------------------------------------------------
# Boxes
# --------------------------------------------------------------------------------------------


def box_area(box: Sequence[float]) -> float:
    """Area of an xyxy box; 0 for degenerate boxes.

    >>> box_area([0, 0, 10, 5])
    50.0
    """
    return float(max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1]))


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two xyxy boxes (continuous coordinates, no ``+1``).

    >>> box_iou([0, 0, 10, 10], [5, 0, 15, 10])
    0.3333333333333333
    >>> box_iou([0, 0, 1, 1], [2, 2, 3, 3])
    0.0
    """
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = box_area(a) + box_area(b) - inter
    return float(inter / union) if union > 0 else 0.0


def box_iou_inclusive(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU with inclusive integer pixels (``w = x2 - x1 + 1``), as the released reward computes it.

    >>> round(box_iou_inclusive([0, 0, 9, 9], [5, 0, 14, 9]), 4)
    0.3333
    """
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = iw * ih
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    union = area_a + area_b - inter
    return float(inter / union) if union > 0 else 0.0


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``(M, 4)`` and ``(N, 4)`` xyxy arrays -> ``(M, N)``; same math as :func:`box_iou`."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def box_validity_error(box: Sequence[float], image_size: tuple[int, int] | None = None) -> str | None:
    """Why a predicted box is unusable (``None`` when it is fine).

    A box must hold 4 finite numbers with x2 > x1 and y2 > y1; with a known ``(width, height)``
    it must overlap the image.

    >>> box_validity_error([0, 0, 5, 5]) is None
    True
    >>> box_validity_error([5, 0, 5, 9])
    'degenerate box [5, 0, 5, 9] (x2 <= x1 or y2 <= y1)'
    """
    if len(box) != 4:
        return f"box has {len(box)} numbers, expected 4"
    if not all(math.isfinite(v) for v in box):
        return f"box has a non-finite coordinate: {list(box)}"
    if box[2] <= box[0] or box[3] <= box[1]:
        return f"degenerate box {_fmt(box)} (x2 <= x1 or y2 <= y1)"
    if image_size is not None:
        w, h = image_size
        if box[2] <= 0 or box[3] <= 0 or box[0] >= w or box[1] >= h:
            return f"box {_fmt(box)} lies outside the {w}x{h} image"
    return None


def clip_box(box: Sequence[float], image_size: tuple[int, int]) -> Box:
    """Clip an xyxy box to ``[0, width] x [0, height]``."""
    w, h = image_size
    return (
        float(min(max(box[0], 0.0), w)),
        float(min(max(box[1], 0.0), h)),
        float(min(max(box[2], 0.0), w)),
        float(min(max(box[3], 0.0), h)),
    )


def round_half_up(value: float) -> int:
    """Round as upstream does (``int(v + 0.5)`` for the non-negative coordinates it sees).

    >>> round_half_up(2.5), round_half_up(2.49)
    (3, 2)
    """
    return int(math.floor(value + 0.5))


def _fmt(box: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


# --------------------------------------------------------------------------------------------
# Coordinate frames
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CoordinateFrame:
    """The frame a model reads and writes coordinates in, relative to the original image.

    A frame is ``width x height`` units spanning the whole original image: the original pixels
    (``CoordinateFrame.original(W, H)``), an 840x840 squash, the 0-1000 grid or the unit square
    (``normalized``), or the processed input size of a native-resolution model.

    >>> f = CoordinateFrame(840, 840, "squash-840")
    >>> f.box_to_original([420, 0, 840, 840], (640, 480))
    (320.0, 0.0, 640.0, 480.0)
    >>> f.box_from_original((320, 0, 640, 480), (640, 480))
    (420.0, 0.0, 840.0, 840.0)
    """

    width: float
    height: float
    name: str = "pixels"

    @classmethod
    def original(cls, width: int, height: int) -> CoordinateFrame:
        return cls(float(width), float(height), "original")

    @classmethod
    def normalized(cls, scale: float = 1000.0) -> CoordinateFrame:
        return cls(scale, scale, f"norm-{scale:g}")

    def _factors(self, image_size: tuple[int, int]) -> tuple[float, float]:
        w, h = image_size
        return w / self.width, h / self.height

    def box_to_original(self, box: Sequence[float], image_size: tuple[int, int]) -> Box:
        fx, fy = self._factors(image_size)
        return (box[0] * fx, box[1] * fy, box[2] * fx, box[3] * fy)

    def point_to_original(self, point: Sequence[float], image_size: tuple[int, int]) -> tuple[float, float]:
        fx, fy = self._factors(image_size)
        return (point[0] * fx, point[1] * fy)

    def box_from_original(self, box: Sequence[float], image_size: tuple[int, int]) -> Box:
        fx, fy = self._factors(image_size)
        return (box[0] / fx, box[1] / fy, box[2] / fx, box[3] / fy)


# --------------------------------------------------------------------------------------------
# Masks (COCO RLE through pycocotools)
# --------------------------------------------------------------------------------------------


def _mask_utils():
    from pycocotools import mask as mask_utils  # light C extension; imported on first mask use

    return mask_utils


def mask_to_rle(mask: np.ndarray) -> RLE:
    """Encode an ``H x W`` boolean mask as COCO RLE."""
    encoded = _mask_utils().encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    counts = encoded["counts"]
    return RLE(size=(int(encoded["size"][0]), int(encoded["size"][1])), counts=counts.decode("ascii"))


def rle_to_mask(rle: RLE) -> np.ndarray:
    """Decode COCO RLE into an ``H x W`` boolean mask."""
    return _mask_utils().decode(_coco(rle)).astype(bool)


def _coco(rle: RLE) -> dict:
    return {"size": list(rle.size), "counts": rle.counts.encode("ascii")}


def polygons_to_rle(polygons: Sequence[Sequence[float]], height: int, width: int) -> RLE:
    """Merge COCO polygons (flat ``[x1, y1, x2, y2, ...]`` lists) into one RLE mask."""
    mu = _mask_utils()
    parts = mu.frPyObjects([list(map(float, p)) for p in polygons], height, width)
    merged = mu.merge(parts)
    return RLE(size=(height, width), counts=merged["counts"].decode("ascii"))


def box_to_rle(box: Sequence[float], height: int, width: int) -> RLE:
    """The mask of an xyxy box (pixels whose area the box covers, via pycocotools)."""
    mu = _mask_utils()
    x1, y1, x2, y2 = box
    # an inverted box (kept as upstream keeps it, e.g. by the strict parser) covers nothing;
    # pycocotools would otherwise paint a negative-width box as a positive area
    w, h = max(0.0, x2 - x1), max(0.0, y2 - y1)
    encoded = mu.frPyObjects(np.array([[x1, y1, w, h]], dtype=np.float64), height, width)[0]
    return RLE(size=(height, width), counts=encoded["counts"].decode("ascii"))


def rle_area(rle: RLE) -> int:
    return int(_mask_utils().area(_coco(rle)))


def rle_intersection_union(pred: RLE | None, gold: RLE) -> tuple[int, int]:
    """``(|P & G|, |P | G|)`` in pixels; a missing prediction gives ``(0, |G|)`` as upstream.

    A predicted mask of another size is resized to the gold size (nearest neighbour), as the
    upstream evaluator does.
    """
    mu = _mask_utils()
    gold_c = _coco(gold)
    if pred is None:
        return 0, int(mu.area(gold_c))
    if tuple(pred.size) != tuple(gold.size):
        pred = resize_rle(pred, gold.size)
    pred_c = _coco(pred)
    areas = mu.area([pred_c, gold_c])
    inter = int(mu.area(mu.merge([pred_c, gold_c], intersect=True)))
    return inter, int(areas[0]) + int(areas[1]) - inter  # |P u G| = |P| + |G| - |P n G|: one merge


def resize_rle(rle: RLE, size: Sequence[int]) -> RLE:
    """Resize a mask to ``(height, width)`` with nearest-neighbour sampling."""
    from PIL import Image

    height, width = int(size[0]), int(size[1])
    image = Image.fromarray(rle_to_mask(rle).astype(np.uint8) * 255)
    return mask_to_rle(np.asarray(image.resize((width, height), Image.Resampling.NEAREST)) > 127)


def merge_rles(rles: Sequence[RLE]) -> RLE:
    """OR several masks of one size into one."""
    if len(rles) == 1:
        return rles[0]
    merged = _mask_utils().merge([_coco(r) for r in rles], intersect=False)
    return RLE(size=tuple(rles[0].size), counts=merged["counts"].decode("ascii"))
