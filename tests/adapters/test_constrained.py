"""Constrained decoding end to end: the tiny random Qwen2.5-VL under the grammar, and the grammar on the wire.

Unconstrained, the random model writes newlines until the budget runs out; under the preset's
grammar every answer parses, with coordinates inside the frame. The same grammar object reaches
vLLM's sampling parameters (a stand-in module) and the OpenAI-compatible request body (a loopback
server that decodes "server-side" by checking its answer against the grammar it received).
"""

from __future__ import annotations

import sys
import types

import pytest

from regiondial_bench.adapters import AdapterError, create_adapter
from regiondial_bench.protocol import parse_answer

from .conftest import first_turn_requests
from .test_openai import ScriptedServer, make

xgr = pytest.importorskip("xgrammar")
pytest.importorskip("transformers")

TINY = {"preset": "regionreasoner-7b", "squash_size": 224, "max_new_tokens": 160, "device": "cpu"}


def parse(response, request):
    return parse_answer(response.raw_text, frame=response.frame, image_size=request.image.require_size(),
                        require_answer_tag=response.require_answer_tag, max_regions=response.max_regions or 100)


def assert_inside_frame(response):
    """The coordinates as written: integers inside the frame the grammar was built for."""
    import json

    body = response.raw_text.split("<answer>", 1)[1].rsplit("</answer>", 1)[0]
    width, height = int(response.frame.width), int(response.frame.height)
    for item in json.loads(body):
        x1, y1, x2, y2 = item["bbox_2d"]
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        px, py = item["point_2d"]
        assert 0 <= px <= width and 0 <= py <= height


@pytest.fixture(scope="module")
def constrained_adapter(tiny_qwen):
    adapter = create_adapter("hf", model=str(tiny_qwen), constrained=True, grammar={"max_objects": 1}, **TINY)
    yield adapter
    adapter.close()


def test_unconstrained_tiny_model_does_not_parse(tiny_qwen, sample_bench):
    adapter = create_adapter("hf", model=str(tiny_qwen), **TINY)
    requests = first_turn_requests(sample_bench, 2)
    responses = adapter.generate(requests)
    assert sum(parse(r, q).ok for r, q in zip(responses, requests, strict=True)) == 0
    assert adapter.config()["constrained"] is False and "grammar" not in adapter.config()


def test_constrained_tiny_model_always_parses_inside_the_frame(constrained_adapter, sample_bench):
    requests = first_turn_requests(sample_bench, 2)
    responses = constrained_adapter.generate(requests)
    for request, response in zip(requests, responses, strict=True):
        parsed = parse(response, request)
        assert parsed.ok, (parsed.error, response.raw_text)
        assert response.extra["grammar_complete"] is True
        assert response.extra["new_tokens"] < TINY["max_new_tokens"]  # stopped when the JSON closed
        assert_inside_frame(response)
        grammar = constrained_adapter.constrained.grammar_for(request.image.require_size())
        assert grammar.accepts(response.raw_text)
    # each row follows its own matcher: a batch answers as the requests one by one do
    for request, response in zip(requests, responses, strict=True):
        assert constrained_adapter.generate([request])[0].raw_text == response.raw_text


def test_constrained_config_records_the_grammar(constrained_adapter):
    config = constrained_adapter.config()
    assert config["constrained"] is True
    recorded = config["grammar"]["grammars"]
    assert len(recorded) == 1 and recorded[0]["frame"] == [224, 224]
    assert recorded[0]["ebnf"] == constrained_adapter.constrained.grammar_for((320, 240)).ebnf
    assert config["grammar"]["options"] == {"max_objects": 1}


def test_constrained_option_errors_are_clear(tiny_qwen):
    with pytest.raises(AdapterError, match="cannot hold a constrained answer"):
        create_adapter("hf", model=str(tiny_qwen), constrained=True, **{**TINY, "max_new_tokens": 40})
    with pytest.raises(AdapterError, match=r"grammar\.max_items: not an option \(did you mean 'max_objects'\?\)"):
        create_adapter("hf", model=str(tiny_qwen), constrained=True, grammar={"max_items": 2}, **TINY)
    with pytest.raises(AdapterError, match="need constrained: true"):
        create_adapter("hf", model=str(tiny_qwen), grammar={"max_objects": 2}, **TINY)
    with pytest.raises(AdapterError, match="min_new_tokens"):
        create_adapter("hf", model=str(tiny_qwen), constrained=True, min_new_tokens=5, **TINY)


@pytest.mark.slow
def test_constrained_run_parses_every_turn_of_the_sample(tiny_qwen, sample_bench, tmp_path):
    """The whole bundled sample through the runner: no answer-format failure at all."""
    import json

    from regiondial_bench.api import evaluate
    from regiondial_bench.run.folder import read_predictions
    from regiondial_bench.schema import RunConfig

    config = RunConfig(adapter="hf", adapter_options={**TINY, "model": str(tiny_qwen), "constrained": True,
                                                      "max_new_tokens": 200, "grammar": {"max_objects": 2}},
                       batch_size=40)
    evaluate(sample_bench, config, tmp_path / "run", progress=False, n_bootstrap=10)
    records = read_predictions(tmp_path / "run" / "predictions.jsonl")
    assert len(records) == sum(len(d.turns) for d in sample_bench)
    failures = [(r.key, r.error) for r in records if r.error is not None or not r.regions]
    assert failures == []
    for record in records:
        for region in record.regions:
            assert 0 <= region.box[0] < region.box[2] <= 320 and 0 <= region.box[1] < region.box[3] <= 240
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["adapter_options"]["constrained"] is True
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    (grammar,) = results["provenance"]["adapter_config"]["grammar"]["grammars"]
    assert grammar["frame"] == [224, 224] and grammar["ebnf"].startswith("root ::= ")


# ---------------------------------------------------------------------- vLLM (stand-in module)


def _fake_vllm(monkeypatch, *, legacy: bool = False):
    """A stand-in ``vllm``: records the sampling parameters of every prompt."""
    calls: list = []

    class LLM:
        def __init__(self, **options):
            pass

        def generate(self, inputs, sampling, use_tqdm=False):
            calls.append(sampling)
            text = '<think> t </think><answer>[{"bbox_2d": [84, 84, 420, 420], "point_2d": [100, 100]}]</answer>'
            output = types.SimpleNamespace(text=text, token_ids=[1, 2, 3])
            return [types.SimpleNamespace(outputs=[output]) for _ in inputs]

    class SamplingParams:
        def __init__(self, **options):
            self.options = options

    class GrammarParams:
        def __init__(self, grammar=None, json=None):
            self.grammar = grammar

    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = LLM, SamplingParams
    sampling_params = types.ModuleType("vllm.sampling_params")
    if legacy:
        sampling_params.GuidedDecodingParams = GrammarParams
    else:
        sampling_params.StructuredOutputsParams = GrammarParams
    module.sampling_params = sampling_params
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling_params)
    return calls


@pytest.mark.parametrize("legacy", [False, True], ids=["structured_outputs", "guided_decoding"])
def test_vllm_gets_the_grammar_in_its_sampling_params(monkeypatch, tiny_qwen, sample_bench, legacy):
    calls = _fake_vllm(monkeypatch, legacy=legacy)
    adapter = create_adapter("vllm", preset="visionreasoner-7b", model=str(tiny_qwen), constrained=True)
    requests = first_turn_requests(sample_bench, 2)
    responses = adapter.generate(requests)
    assert all(parse(r, q).ok for r, q in zip(responses, requests, strict=True))
    (sampling,) = calls
    assert isinstance(sampling, list) and len(sampling) == 2  # one parameter set per prompt
    expected = adapter.constrained.grammar_for(requests[0].image.require_size()).ebnf
    field = "guided_decoding" if legacy else "structured_outputs"
    for params in sampling:
        assert params.options[field].grammar == expected
        assert params.options["temperature"] == 0.0 and params.options["max_tokens"] == 2048
    assert sampling[0] is sampling[1]  # one frame, one parameter object
    assert adapter.config()["grammar"]["grammars"][0]["ebnf"] == expected
    plain = create_adapter("vllm", preset="visionreasoner-7b", model=str(tiny_qwen))
    plain.generate(requests)
    assert not isinstance(calls[-1], list) and "structured_outputs" not in calls[-1].options


# ---------------------------------------------------------------------- OpenAI-compatible servers


def test_openai_sends_the_grammar_and_the_server_decodes_under_it(sample_bench):
    """The loopback server plays a vLLM server: it answers only with text its received grammar accepts."""
    from regiondial_bench.grammar import ResponseGrammar

    answer = '<think> scripted </think><answer>[{"bbox_2d": [84, 84, 420, 420], "point_2d": [100, 100]}]</answer>'

    def behave(n, body):
        ebnf = body["structured_outputs"]["grammar"]
        grammar = ResponseGrammar(ebnf=ebnf, answer_format="objects", tags=(), frame=(0, 0), max_objects=1)
        return (200 if grammar.accepts(answer) else 400, 0.0)

    with ScriptedServer(behave) as server:
        adapter = make(server, preset="visionreasoner-7b", constrained=True)
        requests = first_turn_requests(sample_bench, 2)
        responses = adapter.generate(requests)
        adapter.close()
    assert [r.error for r in responses] == [None, None]
    expected = adapter.constrained.grammar_for(requests[0].image.require_size()).ebnf
    assert [b["structured_outputs"] for b in server.bodies] == [{"grammar": expected}] * 2
    assert adapter.config()["grammar"]["field"] == "structured_outputs"


@pytest.mark.parametrize("field", ["guided_grammar", "ebnf"])
def test_openai_grammar_field_for_older_vllm_and_sglang(sample_bench, field):
    with ScriptedServer() as server:
        adapter = make(server, constrained=True, grammar_field=field)
        request = first_turn_requests(sample_bench, 1)[0]
        adapter.generate([request])
        adapter.close()
    body = server.bodies[0]
    assert body[field] == adapter.constrained.grammar_for(request.image.require_size()).ebnf
    assert "structured_outputs" not in body


def test_openai_server_rejecting_the_grammar_gives_a_clear_error(sample_bench):
    with ScriptedServer(lambda n, body: (400, 0.0)) as server:
        adapter = make(server, constrained=True)
        response = adapter.generate(first_turn_requests(sample_bench, 1))[0]
        adapter.close()
    assert len(server.bodies) == 1  # a 400 is not retried
    assert "HTTP 400" in response.error and "may not accept the 'structured_outputs' field" in response.error
    with ScriptedServer(lambda n, body: (400, 0.0)) as server:
        plain = make(server)
        response = plain.generate(first_turn_requests(sample_bench, 1))[0]
        plain.close()
    assert "HTTP 400" in response.error and "constrained" not in response.error
    with pytest.raises(AdapterError, match="grammar_field"):
        create_adapter("openai", preset="regionreasoner-7b", constrained=True, grammar_field="regex")
