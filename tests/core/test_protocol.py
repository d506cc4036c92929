"""The tolerant parser and question rendering."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regiondial_bench.geometry import CoordinateFrame
from regiondial_bench.protocol import NO_REGION_TEXT, format_box, parse_answer, render_question
from regiondial_bench.schema import Reference, Turn, UsedReference

REGION_REASONER = (
    "<scene>A street with two cars.</scene><focus>a red car</focus>"
    "<think>The target is left of the reference.</think>"
    '<answer>[{"bbox_2d": [10,100,200,210], "point_2d": [30,110]}, '
    '{"bbox_2d": [225,296,606,386], "point_2d": [302,310]}]</answer>'
)


@pytest.mark.parametrize(
    ("text", "boxes"),
    [
        (REGION_REASONER, [(10, 100, 200, 210), (225, 296, 606, 386)]),
        ('```json\n[{"bbox_2d": [1, 2, 30, 40], "label": "cat"}]\n```', [(1, 2, 30, 40)]),
        ('<answer>{"bbox_2d": [1, 2, 30, 40]}</answer>', [(1, 2, 30, 40)]),
        ("<answer>{'bbox': [1,2,30,40], 'points_1': [5,5], 'points_2': [6,6]}</answer>", [(1, 2, 30, 40)]),
        ('The object is at {"bbox": [5, 5, 50, 50]} in the picture.', [(5, 5, 50, 50)]),
        ("<answer>[3, 4, 30, 40]</answer>", [(3, 4, 30, 40)]),
        ('<answer>[{"bbox_2d": [[1, 2], [30, 40]]}]</answer>', [(1, 2, 30, 40)]),
        ('<answer>[{"bbox_2d": ["1", "2", "30", "40"]}]</answer>', [(1, 2, 30, 40)]),
        ('<answer>[{"bbox_2d": [1, 2, 30, 40]}, {"bbox_2d": [5, 5, 5, 9]}]</answer>', [(1, 2, 30, 40)]),
        ('<think>unclosed answer</think><answer>[{"bbox_2d": [1, 2, 30, 40]}]', [(1, 2, 30, 40)]),
    ],
)
def test_accepted_variants(text, boxes):
    parsed = parse_answer(text)
    assert parsed.error is None, parsed.error
    assert [r.box for r in parsed.regions] == [tuple(map(float, b)) for b in boxes]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("I cannot find it.", "no JSON found"),
        ("<answer>[{'bbox_2d': [1, 2, 3</answer>", "not valid JSON"),
        ("<answer>[]</answer>", "empty list"),
        ('<answer>"a box"</answer>', "expected a list"),
        ('<answer>[{"point_2d": [1, 2]}]</answer>', "without a box key"),
        ('<answer>[{"bbox_2d": [1, 2, 3]}]</answer>', "expected 4 numbers"),
        ('<answer>[{"bbox_2d": [1, 2, NaN, 4]}]</answer>', "non-finite"),
        ('<answer>[{"bbox_2d": [1, 2, Infinity, 4]}]</answer>', "non-finite"),
        ('<answer>[{"bbox_2d": [30, 2, 10, 40]}]</answer>', "degenerate"),
        ('<answer>[{"bbox_2d": [1, 2, "x", 4]}]</answer>', "non-numeric"),
        ('<answer>[{"bbox_2d": [1000, 900, 1200, 1000]}]</answer>', "outside"),
    ],
)
def test_failures_have_reasons(text, reason):
    parsed = parse_answer(text, image_size=(640, 480))
    assert parsed.regions == []
    assert reason in parsed.error


def test_required_answer_tag():
    assert parse_answer('[{"bbox_2d": [1, 2, 3, 4]}]', require_answer_tag=True).error == "no <answer> tag"


def test_frames_map_back_to_original_pixels():
    text = '<answer>[{"bbox_2d": [420, 0, 840, 420], "point_2d": [630, 210]}]</answer>'
    region = parse_answer(text, frame=CoordinateFrame(840, 840), image_size=(640, 480)).regions[0]
    assert region.box == (320.0, 0.0, 640.0, 240.0)
    assert region.point == (480.0, 120.0)
    unit = parse_answer("[0.5, 0.5, 1.0, 1.0]", frame=CoordinateFrame.normalized(1.0), image_size=(640, 480))
    assert unit.regions[0].box == (320.0, 240.0, 640.0, 480.0)


def test_seg_zero_second_point_is_kept():
    region = parse_answer("<answer>{'bbox': [1,2,30,40], 'points_1': [5,6], 'points_2': [7,8]}</answer>").regions[0]
    assert region.point == (5.0, 6.0) and region.extra_points == ((7.0, 8.0),)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(
        st.sampled_from(["bbox_2d", "bbox", "point_2d", "points_1", "label", "x"]), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_never_raises_on_arbitrary_text(text):
    parsed = parse_answer(text, image_size=(640, 480))
    assert parsed.regions or parsed.error


@settings(max_examples=300, deadline=None)
@given(json_values, st.sampled_from(["<answer>{}</answer>", "```json\n{}\n```", "{}", "<answer>{}"]))
def test_never_raises_on_arbitrary_json(value, wrapper):
    text = wrapper.format(json.dumps(value, allow_nan=True))
    parsed = parse_answer(text, frame=CoordinateFrame.normalized(1000), image_size=(640, 480))
    assert parsed.regions or parsed.error
    for region in parsed.regions:  # whatever is accepted is a usable box inside the image
        x1, y1, x2, y2 = region.box
        assert x2 > x1 and y2 > y1 and x2 > 0 and y2 > 0 and x1 < 640 and y1 < 480


def test_render_fills_each_placeholder():
    turn = Turn(index=2, question="The dog between the <box>{context_bbox}</box> and the <box>{context_bbox_2}</box>.",
                gold_boxes=[(0, 0, 1, 1)],
                references=[Reference(turn=0), Reference(turn=1, placeholder="<box>{context_bbox_2}</box>")])
    used = [UsedReference(turn=0, source="predicted", box=(1, 2, 3, 4), text=format_box((1, 2, 3, 4))),
            UsedReference(turn=1, source="no-region", text=NO_REGION_TEXT)]
    assert render_question(turn, used) == "The dog between the [1, 2, 3, 4] and the [no region]."
    assert render_question(turn, [used[0], None]).endswith("the <box>{context_bbox_2}</box>.")


def test_integer_beyond_float_range_is_a_miss_not_a_crash():
    huge = "1" + "0" * 400  # valid JSON, but float(huge) overflows
    parsed = parse_answer(f'<answer>[{{"bbox_2d": [{huge}, 0, 5, 5]}}]</answer>', image_size=(640, 480))
    assert not parsed.regions and "non-finite" in parsed.error
    # a malformed point drops the point, never the box (nor raises)
    parsed = parse_answer(f'<answer>[{{"bbox_2d": [0, 0, 5, 5], "point_2d": [{huge}, 3]}}]</answer>')
    assert parsed.regions[0].box == (0, 0, 5, 5) and parsed.regions[0].point is None


@pytest.mark.parametrize("unit", ["[", "[1, ", '{"a": ', "x [ "])
def test_degenerate_bracket_output_is_read_within_the_token_cap(monkeypatch, unit):
    from regiondial_bench import protocol

    calls = []
    real = protocol._Reader._token
    monkeypatch.setattr(protocol._Reader, "_token", lambda self: calls.append(1) or real(self))
    parsed = parse_answer("<answer>" + unit * 30000 + "</answer>")
    assert "not valid JSON" in parsed.error
    assert len(calls) <= protocol.MAX_SCAN_TOKENS + 1  # one budget for the whole answer, not one per bracket
