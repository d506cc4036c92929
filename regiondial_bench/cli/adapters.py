"""``regiondial adapters``: list the adapters, the model presets (with their frames) and mask producers."""

from __future__ import annotations

import click


@click.command("adapters")
def command() -> None:
    """List adapter names (built-in, backends, plugins), the presets of hf/vllm/openai and mask producers.

    Each preset line gives the frame its answers are read in: a run whose answers come in
    another frame is flagged by the frame check after scoring.
    """
    from ..adapters import available_adapters
    from ..adapters.presets import PRESETS, describe_frame
    from ..run.segment import available_mask_producers

    click.echo("adapters: " + ", ".join(available_adapters()))
    click.echo("presets (for hf, vllm, openai; --preset NAME, sizes with -o size=...):")
    width = max(len(name) for name in PRESETS)
    for name, preset in PRESETS.items():
        model = preset.model_template.format(size="{size}") if preset.model_template else preset.model
        sizes = f"; sizes {', '.join(preset.sizes)} (default {preset.size})" if preset.sizes else ""
        click.echo(f"  {name:<{width}}  frame: {describe_frame(preset)}; model: {model or '(give -o model=...)'}"
                   f"{sizes}")
    click.echo("mask producers: " + ", ".join(available_mask_producers()))
