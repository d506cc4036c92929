"""Scale-out with real adapters: shards of the tiny hf model and of the official RefCOCO+ file
equal the unsharded runs; vllm refuses in-process data parallelism; hf takes ``device_map``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from regiondial_bench import api
from regiondial_bench.adapters import create_adapter
from regiondial_bench.adapters.base import AdapterError
from regiondial_bench.publish.submission import SubmissionError, create_submission, default_bench_resolver
from regiondial_bench.schema import REFERENCE_MODES, RunConfig

from .conftest import first_turn_requests
from .test_segllm_vllm import _fake_vllm


def metrics_json(results) -> str:
    return results.model_dump_json(exclude={"provenance"})


def sharded_equals_full(bench, config, root, location: str = "", n_bootstrap: int = 20, adapter=None):
    full = api.evaluate(bench, config, root / "full", progress=False, n_bootstrap=n_bootstrap,
                        bench_location=location, adapter=adapter)
    for i in range(2):
        api.evaluate(bench, config, root / f"s{i}", progress=False, n_bootstrap=n_bootstrap, shard=(i, 2),
                     bench_location=location, adapter=adapter)
    merged = api.merge([root / "s0", root / "s1"], root / "merged", bench=bench)
    assert metrics_json(merged) == metrics_json(full)
    return full, merged


TINY_HF = {"preset": "qwen2.5-vl-7b", "max_new_tokens": 6, "max_pixels": 56 * 56, "min_pixels": 28 * 28}


@pytest.fixture(scope="module")
def tiny_hf(tiny_qwen):
    """One tiny hf adapter for all three modes (the runs share it as a sweep does)."""
    adapter = create_adapter("hf", model=str(tiny_qwen), **TINY_HF)
    yield adapter
    adapter.close()


@pytest.mark.parametrize("mode", REFERENCE_MODES)
def test_tiny_hf_shards_equal_one_process(tiny_hf, tiny_qwen, sample_bench, tmp_path, mode):
    config = RunConfig(adapter="hf", batch_size=8, limit=3, reference_mode=mode,
                       adapter_options={**TINY_HF, "model": str(tiny_qwen)})
    full, _ = sharded_equals_full(sample_bench, config, tmp_path, location="sample", adapter=tiny_hf)
    # every turn was asked and answered alike: same question (references filled alike), same text
    def turns(folder):
        rows = [json.loads(line) for line in (tmp_path / folder / "predictions.jsonl").open()]
        return {(r["dialogue_id"], r["turn"]): (r["question"], r["raw_text"], r.get("references")) for r in rows}

    assert turns("merged") == turns("full") and len(turns("full")) == full.overall.n


@pytest.fixture(scope="module")
def refcocoplus(upstream_file, tmp_path_factory):
    """The official RefCOCO+ question file with stand-in blank images (sizes only; no pixels are read)."""
    path = upstream_file("refcocoplus")
    bench = api.load_bench(path)
    images = tmp_path_factory.mktemp("blank-images")
    blank = Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).resize((640, 640))
    for dialogue in bench:
        blank.save(images / dialogue.image.file_name)
    return path, api.load_bench(path, images=images)


@pytest.mark.parametrize("adapter", ["oracle", "reference-copy"])
@pytest.mark.parametrize("mode", REFERENCE_MODES)
def test_official_refcocoplus_shards_equal_one_process(refcocoplus, tmp_path, adapter, mode):
    path, bench = refcocoplus
    config = RunConfig(adapter=adapter, reference_mode=mode, batch_size=64)
    full, merged = sharded_equals_full(bench, config, tmp_path, location=str(path), n_bootstrap=10)
    assert merged.overall.n == bench.num_turns
    resolver = default_bench_resolver({bench.name: str(path)})
    if adapter == "oracle" or mode == "gold":
        # the official file's gold boxes may not be republished: such a merged run is refused for that
        # reason alone (not for being a merge); the other merged runs are verified
        with pytest.raises(SubmissionError, match="republish"):
            create_submission(tmp_path / "merged", f"{adapter}-{mode}", root=tmp_path / "subs", resolve_bench=resolver)
        return
    report = create_submission(tmp_path / "merged", f"{adapter}-{mode}", root=tmp_path / "subs", resolve_bench=resolver)
    assert report.status == "verified", report.problems


def test_vllm_never_gets_data_parallel_size(monkeypatch, tiny_qwen):
    engines = _fake_vllm(monkeypatch)
    for options in ({"data_parallel_size": 2}, {"engine_options": {"data_parallel_size": 2}}):
        with pytest.raises(AdapterError, match=r"vllm serve MODEL --data-parallel-size 2.*max_concurrency") as err:
            create_adapter("vllm", preset="qwen2.5-vl-7b", model=str(tiny_qwen), **options)
        assert "CUDA_VISIBLE_DEVICES" in str(err.value) and "--shard i/2" in str(err.value)
        assert "for i in 0..1" in str(err.value) and "tensor_parallel_size" in str(err.value)
    assert engines == []
    create_adapter("vllm", preset="qwen2.5-vl-7b", model=str(tiny_qwen), tensor_parallel_size=2)
    assert "data_parallel_size" not in engines[0] and engines[0]["tensor_parallel_size"] == 2


def test_hf_device_map_auto_loads_and_answers_like_a_device(tiny_qwen, sample_bench):
    requests = first_turn_requests(sample_bench, 2)
    options = {"preset": "qwen2.5-vl-7b", "model": str(tiny_qwen), "max_new_tokens": 8, "max_pixels": 56 * 56}
    mapped = create_adapter("hf", device_map="auto", **options)
    assert mapped.config()["device_map"] == "auto" and mapped.device == "cpu"
    plain = create_adapter("hf", device="cpu", **options)
    assert [r.raw_text for r in mapped.generate(requests)] == [r.raw_text for r in plain.generate(requests)]
    with pytest.raises(AdapterError, match="not both"):
        create_adapter("hf", device="cpu", device_map="auto", **options)


def test_a_launcher_device_reaches_adapters_that_take_one(tiny_qwen, tiny_sam2):
    config = RunConfig(adapter="hf", adapter_options={"preset": "qwen2.5-vl-7b", "model": str(tiny_qwen)})
    assert api.create_run_adapter(config, "cpu").device == "cpu"
    oracle = api.create_run_adapter(RunConfig(adapter="oracle"), "cuda:3")  # takes no device: not passed
    assert type(oracle).__name__ == "OracleAdapter"
    from regiondial_bench.adapters import Adapter, get_adapter_class, register_adapter

    try:
        get_adapter_class("test-device-recorder")
    except AdapterError:
        @register_adapter("test-device-recorder")
        class DeviceRecorder(Adapter):
            def __init__(self, device: str = "auto") -> None:
                self.device = device

    assert api.create_run_adapter(RunConfig(adapter="test-device-recorder"), "cuda:3").device == "cuda:3"
    pinned = RunConfig(adapter="test-device-recorder", adapter_options={"device": "cuda:0"})
    assert api.create_run_adapter(pinned, "cuda:3").device == "cuda:0"  # the options' device wins
    mapped = api.create_run_adapter(config.model_copy(update={"adapter_options": {
        **config.adapter_options, "device_map": "auto"}}), "cuda:3")
    assert mapped.device == "cpu"  # device_map wins over the launcher's device
    sam2 = RunConfig(adapter="oracle", mask_producer="sam2", mask_producer_options={"model": str(tiny_sam2)})
    assert api.create_run_mask_producer(sam2, "cpu").device == "cpu"
    fixed = sam2.model_copy(update={"mask_producer_options": {"model": str(tiny_sam2), "device": "cpu"}})
    assert api.create_run_mask_producer(fixed, "cuda:5").device == "cpu"  # the options' device wins
    assert api.create_run_mask_producer(RunConfig(adapter="oracle", mask_producer="box"), "cuda:5").name == "box"
    from regiondial_bench.run.segment import MaskProducer, register_mask_producer

    @register_mask_producer("test-device-masks")
    class DeviceMasks(MaskProducer):
        def __init__(self, device: str = "auto") -> None:
            self.device = device

    recorded = api.create_run_mask_producer(RunConfig(adapter="oracle", mask_producer="test-device-masks"), "cuda:5")
    assert recorded.device == "cuda:5"
