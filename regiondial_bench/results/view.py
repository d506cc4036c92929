"""The static run viewer: ``regiondial view RUN [RUN2] --out DIR`` writes ``DIR/index.html``.

The page is opened from disk, without a server. Per dialogue it shows the image (a downscaled
copy in ``DIR/images/``, never the original inlined) with, drawn over it on a canvas, the gold
box and mask and the predicted boxes, points and mask of every round, one colour per round, each
round toggleable; and per turn the question as asked (references highlighted and linked to the
turn they came from), the raw answer with its tags, the failure reason, IoU and hit. Filters:
missed or failed turns, round, failure reason, "reference was wrong" and, for two runs of the
same bench shown side by side, "the runs differ".

All data sits in one JSON block that the page's script reads and inserts as text (never as
HTML); the Content-Security-Policy allows only that script (by hash) and local images, and no
network, so a raw answer such as ``<script>…`` is shown as the characters it is.
Pages of 25 dialogues keep a run of thousands of turns quick to open and filter.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..metrics import TurnScore, failure_kind, turn_scores
from ..schema import PREDICTIONS_FILE, RESULTS_FILE, Bench, PredictionRecord, RunSpec

INDEX_FILE = "index.html"
IMAGE_DIR = "images"
MAX_IMAGE_SIDE = 512  # the downscaled copies; the page shows them at most 480 px wide
MAX_RAW_CHARS = 4000  # longer raw answers are cut in the page (the log keeps them whole)
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4",
           "#f032e6", "#9a6324", "#469990", "#800000", "#808000", "#000075")


@dataclass
class ViewRun:
    """A run folder as the viewer reads it (unfinished runs too: unanswered turns show as such)."""

    label: str
    spec: RunSpec
    records: dict[tuple[str, int], PredictionRecord]
    scores: dict[tuple[str, int], TurnScore]
    path: Path


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


def load_view_run(path: str | Path, bench: Bench, label: str | None = None) -> ViewRun:
    """Read a run folder's ``run.json`` and prediction log and score its answered turns."""
    from ..run.folder import load_run_spec, read_predictions
    from .report import default_label, read_results

    path = Path(path)
    spec = load_run_spec(path)
    if spec.bench_hash != bench.content_hash:
        raise ValueError(f"{path} was made on bench {spec.bench_name} {spec.bench_hash[:19]}, not on "
                         f"{bench.name} {bench.content_hash[:19]}; runs shown together must share the bench")
    log = path / PREDICTIONS_FILE
    if not log.is_file() and (path / (PREDICTIONS_FILE + ".gz")).is_file():
        log = path / (PREDICTIONS_FILE + ".gz")
    records = read_predictions(log)  # tolerant: a killed run shows what it answered
    if label is None:
        label = f"{spec.adapter} ({spec.reference_mode})"
        if (path / RESULTS_FILE).is_file():
            with contextlib.suppress(ValueError, FileNotFoundError):  # a bad results file only loses the label
                label = default_label(read_results(path / RESULTS_FILE), path)
    scores = turn_scores(bench, records, require_complete=False)
    return ViewRun(label, spec, {r.key: r for r in records}, {(s.dialogue_id, s.turn): s for s in scores}, path)


def _finite_boxes(boxes: Sequence[Sequence[float]]) -> list[list[float]]:
    return [[round(float(v), 2) for v in b] for b in boxes if len(b) == 4 and all(math.isfinite(v) for v in b)]


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


def _reference_wrong(record: PredictionRecord, run: ViewRun, dialogue_id: str) -> bool:
    for ref in record.references:
        if ref.source == "no-region":
            return True
        if ref.source == "predicted":
            score = run.scores.get((dialogue_id, ref.turn))
            if score is None or not score.hit:
                return True
    return False


def _answer(run: ViewRun, dialogue_id: str, turn: int) -> dict[str, Any] | None:
    record = run.records.get((dialogue_id, turn))
    score = run.scores.get((dialogue_id, turn))
    if record is None or score is None:
        return None
    raw = record.raw_text
    cut = len(raw) - MAX_RAW_CHARS if len(raw) > MAX_RAW_CHARS else 0
    points = [list(r.point) for r in record.regions if r.point is not None]
    return {
        "q": question_segments(record.question, record.references),
        "raw": raw[:MAX_RAW_CHARS],
        "cut": cut,
        "boxes": _finite_boxes([r.box for r in record.regions]),
        "points": [[round(float(v), 2) for v in p] for p in points if all(math.isfinite(v) for v in p)],
        "mask": None if record.mask is None else {"size": list(record.mask.size), "counts": record.mask.counts},
        "err": record.error,
        "kind": failure_kind(record.error) if record.error else None,
        # "infra" (server/connection) or "answer" where the run recorded it
        "fk": getattr(record, "failure_kind", None),
        "iou": round(score.iou, 4),
        "hit": score.hit,
        "refwrong": _reference_wrong(record, run, dialogue_id),
    }


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


def view_data(runs: Sequence[ViewRun], bench: Bench, out: Path, *, max_image_side: int = MAX_IMAGE_SIDE,
              progress: bool = False) -> dict[str, Any]:
    """The JSON the page renders (and the image copies it references, written into ``out``)."""
    (out / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    dialogues = []
    reasons: dict[str, int] = {}
    # PIL releases the GIL while decoding and encoding: the copies are made a few at a time
    from concurrent.futures import ThreadPoolExecutor

    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        jobs = pool.map(lambda item: _image_copy(bench, item[1], out, item[0], max_image_side), enumerate(bench))
        if progress:
            from tqdm.auto import tqdm

            jobs = tqdm(jobs, total=len(bench), desc="image copies", unit="image")
        copies = list(jobs)
    for index, dialogue in enumerate(bench):
        image, width, height = copies[index]
        turns = [{
            "r": t.round,
            "gold": _finite_boxes(t.gold_boxes),
            "gp": list(t.gold_point) if t.gold_point is not None else None,
            "gm": None if t.gold_mask is None else {"size": list(t.gold_mask.size), "counts": t.gold_mask.counts},
            "refs": [r.turn for r in t.references],
        } for t in dialogue.turns]
        answers = [[_answer(run, dialogue.dialogue_id, t.index) for t in dialogue.turns] for run in runs]
        for per_run in answers:
            for a in per_run:
                if a is not None and a["kind"]:
                    reasons[a["kind"]] = reasons.get(a["kind"], 0) + 1
        differ = len(runs) == 2 and any(
            (a is None) != (b is None) or (a is not None and b is not None and a["hit"] != b["hit"])
            for a, b in zip(answers[0], answers[1], strict=True)
        )
        dialogues.append({"id": dialogue.dialogue_id, "img": image, "w": width, "h": height,
                          "turns": turns, "runs": answers, "differ": differ})
    return {
        "bench": {"name": bench.name, "hash": bench.content_hash, "turns": bench.num_turns},
        "runs": [{"label": r.label, "adapter": r.spec.adapter, "mode": r.spec.reference_mode,
                  "answered": len(r.records)} for r in runs],
        "palette": list(PALETTE),
        "rounds": max((t.round for d in bench for t in d.turns), default=1),
        "reasons": sorted(reasons, key=lambda k: (-reasons[k], k)),
        "dialogues": dialogues,
    }


def _json_for_html(data: Any) -> str:
    """JSON that cannot end the ``<script>`` block it sits in (``<``, ``>``, ``&`` escaped)."""
    text = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(data: dict[str, Any]) -> str:
    """The page: controls, the data block and the script that renders it."""
    script_hash = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
    csp = (f"default-src 'none'; style-src 'unsafe-inline'; img-src 'self' file:; "
           f"script-src 'sha256-{script_hash}'; base-uri 'none'; form-action 'none'")
    title = f"RegionDial-Bench run viewer: {' vs '.join(r['label'] for r in data['runs'])}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_STYLE}</style>
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
<script>{_SCRIPT}</script>
</body>
</html>
"""


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
        out_dir: the folder of ``index.html`` and ``images/``.
        bench: the bench the runs were made on (default: the one recorded in ``run.json``).
        labels: a label per run (default: adapter and reference mode).
        max_image_side: the longest side of the image copies, in pixels.

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
    loaded = [load_view_run(p, bench, labels[i] if labels else None) for i, p in enumerate(runs)]
    if len(loaded) == 2 and loaded[0].label == loaded[1].label:
        loaded[0].label += f" [{loaded[0].path.name}]"
        loaded[1].label += f" [{loaded[1].path.name}]"
    out = Path(out_dir)
    index = out / INDEX_FILE
    for path in (index, out / IMAGE_DIR):  # a link there would have the viewer overwrite whatever it points to
        if path.is_symlink():
            raise ValueError(f"{path} is a symbolic link; refusing to write through it (remove the link or "
                             "choose another --out)")
    out.mkdir(parents=True, exist_ok=True)
    for old in (out / IMAGE_DIR).glob("*.jpg") if (out / IMAGE_DIR).is_dir() else ():
        if re.fullmatch(r"\d+\.jpg", old.name):
            old.unlink()  # a link among them goes too (the link, not its target): the copies are written anew
    data = view_data(loaded, bench, out, max_image_side=max_image_side, progress=progress)
    atomic_write(index, render_html(data))
    return index


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 1.5rem 2rem; color: #222; }
header { position: sticky; top: 0; background: #fff; padding: .5rem 0; border-bottom: 1px solid #ddd; z-index: 2; }
h1 { font-size: 1.2rem; margin: .3rem 0; }
.controls label { margin-right: 1.2rem; white-space: nowrap; }
.controls { margin: .3rem 0; }
.swatch { display: inline-block; width: .8em; height: .8em; border-radius: 2px; margin-right: .2em; vertical-align: -1px; }
.dialogue { border-top: 1px solid #ccc; padding: .8rem 0; }
.dialogue h2 { font-size: 1rem; margin: 0 0 .4rem; }
.runs { display: flex; gap: 1.5rem; align-items: flex-start; }
.run { flex: 1 1 0; min-width: 0; }
.run h3 { font-size: .9rem; margin: 0 0 .3rem; }
.figure { position: relative; display: inline-block; background: #bbb; }
.figure img, .figure canvas { display: block; }
.figure canvas { position: absolute; left: 0; top: 0; }
.turn { display: grid; grid-template-columns: 3.2em 1fr; gap: .1rem .6rem; padding: .3rem 0; border-bottom: 1px dotted #ddd; }
.turn.dim { opacity: .45; }
.turn:target, .turn.flash { background: #fff6c8; }
.rnd { font-weight: 600; }
.q a.ref { background: #ffe9a8; border-radius: 3px; padding: 0 2px; color: inherit; }
.q a.ref.wrong { background: #ffc9c9; }
pre.raw { white-space: pre-wrap; word-break: break-word; margin: .2rem 0; font-size: 12px; background: #f6f6f6; padding: .2rem .4rem; max-height: 12em; overflow: auto; }
pre.raw .tag { color: #7b3fa0; font-weight: 600; }
.meta .hit { color: #08752d; font-weight: 600; } .meta .miss { color: #b00020; font-weight: 600; }
.meta .err { color: #b00020; }
.pager button { margin: 0 .3rem; }
"""

_SCRIPT = r"""
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("view-data").textContent);
  const PAGE = 25, WIDTH = 480;
  const two = D.runs.length === 2;
  const state = {turns: "all", round: "any", reason: "any", refwrong: false, differ: false,
                 gold: true, pred: true, hidden: new Set(), page: 0};
  const $ = (id) => document.getElementById(id);
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function colour(r) { return D.palette[(r - 1) % D.palette.length]; }

  // ---- controls
  $("summary").textContent = D.bench.name + " (" + D.bench.hash.slice(0, 19) + "), " + D.dialogues.length +
    " dialogues, " + D.bench.turns + " turns; " +
    D.runs.map((r, i) => (two ? "ABCD"[i] + ": " : "") + r.label + " [" + r.answered + " answered]").join("; ");
  if (!two) $("differ-label").hidden = true;
  for (let r = 1; r <= D.rounds; r++) {
    const o = el("option", null, String(r)); o.value = String(r); $("f-round").appendChild(o);
    const lab = el("label"); const box = el("input"); box.type = "checkbox"; box.checked = true;
    box.dataset.round = String(r); box.className = "round-toggle";
    box.addEventListener("change", () => { if (box.checked) state.hidden.delete(r); else state.hidden.add(r); redraw(); });
    const sw = el("span", "swatch"); sw.style.background = colour(r);
    lab.append(box, sw, document.createTextNode("R" + r)); $("round-toggles").appendChild(lab);
  }
  for (const k of D.reasons) { const o = el("option", null, k); o.value = k; $("f-reason").appendChild(o); }
  const bind = (id, key, prop, again) => $(id).addEventListener("change", (ev) => {
    state[key] = ev.target[prop]; if (again) { state.page = 0; render(); } else redraw(); });
  bind("f-turns", "turns", "value", true); bind("f-round", "round", "value", true);
  bind("f-reason", "reason", "value", true); bind("f-refwrong", "refwrong", "checked", true);
  bind("f-differ", "differ", "checked", true);
  bind("o-gold", "gold", "checked", false); bind("o-pred", "pred", "checked", false);
  $("prev").addEventListener("click", () => { if (state.page > 0) { state.page--; render(); } });
  $("next").addEventListener("click", () => { state.page++; render(); });

  // ---- filtering
  function turnMatches(d, t, a) {
    if (state.round !== "any" && d.turns[t].r !== Number(state.round)) return false;
    if (state.turns === "miss" && (!a || a.hit)) return false;
    if (state.turns === "failed" && (!a || a.err === null)) return false;
    if (state.reason !== "any" && (!a || a.kind !== state.reason)) return false;
    if (state.refwrong && (!a || !a.refwrong)) return false;
    return true;
  }
  function matched(d) {
    const set = new Set();
    if (state.differ && !d.differ) return set;
    d.turns.forEach((_, t) => { if (d.runs.some((run) => turnMatches(d, t, run[t]))) set.add(t); });
    return set;
  }

  // ---- COCO compressed RLE (column-major counts, alternating 0/1 runs)
  function decodeRle(counts) {
    const out = []; let p = 0;
    while (p < counts.length) {
      let x = 0, k = 0, more = 1, c = 0;
      while (more && p < counts.length) {
        c = counts.charCodeAt(p) - 48; x |= (c & 0x1f) << (5 * k); more = c & 0x20; p++; k++;
        if (!more && (c & 0x10)) x |= -1 << (5 * k);
      }
      if (out.length > 2) x += out[out.length - 2];
      out.push(x);
    }
    return out;
  }
  const maskCache = new Map();
  function maskCanvas(m, rgb) {
    const key = m.counts + "|" + rgb;
    if (maskCache.has(key)) return maskCache.get(key);
    const h = m.size[0], w = m.size[1];
    const c = document.createElement("canvas"); c.width = w; c.height = h;
    if (w > 0 && h > 0 && w * h <= 64e6) {
      const ctx = c.getContext("2d"); const img = ctx.createImageData(w, h);
      const runs = decodeRle(m.counts); let i = 0, v = 0;
      for (const n of runs) {
        if (v) for (let j = i; j < i + n && j < w * h; j++) {
          const x = Math.floor(j / h), y = j % h, o = 4 * (y * w + x);
          img.data[o] = rgb[0]; img.data[o + 1] = rgb[1]; img.data[o + 2] = rgb[2]; img.data[o + 3] = 255;
        }
        i += Math.max(n, 0); v = 1 - v;
      }
      ctx.putImageData(img, 0, 0);
    }
    maskCache.set(key, c);
    return c;
  }
  function hexRgb(h) { return [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)); }

  // ---- drawing
  const figures = [];
  function draw(fig) {
    const {canvas, d, run, scale} = fig;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    d.turns.forEach((turn, t) => {
      if (state.hidden.has(turn.r)) return;
      const col = colour(turn.r), rgb = hexRgb(col);
      const a = d.runs[run][t];
      if (state.gold) {
        if (turn.gm) { ctx.globalAlpha = 0.25; ctx.drawImage(maskCanvas(turn.gm, rgb), 0, 0, canvas.width, canvas.height); }
        ctx.globalAlpha = 1; ctx.setLineDash([5, 3]); ctx.lineWidth = 1.5; ctx.strokeStyle = col;
        for (const b of turn.gold) ctx.strokeRect(b[0] * scale, b[1] * scale, (b[2] - b[0]) * scale, (b[3] - b[1]) * scale);
      }
      if (state.pred && a) {
        if (a.mask) { ctx.globalAlpha = 0.35; ctx.drawImage(maskCanvas(a.mask, rgb), 0, 0, canvas.width, canvas.height); }
        ctx.globalAlpha = 1; ctx.setLineDash([]); ctx.lineWidth = 2; ctx.strokeStyle = col; ctx.fillStyle = col;
        for (const b of a.boxes) ctx.strokeRect(b[0] * scale, b[1] * scale, (b[2] - b[0]) * scale, (b[3] - b[1]) * scale);
        for (const p of a.points) { ctx.beginPath(); ctx.arc(p[0] * scale, p[1] * scale, 3, 0, 2 * Math.PI); ctx.fill(); }
      }
    });
    ctx.globalAlpha = 1;
  }
  function redraw() { figures.forEach(draw); }

  function rawText(pre, raw) {
    const re = /<\/?(think|answer|rethink|reasoning)>/gi; let last = 0, m;
    while ((m = re.exec(raw)) !== null) {
      if (m.index > last) pre.appendChild(document.createTextNode(raw.slice(last, m.index)));
      pre.appendChild(el("span", "tag", m[0])); last = m.index + m[0].length;
    }
    if (last < raw.length) pre.appendChild(document.createTextNode(raw.slice(last)));
  }

  function turnRow(di, d, run, t, isMatch) {
    const turn = d.turns[t], a = d.runs[run][t];
    const row = el("div", "turn" + (isMatch ? " match" : " dim"));
    row.id = "t-" + di + "-" + run + "-" + t; row.dataset.round = String(turn.r);
    const head = el("div", "rnd"); const sw = el("span", "swatch"); sw.style.background = colour(turn.r);
    head.append(sw, document.createTextNode("R" + turn.r)); row.appendChild(head);
    const body = el("div");
    const q = el("div", "q");
    if (!a) { q.textContent = "(not answered)"; body.appendChild(q); row.appendChild(body); return row; }
    for (const seg of a.q) {
      if (seg.length === 1) { q.appendChild(document.createTextNode(seg[0])); continue; }
      const link = el("a", "ref", seg[0]);
      link.href = "#t-" + di + "-" + run + "-" + seg[1];
      const src = d.runs[run][seg[1]];
      if (seg[2] === "no-region" || (seg[2] === "predicted" && src && !src.hit)) link.classList.add("wrong");
      link.title = "from round " + (seg[1] + 1) + " (" + seg[2] + ")";
      link.addEventListener("click", () => {
        const target = document.getElementById(link.hash.slice(1));
        if (target) { target.classList.add("flash"); setTimeout(() => target.classList.remove("flash"), 1500); }
      });
      q.appendChild(link);
    }
    body.appendChild(q);
    const pre = el("pre", "raw"); rawText(pre, a.raw);
    if (a.cut) pre.appendChild(el("span", "cut", " … (" + a.cut + " more characters in the log)"));
    body.appendChild(pre);
    const meta = el("div", "meta");
    meta.appendChild(el("span", a.hit ? "hit" : "miss", a.hit ? "hit" : "miss"));
    meta.appendChild(document.createTextNode(" · IoU " + a.iou.toFixed(3)));
    if (a.refwrong) meta.appendChild(document.createTextNode(" · reference was wrong"));
    if (a.err !== null) { meta.appendChild(document.createTextNode(" · ")); meta.appendChild(el("span", "err", a.err)); }
    if (a.fk === "infra") meta.appendChild(document.createTextNode(" · infrastructure failure (not the model's answer)"));
    body.appendChild(meta); row.appendChild(body);
    return row;
  }

  function card(di, d, hits) {
    const sec = el("section", "dialogue"); sec.id = "d-" + di; sec.dataset.dialogue = d.id;
    sec.appendChild(el("h2", null, d.id + "  (" + d.turns.length + " rounds" + (d.differ ? ", runs differ" : "") + ")"));
    const runsBox = el("div", "runs");
    D.runs.forEach((r, run) => {
      const col = el("div", "run"); col.dataset.run = String(run);
      if (two) col.appendChild(el("h3", null, "ABCD"[run] + ": " + r.label));
      const scale = Math.min(WIDTH, d.w) / d.w;
      const w = Math.round(d.w * scale), h = Math.round(d.h * scale);
      const fig = el("div", "figure"); fig.style.width = w + "px"; fig.style.height = h + "px";
      if (d.img) { const img = el("img"); img.src = d.img; img.width = w; img.height = h; img.alt = d.id; fig.appendChild(img); }
      const canvas = el("canvas"); canvas.width = w; canvas.height = h; fig.appendChild(canvas);
      col.appendChild(fig);
      figures.push({canvas, d, run, scale});
      d.turns.forEach((_, t) => col.appendChild(turnRow(di, d, run, t, hits.has(t))));
      runsBox.appendChild(col);
    });
    sec.appendChild(runsBox);
    return sec;
  }

  function render() {
    const shown = [];
    let turns = 0;
    D.dialogues.forEach((d, di) => { const m = matched(d); if (m.size) { shown.push([di, d, m]); turns += m.size; } });
    const pages = Math.max(1, Math.ceil(shown.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    $("status").textContent = shown.length + " of " + D.dialogues.length + " dialogues, " + turns + " turns match";
    $("page").textContent = "page " + (state.page + 1) + " of " + pages;
    const main = $("dialogues"); main.replaceChildren(); figures.length = 0;
    for (const [di, d, m] of shown.slice(state.page * PAGE, (state.page + 1) * PAGE)) main.appendChild(card(di, d, m));
    redraw();
    document.body.dataset.ready = "1";
  }
  render();
})();
"""
