"""Metrics: hand-computed cases and an independent pandas re-implementation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from regiondial_bench.api import make_provenance
from regiondial_bench.geometry import box_to_rle
from regiondial_bench.metrics import IncompleteRunError, aggregate, score_records, turn_scores
from regiondial_bench.schema import Bench, Dialogue, ImageRef, PredictionRecord, Region, RunSpec, Turn

PROV = make_provenance(RunSpec(adapter="x", bench_name="b", bench_hash="h", bench_location=""))


def bench_of(rounds_per_dialogue, size=(100, 100)):
    w, h = size
    dialogues = []
    for d, n in enumerate(rounds_per_dialogue):
        turns = [Turn(index=t, question="q", gold_boxes=[(0, 0, 10, 10)], gold_mask=box_to_rle((0, 0, 10, 10), h, w))
                 for t in range(n)]
        dialogues.append(Dialogue(dialogue_id=f"d{d}", image=ImageRef(width=w, height=h), turns=turns))
    return Bench(dialogues, name="m")


def record(d, t, boxes, mask_box=None, error=None, size=(100, 100)):
    mask = box_to_rle(mask_box, size[1], size[0]) if mask_box else None
    return PredictionRecord(dialogue_id=f"d{d}", turn=t, round=t + 1, question="q", raw_text="",
                            regions=[Region(box=b) for b in boxes], mask=mask, error=error)


def test_hand_computed_rounds():
    bench = bench_of([2, 2])
    records = [
        record(0, 0, [(0, 0, 10, 10)], mask_box=(0, 0, 10, 10)),            # hit, mask IoU 1
        record(1, 0, [(50, 50, 60, 60), (0, 0, 10, 9)], mask_box=(0, 0, 10, 5)),  # any-hit only, IoU .5
        record(0, 1, [(0, 0, 10, 5)], mask_box=None),                        # IoU exactly .5: miss; no mask
        record(1, 1, [], error="no JSON found in the text"),                 # failure
    ]
    results = score_records(bench, records, provenance=PROV, n_bootstrap=0)
    r1, r2 = results.rounds
    assert (r1.n, r1.ap50, r1.ap50_top1) == (2, 100.0, 50.0)
    assert r1.giou == pytest.approx(75.0) and r1.ciou == pytest.approx(100 * 150 / 200)
    assert (r2.ap50, r2.giou, r2.ciou, r2.failures) == (0.0, 0.0, 0.0, 1)  # missing masks count (0, |G|)
    assert results.overall.ap50 == 50.0 and results.overall.n == 4
    assert results.failure_reasons == {"no JSON found in the text": 1}


def test_avg_is_the_micro_average_and_rounds_bucket():
    bench = bench_of([9, 2, 2])
    records = [record(d, t, [(0, 0, 10, 10)] if t != 8 else []) for d, n in enumerate([9, 2, 2]) for t in range(n)]
    results = score_records(bench, records, provenance=PROV, n_bootstrap=0)
    assert [r.round for r in results.rounds] == [str(i) for i in range(1, 10)]
    assert [(b.round, b.n, b.ap50) for b in results.buckets] == [("8+", 2, 50.0)]
    assert results.overall.ap50 == pytest.approx(100 * 12 / 13)  # not the mean of the round columns


def test_incomplete_and_duplicate_runs_are_refused():
    bench = bench_of([2])
    with pytest.raises(IncompleteRunError, match="1 of 2 turns have no prediction"):
        turn_scores(bench, [record(0, 0, [])])
    with pytest.raises(IncompleteRunError, match="answered twice"):
        turn_scores(bench, [record(0, 0, []), record(0, 0, [])])
    with pytest.raises(IncompleteRunError, match="does not have"):
        turn_scores(bench, [record(0, 0, []), record(0, 1, []), record(5, 0, [])])
    assert len(turn_scores(bench, [record(0, 0, [])], require_complete=False)) == 1


def test_bootstrap_is_deterministic_and_brackets_the_estimate():
    rng = np.random.default_rng(3)
    bench = bench_of([int(n) for n in rng.integers(2, 6, size=60)])
    records = [record(int(d.dialogue_id[1:]), t.index, [(0, 0, 10, 10)] if rng.random() < 0.6 else [(0, 0, 3, 3)])
               for d in bench for t in d.turns]
    a = aggregate(turn_scores(bench, records), PROV, n_bootstrap=500, seed=1)
    b = aggregate(turn_scores(bench, records), PROV, n_bootstrap=500, seed=1)
    assert a == b
    ci = a.overall.ap50_ci
    assert ci.low < a.overall.ap50 < ci.high and ci.high - ci.low < 40


def independent_scores(bench, records):
    """AP50 per round recomputed with plain loops and pandas (no project code)."""

    def iou(p, g):
        ix = max(0.0, min(p[2], g[2]) - max(p[0], g[0]))
        iy = max(0.0, min(p[3], g[3]) - max(p[1], g[1]))
        inter = ix * iy
        union = (p[2] - p[0]) * (p[3] - p[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter
        return inter / union if union > 0 else 0.0

    gold = {(d.dialogue_id, t.index): t.gold_boxes[0] for d in bench for t in d.turns}
    rows = [{"round": r.round, "hit": any(iou(reg.box, gold[r.key]) > 0.5 for reg in r.regions)} for r in records]
    frame = pd.DataFrame(rows)
    return (frame.groupby("round")["hit"].mean() * 100).to_dict(), frame["hit"].mean() * 100


def test_agrees_with_an_independent_implementation():
    rng = np.random.default_rng(7)
    bench = bench_of([int(n) for n in rng.integers(2, 8, size=80)])
    records = []
    for d in bench:
        for t in d.turns:
            boxes = [(*rng.uniform(0, 5, 2).tolist(), *rng.uniform(5.5, 16, 2).tolist())
                     for _ in range(int(rng.integers(0, 3)))]
            records.append(record(int(d.dialogue_id[1:]), t.index, boxes))
    results = score_records(bench, records, provenance=PROV, n_bootstrap=0)
    per_round, overall = independent_scores(bench, records)
    assert {int(r.round): r.ap50 for r in results.rounds} == pytest.approx(per_round, abs=1e-3)
    assert results.overall.ap50 == pytest.approx(overall, abs=1e-3)
    assert 5 < overall < 95  # the random boxes exercise hits and misses


def test_mask_pass_rates_by_hand():
    bench = bench_of([2, 2])
    records = [
        record(0, 0, [(0, 0, 10, 10)], mask_box=(0, 0, 10, 10)),  # mask IoU 1
        record(1, 0, [(0, 0, 10, 10)], mask_box=(0, 0, 10, 5)),   # exactly 0.5: not above 0.5 (strict)
        record(0, 1, [(0, 0, 10, 10)], mask_box=(0, 0, 10, 8)),   # 0.8
        record(1, 1, [], error="no JSON found in the text"),     # no mask: IoU 0
    ]
    results = score_records(bench, records, provenance=PROV, n_bootstrap=0)
    r1, r2 = results.rounds
    assert r1.mask_pass == {"0.3": 100.0, "0.5": 50.0, "0.7": 50.0, "0.9": 50.0}
    assert r2.mask_pass == {"0.3": 50.0, "0.5": 50.0, "0.7": 50.0, "0.9": 0.0}
    assert results.overall.mask_pass == {"0.3": 75.0, "0.5": 50.0, "0.7": 50.0, "0.9": 25.0}
    no_masks = score_records(bench, [r.model_copy(update={"mask": None}) for r in records], provenance=PROV,
                             n_bootstrap=0, masks=False)
    assert no_masks.overall.mask_pass is None


def test_mask_pass_rates_agree_with_pixel_counting():
    """Against masks drawn as pixel arrays (no RLE), over rounds of many turns and of few (< 8)."""
    rng = np.random.default_rng(11)
    bench = bench_of([int(n) for n in rng.integers(1, 10, size=30)], size=(40, 30))
    records, expected = [], []
    for d in bench:
        for t in d.turns:
            x1, y1 = rng.integers(0, 12, 2)
            x2, y2 = x1 + rng.integers(1, 25), y1 + rng.integers(1, 18)
            records.append(record(int(d.dialogue_id[1:]), t.index, [(0, 0, 10, 10)],
                                  mask_box=(int(x1), int(y1), int(x2), int(y2)), size=(40, 30)))
            predicted, gold = np.zeros((30, 40), bool), np.zeros((30, 40), bool)
            predicted[y1:min(y2, 30), x1:min(x2, 40)] = True
            gold[0:10, 0:10] = True
            expected.append((t.round, (predicted & gold).sum() / (predicted | gold).sum()))
    results = score_records(bench, records, provenance=PROV, n_bootstrap=0)
    frame = pd.DataFrame(expected, columns=["round", "iou"])
    for threshold in (0.3, 0.5, 0.7, 0.9):
        above = frame.assign(above=frame["iou"] > threshold)
        by_round = (above.groupby("round")["above"].mean() * 100).to_dict()
        got = {int(r.round): r.mask_pass[f"{threshold:g}"] for r in results.rounds}
        assert got == pytest.approx(by_round, abs=1e-3)
        assert results.overall.mask_pass[f"{threshold:g}"] == pytest.approx(above["above"].mean() * 100, abs=1e-3)
    assert any(r.n < 8 for r in results.rounds) and any(r.n >= 8 for r in results.rounds)
