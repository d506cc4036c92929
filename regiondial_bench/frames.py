"""The coordinate-frame diagnostic of a run: is the frame answers are read in the one the model wrote?

Coordinate conventions are the commonest grounding-evaluation failure (0-1000 against absolute
pixels, the processed input against the original image): a model answering in another frame than
its preset declares scores near zero, silently. Some harnesses score every reading and keep the
best, which flatters. This module does neither: the declared frame is the one scored, and the
diagnostic reports, next to the scores, how the answers look under the common frames:

* in the declared frame, the share of boxes that reach outside the image, and the share whose
  numbers (as the model wrote them) would fit ``[0, 1]`` or ``[0, 1000]`` instead;
* against the gold boxes, the AP50 each common frame would give if the same numbers were read in
  it, which frame that is best for, and a warning naming it when it is not the declared one.

It reads the logged regions (original pixels, mapped from the declared frame) and maps them back
to the numbers the model wrote; it never touches a score. The re-reading is per turn: a run whose
references were rendered in the wrong frame would have been asked other questions, so the other
frames' AP50 is a diagnosis, not a result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from .geometry import CoordinateFrame, box_iou
from .schema import Bench, FrameCheck, PredictionRecord

FrameOf = Callable[[tuple[int, int]], CoordinateFrame]
"""The frame a run reads answers in, for an image of ``(width, height)`` original pixels."""

COMMON_FRAMES = ("original", "input", "norm-1000", "norm-1")
"""The readings compared, in the order ties are broken (after the declared frame)."""

HIT_IOU = 0.5  # AP50's threshold (strict), as the metrics use
OUTSIDE_TOLERANCE = 1.0  # pixels a box may overhang the image (rounding) before it counts as outside
MAX_BOXES_PER_TURN = 100  # the tolerant reader's own bound; a runaway record cannot make this quadratic
MIN_MARGIN_TURNS = 3
MIN_MARGIN_SHARE = 0.05
"""A frame other than the declared one is named only when it would hit at least this many more
turns (and this share of the turns with boxes): a few lucky hits under random answers are noise."""


def default_frames(input_frame: FrameOf | None = None) -> dict[str, FrameOf]:
    """The common frames: original pixels, 0-1000 and 0-1 of the image, and the model's input
    (pixels of the squash or ``smart_resize`` input) when the run has one."""
    frames: dict[str, FrameOf] = {
        "original": lambda size: CoordinateFrame.original(*size),
        "norm-1000": lambda size: CoordinateFrame.normalized(1000),
        "norm-1": lambda size: CoordinateFrame.normalized(1),
    }
    if input_frame is not None:
        frames["input"] = input_frame
    return frames


def check_frames(bench: Bench, records: Iterable[PredictionRecord], declared: str,
                 frames: Mapping[str, FrameOf]) -> FrameCheck:
    """The frame diagnostic of a run's records (see the module docstring).

    Args:
        bench: The bench the records answer (gold boxes, image sizes).
        records: The run's prediction records; failed and empty turns are skipped.
        declared: The name of the frame the run read answers in; it must be a key of ``frames``.
        frames: Frame name -> the frame for an image size (:func:`default_frames`).

    Returns:
        The diagnostic (``turns`` counts the turns with at least one box and a known image size).
    """
    if declared not in frames:
        raise ValueError(f"the declared frame {declared!r} is not among the frames compared {sorted(frames)}")
    order = [declared, *[name for name in COMMON_FRAMES if name in frames and name != declared],
             *[name for name in frames if name not in COMMON_FRAMES and name != declared]]
    hits = dict.fromkeys(order, 0)
    turns = boxes = outside = fits_unit = fits_1000 = 0
    sizes: dict[str, tuple[int, int] | None] = {}
    frames_of: dict[tuple[int, int], list[CoordinateFrame]] = {}  # per image size, in ``order``
    for record in records:
        if record.error is not None or not record.regions:
            continue
        try:
            dialogue = bench.dialogue(record.dialogue_id)
            gold = dialogue.turns[record.turn].gold_boxes[0]
        except (KeyError, IndexError):
            continue
        if record.dialogue_id not in sizes:
            sizes[record.dialogue_id] = _image_size(bench, dialogue)
        size = sizes[record.dialogue_id]
        if size is None:
            continue
        turns += 1
        width, height = size
        readings = frames_of.get(size)
        if readings is None:
            readings = frames_of[size] = [frames[name](size) for name in order]
        raw_boxes = []
        for region in record.regions[:MAX_BOXES_PER_TURN]:
            box = region.box
            boxes += 1
            if (box[0] < -OUTSIDE_TOLERANCE or box[1] < -OUTSIDE_TOLERANCE or box[2] > width + OUTSIDE_TOLERANCE
                    or box[3] > height + OUTSIDE_TOLERANCE):
                outside += 1
            raw = readings[0].box_from_original(box, size)
            low, high = min(raw), max(raw)
            fits_unit += low >= 0 and high <= 1
            fits_1000 += low >= 0 and high <= 1000
            raw_boxes.append(raw)
        for name, frame in zip(order, readings, strict=True):
            if any(_hit(frame.box_to_original(raw, size), gold) for raw in raw_boxes):
                hits[name] += 1
    ap50 = {name: round(100.0 * hits[name] / turns, 2) for name in order} if turns else {}
    best = max(order, key=lambda name: hits[name]) if turns else None  # max keeps the first of equals
    check = FrameCheck(
        declared=declared,
        turns=turns,
        boxes=boxes,
        outside_image=_share(outside, boxes),
        fits_unit=_share(fits_unit, boxes),
        fits_1000=_share(fits_1000, boxes),
        ap50_by_frame=ap50,
        best=best,
    )
    margin = max(MIN_MARGIN_TURNS, math.ceil(MIN_MARGIN_SHARE * turns))
    if best is not None and best != declared and hits[best] - hits[declared] >= margin:
        check = check.model_copy(update={"warning": (
            f"the answers look like {best} coordinates, not the declared {declared}: read as {best} they would "
            f"score AP50 {ap50[best]:.1f} instead of {ap50[declared]:.1f} (on the {turns} turns with boxes; "
            f"{check.outside_image:.1f}% of the boxes reach outside the image as declared). The scores keep the "
            f"declared frame; check the preset's coordinate_frame and the prompt"
        )})
    return check


def _hit(box: tuple[float, ...], gold: tuple[float, ...]) -> bool:
    # logged boxes are finite; a frame's factors are finite: one sum test guards the rest cheaply
    return math.isfinite(box[0] + box[1] + box[2] + box[3]) and box_iou(box, gold) > HIT_IOU


def _share(count: int, total: int) -> float | None:
    return round(100.0 * count / total, 2) if total else None


def _image_size(bench: Bench, dialogue: object) -> tuple[int, int] | None:
    """The dialogue's image size: from the bench, else from the image file's header."""
    image = dialogue.image  # type: ignore[attr-defined]
    if image.width and image.height:
        return (int(image.width), int(image.height))
    path = bench.image_path(dialogue)  # type: ignore[arg-type]
    if path is None or not Path(path).is_file():
        return None
    try:
        from PIL import Image

        with Image.open(path) as opened:  # reads the header only
            return opened.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
