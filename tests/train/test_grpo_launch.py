"""Launching the trainer as users do: torchrun with several CPU processes, accelerate, the vLLM server recipe."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, SCRIPT, SMOKE

README = ROOT / "train_reference" / "README.md"
CONSTRAINTS = ROOT / "train_reference" / "constraints-gpu.txt"


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.mark.slow
def test_torchrun_two_cpu_processes_on_a_fresh_output_folder(tmp_path):
    """Two ranks, a fresh output folder (the tiny model is built once, by the main process),
    depth-2 multi-round rollouts and a sharded evaluation merged into one run folder."""
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not on PATH")
    raw = yaml.safe_load(SMOKE.read_text())
    raw["grpo"].update(output_dir=str(tmp_path / "out"), max_steps=1)
    raw["data"]["cache_dir"] = str(tmp_path / "images")
    raw["multi_round"] = {"enabled": True, "depth": 2}
    raw["evaluation"] = {"bench": "sample", "limit": 3, "max_new_tokens": 12, "batch_size": 8}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    done = subprocess.run([torchrun, "--nproc-per-node", "2", "--master-port", "29731", str(SCRIPT),
                           "--config", str(config)], capture_output=True, text=True, timeout=900, env=_env())
    assert done.returncode == 0, done.stderr[-4000:]
    out = tmp_path / "out"
    assert json.loads((out / "regiondial_training.json").read_text())["global_step"] == 1
    evaluation = out / "evaluations" / "step-1"
    assert sorted(p.name for p in (out / "evaluations" / "step-1.shards").iterdir()) == ["shard-0-of-2",
                                                                                         "shard-1-of-2"]
    results = json.loads((evaluation / "results.json").read_text())
    assert results["overall"]["n"] == 13  # the first 3 sample dialogues, both shards merged
    from test_grpo_evaluation import scored_by_the_cli

    results.pop("provenance")
    assert results == scored_by_the_cli(evaluation)
    # both ranks' rows are in the multi-round log (gathered), one line each
    records = [json.loads(line) for line in (out / "multi_round_references.jsonl").read_text().splitlines()]
    assert len(records) == 8 and {len(r["levels"]) for r in records} <= {0, 1, 2}


@pytest.mark.slow
def test_accelerate_launch_that_starts_fewer_processes_than_asked_warns(tmp_path):
    accelerate = shutil.which("accelerate")
    if accelerate is None:
        pytest.skip("accelerate is not on PATH")
    bad = tmp_path / "bad.yaml"  # a config error: the script stops right after the launch check
    bad.write_text("model: {tiny: true}\ndata: {source: x}\ngrpo: {output_dir: o, num_generations: 1}\n")
    done = subprocess.run([accelerate, "launch", "--num_processes", "2", "--cpu", str(SCRIPT), "--config", str(bad)],
                          capture_output=True, text=True, timeout=600, env=_env(), cwd=tmp_path)
    assert done.returncode != 0 and "grpo.num_generations=1" in done.stderr, done.stderr[-3000:]
    assert "started only this one" in done.stderr and "torchrun --nproc-per-node" in done.stderr
    done = subprocess.run([sys.executable, str(SCRIPT), "--config", str(bad)],
                          capture_output=True, text=True, timeout=600, env=_env(), cwd=tmp_path)
    assert done.returncode == 2 and "started only this one" not in done.stderr


def test_the_vllm_server_line_is_what_trl_would_run():
    """The 2-node recipe starts ``vllm serve`` itself, with the flags TRL 1.16's deprecated
    ``trl vllm-serve`` adds (weight transfer, processed logprobs, ...)."""
    from trl.scripts.vllm_serve import ScriptArguments, build_command

    line = next(ln for ln in README.read_text().splitlines() if ln.startswith("VLLM_SERVER_DEV_MODE=1 vllm serve"))
    words = shlex.split(line)
    assert words[0] == "VLLM_SERVER_DEV_MODE=1" and words[1:3] == ["vllm", "serve"]
    recipe = yaml.safe_load((ROOT / "train_reference/configs/regionreasoner_7b_2x4gpu_vllm_server.yaml").read_text())
    trl_line = build_command(ScriptArguments(model=words[3], tensor_parallel_size=2, data_parallel_size=2,
                                             max_model_len=3300, port=recipe["grpo"]["vllm_server_port"]))
    expected = trl_line[trl_line.index("serve"):]
    # TRL adds --enable-scale-out only when vLLM >= 0.30 is installed here (it is not on CPU machines)
    assert [w for w in words[2:] if w != "--enable-scale-out"] == expected
    assert "--enable-scale-out" in words  # the pinned vLLM (constraints-gpu.txt) is >= 0.30
    assert not any(ln.lstrip().startswith("trl vllm-serve") for ln in README.read_text().splitlines())


def test_gpu_constraints_pin_a_triple_the_installed_trl_accepts():
    from packaging.requirements import Requirement
    from packaging.version import Version

    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", line
            pins[requirement.name] = Version(spec.version)
    assert {"trl", "transformers", "vllm"} <= set(pins)
    import trl

    assert pins["trl"] == Version(trl.__version__)  # the TRL the CPU suite tests
    assert Version("0.22.0") <= pins["vllm"] <= Version("0.31.0")  # TRL 1.16's supported vLLM range
    assert pins["vllm"] >= Version("0.30.0")  # the server recipe's --enable-scale-out
    assert Version("5.17") <= pins["transformers"] < Version("6")  # pyproject's train extra
    assert Path(README).read_text().count("constraints-gpu.txt") >= 1


@pytest.mark.parametrize("main_process", [True, False], ids=["main", "other-rank"])
def test_only_the_main_process_builds_the_tiny_model(grpo, tmp_path, monkeypatch, main_process):
    """Every rank building ``tiny-base`` rewrote it while another rank was loading it; now the main
    process builds it first and the others only wait for it (a race, so checked directly)."""
    import contextlib

    import accelerate

    import regiondial_bench.testing as testing

    events: list[str] = []

    class State:
        is_main_process = main_process

        @contextlib.contextmanager
        def main_process_first(self):
            events.append("enter")
            yield
            events.append("exit")

    monkeypatch.setattr(accelerate, "PartialState", State)
    monkeypatch.setattr(testing, "build_tiny_qwen2_5_vl", lambda folder, seed=0: events.append(f"build {folder}"))
    settings = grpo.load_settings(SMOKE, output_dir=str(tmp_path / "out"))
    path = grpo.prepare_model_path(settings)
    assert path == str(tmp_path / "out" / "tiny-base")
    expected = ["enter", f"build {path}", "exit"] if main_process else ["enter", "exit"]
    assert events == expected
