"""The viewer's page data and command, without a browser."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner

from regiondial_bench.cli import main
from regiondial_bench.results.view import (
    FAILED,
    HIT,
    MAX_FILE_BYTES,
    MAX_MASK_CHARS,
    REASON_SHIFT,
    REFWRONG,
    build_view,
    question_segments,
    read_view_data,
)
from regiondial_bench.schema import Bench


def _edit_first(run, **fields):
    log = run / "predictions.jsonl"
    lines = [json.loads(line) for line in log.read_text().split("\n") if line]  # not splitlines: U+2029
    lines[0].update(fields)
    log.write_text("".join(json.dumps(r) + "\n" for r in lines))


def _data(index):
    return index.read_text(encoding="utf-8"), read_view_data(index.parent)


def test_hostile_text_cannot_leave_the_data_block(tmp_path):
    from regiondial_bench.api import evaluate
    from regiondial_bench.schema import RunConfig

    from ..core.helpers import make_bench

    tiny = make_bench(tmp_path / "tiny", n_dialogues=2, turns=2)
    hostile_id = "</script><b>d\u2029"
    bench = Bench([d.model_copy(update={"dialogue_id": hostile_id}) if i == 0 else d for i, d in enumerate(tiny)],
                  name="tiny", root=tiny.root)
    run = tmp_path / "run"
    evaluate(bench, RunConfig(adapter="oracle"), run, progress=False, n_bootstrap=0)
    hostile = "</script><script>alert(1)</script><!-- \u2028 \U0001f600 " + "x" * 10_000
    _edit_first(run, raw_text=hostile, error="bad </script> answer")
    html, data = _data(build_view([run], tmp_path / "view", bench=bench))
    assert html.count("<script") == 2 and html.count("</script>") == 2  # the index block and the script
    assert data["dialogues"][0]["id"] == hostile_id
    first = data["dialogues"][0]["runs"][0][0]
    assert first["raw"] == hostile[:4000] and first["cut"] == len(hostile) - 4000
    assert first["err"] == "bad </script> answer"
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    script_src = csp.split("script-src")[1].split(";")[0]
    assert "default-src 'none'" in csp and "'sha256-" in script_src and "unsafe-inline" not in script_src
    assert "'strict-dynamic'" in script_src  # only what the hashed script loads may run
    # a data file is one call with a single JSON literal: no text of the log can end it early
    for path in (tmp_path / "view" / "data").iterdir():
        text = path.read_text(encoding="ascii")  # ensure_ascii: U+2028/9 and non-ASCII are escaped
        match = re.fullmatch(r'regiondialChunk\("([0-9a-f]{8})",(\d+),(.*)\);\n', text, re.S)
        assert match and isinstance(json.loads(match.group(3)), list), path


def test_data_matches_the_log(sample_runs, tmp_path):
    from regiondial_bench.run.folder import read_predictions

    _, data = _data(build_view([sample_runs["predicted"]], tmp_path / "view"))
    records = {(r.dialogue_id, r.turn): r for r in read_predictions(sample_runs["predicted"] / "predictions.jsonl")}
    assert sum(len(d["turns"]) for d in data["dialogues"]) == len(records) == data["bench"]["turns"]
    for d in data["dialogues"]:
        assert (tmp_path / "view" / d["img"]).is_file()  # a copy beside the page
        for t, answer in enumerate(d["runs"][0]):
            record = records[(d["id"], t)]
            assert answer["boxes"] == [[round(v, 2) for v in r.box] for r in record.regions]
            assert "".join(seg[0] for seg in answer["q"]) == record.question
            assert bool(d["flags"][0][t] & HIT) == (answer["iou"] > 0.5)  # one box per answer here
            assert bool(d["flags"][0][t] & FAILED) == (record.error is not None)
    from PIL import Image

    assert max(Image.open(p).size[0] for p in (tmp_path / "view" / "images").glob("*.jpg")) <= 512


def test_flags_say_which_reference_was_wrong_and_why_a_turn_failed(sample_runs, tmp_path):
    from regiondial_bench.api import load_bench
    from regiondial_bench.metrics import failure_kind, turn_scores
    from regiondial_bench.run.folder import read_predictions

    _, data = _data(build_view([sample_runs["predicted"], sample_runs["gold"]], tmp_path / "view"))
    bench = load_bench("sample")
    for run, name in enumerate(("predicted", "gold")):
        records = read_predictions(sample_runs[name] / "predictions.jsonl")
        hit = {(s.dialogue_id, s.turn): s.hit for s in turn_scores(bench, records)}
        by_key = {r.key: r for r in records}
        wrong = failed = 0
        for d in data["dialogues"]:
            for t, flags in enumerate(d["flags"][run]):
                record = by_key[(d["id"], t)]
                expected = any(ref.source == "no-region" or (ref.source == "predicted" and not hit[(d["id"], ref.turn)])
                               for ref in record.references)
                assert bool(flags & REFWRONG) == expected, (name, d["id"], t)
                wrong += expected
                if record.error:
                    assert data["reasons"][(flags >> REASON_SHIFT) - 1] == failure_kind(record.error)
                    failed += 1
                else:
                    assert flags >> REASON_SHIFT == 0
        assert failed > 0 and (wrong > 0) == (name == "predicted")  # gold references are never wrong


def test_a_dialogue_split_between_data_files_reads_back_whole(sample_runs, tmp_path, monkeypatch):
    import regiondial_bench.results.view as view

    _, whole = _data(build_view([sample_runs["predicted"], sample_runs["gold"]], tmp_path / "one"))
    assert len(list((tmp_path / "one" / "data").iterdir())) == 1  # the sample fits one file
    monkeypatch.setattr(view, "CHUNK_BYTES", 3000)  # a few turns per file
    _, split = _data(build_view([sample_runs["predicted"], sample_runs["gold"]], tmp_path / "many"))
    files = list((tmp_path / "many" / "data").iterdir())
    assert len(files) > 20 and max(f.stat().st_size for f in files) < 3000 + 2000  # one turn at most over
    index = split.pop("dialogues"), whole.pop("dialogues")
    assert index[0] == index[1]  # the same turns, flags and answers
    spanning = [d for d in json.loads(re.search(r'id="view-data">(.*?)</script>', (tmp_path / "many" / "index.html")
                .read_text(), re.S).group(1))["dialogues"] if d[2] > d[1]]
    assert spanning  # some dialogues were split


def test_every_file_stays_small_whatever_the_answers_hold(tmp_path):
    """One dialogue of 12 turns whose answers are as large as a log allows: every text, shape and
    mask is cut, each file stays under 8 MB, and the page says what it left out."""
    from regiondial_bench.api import evaluate
    from regiondial_bench.schema import RunConfig

    from ..core.helpers import make_bench

    bench = make_bench(tmp_path / "bench", n_dialogues=1, turns=12, size=(128, 96))  # 12 boxes fit inside
    run = tmp_path / "run"
    evaluate(bench, RunConfig(adapter="oracle"), run, progress=False, n_bootstrap=0)
    log = run / "predictions.jsonl"
    lines = [json.loads(line) for line in log.read_text().split("\n") if line]
    for record in lines:
        # a backslash escapes to two characters: the largest mask the page keeps, and one just over
        counts = "\\" * (MAX_MASK_CHARS + record["turn"] % 2)
        record.update(raw_text="\u2028" * 400_000, question="\U0001f600" * 200_000, error="e" * 300_000,
                      regions=[{"box": [1, 1, 5 + i % 7, 5]} for i in range(1000)],
                      mask={"size": [48, 64], "counts": counts})
    log.write_text("".join(json.dumps(r) + "\n" for r in lines))
    html, data = _data(build_view([run, run], tmp_path / "view"))
    sizes = [p.stat().st_size for p in (tmp_path / "view" / "data").iterdir()] + [len(html.encode())]
    assert max(sizes) < MAX_FILE_BYTES and len(sizes) >= 10, sizes
    kept, cut = data["dialogues"][0]["runs"][0][6:8]
    assert cut["cut"] == 400_000 - 4000 and cut["qcut"] > 0 and len(cut["err"]) == 4000
    assert len(cut["boxes"]) == 100 and cut["shapes"] == 900
    assert cut["mask"] is None and cut["maskcut"] is True
    assert len(kept["mask"]["counts"]) == MAX_MASK_CHARS and "maskcut" not in kept


def test_the_largest_possible_turn_fits_a_file():
    """A turn's page content is bounded whatever the log and bench hold: two runs' answers and the
    gold turn at every limit (texts that escape to 6 characters each, masks at the cut)."""
    from regiondial_bench.results.view import MAX_SHAPES, _gold_content, _json, answer_content
    from regiondial_bench.schema import RLE, PredictionRecord, Region, Turn, UsedReference

    mask = RLE(size=(10**6, 10**6), counts="\\" * MAX_MASK_CHARS)
    text = "\u2028" * 10**5
    refs = [UsedReference(turn=i, source="predicted", box=(1, 1, 2, 2), text="\u2028") for i in range(1000)]
    record = PredictionRecord(dialogue_id="d", turn=0, round=1, question=text, raw_text=text, error=text, mask=mask,
                              regions=[Region(box=(-1e300, -1e300, 1e300, 1e300), point=(-1e300, 1e300))] * 1000,
                              references=refs)
    turn = Turn(index=0, question=text, gold_boxes=[(-1e300, -1e300, 1e300, 1e300)] * 1000,
                gold_mask=mask, gold_point=(-1e300, 1e300))
    answer, gold = _json(answer_content(record, 1.0)), _json(_gold_content(turn))
    content = answer_content(record, 1.0)
    assert len(content["boxes"]) == MAX_SHAPES
    assert sum(len(seg) == 3 for seg in content["q"]) == MAX_SHAPES  # 1,000 references, 100 linked
    assert 2 * len(answer) + len(gold) + 1000 < MAX_FILE_BYTES


def test_a_rebuild_replaces_the_data_files(sample_runs, tmp_path):
    build_view([sample_runs["predicted"]], tmp_path / "view")
    (tmp_path / "view" / "data" / "notes.txt").write_text("mine")
    _, data = _data(build_view([sample_runs["gold"]], tmp_path / "view"))
    names = sorted(p.name for p in (tmp_path / "view" / "data").iterdir())
    assert names == [f"{data['token']}-0.js", "notes.txt"]  # the old build's files are gone, other files kept


def test_question_segments_link_each_reference():
    from regiondial_bench.schema import UsedReference

    refs = [UsedReference(turn=0, source="predicted", box=(1, 2, 3, 4), text="[1, 2, 3, 4]"),
            UsedReference(turn=2, source="no-region", box=None, text="[no region]")]
    segments = question_segments("A [1, 2, 3, 4] B [no region] C [1, 2, 3, 4]", refs)
    assert segments == [["A "], ["[1, 2, 3, 4]", 0, "predicted"], [" B "], ["[no region]", 2, "no-region"],
                        [" C [1, 2, 3, 4]"]]


def test_view_command_and_its_errors(sample_runs, tmp_path):
    from regiondial_bench.api import evaluate
    from regiondial_bench.schema import RunConfig

    from ..core.helpers import make_bench

    runner = CliRunner()
    ok = runner.invoke(main, ["view", str(sample_runs["predicted"]), str(sample_runs["gold"]), "--out",
                              str(tmp_path / "v"), "--no-progress", "--label", "A", "--label", "B"])
    assert ok.exit_code == 0, ok.output
    assert "index.html" in ok.output and _data(tmp_path / "v" / "index.html")[1]["runs"][1]["label"] == "B"
    three = runner.invoke(main, ["view", *[str(p) for p in sample_runs.values()], "--out", str(tmp_path / "x")])
    assert three.exit_code == 2 and "two runs" in three.output
    bench = make_bench(tmp_path / "tiny")
    evaluate(bench, RunConfig(adapter="oracle"), tmp_path / "tiny-run", progress=False, n_bootstrap=0)
    other = runner.invoke(main, ["view", str(sample_runs["predicted"]), str(tmp_path / "tiny-run"), "--out",
                                 str(tmp_path / "y"), "--no-progress"])
    assert other.exit_code == 1 and "must share the bench" in other.output and "Traceback" not in other.output
    # an unfinished run is viewed as far as it got
    import shutil

    half = tmp_path / "half"
    shutil.copytree(sample_runs["predicted"], half)
    (half / "results.json").unlink()
    log = half / "predictions.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:50]) + lines[50][:20])  # torn last line, as a killed run leaves it
    partial = runner.invoke(main, ["view", str(half), "--out", str(tmp_path / "z"), "--no-progress"])
    assert partial.exit_code == 0, partial.output
    _, data = _data(tmp_path / "z" / "index.html")
    answered = sum(a is not None for d in data["dialogues"] for a in d["runs"][0])
    assert answered == 50 and data["runs"][0]["answered"] == 50


def test_images_alone_apply_to_the_recorded_bench(tmp_path):
    from PIL import Image

    questions = [{"image_id": 7, "conversational_turns": [{"question": "Find a.", "bboxes": [[1, 1, 20, 20]]}]}]
    (tmp_path / "q.json").write_text(json.dumps(questions))
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (32, 24)).save(tmp_path / "imgs" / "7.jpg")
    runner = CliRunner()
    assert runner.invoke(main, ["evaluate", "--model", "whole-image", "--bench", str(tmp_path / "q.json"), "--images",
                                str(tmp_path / "imgs"), "--out", str(tmp_path / "run"), "--no-progress"]).exit_code == 0
    bare = runner.invoke(main, ["view", str(tmp_path / "run"), "--out", str(tmp_path / "v1"), "--no-progress"])
    assert bare.exit_code == 0 and _data(tmp_path / "v1" / "index.html")[1]["dialogues"][0]["img"] is None
    pictured = runner.invoke(main, ["view", str(tmp_path / "run"), "--images", str(tmp_path / "imgs"), "--out",
                                    str(tmp_path / "v2"), "--no-progress"])
    assert pictured.exit_code == 0, pictured.output
    assert _data(tmp_path / "v2" / "index.html")[1]["dialogues"][0]["img"] == "images/0.jpg"
