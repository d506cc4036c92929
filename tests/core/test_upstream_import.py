"""The official question files: counts, defects, image resolution."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from regiondial_bench import api
from regiondial_bench.schema import Bench, RunConfig, read_prediction_log, turns_per_round
from regiondial_bench.sources.upstream import import_upstream
from regiondial_bench.validation import bench_stats, check_bench

# UPSTREAM.md section 2.1
EXPECTED = {
    "refcocoplus": (715, 2289, [715, 715, 308, 257, 157, 68, 34, 19, 6, 6, 2, 2]),
    "refcocog": (1580, 4115, [1580, 1580, 568, 269, 81, 28, 7, 1, 1]),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_counts_match_the_protocol(upstream_file, name):
    bench = import_upstream(upstream_file(name))
    dialogues, turns, per_round = EXPECTED[name]
    assert (len(bench), bench.num_turns) == (dialogues, turns)
    assert list(turns_per_round(bench.dialogues).values()) == per_round


def test_refcocoplus_defects(upstream_file):
    bench = import_upstream(upstream_file("refcocoplus"))
    codes = [i.code for i in bench.issues]
    assert codes.count("reference_without_placeholder") == 11
    assert codes.count("placeholder_without_reference") == 4
    typo = next(i for i in bench.issues if i.code == "typo")
    assert (typo.dialogue_id, typo.turn) == ("refcocoplus-496942", 1)
    assert bench_stats(bench)["chained_references"] == 204


def test_refcocog_defects(upstream_file):
    bench = import_upstream(upstream_file("refcocog"))
    found = {(i.code, i.dialogue_id, i.turn) for i in bench.issues}
    for image_id, turn in [(151699, 1), (280257, 2), (323722, 4)]:
        assert ("self_reference", f"refcocog-{image_id}", turn) in found
    assert ("forward_reference", "refcocog-448531", 1) in found
    for image_id in (53643, 72454, 72947):
        assert ("broken_placeholder", f"refcocog-{image_id}", 3) in found
    assert ("second_reference", "refcocog-188911", 2) in found
    second = bench.dialogue("refcocog-188911").turns[2].references
    assert [(r.turn, r.upstream_fill) for r in second] == [(0, True), (1, False)]
    assert sum(i.code == "reference_without_placeholder" for i in bench.issues) == 4
    assert bench_stats(bench)["chained_references"] == 585
    assert not [i for i in check_bench(bench) if i.severity == "error"]
    # no turn is lost: every turn of the file is in the bench
    raw = json.loads(upstream_file("refcocog").read_text())
    assert sum(len(d["conversational_turns"]) for d in raw) == bench.num_turns


def test_images_resolve_in_both_layouts(tmp_path):
    questions = [
        {"image_id": 7, "image_path": "refcocoplus_test_multi_bbox_images/7.jpg",
         "conversational_turns": [{"question": "Find a.", "bboxes": [[1, 1, 5, 5]]}]},
        {"image_id": 8, "conversational_turns": [{"question": "Find b.", "bboxes": [[1, 1, 5, 5]]}]},
        {"image_id": 9, "conversational_turns": [{"question": "Find c.", "bboxes": [[1, 1, 5, 5]]}]},
    ]
    (tmp_path / "q.json").write_text(json.dumps(questions))
    images = tmp_path / "imgs"
    (images / "refcocoplus_test_multi_bbox_images").mkdir(parents=True)
    (images / "train2014").mkdir()
    Image.new("RGB", (32, 24)).save(images / "refcocoplus_test_multi_bbox_images" / "7.jpg")
    Image.new("RGB", (40, 30)).save(images / "train2014" / "COCO_train2014_000000000008.jpg")
    bench = import_upstream(tmp_path / "q.json", images=images)
    found = {d.dialogue_id: bench.image_path(d) for d in bench}
    assert found["q-7"].name == "7.jpg" and found["q-8"].name == "COCO_train2014_000000000008.jpg"
    assert found["q-9"] is None
    missing = [i for i in bench.issues if i.code == "image_missing"]
    assert [i.dialogue_id for i in missing] == ["q-9"]
    # where the images live is not part of the bench: same hash with and without --images
    assert bench.content_hash == import_upstream(tmp_path / "q.json").content_hash
    # sizes come from the files when an adapter needs them
    with_files = Bench(bench.dialogues[:2], name="q", image_files=bench.image_files)
    api.evaluate(with_files, RunConfig(adapter="whole-image"), tmp_path / "run", progress=False, n_bootstrap=0)
    boxes = [r.regions[0].box for r in read_prediction_log(tmp_path / "run" / "predictions.jsonl")]
    assert boxes == [(0.0, 0.0, 32.0, 24.0), (0.0, 0.0, 40.0, 30.0)]


def test_malformed_entries_are_reported_not_dropped_silently(tmp_path):
    questions = [
        {"image_id": 1, "conversational_turns": [
            {"question": "Find a.", "bboxes": [[1, 1, 5, 5]]},
            {"question": "Find b near <box>{context_bbox}</box>.", "context_from_turn": "x", "bboxes": [[1, 1, 5, 5]]},
            {"question": "Find c.", "bboxes": []},
        ]},
        {"no_image_id": True},
    ]
    (tmp_path / "q.json").write_text(json.dumps(questions))
    bench = import_upstream(tmp_path / "q.json")
    codes = {i.code for i in bench.issues}
    assert {"bad_reference", "bad_gold_box", "dialogue_skipped", "malformed_dialogue"} <= codes
    assert len(bench) == 0  # the dialogue with an unusable turn is skipped whole, never renumbered
    with pytest.raises(ValueError, match="not valid JSON"):
        (tmp_path / "bad.json").write_text("{")
        import_upstream(tmp_path / "bad.json")
