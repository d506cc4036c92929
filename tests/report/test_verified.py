""""Verified" means verified (issues 21 and 26): the validator re-derives every record and every claim.

Each attack edits a verified submission the way an adversarial submitter would, re-scores it
honestly (so the claimed numbers match the edited log), and must be rejected with the first
mismatching dialogue, turn and field named.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json

import pytest
import yaml

from regiondial_bench.api import evaluate, load_bench
from regiondial_bench.geometry import box_to_rle
from regiondial_bench.metrics import score_records
from regiondial_bench.publish import submission as sub
from regiondial_bench.publish.submission import (
    COMPRESSED_LOG,
    compare_results,
    create_submission,
    gold_problems,
    log_size_problem,
    validate_all,
    validate_submission,
)
from regiondial_bench.schema import PredictionRecord, Results, RunConfig, UsedReference, read_prediction_log

DATE = dt.date(2026, 3, 1)


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory, sample_bench):
    """A noisy-oracle run (text-only wrong answers and format errors among them), box masks."""
    out = tmp_path_factory.mktemp("noisy") / "run"
    config = RunConfig(adapter="noisy-oracle", adapter_options={"error_rate": 0.3, "seed": 3}, mask_producer="box")
    evaluate(sample_bench, config, out, bench_location="sample", progress=False, n_bootstrap=100)
    return out


@pytest.fixture
def noisy(tmp_path, noisy_run):
    report = create_submission(noisy_run, "noisy", root=tmp_path / "subs", date=DATE, model="Noisy-1B")
    assert report.status == "verified", report.summary()
    return report.folder


@pytest.fixture
def fallible(tmp_path, sample_runs):
    report = create_submission(sample_runs["test-fallible-predicted"], "fallible", root=tmp_path / "subs",
                               date=DATE, model="Fallible-1B", size="1B")
    assert report.status == "verified", report.summary()
    return report.folder


def _records(folder) -> list[dict]:
    with gzip.open(folder / COMPRESSED_LOG, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _write(folder, records: list[dict]) -> None:
    with gzip.open(folder / COMPRESSED_LOG, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def _rescore(folder) -> Results:
    """Re-score the (edited) log with the claimed settings and write results.json: the claims then
    match the log, so only re-deriving the records can notice the edit."""
    claimed = Results.read(folder / "results.json")
    boot = claimed.provenance.bootstrap
    records = read_prediction_log(folder / COMPRESSED_LOG)
    results = score_records(load_bench("sample"), records, provenance=claimed.provenance,
                            n_bootstrap=boot["resamples"], seed=boot["seed"])
    (folder / "results.json").write_text(results.model_dump_json(indent=2))
    return results


def _edit_results(folder, edit) -> None:
    data = json.loads((folder / "results.json").read_text())
    edit(data)
    (folder / "results.json").write_text(json.dumps(data))


def _problems(folder) -> list[str]:
    report = validate_submission(folder)
    assert report.status == "rejected", report.summary()
    return report.problems


def _gold(bench, record: dict) -> list[float]:
    return list(bench.dialogue(record["dialogue_id"]).turns[record["turn"]].gold_boxes[0])


def _unreferenced(bench, records: list[dict]) -> list[int]:
    """Positions of the records whose turn no later turn references (editing them changes no question)."""
    referenced = {(d.dialogue_id, r.turn) for d in bench for t in d.turns for r in t.references}
    return [i for i, r in enumerate(records) if (r["dialogue_id"], r["turn"]) not in referenced]


# --------------------------------------------------------------------------------------------
# Records re-derived
# --------------------------------------------------------------------------------------------


def test_hand_edited_regions_are_rejected_naming_the_first_turn(noisy, sample_bench):
    """Observed: regions set to the gold boxes, raw_text left as the model wrote it, re-scored: verified."""
    records = _records(noisy)
    edited = []
    for i in _unreferenced(sample_bench, records):
        record = records[i]
        gold = _gold(sample_bench, record)
        if record.get("regions", [{}])[0].get("box") == gold:
            continue
        image = sample_bench.dialogue(record["dialogue_id"]).image
        record.update(regions=[{"box": gold}], mask=box_to_rle(gold, image.height, image.width).model_dump())
        record.pop("error", None)
        record.pop("failure_kind", None)
        edited.append(record)
    assert len(edited) >= 5, "the noisy run must have wrong or unparsable answers to edit"
    _write(noisy, records)
    before = Results.read(noisy / "results.json").overall.ap50
    assert _rescore(noisy).overall.ap50 > before  # the edit pays, and the claims match the edited log
    problems = _problems(noisy)
    first = edited[0]
    assert any(p.startswith(f"{len(edited)} record(s) do not hold what their raw_text gives (first: dialogue "
                            f"'{first['dialogue_id']}' turn {first['turn']} regions: logged [{first['regions'][0]['box']}]")
               for p in problems), problems


def test_an_unparsable_answer_cannot_claim_a_region(noisy, sample_bench):
    records = _records(noisy)
    failed = next(r for r in records if r.get("error") and "no JSON" in r["error"])
    failed.update(regions=[{"box": _gold(sample_bench, failed)}])
    del failed["error"], failed["failure_kind"]
    failed.pop("mask", None)
    _write(noisy, records)
    _rescore(noisy)
    problems = _problems(noisy)
    assert any(f"turn {failed['turn']} regions: logged" in p and "raw_text reads as no region (no JSON found" in p
               for p in problems), problems


def test_a_failed_turn_cannot_hold_regions_or_lose_its_kind(noisy):
    records = _records(noisy)
    failed = next(r for r in records if r.get("error"))
    failed["failure_kind"] = None
    _write(noisy, records)
    assert any(f"turn {failed['turn']} failure_kind: logged None" in p for p in _problems(noisy))


@pytest.mark.parametrize("question", [
    "Output exactly this box: <box>[148, 66, 226, 146]</box>",  # leaks the gold box
    "Find the big yellow triangle",  # the bench's text, its final period dropped
])
def test_a_replaced_question_is_rejected_on_a_plain_bench(fallible, question):
    records = _records(fallible)
    records[3]["question"] = question
    _write(fallible, records)
    problems = _problems(fallible)
    assert any(p.startswith("1 record(s) were not asked what the bench asks (first: dialogue "
                            f"'{records[3]['dialogue_id']}' turn {records[3]['turn']} question: logged")
               for p in problems), problems


def test_answers_rotated_to_other_questions_are_rejected(fallible):
    records = _records(fallible)
    questions = [r["question"] for r in records]
    for record, question in zip(records, questions[1:] + questions[:1], strict=True):
        record["question"] = question
    _write(fallible, records)
    problems = _problems(fallible)
    assert any(p.startswith(f"{len(records)} record(s) were not asked what the bench asks (first: dialogue "
                            f"'{records[0]['dialogue_id']}' turn 0 question") for p in problems), problems


def test_a_reference_text_is_the_rendering_of_its_box(fallible):
    """The question may carry only the referenced box, never other text put in as its 'text'."""
    records = _records(fallible)
    record = next(r for r in records if r.get("references"))
    used = record["references"][0]
    leak = "the answer is [1, 2, 3, 4]"
    record["question"] = record["question"].replace(used["text"], leak)
    used["text"] = leak
    _write(fallible, records)
    problems = _problems(fallible)
    assert any(f"turn {record['turn']} references[turn {used['turn']}].text: logged {leak!r}" in p
               for p in problems), problems


def test_a_wrong_round_is_rejected(fallible):
    records = _records(fallible)
    records[2]["round"] += 1
    _write(fallible, records)
    assert any(f"turn {records[2]['turn']} round: logged {records[2]['round']}" in p for p in _problems(fallible))


def test_masks_are_re_derived_from_the_box_producer(fallible, sample_bench):
    records = _records(fallible)
    record = records[4]
    image = sample_bench.dialogue(record["dialogue_id"]).image
    gold_mask = sample_bench.dialogue(record["dialogue_id"]).turns[record["turn"]].gold_mask
    assert gold_mask is not None and record["mask"] != gold_mask.model_dump()
    record["mask"] = gold_mask.model_dump()  # a better mask than the box producer makes
    _write(fallible, records)
    _rescore(fallible)
    assert any(f"turn {record['turn']} mask: not the box producer's mask" in p for p in _problems(fallible))
    record["mask"] = box_to_rle(record["regions"][0]["box"], image.height + 1, image.width).model_dump()
    _write(fallible, records)
    _rescore(fallible)
    assert any(f"turn {record['turn']} mask: size [{image.height + 1}, {image.width}]" in p
               for p in _problems(fallible))
    del record["mask"]
    _write(fallible, records)
    _rescore(fallible)
    assert any(f"turn {record['turn']} mask: missing" in p for p in _problems(fallible))


def test_a_box_only_run_cannot_gain_masks(tmp_path, sample_bench):
    run = tmp_path / "run"
    evaluate(sample_bench, RunConfig(adapter="test-fallible"), run, bench_location="sample", progress=False,
             n_bootstrap=50)
    folder = create_submission(run, "boxes", root=tmp_path / "subs", date=DATE).folder
    records = _records(folder)
    for record in records:
        gold = sample_bench.dialogue(record["dialogue_id"]).turns[record["turn"]].gold_mask
        record["mask"] = gold.model_dump()
    _write(folder, records)
    _rescore(folder)
    problems = _problems(folder)
    assert any("mask: the run names no mask producer and its adapter makes no masks" in p for p in problems), problems


def test_a_reading_cannot_be_added_to_an_adapter_that_writes_original_pixels(fallible):
    records = _records(fallible)
    records[0]["reading"] = {"frame": [2.0, 2.0], "image": [320, 240]}
    _write(fallible, records)
    assert any(f"turn {records[0]['turn']} reading: this adapter writes its regions into raw_text as original pixels"
               in p for p in _problems(fallible))


def test_the_committed_submissions_still_verify():
    """The stricter rules keep every committed entry verified (their logs are the runs' own)."""
    from tests.conftest import UPSTREAM_DIR
    from tests.leaderboard.conftest import PROJECT

    benches = {}
    if (UPSTREAM_DIR / "refcocoplus.json").is_file():
        benches["refcocoplus"] = str(UPSTREAM_DIR / "refcocoplus.json")
    resolver = sub.default_bench_resolver(benches, registry=PROJECT / "leaderboard" / "benches.yaml")
    reports = validate_all(PROJECT / "submissions", resolver)
    assert all(r.status in ("verified", "reported") or (r.status == "unavailable" and not benches)
               for r in reports), [r.summary() for r in reports]
    assert sum(r.status == "verified" for r in reports) >= 3


# --------------------------------------------------------------------------------------------
# Claims of results.json re-derived
# --------------------------------------------------------------------------------------------


def _rejected_claim(folder, edit, expected: str) -> None:
    _edit_results(folder, edit)
    problems = _problems(folder)
    assert any("scores differ from the recomputed ones" in p and expected in p for p in problems), problems


def test_a_claim_above_the_tolerance_is_rejected_and_one_within_it_verified(fallible):
    ap50 = Results.read(fallible / "results.json").rounds[1].ap50
    _edit_results(fallible, lambda d: d["rounds"][1].update(ap50=ap50 + 0.006))
    assert validate_submission(fallible).status == "verified"  # rounding of a printed number
    _rejected_claim(fallible, lambda d: d["rounds"][1].update(ap50=ap50 + 0.05), f"R2 ap50: claimed {ap50 + 0.05}")


@pytest.mark.parametrize(("field", "label"), [("ciou", "R3 ciou"), ("giou", "R3 giou"), ("mean_iou", "R3 mean_iou"),
                                              ("ap50_top1", "R3 ap50_top1"), ("n", "R3 n"), ("failures", "R3 failures")])
def test_every_cell_is_compared(fallible, field, label):
    _rejected_claim(fallible, lambda d: d["rounds"][2].update({field: d["rounds"][2][field] + 1}), label)


@pytest.mark.parametrize("ci", ["ap50_ci", "giou_ci"])
def test_confidence_intervals_are_compared(fallible, ci):
    _rejected_claim(fallible, lambda d: d["overall"][ci].update(low=d["overall"][ci]["low"] - 1), f"Avg {ci}.low")


def test_a_claimed_blank_where_a_value_exists_is_rejected(fallible):
    _rejected_claim(fallible, lambda d: d["rounds"][0].update(giou=None), "R1 giou: claimed None")


def test_invented_and_deleted_rows_are_rejected(fallible):
    def invent(d):
        extra = dict(d["rounds"][0], round="11")
        d["rounds"].append(extra)

    _rejected_claim(fallible, invent, "R11: claimed, but the predictions have no such round")
    folder = fallible
    _rescore(folder)  # back to honest claims
    _rejected_claim(folder, lambda d: d["rounds"].pop(4), "R5: row missing from the claimed results")
    _rescore(folder)
    _rejected_claim(folder, lambda d: d.update(buckets=[]), "R8+: row missing from the claimed results")


def test_a_duplicated_round_row_is_rejected(fallible):
    _rejected_claim(fallible, lambda d: d["rounds"].insert(2, dict(d["rounds"][1])),
                    "R2: the claimed results hold 2 rows for it")


def test_failure_claims_are_compared(noisy):
    reasons = Results.read(noisy / "results.json").failure_reasons
    reason = next(iter(reasons))
    _rejected_claim(noisy, lambda d: d["failure_reasons"].update({reason: reasons[reason] + 1}),
                    f"failure_reasons[{reason!r}]: claimed {reasons[reason] + 1}, recomputed {reasons[reason]}")
    _rescore(noisy)
    _rejected_claim(noisy, lambda d: d.update(failure_kinds={"infra": 1}), "failure_kinds['answer']: claimed None")


def test_the_claimed_bootstrap_seed_is_the_one_replayed(fallible):
    """Another seed gives other intervals: claims made with one seed and labelled with another are rejected."""
    _rejected_claim(fallible, lambda d: d["provenance"]["bootstrap"].update(seed=12345), "ap50_ci")


def test_compare_results_names_an_overall_row_under_another_name(fallible):
    claimed = Results.read(fallible / "results.json")
    renamed = claimed.model_copy(update={"overall": claimed.overall.model_copy(update={"round": "3"})})
    diffs = compare_results(renamed, claimed)
    assert "Avg: the overall row is named '3', not 'all'" in diffs and "R3: the claimed results hold 2 rows for it" in diffs


# --------------------------------------------------------------------------------------------
# Provenance against run.json
# --------------------------------------------------------------------------------------------


def test_provenance_must_agree_with_run_json(fallible):
    _edit_results(fallible, lambda d: d["provenance"].update(adapter="oracle"))
    problems = _problems(fallible)
    assert "provenance.adapter: results.json says 'oracle', run.json 'test-fallible'" in problems, problems


def test_run_json_is_required_and_must_cover_the_whole_bench(fallible):
    spec = json.loads((fallible / "run.json").read_text())
    (fallible / "run.json").unlink()
    assert any(p.startswith("run.json is missing") for p in _problems(fallible))
    spec["shard"] = {"index": 0, "count": 2, "dialogue_ids": ["test-2"]}
    (fallible / "run.json").write_text(json.dumps(spec))
    assert any("run.json is the run of shard 0/2" in p for p in _problems(fallible))


# --------------------------------------------------------------------------------------------
# Text fields and names
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "value", "message"), [
    ("model", "\u200b\u2060\ufeff", "model: Value error, must not be made only of invisible characters"),
    ("model", "\u3164 \u2800", "model: Value error, must not be made only of invisible characters"),
    ("model", "Fallible\x9b1B", "model: Value error, must not contain control characters (U+009B)"),  # C1 CSI
    ("model", "\u202eB1-elbillaF", "model: Value error, must not contain bidirectional control characters (U+202E)"),
    ("size", "7B\u202e", "size: Value error, must not contain bidirectional control characters (U+202E)"),
    ("authors", ["A. Tester", "\u2067Mallory"],
     "authors: Value error, author 2: must not contain bidirectional control characters (U+2067)"),
    ("link", "https://example.org/\u202egnp.exe", "link: Value error, must not contain bidirectional control"),
    ("notes", "fine\nline\u200f", "notes: Value error, must not contain bidirectional control characters (U+200F)"),
    ("adapter_preset", "\x7f", "adapter_preset: Value error, must not contain control characters (U+007F)"),
])
def test_text_fields_refuse_control_bidi_and_invisible_text(fallible, field, value, message):
    meta = yaml.safe_load((fallible / "submission.yaml").read_text())
    meta[field] = value
    (fallible / "submission.yaml").write_text(yaml.safe_dump(meta, allow_unicode=True))
    problems = _problems(fallible)
    assert problems[0].startswith("submission.yaml: " + message), problems


def test_notes_keep_their_newlines(fallible):
    meta = yaml.safe_load((fallible / "submission.yaml").read_text())
    meta["notes"] = "first line\n\tsecond line"
    (fallible / "submission.yaml").write_text(yaml.safe_dump(meta))
    assert validate_submission(fallible).status == "verified"


# --------------------------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------------------------


def test_a_flood_of_blank_lines_is_refused_before_parsing(fallible, monkeypatch):
    """Observed: 64 KB that decompress to 64 MiB of blank lines cost 64 CPU-s to reject."""
    parsed = []
    monkeypatch.setattr(sub, "read_prediction_log", lambda *a, **k: parsed.append(1) or [])
    with gzip.open(fallible / COMPRESSED_LOG, "wb", compresslevel=9) as f:
        for _ in range(8):
            f.write(b"\n" * (1 << 20))
    assert (fallible / COMPRESSED_LOG).stat().st_size < 64 * 1024
    turns = load_bench("sample").num_turns
    problems = _problems(fallible)
    assert f"{COMPRESSED_LOG} holds more than {2 * turns + 64} lines for a bench of {turns} turns; refusing to read it" \
        in problems, problems
    assert not parsed


def test_the_decompressed_cap_is_per_turn_of_the_bench(fallible):
    records = _records(fallible)
    records[0]["raw_text"] = "x" * (70 * 1024 * len(records))
    _write(fallible, records)
    turns = len(records)
    assert log_size_problem(fallible / COMPRESSED_LOG, turns) == (
        f"{COMPRESSED_LOG} decompresses to more than {turns * 64 * 1024} bytes for a bench of {turns} turns; "
        "refusing to read it")
    assert log_size_problem(fallible / COMPRESSED_LOG) is None  # without a bench: the absolute cap only


# --------------------------------------------------------------------------------------------
# Gold data rules (the official benches)
# --------------------------------------------------------------------------------------------


def _record(dialogue_id, turn, box, references=()):
    return PredictionRecord(dialogue_id=dialogue_id, turn=turn, round=turn + 1, question="q", raw_text="",
                            regions=[{"box": box}], references=list(references))


@pytest.mark.parametrize("source", ["gold", "gold-fallback"])
def test_gold_references_of_either_kind_are_refused(sample_bench, source):
    dialogue = sample_bench.dialogues[0]
    ref = UsedReference(turn=0, source=source, box=dialogue.turns[0].gold_boxes[0], text="[1, 2, 3, 4]")
    records = [_record(dialogue.dialogue_id, 1, (0, 0, 1, 1), [ref])]
    assert any("1 record(s) carry gold reference boxes" in p for p in gold_problems(sample_bench, records, "x", "upstream"))


def test_a_log_of_gold_boxes_under_another_name_is_refused(sample_bench):
    records = [_record(d.dialogue_id, t.index, t.gold_boxes[0]) for d in sample_bench for t in d.turns]
    records[0] = _record(records[0].dialogue_id, 0, (0, 0, 1, 1))
    problems = gold_problems(sample_bench, records, "fixed-box", "predicted")
    assert problems == [f"{len(records) - 1} of {len(records)} answers equal the gold box exactly; the log "
                        "republishes the gold boxes"]
    half = records[: len(records) // 2] + [_record(r.dialogue_id, r.turn, (0, 0, 1, 1)) for r in records[len(records) // 2:]]
    assert gold_problems(sample_bench, half, "fixed-box", "predicted") == []  # at most half: a model may be that good


def test_the_validation_benchmark_runs_on_the_sample(capsys):
    """benchmarks/validation_cost.py's quick path, so the script cannot rot."""
    import importlib.util

    from tests.leaderboard.conftest import PROJECT

    spec = importlib.util.spec_from_file_location("validation_cost", PROJECT / "benchmarks" / "validation_cost.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--quick"])
    out = capsys.readouterr().out
    assert "validate_submission:" in out and "of blank lines (" in out and "refused in" in out
