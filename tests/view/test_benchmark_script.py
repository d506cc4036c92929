"""benchmarks/view_open.py runs end to end on a small slice of the official file (so it cannot rot)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from tests.conftest import CHROMIUM

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "view_open.py"


def test_view_open_script_on_a_small_slice(upstream_file, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("view_open", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    browser = CHROMIUM.exists() and importlib.util.find_spec("playwright") is not None
    figures = module.main(["--questions", str(upstream_file("refcocoplus")), "--dialogues", "12", "--scale", "3",
                           "--bootstrap", "200", "--json", str(tmp_path / "f.json"),
                           *([] if browser else ["--no-browser"])])
    items = json.loads(upstream_file("refcocoplus").read_text())[:12]
    assert figures["dialogues"] == 36 and figures["turns"] == 3 * sum(len(i["conversational_turns"]) for i in items)
    assert figures["view"]["data_files"] >= 1 and 0 < figures["view"]["index_mb"] < 1
    assert figures["view"]["peak_rss_mb"] > 10 and figures["compare"]["peak_rss_mb"] > 10
    if browser:
        assert figures["browser"]["status"].endswith("turns match")
    assert json.loads((tmp_path / "f.json").read_text()) == json.loads(json.dumps(figures))
    printed = capsys.readouterr().out
    assert "view:" in printed and "compare:" in printed
