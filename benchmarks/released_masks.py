"""Import speed and peak memory of released ``*_multi_turn.json`` files at growing sizes, the import
cache, and the streaming parser against ``ijson``.

The files are generated in the released layout (UPSTREAM.md 2.1): dialogues of 2 to 5 turns with
questions, xyxy boxes, ``context_from_turn``, ``ann_ids`` and one dense ``H x W`` mask per turn
(640 x 480 or 480 x 640, an ellipse inside the gold box). The real files hold about 5.5 MB per turn
with an unknown spelling of the 0/1 values, so several spellings are generated:

* ``indent``: ``json.dump(..., indent=2)``, one value per line (about 5.2 MB per turn; the default);
* ``compact``: ``[0,0,1,...]`` (0.6 MB per turn); ``spaced``: ``[0, 0, 1, ...]`` (0.9 MB per turn);
* ``bool``: ``[false, true, ...]`` (2.1 MB per turn).

Each measurement runs ``regiondial bench info FILE`` in a fresh process, so its peak RSS (from
``wait4``) is its own: ``--no-cache`` for the import, then once to store the cache entry and once to
read it. ``--ijson`` adds the same import done with ``ijson.items`` (its C backend) and numpy, to
compare parsers. ``--cache-turns 2289`` builds a released-layout file from the official RefCOCO+
question file (real dialogues and boxes, masks drawn in the boxes) and times loading its cache entry.
Generated files go to a temporary folder (``--tmp``) and are deleted.

    python benchmarks/released_masks.py --sizes-mb 140 830 --encoding indent compact bool --ijson \
        --cache-turns 2289
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL = ROOT.parent / "shared" / "upstream_regiondial" / "refcocoplus.json"
TOKENS = {"indent": (b"0", b"1"), "compact": (b"0", b"1"), "spaced": (b"0", b"1"), "bool": (b"false", b"true")}


def mask_json(height: int, width: int, box: tuple[int, int, int, int], encoding: str) -> bytes:
    """One dense mask (an ellipse inside ``box``) as the JSON of a ``masks`` entry, without building a list."""
    zero, one = TOKENS[encoding]
    x1, y1, x2, y2 = box
    cy, cx, ry, rx = (y1 + y2) / 2, (x1 + x2) / 2, max((y2 - y1) / 2, 1), max((x2 - x1) / 2, 1)
    if encoding == "indent":  # json.dump(indent=2) at the depth of a turn's masks: rows at 12, values at 14
        row_open, sep, row_close, rows_sep, mask_open, mask_close = (
            b"[\n" + b" " * 14, b",\n" + b" " * 14, b"\n" + b" " * 12 + b"]", b",\n" + b" " * 12,
            b"[\n" + b" " * 12, b"\n" + b" " * 10 + b"]")
    else:
        gap = b", " if encoding in ("spaced", "bool") else b","
        row_open, sep, row_close, rows_sep, mask_open, mask_close = b"[", gap, b"]", gap, b"[", b"]"
    cache: dict[tuple[int, int], bytes] = {}
    rows = []
    for y in range(height):
        dy = (y + 0.5 - cy) / ry
        if abs(dy) < 1:
            half = rx * (1 - dy * dy) ** 0.5
            span = (max(0, int(round(cx - half))), min(width, int(round(cx + half))))
        else:
            span = (0, 0)
        if span not in cache:
            values = [zero] * span[0] + [one] * (span[1] - span[0]) + [zero] * (width - span[1])
            cache[span] = row_open + sep.join(values) + row_close
        rows.append(cache[span])
    return mask_open + rows_sep.join(rows) + mask_close


def write_released(path: Path, *, target_bytes: int = 0, encoding: str = "indent", questions: Path | None = None,
                   max_turns: int = 0) -> tuple[int, int]:
    """Write a released-layout file; returns ``(dialogues, turns)``.

    With ``questions`` (an official question file) its dialogues are used, masks drawn in their
    boxes on a 640 x 640 canvas; otherwise dialogues are generated until ``target_bytes``.
    """
    rng = np.random.default_rng(0)
    dialogues = turns = 0
    source = json.loads(questions.read_text(encoding="utf-8")) if questions else None
    with open(path, "wb") as f:
        f.write(b"[")
        while True:
            if source is not None:
                if dialogues == len(source) or (max_turns and turns >= max_turns):
                    break
                record = source[dialogues]
                height = width = 640
                plain = record["conversational_turns"]
            else:
                if f.tell() >= target_bytes:
                    break
                height, width = (480, 640) if rng.random() < 0.7 else (640, 480)
                plain = []
                for t in range(int(rng.integers(2, 6))):
                    x1, y1 = int(rng.integers(0, width - 60)), int(rng.integers(0, height - 60))
                    box = [x1, y1, int(rng.integers(x1 + 20, width)), int(rng.integers(y1 + 20, height))]
                    turn = {"question": f"Find the object {t} left of the <box>{{context_bbox}}</box>.", "bboxes": [box]}
                    if t:
                        turn["context_from_turn"] = int(rng.integers(0, t))
                    plain.append(turn)
                record = {"image_id": 100000 + dialogues,
                          "image_path": f"x_test_multi_bbox_images/{100000 + dialogues}.jpg"}
            f.write((b"," if dialogues else b"") + b'{"image_id": ' + str(record["image_id"]).encode()
                    + b', "conversational_turns": [')
            for t, turn in enumerate(plain):
                box = [max(0, min(int(v), limit)) for v, limit in zip(turn["bboxes"][0], (width, height) * 2, strict=True)]
                head = {**turn, "ann_ids": [1000 * dialogues + t]}
                f.write((b", " if t else b"") + json.dumps(head).encode()[:-1] + b', "masks": [')
                f.write(mask_json(height, width, box, encoding))
                f.write(b"]}")
                turns += 1
            f.write(b"]" + (b', "image_path": ' + json.dumps(record["image_path"]).encode()
                            if "image_path" in record else b"") + b"}")
            dialogues += 1
        f.write(b"]")
    return dialogues, turns


def run_cli(*args: str, env: dict[str, str]) -> tuple[float, float, str, float]:
    """``(seconds, peak RSS in MB, stdout, CPU seconds)`` of ``regiondial ARGS`` in a fresh process."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "regiondial_bench.cli", *args], stdout=subprocess.PIPE,
                                stderr=err, env=env, cwd=ROOT)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)  # reaped here, so its own rusage comes back
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
        seconds = time.perf_counter() - start
        if proc.returncode:
            err.seek(0)
            raise SystemExit(f"regiondial {' '.join(args)} failed:\n{err.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024, out.decode(), usage.ru_utime + usage.ru_stime


def ijson_child(path: str) -> None:
    """The same import with ijson's C backend: one dialogue at a time, masks through numpy to RLE."""
    import resource

    import ijson

    from regiondial_bench.geometry import mask_to_rle

    start = time.perf_counter()
    turns = 0
    with open(path, "rb") as f:
        for dialogue in ijson.items(f, "item", use_float=True, buf_size=1 << 20):
            for turn in dialogue["conversational_turns"]:
                mask_to_rle(np.asarray(turn["masks"][0]) == 1)
                turns += 1
    print(json.dumps({"seconds": time.perf_counter() - start, "turns": turns, "backend": ijson.backend,
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(path: Path, env: dict[str, str], with_ijson: bool) -> dict:
    size_mb = path.stat().st_size / 1e6
    seconds, peak, out, cpu = run_cli("bench", "info", str(path), "--no-cache", "--json", env=env)
    info = json.loads(out)
    row = {"file_mb": size_mb, "turns": info["turns"], "masks": info["turns_with_gold_mask"],
           "import_s": seconds, "import_in_process_s": info["cache"]["seconds"], "peak_mb": peak, "cpu_s": cpu}
    run_cli("bench", "info", str(path), env=env)  # stores the cache entry
    seconds, peak_cached, out, _ = run_cli("bench", "info", str(path), "--json", env=env)
    row.update(cached_s=seconds, cached_load_s=json.loads(out)["cache"]["seconds"], cached_peak_mb=peak_cached)
    if with_ijson:
        out = subprocess.run([sys.executable, __file__, "--ijson-child", str(path)], capture_output=True, text=True,
                             check=True, env=env, cwd=ROOT).stdout
        row["ijson"] = json.loads(out)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[140, 830])
    parser.add_argument("--encoding", nargs="+", choices=sorted(TOKENS), default=["indent"])
    parser.add_argument("--ijson", action="store_true", help="also time ijson (yajl2_c) on each file")
    parser.add_argument("--cache-turns", type=int, default=0,
                        help="time the cache load of a file built from the official RefCOCO+ questions (2289)")
    parser.add_argument("--tmp", type=Path, default=None, help="where the generated files go (deleted after)")
    parser.add_argument("--ijson-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ijson_child:
        ijson_child(args.ijson_child)
        return
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="released-masks-") as tmp:
        env = {**os.environ, "REGIONDIAL_CACHE": str(Path(tmp) / "cache"),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        print(f"load average at the start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)\n")
        print("| encoding | file MB | turns | MB/turn | bench info --no-cache s | import s | MB/s | CPU s | MB per CPU s | "
              "peak RSS MB | cached bench info s | cache load s | cached peak RSS MB |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        ijson_rows = []
        for encoding in args.encoding:
            for size in args.sizes_mb:
                path = Path(tmp) / f"x{encoding}_multi_turn.json"
                write_released(path, target_bytes=int(size * 1e6), encoding=encoding)
                r = measure(path, env, args.ijson)
                path.unlink()
                print(f"| {encoding} | {r['file_mb']:.0f} | {r['turns']} | {r['file_mb'] / r['turns']:.2f} | "
                      f"{r['import_s']:.2f} | {r['import_in_process_s']:.2f} | "
                      f"{r['file_mb'] / r['import_in_process_s']:.0f} | {r['cpu_s']:.1f} | "
                      f"{r['file_mb'] / r['cpu_s']:.0f} | {r['peak_mb']:.0f} | {r['cached_s']:.2f} | "
                      f"{r['cached_load_s']:.3f} | {r['cached_peak_mb']:.0f} |", flush=True)
                if "ijson" in r:
                    ijson_rows.append((encoding, r))
        if ijson_rows:
            print("\n| encoding | file MB | ijson (" + ijson_rows[0][1]["ijson"]["backend"] + ") s | ijson MB/s | "
                  "ijson peak RSS MB | this parser MB/s |")
            print("|---|---:|---:|---:|---:|---:|")
            for encoding, r in ijson_rows:
                j = r["ijson"]
                print(f"| {encoding} | {r['file_mb']:.0f} | {j['seconds']:.2f} | {r['file_mb'] / j['seconds']:.0f} | "
                      f"{j['peak_mb']:.0f} | {r['file_mb'] / r['import_in_process_s']:.0f} |")
        if args.cache_turns:
            if not OFFICIAL.is_file():
                raise SystemExit(f"--cache-turns needs the official question file {OFFICIAL}")
            path = Path(tmp) / "refcocoplus_multi_turn.json"
            dialogues, turns = write_released(path, encoding="compact", questions=OFFICIAL, max_turns=args.cache_turns)
            r = measure(path, env, False)
            path.unlink()
            print(f"\nofficial RefCOCO+ dialogues with dense 640 x 640 masks: {dialogues} dialogues, {turns} turns, "
                  f"{r['file_mb']:.0f} MB; import {r['import_in_process_s']:.1f} s "
                  f"({r['file_mb'] / r['import_in_process_s']:.0f} MB/s, peak {r['peak_mb']:.0f} MB); cached: "
                  f"bench info {r['cached_s']:.2f} s, of which loading the entry {r['cached_load_s']:.3f} s "
                  f"(peak {r['cached_peak_mb']:.0f} MB)")
        print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
