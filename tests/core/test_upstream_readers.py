"""The upstream readers, one row per behaviour of the released code (UPSTREAM.md 3.1 and 3.4).

Each expected value is what the released reader returns for that text, worked out from its code:
``qwen_vl.py``'s ``extract_json_from_response`` + ``segment_objects`` for the Qwen2.5-VL baseline
(factor 1), and ``<answer>\\s*(.*?)\\s*</answer>`` + ``json.loads`` for RegionReasoner. ``None`` means
the released code finds no box. The tolerant reader's result is listed beside it where the two
differ, so each row also says what parity mode changes.
"""

from __future__ import annotations

import re
import sys

import pytest

from regiondial_bench.adapters.base import ImageInput, RoundRequest, RoundResponse
from regiondial_bench.geometry import CoordinateFrame
from regiondial_bench.protocol import DEFAULT_MAX_REGIONS, parse_answer, upstream_parser_problem
from regiondial_bench.run.records import build_record

SIZE = (640, 480)
ORIGINAL = CoordinateFrame.original(*SIZE)  # the Qwen parity config reads answers with factor 1
A = [10, 20, 300, 400]
B = [100, 120, 200, 220]
BOX_A, BOX_B = tuple(map(float, A)), tuple(map(float, B))


def fenced(json_text: str) -> str:
    return f"```json\n{json_text}\n```"


# (difference, answer text, boxes upstream reads, boxes the tolerant reader reads)
QWEN_TABLE = [
    ("a clean fenced list reads the same", fenced(f'[{{"bbox_2d": {A}, "label": "cat"}}]'), [BOX_A], [BOX_A]),
    ("unfenced list: the non-greedy [...] stops inside the first box", f'[{{"bbox_2d": {A}}}]', None, [BOX_A]),
    ("unfenced list after prose", f'The cat is at [{{"bbox_2d": {A}}}].', None, [BOX_A]),
    ("unfenced bare box: an int item has no keys", f"{A}", None, [BOX_A]),
    ("a fenced object, not a list", fenced(f'{{"bbox_2d": {A}}}'), None, [BOX_A]),
    ("an unfenced object: its box is the first [...]", f'{{"bbox_2d": {A}}}', None, [BOX_A]),
    ("floats truncate", fenced('[{"bbox_2d": [10.9, 20.5, 299.99, 400.4]}]'), [(10.0, 20.0, 299.0, 400.0)],
     [(10.9, 20.5, 299.99, 400.4)]),
    ("negative floats truncate towards zero", fenced('[{"bbox_2d": [-3.7, 20, 300, 400]}]'),
     [(-3.0, 20.0, 300.0, 400.0)], None),
    ("bbox and bbox_2d in one item give two boxes, bbox first",
     fenced(f'[{{"bbox_2d": {B}, "bbox": {A}}}]'), [BOX_A, BOX_B], [BOX_B]),
    ("a 5-number box is skipped", fenced(f'[{{"bbox_2d": [10, 20, 300, 400, 7]}}, {{"bbox_2d": {B}}}]'),
     [BOX_B], [BOX_B]),
    ("a 3-number box is skipped", fenced(f'[{{"bbox_2d": [10, 20, 300]}}, {{"bbox_2d": {B}}}]'), [BOX_B], [BOX_B]),
    ("quoted integers read (int('10'))", fenced('[{"bbox_2d": ["10", "20", "300", "400"]}]'), [BOX_A], [BOX_A]),
    ("a quoted float loses the whole answer (int('10.5') fails)",
     fenced(f'[{{"bbox_2d": {B}}}, {{"bbox_2d": ["10.5", "20", "300", "400"]}}]'), None,
     [BOX_B, (10.5, 20.0, 300.0, 400.0)]),
    ("a 4-character string is a box of its digits", fenced('[{"bbox_2d": "1234"}]'), [(1.0, 2.0, 3.0, 4.0)], None),
    ("an item that is not an object loses the whole answer", fenced(f'[{{"bbox_2d": {A}}}, 5]'), None, [BOX_A]),
    ("a string item naming bbox loses the whole answer", fenced(f'[{{"bbox_2d": {A}}}, "bbox"]'), None, [BOX_A]),
    ("items without a box are skipped", fenced(f'[{{"label": "x"}}, {{"bbox_2d": {A}}}]'), [BOX_A], [BOX_A]),
    ("an invalid fenced block has no fallback", fenced("[{'bbox_2d': [1, 2, 3, 4]}]") + f' [{{"bbox_2d": {A}}}]',
     None, [(1.0, 2.0, 3.0, 4.0)]),
    ("a fence is stripped of Unicode whitespace", f'```json\u00a0\u3000[{{"bbox_2d": {A}}}]\u2003```', [BOX_A],
     [BOX_A]),
    ("an empty list", fenced("[]"), None, None),
    ("a non-finite number loses the whole answer", fenced('[{"bbox_2d": [NaN, 20, 300, 400]}]'), None, None),
    ("items none of which has a box", fenced('[{"label": "x"}]'), None, None),
    # the unfenced [...] span succeeds when no ']' stands inside an item (a 4-character string box)
    ("an unfenced list with no ']' inside reads", '[{"bbox_2d": "1234"}]', [(1.0, 2.0, 3.0, 4.0)], None),
    ("a ']' before the first '[' does not end the span", 'x ] [{"bbox_2d": "1234"}]', [(1.0, 2.0, 3.0, 4.0)], None),
    ("the span ends at its ']', not after it", '[{"bbox_2d": "1234"}].', [(1.0, 2.0, 3.0, 4.0)], None),
    ("the first [...] span is the one read, even when empty", '[] [{"bbox_2d": "1234"}]', None, None),
    ("a fence without 'json' is not a json block: the [...] span is read", '```\n[{"bbox_2d": "1234"}]\n```',
     [(1.0, 2.0, 3.0, 4.0)], None),
    ("an unclosed json fence falls back to the [...] span", '```json\n[{"bbox_2d": "1234"}]',
     [(1.0, 2.0, 3.0, 4.0)], None),
    ("a json fence with nothing after the tag", f'```json[{{"bbox_2d": {A}}}]```', [BOX_A], [BOX_A]),
    ("an empty json block has no fallback", '```json```[{"bbox_2d": "1234"}]', None, None),
]


@pytest.mark.parametrize(("case", "text", "upstream", "tolerant"), QWEN_TABLE, ids=[row[0] for row in QWEN_TABLE])
def test_qwen_reader_table(case, text, upstream, tolerant):
    read = parse_answer(text, frame=ORIGINAL, image_size=SIZE, parser="upstream", upstream_style="qwen")
    if upstream is None:
        assert read.regions == [] and read.error, read
    else:
        assert [r.box for r in read.regions] == upstream, read.error
    mild = parse_answer(text, frame=ORIGINAL, image_size=SIZE)
    if tolerant is not None:
        assert [r.box for r in mild.regions] == tolerant, mild.error


# why the released reader found no box: the failure reason a run records and results.json counts
QWEN_FAILURES = [
    ("no idea", "upstream parser: no JSON block in the answer"),
    ("a ] b", "upstream parser: no JSON block in the answer"),  # a closing bracket alone
    ('{"bbox_2d": "1234"}', "upstream parser: the answer is a dict, not a list"),
    ('[] [{"bbox_2d": "1234"}]', "upstream parser: the answer is an empty list"),
    (fenced("[]"), "upstream parser: the answer is an empty list"),
    (fenced('{"bbox_2d": [1, 2, 3, 4]}'), "upstream parser: the answer is a dict, not a list"),
    (fenced('[{"label": "x"}]'), "upstream parser: the answer holds no box"),
    (f'[{{"bbox_2d": {A}}}]', "upstream parser: the answer is not strict JSON"),
    (fenced(f'[{{"bbox_2d": {A}}}, 5]'), "upstream parser: TypeError reading the items; the whole answer is lost"),
]


@pytest.mark.parametrize(("text", "error"), QWEN_FAILURES)
def test_qwen_reader_failure_reasons(text, error):
    read = parse_answer(text, frame=ORIGINAL, image_size=SIZE, parser="upstream", upstream_style="qwen")
    assert read.regions == [] and read.error == error


def test_qwen_reader_refuses_a_json_span_longer_than_its_bound(monkeypatch):
    from regiondial_bench import protocol

    body = f'[{{"bbox_2d": {A}}}]'
    monkeypatch.setattr(protocol, "MAX_UPSTREAM_ANSWER_CHARS", len(body))
    assert parse_answer(fenced(body), parser="upstream", upstream_style="qwen").regions[0].box == BOX_A
    longer = parse_answer(fenced(body + " "), parser="upstream", upstream_style="qwen")  # stripped: same length
    assert longer.regions[0].box == BOX_A
    refused = parse_answer(fenced(body.replace(": ", ":  ")), parser="upstream", upstream_style="qwen")
    assert refused.regions == [] and "longer than" in refused.error


def test_qwen_reader_applies_a_presets_own_cap_with_a_note():
    two = fenced(f'[{{"bbox_2d": {A}}}, {{"bbox_2d": {B}}}]')
    capped = parse_answer(two, parser="upstream", upstream_style="qwen", max_regions=1)
    assert [r.box for r in capped.regions] == [BOX_A] and capped.notes == ["1 boxes beyond the first 1 ignored"]
    exact = parse_answer(two, parser="upstream", upstream_style="qwen", max_regions=2)
    assert len(exact.regions) == 2 and exact.notes == []


def test_qwen_points_truncate_and_pair_with_boxes_by_position():
    text = fenced(f'[{{"bbox_2d": {A}, "point_2d": [5.9, 6.2]}}, {{"point": [7, 8], "point_2d": [9, 9, 9]}},'
                  f' {{"bbox_2d": {B}}}]')
    read = parse_answer(text, frame=ORIGINAL, image_size=SIZE, parser="upstream", upstream_style="qwen")
    # points [[5, 6], [7, 8]] (the 3-number point_2d skipped), zipped with boxes [A, B]
    assert [(r.box, r.point) for r in read.regions] == [(BOX_A, (5.0, 6.0)), (BOX_B, (7.0, 8.0))]


def test_qwen_reader_scales_then_truncates_with_another_factor():
    """Upstream's Qwen2-VL branch multiplies by W/1000 (a float), then int() truncates."""
    text = fenced('[{"bbox_2d": [500, 500, 999, 1000]}]')
    read = parse_answer(text, frame=CoordinateFrame.normalized(1000), image_size=SIZE, parser="upstream",
                        upstream_style="qwen")
    assert read.regions[0].box == (320.0, 240.0, 639.0, 480.0)  # 999 * 0.64 = 639.36 -> 639
    pointed = parse_answer(fenced('[{"bbox_2d": [500, 500, 999, 1000], "point_2d": [999, 500]}]'),
                           frame=CoordinateFrame.normalized(1000), image_size=SIZE, parser="upstream",
                           upstream_style="qwen")
    assert pointed.regions[0].point == (639.0, 240.0)  # points scale and truncate like boxes
    quoted = parse_answer(fenced('[{"bbox_2d": ["500", 0, 1000, 1000]}]'), frame=CoordinateFrame.normalized(1000),
                          image_size=SIZE, parser="upstream", upstream_style="qwen")
    assert quoted.regions == []  # "500" * 0.64 is a TypeError upstream


# ---------------------------------------------------------------------------- RegionReasoner's reader

PYTHON_WHITESPACE = [chr(c) for c in range(sys.maxunicode + 1) if re.match(r"\s", chr(c))]
JSON_WHITESPACE = {" ", "\t", "\n", "\r"}


@pytest.mark.parametrize("space", PYTHON_WHITESPACE, ids=lambda c: f"U+{ord(c):04X}")
def test_strict_reader_strips_what_pythons_backslash_s_matches(space):
    text = f'<think>t</think><answer>{space}[{{"bbox_2d": {A}, "point_2d": [5, 6]}}]{space}{space}</answer>'
    read = parse_answer(text, parser="upstream")
    assert [r.box for r in read.regions] == [BOX_A], (read.error, space in JSON_WHITESPACE)


def test_strict_reader_keeps_what_backslash_s_does_not_match():
    for other in ("\u200b", "\ufeff", "\u180e"):  # zero-width space, BOM, Mongolian vowel separator: not \s
        assert not re.match(r"\s", other)
        read = parse_answer(f'<answer>{other}[{{"bbox_2d": {A}}}]</answer>', parser="upstream")
        assert read.regions == [] and "not strict JSON" in read.error


def many(n: int) -> str:
    return "[" + ", ".join(f'{{"bbox_2d": [{i}, 0, {i + 5}, 5], "point_2d": [{i}, 1]}}' for i in range(n)) + "]"


@pytest.mark.parametrize("style", ["regionreasoner", "qwen"])
def test_upstream_mode_keeps_every_object(style):
    n = DEFAULT_MAX_REGIONS + 50
    text = f"<answer>{many(n)}</answer>" if style == "regionreasoner" else fenced(many(n))
    assert len(parse_answer(text, parser="upstream", upstream_style=style).regions) == n
    assert len(parse_answer(text).regions) == DEFAULT_MAX_REGIONS  # the tolerant reader's bound stays


def test_upstream_record_keeps_every_object_when_the_preset_sets_no_cap():
    """The runner's build path: a preset with ``max_objects=None`` hands the parser no cap."""
    n = DEFAULT_MAX_REGIONS + 20
    request = RoundRequest(dialogue_id="d", turn=0, image=ImageInput(width=640, height=480), question="q",
                           question_template="q")
    response = RoundResponse(raw_text=f"<answer>{many(n)}</answer>", frame=ORIGINAL, require_answer_tag=True,
                             max_regions=None)
    record = build_record(request, response, 0.0, batch=0,
                          parse_options={"parser": "upstream", "upstream_style": "regionreasoner"})
    assert len(record.regions) == n
    capped = RoundResponse(raw_text=response.raw_text, frame=ORIGINAL, require_answer_tag=True, max_regions=1)
    record = build_record(request, capped, 0.0, batch=0,
                          parse_options={"parser": "upstream", "upstream_style": "regionreasoner"})
    assert len(record.regions) == 1  # a preset's own cap (Seg-Zero reads one object) still applies


def test_the_upstream_parser_is_refused_for_a_preset_the_released_code_never_read(tmp_path):
    # RegionReasoner's strict reader would fail every Qwen3-VL answer: refused before the run, with the way out
    from click.testing import CliRunner

    from regiondial_bench.api import evaluate, load_bench
    from regiondial_bench.cli import main
    from regiondial_bench.schema import RunConfig

    config_file = tmp_path / "upstream.yaml"
    config_file.write_text("adapter: hf\nparser: upstream\nadapter_options: {preset: qwen3-vl-instruct}\n")
    for flags in (["--model", "hf", "--preset", "qwen3-vl-instruct", "--reference-mode", "upstream"],
                  ["--config", str(config_file)]):
        result = CliRunner().invoke(main, ["evaluate", *flags, "--out", str(tmp_path / "cli")])
        assert result.exit_code == 2 and "has no released reader" in result.output, result.output
        assert "parser: tolerant" in result.output and "Traceback" not in result.output
    assert upstream_parser_problem("qwen3-vl-instruct") and not upstream_parser_problem("seg-zero-7b")
    config = RunConfig(adapter="oracle", reference_mode="upstream", adapter_options={})
    evaluate(load_bench("sample"), config, tmp_path / "ok", progress=False)  # no preset: the oracle's own regions
    bad = RunConfig(adapter="fixed-box", parser="upstream", adapter_options={"preset": "internvl3.5"})
    with pytest.raises(ValueError, match="'internvl3.5' has no released reader"):
        evaluate(load_bench("sample"), bad, tmp_path / "api", progress=False)
    assert not (tmp_path / "api").exists()  # refused before the folder is claimed
