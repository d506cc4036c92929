"""The user cache: ``$REGIONDIAL_CACHE`` or ``~/.cache/regiondial_bench``.

Derived files (materialised Hub images, squashed training images) go here, never into a bench
folder: the bundled sample lives inside the installed package.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """A folder under the user cache (not created)."""
    base = Path(os.environ.get("REGIONDIAL_CACHE", Path.home() / ".cache" / "regiondial_bench"))
    return base.joinpath(*parts)
