"""Readers: the synthetic refer layout, the refer reader's rules and errors, the HF copy reader."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from regiondial_bench.bench.sources import SourceLayoutError, read_hf, read_refer, split_matches
from regiondial_bench.bench.sources.hf import HF_COPIES
from regiondial_bench.geometry import rle_to_mask

from .conftest import SPEC


def test_synthetic_writes_the_refer_layout(refer_root):
    refs = pickle.loads((refer_root / "refcoco+" / "refs(unc).p").read_bytes())
    instances = json.loads((refer_root / "refcoco+" / "instances.json").read_text())
    assert len(instances["images"]) == sum(SPEC.images_per_split.values())
    assert {r["split"] for r in refs} == set(SPEC.images_per_split)
    ann_ids = {a["id"] for a in instances["annotations"]}
    for ref in refs:
        assert ref["ann_id"] in ann_ids
        assert 2 <= len(ref["sentences"]) <= 4
        assert {"sent_id", "sent", "raw", "tokens"} <= set(ref["sentences"][0])
    for image in instances["images"]:
        assert (refer_root / "images/mscoco/images/train2014" / image["file_name"]).is_file()


def test_polygon_masks_match_the_drawn_pixels(refer_root):
    """The annotated polygon covers the pixels drawn in the object's colour (JPEG noise aside)."""
    from PIL import Image

    record = next(read_refer(refer_root, "refcoco+", "unc", ["testA"]))
    pixels = np.asarray(Image.open(record.path).convert("RGB")).astype(int)
    background = pixels[0, 0]
    for obj in record.objects:
        mask = rle_to_mask(obj.mask(record.height, record.width))
        assert mask.any()
        ys, xs = np.nonzero(mask)
        assert xs.min() >= obj.box[0] - 1 and xs.max() <= obj.box[2] + 1
        assert ys.min() >= obj.box[1] - 1 and ys.max() <= obj.box[3] + 1
        inside = np.abs(pixels[mask] - background).sum(axis=1) > 30
        assert inside.mean() > 0.6  # most masked pixels differ from the background


def test_reader_splits_follow_refer_rules(refer_root):
    both = list(read_refer(refer_root, "refcoco+", "unc", ["testA", "testB"]))
    assert {r.split for r in both} == {"testA", "testB"}
    assert len(both) == 60
    assert [r.image_id for r in both] == sorted(r.image_id for r in both)
    test = list(read_refer(refer_root, "refcoco+", "unc", ["test"]))  # 'test' = every test split
    assert {r.image_id for r in test} == {r.image_id for r in both}
    assert split_matches("testB", "testAB") and not split_matches("train", "val")


def test_reader_errors_name_the_missing_file(tmp_path, refer_root):
    with pytest.raises(SourceLayoutError, match=r"refs\(umd\)\.p"):
        read_refer(refer_root, "refcoco+", "umd", ["val"]).__next__()
    bare = tmp_path / "root" / "refcocog"
    bare.mkdir(parents=True)
    (bare / "refs(umd).p").write_bytes(pickle.dumps([]))
    with pytest.raises(SourceLayoutError, match="instances.json"):
        read_refer(tmp_path / "root", "refcocog", "umd", ["val"]).__next__()
    (bare / "instances.json").write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(SourceLayoutError, match="train2014"):
        read_refer(tmp_path / "root", "refcocog", "umd", ["val"]).__next__()
    with pytest.raises(ValueError, match="split 'testC' has no refs"):
        read_refer(refer_root, "refcoco+", "unc", ["testC"]).__next__()


def _write_parquet_split(folder, split, rows):
    from datasets import Dataset

    (folder / "data").mkdir(parents=True, exist_ok=True)
    Dataset.from_list(rows).to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))


def test_hf_lmms_layout_through_load_dataset(tmp_path, refer_root):
    """An lmms-lab-style copy (embedded images, xywh boxes, flat polygon, answer list) reads like refer."""
    from datasets import Features, Image, List, Value

    reference = list(read_refer(refer_root, "refcoco+", "unc", ["testA"]))[:5]
    rows = []
    for record in reference:
        for obj in record.objects:
            x1, y1, x2, y2 = obj.box
            rows.append({
                "question_id": str(obj.ann_id), "image": {"bytes": record.read_bytes(), "path": None},
                "question": "Please provide the bounding box", "file_name": f"{record.file_name[:-4]}_{obj.ann_id}.jpg",
                "answer": list(obj.expressions), "segmentation": list(obj.polygons[0]),
                "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0,
            })
    features = Features({"question_id": Value("string"), "image": Image(), "question": Value("string"),
                         "file_name": Value("string"), "answer": List(Value("string")),
                         "segmentation": List(Value("float32")), "bbox": List(Value("float32")), "iscrowd": Value("int8")})
    from datasets import Dataset

    (tmp_path / "lmms" / "data").mkdir(parents=True)
    Dataset.from_list(rows, features=features).to_parquet(str(tmp_path / "lmms" / "data" / "testA-00000-of-00001.parquet"))
    got = list(read_hf(str(tmp_path / "lmms"), ["testA"], layout="lmms", dataset="refcoco+"))
    assert [r.image_id for r in got] == [r.image_id for r in reference]
    for mine, theirs in zip(got, reference, strict=True):
        assert (mine.width, mine.height) == (theirs.width, theirs.height)
        assert mine.read_bytes() == theirs.read_bytes()
        assert [o.expressions for o in mine.objects] == [o.expressions for o in theirs.objects]
        for a, b in zip(mine.objects, theirs.objects, strict=True):
            assert np.allclose(a.box, b.box, atol=1e-3)  # float32 in the parquet


def test_hf_jxu124_layout_uses_raw_anns_and_local_images(tmp_path, refer_root):
    instances = json.loads((refer_root / "refcoco+" / "instances.json").read_text())
    anns = {a["id"]: a for a in instances["annotations"]}
    images = {i["id"]: i for i in instances["images"]}
    reference = list(read_refer(refer_root, "refcoco+", "unc", ["testB"]))
    rows = []
    for record in reference:
        for obj in record.objects:
            ann = anns[obj.ann_id]
            rows.append({
                "ref_id": obj.ref_id, "ann_id": obj.ann_id, "image_id": record.image_id, "category_id": 1, "split": "testB",
                "sentences": [{"raw": e, "sent": e, "sent_id": i, "tokens": e.split()} for i, e in enumerate(obj.expressions)],
                "file_name": record.file_name, "bbox": list(obj.box),  # xyxy at top level; must not be used as xywh
                "raw_anns": json.dumps(ann), "raw_image_info": json.dumps(images[record.image_id]),
            })
    _write_parquet_split(tmp_path / "jx", "testB", rows)
    with pytest.raises(SourceLayoutError, match="--image-dir"):
        next(read_hf(str(tmp_path / "jx"), ["testB"], layout="jxu124"))
    got = list(read_hf(str(tmp_path / "jx"), ["testB"], layout="jxu124", image_dir=refer_root / "images/mscoco/images/train2014"))
    assert [(r.image_id, [o.box for o in r.objects]) for r in got] == [(r.image_id, [o.box for o in r.objects]) for r in reference]
    assert got[0].objects[0].category == "person"  # COCO category 1
    assert HF_COPIES["jxu124/refcocoplus"].split_names["testA"] == "test"
