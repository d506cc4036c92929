"""The CLI on the bundled sample bench."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner

from regiondial_bench.cli import main


def test_evaluate_sample_and_rescore(tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(main, ["evaluate", "--model", "reference-copy", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "R1" in result.output and "Avg" in result.output and "AP50" in result.output
    results = json.loads((out / "results.json").read_text())
    assert results["provenance"]["adapter"] == "reference-copy"
    assert results["overall"]["n"] == sum(r["n"] for r in results["rounds"])
    rescored = runner.invoke(main, ["score", str(out / "predictions.jsonl"), "--json"])
    assert rescored.exit_code == 0, rescored.output
    assert json.loads(rescored.output)["rounds"] == results["rounds"]


def test_oracle_with_masks_scores_100_on_the_sample(tmp_path):
    result = CliRunner().invoke(main, ["evaluate", "--model", "oracle", "--out", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    overall = json.loads((tmp_path / "results.json").read_text())["overall"]
    assert overall["ap50"] == 100.0 and overall["giou"] == 100.0


def test_bench_info_json_and_errors(upstream_file, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["bench", "info", str(upstream_file("refcocoplus")), "--json"])
    stats = json.loads(result.output)
    assert (stats["dialogues"], stats["turns"]) == (715, 2289)
    assert runner.invoke(main, ["bench", "validate", str(upstream_file("refcocog"))]).exit_code == 0
    missing = runner.invoke(main, ["evaluate", "--model", "oracle", "--bench", str(tmp_path / "nope")])
    assert missing.exit_code != 0 and "no bench at" in missing.output
    unknown = runner.invoke(main, ["evaluate", "--model", "orcale"])
    assert unknown.exit_code != 0 and "Did you mean 'oracle'" in unknown.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("adapter: oracle\nbatch_sise: 3\n")
    typo = runner.invoke(main, ["evaluate", "--config", str(bad)])
    assert typo.exit_code != 0 and "batch_sise" in typo.output


def test_rescoring_a_question_file_run_needs_no_images(tmp_path):
    """Where the images are is not part of the bench hash: re-scoring works with or without them."""
    from PIL import Image

    questions = [{"image_id": 7, "conversational_turns": [{"question": "Find a.", "bboxes": [[1, 1, 20, 20]]}]}]
    (tmp_path / "q.json").write_text(json.dumps(questions))
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (32, 24)).save(tmp_path / "imgs" / "7.jpg")
    runner, out = CliRunner(), tmp_path / "run"
    result = runner.invoke(main, ["evaluate", "--model", "whole-image", "--bench", str(tmp_path / "q.json"),
                                  "--images", str(tmp_path / "imgs"), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    without = runner.invoke(main, ["score", str(out), "--json"])
    assert without.exit_code == 0, without.output
    with_images = runner.invoke(main, ["score", str(out), "--images", str(tmp_path / "imgs"), "--json"])
    assert with_images.exit_code == 0, with_images.output
    assert json.loads(without.output)["rounds"] == json.loads(with_images.output)["rounds"]


# ---------------------------------------------------------------- adapter options, resume, fail fast


def test_adapter_options_on_the_command_line(tmp_path):
    runner, out = CliRunner(), tmp_path / "run"
    ok = runner.invoke(main, ["evaluate", "--model", "noisy-oracle", "-o", "error_rate=0.5", "-o", "seed=3",
                              "--option", "round_drift=0", "--out", str(out), "--no-progress"])
    assert ok.exit_code == 0, ok.output
    spec = json.loads((out / "run.json").read_text())
    assert spec["adapter_options"] == {"error_rate": 0.5, "seed": 3, "round_drift": 0}
    typo = runner.invoke(main, ["evaluate", "--model", "noisy-oracle", "-o", "eror_rate=0.5", "--no-progress",
                                "--out", str(tmp_path / "typo")])
    assert typo.exit_code == 2 and "did you mean 'error_rate'" in typo.output
    assert "it accepts: error_rate, wrong_reference_error_rate" in typo.output and "TypeError" not in typo.output
    assert not (tmp_path / "typo").exists()  # refused before the run folder was made
    tokens = runner.invoke(main, ["evaluate", "--model", "oracle", "--max-new-tokens", "64", "--no-progress",
                                  "--out", str(tmp_path / "tok")])
    assert tokens.exit_code == 2 and "no option 'max_new_tokens'" in tokens.output
    for bad in ("noequals", "9key=1", "error_rate=.nan"):
        result = runner.invoke(main, ["evaluate", "--model", "noisy-oracle", "-o", bad, "--no-progress"])
        assert result.exit_code == 2 and "-o" in result.output, bad
    preset = runner.invoke(main, ["evaluate", "--model", "hf", "--preset", "regionreasonr", "--no-progress"])
    assert preset.exit_code == 2 and "Did you mean 'regionreasoner-7b'" in preset.output
    flags = runner.invoke(main, ["evaluate", "--model", "oracle", "--batch-size", "0", "--no-progress"])
    assert flags.exit_code == 2 and "batch_size: Input should be greater than or equal to 1" in flags.output
    assert len([line for line in flags.output.splitlines() if "batch_size" in line]) == 1  # one line


def test_option_values_are_yaml_scalars():
    from regiondial_bench.cli.evaluate import parse_option_pairs

    assert parse_option_pairs(("a=8", "b=0.5", "c=true", "d=null", "e=text", "f=[1, 2]", "g=x=y")) == {
        "a": 8, "b": 0.5, "c": True, "d": None, "e": "text", "f": "[1, 2]", "g": "x=y"}


def test_other_backend_drops_options_it_does_not_take(tmp_path):
    config = tmp_path / "hf.yaml"
    config.write_text("adapter: hf\nadapter_options:\n  preset: regionreasoner-7b\n  model: lmsdss/RegionReasoner-7B\n"
                      "  dtype: bfloat16\n  reference_frame: model\nbatch_size: 8\n")
    result = CliRunner().invoke(main, ["evaluate", "--config", str(config), "--model", "openai",
                                       "-o", "base_url=http://127.0.0.1:9/v1", "-o", "max_retries=0", "--limit", "1",
                                       "--out", str(tmp_path / "run"), "--no-progress"])
    # nothing listens there: the adapter's server check fails the run fast, after run.json is written
    assert result.exit_code == 1 and "cannot reach the OpenAI-compatible server" in result.output, result.output
    assert "dropped: dtype" in result.output
    options = json.loads((tmp_path / "run" / "run.json").read_text())["adapter_options"]
    assert options["preset"] == "regionreasoner-7b" and "dtype" not in options
    assert options["reference_frame"] == "model" and options["base_url"] == "http://127.0.0.1:9/v1"


def test_resume_reads_the_run_and_ctrl_c_prints_the_command(tmp_path, monkeypatch):
    import shlex

    from regiondial_bench.run.runner import Runner

    runner, out = CliRunner(), tmp_path / "my run"
    calls = {"n": 0}
    original = Runner._answer_batch

    def interrupt_on_third(self, requests):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, requests)

    monkeypatch.setattr(Runner, "_answer_batch", interrupt_on_third)
    args = ["evaluate", "--model", "noisy-oracle", "-o", "seed=4", "--reference-mode", "gold", "--batch-size", "10",
            "--out", str(out), "--no-progress"]
    stopped = runner.invoke(main, args)
    assert stopped.exit_code == 130, stopped.output
    assert "20 turns are saved" in stopped.output
    command = stopped.output.strip().splitlines()[-1].strip()
    assert command == shlex.join(["regiondial", "evaluate", "--out", str(out), "--resume"])
    monkeypatch.setattr(Runner, "_answer_batch", original)
    resumed = runner.invoke(main, [*shlex.split(command)[1:], "--no-progress"])
    assert resumed.exit_code == 0, resumed.output
    assert "noisy-oracle (gold references)" in resumed.output and "settings from run.json" in resumed.output
    spec = json.loads((out / "run.json").read_text())
    assert spec["adapter_options"] == {"seed": 4} and spec["reference_mode"] == "gold"
    fresh = tmp_path / "fresh"
    assert runner.invoke(main, [*args[:-3], "--out", str(fresh), "--no-progress"]).exit_code == 0
    assert json.loads((out / "results.json").read_text())["rounds"] == json.loads(
        (fresh / "results.json").read_text())["rounds"]


def test_unreachable_hub_fails_in_seconds_with_one_line(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:  # a port that was free a moment ago: closed, nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HUB_OFFLINE": "0",
           "HF_HUB_CACHE": str(tmp_path / "hub-cache")}
    cases = [
        ["--model", "hf", "--preset", "qwen2.5-vl-7b", "--model-path", "org/no-such-model"],
        ["--model", "oracle", "--bench", "hf:org/no-such-bench"],
        ["--model", "oracle", "--masks", "sam2"],
    ]
    for case in cases:
        # a hang or a library's retry loop takes minutes and runs into the subprocess timeout
        proc = subprocess.run([sys.executable, "-m", "regiondial_bench.cli", "evaluate", *case, "--no-progress",
                               "--out", str(tmp_path / "run")], capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "cannot reach the Hugging Face Hub" in lines[0] and "Traceback" not in proc.stderr
        assert "pass a local folder" in lines[0]
    offline = subprocess.run([sys.executable, "-m", "regiondial_bench.cli", "evaluate", *cases[0], "--no-progress"],
                             capture_output=True, text=True, env={**env, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert offline.returncode == 1 and "not in the local Hugging Face cache" in offline.stderr


def test_help_imports_neither_numpy_nor_pydantic():
    import subprocess
    import sys

    probe = ("import sys\nfrom regiondial_bench.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n"
             "    pass\nprint(sorted(m for m in ('numpy', 'pydantic', 'rich', 'yaml') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe, "--help"], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
    assert "compare" in out.stdout and "view" in out.stdout and "evaluate" in out.stdout
    report = subprocess.run([sys.executable, "-c", probe, "report", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert "numpy" not in report.stdout.strip().splitlines()[-1]
    # `evaluate --help` is what a newcomer runs first: it loads click and nothing else of weight
    evaluate = subprocess.run([sys.executable, "-c", probe, "evaluate", "--help"], capture_output=True, text=True,
                              timeout=60)
    assert evaluate.stdout.strip().splitlines()[-1] == "[]", evaluate.stdout + evaluate.stderr
    assert "--repeats" in evaluate.stdout and "--no-cache" in evaluate.stdout


def test_the_lazy_one_line_help_says_what_each_command_says_of_itself():
    """`regiondial --help` lists commands from SHORT_HELP without importing them; each line must
    still be the start of the command's own help, so a command whose help changes cannot go on
    being described by the old line."""
    import click

    from regiondial_bench.cli import SHORT_HELP

    ctx = click.Context(main)
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        own = " ".join((command.help or "").split("\n\n")[0].split())
        line = SHORT_HELP.get(name)
        assert line is not None, f"{name} has no SHORT_HELP line"
        assert own.startswith(line.rstrip(".")), f"{name}: SHORT_HELP {line!r} is not how its help begins: {own!r}"


def test_the_reference_mode_choices_are_the_schemas():
    from regiondial_bench.cli.evaluate import REFERENCE_MODES as CHOICES
    from regiondial_bench.schema import REFERENCE_MODES

    assert CHOICES == REFERENCE_MODES


def test_resume_on_a_folder_without_a_run_says_how_to_start_it(tmp_path):
    missing = tmp_path / "runs" / "oracle"
    result = CliRunner().invoke(main, ["evaluate", "--out", str(missing), "--resume"])
    assert result.exit_code == 2
    assert f"{missing} does not exist" in result.output and f"regiondial evaluate --model NAME --out {missing}" \
        in result.output and "name a model" not in result.output
    missing.mkdir(parents=True)
    assert "holds no run.json" in CliRunner().invoke(main, ["evaluate", "--out", str(missing), "--resume"]).output
    started = CliRunner().invoke(main, ["evaluate", "--model", "oracle", "--out", str(missing), "--resume",
                                       "--no-progress", "--bootstrap", "0"])
    assert started.exit_code == 0 and (missing / "results.json").is_file(), started.output


def test_missing_extras_name_the_extra_to_install(tmp_path):
    import subprocess
    import sys

    from regiondial_bench.api import SAMPLE_BENCH

    run = tmp_path / "run"
    assert CliRunner().invoke(main, ["evaluate", "--model", "oracle", "--out", str(run), "--no-progress"]).exit_code == 0
    (tmp_path / "export" / "regiondial").mkdir(parents=True)  # looks like an exported Hub folder
    (tmp_path / "export" / "README.md").write_text("---\n---\n")
    (tmp_path / "export" / "regiondial" / "test-00000-of-00001.parquet").write_bytes(b"")
    cases = {
        "matplotlib": (["plot", str(run), "--out", str(tmp_path / "plots")], "regiondial-bench[plots]"),
        "datasets": (["evaluate", "--model", "oracle", "--bench", str(tmp_path / "export"), "--no-progress"],
                     "regiondial-bench[hub]"),
        "datasets ": (["publish", str(SAMPLE_BENCH), "--repo", "me/x", "--dry-run", str(tmp_path / "dry"), "--no-progress"],
                      "regiondial-bench[hub]"),
    }
    for module, (args, extra) in cases.items():
        shim = (f"import sys\nsys.modules[{module.strip()!r}] = None\nfrom regiondial_bench.cli import main\n"
                f"main({args!r}, prog_name='regiondial')")
        proc = subprocess.run([sys.executable, "-c", shim], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1, (module, proc.stderr)
        assert extra in proc.stderr and "Traceback" not in proc.stderr, (module, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_plot_and_report_skip_an_unfinished_run(tmp_path):
    runner = CliRunner()
    done, unfinished = tmp_path / "runs" / "done", tmp_path / "runs" / "unfinished"
    assert runner.invoke(main, ["evaluate", "--model", "noisy-oracle", "--out", str(done), "--no-progress"]).exit_code == 0
    assert runner.invoke(main, ["evaluate", "--model", "noisy-oracle", "--out", str(unfinished), "--no-progress",
                                "--reference-mode", "gold"]).exit_code == 0
    (unfinished / "results.json").unlink()
    report = runner.invoke(main, ["report", str(done), str(unfinished), "--format", "markdown"])
    assert report.exit_code == 0, report.output
    assert f"skipped {unfinished}: unfinished run" in report.output and "--resume" in report.output
    assert "noisy-oracle (predicted)" in report.output and "noisy-oracle (gold)" not in report.output
    plot = runner.invoke(main, ["plot", str(done), str(unfinished), "--out", str(tmp_path / "plots")])
    assert plot.exit_code == 0, plot.output
    assert "unfinished run" in plot.output and (tmp_path / "plots" / "ap50_by_round.png").is_file()
    alone = runner.invoke(main, ["report", str(unfinished)])
    assert alone.exit_code == 2 and "every RUN given is unfinished" in alone.output


def test_progress_moves_inside_a_slow_batch(tmp_path, capsys, monkeypatch):
    import time

    from regiondial_bench.adapters import registry
    from regiondial_bench.api import evaluate
    from regiondial_bench.run import runner
    from regiondial_bench.schema import RunConfig

    from .helpers import ScriptedAdapter, answer_json, make_bench

    bars = []
    monkeypatch.setattr(runner, "_progress", lambda *args, real=runner._progress: bars.append(real(*args)) or bars[-1])

    class Slow(ScriptedAdapter):
        def __init__(self):
            super().__init__(lambda r: answer_json((2, 2, 20, 18)))

        def generate(self, requests):
            # one batch that takes a while, like 32 turns of a 7B model: it ends once the bar has said so
            deadline = time.monotonic() + 60
            while "waiting on the model" not in str(bars[0].bar.postfix or ""):
                assert time.monotonic() < deadline, "the bar never said it was waiting"
                time.sleep(0.05)
            return super().generate(requests)

    bench = make_bench(tmp_path / "b", n_dialogues=2, turns=1)
    registry._REGISTRY["test-slow"] = Slow
    try:
        evaluate(bench, RunConfig(adapter="test-slow", batch_size=8), tmp_path / "run", progress=True, n_bootstrap=0)
    finally:
        registry._REGISTRY.pop("test-slow", None)
    err = capsys.readouterr().err
    assert re.search(r"waiting on the model \ds", err), err[-500:]
    assert "2/2" in err


def test_the_trainer_without_its_extra_names_it(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    shim = ("import runpy, sys\nsys.modules['trl'] = None\n"
            f"sys.argv = ['grpo', '--config', {str(root / 'train_reference/configs/cpu_smoke.yaml')!r}, "
            f"'--output-dir', {str(tmp_path / 'out')!r}]\n"
            f"runpy.run_path({str(root / 'train_reference/grpo_regionreasoner.py')!r}, run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", shim], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'regiondial-bench[train]'" in proc.stderr and "Traceback" not in proc.stderr


def test_the_startup_benchmark_runs():
    """benchmarks/cli_startup.py, once per command, so the script cannot rot (it prints; it asserts nothing)."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "cli_startup.py"
    done = subprocess.run([sys.executable, str(script), "--repeats", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"\| regiondial evaluate --help \| \d+\.\d+ s \|", done.stdout), done.stdout

def test_evaluate_refuses_a_bench_that_bench_validate_calls_wrong(tmp_path):
    """Observed: `bench validate` reported a numeric question as an error, yet `evaluate` ran that bench
    and exited 0."""
    entries = [{"image_id": 1, "conversational_turns": [{"question": "the dog", "bboxes": [[1, 1, 9, 9]]}]},
               {"image_id": 2, "conversational_turns": [{"question": 12345, "bboxes": [[1, 1, 9, 9]]}]}]
    path = tmp_path / "q.json"
    path.write_text(json.dumps(entries))
    runner = CliRunner()
    validate = runner.invoke(main, ["bench", "validate", str(path), "--json"])
    assert any(i["severity"] == "error" and i["code"] == "malformed_turn" for i in json.loads(validate.output))
    result = runner.invoke(main, ["evaluate", "--model", "fixed-box", "--bench", str(path), "--out",
                                  str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 1, result.output
    assert "has 1 error-level issue(s) (first: malformed_turn at q-2#0" in result.output
    assert f"regiondial bench validate {path}" in result.output and not (tmp_path / "run").exists()
    entries[1]["conversational_turns"][0]["question"] = "the cat"  # fixed: it runs
    path.write_text(json.dumps(entries))
    ok = runner.invoke(main, ["evaluate", "--model", "fixed-box", "--bench", str(path), "--out",
                              str(tmp_path / "run"), "--no-progress", "--bootstrap", "0"])
    assert ok.exit_code == 0, ok.output
