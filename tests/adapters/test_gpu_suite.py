"""benchmarks/gpu_suite.sh's CPU path, its part isolation, and the direct GRPO step's pieces."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def suite():
    return _load("gpu_suite")


@pytest.fixture(scope="module")
def step():
    return _load("grpo_step_gpu")


@pytest.mark.slow
def test_gpu_suite_sh_runs_every_part_on_cpu(tmp_path):
    """The documented one command at tiny shapes (parts in one process here: the next test isolates them)."""
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_suite.sh"), "--tiny", "--in-process"],
                          capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    report = json.loads((tmp_path / "gpu_suite.json").read_text())
    parts = report["parts"]
    assert {name: part["status"] for name, part in parts.items()} == {"generation": "ok", "sam2": "ok", "grpo": "ok"}

    generation = parts["generation"]
    assert generation["loop"]["rounds"] == 2
    assert [(r["batch_size"], r["rounds"]) for r in generation["runner"]] == [(1, 2), (4, 8)]  # 2 turns each
    constrained = generation["constrained"]
    assert constrained["constrained"]["parse_share"] == 1.0  # the grammar held every answer
    assert constrained["free"]["rounds"] == constrained["constrained"]["rounds"] == 2

    assert parts["sam2"]["masks"] == 4 and parts["sam2"]["masks_per_s"] > 0

    grpo = parts["grpo"]
    assert grpo["engine"] == "direct" and grpo["shape"] == "7b-mini" and grpo["lora"]["r"] == 64
    assert grpo["gradient_checkpointing"] is True  # as on the GPU
    assert list(grpo["phases_s"]) == ["generation", "rewards", "old_logps", "ref_logps", "update", "weight_sync"]
    assert all(grpo["phases_s"][p] > 0 for p in ("generation", "old_logps", "ref_logps", "update", "weight_sync"))
    assert grpo["sequences_per_step"] == 2 and grpo["completion_tokens_per_step"] == 4  # forced length 2
    assert grpo["step_s"] == pytest.approx(sum(grpo["phases_s"].values()), abs=0.01)

    table = (tmp_path / "gpu_suite.md").read_text()
    assert table in done.stdout
    for text in ("upstream loop, batch 1", "runner, batch 4", "constrained decoding", "SAM2 tiny", "GRPO step"):
        assert text in table


def test_parts_run_in_their_own_processes_within_their_time_limits(suite, tmp_path):
    out = tmp_path / "suite.json"
    assert suite.main(["--tiny", "--parts", "sam2", "--json", str(out)]) == 0
    part = json.loads(out.read_text())["parts"]["sam2"]
    assert part["status"] == "ok" and part["masks"] == 4  # the child's figures, read back by the driver

    code = suite.main(["--tiny", "--parts", "sam2", "--timeout-scale", "0.0001", "--json", str(out)])
    assert code == 1
    part = json.loads(out.read_text())["parts"]["sam2"]
    assert part["status"] == "timed out" and "limit" in part["error"]


def test_a_failing_part_is_recorded_with_its_error(suite, monkeypatch):
    def broken(settings, device, work):
        raise RuntimeError("no such kernel")

    monkeypatch.setitem(suite.PART_FUNCTIONS, "sam2", broken)
    result = suite.run_part("sam2", suite.TINY, "cpu")
    assert result["status"] == "failed" and result["error"] == "RuntimeError: no such kernel"


def test_the_gpu_sizes_are_the_issues(suite):
    """Batch 1 vs 16 vs 64 at 840x840 on the 7B shape; SAM2 Hiera-L; the GRPO step at 7B; under 8 minutes."""
    gpu = suite.GPU
    assert gpu.shape == "7b" and gpu.image_size == 840 and gpu.sam2_shape == "large"
    assert [r.batch_size for r in gpu.runner] == [1, 16, 64]
    assert max(r.dialogues for r in gpu.runner) <= 40 * gpu.repeat  # the sample bench has 40 dialogues
    assert gpu.runner[-1].dialogues >= 64  # batch 64 fills
    assert "7b" in gpu.grpo_args and "--cpu" not in gpu.grpo_args
    assert sum(gpu.timeouts.values()) < 8 * 60


# ------------------------------------------------------------------- the direct GRPO step's pieces


def test_grpo_loss_is_the_clipped_surrogate_with_k3_kl(step):
    import torch

    config = step.StepConfig(beta=0.0, epsilon=0.2)
    mask = torch.ones(2, 3)
    old = torch.zeros(2, 3)
    advantages = torch.tensor([1.0, -1.0])
    # ratio 1: the loss is minus the token-mean advantage
    assert step.grpo_loss(torch.zeros(2, 3), old, old, advantages, mask, config).item() == pytest.approx(0.0)
    one_row = torch.tensor([[1.0, 1, 1], [0, 0, 0]])
    assert step.grpo_loss(old, old, old, advantages, one_row, config).item() == pytest.approx(-1.0)
    # ratio e^1 > 1.2 with a positive advantage is clipped at 1.2; with a negative one it is not
    logps = torch.ones(2, 3)
    loss = step.grpo_loss(logps, old, old, advantages, mask, config).item()
    assert loss == pytest.approx((-1.2 + torch.e) / 2, rel=1e-5)
    # k3 KL: exp(ref - logp) - (ref - logp) - 1, weighted by beta
    with_kl = step.grpo_loss(logps, old, old, advantages, mask, step.StepConfig(beta=0.5, epsilon=0.2)).item()
    assert with_kl - loss == pytest.approx(0.5 * math.exp(-1), rel=1e-5)


def test_group_advantages_normalise_within_each_prompt(step):
    adv = step.group_advantages([1.0, 3.0, 10.0, 10.0], generations=2)
    assert adv[:2].tolist() == pytest.approx([-0.7071, 0.7071], abs=1e-3)
    assert adv[2:].tolist() == [0.0, 0.0]  # equal rewards: no signal, no division by zero


def test_sequence_rows_slices_pixel_values_by_each_images_patches(step):
    import torch

    grid = torch.tensor([[1, 2, 2], [1, 4, 2], [1, 2, 4]])  # 4, 8 and 8 patches
    batch = {"input_ids": torch.arange(3)[:, None], "attention_mask": torch.ones(3, 1),
             "pixel_values": torch.arange(20)[:, None], "image_grid_thw": grid}
    rows = step.sequence_rows(batch, slice(1, 3))
    assert rows["pixel_values"][:, 0].tolist() == list(range(4, 20))
    assert rows["image_grid_thw"].tolist() == grid[1:].tolist() and rows["input_ids"].tolist() == [[1], [2]]


def test_trl_profile_splits_a_step_into_phases(step):
    """Log-prob passes inside the rollout (old/ref) count apart from the loss's own; the rest is the update."""
    profile = step.TRLProfile()
    profile.events = [
        ("_prepare_inputs", 0.0, 5.0), ("generate", 0.5, 3.0), ("_calculate_rewards", 3.0, 3.2),
        ("_get_per_token_logps_and_entropies", 3.2, 4.0), ("_get_per_token_logps_and_entropies", 4.0, 4.5),
        ("compute_loss", 5.0, 7.0), ("_get_per_token_logps_and_entropies", 5.1, 6.0),
        ("generate", 20.0, 21.0),  # another step's
    ]
    phases = profile.phases(0.0, 10.0)
    assert phases["generation"] == pytest.approx(2.5)
    assert phases["old_and_ref_logps"] == pytest.approx(1.3)
    assert phases["rewards"] == pytest.approx(0.2)
    assert phases["update"] == pytest.approx(5.0)
    assert phases["other_rollout"] == pytest.approx(1.0)  # 5.0 - 2.5 - 1.3 - 0.2
    assert phases["weight_sync"] == 0.0


def test_a_part_killed_at_its_limit_keeps_what_it_had_measured(suite, tmp_path, monkeypatch):
    loop = {"rounds": 8, "seconds": 16.0, "rounds_per_s": 0.5, "tokens_per_s": 32.0}

    def killed_after_the_loop(command, timeout, check):
        partial = {"shape": "7b", "image_size": 840, "new_tokens": 64, "prompt_tokens": 1500, "loop": loop}
        suite.PARTIAL["path"] = Path(command[command.index("--part-json") + 1])
        suite.save_partial(partial)
        raise subprocess.TimeoutExpired(command, timeout)

    monkeypatch.setattr(suite.subprocess, "run", killed_after_the_loop)
    monkeypatch.setattr(suite, "PARTIAL", {})
    part = suite.run_part_isolated("generation", 240, [], tmp_path)
    assert part["status"] == "timed out" and part["loop"] == loop
    report = {"environment": {"device": "GPU", "torch": "2", "transformers": "5"}, "settings": "GPU",
              "date": "today", "seconds": 240, "parts": {"generation": part}}
    text = suite.table(report)
    assert "| generation | timed out |" in text and "0.5 rounds/s" in text
