"""The ``hf`` adapter and the ``sam2`` producer end to end on tiny random models (CPU, offline)."""

from __future__ import annotations

import pytest

from regiondial_bench.adapters import AdapterError, create_adapter
from regiondial_bench.geometry import CoordinateFrame, rle_area, rle_to_mask
from regiondial_bench.run.segment import create_mask_producer
from regiondial_bench.schema import Region

from .conftest import first_turn_requests

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def squash_adapter(tiny_qwen):
    adapter = create_adapter("hf", preset="regionreasoner-7b", model=str(tiny_qwen), squash_size=224,
                             max_new_tokens=12, device="cpu")
    yield adapter
    adapter.close()


def test_hf_squash_batch_matches_single_requests(squash_adapter, sample_bench):
    requests = first_turn_requests(sample_bench, 3)
    batched = squash_adapter.generate(requests)
    assert len(batched) == 3
    for request, response in zip(requests, batched, strict=True):
        assert response.frame == CoordinateFrame(224.0, 224.0, "squash-224x224")
        assert response.extra["input_size"] == [224, 224]  # the processor did not resize further
        assert response.require_answer_tag is True
        assert "<|image_pad|>" not in response.raw_text
        single = squash_adapter.generate([request])[0]
        assert single.raw_text == batched[requests.index(request)].raw_text  # left padding is neutral


def test_hf_renders_references_in_model_frame(squash_adapter, sample_bench):
    request = first_turn_requests(sample_bench, 1)[0]
    w, h = request.image.size
    assert squash_adapter.reference_text((0, 0, w / 2, h / 2), request.image) == "[0, 0, 112, 112]"
    parity = create_adapter("hf", preset="regionreasoner-7b", model=squash_adapter.preset.model, squash_size=224,
                            reference_frame="original", max_new_tokens=4, device="cpu")
    assert parity.reference_text((0, 0, w / 2, h / 2), request.image) == f"[0, 0, {round(w / 2)}, {round(h / 2)}]"


def test_hf_native_frame_comes_from_the_processor_grid(tiny_qwen, sample_bench):
    adapter = create_adapter("hf", preset="qwen2.5-vl-7b", model=str(tiny_qwen), max_new_tokens=6, device="cpu",
                             min_pixels=16 * 28 * 28, max_pixels=64 * 28 * 28)
    request = first_turn_requests(sample_bench, 1)[0]
    response = adapter.generate([request])[0]
    expected = adapter.preset.input_size(request.image.size)
    assert tuple(response.extra["input_size"]) == expected
    assert response.frame.width == expected[0] and response.frame.height == expected[1]
    assert response.require_answer_tag is False
    assert adapter.config()["generation"]["do_sample"] is False


def test_hf_bad_options_fail_clearly(tiny_qwen):
    with pytest.raises(AdapterError, match="unknown preset"):
        create_adapter("hf", preset="regionreasoner", model=str(tiny_qwen))
    with pytest.raises(AdapterError, match="dtype"):
        create_adapter("hf", preset="regionreasoner-7b", model=str(tiny_qwen), dtype="float7")
    with pytest.raises(AdapterError, match="cannot load model"):
        create_adapter("hf", preset="regionreasoner-7b", model="/nonexistent/model/folder")


def test_evaluate_hf_with_sam2_end_to_end(tiny_qwen, tiny_sam2, sample_bench, tmp_path):
    from regiondial_bench.api import evaluate
    from regiondial_bench.run.folder import read_predictions
    from regiondial_bench.schema import RunConfig

    config = RunConfig(
        adapter="hf",
        adapter_options={"preset": "regionreasoner-7b", "model": str(tiny_qwen), "squash_size": 224,
                         "max_new_tokens": 8, "device": "cpu"},
        mask_producer="sam2",
        mask_producer_options={"model": str(tiny_sam2), "device": "cpu"},
        batch_size=8,
        limit=3,
    )
    results = evaluate(sample_bench, config, tmp_path / "run", progress=False, n_bootstrap=10)
    records = read_predictions(tmp_path / "run" / "predictions.jsonl")
    turns = sum(len(d.turns) for d in list(sample_bench)[:3])
    assert len(records) == turns
    assert results.provenance.adapter == "hf"
    assert results.provenance.adapter_config["preset"]["name"] == "regionreasoner-7b"
    assert results.provenance.mask_producer_config["name"] == "sam2"
    # later rounds were asked with a rendered reference (predicted or the no-region marker)
    assert any(r.references for r in records)


def test_sam2_masks_follow_prompts_and_batching(tiny_sam2, sample_bench):
    producer = create_mask_producer("sam2", model=str(tiny_sam2), device="cpu", batch_size=2)
    image = first_turn_requests(sample_bench, 1)[0].image
    w, h = image.size
    with_point = Region(box=(10, 10, w / 2, h / 2), point=(20, 20))
    no_point = Region(box=(w / 2, h / 2, w - 5, h - 5))
    items = [(image, [with_point, no_point]), (image, []), (image, [with_point])]
    masks = producer.masks(items)
    assert masks[1] is None
    assert masks[0].size == (h, w) and masks[2].size == (h, w)
    # OR merge: the two-object mask contains the one-object mask
    both, one = rle_to_mask(masks[0]), rle_to_mask(masks[2])
    assert (both | one).sum() == both.sum()
    # batch size does not change the masks
    single = create_mask_producer("sam2", model=str(tiny_sam2), device="cpu", batch_size=1).masks(items)
    assert [m and m.counts for m in single] == [m and m.counts for m in masks]
    # upstream parity: an object without a point empties the whole turn
    parity = create_mask_producer("sam2", model=str(tiny_sam2), device="cpu", missing_point="empty-turn")
    assert parity.masks(items[:1]) == [None]
    assert rle_area(parity.masks(items[2:])[0]) == rle_area(masks[2])


def test_sam2_bad_options(tiny_sam2):
    with pytest.raises(AdapterError, match="prompt"):
        create_mask_producer("sam2", model=str(tiny_sam2), prompt="points")
    with pytest.raises(AdapterError, match="cannot load SAM2"):
        create_mask_producer("sam2", model="/nonexistent/sam2")


def test_cli_evaluate_with_hf_preset(tiny_qwen, tmp_path):
    """`regiondial evaluate --model hf --preset ...` on the tiny model, through the real CLI."""
    import yaml
    from click.testing import CliRunner

    from regiondial_bench.cli import main

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"adapter": "hf", "adapter_options": {
        "squash_size": 112, "max_new_tokens": 4, "device": "cpu"}}))
    result = CliRunner().invoke(main, [
        "evaluate", "--config", str(config), "--model", "hf", "--preset", "visionreasoner-7b",
        "--model-path", str(tiny_qwen), "--limit", "1", "--batch-size", "4", "--out", str(tmp_path / "run"),
        "--no-progress", "--bootstrap", "10"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "predictions.jsonl").is_file()
    assert "turns in" in result.output
