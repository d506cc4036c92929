"""``prepare`` functions for the image-payload tests; module-level so worker processes can unpickle them."""

from __future__ import annotations

import os
from typing import Any

DEADLY_SIZE = (13, 13)
"""The image size on which :func:`identity_or_die` kills its process (as a decoder crash would)."""


def identity_or_die(image: Any) -> Any:
    """The image unchanged, except that a ``DEADLY_SIZE`` image ends the process at once."""
    if image.size == DEADLY_SIZE:
        os._exit(70)
    return image
