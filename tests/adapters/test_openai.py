"""The ``openai`` adapter against real OpenAI-compatible HTTP servers on 127.0.0.1.

The servers are ``http.server`` instances run in threads; a scripted responder answers each
round from the request itself (the referenced box if the question holds one, else a fixed box),
so results are checkable. Variants fail some requests with 5xx or answer too slowly.
"""

from __future__ import annotations

import base64
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

pytest.importorskip("aiohttp")


class ScriptedServer:
    """A chat-completions endpoint whose behaviour per request is set by ``behave(n, body)``.

    ``behave`` returns ``(status, delay_s)``; status 200 answers with the scripted text.
    """

    def __init__(self, behave: Callable[[int, dict], tuple[int, float]] | None = None) -> None:
        self.behave = behave or (lambda n, body: (200, 0.0))
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
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
                    server.bodies.append(body)
                    server.headers.append(dict(self.headers))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    status, delay = server.behave(n, body)
                    time.sleep(delay)
                    if self.path != "/v1/chat/completions":
                        status = 404
                    if status == 200:
                        payload = {"choices": [{"message": {"role": "assistant", "content": scripted_answer(body)}}],
                                   "usage": {"completion_tokens": 7}}
                    else:
                        payload = {"error": {"message": f"scripted {status}"}}
                    data = json.dumps(payload).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)
                finally:
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


def scripted_answer(body: dict) -> str:
    """Answer in the model's 840 frame: the referenced box if the question cites one, else a fixed box."""
    text = body["messages"][-1]["content"][1]["text"]
    found = re.search(r"\[(\d+), (\d+), (\d+), (\d+)\]", text)
    box = [int(v) for v in found.groups()] if found else [84, 84, 420, 420]
    point = [(box[0] + box[2]) // 2, (box[1] + box[3]) // 2]
    return f'<think> scripted </think><answer>[{{"bbox_2d": {box}, "point_2d": {point}}}]</answer>'


def make(server, **options):
    defaults = {"preset": "regionreasoner-7b", "base_url": server.url, "model": "tiny",
                "max_concurrency": 4, "timeout_s": 5.0, "max_retries": 3, "backoff_s": 0.01}
    return create_adapter("openai", **{**defaults, **options})


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


def test_retries_5xx_then_succeeds(sample_bench):
    def behave(n, body):
        return (503, 0.0) if n % 2 == 0 else (200, 0.0)  # every first attempt fails

    with ScriptedServer(behave) as server:
        adapter = make(server, max_concurrency=1)
        responses = adapter.generate(first_turn_requests(sample_bench, 3))
        stats = adapter.config()["stats"]
    assert all(r.error is None for r in responses)
    assert stats["retries"] == 3 and stats["failures"] == 0 and len(server.bodies) == 6


def test_persistent_5xx_becomes_an_error_response(sample_bench):
    with ScriptedServer(lambda n, body: (500, 0.0)) as server:
        adapter = make(server, max_retries=2)
        response = adapter.generate(first_turn_requests(sample_bench, 1))[0]
    assert response.error is not None and "HTTP 500" in response.error and "3 attempt" in response.error
    assert len(server.bodies) == 3


def test_client_errors_are_not_retried(sample_bench):
    with ScriptedServer(lambda n, body: (400, 0.0)) as server:
        response = make(server).generate(first_turn_requests(sample_bench, 1))[0]
    assert "HTTP 400" in response.error and len(server.bodies) == 1


def test_slow_server_times_out_and_retries(sample_bench):
    def behave(n, body):
        return (200, 1.5) if n == 0 else (200, 0.0)  # the first answer comes too late

    with ScriptedServer(behave) as server:
        adapter = make(server, timeout_s=0.3, max_concurrency=1)
        response = adapter.generate(first_turn_requests(sample_bench, 1))[0]
        assert adapter.stats["retries"] == 1
    assert response.error is None


def test_always_slow_server_gives_timeout_errors(sample_bench):
    with ScriptedServer(lambda n, body: (200, 1.0)) as server:
        adapter = make(server, timeout_s=0.2, max_retries=1)
        response = adapter.generate(first_turn_requests(sample_bench, 1))[0]
    assert response.error is not None and "Timeout" in response.error


def test_concurrency_is_bounded(sample_bench):
    with ScriptedServer(lambda n, body: (200, 0.1)) as server:
        adapter = make(server, max_concurrency=3)
        responses = adapter.generate(first_turn_requests(sample_bench, 10))
    assert len(responses) == 10 and all(r.error is None for r in responses)
    assert 1 < server.max_in_flight <= 3


def test_bad_options_fail_clearly():
    with pytest.raises(AdapterError, match="max_concurrency"):
        create_adapter("openai", max_concurrency=0)
    with pytest.raises(AdapterError, match="image_format"):
        create_adapter("openai", image_format="gif")


def test_evaluate_streams_rounds_through_the_runner(sample_bench, tmp_path):
    """Through the runner: each round's reference is the model's own earlier answer, in its frame."""
    from regiondial_bench.api import evaluate
    from regiondial_bench.runner import read_predictions
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
