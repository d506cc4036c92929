"""Reader of the ``refer`` layout (lichengunc/refer): ``refs(<splitBy>).p`` + ``instances.json``.

Expected layout (the one ``REFER(data_root, dataset, splitBy)`` reads)::

    <data_root>/<dataset>/refs(<split_by>).p      # pickle: list of refs
    <data_root>/<dataset>/instances.json          # COCO images, annotations, categories
    <data_root>/images/mscoco/images/train2014/   # COCO train2014 images (or pass image_dir)

A ref is ``{ref_id, ann_id, image_id, category_id, split, sent_ids, sentences: [{sent_id, sent,
raw, tokens}]}``; annotations hold an xywh ``bbox`` and polygon ``segmentation``.
"""

from __future__ import annotations

import json
import pickle
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ...schema import RLE
from .records import SourceImage, SourceObject, xywh_to_xyxy

DEFAULT_IMAGE_SUBDIR = Path("images/mscoco/images/train2014")
LAYOUT_HELP = (
    "expected the refer layout: <data_root>/<dataset>/refs(<split_by>).p, "
    "<data_root>/<dataset>/instances.json and COCO train2014 images in "
    "<data_root>/images/mscoco/images/train2014 (or --image-dir)"
)


class SourceLayoutError(FileNotFoundError):
    """A source folder lacks a file the reader needs; the message names it and the layout."""


def split_matches(requested: str, ref_split: str) -> bool:
    """Whether a ref of split ``ref_split`` belongs to the ``requested`` split (refer's rules).

    ``testA``/``testB``/``testC`` match any split containing that letter after ``test``,
    ``test`` matches every test split, anything else must match exactly.

    >>> split_matches("testA", "testA"), split_matches("testA", "testAB"), split_matches("test", "testB")
    (True, True, True)
    >>> split_matches("val", "train")
    False
    """
    if requested in ("testA", "testB", "testC"):
        return ref_split.startswith("test") and requested[-1] in ref_split[4:]
    if requested == "test":
        return "test" in ref_split
    return ref_split == requested


def dataset_folder(data_root: str | Path, dataset: str, split_by: str) -> Path:
    """The folder holding ``refs(<split_by>).p``: ``<data_root>/<dataset>`` or ``data_root`` itself.

    Raises:
        SourceLayoutError: When neither holds the pickle.
    """
    root = Path(data_root)
    if not root.is_dir():
        raise SourceLayoutError(f"refer data root {root} does not exist; {LAYOUT_HELP}")
    refs_name = f"refs({split_by}).p"
    for folder in (root / dataset, root):
        if (folder / refs_name).is_file():
            return folder
    raise SourceLayoutError(f"missing {root / dataset / refs_name}; {LAYOUT_HELP}")


def read_refer(
    data_root: str | Path,
    dataset: str = "refcoco+",
    split_by: str = "unc",
    splits: Sequence[str] = ("testA", "testB"),
    image_dir: str | Path | None = None,
    expression_key: str = "sent",
) -> Iterator[SourceImage]:
    """Yield one record per (image, split) for the refs of the requested splits.

    Args:
        data_root: The refer data root (see the module docstring for the layout).
        dataset: ``refcoco``, ``refcoco+`` or ``refcocog``.
        split_by: ``unc``, ``umd`` or ``google``.
        splits: Source splits to read, matched with refer's rules (:func:`split_matches`).
        image_dir: Folder of the COCO train2014 images; defaults to
            ``<data_root>/images/mscoco/images/train2014``.
        expression_key: Which sentence field to use: ``sent`` (normalised) or ``raw``.

    Yields:
        Records sorted by image id, then split.

    Raises:
        SourceLayoutError: When the pickle, ``instances.json`` or the image folder is missing.
        ValueError: When a requested split has no refs, or a ref names an unknown annotation.
    """
    folder = dataset_folder(data_root, dataset, split_by)
    instances_path = folder / "instances.json"
    if not instances_path.is_file():
        raise SourceLayoutError(f"missing {instances_path}; {LAYOUT_HELP}")
    images_root = Path(image_dir) if image_dir is not None else Path(data_root) / DEFAULT_IMAGE_SUBDIR
    if not images_root.is_dir():
        raise SourceLayoutError(f"image folder {images_root} does not exist; {LAYOUT_HELP}")

    with open(folder / f"refs({split_by}).p", "rb") as f:
        refs: list[dict[str, Any]] = pickle.load(f)
    instances = json.loads(instances_path.read_text(encoding="utf-8"))
    images = {img["id"]: img for img in instances["images"]}
    anns = {ann["id"]: ann for ann in instances["annotations"]}
    categories = {cat["id"]: cat["name"] for cat in instances.get("categories", [])}

    grouped: dict[tuple[int, str], dict[int, SourceObject]] = defaultdict(dict)
    for requested in splits:
        matched = [ref for ref in refs if split_matches(requested, str(ref["split"]))]
        if not matched:
            found = sorted({str(ref["split"]) for ref in refs})
            raise ValueError(f"split {requested!r} has no refs in {folder / f'refs({split_by}).p'}; it has {found}")
        for ref in matched:
            ann = anns.get(ref["ann_id"])
            if ann is None:
                raise ValueError(f"ref {ref['ref_id']} names annotation {ref['ann_id']}, absent from {instances_path}")
            sentences = tuple(
                s[expression_key].strip() for s in ref["sentences"] if str(s.get(expression_key, "")).strip()
            )
            if not sentences:
                continue
            obj = _object(ref, ann, categories, sentences, images[ref["image_id"]])
            slot = grouped[(ref["image_id"], requested)]
            if obj.ann_id in slot:  # the same object referred twice: merge the expressions
                prev = slot[obj.ann_id]
                merged = prev.expressions + tuple(s for s in obj.expressions if s not in prev.expressions)
                obj = SourceObject(prev.ann_id, prev.category, prev.box, merged, prev.polygons, prev.rle, prev.ref_id)
            slot[obj.ann_id] = obj

    for image_id, split in sorted(grouped):
        info = images[image_id]
        objects = tuple(grouped[(image_id, split)][k] for k in sorted(grouped[(image_id, split)]))
        yield SourceImage(
            image_id=image_id,
            file_name=info["file_name"],
            width=int(info["width"]),
            height=int(info["height"]),
            split=split,
            objects=objects,
            path=images_root / info["file_name"],
            dataset=dataset,
        )


def _object(
    ref: dict[str, Any],
    ann: dict[str, Any],
    categories: dict[int, str],
    sentences: tuple[str, ...],
    image: dict[str, Any],
) -> SourceObject:
    segmentation = ann.get("segmentation")
    polygons: tuple[tuple[float, ...], ...] = ()
    rle = None
    if isinstance(segmentation, list):
        polygons = tuple(tuple(float(v) for v in poly) for poly in segmentation if len(poly) >= 6)
    elif isinstance(segmentation, dict):  # refclef-style RLE
        counts = segmentation["counts"]
        if isinstance(counts, list):  # uncompressed RLE: compress through pycocotools
            from pycocotools import mask as mask_utils

            h, w = segmentation["size"]
            counts = mask_utils.frPyObjects(segmentation, h, w)["counts"]
        if isinstance(counts, bytes):
            counts = counts.decode("ascii")
        rle = RLE(size=(int(image["height"]), int(image["width"])), counts=counts)
    return SourceObject(
        ann_id=int(ann["id"]),
        category=categories.get(ann["category_id"], "object"),
        box=xywh_to_xyxy(ann["bbox"]),
        expressions=sentences,
        polygons=polygons,
        rle=rle,
        ref_id=int(ref["ref_id"]),
    )
