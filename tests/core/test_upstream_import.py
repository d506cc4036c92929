"""The official question files: counts, defects, image resolution."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from regiondial_bench import api
from regiondial_bench.bench.sources.upstream import import_upstream
from regiondial_bench.bench.validation import bench_stats, check_bench
from regiondial_bench.schema import Bench, RunConfig, read_prediction_log, turns_per_round

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


# --------------------------------------------------------------------------------------------
# Gold masks: the released *_multi_turn.json layout and COCO annotations
# --------------------------------------------------------------------------------------------

MASK_CELL = 32  # synthetic masks: one cell per 32x32 pixels of a 640x640 canvas


def _box_grid(box):
    import numpy as np

    grid = np.zeros((20, 20), dtype=int)
    x1, y1, x2, y2 = (int(v) // MASK_CELL for v in box)
    grid[y1 : y2 + 1, x1 : x2 + 1] = 1
    return grid.tolist()


def write_released(question_file, out, mutate=None):
    """A released-layout file (``ann_ids`` + dense ``masks``) written from the question file."""
    data = json.loads(question_file.read_text(encoding="utf-8"))
    for d, dialogue in enumerate(data):
        for t, turn in enumerate(dialogue["conversational_turns"]):
            turn["masks"] = [_box_grid(turn["bboxes"][0])]
            turn["ann_ids"] = [100_000 * d + t]
            if mutate:
                mutate(d, t, turn)
    out.write_text(json.dumps(data), encoding="utf-8")
    return out


def test_released_layout_counts_every_turn_with_a_gold_mask(upstream_file, tmp_path):
    from click.testing import CliRunner

    from regiondial_bench.cli import main
    from regiondial_bench.geometry import rle_to_mask

    released = write_released(upstream_file("refcocoplus"), tmp_path / "refcocoplus_multi_turn.json")
    result = CliRunner().invoke(main, ["bench", "info", str(released), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert (stats["turns"], stats["turns_with_gold_mask"]) == (2289, 2289)
    bench = import_upstream(released)
    turn = bench.dialogues[0].turns[0]
    assert turn.ann_ids == [0]
    assert (rle_to_mask(turn.gold_mask).astype(int) == _box_grid(turn.gold_boxes[0])).all()
    # the question file alone has no masks
    assert bench_stats(import_upstream(upstream_file("refcocoplus")))["turns_with_gold_mask"] == 0


def test_oracle_with_its_masks_scores_giou_100_on_the_released_layout(upstream_file, tmp_path):
    from click.testing import CliRunner

    from regiondial_bench.cli import main

    released = write_released(upstream_file("refcocoplus"), tmp_path / "refcocoplus_multi_turn.json")
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["evaluate", "--model", "oracle", "--bench", str(released), "--out", str(out),
                                       "--no-progress", "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["overall"]["n"] == 2289
    assert results["overall"]["giou"] == pytest.approx(100.0)
    assert results["overall"]["ciou"] == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("mask", "why"),
    [
        ([[0, 1], [1]], "different lengths"),
        ([[0, 2], [1, 0]], "only 0 and 1"),
        ("not a mask", "H x W grid"),
        ([[0, [1]], [1, 0]], "not an H x W grid"),
        ([[0, None], [1, 0]], "not an H x W grid"),
        ([[0.5, 1], [1, 0]], "only 0 and 1"),
        ({"size": [2, 2], "counts": [1, 1]}, "sum to height x width"),
    ],
)
def test_an_unusable_mask_is_an_issue_and_the_turn_is_kept(tmp_path, mask, why):
    file = tmp_path / "x_multi_turn.json"
    file.write_text(json.dumps([{"image_id": 7, "conversational_turns": [
        {"question": "Find the cat.", "bboxes": [[0, 0, 5, 5]], "masks": [mask], "ann_ids": [3]},
        {"question": "Find the dog.", "bboxes": [[1, 1, 5, 5]], "masks": [[[1, 0], [0, 1]]]},
    ]}]))
    bench = import_upstream(file)
    assert bench.num_turns == 2
    assert bench.dialogues[0].turns[0].gold_mask is None
    assert bench.dialogues[0].turns[1].gold_mask is not None
    bad = [i for i in bench.issues if i.code == "bad_gold_mask"]
    assert len(bad) == 1 and why in bad[0].message and bad[0].turn == 0


@pytest.mark.parametrize(
    ("gold", "candidates", "position", "expected"),
    [
        # best IoU above 0.3 wins, wherever it is
        ((0, 0, 10, 10), [(50, 50, 60, 60), (0, 0, 10, 9)], 0, 1),
        # best <= 0.3: the same-position candidate when its IoU > 0.1 ...
        ((0, 0, 10, 10), [(0, 0, 10, 2.5), (0, 0, 10, 2.8)], 0, 0),
        # ... or when even the best is < 0.1
        ((0, 0, 10, 10), [(50, 50, 60, 60), (9.5, 9.5, 20, 20)], 0, 0),
        # else the best
        ((0, 0, 10, 10), [(0, 0, 10, 0.5), (0, 0, 10, 2.5)], 0, 1),
        # no same-position candidate, nothing overlaps: the first
        ((0, 0, 10, 10), [(50, 50, 60, 60)], 3, 0),
        ((0, 0, 10, 10), [], 0, None),
    ],
)
def test_box_matching_follows_the_released_files_rule(gold, candidates, position, expected):
    from regiondial_bench.bench.sources.upstream import match_annotation

    assert match_annotation(gold, candidates, position) == expected


def _fake_instances(question_file, out, images=20):
    """A COCO instances file for the first `images` dialogues: each turn's object annotated (the
    first turn of each dialogue with its ann_id's polygon exactly on the gold box), one distractor
    per image, and the last image left without annotations."""
    data = json.loads(question_file.read_text(encoding="utf-8"))[:images]
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "object"}]}
    ann_id = 1
    for d, dialogue in enumerate(data):
        coco["images"].append({"id": dialogue["image_id"], "width": 640, "height": 640,
                               "file_name": f"COCO_train2014_{dialogue['image_id']:012d}.jpg"})
        if d == images - 1:
            continue
        coco["annotations"].append({"id": ann_id, "image_id": dialogue["image_id"], "category_id": 1,
                                    "bbox": [600, 600, 30, 30], "iscrowd": 0, "area": 900,
                                    "segmentation": [[600, 600, 630, 600, 630, 630, 600, 630]]})
        ann_id += 1
        for turn in dialogue["conversational_turns"]:
            x1, y1, x2, y2 = turn["bboxes"][0]
            coco["annotations"].append({"id": ann_id, "image_id": dialogue["image_id"], "category_id": 1,
                                        "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0,
                                        "area": (x2 - x1) * (y2 - y1),
                                        "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]]})
            ann_id += 1
    out.write_text(json.dumps(coco), encoding="utf-8")
    return out, data


def test_annotations_attach_masks_and_report_unmatched_turns(upstream_file, tmp_path):
    from click.testing import CliRunner

    from regiondial_bench.cli import main
    from regiondial_bench.geometry import rle_area

    question_file = upstream_file("refcocoplus")
    instances, data = _fake_instances(question_file, tmp_path / "instances.json")
    bench = import_upstream(question_file, annotations=instances)
    assert bench.num_turns == 2289  # nothing dropped
    covered = {f"refcocoplus-{d['image_id']}" for d in data[:-1]}
    with_mask = [(d.dialogue_id, t) for d in bench for t in d.turns if t.gold_mask is not None]
    expected = sum(len(d["conversational_turns"]) for d in data[:-1])
    assert len(with_mask) == expected and {d for d, _ in with_mask} == covered
    for _, turn in with_mask:
        x1, y1, x2, y2 = turn.gold_boxes[0]
        assert rle_area(turn.gold_mask) == pytest.approx((x2 - x1) * (y2 - y1), rel=0.05)
        assert turn.ann_ids and turn.ann_ids[0] > 0
    unmatched = [i for i in bench.issues if i.code == "no_gold_mask"]
    last = f"refcocoplus-{data[-1]['image_id']}"
    assert len(unmatched) == 2289 - expected
    assert any(i.dialogue_id == last and "has no annotations" in i.message for i in unmatched)
    summary = next(i for i in bench.issues if i.code == "gold_masks_attached")
    assert f"{expected} by box match" in summary.message
    # the CLI counts them, and the mask changes the content hash (another bench than the file alone)
    result = CliRunner().invoke(main, ["bench", "info", str(question_file), "--annotations", str(instances),
                                       "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["turns_with_gold_mask"] == expected
    assert bench.content_hash != import_upstream(question_file).content_hash


def test_ann_ids_win_over_box_matching(tmp_path):
    file = tmp_path / "q.json"
    file.write_text(json.dumps([{"image_id": 5, "conversational_turns": [
        {"question": "Find it.", "bboxes": [[0, 0, 10, 10]], "ann_ids": [2]}]}]))
    instances = tmp_path / "instances.json"
    instances.write_text(json.dumps({"images": [{"id": 5, "width": 20, "height": 20}], "annotations": [
        {"id": 1, "image_id": 5, "bbox": [0, 0, 10, 10], "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]]},
        {"id": 2, "image_id": 5, "bbox": [10, 10, 5, 5], "segmentation": [[10, 10, 15, 10, 15, 15, 10, 15]]},
    ]}))
    turn = import_upstream(file, annotations=instances).dialogues[0].turns[0]
    assert turn.ann_ids == [2]
    from regiondial_bench.geometry import rle_area

    assert rle_area(turn.gold_mask) == 25


@pytest.mark.parametrize("content", ["not json", "[]", '{"images": 3, "annotations": []}'])
def test_a_bad_annotations_file_is_a_clear_error(tmp_path, upstream_file, content):
    bad = tmp_path / "instances.json"
    bad.write_text(content)
    with pytest.raises(ValueError, match="--annotations"):
        import_upstream(upstream_file("refcocoplus"), annotations=bad)
