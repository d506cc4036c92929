"""The ``segllm`` adapter: SegLLM-7B through a worker process in its own environment.

SegLLM (LLaVA-1.5 + HIPIE mask decoder, torch 2.3 / transformers 4.46) cannot share an
environment with the Qwen/SAM2 stack, so this adapter starts a worker command (typically the
Python of a separate virtual environment) and talks to it over a small line protocol.

Worker protocol (version 1)
---------------------------
One JSON object per line, UTF-8, over the worker's stdin (requests) and stdout (replies); the
worker logs to stderr only. Every request has an ``op``; every reply has ``ok`` (bool) and, on
failure, ``error`` (str).

``{"op": "hello", "protocol": 1}``
    Reply: ``{"ok": true, "protocol": 1, "model": "<checkpoint>"}``. Sent once at start-up.

``{"op": "segment", "id": str, "image": {"path": str} | {"base64": str}, "image_size": [W, H],
"history": [{"round": int, "question": str, "box": [x1,y1,x2,y2] | null, "mask": RLE | null}],
"question": str, "references": [{"round": int, "box": [..] | null, "mask": RLE | null}]}``
    ``history`` holds the dialogue's earlier rounds in order, as this adapter answered them
    (SegLLM reads the whole text history in one forward pass). ``question`` has each reference
    replaced by a pointer ``"the one from round k"`` followed by a ``[REF:k]`` marker, and
    ``references`` lists those rounds with the box (original pixels) and predicted mask
    (COCO RLE ``{"size": [H, W], "counts": str}``; null for a gold-box reference) that the worker
    mask-encodes. Reply: ``{"ok": true, "id": str, "box": [x1,y1,x2,y2] | null, "mask": RLE |
    null, "text": str}`` with the box and mask in original pixels (the worker undoes SegLLM's
    1024-pixel padded frame).

``{"op": "shutdown"}``
    The worker exits; no reply is required.

A worker that exits or answers malformed JSON fails the run with an :class:`AdapterError` naming
the last lines of its stderr. ``python -m regiondial_bench.testing.fake_segllm_worker`` is a
scripted worker that implements the protocol for tests.

Example config::

    adapter: segllm
    adapter_options:
      command: [/opt/segllm/.venv/bin/python, /opt/segllm/regiondial_worker.py,
                --checkpoint, Marlo-Z/SegLLM/mr_refcoco_checkpoint]
"""

from __future__ import annotations

import base64
import json
import shlex
import subprocess
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

from ..schema import RLE, Box, Region
from .base import Adapter, AdapterError, ImageInput, RoundRequest, RoundResponse

PROTOCOL_VERSION = 1


def pointer_text(turn: int) -> str:
    """How a reference to 0-based ``turn`` is written into SegLLM's question.

    >>> pointer_text(0)
    'the one from round 1 [REF:1]'
    """
    return f"the one from round {turn + 1} [REF:{turn + 1}]"


class SegLLMAdapter(Adapter):
    """Runs SegLLM-7B in a separate worker process (see the module docstring for the protocol).

    Args:
        command: The worker command, as a list or a shell-quoted string.
        env: Extra environment variables for the worker.
        startup_timeout_s: Seconds to wait for the worker's hello.
        request_timeout_s: Seconds to wait for each reply.
        send_image_bytes: Send images inline (base64) instead of by path (remote/containers).
    """

    needs_pixels = True
    gives_masks = True  # its box and mask come from the worker, not from raw_text

    def __init__(
        self,
        command: str | Sequence[str],
        env: dict[str, str] | None = None,
        startup_timeout_s: float = 600.0,
        request_timeout_s: float = 300.0,
        send_image_bytes: bool = False,
    ) -> None:
        import os

        argv = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
        if not argv:
            raise AdapterError("segllm adapter: 'command' is empty; give the worker command line")
        self.command = argv
        self.request_timeout_s = float(request_timeout_s)
        self.send_image_bytes = send_image_bytes
        try:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, encoding="utf-8", bufsize=1, env={**os.environ, **(env or {})},
            )
        except OSError as exc:
            raise AdapterError(f"cannot start the SegLLM worker {argv[0]!r}: {exc}") from exc
        self._stderr: deque[str] = deque(maxlen=20)
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self._lines: deque[str] = deque()
        self._ready = threading.Condition()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        hello = self._call({"op": "hello", "protocol": PROTOCOL_VERSION}, timeout=startup_timeout_s)
        if hello.get("protocol") != PROTOCOL_VERSION:
            self.close()
            raise AdapterError(f"SegLLM worker speaks protocol {hello.get('protocol')!r}, expected {PROTOCOL_VERSION}")
        self.worker_model = hello.get("model")
        # (dialogue_id, turn) -> (box, mask) as this adapter answered it: references and history
        self._answers: dict[tuple[str, int], tuple[Box | None, RLE | None, str]] = {}

    # ------------------------------------------------------------------ process plumbing

    def _drain_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line.rstrip())

    def _read_stdout(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            with self._ready:
                self._lines.append(line)
                self._ready.notify_all()
        with self._ready:
            self._ready.notify_all()

    def _worker_failure(self, what: str) -> AdapterError:
        tail = "\n".join(self._stderr) or "(no stderr)"
        return AdapterError(f"SegLLM worker {what}; last stderr lines:\n{tail}")

    def _call(self, message: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        if self._proc.poll() is not None:
            raise self._worker_failure(f"exited with status {self._proc.returncode}")
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(message) + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise self._worker_failure(f"closed its input ({exc})") from exc
        limit = self.request_timeout_s if timeout is None else timeout
        with self._ready:
            got = self._ready.wait_for(lambda: self._lines or self._proc.poll() is not None, timeout=limit)
            if not self._lines:
                if not got:
                    raise self._worker_failure(f"did not answer {message['op']!r} within {limit:g} s")
                raise self._worker_failure(f"exited with status {self._proc.poll()}")
            line = self._lines.popleft()
        try:
            reply = json.loads(line)
        except json.JSONDecodeError as exc:
            raise self._worker_failure(f"wrote a line that is not JSON: {line[:200]!r}") from exc
        if not isinstance(reply, dict) or "ok" not in reply:
            raise self._worker_failure(f"wrote a reply without 'ok': {line[:200]!r}")
        if not reply["ok"] and message["op"] == "hello":
            raise self._worker_failure(f"refused hello: {reply.get('error')}")
        return reply

    # ------------------------------------------------------------------ contract

    def generate(self, requests: Sequence[RoundRequest]) -> list[RoundResponse]:
        return [self._segment(request) for request in requests]

    def _image_payload(self, image: ImageInput) -> dict[str, Any]:
        if not self.send_image_bytes and image.path is not None and image.path.is_file():
            return {"path": str(image.path.resolve())}
        if image.data is not None:
            return {"base64": base64.b64encode(image.data).decode()}
        if image.path is not None and image.path.is_file():
            return {"base64": base64.b64encode(image.path.read_bytes()).decode()}
        raise AdapterError("the SegLLM worker needs the image; pass --images DIR")

    def _segment(self, request: RoundRequest) -> RoundResponse:
        question = request.question
        references = []
        for used in request.references:
            if used is None:
                continue
            if used.text and used.text in question:
                question = question.replace(used.text, pointer_text(used.turn))
            box, mask, _ = self._answers.get((request.dialogue_id, used.turn), (None, None, ""))
            if used.box is not None and (box is None or tuple(used.box) != tuple(box)):
                box, mask = tuple(used.box), None  # gold or upstream reference: no predicted mask to encode
            references.append({"round": used.turn + 1, "box": list(box) if box else None,
                               "mask": mask.model_dump() if mask else None})
        history = []
        for turn in range(request.turn):
            box, mask, asked = self._answers.get((request.dialogue_id, turn), (None, None, ""))
            past = next((h for h in request.history if h.turn == turn), None)
            if box is None and past is not None and past.regions:
                box = past.regions[0].box  # answered before a --resume: the runner still knows the box
            history.append({"round": turn + 1, "question": past.question if past else asked,
                            "box": list(box) if box else None, "mask": mask.model_dump() if mask else None})
        size = request.image.size or request.load_image().size
        reply = self._call({
            "op": "segment",
            "id": f"{request.dialogue_id}/{request.turn}",
            "image": self._image_payload(request.image),
            "image_size": list(size),
            "history": history,
            "question": question,
            "references": references,
        })
        if not reply["ok"]:
            self._answers[request.key] = (None, None, question)
            return RoundResponse(raw_text=str(reply.get("text", "")), regions=[],
                                 error=f"SegLLM worker: {reply.get('error', 'unknown error')}")
        box = tuple(float(v) for v in reply["box"]) if reply.get("box") else None
        mask = RLE(**reply["mask"]) if reply.get("mask") else None
        self._answers[request.key] = (box, mask, question)
        regions = [Region(box=box)] if box else []
        return RoundResponse(raw_text=str(reply.get("text", "")), regions=regions, mask=mask,
                             extra={"segllm_question": question})

    def config(self) -> dict[str, Any]:
        return {"command": self.command, "worker_model": self.worker_model, "protocol": PROTOCOL_VERSION}

    def close(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is None or proc.poll() is not None:
            return
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({"op": "shutdown"}) + "\n")
            proc.stdin.flush()
            proc.stdin.close()
            proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(timeout=5)
