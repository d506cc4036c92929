"""A run killed with SIGKILL and resumed gives the same metrics as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from regiondial_bench import api
from regiondial_bench.schema import RunConfig

from .helpers import make_bench, register_test_adapters

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import sys
sys.path.insert(0, {root!r})
from tests.core.helpers import register_test_adapters
from regiondial_bench import api
from regiondial_bench.schema import Bench, RunConfig
register_test_adapters()
bench = Bench.load({bench!r})
api.evaluate(bench, RunConfig(adapter="test-slow-flaky-oracle", batch_size=2), {out!r}, progress=False)
"""


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    register_test_adapters()
    bench = make_bench(tmp_path / "bench", n_dialogues=12, turns=5)
    config = RunConfig(adapter="test-slow-flaky-oracle", batch_size=2)
    full = api.evaluate(bench, config, tmp_path / "full", progress=False, n_bootstrap=200)

    killed = tmp_path / "killed"
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(root=str(PROJECT_ROOT), bench=str(tmp_path / "bench"),
                                                                 out=str(killed))])
    log = killed / "predictions.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if log.exists() and log.read_text().count("\n") >= 20:
            break
        if child.poll() is not None:
            break
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
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
