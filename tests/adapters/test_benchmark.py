"""The GPU throughput benchmark runs end to end on CPU with the tiny models."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_throughput.py"


def test_gpu_throughput_script_on_cpu(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out_json, out_md = tmp_path / "figures.json", tmp_path / "RESULTS.md"
    code = module.main(["--shape", "tiny", "--sam2-shape", "tiny", "--device", "cpu", "--repeat", "2",
                        "--dialogues", "4", "--baseline-rounds", "2", "--batch-sizes", "4", "8",
                        "--new-tokens", "4", "--image-size", "112", "--sam2-items", "4", "--sam2-batch", "2",
                        "--json", str(out_json), "--results", str(out_md)])
    assert code == 0
    figures = json.loads(out_json.read_text())
    assert figures["device"].startswith("CPU")
    assert figures["baseline"]["rounds"] == 2
    assert [row["batch_size"] for row in figures["runner"]] == [4, 8]
    assert all(row["rounds"] > 0 and row["rounds_per_s"] > 0 for row in figures["runner"])
    assert figures["sam2"]["masks"] == 4
    table = out_md.read_text()
    assert figures["device"] in table and "| runner (`regiondial evaluate`) | 8 |" in table
