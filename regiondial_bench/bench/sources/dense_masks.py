"""The gold masks of the released ``*_multi_turn.json`` files: dense JSON grids of 0/1 to COCO RLE.

A released turn holds ``masks``: a list of dense ``H x W`` grids (UPSTREAM.md 2.1), several MB of JSON
per turn. The exact encoding is unknown, so every JSON spelling of 0 and 1 is accepted (``0``/``1``,
``false``/``true``, ``0.0``/``1.0``, or any number equal to 0 or 1), with any whitespace, and also
per-object lists (``[[mask, ...], ...]``). Only the first mask is used, as upstream does.

:func:`masks_field` defines what a field means, on the decoded JSON value. :func:`decode_masks_field`
computes the same thing from the field's raw bytes without building Python lists: a vectorised
check of the usual layout (``[[[0,1,...],...],...]``), and :func:`masks_field` on ``json.loads`` for
anything else, so an unusual file is slower, never read differently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...schema import RLE

MAX_MASK_SIDE = 10_000
"""Largest height or width accepted for a dense gold mask (COCO images are at most 640 px)."""

_WHITESPACE = b" \t\n\r"
_IS_WHITESPACE = np.zeros(256, dtype=bool)
_IS_WHITESPACE[list(_WHITESPACE)] = True
_BOOLEAN_LETTERS = b"ruelas"  # "true" and "false" without their first letters
_BOOLEANS_TO_DIGITS = bytes.maketrans(b"tf", b"10")
_MAX_FAST_MASKS = 64
_OPEN, _CLOSE, _COMMA, _DOT, _ZERO, _ONE = b"[],.01"


class MaskSyntaxError(ValueError):
    """A ``masks`` field that is not valid JSON; ``offset`` is the byte where it fails, within the field."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True)
class MasksField:
    """What a turn's ``masks`` field gives.

    Attributes:
        mask: the first mask as RLE, or None.
        error: why there is no mask (None when there is one).
        count: how many entries the field lists (objects, or masks).
        nested: the field holds per-object lists of masks (``[[mask, ...], ...]``).
    """

    mask: RLE | None
    error: str | None
    count: int
    nested: bool = False


def masks_field(value: Any) -> MasksField:
    """The meaning of a decoded ``masks`` value: its first mask (RLE or the reason it has none).

    >>> masks_field([[[0, 1], [1, 1]], [[1, 0], [0, 0]]]).count
    2
    >>> masks_field([[[True, 0.0]]]).mask.size
    (1, 2)
    >>> masks_field([[[0, 2]]]).error
    'a mask holds only 0 and 1'
    """
    if not isinstance(value, list) or not value:
        return MasksField(None, f"masks is {_type_name(value)}, not a non-empty list", 0)
    first, nested = value[0], False
    if _is_list(first) and _is_list(first[0]) and _is_list(first[0][0]):
        first, nested = first[0], True  # per-object lists: the first mask of the first object
    try:
        rle = rle_dict(first) if isinstance(first, dict) else dense_mask_to_rle(first)
    except (ValueError, TypeError, KeyError) as exc:
        return MasksField(None, str(exc), len(value), nested)
    return MasksField(rle, None, len(value), nested)


def _is_list(value: Any) -> bool:
    return isinstance(value, list) and len(value) > 0


def _type_name(value: Any) -> str:
    return "an empty list" if value == [] else type(value).__name__


def dense_mask_to_rle(mask: Any) -> RLE:
    """A dense ``H x W`` grid of 0/1 (nested lists or an array) as COCO RLE.

    Each value is 0 or 1 as an integer, a boolean or a float (``1.0``).

    Raises:
        ValueError: When the mask is not a rectangular 2-D grid of 0/1 values.
    """
    from ...geometry import mask_to_rle

    if isinstance(mask, np.ndarray):
        array = mask
    else:
        if not isinstance(mask, list) or not mask:
            raise ValueError("a mask is an H x W grid of 0/1 values")
        if not all(isinstance(row, list) for row in mask):
            raise ValueError("the mask is not an H x W grid: a row is not a list")
        widths = {len(row) for row in mask}
        if len(widths) != 1:
            raise ValueError(f"the mask rows have different lengths ({min(widths)} to {max(widths)})")
        if not all(type(v) in (int, float, bool) for row in mask for v in row):
            raise ValueError("the mask is not an H x W grid of numbers")
        array = np.asarray(mask, dtype=np.float64 if any(type(v) is float for row in mask for v in row) else None)
    if array.ndim != 2 or not (0 < array.shape[0] <= MAX_MASK_SIDE and 0 < array.shape[1] <= MAX_MASK_SIDE):
        raise ValueError(f"the mask is not an H x W grid with 1..{MAX_MASK_SIDE} rows and columns "
                         f"(shape {array.shape})")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"the mask is not an H x W grid of numbers ({array.dtype})")
    if not ((array == 0) | (array == 1)).all():  # NaN and infinities are neither
        raise ValueError("a mask holds only 0 and 1")
    return mask_to_rle(array == 1)


def rle_dict(data: dict) -> RLE:
    """A COCO RLE given as ``{size: [h, w], counts}`` (compressed string or run lengths).

    Raises:
        ValueError: When the sizes or counts are not a valid RLE.
    """
    from ...geometry import _mask_utils, rle_area

    if not {"size", "counts"} <= set(data):
        raise ValueError("a mask object needs 'size' and 'counts' (COCO RLE)")
    size = data["size"]
    if not (isinstance(size, list) and len(size) == 2
            and all(type(v) is int and 0 < v <= MAX_MASK_SIDE for v in size)):
        raise ValueError(f"RLE size {str(size)[:60]} is not [height, width]")
    counts = data["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        if not all(type(v) is int and v >= 0 for v in counts) or sum(counts) != size[0] * size[1]:
            raise ValueError("uncompressed RLE counts must be non-negative and sum to height x width")
        counts = _mask_utils().frPyObjects({"size": size, "counts": counts}, *size)["counts"].decode("ascii")
    if not isinstance(counts, str):
        raise ValueError("RLE counts must be a string or a list of run lengths")
    rle = RLE(size=(size[0], size[1]), counts=counts)
    try:
        rle_area(rle)
    except Exception as exc:  # pycocotools rejects corrupt strings in many ways
        raise ValueError(f"RLE counts cannot be decoded ({str(exc)[:100]})") from None
    return rle


def decode_masks_field(text: bytes) -> MasksField:
    """:func:`masks_field` of the JSON array ``text`` (the raw bytes of a turn's ``masks`` value).

    Raises:
        MaskSyntaxError: ``text`` is not valid JSON.
    """
    fast = _decode_usual_layout(text)
    if fast is not None:
        return fast
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MaskSyntaxError(f"not valid JSON ({exc.msg})", exc.pos) from None
    except UnicodeDecodeError as exc:
        raise MaskSyntaxError("not UTF-8 text", exc.start) from None
    except RecursionError:
        raise MaskSyntaxError("nested too deeply", 0) from None
    except ValueError as exc:  # an integer beyond Python's digit limit
        raise MaskSyntaxError(f"not valid JSON ({str(exc)[:100]})", 0) from None
    return masks_field(value)


def _decode_usual_layout(text: bytes) -> MasksField | None:
    """The fast path: a list of ``H x W`` grids of 0/1 spelled in one of the usual ways.

    Returns None (and :func:`decode_masks_field` falls back to ``json.loads``) for anything it
    does not fully check: it never accepts text that is not valid JSON, nor reads a value
    differently from :func:`masks_field`. Booleans become single digits with one ``translate``
    once counting has shown that every letter belongs to a ``true`` or ``false``; whitespace is
    dropped (where it could split a token, the positions checked below no longer line up, and a
    float's ``.`` may touch no whitespace); then every byte of the compact text is checked against
    the only layout it may have: brackets in place, rows of ``d,d,...,d`` or ``d.0,d.0,...,d.0``.
    """
    if b"t" in text or b"f" in text:
        # "true" and "false" cannot overlap, so when their letters are all the letters there are,
        # every letter is in one of these words
        letters = len(text) - len(text.translate(None, b"tf" + _BOOLEAN_LETTERS))
        if letters != 4 * text.count(b"true") + 5 * text.count(b"false"):
            return None  # a letter outside "true"/"false" (null, NaN, 1e0, tru, ...)
        compact = text.translate(_BOOLEANS_TO_DIGITS, _WHITESPACE + _BOOLEAN_LETTERS)
        if b"." in compact:
            return None  # "true.0" would read as "1.0"
    else:
        compact = text.translate(None, _WHITESPACE)
    token = 1
    if b"." in compact:
        raw = np.frombuffer(text, dtype=np.uint8)
        dots = np.flatnonzero(raw == _DOT)
        if dots[0] == 0 or dots[-1] == raw.size - 1 or _IS_WHITESPACE[raw[dots - 1]].any() \
                or _IS_WHITESPACE[raw[dots + 1]].any():
            return None  # whitespace would split the number
        token = 3  # "0.0" / "1.0"
    data = np.frombuffer(compact, dtype=np.uint8)
    if data.size < 6 + token:  # "[[[d]]]"
        return None
    brackets = np.flatnonzero(data > _ONE)  # '[' and ']' are the only valid bytes above '1'
    kinds = data[brackets]
    if not ((kinds == _OPEN) | (kinds == _CLOSE)).all():
        return None
    depth = np.cumsum(np.where(kinds == _OPEN, 1, -1))  # depth after each bracket
    if brackets[0] != 0 or brackets[-1] != data.size - 1 or depth[-1] != 0 or depth.max() != 3 \
            or (depth[:-1] < 1).any():
        return None
    opens = kinds[:-1] == _OPEN
    after, gap = depth[:-1], np.diff(brackets)
    # what may lie between two consecutive brackets, by (kind, depth after) of the first and kind of the second
    nested_open = opens & (kinds[1:] == _OPEN) & (after < 3) & (gap == 1)  # "[[" down to a row
    row = opens & (kinds[1:] == _CLOSE) & (after == 3) & (gap % (token + 1) == 0)  # "[d,...,d]"
    closes = ~opens & (kinds[1:] == _CLOSE) & (gap == 1)  # "]]"
    sibling = ~opens & (kinds[1:] == _OPEN) & (after >= 1) & (after <= 2) & (gap == 2)  # "],["
    if not (nested_open | row | closes | sibling).all():
        return None
    if sibling.any() and not (data[brackets[:-1][sibling] + 1] == _COMMA).all():
        return None
    mask_starts = np.flatnonzero(opens & (after == 2))  # bracket indices opening a mask
    mask_ends = np.flatnonzero(~opens & (after == 1))  # closing a mask
    if len(mask_starts) > _MAX_FAST_MASKS:
        return None  # thousands of tiny masks: json.loads walks them faster than a loop here
    first_mask = None
    for start, end in zip(mask_starts, mask_ends, strict=True):
        # within a mask the brackets alternate: row open, row close, ...
        grid = _mask_grid(data, brackets[start + 1 : end : 2], brackets[start + 2 : end + 1 : 2], token)
        if grid is None:
            return None
        if first_mask is None:
            first_mask = grid
    from ...geometry import mask_to_rle

    return MasksField(mask_to_rle(first_mask), None, len(mask_starts))


def _mask_grid(data: np.ndarray, row_opens: np.ndarray, row_closes: np.ndarray, token: int) -> np.ndarray | None:
    """The 0/1 grid of one mask whose rows' brackets are at ``row_opens``/``row_closes``, or None
    unless every byte of the rows is in place: rows of equal width, ``token`` bytes per value
    (``d`` or ``d.0``) and commas between."""
    widths = (row_closes - row_opens) // (token + 1)
    height, width = len(row_opens), int(widths[0])
    if not (widths == width).all() or height > MAX_MASK_SIDE or width > MAX_MASK_SIDE:
        return None
    block = data[row_opens[0] : row_closes[-1] + 1]
    step = width * (token + 1) + 2  # "[" + width tokens and width - 1 commas + "]" + ","

    def column(offset: int, count: int = width) -> np.ndarray:
        """Byte ``offset`` of every value of the rows, as a read-only ``height x count`` view."""
        return np.lib.stride_tricks.as_strided(block[offset:], (height, count), (step, token + 1), writeable=False)

    values = column(1)
    if not ((values | 1) == _ONE).all():  # only '0' and '1' give '1' when or-ed with 1
        return None
    if token == 3 and not ((column(2) == _DOT).all() and (column(3) == _ZERO).all()):
        return None
    if width > 1 and not (column(1 + token, width - 1) == _COMMA).all():
        return None
    return values == _ONE
