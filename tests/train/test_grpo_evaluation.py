"""Evaluation inside GRPO training: run folders that ``regiondial score`` agrees with, scores in the logs."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import SMOKE

EVALUATION = {"bench": "sample", "limit": 2, "max_new_tokens": 12, "batch_size": 8}


def _raw(tmp_path, **evaluation):
    raw = yaml.safe_load(SMOKE.read_text())
    raw["grpo"]["output_dir"] = str(tmp_path / "out")
    raw["evaluation"] = {**EVALUATION, **evaluation}
    return raw


def _settings(grpo, tmp_path, **evaluation):
    settings = grpo.parse_settings(_raw(tmp_path, **evaluation))
    settings.data["cache_dir"] = str(tmp_path / "images")
    return settings


def scored_by_the_cli(folder) -> dict:
    """``regiondial score --json FOLDER`` (it rewrites results.json), without provenance."""
    from click.testing import CliRunner

    from regiondial_bench.cli import main

    done = CliRunner().invoke(main, ["score", str(folder), "--json"])
    assert done.exit_code == 0, done.output
    out = json.loads(done.output)
    out.pop("provenance")
    return out


def written(folder) -> dict:
    out = json.loads((folder / "results.json").read_text())
    out.pop("provenance")
    return out


@pytest.mark.slow
def test_cpu_smoke_with_evaluation_writes_a_scored_run_folder_per_step(grpo, tmp_path):
    settings = _settings(grpo, tmp_path, steps=1)
    trainer = grpo.build_trainer(settings)
    trainer.train()
    evaluations = settings.output_dir / "evaluations"
    assert sorted(p.name for p in evaluations.iterdir()) == ["step-1", "step-2", "summary.jsonl"]
    summary = [json.loads(line) for line in (evaluations / "summary.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in summary] == [1, 2]  # the final step is not evaluated twice
    for step in (1, 2):
        folder = evaluations / f"step-{step}"
        results = written(folder)
        assert results == scored_by_the_cli(folder)  # the same runner and metrics as the leaderboard's
        assert results["overall"]["n"] == 8  # the first 2 dialogues of the sample bench: 8 turns
        run = json.loads((folder / "run.json").read_text())
        assert run["adapter"] == "hf" and run["reference_mode"] == "predicted" and run["limit"] == 2
        assert f"policy at step {step}" in run["adapter_options"]["model"]
        # the scores reached the trainer's logger (and so wandb / trainer_state.json)
        logged = next(h for h in trainer.state.log_history if h["step"] == step and "regiondial/AP50/all" in h)
        rows = {row["round"]: row for row in [*results["rounds"], results["overall"]]}
        assert logged["regiondial/AP50/all"] == rows["all"]["ap50"]
        assert logged["regiondial/AP50/R1"] == rows["1"]["ap50"] and logged["regiondial/AP50/R2"] == rows["2"]["ap50"]
        # ... without swallowing the step's own training log line
        assert any(h["step"] == step and "reward" in h for h in trainer.state.log_history), step
    assert trainer.model.training  # evaluation handed the policy back in training mode
    best = grpo.best_evaluation(settings.output_dir)
    assert best["step"] in (1, 2) and best["ap50"] == max(entry["ap50"] for entry in summary)


@pytest.mark.slow
def test_evaluation_with_lora_wraps_the_live_policy(grpo, tmp_path, monkeypatch):
    from regiondial_bench.adapters.hf import HFAdapter

    raw = _raw(tmp_path)
    raw["lora"] = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    settings = grpo.parse_settings(raw)
    settings.data["cache_dir"] = str(tmp_path / "images")
    trainer = grpo.build_trainer(settings)
    callback = next(c for c in trainer.callback_handler.callbacks if type(c).__name__ == "RegionDialEvaluation")
    wrapped = []
    original = HFAdapter.from_components.__func__

    def spy(cls, model, processor, **options):
        wrapped.append(model)
        return original(cls, model, processor, **options)

    monkeypatch.setattr(HFAdapter, "from_components", classmethod(spy))
    trainer.model.train()
    results = callback.evaluate(0)
    assert wrapped == [trainer.model] and hasattr(trainer.model, "peft_config")  # the LoRA policy itself
    assert trainer.model.training
    folder = settings.output_dir / "evaluations" / "step-0"
    assert results.overall.n == 8 and written(folder) == scored_by_the_cli(folder)
    assert callback.evaluate(0) is results  # asked again for the same step: not run again


def test_logged_scores_name_every_round(grpo):
    from regiondial_bench.schema import Results

    results = Results.model_validate({
        "provenance": {"bench_name": "b", "bench_hash": "h", "adapter": "hf", "reference_mode": "predicted",
                       "package_version": "0"},
        "rounds": [{"round": "1", "n": 2, "ap50": 50.0, "ap50_top1": 50.0, "mean_iou": 0.4, "giou": 30.0},
                   {"round": "2", "n": 1, "ap50": 0.0, "ap50_top1": 0.0, "mean_iou": 0.1, "giou": None}],
        "buckets": [{"round": "8+", "n": 0, "ap50": None, "ap50_top1": None, "mean_iou": None}],
        "overall": {"round": "all", "n": 3, "ap50": 33.3, "ap50_top1": 33.3, "mean_iou": 0.3, "giou": 20.0},
    })
    assert grpo.scores_to_log(results) == {"regiondial/AP50/R1": 50.0, "regiondial/gIoU/R1": 30.0,
                                      "regiondial/AP50/R2": 0.0, "regiondial/AP50/all": 33.3,
                                      "regiondial/gIoU/all": 20.0}


@pytest.mark.parametrize(
    ("evaluation", "message"),
    [
        ({"bench": ""}, "set evaluation.bench"),
        ({"benchh": "sample"}, "did you mean 'bench'"),
        ({"steps": 0}, "evaluation.steps=0"),
        ({"limit": "2"}, "evaluation.limit='2'"),
        ({"bootstrap": -1}, "evaluation.bootstrap=-1"),
        ({"batch_size": 0}, "evaluation.batch_size=0"),
        ({"at_end": "yes"}, "evaluation.at_end='yes'"),
        ({"reference_mode": "oracle"}, "reference_mode"),
        ({"preset": "no-such-preset"}, "evaluation.preset"),
    ],
)
def test_bad_evaluation_sections_say_what_to_change(grpo, tmp_path, evaluation, message):
    raw = _raw(tmp_path)
    raw["evaluation"] = {**raw["evaluation"], **evaluation}
    with pytest.raises(grpo.ConfigError, match=message):
        grpo.parse_settings(raw)


def test_a_missing_evaluation_bench_fails_before_the_model_loads(grpo, tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(_raw(tmp_path, bench=str(tmp_path / "nowhere"))))
    assert grpo.main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "evaluation.bench" in err and "nowhere" in err
    assert not (tmp_path / "out" / "tiny-base").exists()
