"""Submissions: verified when re-scoring reproduces the claim, rejected with the specific reason."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import shutil

import pytest
from click.testing import CliRunner

from regiondial_bench.cli import main
from regiondial_bench.publish.submission import (
    COMPRESSED_LOG,
    SubmissionError,
    create_submission,
    validate_all,
    validate_submission,
)

DATE = dt.date(2026, 3, 1)


@pytest.fixture
def submission(tmp_path, sample_runs):
    """A verified submission of the fallible predicted run, in a fresh folder per test."""
    report = create_submission(
        sample_runs["test-fallible-predicted"],
        "fallible",
        root=tmp_path / "subs",
        date=DATE,
        model="Fallible-1B",
        size="1B",
        authors=["A. Tester"],
        link="https://example.org/fallible",
    )
    assert report.status == "verified", report.summary()
    return report.folder


def _lines(folder):
    with gzip.open(folder / COMPRESSED_LOG, "rt", encoding="utf-8") as f:
        return f.read().splitlines(keepends=True)


def _write_lines(folder, lines):
    with gzip.open(folder / COMPRESSED_LOG, "wt", encoding="utf-8") as f:
        f.writelines(lines)


def _edit_results(folder, edit):
    data = json.loads((folder / "results.json").read_text())
    edit(data)
    (folder / "results.json").write_text(json.dumps(data))


def test_created_submission_is_verified(submission):
    assert sorted(p.name for p in submission.iterdir()) == [
        "predictions.jsonl.gz",
        "results.json",
        "run.json",
        "submission.yaml",
    ]
    report = validate_submission(submission)
    assert report.status == "verified" and report.problems == []
    assert report.meta.model == "Fallible-1B" and report.meta.reference_mode == "predicted"
    assert set(report.scores) == {"detection", "segmentation"}


def test_edited_score_is_rejected_naming_the_cell(submission):
    _edit_results(submission, lambda d: d["rounds"][2].update(ap50=d["rounds"][2]["ap50"] + 1.0))
    report = validate_submission(submission)
    assert report.status == "rejected"
    assert any("scores differ" in p and "R3 ap50: claimed" in p for p in report.problems), report.problems


def test_missing_turn_is_rejected(submission):
    lines = _lines(submission)
    dropped = json.loads(lines[5])
    _write_lines(submission, lines[:5] + lines[6:])
    report = validate_submission(submission)
    assert report.status == "rejected"
    expected = f"missing turns: 1 of {len(lines)} turns have no prediction: {dropped['dialogue_id']}#{dropped['turn']}"
    assert expected in report.problems


def test_duplicated_turn_is_rejected(submission):
    lines = _lines(submission)
    dup = json.loads(lines[3])
    _write_lines(submission, [*lines, lines[3]])
    report = validate_submission(submission)
    assert report.status == "rejected"
    assert any(
        p.startswith("duplicated turns: 1 turn(s)") and f"{dup['dialogue_id']}#{dup['turn']} (2x)" in p
        for p in report.problems
    ), report.problems


def test_other_bench_hash_is_rejected(submission):
    other = "sha256:" + "0" * 64
    _edit_results(submission, lambda d: d["provenance"].update(bench_hash=other))
    report = validate_submission(submission)
    assert report.status == "rejected"
    assert any(p.startswith("bench hash mismatch") and other in p for p in report.problems), report.problems


def test_unknown_turn_is_rejected(submission):
    lines = _lines(submission)
    extra = json.loads(lines[0])
    extra["turn"] = 99
    _write_lines(submission, [*lines, json.dumps(extra) + "\n"])
    report = validate_submission(submission)
    assert any(p.startswith("unknown turns: 1") for p in report.problems), report.problems


def test_nan_and_bad_json_and_bad_yaml(submission):
    text = (submission / "results.json").read_text()
    (submission / "results.json").write_text(text.replace('"ap50":', '"ap50": NaN, "x":', 1))
    report = validate_submission(submission)
    assert report.status == "rejected" and "NaN is not a valid number" in report.problems[0]
    (submission / "results.json").write_text("{not json")
    assert "not valid JSON" in validate_submission(submission).problems[0]
    (submission / "submission.yaml").write_text("model: [unclosed\n")
    problems = validate_submission(submission).problems
    assert problems[0].startswith("submission.yaml: not valid YAML")


def test_schema_errors_name_the_field(submission):
    text = (submission / "submission.yaml").read_text()
    (submission / "submission.yaml").write_text(
        text.replace("https://example.org/fallible", "javascript:alert(1)")
    )
    problems = validate_submission(submission).problems
    assert problems == ["submission.yaml: link: Value error, 'javascript:alert(1)' is not an http(s) URL"]
    (submission / "submission.yaml").write_text(text + "surprise: 1\n")
    assert "surprise: Extra inputs are not permitted" in validate_submission(submission).problems[0]


def test_path_tricks_are_refused(submission, sample_runs, tmp_path):
    with pytest.raises(SubmissionError, match="submission name"):
        create_submission(sample_runs["oracle-gold"], "../escape", root=tmp_path / "subs", date=DATE)
    (submission / "evil.yaml").symlink_to("/etc/passwd")
    report = validate_submission(submission)
    assert "evil.yaml: symbolic links are not allowed in a submission" in report.problems
    (submission / "evil.yaml").unlink()
    bad = submission.parent / "not a good name"
    shutil.copytree(submission, bad)
    assert any("folder name" in p for p in validate_submission(bad).problems)


def test_duplicate_entries_are_rejected(submission):
    copy = submission.parent / "2026-03-01_fallible-again"
    shutil.copytree(submission, copy)
    reports = {r.name: r for r in validate_all(submission.parent)}
    assert reports[submission.name].status == "verified"
    assert reports[copy.name].status == "rejected"
    assert "duplicate of 2026-03-01_fallible" in reports[copy.name].problems[0]


def test_reported_entry_and_markup_name(tmp_path):
    folder = tmp_path / "2026-02-04_paper-x"
    folder.mkdir()
    (folder / "submission.yaml").write_text(
        "model: '<script>alert(1)</script>'\nbenchmark: refcocoplus\ndate: 2026-02-04\n"
        "status: reported\nreported_scores:\n  detection: [1, 2, 3, 4, 5, 6, 7, 8]\n"
    )
    report = validate_submission(folder)
    assert report.status == "reported", report.problems
    assert report.scores["detection"]["R7"] == 7 and report.scores["detection"]["R8+"] is None
    (folder / "submission.yaml").write_text(
        "model: m\nbenchmark: refcocoplus\ndate: 2026-02-04\nstatus: reported\nreported_scores:\n"
        "  detection: [1, 2, 3, 4, 5, 6, 7, .nan]\n"
    )
    assert "not a percentage" in validate_submission(folder).problems[0]


def test_cli_submit_creates_and_validates(sample_runs, tmp_path):
    root = tmp_path / "subs"
    args = [
        "submit",
        str(sample_runs["oracle-predicted"]),
        "--name",
        "oracle",
        "--root",
        str(root),
        "--date",
        "2026-03-02",
        "--model",
        "Oracle",
        "--hub-id",
        "org/oracle",
        "--revision",
        "abc123",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "2026-03-02_oracle: verified" in result.output
    again = CliRunner().invoke(main, args)
    assert again.exit_code != 0 and "already exists" in again.output
    check = CliRunner().invoke(main, ["submit", str(root / "2026-03-02_oracle"), "--validate-only"])
    assert check.exit_code == 0 and "verified" in check.output


@pytest.mark.parametrize(("broken", "message"), [
    ("no results", "has no results.json: score the run first (regiondial score "),
    ("no results, broken run.json", "run.json is unreadable"),
    ("repeats folder", "is the folder of `evaluate --repeats`"),
])
def test_submit_of_a_folder_it_cannot_use_says_what_to_do(sample_runs, tmp_path, broken, message):
    run = tmp_path / "run"
    shutil.copytree(sample_runs["oracle-predicted"], run)
    (run / "results.json").unlink()
    if "run.json" in broken:
        (run / "run.json").write_bytes(b"\xff")
    if broken == "repeats folder":
        run.rename(tmp_path / "repeat-0")
        run.mkdir()
        (tmp_path / "repeat-0").rename(run / "repeat-0")
        (run / "repeats.json").write_text("{}")
    result = CliRunner().invoke(main, ["submit", str(run), "--name", "x", "--root", str(tmp_path / "subs")])
    assert result.exit_code == 1 and message in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert not (tmp_path / "subs").exists() or not any((tmp_path / "subs").iterdir())


def test_unknown_benchmark_needs_bench_option(submission):
    text = (submission / "submission.yaml").read_text()
    (submission / "submission.yaml").write_text(text.replace("benchmark: sample", "benchmark: other"))
    problems = validate_submission(submission).problems
    assert any("not registered" in p and "--bench other=PATH" in p for p in problems), problems


def test_impossible_yaml_date_is_a_clear_error_not_a_crash(submission):
    text = (submission / "submission.yaml").read_text()
    (submission / "submission.yaml").write_text(text.replace("date: '2026-03-01'", "date: 2026-13-45"))
    report = validate_submission(submission)
    assert report.status == "rejected"
    assert report.problems[0].startswith("submission.yaml: not valid YAML"), report.problems


def test_trailing_newline_cannot_sneak_into_names(sample_runs, submission, tmp_path):
    with pytest.raises(SubmissionError, match="submission name"):
        create_submission(sample_runs["oracle-gold"], "oracle\n", root=tmp_path / "subs", date=DATE)
    assert not (tmp_path / "subs" / "2026-03-01_oracle\n").exists()
    text = (submission / "submission.yaml").read_text()
    for old, new in (
        ("benchmark: sample", 'benchmark: "sample\\n"'),
        ("link: https://example.org/fallible", 'link: "https://example.org/fallible\\n"'),
        ("size: 1B", 'size: 1B\nhub_id: "org/model\\n"'),
    ):
        (submission / "submission.yaml").write_text(text.replace(old, new))
        report = validate_submission(submission)
        assert report.status == "rejected", (new, report.problems)
    (submission / "submission.yaml").write_text(text)
    bad = submission.parent / (submission.name + "\n")
    shutil.copytree(submission, bad)
    assert any("folder name" in p for p in validate_submission(bad).problems)


def test_run_json_is_validated_when_present(submission):
    (submission / "run.json").write_text("not json")
    report = validate_submission(submission)
    assert report.status == "rejected"
    assert any(p.startswith("run.json: not a valid run spec") for p in report.problems), report.problems


def test_gold_references_claimed_as_predicted_are_rejected(submission, sample_runs, tmp_path):
    """A log run with gold references but relabelled 'predicted' fails the replay of the mode."""
    gold_log = sample_runs["test-fallible-gold"] / "predictions.jsonl"
    relabelled = []
    for line in gold_log.read_text().splitlines(keepends=True):
        record = json.loads(line)
        for ref in record.get("references", []):
            ref["source"] = "predicted"
        relabelled.append(json.dumps(record) + "\n")
    _write_lines(submission, relabelled)
    report = validate_submission(submission)
    assert report.status == "rejected"
    assert any("were not asked with 'predicted' references" in p for p in report.problems), report.problems


def test_absurd_bootstrap_request_is_rejected_not_run(submission):
    _edit_results(submission, lambda d: d["provenance"]["bootstrap"].update(resamples=10**9))
    report = validate_submission(submission)
    assert report.status == "rejected"
    assert any("resamples must be an integer" in p for p in report.problems), report.problems


@pytest.mark.parametrize("revision", ["../../other", "main/../x", "-rf", "a b"])
def test_revision_cannot_carry_path_tricks(submission, revision):
    import yaml

    meta = yaml.safe_load((submission / "submission.yaml").read_text())
    meta["revision"] = revision
    (submission / "submission.yaml").write_text(yaml.safe_dump(meta))
    report = validate_submission(submission)
    assert report.status == "rejected"
    assert any("is not a revision" in p for p in report.problems), report.problems


# --------------------------------------------------------------------------------------------
# Limits (issue 9): sizes, bootstrap settings, look-alike names, duplicates at submit time
# --------------------------------------------------------------------------------------------


def test_a_gzip_bomb_is_rejected_while_streaming(submission, monkeypatch):
    import regiondial_bench.publish.submission as sub

    monkeypatch.setattr(sub, "MAX_LOG_UNCOMPRESSED_BYTES", 4 * 1024 * 1024)
    with gzip.open(submission / COMPRESSED_LOG, "wb", compresslevel=1) as f:
        for _ in range(64):  # 64 MiB of zeros, about 64 KiB compressed
            f.write(b"\0" * (1 << 20))
    assert (submission / COMPRESSED_LOG).stat().st_size < 1024 * 1024
    report = validate_submission(submission)
    assert report.status == "rejected"
    assert any("decompresses to more than 4194304 bytes" in p for p in report.problems), report.problems


def test_compressed_log_and_results_sizes_are_capped(submission, monkeypatch):
    import regiondial_bench.publish.submission as sub

    monkeypatch.setattr(sub, "MAX_LOG_BYTES", 100)
    problems = validate_submission(submission).problems
    assert any("the limit is 100" in p and COMPRESSED_LOG in p for p in problems), problems
    monkeypatch.setattr(sub, "MAX_RESULTS_BYTES", 100)
    problems = validate_submission(submission).problems
    assert any("results.json is" in p and "the limit is 100" in p for p in problems), problems


def test_a_log_that_is_not_gzip_is_a_problem_not_a_crash(submission):
    (submission / COMPRESSED_LOG).write_bytes(b"plain text, not gzip\n")
    report = validate_submission(submission)
    assert report.status == "rejected"
    assert any("not a readable gzip file" in p for p in report.problems), report.problems


@pytest.mark.parametrize("seed", ["abc", [1], 1.5, True, -1, 2**70, {"a": 1}, "9" * 5000])
def test_malformed_bootstrap_seed_is_rejected_not_a_crash(submission, seed, tmp_path):
    from regiondial_bench.publish.leaderboard import build_leaderboard

    _edit_results(submission, lambda d: d["provenance"]["bootstrap"].update(seed=seed))
    report = validate_submission(submission)
    assert report.status == "rejected"
    assert any("bootstrap.seed must be an integer" in p for p in report.problems), report.problems
    with pytest.raises(ValueError, match="bootstrap.seed must be an integer"):
        build_leaderboard(submission.parent, tmp_path / "out")


def test_bootstrap_must_be_a_mapping(submission):
    _edit_results(submission, lambda d: d["provenance"].update(bootstrap={"resamples": "many"}))
    assert any("bootstrap.resamples must be an integer" in p for p in validate_submission(submission).problems)


@pytest.mark.parametrize(
    "lookalike",
    ["Ｆａｌｌｉｂｌｅ-1B", "Fallible\u200b-1B", "Fall\u00adible-1B", "fallible-1b", "Fallible\ufeff-1B",
     "Fаllible-1B",  # Cyrillic а
     "Fallible-1Β",  # Greek capital beta
     "FaIIibIe-1B",  # capital I for l
     "Fallib1e-1B"],  # digit one for l
)
def test_lookalike_names_are_duplicates(submission, lookalike):
    import yaml

    copy = submission.parent / "2026-03-01_fallible-lookalike"
    shutil.copytree(submission, copy)
    meta = yaml.safe_load((copy / "submission.yaml").read_text())
    meta["model"] = lookalike
    (copy / "submission.yaml").write_text(yaml.safe_dump(meta, allow_unicode=True))
    reports = {r.name: r for r in validate_all(submission.parent)}
    assert reports[submission.name].status == "verified"
    assert reports[copy.name].status == "rejected"
    assert any("duplicate of 2026-03-01_fallible" in p for p in reports[copy.name].problems)


def test_submit_itself_refuses_a_duplicate(submission, sample_runs):
    with pytest.raises(SubmissionError, match="duplicate of 2026-03-01_fallible"):
        create_submission(sample_runs["test-fallible-predicted"], "fallible-again", root=submission.parent,
                          date=DATE, model="Ｆａｌｌｉｂｌｅ\u200b-1B", size="1B")
    assert sorted(p.name for p in submission.parent.iterdir()) == [submission.name]
    # another model name is not a duplicate
    other = create_submission(sample_runs["test-fallible-predicted"], "fallible-2", root=submission.parent,
                              date=DATE, model="Fallible-2B", size="2B")
    assert other.status == "verified"
