"""Third-party adapters arrive through the ``regiondial_bench.adapters`` entry-point group."""

from __future__ import annotations

import sys

from regiondial_bench.adapters import available_adapters, create_adapter

PLUGIN = '''
from regiondial_bench.adapters import Adapter, RoundResponse

class EchoAdapter(Adapter):
    needs_pixels = False

    def generate(self, requests):
        return [RoundResponse(raw_text=r.question) for r in requests]
'''


def test_entry_point_adapter_is_discovered(tmp_path, monkeypatch):
    (tmp_path / "echo_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "echo_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[regiondial_bench.adapters]\necho = echo_plugin:EchoAdapter\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "echo" in available_adapters()
    adapter = create_adapter("echo")
    assert type(adapter).__name__ == "EchoAdapter"
    sys.modules.pop("echo_plugin", None)
