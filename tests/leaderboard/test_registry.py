"""The bench registry (leaderboard/benches.yaml) and entries on the official question files."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import shutil

import pytest
from click.testing import CliRunner

from regiondial_bench.api import evaluate, load_bench
from regiondial_bench.bench.registry import (
    OFFICIAL_BENCH_HASHES,
    BenchUnavailable,
    RegistryError,
    load_registry,
    question_digest,
)
from regiondial_bench.cli import main
from regiondial_bench.publish.leaderboard import UnavailableBenchError, build_leaderboard
from regiondial_bench.publish.submission import (
    COMPRESSED_LOG,
    SubmissionError,
    create_submission,
    default_bench_resolver,
    validate_submission,
)
from regiondial_bench.schema import RunConfig

from .conftest import PROJECT

REGISTRY = PROJECT / "leaderboard" / "benches.yaml"
DATE = dt.date(2026, 12, 1)


@pytest.fixture(scope="module")
def refcocoplus_runs(tmp_path_factory):
    """fixed-box (predicted) and oracle runs on the official RefCOCO+ question file."""
    from tests.conftest import UPSTREAM_DIR

    path = UPSTREAM_DIR / "refcocoplus.json"
    if not path.is_file():
        pytest.skip("the official question files (../shared/upstream_regiondial) are not present")
    bench = load_bench(str(path))
    root = tmp_path_factory.mktemp("official-runs")
    runs = {}
    for name, config in (("fixed", RunConfig(adapter="fixed-box")),
                         ("oracle", RunConfig(adapter="oracle")),
                         ("gold", RunConfig(adapter="fixed-box", reference_mode="gold",
                                            adapter_options={"copy_reference": True}))):
        evaluate(bench, config, root / name, bench_location=str(path), progress=False, n_bootstrap=50)
        runs[name] = root / name
    return runs


def test_registry_names_the_official_hashes_and_policies():
    registry = load_registry(REGISTRY)
    for name, digest in OFFICIAL_BENCH_HASHES.items():
        entry = registry.get(name)
        assert entry.content_hash == digest and entry.env and entry.redact_questions and entry.forbid_gold
    assert registry.get("sample").location == "sample"
    hub = registry.get("refcocoplus_multi_turn").hub
    assert hub["repo"] == "lmsdss/regionreasoner_test_data" and hub["config"] == "refcocoplus"


def test_official_hashes_are_the_files_hashes(official_benches):
    for name, digest in OFFICIAL_BENCH_HASHES.items():
        assert load_bench(str(official_benches / f"{name}.json")).content_hash == digest


def test_committed_official_entry_publishes_no_question_text_and_no_gold_boxes(official_benches):
    bench = load_bench(str(official_benches / "refcocoplus.json"))
    entries = [p for p in (PROJECT / "submissions").iterdir()
               if (p / "submission.yaml").is_file() and "benchmark: refcocoplus" in (p / "submission.yaml").read_text()
               and (p / COMPRESSED_LOG).is_file()]
    assert entries, "no verified entry on the official RefCOCO+ file is committed"
    questions = {t.question for d in bench for t in d.turns}
    gold = {tuple(b) for d in bench for t in d.turns for b in t.gold_boxes}
    for entry in entries:
        with gzip.open(entry / COMPRESSED_LOG, "rt", encoding="utf-8") as f:
            records = [json.loads(line) for line in f]
        assert len(records) == bench.num_turns
        assert all(r["question"].startswith("sha256:") for r in records)
        assert not any(tuple(r.get("regions", [{}])[0].get("box", ())) in gold for r in records)
        assert not any(u["source"] in ("gold", "gold-fallback") for r in records for u in r.get("references", []))
        text = "\n".join(p.read_text(encoding="utf-8") for p in entry.iterdir() if p.suffix in (".json", ".yaml"))
        with gzip.open(entry / COMPRESSED_LOG, "rt", encoding="utf-8") as f:
            text += f.read()
        leaked = [q for q in questions if len(q) > 12 and q in text]
        assert not leaked, leaked[:3]


def test_submit_stores_question_digests_that_the_validator_checks(refcocoplus_runs, official_benches, tmp_path):
    root = tmp_path / "subs"
    report = create_submission(refcocoplus_runs["fixed"], "fixed", root=root, date=DATE, model="Fixed")
    assert report.status == "verified", report.summary()
    log = report.folder / COMPRESSED_LOG
    with gzip.open(log, "rt", encoding="utf-8") as f:
        lines = [json.loads(line) for line in f]
    bench = load_bench(str(official_benches / "refcocoplus.json"))
    first_turns = [line for line in lines if line["turn"] == 0]
    assert len(first_turns) == len(bench)
    assert all(line["question"] == question_digest(bench.dialogue(line["dialogue_id"]).turns[0].question)
               for line in first_turns)
    # a log with the question text is rejected on this bench
    with open(refcocoplus_runs["fixed"] / "predictions.jsonl", "rb") as src, gzip.open(log, "wb") as dst:
        shutil.copyfileobj(src, dst)
    problems = validate_submission(report.folder).problems
    first = lines[0]
    assert any(f"first: dialogue '{first['dialogue_id']}' turn {first['turn']} question: holds text, but this "
               "bench's questions may only be logged as sha256 digests" in p for p in problems), problems
    # a digest of another text is rejected too, naming the turn
    lines[5]["question"] = question_digest("Find the dog.")
    with gzip.open(log, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)
    problems = validate_submission(report.folder).problems
    assert any(p.startswith("1 record(s) were not asked what the bench asks (first: dialogue "
                            f"'{lines[5]['dialogue_id']}' turn {lines[5]['turn']} question: the digest is not")
               for p in problems), problems


def test_no_entry_may_republish_gold_boxes(refcocoplus_runs, official_benches, tmp_path):
    with pytest.raises(SubmissionError, match="oracle entry republishes the gold boxes"):
        create_submission(refcocoplus_runs["oracle"], "oracle", root=tmp_path / "a", date=DATE)
    with pytest.raises(SubmissionError, match="carry gold reference boxes"):
        create_submission(refcocoplus_runs["gold"], "gold", root=tmp_path / "b", date=DATE)
    assert not any((tmp_path / "a").iterdir()) and not any((tmp_path / "b").iterdir())


def test_an_entry_whose_bench_is_missing_is_reported_not_a_crash(monkeypatch, tmp_path):
    monkeypatch.delenv("REGIONDIAL_BENCH_REFCOCOPLUS", raising=False)
    root = tmp_path / "submissions"
    shutil.copytree(PROJECT / "submissions", root)
    out = tmp_path / "leaderboard"
    shutil.copytree(PROJECT / "leaderboard", out)
    official = next(p for p in sorted(root.iterdir()) if p.name.endswith("_fixed-box-refcocoplus"))
    report = validate_submission(official, default_bench_resolver(registry=out / "benches.yaml"))
    assert report.status == "unavailable"
    assert "REGIONDIAL_BENCH_REFCOCOPLUS" in report.problems[0] and "--bench refcocoplus=PATH" in report.problems[0]
    with pytest.raises(UnavailableBenchError, match="cannot re-score these entries"):
        build_leaderboard(root, out, check=True)
    result = CliRunner().invoke(main, ["leaderboard", "build", "--check", "--submissions", str(root), "--out", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "unavailable" in result.output and "REGIONDIAL_BENCH_REFCOCOPLUS" in result.output
    # pointing the flag at the file makes it verifiable again
    from tests.conftest import UPSTREAM_DIR

    ok = CliRunner().invoke(main, ["leaderboard", "build", "--check", "--submissions", str(root), "--out", str(out),
                                   "--bench", f"refcocoplus={UPSTREAM_DIR / 'refcocoplus.json'}"])
    assert ok.exit_code == 0, ok.output
    assert f"{official.name}: verified" in ok.output


def test_a_bench_with_another_hash_is_refused(official_benches, monkeypatch):
    monkeypatch.setenv("REGIONDIAL_BENCH_REFCOCOPLUS", str(official_benches / "refcocog.json"))
    with pytest.raises(ValueError, match="expects sha256:36018ca1"):
        load_registry(REGISTRY).resolve("refcocoplus", load_bench)


def test_unregistered_bench_needs_a_flag(tmp_path):
    with pytest.raises(BenchUnavailable, match="not registered"):
        load_registry(REGISTRY).resolve("mystery", load_bench)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("benches: [1, 2]", "expected a mapping"),
        ("benches: {x: {location: sample, content_hash: md5}}", "content_hash must be sha256"),
        ("benches: {x: {env: lower-case}}", "environment variable name"),
        ("benches: {x: {hub: {repo: nope}}}", "hub must be"),
        ("benches: {x: {}}", "at least one of env, hub, location"),
        ("benches: {x: {location: sample, typo: 1}}", "unknown field"),
        ("benches: {x: {location: sample, forbid_gold: maybe}}", "must be true or false"),
        ("{{", "not valid YAML"),
    ],
)
def test_a_malformed_registry_is_a_clear_error(tmp_path, text, message):
    file = tmp_path / "benches.yaml"
    file.write_text(text)
    with pytest.raises(RegistryError, match=message):
        load_registry(file)


def test_fixed_box_baseline_needs_no_image_and_checks_its_options(refcocoplus_runs):
    from regiondial_bench.adapters import AdapterError, create_adapter

    results = json.loads((refcocoplus_runs["fixed"] / "results.json").read_text())
    assert results["overall"]["n"] == 2289 and results["overall"]["failures"] == 0
    assert results["provenance"]["adapter_config"] == {"box": [0.0, 0.0, 640.0, 640.0], "copy_reference": False}
    for bad in ({"box": [0, 0, 0, 5]}, {"box": [0, 0, float("inf"), 5]}, {"box": "wide"}, {"copy_reference": "yes"}):
        with pytest.raises(AdapterError, match="fixed-box"):
            create_adapter("fixed-box", **bad)


def test_build_checks_every_registered_bench_it_can_find(official_benches, monkeypatch):
    monkeypatch.setenv("REGIONDIAL_BENCH_REFCOCOG", str(official_benches / "refcocoplus.json"))  # wrong file
    result = CliRunner().invoke(main, ["leaderboard", "build", "--check", "--submissions", str(PROJECT / "submissions"),
                                       "--out", str(PROJECT / "leaderboard")])
    assert result.exit_code == 0, result.output  # no entry uses refcocog: reported, not fatal
    assert "bench refcocog: refused: " in result.stderr and "expects sha256:7a1faa2c" in result.stderr
    assert "bench refcocoplus: resolved (sha256:36018ca12b6e)" in result.stderr
    assert "bench refcocoplus_multi_turn: not fetched" in result.stderr


def test_the_official_bench_keeps_its_rules_without_a_registry_entry(refcocoplus_runs, official_benches, tmp_path):
    """Known by its hash, the official bench is redacted and forbids gold whatever resolver is used."""
    bench = load_bench(str(official_benches / "refcocoplus.json"))

    def resolver(name):  # a bare resolver: no registry entry, so no policy of its own
        return bench

    report = create_submission(refcocoplus_runs["fixed"], "fixed", root=tmp_path / "a", date=DATE, resolve_bench=resolver)
    assert report.status == "verified", report.summary()
    with open(refcocoplus_runs["fixed"] / "predictions.jsonl", "rb") as src, \
            gzip.open(report.folder / COMPRESSED_LOG, "wb") as dst:
        shutil.copyfileobj(src, dst)
    problems = validate_submission(report.folder, resolver).problems
    assert any("may only be logged as sha256 digests" in p for p in problems), problems
    with pytest.raises(SubmissionError, match="oracle entry republishes the gold boxes"):
        create_submission(refcocoplus_runs["oracle"], "oracle", root=tmp_path / "b", date=DATE, resolve_bench=resolver)


def test_a_log_of_gold_boxes_under_another_adapter_name_is_refused(refcocoplus_runs, official_benches, tmp_path):
    run = tmp_path / "relabelled"
    shutil.copytree(refcocoplus_runs["oracle"], run)
    for name, edit in (("run.json", lambda d: d.update(adapter="fixed-box")),
                       ("results.json", lambda d: d["provenance"].update(adapter="fixed-box"))):
        data = json.loads((run / name).read_text())
        edit(data)
        (run / name).write_text(json.dumps(data))
    with pytest.raises(SubmissionError, match=r"2289 of 2289 answers equal the gold box exactly"):
        create_submission(run, "not-an-oracle", root=tmp_path / "subs", date=DATE)
