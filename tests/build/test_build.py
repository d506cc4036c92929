"""Builder: counts as configured, geometric truth of every relation, determinism, layouts."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from regiondial_bench.bench.build import (
    RELATION_PHRASES,
    BuildConfig,
    build_split,
    official_questions,
    question_relation,
    training_samples,
    write_split,
)
from regiondial_bench.bench.sources import read_refer
from regiondial_bench.geometry import rle_to_mask
from regiondial_bench.schema import UPSTREAM_PLACEHOLDER, Bench


def _build(refer_root, splits=("testA", "testB"), **config):
    return build_split(read_refer(refer_root, "refcoco+", "unc", list(splits)), BuildConfig(name="t", **config), "test")


def _holds(word, t, r):
    """An independent statement of each relation, straight from the box edges."""
    overlap = min(t[2], r[2]) > max(t[0], r[0]) and min(t[3], r[3]) > max(t[1], r[1])
    return {
        "left": t[2] <= r[0],
        "right": t[0] >= r[2],
        "above": t[3] <= r[1],
        "below": t[1] >= r[3],
        "inside": r[0] <= t[0] and r[1] <= t[1] and t[2] <= r[2] and t[3] <= r[3],
        "overlapping": overlap,
        "near": not overlap,
    }[word]


def test_counts_as_configured(refer_root):
    built = _build(refer_root, target_images=20, target_rounds=55)
    bench = built.bench
    assert len(bench) == 20 and bench.num_turns == 55
    assert all(2 <= len(d.turns) <= 12 for d in bench)
    capped = _build(refer_root, max_rounds=3)
    assert max(len(d.turns) for d in capped.bench) == 3
    with pytest.raises(ValueError, match="target_images=500 but only"):
        _build(refer_root, target_images=500)
    short = _build(refer_root, target_images=5, target_rounds=200)
    assert [i.code for i in short.issues] == ["target-rounds-short"]


def test_every_rewritten_relation_holds(refer_root):
    bench = _build(refer_root, reference_rate=1.0).bench
    seen = set()
    for dialogue in bench:
        assert not dialogue.turns[0].references
        for turn in dialogue.turns[1:]:
            assert len(turn.references) == 1 and turn.question.count(UPSTREAM_PLACEHOLDER) == 1
            c = turn.references[0].turn
            assert c < turn.index
            word = question_relation(turn.question)
            assert word is not None, turn.question
            assert _holds(word, turn.gold_boxes[0], dialogue.turns[c].gold_boxes[0]), (dialogue.dialogue_id, turn)
            if word == "near":  # near also needs a small gap, checked in the builder's own terms
                t, r = turn.gold_boxes[0], dialogue.turns[c].gold_boxes[0]
                gap = np.hypot(max(0, max(t[0], r[0]) - min(t[2], r[2])), max(0, max(t[1], r[1]) - min(t[3], r[3])))
                scale = (np.sqrt((t[2] - t[0]) * (t[3] - t[1])) + np.sqrt((r[2] - r[0]) * (r[3] - r[1]))) / 2
                assert gap <= 0.5 * scale + 1e-9
            seen.add(word)
    assert seen >= {"left", "right", "above", "below"}
    assert set(seen) <= set(RELATION_PHRASES)


def test_references_chain_and_skip(refer_root):
    bench = _build(refer_root, reference_rate=1.0, previous_turn_rate=0.3).bench
    refs = [(d, t) for d in bench for t in d.turns if t.references]
    assert any(d.turns[t.references[0].turn].references for d, t in refs)  # chained
    assert any(t.references[0].turn < t.index - 1 for _, t in refs)  # not only the previous turn


def test_same_seed_same_hash_other_seed_differs(refer_root):
    a = _build(refer_root, seed=5, target_images=25).bench.content_hash
    b = _build(refer_root, seed=5, target_images=25).bench.content_hash
    c = _build(refer_root, seed=6, target_images=25).bench.content_hash
    assert a == b != c


def test_masks_and_boxes(refer_root):
    bench = _build(refer_root).bench
    for dialogue in bench:
        for turn in dialogue.turns:
            mask = rle_to_mask(turn.gold_mask)
            assert mask.shape == (dialogue.image.height, dialogue.image.width)
            ys, xs = np.nonzero(mask)
            x1, y1, x2, y2 = turn.gold_boxes[0]
            assert x1 - 1 <= xs.min() and xs.max() <= x2 + 1 and y1 - 1 <= ys.min() and ys.max() <= y2 + 1
            assert turn.ann_ids and turn.category


def test_written_folder_loads_and_official_layout(tmp_path, refer_root):
    built = _build(refer_root, target_images=10)
    write_split(built, tmp_path / "test")
    again = Bench.load(tmp_path / "test")
    assert again.content_hash == built.bench.content_hash
    assert all(again.image_path(d).is_file() for d in again)
    official = json.loads((tmp_path / "test" / "official_questions.json").read_text())
    assert official == official_questions(again)
    for record, dialogue in zip(official, again, strict=True):
        assert record["image_id"] == dialogue.image.coco_id
        for raw, turn in zip(record["conversational_turns"], dialogue.turns, strict=True):
            assert all(isinstance(v, int) for v in raw["bboxes"][0]) and len(raw["bboxes"]) == 1
            assert ("context_from_turn" in raw) == bool(turn.references)


def test_official_layout_reads_back_with_the_upstream_importer(tmp_path, refer_root):
    from regiondial_bench.bench.sources.upstream import import_upstream

    bench = write_split(_build(refer_root, target_images=10), tmp_path / "b")
    imported = import_upstream(tmp_path / "b" / "official_questions.json")
    assert [len(d.turns) for d in imported] == [len(d.turns) for d in bench]
    for a, b in zip(imported, bench, strict=True):
        for ta, tb in zip(a.turns, b.turns, strict=True):
            assert ta.question == tb.question
            assert [r.turn for r in ta.references] == [r.turn for r in tb.references]
            assert np.allclose(ta.gold_boxes[0], tb.gold_boxes[0], atol=0.5 + 1e-9)


def test_training_samples_fill_gold_references(refer_root):
    bench = _build(refer_root, splits=("train",), reference_rate=1.0).bench
    samples = training_samples(bench)
    assert len(samples) == bench.num_turns
    by_key = {(d.dialogue_id, t.index): (d, t) for d in bench for t in d.turns}
    for sample in samples:
        dialogue, turn = by_key[(sample["dialogue_id"], sample["turn"])]
        assert "<box>" not in sample["problem"]
        if turn.references:
            gold = dialogue.turns[turn.references[0].turn].gold_boxes[0]
            numbers = [int(v) for v in re.search(r"bbox=\[(\d+), (\d+), (\d+), (\d+)\]", sample["problem"]).groups()]
            assert np.allclose(numbers, gold, atol=0.5 + 1e-9)
        solution = json.loads(sample["solution"])
        (x, y) = solution[0]["point_2d"]
        assert rle_to_mask(turn.gold_mask)[y, x]  # the point lies on the object


def test_config_validates():
    with pytest.raises(ValueError, match="min_rounds"):
        BuildConfig(min_rounds=5, max_rounds=3)
    with pytest.raises(ValueError, match="reference_rate"):
        BuildConfig(reference_rate=1.5)
