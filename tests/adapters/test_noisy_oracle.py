"""The noisy oracle: seeded, order-independent, and worse when its reference is wrong."""

from __future__ import annotations

import pytest

from regiondial_bench.adapters import AdapterError, create_adapter
from regiondial_bench.api import evaluate, load_bench
from regiondial_bench.metrics import turn_scores
from regiondial_bench.results.plots import conditional_accuracy
from regiondial_bench.run.folder import read_predictions
from regiondial_bench.schema import RunConfig


def _run(tmp_path, name, **config):
    bench = load_bench("sample")
    out = tmp_path / name
    results = evaluate(bench, RunConfig(adapter="noisy-oracle", **config), out, bench_location="sample",
                       progress=False, n_bootstrap=0)
    return bench, results, read_predictions(out / "predictions.jsonl")


def test_same_answers_whatever_the_batch_size(tmp_path):
    _, _, one = _run(tmp_path, "b1", batch_size=1)
    _, _, many = _run(tmp_path, "b64", batch_size=64)
    key = lambda r: (r.dialogue_id, r.turn)  # noqa: E731
    assert [(r.raw_text, r.regions) for r in sorted(one, key=key)] == [
        (r.raw_text, r.regions) for r in sorted(many, key=key)]


def test_errors_accumulate_through_wrong_references(tmp_path):
    bench, predicted, records = _run(tmp_path, "pred")
    _, gold, _ = _run(tmp_path, "gold", reference_mode="gold")
    # neither flat 0 nor flat 100, and worse in later rounds
    assert 40 < predicted.overall.ap50 < 95
    assert predicted.rounds[0].ap50 > predicted.rounds[-1].ap50
    # predicted references cost accuracy that gold references do not
    assert gold.overall.ap50 > predicted.overall.ap50 + 3
    table = conditional_accuracy(turn_scores(bench, records))["Avg"]
    (hits_ok, n_ok), (hits_bad, n_bad) = table["ref correct"], table["ref wrong"]
    assert n_bad >= 5 and hits_bad / n_bad < hits_ok / n_ok - 0.3
    assert any(r.error for r in records)  # some answers are unparsable, as real ones are


def test_seed_changes_the_mistakes(tmp_path):
    _, _, a = _run(tmp_path, "s0")
    _, _, b = _run(tmp_path, "s1", adapter_options={"seed": 1})
    assert [r.raw_text for r in a] != [r.raw_text for r in b]


@pytest.mark.parametrize("options", [{"error_rate": 1.5}, {"seed": "x"}, {"error_rate": float("nan")}])
def test_bad_options_are_refused(options):
    with pytest.raises(AdapterError, match="noisy-oracle"):
        create_adapter("noisy-oracle", **options)
