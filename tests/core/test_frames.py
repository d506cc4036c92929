"""The coordinate-frame diagnostic: it reports the frame answers were likely written in and never changes a score."""

from __future__ import annotations

import json

import pytest

from regiondial_bench.adapters import register_adapter
from regiondial_bench.adapters.options import ModelOptions, merged, run_frames
from regiondial_bench.adapters.presets import PresetAdapter
from regiondial_bench.frames import check_frames, default_frames
from regiondial_bench.geometry import CoordinateFrame
from regiondial_bench.schema import PredictionRecord, Region
from tests.core.helpers import make_bench

SIZE = (64, 48)


def records_for(bench, to_raw, declared_frame):
    """One record per turn whose answer is the gold box written by ``to_raw`` and read in ``declared_frame``."""
    out = []
    for dialogue in bench:
        for turn in dialogue.turns:
            raw = to_raw(turn.gold_boxes[0])
            box = declared_frame.box_to_original(raw, SIZE)
            out.append(PredictionRecord(dialogue_id=dialogue.dialogue_id, turn=turn.index, round=turn.index + 1,
                                        question="q", raw_text="", regions=[Region(box=box)]))
    return out


def per_mille(box):
    return CoordinateFrame.normalized(1000).box_from_original(box, SIZE)


@pytest.fixture
def bench(tmp_path):
    return make_bench(tmp_path / "bench", n_dialogues=5, turns=3, size=SIZE)


def test_answers_in_the_declared_frame_raise_no_warning(bench):
    records = records_for(bench, per_mille, CoordinateFrame.normalized(1000))
    check = check_frames(bench, records, "norm-1000", default_frames())
    assert check.turns == 15 and check.boxes == 15
    assert check.ap50_by_frame["norm-1000"] == 100.0 and check.best == "norm-1000"
    assert check.outside_image == 0.0 and check.fits_1000 == 100.0 and check.warning is None


def test_per_mille_answers_read_as_pixels_name_the_likely_frame(bench):
    original = CoordinateFrame.original(*SIZE)
    records = records_for(bench, per_mille, original)  # the model wrote 0-1000, the preset reads pixels
    check = check_frames(bench, records, "original", default_frames())
    assert check.ap50_by_frame["original"] == 0.0 and check.ap50_by_frame["norm-1000"] == 100.0
    assert check.best == "norm-1000"
    assert check.outside_image == 100.0  # e.g. x2 = 312 on a 64-pixel-wide image
    assert "norm-1000" in check.warning and "declared original" in check.warning


def test_unit_answers_read_as_per_mille(bench):
    unit = CoordinateFrame.normalized(1)
    records = records_for(bench, lambda box: unit.box_from_original(box, SIZE), CoordinateFrame.normalized(1000))
    check = check_frames(bench, records, "norm-1000", default_frames())
    assert check.fits_unit == 100.0 and check.best == "norm-1" and "norm-1" in check.warning


def test_a_few_lucky_hits_are_not_a_frame(bench):
    """Garbage answers: another frame hitting one or two turns more is noise, not a diagnosis."""
    original = CoordinateFrame.original(*SIZE)
    records = records_for(bench, lambda box: (0.0, 0.0, 1.0, 1.0), original)
    lucky = records_for(bench, per_mille, original)[:2]
    records = lucky + records[2:]
    check = check_frames(bench, records, "original", default_frames())
    assert check.ap50_by_frame["norm-1000"] > check.ap50_by_frame["original"]
    assert check.warning is None


def test_ties_keep_the_declared_frame_and_failures_are_skipped(bench):
    records = records_for(bench, lambda box: (0.0, 0.0, 1.0, 1.0), CoordinateFrame.original(*SIZE))
    records[0] = records[0].model_copy(update={"regions": [], "error": "no JSON found in the text"})
    check = check_frames(bench, records, "original", default_frames())
    assert check.turns == 14 and check.best == "original" and check.warning is None


def test_run_frames_of_presets_and_plain_adapters():
    declared, frames = run_frames("hf", {"preset": "qwen2.5-vl-7b"})
    assert declared == "input" and frames["input"]((640, 480)).width == 644  # smart_resize, factor 28
    declared, frames = run_frames("openai", {"preset": "hosted-pixels", "model": "m"})
    assert declared == "original" and "input" not in frames  # the image as sent is the original
    assert run_frames("hf", {"preset": "qwen3-vl-instruct", "size": "2B"})[0] == "norm-1000"
    assert run_frames("oracle", {})[0] == "original"
    assert run_frames("hf", {"preset": "no-such-preset"})[0] == "original"


# ---------------------------------------------------------------------- through a run and the CLI


class NormOracleOptions(ModelOptions):
    adapter_name = "test-per-mille-oracle"


@register_adapter("test-per-mille-oracle")
class PerMilleOracle(PresetAdapter):
    """A preset adapter whose model always answers the gold box, written in 0-1000 of the image."""

    needs_pixels = False
    options_class = NormOracleOptions

    def __init__(self, options=None, /, **kwargs):
        self.options = merged(options, kwargs, NormOracleOptions)
        self.preset = self.options.build_preset()
        self.gold = {}

    def prepare(self, bench):
        self.gold = {(d.dialogue_id, t.index): t.gold_boxes[0] for d in bench for t in d.turns}

    def generate(self, requests):
        out = []
        for request in requests:
            size = request.image.require_size()
            box = [round(v) for v in CoordinateFrame.normalized(1000).box_from_original(self.gold[request.key], size)]
            out.append(self.response(json.dumps([{"bbox_2d": box}]), size))
        return out


def test_evaluate_warns_when_answers_are_in_another_frame(bench, tmp_path):
    from click.testing import CliRunner

    from regiondial_bench.cli import main

    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["evaluate", "--model", "test-per-mille-oracle", "--preset", "hosted-pixels",
                                       "--bench", str(bench.root), "--out", str(out), "--no-progress",
                                       "--bootstrap", "10"])
    assert result.exit_code == 0, result.output
    assert "frame warning" in result.output and "look like norm-1000 coordinates" in result.output
    results = json.loads((out / "results.json").read_text())
    assert results["frame_check"]["best"] == "norm-1000" and results["frame_check"]["declared"] == "original"
    # the score is the declared frame's: the check diagnoses, it does not fix
    assert results["overall"]["ap50"] == results["frame_check"]["ap50_by_frame"]["original"] < 50

    rescored = CliRunner().invoke(main, ["score", str(out)])  # a re-score keeps the diagnostic
    assert rescored.exit_code == 0, rescored.output
    assert "frame warning" in rescored.output
    assert json.loads((out / "results.json").read_text())["frame_check"] == results["frame_check"]


def test_the_frame_check_never_changes_a_score(bench, tmp_path):
    from regiondial_bench.api import evaluate, score
    from regiondial_bench.metrics import score_records
    from regiondial_bench.run.folder import read_predictions
    from regiondial_bench.schema import RunConfig

    config = RunConfig(adapter="test-per-mille-oracle", adapter_options={"preset": "hosted-pixels"})
    results = evaluate(bench, config, tmp_path / "run", progress=False, n_bootstrap=10)
    records = read_predictions(tmp_path / "run" / "predictions.jsonl")
    plain = score_records(bench, records, provenance=results.provenance, n_bootstrap=10)
    assert results.frame_check is not None and plain.frame_check is None
    assert results.model_dump(exclude={"frame_check"}) == plain.model_dump(exclude={"frame_check"})
    assert score(tmp_path / "run", bench=bench, n_bootstrap=10, write=False).overall == plain.overall


def test_benchmark_script_tiny_path(capsys):
    """benchmarks/frame_check.py's quick path runs (so the script cannot rot)."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "frame_check.py"
    spec = importlib.util.spec_from_file_location("frame_check_benchmark", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--tiny"]) == 0
    header, row = capsys.readouterr().out.splitlines()[:2]
    assert "frame check ms" in header and int(row.split()[0]) > 0


def test_summary_lines_survive_a_hostile_results_file():
    """A results.json written by someone else: missing shares, NaN, long names print, never raise."""
    from regiondial_bench.results.report import frame_check_lines
    from regiondial_bench.schema import FrameCheck, Results

    check = FrameCheck(declared="x" * 500, turns=3, boxes=0, outside_image=None, fits_unit=float("nan"),
                       ap50_by_frame={f"f{i}": float(i) for i in range(50)}, warning="w" * 10_000)
    summary, warning = frame_check_lines(Results.model_construct(frame_check=check))
    assert "– % of boxes" not in summary and "–% of boxes outside" in summary
    assert len(summary) < 600 and len(warning) == 1000
