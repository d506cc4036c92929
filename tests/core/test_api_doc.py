"""docs/api.md is a notebook: its Python blocks run in order, in one namespace, as written."""

from __future__ import annotations

import re
from pathlib import Path

import regiondial_bench

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)


def test_the_api_page_runs_as_written(tmp_path, monkeypatch, capsys):
    from regiondial_bench.adapters import registry

    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 6
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "api_doc"}
    try:
        for i, block in enumerate(blocks):
            exec(compile(block, f"{DOC.name} block {i + 1}", "exec"), namespace)  # noqa: S102 - our own doc
    finally:
        registry._REGISTRY.pop("left-half", None)
    out = capsys.readouterr().out
    assert "sample 40 dialogues, 199 turns" in out
    assert re.search(r"AP50 with its own references \d+\.\d, with gold references \d+\.\d", out)
    assert "| noisy-oracle (predicted) |" in out and "×3 mean" in out and "consensus" in out
    assert re.search(r"R1: [+-]\d+\.\d points", out) and "left-half: AP50" in out
    assert (tmp_path / "runs" / "api-repeats" / "repeats.json").is_file()


def test_the_documented_names_are_exported():
    rows = re.findall(r"^\| (`[^|]+)\|", DOC.read_text(encoding="utf-8"), flags=re.M)
    documented = {name for row in rows for name in re.findall(r"`(\w+)", row)}
    assert {"load_bench", "evaluate", "score", "report", "compare", "Adapter", "RunConfig"} <= documented
    assert documented <= set(regiondial_bench.__all__), documented - set(regiondial_bench.__all__)
    for name in regiondial_bench.__all__:
        assert getattr(regiondial_bench, name) is not None
    from regiondial_bench.results.compare import compare_runs

    assert regiondial_bench.compare is compare_runs
