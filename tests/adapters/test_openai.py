"""The ``openai`` adapter against real OpenAI-compatible HTTP servers on 127.0.0.1.

The servers are ``http.server`` instances run in threads; a scripted responder answers each
round from the request itself (the referenced box if the question holds one, else a fixed box),
so results are checkable. Variants fail some requests with 5xx or answer too slowly.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from regiondial_bench.adapters import AdapterError, create_adapter

from .conftest import first_turn_requests

TRANSPORTS = [t for t in ("curl", "curl-portable", "aiohttp")
              if importlib.util.find_spec("pycurl" if t.startswith("curl") else t)]
if not TRANSPORTS:
    pytest.skip("neither pycurl nor aiohttp is installed", allow_module_level=True)


@pytest.fixture(autouse=True, params=TRANSPORTS)
def transport(request, monkeypatch):
    """Every test runs on each installed transport (``transport: auto`` resolves to it); ``curl-portable``
    is libcurl with its sockets watched by asyncio itself, as where there is no epoll."""
    from regiondial_bench.adapters import http
    from regiondial_bench.adapters import openai as openai_module

    name = request.param
    if name == "curl-portable":
        monkeypatch.setattr(http.CurlTransport, "use_epoll", False)
        name = "curl"
    monkeypatch.setattr(openai_module, "resolve_transport",
                        lambda wanted, real=openai_module.resolve_transport: name if wanted == "auto" else real(wanted))
    return name


class ScriptedServer:
    """A chat-completions endpoint whose behaviour per request is set by ``behave(n, body)``.

    ``behave`` returns ``(status, delay_s)`` or ``(status, delay_s, extra)``; status 200 answers
    with the scripted text. ``extra`` may hold ``headers`` (sent with the reply), ``content`` (the
    message content instead of the scripted text), ``usage``, ``raw`` (the whole body, bytes) and
    ``drip_s`` (send the body one byte at a time, this long apart).
    """

    def __init__(self, behave: Callable[[int, dict], tuple[int, float]] | None = None) -> None:
        self.behave = behave or (lambda n, body: (200, 0.0))
        self.bodies: list[dict] = []
        self.arrivals: list[float] = []
        self.headers: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.dripped: list[tuple[int, int]] = []  # (bytes sent, bytes of the reply) of each dripped reply
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):  # noqa: N802  (http.server naming)
                length = int(self.headers["Content-Length"])
                body = json.loads(self.rfile.read(length))
                with server.lock:
                    n = len(server.bodies)
                    server.arrivals.append(time.monotonic())
                    server.bodies.append(body)
                    server.headers.append(dict(self.headers))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                counted = True
                try:
                    status, delay, *more = server.behave(n, body)
                    extra = more[0] if more else {}
                    time.sleep(delay)
                    if self.path != "/v1/chat/completions":
                        status = 404
                    if status == 200:
                        content = extra["content"] if "content" in extra else scripted_answer(body)
                        payload = {"choices": [{"message": {"role": "assistant", "content": content}}],
                                   "usage": extra.get("usage", {"completion_tokens": 7})}
                    else:
                        payload = {"error": {"message": f"scripted {status}"}}
                    data = extra["raw"] if "raw" in extra else json.dumps(payload).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in extra.get("headers", {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    if "drip_s" in extra:
                        sent = 0
                        try:
                            for i in range(len(data)):
                                self.wfile.write(data[i:i + 1])
                                self.wfile.flush()
                                sent = i + 1
                                time.sleep(extra["drip_s"])
                        finally:
                            server.dripped.append((sent, len(data)))
                    else:
                        # the request stops counting as in flight before its last byte leaves: the
                        # client may send its next request the moment it has read this one
                        with server.lock:
                            server.in_flight -= 1
                            counted = False
                        self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)
                finally:
                    if counted:
                        with server.lock:
                            server.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def raw_requests(listener, stop: threading.Event | None = None):
    """A hand-written server's connections (for replies ``http.server`` cannot send): each accepted
    connection, open, with its request head and the part of the body read with it."""
    while stop is None or not stop.is_set():
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:  # the client hung up before its head was complete
                    break
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            yield conn, head, body


def scripted_answer(body: dict) -> str:
    """Answer in the model's 840 frame: the referenced box if the question cites one, else a fixed box."""
    text = body["messages"][-1]["content"][1]["text"]
    found = re.search(r"\[(\d+), (\d+), (\d+), (\d+)\]", text)
    box = [int(v) for v in found.groups()] if found else [84, 84, 420, 420]
    point = [(box[0] + box[2]) // 2, (box[1] + box[3]) // 2]
    return f'<think> scripted </think><answer>[{{"bbox_2d": {box}, "point_2d": {point}}}]</answer>'


def make(server, loop_mode="thread", **options):
    """The adapter under test; ``loop_mode="driven"``: its event loop runs on this thread (``drive_here``)."""
    defaults = {"preset": "regionreasoner-7b", "base_url": server.url, "model": "tiny",
                "max_concurrency": 4, "timeout_s": 5.0, "max_retries": 3, "backoff_s": 0.01}
    adapter = create_adapter("openai", **{**defaults, **options})
    if loop_mode == "driven":
        adapter.drive_here()
    return adapter


@pytest.fixture(params=["thread", "driven"])
def loop_mode(request):
    """The event loop on the adapter's own thread, or driven by the caller's (what the runner does)."""
    return request.param


def test_request_shape_image_inline_and_api_key(sample_bench, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("REGIONDIAL_TEST_KEY", "sk-test-123")
    with ScriptedServer() as server:
        adapter = make(server, api_key_env="REGIONDIAL_TEST_KEY", squash_size=224)
        request = first_turn_requests(sample_bench, 1)[0]
        response = adapter.generate([request])[0]
        adapter.close()
    body = server.bodies[0]
    assert server.headers[0]["Authorization"] == "Bearer sk-test-123"
    assert server.headers[0]["Content-Type"] == "application/json"  # FastAPI servers (vLLM) insist on it
    assert body["model"] == "tiny" and body["temperature"] == 0.0 and body["max_tokens"] == 2048
    image_part, text_part = body["messages"][0]["content"]
    assert image_part["type"] == "image_url" and text_part["type"] == "text"
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.size == (224, 224)  # squashed client-side as the preset says
    assert 'Please find "find the' in text_part["text"]
    assert response.error is None and response.frame.width == 224
    assert response.extra["completion_tokens"] == 7


def test_retries_5xx_then_succeeds(sample_bench, loop_mode):
    def behave(n, body):
        return (503, 0.0) if n % 2 == 0 else (200, 0.0)  # every first attempt fails

    with ScriptedServer(behave) as server:
        adapter = make(server, loop_mode, max_concurrency=1)
        responses = adapter.generate(first_turn_requests(sample_bench, 3))
        stats = adapter.config()["stats"]
    assert all(r.error is None for r in responses)
    assert stats["retries"] == 3 and stats["failures"] == 0 and len(server.bodies) == 6


def test_persistent_5xx_becomes_an_error_response(sample_bench, loop_mode):
    with ScriptedServer(lambda n, body: (500, 0.0)) as server:
        adapter = make(server, loop_mode, max_retries=2)
        response = adapter.generate(first_turn_requests(sample_bench, 1))[0]
    assert response.error is not None and "HTTP 500" in response.error and "3 attempt" in response.error
    assert response.failure_kind == "infra"  # --retry-infra asks it again
    assert len(server.bodies) == 3


def test_client_errors_are_not_retried(sample_bench):
    with ScriptedServer(lambda n, body: (400, 0.0)) as server:
        response = make(server).generate(first_turn_requests(sample_bench, 1))[0]
    assert "HTTP 400" in response.error and len(server.bodies) == 1
    assert response.failure_kind is None  # the request was wrong, not the infrastructure


def wait_until(condition, limit_s: float = 60.0) -> None:
    """Block until ``condition()`` holds; a hang guard far above any loaded machine's delay."""
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.01)

@pytest.mark.parametrize("status", [302, 307, 501])
def test_a_redirect_or_an_unexpected_status_is_an_infrastructure_failure(sample_bench, status):
    """Observed: an HTTP 302 from the server counted as an answer failure (exit 0 with AP50 0, and
    --retry-infra skipped it)."""
    with ScriptedServer(lambda n, body: (status, 0.0)) as server:
        response = make(server).generate(first_turn_requests(sample_bench, 1))[0]
    assert f"HTTP {status}" in response.error and len(server.bodies) == 1
    assert response.failure_kind == "infra"


def test_slow_server_times_out_and_retries(sample_bench, loop_mode):
    def behave(n, body):
        if n == 0:  # the first answer comes only once the client has given up on it and asked again
            wait_until(lambda: len(server.bodies) > 1)
        return (200, 0.0)

    with ScriptedServer(behave) as server:
        adapter = make(server, loop_mode, timeout_s=1.0, max_concurrency=1)
        response = adapter.generate(first_turn_requests(sample_bench, 1))[0]
        assert adapter.stats["retries"] >= 1 and len(server.bodies) >= 2
    assert response.error is None


def test_always_slow_server_gives_timeout_errors(sample_bench):
    with ScriptedServer(lambda n, body: (200, 1.0)) as server:
        adapter = make(server, timeout_s=0.2, max_retries=1)
        response = adapter.generate(first_turn_requests(sample_bench, 1))[0]
    assert response.error is not None and "Timeout" in response.error


def test_concurrency_is_bounded(sample_bench, loop_mode):
    def behave(n, body):  # each request waits for company (or for the last one to arrive): no timing luck
        wait_until(lambda: server.in_flight >= 2 or len(server.bodies) >= 10)
        return (200, 0.0)

    with ScriptedServer(behave) as server:
        adapter = make(server, loop_mode, max_concurrency=3, timeout_s=120.0)
        responses = adapter.generate(first_turn_requests(sample_bench, 10))
    assert len(responses) == 10 and all(r.error is None for r in responses)
    assert 1 < server.max_in_flight <= 3


def test_bad_options_fail_clearly():
    with pytest.raises(AdapterError, match="max_concurrency"):
        create_adapter("openai", max_concurrency=0)
    with pytest.raises(AdapterError, match="image_format"):
        create_adapter("openai", image_format="gif")
    with pytest.raises(AdapterError, match="image_encoder: Input should be 'process' or 'thread'"):
        create_adapter("openai", image_encoder="gpu")


def test_evaluate_streams_rounds_through_the_runner(sample_bench, tmp_path):
    """Through the runner: each round's reference is the model's own earlier answer, in its frame."""
    from regiondial_bench.api import evaluate
    from regiondial_bench.run.folder import read_predictions
    from regiondial_bench.schema import RunConfig

    def behave(n, body):
        return (502, 0.0) if n % 5 == 0 else (200, 0.01)

    with ScriptedServer(behave) as server:
        config = RunConfig(adapter="openai", adapter_options={
            "preset": "regionreasoner-7b", "base_url": server.url, "model": "tiny",
            "max_concurrency": 4, "backoff_s": 0.01, "max_retries": 3}, limit=5)
        results = evaluate(sample_bench, config, tmp_path / "run", progress=False, n_bootstrap=10)
    records = read_predictions(tmp_path / "run" / "predictions.jsonl")
    assert len(records) == sum(len(d.turns) for d in list(sample_bench)[:5])
    assert all(r.error is None for r in records)
    by_key = {r.key: r for r in records}
    for record in records:
        for used in record.references:
            if used.source == "predicted":
                earlier = by_key[(record.dialogue_id, used.turn)]
                # the scripted model copies the reference back, so the box round-trips through the frame
                assert used.box == pytest.approx(earlier.regions[0].box)
    assert results.provenance.adapter_config["stats"]["retries"] >= 1


# ---------------------------------------------------------------------------- hardening (issue 9)


def test_retry_after_in_seconds_is_honoured(sample_bench):
    def behave(n, body):
        return (429, 0.0, {"headers": {"Retry-After": "1"}}) if n == 0 else (200, 0.0)

    with ScriptedServer(behave) as server:
        adapter = make(server, backoff_s=0.01, max_concurrency=1)
        response = adapter.generate(first_turn_requests(sample_bench, 1))[0]
        adapter.close()
    assert response.error is None and len(server.arrivals) == 2
    assert server.arrivals[1] - server.arrivals[0] >= 0.9  # the server's 1 s, not the 10 ms backoff


def backoff_waits(monkeypatch) -> list[float]:
    """The waits the adapter asks asyncio for between attempts (from now on, in this test)."""
    import asyncio

    from regiondial_bench.adapters import openai as openai_module

    waits: list[float] = []
    real_sleep = asyncio.sleep

    class Recording:
        def __getattr__(self, name):
            return getattr(asyncio, name)

        @staticmethod
        def sleep(delay, *args, **kwargs):
            waits.append(delay)
            return real_sleep(delay, *args, **kwargs)

    monkeypatch.setattr(openai_module, "asyncio", Recording())
    return waits


def test_retry_after_as_http_date_is_honoured_and_capped(sample_bench, monkeypatch):
    from email.utils import formatdate

    def behave(n, body):
        if n == 0:  # two seconds from now, as an HTTP-date (1 s resolution)
            return (503, 0.0, {"headers": {"Retry-After": formatdate(time.time() + 2.0, usegmt=True)}})
        if n == 1:  # an hour: capped at max_backoff_s
            return (503, 0.0, {"headers": {"Retry-After": "3600"}})
        return (200, 0.0)

    waits = backoff_waits(monkeypatch)
    with ScriptedServer(behave) as server:
        adapter = make(server, backoff_s=0.01, max_backoff_s=1.5, max_concurrency=1)
        response = adapter.generate(first_turn_requests(sample_bench, 1))[0]
        adapter.close()
    assert response.error is None and len(server.arrivals) == 3
    assert server.arrivals[1] - server.arrivals[0] >= 0.9  # waited for the date, not the backoff
    assert len(waits) == 2 and 0 < waits[0] <= 1.5  # the date, less the time it took to arrive (capped)
    assert waits[1] == 1.5  # the hour was capped at max_backoff_s


def test_retry_after_header_forms():
    from regiondial_bench.adapters.openai import retry_after_seconds

    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Sun, 06 Nov 1994 08:49:37 GMT", now=784111767.0) == 10.0
    assert retry_after_seconds("Sun, 06 Nov 1994 08:49:37 GMT", now=784111787.0) == 0.0  # in the past
    for bad in (None, "", "soon", "inf", "nan", "1e999", "x" * 1000):
        assert retry_after_seconds(bad) is None


def test_a_dripping_server_cannot_hold_a_request_past_its_deadline(sample_bench):
    """Every byte arrives well within the read timeout, but the whole reply would take ~20 s."""
    def behave(n, body):
        return (200, 0.0, {"drip_s": 0.05, "raw": b" " * 400 + b'{"choices": []}'})

    with ScriptedServer(behave) as server:
        adapter = make(server, timeout_s=1.0, max_retries=0, max_concurrency=1)
        response = adapter.generate(first_turn_requests(sample_bench, 1))[0]
        adapter.close()
        wait_until(lambda: server.dripped)  # the server notices the client hung up at its next byte
    assert response.failure_kind == "infra" and "Timeout" in response.error
    sent, total = server.dripped[0]
    assert sent < total  # cut while the reply was still coming: the deadline bounds the whole attempt


def test_content_as_a_list_of_parts_is_joined(sample_bench):
    parts = [{"type": "text", "text": "<think> a </think>"}, {"type": "image_url", "image_url": {"url": "x"}},
             {"type": "text", "text": '<answer>[{"bbox_2d": [84, 84, 420, 420], "point_2d": [200, 200]}]</answer>'}]

    with ScriptedServer(lambda n, body: (200, 0.0, {"content": parts})) as server:
        adapter = make(server)
        response = adapter.generate(first_turn_requests(sample_bench, 1))[0]
        stats = adapter.config()["stats"]
        adapter.close()
    assert response.error is None and stats["malformed"] == 0
    assert response.raw_text == parts[0]["text"] + parts[2]["text"]


def test_malformed_replies_are_counted_as_failures(sample_bench):
    bodies = [b"<html>gateway</html>", b'{"choices": []}', b'{"choices": [{"message": {"content": 42}}]}',
              b"[" * 100_000 + b"]" * 100_000, b'{"choices": [{"message": {"content": "\\ud800 ok"}}]}']

    with ScriptedServer(lambda n, body: (200, 0.0, {"raw": bodies[n]})) as server:
        adapter = make(server, max_concurrency=1)
        requests = first_turn_requests(sample_bench, 5)
        responses = adapter.generate(requests)
        stats = adapter.config()["stats"]
        adapter.close()
    # images are encoded concurrently, so requests may reach the server in another order than asked:
    # which request got which body is not fixed, but four got a malformed one and one the surrogate text
    malformed = [r for r in responses if r.failure_kind == "infra"]
    assert len(malformed) == 4 and all("malformed chat-completions reply" in r.error for r in malformed)
    (good,) = [r for r in responses if r.failure_kind is None]
    assert stats["malformed"] == 4 and stats["failures"] == 4
    assert good.error is None and good.raw_text == "\ufffd ok"  # a lone surrogate cannot reach the log
    json.dumps(malformed[0].raw_text).encode("utf-8")


def test_unreachable_server_fails_fast_before_the_first_request(sample_bench, tmp_path, monkeypatch):
    import socket

    from regiondial_bench.api import evaluate
    from regiondial_bench.schema import RunConfig

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = RunConfig(adapter="openai", limit=3, adapter_options={
        "preset": "regionreasoner-7b", "base_url": f"http://127.0.0.1:{port}/v1", "model": "tiny",
        "max_retries": 4, "backoff_s": 1.0})
    waits = backoff_waits(monkeypatch)
    with pytest.raises(AdapterError) as error:
        evaluate(sample_bench, config, tmp_path / "run", progress=False)
    assert waits == []  # one check, not 4 retries with backoff per turn
    message = str(error.value)
    assert "cannot reach" in message and f"127.0.0.1:{port}" in message and "\n" not in message
    log = tmp_path / "run" / "predictions.jsonl"
    assert not log.exists() or log.read_text() == ""


@pytest.mark.parametrize("image_encoder", ["thread", "process"])
def test_each_image_is_encoded_once_per_run(sample_bench, tmp_path, monkeypatch, image_encoder):
    """Through the runner: every round of a dialogue reuses its image's payload (encoded ahead of
    its first round, from the runner's ``upcoming`` list)."""
    from collections import Counter

    from regiondial_bench.adapters.base import ImageInput
    from regiondial_bench.api import evaluate
    from regiondial_bench.schema import RunConfig

    loads: Counter = Counter()
    original = ImageInput.load

    def counting_load(self):
        loads[self.path] += 1
        return original(self)

    monkeypatch.setattr(ImageInput, "load", counting_load)
    with ScriptedServer(lambda n, body: (200, 0.0)) as server:
        config = RunConfig(adapter="openai", limit=8, adapter_options={
            "preset": "regionreasoner-7b", "base_url": server.url, "model": "tiny", "max_concurrency": 4,
            "squash_size": 112, "image_encoder": image_encoder})
        results = evaluate(sample_bench, config, tmp_path / "run", progress=False, n_bootstrap=10)
    dialogues = list(sample_bench)[:8]
    turns = sum(len(d.turns) for d in dialogues)
    images = {sample_bench.image_path(d) for d in dialogues}
    assert turns > len(dialogues) and len(server.bodies) == turns
    if image_encoder == "thread":  # loads in this process can be counted; a worker's cannot
        assert set(loads) == images and set(loads.values()) == {1}
    assert results.provenance.adapter_config["image_encoder"] == image_encoder
    stats = results.provenance.adapter_config["stats"]
    assert stats["images_encoded"] == len(images) and stats["image_cache_hits"] == turns - len(images)
    assert stats["image_prefetched"] == len(images)
    urls = {}
    for body in server.bodies:  # the same bytes for every round of a dialogue
        text = body["messages"][-1]["content"][1]["text"]
        urls.setdefault(body["messages"][-1]["content"][0]["image_url"]["url"], []).append(text)
    assert len(urls) == len(images)


def test_image_payloads_are_bounded(sample_bench):
    from regiondial_bench.adapters.presets import get_preset
    from regiondial_bench.adapters.processors import ImagePayloads

    requests = first_turn_requests(sample_bench, 4)
    resize = get_preset("regionreasoner-7b", squash_size=56).resize_for_model
    payloads = ImagePayloads(resize)
    payloads.expect({requests[0].image.path: 2})
    first = payloads.get(requests[0].image).result()
    assert payloads.cached_bytes == len(first.data_url)
    assert payloads.get(requests[0].image).result() is first  # second use: from the cache, then dropped
    assert payloads.cached_bytes == 0 and payloads.stats["images_encoded"] == 1
    payloads.close()

    small = ImagePayloads(resize, max_bytes=1)  # holds only the newest payload
    for request in requests:
        small.get(request.image).result()
    assert small.cached_bytes == len(small.get(requests[-1].image).result().data_url)
    assert small.stats["images_encoded"] == 4 and small.stats["image_cache_hits"] == 1
    small.close()


def test_an_image_that_fails_before_its_callback_is_added_does_not_deadlock(tmp_path):
    """An unreadable image can fail on the encoder thread before ``get`` registers its callback;
    the callback then runs inside ``get`` and must not wait for ``get``'s own lock."""
    from concurrent.futures import Future

    from regiondial_bench.adapters.base import ImageInput
    from regiondial_bench.adapters.processors import ImagePayloads

    class Immediate:  # an executor whose work is over by the time submit returns
        def submit(self, fn, *args):
            future = Future()
            try:
                future.set_result(fn(*args))
            except Exception as exc:  # noqa: BLE001
                future.set_exception(exc)
            return future

        def shutdown(self, **kwargs):
            pass

    bad = tmp_path / "not-an-image.jpg"
    bad.write_bytes(b"\x00" * 64)
    payloads = ImagePayloads(lambda image: image)
    payloads._pool = Immediate()
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(payloads.get(ImageInput(path=bad)).exception()),
                              daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "ImagePayloads.get deadlocked on its own lock"
    assert outcome[0] is not None and payloads.cached_bytes == 0 and not payloads._cache


def test_jpeg_payloads(sample_bench):
    from PIL import Image

    with ScriptedServer() as server:
        adapter = make(server, image_format="jpeg", jpeg_quality=80, squash_size=56)
        adapter.generate(first_turn_requests(sample_bench, 1))
        adapter.close()
    url = server.bodies[0]["messages"][0]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).format == "JPEG"


@pytest.mark.parametrize(("prompt_tokens", "warns"), [(300, True), (1300, False)])
def test_prompt_tokens_that_cannot_hold_the_image_warn_once(sample_bench, caplog, prompt_tokens, warns):
    """840x840 is 900 Qwen2.5-VL image tokens; 300 prompt tokens means the server shrank the image."""
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": 7}
    with ScriptedServer(lambda n, body: (200, 0.0, {"usage": usage})) as server:
        adapter = make(server, max_concurrency=2)
        with caplog.at_level("WARNING", logger="regiondial_bench.adapters.openai"):
            responses = adapter.generate(first_turn_requests(sample_bench, 6))
        stats = adapter.config()["stats"]
        adapter.close()
    assert all(r.error is None for r in responses)
    warnings = [r.getMessage() for r in caplog.records if "prompt tokens" in r.getMessage()]
    if warns:
        assert len(warnings) == 1 and "--mm-processor-kwargs" in warnings[0] and "900 image tokens" in warnings[0]
        assert stats["prompt_tokens_check"].startswith("mismatch")
    else:
        assert warnings == [] and stats["prompt_tokens_check"] == "consistent"


def test_streaming_order_favours_the_longest_remaining_chain():
    """One 4-turn chain behind six single-turn dialogues, two requests in flight, unit latency."""
    from regiondial_bench.run.runner import _Schedule
    from regiondial_bench.schema import Bench, Dialogue, ImageRef, Reference, Turn

    def dialogue(name, n):
        return Dialogue(dialogue_id=name, image=ImageRef(path=f"{name}.png", width=10, height=10), turns=[
            Turn(index=t, question="q", gold_boxes=[(0, 0, 5, 5)], references=[Reference(turn=t - 1)] if t else [])
            for t in range(n)])

    bench = Bench([dialogue(f"s{i}", 1) for i in range(6)] + [dialogue("chain", 4)], name="order")

    def waves(prioritize):
        schedule = _Schedule(bench, lambda d, t: {r.turn for r in t.references}, set())
        if prioritize:
            schedule.prioritize_longest_chain()
        count = 0
        while schedule.pending:
            taken = schedule.take(2)
            for key in taken:
                schedule.complete(key)
            count += 1
        return count

    assert waves(prioritize=True) == 5  # the bound: max(ceil(10 / 2), chain 4)
    assert waves(prioritize=False) == 7  # round order leaves the chain for last

    schedule = _Schedule(bench, lambda d, t: {r.turn for r in t.references}, set())
    schedule.prioritize_longest_chain()
    assert schedule.take(1) == [("chain", 0)] and schedule.chain(("chain", 1)) == 3


def test_an_unreadable_image_fails_its_turn_not_the_run(sample_bench, tmp_path):
    from regiondial_bench.adapters.base import ImageInput, RoundRequest

    bad = tmp_path / "not-an-image.jpg"
    bad.write_bytes(b"\x00" * 64)
    good = first_turn_requests(sample_bench, 1)[0]
    broken = RoundRequest(dialogue_id="x", turn=0, image=ImageInput(path=bad, width=10, height=10),
                          question="Find the dog.", question_template="Find the dog.")
    with ScriptedServer() as server:
        adapter = make(server)
        responses = adapter.generate([broken, good])
        adapter.close()
    assert "cannot read the image" in responses[0].error and responses[0].failure_kind is None
    assert responses[1].error is None and len(server.bodies) == 1


def test_the_chosen_transport_is_recorded_and_an_unknown_one_refused(sample_bench, transport):
    with ScriptedServer() as server:
        adapter = make(server)
        assert adapter.config()["transport"] == transport
        response = adapter.generate(first_turn_requests(sample_bench, 1))[0]
        adapter.close()
    assert response.error is None
    with pytest.raises(AdapterError, match="transport: Input should be .auto., .curl. or .aiohttp."):
        create_adapter("openai", preset="regionreasoner-7b", transport="carrier-pigeon")


def test_proxy_variables_are_ignored_unless_trust_env(sample_bench, monkeypatch):
    """A proxy that does not exist would fail every request if the client used it."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with ScriptedServer() as server:
        adapter = make(server, max_retries=0, check_server=False)
        response = adapter.generate(first_turn_requests(sample_bench, 1))[0]
        adapter.close()
        assert response.error is None and len(server.bodies) == 1
        proxied = make(server, max_retries=0, check_server=False, trust_env=True)
        failed = proxied.generate(first_turn_requests(sample_bench, 1))[0]
        proxied.close()
    assert failed.failure_kind == "infra" and len(server.bodies) == 1  # it went to the dead proxy


def test_large_bodies_are_sent_at_once_and_large_replies_refused(sample_bench, monkeypatch):
    """No ``Expect: 100-continue`` round trip for a large image; a reply over the cap is a failure."""
    from regiondial_bench.adapters import http

    monkeypatch.setattr(http, "MAX_REPLY_BYTES", 4096)
    big = b'{"choices": [{"message": {"content": "' + b"x" * 8000 + b'"}}]}'
    with ScriptedServer(lambda n, body: (200, 0.0, {"raw": big} if n else {})) as server:
        adapter = make(server, max_concurrency=1, max_retries=0, extra_body={"padding": "p" * 3_000_000})
        first, second = adapter.generate(first_turn_requests(sample_bench, 2))
        adapter.close()
    assert not any("expect" in {k.lower() for k in h} for h in server.headers)  # no 100-continue round trip
    responses = sorted([first, second], key=lambda r: r.error is None)
    assert "exceeds 4096 bytes" in responses[0].error and responses[0].failure_kind == "infra"
    assert responses[1].error is None


def test_closing_with_requests_in_flight_settles_every_future(sample_bench, loop_mode):
    # the server holds each reply for a minute: closing must stop the transfers, not await them
    with ScriptedServer(lambda n, body: (200, 60.0)) as server:
        adapter = make(server, loop_mode, max_concurrency=2, check_server=False)
        futures = [adapter.submit(r) for r in first_turn_requests(sample_bench, 3)]
        deadline = time.monotonic() + 30  # generous: a loaded machine may take seconds to send them
        while server.max_in_flight < 2 and time.monotonic() < deadline:
            if loop_mode == "driven":  # the requests reach the server only while the caller drives
                adapter.drive(lambda: server.max_in_flight >= 2, timeout_s=0.5)
            else:
                time.sleep(0.05)
        assert server.max_in_flight == 2  # the concurrency cap holds: the third request waits
        started = time.monotonic()
        adapter.close()
        assert time.monotonic() - started < 30  # in-flight transfers are stopped, not awaited (60 s)
    for future in futures:
        with pytest.raises(AdapterError, match="cancelled"):
            future.result(timeout=1)


@pytest.mark.parametrize("constrained", [False, True])
def test_request_bodies_from_templates_equal_encoding_the_payload(constrained):
    """The body a request sends is byte for byte ``json.dumps`` of :meth:`payload` (plus the grammar)."""
    from regiondial_bench.adapters.processors import EncodedImage

    questions = ["Find the dog.", 'the "quoted" one \\ left', "ünïcödé ☃ 中文", "tab\tnew\nline \x01", "lone \ud800 x",
                 "\0regiondial-text-slot\0 inside", ""]
    extras = [None, {"top_k": 1, "stop": ["</answer>"]}, {"note": "\0regiondial-image-slot\0"},
              {"messages": [{"role": "user", "content": "replaced"}]}]
    image = EncodedImage("data:image/png;base64,iVBORw0KGgo+/=", (640, 480), (840, 840))
    if constrained:
        pytest.importorskip("xgrammar")
    for extra in extras:
        adapter = create_adapter("openai", preset="regionreasoner-7b", base_url="http://127.0.0.1:9/v1",
                                 extra_body=extra, constrained=constrained, check_server=False)
        for question in questions:
            payload = {**adapter.payload(question, image.data_url), **adapter.grammar_body(image.original_size)}
            expected = json.dumps(payload, ensure_ascii=False).encode("utf-8", "replace")
            assert adapter.request_body(question, image) == expected, (extra, question)
        templated = adapter._templates[adapter._grammar(image.original_size)]
        # the fast path is taken unless extra_body replaces the messages or holds a slot's marker
        assert bool(templated) == (extra is None or extra == extras[1]), extra
        adapter.close()


def test_chunked_and_close_delimited_replies_and_dropped_connections(sample_bench):
    """Replies without a Content-Length (chunked, or ended by closing the connection) are read whole;
    a connection dropped mid-reply is retried, and counts as an infra failure when it keeps happening."""
    import socket

    answer = json.dumps({"choices": [{"message": {"content": scripted_answer(
        {"messages": [{"content": [None, {"text": "Find the dog."}]}]})}}]}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(answer[i:i + 7]), answer[i:i + 7]) for i in range(0, len(answer), 7))
    replies = {
        "chunked": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + chunked + b"0\r\n\r\n",
        "close": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n" + answer,
        "dropped": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n" + answer[:20],
    }

    def serve(listener, kind, served):
        for conn, head, body in raw_requests(listener):
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1)) if b"POST" in head[:5] else 0
            while len(body) < length and (chunk := conn.recv(65536)):
                body += chunk
            if b"POST" in head[:5]:
                served.append(kind)
                conn.sendall(replies[kind])
            else:
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            conn.shutdown(socket.SHUT_RDWR)

    for kind in ("chunked", "close", "dropped"):
        served = []
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(8)
            threading.Thread(target=serve, args=(listener, kind, served), daemon=True).start()
            url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
            adapter = create_adapter("openai", preset="regionreasoner-7b", base_url=url, model="tiny",
                                     max_concurrency=1, timeout_s=5.0, max_retries=1, backoff_s=0.01)
            response = adapter.generate(first_turn_requests(sample_bench, 1))[0]
            adapter.close()
        if kind == "dropped":
            assert response.failure_kind == "infra" and len(served) == 2, (response.error, served)
        else:
            assert response.error is None and "<answer>" in response.raw_text, (kind, response.error)
            assert len(served) == 1


def test_https_verifies_against_pythons_trust_store(sample_bench, transport, tmp_path, monkeypatch):
    """The curl transport trusts what Python's ssl trusts ($SSL_CERT_FILE included): a server whose
    certificate is not in that store is refused, and trusted once the store holds it."""
    import shutil
    import ssl
    import subprocess

    if transport != "curl":
        pytest.skip("aiohttp builds its default TLS context when it is imported (before the test sets the store)")
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                           "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                           "-addext", "subjectAltName=IP:127.0.0.1"], capture_output=True, timeout=60)
    if made.returncode != 0:
        pytest.skip(f"openssl could not make a certificate: {made.stderr[-200:]!r}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with ScriptedServer() as server:
        server.httpd.socket = context.wrap_socket(server.httpd.socket, server_side=True)
        url = server.url.replace("http://", "https://")
        untrusted = make(server, base_url=url, max_retries=0, check_server=False)
        refused = untrusted.generate(first_turn_requests(sample_bench, 1))[0]
        untrusted.close()
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        trusted = make(server, base_url=url, max_retries=0, check_server=False)
        answered = trusted.generate(first_turn_requests(sample_bench, 1))[0]
        trusted.close()
    assert refused.failure_kind == "infra" and "libcurl error 60" in refused.error, refused.error
    assert answered.error is None and "<answer>" in answered.raw_text


def test_an_endless_reply_is_cut_at_the_cap_not_read_to_the_deadline(sample_bench, monkeypatch):
    """A server that declares a gigabyte and keeps sending: the client stops at the cap at once."""
    import socket

    from regiondial_bench.adapters import http

    monkeypatch.setattr(http, "MAX_REPLY_BYTES", 4096)
    stop = threading.Event()

    def serve(listener):
        for conn, _, _ in raw_requests(listener, stop):
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n")
                while not stop.is_set():
                    conn.sendall(b" " * 16384)
                    time.sleep(0.01)
            except OSError:
                pass  # the client hung up: what this test wants

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        threading.Thread(target=serve, args=(listener,), daemon=True).start()
        adapter = create_adapter("openai", preset="regionreasoner-7b", base_url=f"http://127.0.0.1:{listener.getsockname()[1]}/v1",
                                 model="tiny", max_concurrency=1, timeout_s=10.0, max_retries=0, check_server=False)
        response = adapter.generate(first_turn_requests(sample_bench, 1))[0]
        adapter.close()
        stop.set()
    # cut at the cap (a reply read to the deadline would fail with "Timeout" instead)
    assert response.failure_kind == "infra" and "exceeds 4096 bytes" in response.error, response.error


@pytest.mark.parametrize("with_masks", [False, True])
def test_the_runner_drives_the_event_loop_unless_a_mask_producer_needs_its_thread(sample_bench, tmp_path,
                                                                                  with_masks):
    """Without masks the runner runs the adapter's event loop itself (no loop thread, no contention
    for the interpreter lock); a mask producer computes on the runner's thread between batches, so
    the requests in flight keep their own thread then."""
    from regiondial_bench.run.folder import read_predictions
    from regiondial_bench.run.runner import Runner
    from regiondial_bench.schema import RunConfig, RunSpec

    threads_at_requests: list[set[str]] = []
    before = {t.ident for t in threading.enumerate()}  # earlier tests' adapters may leave loop threads

    def behave(n, body):
        threads_at_requests.append({t.name for t in threading.enumerate() if t.ident not in before})
        return 200, 0.0

    class NoMasks:  # keeps the runner's thread between batches, as SAM2 would
        def masks(self, items):
            return [None] * len(items)

    from regiondial_bench.schema import Bench

    bench = Bench(list(sample_bench)[:4], name=sample_bench.name, root=sample_bench.root)
    spec = RunSpec(**RunConfig(adapter="openai").model_dump(), bench_name=bench.name,
                   bench_hash=bench.content_hash, bench_location=str(bench.root))
    with ScriptedServer(behave) as server:
        adapter = make(server)
        Runner(bench, adapter, spec, tmp_path / "run", mask_producer=NoMasks() if with_masks else None,
               progress=False).run()
        adapter.close()
    records = read_predictions(tmp_path / "run" / "predictions.jsonl")
    assert records and all(r.error is None for r in records)
    loop_thread = [("regiondial-openai" in names) for names in threads_at_requests]
    assert loop_thread == [with_masks] * len(threads_at_requests)


def test_driving_with_nothing_in_flight_returns_at_once(sample_bench):
    with ScriptedServer() as server:
        adapter = make(server, "driven")
        assert adapter.generate(first_turn_requests(sample_bench, 2))[1].error is None  # the loop exists
        done = threading.Event()
        worker = threading.Thread(target=lambda: (adapter.drive(lambda: False), done.set()), daemon=True)
        worker.start()
        worker.join(timeout=10)
        assert done.is_set(), "drive() waited for an answer that nothing in flight could bring"
        adapter.close()
