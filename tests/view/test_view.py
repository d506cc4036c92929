"""The viewer's page data and command, without a browser."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner

from regiondial_bench.cli import main
from regiondial_bench.results.view import build_view, question_segments


def _edit_first(run, **fields):
    log = run / "predictions.jsonl"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    lines[0].update(fields)
    log.write_text("".join(json.dumps(r) + "\n" for r in lines))


def _data(index):
    html = index.read_text(encoding="utf-8")
    block = re.search(r'<script type="application/json" id="view-data">(.*?)</script>', html, re.S).group(1)
    return html, json.loads(block)


def test_hostile_text_cannot_leave_the_data_block(sample_runs, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(sample_runs["predicted"], run)
    hostile = "</script><script>alert(1)</script><!-- \u2028 \U0001f600 " + "x" * 10_000
    _edit_first(run, raw_text=hostile, error="bad </script> answer")
    html, data = _data(build_view([run], tmp_path / "view"))
    assert html.count("<script") == 2 and html.count("</script>") == 2  # the data block and the script
    first = data["dialogues"][0]["runs"][0][0]
    assert first["raw"] == hostile[:4000] and first["cut"] == len(hostile) - 4000
    assert first["err"] == "bad </script> answer"
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert "default-src 'none'" in csp and "script-src 'sha256-" in csp and "unsafe-inline" not in csp.split(
        "script-src")[1]


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
    from PIL import Image

    assert max(Image.open(p).size[0] for p in (tmp_path / "view" / "images").glob("*.jpg")) <= 512


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
