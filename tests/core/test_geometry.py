"""IoU against an independent raster implementation; masks through pycocotools."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from regiondial_bench.geometry import (
    box_iou,
    box_iou_inclusive,
    box_iou_matrix,
    box_to_rle,
    mask_to_rle,
    merge_rles,
    polygons_to_rle,
    resize_rle,
    rle_area,
    rle_intersection_union,
    rle_to_mask,
)


def raster_iou(a, b, inclusive=False):
    """Count pixels of integer boxes on a grid: an independent IoU."""
    grid = np.zeros((2, 64, 64), dtype=bool)
    extra = 1 if inclusive else 0
    for layer, (x1, y1, x2, y2) in enumerate((a, b)):
        grid[layer, y1:y2 + extra, x1:x2 + extra] = True
    union = (grid[0] | grid[1]).sum()
    return (grid[0] & grid[1]).sum() / union if union else 0.0


boxes = st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(1, 20), st.integers(1, 20)).map(
    lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3]))


@settings(max_examples=200, deadline=None)
@given(boxes, boxes)
def test_iou_matches_raster(a, b):
    assert abs(box_iou(a, b) - raster_iou(a, b)) < 1e-9
    assert abs(box_iou_inclusive(a, b) - raster_iou(a, b, inclusive=True)) < 1e-9
    assert abs(box_iou_matrix(np.array([a]), np.array([b]))[0, 0] - box_iou(a, b)) < 1e-12


def test_masks_roundtrip_and_iou():
    mask = np.zeros((30, 40), dtype=bool)
    mask[5:15, 10:30] = True
    rle = mask_to_rle(mask)
    assert rle.size == (30, 40)
    assert (rle_to_mask(rle) == mask).all()
    box = box_to_rle((10, 5, 30, 15), 30, 40)
    assert rle_area(box) == 200 and (rle_to_mask(box) == mask).all()
    half = box_to_rle((10, 5, 20, 15), 30, 40)
    assert rle_intersection_union(half, rle) == (100, 200)
    assert rle_intersection_union(None, rle) == (0, 200)
    assert rle_area(merge_rles([half, box_to_rle((0, 0, 5, 5), 30, 40)])) == 125
    square = polygons_to_rle([[10, 5, 30, 5, 30, 15, 10, 15]], 30, 40)
    inter, union = rle_intersection_union(square, rle)
    assert inter / union > 0.8


def test_a_predicted_mask_of_another_size_is_resized_like_upstream():
    gold = box_to_rle((0, 0, 20, 10), 20, 40)             # 40x20 image, left half of the top half
    half_res = box_to_rle((0, 0, 10, 5), 10, 20)          # the same region predicted at 20x10
    assert resize_rle(half_res, (20, 40)).size == (20, 40)
    assert rle_intersection_union(half_res, gold) == (200, 200)
