"""Benches by name: `regiondial bench list` and `--bench NAME` through leaderboard/benches.yaml."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from regiondial_bench.cli import main

REFCOCOPLUS_TURNS = 2289


@pytest.fixture
def refcocoplus(upstream_file, monkeypatch):
    path = upstream_file("refcocoplus")
    monkeypatch.setenv("REGIONDIAL_BENCH_REFCOCOPLUS", str(path))
    return path


def test_bench_list_names_each_registered_bench_and_where_it_is_found(refcocoplus, monkeypatch):
    monkeypatch.delenv("REGIONDIAL_BENCH_REFCOCOG", raising=False)
    result = CliRunner().invoke(main, ["bench", "list", "--json"])
    assert result.exit_code == 0, result.output
    listed = {b["name"]: b for b in json.loads(result.output)}
    assert {"sample", "refcocoplus", "refcocog"} <= set(listed)
    assert listed["sample"]["turns"] == 199 and listed["sample"]["available"]
    plus = listed["refcocoplus"]
    assert plus["available"] and plus["turns"] == REFCOCOPLUS_TURNS and plus["dialogues"] == 715
    assert plus["where"] == "$REGIONDIAL_BENCH_REFCOCOPLUS" and plus["content_hash"].startswith("sha256:36018ca1")
    assert not listed["refcocog"]["available"] and "REGIONDIAL_BENCH_REFCOCOG" in listed["refcocog"]["problem"]
    text = CliRunner().invoke(main, ["bench", "list"]).output
    assert "refcocoplus" in text and f"{REFCOCOPLUS_TURNS} turns" in text and "--bench refcocog=PATH" in text


def test_evaluate_bench_refcocoplus_by_name(refcocoplus, tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["evaluate", "--model", "fixed-box", "--bench", "refcocoplus", "--out", str(run),
                                       "--no-progress", "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    assert f"{REFCOCOPLUS_TURNS} turns in" in result.output
    results = json.loads((run / "results.json").read_text())
    assert results["overall"]["n"] == REFCOCOPLUS_TURNS
    assert json.loads((run / "run.json").read_text())["bench_location"] == "refcocoplus"
    rescored = CliRunner().invoke(main, ["score", str(run)])  # the recorded name is looked up again
    assert rescored.exit_code == 0, rescored.output


def test_a_name_is_refused_when_its_file_has_another_hash(upstream_file, monkeypatch, tmp_path):
    monkeypatch.setenv("REGIONDIAL_BENCH_REFCOCOPLUS", str(upstream_file("refcocog")))
    result = CliRunner().invoke(main, ["evaluate", "--model", "fixed-box", "--bench", "refcocoplus",
                                       "--out", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 1 and "expects sha256:36018ca1" in result.output, result.output
    given = CliRunner().invoke(main, ["bench", "info", f"refcocoplus={upstream_file('refcocog')}"])
    assert given.exit_code == 1 and "expects" in given.output
    right = CliRunner().invoke(main, ["bench", "info", f"refcocoplus={upstream_file('refcocoplus')}"])
    assert right.exit_code == 0 and f"{REFCOCOPLUS_TURNS} turns" in right.output, right.output


def test_an_unavailable_name_says_how_to_provide_it(monkeypatch, tmp_path):
    monkeypatch.delenv("REGIONDIAL_BENCH_REFCOCOG", raising=False)
    result = CliRunner().invoke(main, ["evaluate", "--model", "fixed-box", "--bench", "refcocog",
                                       "--out", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 1
    assert "set REGIONDIAL_BENCH_REFCOCOG" in result.output and "regiondial bench list" in result.output
    unknown = CliRunner().invoke(main, ["bench", "info", "refcocoplusplus"])
    assert unknown.exit_code == 1 and "no bench at 'refcocoplusplus'" in unknown.output
    assert "did you mean the registered bench 'refcocoplus'" in unknown.output
    far = CliRunner().invoke(main, ["bench", "info", "qqq"])
    assert far.exit_code == 1 and "no bench at 'qqq'" in far.output and "did you mean" not in far.output
    bad = CliRunner().invoke(main, ["bench", "info", "nosuch=/tmp/x.json"])
    assert bad.exit_code == 1 and "not a registered bench" in bad.output


def test_a_folder_of_that_name_wins_over_the_registry(monkeypatch, tmp_path):
    from regiondial_bench.api import load_bench

    monkeypatch.chdir(tmp_path)
    load_bench("sample").save(tmp_path / "refcocog")  # a bench folder named like a registered bench
    assert load_bench("refcocog").num_turns == 199
