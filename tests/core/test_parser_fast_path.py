"""The parser's fast path agrees with its general path on every input.

``parse_answer`` reads the common well-formed item with :func:`protocol._read_plain_item`, which
only exists for speed. These tests run the hostile corpora of ``test_parser_hostile`` (and
generated common answers and their near misses) through ``parse_answer`` twice, with the fast
path and with it switched off (the general path, i.e. the parser as it was before the fast path
existed), and require identical results: regions, errors, notes and tags.
"""

from __future__ import annotations

import json
from contextlib import contextmanager

from hypothesis import given, settings
from hypothesis import strategies as st

from regiondial_bench import protocol
from regiondial_bench.geometry import CoordinateFrame
from regiondial_bench.protocol import parse_answer

from .test_parser_hostile import ANSWERS, COMMON, FRAMES, HOSTILE_NUMBERS, JSON_VALUES, SIZES


@contextmanager
def general_path_only():
    """``parse_answer`` without its fast path: every item through ``_read_item``."""
    plain = protocol._read_plain_item
    protocol._read_plain_item = lambda item, frame, image_size: None
    try:
        yield
    finally:
        protocol._read_plain_item = plain


def agree(text, frame=None, image_size=(640, 480), **kwargs):
    fast = parse_answer(text, frame=frame, image_size=image_size, **kwargs)
    with general_path_only():
        general = parse_answer(text, frame=frame, image_size=image_size, **kwargs)
    assert fast == general
    return fast


def test_the_plain_answer_takes_the_fast_path_and_reads_the_same():
    text = '<think> fixed </think><answer>[{"bbox_2d": [2, 2, 20, 20], "point_2d": [11, 11]}]</answer>'
    item = json.loads(protocol.extract_tags(text)["answer"])[0]
    frame, size = CoordinateFrame(840.0, 840.0, "squash-840x840"), (640, 480)
    assert protocol._read_plain_item(item, frame, size) == protocol._read_item(item, frame, size)[0] is not None
    parsed = agree(text, frame, size, require_answer_tag=True)
    assert parsed.regions[0].point is not None and parsed.tags["think"] == "fixed"


@settings(max_examples=3000, **COMMON)
@given(ANSWERS, st.sampled_from(FRAMES), SIZES, st.booleans())
def test_fragment_answers(text, frame, size, require_tag):
    agree(text, frame, size, require_answer_tag=require_tag)


@settings(max_examples=3000, **COMMON)
@given(JSON_VALUES, st.sampled_from(["<answer>{}</answer>", "```json\n{}\n```", "{}", "<answer>{}", "x {} y"]),
       st.sampled_from(FRAMES), SIZES)
def test_json_answers(value, wrapper, frame, size):
    agree(wrapper.format(json.dumps(value, allow_nan=True)), frame, size)


# items of the common shape and its near misses: the keys, value types and counts the fast path
# must either read exactly as the general path or leave to it
NUMBERS = HOSTILE_NUMBERS | st.integers(-2000, 2000) | st.floats(-2000, 2000) | st.booleans() | st.sampled_from(
    ["12", None, [1, 2]])
COORDS = st.lists(NUMBERS, min_size=0, max_size=5) | st.sampled_from([None, "1,2", {"x": 1}])
ITEMS = st.dictionaries(st.sampled_from(["bbox_2d", "point_2d", "label", "bbox", "points_2"]), COORDS,
                        min_size=0, max_size=3) | st.fixed_dictionaries({"bbox_2d": COORDS}, optional={"point_2d": COORDS})
PLAUSIBLE_FRAMES = st.sampled_from([*FRAMES, CoordinateFrame(840.0, 840.0, "squash-840x840"),
                                    CoordinateFrame(1e-320, 3.0), CoordinateFrame(1e300, 1e-300)])


@settings(max_examples=4000, **COMMON)
@given(st.lists(ITEMS, min_size=1, max_size=4), PLAUSIBLE_FRAMES, SIZES | st.sampled_from([None, (840, 840)]),
       st.integers(1, 5))
def test_generated_common_answers(items, frame, size, max_regions):
    agree("<think>t</think><answer>" + json.dumps(items, allow_nan=True) + "</answer>", frame, size,
          max_regions=max_regions)


@settings(max_examples=2000, **COMMON)
@given(ITEMS, PLAUSIBLE_FRAMES, SIZES | st.sampled_from([None]))
def test_the_plain_reader_gives_the_general_readers_region_or_nothing(item, frame, size):
    region = protocol._read_plain_item(item, frame, size)
    if region is not None:
        assert protocol._read_item(item, frame, size) == (region, None)
