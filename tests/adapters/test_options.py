"""The shared options object of the hf, vllm and openai adapters (validated once, before loading)."""

from __future__ import annotations

import math

import pytest
from click.testing import CliRunner

from regiondial_bench.adapters import AdapterError
from regiondial_bench.adapters.options import (
    GrammarOptions,
    HFOptions,
    ModelOptions,
    OpenAIOptions,
    VLLMOptions,
)
from regiondial_bench.adapters.presets import get_preset
from regiondial_bench.adapters.registry import adapter_option_names, check_adapter_options
from regiondial_bench.cli import main
from regiondial_bench.cli.evaluate import merge_options, parse_option_pairs
from regiondial_bench.grammar import MAX_BOX_BUCKETS, GrammarError, response_grammar


def test_every_backend_shares_the_preset_options_block():
    shared = set(ModelOptions.model_fields)
    for cls in (HFOptions, VLLMOptions, OpenAIOptions):
        assert shared <= set(cls.model_fields)
    # and each backend adds only its own settings on top
    assert "device" in HFOptions.model_fields and "device" not in OpenAIOptions.model_fields
    assert "base_url" in OpenAIOptions.model_fields and "tensor_parallel_size" in VLLMOptions.model_fields


def test_the_options_build_the_preset_with_the_overrides():
    options = HFOptions.parse({"preset": "regionreasoner-7b", "squash_size": 448, "reference_frame": "original",
                               "max_new_tokens": 64, "model": "/weights"})
    preset = options.build_preset()
    assert (preset.squash_size, preset.reference_frame, preset.max_new_tokens, preset.model) == \
        (448, "original", 64, "/weights")
    assert preset.input_size((640, 480)) == (448, 448)
    # openai's model is the served name, not the weights: the preset keeps its checkpoint id
    served = OpenAIOptions.parse({"preset": "regionreasoner-7b", "model": "served-name"}).build_preset()
    assert served.model == get_preset("regionreasoner-7b").model


@pytest.mark.parametrize(("options", "message"), [
    ({"squash_sise": 448}, "squash_sise: not an option (did you mean 'squash_size'?)"),
    ({"squash_size": 0}, "squash_size: Input should be greater than or equal to 1"),
    ({"squash_size": 1e300}, "squash_size: "),
    ({"squash_size": "big"}, "squash_size: "),
    ({"max_new_tokens": -1}, "max_new_tokens: "),
    ({"image_mode": "stretch"}, "image_mode: Input should be 'squash' or 'native'"),
    ({"coordinate_frame": "norm-999"}, "coordinate_frame: "),
    ({"grammar": {"box_step": 4}}, "grammar: grammar options need constrained: true"),
    ({"constrained": True, "grammar": {"box_step": True}}, "grammar.box_step: "),
    ({"constrained": True, "grammar": {"box_step": "4"}}, "grammar.box_step: "),
    ({"constrained": True, "grammar": {"box_step": 0}}, "grammar.box_step: "),
    ({"constrained": True, "grammar": {"max_items": 2}}, "grammar.max_items: not an option"),
    ({"preset": 3}, "preset must be a preset name or a Preset"),
    # a field of several types: one line naming the field and what each type wanted, no pydantic tags
    ({"repetition_penalty": 0}, "repetition_penalty: Input should be greater than 0 or Input should be 'checkpoint'"),
    ({"repetition_penalty": 0, "squash_sise": 1},
     "repetition_penalty: Input should be greater than 0 or Input should be 'checkpoint'; squash_sise: not an option"),
])
def test_bad_options_name_the_option(options, message):
    with pytest.raises(AdapterError) as info:
        HFOptions.parse(options)
    assert message in str(info.value) and str(info.value).startswith("bad options for adapter 'hf':")


def test_backend_settings_are_checked_too():
    with pytest.raises(AdapterError, match="device.*not both"):
        HFOptions.parse({"device": "cuda:1", "device_map": "auto"})
    with pytest.raises(AdapterError, match="min_new_tokens"):
        HFOptions.parse({"constrained": True, "min_new_tokens": 3})
    for bad in ({"timeout_s": math.inf}, {"timeout_s": 0}, {"max_concurrency": 0}, {"image_format": "gif"},
                {"transport": "smoke-signals"}, {"jpeg_quality": 100}, {"grammar_field": "regex"}):
        with pytest.raises(AdapterError, match=f"{next(iter(bad))}:"):
            OpenAIOptions.parse(bad)
    with pytest.raises(AdapterError, match="gpu_memory_utilization"):
        VLLMOptions.parse({"gpu_memory_utilization": 1.5})


def test_the_registry_checks_options_before_the_adapter_is_built():
    # no model is loaded: the openai adapter's options are refused by name before construction
    assert "base_url" in adapter_option_names(__import__("regiondial_bench.adapters.openai",
                                                         fromlist=["OpenAIAdapter"]).OpenAIAdapter)
    with pytest.raises(AdapterError, match="png_compress_level"):
        check_adapter_options("openai", {"png_compress_level": 12})
    check_adapter_options("hf", {"preset": "seg-zero-7b", "constrained": True, "grammar": {"box_step": 16}})


def test_dotted_options_nest_and_merge():
    assert parse_option_pairs(("grammar.box_step=16",)) == {"grammar": {"box_step": 16}}
    with pytest.raises(Exception, match="given a value already"):
        parse_option_pairs(("grammar=3", "grammar.box_step=16"))
    with pytest.raises(Exception, match="given twice"):
        parse_option_pairs(("grammar.box_step=16", "grammar.box_step=8"))
    merged = merge_options({"constrained": True, "grammar": {"max_objects": 4}}, {"grammar": {"box_step": 16}})
    assert merged == {"constrained": True, "grammar": {"max_objects": 4, "box_step": 16}}
    GrammarOptions.model_validate(merged["grammar"])  # the merged mapping is a valid grammar block


def test_grammar_options_through_the_cli_are_validated_before_any_model_loads(tmp_path):
    result = CliRunner().invoke(main, ["evaluate", "--model", "hf", "--preset", "regionreasoner-7b",
                                       "--constrained", "-o", "grammar.box_stp=16", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert "grammar.box_stp: not an option (did you mean 'box_step'?)" in result.output
    assert "Traceback" not in result.output


def test_a_box_step_that_would_stall_start_up_is_refused_at_once():
    preset = get_preset("regionreasoner-7b")
    with pytest.raises(GrammarError, match=r"box_step 1 gives 840 buckets per axis.*box_step >= 14"):
        response_grammar(preset, (840, 840), box_step=1)
    smallest = math.ceil(840 / MAX_BOX_BUCKETS)
    assert response_grammar(preset, (840, 840), box_step=smallest).box_step == (smallest, smallest)


@pytest.mark.parametrize("frame", [(math.inf, 840), (math.nan, 840), (1e300, 840), (840.5, 840), (1, 840),
                                   ("840", 840), (840,), None])
def test_a_frame_that_is_not_two_whole_sides_is_a_grammar_error(frame):
    with pytest.raises(GrammarError, match="the frame must be two whole numbers"):
        response_grammar(get_preset("regionreasoner-7b"), frame)
