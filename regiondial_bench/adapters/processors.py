"""Loading a chat VLM's processor, also on machines without torchvision; inline image payloads.

The processor loader is used by the ``hf`` and ``vllm`` adapters and by the GRPO trainer;
:class:`ImagePayloads` by the ``openai`` adapter.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..schema import is_file
from ._image_worker import HEADER, encode_pil, read_frame
from .base import AdapterError

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
    name, settings = _processor_config(path)
    processor_cls = _image_only(getattr(transformers, name))
    return processor_cls(image_processor=image_processor, tokenizer=tokenizer, video_processor=None,
                         chat_template=tokenizer.chat_template, **settings)


def image_processor_kind(processor: Any) -> dict[str, Any]:
    """The image processor a run used, for provenance: its class and whether it is a fast one.

    transformers 5 image processors have a torchvision backend (the "fast" one) or a PIL backend;
    older ones subclass ``BaseImageProcessorFast`` or not. The two resize differently (antialiasing,
    interpolation), so the pixels a model sees, and its answers, can differ between them.
    """
    image_processor = getattr(processor, "image_processor", processor)
    bases = {cls.__name__ for cls in type(image_processor).__mro__}
    fast = bool(bases & {"TorchvisionBackend", "BaseImageProcessorFast"})
    return {"image_processor": type(image_processor).__name__, "fast": fast}


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


PROCESSOR_SETTINGS = ("image_seq_length",)
"""``processor_config.json`` settings passed on to the processor (InternVL's image tokens per tile)."""


def _processor_config(path: str | Path) -> tuple[str, dict[str, Any]]:
    """The processor class a checkpoint names (Qwen2.5-VL when it names none) and its settings."""
    name, settings = "Qwen2_5_VLProcessor", {}
    try:
        from huggingface_hub import hf_hub_download

        local = Path(path) / "processor_config.json"
        config_file = local if local.is_file() else Path(hf_hub_download(str(path), "processor_config.json"))
        config = json.loads(config_file.read_text())
        name = config.get("processor_class", name)
        settings = {k: config[k] for k in PROCESSOR_SETTINGS if k in config}
    except Exception:  # noqa: BLE001  (many checkpoints ship no processor_config.json)
        logger.debug("no processor_config.json for %s; assuming %s", path, name)
    return name, settings


# ---------------------------------------------------------------------- inline image payloads

ImageKey = Any
"""What identifies an image across rounds: its file path, else its encoded bytes."""

MAX_CHUNK = 16
"""Most images one encoder task takes (tasks start at one image and double up to this)."""


def image_key(image: Any) -> ImageKey:
    """The cache key of an :class:`~regiondial_bench.adapters.base.ImageInput`."""
    return image.path if image.path is not None else image.data


@dataclass
class EncodedImage:
    """An image as a server receives it: a base64 data URL, plus the sizes the frames need."""

    data_url: str
    original_size: tuple[int, int]
    input_size: tuple[int, int]


def encode_image(image: Any, prepare: Any, image_format: str = "png", jpeg_quality: int = 90,
                 png_compress_level: int = 1) -> EncodedImage:
    """Load ``image`` (anything with ``load() -> PIL image``), ``prepare`` it and encode it as a data URL."""
    return EncodedImage(*encode_pil(image.load(), prepare, image_format, jpeg_quality, png_compress_level))


def _encode_chunk(images: list[Any], prepare: Any, settings: tuple) -> list[tuple[Any, bool, float]]:
    """One encoder task on a thread: per image ``(EncodedImage or exception, ok, seconds)``; one bad image fails alone."""
    out: list[tuple[Any, bool, float]] = []
    for image in images:
        start = time.perf_counter()
        try:
            out.append((encode_image(image, prepare, *settings), True, time.perf_counter() - start))
        except Exception as exc:  # noqa: BLE001 - reported on that image's future
            out.append((exc, False, time.perf_counter() - start))
    return out


class EncoderProcesses:
    """``workers`` image encoder processes (``python -m regiondial_bench.adapters._image_worker``), fed over pipes.

    :meth:`submit` sends a task of images to the worker with the fewest tasks in hand and returns
    a future of the same per-image results as a thread's task. A reader thread per worker
    settles its futures. A worker that exits fails the tasks it had with
    :class:`~concurrent.futures.process.BrokenProcessPool`; the others carry on.

    Raises:
        BrokenProcessPool: from the constructor, when a worker does not start.
    """

    def __init__(self, workers: int, prepare: Any, settings: tuple, start_timeout_s: float = 120.0) -> None:
        import pickle

        first = pickle.dumps((prepare, settings))  # fails here, in the caller, when prepare cannot be pickled
        self._workers = [_EncoderWorker(first) for _ in range(max(1, workers))]
        for worker in self._workers:
            worker.wait_ready(start_timeout_s)

    def submit(self, images: list[Any]) -> Future:
        future: Future = Future()
        items, failed = [], {}
        for i, image in enumerate(images):
            if image.data is None and (image.path is None or not is_file(image.path)):
                try:
                    image.load()  # raises the same error a thread's encode would
                except Exception as exc:  # noqa: BLE001
                    failed[i] = exc
            items.append((None if image.path is None else str(image.path), image.data))
        worker = min(self._workers, key=lambda w: len(w.pending))
        worker.send([item for i, item in enumerate(items) if i not in failed], images, failed, future)
        return future

    def shutdown(self, wait: bool = False, cancel_futures: bool = False) -> None:
        """Let the workers finish what they hold and exit (``cancel_futures``: stop them now)."""
        for worker in self._workers:
            worker.close(kill=cancel_futures)
        if wait:
            for worker in self._workers:
                worker.process.wait()


class _EncoderWorker:
    def __init__(self, first_frame: bytes) -> None:
        import subprocess
        import sys

        path = [os.path.abspath(p) if p else os.getcwd() for p in sys.path]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}  # the package and prepare's module, as here
        self.process = subprocess.Popen([sys.executable, "-m", "regiondial_bench.adapters._image_worker"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.pending: dict[int, tuple[Future, list[Any], dict[int, BaseException]]] = {}
        self._lock = threading.Lock()
        self._next_id = 0
        self._dead: str | None = None
        self._ready = threading.Event()
        self._write(HEADER.pack(len(first_frame)) + first_frame)
        threading.Thread(target=self._read, name="regiondial-encode-reader", daemon=True).start()

    def wait_ready(self, timeout_s: float) -> None:
        from concurrent.futures.process import BrokenProcessPool

        if not self._ready.wait(timeout_s) or self._dead is not None:
            self.close(kill=True)
            raise BrokenProcessPool(self._dead or f"an image encoder process did not start within {timeout_s:g} s")

    def send(self, items: list, images: list, failed: dict, future: Future) -> None:
        import pickle

        with self._lock:
            task_id, self._next_id = self._next_id, self._next_id + 1
            self.pending[task_id] = (future, images, failed)
            dead = self._dead
        if dead is None and not items:
            self._deliver(task_id, [])
            return
        if dead is None:
            payload = pickle.dumps((task_id, items), protocol=pickle.HIGHEST_PROTOCOL)
            dead = self._write(HEADER.pack(len(payload)) + payload)
        if dead is not None:
            self._fail_all(dead)

    def _write(self, frame: bytes) -> str | None:
        try:
            self.process.stdin.write(frame)
            self.process.stdin.flush()
        except (OSError, ValueError) as exc:  # the worker is gone (or its pipe closed)
            return f"the image encoder process is gone ({type(exc).__name__})"
        return None

    def _read(self) -> None:
        stdout = self.process.stdout
        try:
            while (frame := read_frame(stdout)) is not None:
                if frame == ("ready",):
                    self._ready.set()
                    continue
                task_id, results = frame
                self._deliver(task_id, results)
        except Exception as exc:  # noqa: BLE001 - a garbled frame: treat the worker as dead
            logger.debug("image encoder reply unreadable", exc_info=True)
            self.process.kill()
            reason = f"the image encoder process sent an unreadable reply ({type(exc).__name__})"
        else:
            code = self.process.wait()
            reason = f"the image encoder process exited with code {code}"
        self._fail_all(reason)
        self._ready.set()

    def _deliver(self, task_id: int, results: list) -> None:
        with self._lock:
            entry = self.pending.pop(task_id, None)
        if entry is None:
            return
        future, images, failed = entry
        try:
            out = self._results(images, failed, results)
        except Exception as exc:  # noqa: BLE001 - a reply of the wrong shape fails its task, not silently
            if future.set_running_or_notify_cancel():
                future.set_exception(RuntimeError(f"the image encoder process sent a malformed reply "
                                                  f"({type(exc).__name__})"))
            raise
        if future.set_running_or_notify_cancel():
            future.set_result(out)

    @staticmethod
    def _results(images: list, failed: dict, results: list) -> list[tuple[Any, bool, float]]:
        if len(results) != len(images) - len(failed):
            raise ValueError(f"{len(results)} results for {len(images) - len(failed)} images")
        sent = iter(results)
        out = []
        for i, image in enumerate(images):
            if i in failed:
                out.append((failed[i], False, 0.0))
                continue
            status, *rest = next(sent)
            if status == "ok":
                url, original, shown, seconds = rest
                out.append((EncodedImage(url, tuple(original), tuple(shown)), True, seconds))
            else:
                kind, message, seconds = rest
                where = str(image.path) if image.path is not None else f"({len(image.data or b'')} bytes in memory)"
                error = (AdapterError(f"cannot decode the image {where}: {message}") if kind == "decode"
                         else RuntimeError(message))
                out.append((error, False, seconds))
        return out

    def _fail_all(self, reason: str) -> None:
        from concurrent.futures.process import BrokenProcessPool

        with self._lock:
            if self._dead is None:
                self._dead = reason
            pending, self.pending = self.pending, {}
        for future, _, _ in pending.values():
            if future.set_running_or_notify_cancel():
                future.set_exception(BrokenProcessPool(reason))

    def close(self, kill: bool = False) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.process.stdin.close()
        if kill:
            with contextlib.suppress(OSError):
                self.process.kill()


class EncoderDied(RuntimeError):
    """The worker process encoding an image died (a crash in the decoder, or the OOM killer)."""


class ImagePayloads:
    """Data URLs of a run's images, encoded once per image and reused by every round of its dialogue.

    :meth:`get` returns a future, so rounds of the same dialogue that ask at the same time share
    one encode. Encoding runs in worker processes (``processes=True``, :class:`EncoderProcesses`:
    off the caller's interpreter lock, so the HTTP loop and the run loop keep it; a worker that
    dies is replaced) or on a thread pool. :meth:`prefetch` takes the images in the order the run
    will first ask for them and keeps up to ``window`` of them encoded ahead of the asking, in tasks of up to
    :data:`MAX_CHUNK` images (one image per task costs more in hand-offs than a small image
    costs to encode). The cache is bounded twice: an image whose expected uses (from
    :meth:`expect`, one per turn of the bench) are all taken is dropped at once, and the cache
    never holds more than ``max_bytes`` of finished payloads (least recently used first out).

    Args:
        prepare: ``PIL image -> PIL image`` as the model sees it (the preset's squash or native
            mode); picklable when ``processes`` is true.
        image_format: ``png`` (lossless) or ``jpeg``.
        jpeg_quality: JPEG quality (1-95).
        png_compress_level: zlib level of the PNG (0-9; the pixels are the same at every level).
        max_bytes: Bound on the cached payloads.
        workers: Encoder processes or threads.
        processes: Encode in worker processes (else threads). When processes cannot start, the
            payloads fall back to threads with a warning (``stats["image_encoder"]`` says which ran).
    """

    def __init__(self, prepare: Any, *, image_format: str = "png", jpeg_quality: int = 90,
                 png_compress_level: int = 1, max_bytes: int = 512 << 20, workers: int = 2,
                 processes: bool = False) -> None:
        if image_format not in ("png", "jpeg"):
            raise ValueError(f"image_format must be 'png' or 'jpeg', got {image_format!r}")
        if not 1 <= int(jpeg_quality) <= 95:
            raise ValueError(f"jpeg_quality must be in 1..95, got {jpeg_quality}")
        self._prepare = prepare
        self.image_format = image_format
        self.jpeg_quality = int(jpeg_quality)
        self.png_compress_level = int(png_compress_level)
        self.max_bytes = int(max_bytes)
        self.workers = max(1, int(workers))
        self.processes = bool(processes)
        self._settings = (image_format, self.jpeg_quality, self.png_compress_level)
        self._pool: Any = None
        self._quarantine: deque[tuple[Any, ImageKey, Future]] = deque()
        self._quarantine_pool: Any = None
        self._quarantine_busy = False  # a suspect is being encoded alone
        self._closed = False
        self._lock = threading.Lock()
        self._cache: OrderedDict[ImageKey, Future] = OrderedDict()
        self._sizes: dict[ImageKey, int] = {}
        self._uses_left: dict[ImageKey, int] = {}
        self._bytes = 0
        self._order: list[Any] = []  # prefetch: images in the order the run will first ask for them
        self._next = 0  # position in _order of the next image to prefetch
        self._window = 0
        self._ahead: set[ImageKey] = set()  # prefetched, not yet asked for
        self._seen: set[int] = set()  # hashes of the keys ever asked for or prefetched (a collision only skips a prefetch)
        self._chunk = 1
        self.stats: dict[str, Any] = {"images_encoded": 0, "image_cache_hits": 0, "image_encode_s": 0.0,
                                      "image_prefetched": 0, "image_encoder": "process" if processes else "thread",
                                      "image_encoder_restarts": 0}

    # ------------------------------------------------------------------ pools

    def start(self) -> None:
        """Start the encoders now (worker processes take a moment), rather than at the first image."""
        self._executor()

    def _new_pool(self, workers: int) -> Any:
        if self.stats["image_encoder"] == "process":
            from concurrent.futures.process import BrokenProcessPool

            try:
                return EncoderProcesses(workers, self._prepare, self._settings)
            except (OSError, BrokenProcessPool) as exc:
                self._use_threads(exc)
        return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="regiondial-encode")

    def _task(self, pool: Any, images: list[Any]) -> Future:
        if isinstance(pool, EncoderProcesses):
            return pool.submit(images)
        return pool.submit(_encode_chunk, images, self._prepare, self._settings)

    def _use_threads(self, exc: BaseException) -> None:
        logger.warning("image encoder processes cannot start (%s: %s); encoding on threads instead",
                       type(exc).__name__, exc)
        self.stats["image_encoder"] = "thread"

    def _executor(self) -> Any:
        with self._lock:
            pool = self._pool
        if pool is not None:
            return pool
        fresh = self._new_pool(self.workers)  # outside the lock: workers take a moment to start
        with self._lock:
            if self._pool is None:
                self._pool, fresh = fresh, None
            pool = self._pool
        if fresh is not None:  # another thread started one meanwhile
            fresh.shutdown(wait=False)
        return pool

    # ------------------------------------------------------------------ asking

    def expect(self, counts: dict[ImageKey, int]) -> None:
        """How many requests will use each image (e.g. the number of turns of its dialogues)."""
        with self._lock:
            self._uses_left = {k: int(v) for k, v in counts.items() if v > 0}

    def prefetch(self, images: Any, window: int) -> None:
        """Encode ``images`` (in the order they will first be asked for) ahead of :meth:`get`.

        At most ``window`` prefetched images are kept waiting for their first :meth:`get`; each
        first ask lets one more start. Images asked for before the prefetch reaches them are not
        encoded twice.
        """
        with self._lock:
            self._order, self._next, self._window = list(images), 0, max(0, int(window))
            chunks = self._top_up()
        self._submit(chunks)

    def get(self, image: Any) -> Future:
        """A future of the image's :class:`EncodedImage` (encoded now, or shared with earlier rounds)."""
        key = image_key(image)
        chunks = []
        with self._lock:
            future = self._cache.get(key)
            if key in self._ahead:  # its first ask: the prefetch was its encode
                self._ahead.discard(key)
                self._cache.move_to_end(key)
                chunks += self._top_up()
            elif future is not None:
                self._cache.move_to_end(key)
                self.stats["image_cache_hits"] += 1
            else:
                future = Future()
                self._cache[key] = future
                chunks.append([(image, key, future)])
            self._seen.add(hash(key))  # a prefetch must not encode it again
            left = self._uses_left.get(key)
            if left is not None:
                if left <= 1:
                    del self._uses_left[key]
                    self._drop(key)  # the last round of this image: the caller holds the future
                else:
                    self._uses_left[key] = left - 1
        self._submit(chunks)  # outside the lock: a task that is over at once calls back into it
        return future

    def _top_up(self) -> list[list[tuple[Any, ImageKey, Future]]]:
        """Prefetch tasks that bring the images waiting for their first ask up to the window (under the lock)."""
        chunks, chunk = [], []
        while (len(self._ahead) < self._window and self._next < len(self._order)
               and self._bytes < self.max_bytes // 2):
            image = self._order[self._next]
            self._next += 1
            key = image_key(image)
            if hash(key) in self._seen or key in self._cache:
                continue
            self._seen.add(hash(key))
            future: Future = Future()
            self._cache[key] = future
            self._ahead.add(key)
            self.stats["image_prefetched"] += 1
            chunk.append((image, key, future))
            if len(chunk) >= self._chunk:
                chunks.append(chunk)
                chunk = []
                self._chunk = min(MAX_CHUNK, 2 * self._chunk)
        if chunk:
            chunks.append(chunk)
        return chunks

    def _submit(self, chunks: list[list[tuple[Any, ImageKey, Future]]]) -> None:
        for chunk in chunks:
            if self._closed:
                self._settle(chunk, None, RuntimeError("the image payloads were closed"))
                continue
            pool = self._executor()
            try:
                task = self._task(pool, [image for image, _, _ in chunk])
            except Exception as exc:  # noqa: BLE001 - a broken or closed pool
                self._chunk_failed(pool, chunk, exc)
                continue
            task.add_done_callback(lambda t, c=chunk, p=pool: self._chunk_done(p, c, t))

    def _chunk_done(self, pool: Any, chunk: list[tuple[Any, ImageKey, Future]], task: Future) -> None:
        if task.cancelled():
            self._settle(chunk, None, RuntimeError("the image payloads were closed"))
        elif task.exception() is not None:
            self._chunk_failed(pool, chunk, task.exception())
        else:
            self._settle(chunk, task.result(), None)

    def _chunk_failed(self, pool: Any, chunk: list[tuple[Any, ImageKey, Future]], exc: BaseException) -> None:
        """A task that did not come back: a dead worker, or an image or setting that cannot be sent to one."""
        from concurrent.futures.process import BrokenProcessPool

        if not isinstance(exc, BrokenProcessPool) or self._closed:
            self._settle(chunk, None, exc)
            return
        with self._lock:
            if self._pool is pool:  # the first task to see the death replaces the pool
                self._pool = None
                self.stats["image_encoder_restarts"] += 1
            start_next, self._quarantine_busy = not self._quarantine_busy, True
            self._quarantine.extend(chunk)  # re-encoded one at a time, alone, to find the image that kills
        pool.shutdown(wait=False)  # its other tasks already failed the same way (not cancelled)
        if start_next:
            self._next_suspect()

    def _next_suspect(self) -> None:
        """Encode the next suspect alone in its own worker: if that worker dies, the image is the cause."""
        with self._lock:
            if not self._quarantine:  # all suspects done: the lone worker exits
                self._quarantine_busy = False
                pool, self._quarantine_pool = self._quarantine_pool, None
                if pool is not None:
                    pool.shutdown(wait=False)
                return
            item = self._quarantine.popleft()
            pool = self._quarantine_pool
        if pool is None:
            pool = self._new_pool(1)  # outside the lock: a worker takes a moment to start
            with self._lock:
                self._quarantine_pool = pool
        image, _, _ = item
        try:
            task = self._task(pool, [image])
        except Exception as exc:  # noqa: BLE001
            self._suspect_done(pool, item, None, exc)
            return
        task.add_done_callback(lambda t: self._suspect_done(pool, item, t, None))

    def _suspect_done(self, pool: Any, item: tuple, task: Future | None, exc: BaseException | None) -> None:
        from concurrent.futures.process import BrokenProcessPool

        if task is not None and not task.cancelled():
            exc = task.exception()
        if task is not None and task.cancelled():
            exc = RuntimeError("the image payloads were closed")
        if exc is None:
            self._settle([item], task.result(), None)
        elif isinstance(exc, BrokenProcessPool) and not self._closed:
            with self._lock:
                self._quarantine_pool = None
                self.stats["image_encoder_restarts"] += 1
            pool.shutdown(wait=False)
            self._settle([item], None, EncoderDied(
                "the image encoder process died while encoding this image alone (a crash in the image "
                "decoder, or out of memory)"))
        else:
            self._settle([item], None, exc)
        if self._closed:
            with self._lock:
                self._quarantine.clear()
            return
        self._next_suspect()

    def _settle(self, chunk: list[tuple[Any, ImageKey, Future]], results: list | None,
                failure: BaseException | None) -> None:
        """Hand each image of a task its payload or error, and account for the cache."""
        fresh = set()
        with self._lock:
            for i, (_, key, future) in enumerate(chunk):
                if results is not None:
                    value, ok, seconds = results[i]
                    self.stats["image_encode_s"] += seconds
                    if ok:
                        self.stats["images_encoded"] += 1
                else:
                    value, ok = failure, False
                if ok and self._cache.get(key) is future:
                    self._sizes[key] = len(value.data_url)
                    self._bytes += self._sizes[key]
                    fresh.add(key)
                elif not ok and self._cache.get(key) is future:
                    del self._cache[key]  # the next round reports the error again, nothing is kept
                    self._ahead.discard(key)
                chunk[i] = (value, ok, future)
            while self._bytes > self.max_bytes and len(self._cache) > 1:
                oldest = next(iter(self._cache))
                if oldest in fresh:  # never evict what just arrived
                    break
                self._drop(oldest)
        # outside the lock: the futures' callbacks (an event loop's wake-up) may take it
        for value, ok, future in chunk:
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def _drop(self, key: ImageKey) -> None:
        self._cache.pop(key, None)
        self._bytes -= self._sizes.pop(key, 0)
        self._ahead.discard(key)

    def _encode(self, image: Any) -> EncodedImage:
        """Encode one image here and now (no pool, no cache)."""
        return encode_image(image, self._prepare, *self._settings)

    @property
    def cached_bytes(self) -> int:
        return self._bytes

    def close(self) -> None:
        self._closed = True
        for pool in (self._pool, self._quarantine_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            self._cache.clear()
            self._sizes.clear()
            self._ahead.clear()
            self._bytes = 0
