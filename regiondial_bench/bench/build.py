"""Build RegionDial-Bench dialogues from referring-expression sources.

Per output split, referred objects are grouped by image and ordered into dialogues of
``min_rounds``..``max_rounds`` rounds. A later round may be rewritten to point back at an earlier
round's object through the official placeholder ``<box>{context_bbox}</box>`` (and a
:class:`~regiondial_bench.schema.Reference`); the relation word joining them is computed from the
two gold boxes, so it is geometrically true. Gold masks come from the COCO polygons (RLE via
pycocotools). Every random choice is seeded, so the same sources and config give the same bench,
byte for byte (same content hash).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..protocol import format_box
from ..schema import UPSTREAM_PLACEHOLDER, Bench, Dialogue, ImageRef, Reference, Turn, ValidationIssue
from .sources.records import SourceImage

RELATION_PHRASES: dict[str, str] = {
    "left": "to the left of",
    "right": "to the right of",
    "above": "above",
    "below": "below",
    "inside": "inside",
    "overlapping": "overlapping with",
    "near": "near",
}
"""Relation word -> the phrase written into the question before ``the <box>...</box>``."""

_RELATION_WEIGHTS = {"inside": 3.0, "left": 2.0, "right": 2.0, "above": 2.0, "below": 2.0, "overlapping": 2.0, "near": 1.0}

BENCHMARK_NAMES: dict[str, str] = {
    "refcoco+": "refcocoplus_multiturn",
    "refcocog": "refcocog_multiturn",
    "refcoco": "refcoco_multiturn",
}
"""Source dataset -> benchmark (and Hub config) name."""

DEFAULT_SPLITS: dict[str, dict[str, tuple[str, ...]]] = {
    "refcoco+": {"test": ("testA", "testB"), "val": ("val",)},
    "refcoco": {"test": ("testA", "testB"), "val": ("val",)},
    "refcocog": {"test": ("test",), "val": ("val",)},
}
"""Output split -> source splits, per dataset (``unc`` for RefCOCO/RefCOCO+, ``umd`` for RefCOCOg)."""

DEFAULT_SPLIT_BY: dict[str, str] = {"refcoco+": "unc", "refcoco": "unc", "refcocog": "umd"}

PAPER_TARGETS: dict[str, tuple[int, int]] = {"refcoco+": (715, 2355), "refcocog": (1580, 4405)}
"""The paper's test sizes (images, rounds); the released question files hold 2289 / 4115 rounds."""

DEFAULT_STYLE: dict[str, str] = {"refcoco+": "imperative", "refcoco": "imperative", "refcocog": "expression"}

TRAIN_REFERENCE_FORMAT = "bbox={box}"
"""How a gold reference is written into a training problem (upstream's training surface form)."""


@dataclass(frozen=True)
class BuildConfig:
    """How dialogues are formed. Validated when built.

    Attributes:
        name: Bench name written into the manifest.
        seed: Seeds image selection, object order, references and relation choice.
        min_rounds: Fewest rounds per dialogue; images with fewer referred objects are skipped.
        max_rounds: Most rounds per dialogue (the official files go up to 12).
        target_images: Dialogues to keep (sampled, seeded; weighted by object count when
            ``target_rounds`` is set); None keeps every eligible image.
        target_rounds: Total rounds to reach by shortening dialogues; None keeps every object.
        reference_rate: Chance that a round after the first refers back to an earlier round.
        previous_turn_rate: Chance that such a reference points at the round just before (the
            rest pick any earlier round uniformly, which makes references non-adjacent).
        question_style: ``imperative`` ("Find the man ...", RefCOCO+ files) or ``expression``
            (the raw expression, RefCOCOg files).
        near_ratio: Disjoint boxes are ``near`` when their gap is at most this times the mean of
            the two boxes' square-root areas.
    """

    name: str = "regiondial"
    seed: int = 0
    min_rounds: int = 2
    max_rounds: int = 12
    target_images: int | None = None
    target_rounds: int | None = None
    reference_rate: float = 0.8
    previous_turn_rate: float = 0.5
    question_style: Literal["imperative", "expression"] = "imperative"
    near_ratio: float = 0.5

    def __post_init__(self) -> None:
        if not 1 <= self.min_rounds <= self.max_rounds:
            raise ValueError(f"need 1 <= min_rounds <= max_rounds, got {self.min_rounds} and {self.max_rounds}")
        for key in ("reference_rate", "previous_turn_rate"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"{key} must lie in [0, 1], got {getattr(self, key)}")
        if self.target_images is not None and self.target_images < 1:
            raise ValueError(f"target_images must be >= 1, got {self.target_images}")
        if self.target_rounds is not None:
            if self.target_rounds < 1:
                raise ValueError(f"target_rounds must be >= 1, got {self.target_rounds}")
            if self.target_images is not None and self.target_rounds < self.target_images * self.min_rounds:
                raise ValueError(
                    f"target_rounds {self.target_rounds} < target_images {self.target_images} x min_rounds "
                    f"{self.min_rounds}; lower min_rounds or raise target_rounds"
                )
        if self.question_style not in ("imperative", "expression"):
            raise ValueError(f"question_style must be 'imperative' or 'expression', got {self.question_style!r}")
        if self.near_ratio < 0:
            raise ValueError(f"near_ratio must be >= 0, got {self.near_ratio}")


# --------------------------------------------------------------------------------------------
# Relations
# --------------------------------------------------------------------------------------------


def spatial_relations(target: Sequence[float], reference: Sequence[float], near_ratio: float = 0.5) -> list[str]:
    """Every relation word that holds for ``target`` relative to ``reference`` (xyxy boxes).

    ``left``/``right``/``above``/``below``: the target lies wholly on that side (edges may
    touch). ``inside``: the target is contained in the reference. ``overlapping``: the boxes share
    area and the target is not inside. ``near``: no shared area and a gap of at most
    ``near_ratio`` times the mean square-root area of the two boxes. Any two distinct boxes have
    at least one relation.

    >>> spatial_relations([0, 0, 10, 10], [14, 0, 24, 10])
    ['left', 'near']
    >>> spatial_relations([0, 0, 10, 10], [40, 30, 50, 40])
    ['left', 'above']
    >>> spatial_relations([12, 12, 18, 18], [10, 10, 30, 30])
    ['inside']
    >>> spatial_relations([0, 0, 20, 20], [10, 10, 30, 30])
    ['overlapping']
    """
    tx1, ty1, tx2, ty2 = target
    rx1, ry1, rx2, ry2 = reference
    found = []
    if tx2 <= rx1:
        found.append("left")
    if tx1 >= rx2:
        found.append("right")
    if ty2 <= ry1:
        found.append("above")
    if ty1 >= ry2:
        found.append("below")
    iw = min(tx2, rx2) - max(tx1, rx1)
    ih = min(ty2, ry2) - max(ty1, ry1)
    if iw > 0 and ih > 0:
        if tx1 >= rx1 and ty1 >= ry1 and tx2 <= rx2 and ty2 <= ry2 and tuple(target) != tuple(reference):
            found.append("inside")
        else:
            found.append("overlapping")
    else:
        gap = math.hypot(max(0.0, -iw), max(0.0, -ih))
        scale = (math.sqrt((tx2 - tx1) * (ty2 - ty1)) + math.sqrt((rx2 - rx1) * (ry2 - ry1))) / 2
        if gap <= near_ratio * scale:
            found.append("near")
    return found


_QUESTION_RE = re.compile(
    r"(?P<phrase>" + "|".join(re.escape(p) for p in sorted(RELATION_PHRASES.values(), key=len, reverse=True))
    + r") the " + re.escape(UPSTREAM_PLACEHOLDER)
)


def question_relation(question: str) -> str | None:
    """The relation word a built question uses before its placeholder, or None.

    >>> question_relation("Find the red circle to the left of the <box>{context_bbox}</box>.")
    'left'
    """
    match = _QUESTION_RE.search(question)
    if match is None:
        return None
    phrase = match.group("phrase")
    return next(word for word, p in RELATION_PHRASES.items() if p == phrase)


# --------------------------------------------------------------------------------------------
# Dialogues
# --------------------------------------------------------------------------------------------

_ARTICLE_RE = re.compile(r"^(the|a|an)\s+", re.IGNORECASE)


def _clean(expression: str) -> str:
    text = " ".join(expression.split()).strip(" .?!,")
    return _ARTICLE_RE.sub("", text)


def _question(expression: str, style: str, relation: str | None) -> str:
    text = _clean(expression)
    tail = f" {RELATION_PHRASES[relation]} the {UPSTREAM_PLACEHOLDER}" if relation else ""
    if style == "imperative":
        return f"Find the {text}{tail}."
    return f"{text[:1].upper()}{text[1:]}{tail}."


@dataclass
class BuiltSplit:
    """One built output split: the bench and the source images its dialogues use."""

    bench: Bench
    images: dict[str, SourceImage] = field(default_factory=dict)  # dialogue id -> image
    issues: list[ValidationIssue] = field(default_factory=list)


def _plan(images: list[SourceImage], config: BuildConfig, split: str) -> tuple[list[tuple[SourceImage, int]], list[ValidationIssue]]:
    """Pick images and dialogue lengths so the configured targets are met exactly."""
    issues: list[ValidationIssue] = []
    eligible = [img for img in images if len(img.objects) >= config.min_rounds]
    if not eligible:
        raise ValueError(
            f"split {split!r}: no image has >= {config.min_rounds} referred objects ({len(images)} images read)"
        )
    rng = random.Random(f"regiondial-build:{config.seed}:{split}:plan")
    if config.target_images is not None:
        if config.target_images > len(eligible):
            raise ValueError(
                f"split {split!r}: target_images={config.target_images} but only {len(eligible)} images have "
                f">= {config.min_rounds} referred objects"
            )
        if config.target_rounds is None:
            keep = set(rng.sample(range(len(eligible)), config.target_images))
        else:  # favour images with more objects so the round target is reachable (weighted, no replacement)
            keys = [rng.random() ** (1.0 / min(len(img.objects), config.max_rounds)) for img in eligible]
            keep = set(sorted(range(len(eligible)), key=lambda i: -keys[i])[: config.target_images])
        eligible = [img for i, img in enumerate(eligible) if i in keep]
    lengths = [min(len(img.objects), config.max_rounds) for img in eligible]
    if config.target_rounds is not None:
        available = sum(lengths)
        floor = config.min_rounds * len(eligible)
        if config.target_rounds > available:
            issues.append(
                ValidationIssue(
                    code="target-rounds-short",
                    message=f"split {split!r}: target_rounds={config.target_rounds} but the selected images hold "
                    f"only {available} referred objects; built {available}",
                )
            )
        elif config.target_rounds < floor:
            raise ValueError(
                f"split {split!r}: target_rounds={config.target_rounds} is below {len(eligible)} dialogues x "
                f"min_rounds {config.min_rounds} = {floor}"
            )
        else:
            excess = available - config.target_rounds
            while excess > 0:  # shorten random dialogues that are still above the minimum
                choices = [i for i, n in enumerate(lengths) if n > config.min_rounds]
                i = rng.choice(choices)
                lengths[i] -= 1
                excess -= 1
    return list(zip(eligible, lengths, strict=True)), issues


def build_dialogue(image: SourceImage, rounds: int, config: BuildConfig, dialogue_id: str) -> Dialogue:
    """Order ``rounds`` of the image's objects into a dialogue and rewrite references.

    Args:
        image: The source record.
        rounds: Number of rounds (at most ``len(image.objects)``).
        config: Build settings (seed, reference rates, style).
        dialogue_id: The id to give the dialogue (also seeds its random choices).

    Returns:
        The dialogue; ``source["relations"]`` lists each rewritten turn, its reference and word.
    """
    rng = random.Random(f"regiondial-build:{config.seed}:{dialogue_id}")
    objects = list(image.objects)
    rng.shuffle(objects)
    objects = objects[:rounds]
    turns: list[Turn] = []
    relations: list[dict[str, Any]] = []
    for t, obj in enumerate(objects):
        expression = rng.choice(obj.expressions)
        reference = None
        relation = None
        if t > 0 and rng.random() < config.reference_rate:
            c = t - 1 if rng.random() < config.previous_turn_rate else rng.randrange(t)
            words = spatial_relations(obj.box, objects[c].box, config.near_ratio)
            relation = rng.choices(words, [_RELATION_WEIGHTS[w] for w in words])[0]
            reference = Reference(turn=c)
            relations.append({"turn": t, "reference": c, "relation": relation})
        turns.append(
            Turn(
                index=t,
                question=_question(expression, config.question_style, relation),
                gold_boxes=[tuple(float(v) for v in obj.box)],
                gold_mask=obj.mask(image.height, image.width),
                references=[reference] if reference else [],
                ann_ids=[obj.ann_id],
                category=obj.category,
            )
        )
    return Dialogue(
        dialogue_id=dialogue_id,
        image=ImageRef(
            path=f"images/{image.file_name}",
            width=image.width,
            height=image.height,
            coco_id=image.image_id,
            file_name=image.file_name,
        ),
        turns=turns,
        source={"dataset": image.dataset, "split": image.split, "image_id": image.image_id, "relations": relations},
    )


def build_split(
    images: Iterable[SourceImage],
    config: BuildConfig,
    split: str = "test",
    *,
    progress: bool = False,
    source_info: Mapping[str, Any] | None = None,
) -> BuiltSplit:
    """Build one output split from source records.

    Args:
        images: Source records (any order; they are sorted by image id and split).
        config: Build settings.
        split: Output split name (part of every dialogue id).
        progress: Show a progress bar.
        source_info: Extra provenance for the manifest (reader, paths, source splits).

    Returns:
        The built split; ``bench.root`` is unset until :func:`write_split` writes it.

    Raises:
        ValueError: When the targets cannot be met or two records share an image and split.
    """
    from tqdm import tqdm

    records = sorted(images, key=lambda r: (r.image_id, r.split))
    keys = [(r.image_id, r.split) for r in records]
    if len(set(keys)) != len(keys):
        raise ValueError(f"split {split!r}: the source yielded the same (image, split) twice")
    plan, issues = _plan(records, config, split)
    built = BuiltSplit(bench=Bench([], name=config.name), issues=issues)
    dialogues = []
    multi_split = len({r.split for r in records}) > 1
    for image, rounds in tqdm(plan, desc=f"build {split}", unit="dlg", disable=not progress):
        dialogue_id = f"{split}-{image.split}-{image.image_id}" if multi_split else f"{split}-{image.image_id}"
        dialogues.append(build_dialogue(image, rounds, config, dialogue_id))
        built.images[dialogue_id] = image
    source = {"build": asdict(config), "split": split, **dict(source_info or {})}
    built.bench = Bench(dialogues, name=config.name, source=source, issues=issues)
    return built


def write_split(
    built: BuiltSplit,
    folder: str | Path,
    *,
    images: Literal["copy", "symlink"] = "copy",
    created_by: str = "regiondial build",
    progress: bool = False,
) -> Bench:
    """Write a built split as a bench folder (manifest, dialogues, images, official questions).

    Args:
        built: The output of :func:`build_split`.
        folder: Destination; gets ``manifest.json``, ``dialogues.jsonl``, ``images/`` and
            ``official_questions.json``.
        images: ``copy`` the image files (self-contained) or ``symlink`` them.
        created_by: Written into the manifest.
        progress: Show a progress bar while writing images.

    Returns:
        The bench, rooted at ``folder``.
    """
    from tqdm import tqdm

    folder = Path(folder)
    image_dir = folder / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    for dialogue in tqdm(built.bench.dialogues, desc="write images", unit="img", disable=not progress):
        source = built.images[dialogue.dialogue_id]
        dest = folder / dialogue.image.path
        if dest.exists() or dest.is_symlink():
            dest.unlink()
        if images == "symlink" and source.path is not None:
            os.symlink(source.path.resolve(), dest)
        elif source.path is not None and source.data is None:
            if not source.path.is_file():
                raise FileNotFoundError(f"image {source.image_id}: {source.path} does not exist")
            shutil.copyfile(source.path, dest)
        else:
            dest.write_bytes(source.read_bytes())
    built.bench.save(folder, created_by=created_by)
    (folder / "official_questions.json").write_text(
        json.dumps(official_questions(built.bench), indent=1) + "\n", encoding="utf-8"
    )
    return Bench.load(folder)


# --------------------------------------------------------------------------------------------
# Other layouts of the same bench
# --------------------------------------------------------------------------------------------


def _int_box(box: Sequence[float]) -> list[int]:
    values = json.loads(format_box(box))
    if values[2] <= values[0]:
        values[2] = values[0] + 1
    if values[3] <= values[1]:
        values[3] = values[1] + 1
    return values


def official_questions(bench: Bench, image_prefix: str = "") -> list[dict[str, Any]]:
    """The bench in the official question-file layout (UPSTREAM.md section 2.1).

    A JSON list of ``{image_id, conversational_turns: [{question, bboxes, context_from_turn?}],
    image_path}`` with integer xyxy boxes. ``image_path`` is the bench-relative image path, with
    ``image_prefix`` put in front. Extra keys ``ann_ids`` and ``dialogue_id`` help matching.

    Args:
        bench: The bench to convert.
        image_prefix: Prefix of every ``image_path``.

    Returns:
        The list, ready for ``json.dump``.
    """
    out = []
    for dialogue in bench:
        turns = []
        for turn in dialogue.turns:
            item: dict[str, Any] = {"question": turn.question, "bboxes": [_int_box(b) for b in turn.gold_boxes]}
            if turn.references:
                item["context_from_turn"] = turn.references[0].turn
            if turn.ann_ids:
                item["ann_ids"] = list(turn.ann_ids)
            turns.append(item)
        out.append(
            {
                "image_id": dialogue.image.coco_id,
                "dialogue_id": dialogue.dialogue_id,
                "conversational_turns": turns,
                "image_path": image_prefix + (dialogue.image.path or ""),
            }
        )
    return out


def inscribed_point(mask: Any) -> tuple[int, int] | None:
    """The centre of the largest circle inside a boolean mask ``(x, y)``, None for an empty mask.

    >>> import numpy as np
    >>> m = np.zeros((10, 20), bool); m[2:9, 3:10] = True
    >>> inscribed_point(m)
    (6, 5)
    """
    import numpy as np
    from scipy.ndimage import distance_transform_edt

    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = np.pad(np.asarray(mask[y0:y1, x0:x1], dtype=bool), 1)
    distance = distance_transform_edt(crop)
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return int(x - 1 + x0), int(y - 1 + y0)


def training_samples(
    bench: Bench, reference_format: str = TRAIN_REFERENCE_FORMAT, *, progress: bool = False
) -> list[dict[str, Any]]:
    """One training sample per turn with gold references propagated (upstream's train layout).

    Each sample is ``{id, problem, solution, image, img_height, img_width, dialogue_id, turn}``:
    ``problem`` is the question with each placeholder replaced by the referenced turn's gold box
    written as ``reference_format`` (default ``bbox=[x1, y1, x2, y2]``), ``solution`` a JSON
    string ``[{"bbox_2d": [...], "point_2d": [...]}]`` (the point is the centre of the largest
    circle inside the gold mask, or the box centre without one), ``image`` the bench-relative path.

    Args:
        bench: A built train split.
        reference_format: Format of a filled reference; ``{box}`` is the integer box list text.
        progress: Show a progress bar.

    Returns:
        The samples, in dialogue and turn order.
    """
    from tqdm import tqdm

    from ..geometry import rle_to_mask

    samples = []
    for dialogue in tqdm(bench.dialogues, desc="training samples", unit="dlg", disable=not progress):
        for turn in dialogue.turns:
            problem = turn.question
            for ref in turn.references:
                if ref.placeholder is None:
                    continue
                gold = dialogue.turns[ref.turn].gold_boxes[0]
                problem = problem.replace(ref.placeholder, reference_format.format(box=format_box(gold)))
            box = _int_box(turn.gold_boxes[0])
            point = inscribed_point(rle_to_mask(turn.gold_mask)) if turn.gold_mask is not None else None
            if point is None:
                point = ((box[0] + box[2]) // 2, (box[1] + box[3]) // 2)
            samples.append(
                {
                    "id": f"{dialogue.dialogue_id}-{turn.index}",
                    "dialogue_id": dialogue.dialogue_id,
                    "turn": turn.index,
                    "problem": problem,
                    "solution": json.dumps([{"bbox_2d": box, "point_2d": list(point)}]),
                    "image": dialogue.image.path,
                    "img_height": dialogue.image.height,
                    "img_width": dialogue.image.width,
                }
            )
    return samples


# --------------------------------------------------------------------------------------------
# A whole benchmark: every output split into one folder
# --------------------------------------------------------------------------------------------

BUILD_INFO_FILE = "build.json"


def build_benchmark(
    read_splits: Any,
    out: str | Path,
    *,
    benchmark: str,
    splits: Mapping[str, Sequence[str]],
    configs: Mapping[str, BuildConfig],
    source_info: Mapping[str, Any] | None = None,
    images: Literal["copy", "symlink"] = "copy",
    progress: bool = False,
) -> dict[str, Any]:
    """Build every output split into ``out/<split>/`` and describe the build in ``out/build.json``.

    Args:
        read_splits: ``callable(source_splits) -> iterable of SourceImage`` (a bound reader).
        out: Output folder.
        benchmark: Benchmark (Hub config) name, e.g. ``refcocoplus_multiturn``.
        splits: Output split -> source splits, e.g. ``{"test": ["testA", "testB"]}``.
        configs: Output split -> its build config.
        source_info: Provenance added to every manifest (reader, dataset, paths).
        images: ``copy`` or ``symlink`` the image files.
        progress: Show progress bars.

    Returns:
        The content of ``build.json``. A ``train`` split also gets ``train_samples.json``
        (``{"samples": [...]}``, gold references filled in; see :func:`training_samples`).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {"benchmark": benchmark, **dict(source_info or {}), "splits": {}}
    for split, source_splits in splits.items():
        config = configs[split]
        meta = {**dict(source_info or {}), "source_splits": list(source_splits)}
        built = build_split(read_splits(list(source_splits)), config, split, progress=progress, source_info=meta)
        bench = write_split(built, out / split, images=images, progress=progress)
        if split == "train":
            samples = training_samples(bench, progress=progress)
            (out / split / "train_samples.json").write_text(json.dumps({"samples": samples}) + "\n", encoding="utf-8")
        info["splits"][split] = {
            "source_splits": list(source_splits),
            "content_hash": bench.content_hash,
            "dialogues": len(bench),
            "turns": bench.num_turns,
            "turns_per_round": bench.manifest().turns_per_round,
            "issues": [i.message for i in built.issues],
            "config": asdict(config),
        }
    (out / BUILD_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info
