"""``regiondial adapters``: list the adapters and mask producers this installation knows."""

from __future__ import annotations

import click


@click.command("adapters")
def command() -> None:
    """List adapter names (built-in, backends, plugins) and mask producers."""
    from ..adapters import available_adapters
    from ..run.segment import available_mask_producers

    click.echo("adapters: " + ", ".join(available_adapters()))
    click.echo("mask producers: " + ", ".join(available_mask_producers()))
