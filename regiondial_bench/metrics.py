"""Per-turn scores and per-round aggregation, as the paper reports them.

Definitions (UPSTREAM.md, section 1):

* **AP50** (the paper's "AP", really Acc@0.5): a turn scores 1 when *any* predicted box has
  IoU **> 0.5** (strict) with the gold box; no box scores 0. ``ap50_top1`` counts only the first
  predicted box.
* **gIoU**: mean over turns of |P∧G| / |P∨G| of the masks; **cIoU**: Σ|P∧G| / Σ|P∨G|. A turn
  without a predicted mask counts as ``(0, |G|)``; a zero union counts as IoU 0.
* **Avg** (row ``all``): the micro-average over every turn, rounds 8+ included.
* **Mask pass rates** (``mask_pass``): the share of turns (with masks) whose mask IoU is above 0.3,
  0.5, 0.7 and 0.9 (strict), per round, as upstream's per-round evaluator prints them.
* 95% confidence intervals by bootstrap over dialogues (turns of one dialogue are dependent).

All scores are percentages.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .geometry import box_iou, box_iou_matrix, rle_intersection_union
from .schema import (
    Bench,
    ConfidenceInterval,
    PredictionRecord,
    Provenance,
    RepeatRow,
    RepeatsSummary,
    Results,
    RoundRow,
    Turn,
)

HIT_THRESHOLD = 0.5
MASK_PASS_THRESHOLDS = (0.3, 0.5, 0.7, 0.9)
"""Mask IoU thresholds of the pass rates upstream's per-round evaluator prints (UPSTREAM.md section 1)."""
BUCKET_FROM = 8  # rounds >= 8 are pooled into "8+" (the paper's tables stop at R7)
SCALAR_IOU_PAIRS = 16  # up to this many (predicted, gold) pairs, IoU is computed without numpy
MAX_RESAMPLES = 10_000
"""Most bootstrap resamples a run (or a submission, for the validator to recompute) may ask for."""
BOOTSTRAP_CHUNK = 64  # resamples drawn at once: memory is O(chunk x dialogues + turns), not resamples x dialogues
BOOTSTRAP_CHUNK_CELLS = 1 << 18  # ... and fewer when the bench has many dialogues
BOOTSTRAP_SAMPLES_PER_GROUP = 1 << 22  # resample scores held at once (selections x resamples)


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
    if len(predicted_boxes) * len(gold_boxes) <= SCALAR_IOU_PAIRS:  # the usual 1 x 1: no array round trip
        ious_list = [max(box_iou(p, g) for g in gold_boxes) for p in predicted_boxes]
        hit = any(v > HIT_THRESHOLD for v in ious_list)
        return float(ious_list[0]), hit, bool(ious_list[0] > HIT_THRESHOLD)
    ious = box_iou_matrix(np.asarray(predicted_boxes), np.asarray(gold_boxes)).max(axis=1)
    return float(ious[0]), bool((ious > HIT_THRESHOLD).any()), bool(ious[0] > HIT_THRESHOLD)


def score_record(dialogue_id: str, turn: Turn, record: PredictionRecord, *, masks: bool) -> TurnScore:
    """The scores of one answered turn (``masks``: score the mask when the turn has a gold mask)."""
    iou, hit, hit_top1 = score_turn(turn.gold_boxes, [r.box for r in record.regions])
    inter = union = None
    if masks and turn.gold_mask is not None:
        inter, union = rle_intersection_union(record.mask, turn.gold_mask)
    return TurnScore(
        dialogue_id=dialogue_id,
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
            scores.append(score_record(dialogue.dialogue_id, turn, record, masks=masks))
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


def _sums(c: _Columns, select: np.ndarray) -> tuple:
    """``(n, hits, top-1 hits, IoU sum, turns with masks, mask IoU sum, ΣI, ΣU, failures, mask passes)``
    of ``select``; mask passes count the turns above each of :data:`MASK_PASS_THRESHOLDS`."""
    masked = select[~np.isnan(c.mask_iou[select])]
    passes = tuple(int((c.mask_iou[masked] > t).sum()) for t in MASK_PASS_THRESHOLDS)
    return (len(select), c.hit[select].sum(), c.hit_top1[select].sum(), c.iou[select].sum(), len(masked),
            c.mask_iou[masked].sum(), c.inter[masked].sum(), c.union[masked].sum(), int(c.failed[select].sum()),
            passes)


SMALL_SELECTION = 8  # below this many turns numpy sums sequentially, exactly as bincount does


def _small_sums(c: _Columns, selects: list[np.ndarray]) -> list[tuple]:
    """:func:`_sums` of many small selections at once (one bincount per column, not one call per round).

    For fewer than :data:`SMALL_SELECTION` turns numpy's sum adds in order, as bincount does,
    so the sums (and the rounded scores) are the same bits as :func:`_sums` gives.
    """
    if not selects:
        return []
    sizes = [len(t) for t in selects]
    which = np.repeat(np.arange(len(selects)), sizes)
    turns = np.concatenate(selects)
    valid = ~np.isnan(c.mask_iou[turns])
    k = len(selects)

    def total(values: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
        if keep is None:
            return np.bincount(which, weights=values[turns], minlength=k)
        return np.bincount(which[keep], weights=values[turns][keep], minlength=k)

    hit, top1, iou = total(c.hit), total(c.hit_top1), total(c.iou)
    n_mask = np.bincount(which[valid], minlength=k)
    giou, inter, union = total(c.mask_iou, valid), total(c.inter, valid), total(c.union, valid)
    failures = np.bincount(which, weights=c.failed[turns], minlength=k)
    ious = c.mask_iou[turns]
    passes = [np.bincount(which[valid], weights=ious[valid] > t, minlength=k) for t in MASK_PASS_THRESHOLDS]
    return [(sizes[i], hit[i], top1[i], iou[i], int(n_mask[i]), giou[i], inter[i], union[i], int(failures[i]),
             tuple(int(p[i]) for p in passes)) for i in range(k)]


def _row(name: str, sums: tuple, cis: dict[str, tuple[float, float]] | None) -> RoundRow:
    """The row of one selection from its :func:`_sums`."""
    n, hit, top1, iou, n_mask, giou, inter, union, failures, passes = sums
    row = RoundRow(
        round=name,
        n=n,
        ap50=_pct(hit, n),
        ap50_top1=_pct(top1, n),
        mean_iou=_pct(iou, n),
        giou=_pct(giou, n_mask) if n_mask else None,
        ciou=_pct(inter, union) if n_mask else None,
        ap50_ci=ConfidenceInterval(low=cis["ap50"][0], high=cis["ap50"][1]) if cis and "ap50" in cis else None,
        giou_ci=ConfidenceInterval(low=cis["giou"][0], high=cis["giou"][1]) if cis and "giou" in cis else None,
        failures=failures,
        mask_pass={f"{t:g}": _pct(p, n_mask) for t, p in zip(MASK_PASS_THRESHOLDS, passes, strict=True)}
        if n_mask else None,
    )
    return row


def _bootstrap(
    c: _Columns, selections: dict[str, np.ndarray], n_bootstrap: int, seed: int
) -> dict[str, dict[str, tuple[float, float]]]:
    """95% percentile intervals of AP50 and gIoU per selection, resampling whole dialogues.

    One resample draws D dialogues with replacement; a dialogue's weight is how often it was
    drawn, so every selection's score is a ratio of weighted per-dialogue sums. Resamples are
    drawn :data:`BOOTSTRAP_CHUNK` at a time (the same random stream as drawing all at once), and
    each selection keeps only the dialogues it holds, so memory is O(chunk x D + turns + scores
    kept) instead of O(resamples x D); ``selections`` maps names to index arrays of turns.
    """
    if n_bootstrap <= 0 or len(c.dialogue) == 0:
        return {}
    n_dialogues = int(c.dialogue.max()) + 1
    mask_values = np.nan_to_num(c.mask_iou)
    # every (selection, statistic) as the turns it sums over and the numerator's values
    names: list[tuple[str, str]] = []
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    for name, select in selections.items():
        names.append((name, "ap50"))
        parts.append((select, c.hit))
        masked = select[~np.isnan(c.mask_iou[select])]
        if len(masked):
            names.append((name, "giou"))
            parts.append((masked, mask_values))
    # per-dialogue sums of all of them at once: one unique over (statistic, dialogue) keys; within
    # a key the turns are summed in selection order, exactly as one bincount per selection did
    turns = np.concatenate([t for t, _ in parts])
    values = np.concatenate([v[t] for t, v in parts])
    stat_of_turn = np.repeat(np.arange(len(parts), dtype=np.int64), [len(t) for t, _ in parts])
    present, inverse = np.unique(stat_of_turn * n_dialogues + c.dialogue[turns], return_inverse=True)
    num = np.bincount(inverse, weights=values, minlength=len(present))
    den = np.bincount(inverse, minlength=len(present)).astype(np.float64)
    dialogue_at = present % n_dialogues
    starts = np.searchsorted(present // n_dialogues, np.arange(len(parts) + 1))
    # sums of integers (counts, hits) and single products are exact in any order; a gIoU
    # numerator over several dialogues is a BLAS dot, as before, so the intervals are unchanged
    dotted = [i for i, (_, statistic) in enumerate(names) if statistic == "giou" and starts[i + 1] - starts[i] > 1]

    out: dict[str, dict[str, tuple[float, float]]] = {name: {} for name in selections}
    group = max(1, BOOTSTRAP_SAMPLES_PER_GROUP // n_bootstrap)
    for first in range(0, len(parts), group):  # more groups only for benches with very many rounds
        last = min(first + group, len(parts))
        a, b = int(starts[first]), int(starts[last])
        segments = starts[first:last] - a
        at, num_g, den_g = dialogue_at[a:b], num[a:b], den[a:b]
        dotted_g = [i for i in dotted if first <= i < last]
        samples = np.empty((last - first, n_bootstrap), dtype=np.float64)
        rng = np.random.default_rng(seed)  # every group sees the same resamples
        chunk = max(1, min(BOOTSTRAP_CHUNK, BOOTSTRAP_CHUNK_CELLS // n_dialogues, BOOTSTRAP_CHUNK_CELLS // (b - a)))
        for lo in range(0, n_bootstrap, chunk):
            k = min(chunk, n_bootstrap - lo)
            draws = rng.integers(0, n_dialogues, size=(k, n_dialogues))
            cells = (draws + (np.arange(k) * n_dialogues)[:, None]).ravel()
            weights = np.bincount(cells, minlength=k * n_dialogues).reshape(k, n_dialogues).astype(np.float64)
            gathered = weights[:, at]
            numerators = np.add.reduceat(gathered * num_g, segments, axis=1)
            denominators = np.add.reduceat(gathered * den_g, segments, axis=1)
            for i in dotted_g:
                lo_i, hi_i = int(starts[i]) - a, int(starts[i + 1]) - a
                numerators[:, i - first] = gathered[:, lo_i:hi_i] @ num_g[lo_i:hi_i]
            with np.errstate(invalid="ignore", divide="ignore"):
                samples[:, lo:lo + k] = (numerators / denominators).T
        bounds = _percentiles(samples)
        for i in range(first, last):
            name, statistic = names[i]
            low, high = float(bounds[0, i - first]), float(bounds[1, i - first])
            if np.isnan(low):  # no resample drew a dialogue of this selection: no interval (not NaN,
                continue  # which results.json would write as null and never read back)
            out[name][statistic] = (round(low, 4), round(high, 4))
    return out


def _percentiles(samples: np.ndarray) -> np.ndarray:
    """The 2.5th and 97.5th percentiles of each row (x 100), NaNs ignored, as ``_interval`` per row."""
    bounds = np.full((2, len(samples)), np.nan, dtype=np.float64)
    ordered = np.sort(samples, axis=1)  # NaNs last; percentiles do not depend on the order
    valid = (~np.isnan(ordered)).sum(axis=1)
    for m in np.unique(valid):  # rows with the same number of valid resamples together
        if m == 0:
            continue  # an all-NaN row gives NaN, as nanpercentile does
        rows = np.flatnonzero(valid == m)
        bounds[:, rows] = np.percentile(ordered[rows, :m], [2.5, 97.5], axis=1)
    return bounds * 100.0


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
    # turns grouped by round once (index arrays): memory linear in the turns, not rounds x turns
    order = np.argsort(c.round, kind="stable")
    rounds_sorted = c.round[order]
    rounds, starts = np.unique(rounds_sorted, return_index=True)
    rounds = rounds.tolist()
    bounds = [*starts.tolist(), len(order)]
    selections = {str(r): order[bounds[i]:bounds[i + 1]] for i, r in enumerate(rounds)}
    if any(r >= BUCKET_FROM for r in rounds):
        selections[f"{BUCKET_FROM}+"] = np.flatnonzero(c.round >= BUCKET_FROM)
    selections["all"] = np.arange(len(c.round))
    cis = _bootstrap(c, selections, n_bootstrap, seed)
    small = [name for name, select in selections.items() if len(select) < SMALL_SELECTION]
    sums = dict(zip(small, _small_sums(c, [selections[name] for name in small]), strict=True))
    rows = {name: _row(name, sums[name] if name in sums else _sums(c, select), cis.get(name))
            for name, select in selections.items()}
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


# --------------------------------------------------------------------------------------------
# Repeats
# --------------------------------------------------------------------------------------------


def _mean_sd(values: list[float | None]) -> tuple[float | None, float | None]:
    present = [v for v in values if v is not None]
    if not present:
        return None, None
    mean = round(float(np.mean(present)), 4)
    sd = round(float(np.std(present, ddof=1)), 4) if len(present) > 1 else None
    return mean, sd


def summarize_repeats(
    bench: Bench,
    repeats: Sequence[Iterable[PredictionRecord]],
    *,
    specs: Sequence[Any],
    runs: Sequence[str],
) -> RepeatsSummary:
    """Per-round spread and consensus of several runs of one evaluation (``evaluate --repeats``).

    Args:
        bench: the bench every repeat answered (all of it).
        repeats: each repeat's records.
        specs: each repeat's run spec (its seed, adapter and reference mode are recorded).
        runs: each repeat's folder, as recorded.

    >>> from regiondial_bench.bench.specs import load_bench
    >>> from regiondial_bench.schema import PredictionRecord, Region, RunSpec
    >>> bench = load_bench("sample")
    >>> gold = [PredictionRecord(dialogue_id=d.dialogue_id, turn=t.index, round=t.round, question="", raw_text="",
    ...         regions=[Region(box=t.gold_boxes[0])]) for d in bench for t in d.turns]
    >>> miss = [r.model_copy(update={"regions": []}) for r in gold]
    >>> spec = RunSpec(adapter="x", bench_name="s", bench_hash=bench.content_hash, bench_location="sample")
    >>> row = summarize_repeats(bench, [gold, gold, miss], specs=[spec] * 3, runs=["a", "b", "c"]).overall
    >>> row.ap50, row.ap50_mean, row.ap50_consensus, row.agreement
    ([100.0, 100.0, 0.0], 66.6667, 100.0, 0.0)
    """
    if not repeats:
        raise ValueError("no repeats to summarize")
    scored = [turn_scores(bench, records) for records in repeats]
    hits = np.array([[s.hit for s in scores] for scores in scored], dtype=np.float64)  # repeats x turns
    masks = [np.array([np.nan if s.mask_iou is None else s.mask_iou for s in scores]) for scores in scored]
    rounds = np.array([s.round for s in scored[0]], dtype=np.int64)
    selections = {str(r): np.flatnonzero(rounds == r) for r in sorted(set(rounds.tolist()))}
    if any(r >= BUCKET_FROM for r in rounds.tolist()):
        selections[f"{BUCKET_FROM}+"] = np.flatnonzero(rounds >= BUCKET_FROM)
    selections["all"] = np.arange(len(rounds))
    majority = hits.sum(axis=0) > len(repeats) / 2
    unanimous = (hits.min(axis=0) == hits.max(axis=0))
    rows = {}
    for name, select in selections.items():
        per_repeat = [_pct(h[select].sum(), len(select)) for h in hits]
        giou = None
        if any(not np.isnan(m[select]).all() for m in masks):
            giou = [_pct(np.nansum(m[select]), int((~np.isnan(m[select])).sum())) for m in masks]
        mean, sd = _mean_sd(per_repeat)
        giou_mean, giou_sd = _mean_sd(giou) if giou is not None else (None, None)
        rows[name] = RepeatRow(round=name, n=len(select), ap50=per_repeat, ap50_mean=mean, ap50_sd=sd,
                               ap50_consensus=_pct(majority[select].sum(), len(select)),
                               agreement=_pct(unanimous[select].sum(), len(select)),
                               giou=giou, giou_mean=giou_mean, giou_sd=giou_sd)
    first = specs[0]
    return RepeatsSummary(
        repeats=len(repeats), seeds=[s.seed for s in specs], runs=list(runs), bench_name=first.bench_name,
        bench_hash=first.bench_hash, adapter=first.adapter, reference_mode=first.reference_mode,
        rounds=[rows[k] for k in selections if k.isdigit()],
        buckets=[rows[k] for k in selections if k.endswith("+")], overall=rows["all"],
    )
