"""The ``segllm`` adapter against the fake worker process, and the import guard of ``vllm``."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from regiondial_bench.adapters import AdapterError, create_adapter
from regiondial_bench.adapters.base import RoundRequest
from regiondial_bench.schema import UsedReference

from .conftest import first_turn_requests

WORKER = [sys.executable, "-m", "regiondial_bench.testing.fake_segllm_worker"]


def follow_up(first: RoundRequest, box) -> RoundRequest:
    text = "[" + ", ".join(str(round(v)) for v in box) + "]"
    template = "Find the one right of <box>{context_bbox}</box>."
    return RoundRequest(
        dialogue_id=first.dialogue_id, turn=1, image=first.image,
        question=template.replace("<box>{context_bbox}</box>", text), question_template=template,
        references=(UsedReference(turn=0, source="predicted", box=tuple(box), text=text),),
    )


def test_segllm_round_trip_with_references(sample_bench):
    adapter = create_adapter("segllm", command=WORKER)
    try:
        first = first_turn_requests(sample_bench, 1)[0]
        w, h = first.image.size
        r1 = adapter.generate([first])[0]
        assert r1.error is None
        assert r1.regions[0].box == (w / 4, h / 4, 3 * w / 4, 3 * h / 4)
        assert r1.mask is not None and r1.mask.size == (h, w)
        r2 = adapter.generate([follow_up(first, r1.regions[0].box)])[0]
        # the question reached the worker with a round pointer, not coordinates
        assert r2.extra["segllm_question"].startswith("Find the one right of the one from round 1 [REF:1]")
        assert "history=1 refs=[1]" in r2.raw_text
        assert r2.regions[0].box[0] == pytest.approx(r1.regions[0].box[2])  # shifted right by its width
        assert adapter.config()["worker_model"] == "fake-segllm"
    finally:
        adapter.close()


def test_segllm_through_the_runner(sample_bench, tmp_path):
    from regiondial_bench.api import evaluate
    from regiondial_bench.run.folder import read_predictions
    from regiondial_bench.schema import RunConfig

    config = RunConfig(adapter="segllm", adapter_options={"command": WORKER}, limit=3)
    results = evaluate(sample_bench, config, tmp_path / "run", progress=False, n_bootstrap=10)
    records = read_predictions(tmp_path / "run" / "predictions.jsonl")
    assert len(records) == sum(len(d.turns) for d in list(sample_bench)[:3])
    assert all(r.mask is not None and r.regions for r in records)  # masks come from the worker itself
    assert results.provenance.adapter == "segllm"


def test_segllm_worker_refusal_is_a_turn_error(sample_bench):
    first = first_turn_requests(sample_bench, 1)[0]
    word = first.question.split()[-1]
    adapter = create_adapter("segllm", command=[*WORKER, "--fail-on", word])
    try:
        response = adapter.generate([first])[0]
    finally:
        adapter.close()
    assert response.error is not None and "refused" in response.error and response.regions == []


@pytest.mark.parametrize(
    ("switches", "message"),
    [(["--crash-after", "0"], "exited"), (["--garbage-after", "0"], "not JSON")],
)
def test_segllm_broken_worker_fails_loudly(sample_bench, switches, message):
    adapter = create_adapter("segllm", command=[*WORKER, *switches], request_timeout_s=20)
    try:
        with pytest.raises(AdapterError, match=message):
            adapter.generate(first_turn_requests(sample_bench, 1))
    finally:
        adapter.close()


def test_segllm_protocol_mismatch_and_bad_command():
    with pytest.raises(AdapterError, match="protocol"):
        create_adapter("segllm", command=[*WORKER, "--protocol", "9"])
    with pytest.raises(AdapterError, match="cannot start"):
        create_adapter("segllm", command=["/nonexistent/python", "worker.py"])
    with pytest.raises(AdapterError, match="empty"):
        create_adapter("segllm", command=[])


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_vllm_is_import_guarded():
    import regiondial_bench.adapters.vllm  # noqa: F401  (the module imports without vllm)

    assert "vllm" not in sys.modules
    with pytest.raises(AdapterError, match=r"regiondial-bench\[vllm\]"):
        create_adapter("vllm", preset="regionreasoner-7b")


def test_vllm_checks_options_before_importing():
    with pytest.raises(AdapterError, match="unknown preset"):
        create_adapter("vllm", preset="nope-7b")
    with pytest.raises(AdapterError, match="tensor_parallel_size"):
        create_adapter("vllm", preset="regionreasoner-7b", tensor_parallel_size=0)


def _fake_vllm(monkeypatch):
    """A stand-in ``vllm`` module: records the engine options and answers every prompt alike."""
    import types

    engines: list[dict] = []

    class LLM:
        def __init__(self, **options):
            engines.append(options)

        def generate(self, inputs, sampling, use_tqdm=False):
            text = '```json\n[{"bbox_2d": [64, 48, 128, 96], "label": "x"}]\n```'
            output = types.SimpleNamespace(text=text, token_ids=[1, 2, 3])
            return [types.SimpleNamespace(outputs=[output]) for _ in inputs]

    class SamplingParams:
        def __init__(self, **options):
            self.options = options

    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = LLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    return engines


def test_vllm_takes_the_same_frame_overrides_as_hf(monkeypatch, tiny_qwen, sample_bench):
    """The upstream-parity configs set ``coordinate_frame: original``; vllm must accept it too."""
    engines = _fake_vllm(monkeypatch)
    request = first_turn_requests(sample_bench, 1)[0]
    width, height = request.image.require_size()
    parity = create_adapter(
        "vllm", preset="qwen2.5-vl-7b", model=str(tiny_qwen), coordinate_frame="original",
        reference_frame="original",
    )
    clean = create_adapter("vllm", preset="qwen2.5-vl-7b", model=str(tiny_qwen))
    assert len(engines) == 2 and engines[0]["model"] == str(tiny_qwen)
    assert parity.preset.coordinate_frame == "original"
    assert parity.generate([request])[0].frame.width == width  # factor 1: original pixels
    assert clean.generate([request])[0].frame.width == parity.preset.with_options(
        coordinate_frame="input"
    ).input_size((width, height))[0]


def test_segllm_history_keeps_earlier_boxes_after_a_resume(sample_bench):
    """A fresh adapter (as after ``--resume``) still sends the earlier rounds' boxes from the request history."""
    from dataclasses import replace

    from regiondial_bench.adapters.base import HistoryItem
    from regiondial_bench.schema import Region

    adapter = create_adapter("segllm", command=WORKER)
    sent: list[dict] = []
    call = adapter._call

    def spy(message, timeout=None):
        sent.append(message)
        return call(message, timeout)

    adapter._call = spy
    try:
        first = first_turn_requests(sample_bench, 1)[0]
        box = (10.0, 20.0, 60.0, 80.0)
        past = HistoryItem(turn=0, question=first.question, answer_text="", regions=(Region(box=box),))
        request = replace(follow_up(first, box), history=(past,))
        assert adapter.generate([request])[0].error is None
        history = sent[-1]["history"]
        assert history == [{"round": 1, "question": first.question, "box": list(box), "mask": None}]
    finally:
        adapter.close()


def test_segllm_baseline_orders_and_sends_the_whole_dialogue_history():
    """SegLLM reads the full dialogue text (UPSTREAM.md 3.5), so its run must wait for every earlier turn."""
    from pathlib import Path

    from regiondial_bench.api import load_run_config

    config = load_run_config(Path(__file__).resolve().parents[2] / "baselines" / "segllm-7b" / "config.yaml")
    assert config.with_history
