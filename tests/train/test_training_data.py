"""Training data from a bench (gold references propagated, 840 frame) and from the released JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from regiondial_bench.schema import Bench
from regiondial_bench.training.data import (
    load_training_dataset,
    samples_from_bench,
    samples_from_released_json,
)

SAMPLE = "regiondial_bench/data/sample"


@pytest.fixture(scope="module")
def bench():
    return Bench.load(SAMPLE)


def test_one_sample_per_turn_with_gold_references_in_840_frame(bench, tmp_path):
    samples = samples_from_bench(bench, cache_dir=tmp_path, progress=False)
    assert len(samples) == bench.num_turns
    by_id = {s["id"]: s for s in samples}
    checked = 0
    for dialogue in bench:
        w, h = dialogue.image.size
        for turn in dialogue.turns:
            sample = by_id[f"{dialogue.dialogue_id}-{turn.index}"]
            assert "<box>" not in sample["problem"]
            gold = json.loads(sample["solution"])[0]["bbox_2d"]
            x1, y1, x2, y2 = turn.gold_boxes[0]
            assert abs(gold[0] - x1 * 840 / w) <= 0.5 and abs(gold[3] - y2 * 840 / h) <= 0.5
            if sample["reference_text"]:
                ref = dialogue.turns[turn.references[0].turn].gold_boxes[0]
                numbers = [int(v) for v in re.findall(r"\d+", sample["reference_text"])]
                # references are integer boxes (as written in the problem) rescaled: two roundings
                assert abs(numbers[2] - ref[2] * 840 / w) <= 0.5 + 0.5 * 840 / w + 1e-9
                assert sample["reference_text"] in sample["problem"]
                assert (
                    sample["reference_problem"]
                    == by_id[f"{dialogue.dialogue_id}-{turn.references[0].turn}"]["problem"]
                )
                checked += 1
    assert checked > 0


def test_dataset_columns_and_images(bench, tmp_path):
    ds = load_training_dataset(bench, cache_dir=tmp_path, limit=3)
    assert set(ds.column_names) >= {
        "prompt",
        "image",
        "problem",
        "solution",
        "reference_problem",
        "reference_text",
    }
    row = ds[0]
    assert row["image"].size == (840, 840)
    assert (
        row["prompt"][1]["role"] == "user"
        and row["problem"].lower().strip(".") in row["prompt"][1]["content"]
    )


RELEASED = Path(__file__).parent / "fixtures" / "released_train" / "regionreasoner_train.json"


def test_released_training_json_fixture_loads_as_released():
    """A fixture in the released layout (UPSTREAM.md 2.2): ``{"samples": [...]}``, a JSON-string
    solution, inline ``bbox=[...]`` references, relative image paths, extra keys."""
    raw = json.loads(RELEASED.read_text())["samples"]
    ds = load_training_dataset(RELEASED)  # image paths resolve against the file's folder
    assert len(ds) == len(raw) == 4
    for row, sample in zip(ds, raw, strict=True):
        assert row["id"] == str(sample["id"]) and row["turn"] == -1 and row["dialogue_id"] == ""
        assert row["problem"] == sample["problem"]  # as released: not lowercased, not rescaled
        assert json.loads(row["solution"]) == json.loads(sample["solution"])
        assert row["image"].size == (840, 840)
        assert row["reference_chain"] == [] and row["reference_problem"] == ""
        assert sample["problem"].lower().strip(".") in row["prompt"][1]["content"]
    # the rewards read these columns: a perfect answer to a referencing sample earns full accuracy
    from regiondial_bench.training.rewards import score

    answer = f"<think>left of bbox=[300,100,400,250]</think><answer>{ds[1]['solution']}</answer>"
    parts = score(answer, ds[1]["solution"], ds[1]["problem"])
    assert parts["accuracy"] == 3.0 and parts["reference"] == 2.0


def _released(tmp_path, samples, *, text=None):
    path = tmp_path / "train.json"
    path.write_text(text if text is not None else json.dumps({"samples": samples}))
    return path


GOOD_SAMPLE = {"problem": "Find it.", "solution": '[{"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]}]',
               "image": "a.png"}


@pytest.mark.parametrize(
    ("samples", "text", "message"),
    [
        (None, "{not json", r"not valid JSON \(line 1"),
        (None, json.dumps({"data": []}), "top-level key 'samples'"),
        (None, json.dumps([GOOD_SAMPLE]), "top-level key 'samples'"),
        (None, json.dumps({"samples": {"a": 1}}), "'samples' must be a list"),
        (None, "[" * 100000, "not (valid|a readable) JSON"),
        ([5], None, "sample 0 is a int"),
        ([{"problem": "x"}], None, r"sample 0 lacks \['solution', 'image'\]"),
        ([{**GOOD_SAMPLE, "problem": ""}], None, "'problem' must be a non-empty string"),
        ([{**GOOD_SAMPLE, "problem": ["x"]}], None, "'problem' must be a non-empty string"),
        ([{**GOOD_SAMPLE, "solution": "[{"}], None, "'solution' is not a JSON list"),
        ([{**GOOD_SAMPLE, "solution": "[]"}], None, "non-empty list"),
        ([{**GOOD_SAMPLE, "solution": '[{"bbox_2d": ["1", "2", "3", "4"]}]'}], None, "bbox_2d of 4 numbers"),
        ([{**GOOD_SAMPLE, "solution": '[{"bbox_2d": [1, 2, 3, NaN]}]'}], None, "bbox_2d of 4 numbers"),
        ([{**GOOD_SAMPLE, "solution": '[{"bbox_2d": [1, 2, 3, 4], "point_2d": [1]}]'}], None, "point_2d of 2"),
        ([{**GOOD_SAMPLE, "solution": "[[1, 2, 3, 4]]"}], None, "bbox_2d of 4 numbers"),
        ([{**GOOD_SAMPLE, "image": 7}], None, "'image' must be a path"),
        ([{**GOOD_SAMPLE, "id": "x7", "image": "missing.png"}], None, r"1 of 1 images not found .*missing.png"),
    ],
)
def test_released_training_json_rejects_what_it_cannot_train_on(tmp_path, samples, text, message):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match=message):
        samples_from_released_json(_released(tmp_path, samples, text=text))


def test_released_training_json_image_forms(tmp_path):
    from PIL import Image

    (tmp_path / "img").mkdir()
    Image.new("RGB", (32, 24)).save(tmp_path / "img" / "a.png")
    samples = [{**GOOD_SAMPLE, "id": 7, "image": "a.png"},
               {**GOOD_SAMPLE, "image": {"path": str(tmp_path / "img" / "a.png"), "bytes": None}},
               {**GOOD_SAMPLE, "solution": [{"bbox_2d": [1, 2, 3, 4]}], "image": "a.png"}]
    out = samples_from_released_json(_released(tmp_path, samples), image_root=tmp_path / "img")
    assert [s["id"] for s in out] == ["7", "1", "2"]
    assert {s["image"] for s in out} == {str(tmp_path / "img" / "a.png")}
    assert json.loads(out[2]["solution"]) == [{"bbox_2d": [1, 2, 3, 4]}]


def test_reference_chains_follow_the_bench_backwards(bench, tmp_path):
    samples = samples_from_bench(bench, frame="original", progress=False)
    by_id = {s["id"]: s for s in samples}
    longest = 0
    for sample in samples:
        chain = sample["reference_chain"]
        assert bool(chain) == bool(sample["reference_text"])
        if not chain:
            continue
        assert chain[0]["problem"] == sample["reference_problem"]
        turn = sample["turn"]
        for link, entry in enumerate(chain):
            referenced = by_id[entry["id"]]
            assert referenced["turn"] < turn  # only backward references make a chain
            turn = referenced["turn"]
            assert entry["problem"] == referenced["problem"]
            assert entry["reference_text"] == referenced["reference_text"]
            assert bool(entry["reference_text"]) == (link + 1 < len(chain))  # the last one refers to nothing
        longest = max(longest, len(chain))
    assert longest >= 3  # the sample bench has chains of several references
    dialogue = next(d for d in bench if d.dialogue_id == "test-5")  # turn 4 -> 3 -> 2 -> 1 -> 0
    assert [e["id"] for e in by_id["test-5-4"]["reference_chain"]] == ["test-5-3", "test-5-2", "test-5-1", "test-5-0"]
    assert len(dialogue.turns) == 5


def test_bad_source_and_frame(bench, tmp_path):
    with pytest.raises(ValueError, match="neither a bench folder"):
        load_training_dataset(tmp_path / "nothing.txt")
    with pytest.raises(ValueError, match="unknown training frame"):
        samples_from_bench(bench, frame="square")


def test_squashed_images_of_same_name_do_not_collide(tmp_path):
    from PIL import Image

    from regiondial_bench.training.data import _squash_image

    paths = []
    (tmp_path / "cache").mkdir()
    for folder, colour in (("a", (255, 0, 0)), ("b", (0, 0, 255))):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (32, 24), colour).save(tmp_path / folder / "1.jpg")
        paths.append(_squash_image(tmp_path / folder / "1.jpg", tmp_path / "cache"))
    assert paths[0] != paths[1]
    assert Image.open(paths[0]).getpixel((0, 0)) != Image.open(paths[1]).getpixel((0, 0))


def test_a_squash_killed_midway_leaves_no_partial_image(tmp_path, monkeypatch):
    """The cache file appears only complete (atomic rename): a write that dies half-way leaves
    nothing under the final name, no temporary file, and the next call makes a readable PNG."""
    from PIL import Image

    from regiondial_bench.training.data import _squash_image

    (tmp_path / "cache").mkdir()
    Image.new("RGB", (32, 24), (0, 255, 0)).save(tmp_path / "1.png")
    real_save = Image.Image.save

    def dies_halfway(self, fp, *args, **kwargs):
        with open(fp, "wb") as handle:
            handle.write(b"\x89PNG\r\n\x1a\n half an image")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(Image.Image, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        _squash_image(tmp_path / "1.png", tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []
    monkeypatch.setattr(Image.Image, "save", real_save)
    path = _squash_image(tmp_path / "1.png", tmp_path / "cache")
    with Image.open(path) as image:
        assert image.size == (840, 840) and image.getpixel((0, 0)) == (0, 255, 0)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [Path(path).name]
