"""Scheduling, reference modes, logging and failure handling of the runner."""

from __future__ import annotations

import json

import pytest

from regiondial_bench import api
from regiondial_bench.adapters import AdapterError, create_adapter
from regiondial_bench.bench.sources.upstream import import_upstream
from regiondial_bench.metrics import score_records
from regiondial_bench.protocol import NO_REGION_TEXT
from regiondial_bench.run.folder import read_predictions
from regiondial_bench.run.runner import Runner
from regiondial_bench.schema import Bench, RunConfig, RunSpec

from .helpers import ScriptedAdapter, answer_json, make_bench


def spec_for(bench, **config) -> RunSpec:
    return RunSpec(**RunConfig(adapter="scripted", **config).model_dump(), bench_name=bench.name,
                   bench_hash=bench.content_hash, bench_location=str(bench.root))


@pytest.mark.parametrize("name", ["refcocoplus", "refcocog"])
@pytest.mark.parametrize("mode", ["predicted", "gold", "upstream"])
def test_oracle_scores_100_on_the_official_files(upstream_file, tmp_path, name, mode):
    bench = import_upstream(upstream_file(name))
    results = api.evaluate(bench, RunConfig(adapter="oracle", reference_mode=mode, batch_size=64), tmp_path,
                           progress=False, n_bootstrap=50)
    assert results.overall.ap50 == 100.0 and results.overall.n == bench.num_turns
    assert all(row.ap50 == 100.0 for row in results.rounds)


def test_pixel_adapters_refuse_layout_only_benches(upstream_file, tmp_path):
    bench = import_upstream(upstream_file("refcocoplus"))
    with pytest.raises(AdapterError, match="needs image sizes"):
        api.evaluate(bench, RunConfig(adapter="whole-image"), tmp_path, progress=False)
    assert not (tmp_path / "run.json").exists()  # the refused run leaves no run behind to block the retry
    sized = Bench([d.model_copy(update={"image": d.image.model_copy(update={"width": 640, "height": 640})})
                   for d in bench.dialogues[:3]], name=bench.name)
    results = api.evaluate(sized, RunConfig(adapter="whole-image"), tmp_path, progress=False, n_bootstrap=0)
    assert results.overall.n == sized.num_turns


def test_predicted_mode_never_leaks_gold(tmp_path):
    bench = make_bench(tmp_path / "b")
    adapter = ScriptedAdapter(lambda r: "I don't know" if r.turn == 0 else answer_json((1, 1, 9, 9)))
    records = Runner(bench, adapter, spec_for(bench), tmp_path / "run", progress=False).run()
    turn1 = [r for r in records if r.turn == 1]
    assert all(r.references[0].source == "no-region" and NO_REGION_TEXT in r.question for r in turn1)
    turn2 = [r for r in records if r.turn == 2]
    assert all(r.references[0].source == "predicted" and "[1, 1, 9, 9]" in r.question for r in turn2)
    assert all(r.error and "no JSON" in r.error for r in records if r.turn == 0)


def test_upstream_mode_falls_back_to_gold_and_gold_mode_teacher_forces(tmp_path):
    bench = make_bench(tmp_path / "b")
    for mode, source in (("upstream", "gold-fallback"), ("gold", "gold")):
        adapter = ScriptedAdapter(lambda r: "nothing")
        records = Runner(bench, adapter, spec_for(bench, reference_mode=mode), tmp_path / mode, progress=False).run()
        for record in records:
            if record.turn:
                gold = bench.dialogue(record.dialogue_id).turns[record.turn - 1].gold_boxes[0]
                assert record.references[0].source == source and record.references[0].box == gold


def test_batches_span_dialogues_and_respect_dependencies(tmp_path):
    bench = make_bench(tmp_path / "b", n_dialogues=10, turns=4)
    adapter = ScriptedAdapter(lambda r: answer_json((1, 1, 9, 9)))
    Runner(bench, adapter, spec_for(bench, batch_size=8), tmp_path / "run", progress=False).run()
    assert [len(b) for b in adapter.batches] == [8, 8, 8, 8, 8]
    assert len({r.dialogue_id for r in adapter.batches[0]}) == 8
    asked = {}
    for number, batch in enumerate(adapter.batches):
        for request in batch:
            asked[request.key] = number
    for (dialogue_id, turn), number in asked.items():
        if turn:
            assert asked[(dialogue_id, turn - 1)] < number  # the referenced turn was answered before
    gold = ScriptedAdapter(lambda r: "x")
    Runner(bench, gold, spec_for(bench, reference_mode="gold", batch_size=100), tmp_path / "g", progress=False).run()
    assert len(gold.batches) == 1  # teacher forcing: no turn waits for another


def test_history_mode_passes_earlier_turns(tmp_path):
    bench = make_bench(tmp_path / "b", n_dialogues=2, turns=3)
    adapter = ScriptedAdapter(lambda r: answer_json((1, 1, 9, 9)))
    Runner(bench, adapter, spec_for(bench, with_history=True), tmp_path / "run", progress=False).run()
    last = [r for b in adapter.batches for r in b if r.turn == 2][0]
    assert [h.turn for h in last.history] == [0, 1] and "1, 1, 9, 9" in last.history[0].answer_text


def test_frames_and_wrong_response_counts(tmp_path):
    bench = make_bench(tmp_path / "b", n_dialogues=1, turns=1, size=(64, 48))
    from regiondial_bench.geometry import CoordinateFrame

    adapter = ScriptedAdapter(lambda r: answer_json((0, 0, 500, 500)), frame=CoordinateFrame.normalized(1000))
    records = Runner(bench, adapter, spec_for(bench), tmp_path / "run", progress=False).run()
    assert records[0].regions[0].box == (0.0, 0.0, 32.0, 24.0)

    class Broken(ScriptedAdapter):
        def generate(self, requests):
            return []

    with pytest.raises(AdapterError, match="returned 0 responses for 1"):
        Runner(bench, Broken(None), spec_for(bench), tmp_path / "broken", progress=False).run()


def test_run_folder_protection_and_torn_log(tmp_path):
    bench = make_bench(tmp_path / "b")
    adapter = ScriptedAdapter(lambda r: answer_json((1, 1, 9, 9)))
    Runner(bench, adapter, spec_for(bench), tmp_path / "run", progress=False).run()
    with pytest.raises(Exception, match="--resume"):
        Runner(bench, adapter, spec_for(bench), tmp_path / "run", progress=False).run()
    with pytest.raises(Exception, match="other settings"):
        Runner(bench, adapter, spec_for(bench, reference_mode="gold"), tmp_path / "run", progress=False).run(resume=True)
    log = tmp_path / "run" / "predictions.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:-3]) + lines[-3][:25])  # a write torn by a crash
    assert len(read_predictions(log)) == len(lines) - 3
    again = ScriptedAdapter(lambda r: answer_json((1, 1, 9, 9)))
    records = Runner(bench, again, spec_for(bench), tmp_path / "run", progress=False).run(resume=True)
    assert sum(len(b) for b in again.batches) == 3 and len(records) == bench.num_turns
    assert len(read_predictions(log)) == bench.num_turns
    assert all(json.loads(line) for line in log.read_text().splitlines())


def test_scores_with_masks_and_rescoring(tmp_path):
    bench = make_bench(tmp_path / "b")
    config = RunConfig(adapter="reference-copy", mask_producer="box")
    results = api.evaluate(bench, config, tmp_path / "run", progress=False, n_bootstrap=100)
    assert results.provenance.mask_producer == "box"
    assert results.overall.giou is not None and results.overall.ciou is not None
    again = api.score(tmp_path / "run", n_bootstrap=100)
    assert again.rounds == results.rounds and again.overall == results.overall
    oracle = api.evaluate(bench, RunConfig(adapter="oracle"), tmp_path / "oracle", progress=False, n_bootstrap=10)
    assert oracle.overall.giou == 100.0 and oracle.overall.ciou == 100.0


def test_registry_suggests_names():
    with pytest.raises(AdapterError, match="Did you mean 'reference-copy'"):
        create_adapter("reference-cpy")
    with pytest.raises(AdapterError, match="bad options"):
        create_adapter("oracle", temperature=0)


def test_metrics_rescore_matches_runner_records(tmp_path):
    bench = make_bench(tmp_path / "b")
    records = Runner(bench, ScriptedAdapter(lambda r: answer_json((2, 2, 20, 18))), spec_for(bench),
                     tmp_path / "run", progress=False).run()
    provenance = api.make_provenance(spec_for(bench))
    first = score_records(bench, records, provenance=provenance, n_bootstrap=20)
    second = score_records(bench, list(reversed(records)), provenance=provenance, n_bootstrap=20)
    assert first.rounds == second.rounds
