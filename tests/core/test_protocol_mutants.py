"""Reference substitution on the official files' own odd turns, and the upstream readers' edges.

Found by ``scripts/mutation.py protocol``; every case is a turn of ../shared/upstream_regiondial
(UPSTREAM.md 2.1, "Known defects") or a rule of UPSTREAM.md 1 and 3.
"""

from __future__ import annotations

import pytest

from regiondial_bench.bench.sources.upstream import import_upstream
from regiondial_bench.geometry import CoordinateFrame
from regiondial_bench.protocol import (
    NO_REGION_TEXT,
    parse_answer,
    parse_answer_upstream,
    render_question,
    resolve_reference,
    upstream_style_for,
)
from regiondial_bench.run.runner import Runner
from regiondial_bench.schema import Bench, Dialogue, ImageRef, PredictionRecord, Reference, Region, Turn

from .helpers import ScriptedAdapter, answer_json
from .test_runner import spec_for


def predicted_box(turn: int) -> tuple[float, float, float, float]:
    """What the scripted model answers on turn ``turn`` (distinct per turn)."""
    return (10.0 + turn, 20.0 + turn, 30.0 + turn, 40.0 + turn)


def text(box) -> str:
    return "[" + ", ".join(str(int(v)) for v in box) + "]"


@pytest.fixture(scope="module")
def official(upstream_file):
    return {name: import_upstream(upstream_file(name)) for name in ("refcocoplus", "refcocog")}


def asked(official, tmp_path, name: str, image_id: int, mode: str) -> dict[int, PredictionRecord]:
    """Run one official dialogue with a model answering ``predicted_box(turn)``; its records by turn."""
    dialogue = official[name].dialogue(f"{name}-{image_id}")
    bench = Bench([dialogue], name=name)
    adapter = ScriptedAdapter(lambda r: answer_json(predicted_box(r.turn)))
    out = tmp_path / f"{name}-{image_id}-{mode}"
    records = Runner(bench, adapter, spec_for(bench, reference_mode=mode), out, progress=False).run()
    return {r.turn: r for r in records}


@pytest.mark.parametrize(("name", "image_id", "turn", "expected"), [
    # UPSTREAM.md 1, step 2: the literal placeholder is replaced wherever it stands (str.replace)
    ("refcocoplus", 132529, 2, "Find the chair under the {r} near the {r}."),
    ("refcocog", 101522, 1, "The piece of broccoli that expect the piece in the {r} {r}."),
])
@pytest.mark.parametrize("mode", ["predicted", "upstream"])
def test_a_placeholder_written_twice_is_filled_twice(official, tmp_path, name, image_id, turn, expected, mode):
    records = asked(official, tmp_path, name, image_id, mode)
    reference = official[name].dialogue(f"{name}-{image_id}").turns[turn].references[0].turn
    assert records[turn].question == expected.format(r=text(predicted_box(reference)))


def test_the_second_reference_of_refcocog_188911_stays_literal_in_upstream_mode_only(official, tmp_path):
    # UPSTREAM.md 2.1 defect 4: context_from_turn_2 / {context_bbox_2} is never filled upstream
    head = "A brown sheep head between the "
    upstream = asked(official, tmp_path, "refcocog", 188911, "upstream")[2]
    assert upstream.question == head + text(predicted_box(0)) + " and the <box>{context_bbox_2}</box>."
    assert [(u.turn, u.source) for u in upstream.references] == [(0, "predicted")]
    predicted = asked(official, tmp_path, "refcocog", 188911, "predicted")[2]
    assert predicted.question == head + text(predicted_box(0)) + " and the " + text(predicted_box(1)) + "."
    assert [(u.turn, u.source) for u in predicted.references] == [(0, "predicted"), (1, "predicted")]
    gold = asked(official, tmp_path, "refcocog", 188911, "gold")[2]
    assert gold.question == head + "[1, 175, 330, 317] and the [337, 231, 640, 312]."


SELF_AND_FORWARD = [(151699, 1, 1), (280257, 2, 2), (323722, 4, 4), (448531, 1, 2)]  # UPSTREAM.md 2.1 defect 3


@pytest.mark.parametrize(("image_id", "turn", "target"), SELF_AND_FORWARD)
def test_self_and_forward_references_never_use_a_prediction(official, tmp_path, image_id, turn, target):
    dialogue = official["refcocog"].dialogue(f"refcocog-{image_id}")
    gold = dialogue.turns[target].gold_boxes[0]
    (reference,) = dialogue.turns[turn].references
    assert reference.turn == target
    # replayed over a complete log (as the submission check does): the target turn *has* an answer
    log = {t.index: PredictionRecord(dialogue_id=dialogue.dialogue_id, turn=t.index, round=t.round, question="q",
                                     raw_text="", regions=[Region(box=predicted_box(t.index))])
           for t in dialogue.turns}
    expected = {"predicted": ("no-region", None), "gold": ("gold", gold), "upstream": ("gold-fallback", gold)}
    for mode, outcome in expected.items():
        assert resolve_reference(mode, dialogue, dialogue.turns[turn], reference, log.get) == outcome, mode
    # and so when the runner asks it: upstream always writes the gold box, predicted mode the marker
    assert asked(official, tmp_path, "refcocog", image_id, "upstream")[turn].references[0].box == gold
    marked = asked(official, tmp_path, "refcocog", image_id, "predicted")[turn]
    assert NO_REGION_TEXT in marked.question and marked.references[0].source == "no-region"


def two_turns(*references: Reference) -> Dialogue:
    return Dialogue(dialogue_id="d", image=ImageRef(), turns=[
        Turn(index=0, question="a", gold_boxes=[(0, 0, 5, 5)]),
        Turn(index=1, question="b <box>{context_bbox}</box>", gold_boxes=[(1, 1, 6, 6)], references=list(references))])


def test_a_reference_past_the_dialogues_end_is_no_region_in_every_mode():
    # a hostile bench file: context_from_turn = 7 in a two-turn dialogue (the importer keeps it, with an issue)
    for past in (2, 7):  # 2: just past the last turn
        dialogue = two_turns(Reference(turn=past))
        for mode in ("predicted", "gold", "upstream"):
            assert resolve_reference(mode, dialogue, dialogue.turns[1], Reference(turn=past), lambda c: None) == (
                "no-region", None), (past, mode)


def test_a_reference_to_a_turn_without_a_box_falls_back_only_in_upstream_mode():
    dialogue = two_turns(Reference(turn=0))
    empty = PredictionRecord(dialogue_id="d", turn=0, round=1, question="a", raw_text="", error="no JSON")
    ref = dialogue.turns[1].references[0]
    assert resolve_reference("predicted", dialogue, dialogue.turns[1], ref, lambda c: empty) == ("no-region", None)
    assert resolve_reference("upstream", dialogue, dialogue.turns[1], ref, lambda c: empty) == (
        "gold-fallback", (0.0, 0.0, 5.0, 5.0))


def test_render_leaves_a_reference_without_placeholder_or_without_a_fill_literal():
    turn = Turn(index=2, question="x <box>{context_bbox}</box> y", gold_boxes=[(0, 0, 1, 1)],
                references=[Reference(turn=0, placeholder=None), Reference(turn=1)])
    from regiondial_bench.schema import UsedReference

    used = [UsedReference(turn=0, source="gold", box=(1, 2, 3, 4), text="[1, 2, 3, 4]"),
            UsedReference(turn=1, source="gold", box=(5, 6, 7, 8), text="[5, 6, 7, 8]")]
    assert render_question(turn, used) == "x [5, 6, 7, 8] y"  # the first reference has no placeholder
    assert render_question(turn, [used[0], None]) == turn.question


# ------------------------------------------------------------------------------ upstream readers


def test_the_upstream_reader_of_a_preset_tolerates_any_preset_value():
    # adapter options come from a user's config: a preset that is not a string is no preset
    assert upstream_style_for(["qwen2.5-vl-7b"]) == "regionreasoner"
    assert upstream_style_for({"a": 1}) == "regionreasoner"
    assert upstream_style_for("qwen2.5-vl-7b") == "qwen"


def test_the_upstream_reader_refuses_non_text_and_unknown_styles():
    assert parse_answer_upstream(None).error == "model output is NoneType, not text"
    assert parse_answer_upstream(b"<answer>[]</answer>").error == "model output is bytes, not text"
    refused = parse_answer_upstream('<answer>[{"bbox_2d": [1, 2, 3, 4]}]</answer>', style="qwen3")
    assert refused.regions == [] and "unknown upstream style 'qwen3'" in refused.error


CLEAN = '<answer>[{"bbox_2d": [10, 20, 300, 400], "point_2d": [50, 60]}, {"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]}]</answer>'


def test_a_clean_upstream_answer_has_no_notes_and_every_box():
    parsed = parse_answer_upstream("<think>t</think>" + CLEAN)
    assert parsed.error is None and parsed.notes == []
    assert [(r.box, r.point) for r in parsed.regions] == [((10.0, 20.0, 300.0, 400.0), (50.0, 60.0)),
                                                         ((1.0, 2.0, 3.0, 4.0), (2.0, 3.0))]


@pytest.mark.parametrize(("answer", "reason"), [
    # UPSTREAM.md 3.1: the content of <answer>...</answer> by strict json.loads, a list of objects with
    # bbox_2d holding at least 4 numbers, or the whole answer gives no boxes
    ('<answer>[{"bbox_2d": [1, 2, 3, 4]}]]', "no <answer>...</answer> block"),  # never closed: no boxes
    ('[{"bbox_2d": [1, 2, 3, 4]}]</answer>', "no <answer>...</answer> block"),
    ("<answer></answer>", "the answer is not strict JSON"),
    ("<answer>5</answer>", "the answer is a int, not a list"),
    ('<answer>{"bbox_2d": [1, 2, 3, 4]}</answer>', "the answer is a dict, not a list"),
    ("<answer>[]</answer>", "answer is an empty list"),
    ('<answer>[{"bbox_2d": [1, 2, 3]}]</answer>', "'bbox_2d' is not a list of 4 numbers"),
    ('<answer>[{"bbox_2d": 5}]</answer>', "'bbox_2d' is not a list of 4 numbers"),
    ('<answer>[{"bbox_2d": "1234"}]</answer>', "'bbox_2d' is not a list of 4 numbers"),
    ('<answer>[{"bbox_2d": ["10", 20, 30, 40]}]</answer>', "non-numeric 'bbox_2d' value '10'"),  # "10" * 1.0
    ('<answer>[{"bbox_2d": [1, 2, 3, 4]}, {"box": [1, 2, 3, 4]}]</answer>', "item 1 has no 'bbox_2d'"),
])
def test_answers_the_upstream_evaluator_gets_no_boxes_from(answer, reason):
    parsed = parse_answer_upstream("<think>t</think>" + answer)
    assert parsed.regions == [] and reason in parsed.error


def test_the_answer_cap_counts_exactly_the_content_between_the_tags():
    from regiondial_bench.protocol import MAX_UPSTREAM_ANSWER_CHARS

    content = '[{"bbox_2d": [1, 2, 3, 4]}]'
    at_cap = content + " " * (MAX_UPSTREAM_ANSWER_CHARS - len(content))  # json.loads allows trailing space
    assert len(parse_answer_upstream(f"<think>t</think><answer>{at_cap}</answer>").regions) == 1
    over = parse_answer_upstream(f"<think>t</think><answer>{at_cap} </answer>")
    assert over.regions == [] and "MAX_UPSTREAM_ANSWER_CHARS" in over.error


@pytest.mark.parametrize(("max_regions", "kept", "notes"), [
    (1, 1, ["1 items beyond the first 1 ignored"]), (2, 2, []), (None, 2, [])])
def test_the_region_cap_keeps_the_first_boxes_and_says_so(max_regions, kept, notes):
    parsed = parse_answer_upstream(CLEAN, max_regions=max_regions)
    assert len(parsed.regions) == kept and parsed.notes == notes
    assert parsed.regions[0].box == (10.0, 20.0, 300.0, 400.0)


SEG = '{"bbox": [10, 20, 300, 400], "points_1": [50, 60], "points_2": [70, 80]}'


def seg_zero(text: str, **kwargs):
    return parse_answer_upstream(text, style="seg-zero", **kwargs)


def test_seg_zero_reads_an_object_at_the_very_start_of_the_text():
    parsed = seg_zero(SEG)
    assert parsed.notes == []
    assert [(r.box, r.point, r.extra_points) for r in parsed.regions] == [
        ((10.0, 20.0, 300.0, 400.0), (50.0, 60.0), ((70.0, 80.0),))]


def test_seg_zero_uses_the_first_two_points_keys_only():
    parsed = seg_zero(SEG[:-1] + ', "points_3": "not a point"}')
    assert parsed.notes == [] and parsed.regions[0].extra_points == ((70.0, 80.0),)


@pytest.mark.parametrize("broken", ['"points_2": [70]', '"points_2": "x"', '"other": [70, 80]'])
def test_seg_zero_without_two_usable_points_keeps_the_box_and_no_points(broken):
    parsed = seg_zero(SEG.replace('"points_2": [70, 80]', broken))
    assert parsed.regions[0].box == (10.0, 20.0, 300.0, 400.0)
    assert (parsed.regions[0].point, parsed.regions[0].extra_points) == (None, ())
    assert parsed.notes == ["upstream parser: no points (Seg-Zero needs two usable points keys)"]


def test_seg_zero_truncates_points_before_scaling_too():
    text = '{"bbox": [0, 0, 3, 3], "points_1": [1.9, 1], "points_2": [0.6, 2.7]}'
    region = seg_zero(text, frame=CoordinateFrame(840, 840), image_size=(1680, 840)).regions[0]
    assert region.point == (2.0, 1.0) and region.extra_points == ((0.0, 2.0),)  # int(1.9) * 2, not 3.8 -> 4


@pytest.mark.parametrize(("text", "reason"), [
    ("no object here", "no {...} object in the answer"),
    ('{"bbox": [1, 2, 3, 4]', "no {...} object in the answer"),
    ('{"points_1": [1, 2], "points_2": [3, 4]}', "the object has no bbox key"),
    ('{"bbox": [1, 2, 3], "points_1": [1, 2], "points_2": [3, 4]}', "'bbox' is not a list of 4 numbers"),
    ("{'bbox': [1, 2, 3, 4]}", "the answer is not strict JSON"),
])
def test_seg_zero_answers_without_a_box(text, reason):
    parsed = seg_zero(text)
    assert parsed.regions == [] and reason in parsed.error


def test_the_tolerant_and_upstream_readings_of_one_answer_agree_when_it_is_clean():
    assert [r.box for r in parse_answer(CLEAN).regions] == [r.box for r in parse_answer_upstream(CLEAN).regions]
