"""The user cache: ``$REGIONDIAL_CACHE_DIR`` (or the older ``$REGIONDIAL_CACHE``), else ``~/.cache/regiondial_bench``.

Derived files (materialised Hub images, squashed training images, the response cache of
:mod:`regiondial_bench.run.response_cache`) go here, never into a bench folder: the bundled
sample lives inside the installed package.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = ("REGIONDIAL_CACHE_DIR", "REGIONDIAL_CACHE")
"""The variables that place the user cache, the first one set winning."""


def cache_root() -> Path:
    """The user cache folder (not created).

    An empty variable means the default (not the working directory); ``~`` is expanded.
    """
    for name in CACHE_ENV:
        configured = os.environ.get(name, "").strip()
        if configured:
            return Path(configured).expanduser()
    return Path.home() / ".cache" / "regiondial_bench"


def cache_dir(*parts: str) -> Path:
    """A folder under the user cache (not created).

    Parts are single names: one holding a path separator or ``..`` would leave the cache.
    """
    for part in parts:
        if not part or part in (".", "..") or "/" in part or "\\" in part or "\0" in part:
            raise ValueError(f"cache folder names must be plain names, got {part!r}")
    return cache_root().joinpath(*parts)
