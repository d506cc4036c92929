"""An image encoder process for the ``openai`` adapter: ``python -m regiondial_bench.adapters._image_worker``.

:class:`regiondial_bench.adapters.processors.ImagePayloads` starts these with ``subprocess``
rather than ``multiprocessing``, so a worker never imports the caller's ``__main__`` (a script
without an ``if __name__ == "__main__"`` guard would otherwise run again in every worker), and a
worker imports only Pillow and this module (about 0.1 s), whatever the parent has loaded.

The protocol is frames on stdin and stdout: an 8-byte big-endian length, then a pickle. The first
frame in is ``(prepare, settings)``; the worker answers ``("ready",)``. Every later frame in is
``(task_id, items)``, each item ``(path, data)`` (a file path, or encoded bytes); the worker answers
``(task_id, results)`` with, per item, ``("ok", data_url, original_size, input_size, seconds)`` or
``("error", kind, message, seconds)``, where kind is ``decode`` (not a readable image) or ``other``.
End of stdin ends the worker. Only the parent writes to it, so the pickles are trusted.

This module imports nothing from the rest of the package, so it stays light.
"""

from __future__ import annotations

import base64
import io
import pickle
import struct
import sys
import time
from typing import Any, BinaryIO

HEADER = struct.Struct(">Q")


class Squash:
    """The squash resize (PIL bilinear to ``size`` x ``size``, aspect not kept) as a picklable callable."""

    def __init__(self, size: int) -> None:
        self.size = int(size)

    def __call__(self, image: Any) -> Any:
        if image.size != (self.size, self.size):
            from PIL import Image

            return image.resize((self.size, self.size), Image.BILINEAR)
        return image


def unchanged(image: Any) -> Any:
    """The identity ``prepare`` (native mode: the server resizes)."""
    return image


def encode_pil(pil: Any, prepare: Any, image_format: str = "png", jpeg_quality: int = 90,
               png_compress_level: int = 1) -> tuple[str, tuple[int, int], tuple[int, int]]:
    """``(data URL, original size, input size)`` of a loaded RGB image after ``prepare``."""
    original = pil.size
    shown = prepare(pil)
    buffer = io.BytesIO()
    if image_format == "jpeg":
        shown.save(buffer, format="JPEG", quality=jpeg_quality)
    else:
        shown.save(buffer, format="PNG", compress_level=png_compress_level)
    url = f"data:image/{image_format};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"
    return url, original, shown.size


def read_frame(stream: BinaryIO) -> Any | None:
    """The next pickled frame, or None at the end of the stream (also a stream cut mid-frame)."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        return None
    return pickle.loads(payload)  # noqa: S301 - frames come from the parent process only


def write_frame(stream: BinaryIO, value: Any) -> None:
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(payload)) + payload)
    stream.flush()


def _encode_item(path: str | None, data: bytes | None, prepare: Any, settings: tuple) -> tuple:
    from PIL import Image

    start = time.perf_counter()
    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as opened:
            pil = opened.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return ("error", "decode", str(exc), time.perf_counter() - start)
    try:
        url, original, shown = encode_pil(pil, prepare, *settings)
    except Exception as exc:  # noqa: BLE001 - reported for this image only
        return ("error", "other", f"{type(exc).__name__}: {exc}", time.perf_counter() - start)
    return ("ok", url, original, shown, time.perf_counter() - start)


def main() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # anything printed by accident must not corrupt the frames
    first = read_frame(stdin)
    if first is None:
        return
    prepare, settings = first
    write_frame(stdout, ("ready",))
    while (frame := read_frame(stdin)) is not None:
        task_id, items = frame
        write_frame(stdout, (task_id, [_encode_item(path, data, prepare, settings) for path, data in items]))


if __name__ == "__main__":
    main()
