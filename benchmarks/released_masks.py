"""Time importing a released ``*_multi_turn.json`` file (dense H x W masks) and attaching masks
from a COCO instances file, at growing sizes.

Each size runs in a fresh subprocess so that its peak memory (ru_maxrss) is its own. The files are
synthetic: the question file's layout with one 640 x 480 mask per turn (a filled box), and a
COCO instances file with a polygon per turn plus distractors.

    python benchmarks/released_masks.py --turns 100 200 400
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEIGHT, WIDTH = 480, 640


def write_files(folder: Path, turns: int) -> tuple[Path, Path, Path]:
    rows, instances = [], {"images": [], "annotations": [], "categories": [{"id": 1, "name": "o"}]}
    dense_rows = []
    ann = 1
    for d in range(0, turns, 4):
        image_id = 1000 + d
        instances["images"].append({"id": image_id, "width": WIDTH, "height": HEIGHT})
        plain_turns, dense_turns = [], []
        for t in range(min(4, turns - d)):
            x1, y1 = 20 * t + 10, 15 * t + 10
            x2, y2 = x1 + 200, y1 + 150
            question = {"question": f"Find object {t}.", "bboxes": [[x1, y1, x2, y2]]}
            plain_turns.append(question)
            row = "0" * x1 + "1" * (x2 - x1) + "0" * (WIDTH - x2)
            mask_rows = [f"[{','.join(row)}]" if y1 <= y < y2 else None for y in range(HEIGHT)]
            dense_turns.append((question, mask_rows))
            instances["annotations"].append({"id": ann, "image_id": image_id, "bbox": [x1, y1, 200, 150],
                                             "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]]})
            ann += 1
        rows.append({"image_id": image_id, "conversational_turns": plain_turns})
        dense_rows.append((image_id, dense_turns))
    questions = folder / "questions.json"
    questions.write_text(json.dumps(rows))
    (folder / "instances.json").write_text(json.dumps(instances))
    zero = "[" + ",".join("0" * WIDTH) + "]"
    released = folder / "x_multi_turn.json"
    with open(released, "w") as f:  # streamed: the dense lists are never built in this process
        f.write("[")
        for i, (image_id, dense_turns) in enumerate(dense_rows):
            f.write(("," if i else "") + f'{{"image_id": {image_id}, "conversational_turns": [')
            for j, (question, mask_rows) in enumerate(dense_turns):
                f.write(("," if j else "") + json.dumps(question)[:-1] + ', "ann_ids": [1], "masks": [[')
                f.write(",".join(r if r is not None else zero for r in mask_rows))
                f.write("]]}")
            f.write("]}")
        f.write("]")
    return questions, released, folder / "instances.json"


def child(kind: str, path: str, instances: str) -> None:
    from regiondial_bench.bench.sources.upstream import import_upstream

    start = time.perf_counter()
    bench = import_upstream(path, annotations=instances if kind == "annotations" else None)
    seconds = time.perf_counter() - start
    masks = sum(t.gold_mask is not None for d in bench for t in d.turns)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "turns": bench.num_turns, "masks": masks, "peak_mb": peak_mb}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, nargs="+", default=[100, 200, 400])
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    print("| input | turns | file MB | import s | ms/turn | peak RSS MB | turns with mask |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for turns in args.turns:
        with tempfile.TemporaryDirectory() as tmp:
            questions, released, instances = write_files(Path(tmp), turns)
            for kind, path in (("released", released), ("annotations", questions)):
                out = subprocess.run([sys.executable, __file__, "--child", kind, str(path), str(instances)],
                                     capture_output=True, text=True, check=True)
                r = json.loads(out.stdout)
                size = (path.stat().st_size + (instances.stat().st_size if kind == "annotations" else 0)) / 1e6
                label = "released dense masks" if kind == "released" else "question file + instances.json"
                print(f"| {label} | {r['turns']} | {size:.1f} | {r['seconds']:.2f} | "
                      f"{1000 * r['seconds'] / r['turns']:.1f} | {r['peak_mb']:.0f} | {r['masks']} |")


if __name__ == "__main__":
    main()
