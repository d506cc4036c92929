"""The released files' streaming import: the chunked scanner and the dense-mask decoder agree with
``json.loads`` on every input, valid or not, and never hold more than one dialogue."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regiondial_bench.bench.sources import dense_masks, json_stream, upstream
from regiondial_bench.bench.sources.dense_masks import (
    MaskSyntaxError,
    _decode_usual_layout,
    decode_masks_field,
    masks_field,
)
from regiondial_bench.bench.sources.json_stream import JSONStreamError, iter_list_elements
from regiondial_bench.geometry import rle_to_mask

# --------------------------------------------------------------------------------------------
# The dense-mask decoder
# --------------------------------------------------------------------------------------------

SPELLINGS = {"ints": (b"0", b"1"), "booleans": (b"false", b"true"), "floats": (b"0.0", b"1.0")}


def grid_json(grid, spelling="ints", sep=b",", row_sep=b",", indent=b""):
    zero, one = SPELLINGS[spelling]
    rows = [b"[" + indent + sep.join(one if v else zero for v in row) + indent + b"]" for row in grid]
    return b"[" + indent + row_sep.join(rows) + indent + b"]"


def reference(text: bytes):
    """What ``json.loads`` and the field's meaning say: the decoder must answer the same."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return "not valid JSON"
    return masks_field(value)


def decoded(text: bytes):
    try:
        return decode_masks_field(text)
    except MaskSyntaxError:
        return "not valid JSON"


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
@pytest.mark.parametrize(("sep", "indent"), [(b",", b""), (b", ", b""), (b",\n              ", b"\n    ")])
def test_the_usual_spellings_take_the_fast_path(spelling, sep, indent, monkeypatch):
    grid = np.zeros((5, 7), dtype=bool)
    grid[1:4, 2:6] = True
    other = np.ones((3, 2), dtype=bool)
    text = b"[" + grid_json(grid, spelling, sep, sep, indent) + b", " + grid_json(other, spelling, sep, sep) + b"]"
    expected = reference(text)
    fast = _decode_usual_layout(text)
    assert fast is not None, "the usual layout must not fall back to json.loads (the speed depends on it)"
    assert fast == expected
    assert fast.count == 2 and (rle_to_mask(fast.mask) == grid).all()

    class NoJSON:
        @staticmethod
        def loads(*args, **kwargs):
            raise AssertionError("the usual layout went through json.loads")

    monkeypatch.setattr(dense_masks, "json", NoJSON)
    assert decode_masks_field(text) == expected


TOKENS = ["0", "1", "true", "false", "0.0", "1.0", "1.00", "-0", "0e0", "2", "0.5", "null", "NaN", "tru", "ture",
          "01", "1 .0", "1. 0", "true.0", "truefalse", "1true", "t", "f", "1.0.0", "0.01.0", "[]", "[0]", '"0"']


@st.composite
def mask_fields(draw):
    """Mostly well-formed masks fields, some with odd tokens, separators or brackets."""
    family = draw(st.sampled_from([["0", "1"], ["true", "false"], ["0.0", "1.0"], ["0", "1", "true", "false"]]))
    masks = []
    for _ in range(draw(st.integers(1, 3))):
        width = draw(st.integers(1, 4))
        rows = []
        for _ in range(draw(st.integers(1, 4))):
            cells = [draw(st.sampled_from(family)) if draw(st.integers(0, 30)) else draw(st.sampled_from(TOKENS))
                     for _ in range(width + (draw(st.integers(0, 20)) == 0))]
            sep = draw(st.sampled_from([",", ", ", ",\n  ", " ,"])) if draw(st.integers(0, 20)) else \
                draw(st.sampled_from(["", " ", ",,"]))
            rows.append("[" + sep.join(cells) + "]")
        masks.append("[" + draw(st.sampled_from([",", ", ", ",\n"])).join(rows) + "]")
    text = "[" + ",".join(masks) + "]"
    if draw(st.integers(0, 4)) == 0:  # one byte replaced, dropped or added
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + draw(st.sampled_from(["[", "]", ",", " ", "", "0", ".", "e"])) + text[at + 1 :]
    if draw(st.integers(0, 9)) == 0:
        text = "[" + text + "]"  # per-object lists
    return text.encode()


@settings(max_examples=600, deadline=None)
@given(mask_fields())
def test_the_decoder_agrees_with_json_loads(text):
    fast = _decode_usual_layout(text)
    expected = reference(text)
    if fast is not None:  # the fast path may decline; when it answers it must be right
        assert fast == expected, text
    assert decoded(text) == expected, text


@pytest.mark.parametrize(("text", "error"), [
    (b"[[[0, 2]]]", "only 0 and 1"),
    (b"[[[0, NaN]]]", "only 0 and 1"),
    (b"[[[0, null]]]", "not an H x W grid of numbers"),
    (b"[[[0, 1], [1]]]", "different lengths"),
    (b"[]", "not a non-empty list"),
    (b"[[]]", "H x W grid"),
    (b"[[0, 1]]", "a row is not a list"),
])
def test_unusable_masks_say_why(text, error):
    field = decode_masks_field(text)
    assert field.mask is None and error in field.error


def test_per_object_lists_use_the_first_mask_of_the_first_object():
    field = decode_masks_field(b"[[[[1, 0]], [[0, 0]]], [[[1, 1]]]]")
    assert field.nested and field.count == 2 and (rle_to_mask(field.mask) == [[True, False]]).all()


@pytest.mark.parametrize("text", [b"[[[0,,1]]]", b"[[[0 1]]]", b"[[[01]]]", b"[[[0]]", b"[[[tru]]]", b"[[[1 .0]]]",
                                  b"[[[true.0]]]", b"[[[0]]] x", b"[[[1.0, 1 .0], [0.0, 0.0]]]",
                                  b"[[[true.0, true.0], [1.0, 0.0]]]", b"[[[true, tru], [true, false]]]"])
def test_invalid_json_in_a_mask_is_a_syntax_error(text):
    with pytest.raises(MaskSyntaxError):
        decode_masks_field(text)


# --------------------------------------------------------------------------------------------
# The chunked scanner
# --------------------------------------------------------------------------------------------


def elements(data: bytes, chunk: int = 7):
    found = list(iter_list_elements(io.BytesIO(data), dense_key="masks", decode=decode_masks_field,
                                    chunk_bytes=chunk))
    return [(e.position, e.value) for e in found]


def json_reference(data: bytes):
    """``json.loads`` of the whole file, with each ``masks`` array replaced by its meaning."""

    def hook(obj):
        if isinstance(obj.get("masks"), list) and not any(isinstance(v, (dict, str)) for v in obj["masks"]):
            obj["masks"] = masks_field(obj["masks"])
        return obj

    return list(enumerate(json.loads(data, object_hook=hook)))


DIALOGUE = {"image_id": 5, "conversational_turns": [
    {"question": 'Find the "cat" [left] {of} \\"the\\" <box>{context_bbox}</box>', "bboxes": [[1, 2, 3, 4]],
     "context_from_turn": 0, "ann_ids": [7], "masks": [[[0, 1, 1], [1, 1, 0]]]},
    {"question": "masks", "masks": [{"size": [2, 2], "counts": [0, 4]}], "bboxes": [[0, 0, 2, 2]]},
    {"question": "x", "bboxes": [[0, 0, 2, 2]], "masks": [[[True, False]], [[1.0, 0.0]]], "extra": {"masks": []}},
    {"question": 'an escaped " then ]} [[ and a backslash at the end \\', "bboxes": [[0, 0, 2, 2]],
     "masks": [[[0, 1]]]},
], "image_path": "a/5.jpg"}


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 8, 13, 64, 1 << 20])
@pytest.mark.parametrize("indent", [None, 2])
def test_every_chunk_size_reads_what_json_loads_reads(chunk, indent):
    data = json.dumps([DIALOGUE, 17, "text", [1, [2]], None, {**DIALOGUE, "image_id": 6}], indent=indent).encode()
    assert elements(data, chunk) == json_reference(data)


def test_a_bom_whitespace_and_an_empty_list():
    assert elements(b"\xef\xbb\xbf \n [ ] \n") == []
    assert elements(b"[1,2 , 3]", 1) == [(0, 1), (1, 2), (2, 3)]


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty"),
    (b"   ", "empty"),
    (b'{"a": 1}', "expected a JSON list"),
    (b"[{}", "the file ends"),
    (b'[{"masks": [[[0, 1]]], ', "the file ends"),
    (b"[{} {}]", "expected ','"),
    (b"[{},]", "a comma with no value"),
    (b"[,{}]", "a comma with no value"),
    (b"[{}] x", "extra data after the list"),
    (b"[{}]\xff", "not UTF-8"),
    (b'[{"a": [}]', "unexpected '}'"),
    (b'[{"a": "\xff"}]', "not UTF-8"),
    (b'[{"a": 01}]', "not valid JSON"),
    (b'[{"masks": [[[0,,1]]]}]', 'masks" field is not valid JSON'),
    (b"[" + b"[" * 500 + b"]" * 500 + b"]", "nested too deeply"),
    (b'[{"q": "abc', "the file ends inside a string"),
])
def test_invalid_files_name_the_byte(data, message):
    with pytest.raises(JSONStreamError, match=message) as info:
        elements(data, 4)
    if data.strip():
        assert "byte" in str(info.value) or "expected a JSON list" in str(info.value)


def test_a_syntax_error_inside_a_mask_names_its_byte_and_element():
    data = b'[{"masks": [[[0, 1]]]}, {"masks": [[[0, 1], [1,, 0]]]}]'
    with pytest.raises(JSONStreamError) as info:
        elements(data)
    assert "(element 1)" in str(info.value) and f"at byte {data.index(b',,') + 1}" in str(info.value)


def test_a_field_too_large_to_decode_is_skipped_not_held(monkeypatch):
    monkeypatch.setattr(json_stream, "MAX_FIELD_BYTES", 40)
    big = json.dumps([[[0, 1] * 30]] * 2).encode()
    data = b'[{"masks": ' + big + b', "ann_ids": [3]}, {"masks": [[[1]]]}]'
    (_, first), (_, second) = elements(data, 16)
    assert first["masks"] == json_stream.OversizedField(len(big)) and first["ann_ids"] == [3]
    assert second["masks"].mask is not None


def test_an_element_too_large_is_refused(monkeypatch):
    monkeypatch.setattr(json_stream, "MAX_ELEMENT_BYTES", 100)
    data = json.dumps([{"question": "x" * 50}, {"question": "y" * 500}]).encode()
    with pytest.raises(JSONStreamError, match=r"(element 1)"):
        elements(data, 16)
    # dense fields do not count: a small dialogue with a big mask is fine
    elements(b'[{"masks": ' + json.dumps([[[0] * 400]]).encode() + b"}]", 16)


def test_memory_holds_one_dialogue_not_the_file(monkeypatch):
    """The scanner's buffers never grow past a chunk plus one dialogue: what it keeps is bounded by
    the largest element, however many elements the file has."""
    dialogue = json.dumps({**DIALOGUE, "conversational_turns": [{"question": "q", "bboxes": [[0, 0, 1, 1]],
                                                                  "masks": [[[0, 1] * 200] * 50]}]})
    data = ("[" + ",".join([dialogue] * 300) + "]").encode()
    largest = []
    original = json_stream._Scanner._more

    def watched(self, keep_from):
        largest.append(len(self.buf) + sum(len(p) for p in self.parts))
        return original(self, keep_from)

    monkeypatch.setattr(json_stream._Scanner, "_more", watched)
    assert len(elements(data, 4096)) == 300
    assert max(largest) < 4096 + 2 * len(dialogue) < len(data) / 100


# --------------------------------------------------------------------------------------------
# The import: streamed and json.loads-read files give the same bench
# --------------------------------------------------------------------------------------------


def test_stream_and_whole_file_imports_agree(tmp_path, monkeypatch, upstream_file):
    """The released layout in four spellings: the streamed import (tiny chunks) equals an import of
    the json.loads-decoded file, and every mask is the gold box's."""
    from regiondial_bench.bench.sources.upstream import ParsedQuestions, _add_dialogue

    questions = json.loads(upstream_file("refcocog").read_text())[:40]
    for d, dialogue in enumerate(questions):
        for t, turn in enumerate(dialogue["conversational_turns"]):
            x1, y1, x2, y2 = (min(int(v) // 40, 16) for v in turn["bboxes"][0])
            grid = [[int(x1 <= x <= x2 and y1 <= y <= y2) for x in range(17)] for y in range(17)]
            turn["masks"] = [grid] if (d + t) % 3 else [grid, grid]
            turn["ann_ids"] = [d * 100 + t]
    booleans = json.loads(json.dumps(questions))
    for dialogue in booleans:
        for turn in dialogue["conversational_turns"]:
            turn["masks"] = [[[bool(v) for v in row] for row in mask] for mask in turn["masks"]]
    monkeypatch.setattr(json_stream, "CHUNK_BYTES", 257)
    for spelling, text in {
        "ints": json.dumps(questions),
        "indented": json.dumps(questions, indent=2),
        "booleans": json.dumps(booleans, indent=1),
    }.items():
        path = tmp_path / f"{spelling}_multi_turn.json"
        path.write_text(text)
        streamed = upstream.parse_upstream(path)
        whole = ParsedQuestions(name=streamed.name, file_name=path.name, dialogues=[], issues=[])
        seen: dict = {}
        for position, record in enumerate(json.loads(text)):
            _add_dialogue(whole, position, record, seen)
        assert streamed.dialogues == whole.dialogues, spelling
        assert streamed.issues == whole.issues + [i for i in streamed.issues if i.code == "image_path_derived"]
        assert sum(t.gold_mask is not None for d in streamed.dialogues for t in d.turns) == \
            sum(len(d["conversational_turns"]) for d in questions)
    # the official file's defects and counts are unchanged by streaming
    assert dense_masks.MAX_MASK_SIDE == upstream.MAX_MASK_SIDE
