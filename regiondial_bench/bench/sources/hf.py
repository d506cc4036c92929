"""Reader of Hugging Face copies of RefCOCO+/RefCOCOg through ``datasets.load_dataset``.

Each copy has its own conventions (UPSTREAM.md section 2.4), recorded in :data:`HF_COPIES`:

- ``jxu124/refcocoplus``, ``jxu124/refcocog``: annotations only (images come from a local COCO
  train2014 folder); one row per ref; ``raw_anns`` is a JSON string holding the COCO annotation
  (xywh ``bbox``, polygon ``segmentation``); the top-level ``bbox`` convention is unverified, so it
  is not used. Split names: ``validation``, ``test`` (= RefCOCO+ testA), ``testB``.
- ``lmms-lab/RefCOCOplus``, ``lmms-lab/RefCOCOg`` (also under ``lmms-lab-encoder``): images
  embedded; one row per ref; ``bbox`` is xywh pixels; ``segmentation`` one flat polygon;
  ``answer`` holds all sentences; no image id or category column (the id is read from
  ``file_name``, the category is ``object``).

Both map onto the same :class:`~regiondial_bench.bench.sources.records.SourceImage` records as the
refer reader, so the builder treats them alike.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .records import SourceImage, SourceObject, xywh_to_xyxy
from .refer import SourceLayoutError

COCO_CATEGORY_NAMES: dict[int, str] = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train", 8: "truck",
    9: "boat", 10: "traffic light", 11: "fire hydrant", 13: "stop sign", 14: "parking meter", 15: "bench",
    16: "bird", 17: "cat", 18: "dog", 19: "horse", 20: "sheep", 21: "cow", 22: "elephant", 23: "bear",
    24: "zebra", 25: "giraffe", 27: "backpack", 28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase",
    34: "frisbee", 35: "skis", 36: "snowboard", 37: "sports ball", 38: "kite", 39: "baseball bat",
    40: "baseball glove", 41: "skateboard", 42: "surfboard", 43: "tennis racket", 44: "bottle",
    46: "wine glass", 47: "cup", 48: "fork", 49: "knife", 50: "spoon", 51: "bowl", 52: "banana",
    53: "apple", 54: "sandwich", 55: "orange", 56: "broccoli", 57: "carrot", 58: "hot dog", 59: "pizza",
    60: "donut", 61: "cake", 62: "chair", 63: "couch", 64: "potted plant", 65: "bed", 67: "dining table",
    70: "toilet", 72: "tv", 73: "laptop", 74: "mouse", 75: "remote", 76: "keyboard", 77: "cell phone",
    78: "microwave", 79: "oven", 80: "toaster", 81: "sink", 82: "refrigerator", 84: "book", 85: "clock",
    86: "vase", 87: "scissors", 88: "teddy bear", 89: "hair drier", 90: "toothbrush",
}
"""The 80 COCO category ids and names (RefCOCO* annotations use them)."""


@dataclass(frozen=True)
class HFCopy:
    """The conventions of one Hugging Face copy.

    Attributes:
        dataset: ``refcoco+`` or ``refcocog``.
        layout: ``jxu124`` (annotations, external images) or ``lmms`` (embedded images).
        split_names: Our split name -> the copy's split name.
    """

    dataset: str
    layout: Literal["jxu124", "lmms"]
    split_names: Mapping[str, str]


HF_COPIES: dict[str, HFCopy] = {
    "jxu124/refcocoplus": HFCopy("refcoco+", "jxu124", {"train": "train", "val": "validation", "testA": "test", "testB": "testB"}),
    "jxu124/refcocog": HFCopy("refcocog", "jxu124", {"train": "train", "val": "validation", "test": "test"}),
    "lmms-lab/RefCOCOplus": HFCopy("refcoco+", "lmms", {"val": "val", "testA": "testA", "testB": "testB"}),
    "lmms-lab-encoder/RefCOCOplus": HFCopy("refcoco+", "lmms", {"val": "val", "testA": "testA", "testB": "testB"}),
    "lmms-lab/RefCOCOg": HFCopy("refcocog", "lmms", {"val": "val", "test": "test"}),
    "lmms-lab-encoder/RefCOCOg": HFCopy("refcocog", "lmms", {"val": "val", "test": "test"}),
}

_IMAGE_ID_RE = re.compile(r"(\d{6,})")


def hf_copy(repo: str, layout: str | None = None, dataset: str | None = None) -> HFCopy:
    """The conventions for ``repo``; a local folder or unknown repo needs ``layout`` (and ``dataset``).

    Raises:
        ValueError: For an unknown repo without ``layout``.
    """
    known = HF_COPIES.get(repo)
    if layout is None:
        if known is None:
            raise ValueError(
                f"unknown Hugging Face copy {repo!r}: pass its layout ('jxu124' or 'lmms'); known copies: "
                f"{', '.join(sorted(HF_COPIES))}"
            )
        return known
    if layout not in ("jxu124", "lmms"):
        raise ValueError(f"layout must be 'jxu124' or 'lmms', got {layout!r}")
    names = dict(known.split_names) if known else {}
    return HFCopy(dataset or (known.dataset if known else "refcoco+"), layout, names)  # type: ignore[arg-type]


def read_hf(
    repo: str,
    splits: Sequence[str] = ("testA", "testB"),
    *,
    image_dir: str | Path | None = None,
    layout: str | None = None,
    dataset: str | None = None,
    revision: str | None = None,
    load_dataset: Callable[..., Any] | None = None,
) -> Iterator[SourceImage]:
    """Yield one record per (image, split) from a Hugging Face copy.

    Args:
        repo: A Hub id from :data:`HF_COPIES`, or any repo/local folder with ``layout`` given.
        splits: Our split names (``val``, ``testA``, ``testB``, ``test``, ``train``), mapped to the
            copy's names.
        image_dir: COCO train2014 folder, required by ``jxu124`` copies (annotations only).
        layout: Override or supply the copy's layout.
        dataset: ``refcoco+``/``refcocog`` when ``repo`` is not a known copy.
        revision: Hub revision to pin.
        load_dataset: The loader (defaults to ``datasets.load_dataset``); tests may pass another.

    Yields:
        Records sorted by image id, then split.

    Raises:
        SourceLayoutError: When a ``jxu124`` copy is read without an existing ``image_dir``.
        ValueError: For a split the copy does not have.
    """
    copy = hf_copy(repo, layout, dataset)
    if load_dataset is None:
        from datasets import load_dataset as _load

        load_dataset = _load
    if copy.layout == "jxu124" and (image_dir is None or not Path(image_dir).is_dir()):
        raise SourceLayoutError(
            f"{repo} holds annotations only: pass --image-dir with the COCO train2014 images "
            f"(COCO_train2014_<id:012d>.jpg); got {image_dir}"
        )
    records: dict[tuple[int, str], dict[str, Any]] = {}
    objects: dict[tuple[int, str], dict[int, SourceObject]] = defaultdict(dict)
    for split in splits:
        hub_split = copy.split_names.get(split, split) if copy.split_names else split
        kwargs = {"split": hub_split}
        if revision:
            kwargs["revision"] = revision
        try:
            rows = load_dataset(repo, **kwargs)
        except ValueError as exc:
            raise ValueError(f"{repo}: cannot load split {hub_split!r} (our {split!r}): {exc}") from exc
        reader = _jxu124_rows if copy.layout == "jxu124" else _lmms_rows
        for key, info, obj in reader(rows, split, image_dir):
            records.setdefault(key, info)
            slot = objects[key]
            if obj.ann_id in slot:
                prev = slot[obj.ann_id]
                merged = prev.expressions + tuple(e for e in obj.expressions if e not in prev.expressions)
                obj = SourceObject(prev.ann_id, prev.category, prev.box, merged, prev.polygons, prev.rle, prev.ref_id)
            slot[obj.ann_id] = obj
    for key in sorted(records):
        info = records[key]
        yield SourceImage(
            objects=tuple(objects[key][k] for k in sorted(objects[key])), split=key[1], dataset=copy.dataset, **info
        )


def _polygons(segmentation: Any) -> tuple[tuple[float, ...], ...]:
    if not segmentation:
        return ()
    if isinstance(segmentation[0], int | float):  # one flat polygon
        segmentation = [segmentation]
    return tuple(tuple(float(v) for v in poly) for poly in segmentation if len(poly) >= 6)


def _jxu124_rows(rows: Any, split: str, image_dir: str | Path | None) -> Iterator[tuple[tuple[int, str], dict, SourceObject]]:
    images = Path(image_dir)  # type: ignore[arg-type]
    for row in rows:
        ann = json.loads(row["raw_anns"]) if isinstance(row["raw_anns"], str) else row["raw_anns"]
        info = row.get("raw_image_info")
        info = json.loads(info) if isinstance(info, str) else (info or {})
        image_id = int(row["image_id"])
        file_name = info.get("file_name") or f"COCO_train2014_{image_id:012d}.jpg"
        path = images / file_name
        width, height = info.get("width"), info.get("height")
        if not width or not height:
            width, height = _size_of(path)
        sentences = row.get("sentences") or []
        expressions = tuple(s["sent"].strip() for s in sentences if s.get("sent", "").strip())
        if not expressions:
            continue
        obj = SourceObject(
            ann_id=int(row["ann_id"]),
            category=COCO_CATEGORY_NAMES.get(int(row["category_id"]), "object"),
            box=xywh_to_xyxy(ann["bbox"]),
            expressions=expressions,
            polygons=_polygons(ann.get("segmentation")),
            ref_id=int(row["ref_id"]),
        )
        meta = {"image_id": image_id, "file_name": file_name, "width": int(width), "height": int(height), "path": path}
        yield (image_id, split), meta, obj


def _lmms_rows(rows: Any, split: str, image_dir: str | Path | None) -> Iterator[tuple[tuple[int, str], dict, SourceObject]]:
    from datasets import Image as ImageFeature

    rows = rows.cast_column("image", ImageFeature(decode=False))
    sizes: dict[int, tuple[int, int]] = {}
    for position, row in enumerate(rows):
        file_name = str(row["file_name"])
        match = _IMAGE_ID_RE.search(file_name)
        if match is None:
            raise ValueError(f"cannot read a COCO image id from file_name {file_name!r}")
        image_id = int(match.group(1))
        data = row["image"]["bytes"]
        if image_id not in sizes:
            sizes[image_id] = _size_of(data)
        width, height = sizes[image_id]
        answers = row.get("answer") or []
        if isinstance(answers, str):
            answers = [answers]
        expressions = tuple(a.strip() for a in answers if a and a.strip())
        if not expressions:
            continue
        qid = row.get("question_id")
        ann_id = int(qid) if isinstance(qid, int) or (isinstance(qid, str) and qid.isdigit()) else position
        obj = SourceObject(
            ann_id=ann_id,
            category="object",
            box=xywh_to_xyxy(row["bbox"]),
            expressions=expressions,
            polygons=_polygons(row.get("segmentation")),
        )
        name = f"COCO_train2014_{image_id:012d}.jpg"
        meta = {"image_id": image_id, "file_name": name, "width": width, "height": height, "data": data}
        yield (image_id, split), meta, obj


def _size_of(source: Path | bytes) -> tuple[int, int]:
    import io

    from PIL import Image

    if isinstance(source, Path) and not source.is_file():
        raise SourceLayoutError(f"image {source} does not exist (expected COCO train2014 images in {source.parent})")
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
        return image.size
