"""The ``openai`` adapter: any OpenAI-compatible chat-completions server (vLLM serve, SGLang, TGI, hosted APIs).

Each round is one ``POST {base_url}/chat/completions`` with the image inline as a base64 data
URL and the preset's prompt. The adapter is *streaming*: the runner keeps ``max_concurrency``
requests in flight and sends a dialogue's next round as soon as the round it references is
answered. All requests run on one asyncio event loop (no thread per request): in a background
thread, or, when the runner takes it over with :meth:`OpenAIAdapter.drive_here`, on the runner's
own thread (no second thread contending for the interpreter lock). The HTTP goes through
libcurl's multi interface (``pycurl``, the default when installed) or one ``aiohttp`` session
(``transport: aiohttp``); see :mod:`.http` and ``benchmarks/RESULTS.md`` for what each costs per
request. Each image is encoded once per run and reused by every round of its
dialogue.

Transient failures (HTTP 408/409/425/429/5xx, timeouts, dropped connections) are retried with
exponential backoff, or after the server's ``Retry-After`` when it sends one (both capped at
``max_backoff_s``). ``timeout_s`` bounds a whole attempt (connect, send, headers and body), so a
server that drips its reply byte by byte cannot hold a request. A request that still fails comes
back as a response with ``error`` set and ``failure_kind="infra"``, so the turn scores as a miss,
the run goes on, and ``--retry-infra`` can ask it again. Before the first request the server is
checked once; when it cannot be reached the run stops at once with a one-line message.

Example config::

    adapter: openai
    adapter_options:
      preset: regionreasoner-7b
      model: lmsdss/RegionReasoner-7B             # the name the server knows the model by
      base_url: http://127.0.0.1:8000/v1
      api_key_env: OPENAI_API_KEY                 # read from the environment, never stored
      max_concurrency: 32
      # transport: auto                           # curl (pycurl) when installed, else aiohttp
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from datetime import timezone
from typing import Any

from . import http as transports
from .base import AdapterError, RoundRequest, RoundResponse
from .http import TransportError, make_transport, resolve_transport
from .options import OpenAIOptions, merged
from .presets import QWEN_PATCH_FACTOR, PresetAdapter
from .processors import EncodedImage, ImagePayloads, image_key

logger = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_SURROGATES = re.compile("[\ud800-\udfff]")
PROMPT_TOKEN_CHECKS = 8
"""How many first replies have their ``usage.prompt_tokens`` compared with the preset's image size."""


class _Malformed(Exception):
    """A 200 reply that is not a chat completion."""


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or HTTP-date); None when absent or invalid.

    >>> retry_after_seconds("7")
    7.0
    >>> retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0)
    10.0
    >>> retry_after_seconds("soon") is None, retry_after_seconds("nan") is None, retry_after_seconds("-3")
    (True, True, 0.0)
    """
    if not value or len(value) > 64:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def message_text(content: Any) -> str:
    """The text of a reply message's ``content``: a string, None, or a list of parts (text parts joined).

    >>> message_text([{"type": "text", "text": "<answer>"}, {"type": "image_url"}, {"type": "text", "text": "[]</answer>"}])
    '<answer>[]</answer>'
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") in ("text", "output_text"):
                text = part.get("text")
                if not isinstance(text, str):
                    raise _Malformed(f"a text part of the message content holds {type(text).__name__}, not a string")
                texts.append(text)
        return "".join(texts)
    raise _Malformed(f"message content is {type(content).__name__}, not a string or a list of parts")


def _clean_text(text: str) -> str:
    """Text that can be written as UTF-8 (a lone surrogate from a JSON escape becomes U+FFFD)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", text)
    return text


def qwen_image_tokens(input_size: tuple[int, int], factor: int = QWEN_PATCH_FACTOR) -> int:
    """Image tokens a Qwen-VL model spends on an input of this size: one per merged patch
    (28x28 for Qwen2-VL/2.5-VL, 32x32 for Qwen3-VL).

    >>> qwen_image_tokens((840, 840)), qwen_image_tokens((640, 480), 32)
    (900, 300)
    """
    return (input_size[0] // factor) * (input_size[1] // factor)

GRAMMAR_FIELDS = ("structured_outputs", "guided_grammar", "ebnf")
_IMAGE_SLOT, _TEXT_SLOT = "\0regiondial-image-slot\0", "\0regiondial-text-slot\0"
_SLOT_MARK = json.dumps("\0regiondial")[1:-1]
"""How a slot's start reads once JSON-encoded (a NUL is escaped): a template holds it only at its two slots."""


class OpenAIAdapter(PresetAdapter):
    """Chat-completions client with bounded concurrency, retries, deadlines and inline images.

    Options: :class:`~.options.OpenAIOptions` (the shared preset options plus the server, concurrency,
    retry, image-encoding and transport settings), given as an object or as keywords. ``model`` is
    the model name the server knows (default: the preset's checkpoint id).
    """

    needs_pixels = True
    streaming = True

    options_class = OpenAIOptions

    def __init__(self, options: OpenAIOptions | None = None, /, **kwargs: Any) -> None:
        self.options = opts = merged(options, kwargs, OpenAIOptions)
        self.transport_name = resolve_transport(opts.transport)
        self.preset = opts.build_preset()
        self.sampling_settings = opts.sampling()
        self.served_model = opts.model or self.preset.model
        if not self.served_model:
            raise AdapterError(f"preset {self.preset.name!r} names no model: set model to the name the server "
                               "serves it under (e.g. -o model=gpt-4o)")
        self.base_url = (opts.base_url or os.environ.get("OPENAI_BASE_URL") or "http://127.0.0.1:8000/v1").rstrip("/")
        self.api_key_env = opts.api_key_env
        self.max_concurrency = opts.max_concurrency
        self.timeout_s = opts.timeout_s
        self.max_retries = opts.max_retries
        self.backoff_s = opts.backoff_s
        self.max_backoff_s = opts.max_backoff_s
        self.image_format = opts.image_format
        self.jpeg_quality = opts.jpeg_quality
        self.check_server = opts.check_server
        # the image-token count is known for Qwen-VL presets (patch-based smart_resize) only
        self.check_prompt_tokens = (opts.check_prompt_tokens if opts.check_prompt_tokens is not None
                                    else self.preset.patch_factor is not None)
        self.extra_body = dict(opts.extra_body or {})
        self._headers = {"Content-Type": "application/json"}
        self.constrained = None
        self.grammar_field = opts.grammar_field
        if opts.constrained:
            from .constrained import ConstrainedDecoding

            self.constrained = ConstrainedDecoding(self.preset, opts.grammar_options())
        api_key = os.environ.get(opts.api_key_env) if opts.api_key_env else None
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self.trust_env = opts.trust_env
        self._transport = make_transport(self.transport_name, headers=self._headers,
                                         max_connections=self.max_concurrency, timeout_s=self.timeout_s,
                                         trust_env=self.trust_env)
        workers = opts.image_workers or min(4 if opts.image_encoder == "process" else 8, os.cpu_count() or 2)
        self.images = ImagePayloads(self.preset.image_prepare(), image_format=opts.image_format,
                                    jpeg_quality=opts.jpeg_quality, png_compress_level=opts.png_compress_level,
                                    max_bytes=int(opts.image_cache_mb * (1 << 20)), workers=workers,
                                    processes=opts.image_encoder == "process")
        self._url = f"{self.base_url}/chat/completions"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._slots: asyncio.Semaphore | None = None
        self._start_lock = threading.Lock()
        self._submit_lock = threading.Lock()
        self._submitted: list[tuple[RoundRequest, Future]] = []
        self._wake_pending = False
        self._driven = False  # drive_here(): the caller's thread runs the loop
        self._wake: asyncio.Future | None = None
        self._in_flight = 0  # driven: submitted and not yet settled
        self._templates: dict[str | None, tuple[bytes, ...]] = {}  # request-body templates, by grammar
        self._checks_left = PROMPT_TOKEN_CHECKS if self.check_prompt_tokens else 0
        self._checked_server = False
        self.server_info: dict[str, Any] = {"served_by": None, "version": None}
        self.stats: dict[str, Any] = {"requests": 0, "retries": 0, "failures": 0, "malformed": 0}

    # ------------------------------------------------------------------ event loop

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._loop is None and self._driven:
                loop = asyncio.new_event_loop()
                self._loop = loop
                loop.run_until_complete(self._open_clients())
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=serve, name="regiondial-openai", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
                asyncio.run_coroutine_threadsafe(self._open_clients(), loop).result()
        return self._loop

    async def _open_clients(self) -> None:
        await self._transport.open()
        self._slots = asyncio.Semaphore(self.max_concurrency)

    # ------------------------------------------------------------------ contract

    def prepare(self, bench: Any) -> None:
        """Check the server once, and learn how many rounds use each image (to free it after its last)."""
        counts: dict[Any, int] = {}
        for dialogue in bench:
            path = bench.image_path(dialogue)
            if path is not None:
                counts[path] = counts.get(path, 0) + len(dialogue.turns)
        self.images.expect(counts)
        # the encoder processes start with the first image asked or prefetched (a run answered from the
        # response cache asks none, and skips their start-up)
        if self.check_server and not self._checked_server:
            loop = self._ensure_loop()
            if self._driven:
                loop.run_until_complete(self._probe())
            else:
                asyncio.run_coroutine_threadsafe(self._probe(), loop).result()
            self._checked_server = True

    def upcoming(self, images: Sequence[Any]) -> None:
        """The run's images in the order it will first ask for them: encoded ahead, up to 2x ``max_concurrency``."""
        self.images.prefetch(images, window=2 * self.max_concurrency)

    def drive_here(self) -> None:
        """Run the event loop on the calling thread from now on, inside :meth:`drive` and :meth:`generate`.

        The runner's streaming path calls this before its first :meth:`submit` (when no mask
        producer needs the thread meanwhile). The requests' I/O then makes progress only while
        that thread is in :meth:`drive`, and the run loop and the event loop no longer take the
        interpreter lock from each other: at L=50 ms, C=256 this measured 0.66-0.69 of the bound
        against 0.57-0.62 with the loop thread (``benchmarks/RESULTS.md``). Call it from the
        thread that will drive, with nothing in flight.
        """
        with self._start_lock:
            if self._driven:
                return
            loop, thread = self._loop, self._thread
            if thread is not None:  # started for the server check: take the loop over
                loop.call_soon_threadsafe(loop.stop)
                thread.join()
                self._thread = None
            self._driven = True

    def drive(self, until: Any, timeout_s: float | None = None) -> None:
        """Run the event loop until ``until()`` is true (checked whenever a request finishes), or
        for at most ``timeout_s``.

        Without :meth:`drive_here` the loop runs on its own thread and this returns at once; so
        it does when nothing is in flight (nothing could make ``until()`` true).
        """
        if not self._driven or self._loop is None:
            return
        loop = self._loop
        timer = None
        if timeout_s is not None:
            expired = [False]

            def expire() -> None:
                expired[0] = True
                if self._wake is not None and not self._wake.done():
                    self._wake.set_result(None)

            timer = loop.call_later(timeout_s, expire)
        try:
            while not until() and not (timer is not None and expired[0]) and (self._in_flight or timer is not None):
                self._wake = loop.create_future()
                loop.run_until_complete(self._wake)
        finally:
            if timer is not None:
                timer.cancel()

    def submit(self, request: RoundRequest) -> Future:
        """Start answering one request; a :class:`concurrent.futures.Future` of its :class:`RoundResponse`.

        The runner's streaming path uses this instead of a thread per request in flight. Requests
        submitted in a burst wake the event loop once (waking it costs a system call). After
        :meth:`drive_here` the future completes while the caller is in :meth:`drive`.
        """
        loop = self._ensure_loop()
        future: Future = Future()
        if self._driven:
            future.set_running_or_notify_cancel()
            self._in_flight += 1
            task = loop.create_task(self._answer(request))
            task.add_done_callback(lambda t, f=future: self._settle_driven(f, t))
            return future
        with self._submit_lock:
            self._submitted.append((request, future))
            wake, self._wake_pending = not self._wake_pending, True
        if wake:
            loop.call_soon_threadsafe(self._start_submitted)
        return future

    def _start_submitted(self) -> None:
        with self._submit_lock:
            batch, self._submitted, self._wake_pending = self._submitted, [], False
        for request, future in batch:
            if future.set_running_or_notify_cancel():
                task = self._loop.create_task(self._answer(request))
                task.add_done_callback(lambda t, f=future: _settle(f, t))

    def _settle_driven(self, future: Future, task: asyncio.Task) -> None:
        self._in_flight -= 1
        _settle(future, task)
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)  # drive() looks at its condition again

    def generate(self, requests: Sequence[RoundRequest]) -> list[RoundResponse]:
        futures = [self.submit(r) for r in requests]
        self.drive(lambda: all(f.done() for f in futures))
        return [f.result() for f in futures]

    def generate_one(self, request: RoundRequest) -> RoundResponse:
        return self.generate([request])[0]

    # ------------------------------------------------------------------ one request

    async def _probe(self) -> None:
        """Fail fast, with one line, when nothing answers at ``base_url`` (any HTTP reply is an answer)."""
        url = f"{self.base_url}/models"
        try:
            status, _, data = await self._transport.request("GET", url, timeout_s=min(self.timeout_s, 10.0))
            data = (data or b"") if status == 200 else b""
        except TransportError as exc:
            reason = str(exc)
            raise AdapterError(
                f"cannot reach the OpenAI-compatible server at {self.base_url} ({reason}); start it, or set "
                "adapter_options.base_url / $OPENAI_BASE_URL to where it listens"
            ) from None
        if status in (401, 403):
            raise AdapterError(f"the server at {self.base_url} refused the API key (HTTP {status}); "
                               f"set ${self.api_key_env}")
        if status == 200:
            try:
                models = [m for m in json.loads(data).get("data", []) if isinstance(m, dict)]
            except (ValueError, AttributeError, TypeError, RecursionError):
                models = []
            served = [m.get("id") for m in models]
            if served and self.served_model not in served:
                logger.warning("the server at %s serves %s, not %r; set adapter_options.model (--model-path)",
                               self.base_url, served[:5], self.served_model)
            owner = next((m.get("owned_by") for m in models if m.get("id") == self.served_model), None)
            self.server_info["served_by"] = owner[:100] if isinstance(owner, str) else None
            self.server_info["version"] = await self._server_version()

    async def _server_version(self) -> str | None:
        """The server's version from ``GET /version`` (vLLM, SGLang answer it; hosted APIs do not)."""
        root = self.base_url.removesuffix("/v1")
        try:
            status, _, data = await self._transport.request("GET", f"{root}/version", timeout_s=min(self.timeout_s, 5.0))
            version = json.loads(data).get("version") if status == 200 and data else None
        except (TransportError, ValueError, AttributeError, TypeError, RecursionError):
            return None
        return version[:100] if isinstance(version, str) else None

    async def _answer(self, request: RoundRequest) -> RoundResponse:
        try:
            encoded = self.images.get(request.image)
            image = encoded.result() if encoded.done() else await asyncio.wrap_future(encoded)
        except Exception as exc:  # noqa: BLE001  (an unreadable image fails this turn, not the run)
            return RoundResponse(raw_text="", error=f"cannot read the image {image_key(request.image)!s:.200}: "
                                 f"{type(exc).__name__}: {exc}")
        body = self.request_body(request.question, image)
        assert self._slots is not None
        attempt, last_error, infra = 0, "no attempt made", True
        async with self._slots:
            while True:
                self.stats["requests"] += 1
                retry_after = None
                try:
                    status, retry_after_header, data = await self._transport.request("POST", self._url, body)
                except TransportError as exc:
                    last_error = (f"Timeout: no complete reply within timeout_s={self.timeout_s:g} (the deadline "
                                  f"of one attempt; {exc})" if exc.timeout else str(exc))
                else:
                    if status == 200:
                        return self._response(data, image, request)
                    shown = b"(reply too large)" if data is None else data[:200]
                    last_error = f"HTTP {status}: {shown.decode('utf-8', 'replace')}"
                    if status not in RETRY_STATUS:
                        # 4xx: the request itself is wrong (an answer failure); anything else (a redirect, an
                        # unexpected 1xx/2xx/5xx) is the server's or its proxy's: infra, which --retry-infra asks again
                        infra = not 400 <= status < 500
                        last_error += self._grammar_rejection_hint(status)
                        break
                    retry_after = retry_after_seconds(retry_after_header)
                if attempt >= self.max_retries:
                    break
                attempt += 1
                self.stats["retries"] += 1
                if retry_after is not None:
                    delay = min(self.max_backoff_s, retry_after)
                else:
                    delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
                await asyncio.sleep(delay)
        self.stats["failures"] += 1
        logger.warning("request %s failed after %d attempt(s): %s", request.key, attempt + 1, last_error)
        return RoundResponse(raw_text="", error=f"server request failed after {attempt + 1} attempt(s): {last_error}",
                             failure_kind="infra" if infra else None)

    def _response(self, data: bytes | None, image: Any, request: RoundRequest) -> RoundResponse:
        """The response of one 200 reply (``data`` None: the body passed the transport's cap)."""
        try:
            if data is None:
                raise _Malformed(f"the reply exceeds {transports.MAX_REPLY_BYTES} bytes")
            body = json.loads(data)
            if not isinstance(body, dict):
                raise _Malformed(f"the reply is a JSON {type(body).__name__}, not an object")
            choices = body.get("choices")
            if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
                raise _Malformed("the reply has no choices")
            message = choices[0].get("message")
            if not isinstance(message, dict):
                raise _Malformed("the reply's first choice has no message")
            text = _clean_text(message_text(message.get("content")))
        except (ValueError, RecursionError, _Malformed) as exc:
            self.stats["malformed"] += 1
            self.stats["failures"] += 1
            reason = str(exc)[:200] if isinstance(exc, _Malformed) else f"not JSON ({type(exc).__name__})"
            return RoundResponse(raw_text=_clean_text((data or b"")[:2000].decode("utf-8", "replace")),
                                 error=f"malformed chat-completions reply: {reason}", failure_kind="infra")
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        completion_tokens = usage.get("completion_tokens")
        if self._checks_left > 0:
            self._check_prompt_tokens(usage.get("prompt_tokens"), self.preset.input_size(image.original_size),
                                      request.question)
        # The frame is the input the *server* makes of the image sent (the preset's smart_resize in
        # native mode), the same frame reference boxes are written in (Preset.reference_text):
        # not the size of the image sent, which a native-mode server resizes again.
        return self.response(text, image.original_size, None,
                             extra={"completion_tokens": completion_tokens if _is_count(completion_tokens) else None})

    def _check_prompt_tokens(self, prompt_tokens: Any, input_size: tuple[int, int], question: str) -> None:
        """Warn once when ``prompt_tokens`` cannot hold the image tokens of the size the harness sent."""
        if not _is_count(prompt_tokens):
            return
        self._checks_left -= 1
        expected = qwen_image_tokens(input_size, self.preset.patch_factor or QWEN_PATCH_FACTOR)
        chars = len(self.preset.user_text(question)) + len(self.preset.system_prompt or "")
        # Text is 2-8 characters per BPE token for these prompts, plus a few dozen chat-template tokens.
        text_low, text_high = chars // 8, chars // 2 + 64
        seen_low, seen_high = prompt_tokens - text_high, prompt_tokens - text_low
        if seen_low / 1.25 - 16 <= expected <= seen_high * 1.25 + 16:
            self.stats.setdefault("prompt_tokens_check", "consistent")
            return
        self._checks_left = 0
        low, high = self.preset.processor_pixel_bounds()
        bounds = json.dumps({"min_pixels": low, "max_pixels": high})
        message = (
            f"the server counted {prompt_tokens} prompt tokens, but a {input_size[0]}x{input_size[1]} image is "
            f"{expected} image tokens for this Qwen-VL preset plus about {text_low}-{text_high} text tokens: the server "
            f"resized the image with other pixel bounds, so answers come in a frame this preset does not read. "
            f"Start the server with the preset's bounds, e.g. vllm serve ... --mm-processor-kwargs '{bounds}'"
        )
        self.stats["prompt_tokens_check"] = f"mismatch: {prompt_tokens} prompt tokens, expected {expected} image tokens"
        logger.warning(message)

    # ------------------------------------------------------------------ request body

    def payload(self, question: str, image: Any, image_size: tuple[int, int] | None = None) -> dict[str, Any]:
        """The chat-completions JSON for one round (image first, as the models were trained).

        ``image`` is a data URL (as :class:`ImagePayloads` makes) or a PIL image, encoded here;
        ``image_size`` is the size of the image sent (for templates that state it).
        """
        if not isinstance(image, str):
            encoded = self.images._encode(_PilImage(image))
            image, image_size = encoded.data_url, encoded.input_size
        return self._payload(image, self.preset.user_text(question, image_size))

    def _payload(self, image_url: str, text: str) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        if self.preset.system_prompt is not None:
            messages.append({"role": "system", "content": self.preset.system_prompt})
        messages.append({
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": image_url}},
                {"type": "text", "text": text},
            ],
        })
        # a pinned repetition penalty is sent, so a server that applies its checkpoint's
        # generation config (vllm serve's default) decodes as hf and vllm do; "checkpoint" sends none
        penalty = self.preset.repetition_penalty
        sampling = self.sampling_settings
        drawn: dict[str, Any] = {}
        if not sampling.greedy:
            drawn["top_p"] = sampling.top_p
            if sampling.seed is not None:
                drawn["seed"] = sampling.seed
        return {
            "model": self.served_model,
            "messages": messages,
            "temperature": sampling.temperature,
            **drawn,
            "max_tokens": self.preset.max_new_tokens,
            **({"repetition_penalty": float(penalty)} if penalty != "checkpoint" else {}),
            **self.extra_body,
        }

    def sampling_changed(self) -> None:
        self._templates.clear()  # the request-body templates hold the decoding fields

    def cache_identity(self) -> dict[str, Any]:
        image = {"format": self.image_format, **({"quality": self.jpeg_quality} if self.image_format == "jpeg" else {})}
        return self.preset_identity(
            {"model": self.served_model}, image=image, extra_body=self.extra_body,
            constrained={"field": self.grammar_field, **self.constrained.config()} if self.constrained else False)

    def request_body(self, question: str, image: EncodedImage) -> bytes:
        """The UTF-8 JSON of :meth:`payload` plus :meth:`grammar_body`, built from parts encoded once.

        Everything but the image and the question (model, system prompt, options, grammar) is
        encoded once per grammar into a template with two slots, so a request encodes only its
        question; the image's data URL (base64, nothing to escape) goes in as it is. The bytes are
        those of ``json.dumps(payload, ensure_ascii=False)`` (a test compares them); when
        ``extra_body`` overrides the messages, the body is encoded whole instead.
        """
        ebnf = self._grammar(image.original_size)
        template = self._templates.get(ebnf)
        if template is None:
            payload = self._payload(_IMAGE_SLOT, _TEXT_SLOT)
            payload.update(self._grammar_field_of(ebnf))
            text = json.dumps(payload, ensure_ascii=False)
            head, image_slot, rest = text.partition(json.dumps(_IMAGE_SLOT))
            mid, text_slot, tail = rest.partition(json.dumps(_TEXT_SLOT))
            parts = (head, mid, tail)
            if not image_slot or not text_slot or any(_SLOT_MARK in p for p in parts):
                template = ()  # extra_body replaced the messages: no template
            else:
                template = tuple(p.encode("utf-8", "replace") for p in parts)
            self._templates[ebnf] = template
        if not template:
            payload = self._payload(image.data_url, self.preset.user_text(question, image.input_size))
            payload.update(self._grammar_field_of(ebnf))
            return json.dumps(payload, ensure_ascii=False).encode("utf-8", "replace")
        head, mid, tail = template
        text = json.dumps(self.preset.user_text(question, image.input_size), ensure_ascii=False).encode("utf-8", "replace")
        return b"".join((head, b'"', image.data_url.encode("ascii"), b'"', mid, text, tail))

    def _grammar(self, original_size: tuple[int, int]) -> str | None:
        return None if self.constrained is None else self.constrained.grammar_for(original_size).ebnf

    def grammar_body(self, original_size: tuple[int, int]) -> dict[str, Any]:
        """The request-body field carrying the response grammar (empty when not constrained)."""
        return self._grammar_field_of(self._grammar(original_size))

    def _grammar_field_of(self, ebnf: str | None) -> dict[str, Any]:
        if ebnf is None:
            return {}
        if self.grammar_field == "structured_outputs":
            return {"structured_outputs": {"grammar": ebnf}}
        return {self.grammar_field: ebnf}

    def _grammar_rejection_hint(self, status: int) -> str:
        if self.constrained is None or status not in (400, 404, 422):
            return ""
        return (f" (constrained decoding: the server may not accept the {self.grammar_field!r} field; "
                f"vLLM >= 0.12 takes structured_outputs, older vLLM guided_grammar, SGLang ebnf: set "
                f"grammar_field, or run without constrained)")

    def config(self) -> dict[str, Any]:
        return {
            "preset": self.preset.describe(),
            "served_model": self.served_model,
            "base_url": self.base_url,
            "transport": self.transport_name,
            "max_concurrency": self.max_concurrency,
            "timeout_s": self.timeout_s,
            "max_retries": self.max_retries,
            "image_format": self.image_format,
            "extra_body": self.extra_body,
            "repetition_penalty": (self.preset.repetition_penalty if self.preset.repetition_penalty == "checkpoint"
                                   else float(self.preset.repetition_penalty)),
            "backend": {"name": "openai-compatible server", **self.server_info,
                        "image_processor": "server-side", "image_encoding": self.image_format},
            "image_encoder": self.images.stats["image_encoder"],
            "stats": {**self.stats, **self.images.stats, "image_encode_s": round(self.images.stats["image_encode_s"], 4)},
            **({"sampling": self.sampling_settings.describe()} if self.samples else {}),
            "constrained": self.constrained is not None,
            **({"grammar": {"field": self.grammar_field, **self.constrained.config()}}
               if self.constrained is not None else {}),
        }

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            async def shutdown() -> None:
                current = asyncio.current_task()
                pending = [t for t in asyncio.all_tasks() if t is not current]
                for task in pending:  # requests a failed run left in flight
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                await self._transport.close()

            try:
                if self._driven:
                    loop.run_until_complete(shutdown())
                else:
                    asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=10)
            except Exception:  # noqa: BLE001  (closing must not mask the run's own outcome)
                logger.debug("closing the HTTP clients failed", exc_info=True)
            if not self._driven:
                loop.call_soon_threadsafe(loop.stop)
                if self._thread is not None:
                    self._thread.join(timeout=10)
            loop.close()
        self.images.close()


def _settle(future: Future, task: asyncio.Task) -> None:
    """Copy a finished task's outcome into the future handed to the caller."""
    if task.cancelled():
        future.set_exception(AdapterError("the request was cancelled (the adapter was closed)"))
    elif task.exception() is not None:
        future.set_exception(task.exception())
    else:
        future.set_result(task.result())


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class _PilImage:
    """An already-loaded PIL image seen through the ``load()`` of an image input."""

    def __init__(self, image: Any) -> None:
        self._image = image

    def load(self) -> Any:
        return self._image
