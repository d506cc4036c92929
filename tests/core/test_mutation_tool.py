"""scripts/mutation.py on a two-function project: what it kills, what survives, what it marks equivalent.

A smoke test so the tool cannot rot; it runs no mutant of the real project (that takes minutes:
``python scripts/mutation.py all``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "mutation.py"
CALC = '''\
"""A module to mutate."""


def clamp_positive(x):
    if x > 0:
        return x
    return 0


def double(x):
    return x * 2
'''
TESTS = '''\
import subprocess
import sys

from pkg.calc import clamp_positive


def test_clamp():
    assert clamp_positive(5) == 5
    assert clamp_positive(-1) == 0


def test_writes_a_temporary_file(tmp_path):
    (tmp_path / "x").write_text("1")


def test_double_in_a_subprocess():
    # only a subprocess calls double(): it must see the mutant through the shadow copy's file
    out = subprocess.run([sys.executable, "-c", "from pkg.calc import double; print(double(3))"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "6"
'''


def tiny_project(root: Path, equivalent: dict[str, str]) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "calc.py").write_text(CALC)
    (root / "tests").mkdir()
    (root / "tests" / "test_calc.py").write_text(TESTS)
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\naddopts = \"\"\n")
    config = root / "mutation.yaml"
    config.write_text(yaml.safe_dump({"targets": {"calc": {
        "file": "pkg/calc.py", "tests": ["tests/test_calc.py"], "equivalent": equivalent}}}))
    return config


def run_tool(root: Path, config: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "calc", "--config", str(config), "--root", str(root), *extra],
                          capture_output=True, text=True, timeout=300)


def test_kills_survives_and_marks_equivalent(tmp_path):
    root = tmp_path / "project"
    config = tiny_project(root, {})
    listed = run_tool(root, config, "--list")
    assert listed.returncode == 0, listed.stderr
    ids = {line.split()[0]: line for line in listed.stdout.splitlines() if line.startswith(("clamp", "double"))}
    boundary = next(i for i, line in ids.items() if "'x > 0' -> '(x >= 0)'" in line)  # same result at x = 0
    config = tiny_project(tmp_path / "again", {boundary: "at x == 0 both branches return 0"})

    done = run_tool(tmp_path / "again", config, "--json", str(tmp_path / "out.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    outcomes = {o["id"]: o for o in json.loads((tmp_path / "out.json").read_text())["outcomes"]}
    assert set(outcomes) == set(ids)
    status = {o["change"]: o["status"] for o in outcomes.values()}
    assert outcomes[boundary]["status"] == "equivalent"
    assert status["compare: 'x > 0' -> '(x <= 0)'"] == "killed"
    assert status["condition: 'x > 0' -> 'True'"] == "killed"
    assert status["arithmetic: 'x * 2' -> '(x / 2)'"] == "killed"  # seen by the subprocess
    survivors = [o for o in outcomes.values() if o["status"] == "survived"]
    assert [o["change"] for o in survivors] == ["constant: '0' -> '1'"]  # x > 1: clamp_positive(1) is untested
    assert "-    if x > 0:\n+    if x > 1:" in survivors[0]["diff"]  # the report shows the survivor's diff
    summary = json.loads((tmp_path / "out.json").read_text())["summary"]["calc"]
    assert summary["equivalent"] == 1 and summary["survived"] == 1
    assert summary["score"] == round(100 * summary["killed"] / (summary["killed"] + 1), 1)
    assert "| calc |" in done.stdout
    assert (root / "pkg" / "calc.py").read_text() == CALC  # the project itself is never written

    # --since: what was killed stays killed without a run; the survivor is run again
    again = run_tool(tmp_path / "again", config, "--since", str(tmp_path / "out.json"), "--json",
                     str(tmp_path / "since.json"))
    assert again.returncode == 0, again.stderr
    rerun = {o["id"]: o for o in json.loads((tmp_path / "since.json").read_text())["outcomes"]}
    assert {i: o["status"] for i, o in rerun.items()} == {i: o["status"] for i, o in outcomes.items()}
    assert all(o["reason"] == "(killed in the --since report)" for o in rerun.values() if o["status"] == "killed")
    assert rerun[survivors[0]["id"]]["seconds"] > 0


def test_the_tools_pytest_runs_leave_other_sessions_temporary_folders_alone(tmp_path):
    """Each mutant's pytest run uses a basetemp inside the tool's shadow folder: in pytest's shared
    root it would prune the numbered folders of a test session running at the same time."""
    root = tmp_path / "project"
    config = tiny_project(root, {})
    temproot = tmp_path / "temproot"
    temproot.mkdir()
    env = {**os.environ, "PYTEST_DEBUG_TEMPROOT": str(temproot)}
    done = subprocess.run([sys.executable, str(SCRIPT), "calc", "--config", str(config), "--root", str(root)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert list(temproot.iterdir()) == []


def test_a_red_clean_run_is_refused(tmp_path):
    root = tmp_path / "project"
    config = tiny_project(root, {})
    (root / "tests" / "test_calc.py").write_text("def test_red():\n    assert False\n")
    done = run_tool(root, config)
    assert done.returncode != 0 and "the tests fail without any mutant" in done.stderr


def test_an_equivalent_mark_needs_a_reason(tmp_path):
    root = tmp_path / "project"
    config = tiny_project(root, {"clamp_positive:00000000": " "})
    done = run_tool(root, config, "--list")
    assert done.returncode != 0 and "needs a reason" in done.stderr


def test_mutants_are_confined_to_behaviour():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import mutation
    finally:
        sys.path.remove(str(SCRIPT.parent))
    source = textwrap.dedent('''\
        import logging
        logger = logging.getLogger(__name__)
        LIMIT = 3

        def check(values, cap=10):
            """Docstring 1."""
            if len(values) > LIMIT:
                logger.warning("%d values over %d", len(values), 5)
                raise ValueError(f"too many: {len(values) - 1}")
            return [v for v in values if v < cap]
        ''').encode()
    target = mutation.Target(name="t", file="m.py", tests=["x"], constants=["LIMIT"])
    mutants = mutation.generate_mutants(target, source)
    changed = {m.original for m in mutants}
    assert "LIMIT" not in changed and "3" in changed  # the constant's value
    assert "5" not in changed and "1" not in changed and "10" not in changed  # logging, f-string, default
    assert {"len(values) > LIMIT", "v < cap"} <= changed
    for m in mutants:
        compile(m.apply(source), "m.py", "exec")
    assert len({m.id for m in mutants}) == len(mutants)
