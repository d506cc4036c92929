"""Loading a chat VLM's processor, also on machines without torchvision; inline image payloads.

The processor loader is used by the ``hf`` and ``vllm`` adapters and by the GRPO trainer;
:class:`ImagePayloads` by the ``openai`` adapter.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def load_vlm_processor(path: str | Path, **image_processor_options: Any) -> Any:
    """Load a chat VLM's processor, also where torchvision is absent.

    ``AutoProcessor`` builds Qwen2.5-VL's video processor, which needs torchvision. Without it,
    this builds the same processor class from the tokenizer and the PIL image processor, with no
    video processor (images only).

    Args:
        path: A local folder or Hub id.
        **image_processor_options: Passed to the image processor (e.g. ``min_pixels``, ``max_pixels``).

    Returns:
        A processor whose ``__call__(text=..., images=...)`` and ``apply_chat_template`` work.
    """
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    try:
        import torchvision  # noqa: F401

        have_torchvision = True
    except ImportError:
        have_torchvision = False
    if have_torchvision:
        return AutoProcessor.from_pretrained(str(path), **image_processor_options)

    import transformers
    from packaging.version import Version

    if Version(transformers.__version__) < Version("5.18"):
        # before 5.18 every transformers 5 image processor is torchvision-based (no PIL backend)
        from .base import AdapterError

        raise AdapterError(
            f"transformers {transformers.__version__} needs torchvision to process images; install torchvision "
            "(a build matching your torch), or transformers>=5.18, which has a PIL image processor"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    image_processor = AutoImageProcessor.from_pretrained(str(path), backend="pil", **image_processor_options)
    processor_cls = _image_only(_processor_class(path))
    return processor_cls(image_processor=image_processor, tokenizer=tokenizer, video_processor=None,
                         chat_template=tokenizer.chat_template)


def _image_only(processor_cls: Any) -> Any:
    """A subclass of ``processor_cls`` that accepts ``video_processor=None`` (images only)."""

    class ImageOnlyProcessor(processor_cls):
        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument is None and argument_name == "video_processor":
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    ImageOnlyProcessor.__name__ = f"ImageOnly{processor_cls.__name__}"
    ImageOnlyProcessor.__qualname__ = ImageOnlyProcessor.__name__
    return ImageOnlyProcessor


def _processor_class(path: str | Path) -> Any:
    """The processor class a checkpoint names (Qwen2.5-VL when it names none)."""
    import transformers

    name = "Qwen2_5_VLProcessor"
    try:
        from huggingface_hub import hf_hub_download

        local = Path(path) / "processor_config.json"
        config_file = local if local.is_file() else Path(hf_hub_download(str(path), "processor_config.json"))
        name = json.loads(config_file.read_text()).get("processor_class", name)
    except Exception:  # noqa: BLE001  (many checkpoints ship no processor_config.json)
        logger.debug("no processor_config.json for %s; assuming %s", path, name)
    return getattr(transformers, name)


# ---------------------------------------------------------------------- inline image payloads

ImageKey = Any
"""What identifies an image across rounds: its file path, else its encoded bytes."""


def image_key(image: Any) -> ImageKey:
    """The cache key of an :class:`~regiondial_bench.adapters.base.ImageInput`."""
    return image.path if image.path is not None else image.data


@dataclass
class EncodedImage:
    """An image as a server receives it: a base64 data URL, plus the sizes the frames need."""

    data_url: str
    original_size: tuple[int, int]
    input_size: tuple[int, int]


class ImagePayloads:
    """Data URLs of a run's images, encoded once per image and reused by every round of its dialogue.

    :meth:`get` returns a future, so rounds of the same dialogue that ask at the same time share
    one encode. The encodes run on a small thread pool (PIL releases the GIL while it resizes and
    compresses). The cache is bounded twice: an image whose expected uses (from :meth:`expect`,
    one per turn of the bench) are all taken is dropped at once, and the cache never holds more
    than ``max_bytes`` of finished payloads (least recently used first out).

    Args:
        prepare: ``PIL image -> PIL image`` as the model sees it (the preset's squash or native mode).
        image_format: ``png`` (lossless) or ``jpeg``.
        jpeg_quality: JPEG quality (1-95).
        png_compress_level: zlib level of the PNG (0-9; the pixels are the same at every level).
        max_bytes: Bound on the cached payloads.
        workers: Encoding threads.
    """

    def __init__(self, prepare: Any, *, image_format: str = "png", jpeg_quality: int = 90,
                 png_compress_level: int = 1, max_bytes: int = 512 << 20, workers: int = 2) -> None:
        if image_format not in ("png", "jpeg"):
            raise ValueError(f"image_format must be 'png' or 'jpeg', got {image_format!r}")
        if not 1 <= int(jpeg_quality) <= 95:
            raise ValueError(f"jpeg_quality must be in 1..95, got {jpeg_quality}")
        self._prepare = prepare
        self.image_format = image_format
        self.jpeg_quality = int(jpeg_quality)
        self.png_compress_level = int(png_compress_level)
        self.max_bytes = int(max_bytes)
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="regiondial-encode")
        self._lock = threading.Lock()
        self._cache: OrderedDict[ImageKey, Future] = OrderedDict()
        self._sizes: dict[ImageKey, int] = {}
        self._uses_left: dict[ImageKey, int] = {}
        self._bytes = 0
        self.stats = {"images_encoded": 0, "image_cache_hits": 0, "image_encode_s": 0.0}

    def expect(self, counts: dict[ImageKey, int]) -> None:
        """How many requests will use each image (e.g. the number of turns of its dialogues)."""
        with self._lock:
            self._uses_left = {k: int(v) for k, v in counts.items() if v > 0}

    def get(self, image: Any) -> Future:
        """A future of the image's :class:`EncodedImage` (encoded now, or shared with earlier rounds)."""
        key = image_key(image)
        started = None
        with self._lock:
            future = self._cache.get(key)
            if future is not None:
                self._cache.move_to_end(key)
                self.stats["image_cache_hits"] += 1
            else:
                future = started = self._pool.submit(self._encode, image)
                self._cache[key] = future
            left = self._uses_left.get(key)
            if left is not None:
                if left <= 1:
                    del self._uses_left[key]
                    self._drop(key)  # the last round of this image: the caller holds the future
                else:
                    self._uses_left[key] = left - 1
        if started is not None:
            # outside the lock: a future that is already done runs the callback here and now, and
            # the callback takes the lock (inside it, an image that fails at once deadlocked the loop)
            started.add_done_callback(lambda f, k=key: self._finished(k, f))
        return future

    def _encode(self, image: Any) -> EncodedImage:
        import base64
        import io

        start = time.perf_counter()
        pil = image.load()
        original = pil.size
        shown = self._prepare(pil)
        buffer = io.BytesIO()
        if self.image_format == "jpeg":
            shown.save(buffer, format="JPEG", quality=self.jpeg_quality)
        else:
            shown.save(buffer, format="PNG", compress_level=self.png_compress_level)
        url = f"data:image/{self.image_format};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"
        with self._lock:
            self.stats["images_encoded"] += 1
            self.stats["image_encode_s"] += time.perf_counter() - start
        return EncodedImage(url, original, shown.size)

    def _finished(self, key: ImageKey, future: Future) -> None:
        with self._lock:
            if self._cache.get(key) is not future:
                return  # dropped while encoding
            if future.exception() is not None:
                del self._cache[key]  # the next round reports the error again, nothing is kept
                return
            size = len(future.result().data_url)
            self._sizes[key] = size
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._cache) > 1:
                oldest = next(iter(self._cache))
                if oldest == key:
                    break
                self._drop(oldest)

    def _drop(self, key: ImageKey) -> None:
        self._cache.pop(key, None)
        self._bytes -= self._sizes.pop(key, 0)

    @property
    def cached_bytes(self) -> int:
        return self._bytes

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            self._cache.clear()
            self._sizes.clear()
            self._bytes = 0
