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
                            "max_new_tokens": 6, "device": "cpu", "dtype": "float32"},
        "mask_producer_options": {**config.mask_producer_options, "model": str(tiny_sam2), "device": "cpu"},
        "limit": 2,
    })
    results = evaluate(sample_bench, config, tmp_path / "run", progress=False, n_bootstrap=10)
    assert results.provenance.reference_mode == "upstream"
    assert results.provenance.adapter_config["preset"]["reference_frame"] == "original"
