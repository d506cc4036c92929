"""The static run viewer: ``regiondial view RUN [RUN2] --out DIR`` writes ``DIR/index.html``.

The page is opened from disk, without a server. Per dialogue it shows the image (a downscaled
copy in ``DIR/images/``, never the original inlined) with, drawn over it on a canvas, the gold
box and mask and the predicted boxes, points and mask of every round, one colour per round, each
round toggleable; and per turn the question as asked (references highlighted and linked to the
turn they came from), the raw answer with its tags, the failure reason, IoU and hit. Filters:
missed or failed turns, round, failure reason, "reference was wrong" and, for two runs of the
same bench shown side by side, "the runs differ" (per turn).

Paged data, so a run of any size opens quickly and no file grows with the run:

* ``index.html`` holds the script and an *index*: per dialogue its id, its turn count, which
  data files hold it, and per turn and run a few flag bits (answered, hit, failed, reference
  wrong, infrastructure failure, failure reason). Every filter runs on the index alone.
* ``data/<token>-<n>.js`` hold the turns' content (questions, raw answers, boxes, points, masks,
  gold regions) in bench order, about :data:`CHUNK_BYTES` each; a dialogue that does not fit is
  split between files. The page loads the files of the 25 dialogues it shows, once. A data file
  is a script (``regiondialChunk(token, n, [...])``) because a page opened from disk may not read
  files any other way; ``token`` is new on every build, so a stale file is never mixed in.
* Texts are cut at :data:`MAX_RAW_CHARS`, masks dropped beyond :data:`MAX_MASK_CHARS` and shapes
  beyond :data:`MAX_SHAPES` (the page says so), which bounds every turn, hence every file, well
  under 8 MB whatever the answers hold.

Building streams the prediction logs: each record is scored and its page content written to a
temporary file at once, so memory is the bench plus a few dozen bytes per turn.

All data is inserted as text (never as HTML). The Content-Security-Policy allows the page's own
script (by hash) and, through ``'strict-dynamic'``, the data files that script loads; local
images; no network. A raw answer such as ``<script>…`` is shown as the characters it is.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import json
import logging
import math
import os
import re
import secrets
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..metrics import failure_kind, score_turn
from ..run.folder import naming
from ..schema import PREDICTIONS_FILE, RESULTS_FILE, Bench, PredictionRecord, RunSpec, iter_prediction_log

logger = logging.getLogger(__name__)

INDEX_FILE = "index.html"
IMAGE_DIR = "images"
DATA_DIR = "data"
MAX_IMAGE_SIDE = 512  # the downscaled copies; the page shows them at most 480 px wide
MAX_RAW_CHARS = 4000  # longer raw answers, questions and failure reasons are cut in the page (the log keeps them)
MAX_SHAPES = 100  # boxes, and points, drawn per answer or gold turn
MAX_MASK_CHARS = 1_000_000  # a mask whose RLE counts are longer is not drawn (a few KB is usual)
CHUNK_BYTES = 512 * 1024  # a data file is closed before it would grow past this (one turn alone may)
MAX_FILE_BYTES = 8 * 1024 * 1024  # what the cuts above guarantee for every file the viewer writes
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4",
           "#f032e6", "#9a6324", "#469990", "#800000", "#808000", "#000075")

# a turn's flags in one run, as the page reads them (viewer.js); the failure reason's index + 1
# sits in the bits from REASON_SHIFT up
ANSWERED, HIT, FAILED, REFWRONG, INFRA = 1, 2, 4, 8, 16
REASON_SHIFT = 5
_CHUNK_FILE = re.compile(r"[0-9a-f]{8}-\d+\.js")


@dataclass
class ViewRun:
    """A run folder as the viewer reads it (unfinished runs too: unanswered turns show as such).

    Per turn, in bench order: ``flags`` (the bits above, the reason as a local kind id in
    ``kind``) and where its page content lies in the build's temporary file (``spans``).
    """

    label: str
    spec: RunSpec
    path: Path
    flags: np.ndarray
    kind: np.ndarray
    kinds: list[str]  # local kind id - 1 -> failure reason
    spans: np.ndarray
    answered: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)


def _bench_for(spec: RunSpec, bench: Bench | None) -> Bench:
    if bench is not None:
        if bench.content_hash != spec.bench_hash:
            raise ValueError(f"the given bench has hash {bench.content_hash}, the run was made on {spec.bench_hash}")
        return bench
    from ..bench.specs import SAMPLE_BENCH, load_bench

    location = spec.bench_location or "sample"
    if location == str(SAMPLE_BENCH):
        location = "sample"
    try:
        loaded = load_bench(location)
    except (FileNotFoundError, ValueError) as exc:
        raise ValueError(f"cannot load the run's bench {location!r} ({exc}); pass --bench") from exc
    if loaded.content_hash != spec.bench_hash:
        raise ValueError(f"the bench at {location!r} has changed since the run (hash mismatch); pass --bench")
    return loaded


class _Layout:
    """Where each dialogue's turns sit in bench order (one position per turn)."""

    def __init__(self, bench: Bench) -> None:
        self.first: dict[str, int] = {}
        position = 0
        for dialogue in bench:
            self.first[dialogue.dialogue_id] = position
            position += len(dialogue.turns)
        self.total = position


def load_view_run(path: str | Path, bench: Bench, spill: IO[bytes], label: str | None = None) -> ViewRun:
    """Stream a run folder's prediction log: score each record and write its page content to
    ``spill`` (a binary file), keeping only flags and offsets per turn.

    Unreadable lines (a killed run's torn tail) are skipped with a warning; a later record for a
    turn replaces an earlier one, as ``--resume`` reads the log.

    Raises:
        ValueError: the run is on another bench, or names turns the bench does not have.
    """
    from ..run.folder import load_run_spec
    from .report import default_label, read_results

    path = Path(path)
    spec = load_run_spec(path)
    if spec.bench_hash != bench.content_hash:
        raise ValueError(f"{path} was made on bench {spec.bench_name} {spec.bench_hash[:19]}, not on "
                         f"{bench.name} {bench.content_hash[:19]}; runs shown together must share the bench")
    log = path / PREDICTIONS_FILE
    if not log.is_file() and (path / (PREDICTIONS_FILE + ".gz")).is_file():
        log = path / (PREDICTIONS_FILE + ".gz")
    if label is None:
        label = f"{spec.adapter} ({spec.reference_mode})"
        if (path / RESULTS_FILE).is_file():
            with contextlib.suppress(ValueError, FileNotFoundError):  # a bad results file only loses the label
                label = default_label(read_results(path / RESULTS_FILE), path)
    layout = _Layout(bench)
    run = ViewRun(label, spec, path, flags=np.zeros(layout.total, dtype=np.int64),
                  kind=np.zeros(layout.total, dtype=np.int64), kinds=[],
                  spans=np.full((layout.total, 2), -1, dtype=np.int64))
    kind_ids: dict[str, int] = {}
    references: dict[int, tuple[bool, tuple[int, ...]]] = {}  # position -> (no region, referenced positions)
    unknown: list[str] = []
    spill.seek(0, os.SEEK_END)
    for record in (iter_prediction_log(log, strict=False, skipped=run.skipped) if log.is_file() else ()):
        first = layout.first.get(record.dialogue_id)
        dialogue = bench.dialogue(record.dialogue_id) if first is not None else None
        if dialogue is None or not 0 <= record.turn < len(dialogue.turns):
            unknown.append(f"{record.dialogue_id[:80]}#{record.turn}")
            continue
        position = first + record.turn
        iou, hit, _ = score_turn(dialogue.turns[record.turn].gold_boxes, [r.box for r in record.regions])
        content = _json(answer_content(record, iou)).encode("ascii")
        run.spans[position] = (spill.tell(), len(content))
        spill.write(content)
        bits = ANSWERED | (HIT if hit else 0)
        run.kind[position] = 0
        if record.error is not None:
            bits |= FAILED | (INFRA if record.failure_kind == "infra" else 0)
            run.kind[position] = kind_ids.setdefault(failure_kind(record.error), len(kind_ids) + 1)
        run.flags[position] = bits
        no_region = any(ref.source == "no-region" for ref in record.references)
        predicted = tuple(first + ref.turn if 0 <= ref.turn < len(dialogue.turns) else -1
                          for ref in record.references if ref.source == "predicted")
        if no_region or predicted:
            references[position] = (no_region, predicted)
        else:
            references.pop(position, None)
    if run.skipped:
        logger.warning("%s: %d unreadable line(s) skipped (first: line %d, %s)", log, len(run.skipped),
                       *run.skipped[0])
    if unknown:
        raise ValueError(f"{path}: {len(unknown)} prediction(s) name turns the bench does not have: {unknown[:5]}")
    for position, (no_region, predicted) in references.items():
        # a reference was wrong when it held no region, or the referenced turn missed (or was never answered)
        if no_region or any(p < 0 or not run.flags[p] & HIT for p in predicted):
            run.flags[position] |= REFWRONG
    run.kinds = sorted(kind_ids, key=kind_ids.__getitem__)
    run.answered = int(np.count_nonzero(run.flags & ANSWERED))
    return run


def _finite(values: Sequence[Sequence[float]], size: int) -> list[list[float]]:
    return [[round(float(v), 2) for v in b] for b in values if len(b) == size and all(math.isfinite(v) for v in b)]


def _mask(mask: Any) -> tuple[dict[str, Any] | None, bool]:
    """The page's form of an RLE mask, and whether it was left out for its size."""
    if mask is None:
        return None, False
    if len(mask.counts) > MAX_MASK_CHARS:
        return None, True
    return {"size": list(mask.size), "counts": mask.counts}, False


def answer_content(record: PredictionRecord, iou: float) -> dict[str, Any]:
    """What the page shows of one answered turn (texts cut, shapes and masks bounded)."""
    raw, question = record.raw_text, record.question
    boxes = _finite([r.box for r in record.regions], 4)
    points = _finite([r.point for r in record.regions if r.point is not None], 2)
    mask, mask_cut = _mask(record.mask)
    content: dict[str, Any] = {
        # at most MAX_SHAPES references are linked: a hostile record may list any number
        "q": question_segments(question[:MAX_RAW_CHARS], record.references[:MAX_SHAPES]),
        "raw": raw[:MAX_RAW_CHARS],
        "boxes": boxes[:MAX_SHAPES],
        "points": points[:MAX_SHAPES],
        "mask": mask,
        "err": None if record.error is None else record.error[:MAX_RAW_CHARS],
        "iou": round(iou, 4) if math.isfinite(iou) else 0.0,
    }
    extra = {"cut": len(raw) - MAX_RAW_CHARS, "qcut": len(question) - MAX_RAW_CHARS,
             "shapes": max(0, len(boxes) - MAX_SHAPES) + max(0, len(points) - MAX_SHAPES)}
    content.update({k: v for k, v in extra.items() if v > 0})
    if mask_cut:
        content["maskcut"] = True
    return content


def _gold_content(turn: Any) -> dict[str, Any]:
    mask, mask_cut = _mask(turn.gold_mask)
    content = {"gold": _finite(turn.gold_boxes, 4)[:MAX_SHAPES],
               "gp": list(turn.gold_point) if turn.gold_point is not None else None, "gm": mask}
    if mask_cut:
        content["gmcut"] = True
    return content


def _json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def question_segments(question: str, used: Sequence[Any]) -> list[list[Any]]:
    """The rendered question cut into ``[text]`` and ``[text, referenced turn, source]`` pieces.

    >>> from regiondial_bench.schema import UsedReference
    >>> question_segments("Find the dog left of [1, 2, 3, 4].",
    ...                   [UsedReference(turn=0, source="predicted", box=(1, 2, 3, 4), text="[1, 2, 3, 4]")])
    [['Find the dog left of '], ['[1, 2, 3, 4]', 0, 'predicted'], ['.']]
    """
    segments: list[list[Any]] = []
    rest = question
    for ref in used:
        at = rest.find(ref.text) if ref.text else -1
        if at < 0:
            continue
        if at:
            segments.append([rest[:at]])
        segments.append([ref.text, ref.turn, ref.source])
        rest = rest[at + len(ref.text):]
    if rest or not segments:
        segments.append([rest])
    return segments


def _image_copy(bench: Bench, dialogue: Any, out: Path, index: int, max_side: int) -> tuple[str | None, int, int]:
    """Write a downscaled JPEG of the dialogue's image; ``(relative path or None, width, height)``
    where the size is the original image's (the frame of the boxes)."""
    width, height = dialogue.image.width, dialogue.image.height
    path = bench.image_path(dialogue)
    if path is not None and path.is_file():
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                width, height = img.size
                img.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale directly
                img = img.convert("RGB")
                img.thumbnail((max_side, max_side))
                name = f"{IMAGE_DIR}/{index}.jpg"
                img.save(out / name, quality=85)
                return name, width, height
        except (OSError, UnidentifiedImageError, ValueError):
            pass
    if width is None or height is None:  # no file, no size: a frame that holds every gold box
        extent = [b for t in dialogue.turns for b in t.gold_boxes]
        width = int(max(b[2] for b in extent)) + 1
        height = int(max(b[3] for b in extent)) + 1
    return None, int(width), int(height)


class _ChunkWriter:
    """Writes the data files: parts ``[dialogue, first turn, image or null, turns, answers per run]``
    in bench order, a file closed before it would pass :data:`CHUNK_BYTES` (so only a file of a
    single turn can be larger), a dialogue continued in the next file where it does not fit."""

    def __init__(self, folder: Path, token: str, n_runs: int) -> None:
        self.folder, self.token, self.n_runs = folder, token, n_runs
        self.number = 0  # the file being filled
        self.parts: list[bytes] = []
        self.size = 0
        self.files: list[Path] = []

    def begin(self, dialogue: int, meta: dict[str, Any]) -> None:
        self.dialogue, self.t0, self.meta = dialogue, 0, _json(meta).encode("ascii")
        self.turns: list[bytes] = []
        self.answers: list[list[bytes]] = [[] for _ in range(self.n_runs)]
        self.first: int | None = None

    def add(self, turn: bytes, answers: Sequence[bytes]) -> None:
        size = len(turn) + sum(len(a) for a in answers) + 2 + self.n_runs
        if self.size + size > CHUNK_BYTES and self.size > 0:
            self._close_part()
            self._flush()
        if self.first is None:
            self.first = self.number
        self.turns.append(turn)
        for run, answer in enumerate(answers):
            self.answers[run].append(answer)
        self.size += size

    def end(self) -> tuple[int, int]:
        """Close the dialogue; the first and last data file holding it."""
        self._close_part()
        return (self.first if self.first is not None else self.number), self.number

    def close(self) -> None:
        if self.parts:
            self._flush()

    def _close_part(self) -> None:
        if not self.turns:
            return
        runs = b",".join(b"[" + b",".join(a) + b"]" for a in self.answers)
        self.parts.append(b"[%d,%d,%s,[%s],[%s]]" % (self.dialogue, self.t0, self.meta, b",".join(self.turns), runs))
        self.meta = b"null"  # the image goes with the dialogue's first part only
        self.t0 += len(self.turns)
        self.turns, self.answers = [], [[] for _ in range(self.n_runs)]

    def _flush(self) -> None:
        path = self.folder / f"{self.token}-{self.number}.js"
        with naming(path):  # a full disk names the file it could not write
            path.write_bytes(b'regiondialChunk("%s",%d,[%s]);\n' % (self.token.encode(), self.number, b",".join(self.parts)))
        self.files.append(path)
        self.parts, self.size = [], 0
        self.number += 1


def _read_span(spill: IO[bytes], span: np.ndarray) -> bytes:
    if span[0] < 0:
        return b"null"
    spill.seek(int(span[0]))
    return spill.read(int(span[1]))


def write_data(bench: Bench, runs: Sequence[ViewRun], images: Sequence[tuple[str | None, int, int]],
               spill: IO[bytes], out: Path, token: str) -> list[list[Any]]:
    """Write the data files into ``out/data``; return the page's index of dialogues."""
    folder = out / DATA_DIR
    folder.mkdir(parents=True, exist_ok=True)
    writer = _ChunkWriter(folder, token, len(runs))
    index: list[list[Any]] = []
    position = 0
    for di, dialogue in enumerate(bench):
        image, width, height = images[di]
        writer.begin(di, {"img": image, "w": width, "h": height})
        for t, turn in enumerate(dialogue.turns):
            answers = [_read_span(spill, run.spans[position + t]) for run in runs]
            writer.add(_json(_gold_content(turn)).encode("ascii"), answers)
        first, last = writer.end()
        n = len(dialogue.turns)
        index.append([dialogue.dialogue_id, first, last, n,
                      *[run.flags[position:position + n].tolist() for run in runs]])
        position += n
    writer.close()
    return index


def _merge_reasons(runs: Sequence[ViewRun]) -> list[str]:
    """The failure reasons of all runs, commonest first; each run's flags get the reason's index."""
    counts: dict[str, int] = {}
    for run in runs:
        ids, n = np.unique(run.kind[(run.flags & FAILED) > 0], return_counts=True)
        for kind_id, count in zip(ids.tolist(), n.tolist(), strict=True):
            reason = run.kinds[kind_id - 1]
            counts[reason] = counts.get(reason, 0) + count
    reasons = sorted(counts, key=lambda k: (-counts[k], k))
    order = {reason: i for i, reason in enumerate(reasons)}
    for run in runs:
        remap = np.zeros(len(run.kinds) + 1, dtype=np.int64)
        for local, reason in enumerate(run.kinds, 1):
            remap[local] = order.get(reason, -1) + 1
        failed = (run.flags & FAILED) > 0
        run.flags[failed] |= remap[run.kind[failed]] << REASON_SHIFT
    return reasons


def _image_copies(bench: Bench, out: Path, max_side: int, progress: bool) -> list[tuple[str | None, int, int]]:
    (out / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    # PIL releases the GIL while decoding and encoding: the copies are made a few at a time
    from concurrent.futures import ThreadPoolExecutor

    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        jobs = pool.map(lambda item: _image_copy(bench, item[1], out, item[0], max_side), enumerate(bench))
        if progress:
            from tqdm.auto import tqdm

            jobs = tqdm(jobs, total=len(bench), desc="image copies", unit="image")
        return list(jobs)


def _json_for_html(data: Any) -> str:
    """JSON that cannot end the ``<script>`` block it sits in (``<``, ``>``, ``&`` escaped)."""
    text = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@cache
def _asset(name: str) -> str:
    return resources.files("regiondial_bench").joinpath(f"data/viewer/{name}").read_text("utf-8")


def render_html(data: dict[str, Any]) -> str:
    """The page: controls, the index block and the script that renders it."""
    script = _asset("viewer.js")
    script_hash = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    # 'strict-dynamic': the data files the hashed script inserts may run, nothing else
    csp = (f"default-src 'none'; style-src 'unsafe-inline'; img-src 'self' file:; "
           f"script-src 'sha256-{script_hash}' 'strict-dynamic'; base-uri 'none'; form-action 'none'")
    title = f"RegionDial-Bench run viewer: {' vs '.join(r['label'] for r in data['runs'])}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_asset("viewer.css")}</style>
</head>
<body>
<header>
<h1>{html.escape(title)}</h1>
<p id="summary"></p>
<div class="controls">
<label>turns <select id="f-turns"><option value="all">all</option><option value="miss">misses (no hit)</option>
<option value="failed">failed (a failure reason)</option></select></label>
<label>round <select id="f-round"><option value="any">any</option></select></label>
<label>failure reason <select id="f-reason"><option value="any">any</option></select></label>
<label><input type="checkbox" id="f-refwrong"> reference was wrong</label>
<label id="differ-label"><input type="checkbox" id="f-differ"> runs differ</label>
</div>
<div class="controls" id="overlay-controls">
<label><input type="checkbox" id="o-gold" checked> gold</label>
<label><input type="checkbox" id="o-pred" checked> predicted</label>
<span id="round-toggles"></span>
</div>
<p id="status"></p>
<nav class="pager"><button type="button" id="prev">previous</button> <span id="page"></span>
<button type="button" id="next">next</button></nav>
</header>
<main id="dialogues"></main>
<script type="application/json" id="view-data">{_json_for_html(data)}</script>
<script>{script}</script>
</body>
</html>
"""


def _clear_previous(out: Path) -> None:
    """Remove the image copies and data files of an earlier build in the same folder.

    A link among them goes too (the link, not its target; a dangling one as well), so the copies
    written next never go through a link."""
    for folder, pattern in ((out / IMAGE_DIR, re.compile(r"\d+\.jpg")), (out / DATA_DIR, _CHUNK_FILE)):
        if folder.is_dir():
            for old in folder.iterdir():
                if pattern.fullmatch(old.name) and (old.is_symlink() or old.is_file()):
                    old.unlink()


def build_view(
    runs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    bench: Bench | None = None,
    labels: Sequence[str] = (),
    max_image_side: int = MAX_IMAGE_SIDE,
    progress: bool = False,
) -> Path:
    """Write the viewer of one run, or of two runs of the same bench side by side, into ``out_dir``.

    Args:
        runs: one or two run folders (``run.json`` + ``predictions.jsonl``; unfinished runs work).
        out_dir: the folder of ``index.html``, ``data/`` and ``images/``.
        bench: the bench the runs were made on (default: the one recorded in ``run.json``).
        labels: a label per run (default: adapter and reference mode).
        max_image_side: the longest side of the image copies, in pixels.
        progress: show a progress bar for the image copies.

    Returns:
        The path of ``index.html``.
    """
    from ..run.folder import atomic_write, load_run_spec

    if not 1 <= len(runs) <= 2:
        raise ValueError(f"the viewer shows one run or two runs side by side; got {len(runs)}")
    if labels and len(labels) != len(runs):
        raise ValueError(f"got {len(labels)} labels for {len(runs)} runs")
    if max_image_side < 16:
        raise ValueError("max_image_side must be at least 16 pixels")
    bench = _bench_for(load_run_spec(runs[0]), bench)
    out = Path(out_dir)
    index = out / INDEX_FILE
    for path in (index, out / IMAGE_DIR, out / DATA_DIR):  # a link there would have the viewer write where it points
        if path.is_symlink():
            raise ValueError(f"{path} is a symbolic link; refusing to write through it (remove the link or "
                             "choose another --out)")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(prefix="regiondial-view-") as spill:
        loaded = [load_view_run(p, bench, spill, labels[i] if labels else None) for i, p in enumerate(runs)]
        if len(loaded) == 2 and loaded[0].label == loaded[1].label:
            loaded[0].label += f" [{loaded[0].path.name}]"
            loaded[1].label += f" [{loaded[1].path.name}]"
        reasons = _merge_reasons(loaded)
        _clear_previous(out)
        images = _image_copies(bench, out, max_image_side, progress)
        token = secrets.token_hex(4)
        dialogues = write_data(bench, loaded, images, spill, out, token)
    data = {
        "bench": {"name": bench.name, "hash": bench.content_hash, "turns": bench.num_turns},
        "runs": [{"label": r.label, "adapter": r.spec.adapter, "mode": r.spec.reference_mode,
                  "answered": r.answered} for r in loaded],
        "palette": list(PALETTE),
        "rounds": max((len(d.turns) for d in bench), default=1),
        "reasons": reasons,
        "token": token,
        "data": DATA_DIR,
        "dialogues": dialogues,
    }
    atomic_write(index, render_html(data))
    return index


def read_view_data(out_dir: str | Path) -> dict[str, Any]:
    """A built viewer's data put back together (for tests and scripts): the index block, with
    each dialogue as ``{"id", "img", "w", "h", "turns", "runs", "flags"}`` from its data files."""
    out = Path(out_dir)
    page = (out / INDEX_FILE).read_text(encoding="utf-8")
    block = re.search(r'<script type="application/json" id="view-data">(.*?)</script>', page, re.S)
    if block is None:
        raise ValueError(f"{out / INDEX_FILE} holds no viewer data")
    data = json.loads(block.group(1))
    parts: dict[int, list[Any]] = {}
    for path in sorted((out / data["data"]).glob(f"{data['token']}-*.js")):
        text = path.read_text(encoding="ascii")
        head = f'regiondialChunk("{data["token"]}",'
        body = text[len(head):].partition(",")[2]
        for part in json.loads(body.rstrip().removesuffix(");")):
            parts.setdefault(part[0], []).append(part)
    dialogues = []
    for di, (dialogue_id, _, _, _, *flags) in enumerate(data["dialogues"]):
        entry = {"id": dialogue_id, "img": None, "w": None, "h": None, "turns": [],
                 "runs": [[] for _ in flags], "flags": flags}
        for part in sorted(parts.get(di, []), key=lambda p: p[1]):
            if part[2] is not None:
                entry.update(part[2])
            entry["turns"] += part[3]
            for run, answers in enumerate(part[4]):
                entry["runs"][run] += answers
        dialogues.append(entry)
    data["dialogues"] = dialogues
    return data
