"""Every preset parses the output format its model produces, realistic and malformed.

Coordinates are written as each model writes them (840-space for the squash models, the
processed input size for native Qwen2.5-VL) for a 640x480 image, and must come back in
original pixels through the project's one parser.
"""

from __future__ import annotations

import pytest

from regiondial_bench.adapters import AdapterError
from regiondial_bench.adapters.presets import PRESETS, get_preset, smart_resize
from regiondial_bench.protocol import parse_answer

SIZE = (640, 480)

RR_GOOD = (
    "<scene> A living room with two people standing near a sofa and a dog on the floor. </scene>\n"
    "<focus> Inside bbox=[420,0,840,840] there is a man in a blue shirt. </focus>\n"
    "<think> The question asks for the person to the left of the reference man; the woman on the "
    "left matches. </think>\n"
    '<answer>[{"bbox_2d": [0, 105, 420, 840], "point_2d": [210, 420]}]</answer>'
)

CASES = [
    # (preset, model output, expected boxes in original pixels, expected first point, expected error fragment)
    ("regionreasoner-7b", RR_GOOD, [(0, 60, 320, 480)], (160, 240), None),
    (
        "regionreasoner-7b",
        "<scene> Two cats on a bed. </scene><think> both cats match </think>"
        '<answer>[{"bbox_2d": [0, 0, 420, 420], "point_2d": [210, 210]}, '
        '{"bbox_2d": [420, 420, 840, 840], "point_2d": [630, 630]}]</answer>',
        [(0, 0, 320, 240), (320, 240, 640, 480)],
        (160, 120),
        None,
    ),
    # an item without point_2d keeps its box (scored and propagated), point is None
    ("regionreasoner-7b", '<answer>[{"bbox_2d": [84, 84, 168, 168]}]</answer>', [(64, 48, 128, 96)], None, None),
    # truncated at max_new_tokens inside <think>: no answer at all
    ("regionreasoner-7b", "<scene> A street. </scene><think> The car on the left is", [], None, "no <answer>"),
    # answer text outside the tag does not count for the reasoning models
    ("regionreasoner-7b", '[{"bbox_2d": [0, 0, 420, 420], "point_2d": [1, 1]}]', [], None, "no <answer>"),
    ("regionreasoner-7b", '<answer>[{"bbox_2d": [10, 20, 30]}]</answer>', [], None, "expected 4 numbers"),
    ("regionreasoner-7b", "<answer>[]</answer>", [], None, "empty list"),
    ("regionreasoner-7b", "<answer>the man on the left</answer>", [], None, "no JSON"),
    ("regionreasoner-7b", '<answer>[{"bbox_2d": [400, 10, 100, 60], "point_2d": [1, 1]}]</answer>', [], None,
     "degenerate"),
    # VisionReasoner: think + answer only
    (
        "visionreasoner-7b",
        "<think> The red car is parked next to the bus; it is the closest match. </think>\n"
        '<answer>[{"bbox_2d": [210, 210, 630, 630], "point_2d": [420, 420]}]</answer>',
        [(160, 120, 480, 360)],
        (320, 240),
        None,
    ),
    ("visionreasoner-7b", '<think> hmm </think><answer>[{"point_2d": [420, 420]}]</answer>', [], None,
     "without a box key"),
    # Seg-Zero: one python-literal object with bbox, points_1, points_2
    (
        "seg-zero-7b",
        "<think> The bowl in front of the plate. </think>"
        "<answer>{'bbox': [84, 168, 420, 630], 'points_1': [210, 315], 'points_2': [252, 420]}</answer>",
        [(64, 96, 320, 360)],
        (160, 180),
        None,
    ),
    (
        "seg-zero-7b",
        '<think> ok </think><answer>{"bbox": [0, 0, 840, 840], "points_1": [420, 420]}</answer>',
        [(0, 0, 640, 480)],
        (320, 240),
        None,
    ),
    ("seg-zero-7b", "<think> ok </think><answer>{'bbox': [0, 0, 840, 'x'], 'points_1': [1, 1]}</answer>", [], None,
     "non-numeric"),
    # Qwen2.5-VL zero-shot: fenced JSON in processed-input pixels (640x480 -> 644x476), with labels
    (
        "qwen2.5-vl-7b",
        '```json\n[\n\t{"bbox_2d": [161, 119, 483, 357], "label": "the man in blue"}\n]\n```',
        [(160, 120, 480, 360)],
        None,
        None,
    ),
    (
        "qwen2.5-vl-7b",
        'The object is located here: {"bbox_2d": [0, 0, 644, 476], "label": "table"}',
        [(0, 0, 640, 480)],
        None,
        None,
    ),
    ("qwen2.5-vl-7b", "I'm sorry, I cannot find that object in the image.", [], None, "no JSON"),
    # truncated mid-object (token budget): the tolerant parser still recovers the complete box
    ("qwen2.5-vl-7b", '```json\n[\n\t{"bbox_2d": [161, 119, 483, 357], "label": "a"\n', [(160, 120, 480, 360)],
     None, None),
    ("qwen2.5-vl-7b", '```json\n[\n\t{"bbox_2d": [161, 119, 4', [], None, "not valid JSON"),
    # Qwen3-VL: the same fenced list, but 0-1000 of the image (not pixels)
    ("qwen3-vl-instruct", '```json\n[\n\t{"bbox_2d": [250, 250, 750, 750], "label": "the man in blue"}\n]\n```',
     [(160, 120, 480, 360)], None, None),
    ("qwen3-vl-instruct", '```json\n[\n\t{"bbox_2d": [0, 0, 500, 1000], "label": "a"},\n\t'
     '{"bbox_2d": [500, 0, 1000, 1000], "label": "b"}\n]\n```', [(0, 0, 320, 480), (320, 0, 640, 480)], None, None),
    ("qwen3-vl-instruct", "There is no such object in the image.", [], None, "no JSON"),
    # Qwen3-VL-Thinking: reasoning (its template opens <think> in the prompt), then the answer
    ("qwen3-vl-thinking", "The question asks for the man in blue. A box like [0, 0, 10, 10] is too small; he stands "
     'in the middle.</think>\n\n```json\n[\n\t{"bbox_2d": [250, 250, 750, 750], "label": "man"}\n]\n```',
     [(160, 120, 480, 360)], None, None),
    # a draft answer inside the reasoning is not the answer: only the text after </think> is read
    ("qwen3-vl-thinking", 'A first guess: ```json\n[{"bbox_2d": [0, 0, 100, 100], "label": "man"}]\n``` is too small.'
     '</think>\n\n```json\n[\n\t{"bbox_2d": [250, 250, 750, 750], "label": "man"}\n]\n```',
     [(160, 120, 480, 360)], None, None),
    ("qwen3-vl-thinking", "The question asks for the man in blue. He stands in the", [], None, "no JSON"),
    ("qwen3-vl-thinking", "He stands in the middle.</think>\n\n", [], None, "no JSON"),
    # InternVL3.5: <ref>phrase</ref><box>[[x1, y1, x2, y2]]</box>, 0-1000 of the image
    ("internvl3.5", "<ref>the man in blue</ref><box>[[250, 250, 750, 750]]</box>", [(160, 120, 480, 360)], None, None),
    ("internvl3.5", "<ref>a cat</ref><box>[[0, 0, 500, 1000]]</box>, <ref>a dog</ref><box>[[500, 0, 1000, 1000]]</box>",
     [(0, 0, 320, 480), (320, 0, 640, 480)], None, None),
    ("internvl3.5", "[[250, 250, 750, 750]]", [(160, 120, 480, 360)], None, None),  # the RefCOCO eval's bare form
    ("internvl3.5", "<ref>the man</ref><box>[[250, 250, 750]]</box>", [], None, "expected 4 numbers"),
    # hosted models: JSON only, in the frame the prompt asked for
    ("hosted-pixels", '[{"bbox_2d": [160, 120, 480, 360]}]', [(160, 120, 480, 360)], None, None),
    ("hosted-norm-1000", '[{"bbox_2d": [250, 250, 750, 750]}]', [(160, 120, 480, 360)], None, None),
    ("hosted-norm-1000", "I can't identify people in images.", [], None, "no JSON"),
]


@pytest.mark.parametrize(("preset_name", "text", "boxes", "point", "error"), CASES)
def test_preset_parses_its_model_output(preset_name, text, boxes, point, error):
    preset = get_preset(preset_name)
    parsed = parse_answer(text, frame=preset.frame(SIZE), image_size=SIZE,
                          require_answer_tag=preset.require_answer_tag, max_regions=preset.max_objects or 100)
    if error is not None:
        assert not parsed.ok
        assert error in parsed.error
        return
    assert parsed.ok, parsed.error
    got = [tuple(round(v, 3) for v in r.box) for r in parsed.regions]
    assert got == [tuple(float(v) for v in b) for b in boxes]
    first_point = parsed.regions[0].point
    assert (None if first_point is None else tuple(round(v, 3) for v in first_point)) == point


def test_segzero_second_point_is_kept_for_sam2():
    preset = get_preset("seg-zero-7b")
    parsed = parse_answer(CASES[11][1], frame=preset.frame(SIZE), image_size=SIZE, require_answer_tag=True)
    assert parsed.regions[0].extra_points == ((192.0, 240.0),)


def test_segzero_reads_one_object_like_its_evaluator(tmp_path):
    """Seg-Zero's evaluator reads exactly one object: extra boxes must not raise Acc@0.5."""
    from regiondial_bench import api
    from regiondial_bench.adapters import Adapter, RoundResponse, register_adapter
    from regiondial_bench.schema import Bench, Dialogue, ImageRef, RunConfig, Turn

    preset = get_preset("seg-zero-7b")
    assert preset.max_objects == 1
    text = ("<think>two guesses</think><answer>[{'bbox': [0, 0, 84, 84], 'points_1': [5, 5]}, "
            "{'bbox': [420, 420, 840, 840], 'points_1': [500, 500]}]</answer>")

    @register_adapter("test-segzero-two-objects")
    class TwoObjects(Adapter):
        needs_pixels = False

        def generate(self, requests):
            return [RoundResponse(raw_text=text, frame=preset.frame(SIZE), require_answer_tag=True,
                                  max_regions=preset.max_objects) for _ in requests]

    gold_second = (320.0, 240.0, 640.0, 480.0)  # what the second, ignored object would have hit
    bench = Bench([Dialogue(dialogue_id="d", image=ImageRef(width=640, height=480),
                            turns=[Turn(index=0, question="q", gold_boxes=[gold_second])])], name="b")
    results = api.evaluate(bench, RunConfig(adapter="test-segzero-two-objects"), tmp_path, progress=False,
                           n_bootstrap=0)
    assert results.overall.ap50 == 0.0


def test_qwen_parity_frame_reads_input_pixels_as_original():
    text = '```json\n[{"bbox_2d": [161, 119, 483, 357]}]\n```'
    preset = get_preset("qwen2.5-vl-7b", coordinate_frame="original")
    parsed = parse_answer(text, frame=preset.frame(SIZE), image_size=SIZE)
    assert parsed.regions[0].box == (161.0, 119.0, 483.0, 357.0)


def test_normalized_frame_option():
    preset = get_preset("qwen2.5-vl-7b", coordinate_frame="norm-1000")
    parsed = parse_answer('[{"bbox_2d": [250, 0, 500, 1000]}]', frame=preset.frame(SIZE), image_size=SIZE)
    assert parsed.regions[0].box == (160.0, 0.0, 320.0, 480.0)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_renders_question_and_frames(name):
    preset = PRESETS[name]
    text = preset.user_text("Find the guy near the [47, 107, 303, 466].")
    assert "guy near the" in text
    if preset.require_answer_tag:  # the reasoning models
        assert "find the guy near the [47, 107, 303, 466]" in text  # lowercased, end punctuation stripped
        assert "<answer>" in text
    else:  # the grounding prompts of the general models keep the question as written
        assert "Find the guy near the [47, 107, 303, 466]." in text
    message = preset.messages("Find it.")[-1]
    assert message["role"] == "user"
    assert [part["type"] for part in message["content"]] == ["image", "text"]  # image first
    frame = preset.frame(SIZE)
    assert frame.box_to_original(frame.box_from_original((10, 20, 30, 40), SIZE), SIZE) == pytest.approx(
        (10, 20, 30, 40))


def test_reference_rendering_model_frame_and_parity():
    rr = get_preset("regionreasoner-7b")
    assert rr.reference_text((320, 0, 640, 480), SIZE) == "[420, 0, 840, 840]"
    assert rr.with_options(reference_frame="original").reference_text((320, 0, 640, 480), SIZE) == "[320, 0, 640, 480]"
    assert rr.reference_text(None, SIZE) == "[no region]"
    qwen = get_preset("qwen2.5-vl-7b")
    assert qwen.reference_text((320, 240, 640, 480), SIZE) == "[322, 238, 644, 476]"
    with pytest.raises(AdapterError, match="image size"):
        rr.reference_text((1, 2, 3, 4), None)


def test_smart_resize_matches_documented_examples():
    assert smart_resize(640, 480) == (644, 476)
    assert smart_resize(10, 10) == (56, 56)  # below min_pixels: grows to 4 patches of 28
    w, h = smart_resize(8000, 6000)
    assert w % 28 == 0 and h % 28 == 0 and w * h <= 16384 * 28 * 28
    with pytest.raises(ValueError):
        smart_resize(0, 10)


def test_bad_preset_options_fail_clearly():
    with pytest.raises(AdapterError, match="Did you mean"):
        get_preset("regionreasoner")
    with pytest.raises(AdapterError, match="image_mode"):
        get_preset("regionreasoner-7b", image_mode="crop")
    with pytest.raises(AdapterError, match="unknown preset option"):
        get_preset("regionreasoner-7b", temperature=0.7)
    with pytest.raises(AdapterError, match="question"):
        get_preset("regionreasoner-7b", prompt_template="no slot")


def test_cli_lists_presets_with_their_frames():
    from click.testing import CliRunner

    from regiondial_bench.cli import main

    result = CliRunner().invoke(main, ["adapters"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.startswith("  ")}
    assert set(lines) == set(PRESETS)
    assert "frame: 0-1000 of the image" in lines["qwen3-vl-instruct"]
    assert "Qwen/Qwen3-VL-{size}-Instruct" in lines["qwen3-vl-instruct"] and "235B-A22B" in lines["qwen3-vl-instruct"]
    assert "frame: 0-1000 of the image" in lines["internvl3.5"]
    assert "frame: pixels of the smart_resize input (factor 28)" in lines["qwen2.5-vl-7b"]
    assert "frame: pixels of the original image" in lines["hosted-pixels"]


@pytest.mark.parametrize(("name", "size", "model"), [
    ("qwen3-vl-instruct", "2B", "Qwen/Qwen3-VL-2B-Instruct"),
    ("qwen3-vl-thinking", "30B-A3B", "Qwen/Qwen3-VL-30B-A3B-Thinking"),
    ("internvl3.5", "38B", "OpenGVLab/InternVL3_5-38B-HF"),
])
def test_sizes_are_a_preset_parameter(name, size, model):
    preset = get_preset(name, size=size)
    assert preset.model == model and preset.size == size
    assert get_preset(name, size=size, model="/local/copy").model == "/local/copy"  # an explicit model wins
    with pytest.raises(AdapterError, match="not a released size"):
        get_preset(name, size="7B")


def test_qwen3_vl_smart_resize_uses_factor_32():
    preset = get_preset("qwen3-vl-instruct")
    assert preset.input_size((640, 480)) == (640, 480)  # already multiples of 32
    assert preset.input_size((644, 476)) == (640, 480)
    assert get_preset("qwen2.5-vl-7b").input_size((640, 480)) == (644, 476)
    assert preset.processor_pixel_bounds() == (64 * 32 * 32, 16384 * 32 * 32)


def test_hosted_pixels_prompt_states_the_size_of_the_image_sent():
    preset = get_preset("hosted-pixels")
    text = preset.user_text("Find the dog.", image_size=(640, 480))
    assert "640x480 image" in text and '"Find the dog."' in text and "{width}" not in text
