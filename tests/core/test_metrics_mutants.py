"""Metrics at their edges: the cases a wrong number would hide in (found by ``scripts/mutation.py metrics``).

Each test states the rule it protects (UPSTREAM.md section 1 and the metrics module docstring);
the hand-computed values are worked out in the comments.
"""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from regiondial_bench import metrics
from regiondial_bench.api import make_provenance
from regiondial_bench.geometry import box_to_rle
from regiondial_bench.metrics import IncompleteRunError, failure_kind, score_records, score_turn, turn_scores
from regiondial_bench.schema import (
    RLE,
    Bench,
    Dialogue,
    ImageRef,
    PredictionRecord,
    Region,
    Results,
    RunSpec,
    Turn,
)

PROV = make_provenance(RunSpec(adapter="x", bench_name="b", bench_hash="h", bench_location=""))
SIZE = 20  # images are SIZE x SIZE pixels
GOLD = (0.0, 0.0, 10.0, 10.0)


def empty_mask() -> RLE:
    rle = mask_utils.encode(np.asfortranarray(np.zeros((SIZE, SIZE), dtype=np.uint8)))
    return RLE(size=(SIZE, SIZE), counts=rle["counts"].decode())


def bench(*dialogues: list[RLE | None | str]) -> Bench:
    """One dialogue per argument, one turn per entry: its gold mask ("box": the gold box's mask)."""
    out = []
    for d, masks in enumerate(dialogues):
        turns = [Turn(index=t, question="q", gold_boxes=[GOLD],
                      gold_mask=box_to_rle(GOLD, SIZE, SIZE) if m == "box" else m) for t, m in enumerate(masks)]
        out.append(Dialogue(dialogue_id=f"d{d}", image=ImageRef(width=SIZE, height=SIZE), turns=turns))
    return Bench(out, name="edges")


def rec(d: int, t: int, boxes=(GOLD,), mask: RLE | None = None, error: str | None = None,
        failure_kind: str | None = None) -> PredictionRecord:
    return PredictionRecord(dialogue_id=f"d{d}", turn=t, round=t + 1, question="q", raw_text="",
                            regions=[Region(box=b) for b in boxes], mask=mask, error=error, failure_kind=failure_kind)


def every_turn(b: Bench, **kwargs) -> list[PredictionRecord]:
    return [rec(int(d.dialogue_id[1:]), t.index, **kwargs) for d in b for t in d.turns]


# ------------------------------------------------------------------------------ AP50 (strict > 0.5)

HALF = (0.0, 0.0, 10.0, 5.0)  # IoU with GOLD exactly 50 / 100 = 0.5
ABOVE = (0.0, 0.0, 10.0, 5.5)  # IoU 0.55
FAR = (15.0, 15.0, 20.0, 20.0)  # IoU 0


@pytest.mark.parametrize("n_far", [1, 20], ids=["scalar path (<= 16 pairs)", "matrix path (> 16 pairs)"])
def test_a_hit_needs_iou_strictly_above_one_half_on_every_path(n_far):
    # UPSTREAM.md 1: a turn scores 1 if any box has IoU > 0.5 (strict); 0.5 itself is a miss
    assert score_turn([GOLD], [HALF] + [FAR] * n_far) == (0.5, False, False)
    assert score_turn([GOLD], [FAR] * n_far + [HALF]) == (0.0, False, False)
    iou, hit, top1 = score_turn([GOLD], [FAR] * n_far + [ABOVE])
    assert (iou, hit, top1) == (0.0, True, False)  # any box counts for AP50; only the first for top-1
    assert score_turn([GOLD], [ABOVE] + [FAR] * n_far)[1:] == (True, True)


def test_several_gold_boxes_take_each_predicted_boxs_best_match():
    golds = [GOLD, FAR]
    many = [(0.0, 0.0, 1.0, 1.0)] * 20
    assert score_turn(golds, [FAR]) == (1.0, True, True)
    assert score_turn(golds, [FAR] + many) == (1.0, True, True)


# ------------------------------------------------------------------------------ rounds and buckets


def test_eight_rounds_make_an_eight_plus_bucket_and_seven_do_not():
    eight = score_records(b := bench(["box"] * 8, ["box"] * 2), every_turn(b), provenance=PROV, n_bootstrap=0)
    assert [r.round for r in eight.rounds] == [str(i) for i in range(1, 9)]
    assert [(r.round, r.n) for r in eight.buckets] == [("8+", 1)]  # round 8 itself is in "8+"
    seven = score_records(b := bench(["box"] * 7, ["box"] * 2), every_turn(b), provenance=PROV, n_bootstrap=0)
    assert seven.buckets == []


def test_a_row_of_one_turn_is_scored_and_percentages_keep_four_decimals():
    b = bench(["box", "box"], ["box"], ["box"])
    records = [rec(0, 0), rec(0, 1), rec(1, 0, boxes=(FAR,)), rec(2, 0, boxes=(FAR,))]
    results = score_records(b, records, provenance=PROV, n_bootstrap=0)
    first, second = results.rounds
    assert (first.n, first.ap50) == (3, 33.3333)  # 1 of 3, rounded to 4 decimals
    assert (second.n, second.ap50, second.mean_iou) == (1, 100.0, 100.0)


# ------------------------------------------------------------------------------ masks


def test_a_box_only_run_has_no_mask_scores_not_zero():
    b = bench(["box", "box"])
    results = score_records(b, every_turn(b), provenance=PROV, n_bootstrap=0)
    for row in [*results.rounds, results.overall]:
        assert row.giou is None and row.ciou is None
    # asked explicitly, masks are scored: a turn without a predicted mask counts as (0, |G|)
    asked = score_records(b, every_turn(b), provenance=PROV, n_bootstrap=0, masks=True)
    assert (asked.overall.giou, asked.overall.ciou) == (0.0, 0.0)


def test_masks_false_ignores_the_masks_a_run_has():
    b = bench(["box"])
    records = every_turn(b, mask=box_to_rle(GOLD, SIZE, SIZE))
    assert score_records(b, records, provenance=PROV, n_bootstrap=0).overall.giou == 100.0
    assert score_records(b, records, provenance=PROV, n_bootstrap=0, masks=False).overall.giou is None


def test_giou_averages_only_the_turns_with_a_gold_mask():
    # turn 1 has no gold mask: it is in AP50 (n = 2) but not in gIoU/cIoU, which are not diluted
    b = bench(["box", None])
    results = score_records(b, every_turn(b, mask=box_to_rle(GOLD, SIZE, SIZE)), provenance=PROV, n_bootstrap=0)
    assert results.overall.n == 2
    assert (results.overall.giou, results.overall.ciou) == (100.0, 100.0)
    assert results.rounds[1].giou is None and results.rounds[1].ciou is None


def test_an_empty_union_is_iou_zero_and_adds_nothing_to_ciou():
    # UPSTREAM.md 1: U = 0 is stored as (0, 0), IoU 0. Turn 0: empty gold, no predicted mask (I = U = 0);
    # turn 1: a 10x10 gold mask predicted exactly (I = U = 100). gIoU = (0 + 1) / 2; cIoU = 100 / 100.
    b = bench([empty_mask(), "box"])
    records = [rec(0, 0), rec(0, 1, mask=box_to_rle(GOLD, SIZE, SIZE))]
    scores = turn_scores(b, records)
    assert [(s.mask_inter, s.mask_union, s.mask_iou) for s in scores] == [(0, 0, 0.0), (100, 100, 1.0)]
    results = score_records(b, records, provenance=PROV, n_bootstrap=0)
    assert (results.overall.giou, results.overall.ciou) == (50.0, 100.0)
    assert (results.rounds[0].giou, results.rounds[0].ciou) == (0.0, None)  # ΣU = 0: no cIoU


def test_a_one_pixel_mask_found_exactly_is_iou_one():
    pixel = box_to_rle((0, 0, 1, 1), SIZE, SIZE)
    b = bench([pixel])
    (score,) = turn_scores(b, [rec(0, 0, mask=pixel)])
    assert (score.mask_inter, score.mask_union, score.mask_iou) == (1, 1, 1.0)


# ------------------------------------------------------------------------------ failures


def test_failures_are_counted_per_row_and_by_kind():
    b = bench(["box"], ["box"], ["box"])
    records = [rec(0, 0, boxes=(), error="no JSON found in the text"),
               rec(1, 0, boxes=(), error="the server timed out", failure_kind="infra"),
               rec(2, 0)]
    results = score_records(b, records, provenance=PROV, n_bootstrap=0)
    assert results.rounds[0].failures == 2 and results.overall.failures == 2
    assert results.failure_kinds == {"answer": 1, "infra": 1}  # a failure without a kind is the answer's
    assert [s.failure_kind for s in turn_scores(b, records)] == ["answer", "infra", None]


def test_failure_reasons_are_counted_without_their_numbers_and_cut_at_80():
    assert failure_kind("degenerate box [3, 4, 1, 2] (x2 <= x1 by 2.5)") == "degenerate box … (x… <= x… by …)"
    assert failure_kind("z" * 200) == "z" * 80


def test_a_prediction_for_a_turn_the_bench_lacks_is_named():
    b = bench(["box"])
    with pytest.raises(IncompleteRunError, match=r"1 predictions name turns the bench does not have: \['d7#0'\]"):
        turn_scores(b, [rec(0, 0), rec(7, 0)])


# ------------------------------------------------------------------------------ bootstrap


def test_one_resample_or_one_turn_still_gives_an_interval():
    b = bench(["box"], ["box"])
    results = score_records(b, every_turn(b), provenance=PROV, n_bootstrap=1)
    assert (results.overall.ap50_ci.low, results.overall.ap50_ci.high) == (100.0, 100.0)
    single = score_records(b := bench(["box"]), every_turn(b), provenance=PROV, n_bootstrap=10)  # one turn
    assert (single.overall.ap50_ci.low, single.overall.ap50_ci.high) == (100.0, 100.0)
    assert score_records(b, every_turn(b), provenance=PROV, n_bootstrap=0).overall.ap50_ci is None


def test_a_round_no_resample_draws_has_no_interval_and_results_read_back():
    # one 9-round dialogue among 20: a single resample misses it about a third of the time, and then
    # rounds 3-9 have no resampled score. That is "no interval", never NaN (written as null, unreadable)
    b = bench(["box"] * 9, *[["box"]] * 19)
    records = every_turn(b, mask=box_to_rle(GOLD, SIZE, SIZE))
    missed = 0
    for seed in range(30):
        results = score_records(b, records, provenance=PROV, n_bootstrap=1, seed=seed)
        assert Results.model_validate_json(results.model_dump_json()) == results
        row = results.rounds[8]
        assert (row.ap50_ci is None) == (row.giou_ci is None)
        missed += row.ap50_ci is None
        assert results.overall.ap50_ci is not None  # every resample holds some dialogue
    assert 0 < missed < 30


@pytest.mark.parametrize("cells", [5, 300])
def test_intervals_do_not_depend_on_the_chunk_size(monkeypatch, cells):
    rng = np.random.default_rng(11)
    b = bench(*[["box"] * int(n) for n in rng.integers(1, 10, size=20)])
    records = [rec(int(d.dialogue_id[1:]), t.index, boxes=(GOLD if rng.random() < 0.5 else FAR,),
                   mask=box_to_rle((0, 0, 10, rng.integers(1, 11)), SIZE, SIZE)) for d in b for t in d.turns]
    expected = score_records(b, records, provenance=PROV, n_bootstrap=50, seed=3)
    monkeypatch.setattr(metrics, "BOOTSTRAP_CHUNK_CELLS", cells)
    monkeypatch.setattr(metrics, "BOOTSTRAP_SAMPLES_PER_GROUP", 120)  # several groups of selections
    assert score_records(b, records, provenance=PROV, n_bootstrap=50, seed=3) == expected
