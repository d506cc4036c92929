"""Export benches as a Hugging Face dataset, publish them, and load them back.

An exported folder is exactly what :func:`publish` pushes::

    README.md                                   # dataset card; YAML ``configs`` per benchmark
    <config>/<split>-00000-of-0000N.parquet     # one row per dialogue, Image feature, nested turns
    bench/<config>/<split>/manifest.json        # our bench files (content hash) ...
    bench/<config>/<split>/dialogues.jsonl
    official/<config>/<split>.json              # ... and the official question-file layout

One config per benchmark (``refcocoplus_multiturn``, ``refcocog_multiturn``); splits are named
per the Hub's rules (``^\\w+(\\.\\w+)*$``). ``datasets.load_dataset(<folder or repo>, <config>)``
reads it; :func:`load_hub_bench` turns it back into a :class:`~regiondial_bench.schema.Bench`
(same content hash), writing the images into a cache folder so ``ImageRef.path`` resolves.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..cache import cache_dir
from ..schema import BENCH_FILE, MANIFEST_FILE, Bench, Dialogue, Manifest, turns_per_round
from .build import BUILD_INFO_FILE, official_questions
from .sources.upstream import RELEASED_IMAGES_SUFFIX, RELEASED_SUFFIX, released_files

MAX_SHARD_BYTES = 500 * 1024 * 1024
"""Shard size limit, as ``push_to_hub``'s default ``max_shard_size="500MB"``."""
_SPLIT_RE = re.compile(r"^\w+(\.\w+)*$")
_CONFIG_RE = re.compile(r"^[A-Za-z0-9][\w.-]*$")

BenchSet = dict[str, dict[str, Bench]]
"""config name -> split name -> bench."""


# --------------------------------------------------------------------------------------------
# Bench <-> datasets rows
# --------------------------------------------------------------------------------------------


def hub_features() -> Any:
    """The ``datasets.Features`` of an exported config: one row per dialogue, turns nested."""
    from datasets import Features, Image, List, Value

    turn = {
        "index": Value("int32"),
        "round": Value("int32"),
        "question": Value("string"),
        "gold_boxes": List(List(Value("float64"))),
        "gold_mask": {"size": List(Value("int32")), "counts": Value("string")},
        "gold_point": List(Value("float64")),
        "context_from_turn": Value("int32"),
        "references": List({"turn": Value("int32"), "placeholder": Value("string"), "upstream_fill": Value("bool")}),
        "ann_ids": List(Value("int64")),
        "category": Value("string"),
    }
    return Features(
        {
            "dialogue_id": Value("string"),
            "image": Image(),
            "image_path": Value("string"),
            "image_id": Value("int64"),
            "file_name": Value("string"),
            "width": Value("int32"),
            "height": Value("int32"),
            "num_turns": Value("int32"),
            "turns": List(turn),
            "source": Value("string"),
        }
    )


def dialogue_row(dialogue: Dialogue, image_bytes: bytes | None) -> dict[str, Any]:
    """One dataset row for a dialogue (``source`` as a JSON string)."""
    turns = []
    for turn in dialogue.turns:
        data = turn.model_dump(mode="json")
        data["round"] = turn.round
        data["context_from_turn"] = turn.references[0].turn if turn.references else None
        turns.append(data)
    image = dialogue.image
    return {
        "dialogue_id": dialogue.dialogue_id,
        "image": {"bytes": image_bytes, "path": image.file_name or (Path(image.path).name if image.path else None)}
        if image_bytes is not None
        else None,
        "image_path": image.path,
        "image_id": image.coco_id,
        "file_name": image.file_name,
        "width": image.width,
        "height": image.height,
        "num_turns": len(dialogue.turns),
        "turns": turns,
        "source": json.dumps(dialogue.source, sort_keys=True),
    }


def row_dialogue(row: Mapping[str, Any]) -> Dialogue:
    """Rebuild the :class:`Dialogue` of a row written by :func:`dialogue_row`."""
    turns = []
    for turn in row["turns"]:
        data = {k: v for k, v in turn.items() if k not in ("round", "context_from_turn")}
        turns.append(data)
    return Dialogue.model_validate(
        {
            "dialogue_id": row["dialogue_id"],
            "image": {
                "path": row["image_path"],
                "width": row["width"],
                "height": row["height"],
                "coco_id": row["image_id"],
                "file_name": row["file_name"],
            },
            "turns": turns,
            "source": json.loads(row["source"]) if row["source"] else {},
        }
    )


def bench_to_dataset(bench: Bench) -> Any:
    """A ``datasets.Dataset`` of the bench, images embedded.

    Raises:
        FileNotFoundError: When a dialogue's image file is missing (the message names it).
    """
    from datasets import Dataset

    rows = []
    for dialogue in bench:
        path = bench.image_path(dialogue)
        if path is None or not path.is_file():
            raise FileNotFoundError(f"bench {bench.name!r}: image of {dialogue.dialogue_id} is missing: {path}")
        rows.append(dialogue_row(dialogue, path.read_bytes()))
    return Dataset.from_list(rows, features=hub_features())


def _num_shards(bench: Bench) -> int:
    total = sum(bench.image_path(d).stat().st_size for d in bench) + 4096 * bench.num_turns  # type: ignore[union-attr]
    return max(1, math.ceil(total / MAX_SHARD_BYTES))


# --------------------------------------------------------------------------------------------
# Collecting benches to export
# --------------------------------------------------------------------------------------------


def config_name(name: str) -> str:
    """A Hub config name for a bench name (``data`` is reserved by ``push_to_hub``).

    >>> config_name("refcoco+ multi")
    'refcoco__multi'
    """
    name = re.sub(r"[^\w.-]", "_", name)
    if name in ("data", "default") or not _CONFIG_RE.match(name):
        raise ValueError(f"{name!r} cannot be a Hub config name; rename the bench")
    return name


def collect_benches(paths: Sequence[str | Path]) -> BenchSet:
    """Read build outputs (``build.json`` + split folders) or plain bench folders.

    A build output becomes one config (its benchmark name) with its split folders; a plain bench
    folder becomes the config named after the bench with the split ``test``.

    Raises:
        FileNotFoundError: When a path is neither layout.
        ValueError: When two inputs claim the same config and split, or a split name is invalid.
    """
    benches: BenchSet = {}
    for raw in paths:
        path = Path(raw)
        info_file = path / BUILD_INFO_FILE
        if info_file.is_file():
            info = json.loads(info_file.read_text(encoding="utf-8"))
            config = config_name(info["benchmark"])
            splits = {split: Bench.load(path / split) for split in info["splits"]}
        elif (path / MANIFEST_FILE).is_file():
            bench = Bench.load(path)
            config = config_name(bench.name)
            splits = {"test": bench}
        else:
            raise FileNotFoundError(
                f"{path} is not a build output ({BUILD_INFO_FILE} + split folders) or a bench folder "
                f"({MANIFEST_FILE} + {BENCH_FILE} + images/)"
            )
        for split, bench in splits.items():
            if not _SPLIT_RE.match(split):
                raise ValueError(f"split name {split!r} breaks the Hub's rule ^\\w+(\\.\\w+)*$")
            if split in benches.get(config, {}):
                raise ValueError(f"two inputs give config {config!r} split {split!r}")
            benches.setdefault(config, {})[split] = bench
    if not benches:
        raise ValueError("no bench to export")
    return benches


# --------------------------------------------------------------------------------------------
# Card and export
# --------------------------------------------------------------------------------------------


def _size_category(n: int) -> str:
    for limit, label in ((1000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return label
    return "100K<n<1M"


def dataset_card(benches: BenchSet, repo_id: str | None = None) -> str:
    """The README.md of an export: YAML header (configs, licence, tasks) and a Markdown body."""
    import yaml

    configs = []
    for i, (config, splits) in enumerate(benches.items()):
        entry: dict[str, Any] = {
            "config_name": config,
            "data_files": [{"split": split, "path": f"{config}/{split}-*"} for split in splits],
        }
        if i == 0:
            entry["default"] = True
        configs.append(entry)
    total = sum(len(b) for splits in benches.values() for b in splits.values())
    header = {
        "pretty_name": "RegionDial-Bench",
        "license": "cc-by-4.0",
        "language": ["en"],
        "task_categories": ["object-detection", "image-segmentation"],
        "tags": ["referring-expression-comprehension", "multi-turn", "visual-grounding", "regiondial-bench"],
        "size_categories": [_size_category(total)],
        "configs": configs,
    }
    synthetic = all(
        (b.source.get("reader") == "synthetic") for splits in benches.values() for b in splits.values()
    )
    lines = ["---", yaml.safe_dump(header, sort_keys=False).rstrip(), "---", "", "# RegionDial-Bench", ""]
    lines += [
        "Multi-round referring dialogues: each row is one image and its ordered turns; a later turn may refer "
        "back to an earlier turn's object through the placeholder `<box>{context_bbox}</box>`, which the "
        "evaluator fills with the box answered (or, in `gold` mode, annotated) for that turn.",
        "",
        "```python",
        "from datasets import load_dataset",
        f"ds = load_dataset({(repo_id or '<repo or folder>')!r}, {next(iter(benches))!r}, split='test')",
        "```",
        "",
        "With the `regiondial-bench` package: "
        f"`regiondial evaluate --bench hf:{repo_id or 'org/name'}:{next(iter(benches))} --model ...`.",
        "",
        "## Provenance and licences",
        "",
    ]
    if synthetic:
        lines += [
            "Procedurally generated scenes (coloured shapes) from the `regiondial-bench` synthetic source; no "
            "third-party images or annotations. Released under CC BY 4.0.",
            "",
        ]
    else:
        lines += [
            "Built by `regiondial build` from RefCOCO+ (UNC splits) / RefCOCOg (UMD splits) referring expressions "
            "on MS-COCO train2014 images. COCO annotations are licensed CC BY 4.0; COCO images remain under the "
            "Flickr terms of their owners (see the COCO terms of use); the RefCOCO+/RefCOCOg expressions keep the "
            "terms of their original release (lichengunc/refer). Cite COCO, RefCOCO+/RefCOCOg and RegionReasoner "
            "(arXiv 2602.03733) when you use this data.",
            "",
        ]
    lines += ["| config | split | dialogues | turns | content hash | sources |", "|---|---|---|---|---|---|"]
    for config, splits in benches.items():
        for split, bench in splits.items():
            src = bench.source
            origin = f"{src.get('reader', '?')} {src.get('dataset', '')} {'+'.join(src.get('source_splits', []))}"
            lines.append(f"| {config} | {split} | {len(bench)} | {bench.num_turns} | `{bench.content_hash}` | {origin.strip()} |")
    lines += ["", "Build settings (seed, targets, reference rate) are in each `bench/<config>/<split>/manifest.json`.", ""]
    lines += ["## Turns per round", ""]
    for config, splits in benches.items():
        for split, bench in splits.items():
            tpr = turns_per_round(bench.dialogues)
            lines += [f"**{config} / {split}**", "", "| " + " | ".join(f"R{k}" for k in tpr) + " |",
                      "|" + "---|" * len(tpr), "| " + " | ".join(str(v) for v in tpr.values()) + " |", ""]
    lines += [
        "## Fields",
        "",
        "| field | meaning |",
        "|---|---|",
        "| `dialogue_id` | unique id, `<split>-<image id>` (`<split>-<source split>-<image id>` when a split "
        "merges source splits, e.g. `test-testA-<id>`) |",
        "| `image` | the image (embedded bytes) |",
        "| `image_path`, `file_name`, `image_id`, `width`, `height` | bench-relative path, COCO file name and id, size |",
        "| `turns[].index` / `round` | 0-based turn index / 1-based round |",
        "| `turns[].question` | the question; may contain `<box>{context_bbox}</box>` |",
        "| `turns[].gold_boxes` | gold boxes, xyxy in original pixels |",
        "| `turns[].gold_mask` | gold mask as COCO RLE `{size: [h, w], counts}` (from COCO polygons) |",
        "| `turns[].references` / `context_from_turn` | the earlier turn whose box fills the placeholder |",
        "| `turns[].ann_ids`, `category` | COCO annotation id and category |",
        "| `source` | JSON: source dataset, split, image id and the relation word of each rewritten turn |",
        "",
        "`bench/` holds the same bench as `manifest.json` + `dialogues.jsonl` (with its content hash); "
        "`official/` holds it in the official RegionDial question-file layout (`image_id`, "
        "`conversational_turns[{question, bboxes, context_from_turn}]`, `image_path`).",
        "",
        "## Evaluation protocol",
        "",
        "Each turn is one independent single-image request with no dialogue memory; the only state carried "
        "across turns is the referenced box written into the question as `[x1, y1, x2, y2]` (original pixels). "
        "Reference modes: `predicted` (the model's own earlier answer; the marker `[no region]` when that turn "
        "gave no box, never the gold box), `gold` (teacher-forced gold boxes) and `upstream` (the official "
        "evaluator: the model's answer, else the gold box). "
        "Per round: AP50 (a turn scores when any predicted box has IoU > 0.5 with the gold box), gIoU (mean "
        "per-turn mask IoU) and cIoU (summed intersections over summed unions); the all-turn average includes "
        "rounds 8-12.",
        "",
    ]
    return "\n".join(lines)


def export_hub_folder(benches: BenchSet, out: str | Path, *, repo_id: str | None = None, progress: bool = False) -> Path:
    """Write the folder :func:`publish` pushes (see the module docstring for the layout).

    Args:
        benches: config -> split -> bench (images must be present under each bench root).
        out: Destination folder; must be empty or absent.
        repo_id: Named in the card's usage example.
        progress: Show progress bars.

    Returns:
        ``out`` as a Path.
    """
    from tqdm import tqdm

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"export folder {out} is not empty")
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(c, s, b) for c, splits in benches.items() for s, b in splits.items()]
    for config, split, bench in tqdm(jobs, desc="export", unit="split", disable=not progress):
        dataset = bench_to_dataset(bench)
        shards = _num_shards(bench)
        (out / config).mkdir(exist_ok=True)
        for index in range(shards):
            shard = dataset.shard(num_shards=shards, index=index, contiguous=True)
            shard.to_parquet(str(out / config / f"{split}-{index:05d}-of-{shards:05d}.parquet"))
        bench_dir = out / "bench" / config / split
        bench_dir.mkdir(parents=True)
        shutil.copyfile(bench.root / BENCH_FILE, bench_dir / BENCH_FILE)  # type: ignore[operator]
        shutil.copyfile(bench.root / MANIFEST_FILE, bench_dir / MANIFEST_FILE)  # type: ignore[operator]
        (out / "official" / config).mkdir(parents=True, exist_ok=True)
        (out / "official" / config / f"{split}.json").write_text(
            json.dumps(official_questions(bench), indent=1) + "\n", encoding="utf-8"
        )
    (out / "README.md").write_text(dataset_card(benches, repo_id), encoding="utf-8")
    return out


def publish(
    paths: Sequence[str | Path],
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    dry_run: str | Path | None = None,
    progress: bool = False,
) -> Path:
    """Publish benches to the Hub, or with ``dry_run`` only write the folder that would be pushed.

    The data goes up with ``Dataset.push_to_hub`` (one call per config and split, with the same
    shard count as the dry run); the card, ``bench/`` and ``official/`` follow with
    ``HfApi.upload_folder``. The token comes from ``token``, ``HF_TOKEN`` or ``huggingface-cli login``.

    Args:
        paths: Build outputs or bench folders (see :func:`collect_benches`).
        repo_id: ``org/name`` of the dataset repo.
        private: Create the repo private.
        token: Hub token; None uses the usual login.
        dry_run: Write the export here and push nothing.
        progress: Show progress bars.

    Returns:
        The export folder (the dry-run folder, or a temporary one that was pushed).
    """
    if not re.match(r"^[\w.-]+/[\w.-]+$", repo_id):
        raise ValueError(f"--repo must look like org/name, got {repo_id!r}")
    benches = collect_benches(paths)
    if dry_run is not None:
        return export_hub_folder(benches, dry_run, repo_id=repo_id, progress=progress)
    from huggingface_hub import HfApi

    folder = export_hub_folder(benches, tempfile.mkdtemp(prefix="regiondial-publish-"), repo_id=repo_id, progress=progress)
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    for i, (config, splits) in enumerate(benches.items()):
        for split, bench in splits.items():
            bench_to_dataset(bench).push_to_hub(
                repo_id,
                config_name=config,
                split=split,
                set_default=True if i == 0 else None,
                private=private,
                token=token,
                num_shards=_num_shards(bench),
                commit_message=f"Add {config}/{split} ({bench.content_hash})",
            )
    api.upload_folder(
        repo_id=repo_id,
        repo_type="dataset",
        folder_path=str(folder),
        allow_patterns=["README.md", "bench/**", "official/**"],
        commit_message="Dataset card, bench files and official question layout",
    )
    return folder


# --------------------------------------------------------------------------------------------
# Loading back
# --------------------------------------------------------------------------------------------


def parse_hub_spec(spec: str) -> tuple[str, str | None, str | None, bool]:
    """``hf:org/name[:config[:split]]`` or a local folder -> ``(path, config, split, is_hub)``.

    >>> parse_hub_spec("hf:org/bench:refcocog_multiturn")
    ('org/bench', 'refcocog_multiturn', None, True)
    >>> parse_hub_spec("exports/bench")
    ('exports/bench', None, None, False)
    """
    if spec.startswith("hf:"):
        parts = spec[3:].split(":")
        if not parts[0] or len(parts) > 3 or not re.match(r"^[\w.-]{1,96}/[\w.-]{1,96}\Z", parts[0]):
            shown = spec if len(spec) <= 120 else spec[:120] + f"... ({len(spec)} characters)"
            raise ValueError(f"expected hf:org/name[:config[:split]], got {shown!r}")
        parts += [None] * (3 - len(parts))  # type: ignore[list-item]
        return parts[0], parts[1] or None, parts[2] or None, True
    return spec, None, None, False


def default_cache_dir() -> Path:
    """Where loaded Hub benches are materialised: ``$REGIONDIAL_CACHE_DIR`` (or ``$REGIONDIAL_CACHE``), else ``~/.cache/regiondial_bench``."""
    return cache_dir("hub")


def _manifest_for(path: str, config: str, split: str, is_hub: bool) -> Manifest | None:
    rel = f"bench/{config}/{split}/{MANIFEST_FILE}"
    if not is_hub:
        file = Path(path) / rel
        return Manifest.model_validate_json(file.read_text(encoding="utf-8")) if file.is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        file = hf_hub_download(path, rel, repo_type="dataset")
    except Exception:  # an export without bench files is still loadable; the hash is then unchecked
        return None
    return Manifest.model_validate_json(Path(file).read_text(encoding="utf-8"))


def _cache_destination(root: Path, image_path: str, spec: str) -> Path:
    """Where an image row is written: inside ``root``; rows are data and may not name other files."""
    dest = root / image_path
    if Path(image_path).is_absolute() or not dest.resolve().is_relative_to(root.resolve()):
        raise ValueError(
            f"{spec}: image_path {image_path!r} is not a relative path inside the bench; refusing to write it"
        )
    return dest


def load_hub_bench(
    spec: str,
    *,
    cache_dir: str | Path | None = None,
    verify: bool = True,
    config: str | None = None,
    split: str | None = None,
) -> Bench:
    """Load an exported bench from the Hub (``hf:org/name[:config[:split]]``) or a local export.

    The config defaults to the card's default, the split to ``test`` (or the only split). Images
    are written under ``<cache>/<key>/`` (see :func:`default_cache_dir`) with the bench files, so
    ``Bench.image_path`` resolves and ``Bench.load`` works on that folder too.

    Args:
        spec: The Hub spec or a local folder written by :func:`export_hub_folder`.
        cache_dir: Override the cache root.
        verify: Check the content hash against the exported manifest when there is one.
        config: The config, for a local folder (a Hub spec names it in ``spec``).
        split: The split, likewise.

    Returns:
        The bench, rooted at its cache folder.

    Raises:
        FileNotFoundError: When a local folder is not an export.
        ValueError: For a bad spec, an unknown config or split, or a hash mismatch.
    """
    import datasets

    path, spec_config, spec_split, is_hub = parse_hub_spec(spec)
    config, split = config or spec_config, split or spec_split
    if not is_hub and not (Path(path) / "README.md").is_file():
        raise FileNotFoundError(f"{path} is not an exported bench folder (README.md with configs is missing)")
    try:
        if config is None:
            config = datasets.get_dataset_default_config_name(path)
            if config is None:
                names = datasets.get_dataset_config_names(path)
                if len(names) != 1:
                    raise ValueError(f"{spec}: name a config, one of {names} (hf:org/name:<config>)")
                config = names[0]
        # datasets caches a local folder by its name, config and file patterns, not by content: a
        # re-exported folder of the same name would load the old rows, so a local export is always reread
        reread = {} if is_hub else {"download_mode": "force_redownload"}
        dataset_dict = datasets.load_dataset(path, config, **reread)
    except ValueError as exc:
        if str(exc).startswith(f"{spec}: "):
            raise
        raise ValueError(f"{spec}: cannot load config {config!r}: {_one_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - a malformed card, unreadable parquet, no network: one line
        raise ValueError(f"{spec}: cannot read the dataset ({_one_line(exc)})") from None
    if split is None:
        split = "test" if "test" in dataset_dict else next(iter(dataset_dict)) if len(dataset_dict) == 1 else None
        if split is None:
            raise ValueError(f"{spec}: name a split, one of {list(dataset_dict)} (hf:org/name:{config}:<split>)")
    if split not in dataset_dict:
        raise ValueError(f"{spec}: config {config!r} has no split {split!r}; it has {list(dataset_dict)}")
    missing = [c for c in hub_features() if c not in dataset_dict[split].column_names]
    if missing:
        raise ValueError(f"{spec}: config {config!r} split {split!r} is not an exported bench: it lacks the "
                         f"columns {', '.join(missing)} (it has {', '.join(dataset_dict[split].column_names)[:200]})")
    rows = dataset_dict[split].cast_column("image", datasets.Image(decode=False))

    key = hashlib.sha256(f"{Path(path).resolve() if not is_hub else path}:{config}:{split}".encode()).hexdigest()[:16]
    root = Path(cache_dir) / "hub" if cache_dir is not None else default_cache_dir()
    safe_name = re.sub(r"[^\w.-]", "_", Path(path).name)
    root = root / f"{safe_name}-{config}-{split}-{key}"
    dialogues = []
    for index, row in enumerate(rows):
        try:
            if not isinstance(row.get("turns"), list):
                raise TypeError(f"turns is {type(row.get('turns')).__name__}, not a list")
            dialogue = row_dialogue(row)
        except (KeyError, TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            raise ValueError(f"{spec}: row {index} of {config}/{split} is not an exported dialogue "
                             f"({_one_line(exc)})") from None
        dialogues.append(dialogue)
        image = row["image"]
        if dialogue.image.path and image and image.get("bytes"):
            dest = _cache_destination(root, dialogue.image.path, spec)
            if not dest.is_file() or dest.stat().st_size != len(image["bytes"]):
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(image["bytes"])
    manifest = _manifest_for(path, config, split, is_hub)
    bench = Bench(
        dialogues,
        name=manifest.name if manifest else config,
        version=manifest.version if manifest else "1",
        root=root,
        source=(manifest.source if manifest else {}) | {"hub": spec, "config": config, "split": split},
        issues=manifest.issues if manifest else None,
    )
    if verify and manifest is not None and bench.content_hash != manifest.content_hash:
        raise ValueError(
            f"{spec}: content hash {bench.content_hash} differs from the exported manifest's {manifest.content_hash}"
        )
    bench.save(root, created_by=f"regiondial load {spec}")
    return bench


# --------------------------------------------------------------------------------------------
# The released data (lmsdss/regionreasoner_test_data, lmsdss/regionreasoner_data)
# --------------------------------------------------------------------------------------------

RELEASED_TEST_DATA = "lmsdss/regionreasoner_test_data"
"""The Hub dataset holding upstream's test files: ``raw/<config>_multi_turn.json`` (questions + dense
masks) and ``raw/<config>_test_multi_bbox_images/<image id>.jpg`` (the benchmark's images)."""
RELEASED_CONFIGS = ("refcocoplus", "refcocog")
RELEASED_TRAINING_DATA = "lmsdss/regionreasoner_data"
"""The Hub dataset holding upstream's training data: ``regionreasoner_train.json`` (``{"samples": [...]}``,
UPSTREAM.md 2.2) and the images its samples name."""
TRAINING_FILE = "regionreasoner_train.json"
_REVISION = re.compile(r"[\w.-]+(/[\w.-]+)*")
_COMMIT = re.compile(r"[0-9a-f]{40}")


class HubCacheError(ValueError):
    """The Hub cache hands out a folder that is not one of its snapshots."""


class HubClient:
    """The ``huggingface_hub`` call the fetchers make; tests pass a fake with the same shape."""

    def snapshot_download(self, **kwargs: Any) -> str:
        """``huggingface_hub.snapshot_download``, refusing a cached snapshot outside the cache.

        Offline, the library turns a branch name into a commit through the cache's ``refs/<branch>``
        file and returns ``snapshots/<its content>``; a ref holding ``../..`` would make any folder
        on the machine pass for the pinned snapshot.

        Raises:
            HubCacheError: the folder is not ``.../snapshots/<40-hex commit>``.
        """
        from huggingface_hub import snapshot_download

        folder = snapshot_download(**kwargs)
        if kwargs.get("local_dir") is None:
            path = Path(os.path.normpath(folder))
            if path.parent.name != "snapshots" or not _COMMIT.fullmatch(path.name):
                raise HubCacheError(
                    f"the Hub cache gives {str(folder)[:200]!r} for {kwargs.get('repo_id')}@"
                    f"{kwargs.get('revision') or 'main'}, which is not one of its snapshot folders (a damaged or "
                    "forged refs/ file?); delete that repo's folder in the Hub cache and fetch it again")
        return folder


def check_revision(revision: str | None) -> str | None:
    """``revision`` when it is a plain branch, tag or commit name (it becomes a path in the Hub cache).

    Raises:
        ValueError: it could name another folder (``..``, an absolute path) or is not a name.
    """
    if revision is None:
        return None
    if not (isinstance(revision, str) and len(revision) <= 200 and _REVISION.fullmatch(revision)) \
            or ".." in revision.split("/"):
        raise ValueError(f"revision {str(revision)[:80]!r} is not a branch, tag or commit name")
    return revision


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def _snapshot(client: HubClient, kwargs: dict[str, Any], progress: Any) -> str:
    """The snapshot folder: downloaded, or from the cache when the Hub cannot be reached."""
    try:
        return client.snapshot_download(**kwargs)
    except HubCacheError:
        raise
    except Exception as online_error:  # noqa: BLE001 - no network, Hub down, offline mode: try the cache
        try:
            folder = client.snapshot_download(**kwargs, local_files_only=True)
        except HubCacheError:
            raise
        except Exception:  # noqa: BLE001 - not cached either: say how to get it
            where = f"{kwargs['repo_id']}@{kwargs.get('revision') or 'default branch'}"
            raise FileNotFoundError(
                f"cannot fetch {where} ({_one_line(online_error)}) and it is not in the Hub cache; run "
                "'regiondial bench fetch' once with network access (or copy the files and pass their folder "
                "as --bench)"
            ) from None
    if progress:
        progress(f"the Hub is unreachable; using the cached snapshot {folder}")
    return folder


def fetch_released(
    repo_id: str = RELEASED_TEST_DATA,
    *,
    revision: str | None = None,
    configs: Sequence[str] | None = None,
    images: bool = True,
    cache_dir: str | Path | None = None,
    local_dir: str | Path | None = None,
    client: HubClient | None = None,
    progress: Any = None,
) -> dict[str, Path]:
    """Download (or find in the Hub cache) the released ``*_multi_turn.json`` files and their images.

    Uses ``huggingface_hub.snapshot_download`` with ``allow_patterns``, so only the named configs'
    files come down (``raw/<config>_multi_turn.json`` and, with ``images``, the folder
    ``raw/<config>_test_multi_bbox_images/``), into the usual Hub cache (``HF_HOME``) or
    ``local_dir``; a second call is served from it. When the Hub cannot be reached (or
    ``HF_HUB_OFFLINE=1``), the cached snapshot of that revision is used; without one the error
    says how to get it. A bench loaded from a returned file finds its images beside it.

    Args:
        repo_id: The dataset repo (default :data:`RELEASED_TEST_DATA`).
        revision: A commit sha (pin it: the leaderboard's ``benches.yaml`` does), tag or branch;
            None is the repo's default branch.
        configs: Which files, e.g. ``["refcocoplus"]``; None fetches every ``*_multi_turn.json``.
        images: Also fetch each config's image folder.
        cache_dir: Override the Hub cache folder.
        local_dir: Put the files in this folder instead of the Hub cache.
        client: The Hub client (tests pass a fake).
        progress: ``callable(str)`` told what is happening.

    Returns:
        ``{config: path of its local file}``.

    Raises:
        FileNotFoundError: When the files are neither reachable nor cached, or a config is absent.
        ValueError: A revision that is not a name, or a damaged Hub cache.
    """
    client = client or HubClient()
    names = [f"{c}{RELEASED_SUFFIX}" for c in configs] if configs else [f"*{RELEASED_SUFFIX}"]
    if images:
        names += [f"{c}{RELEASED_IMAGES_SUFFIX}/*" for c in configs] if configs else [f"*{RELEASED_IMAGES_SUFFIX}/*"]
    # the repo keeps them under raw/; a copy may have them at the top or two folders down
    patterns = names + [f"*/{p}" for p in names] + [f"*/*/{p}" for p in names]
    kwargs = _snapshot_options(repo_id, revision, cache_dir, local_dir, allow_patterns=patterns)
    where = f"{repo_id}@{revision or 'default branch'}"
    if progress:
        progress(f"fetching {', '.join(names)} from {where}")
    folder = _snapshot(client, kwargs, progress)
    found = released_files(folder)
    missing = [c for c in configs or () if c not in found]
    if missing or not found:
        raise FileNotFoundError(
            f"{where} has no {', '.join(f'{c}{RELEASED_SUFFIX}' for c in missing) or '*' + RELEASED_SUFFIX} "
            f"(found: {', '.join(sorted(found)) or 'nothing'})"
        )
    return found


def _snapshot_options(repo_id: str, revision: str | None, cache_dir: str | Path | None,
                      local_dir: str | Path | None, **extra: Any) -> dict[str, Any]:
    """``snapshot_download`` keywords for a dataset repo (the revision checked first)."""
    kwargs: dict[str, Any] = {"repo_id": repo_id, "repo_type": "dataset", "revision": check_revision(revision),
                              **extra}
    if cache_dir is not None:
        kwargs["cache_dir"] = str(cache_dir)
    if local_dir is not None:
        kwargs["local_dir"] = str(local_dir)
    return kwargs


def fetch_training(
    repo_id: str = RELEASED_TRAINING_DATA,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_dir: str | Path | None = None,
    client: HubClient | None = None,
    progress: Any = None,
) -> Path:
    """Download (or find in the Hub cache) the released training data: the whole dataset repo.

    With ``local_dir="data"`` the files land where the trainer's configs read them
    (``data/regionreasoner_train.json``, images relative to ``data/``).

    Returns:
        The training JSON (``regionreasoner_train.json``) in the snapshot or ``local_dir``.

    Raises:
        FileNotFoundError: When the repo is neither reachable nor cached, or has no training JSON.
        ValueError: A revision that is not a name, or a damaged Hub cache.
    """
    client = client or HubClient()
    kwargs = _snapshot_options(repo_id, revision, cache_dir, local_dir)
    where = f"{repo_id}@{revision or 'default branch'}"
    if progress:
        progress(f"fetching {where} (training data)")
    folder = Path(_snapshot(client, kwargs, progress))
    for depth in ("", "*/", "*/*/"):
        found = sorted(folder.glob(f"{depth}{TRAINING_FILE}"))
        if found:
            return found[0]
    raise FileNotFoundError(f"{where} has no {TRAINING_FILE} (found: "
                            f"{', '.join(sorted(p.name for p in folder.iterdir())[:10]) or 'nothing'})")
