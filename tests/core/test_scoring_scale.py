"""Scoring at scale: memory linear in the turns, and the bootstrap unchanged by its rewrite."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from regiondial_bench import api, metrics
from regiondial_bench.geometry import box_iou_matrix, box_to_rle, rle_intersection_union
from regiondial_bench.metrics import _Columns, aggregate, score_turn, turn_scores
from regiondial_bench.schema import (
    PREDICTIONS_FILE,
    RESULTS_FILE,
    RUN_FILE,
    Bench,
    Dialogue,
    ImageRef,
    PredictionRecord,
    Region,
    Results,
    RunSpec,
    Turn,
)
from tests.core.test_metrics import PROV


def reference_bootstrap(c, selections, n_bootstrap, seed):
    """The bootstrap as it was before the rewrite (resamples x dialogues matrices), kept as the oracle."""
    if n_bootstrap <= 0 or len(c.dialogue) == 0:
        return {}
    n_dialogues = int(c.dialogue.max()) + 1
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_dialogues, size=(n_bootstrap, n_dialogues))
    weights = np.zeros((n_bootstrap, n_dialogues), dtype=np.float64)
    np.add.at(weights, (np.repeat(np.arange(n_bootstrap), n_dialogues), draws.ravel()), 1.0)

    def per_dialogue(values, select):
        return np.bincount(c.dialogue[select], weights=values[select], minlength=n_dialogues)

    out = {}
    for name, select in selections.items():
        counts = weights @ per_dialogue(np.ones_like(c.hit), select)
        intervals = {}
        with np.errstate(invalid="ignore", divide="ignore"):
            intervals["ap50"] = metrics._interval(weights @ per_dialogue(c.hit, select) / counts)
            masked = select & ~np.isnan(c.mask_iou)
            if masked.any():
                mask_counts = weights @ per_dialogue(np.ones_like(c.hit), masked)
                giou = weights @ per_dialogue(np.nan_to_num(c.mask_iou), masked) / mask_counts
                intervals["giou"] = metrics._interval(giou)
        out[name] = intervals
    return out


def random_run(seed, n_dialogues=150, size=(60, 40)):
    rng = np.random.default_rng(seed)
    w, h = size
    dialogues, records = [], []
    for d in range(n_dialogues):
        n = int(rng.integers(1, 11))
        turns = []
        for t in range(n):
            gold = (float(rng.integers(0, 20)), float(rng.integers(0, 15)), float(rng.integers(25, 60)),
                    float(rng.integers(20, 40)))
            with_mask = rng.random() < 0.8
            turns.append(Turn(index=t, question="q", gold_boxes=[gold],
                              gold_mask=box_to_rle(gold, h, w) if with_mask else None))
            boxes = [(*rng.uniform(0, 20, 2).tolist(), *rng.uniform(22, 60, 2).tolist())
                     for _ in range(int(rng.integers(0, 3)))]
            mask = box_to_rle(boxes[0], h, w) if boxes and rng.random() < 0.9 else None
            records.append(PredictionRecord(dialogue_id=f"d{d}", turn=t, round=t + 1, question="q", raw_text="",
                                            regions=[Region(box=b) for b in boxes], mask=mask))
        dialogues.append(Dialogue(dialogue_id=f"d{d}", image=ImageRef(width=w, height=h), turns=turns))
    return Bench(dialogues, name="r"), records


@pytest.mark.parametrize(("seed", "n_bootstrap"), [(0, 1000), (1, 130), (2, 1), (3, 64)])
def test_bootstrap_gives_the_same_seeded_intervals_as_before(seed, n_bootstrap, monkeypatch):
    bench, records = random_run(seed)
    scores = turn_scores(bench, records, masks=True)
    c = _Columns.of(scores)
    rounds = sorted(set(c.round.tolist()))
    masks = {str(r): c.round == r for r in rounds}
    masks["8+"] = c.round >= 8
    masks["all"] = np.ones(len(c.round), dtype=bool)
    expected = reference_bootstrap(c, masks, n_bootstrap, seed)
    results = aggregate(scores, PROV, n_bootstrap=n_bootstrap, seed=seed)
    got = {row.round: row for row in [*results.rounds, *results.buckets, results.overall]}
    assert set(got) == set(expected)
    for name, intervals in expected.items():
        assert (got[name].ap50_ci.low, got[name].ap50_ci.high) == intervals["ap50"], name
        assert (got[name].giou_ci.low, got[name].giou_ci.high) == intervals["giou"], name
    # scores split over several groups of selections (benches with very many rounds): same intervals
    monkeypatch.setattr(metrics, "BOOTSTRAP_SAMPLES_PER_GROUP", 3 * n_bootstrap)
    assert aggregate(scores, PROV, n_bootstrap=n_bootstrap, seed=seed) == results


def test_bootstrap_memory_does_not_grow_as_resamples_times_dialogues():
    n_dialogues, n_bootstrap = 20_000, 1000
    rng = np.random.default_rng(0)
    dialogue = np.repeat(np.arange(n_dialogues), 2)
    c = _Columns(dialogue=dialogue, round=np.tile([1, 2], n_dialogues), hit=rng.random(2 * n_dialogues).round(),
                 hit_top1=np.zeros(2 * n_dialogues), iou=np.zeros(2 * n_dialogues),
                 mask_iou=rng.random(2 * n_dialogues), inter=np.zeros(2 * n_dialogues),
                 union=np.zeros(2 * n_dialogues), failed=np.zeros(2 * n_dialogues, dtype=bool))
    selections = {"1": np.arange(0, 2 * n_dialogues, 2), "all": np.arange(2 * n_dialogues)}
    tracemalloc.start()
    try:
        metrics._bootstrap(c, selections, n_bootstrap, 0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # one resamples x dialogues float64 matrix alone would be 160 MB
    assert peak < 60 * 2**20, f"bootstrap peak {peak / 2**20:.0f} MiB"


def test_a_100000_round_dialogue_is_scored_to_results_json(tmp_path):
    n = 100_000
    box = (0.0, 0.0, 10.0, 10.0)
    long = Dialogue(dialogue_id="long", image=ImageRef(width=20, height=20),
                    turns=[Turn(index=t, question="q", gold_boxes=[box]) for t in range(n)])
    short = Dialogue(dialogue_id="short", image=ImageRef(width=20, height=20),
                     turns=[Turn(index=0, question="q", gold_boxes=[box])])
    bench = Bench([long, short], name="long")
    run = tmp_path / "run"
    run.mkdir()
    spec = RunSpec(adapter="x", bench_name=bench.name, bench_hash=bench.content_hash, bench_location="")
    (run / RUN_FILE).write_text(spec.model_dump_json())
    hit = PredictionRecord(dialogue_id="long", turn=0, round=1, question="q", raw_text="", regions=[Region(box=box)])
    with open(run / PREDICTIONS_FILE, "w") as f:
        line = hit.model_dump_json(exclude_defaults=True)
        for t in range(n):
            f.write(line.replace('"turn":0,"round":1', f'"turn":{t},"round":{t + 1}') + "\n")
        f.write(hit.model_copy(update={"dialogue_id": "short", "regions": []}).model_dump_json() + "\n")
    results = api.score(run, bench=bench, n_bootstrap=100)
    written = Results.read(run / RESULTS_FILE)
    assert written == results
    assert len(results.rounds) == n and results.rounds[-1].round == str(n) and results.rounds[-1].n == 1
    assert results.rounds[0].n == 2 and results.rounds[0].ap50 == 50.0
    assert results.overall.n == n + 1 and results.buckets[0].n == n - 7


@pytest.mark.parametrize("pairs", [(1, 1), (3, 1), (2, 2), (8, 3)])
def test_scalar_iou_agrees_with_the_matrix(pairs):
    rng = np.random.default_rng(sum(pairs))
    for _ in range(200):
        pred = [(*rng.uniform(0, 10, 2).tolist(), *rng.uniform(0, 20, 2).tolist()) for _ in range(pairs[0])]
        gold = [(*rng.uniform(0, 10, 2).tolist(), *rng.uniform(10, 20, 2).tolist()) for _ in range(pairs[1])]
        ious = box_iou_matrix(np.asarray(pred), np.asarray(gold)).max(axis=1)
        assert score_turn(gold, pred) == (float(ious[0]), bool((ious > 0.5).any()), bool(ious[0] > 0.5))


def test_mask_union_from_one_merge():
    rng = np.random.default_rng(0)
    from regiondial_bench.geometry import rle_to_mask

    for _ in range(50):
        a = box_to_rle(tuple(rng.uniform(0, 30, 2)) + tuple(rng.uniform(30, 60, 2)), 50, 70)
        b = box_to_rle(tuple(rng.uniform(0, 30, 2)) + tuple(rng.uniform(30, 60, 2)), 50, 70)
        pa, pb = rle_to_mask(a), rle_to_mask(b)
        assert rle_intersection_union(a, b) == (int((pa & pb).sum()), int((pa | pb).sum()))


def test_small_selections_summed_at_once_give_the_same_bits():
    rng = np.random.default_rng(0)
    n = 5000
    mask_iou = rng.random(n)
    mask_iou[rng.random(n) < 0.3] = np.nan
    mask_iou[rng.random(n) < 0.05] = -0.0
    c = _Columns(dialogue=np.zeros(n, dtype=np.int64), round=np.zeros(n, dtype=np.int64),
                 hit=rng.integers(0, 2, n).astype(float), hit_top1=rng.integers(0, 2, n).astype(float),
                 iou=rng.random(n) * rng.choice([1.0, -0.0], n), mask_iou=mask_iou,
                 inter=rng.integers(0, 100, n).astype(float), union=rng.integers(100, 200, n).astype(float),
                 failed=rng.random(n) < 0.2)
    selects = [rng.choice(n, size=int(rng.integers(1, metrics.SMALL_SELECTION)), replace=False) for _ in range(2000)]
    for one, together in zip([metrics._sums(c, s) for s in selects], metrics._small_sums(c, selects), strict=True):
        assert [np.float64(v).tobytes() for v in one] == [np.float64(v).tobytes() for v in together]
