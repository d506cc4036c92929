"""The ``regiondial`` command line: a thin layer over the public functions.

Each command group lives in its own module under ``regiondial_bench.cli`` and exposes a click
command (or group) named ``command``; ``COMMAND_MODULES`` lists them.
"""

from __future__ import annotations

import importlib

import click

from .. import __version__

COMMAND_MODULES = [
    "evaluate",
    "score",
    "merge",
    "bench",
    "adapters",
    "report",
    "plot",
    "submit",
    "leaderboard",
    "build",
    "publish",
    "view",
    "compare",
    "cache",
]


# One-line help of the commands, so that `regiondial --help` lists them without importing each
# module (and numpy, pydantic, rich behind them). A command missing here is imported for its help.
SHORT_HELP = {
    "evaluate": "Evaluate a model round by round, its own answers filling later references.",
    "merge": "Merge the shard folders of `evaluate --shard I/N` (all N of them) into --out and score it.",
    "score": "Re-score RUN (a run folder or its predictions.jsonl) and rewrite its results.json.",
    "bench": "Inspect benches: 'sample', a bench folder, an exported Hub folder or an official question .json.",
    "adapters": "List adapter names (built-in, backends, plugins), the presets of hf/vllm/openai and mask producers.",
    "report": "Tabulate per-round scores of RUN folders (or results.json / submission folders) side by side.",
    "plot": "Write plots of RUN folders into DIR (PNG and SVG, or each --format given).",
    "submit": "Create submissions/<date>_<name>/ from a scored RUN folder and validate it.",
    "leaderboard": "Build or check the static leaderboard (leaderboard/index.html, LEADERBOARD.md).",
    "build": "Build a benchmark into OUT/<split>/ (manifest.json, dialogues.jsonl, images/, official_questions.json).",
    "publish": "Publish BENCH_DIRS (build outputs or bench folders), one Hub config per benchmark.",
    "view": "Write DIR/index.html: every dialogue of RUN with its image, gold and predicted regions per round.",
    "compare": "Is RUN_A better than RUN_B? Per-round AP50 (and gIoU) differences A - B with 95% paired bootstrap intervals.",
    "cache": "The response cache: answers of earlier runs, reused by later runs that ask the same thing.",
}


# optional dependency -> the extra that installs it (pyproject.toml)
EXTRAS = {
    "datasets": "hub",
    "huggingface_hub": "hub",
    "matplotlib": "plots",
    "transformers": "hf",
    "accelerate": "hf",
    "safetensors": "hf",
    "aiohttp": "openai",
    "pycurl": "openai",
    "vllm": "vllm",
    "trl": "train",
    "peft": "train",
    "spacy": "train",
    "icu": "leaderboard",
}


class LazyGroup(click.Group):
    """Imports a command's module only when that command runs (or shows its own help)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMAND_MODULES, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        if cmd_name not in COMMAND_MODULES:
            return None
        command = importlib.import_module(f"{__name__}.{cmd_name}").command
        self.commands[cmd_name] = command
        return command

    def invoke(self, ctx: click.Context):  # noqa: ANN201
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as exc:
            top = (exc.name or "").partition(".")[0]
            if top not in EXTRAS:
                raise
            raise click.ClickException(
                f"this needs {top!r}, which is not installed: pip install 'regiondial-bench[{EXTRAS[top]}]'"
            ) from exc

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            text = SHORT_HELP.get(name) if name not in self.commands else None
            if text is None:
                command = self.get_command(ctx, name)
                if command is None or command.hidden:
                    continue
                text = command.get_short_help_str(formatter.width - 6 - len(name))
            rows.append((name, text))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="regiondial")
def main() -> None:
    """RegionDial-Bench: multi-round region-grounded evaluation."""
