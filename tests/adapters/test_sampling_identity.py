"""Sampling options of the preset adapters, and what identifies their answers for the response cache."""

from __future__ import annotations

import os

import pytest

from regiondial_bench.adapters import AdapterError, create_adapter
from regiondial_bench.adapters.presets import weights_fingerprint
from regiondial_bench.adapters.sampling import SamplingSettings

from .conftest import first_turn_requests
from .test_segllm_vllm import _fake_vllm


def test_sampling_settings_are_checked_once_for_every_backend():
    for bad, message in (({"temperature": -1}, "temperature"), ({"temperature": float("nan")}, "finite"),
                         ({"top_p": 0}, "top_p"), ({"seed": -3}, "seed"), ({"seed": True}, "seed"),
                         ({"temperature": "hot"}, "temperature")):
        with pytest.raises(AdapterError, match=message):
            SamplingSettings.of(**bad)
    with pytest.raises(AdapterError, match="top_p"):
        create_adapter("openai", preset="regionreasoner-7b", base_url="http://127.0.0.1:9/v1", top_p=2.0,
                       check_server=False)


def test_hf_samples_reproducibly_per_seed_and_identifies_its_model(tiny_qwen, sample_bench):
    request = first_turn_requests(sample_bench, 1)[0]
    options = {"preset": "regionreasoner-7b", "model": str(tiny_qwen), "squash_size": 224, "max_new_tokens": 12}
    greedy = create_adapter("hf", **options, device="cpu", batch_size=4)
    assert not greedy.samples and greedy.generation_config.do_sample is False
    other_place = create_adapter("hf", **options, device="cpu", batch_size=1)
    assert greedy.cache_identity() == other_place.cache_identity()  # placement is not the model
    assert greedy.cache_identity()["model"]["files"].startswith("sha256:")
    sampled = create_adapter("hf", **options, temperature=1.5, seed=3)
    assert sampled.samples and sampled.generation_config.do_sample and sampled.generation_config.temperature == 1.5
    assert sampled.cache_identity() != greedy.cache_identity()
    first = sampled.generate([request])[0].raw_text
    sampled.reseed(3)
    assert sampled.generate([request])[0].raw_text == first  # the same seed draws the same answer
    draws = set()
    for seed in range(4, 9):
        sampled.reseed(seed)
        draws.add(sampled.generate([request])[0].raw_text)
    assert len(draws | {first}) > 1
    assert sampled.cache_identity()["sampling"]["seed"] == 8
    greedy.reseed(99)  # a greedy adapter's answers do not depend on the seed: nor does its identity
    assert greedy.cache_identity() == other_place.cache_identity()


def test_vllm_sends_the_seed_only_when_sampling(monkeypatch, tiny_qwen):
    _fake_vllm(monkeypatch)
    greedy = create_adapter("vllm", preset="qwen2.5-vl-7b", model=str(tiny_qwen))
    assert greedy.sampling.options["temperature"] == 0.0 and "seed" not in greedy.sampling.options
    sampled = create_adapter("vllm", preset="qwen2.5-vl-7b", model=str(tiny_qwen), temperature=0.7, seed=2,
                             gpu_memory_utilization=0.5)
    assert sampled.sampling.options["seed"] == 2 and sampled.sampling.options["temperature"] == 0.7
    sampled.reseed(7)
    assert sampled.sampling.options["seed"] == 7 and sampled.cache_identity()["sampling"]["seed"] == 7
    assert "gpu_memory_utilization" not in sampled.cache_identity()["engine"]


def test_a_local_checkpoint_is_fingerprinted_by_its_files(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    before = weights_fingerprint(str(folder))
    (folder / "model.safetensors").write_bytes(b"retrained")  # other size
    after = weights_fingerprint(str(folder))
    assert before["files"] != after["files"] and before["model"] == after["model"]
    stat = (folder / "model.safetensors").stat()
    os.utime(folder / "model.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert weights_fingerprint(str(folder))["files"] != after["files"]  # same size, written later
    assert weights_fingerprint("org/model") == {"model": "org/model"}  # a Hub id: its revision, once loaded
