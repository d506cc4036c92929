"""GRPO training on a tiny random Qwen2.5-VL whose text is scripted: multi-round substitution,
reward-driven updates, and kill-and-resume. Every run is 2-3 steps of 4 completions on CPU."""

from __future__ import annotations

import contextlib
import json

import pytest
from conftest import BAD, GOOD, SMOKE, script_policy, spy_rewards

pytestmark = pytest.mark.slow

SCRIPTED_BOX = [7, 8, 97, 98]  # the policy's answer to every earlier turn; no gold box of the sample bench
SCRIPTED_REFERENCE = f'<answer>[{{"bbox_2d": {SCRIPTED_BOX}, "point_2d": [50, 50]}}]</answer>'


def _settings(grpo, tmp_path, out="out", **grpo_fields):
    settings = grpo.load_settings(SMOKE, output_dir=str(tmp_path / out))
    settings.data["cache_dir"] = str(tmp_path / "images")  # squash the bench images once per test
    settings.grpo.update(grpo_fields)
    return settings


def _logs_callback(captured):
    from transformers import TrainerCallback

    class Capture(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            captured.append(dict(logs or {}))

    return Capture()


def test_multi_round_substitution_survives_several_steps(grpo, tmp_path, monkeypatch):
    """The policy's own box (not gold) reaches TRL's prompts, its logs and the rewards' problem."""
    from regiondial_bench.training import data as training_data

    original = training_data.load_training_dataset

    def referencing_rows_only(*args, **kwargs):
        kwargs.pop("limit", None)
        dataset = original(*args, **kwargs)
        return dataset.filter(lambda row: bool(row["reference_problem"])).select(range(6))

    monkeypatch.setattr(training_data, "load_training_dataset", referencing_rows_only)
    seen = spy_rewards(monkeypatch)
    settings = _settings(grpo, tmp_path, max_steps=3, log_completions=True)
    settings.multi_round = True
    trainer = grpo.build_trainer(settings)
    calls = script_policy(
        trainer.model,
        trainer.processing_class.tokenizer,
        lambda i, greedy: SCRIPTED_REFERENCE if greedy else GOOD,
    )
    trainer.train()

    assert trainer.state.global_step == 3 and len(seen) == 3
    predicted = "bbox=" + ", ".join(str(v) for v in SCRIPTED_BOX).join("[]")
    assert sum(c["greedy"] for c in calls) == 3  # one reference call per step, then the group
    for step in seen:
        for problem, prompt in zip(step["problem"], step["prompt"], strict=True):
            assert predicted in problem, problem  # the rewards score the question actually asked
            assert predicted.lower() in prompt  # ... which is the prompt the policy was given
    # the prompts TRL logged (and would print / send to wandb) are the substituted ones
    logged = [json.dumps(p, default=str) for p in trainer._logs["prompt"]]
    assert logged and all(predicted.lower() in p for p in logged)
    records = [json.loads(line) for line in (settings.output_dir / "multi_round_references.jsonl").open()]
    assert len(records) == 12 and {r["source"] for r in records} == {"predicted"}
    assert all(r["gold"] and r["gold"] != r["predicted"] == predicted for r in records)
    assert sorted({r["step"] for r in records}) == [0, 1, 2]


def _rows_where(monkeypatch, keep, count):
    """Train on the first ``count`` sample-bench rows for which ``keep(row)`` holds."""
    from regiondial_bench.training import data as training_data

    original = training_data.load_training_dataset

    def selected(*args, **kwargs):
        kwargs.pop("limit", None)
        return original(*args, **kwargs).filter(keep).select(range(count))

    monkeypatch.setattr(training_data, "load_training_dataset", selected)


def test_depth_two_answers_the_referenced_turn_with_a_predicted_reference(grpo, tmp_path, monkeypatch):
    """Depth 2 on chained rows: the referenced turn is itself asked with the policy's own box, each
    auxiliary wave asks one question for the whole group (not one per row), and the jsonl shows it."""
    _rows_where(monkeypatch, lambda row: len(row["reference_chain"]) >= 2, 2)
    logs: list[dict] = []
    settings = _settings(grpo, tmp_path, max_steps=2)
    settings.multi_round, settings.multi_round_depth = True, 2
    trainer = grpo.build_trainer(settings, callbacks=[_logs_callback(logs)])
    calls = script_policy(
        trainer.model, trainer.processing_class.tokenizer, lambda i, greedy: SCRIPTED_REFERENCE if greedy else GOOD
    )
    trainer.train()

    predicted = "bbox=" + ", ".join(str(v) for v in SCRIPTED_BOX).join("[]")
    greedy = [c for c in calls if c["greedy"]]
    # 2 steps x 2 waves, each a single question although the group has 4 rows
    assert [len(c["prompts"]) for c in greedy] == [1, 1, 1, 1]
    # wave 2 of each step asks the referenced turn with the box the policy gave in wave 1
    assert predicted.lower() not in greedy[0]["prompts"][0] and predicted.lower() in greedy[1]["prompts"][0]
    records = [json.loads(line) for line in (settings.output_dir / "multi_round_references.jsonl").open()]
    assert len(records) == 8 and all(r["source"] == "predicted" and predicted in r["problem"] for r in records)
    for record in records:
        nearest, deeper = record["levels"]
        assert nearest["depth"] == 1 and nearest["reference"] == "predicted"  # asked with a predicted box
        assert predicted in nearest["question"] and deeper["box"] == SCRIPTED_BOX
    steps = [entry for entry in logs if "multi_round/turns_answered" in entry]
    assert [entry["multi_round/turns_answered"] for entry in steps] == [2.0, 2.0]
    assert all(entry["multi_round/substituted_depth_1"] == 1 and entry["multi_round/substituted_depth_2"] == 1
               and entry["multi_round/aux_completion_tokens"] > 0 for entry in steps)


@pytest.mark.parametrize("varied", [True, False], ids=["rewards-vary", "constant-reward-control"])
def test_rewards_drive_the_update(grpo, tmp_path, varied):
    """With no KL and no entropy bonus only the advantages move the weights: a varied group moves
    them, a group with one constant reward (every advantage 0) leaves them bit-identical."""
    import torch

    logs: list[dict] = []
    settings = _settings(grpo, tmp_path, max_steps=2, beta=0.0, entropy_coef=0.0)
    trainer = grpo.build_trainer(settings, callbacks=[_logs_callback(logs)])
    script_policy(
        trainer.model, trainer.processing_class.tokenizer, lambda i, greedy: GOOD if varied and i % 2 else BAD
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p.detach())]
    steps = [entry for entry in logs if "reward_std" in entry]
    assert trainer.state.global_step == 2 and len(steps) == 2
    if varied:
        assert all(entry["reward_std"] > 0 for entry in steps)
        assert changed, "rewards varied within every group, yet no parameter changed"
    else:
        assert all(entry["reward_std"] == 0 for entry in steps)
        assert not changed, f"constant rewards (zero advantages) changed {changed[:3]}"


def test_kill_and_resume_reaches_the_same_step_with_the_same_data(grpo, tmp_path, monkeypatch):
    """A run killed after its step-1 checkpoint (mid step 2) resumes to step 2 on the same batches."""
    import torch
    from transformers import TrainerCallback

    def run(out, *, kill_at=None, resume=None):
        seen = spy_rewards(monkeypatch)
        settings = _settings(
            grpo, tmp_path, out, max_steps=2, save_strategy="steps", save_steps=1, save_only_model=False
        )

        class Kill(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == kill_at:
                    raise KeyboardInterrupt(f"killed at step {kill_at}")

        trainer = grpo.build_trainer(settings, callbacks=[Kill()])
        script_policy(
            trainer.model, trainer.processing_class.tokenizer, lambda i, greedy: GOOD if i % 2 else BAD
        )
        with contextlib.suppress(KeyboardInterrupt):  # the "kill"
            grpo.train(trainer, grpo.resolve_checkpoint(resume, settings.output_dir))
        return trainer, {s["step"]: s["id"] for s in seen}

    straight, order = run("straight")
    assert straight.state.global_step == 2 and len(order) == 2

    killed, first_part = run("killed", kill_at=2)
    assert killed.state.global_step == 2
    checkpoint = tmp_path / "killed" / "checkpoint-1"
    assert (checkpoint / "optimizer.pt").is_file() and (checkpoint / "scheduler.pt").is_file()
    # step 2's checkpoint was never written: the kill came before it
    assert not (tmp_path / "killed" / "checkpoint-2").exists()

    resumed, second_part = run("killed", resume="latest")
    assert resumed.state.global_step == 2
    assert sorted(second_part) == [1]  # it resumed after step 1 rather than starting over
    assert {0: first_part[0], **second_part} == order  # same batches, step for step
    # the optimizer and scheduler state came back too: the weights end where the straight run's did
    final = dict(straight.model.named_parameters())
    for name, param in resumed.model.named_parameters():
        assert torch.allclose(param, final[name], atol=1e-6, rtol=0), name
