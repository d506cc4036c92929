"""Repeats (evaluate --repeats), the lmms-eval export, and report's warning about partial runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from regiondial_bench.cli import main
from regiondial_bench.geometry import box_iou
from regiondial_bench.run.folder import read_predictions


@pytest.fixture(scope="module")
def repeats_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "rep"
    result = CliRunner().invoke(main, ["evaluate", "--model", "noisy-oracle", "--repeats", "3", "--seed", "5",
                                       "--out", str(out), "--no-progress", "--bootstrap", "50"])
    assert result.exit_code == 0, result.output
    assert "AP50 by round over repeats" in result.output and "consensus" in result.output
    return out


def test_each_repeat_is_a_run_with_its_own_seed(repeats_dir):
    seeds = [json.loads((repeats_dir / f"repeat-{i}" / "run.json").read_text())["seed"] for i in range(3)]
    assert seeds == [5, 6, 7]
    logs = [read_predictions(repeats_dir / f"repeat-{i}" / "predictions.jsonl") for i in range(3)]
    assert logs[0] != logs[1]  # other seeds, other mistakes


def test_repeats_json_holds_mean_sd_and_a_consensus_computed_from_the_predictions(repeats_dir, sample_bench):
    summary = json.loads((repeats_dir / "repeats.json").read_text())
    per_repeat = [json.loads((repeats_dir / f"repeat-{i}" / "results.json").read_text()) for i in range(3)]
    ap50 = [r["overall"]["ap50"] for r in per_repeat]
    overall = summary["overall"]
    assert overall["ap50"] == ap50
    assert overall["ap50_mean"] == pytest.approx(np.mean(ap50), abs=1e-3)
    assert overall["ap50_sd"] == pytest.approx(np.std(ap50, ddof=1), abs=1e-3)
    # consensus and agreement, counted here from the logs and the gold boxes
    gold = {(d.dialogue_id, t.index): t.gold_boxes[0] for d in sample_bench for t in d.turns}
    hits = []
    for i in range(3):
        records = {r.key: r for r in read_predictions(repeats_dir / f"repeat-{i}" / "predictions.jsonl")}
        hits.append([any(box_iou(region.box, gold[key]) > 0.5 for region in records[key].regions) for key in gold])
    hits = np.array(hits)
    assert overall["ap50_consensus"] == pytest.approx(100 * (hits.sum(axis=0) >= 2).mean(), abs=1e-3)
    assert overall["agreement"] == pytest.approx(100 * (hits.min(axis=0) == hits.max(axis=0)).mean(), abs=1e-3)
    assert [row["round"] for row in summary["rounds"]][:3] == ["1", "2", "3"]


def test_report_and_plot_show_a_repeats_folder_as_mean_sd_and_consensus(repeats_dir, tmp_path):
    result = CliRunner().invoke(main, ["report", str(repeats_dir), "--format", "markdown", "--metric", "ap50"])
    assert result.exit_code == 0, result.output
    summary = json.loads((repeats_dir / "repeats.json").read_text())["overall"]
    assert f"{summary['ap50_mean']:.1f} ± {summary['ap50_sd']:.1f} |" in result.output
    assert "noisy-oracle (predicted) ×3 consensus" in result.output
    csv = CliRunner().invoke(main, ["report", str(repeats_dir), "--format", "csv", "--metric", "ap50"])
    assert ",sd,noisy-oracle (predicted) ×3 mean sd," in csv.output
    plot = CliRunner().invoke(main, ["plot", str(repeats_dir), "--out", str(tmp_path / "plots")])
    assert plot.exit_code == 0, plot.output
    assert (tmp_path / "plots" / "repeats_ap50_by_round.png").is_file()


def test_a_repeats_json_that_disagrees_with_its_repeats_is_refused(repeats_dir, tmp_path):
    import shutil

    copy = tmp_path / "rep"
    shutil.copytree(repeats_dir, copy)
    summary = json.loads((copy / "repeats.json").read_text())
    summary["overall"]["ap50"][1] += 5.0
    (copy / "repeats.json").write_text(json.dumps(summary))
    result = CliRunner().invoke(main, ["report", str(copy)])
    assert result.exit_code == 1 and "repeat-1" in result.output and "results.json" in result.output
    (copy / "repeats.json").write_text('{"repeats": NaN}')
    assert "not a valid repeats summary" in CliRunner().invoke(main, ["report", str(copy)]).output


@pytest.mark.parametrize(("content", "why"), [
    (b'{"rows": 5}', "repeats: Field required; seeds: Field required; runs: Field required"),
    (b"\xff", "not UTF-8 text (byte 0)"),
    (b"[" * 100_000, "nested too deeply"),
])
def test_a_broken_repeats_json_is_one_line_naming_it(repeats_dir, tmp_path, content, why):
    import shutil

    copy = tmp_path / "rep"
    shutil.copytree(repeats_dir, copy)
    (copy / "repeats.json").write_bytes(content)
    for command in (["report", str(copy)], ["plot", str(copy), "--out", str(tmp_path / "plots")]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 1, result.output
        assert result.output.strip().splitlines()[-1] == (f"Error: {copy}/repeats.json: not a valid repeats summary: "
                                                           f"{why}"), result.output


def test_a_repeats_json_larger_than_any_summary_is_refused_unread(repeats_dir, tmp_path, monkeypatch):
    import shutil

    from regiondial_bench.results import repeats

    copy = tmp_path / "rep"
    shutil.copytree(repeats_dir, copy)
    monkeypatch.setattr(repeats, "MAX_RESULTS_BYTES", 100)
    with pytest.raises(ValueError, match="larger than any repeats summary"):
        repeats.load_repeats(copy)


@pytest.mark.parametrize("command", ["compare", "view", "score"])
def test_commands_of_one_run_given_a_repeats_folder_name_a_repeat(repeats_dir, sample_runs, tmp_path, command):
    args = {"compare": [str(repeats_dir), str(sample_runs["oracle-gold"])],
            "view": [str(repeats_dir), "--out", str(tmp_path / "view")],
            "score": [str(repeats_dir)]}[command]
    result = CliRunner().invoke(main, [command, *args])
    assert result.exit_code == 1, result.output
    assert "is the folder of `evaluate --repeats`" in result.output and f"{repeats_dir}/repeat-0" in result.output


def test_resuming_a_repeats_folder_finishes_every_repeat(repeats_dir, tmp_path):
    import shutil

    copy = tmp_path / "rep"
    shutil.copytree(repeats_dir, copy)
    log = copy / "repeat-2" / "predictions.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:50]))  # killed after 50 turns
    (copy / "repeat-2" / "results.json").unlink()
    (copy / "repeats.json").unlink()
    result = CliRunner().invoke(main, ["evaluate", "--out", str(copy), "--resume", "--no-progress", "--bootstrap", "50"])
    assert result.exit_code == 0, result.output
    assert json.loads((copy / "repeats.json").read_text()) == json.loads((repeats_dir / "repeats.json").read_text())


def test_repeats_of_a_greedy_adapter_warn_that_they_are_identical(tmp_path):
    result = CliRunner().invoke(main, ["evaluate", "--model", "oracle", "--repeats", "2", "--out", str(tmp_path / "r"),
                                       "--no-progress", "--bootstrap", "0"])
    assert result.exit_code == 0 and "decodes greedily, so its repeats will be identical" in result.output


def test_lmms_eval_export(sample_runs, tmp_path):
    out = tmp_path / "lmms.json"
    result = CliRunner().invoke(main, ["report", str(sample_runs["oracle-predicted"]), str(sample_runs["oracle-gold"]),
                                       "--format", "lmms-eval", "-o", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["model_name_or_path"] == "oracle" and doc["config"]["model"] == "oracle"
    for mode in ("predicted", "gold"):
        results = json.loads((sample_runs[f"oracle-{mode}"] / "results.json").read_text())
        task = f"regiondial_sample_{mode}"
        assert doc["results"][task]["ap50,none"] == results["overall"]["ap50"]
        assert doc["results"][task]["giou,none"] == results["overall"]["giou"]
        assert doc["results"][task]["mask_iou_above_0.5,none"] == results["overall"]["mask_pass"]["0.5"]
        rounds = {row["round"]: row for row in results["rounds"]}
        assert doc["results"][f"{task}_r3"]["ap50,none"] == rounds["3"]["ap50"]
        assert doc["group_subtasks"][task][0] == f"{task}_r1" and f"{task}_r8plus" in doc["group_subtasks"][task]
        assert doc["configs"][task]["dataset_hash"] == results["provenance"]["bench_hash"]
        assert doc["n-samples"][task] == {"original": 199, "effective": 199}
        assert doc["higher_is_better"][task]["ap50"] is True and doc["n-shot"][task] == 0
    mixed = CliRunner().invoke(main, ["report", str(sample_runs["oracle-predicted"]),
                                      str(sample_runs["test-fallible-predicted"]), "--format", "lmms-eval"])
    assert mixed.exit_code == 1 and "holds one model" in mixed.output


def test_report_warns_when_a_limited_or_shard_run_sits_beside_full_runs(sample_runs, tmp_path):
    runner = CliRunner()
    limited, shard = tmp_path / "limited", tmp_path / "shard"
    assert runner.invoke(main, ["evaluate", "--model", "oracle", "--limit", "5", "--out", str(limited),
                                "--no-progress", "--bootstrap", "0"]).exit_code == 0
    assert runner.invoke(main, ["evaluate", "--model", "oracle", "--shard", "0/2", "--out", str(shard),
                                "--no-progress", "--bootstrap", "0"]).exit_code == 0
    result = runner.invoke(main, ["report", str(sample_runs["oracle-predicted"]), str(limited), str(shard)])
    assert result.exit_code == 0, result.output
    assert "cover fewer turns than the other runs of their bench" in result.output
    assert "--limit 5" in result.output and "shard 0/2" in result.output
    alone = runner.invoke(main, ["report", str(sample_runs["oracle-predicted"]), str(sample_runs["oracle-gold"])])
    assert "cover fewer turns" not in alone.output
