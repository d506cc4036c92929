"""Constrained GRPO rollouts (off by default): config checks and sampled completions under the grammar.

The trainer script comes from the ``grpo`` fixture in ``conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytest.importorskip("trl")
pytest.importorskip("xgrammar")

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "train_reference" / "configs" / "cpu_smoke.yaml"


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory):
    from regiondial_bench.testing import build_tiny_qwen2_5_vl

    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny-qwen"), seed=0)


def smoke_config(tmp_path, **constrained):
    raw = yaml.safe_load(SMOKE.read_text())
    raw["grpo"]["output_dir"] = str(tmp_path / "out")
    raw["grpo"]["max_completion_length"] = 200
    if constrained:
        raw["constrained"] = constrained
    return raw


def test_constrained_rollouts_are_off_by_default_and_checked(grpo, tmp_path):
    raw = smoke_config(tmp_path)
    assert raw.pop("constrained")["enabled"]  # the CPU smoke constrains its rollouts (reward variance) ...
    assert "constrained" not in grpo.parse_settings(raw).extra  # ... without the section they are free
    seven_b = yaml.safe_load((ROOT / "train_reference" / "configs" / "regionreasoner_7b_4xh100.yaml").read_text())
    assert "constrained" not in seven_b  # the released recipe samples freely
    settings = grpo.parse_settings(smoke_config(tmp_path, enabled=True, max_objects=1))
    assert settings.extra["constrained"] == {"enabled": True, "max_objects": 1}
    with pytest.raises(grpo.ConfigError, match="unknown key constrained.max_object"):
        grpo.parse_settings(smoke_config(tmp_path, enabled=True, max_object=1))
    raw = smoke_config(tmp_path, enabled=True)
    raw["data"]["frame"] = "original"
    with pytest.raises(grpo.ConfigError, match="data.frame: squash-840"):
        grpo.parse_settings(raw)
    with pytest.raises(grpo.ConfigError, match="max_completion_length"):
        grpo.rollout_grammar({"enabled": True}, {"max_completion_length": 40})


def test_sampled_rollouts_follow_the_grammar(grpo, tiny_qwen):
    """Rollouts sample (temperature 1): every completion of the wrapped generate is a grammar string."""
    import torch
    from transformers import AutoModelForImageTextToText

    from regiondial_bench.adapters.processors import load_vlm_processor
    from regiondial_bench.protocol import parse_answer
    from regiondial_bench.training.data import conversation

    processor = load_vlm_processor(tiny_qwen)
    processor.tokenizer.padding_side = "left"
    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen).eval()
    grammar = grpo.rollout_grammar({"enabled": True, "max_objects": 1}, {"max_completion_length": 200})
    grpo.constrain_generate(model, processor, grammar)
    texts = [processor.apply_chat_template(conversation(q), add_generation_prompt=True, tokenize=False)
             for q in ("the dog on the left", "the man near bbox=[1, 2, 300, 400]")]
    inputs = processor.tokenizer(texts, return_tensors="pt", padding=True)
    torch.manual_seed(0)
    out = model.generate(**inputs, do_sample=True, temperature=1.0, max_new_tokens=200,
                         pad_token_id=processor.tokenizer.pad_token_id)
    completions = processor.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    for completion in completions:
        assert grammar.accepts(completion), completion
        assert parse_answer(completion, require_answer_tag=True).ok
