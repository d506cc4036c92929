"""The two parsers side by side: where the tolerant reading and the upstream evaluator's differ."""

from __future__ import annotations

import pytest

from regiondial_bench import api
from regiondial_bench.geometry import CoordinateFrame
from regiondial_bench.protocol import parse_answer, resolve_reference
from regiondial_bench.schema import PredictionRecord, RunConfig, RunSpec
from tests.core.helpers import ScriptedAdapter, make_bench

A = '{"bbox_2d": [10, 20, 300, 400], "point_2d": [50, 60]}'
B = '{"bbox_2d": [100, 120, 200, 220], "point_2d": [150, 160]}'
BOX_A, BOX_B = (10.0, 20.0, 300.0, 400.0), (100.0, 120.0, 200.0, 220.0)

# raw answer, boxes read by the tolerant parser, boxes read by the upstream parser (None: no boxes)
TABLE = [
    ("same: a clean answer", f"<answer>[{A}, {B}]</answer>", [BOX_A, BOX_B], [BOX_A, BOX_B]),
    ("fenced JSON", f"<answer>```json\n[{A}]\n```</answer>", [BOX_A], None),
    ("single quotes", f"<answer>[{A.replace(chr(34), chr(39))}]</answer>", [BOX_A], None),
    ("a dict, not a list", f"<answer>{A}</answer>", [BOX_A], None),
    ("bbox key", '<answer>[{"bbox": [10, 20, 300, 400]}]</answer>', [BOX_A], None),
    ("one item without bbox_2d", f'<answer>[{A}, {{"point_2d": [1, 2]}}]</answer>', [BOX_A], None),
    ("prose after the JSON", f"<answer>[{A}] done</answer>", [BOX_A], None),
    ("degenerate first box", f'<answer>[{{"bbox_2d": [300, 20, 10, 400]}}, {B}]</answer>',
     [BOX_B], [(300.0, 20.0, 10.0, 400.0), BOX_B]),
    ("out-of-image first box", f'<answer>[{{"bbox_2d": [900, 900, 990, 990]}}, {B}]</answer>',
     [BOX_B], [(900.0, 900.0, 990.0, 990.0), BOX_B]),
    ("float box", '<answer>[{"bbox_2d": [10.4, 20.5, 299.5, 400.49]}]</answer>',
     [(10.4, 20.5, 299.5, 400.49)], [(10.0, 21.0, 300.0, 400.0)]),
    ("5 numbers in bbox_2d", '<answer>[{"bbox_2d": [10, 20, 300, 400, 7]}]</answer>', None, [BOX_A]),
    ("no answer tag", f"[{A}]", [BOX_A], None),
    ("unclosed answer tag", f"<answer>[{A}]", [BOX_A], None),
]


@pytest.mark.parametrize(("case", "text", "tolerant", "upstream"), TABLE, ids=[row[0] for row in TABLE])
def test_parity_table(case, text, tolerant, upstream):
    size = (640, 480)
    got = {name: parse_answer(text, image_size=size, parser=name) for name in ("tolerant", "upstream")}
    for name, expected in (("tolerant", tolerant), ("upstream", upstream)):
        parsed = got[name]
        if expected is None:
            assert not parsed.regions and parsed.error, (name, parsed)
        else:
            assert [r.box for r in parsed.regions] == expected, (name, parsed.error)
    differs = [r.box for r in got["tolerant"].regions] != [r.box for r in got["upstream"].regions]
    assert differs == (not case.startswith("same"))


def test_upstream_rescales_then_rounds_half_up_like_upstream():
    text = '<answer>[{"bbox_2d": [420, 1, 839.6, 840], "point_2d": [0.4, 420]}]</answer>'
    parsed = parse_answer(text, frame=CoordinateFrame(840, 840), image_size=(641, 480), parser="upstream")
    # int(v * W / 840 + 0.5): 420 * 641/840 = 320.5 -> 321; 1 * 480/840 = 0.57 -> 1
    assert parsed.regions[0].box == (321.0, 1.0, 641.0, 480.0)
    assert parsed.regions[0].point == (0.0, 240.0)


def test_upstream_points_are_all_or_nothing():
    parsed = parse_answer(f'<answer>[{A}, {{"bbox_2d": [100, 120, 200, 220]}}]</answer>', parser="upstream")
    assert [r.box for r in parsed.regions] == [BOX_A, BOX_B]
    assert all(r.point is None for r in parsed.regions) and "no points" in parsed.notes[0]
    tolerant = parse_answer(f'<answer>[{A}, {{"bbox_2d": [100, 120, 200, 220]}}]</answer>')
    assert tolerant.regions[0].point == (50.0, 60.0)


def test_reference_propagates_the_strict_parsers_first_box():
    parsed = parse_answer(f'<answer>[{{"bbox_2d": [300, 20, 10, 400]}}, {B}]</answer>', image_size=(640, 480),
                          parser="upstream")
    record = PredictionRecord(dialogue_id="d0", turn=0, round=1, question="q", raw_text="", regions=parsed.regions)
    from regiondial_bench.schema import Dialogue, ImageRef, Reference, Turn

    d = Dialogue(dialogue_id="d0", image=ImageRef(), turns=[
        Turn(index=0, question="a", gold_boxes=[(0, 0, 5, 5)]),
        Turn(index=1, question="b <box>{context_bbox}</box>", gold_boxes=[(1, 1, 6, 6)], references=[Reference(turn=0)])])
    assert resolve_reference("upstream", d, d.turns[1], d.turns[1].references[0], lambda c: record) == (
        "predicted", (300.0, 20.0, 10.0, 400.0))


def test_run_config_parser_default_and_record(tmp_path):
    assert RunConfig(adapter="oracle").answer_parser == "tolerant"
    assert RunConfig(adapter="oracle", reference_mode="gold").answer_parser == "tolerant"
    assert RunConfig(adapter="oracle", reference_mode="upstream").answer_parser == "upstream"
    assert RunConfig(adapter="oracle", reference_mode="upstream", parser="tolerant").answer_parser == "tolerant"
    old_run_json = {"adapter": "x", "reference_mode": "upstream", "bench_name": "b", "bench_hash": "h",
                    "bench_location": ""}
    assert RunSpec.model_validate(old_run_json).parser == "upstream"  # older run.json: the derived parser
    for name in ("regionreasoner-7b", "visionreasoner-7b", "seg-zero-7b", "qwen2.5-vl-7b"):
        config = api.load_run_config(f"baselines/{name}/parity.yaml")
        assert config.parser == "upstream" and config.reference_mode == "upstream"
        assert api.load_run_config(f"baselines/{name}/config.yaml").answer_parser == "tolerant"


@pytest.mark.parametrize("mode", ["upstream", "predicted"])
def test_runs_record_the_parser_and_upstream_runs_propagate_the_first_parsed_box(tmp_path, mode):
    bench = make_bench(tmp_path / "bench", n_dialogues=2, turns=2, masks=False)

    def answer(request):  # a degenerate first box, then the gold box
        gold = bench.dialogue(request.dialogue_id).turns[request.turn].gold_boxes[0]
        return f'<answer>[{{"bbox_2d": [9, 9, 2, 2]}}, {{"bbox_2d": {[int(v) for v in gold]}}}]</answer>'

    adapter = ScriptedAdapter(answer)
    from regiondial_bench.run.runner import Runner

    spec = RunSpec(adapter="scripted", reference_mode=mode, bench_name=bench.name, bench_hash=bench.content_hash,
                   bench_location="")
    records = Runner(bench, adapter, spec, tmp_path / "run", progress=False).run()
    run_json = RunSpec.model_validate_json((tmp_path / "run" / "run.json").read_text())
    assert run_json.parser == ("upstream" if mode == "upstream" else "tolerant")
    second = [r for r in records if r.turn == 1]
    if mode == "upstream":
        assert all(r.references[0].box == (9.0, 9.0, 2.0, 2.0) for r in second)
        assert all("[9, 9, 2, 2]" in r.question for r in second)
    else:
        assert all(r.references[0].box != (9.0, 9.0, 2.0, 2.0) for r in second)


SEG_ZERO = '<think>t</think><answer>{"bbox": [10.7, 20, 300, 400], "points_1": [50, 60], "points_2": [70, 80]}</answer>'
QWEN = 'Sure.\n```json\n[{"bbox_2d": [10, 20, 300, 400], "label": "cat"}, {"point_2d": [1, 2]}]\n```'


@pytest.mark.parametrize(("style", "text", "boxes", "points"), [
    ("seg-zero", SEG_ZERO, [BOX_A], [((50.0, 60.0), ((70.0, 80.0),))]),  # int(10.7) = 10 before scaling
    ("seg-zero", SEG_ZERO.replace('"points_2": [70, 80]', '"x": 1'), [BOX_A], [(None, ())]),
    ("seg-zero", SEG_ZERO.replace('"', "'"), None, None),  # single quotes: strict JSON fails
    ("qwen", QWEN, [BOX_A], [((1.0, 2.0), ())]),  # points pair with boxes by position (upstream zips)
    ("qwen", 'It is [{"bbox": [10, 20, 300, 400], "point": [5, 6]}].', None, None),  # non-greedy [...]
    ("qwen", "```json\n[{'bbox_2d': [10, 20, 300, 400]}]\n```", None, None),
    ("regionreasoner", SEG_ZERO, None, None),  # a dict is not RegionReasoner's list
])
def test_upstream_readers_of_other_models(style, text, boxes, points):
    parsed = parse_answer(text, parser="upstream", upstream_style=style)
    if boxes is None:
        assert not parsed.regions and parsed.error
        return
    assert [r.box for r in parsed.regions] == boxes
    assert [(r.point, r.extra_points) for r in parsed.regions] == points


def test_seg_zero_truncates_before_scaling():
    text = '<answer>{"bbox": [1.9, 0, 3, 3], "points_1": [1, 1], "points_2": [2, 2]}</answer>'
    parsed = parse_answer(text, parser="upstream", upstream_style="seg-zero", frame=CoordinateFrame(840, 840),
                          image_size=(1680, 840))
    assert parsed.regions[0].box == (2.0, 0.0, 6.0, 3.0)  # int(1.9) * 2 = 2, not int(3.8 + 0.5) = 4


def test_upstream_reader_refuses_answers_beyond_its_cap():
    """Upstream's 2,048-token budget cannot write 256 KiB; a longer answer is refused in linear time,
    a long one below the cap is still read whole (every item checked, all boxes kept for scoring)."""
    from regiondial_bench.protocol import MAX_UPSTREAM_ANSWER_CHARS, parse_answer_upstream

    item = '{"bbox_2d": [10, 20, 300, 400]}'
    below = "[" + ", ".join([item] * ((MAX_UPSTREAM_ANSWER_CHARS - 2) // (len(item) + 2))) + "]"
    assert len(below) <= MAX_UPSTREAM_ANSWER_CHARS
    parsed = parse_answer_upstream(f"<answer>{below}</answer>")
    assert parsed.error is None and len(parsed.regions) == below.count("bbox_2d")
    above = below[:-1] + ", " + ", ".join([item] * 100) + "]"
    refused = parse_answer_upstream(f"<answer>{above}</answer>")
    assert refused.regions == [] and "MAX_UPSTREAM_ANSWER_CHARS" in refused.error
