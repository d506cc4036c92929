"""Response grammars: each preset's grammar admits its model's format and nothing the parser would miss.

The tables of ``tests/adapters/test_presets.py`` hold realistic and malformed outputs of every
preset; the grammar must accept the realistic ones written in the preset's own format and reject
every malformed one. Random walks through each grammar (xgrammar's token masks over a
one-character vocabulary) check the other direction: every string the grammar admits parses
into valid regions inside the frame.
"""

from __future__ import annotations

import random
import re

import pytest

from regiondial_bench.adapters.presets import PRESETS, get_preset
from regiondial_bench.grammar import (
    GrammarError,
    check_ebnf,
    grammar_frame,
    int_range_alternatives,
    response_grammar,
)
from regiondial_bench.protocol import parse_answer

xgr = pytest.importorskip("xgrammar")

from tests.adapters.test_presets import CASES, SIZE  # noqa: E402

OFF_FORMAT = {
    # parseable by the tolerant parser, but not in the preset's own format: the grammar rejects them
    '<answer>[{"bbox_2d": [84, 84, 168, 168]}]</answer>': "no <scene>/<think>, no point_2d",
    'The object is located here: {"bbox_2d": [0, 0, 644, 476], "label": "table"}': "prose, no fenced list",
    '```json\n[\n\t{"bbox_2d": [161, 119, 483, 357], "label": "a"\n': "truncated",
    "[[250, 250, 750, 750]]": "InternVL's bare form, without <ref>/<box>",
}


def grammar_of(name: str, **options):
    preset = get_preset(name)
    return response_grammar(preset, grammar_frame(preset, SIZE), **options)


@pytest.mark.parametrize(("preset_name", "text", "boxes", "point", "error"), CASES)
def test_grammar_accepts_realistic_and_rejects_malformed_outputs(preset_name, text, boxes, point, error):
    grammar = grammar_of(preset_name)
    expected = error is None and text not in OFF_FORMAT
    assert grammar.accepts(text) is expected, OFF_FORMAT.get(text, error)


def test_every_table_preset_has_realistic_outputs_the_grammar_accepts():
    accepted = {name for name, text, _, _, error in CASES if error is None and text not in OFF_FORMAT}
    assert accepted == set(PRESETS)


@pytest.mark.parametrize(("lo", "hi"), [(0, 840), (0, 9), (7, 23), (100, 199), (0, 1000), (27, 53), (5, 5),
                                        (999, 1000), (1, 644), (35, 69), (0, 476)])
def test_integer_ranges_match_exactly_the_range(lo, hi):
    body = "|".join(alt.replace('"', "").replace(" ", "") for alt in int_range_alternatives(lo, hi))
    pattern = re.compile(f"^(?:{body})$")
    matched = [n for n in range(0, 1500) if pattern.match(str(n))]
    assert matched == list(range(lo, hi + 1))
    assert not pattern.match("0" + str(max(lo, 1)))  # no leading zeros


def test_tags_order_and_optional_focus():
    rr = grammar_of("regionreasoner-7b")
    answer = '<answer>[{"bbox_2d": [1, 2, 30, 40], "point_2d": [5, 6]}]</answer>'
    assert rr.accepts(f"<scene> s </scene><focus> f </focus><think> t </think>{answer}")
    assert rr.accepts(f"<scene> s </scene><think> t </think>{answer}")
    assert not rr.accepts(f"<think> t </think><scene> s </scene>{answer}")  # order is fixed
    assert not rr.accepts(f"<scene> s <b>bold</b> </scene><think> t </think>{answer}")  # no nested tags
    assert not rr.accepts(f"<scene> s </scene><think> t </think>{answer} trailing")
    limit = rr.text_limits["scene"]
    assert rr.accepts(f"<scene>{'a' * limit}</scene><think> t </think>{answer}")
    assert not rr.accepts(f"<scene>{'a' * (limit + 1)}</scene><think> t </think>{answer}")  # bounded
    vr = grammar_of("visionreasoner-7b")
    assert vr.tags == ("think",) and not vr.accepts(f"<scene> s </scene><think> t </think>{answer}")


def test_coordinates_stay_inside_the_frame_and_boxes_are_ordered():
    rr = grammar_of("regionreasoner-7b")  # 840x840 squash
    wrap = '<scene> s </scene><think> t </think><answer>[{{"bbox_2d": {}, "point_2d": [5, 6]}}]</answer>'
    assert rr.accepts(wrap.format("[0, 0, 840, 840]"))
    assert not rr.accepts(wrap.format("[0, 0, 841, 840]"))
    assert not rr.accepts(wrap.format("[0, 0, 840, 8400]"))
    assert not rr.accepts(wrap.format("[-1, 0, 840, 840]"))
    assert not rr.accepts(wrap.format("[0, 0, 840.5, 840]"))
    assert not rr.accepts(wrap.format("[007, 0, 840, 840]"))
    assert not rr.accepts(wrap.format("[500, 0, 400, 840]"))  # x2 < x1
    assert not rr.accepts(wrap.format("[10, 0, 10, 840]"))  # x2 == x1
    assert not rr.accepts(wrap.format("[0, 500, 840, 499]"))  # y2 < y1
    qwen = grammar_of("qwen2.5-vl-7b")  # native: the processed 644x476 input
    assert qwen.frame == (644, 476)
    fence = '```json\n[\n\t{{"bbox_2d": {}, "label": "cup"}}\n]\n```'
    assert qwen.accepts(fence.format("[0, 0, 644, 476]"))
    assert not qwen.accepts(fence.format("[0, 0, 645, 476]"))
    assert not qwen.accepts(fence.format("[0, 0, 644, 477]"))


def test_object_count_is_bounded():
    vr = grammar_of("visionreasoner-7b", max_objects=2)
    item = '{"bbox_2d": [1, 2, 300, 400], "point_2d": [5, 6]}'
    assert vr.accepts(f"<think> t </think><answer>[{item}, {item}]</answer>")
    assert not vr.accepts(f"<think> t </think><answer>[{item}, {item}, {item}]</answer>")
    sz = grammar_of("seg-zero-7b")
    assert sz.max_objects == 1
    assert not sz.accepts("<think> t </think><answer>[{'bbox': [1, 2, 30, 40], 'points_1': [5, 6]}]</answer>")


def test_budget_errors_and_unsupported_frames_are_clear():
    with pytest.raises(GrammarError, match="max_new_tokens=40 cannot hold"):
        grammar_of("regionreasoner-7b", max_new_tokens=40)
    with pytest.raises(GrammarError, match="integer coordinates"):
        preset = get_preset("regionreasoner-7b", coordinate_frame="norm-1")
        grammar_frame(preset, SIZE)
    with pytest.raises(GrammarError, match="max_objects"):
        grammar_of("regionreasoner-7b", max_objects=0)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_longest_response_fits_the_token_budget(name):
    grammar = grammar_of(name)
    assert grammar.max_chars + 1 <= get_preset(name).max_new_tokens  # + the stop token
    check_ebnf(grammar.ebnf)
    assert grammar.describe()["sha256"] == grammar.sha256 and "ebnf" in grammar.describe()


# ---------------------------------------------------------------------- random walks

VOCAB = [chr(c) for c in range(32, 127)] + ["\n", "\t"]
STOP = len(VOCAB)


def random_walk(compiled, rng: random.Random, close_bias: float) -> str:
    """A random string of the grammar: one allowed character at a time, until only the stop token is left."""
    matcher = xgr.GrammarMatcher(compiled)
    bitmask = xgr.allocate_token_bitmask(1, STOP + 1)
    out: list[str] = []
    for _ in range(5000):
        matcher.fill_next_token_bitmask(bitmask)
        words = bitmask[0].tolist()
        allowed = [t for t in range(STOP + 1) if (words[t // 32] >> (t % 32)) & 1]
        if allowed == [STOP]:
            return "".join(out)
        choices = [t for t in allowed if t != STOP]
        if "<" in (VOCAB[t] for t in choices) and rng.random() < close_bias:
            token = VOCAB.index("<")
        else:
            token = rng.choice(choices)
        assert matcher.accept_token(token)
        out.append(VOCAB[token])
    raise AssertionError("the walk did not end")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_string_the_grammar_admits_parses_inside_the_frame(name):
    preset = get_preset(name, max_new_tokens=400)
    frame = grammar_frame(preset, SIZE)
    grammar = response_grammar(preset, frame, max_objects=3)
    info = xgr.TokenizerInfo(VOCAB + ["</s>"], stop_token_ids=[STOP])
    compiled = xgr.GrammarCompiler(info, max_threads=1).compile_grammar(grammar.ebnf)
    rng = random.Random(0)
    for _ in range(40):
        text = random_walk(compiled, rng, close_bias=0.3)
        assert len(text) <= grammar.max_chars
        parsed = parse_answer(text, frame=preset.frame(SIZE), image_size=SIZE,
                              require_answer_tag=preset.require_answer_tag, max_regions=preset.max_objects or 100)
        assert parsed.ok, (parsed.error, text)
        assert not parsed.notes, (parsed.notes, text)  # no item was dropped
        for region in parsed.regions:
            x1, y1, x2, y2 = region.box
            assert 0 <= x1 < x2 <= SIZE[0] and 0 <= y1 < y2 <= SIZE[1]
            if region.point is not None:
                assert 0 <= region.point[0] <= SIZE[0] and 0 <= region.point[1] <= SIZE[1]
