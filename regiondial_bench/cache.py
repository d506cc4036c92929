"""The user cache: ``$REGIONDIAL_CACHE`` or ``~/.cache/regiondial_bench``.

Derived files (materialised Hub images, squashed training images) go here, never into a bench
folder: the bundled sample lives inside the installed package.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """A folder under the user cache (not created).

    An empty ``$REGIONDIAL_CACHE`` means the default (not the working directory); ``~`` is expanded.
    Parts are single names: one holding a path separator or ``..`` would leave the cache.
    """
    for part in parts:
        if not part or part in (".", "..") or "/" in part or "\\" in part or "\0" in part:
            raise ValueError(f"cache folder names must be plain names, got {part!r}")
    configured = os.environ.get("REGIONDIAL_CACHE", "").strip()
    base = Path(configured).expanduser() if configured else Path.home() / ".cache" / "regiondial_bench"
    return base.joinpath(*parts)
