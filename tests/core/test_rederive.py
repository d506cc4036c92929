"""Records re-derived from what they log: a text model read in its own coordinate frame (issue 21).

The runner keeps how it read each answer (:class:`AnswerReading`: frame, image size, answer tag,
region limit), so a validator without the images reads ``raw_text`` again the same way; every
derived field that disagrees is named with its dialogue, turn and field.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from regiondial_bench.adapters import Adapter, RoundRequest, RoundResponse
from regiondial_bench.geometry import CoordinateFrame
from regiondial_bench.protocol import format_box
from regiondial_bench.run.rederive import RunRules, check_log
from regiondial_bench.run.runner import Runner
from regiondial_bench.schema import RunSpec

from .helpers import make_bench

FRAME = CoordinateFrame(100.0, 100.0, "squash-100")


class FrameModel(Adapter):
    """Writes coordinates in a 100x100 squash of the image and reads references in it too, like a
    preset model; right on even turns, a box off to the side on odd ones, no tag on turn 2."""

    needs_pixels = False

    def __init__(self) -> None:
        self.gold: dict = {}

    def prepare(self, bench) -> None:
        self.gold = {(d.dialogue_id, t.index): (t.gold_boxes[0], d.image.size) for d in bench for t in d.turns}

    def reference_text(self, box, request_image) -> str:
        return "[no region]" if box is None else format_box(FRAME.box_from_original(box, request_image.size))

    def generate(self, requests: Sequence[RoundRequest]) -> list[RoundResponse]:
        out = []
        for r in requests:
            box, size = self.gold[r.key]
            x1, y1, x2, y2 = (round(v) for v in FRAME.box_from_original(box, size))
            if r.turn % 2:
                x1, x2 = x2, x2 + (x2 - x1)
            text = f'[{{"bbox_2d": [{x1}, {y1}, {x2}, {y2}]}}]'
            out.append(RoundResponse(raw_text=text if r.turn == 2 else f"<answer>{text}</answer>", frame=FRAME,
                                     require_answer_tag=True, max_regions=1))
        return out


@pytest.fixture
def framed(tmp_path):
    bench = make_bench(tmp_path / "bench", n_dialogues=4, turns=4, size=(64, 48))
    spec = RunSpec(adapter="frame-model", bench_name=bench.name, bench_hash=bench.content_hash, bench_location="")
    records = Runner(bench, FrameModel(), spec, tmp_path / "run", progress=False).run()
    return bench, spec, records


def test_answers_read_in_a_frame_are_re_derived(framed):
    bench, spec, records = framed
    assert all(r.reading.frame == (100.0, 100.0) and r.reading.image == (64, 48) for r in records)
    assert all(r.reading.answer_tag and r.reading.max_regions == 1 for r in records)
    assert [r.error is not None for r in records[:4]] == [False, False, True, False]  # no tag on turn 2
    assert any(u.text != format_box(u.box) for r in records for u in r.references if u.box)  # model-frame texts
    check = check_log(bench, records, RunRules.of(spec))
    assert check.questions == [] and check.answers == []


def _edited(records, i, **update):
    records = list(records)
    records[i] = records[i].model_copy(update=update)
    return records


def test_edited_regions_of_a_framed_answer_are_named(framed):
    bench, spec, records = framed
    gold = bench.dialogue(records[1].dialogue_id).turns[1].gold_boxes[0]
    edited = _edited(records, 1, regions=[records[0].regions[0].model_copy(update={"box": gold})])
    check = check_log(bench, edited, RunRules.of(spec))
    assert [str(m) for m in check.answers] == [
        f"dialogue 'd0' turn 1 regions: logged [{list(gold)}], raw_text reads as [{list(records[1].regions[0].box)}]"]


def test_a_reading_cannot_be_changed_to_suit_an_answer(framed):
    bench, spec, records = framed
    failed = records[2]  # untagged: a failure under the run's reading
    untagged = failed.reading.model_copy(update={"answer_tag": False})
    edited = _edited(records, 2, reading=untagged, error=None, failure_kind=None,
                     regions=[records[0].regions[0]])
    mismatch = check_log(bench, edited, RunRules.of(spec)).answers[0]
    assert (mismatch.dialogue_id, mismatch.turn, mismatch.field) == ("d0", 2, "reading")
    other_image = records[0].reading.model_copy(update={"image": (640, 480)})
    mismatches = check_log(bench, _edited(records, 0, reading=other_image), RunRules.of(spec)).answers
    assert [(m.turn, m.field) for m in mismatches] == [(t, "reading.frame") for t in range(4)]
    other_frame = records[0].reading.model_copy(update={"frame": (200.0, 200.0)})
    mismatches = check_log(bench, _edited(records, 0, reading=other_frame), RunRules.of(spec)).answers
    assert mismatches and mismatches[0].field == "reading.frame"
    for record in records:
        if record.dialogue_id == "d1":
            records = _edited(records, records.index(record), reading=other_image)
    assert any(m.field == "reading.image" and "the bench's image is [64, 48]" in m.detail
               for m in check_log(bench, records, RunRules.of(spec)).answers)


def test_reference_texts_must_render_their_boxes_in_the_run_s_frame(framed):
    bench, spec, records = framed
    record = records[1]
    used = record.references[0]
    wrong = used.model_copy(update={"text": format_box(used.box)})  # original pixels, not the model's frame
    edited = _edited(records, 1, references=[wrong], question=record.question.replace(used.text, wrong.text))
    assert check_log(bench, edited, RunRules.of(spec)).questions == []  # both renderings are the runner's
    leak = used.model_copy(update={"text": "[1, 2, 3, 4]"})
    edited = _edited(records, 1, references=[leak], question=record.question.replace(used.text, leak.text))
    mismatch = check_log(bench, edited, RunRules.of(spec)).questions[0]
    assert mismatch.field == "references[turn 0].text" and mismatch.turn == 1


def test_upstream_reading_of_an_adapter_s_own_regions(tmp_path):
    """Adapters that give regions write them as original pixels; upstream's reader rounds to ints,
    so their records are read as written. A text model's records are read with the run's parser only."""
    from regiondial_bench.api import evaluate
    from regiondial_bench.run.folder import load_run_spec
    from regiondial_bench.schema import RunConfig, read_prediction_log

    bench = make_bench(tmp_path / "bench", n_dialogues=3, turns=3)
    boxes = {(d.dialogue_id, t.index): t.gold_boxes[0] for d in bench for t in d.turns}
    bench = bench.__class__([d.model_copy(update={"turns": [t.model_copy(update={"gold_boxes": [
        tuple(v + 0.37 for v in boxes[(d.dialogue_id, t.index)])]}) for t in d.turns]}) for d in bench],
        name=bench.name, root=bench.root)
    evaluate(bench, RunConfig(adapter="oracle", reference_mode="upstream"), tmp_path / "run", progress=False,
             n_bootstrap=0)
    spec = load_run_spec(tmp_path / "run")
    records = read_prediction_log(tmp_path / "run" / "predictions.jsonl")
    assert spec.parser == "upstream" and records[0].regions[0].box[0] % 1 == pytest.approx(0.37)
    assert check_log(bench, records, RunRules.of(spec)).answers == []
    as_text_model = RunRules.of(spec.model_copy(update={"adapter": "not-installed-here"}))
    assert check_log(bench, records, as_text_model).answers[0].field == "regions"
