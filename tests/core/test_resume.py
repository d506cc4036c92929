"""A run killed with SIGKILL and resumed gives the same metrics as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from regiondial_bench import api
from regiondial_bench.run.folder import read_predictions
from regiondial_bench.schema import RunConfig

from .helpers import make_bench, register_test_adapters

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import sys
sys.path.insert(0, {root!r})
from tests.core.helpers import register_test_adapters
import pytest

from regiondial_bench import api
from regiondial_bench.schema import Bench, RunConfig
register_test_adapters()
bench = Bench.load({bench!r})
config = RunConfig(adapter="test-slow-flaky-oracle", batch_size=2, adapter_options={{"journal": {journal!r}}})
api.evaluate(bench, config, {out!r}, progress=False)
"""


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    register_test_adapters()
    bench = make_bench(tmp_path / "bench", n_dialogues=12, turns=5)
    journal = tmp_path / "journal.txt"
    config = RunConfig(adapter="test-slow-flaky-oracle", batch_size=2, adapter_options={"journal": str(journal)})
    full = api.evaluate(bench, config, tmp_path / "full", progress=False, n_bootstrap=200)
    journal.unlink()

    killed = tmp_path / "killed"
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(root=str(PROJECT_ROOT), bench=str(tmp_path / "bench"),
                                                                 out=str(killed), journal=str(journal))])
    log = killed / "predictions.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        # kill once a dozen records were reported flushed: fewer than one write buffer (8 KB), so a
        # log that was not handed to the OS after every batch would still hold them in memory
        if journal.exists() and journal.read_text().count("\n") >= 12:
            break
        if child.poll() is not None:
            break
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    # nothing the runner had flushed before asking its next batch was lost (fsync is batched,
    # but every batch reaches the operating system before the next one is asked)
    logged = {f"{r.dialogue_id}#{r.turn}" for r in read_predictions(log)} if log.exists() else set()
    flushed = set(journal.read_text().split())
    assert flushed and flushed <= logged
    answered = log.read_text().count("\n")
    assert 0 < answered < bench.num_turns, "the child must die halfway"
    assert not (killed / "results.json").exists()

    resumed = api.evaluate(bench, config, killed, resume=True, progress=False, n_bootstrap=200)
    assert resumed.rounds == full.rounds
    assert resumed.buckets == full.buckets
    assert resumed.overall == full.overall
    assert 0 < full.overall.ap50 < 100 and full.overall.failures > 0
    # the references were really propagated: rounds after a failed round fail too
    gold = api.evaluate(bench, config.model_copy(update={"reference_mode": "gold"}), tmp_path / "gold",
                        progress=False, n_bootstrap=0)
    assert gold.overall.ap50 > full.overall.ap50


CLI_CHILD = """
import sys
sys.path.insert(0, {root!r})
from tests.core.helpers import register_test_adapters
from regiondial_bench.cli import main
register_test_adapters()
main(sys.argv[1:])
"""


def test_a_second_process_on_the_same_folder_is_refused(tmp_path):
    # observed: two `evaluate --resume` on one --out both finished; the log held duplicates
    import json

    from regiondial_bench.schema import read_prediction_log

    bench = make_bench(tmp_path / "bench", n_dialogues=6, turns=4)
    gate = tmp_path / "gate"
    gate.touch()  # the first run holds after its first batch until the gate is removed
    (tmp_path / "config.yaml").write_text(json.dumps({"adapter": "test-slow-flaky-oracle", "batch_size": 1,
                                                      "adapter_options": {"delay": 0.0, "gate": str(gate)}}))
    out = tmp_path / "run"
    argv = [sys.executable, "-c", CLI_CHILD.format(root=str(PROJECT_ROOT)), "evaluate", "--config",
            str(tmp_path / "config.yaml"), "--bench", str(tmp_path / "bench"), "--out", str(out), "--resume",
            "--no-progress", "--bootstrap", "0"]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = out / "predictions.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None and not (log.exists() and log.read_text()):
        time.sleep(0.02)
    assert first.poll() is None, "the first run must still be running"
    # refused at once: the first run is held at its gate, so a second that waited for the lock would hang
    second = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert first.poll() is None, "the first run must still hold the folder while the second is refused"
    assert second.returncode != 0
    assert f"in use by another regiondial process (pid {first.pid})" in second.stderr
    gate.unlink()
    output, _ = first.communicate(timeout=120)
    assert first.returncode == 0, output
    records = read_prediction_log(log, strict=True)
    keys = [r.key for r in records]
    assert len(keys) == len(set(keys)) == bench.num_turns
    # the lock dies with its holder: the folder can be resumed (nothing left to ask)
    again = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert len(read_prediction_log(log, strict=True)) == bench.num_turns


def test_a_corrupted_line_is_reported_skipped_and_asked_again(tmp_path, caplog):
    # observed: a bad line in the middle made resume drop every valid record after it
    from regiondial_bench.run.runner import Runner

    from .test_records import Hostile, spec_for

    bench = make_bench(tmp_path / "bench", n_dialogues=4, turns=3)
    Runner(bench, Hostile(lambda r: None), spec_for(bench), tmp_path / "run", progress=False).run()
    log = tmp_path / "run" / "predictions.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    lost = json_key(lines[4])
    lines[4] = '{"dialogue_id": "d1", "tu\x00rn": 0 garbage\n'
    lines.insert(8, "\ufffd not json at all\n")
    log.write_text("".join(lines))
    with caplog.at_level("WARNING", logger="regiondial_bench.run"):
        again = Hostile(lambda r: None)
        Runner(bench, again, spec_for(bench), tmp_path / "run", progress=False).run(resume=True)
    assert again.asked == [lost]  # only the unreadable record's turn is asked again
    assert "predictions.jsonl:5: unreadable record skipped" in caplog.text
    assert "predictions.jsonl:9: unreadable record skipped" in caplog.text
    assert (tmp_path / "run" / "predictions.jsonl.corrupt").read_text().count("# line ") == 2
    assert len(log.read_text().splitlines()) == bench.num_turns


def json_key(line: str) -> tuple[str, int]:
    import json

    data = json.loads(line)
    return (data["dialogue_id"], data["turn"])


def test_score_names_the_file_and_line_of_an_unreadable_record(tmp_path):
    from click.testing import CliRunner

    from regiondial_bench.cli import main

    bench = make_bench(tmp_path / "bench", n_dialogues=2, turns=2)
    api.evaluate(bench, RunConfig(adapter="oracle"), tmp_path / "run", progress=False, n_bootstrap=0)
    log = tmp_path / "run" / "predictions.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace('"turn":', '"turn":"x",')
    log.write_text("".join(lines))
    result = CliRunner().invoke(main, ["score", str(tmp_path / "run")])
    assert result.exit_code != 0
    assert f"{log}:3: not a prediction record" in result.output


def test_a_broken_run_json_names_itself_and_keeps_the_predictions(tmp_path):
    # observed: a torn run.json gave an error naming no file; only --overwrite (deleting the log) got past it
    from regiondial_bench.run.folder import RunFolderError

    register_test_adapters()
    bench = make_bench(tmp_path / "bench", n_dialogues=3, turns=3)
    config = RunConfig(adapter="oracle")
    first = api.evaluate(bench, config, tmp_path / "run", progress=False, n_bootstrap=0)
    run_json = tmp_path / "run" / "run.json"
    run_json.write_text(run_json.read_text()[:40])
    try:
        api.evaluate(bench, config, tmp_path / "run", resume=True, progress=False, n_bootstrap=0)
    except RunFolderError as exc:
        message = str(exc)
    else:
        raise AssertionError("a torn run.json must be refused")
    assert str(run_json) in message and "--resume" in message and "mv " in message
    # the way out it names: move run.json aside and resume; no turn is asked again
    run_json.rename(run_json.with_name("run.json.broken"))
    with pytest.raises(RunFolderError, match="no run.json; pass --resume"):
        api.evaluate(bench, config, tmp_path / "run", progress=False, n_bootstrap=0)  # never deletes the log
    resumed = api.evaluate(bench, RunConfig(adapter="test-slow-flaky-oracle"), tmp_path / "run", resume=True,
                           progress=False, n_bootstrap=0)
    assert resumed.overall == first.overall  # the oracle's records were kept, not re-asked from the flaky one


def test_score_of_a_killed_run_points_at_the_torn_line_and_the_fix(tmp_path):
    bench = make_bench(tmp_path / "bench", n_dialogues=2, turns=2)
    api.evaluate(bench, RunConfig(adapter="oracle"), tmp_path / "run", progress=False, n_bootstrap=0)
    log = tmp_path / "run" / "predictions.jsonl"
    log.write_text(log.read_text()[:-30])
    with pytest.raises(ValueError, match=r"predictions.jsonl:4: not a prediction record \(a torn last line.*--resume"):
        api.score(tmp_path / "run")
    partial = api.score(tmp_path / "run", partial=True, n_bootstrap=0)
    assert partial.overall.n == 3


def test_cli_resume_from_a_broken_run_json_names_the_way_out(tmp_path):
    from click.testing import CliRunner

    from regiondial_bench.cli import main

    out = tmp_path / "run"
    runner = CliRunner()
    assert runner.invoke(main, ["evaluate", "--model", "oracle", "--out", str(out), "--no-progress"]).exit_code == 0
    (out / "run.json").write_text('{"adapter": ')
    result = runner.invoke(main, ["evaluate", "--out", str(out), "--resume", "--no-progress"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert str(out / "run.json") in result.output and "mv " in result.output
    (out / "run.json").rename(out / "run.json.broken")
    again = runner.invoke(main, ["evaluate", "--model", "oracle", "--out", str(out), "--resume", "--no-progress"])
    assert again.exit_code == 0, again.output


def test_sigterm_prints_the_resume_command_as_ctrl_c_does(tmp_path):
    """Observed: SIGTERM ended a run without the resume hint that Ctrl-C prints."""
    import json
    import shlex

    bench = make_bench(tmp_path / "bench", n_dialogues=6, turns=4)
    gate = tmp_path / "gate"
    gate.touch()  # the run holds after its first batch: it is mid-run when the signal comes
    (tmp_path / "config.yaml").write_text(json.dumps({"adapter": "test-slow-flaky-oracle", "batch_size": 2,
                                                      "adapter_options": {"delay": 0.0, "gate": str(gate)}}))
    out = tmp_path / "run"
    argv = [sys.executable, "-c", CLI_CHILD.format(root=str(PROJECT_ROOT)), "evaluate", "--config",
            str(tmp_path / "config.yaml"), "--bench", str(tmp_path / "bench"), "--out", str(out), "--no-progress"]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "predictions.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None and not (log.exists() and log.read_text()):
        time.sleep(0.02)
    assert child.poll() is None, "the run must still be running"
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 143, stderr
    assert "terminated: 2 turns are saved in" in stderr and "Traceback" not in stderr, stderr
    command = stderr.strip().splitlines()[-1].strip()
    assert command == shlex.join(["regiondial", "evaluate", "--out", str(out), "--resume"])
    gate.unlink()
    resumed = subprocess.run([*argv[:3], *shlex.split(command)[1:], "--no-progress"], capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert len(read_predictions(log)) == bench.num_turns
