"""The CLI on the bundled sample bench."""

from __future__ import annotations

import json

from click.testing import CliRunner

from regiondial_bench.cli import main


def test_evaluate_sample_and_rescore(tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(main, ["evaluate", "--model", "reference-copy", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "R1" in result.output and "Avg" in result.output and "AP50" in result.output
    results = json.loads((out / "results.json").read_text())
    assert results["provenance"]["adapter"] == "reference-copy"
    assert results["overall"]["n"] == sum(r["n"] for r in results["rounds"])
    rescored = runner.invoke(main, ["score", str(out / "predictions.jsonl"), "--json"])
    assert rescored.exit_code == 0, rescored.output
    assert json.loads(rescored.output)["rounds"] == results["rounds"]


def test_oracle_with_masks_scores_100_on_the_sample(tmp_path):
    result = CliRunner().invoke(main, ["evaluate", "--model", "oracle", "--out", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    overall = json.loads((tmp_path / "results.json").read_text())["overall"]
    assert overall["ap50"] == 100.0 and overall["giou"] == 100.0


def test_bench_info_json_and_errors(upstream_file, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["bench", "info", str(upstream_file("refcocoplus")), "--json"])
    stats = json.loads(result.output)
    assert (stats["dialogues"], stats["turns"]) == (715, 2289)
    assert runner.invoke(main, ["bench", "validate", str(upstream_file("refcocog"))]).exit_code == 0
    missing = runner.invoke(main, ["evaluate", "--model", "oracle", "--bench", str(tmp_path / "nope")])
    assert missing.exit_code != 0 and "no bench at" in missing.output
    unknown = runner.invoke(main, ["evaluate", "--model", "orcale"])
    assert unknown.exit_code != 0 and "Did you mean 'oracle'" in unknown.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("adapter: oracle\nbatch_sise: 3\n")
    typo = runner.invoke(main, ["evaluate", "--config", str(bad)])
    assert typo.exit_code != 0 and "batch_sise" in typo.output


def test_rescoring_a_question_file_run_needs_no_images(tmp_path):
    """Where the images are is not part of the bench hash: re-scoring works with or without them."""
    from PIL import Image

    questions = [{"image_id": 7, "conversational_turns": [{"question": "Find a.", "bboxes": [[1, 1, 20, 20]]}]}]
    (tmp_path / "q.json").write_text(json.dumps(questions))
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (32, 24)).save(tmp_path / "imgs" / "7.jpg")
    runner, out = CliRunner(), tmp_path / "run"
    result = runner.invoke(main, ["evaluate", "--model", "whole-image", "--bench", str(tmp_path / "q.json"),
                                  "--images", str(tmp_path / "imgs"), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    without = runner.invoke(main, ["score", str(out), "--json"])
    assert without.exit_code == 0, without.output
    with_images = runner.invoke(main, ["score", str(out), "--images", str(tmp_path / "imgs"), "--json"])
    assert with_images.exit_code == 0, with_images.output
    assert json.loads(without.output)["rounds"] == json.loads(with_images.output)["rounds"]
