"""A test adapter whose mistakes propagate: it answers right only when its references are right."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from regiondial_bench.adapters import Adapter, RoundRequest, RoundResponse, register_adapter
from regiondial_bench.geometry import box_iou
from regiondial_bench.schema import Bench, Region


def _coin(key: tuple[str, int], salt: str) -> float:
    digest = hashlib.sha256(f"{salt}:{key[0]}:{key[1]}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@register_adapter("test-fallible")
class FallibleAdapter(Adapter):
    """Knows the gold boxes; answers a turn right with probability ``accuracy`` (a fixed hash of
    the turn), and never when a filled reference box misses the referenced turn's gold box.
    Wrong answers are the gold box shifted by its own width (IoU 0)."""

    needs_pixels = False
    needs_image_size = False
    renders_regions = True  # raw_text is its box as a plain list

    def __init__(self, accuracy: float = 0.85, salt: str = "a") -> None:
        self.accuracy = accuracy
        self.salt = salt
        self._gold: dict[tuple[str, int], tuple[float, float, float, float]] = {}

    def prepare(self, bench: Bench) -> None:
        for dialogue in bench:
            for turn in dialogue.turns:
                self._gold[(dialogue.dialogue_id, turn.index)] = turn.gold_boxes[0]

    def config(self) -> dict:
        return {"accuracy": self.accuracy, "salt": self.salt}

    def generate(self, requests: Sequence[RoundRequest]) -> list[RoundResponse]:
        out = []
        for r in requests:
            gold = self._gold[r.key]
            ok = _coin(r.key, self.salt) < self.accuracy
            for ref in r.references:
                target = self._gold.get((r.dialogue_id, ref.turn))
                if ref.box is None or target is None or box_iou(ref.box, target) <= 0.5:
                    ok = False
            x1, y1, x2, y2 = gold
            box = gold if ok else (x2, y1, x2 + (x2 - x1), y2)
            out.append(RoundResponse(raw_text=f"<answer>{list(box)}</answer>", regions=[Region(box=box)]))
        return out
