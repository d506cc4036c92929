"""The ``openai`` adapter: any OpenAI-compatible chat-completions server (vLLM serve, SGLang, TGI, hosted APIs).

Each round is one ``POST {base_url}/chat/completions`` with the image inline as a base64 data
URL and the preset's prompt. The adapter is *streaming*: the runner keeps ``max_concurrency``
requests in flight and sends a dialogue's next round as soon as the round it references is
answered. Transient failures (HTTP 429/5xx, timeouts, dropped connections) are retried with
exponential backoff; a request that still fails comes back as a response with ``error`` set, so
the turn scores as a miss and the run goes on.

Example config::

    adapter: openai
    adapter_options:
      preset: regionreasoner-7b
      model: lmsdss/RegionReasoner-7B             # the name the server knows the model by
      base_url: http://127.0.0.1:8000/v1
      api_key_env: OPENAI_API_KEY                 # read from the environment, never stored
      max_concurrency: 32
"""

from __future__ import annotations

import base64
import io
import logging
import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .base import AdapterError, RoundRequest, RoundResponse
from .presets import Preset, PresetAdapter, get_preset
from .registry import require

logger = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
GRAMMAR_FIELDS = ("structured_outputs", "guided_grammar", "ebnf")


class OpenAIAdapter(PresetAdapter):
    """Chat-completions client with bounded concurrency, retries and inline images.

    Args:
        preset: Preset name or :class:`Preset` (prompt, image resize, coordinate frame).
        model: Model name sent in the request, as the server knows it (default: the preset's checkpoint id).
        base_url: Server URL up to ``/v1`` (default: ``$OPENAI_BASE_URL``, else ``http://127.0.0.1:8000/v1``).
        api_key_env: Environment variable holding the API key (sent as a Bearer token when set).
        max_concurrency: Requests in flight at once.
        timeout_s: Per-request timeout (connect + read).
        max_retries: Retries after the first attempt for transient failures.
        backoff_s: First backoff; doubles each retry (with jitter), capped at ``max_backoff_s``.
        max_backoff_s: Longest wait between retries.
        max_new_tokens: Overrides the preset's budget (sent as ``max_tokens``).
        image_format: ``png`` (lossless, default) or ``jpeg`` for the inline image.
        reference_frame: ``model`` or ``original`` (upstream parity).
        image_mode: ``squash`` resizes client-side before sending; ``native`` sends the original and
            assumes the server applies Qwen's ``smart_resize`` with the preset's pixel bounds.
        min_pixels: Native-resize lower bound assumed for the server.
        max_pixels: Native-resize upper bound assumed for the server.
        squash_size: Side of the squashed image.
        coordinate_frame: Frame answers are read in (overrides the preset).
        extra_body: Extra JSON fields merged into every request (e.g. ``{"top_k": 1}``).
        constrained: Send the preset's response grammar in the request body (server-side
            constrained decoding of vLLM or SGLang servers).
        grammar: Grammar options (``max_objects``, ``box_step``) when ``constrained``.
        grammar_field: How the grammar is sent: ``structured_outputs`` (vLLM >= 0.12:
            ``{"structured_outputs": {"grammar": ...}}``), ``guided_grammar`` (older vLLM) or
            ``ebnf`` (SGLang).
    """

    needs_pixels = True
    streaming = True

    def __init__(
        self,
        preset: str | Preset = "qwen2.5-vl-7b",
        model: str | None = None,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 16,
        timeout_s: float = 120.0,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        max_new_tokens: int | None = None,
        image_format: str = "png",
        reference_frame: str | None = None,
        image_mode: str | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        squash_size: int | None = None,
        coordinate_frame: str | None = None,
        extra_body: dict[str, Any] | None = None,
        constrained: bool = False,
        grammar: dict[str, Any] | None = None,
        grammar_field: str = "structured_outputs",
    ) -> None:
        httpx = require("httpx", "openai")
        if max_concurrency < 1:
            raise AdapterError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if max_retries < 0 or timeout_s <= 0 or backoff_s < 0:
            raise AdapterError("max_retries must be >= 0, timeout_s > 0 and backoff_s >= 0")
        if image_format not in ("png", "jpeg"):
            raise AdapterError(f"image_format must be 'png' or 'jpeg', got {image_format!r}")
        self.preset = get_preset(
            preset,
            max_new_tokens=max_new_tokens,
            reference_frame=reference_frame,
            image_mode=image_mode,
            min_pixels=min_pixels,
            max_pixels=max_pixels,
            squash_size=squash_size,
            coordinate_frame=coordinate_frame,
        )
        self.served_model = model or self.preset.model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "http://127.0.0.1:8000/v1").rstrip("/")
        self.api_key_env = api_key_env
        self.max_concurrency = int(max_concurrency)
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.image_format = image_format
        self.extra_body = dict(extra_body or {})
        self.constrained = None
        if grammar_field not in GRAMMAR_FIELDS:
            raise AdapterError(f"grammar_field must be one of {GRAMMAR_FIELDS}, got {grammar_field!r}")
        self.grammar_field = grammar_field
        if constrained:
            from .constrained import ConstrainedDecoding

            self.constrained = ConstrainedDecoding(self.preset, grammar)
        elif grammar:
            raise AdapterError("grammar options need constrained: true")
        headers = {"Content-Type": "application/json"}
        api_key = os.environ.get(api_key_env) if api_key_env else None
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(self.timeout_s), limits=limits)
        self._httpx = httpx
        self._lock = threading.Lock()
        self.stats = {"requests": 0, "retries": 0, "failures": 0}

    # ------------------------------------------------------------------ contract

    def generate(self, requests: Sequence[RoundRequest]) -> list[RoundResponse]:
        if len(requests) <= 1:
            return [self.generate_one(r) for r in requests]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(requests))) as pool:
            return list(pool.map(self.generate_one, requests))

    def generate_one(self, request: RoundRequest) -> RoundResponse:
        image = request.load_image()
        size = image.size
        payload = self.payload(request.question, self.preset.resize_for_model(image))
        payload.update(self.grammar_body(size))
        url = f"{self.base_url}/chat/completions"
        attempt, last_error = 0, "no attempt made"
        while True:
            with self._lock:
                self.stats["requests"] += 1
            try:
                reply = self._client.post(url, json=payload)
            except (self._httpx.TimeoutException, self._httpx.TransportError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            else:
                if reply.status_code == 200:
                    return self._response(reply, size)
                last_error = f"HTTP {reply.status_code}: {reply.text[:200]}"
                if reply.status_code not in RETRY_STATUS:
                    last_error += self._grammar_rejection_hint(reply.status_code)
                    break  # 4xx: the request itself is wrong; retrying cannot help
            if attempt >= self.max_retries:
                break
            attempt += 1
            with self._lock:
                self.stats["retries"] += 1
            delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
            time.sleep(delay * (0.5 + random.random() / 2))
        with self._lock:
            self.stats["failures"] += 1
        logger.warning("request %s failed after %d attempt(s): %s", request.key, attempt + 1, last_error)
        return RoundResponse(raw_text="", error=f"server request failed after {attempt + 1} attempt(s): {last_error}")

    def _response(self, reply: Any, original_size: tuple[int, int]) -> RoundResponse:
        try:
            body = reply.json()
            text = body["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return RoundResponse(raw_text=reply.text[:2000], error=f"malformed chat-completions reply: {exc!r}")
        usage = body.get("usage") or {}
        return self.response(text, original_size, extra={"completion_tokens": usage.get("completion_tokens")})

    # ------------------------------------------------------------------ request body

    def payload(self, question: str, image: Any) -> dict[str, Any]:
        """The chat-completions JSON for one round (image first, as the models were trained)."""
        buffer = io.BytesIO()
        image.save(buffer, format=self.image_format.upper())
        data_url = f"data:image/{self.image_format};base64,{base64.b64encode(buffer.getvalue()).decode()}"
        messages: list[dict[str, Any]] = []
        if self.preset.system_prompt is not None:
            messages.append({"role": "system", "content": self.preset.system_prompt})
        messages.append({
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": data_url}},
                {"type": "text", "text": self.preset.user_text(question)},
            ],
        })
        body = {
            "model": self.served_model,
            "messages": messages,
            "temperature": 0.0,
            "max_tokens": self.preset.max_new_tokens,
            **self.extra_body,
        }
        return body

    def grammar_body(self, original_size: tuple[int, int]) -> dict[str, Any]:
        """The request-body field carrying the response grammar (empty when not constrained)."""
        if self.constrained is None:
            return {}
        ebnf = self.constrained.grammar_for(original_size).ebnf
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
            "max_concurrency": self.max_concurrency,
            "timeout_s": self.timeout_s,
            "max_retries": self.max_retries,
            "image_format": self.image_format,
            "extra_body": self.extra_body,
            "stats": dict(self.stats),
            "constrained": self.constrained is not None,
            **({"grammar": {"field": self.grammar_field, **self.constrained.config()}}
               if self.constrained is not None else {}),
        }

    def close(self) -> None:
        self._client.close()
