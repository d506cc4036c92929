"""Import the official RegionDial question files (the upstream JSON layout) into a Bench.

The layout is a JSON list of ``{image_id, conversational_turns: [{question, bboxes,
context_from_turn?}], image_path?}`` (UPSTREAM.md, section 2.1). Every known defect of the
released files is tolerated and reported as a :class:`~regiondial_bench.schema.ValidationIssue`;
no turn is dropped silently, and questions are kept verbatim so the ``upstream`` reference mode
renders exactly what the official evaluator renders.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from pathlib import Path
from typing import Any

from ..schema import (
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

SECOND_PLACEHOLDER = "<box>{context_bbox_2}</box>"
_BROKEN_PLACEHOLDER = re.compile(r"<box>(?!\{context_bbox(?:_\d+)?\}</box>)")
_DOUBLED_INITIAL = re.compile(r"^([A-Z])\1[a-z]")
_KNOWN_TURN_KEYS = {"question", "bboxes", "context_from_turn", "context_from_turn_2", "ann_ids", "masks"}
_COCO_NAME = "COCO_train2014_{:012d}.jpg"
_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxlist, _repr.maxdict, _repr.maxstring, _repr.maxother = 3, 6, 4, 60, 60
_brief = _repr.repr  # a bounded repr for messages: hostile values can be huge or deeply nested


def _image_file(images: Path | None, record: dict[str, Any], image_id: int) -> Path | None:
    """Find the image under ``images`` in the upstream layout or COCO's ``train2014`` layout.

    Raises:
        ValueError: the record's ``image_path`` leads outside ``images`` (``..`` or absolute).
    """
    if images is None:
        return None
    candidates = []
    if isinstance(record.get("image_path"), str):
        rel = Path(record["image_path"])
        if not path_inside(rel, images):
            raise ValueError(f"image_path {record['image_path'][:200]!r} leads outside the --images folder {images}")
        candidates += [images / rel, images / rel.name]
    coco = _COCO_NAME.format(image_id)
    candidates += [images / f"{image_id}.jpg", images / "train2014" / coco, images / coco]
    return next((c for c in candidates if is_file(c)), None)


def import_upstream(
    path: str | Path,
    *,
    images: str | Path | None = None,
    name: str | None = None,
) -> Bench:
    """Read an official question file into a :class:`Bench`, with its defects as issues.

    Args:
        path: the question JSON (e.g. ``refcocoplus.json``).
        images: folder holding the images, either upstream's
            ``<name>_test_multi_bbox_images/<id>.jpg`` layout or COCO's
            ``train2014/COCO_train2014_<id:012d>.jpg``. Without it the bench is layout-only
            (adapters that look at pixels refuse to run).
        name: bench name; defaults to the file's stem.
    """
    path = Path(path)
    name = name or path.stem.removesuffix("-checkpoint")
    try:
        data = json.loads(path.read_bytes())
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text: {exc}") from exc
    except RecursionError as exc:
        raise ValueError(f"{path}: the JSON is nested too deeply to be a question file") from exc
    except ValueError as exc:  # JSONDecodeError, or an integer beyond Python's digit limit
        raise ValueError(f"{path} is not valid JSON: {str(exc)[:300]}") from exc
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the question file ({exc})") from exc
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of dialogues (upstream layout), got {type(data).__name__}")
    images_dir = Path(images) if images is not None else None
    if images_dir is not None and not images_dir.is_dir():
        raise FileNotFoundError(f"--images {images_dir} is not a folder")

    issues: list[ValidationIssue] = []
    dialogues: list[Dialogue] = []
    image_files: dict[str, Path] = {}
    seen_ids: dict[str, int] = {}
    derived_paths = missing_images = 0
    for position, record in enumerate(data):
        if not isinstance(record, dict) or "conversational_turns" not in record or "image_id" not in record:
            issues.append(ValidationIssue(code="malformed_dialogue", severity="error",
                                          message=f"entry {position} lacks image_id or conversational_turns; skipped"))
            continue
        image_id = _image_id(record["image_id"])
        if image_id is None:
            issues.append(ValidationIssue(code="bad_image_id", severity="error",
                                          message=f"entry {position}: image_id {_brief(record['image_id'])} is not "
                                                  "a non-negative integer; skipped"))
            continue
        dialogue_id = f"{name}-{image_id}"
        if dialogue_id in seen_ids:
            seen_ids[dialogue_id] += 1
            dialogue_id = f"{dialogue_id}-{seen_ids[dialogue_id]}"
            issues.append(ValidationIssue(code="duplicate_image", dialogue_id=dialogue_id,
                                          message=f"image {image_id} has a second dialogue; renamed {dialogue_id}"))
        else:
            seen_ids[dialogue_id] = 1
        if "image_path" not in record:
            derived_paths += 1
        turns, turn_issues = _turns(record["conversational_turns"], dialogue_id)
        issues.extend(turn_issues)
        if not turns:
            if not any(i.code == "dialogue_skipped" and i.dialogue_id == dialogue_id for i in turn_issues):
                issues.append(ValidationIssue(code="empty_dialogue", dialogue_id=dialogue_id, severity="error",
                                              message="no usable turn; dialogue skipped"))
            continue
        try:
            image_file = _image_file(images_dir, record, image_id)
        except ValueError as exc:
            issues.append(ValidationIssue(code="image_outside_root", dialogue_id=dialogue_id, severity="error",
                                          message=str(exc)))
            image_file = None
        if image_file is not None:
            image_files[dialogue_id] = image_file.resolve()
        elif images_dir is not None and not (issues and issues[-1].code == "image_outside_root"):
            missing_images += 1
            issues.append(ValidationIssue(code="image_missing", dialogue_id=dialogue_id,
                                          message=f"no image for COCO id {image_id} under {images_dir}"))
        dialogues.append(
            Dialogue(
                dialogue_id=dialogue_id,
                # Identity only: where the pixels are (and so their sizes) stays out of the
                # content hash; the runner reads sizes from the files when it needs them.
                image=ImageRef(
                    coco_id=image_id,
                    file_name=_COCO_NAME.format(image_id),
                ),
                turns=turns,
                source={"format": "upstream-question-json", "file": path.name, "image_id": image_id},
            )
        )
    if derived_paths:
        issues.append(ValidationIssue(code="image_path_derived",
                                      message=f"{derived_paths} dialogues have no image_path; derived from image_id"))
    if images_dir is None:
        issues.append(ValidationIssue(code="layout_only",
                                      message="no --images folder: the bench has no pixels"))
    if not dialogues:
        issues.append(ValidationIssue(code="empty_bench", severity="error",
                                      message=f"{path}: no usable dialogue ({len(data)} entries)"))
    source = {"format": "upstream-question-json", "file": path.name, "images": str(images_dir) if images_dir else None}
    return Bench(dialogues, name=name, root=path.parent, source=source, issues=issues, image_files=image_files)


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
        ann_ids = raw.get("ann_ids", [])
        if not isinstance(ann_ids, list) or not all(isinstance(a, int) and not isinstance(a, bool) for a in ann_ids):
            issue("bad_ann_ids", f"ann_ids {_brief(ann_ids)} is not a list of integers; ignored", "error")
            ann_ids = []
        boxes = raw.get("bboxes")
        try:
            if not isinstance(boxes, list) or not boxes:
                raise ValueError("no bboxes")
            if len(boxes) > 1:
                issue("several_gold_boxes", f"{len(boxes)} gold boxes; a predicted box may match any of them")
            turns.append(Turn(index=len(turns), question=question, gold_boxes=[_box(b) for b in boxes],
                              references=references, ann_ids=ann_ids))
        except (ValueError, TypeError) as exc:
            issue("bad_gold_box", f"unusable gold box {_brief(boxes)} ({str(exc)[:200]})", "error")
    if len(turns) != len(raw_turns):
        # Dropping a turn would renumber the later ones and silently retarget their references.
        issues.append(ValidationIssue(code="dialogue_skipped", dialogue_id=dialogue_id, severity="error",
                                      message=f"{len(raw_turns) - len(turns)} turn(s) unusable; the dialogue is "
                                              "skipped so that no reference points at the wrong turn"))
        return [], issues
    return turns, issues
