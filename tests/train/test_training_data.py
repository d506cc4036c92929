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


def test_released_json(tmp_path):
    (tmp_path / "img").mkdir()
    from PIL import Image

    Image.new("RGB", (32, 24)).save(tmp_path / "img" / "a.png")
    data = {
        "samples": [
            {
                "id": 7,
                "problem": "Find the cat near bbox=[1,2,3,4].",
                "solution": '[{"bbox_2d": [5, 6, 7, 8], "point_2d": [6, 7]}]',
                "image": "img/a.png",
            }
        ]
    }
    path = tmp_path / "train.json"
    path.write_text(json.dumps(data))
    ds = load_training_dataset(path)
    assert ds[0]["id"] == "7" and ds[0]["image"].size == (32, 24) and ds[0]["turn"] == -1
    path.write_text(json.dumps({"data": []}))
    with pytest.raises(ValueError, match="top-level key 'samples'"):
        samples_from_released_json(path)
    path.write_text(json.dumps({"samples": [{"problem": "x"}]}))
    with pytest.raises(ValueError, match="lacks"):
        samples_from_released_json(path)


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
