"""Every baseline config is valid, names a real preset and options its adapter accepts; one runs on tiny models."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from regiondial_bench.adapters import get_adapter_class
from regiondial_bench.adapters.presets import PRESETS
from regiondial_bench.api import load_run_config

BASELINES = Path(__file__).resolve().parents[2] / "baselines"
CONFIGS = sorted(BASELINES.glob("*/*.yaml"))
EXPECTED = {"qwen2.5-vl-7b", "seg-zero-7b", "visionreasoner-7b", "regionreasoner-7b", "segllm-7b"}


def test_every_paper_baseline_has_a_config():
    assert {p.parent.name for p in CONFIGS} == EXPECTED
    readme = (BASELINES / "README.md").read_text()
    for name in EXPECTED:
        assert f"baselines/{name}/config.yaml" in readme


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_baseline_config_binds_to_its_adapter(path):
    config = load_run_config(path)
    cls = get_adapter_class(config.adapter) if config.adapter != "vllm" else None
    inspect.signature(cls.__init__).bind(None, **config.adapter_options)  # raises on unknown options
    if config.adapter == "hf":
        assert config.adapter_options["preset"] == path.parent.name
        assert config.adapter_options["preset"] in PRESETS
        assert config.mask_producer == "sam2"
        from regiondial_bench.run.segment_sam2 import Sam2MaskProducer

        inspect.signature(Sam2MaskProducer.__init__).bind(None, **config.mask_producer_options)
        expected_prompt = "box" if path.parent.name == "qwen2.5-vl-7b" else "box+points"
        assert config.mask_producer_options["prompt"] == expected_prompt


def test_regionreasoner_config_runs_on_tiny_models(tiny_qwen, tiny_sam2, sample_bench, tmp_path):
    """The baseline config's code path, with the weights swapped for the tiny random models."""
    from regiondial_bench.api import evaluate

    config = load_run_config(BASELINES / "regionreasoner-7b" / "parity.yaml")
    config = config.model_copy(update={
        "adapter_options": {**config.adapter_options, "model": str(tiny_qwen), "squash_size": 224,
                            "max_new_tokens": 6, "device": "cpu", "dtype": "float32",
                            "attn_implementation": "sdpa"},  # flash-attn 2 needs a GPU and its package
        "mask_producer_options": {**config.mask_producer_options, "model": str(tiny_sam2), "device": "cpu"},
        "limit": 2,
    })
    results = evaluate(sample_bench, config, tmp_path / "run", progress=False, n_bootstrap=10)
    assert results.provenance.reference_mode == "upstream"
    assert results.provenance.adapter_config["preset"]["reference_frame"] == "original"


# ---------------------------------------------------------------------- parity configs = the released settings

PARITY = {
    # model: (attention kernel, SAM2 dtype) as the released code loads them (UPSTREAM.md 1, 3.3, 3.4, 4)
    "regionreasoner-7b": ("flash_attention_2", "float32"),
    "visionreasoner-7b": ("flash_attention_2", "float32"),
    "seg-zero-7b": ("flash_attention_2", "bfloat16"),  # Seg-Zero's own infer.py autocasts SAM2 to bf16
    "qwen2.5-vl-7b": ("sdpa", "float32"),
}


@pytest.mark.parametrize("name", sorted(PARITY))
def test_parity_config_runs_as_upstream_did(name):
    config = load_run_config(BASELINES / name / "parity.yaml")
    attention, sam2_dtype = PARITY[name]
    assert config.batch_size == 1  # one turn per generate call: no padding, no batch effects
    assert config.adapter_options["attn_implementation"] == attention
    assert config.mask_producer_options["dtype"] == sam2_dtype
    # generate(max_new_tokens, do_sample) merges the checkpoint's generation_config.json
    assert config.adapter_options["repetition_penalty"] == "checkpoint"
    assert (config.parser, config.reference_mode, config.adapter_options["constrained"]) == ("upstream", "upstream",
                                                                                              False)


def test_qwen_parity_sends_the_released_prompt_byte_for_byte():
    from regiondial_bench.adapters.options import HFOptions

    config = load_run_config(BASELINES / "qwen2.5-vl-7b" / "parity.yaml")
    options = {k: v for k, v in config.adapter_options.items() if k in HFOptions.model_fields}
    preset = HFOptions.parse(options).build_preset()
    # qwen_vl.py: DETECTION_PROMPT = """\n            Locate "{query}", report ...\n            """
    released = '\n            Locate "{query}", report the bboxes coordinates in JSON format.\n            '
    assert preset.user_text("the cat on the left") == released.replace("{query}", "the cat on the left")
    clean = HFOptions.parse({**options, "prompt_variant": "default"}).build_preset()
    assert clean.user_text("the cat") == 'Locate "the cat", report the bboxes coordinates in JSON format.'
    assert preset.describe()["sent_template"] != clean.describe()["sent_template"]  # the run records which


def test_qwen_parity_prompt_reaches_the_model(tiny_qwen, sample_bench):
    """The chat template receives the released text (leading newline and indentation included)."""
    from regiondial_bench.adapters import create_adapter

    from .conftest import first_turn_requests

    adapter = create_adapter("hf", preset="qwen2.5-vl-7b", model=str(tiny_qwen), device="cpu", max_new_tokens=2,
                             prompt_variant="upstream", min_pixels=16 * 28 * 28, max_pixels=64 * 28 * 28)
    texts, _, _ = adapter.chat_inputs(first_turn_requests(sample_bench, 1), adapter.processor)
    assert '<|vision_end|>\n            Locate "' in texts[0]
    assert 'in JSON format.\n            <|im_end|>' in texts[0]
    adapter.close()
