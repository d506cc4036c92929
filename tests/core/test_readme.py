"""The README's example commands chain: each block marked ``<!-- chained: ... -->`` runs in order, as
written, in a fresh folder (``regiondial`` is the CLI's entry point, run in-process)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from click.testing import CliRunner

from regiondial_bench.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


def chained_blocks() -> list[list[list[str]]]:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"^<!-- chained:[^>]*-->\n```bash\n(.*?)^```", text, flags=re.M | re.S)
    commands = []
    for block in blocks:
        lines = block.replace("\\\n", " ").splitlines()
        commands.append([shlex.split(line, comments=True) for line in lines if line.strip()])
    return commands


def test_the_readme_commands_run_in_sequence_as_written(tmp_path, monkeypatch):
    blocks = chained_blocks()
    assert len(blocks) >= 2 and sum(map(len, blocks)) >= 15
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    for block in blocks:
        for argv in block:
            assert argv[0] == "regiondial", argv
            result = runner.invoke(main, argv[1:], catch_exceptions=False)
            assert result.exit_code == 0, f"{shlex.join(argv)}\n{result.output}"
    assert (tmp_path / "view" / "index.html").is_file() and (tmp_path / "plots" / "ap50_by_round.png").is_file()
    assert (tmp_path / "runs" / "noisy-rep" / "repeats.json").is_file()
    assert (tmp_path / "runs" / "noisy-03" / "lmms_eval.json").is_file()
