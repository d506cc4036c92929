"""A scripted SegLLM worker that speaks the ``segllm`` adapter's protocol (for tests and demos).

It loads no model. Its answer to a round is deterministic: with references, the box of the
first referenced round shifted right by its own width (clipped to the image); without, the
central quarter of the image. The mask is the box's mask. Behaviour switches:

``--fail-on WORD``  answer ``{"ok": false}`` to questions containing WORD.
``--crash-after N`` exit abruptly after N segment requests.
``--garbage-after N`` write a non-JSON line after N segment requests.
``--protocol V``    announce protocol version V in the hello.

Run: ``python -m regiondial_bench.testing.fake_segllm_worker [switches]``.
"""

from __future__ import annotations

import argparse
import json
import sys


def answer_box(image_size: list[int], references: list[dict]) -> list[float]:
    """The scripted answer box (original pixels).

    >>> answer_box([100, 80], [])
    [25.0, 20.0, 75.0, 60.0]
    >>> answer_box([100, 80], [{"round": 1, "box": [10, 10, 30, 40]}])
    [30.0, 10.0, 50.0, 40.0]
    """
    w, h = image_size
    ref = next((r["box"] for r in references if r.get("box")), None)
    if ref is None:
        return [w / 4, h / 4, 3 * w / 4, 3 * h / 4]
    x1, y1, x2, y2 = (float(v) for v in ref)
    shift = x2 - x1
    nx1, nx2 = min(x1 + shift, w - 1.0), min(x2 + shift, float(w))
    return [nx1, y1, max(nx2, nx1 + 1.0), y2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fail-on", default=None)
    parser.add_argument("--crash-after", type=int, default=None)
    parser.add_argument("--garbage-after", type=int, default=None)
    parser.add_argument("--protocol", type=int, default=1)
    args = parser.parse_args(argv)

    from regiondial_bench.geometry import box_to_rle

    served = 0
    for line in sys.stdin:
        message = json.loads(line)
        op = message.get("op")
        if op == "shutdown":
            return 0
        if op == "hello":
            reply = {"ok": True, "protocol": args.protocol, "model": "fake-segllm"}
        elif op == "segment":
            if args.crash_after is not None and served >= args.crash_after:
                print("fake worker: crashing as asked", file=sys.stderr, flush=True)
                return 3
            if args.garbage_after is not None and served >= args.garbage_after:
                print("this is not json", flush=True)
                served += 1
                continue
            served += 1
            question = message["question"]
            if args.fail_on and args.fail_on in question:
                reply = {"ok": False, "id": message["id"], "error": f"refused {args.fail_on!r}"}
            else:
                w, h = message["image_size"]
                box = answer_box([w, h], message["references"])
                mask = box_to_rle(box, h, w).model_dump()
                reply = {"ok": True, "id": message["id"], "box": box, "mask": mask,
                         "text": f"history={len(message['history'])} refs={[r['round'] for r in message['references']]}"}
        else:
            reply = {"ok": False, "error": f"unknown op {op!r}"}
        print(json.dumps(reply), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
