"""ImagePayloads: encoded once per image, ahead of need, off the caller's interpreter lock."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from PIL import Image

from regiondial_bench.adapters.base import ImageInput
from regiondial_bench.adapters.processors import MAX_CHUNK, EncoderDied, ImagePayloads
from regiondial_bench.testing.image_encoders import DEADLY_SIZE, identity_or_die


def images(folder, sizes):
    out = []
    for i, size in enumerate(sizes):
        path = folder / f"{i}.png"
        Image.new("RGB", size, (i % 256, 0, 0)).save(path)
        out.append(ImageInput(path=path))
    return out


def wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def live_workers() -> list[int]:
    """Process ids of this process's live image encoder children (from /proc)."""
    import os

    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and b"regiondial_bench.adapters._image_worker" in command:
            found.append(int(entry.name))
    return found


@pytest.fixture(params=["thread", "process"])
def encoder(request):
    return request.param


def make(encoder, **options):
    payloads = ImagePayloads(identity_or_die, workers=2, processes=encoder == "process", **options)
    payloads.start()
    return payloads


def test_prefetch_encodes_ahead_up_to_the_window_and_the_first_ask_reuses_it(tmp_path, encoder):
    inputs = images(tmp_path, [(8 + i, 8) for i in range(10)])
    payloads = make(encoder)
    try:
        assert payloads.stats["image_encoder"] == encoder
        payloads.prefetch(inputs, window=3)
        wait_for(lambda: payloads.stats["images_encoded"] == 3)
        time.sleep(0.2)
        assert payloads.stats["images_encoded"] == 3 and payloads.stats["image_prefetched"] == 3  # the window holds
        for i, image in enumerate(inputs):  # each first ask lets one more start
            encoded = payloads.get(image).result(timeout=30)
            assert encoded.original_size == (8 + i, 8) and encoded.data_url.startswith("data:image/png;base64,")
        wait_for(lambda: payloads.stats["images_encoded"] == 10)
        assert payloads.stats["image_prefetched"] == 10 and payloads.stats["image_cache_hits"] == 0
        payloads.get(inputs[0]).result(timeout=30)  # a later round: from the cache
        assert payloads.stats["images_encoded"] == 10 and payloads.stats["image_cache_hits"] == 1
    finally:
        payloads.close()


def test_an_image_asked_before_the_prefetch_reaches_it_is_encoded_once(tmp_path, encoder):
    inputs = images(tmp_path, [(9, 9)] * 6)
    payloads = make(encoder)
    try:
        early = payloads.get(inputs[4])  # asked before any prefetch
        payloads.prefetch(inputs, window=10)
        for image in inputs:
            payloads.get(image).result(timeout=30)
        early.result(timeout=30)
        assert payloads.stats["images_encoded"] == 6 and payloads.stats["image_prefetched"] == 5
        # asks: 1 early + 6; encodes 6; so exactly one ask (the second of image 4) was a cache hit
        assert payloads.stats["image_cache_hits"] == 1
    finally:
        payloads.close()


def test_prefetch_tasks_grow_to_the_chunk_limit(tmp_path):
    inputs = images(tmp_path, [(5, 5)] * 40)
    payloads = ImagePayloads(identity_or_die, workers=1)
    submitted = []
    real_submit = payloads._submit
    payloads._submit = lambda chunks: (submitted.extend(len(c) for c in chunks), real_submit(chunks))
    try:
        payloads.prefetch(inputs, window=40)
        assert submitted == [1, 2, 4, 8, MAX_CHUNK, 40 - 31]
    finally:
        payloads.close()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="counts worker processes in /proc")
def test_a_worker_that_dies_fails_only_the_image_that_killed_it(tmp_path):
    """A crash in the decoder (here: the process exits) takes the pool down with the whole task;
    each image of it is then encoded alone, so only the deadly one fails its turns."""
    sizes = [(10, 10), (11, 11), DEADLY_SIZE, (12, 12), (14, 14), (15, 15), (16, 16), (17, 17)]
    inputs = images(tmp_path, sizes)
    payloads = make("process")
    try:
        payloads.prefetch(inputs, window=len(inputs))
        outcomes = [payloads.get(image).exception(timeout=60) for image in inputs]
        assert isinstance(outcomes[2], EncoderDied) and "died while encoding this image alone" in str(outcomes[2])
        assert [o for i, o in enumerate(outcomes) if i != 2] == [None] * (len(inputs) - 1)
        assert payloads.stats["image_encoder_restarts"] >= 2  # the shared pool, then the deadly image's own
        (tmp_path / "again").mkdir()
        again = images(tmp_path / "again", [(18, 18)])
        assert payloads.get(again[0]).result(timeout=60).original_size == (18, 18)  # a fresh pool carries on
        wait_for(lambda: len(live_workers()) == 2)  # the fresh pool's; the dead pools' and the lone one exited
    finally:
        payloads.close()


@pytest.mark.parametrize(("executable", "reason"), [
    ("/nonexistent/python", "No such file"),  # cannot start at all
    ("/bin/false", "exited with code 1"),  # starts, then exits before it is ready
])
def test_without_worker_processes_it_falls_back_to_threads(tmp_path, monkeypatch, caplog, executable, reason):
    import sys

    if not Path(executable).exists() and executable != "/nonexistent/python":
        pytest.skip(f"no {executable} here")
    monkeypatch.setattr(sys, "executable", executable)
    inputs = images(tmp_path, [(7, 7)])
    with caplog.at_level(logging.WARNING):
        payloads = make("process")
    try:
        assert payloads.stats["image_encoder"] == "thread"
        assert "encoding on threads instead" in caplog.text and reason in caplog.text
        assert payloads.get(inputs[0]).result(timeout=30).original_size == (7, 7)
    finally:
        payloads.close()


def test_an_unreadable_image_fails_alone_in_a_prefetched_task(tmp_path, encoder):
    inputs = images(tmp_path, [(6, 6), (6, 7), (6, 8)])
    inputs[1].path.write_bytes(b"not an image")
    payloads = make(encoder)
    try:
        payloads.prefetch(inputs, window=3)
        outcomes = [payloads.get(image).exception(timeout=30) for image in inputs]
        assert outcomes[0] is None and outcomes[2] is None
        assert outcomes[1] is not None and "cannot" in str(outcomes[1]).lower()
        assert payloads.get(inputs[1]).exception(timeout=30) is not None  # asked again: fails again, not cached
    finally:
        payloads.close()


def test_closing_fails_what_is_pending_without_hanging(tmp_path, encoder):
    inputs = images(tmp_path, [(64, 64)] * 30)
    payloads = make(encoder)
    futures = [payloads.get(image) for image in inputs]
    payloads.close()
    for future in futures:
        future.exception(timeout=30)  # settled one way or the other, never left pending
    assert payloads.get(inputs[0]).exception(timeout=5) is not None  # closed: refused at once


def test_an_unguarded_script_is_not_run_again_in_the_workers(tmp_path):
    """Workers are ``python -m regiondial_bench.adapters._image_worker``, not multiprocessing children, so
    a script without an ``if __name__ == "__main__"`` guard runs once (it would run again in each
    spawn or forkserver child, which imports the parent's main module)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    image = images(tmp_path, [(21, 21)])[0]
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(root)!r})\n"
        f"open({str(tmp_path / 'runs.txt')!r}, 'a').write('ran\\n')\n"
        "from regiondial_bench.adapters.base import ImageInput\n"
        "from regiondial_bench.adapters.processors import ImagePayloads\n"
        "from regiondial_bench.testing.image_encoders import identity_or_die\n"
        "payloads = ImagePayloads(identity_or_die, processes=True, workers=2)\n"
        f"encoded = payloads.get(ImageInput(path={str(image.path)!r})).result(timeout=60)\n"
        "print(payloads.stats['image_encoder'], encoded.original_size)\n"
        "payloads.close()\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["process", "(21,", "21)"]
    assert (tmp_path / "runs.txt").read_text() == "ran\n"


def test_a_worker_reply_of_the_wrong_shape_fails_its_task_instead_of_hanging(tmp_path, monkeypatch):
    import os
    import sys

    fake = tmp_path / "fake-worker"
    fake.write_text(f"#!{sys.executable}\n"
                    "import sys\n"
                    "from regiondial_bench.adapters._image_worker import read_frame, write_frame\n"
                    "read_frame(sys.stdin.buffer)\n"
                    "write_frame(sys.stdout.buffer, ('ready',))\n"
                    "task_id, items = read_frame(sys.stdin.buffer)\n"
                    "write_frame(sys.stdout.buffer, (task_id, []))  # no result for its image\n"
                    "sys.stdin.buffer.read()\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))
    payloads = ImagePayloads(identity_or_die, workers=1, processes=True)
    payloads.start()
    try:
        assert payloads.stats["image_encoder"] == "process"
        error = payloads.get(images(tmp_path, [(5, 6)])[0]).exception(timeout=30)
        assert error is not None and "malformed reply" in str(error)
    finally:
        payloads.close()
