"""Structural checks and statistics of a bench (``regiondial bench validate`` / ``info``)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..schema import Bench, ValidationIssue, is_file, path_inside, turns_per_round


def check_bench(bench: Bench, *, check_images: bool = True) -> list[ValidationIssue]:
    """The bench's recorded import issues plus structural checks; never raises on bad data.

    Checks: the bench has turns; references point to an existing earlier turn; each placeholder
    appears in its question; gold boxes lie inside a known image size; gold masks match the image
    size; image paths stay inside the bench folder; image files exist and can be opened as images.
    """
    issues = list(bench.issues)
    if bench.num_turns == 0 and not any(i.code == "empty_bench" for i in issues):
        issues.append(ValidationIssue(code="empty_bench", severity="error",
                                      message=f"bench {bench.name!r} has no dialogue to evaluate"))
    seen = {(i.code, i.dialogue_id, i.turn) for i in issues}

    def add(code: str, message: str, dialogue_id: str, turn: int | None = None, severity: str = "warning") -> None:
        if (code, dialogue_id, turn) in seen or (code.endswith("_reference") and
                                                 any(k[1:] == (dialogue_id, turn) and k[0].endswith("_reference")
                                                     for k in seen)):
            return
        seen.add((code, dialogue_id, turn))
        issues.append(ValidationIssue(code=code, message=message, dialogue_id=dialogue_id, turn=turn, severity=severity))

    missing_images = 0
    for dialogue in bench:
        size = dialogue.image.size
        n = len(dialogue.turns)
        for turn in dialogue.turns:
            for ref in turn.references:
                if ref.turn >= n:
                    add("dangling_reference", f"reference to turn {ref.turn}, but the dialogue has {n} turns",
                        dialogue.dialogue_id, turn.index, "error")
                elif ref.turn >= turn.index:
                    add("forward_reference", f"reference to turn {ref.turn} does not point back",
                        dialogue.dialogue_id, turn.index)
                if ref.placeholder is not None and ref.placeholder not in turn.question:
                    add("placeholder_missing", f"placeholder {ref.placeholder!r} is not in the question",
                        dialogue.dialogue_id, turn.index, "error")
            if size is not None:
                w, h = size
                for box in turn.gold_boxes:
                    if box[0] < 0 or box[1] < 0 or box[2] > w + 0.5 or box[3] > h + 0.5:
                        add("gold_box_outside", f"gold box {list(box)} exceeds the {w}x{h} image",
                            dialogue.dialogue_id, turn.index, "error")
                if turn.gold_mask is not None and tuple(turn.gold_mask.size) != (h, w):
                    add("gold_mask_size", f"gold mask is {turn.gold_mask.size}, image is {h}x{w}",
                        dialogue.dialogue_id, turn.index, "error")
        if (dialogue.dialogue_id not in bench.image_files and dialogue.image.path is not None
                and bench.root is not None and not path_inside(dialogue.image.path, bench.root)):
            add("image_outside_root", f"image path {dialogue.image.path[:200]!r} leads outside the bench folder "
                f"{bench.root}; evaluate refuses it", dialogue.dialogue_id, None, "error")
        elif check_images:
            path = bench.image_path(dialogue)
            if path is not None and not is_file(path):
                missing_images += 1
                add("image_missing", f"image file not found: {path}", dialogue.dialogue_id)
            elif path is not None:
                problem = _unreadable_image(path)
                if problem:
                    add("image_unreadable", f"{path} cannot be opened as an image ({problem})",
                        dialogue.dialogue_id, None, "error")
    return issues


def blocking_problem(bench: Bench, location: str = "") -> str | None:
    """Why ``evaluate`` must not run on ``bench``: its error-level issues (what ``regiondial bench
    validate`` reports as errors; image files are not opened here), the first one named; None when
    there are none (warnings, such as the official files' documented defects, do not block)."""
    # (an image path leading outside the bench is refused by the runner itself, with its own message)
    errors = [i for i in check_bench(bench, check_images=False) if i.severity == "error"
              and i.code != "image_outside_root"]
    if not errors:
        return None
    first = errors[0]
    where = f" at {first.dialogue_id}" + (f"#{first.turn}" if first.turn is not None else "") if first.dialogue_id else ""
    return (f"bench {bench.name!r} has {len(errors)} error-level issue(s) (first: {first.code}{where}: "
            f"{first.message[:300]}); fix the bench (see `regiondial bench validate {location or bench.root or '...'}`)")


def _unreadable_image(path) -> str | None:
    """Why ``path`` cannot be opened as an image (its header is read, not its pixels), or None."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            width, height = img.size
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return str(exc)[:200] or type(exc).__name__
    if width <= 0 or height <= 0:
        return f"size {width}x{height}"
    return None


def bench_stats(bench: Bench) -> dict[str, Any]:
    """Counts for ``regiondial bench info``."""
    with_ref = chained = masks = images = 0
    lengths: Counter[int] = Counter()
    for dialogue in bench:
        lengths[len(dialogue.turns)] += 1
        if bench.image_path(dialogue) is not None and is_file(bench.image_path(dialogue)):
            images += 1
        for turn in dialogue.turns:
            masks += turn.gold_mask is not None
            if turn.references:
                with_ref += 1
                # chained: the primary reference points back to a turn that has a reference itself
                primary = turn.references[0].turn
                if primary < turn.index and dialogue.turns[primary].references:
                    chained += 1
    return {
        "name": bench.name,
        "content_hash": bench.content_hash,
        "dialogues": len(bench),
        "turns": bench.num_turns,
        "turns_per_round": turns_per_round(bench.dialogues),
        "turns_with_reference": with_ref,
        "chained_references": chained,
        "turns_with_gold_mask": masks,
        "dialogues_with_image_file": images,
        "turns_per_dialogue": {str(k): lengths[k] for k in sorted(lengths)},
    }
