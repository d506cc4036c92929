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
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="regiondial")
def main() -> None:
    """RegionDial-Bench: multi-round region-grounded evaluation."""


for _name in COMMAND_MODULES:
    main.add_command(importlib.import_module(f"{__name__}.{_name}").command)
