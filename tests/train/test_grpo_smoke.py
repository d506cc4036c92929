"""CPU smoke run of the GRPO reference trainer on a tiny random Qwen2.5-VL, and config validation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "train_reference" / "configs" / "cpu_smoke.yaml"
SEVEN_B = ROOT / "train_reference" / "configs" / "regionreasoner_7b_4xh100.yaml"


def _run(grpo, tmp_path, *, multi_round: bool, profile: str = "released", depth: int | None = 1):
    import torch
    from transformers import TrainerCallback

    settings = grpo.load_settings(SMOKE, output_dir=str(tmp_path / "out"), max_steps=2)
    settings.multi_round = multi_round
    settings.multi_round_depth = depth
    settings.rewards = {**settings.rewards, "name": profile}
    captured: list[dict] = []

    class Capture(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            captured.append(dict(logs or {}))

    trainer = grpo.build_trainer(settings, callbacks=[Capture()])
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p.detach())]
    out = grpo.save_policy(trainer, settings)
    return trainer, captured, changed, out


@pytest.mark.slow
def test_cpu_smoke_changes_weights_logs_components_and_saves_hf_folder(grpo, tmp_path):
    trainer, logs, changed, out = _run(grpo, tmp_path, multi_round=False)
    assert trainer.state.global_step == 2
    assert changed, "no parameter changed after two GRPO steps"
    step_logs = [entry for entry in logs if "rewards/tags/mean" in entry]
    assert len(step_logs) == 2
    # the constrained smoke rollouts earn different rewards within a group: advantages are not all zero
    assert all(entry["frac_reward_zero_std"] < 1 and entry["reward_std"] > 0 for entry in step_logs), step_logs
    for component in ("tags", "answer_format", "reference", "accuracy", "non_repeat", "consistency"):
        assert all(f"rewards/{component}/mean" in entry for entry in step_logs), component
    # the saved folder is a Hugging Face model folder the hf adapter can load
    from transformers import AutoModelForImageTextToText

    from regiondial_bench.adapters.processors import load_vlm_processor

    model = AutoModelForImageTextToText.from_pretrained(out)
    processor = load_vlm_processor(out)
    assert model.config.model_type == "qwen2_5_vl" and processor.tokenizer is not None
    provenance = json.loads((out / "regiondial_training.json").read_text())
    assert provenance["global_step"] == 2 and provenance["rewards"]["name"] == "released"


@pytest.mark.slow
def test_cpu_smoke_multi_round_rollout_runs(grpo, tmp_path):
    trainer, logs, changed, _ = _run(grpo, tmp_path, multi_round=True, profile="paper", depth=2)
    assert trainer.state.global_step == 2 and changed
    assert any("rewards/reference/mean" in entry for entry in logs)
    step_logs = [entry for entry in logs if "multi_round/turns_answered" in entry]
    assert len(step_logs) == 2 and all(entry["multi_round/aux_padding_rows"] == 0 for entry in step_logs)


class _StubTrainer:
    """What ``_answer_references`` uses of the trainer: tokenise, generate, decode, and the widest wave."""

    def __init__(self, other_process=()):
        self.other_process = list(other_process)  # the question counts of another process, wave by wave
        self.calls: list[list[str]] = []
        self.processing_class = self
        self.generation_config = None

    def _query_prompt(self, problem, row):
        return problem

    def _widest(self, count):
        return max(count, self.other_process.pop(0) if self.other_process else 0)

    def _tokenize_prompts(self, prompts):
        return [[1] * len(p) for p in prompts], None, {}

    def _generate_single_turn(self, ids, images, fields, num_generations):
        assert num_generations == 1  # one answer per distinct question
        assert ids, "a generation call with no prompt at all"
        self.calls.append(list(ids))
        return [[7, 7, 7] for _ in ids], None

    def batch_decode(self, ids, skip_special_tokens=True):
        return ['<answer>[{"bbox_2d": [1, 2, 3, 4]}]</answer>'] * len(ids)


def _rows(with_reference: bool):
    chain = [{"id": "d-0", "problem": "the lamp", "reference_text": ""}]
    return [{"id": "d-1", "dialogue_id": "d", "problem": "near bbox=[5, 5, 6, 6]" if with_reference else "the cup",
             "reference_text": "bbox=[5, 5, 6, 6]" if with_reference else "",
             "reference_chain": chain if with_reference else [], "image": None} for _ in range(4)]


def test_auxiliary_pass_only_when_a_process_has_a_question_and_padded_to_the_widest(grpo):
    from regiondial_bench.training.rollouts import ReferenceResolver

    answer_references = grpo.multi_round_trainer_class()._answer_references
    stub = _StubTrainer()
    usage = answer_references(stub, ReferenceResolver(_rows(False), None), _rows(False))
    assert stub.calls == [] and usage["aux_waves"] == 0  # no reference anywhere: no generation call at all
    stub = _StubTrainer()
    resolver = ReferenceResolver(_rows(True), None)
    usage = answer_references(stub, resolver, _rows(True))
    assert len(stub.calls) == 1 and len(stub.calls[0]) == 1  # a group of 4 rows: one question
    assert usage == {"aux_waves": 1, "aux_prompt_tokens": len("the lamp"), "aux_completion_tokens": 3,
                     "aux_padding_rows": 0}
    assert resolver.resolved_rows()[0]["problem"] == "near bbox=[1, 2, 3, 4]"
    # another process has 3 questions in wave 0 and 2 in wave 1: this one pads each call to the widest
    stub = _StubTrainer(other_process=[3, 2])
    resolver = ReferenceResolver(_rows(True), None)
    usage = answer_references(stub, resolver, _rows(True))
    assert [len(c) for c in stub.calls] == [3, 2]  # its question + 2 fillers; then 2 fillers while the other finishes
    assert usage["aux_padding_rows"] == 4 and usage["aux_completion_tokens"] == 3 and usage["aux_waves"] == 2


def test_trl_private_api_matches_the_installed_trl(grpo):
    grpo.check_trl_private_api()  # the installed TRL has what multi-round rollouts call

    class Renamed:
        def _generate_and_score_completions(self, inputs):
            pass

        def _tokenize_prompts(self, prompts):
            pass

        def _generate_single_turn(self, prompt_ids, images, fields, num_generations):
            pass

    with pytest.raises(RuntimeError, match="_generate_single_turn"):
        grpo.check_trl_private_api(Renamed)


def test_seven_b_recipe_matches_the_released_settings(grpo, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    settings = grpo.load_settings(SEVEN_B, check_runtime=False)  # bf16 needs a GPU
    g = settings.grpo
    assert g["num_generations"] == 8 and g["learning_rate"] == 1e-6 and g["beta"] == 0.01
    assert g["max_completion_length"] == 2000 and g["entropy_coef"] == 0.001
    assert g["use_vllm"] and g["vllm_mode"] == "colocate"
    prompts_per_step = (
        g["per_device_train_batch_size"] * 4 * g["gradient_accumulation_steps"] // g["num_generations"]
    )
    assert prompts_per_step == 16


TWO_NODES = ROOT / "train_reference" / "configs" / "regionreasoner_7b_2x4gpu_vllm_server.yaml"
CONFIGS = ROOT / "train_reference" / "configs"


def test_seven_b_recipe_is_honest_about_parity(grpo):
    import yaml

    g = yaml.safe_load(SEVEN_B.read_text())["grpo"]
    assert g["vllm_importance_sampling_correction"] is False  # the released run has no such correction
    assert g["save_only_model"] is False  # checkpoints can be resumed


def test_two_node_recipe_is_the_released_recipe_split_over_eight_processes(grpo, monkeypatch):
    """2 nodes x 4 GPUs + a vLLM server node: 128 sequences per step, 16 prompts, server mode."""
    import yaml
    from accelerate.commands.config.config_args import ClusterConfig

    cluster = ClusterConfig.from_yaml_file(str(CONFIGS / "accelerate_zero3_2x4gpu.yaml"))  # accelerate's own check
    assert cluster.num_machines == 2 and cluster.num_processes == 8
    assert str(cluster.distributed_type).endswith("DEEPSPEED") and cluster.deepspeed_config["zero_stage"] == 3

    monkeypatch.setenv("WORLD_SIZE", str(cluster.num_processes))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(cluster.num_processes // cluster.num_machines))
    with pytest.raises(grpo.ConfigError, match="--vllm_server_host"):  # 0.0.0.0 would be each node itself
        grpo.load_settings(TWO_NODES, check_runtime=False)
    settings = grpo.load_settings(TWO_NODES, overrides={"vllm_server_host": "10.0.0.3"}, check_runtime=False)
    g = settings.grpo
    assert g["use_vllm"] and g["vllm_mode"] == "server" and g["vllm_importance_sampling_correction"] is False
    sequences = g["per_device_train_batch_size"] * cluster.num_processes * g["gradient_accumulation_steps"]
    assert sequences == 128 and sequences // g["num_generations"] == 16

    # everything but the batch split, the vLLM placement and the output folder is the 4xH100 recipe
    one = yaml.safe_load(SEVEN_B.read_text())
    two = yaml.safe_load(TWO_NODES.read_text())
    local = {"gradient_accumulation_steps", "output_dir", "vllm_mode", "vllm_tensor_parallel_size",
             "vllm_gpu_memory_utilization", "vllm_enable_sleep_mode", "vllm_max_model_length",
             "vllm_server_host", "vllm_server_port", "vllm_server_timeout"}
    assert {k: v for k, v in one["grpo"].items() if k not in local} == {
        k: v for k, v in two["grpo"].items() if k not in local
    }
    assert {k: v for k, v in one.items() if k != "grpo"} == {k: v for k, v in two.items() if k != "grpo"}


def test_command_line_overrides_any_grpo_field(grpo, tmp_path):
    overrides = grpo.grpo_overrides(["--learning_rate", "2e-6", "--save-steps", "7", "--bf16", "false"])
    assert overrides == {"learning_rate": 2e-6, "save_steps": 7, "bf16": False}
    settings = grpo.load_settings(SMOKE, overrides=overrides)
    assert settings.grpo["learning_rate"] == 2e-6 and settings.grpo["save_steps"] == 7
    with pytest.raises(grpo.ConfigError, match="did you mean --learning_rate"):
        grpo.grpo_overrides(["--learnig_rate", "1"])
    with pytest.raises(grpo.ConfigError, match="invalid float"):
        grpo.grpo_overrides(["--learning_rate", "fast"])


def test_resume_needs_a_full_checkpoint(grpo, tmp_path):
    with pytest.raises(grpo.ConfigError, match="no checkpoint-<step> folder"):
        grpo.resolve_checkpoint("latest", tmp_path)
    weights_only = tmp_path / "checkpoint-5"
    weights_only.mkdir()
    (weights_only / "trainer_state.json").write_text("{}")
    with pytest.raises(grpo.ConfigError, match="no optimizer state"):
        grpo.resolve_checkpoint("latest", tmp_path)
    (weights_only / "optimizer.pt").write_bytes(b"")
    assert grpo.resolve_checkpoint("latest", tmp_path) == str(weights_only)
    assert grpo.resolve_checkpoint(None, tmp_path) is None
    with pytest.raises(grpo.ConfigError, match="not a checkpoint folder"):
        grpo.resolve_checkpoint(str(tmp_path), tmp_path)


def test_lora_section_builds_a_peft_policy(grpo, tmp_path):
    import yaml

    raw = yaml.safe_load(SMOKE.read_text())
    raw["grpo"]["output_dir"] = str(tmp_path / "out")
    raw["lora"] = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    settings = grpo.parse_settings(raw)
    trainer = grpo.build_trainer(settings)
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    raw["lora"] = {"rank": 4}
    with pytest.raises(grpo.ConfigError, match="unknown key lora.rank"):
        grpo.parse_settings(raw)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"grpo": {"num_generations": 1}}, "set it to >= 2"),
        ({"grpo": {"bf16": True}}, "set grpo.bf16: false"),
        ({"grpo": {"use_vllm": True}}, "set grpo.use_vllm: false"),
        ({"grpo": {"num_generations": 3}}, "not a multiple of num_generations=3"),
        ({"grpo": {"learnig_rate": 1e-6}}, "did you mean 'learning_rate'"),
        ({"grpo": {"reward_weights": [1, 1, 1, 1, 1, 1]}}, "rewards.profile: paper"),
        ({"rewards": {"profile": "released", "alpha": 0.5}}, "Set profile 'paper'"),
        ({"rewards": {"profile": "pape"}}, "unknown reward profile"),
        ({"data": {"frame": "840"}}, "choose 'squash-840'"),
        ({"data": {"source": None}}, "set data.source"),
        ({"model": {"name_or_path": "Qwen/Qwen2.5-VL-7B-Instruct"}}, "exactly one of model.name_or_path"),
        ({"modle": {}}, "did you mean 'model'"),
        ({"grpo": {"resume_from_checkpoint": "latest", "save_only_model": True}}, "save_only_model: false"),
        ({"multi_round": {"enabled": True, "depth": 0}}, "multi_round.depth=0"),
        ({"multi_round": {"enabled": True, "depth": "all"}}, "or 'full'"),
        ({"multi_round": {"enabled": True, "deep": 2}}, "did you mean 'depth'"),
    ],
)
def test_bad_configs_say_what_to_change(grpo, change, message):
    import yaml

    raw = yaml.safe_load(SMOKE.read_text())
    for section, values in change.items():
        raw.setdefault(section, {}).update(values)
    with pytest.raises(grpo.ConfigError, match=message):
        grpo.parse_settings(raw)


def test_multi_round_depth_reaches_the_trainer(grpo, tmp_path):
    import yaml

    raw = yaml.safe_load(SMOKE.read_text())
    raw["grpo"]["output_dir"] = str(tmp_path / "out")
    assert grpo.parse_settings(raw).multi_round_depth == 1  # one level, as before depths existed
    raw["multi_round"] = {"enabled": True, "depth": "full"}
    assert grpo.parse_settings(raw).multi_round_depth is None
    raw["multi_round"]["depth"] = 3
    settings = grpo.parse_settings(raw)
    settings.data["cache_dir"] = str(tmp_path / "images")
    trainer = grpo.build_trainer(settings)
    assert trainer.reference_depth == 3 and type(trainer).__name__ == "MultiRoundGRPOTrainer"


def test_cli_reports_config_errors(grpo, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {tiny: true}\ndata: {source: x}\ngrpo: {output_dir: o, num_generations: 1}\n")
    assert grpo.main(["--config", str(bad)]) == 2
    assert "num_generations" in capsys.readouterr().err


@pytest.mark.slow
def test_grpo_step_benchmark_runs_on_cpu(tmp_path):
    """benchmarks/grpo_step_gpu.py's documented CPU check (a 7B-shaped model reduced in depth and width)."""
    import subprocess

    script = ROOT / "benchmarks" / "grpo_step_gpu.py"
    done = subprocess.run(
        [sys.executable, str(script), "--cpu", "--small", "--steps", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=1200, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["device"] == "cpu" and result["steps"] == 1 and result["text_layers"] == 4
