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
``reference_chain``  the referenced turn and the turns it refers to in turn, nearest first: one
                     ``{id, problem, reference_text}`` per turn, ``reference_text`` being the
                     substring of that turn's problem that names the next turn of the chain (empty
                     at its end). Multi-round rollouts of depth d answer the first d of them,
                     farthest first (:mod:`regiondial_bench.training.rollouts`)
===================  =============================================================================

Frames: ``frame="squash-840"`` (default, as the released model was trained and as the
``regionreasoner-7b`` preset evaluates) resizes each image to 840×840 (bilinear, aspect not kept)
into ``cache_dir`` and rescales boxes, points and references to that frame; ``"original"`` keeps
original pixels.
"""

from __future__ import annotations

import hashlib
import json
import math
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

    from ..bench.build import training_samples

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
        out.extend(_dialogue_samples(dialogue, by_id, image, size if frame == "squash-840" else None))
    return out


def reference_rows(bench: Bench) -> list[dict[str, Any]]:
    """The samples of ``bench`` in its original frame without their images (``image`` is empty).

    What multi-round planning needs (questions, reference texts and chains) for a bench whose
    images are not at hand, e.g. the official question files (``benchmarks/multi_round_aux.py``).
    """
    from ..bench.build import training_samples

    by_id = {s["id"]: s for s in training_samples(bench)}
    return [row for dialogue in bench.dialogues for row in _dialogue_samples(dialogue, by_id, "", None)]


def _dialogue_samples(dialogue: Any, by_id: dict[str, dict], image: str,
                      squash_from: tuple[int, int] | None) -> list[dict[str, Any]]:
    """One dialogue's samples; ``squash_from`` (the image size) rescales them to 840x840, None keeps them."""
    from ..bench.build import TRAIN_REFERENCE_FORMAT

    out: list[dict[str, Any]] = []
    problems: dict[int, str] = {}
    links: dict[int, tuple[int, str]] = {}  # turn -> (the turn it refers to, the reference text)
    for turn in dialogue.turns:
        sample = by_id[f"{dialogue.dialogue_id}-{turn.index}"]
        problem, solution = sample["problem"], sample["solution"]
        if squash_from is not None:
            problem, solution = _scale_problem(problem, squash_from), _scale_solution(solution, squash_from)
            items = json.loads(solution)  # scale the gold box from its float original (one rounding)
            items[0]["bbox_2d"] = _scale(turn.gold_boxes[0], squash_from)
            solution = json.dumps(items)
        problems[turn.index] = problem
        reference_problem, reference_text = "", ""
        refs = [r for r in turn.references if r.placeholder is not None and r.placeholder in turn.question]
        if refs and refs[0].turn < turn.index:  # self/forward references keep the gold box
            gold = dialogue.turns[refs[0].turn].gold_boxes[0]
            if squash_from is not None:  # scale the integer box, as _scale_problem does
                gold = _scale([round_half_up(v) for v in gold], squash_from)
            reference_text = TRAIN_REFERENCE_FORMAT.format(box=format_box(gold))
            if reference_text in problem:
                reference_problem = problems[refs[0].turn]
                links[turn.index] = (refs[0].turn, reference_text)
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
                "reference_chain": _chain(dialogue.dialogue_id, turn.index, links, problems),
            }
        )
    return out


def _chain(dialogue_id: str, turn: int, links: dict[int, tuple[int, str]], problems: dict[int, str]) -> list[dict]:
    """The turns ``turn`` refers to, nearest first; every link points backward, so it ends."""
    chain = []
    while turn in links:
        turn = links[turn][0]
        chain.append({
            "id": f"{dialogue_id}-{turn}",
            "problem": problems[turn],
            "reference_text": links[turn][1] if turn in links else "",
        })
    return chain


def samples_from_released_json(
    path: str | Path, *, image_root: str | Path | None = None
) -> list[dict[str, Any]]:
    """Samples of the released training JSON (``{"samples": [{problem, solution, image, ...}]}``).

    The layout is upstream's (UPSTREAM.md section 2.2, ``lmsdss/regionreasoner_data``, fetched with
    ``regiondial bench fetch --training``): ``problem`` a string with inline ``bbox=[...]``
    references, ``solution`` a JSON string (or list) of ``{"bbox_2d": [4 numbers], "point_2d":
    [2 numbers]}``, ``image`` a path relative to ``image_root`` (or ``{"path": ...}``, as a
    ``datasets.Image`` serialises); ``id`` is kept, other keys (``img_height``, ``img_width``) are
    not used. Every sample is checked before training starts and every image must exist.

    Args:
        path: The JSON file.
        image_root: Folder that relative ``image`` paths resolve against (default: the file's folder).

    Returns:
        Sample dicts (no multi-round metadata: the released format has none).

    Raises:
        ValueError: Not JSON, no ``samples`` list, a sample without a usable ``problem``,
            ``solution`` or ``image`` (named by position and id), or missing image files.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    except (UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"{path}: not a readable JSON file ({type(exc).__name__})") from exc
    if not isinstance(data, dict) or "samples" not in data:
        raise ValueError(f"{path}: the released training JSON has a top-level key 'samples'; it is missing")
    if not isinstance(data["samples"], list):
        raise ValueError(f"{path}: 'samples' must be a list, got {type(data['samples']).__name__}")
    root = Path(image_root) if image_root is not None else path.parent
    out = []
    missing_images: list[str] = []
    for position, sample in enumerate(data["samples"]):
        where = f"{path}: sample {position}"
        if not isinstance(sample, dict):
            raise ValueError(f"{where} is a {type(sample).__name__}, not an object")
        if "id" in sample:
            where += f" (id {str(sample['id'])[:80]!r})"
        missing = [k for k in ("problem", "solution", "image") if k not in sample]
        if missing:
            raise ValueError(f"{where} lacks {missing}")
        if not isinstance(sample["problem"], str) or not sample["problem"].strip():
            raise ValueError(f"{where}: 'problem' must be a non-empty string")
        solution = _checked_solution(sample["solution"], where)
        image = _image_path(sample["image"], where)
        image = image if image.is_absolute() else root / image
        if not image.is_file():
            missing_images.append(str(image))
        out.append(
            {
                "id": str(sample.get("id", position)),
                "dialogue_id": "",
                "turn": -1,
                "problem": sample["problem"],
                "solution": solution,
                "image": str(image),
                "reference_problem": "",
                "reference_text": "",
                "reference_chain": [],
            }
        )
    if missing_images:
        raise ValueError(
            f"{path}: {len(missing_images)} of {len(out)} images not found under {root} (first: "
            f"{', '.join(missing_images[:3])}); set data.image_root to the folder the image paths are relative "
            "to (`regiondial bench fetch --training` downloads the images beside the JSON)"
        )
    return out


def _checked_solution(solution: Any, where: str) -> str:
    """The gold answer as a JSON string, checked: a non-empty list of objects with a 4-number ``bbox_2d``."""
    items = solution
    if isinstance(solution, str):
        try:
            items = json.loads(solution)
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"{where}: 'solution' is not a JSON list ({exc})") from exc
    if not isinstance(items, list) or not items:
        raise ValueError(f"{where}: 'solution' must be a non-empty list of {{bbox_2d, point_2d}} objects")
    for item in items:
        box = item.get("bbox_2d") if isinstance(item, dict) else None
        point = item.get("point_2d") if isinstance(item, dict) else None
        if not _numbers(box, 4) or (point is not None and not _numbers(point, 2)):
            raise ValueError(f"{where}: 'solution' item {str(item)[:120]} needs bbox_2d of 4 numbers "
                             "(and point_2d of 2 numbers when given)")
    return solution if isinstance(solution, str) else json.dumps(solution)


def _numbers(value: Any, count: int) -> bool:
    return (isinstance(value, list) and len(value) == count
            and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value))


def _image_path(image: Any, where: str) -> Path:
    if isinstance(image, dict) and isinstance(image.get("path"), str):
        image = image["path"]
    if not isinstance(image, str) or not image:
        raise ValueError(f"{where}: 'image' must be a path (string or {{'path': ...}}), got {type(image).__name__}")
    return Path(image)


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
    rows = [{**s, "reference_chain": s.get("reference_chain", []), "prompt": conversation(s["problem"], template)}
            for s in samples]
    dataset = datasets.Dataset.from_list(rows)
    text = datasets.Value("string")
    # typed even when every chain is empty (Arrow would infer a list of nulls)
    dataset = dataset.cast_column("reference_chain", [{"id": text, "problem": text, "reference_text": text}])
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
