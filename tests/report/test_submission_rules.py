"""The validator's rules one by one, on small inputs (no model runs): fast enough to run against
every mutant of ``publish/submission.py`` first (issue 26)."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import shutil

import pytest
import yaml

from regiondial_bench.api import load_bench
from regiondial_bench.metrics import score_records
from regiondial_bench.protocol import format_box, render_question
from regiondial_bench.publish import submission as sub
from regiondial_bench.publish.submission import (
    COMPRESSED_LOG,
    SubmissionError,
    SubmissionMeta,
    SubmissionReport,
    bootstrap_settings,
    compare_results,
    completeness_problems,
    create_submission,
    duplicate_key,
    gold_problems,
    leaderboard_scores,
    log_size_problem,
    provenance_problems,
    read_meta,
    reference_problems,
    validate_all,
    validate_submission,
)
from regiondial_bench.schema import PredictionRecord, Provenance, Region, RunSpec, UsedReference

DATE = dt.date(2026, 3, 1)


@pytest.fixture(scope="module")
def bench():
    return load_bench("sample")


def _records(bench, wrong=()):
    """One record per turn: the gold box, or a box beside it for the keys in ``wrong``."""
    out = []
    for d in bench:
        for t in d.turns:
            x1, y1, x2, y2 = t.gold_boxes[0]
            box = (x2, y1, x2 + (x2 - x1), y2) if (d.dialogue_id, t.index) in wrong else (x1, y1, x2, y2)
            out.append(PredictionRecord(dialogue_id=d.dialogue_id, turn=t.index, round=t.round, question=t.question,
                                        raw_text="", regions=[Region(box=box)]))
    return out


def _prov(bench, **update):
    data = {"bench_name": bench.name, "bench_hash": bench.content_hash, "adapter": "x", "reference_mode": "predicted",
            "package_version": "0", "parser": "tolerant", "batch_size": 16}
    return Provenance(**{**data, **update})


@pytest.fixture(scope="module")
def results(bench):
    keys = [(d.dialogue_id, t.index) for d in bench for t in d.turns]
    return score_records(bench, _records(bench, wrong=set(keys[::3])), provenance=_prov(bench), n_bootstrap=50)


# --------------------------------------------------------------------------------------------
# Claims
# --------------------------------------------------------------------------------------------


def _with(results, row, **cells):
    """``results`` with cells of one row (``"all"``, a round or ``"8+"``) replaced."""
    def edit(r):
        return r.model_copy(update=cells) if r.round == row else r

    return results.model_copy(update={"rounds": [edit(r) for r in results.rounds],
                                      "buckets": [edit(r) for r in results.buckets], "overall": edit(results.overall)})


def test_equal_claims_have_no_differences(results):
    assert compare_results(results, results) == []


@pytest.mark.parametrize(("delta", "differs"), [(0.0099, False), (0.0101, True), (-0.0101, True), (0.011, True)])
def test_the_tolerance_is_a_hundredth_of_a_point_either_way(results, delta, differs):
    claimed = _with(results, "2", ap50=results.rounds[1].ap50 + delta)
    assert bool(compare_results(claimed, results)) is differs
    assert bool(compare_results(claimed, results, tolerance=0.02)) is False


def test_a_claim_exactly_a_hundredth_off_holds(results):
    """0.01 and 0.0 are exactly a hundredth apart in binary floating point: at the tolerance, not over it."""
    assert compare_results(_with(results, "2", ap50=0.01), _with(results, "2", ap50=0.0)) == []
    assert compare_results(_with(results, "2", ap50=0.0), _with(results, "2", ap50=0.01)) == []


@pytest.mark.parametrize("end", ["low", "high"])
def test_each_end_of_a_confidence_interval_is_compared(results, end):
    from regiondial_bench.schema import ConfidenceInterval

    ci = results.overall.ap50_ci
    moved = ConfidenceInterval(**{**ci.model_dump(), end: getattr(ci, end) + 1.0})
    assert [d.split(":")[0] for d in compare_results(_with(results, "all", ap50_ci=moved), results)] == [
        f"Avg ap50_ci.{end}"]


def test_a_non_finite_claim_differs(results):
    assert compare_results(_with(results, "1", mean_iou=float("nan")), results) == [
        f"R1 mean_iou: claimed nan, recomputed {results.rounds[0].mean_iou}"]


def test_blanks_must_match_both_ways(results):
    value = results.rounds[0].mean_iou
    assert compare_results(_with(results, "1", mean_iou=None), results) == [f"R1 mean_iou: claimed None, recomputed "
                                                                            f"{value}"]
    assert compare_results(results, _with(results, "1", mean_iou=None)) == [f"R1 mean_iou: claimed {value}, "
                                                                            "recomputed None"]
    assert results.rounds[0].giou is None and compare_results(results, results) == []  # both blank: equal


def test_differences_are_listed_round_by_round_then_8plus_then_avg(results):
    claimed = _with(_with(_with(_with(results, "all", n=1), "8+", n=1), "10", n=1), "2", n=1)
    assert [d.split(":")[0] for d in compare_results(claimed, results)] == ["R2 n", "R10 n", "R8+ n", "Avg n"]


def test_rows_missing_or_invented(results):
    fewer = results.model_copy(update={"rounds": results.rounds[1:], "buckets": []})
    assert compare_results(fewer, results) == ["R1: row missing from the claimed results",
                                               "R8+: row missing from the claimed results"]
    assert compare_results(results, fewer) == ["R1: claimed, but the predictions have no such round",
                                               "R8+: claimed, but the predictions have no such round"]


def test_failure_claims_name_the_first_differing_key(results):
    claimed = results.model_copy(update={"failure_reasons": {"a": 1, "b": 2}, "failure_kinds": {"answer": 3}})
    recomputed = results.model_copy(update={"failure_reasons": {"a": 1, "b": 3}, "failure_kinds": {}})
    assert compare_results(claimed, recomputed) == ["failure_reasons['b']: claimed 2, recomputed 3",
                                                    "failure_kinds['answer']: claimed 3, recomputed None"]


def test_at_most_ten_differing_cells_are_shown(tmp_path, results, bench):
    """The validator names ten cells and counts the rest."""
    folder = tmp_path / "2026-03-01_x"
    folder.mkdir()
    many = results
    for row in ("1", "2", "3", "4", "5", "6"):
        many = _with(many, row, n=0, failures=99)
    problem = sub.scores_problem(many, results)
    assert problem.startswith("scores differ from the recomputed ones in 12 cell(s): R1 n: claimed 0")
    assert problem.count(": claimed") == 10 and problem.endswith("; and 2 more")
    few = _with(results, "1", n=0)
    assert sub.scores_problem(few, results) == f"scores differ from the recomputed ones in 1 cell(s): R1 n: " \
                                               f"claimed 0, recomputed {results.rounds[0].n}"
    assert sub.scores_problem(results, results) is None
    exactly = results
    for row in ("1", "2", "3", "4", "5"):
        exactly = _with(exactly, row, n=0, failures=99)
    assert sub.scores_problem(exactly, results).count(": claimed") == 10  # all shown, none counted
    assert "more" not in sub.scores_problem(exactly, results)


# --------------------------------------------------------------------------------------------
# Turns
# --------------------------------------------------------------------------------------------


def test_completeness_shows_five_of_each_kind(bench):
    keys = [(d.dialogue_id, t.index) for d in bench for t in d.turns]
    assert completeness_problems(bench, keys) == []
    problems = completeness_problems(bench, [k for k in keys if k != keys[6]] + keys[:6] + [("zz", i) for i in range(7)])
    assert len(problems) == 3
    dup, missing, unknown = problems
    assert dup.startswith("duplicated turns: 6 turn(s) answered more than once: ") and dup.count("(2x)") == 5
    assert missing == ("missing turns: 1 of 199 turns have no prediction: " + f"{keys[6][0]}#{keys[6][1]}")
    assert unknown == "unknown turns: 7 prediction(s) name turns the bench does not have: zz#0, zz#1, zz#2, zz#3, zz#4"
    gone = completeness_problems(bench, keys[6:])
    assert gone[0].endswith(": " + ", ".join(f"{d}#{t}" for d, t in keys[:5]))


def test_reference_replay_names_the_first_wrong_turn(bench):
    records = _records(bench)
    assert reference_problems(bench, records, "predicted")  # the records claim no references at all
    fixed = []
    by_key = {r.key: r for r in records}
    for r in records:
        turn = bench.dialogue(r.dialogue_id).turns[r.turn]
        used = [UsedReference(turn=ref.turn, source="predicted", box=by_key[(r.dialogue_id, ref.turn)].regions[0].box,
                              text="") for ref in turn.references if ref.turn < r.turn]
        fixed.append(r.model_copy(update={"references": used}))
    assert reference_problems(bench, fixed, "predicted") == []
    # records of turns the bench does not have are the completeness check's to report, wherever they stand
    assert reference_problems(bench, [fixed[0].model_copy(update={"dialogue_id": "nope"}), *fixed], "predicted") == []
    past = len(bench.dialogue(fixed[0].dialogue_id).turns)
    assert reference_problems(bench, [fixed[0].model_copy(update={"turn": past}), *fixed], "predicted") == []
    assert reference_problems(bench, fixed, "gold")[0].startswith(
        "122 turn(s) were not asked with 'gold' references (first: test-2#2 logged [(1, 'predicted',")


def test_upstream_replay_leaves_a_second_placeholder_unfilled():
    """The released evaluator never fills a second placeholder (refcocog 188911 turn 2): a turn asked
    with only its first reference is what upstream mode gives."""
    from regiondial_bench.schema import Bench, Dialogue, ImageRef, Reference, Turn

    turns = [Turn(index=0, question="a", gold_boxes=[(0, 0, 5, 5)]),
             Turn(index=1, question="b", gold_boxes=[(1, 1, 6, 6)]),
             Turn(index=2, question="c <box>{context_bbox}</box> <box>{context_bbox_2}</box>",
                  gold_boxes=[(2, 2, 7, 7)],
                  references=[Reference(turn=0), Reference(turn=1, placeholder="{context_bbox_2}",
                                                           upstream_fill=False)])]
    two = Bench([Dialogue(dialogue_id="d", image=ImageRef(), turns=turns)], name="two")
    records = [PredictionRecord(dialogue_id="d", turn=t, round=t + 1, question="q", raw_text="",
                                regions=[Region(box=(0, 0, 5, 5))]) for t in range(3)]
    records[2] = records[2].model_copy(update={"references": [
        UsedReference(turn=0, source="predicted", box=(0.0, 0.0, 5.0, 5.0), text="")]})
    assert reference_problems(two, records, "upstream") == []
    assert reference_problems(two, records, "predicted")[0].startswith("1 turn(s) were not asked with 'predicted'")


def test_gold_copies_count_first_boxes_only(bench):
    records = _records(bench)
    assert gold_problems(bench, records, "x", "predicted")[0].startswith("199 of 199 answers equal the gold box")
    assert gold_problems(bench, records, "oracle", "predicted") == [
        "an oracle entry republishes the gold boxes; it is not allowed on this bench"]
    second = [r.model_copy(update={"regions": [Region(box=(0, 0, 1, 1)), *r.regions]}) for r in records]
    assert gold_problems(bench, second, "x", "predicted") == []  # only the first box propagates and counts
    stray = [*records[:99], *(r.model_copy(update={"dialogue_id": "nope"}) for r in records[99:])]
    assert gold_problems(bench, stray, "x", "predicted") == []  # 99 of 199: not more than half
    stray = [*records[:100], *(r.model_copy(update={"dialogue_id": "nope"}) for r in records[100:])]
    assert gold_problems(bench, stray, "x", "predicted") == [
        "100 of 199 answers equal the gold box exactly; the log republishes the gold boxes"]
    half = [*records[:99], *(r.model_copy(update={"dialogue_id": "nope"}) for r in records[99:198])]
    assert gold_problems(bench, half, "x", "predicted") == []  # 99 of 198: exactly half is not more than half
    assert gold_problems(bench, [r.model_copy(update={"turn": 99}) for r in records], "x", "predicted") == []
    empty = [r.model_copy(update={"regions": []}) for r in records]
    assert gold_problems(bench, empty, "x", "predicted") == []
    assert gold_problems(bench, [], "x", "predicted") == []


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("boot", "expected"), [
    (None, (1000, 0)), ({}, (1000, 0)), ({"resamples": 0, "seed": 0}, (0, 0)),
    ({"resamples": 10_000, "seed": 2**63 - 1}, (10_000, 2**63 - 1)),
    ({"resamples": 10_001}, "provenance.bootstrap.resamples must be an integer in 0..10000, got 10001"),
    ({"resamples": -1}, "provenance.bootstrap.resamples must be an integer in 0..10000, got -1"),
    ({"seed": 2**63}, f"provenance.bootstrap.seed must be an integer in 0..{2**63 - 1}, got {2**63}"),
    ({"seed": -1}, f"provenance.bootstrap.seed must be an integer in 0..{2**63 - 1}, got -1"),
    ({"seed": False}, f"provenance.bootstrap.seed must be an integer in 0..{2**63 - 1}, got False"),
    ({"seed": "x" * 100}, f"provenance.bootstrap.seed must be an integer in 0..{2**63 - 1}, got '{'x' * 56}..."),
    ([1], "provenance.bootstrap must be a mapping, got list"),
])
def test_bootstrap_settings(boot, expected):
    assert bootstrap_settings(boot) == expected


def test_provenance_against_run_json(bench):
    spec = RunSpec(adapter="x", bench_name=bench.name, bench_hash=bench.content_hash, bench_location="")
    assert provenance_problems(_prov(bench), spec) == []
    assert provenance_problems(_prov(bench, parser=None), spec) == []  # older results: the mode's parser
    upstream = spec.model_copy(update={"reference_mode": "upstream", "parser": "upstream"})
    assert provenance_problems(_prov(bench, parser=None, reference_mode="upstream"), upstream) == []
    assert provenance_problems(_prov(bench, parser=None), upstream) == [
        "provenance.reference_mode: results.json says 'predicted', run.json 'upstream'",
        "provenance.parser: results.json says 'tolerant', run.json 'upstream'"]
    for name, value in (("limit", 3), ("mask_producer", "box"), ("batch_size", 4), ("bench_name", "other")):
        assert provenance_problems(_prov(bench, **{name: value}), spec) == [
            f"provenance.{name}: results.json says {value!r}, run.json {getattr(spec, name)!r}"]


def test_log_size_limits(tmp_path, monkeypatch):
    log = tmp_path / COMPRESSED_LOG
    with gzip.open(log, "wb") as f:
        f.write(b"x\n" * 100)
    assert log_size_problem(log, 18) is None  # 100 lines <= 2 * 18 + 64
    assert log_size_problem(log, 17) == f"{COMPRESSED_LOG} holds more than 98 lines for a bench of 17 turns; " \
                                        "refusing to read it"
    monkeypatch.setattr(sub, "MAX_LOG_BYTES_PER_TURN", 4)
    assert log_size_problem(log, 49) == f"{COMPRESSED_LOG} decompresses to more than 196 bytes for a bench of 49 " \
                                        "turns; refusing to read it"
    assert log_size_problem(log, 50) is None  # exactly 200 bytes: at the limit, not over it
    assert log_size_problem(log, 0) == f"{COMPRESSED_LOG} decompresses to more than 4 bytes for a bench of 0 turns; " \
                                       "refusing to read it"
    monkeypatch.setattr(sub, "MAX_LOG_BYTES_PER_TURN", 2)
    assert log_size_problem(log, 100) is None  # exactly 200 bytes: at the limit, not over it
    monkeypatch.setattr(sub, "MAX_LOG_UNCOMPRESSED_BYTES", 199)
    assert log_size_problem(log, 100).startswith(f"{COMPRESSED_LOG} decompresses to more than 199 bytes")
    assert log_size_problem(log) == f"{COMPRESSED_LOG} decompresses to more than 199 bytes; refusing to read it"
    monkeypatch.setattr(sub, "MAX_LOG_UNCOMPRESSED_BYTES", 200)
    assert log_size_problem(log) is None
    monkeypatch.setattr(sub, "MAX_LOG_BYTES", log.stat().st_size - 1)
    assert log_size_problem(log) == f"{COMPRESSED_LOG} is {log.stat().st_size} bytes; the limit is " \
                                    f"{log.stat().st_size - 1}"
    monkeypatch.setattr(sub, "MAX_LOG_BYTES", log.stat().st_size)
    assert log_size_problem(log) is None
    log.write_bytes(b"not gzip")
    assert log_size_problem(log).startswith(f"{COMPRESSED_LOG} is not a readable gzip file")


# --------------------------------------------------------------------------------------------
# submission.yaml
# --------------------------------------------------------------------------------------------


BASE = {"model": "M", "benchmark": "sample", "date": "2026-03-01"}


def _meta(**fields):
    return SubmissionMeta.model_validate({**BASE, **fields})


@pytest.mark.parametrize(("fields", "message"), [
    ({"benchmark": "a b"}, "is not a bench name"),
    ({"hub_id": "nope"}, "is not a Hub id"),
    ({"revision": "a..b"}, "is not a revision"),
    ({"revision": "-x"}, "is not a revision"),
    ({"link": "ftp://x"}, "is not an http(s) URL"),
    ({"status": "reported"}, "needs exactly one of paper_row or reported_scores"),
    ({"status": "reported", "paper_row": "RegionReasoner-7B", "reported_scores": {"detection": [1] * 8}},
     "needs exactly one of paper_row or reported_scores"),
    ({"status": "reported", "paper_row": "GPT-9"}, "is not a row of the paper's tables"),
    ({"paper_row": "RegionReasoner-7B"}, "only for status: reported"),
    ({"reported_scores": {"detection": [1] * 8}}, "only for status: reported"),
    ({"status": "reported", "reported_scores": {"pose": [1] * 8}}, "unknown task 'pose'"),
    ({"status": "reported", "reported_scores": {"detection": [1] * 7}}, "detection: give 8 numbers"),
    ({"status": "reported", "reported_scores": {"detection": [1] * 7 + [100.5]}}, "100.5 is not a percentage"),
    ({"status": "reported", "reported_scores": {"detection": [-0.5] + [1] * 7}}, "-0.5 is not a percentage"),
    ({"notes": "a\x00b"}, "must not contain control characters (U+0000)"),
    ({"model": " \u200b"}, "must not be made only of invisible characters"),
])
def test_meta_rules(fields, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        _meta(**fields)


def test_meta_accepts_the_edges():
    assert _meta(status="reported", reported_scores={"detection": [0] * 7 + [100]}).reported_scores
    assert _meta(status="reported", paper_row="SegLLM-7B").paper_row == "SegLLM-7B"  # a segmentation-only row
    assert _meta(notes="line one\n\tline two", hub_id="org/m.v1", revision="v1.0", link="http://x.org/a").notes
    assert _meta(model="Ｍ").model == "Ｍ"


def test_reported_scores_fill_the_paper_columns_only():
    meta = _meta(status="reported", paper_row="SegLLM-7B")
    scores = sub._reported_scores(meta)
    assert set(scores) == {"segmentation"} and scores["segmentation"]["R8+"] is None
    inline = sub._reported_scores(_meta(status="reported", reported_scores={"detection": list(range(8))}))
    assert inline == {"detection": {"R1": 0, "R2": 1, "R3": 2, "R4": 3, "R5": 4, "R6": 5, "R7": 6, "R8+": None,
                                    "Avg": 7}}


def test_leaderboard_scores_skip_a_task_without_values(results):
    scores = leaderboard_scores(results)
    assert set(scores) == {"detection"} and scores["detection"]["R1"] == results.rounds[0].ap50  # no masks: no gIoU
    assert scores["detection"]["R8+"] == results.buckets[0].ap50 and scores["detection"]["Avg"] == results.overall.ap50


def test_read_meta_errors(tmp_path):
    file = tmp_path / "submission.yaml"
    file.write_text("- a\n- b\n")
    with pytest.raises(SubmissionError, match="expected a mapping of fields, got list"):
        read_meta(file)
    file.write_bytes(b"model: \xff\n")
    with pytest.raises(SubmissionError, match="not UTF-8 text"):
        read_meta(file)
    file.write_text("model: [\n")
    with pytest.raises(SubmissionError, match=r"not valid YAML \(line 2\)"):
        read_meta(file)
    file.write_text("model: a\x07\n")  # a character YAML refuses before parsing: no line mark
    with pytest.raises(SubmissionError, match=r"submission.yaml: not valid YAML: .*#x0007"):
        read_meta(file)


def test_summary_lists_problems_only_when_there_are_some(tmp_path):
    assert SubmissionReport(tmp_path / "2026-01-01_a", "verified").summary() == "2026-01-01_a: verified"
    rejected = SubmissionReport(tmp_path / "2026-01-01_a", "rejected", problems=["one", "two"])
    assert rejected.summary() == "2026-01-01_a: rejected\n  - one\n  - two"


def test_duplicate_keys_compare_every_identifying_field():
    base = _meta(hub_id="org/m", revision="v1", adapter_preset="p")
    assert duplicate_key(base) == duplicate_key(_meta(model="m", hub_id="ORG/M", revision="V1", adapter_preset="P"))
    for field, value in (("model", "N"), ("hub_id", "org/n"), ("revision", "v2"), ("benchmark", "other"),
                         ("reference_mode", "gold"), ("adapter_preset", "q")):
        assert duplicate_key(base) != duplicate_key(base.model_copy(update={field: value})), field


# --------------------------------------------------------------------------------------------
# Folders (a submission made from a tiny hand-made run, no model run)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def entry(tmp_path, bench):
    """A verified entry of a log of gold boxes ('fixed-box': it writes its boxes into raw_text)."""
    from regiondial_bench.adapters.builtin import answer_text

    run = tmp_path / "run"
    run.mkdir()
    spec = RunSpec(adapter="fixed-box", bench_name="sample", bench_hash=bench.content_hash, bench_location="sample")
    records = [r.model_copy(update={"raw_text": answer_text(r.regions)}) for r in _records(bench, wrong={("test-2", 0)})]
    by_key = {r.key: r for r in records}
    records = [r.model_copy(update={"references": [
        UsedReference(turn=ref.turn, source="predicted", box=by_key[(r.dialogue_id, ref.turn)].regions[0].box,
                      text=format_box(by_key[(r.dialogue_id, ref.turn)].regions[0].box))
        for ref in bench.dialogue(r.dialogue_id).turns[r.turn].references if ref.turn < r.turn]}) for r in records]
    records = [r.model_copy(update={"question": render_question(bench.dialogue(r.dialogue_id).turns[r.turn],
                                                                    r.references)}) for r in records]
    (run / "run.json").write_text(spec.model_dump_json())
    (run / "predictions.jsonl").write_text("".join(r.model_dump_json(exclude_defaults=True) + "\n" for r in records))
    results = score_records(bench, records, provenance=_prov(bench, adapter="fixed-box"), n_bootstrap=20)
    (run / "results.json").write_text(results.model_dump_json())
    report = create_submission(run, "entry", root=tmp_path / "subs", date=DATE)
    assert report.status == "verified", report.summary()
    return report.folder


def test_a_reported_entry_with_a_problem_is_rejected_not_reported(tmp_path):
    from pathlib import Path

    committed = Path(__file__).resolve().parents[2] / "submissions" / "2026-02-04_paper-qwen2.5-vl-7b"
    good = tmp_path / committed.name
    shutil.copytree(committed, good)
    assert validate_submission(good).status == "reported"
    moved = tmp_path / "2026-02-05_paper-qwen2.5-vl-7b"  # the folder's date is not the entry's
    good.rename(moved)
    report = validate_submission(moved)
    assert report.status == "rejected" and report.problems == [
        "folder date 2026-02-05 differs from the date field 2026-02-04"]


def test_another_bench_hash_is_the_only_problem_named(entry):
    """Re-scoring against a bench the entry was not run on would only add noise to the one problem."""
    other = "sha256:" + "0" * 64
    data = json.loads((entry / "results.json").read_text())
    data["provenance"]["bench_hash"] = other
    data["overall"]["ap50"] = 12.5  # as if scored on another bench
    (entry / "results.json").write_text(json.dumps(data))
    spec = json.loads((entry / "run.json").read_text())
    (entry / "run.json").write_text(json.dumps({**spec, "bench_hash": other}))
    problems = validate_submission(entry).problems
    assert len(problems) == 1 and problems[0].startswith("bench hash mismatch"), problems


def test_a_submission_that_fails_while_being_written_leaves_nothing(entry, tmp_path, monkeypatch):
    run = tmp_path / "run"
    root = entry.parent

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sub, "_write_log", full)
    with pytest.raises(OSError, match="No space left"):
        create_submission(run, "other", root=root, date=DATE, model="Other")
    assert sorted(p.name for p in root.iterdir()) == [entry.name]


def test_the_duplicate_check_skips_links_files_and_unreadable_entries(entry, tmp_path):
    """Only real entry folders can make a new entry a duplicate; a link, a stray file or an entry whose
    submission.yaml cannot be read is skipped (validate_all reports those on their own)."""
    run, root = tmp_path / "run", entry.parent
    outside = tmp_path / "elsewhere"
    entry.rename(outside)
    (root / "2026-03-01_link").symlink_to(outside)
    (root / "2026-01-01_broken").mkdir()
    (root / "2026-01-01_broken" / "submission.yaml").write_text("model: [\n")
    (root / "2026-01-02_stray.txt").write_text("x")
    report = create_submission(run, "entry2", root=root, date=DATE)  # the same model as the linked entry
    assert report.status == "verified", report.summary()


def test_folder_rules(entry):
    (entry / "extra").mkdir()
    (entry / "notes.txt").write_text("x")
    problems = validate_submission(entry).problems
    assert "extra/: sub-folders are not allowed in a submission" in problems
    assert any(p.startswith("notes.txt: unexpected file (allowed: README.md, predictions.jsonl.gz") for p in problems)
    shutil.rmtree(entry / "extra")
    (entry / "notes.txt").unlink()
    moved = entry.parent / "2026-03-02_entry"
    entry.rename(moved)
    assert validate_submission(moved).problems == ["folder date 2026-03-02 differs from the date field 2026-03-01"]
    link = moved.parent / "2026-03-01_link"
    link.symlink_to(moved)
    assert validate_submission(link).problems == [f"{link} is not a submission folder"]
    assert validate_submission(moved.parent / "2026-03-01_missing").problems == [
        f"{moved.parent / '2026-03-01_missing'} is not a submission folder"]
    (moved / "submission.yaml").unlink()
    assert validate_submission(moved).problems == ["submission.yaml is missing"]


def test_results_and_log_read_errors(entry, monkeypatch):
    size = (entry / "results.json").stat().st_size
    monkeypatch.setattr(sub, "MAX_RESULTS_BYTES", size)
    assert validate_submission(entry).status == "verified"  # at the limit
    monkeypatch.setattr(sub, "MAX_RESULTS_BYTES", size - 1)
    assert validate_submission(entry).problems == [f"results.json is {size} bytes; the limit is {size - 1}"]
    monkeypatch.undo()
    with gzip.open(entry / COMPRESSED_LOG, "ab") as f:
        f.write(b"{broken\n")
    problems = validate_submission(entry).problems
    assert len(problems) == 1 and problems[0].startswith(f"{COMPRESSED_LOG}:200: not a prediction record"), problems
    (entry / COMPRESSED_LOG).unlink()
    assert validate_submission(entry).problems[0].startswith(f"{COMPRESSED_LOG} is missing")


def test_run_json_read_errors(entry, monkeypatch):
    size = (entry / "results.json").stat().st_size + 100  # run.json padded to be the larger file
    (entry / "run.json").write_text((entry / "run.json").read_text().ljust(size))
    monkeypatch.setattr(sub, "MAX_RESULTS_BYTES", size)
    assert validate_submission(entry).status == "verified"  # a run.json at the limit is read
    monkeypatch.undo()
    real = type(entry).read_bytes

    def unreadable(path):
        if path.name == "run.json":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(type(entry), "read_bytes", unreadable)
    assert validate_submission(entry).problems[0] == "run.json: cannot be read (Permission denied)"
    monkeypatch.undo()
    (entry / "run.json").write_text("[" * 100_000)
    assert validate_submission(entry).problems[0].startswith("run.json: not a valid run spec")
    monkeypatch.setattr(sub, "MAX_RESULTS_BYTES", 5000)  # results.json is smaller
    assert validate_submission(entry).problems == ["run.json is 100000 bytes; the limit is 5000"]


def test_meta_against_results(entry):
    meta = yaml.safe_load((entry / "submission.yaml").read_text())
    for field, value, problem in (
            ("reference_mode", "gold", "reference mode: submission.yaml says 'gold', results.json 'predicted'"),
            ("bench_hash", "sha256:" + "1" * 64, "bench hash mismatch: submission.yaml names sha256:111")):
        (entry / "submission.yaml").write_text(yaml.safe_dump({**meta, field: value}))
        assert any(p.startswith(problem) for p in validate_submission(entry).problems), field
    (entry / "submission.yaml").write_text(yaml.safe_dump({**meta, "benchmark": "other"}))
    problems = validate_submission(entry).problems
    assert problems[0] == "benchmark: submission.yaml says 'other', results.json 'sample'"


def test_a_bench_that_cannot_be_loaded_is_a_problem(entry):
    def broken(name):
        raise OSError("disk gone")

    report = validate_submission(entry, broken)
    assert report.status == "rejected" and report.problems == ["bench: disk gone"]

    def unavailable(name):
        from regiondial_bench.bench.registry import BenchUnavailable

        raise BenchUnavailable("not here")

    assert validate_submission(entry, unavailable).status == "unavailable"
    (entry / "README.md").write_text("x")
    (entry / "stray.txt").write_text("x")
    report = validate_submission(entry, unavailable)
    assert report.status == "rejected" and report.problems[-1] == "bench: not here"  # other problems too


def test_validate_all_skips_unreadable_entries_for_duplicates(entry):
    broken = entry.parent / "2026-03-01_broken"
    shutil.copytree(entry, broken)
    (broken / "submission.yaml").write_text("model: [\n")
    copy = entry.parent / "2026-03-01_entry2"
    shutil.copytree(entry, copy)
    reports = {r.name: r for r in validate_all(entry.parent)}
    assert reports[broken.name].problems[0].startswith("submission.yaml: not valid YAML")
    assert reports[entry.name].status == "verified"
    assert reports[copy.name].problems == ["duplicate of 2026-03-01_entry (same model, revision, bench and "
                                           "reference mode)"]
    with pytest.raises(FileNotFoundError, match="no submissions folder"):
        validate_all(entry.parent / "nope")


def test_create_refuses_and_cleans_up(entry, tmp_path, bench):
    run = tmp_path / "run"
    root = entry.parent
    with pytest.raises(SubmissionError, match="already exists; choose another --name"):
        create_submission(run, "entry", root=root, date=DATE, model="Other")
    with pytest.raises(SubmissionError, match="duplicate of 2026-03-01_entry"):
        create_submission(run, "again", root=root, date=DATE, model="entry")
    with pytest.raises(SubmissionError, match="size: String should have at most 16 characters"):
        create_submission(run, "again", root=root, date=DATE, model="Other", size="x" * 17)
    log = (run / "predictions.jsonl").read_text().splitlines(keepends=True)
    (run / "predictions.jsonl").write_text("".join(log[1:]))
    with pytest.raises(SubmissionError, match="the run does not validate:\n  - missing turns: 1 of 199"):
        create_submission(run, "again", root=root, date=DATE, model="Other")
    assert sorted(p.name for p in root.iterdir()) == [entry.name]  # nothing left behind
    (run / "predictions.jsonl").unlink()
    with pytest.raises(SubmissionError, match="has no predictions.jsonl"):
        create_submission(run, "again", root=root, date=DATE, model="Other")
    assert not (tmp_path / "fresh").exists()


def test_create_keeps_the_runs_files_and_compresses_deterministically(entry, tmp_path):
    run = tmp_path / "run"
    again = create_submission(run, "entry", root=tmp_path / "other", date=DATE, model="Entry 2", notes="n",
                              authors=["A"], adapter_preset="my-preset")
    assert again.status == "verified"
    assert (again.folder / COMPRESSED_LOG).read_bytes() == (entry / COMPRESSED_LOG).read_bytes()
    with gzip.open(entry / COMPRESSED_LOG, "rb") as f:
        assert f.read() == (run / "predictions.jsonl").read_bytes()
    assert (entry / "run.json").read_bytes() == (run / "run.json").read_bytes()
    assert (entry / "results.json").read_bytes() == (run / "results.json").read_bytes()
    meta = yaml.safe_load((again.folder / "submission.yaml").read_text())
    assert meta["adapter_preset"] == "my-preset" and meta["authors"] == ["A"] and meta["notes"] == "n"
    assert "hub_id" not in meta and meta["status"] == "submitted" and meta["benchmark"] == "sample"
    first = yaml.safe_load((entry / "submission.yaml").read_text())
    assert first["adapter_preset"] == "fixed-box" and "notes" not in first and "authors" not in first


def test_redacted_logs_are_written_with_digests(entry, tmp_path):
    from regiondial_bench.bench.registry import question_digest

    run = tmp_path / "run"
    sub._write_log(run / "predictions.jsonl", tmp_path / "redacted.gz", redact=True)
    with gzip.open(tmp_path / "redacted.gz", "rt") as f:
        lines = [json.loads(line) for line in f]
    plain = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert [line["question"] for line in lines] == [question_digest(p["question"]) for p in plain]
    sub._write_log(tmp_path / "redacted.gz", tmp_path / "again.gz", redact=True)  # digests stay digests
    assert (tmp_path / "again.gz").read_bytes() == (tmp_path / "redacted.gz").read_bytes()
    sub._write_log(tmp_path / "redacted.gz", tmp_path / "copy.gz", redact=False)  # a .gz is copied as it is
    assert (tmp_path / "copy.gz").read_bytes() == (tmp_path / "redacted.gz").read_bytes()
    assert (tmp_path / "redacted.gz").read_bytes()[4:8] == b"\0\0\0\0"  # no timestamp: deterministic


def test_a_field_of_the_wrong_type_is_a_schema_error_not_a_crash():
    for field in ("notes", "model", "size"):
        with pytest.raises(ValueError, match=f"{field}\n  Input should be a valid string"):
            _meta(**{field: 5})


def test_leaderboard_scores_keep_a_task_with_some_blank_columns(results):
    no_bucket = results.model_copy(update={"buckets": []})
    scores = leaderboard_scores(no_bucket)
    assert scores["detection"]["R8+"] is None and scores["detection"]["R1"] == results.rounds[0].ap50


def test_a_claimed_parser_is_compared_when_given(bench):
    spec = RunSpec(adapter="x", bench_name=bench.name, bench_hash=bench.content_hash, bench_location="")
    assert provenance_problems(_prov(bench, parser="upstream"), spec) == [
        "provenance.parser: results.json says 'upstream', run.json 'tolerant'"]


def test_a_long_bad_value_is_cut_at_sixty_characters():
    assert bootstrap_settings({"seed": "x" * 58}) == f"provenance.bootstrap.seed must be an integer in 0..{2**63 - 1}, " \
                                                     f"got '{'x' * 58}'"  # repr of 60 characters: whole
    assert bootstrap_settings({"seed": "x" * 59}).endswith(f"got '{'x' * 56}...")  # 61: cut


def test_create_needs_the_run_json(entry, tmp_path):
    run = tmp_path / "run"
    (run / "run.json").unlink()
    with pytest.raises(SubmissionError, match="run.json is missing: a verified entry needs the run's settings"):
        create_submission(run, "norun", root=tmp_path / "other", date=DATE, model="Other")
    assert not any((tmp_path / "other").iterdir())
