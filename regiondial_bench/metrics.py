"""Per-turn scores and per-round aggregation, as the paper reports them.

Definitions (UPSTREAM.md, section 1):

* **AP50** (the paper's "AP", really Acc@0.5): a turn scores 1 when *any* predicted box has
  IoU **> 0.5** (strict) with the gold box; no box scores 0. ``ap50_top1`` counts only the first
  predicted box.
* **gIoU**: mean over turns of |P∧G| / |P∨G| of the masks; **cIoU**: Σ|P∧G| / Σ|P∨G|. A turn
  without a predicted mask counts as ``(0, |G|)``; a zero union counts as IoU 0.
* **Avg** (row ``all``): the micro-average over every turn, rounds 8+ included.
* 95% confidence intervals by bootstrap over dialogues (turns of one dialogue are dependent).

All scores are percentages.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .geometry import box_iou_matrix, rle_intersection_union
from .schema import Bench, ConfidenceInterval, PredictionRecord, Provenance, Results, RoundRow

HIT_THRESHOLD = 0.5
BUCKET_FROM = 8  # rounds >= 8 are pooled into "8+" (the paper's tables stop at R7)


@dataclass(frozen=True)
class TurnScore:
    """The scores of one answered turn.

    ``iou`` is the IoU of the first predicted box (0 without boxes); ``hit`` is the upstream
    AP50 hit (any box IoU > 0.5); ``mask_inter``/``mask_union`` are None when masks are not scored.
    """

    dialogue_id: str
    turn: int
    round: int
    iou: float
    hit: bool
    hit_top1: bool
    mask_inter: int | None
    mask_union: int | None
    error: str | None
    reference_turns: tuple[int, ...]
    failure_kind: str | None = None  # "answer" or "infra" when the turn failed

    @property
    def mask_iou(self) -> float | None:
        if self.mask_union is None:
            return None
        return self.mask_inter / self.mask_union if self.mask_union > 0 else 0.0


class IncompleteRunError(ValueError):
    """The predictions do not cover the bench (or cover turns it does not have)."""


def score_turn(gold_boxes: Sequence[Sequence[float]], predicted_boxes: Sequence[Sequence[float]]) -> tuple[float, bool, bool]:
    """``(top-1 IoU, any-box hit, top-1 hit)`` of predicted boxes against the gold box(es).

    With several gold boxes, each predicted box takes its best gold match.

    >>> score_turn([[0, 0, 10, 10]], [[20, 20, 30, 30], [0, 0, 10, 9]])
    (0.0, True, False)
    >>> score_turn([[0, 0, 10, 10]], [])
    (0.0, False, False)
    >>> score_turn([[0, 0, 10, 10]], [[0, 0, 10, 5]])  # IoU exactly 0.5 is not a hit (strict)
    (0.5, False, False)
    """
    if len(predicted_boxes) == 0:
        return 0.0, False, False
    ious = box_iou_matrix(np.asarray(predicted_boxes), np.asarray(gold_boxes)).max(axis=1)
    return float(ious[0]), bool((ious > HIT_THRESHOLD).any()), bool(ious[0] > HIT_THRESHOLD)


def turn_scores(
    bench: Bench,
    records: Iterable[PredictionRecord],
    *,
    masks: bool | None = None,
    require_complete: bool = True,
) -> list[TurnScore]:
    """Score every record against the bench, in bench order.

    Args:
        bench: the bench the records answer.
        records: one record per turn (duplicates or unknown turns raise IncompleteRunError).
        masks: score masks; None = when any record has a mask.
        require_complete: every turn of the bench must be answered.
    """
    by_key: dict[tuple[str, int], PredictionRecord] = {}
    for record in records:
        if record.key in by_key:
            raise IncompleteRunError(f"turn {record.dialogue_id}#{record.turn} is answered twice")
        by_key[record.key] = record
    if masks is None:
        masks = any(r.mask is not None for r in by_key.values())

    scores: list[TurnScore] = []
    seen = 0
    missing: list[str] = []
    for dialogue in bench:
        for turn in dialogue.turns:
            record = by_key.get((dialogue.dialogue_id, turn.index))
            if record is None:
                missing.append(f"{dialogue.dialogue_id}#{turn.index}")
                continue
            seen += 1
            iou, hit, hit_top1 = score_turn(turn.gold_boxes, [r.box for r in record.regions])
            inter = union = None
            if masks and turn.gold_mask is not None:
                inter, union = rle_intersection_union(record.mask, turn.gold_mask)
            scores.append(
                TurnScore(
                    dialogue_id=dialogue.dialogue_id,
                    turn=turn.index,
                    round=turn.round,
                    iou=iou,
                    hit=hit,
                    hit_top1=hit_top1,
                    mask_inter=inter,
                    mask_union=union,
                    error=record.error,
                    reference_turns=tuple(ref.turn for ref in turn.references),
                    failure_kind=(record.failure_kind or "answer") if record.error is not None else None,
                )
            )
    if seen != len(by_key):
        known = {(d.dialogue_id, t.index) for d in bench for t in d.turns}
        extra = sorted(f"{k[0]}#{k[1]}" for k in by_key if k not in known)
        raise IncompleteRunError(f"{len(extra)} predictions name turns the bench does not have: {extra[:5]}")
    if missing and require_complete:
        raise IncompleteRunError(
            f"{len(missing)} of {bench.num_turns} turns have no prediction (first: {missing[:5]}); "
            "finish the run with --resume, or score with --partial"
        )
    return scores


def failure_kind(error: str) -> str:
    """A failure reason without its numbers, for counting (``"degenerate box … (x2 <= x1 …)"``)."""
    return re.sub(r"\[[^\]]*\]|-?\d+(\.\d+)?(e-?\d+)?", "…", error)[:80]


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------


@dataclass
class _Columns:
    """Per-turn arrays used for aggregation and bootstrap."""

    dialogue: np.ndarray  # int index of the dialogue
    round: np.ndarray
    hit: np.ndarray
    hit_top1: np.ndarray
    iou: np.ndarray
    mask_iou: np.ndarray  # nan where masks are not scored
    inter: np.ndarray
    union: np.ndarray
    failed: np.ndarray

    @classmethod
    def of(cls, scores: Sequence[TurnScore]) -> _Columns:
        ids: dict[str, int] = {}
        dialogue = np.array([ids.setdefault(s.dialogue_id, len(ids)) for s in scores], dtype=np.int64)
        mask_iou = np.array([np.nan if s.mask_iou is None else s.mask_iou for s in scores], dtype=np.float64)
        return cls(
            dialogue=dialogue,
            round=np.array([s.round for s in scores], dtype=np.int64),
            hit=np.array([s.hit for s in scores], dtype=np.float64),
            hit_top1=np.array([s.hit_top1 for s in scores], dtype=np.float64),
            iou=np.array([s.iou for s in scores], dtype=np.float64),
            mask_iou=mask_iou,
            inter=np.array([s.mask_inter or 0 for s in scores], dtype=np.float64),
            union=np.array([s.mask_union or 0 for s in scores], dtype=np.float64),
            failed=np.array([s.error is not None for s in scores], dtype=bool),
        )


def _pct(num: float, den: float) -> float | None:
    return round(100.0 * num / den, 4) if den > 0 else None


def _row(name: str, c: _Columns, select: np.ndarray, cis: dict[str, tuple[float, float]] | None) -> RoundRow:
    n = int(select.sum())
    masked = select & ~np.isnan(c.mask_iou)
    n_mask = int(masked.sum())
    row = RoundRow(
        round=name,
        n=n,
        ap50=_pct(c.hit[select].sum(), n),
        ap50_top1=_pct(c.hit_top1[select].sum(), n),
        mean_iou=_pct(c.iou[select].sum(), n),
        giou=_pct(c.mask_iou[masked].sum(), n_mask) if n_mask else None,
        ciou=_pct(c.inter[masked].sum(), c.union[masked].sum()) if n_mask else None,
        ap50_ci=ConfidenceInterval(low=cis["ap50"][0], high=cis["ap50"][1]) if cis and "ap50" in cis else None,
        giou_ci=ConfidenceInterval(low=cis["giou"][0], high=cis["giou"][1]) if cis and "giou" in cis else None,
        failures=int(c.failed[select].sum()),
    )
    return row


def _bootstrap(
    c: _Columns, selections: dict[str, np.ndarray], n_bootstrap: int, seed: int
) -> dict[str, dict[str, tuple[float, float]]]:
    """95% percentile intervals of AP50 and gIoU per selection, resampling whole dialogues.

    One resample draws D dialogues with replacement; a dialogue's weight is how often it was
    drawn, so every selection's score is a ratio of weighted per-dialogue sums (one matrix
    product per statistic instead of a Python loop over resamples).
    """
    if n_bootstrap <= 0 or len(c.dialogue) == 0:
        return {}
    n_dialogues = int(c.dialogue.max()) + 1
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_dialogues, size=(n_bootstrap, n_dialogues))
    weights = np.zeros((n_bootstrap, n_dialogues), dtype=np.float64)
    np.add.at(weights, (np.repeat(np.arange(n_bootstrap), n_dialogues), draws.ravel()), 1.0)

    def per_dialogue(values: np.ndarray, select: np.ndarray) -> np.ndarray:
        return np.bincount(c.dialogue[select], weights=values[select], minlength=n_dialogues)

    out: dict[str, dict[str, tuple[float, float]]] = {}
    for name, select in selections.items():
        counts = weights @ per_dialogue(np.ones_like(c.hit), select)
        intervals: dict[str, tuple[float, float]] = {}
        with np.errstate(invalid="ignore", divide="ignore"):
            ap = weights @ per_dialogue(c.hit, select) / counts
            intervals["ap50"] = _interval(ap)
            masked = select & ~np.isnan(c.mask_iou)
            if masked.any():
                mask_counts = weights @ per_dialogue(np.ones_like(c.hit), masked)
                giou = weights @ per_dialogue(np.nan_to_num(c.mask_iou), masked) / mask_counts
                intervals["giou"] = _interval(giou)
        out[name] = intervals
    return out


def _interval(samples: np.ndarray) -> tuple[float, float]:
    low, high = np.nanpercentile(samples, [2.5, 97.5]) * 100.0
    return round(float(low), 4), round(float(high), 4)


def aggregate(
    scores: Sequence[TurnScore],
    provenance: Provenance,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> Results:
    """Per-round rows (every round index), the ``8+`` bucket and the all-turn ``Avg`` row."""
    c = _Columns.of(scores)
    rounds = sorted(set(c.round.tolist()))
    selections = {str(r): c.round == r for r in rounds}
    if any(r >= BUCKET_FROM for r in rounds):
        selections[f"{BUCKET_FROM}+"] = c.round >= BUCKET_FROM
    selections["all"] = np.ones(len(c.round), dtype=bool)
    cis = _bootstrap(c, selections, n_bootstrap, seed)
    rows = {name: _row(name, c, select, cis.get(name)) for name, select in selections.items()}
    reasons = Counter(failure_kind(s.error) for s in scores if s.error)
    provenance = provenance.model_copy(update={"bootstrap": {"resamples": n_bootstrap, "seed": seed, "unit": "dialogue"}})
    return Results(
        provenance=provenance,
        rounds=[rows[str(r)] for r in rounds],
        buckets=[rows[k] for k in rows if k.endswith("+")],
        overall=rows["all"],
        failure_reasons=dict(reasons.most_common()),
        failure_kinds=dict(sorted(Counter(s.failure_kind for s in scores if s.failure_kind).items())),
    )


def score_records(
    bench: Bench,
    records: Iterable[PredictionRecord],
    *,
    provenance: Provenance,
    masks: bool | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    require_complete: bool = True,
) -> Results:
    """Score a prediction log against its bench: :func:`turn_scores` then :func:`aggregate`."""
    scores = turn_scores(bench, records, masks=masks, require_complete=require_complete)
    return aggregate(scores, provenance, n_bootstrap=n_bootstrap, seed=seed)
