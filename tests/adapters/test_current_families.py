"""Qwen3-VL and InternVL3.5 end to end on tiny random models (CPU, offline), and the shared decoding settings.

Each family runs through ``hf`` under its preset's grammar: the random weights write whatever
the grammar admits, so every answer must parse in the preset's frame (0 answer failures). The
repetition penalty is the same on the three backends: pinned by default, the checkpoint's own
value under ``repetition_penalty: checkpoint``.
"""

from __future__ import annotations

import json
import shutil

import pytest

from regiondial_bench.adapters import create_adapter
from regiondial_bench.protocol import parse_answer

from .conftest import first_turn_requests

pytest.importorskip("transformers")
pytest.importorskip("xgrammar")

QWEN3_BOUNDS = {"min_pixels": 16 * 32 * 32, "max_pixels": 64 * 32 * 32}  # the tiny processor's bounds


def parse(response, request):
    return parse_answer(response.raw_text, frame=response.frame, image_size=request.image.require_size(),
                        require_answer_tag=response.require_answer_tag, max_regions=response.max_regions)


def test_cli_qwen3_vl_constrained_run_has_no_answer_failures_and_a_frame_check(tiny_qwen3, tmp_path):
    """`regiondial evaluate --model hf --preset qwen3-vl-instruct --constrained` on the tiny Qwen3-VL."""
    from click.testing import CliRunner

    from regiondial_bench.cli import main

    out = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "evaluate", "--model", "hf", "--preset", "qwen3-vl-instruct", "--constrained", "--model-path", str(tiny_qwen3),
        "-o", "device=cpu", "-o", "max_new_tokens=160", "-o", "grammar.max_objects=1",
        "-o", f"min_pixels={QWEN3_BOUNDS['min_pixels']}", "-o", f"max_pixels={QWEN3_BOUNDS['max_pixels']}",
        "--limit", "3", "--batch-size", "8", "--out", str(out), "--no-progress", "--bootstrap", "10"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert records and all(r.get("error") is None and r["regions"] for r in records), records
    results = json.loads((out / "results.json").read_text())
    assert "answer" not in results["failure_kinds"]
    check = results["frame_check"]
    assert check["declared"] == "norm-1000" and check["turns"] == len(records)
    assert set(check["ap50_by_frame"]) == {"norm-1000", "original", "input", "norm-1"}
    assert check["outside_image"] == 0.0 and check["fits_1000"] == 100.0  # the grammar keeps 0..1000
    assert "frame check (declared norm-1000)" in result.output
    backend = results["provenance"]["adapter_config"]["backend"]
    assert backend["model_class"] == "Qwen3VLForConditionalGeneration"
    assert backend["image_processor"] == "Qwen2VLImageProcessorPil" and backend["fast"] is False
    assert backend["version"]


@pytest.mark.parametrize("preset", ["qwen3-vl-instruct", "qwen3-vl-thinking"])
def test_qwen3_vl_reads_its_input_in_multiples_of_32(tiny_qwen3, sample_bench, preset):
    adapter = create_adapter("hf", preset=preset, model=str(tiny_qwen3), device="cpu", constrained=True,
                             max_new_tokens=160, grammar={"max_objects": 1}, **QWEN3_BOUNDS)
    requests = first_turn_requests(sample_bench, 2)
    responses = adapter.generate(requests)
    for request, response in zip(requests, responses, strict=True):
        assert tuple(response.extra["input_size"]) == adapter.preset.input_size(request.image.size)
        assert all(side % 32 == 0 for side in response.extra["input_size"])
        assert response.frame.name == "norm-1000"
        assert parse(response, request).ok, response.raw_text
        if preset == "qwen3-vl-thinking":
            assert "</think>" in response.raw_text  # reasoning first, closed before the budget ran out
    adapter.close()


def test_internvl_constrained_run_has_no_answer_failures(tiny_internvl, sample_bench, tmp_path):
    from regiondial_bench.api import evaluate
    from regiondial_bench.run.folder import read_predictions
    from regiondial_bench.schema import RunConfig

    config = RunConfig(adapter="hf", adapter_options={
        "preset": "internvl3.5", "model": str(tiny_internvl), "device": "cpu", "constrained": True,
        "max_new_tokens": 300, "grammar": {"max_objects": 2}}, batch_size=4, limit=2)
    results = evaluate(sample_bench, config, tmp_path / "run", progress=False, n_bootstrap=10)
    records = read_predictions(tmp_path / "run" / "predictions.jsonl")
    assert records and [r.error for r in records if r.error or not r.regions] == []
    # the <ref>/<box> tokens the answer is written in survive decoding (skip_special_tokens would drop them)
    assert all("<box>[[" in r.raw_text and "</ref>" in r.raw_text for r in records)
    assert results.frame_check.declared == "norm-1000"
    assert results.provenance.adapter_config["backend"]["image_processor"] == "GotOcr2ImageProcessorPil"


# ---------------------------------------------------------------------- repetition penalty, three backends


@pytest.fixture(scope="module")
def penalised_qwen(tiny_qwen, tmp_path_factory):
    """The tiny Qwen2.5-VL with Qwen2.5-VL-7B-Instruct's ``repetition_penalty: 1.05`` in its generation config."""
    folder = tmp_path_factory.mktemp("penalised") / "qwen"
    shutil.copytree(tiny_qwen, folder)
    config = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**config, "repetition_penalty": 1.05}))
    return folder


@pytest.mark.parametrize(("option", "expected"), [(None, 1.0), ("checkpoint", 1.05), (1.2, 1.2)])
def test_hf_repetition_penalty(penalised_qwen, option, expected):
    options = {} if option is None else {"repetition_penalty": option}
    adapter = create_adapter("hf", preset="qwen2.5-vl-7b", model=str(penalised_qwen), device="cpu",
                             max_new_tokens=4, **options)
    assert adapter.generation_config.repetition_penalty == expected
    generation = adapter.config()["generation"]
    assert generation["repetition_penalty"] == expected
    assert generation["repetition_penalty_from"] == ("checkpoint" if option == "checkpoint" else "preset")
    adapter.close()


@pytest.mark.parametrize(("option", "expected"), [(None, 1.0), ("checkpoint", 1.05)])
def test_vllm_repetition_penalty_matches_hf(monkeypatch, penalised_qwen, sample_bench, option, expected):
    from .test_constrained import _fake_vllm

    calls = _fake_vllm(monkeypatch)
    options = {} if option is None else {"repetition_penalty": option}
    adapter = create_adapter("vllm", preset="qwen2.5-vl-7b", model=str(penalised_qwen), **options)
    adapter.generate(first_turn_requests(sample_bench, 1))
    assert calls[-1].options["repetition_penalty"] == expected
    assert adapter.config()["sampling"]["repetition_penalty"] == expected


def test_openai_sends_the_pinned_penalty_and_leaves_checkpoint_to_the_server(sample_bench):
    from .test_openai import ScriptedServer, make

    with ScriptedServer() as server:
        for options, sent in (({}, 1.0), ({"repetition_penalty": 1.05}, 1.05), ({"repetition_penalty": "checkpoint"},
                                                                                None)):
            adapter = make(server, preset="qwen2.5-vl-7b", **options)
            adapter.generate(first_turn_requests(sample_bench, 1))
            adapter.close()
            assert server.bodies[-1].get("repetition_penalty") == sent, options



# ---------------------------------------------------------------------- the openai frame


def test_openai_native_preset_reads_answers_in_the_frame_it_writes_references_in(sample_bench, tmp_path):
    """Qwen2.5-VL over a server: the server resizes the original (smart_resize, 640x480 -> 644x476), so
    answers are read in that frame, the frame references are written in. A model that answers the
    referenced box then gives back the very box it was shown (up to integer rounding)."""
    from regiondial_bench.api import evaluate
    from regiondial_bench.run.folder import read_predictions
    from regiondial_bench.schema import RunConfig

    from .test_openai import ScriptedServer

    with ScriptedServer() as server:
        config = RunConfig(adapter="openai", adapter_options={
            "preset": "qwen2.5-vl-7b", "base_url": server.url, "model": "tiny", "max_concurrency": 2}, limit=4)
        evaluate(sample_bench, config, tmp_path / "run", progress=False, n_bootstrap=10)
    records = read_predictions(tmp_path / "run" / "predictions.jsonl")
    copies = [(r.regions[0].box, used.box) for r in records for used in r.references if used.source == "predicted"]
    assert copies
    for answered, shown in copies:
        assert answered == pytest.approx(shown, abs=1.0), (answered, shown)


def test_an_attention_kernel_that_cannot_load_fails_with_the_option_named(tiny_qwen):
    """The parity configs ask for flash-attn 2; without its package (or a GPU) the run stops with one line."""
    import importlib.util

    from regiondial_bench.adapters import AdapterError

    if importlib.util.find_spec("flash_attn") is not None:
        pytest.skip("flash-attn is installed here")
    with pytest.raises(AdapterError, match="attn_implementation='flash_attention_2'.*set attn_implementation: sdpa"):
        create_adapter("hf", preset="qwen2.5-vl-7b", model=str(tiny_qwen), device="cpu",
                       attn_implementation="flash_attention_2")
