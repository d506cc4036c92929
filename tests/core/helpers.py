"""Small benches and adapters built inside the tests."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from regiondial_bench.adapters import Adapter, RoundRequest, RoundResponse
from regiondial_bench.geometry import box_to_rle
from regiondial_bench.schema import Bench, Dialogue, ImageRef, Reference, Turn


def make_bench(folder: Path, n_dialogues: int = 6, turns: int = 4, size=(64, 48), masks: bool = True) -> Bench:
    """A bench of flat-colour images; turn t's gold box is a distinct rectangle; turn t>0 references t-1."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    w, h = size
    dialogues = []
    for d in range(n_dialogues):
        Image.fromarray(np.full((h, w, 3), 40 * d % 255, dtype=np.uint8)).save(folder / "images" / f"{d}.png")
        turn_list = []
        for t in range(turns):
            box = (float(2 + 3 * t), float(2 + 2 * t), float(20 + 5 * t + d), float(18 + 4 * t))
            turn_list.append(Turn(
                index=t,
                question="Find the thing." if t == 0 else "Find the thing near the <box>{context_bbox}</box>.",
                gold_boxes=[box],
                gold_mask=box_to_rle(box, h, w) if masks else None,
                references=[Reference(turn=t - 1)] if t else [],
            ))
        dialogues.append(Dialogue(dialogue_id=f"d{d}", image=ImageRef(path=f"images/{d}.png", width=w, height=h),
                                  turns=turn_list))
    bench = Bench(dialogues, name="tiny", root=folder)
    bench.save(folder)
    return Bench.load(folder)


class ScriptedAdapter(Adapter):
    """Answers from a function of the request; records every batch it was given."""

    needs_pixels = False
    needs_image_size = False

    def __init__(self, answer, frame=None):
        self.answer = answer
        self.frame = frame
        self.batches: list[list[RoundRequest]] = []

    def generate(self, requests: Sequence[RoundRequest]) -> list[RoundResponse]:
        self.batches.append(list(requests))
        return [RoundResponse(raw_text=self.answer(r), frame=self.frame) for r in requests]


def answer_json(box) -> str:
    return "<answer>" + json.dumps([{"bbox_2d": list(box)}]) + "</answer>"


class SlowFlakyOracle(Adapter):
    """Gold answers unless a turn is one of the scripted failures or a reference it got is wrong.

    A turn is answered correctly only when every reference holds the referenced turn's gold box,
    so failures propagate along references (as they would for a real model) and a resume that
    refilled references wrongly would change the scores. Sleeps per batch (for kill tests).
    """

    needs_pixels = False
    needs_image_size = False

    def __init__(self, delay: float = 0.05, journal: str | None = None, gate: str | None = None):
        self.delay = delay
        self.gate = gate  # while this file exists, every batch after the first waits (concurrency tests)
        self.gold = {}
        # the keys of each batch, written when the *next* batch is asked: by then the runner has
        # logged and flushed them, so every key in the journal must survive a SIGKILL
        self.journal = journal
        self._previous: list = []

    def prepare(self, bench):
        self.gold = {(d.dialogue_id, t.index): t.gold_boxes[0] for d in bench for t in d.turns}

    def generate(self, requests):
        import time

        if self.journal and self._previous:
            with open(self.journal, "a", encoding="utf-8") as f:
                f.writelines(f"{d}#{t}\n" for d, t in self._previous)
        while self.gate and self._previous and os.path.exists(self.gate):
            time.sleep(0.01)
        self._previous = [r.key for r in requests]
        time.sleep(self.delay)
        out = []
        for r in requests:
            scripted_failure = (r.turn + len(r.dialogue_id)) % 3 == 0
            wrong_reference = any(ref.box != self.gold[(r.dialogue_id, ref.turn)] for ref in r.references)
            if scripted_failure or wrong_reference:
                out.append(RoundResponse(raw_text="<answer>not json</answer>"))
            else:
                out.append(RoundResponse(raw_text=answer_json(self.gold[r.key])))
        return out


def register_test_adapters() -> None:
    from regiondial_bench.adapters import get_adapter_class, register_adapter
    from regiondial_bench.adapters.base import AdapterError

    try:
        get_adapter_class("test-slow-flaky-oracle")
    except AdapterError:
        register_adapter("test-slow-flaky-oracle")(SlowFlakyOracle)
