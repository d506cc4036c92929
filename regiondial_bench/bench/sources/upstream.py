"""Import the official RegionDial question files (the upstream JSON layout) into a Bench.

The layout is a JSON list of ``{image_id, conversational_turns: [{question, bboxes,
context_from_turn?}], image_path?}`` (UPSTREAM.md, section 2.1); the released ``*_multi_turn.json``
files add ``ann_ids`` and dense ``masks`` to each turn and are 13 GB and 26 GB. Files are streamed
one dialogue at a time (:mod:`.json_stream`), each dense mask turned into COCO RLE as it is read
(:mod:`.dense_masks`), so memory does not grow with the file. Every known defect of the released
files is tolerated and reported as a :class:`~regiondial_bench.schema.ValidationIssue`; no turn is
dropped silently, and questions are kept verbatim so the ``upstream`` reference mode renders exactly
what the official evaluator renders.

An import has two steps: :func:`parse_upstream` reads the file (what the import cache keeps, see
:mod:`regiondial_bench.bench.import_cache`) and :func:`finish_import` looks up images and
annotations, which depend on the caller's folders, not on the file.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...schema import (
    RLE,
    UPSTREAM_PLACEHOLDER,
    Bench,
    Dialogue,
    ImageRef,
    Reference,
    Turn,
    ValidationIssue,
    is_file,
    path_inside,
)
from .dense_masks import (
    MAX_MASK_SIDE,
    MasksField,
    decode_masks_field,
    dense_mask_to_rle,
    masks_field,
    rle_dict,
)
from .json_stream import MAX_ELEMENT_BYTES, JSONStreamError, OversizedField, iter_list_elements

__all__ = [
    "MAX_MASK_SIDE",
    "RELEASED_IMAGES_SUFFIX",
    "RELEASED_SUFFIX",
    "ParsedQuestions",
    "attach_annotation_masks",
    "dense_mask_to_rle",
    "finish_import",
    "import_upstream",
    "match_annotation",
    "parse_upstream",
    "released_files",
    "released_images",
]

SECOND_PLACEHOLDER = "<box>{context_bbox_2}</box>"
_BROKEN_PLACEHOLDER = re.compile(r"<box>(?!\{context_bbox(?:_\d+)?\}</box>)")
_DOUBLED_INITIAL = re.compile(r"^([A-Z])\1[a-z]")
_KNOWN_TURN_KEYS = {"question", "bboxes", "context_from_turn", "context_from_turn_2", "ann_ids", "masks"}
_COCO_NAME = "COCO_train2014_{:012d}.jpg"
_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxlist, _repr.maxdict, _repr.maxstring, _repr.maxother = 3, 6, 4, 60, 60
_brief = _repr.repr  # a bounded repr for messages: hostile values can be huge or deeply nested


def _image_file(images: Path, image_path: str | None, image_id: int) -> Path | None:
    """Find the image under ``images`` in the upstream layout or COCO's ``train2014`` layout.

    Raises:
        ValueError: the record's ``image_path`` leads outside ``images`` (``..`` or absolute).
    """
    candidates = []
    if image_path is not None:
        rel = Path(image_path)
        if not path_inside(rel, images):
            raise ValueError(f"image_path {image_path[:200]!r} leads outside the --images folder {images}")
        candidates += [images / rel, images / rel.name]
    coco = _COCO_NAME.format(image_id)
    candidates += [images / f"{image_id}.jpg", images / "train2014" / coco, images / coco]
    return next((c for c in candidates if is_file(c)), None)


@dataclass
class ParsedQuestions:
    """What a question file says, before images and annotations are looked up.

    This is what the import cache keeps: it depends on the file alone.
    """

    name: str
    file_name: str
    dialogues: list[Dialogue]
    issues: list[ValidationIssue]
    image_paths: dict[str, str] = field(default_factory=dict)  # dialogue id -> the file's image_path
    entries: int = 0  # entries of the file's list, usable or not
    derived_paths: int = 0  # dialogues without image_path


def import_upstream(
    path: str | Path,
    *,
    images: str | Path | None = None,
    name: str | None = None,
    annotations: str | Path | None = None,
) -> Bench:
    """Read an official question file into a :class:`Bench`, with its defects as issues.

    Args:
        path: the question JSON (e.g. ``refcocoplus.json``) or a released ``*_multi_turn.json``.
        images: folder holding the images, either upstream's
            ``<name>_test_multi_bbox_images/<id>.jpg`` layout or COCO's
            ``train2014/COCO_train2014_<id:012d>.jpg``. Without it the bench is layout-only
            (adapters that look at pixels refuse to run).
        name: bench name; defaults to the file's stem.
        annotations: COCO ``instances_train2014.json`` (or refer's ``instances.json``): attach
            each turn's gold mask from its ``ann_id``, else from the annotation its gold box
            matches (:func:`match_annotation`). Turns left without a mask are reported as
            ``no_gold_mask`` issues and kept. Turns of a released ``*_multi_turn.json`` file
            carry their own ``masks`` and need no annotations.

    Raises:
        ValueError: the file cannot be read, or is not a JSON list (the message names the byte).
        FileNotFoundError: ``images`` is not a folder.
    """
    path = Path(path)
    return finish_import(parse_upstream(path, name=name), root=path.parent, images=images, annotations=annotations)


def parse_upstream(
    path: str | Path, *, name: str | None = None, on_chunk: Callable[[bytes], None] | None = None
) -> ParsedQuestions:
    """Read a question file, one dialogue at a time (the first step of :func:`import_upstream`).

    Args:
        path: the question file.
        name: bench name; defaults to the file's stem.
        on_chunk: called with each chunk of the file as it is read (hashing, progress).

    Raises:
        ValueError: the file cannot be read, or is not a JSON list (the message names the byte).
    """
    path = Path(path)
    name = name or path.stem.removesuffix("-checkpoint")
    parsed = ParsedQuestions(name=name, file_name=path.name, dialogues=[], issues=[])
    seen_ids: dict[str, int] = {}
    try:
        with open(path, "rb") as file:
            for element in iter_list_elements(file, dense_key="masks", decode=decode_masks_field,
                                              on_chunk=on_chunk):
                parsed.entries += 1
                _add_dialogue(parsed, element.position, element.value, seen_ids)
    except JSONStreamError as exc:
        raise ValueError(f"{path}: {_top_level_message(path, exc)}") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the question file ({exc})") from exc
    if parsed.derived_paths:
        parsed.issues.append(ValidationIssue(
            code="image_path_derived",
            message=f"{parsed.derived_paths} dialogues have no image_path; derived from image_id"))
    return parsed


def _top_level_message(path: Path, exc: JSONStreamError) -> str:
    """The stream's error; for a small file whose top level is not a list, what ``json`` says of it."""
    text = str(exc)
    if not text.startswith("expected a JSON list"):
        return text
    try:
        if path.stat().st_size <= MAX_ELEMENT_BYTES:
            data = json.loads(path.read_bytes())
            return f"expected a JSON list of dialogues (upstream layout), got {type(data).__name__}"
    except (ValueError, RecursionError) as error:
        return f"not valid JSON: {str(error)[:300]}"
    except OSError:
        pass
    return text


def _add_dialogue(parsed: ParsedQuestions, position: int, record: Any, seen_ids: dict[str, int]) -> None:
    """Turn one entry of the file into a dialogue of ``parsed`` (or issues saying why not)."""
    issues = parsed.issues
    if not isinstance(record, dict) or "conversational_turns" not in record or "image_id" not in record:
        issues.append(ValidationIssue(code="malformed_dialogue", severity="error",
                                      message=f"entry {position} lacks image_id or conversational_turns; skipped"))
        return
    image_id = _image_id(record["image_id"])
    if image_id is None:
        issues.append(ValidationIssue(code="bad_image_id", severity="error",
                                      message=f"entry {position}: image_id {_brief(record['image_id'])} is not "
                                              "a non-negative integer; skipped"))
        return
    dialogue_id = f"{parsed.name}-{image_id}"
    if dialogue_id in seen_ids:
        seen_ids[dialogue_id] += 1
        dialogue_id = f"{dialogue_id}-{seen_ids[dialogue_id]}"
        issues.append(ValidationIssue(code="duplicate_image", dialogue_id=dialogue_id,
                                      message=f"image {image_id} has a second dialogue; renamed {dialogue_id}"))
    else:
        seen_ids[dialogue_id] = 1
    if "image_path" not in record:
        parsed.derived_paths += 1
    turns, turn_issues = _turns(record["conversational_turns"], dialogue_id)
    issues.extend(turn_issues)
    if not turns:
        if not any(i.code == "dialogue_skipped" and i.dialogue_id == dialogue_id for i in turn_issues):
            issues.append(ValidationIssue(code="empty_dialogue", dialogue_id=dialogue_id, severity="error",
                                          message="no usable turn; dialogue skipped"))
        return
    if isinstance(record.get("image_path"), str):
        parsed.image_paths[dialogue_id] = record["image_path"]
    parsed.dialogues.append(
        Dialogue(
            dialogue_id=dialogue_id,
            # Identity only: where the pixels are (and so their sizes) stays out of the
            # content hash; the runner reads sizes from the files when it needs them.
            image=ImageRef(coco_id=image_id, file_name=_COCO_NAME.format(image_id)),
            turns=turns,
            source={"format": "upstream-question-json", "file": parsed.file_name, "image_id": image_id},
        )
    )


def finish_import(
    parsed: ParsedQuestions,
    *,
    root: Path | None,
    images: str | Path | None = None,
    annotations: str | Path | None = None,
) -> Bench:
    """The bench of a parsed file: its images looked up under ``images``, masks from ``annotations``
    (the second step of :func:`import_upstream`; see there for the arguments)."""
    images_dir = Path(images) if images is not None else None
    if images_dir is not None and not images_dir.is_dir():
        raise FileNotFoundError(f"--images {images_dir} is not a folder")
    issues = list(parsed.issues)
    image_files: dict[str, Path] = {}
    if images_dir is not None:
        for dialogue in parsed.dialogues:
            try:
                image_file = _image_file(images_dir, parsed.image_paths.get(dialogue.dialogue_id),
                                         dialogue.image.coco_id)
            except ValueError as exc:
                issues.append(ValidationIssue(code="image_outside_root", dialogue_id=dialogue.dialogue_id,
                                              severity="error", message=str(exc)))
                continue
            if image_file is not None:
                image_files[dialogue.dialogue_id] = image_file.resolve()
            else:
                issues.append(ValidationIssue(code="image_missing", dialogue_id=dialogue.dialogue_id,
                                              message=f"no image for COCO id {dialogue.image.coco_id} "
                                                      f"under {images_dir}"))
    else:
        issues.append(ValidationIssue(code="layout_only", message="no --images folder: the bench has no pixels"))
    if not parsed.dialogues:
        issues.append(ValidationIssue(code="empty_bench", severity="error",
                                      message=f"{parsed.file_name}: no usable dialogue ({parsed.entries} entries)"))
    source: dict[str, Any] = {"format": "upstream-question-json", "file": parsed.file_name,
                              "images": str(images_dir) if images_dir else None}
    dialogues = list(parsed.dialogues)
    if annotations is not None:
        dialogues, mask_issues = attach_annotation_masks(dialogues, annotations)
        issues.extend(mask_issues)
        source["annotations"] = Path(annotations).name
    return Bench(dialogues, name=parsed.name, root=root, source=source, issues=issues, image_files=image_files)


def _box(value: Any) -> tuple[float, float, float, float]:
    """A gold box from JSON: a list of four finite numbers."""
    if not isinstance(value, list) or len(value) != 4:
        raise ValueError("a box is a list of 4 numbers")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ValueError("a box holds a value that is not a number")
    box = tuple(float(v) for v in value)
    if not all(math.isfinite(v) for v in box):
        raise ValueError("a box holds a non-finite number")
    return box  # type: ignore[return-value]


def _image_id(value: Any) -> int | None:
    """A COCO image id from JSON: an integer (or a string of digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and 0 <= value < 2**63:
        return int(value)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        return int(value)
    return None


def _turns(raw_turns: Any, dialogue_id: str) -> tuple[list[Turn], list[ValidationIssue]]:
    issues: list[ValidationIssue] = []
    turns: list[Turn] = []
    if not isinstance(raw_turns, list):
        return [], [ValidationIssue(code="malformed_dialogue", dialogue_id=dialogue_id, severity="error",
                                    message="conversational_turns is not a list")]
    for index, raw in enumerate(raw_turns):

        def issue(code: str, message: str, severity: str = "warning", t: int = index) -> None:
            issues.append(ValidationIssue(code=code, dialogue_id=dialogue_id, turn=t, message=message, severity=severity))

        if not isinstance(raw, dict) or not isinstance(raw.get("question"), str):
            issue("malformed_turn", "turn has no question text; replaced by an empty question", "error")
            raw = {**(raw if isinstance(raw, dict) else {}), "question": ""}
        question: str = raw["question"]
        for key in sorted(set(raw) - _KNOWN_TURN_KEYS):
            issue("unknown_key", f"unknown turn key {key!r} ignored")
        references: list[Reference] = []
        for key, placeholder, fills in (
            ("context_from_turn", UPSTREAM_PLACEHOLDER, True),
            ("context_from_turn_2", SECOND_PLACEHOLDER, False),
        ):
            if key not in raw:
                continue
            try:
                if isinstance(raw[key], bool):
                    raise TypeError("a boolean")
                target = int(raw[key])
            except (TypeError, ValueError, OverflowError):
                issue("bad_reference", f"{key}={_brief(raw[key])} is not a turn index; ignored", "error")
                continue
            if key == "context_from_turn_2":
                issue("second_reference", f"second reference {key}={target}; the official evaluator never fills "
                      f"{placeholder} (kept literal in upstream mode)")
            if target < 0:
                issue("bad_reference", f"{key}={target} is negative; ignored", "error")
                continue
            if target >= index:
                kind = "self_reference" if target == index else "forward_reference"
                issue(kind, f"{key}={target} does not point to an earlier turn (upstream always uses the gold box)")
            has_placeholder = placeholder in question
            if not has_placeholder:
                issue("reference_without_placeholder",
                      f"{key}={target} but the question has no {placeholder}; the question is used unchanged")
            references.append(Reference(turn=target, placeholder=placeholder if has_placeholder else None,
                                        upstream_fill=fills))
        if UPSTREAM_PLACEHOLDER in question and "context_from_turn" not in raw:
            issue("placeholder_without_reference",
                  f"{UPSTREAM_PLACEHOLDER} but no context_from_turn; the placeholder stays literal")
        if _BROKEN_PLACEHOLDER.search(question):
            issue("broken_placeholder", "a <box> tag without the {context_bbox} placeholder stays literal")
        if _DOUBLED_INITIAL.match(question):
            issue("typo", f"question starts with a doubled letter: {question.split()[0]!r}")
        boxes = raw.get("bboxes")
        try:
            if not isinstance(boxes, list) or not boxes:
                raise ValueError("no bboxes")
            if len(boxes) > 1:
                issue("several_gold_boxes", f"{len(boxes)} gold boxes; a predicted box may match any of them")
            gold_mask = _turn_mask(raw.get("masks"), issue)
            turns.append(Turn(index=len(turns), question=question, gold_boxes=[_box(b) for b in boxes],
                              references=references, ann_ids=_ann_ids(raw.get("ann_ids"), issue),
                              gold_mask=gold_mask))
        except (ValueError, TypeError) as exc:
            issue("bad_gold_box", f"unusable gold box {_brief(boxes)} ({str(exc)[:200]})", "error")
    if len(turns) != len(raw_turns):
        # Dropping a turn would renumber the later ones and silently retarget their references.
        issues.append(ValidationIssue(code="dialogue_skipped", dialogue_id=dialogue_id, severity="error",
                                      message=f"{len(raw_turns) - len(turns)} turn(s) unusable; the dialogue is "
                                              "skipped so that no reference points at the wrong turn"))
        return [], issues
    return turns, issues


# --------------------------------------------------------------------------------------------
# Gold masks: the released ``*_multi_turn.json`` files and COCO annotations
# --------------------------------------------------------------------------------------------

def _turn_mask(value: Any, issue: Any) -> RLE | None:
    """The turn's gold mask from the released ``masks`` field: the first mask, as upstream.

    ``value`` is what the stream decoded (:class:`MasksField`), an :class:`OversizedField`, or a
    plain JSON value (a field holding RLE objects, read as ordinary JSON).
    """
    if value is None:
        return None
    if isinstance(value, OversizedField):
        found = MasksField(None, f"the masks field has {value.size} bytes, more than can be decoded", 0)
    elif isinstance(value, MasksField):
        found = value
    else:
        found = masks_field(value)
    if found.error is not None:
        issue("bad_gold_mask", f"unusable gold mask ({found.error}); no gold mask", "error")
        return None
    if found.nested:
        issue("nested_gold_masks", "masks holds per-object lists of masks; the first mask of the first is used")
    if found.count > 1:
        issue("several_gold_masks", f"{found.count} gold masks; the first is used, as upstream")
    return found.mask


def _ann_ids(value: Any, issue: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return list(value)
    issue("bad_ann_ids", f"ann_ids {str(value)[:60]!r} is not a list of integers; ignored", "error")
    return []


def match_annotation(gold_box: Any, candidates: list[tuple[float, float, float, float]], position: int) -> int | None:
    """Which candidate box a turn's gold box is matched to: the rule of the released files.

    UPSTREAM.md 2.1 (``test/merge_mask_json.py``): the best-IoU candidate if its IoU > 0.3;
    else the candidate at the turn's own position if its IoU > 0.1 or the best IoU < 0.1; else
    the best; else the first. Returns the candidate index, or None when there is no candidate.

    >>> match_annotation((0, 0, 10, 10), [(50, 50, 60, 60), (0, 0, 10, 9)], 0)
    1
    >>> match_annotation((0, 0, 10, 10), [(50, 50, 60, 60), (70, 70, 80, 80)], 1)
    1
    """
    from ...geometry import box_iou

    if not candidates:
        return None
    ious = [box_iou(gold_box, c) for c in candidates]
    best = max(range(len(ious)), key=lambda i: (ious[i], -i))
    if ious[best] > 0.3:
        return best
    if position < len(candidates) and (ious[position] > 0.1 or ious[best] < 0.1):
        return position
    return best if ious[best] > 0 else 0


class _Annotations:
    """COCO instances indexed by annotation id and by image (only what the masks need)."""

    def __init__(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"--annotations {path} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise ValueError(f"--annotations {path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("annotations"), list) \
                or not isinstance(data.get("images"), list):
            raise ValueError(f"--annotations {path}: expected COCO instances with 'images' and 'annotations' lists")
        self.sizes: dict[int, tuple[int, int]] = {}
        for image in data["images"]:
            if isinstance(image, dict) and all(isinstance(image.get(k), int) for k in ("id", "height", "width")):
                self.sizes[image["id"]] = (image["height"], image["width"])
        self.by_id: dict[int, dict] = {}
        self.by_image: dict[int, list[dict]] = {}
        for ann in data["annotations"]:
            if isinstance(ann, dict) and isinstance(ann.get("id"), int) and isinstance(ann.get("image_id"), int):
                self.by_id[ann["id"]] = ann
                self.by_image.setdefault(ann["image_id"], []).append(ann)
        for anns in self.by_image.values():
            anns.sort(key=lambda a: a["id"])

    def mask(self, ann: dict) -> RLE:
        from ...geometry import polygons_to_rle

        image_id = ann["image_id"]
        if image_id not in self.sizes:
            raise ValueError(f"image {image_id} of annotation {ann['id']} is not in 'images'")
        height, width = self.sizes[image_id]
        segmentation = ann.get("segmentation")
        if isinstance(segmentation, dict):
            return rle_dict(segmentation)
        if isinstance(segmentation, list):
            polygons = [p for p in segmentation if isinstance(p, list) and len(p) >= 6
                        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)]
            if polygons:
                return polygons_to_rle(polygons, height, width)
        raise ValueError(f"annotation {ann['id']} has no usable segmentation")

    @staticmethod
    def box(ann: dict) -> tuple[float, float, float, float] | None:
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            return None
        x, y, w, h = (float(v) for v in bbox)
        return (x, y, x + w, y + h)


def attach_annotation_masks(
    dialogues: list[Dialogue], annotations: str | Path
) -> tuple[list[Dialogue], list[ValidationIssue]]:
    """Give each turn without a gold mask the mask of its COCO annotation.

    The annotation is the turn's ``ann_ids[0]`` when the file has it, else the one of the
    dialogue's image that :func:`match_annotation` picks for the gold box (candidates: the image's
    annotations in id order, boxes converted from xywh). The matched id is kept in ``ann_ids``.
    Turns that get no mask keep their place and are reported (``no_gold_mask``).
    """
    index = _Annotations(Path(annotations))
    issues: list[ValidationIssue] = []
    out: list[Dialogue] = []
    by_ann_id = matched = 0
    for dialogue in dialogues:
        image_id = dialogue.image.coco_id
        candidates = [a for a in index.by_image.get(image_id, []) if index.box(a) is not None]
        turns = []
        for turn in dialogue.turns:
            if turn.gold_mask is not None:
                turns.append(turn)
                continue
            ann = next((index.by_id[a] for a in turn.ann_ids if a in index.by_id), None)
            how = "ann_id"
            if ann is None:
                pick = match_annotation(turn.gold_boxes[0], [index.box(a) for a in candidates], turn.index)
                ann, how = (candidates[pick], "box") if pick is not None else (None, "")
            if ann is None:
                why = f"image {image_id} has no annotations" if image_id not in index.by_image else \
                    "no annotation of the image has a usable box"
                issues.append(ValidationIssue(code="no_gold_mask", dialogue_id=dialogue.dialogue_id, turn=turn.index,
                                              message=f"no gold mask: {why}; the turn is kept without one"))
                turns.append(turn)
                continue
            try:
                rle = index.mask(ann)
            except (ValueError, TypeError, KeyError) as exc:
                issues.append(ValidationIssue(code="no_gold_mask", dialogue_id=dialogue.dialogue_id, turn=turn.index,
                                              message=f"no gold mask: {exc}; the turn is kept without one"))
                turns.append(turn)
                continue
            by_ann_id += how == "ann_id"
            matched += how == "box"
            turns.append(turn.model_copy(update={"gold_mask": rle, "ann_ids": [int(ann["id"])]}))
        out.append(dialogue.model_copy(update={"turns": turns}))
    missing = sum(i.code == "no_gold_mask" for i in issues)
    issues.append(ValidationIssue(code="gold_masks_attached",
                                  message=f"gold masks from {Path(annotations).name}: {by_ann_id} by ann_id, "
                                          f"{matched} by box match, {missing} turn(s) without a mask"))
    return out, issues


RELEASED_SUFFIX = "_multi_turn.json"
"""The released test files are ``<config>_multi_turn.json`` (e.g. ``refcocoplus_multi_turn.json``)."""


def released_files(folder: str | Path) -> dict[str, Path]:
    """``{config: file}`` of the ``<config>_multi_turn.json`` files in a folder or up to two
    sub-folders down (e.g. ``test/testdata/``); bounded, so a spec naming a huge tree stays fast."""
    found: dict[str, Path] = {}
    for depth in ("", "*/", "*/*/"):
        for file in sorted(Path(folder).glob(f"{depth}*{RELEASED_SUFFIX}")):
            if file.is_file():
                found.setdefault(file.name[: -len(RELEASED_SUFFIX)], file)
    return found


RELEASED_IMAGES_SUFFIX = "_test_multi_bbox_images"
"""The released dataset keeps each config's images in ``raw/<config>_test_multi_bbox_images/<id>.jpg``."""


def released_images(file: str | Path) -> Path | None:
    """The image folder of the released layout beside a question file, if there is one.

    ``raw/refcocoplus_multi_turn.json`` (or ``refcocoplus.json``) -> ``raw/refcocoplus_test_multi_bbox_images/``.
    """
    file = Path(file)
    config = file.name.removesuffix(RELEASED_SUFFIX).removesuffix(".json").removesuffix("-checkpoint")
    folder = file.parent / f"{config}{RELEASED_IMAGES_SUFFIX}"
    try:
        return folder if folder.is_dir() else None
    except OSError:
        return None
