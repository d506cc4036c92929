"""GRPO training data: one sample per turn, as a ``datasets.Dataset`` that TRL's GRPOTrainer reads.

Two inputs are supported:

* a :class:`~regiondial_bench.schema.Bench` (e.g. the builder's train split), with gold references
  propagated: each placeholder becomes the referenced turn's gold box written ``bbox=[...]``
  (:func:`regiondial_bench.bench.build.training_samples`);
* the released training JSON (top-level key ``"samples"``, each with ``problem``, ``solution``,
  ``image`` and optional ``id``/``img_height``/``img_width``; UPSTREAM.md section 2.2).

Columns of the dataset:

===================  =============================================================================
``prompt``           conversational: system "You are a helpful assistant." + user training text
``image``            ``datasets.Image`` (TRL places it before the user text)
``problem``          question with inline ``bbox=[x1, y1, x2, y2]`` reference (the rewards read it)
``solution``         gold answer JSON string ``[{"bbox_2d": [...], "point_2d": [...]}]``
``id``               sample id (``<dialogue>-<turn>`` for benches)
``dialogue_id``      dialogue id (empty for released JSON)
``turn``             0-based turn index (-1 for released JSON)
``reference_problem``  problem of the referenced turn (empty when none): multi-round rollouts ask
                     it first and substitute the policy's own box
``reference_text``   the exact reference substring of ``problem`` that gets substituted
===================  =============================================================================

Frames: ``frame="squash-840"`` (default, as the released model was trained and as the
``regionreasoner-7b`` preset evaluates) resizes each image to 840×840 (bilinear, aspect not kept)
into ``cache_dir`` and rescales boxes, points and references to that frame; ``"original"`` keeps
original pixels.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..cache import cache_dir as user_cache_dir
from ..geometry import round_half_up
from ..prompts import DEFAULT_SYSTEM_PROMPT, REGIONREASONER_TRAINING_TEMPLATE
from ..protocol import format_box
from ..schema import Bench

SYSTEM_PROMPT = DEFAULT_SYSTEM_PROMPT
TRAINING_TEMPLATE = REGIONREASONER_TRAINING_TEMPLATE
"""The released training prompt (see :mod:`regiondial_bench.prompts`); the image goes before the text."""

FRAMES = ("squash-840", "original")
SQUASH_SIZE = 840
_REF_RE = re.compile(
    r"bbox\s*=\s*\[\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,"
    r"\s*(-?\d+(?:\.\d+)?)\s*\]"
)


def user_text(problem: str, template: str = TRAINING_TEMPLATE) -> str:
    """The user text of a training prompt: ``problem.lower().strip(".")`` in the template.

    >>> user_text("Find the dog near bbox=[1, 2, 3, 4].").splitlines()[0]
    'Please find "find the dog near bbox=[1, 2, 3, 4]" with bboxs and points.'
    """
    if "{question}" not in template:
        raise ValueError("the training template has no {question} slot")
    return template.replace("{question}", problem.lower().strip("."))


def conversation(problem: str, template: str = TRAINING_TEMPLATE) -> list[dict[str, str]]:
    """The conversational prompt TRL expects (the image is added by the trainer)."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_text(problem, template)},
    ]


def _scale(box: Sequence[float], size: tuple[int, int]) -> list[int]:
    w, h = size
    fx, fy = SQUASH_SIZE / w, SQUASH_SIZE / h
    return [
        round_half_up(box[0] * fx),
        round_half_up(box[1] * fy),
        round_half_up(box[2] * fx),
        round_half_up(box[3] * fy),
    ]


def _scale_problem(problem: str, size: tuple[int, int]) -> str:
    def repl(match: re.Match) -> str:
        return "bbox=" + format_box(_scale([float(v) for v in match.groups()], size))

    return _REF_RE.sub(repl, problem)


def _scale_solution(solution: str, size: tuple[int, int]) -> str:
    items = json.loads(solution)
    w, h = size
    for item in items:
        item["bbox_2d"] = _scale(item["bbox_2d"], size)
        if item.get("point_2d") is not None:
            x, y = item["point_2d"]
            item["point_2d"] = [round_half_up(x * SQUASH_SIZE / w), round_half_up(y * SQUASH_SIZE / h)]
    return json.dumps(items)


def _squash_image(source: Path, cache_dir: Path) -> str:
    from PIL import Image

    # keyed by the file's path, size and mtime: same-named images of different folders never
    # collide, and an edited image is squashed again
    stat = source.stat()
    key = hashlib.sha256(f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache_dir / f"{source.stem}-{key}_{SQUASH_SIZE}.png"
    if not target.exists():
        # written under a unique temporary name and renamed into place (atomic on one filesystem):
        # a process that sees ``target`` (another rank, another node on a shared filesystem, or a
        # later run after a kill) never reads a half-written PNG
        handle, temporary = tempfile.mkstemp(dir=cache_dir, prefix=f".{target.stem}.", suffix=".tmp")
        os.close(handle)
        try:
            with Image.open(source) as image:
                image.convert("RGB").resize((SQUASH_SIZE, SQUASH_SIZE), Image.BILINEAR).save(
                    temporary, format="PNG"
                )
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    return str(target)


def samples_from_bench(
    bench: Bench, *, frame: str = "squash-840", cache_dir: str | Path | None = None, progress: bool = True
) -> list[dict[str, Any]]:
    """Training samples of every turn of ``bench`` (gold references propagated).

    Args:
        bench: A bench with images on disk (``bench.root`` set, e.g. from ``Bench.load``).
        frame: ``"squash-840"`` or ``"original"`` (see the module docstring).
        cache_dir: Where squashed images are written (default: the user cache, per bench hash).
        progress: Show a progress bar.

    Returns:
        Sample dicts with the columns listed in the module docstring, minus ``prompt``.

    Raises:
        ValueError: Unknown frame, or a dialogue whose image is missing or has no size.
    """
    from tqdm import tqdm

    from ..bench.build import TRAIN_REFERENCE_FORMAT, training_samples

    if frame not in FRAMES:
        raise ValueError(f"unknown training frame {frame!r}; choose one of {list(FRAMES)}")
    by_id = {s["id"]: s for s in training_samples(bench)}
    if frame == "squash-840":
        cache = Path(cache_dir) if cache_dir is not None else user_cache_dir("train-840", bench.content_hash[7:23])
        cache.mkdir(parents=True, exist_ok=True)
    out: list[dict[str, Any]] = []
    for dialogue in tqdm(bench.dialogues, desc="training data", unit="dlg", disable=not progress):
        path = bench.image_path(dialogue)
        size = dialogue.image.size
        if path is None or not path.is_file():
            raise ValueError(
                f"dialogue {dialogue.dialogue_id}: image {path} not found; training needs the images"
            )
        if size is None:
            from PIL import Image

            with Image.open(path) as image:
                size = image.size
        image = _squash_image(path, cache) if frame == "squash-840" else str(path)
        problems: dict[int, str] = {}
        for turn in dialogue.turns:
            sample = by_id[f"{dialogue.dialogue_id}-{turn.index}"]
            problem, solution = sample["problem"], sample["solution"]
            if frame == "squash-840":
                problem, solution = _scale_problem(problem, size), _scale_solution(solution, size)
                items = json.loads(solution)  # scale the gold box from its float original (one rounding)
                items[0]["bbox_2d"] = _scale(turn.gold_boxes[0], size)
                solution = json.dumps(items)
            problems[turn.index] = problem
            reference_problem, reference_text = "", ""
            refs = [
                r for r in turn.references if r.placeholder is not None and r.placeholder in turn.question
            ]
            if refs and refs[0].turn < turn.index:  # self/forward references keep the gold box
                gold = dialogue.turns[refs[0].turn].gold_boxes[0]
                if frame == "squash-840":  # scale the integer box, as _scale_problem does
                    gold = _scale([round_half_up(v) for v in gold], size)
                reference_text = TRAIN_REFERENCE_FORMAT.format(box=format_box(gold))
                if reference_text in problem:
                    reference_problem = problems[refs[0].turn]
                else:
                    reference_text = ""
            out.append(
                {
                    "id": sample["id"],
                    "dialogue_id": dialogue.dialogue_id,
                    "turn": turn.index,
                    "problem": problem,
                    "solution": solution,
                    "image": image,
                    "reference_problem": reference_problem,
                    "reference_text": reference_text,
                }
            )
    return out


def samples_from_released_json(
    path: str | Path, *, image_root: str | Path | None = None
) -> list[dict[str, Any]]:
    """Samples of the released training JSON (``{"samples": [{problem, solution, image, ...}]}``).

    Args:
        path: The JSON file.
        image_root: Folder that relative ``image`` paths resolve against (default: the file's folder).

    Returns:
        Sample dicts (no multi-round metadata: the released format has none).

    Raises:
        ValueError: The file lacks the ``samples`` key or a sample lacks a required field.
    """
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "samples" not in data:
        raise ValueError(f"{path}: the released training JSON has a top-level key 'samples'; it is missing")
    root = Path(image_root) if image_root is not None else path.parent
    out = []
    for position, sample in enumerate(data["samples"]):
        missing = [k for k in ("problem", "solution", "image") if k not in sample]
        if missing:
            raise ValueError(f"{path}: sample {position} lacks {missing}")
        solution = (
            sample["solution"] if isinstance(sample["solution"], str) else json.dumps(sample["solution"])
        )
        image = Path(sample["image"])
        out.append(
            {
                "id": str(sample.get("id", position)),
                "dialogue_id": "",
                "turn": -1,
                "problem": sample["problem"],
                "solution": solution,
                "image": str(image if image.is_absolute() else root / image),
                "reference_problem": "",
                "reference_text": "",
            }
        )
    return out


def to_dataset(samples: list[dict[str, Any]], *, template: str = TRAINING_TEMPLATE) -> Any:
    """A ``datasets.Dataset`` with a conversational ``prompt`` and an ``Image`` column.

    >>> ds = to_dataset([{"id": "a", "dialogue_id": "d", "turn": 0, "problem": "Find it.",
    ...                   "solution": "[]", "image": "x.png", "reference_problem": "", "reference_text": ""}])
    >>> ds.column_names[:3], ds.features["image"].decode, ds["prompt"][0][0]["content"]
    (['id', 'dialogue_id', 'turn'], True, 'You are a helpful assistant.')
    """
    import datasets

    if not samples:
        raise ValueError("no training samples (the bench or JSON file is empty)")
    rows = [{**s, "prompt": conversation(s["problem"], template)} for s in samples]
    dataset = datasets.Dataset.from_list(rows)
    return dataset.cast_column("image", datasets.Image(decode=True))


def load_training_dataset(
    source: str | Path | Bench,
    *,
    frame: str = "squash-840",
    template: str = TRAINING_TEMPLATE,
    image_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    limit: int | None = None,
) -> Any:
    """Build the GRPO dataset from a bench (object or folder) or a released training JSON file.

    Args:
        source: A :class:`Bench`, a bench folder (``manifest.json`` inside) or a ``.json`` file.
        frame: Bench frame, ``"squash-840"`` or ``"original"`` (released JSON is used as is).
        template: User-text template with a ``{question}`` slot.
        image_root: Released JSON only: where relative image paths resolve.
        cache_dir: Bench only: where squashed images go.
        limit: Keep only the first ``limit`` samples (smoke runs).

    Returns:
        A ``datasets.Dataset`` (columns in the module docstring).
    """
    if isinstance(source, Bench):
        samples = samples_from_bench(source, frame=frame, cache_dir=cache_dir)
    else:
        path = Path(source)
        if path.is_dir():
            samples = samples_from_bench(Bench.load(path), frame=frame, cache_dir=cache_dir)
        elif path.suffix == ".json" and path.is_file():
            samples = samples_from_released_json(path, image_root=image_root)
        else:
            raise ValueError(
                f"training data {source} is neither a bench folder (with manifest.json) nor a released "
                "training .json file"
            )
    if limit is not None:
        samples = samples[:limit]
    return to_dataset(samples, template=template)
