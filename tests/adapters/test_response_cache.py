"""The response cache, against a loopback OpenAI-compatible server that counts what it is sent.

Each test has its own cache folder (tests/conftest.py), so a test sees only its own answers.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from regiondial_bench.api import evaluate
from regiondial_bench.cli import main
from regiondial_bench.run.folder import read_predictions
from regiondial_bench.run.response_cache import (
    DATABASE_FILE,
    ResponseCacheSettings,
    ResponseStore,
    encode_response,
)
from regiondial_bench.schema import RunConfig

from .test_openai import ScriptedServer

pytest.importorskip("pycurl")

DIALOGUES = 8


def config(server, mode="predicted", **options) -> RunConfig:
    adapter_options = {"preset": "regionreasoner-7b", "base_url": server.url, "model": "tiny",
                       "max_concurrency": 4, "backoff_s": 0.01, **options}
    return RunConfig(adapter="openai", reference_mode=mode, limit=DIALOGUES, adapter_options=adapter_options)


def cache_folder() -> Path:
    return ResponseCacheSettings().location()


def answers(run: Path) -> dict:
    return {r.key: (r.question, r.raw_text, r.regions, r.error) for r in read_predictions(run / "predictions.jsonl")}


def test_a_rerun_into_a_new_folder_sends_no_request(sample_bench, tmp_path):
    with ScriptedServer() as server:
        first = evaluate(sample_bench, config(server), tmp_path / "a", progress=False, n_bootstrap=10)
        asked = len(server.bodies)
        again = evaluate(sample_bench, config(server), tmp_path / "b", progress=False, n_bootstrap=10)
        assert len(server.bodies) == asked  # not one more request
    turns = first.overall.n
    assert asked == turns
    assert first.provenance.response_cache["misses"] == turns and first.provenance.response_cache["stored"] == turns
    assert again.provenance.response_cache["hits"] == turns and again.provenance.response_cache["misses"] == 0
    assert answers(tmp_path / "b") == answers(tmp_path / "a")
    assert again.rounds == first.rounds
    assert first.provenance.adapter_config["stats"]["images_encoded"] == DIALOGUES
    stats = again.provenance.adapter_config["stats"]
    assert stats["image_prefetched"] == stats["images_encoded"] == 0  # nothing asked, nothing encoded


def test_a_predicted_run_after_a_gold_run_asks_only_the_turns_whose_request_differs(sample_bench, tmp_path):
    with ScriptedServer() as server:
        evaluate(sample_bench, config(server, "gold"), tmp_path / "gold", progress=False, n_bootstrap=0)
        before = len(server.bodies)
        predicted = evaluate(sample_bench, config(server), tmp_path / "pred", progress=False, n_bootstrap=0)
        asked = len(server.bodies) - before
    gold, pred = answers(tmp_path / "gold"), answers(tmp_path / "pred")
    differing = sum(gold[k][0] != pred[k][0] for k in pred)
    assert 0 < differing < len(pred)  # the sample has turns of both kinds
    assert asked == differing
    assert predicted.provenance.response_cache["hits"] == len(pred) - differing
    # a turn asked again got the server's answer to its own question, not the gold run's
    sent = {body["messages"][-1]["content"][1]["text"] for body in server.bodies[before:]}
    assert len(sent) == differing


def test_no_cache_asks_every_turn_and_stores_nothing(sample_bench, tmp_path):
    with ScriptedServer() as server:
        options = ["-o", f"base_url={server.url}", "-o", "model=tiny", "--limit", str(DIALOGUES), "--no-progress",
                   "--model", "openai", "--preset", "regionreasoner-7b", "--bootstrap", "0"]
        first = CliRunner().invoke(main, ["evaluate", *options, "--out", str(tmp_path / "a"), "--no-cache"])
        assert first.exit_code == 0, first.output
        assert "response cache: off (turned off (--no-cache))" in first.output
        asked = len(server.bodies)
        assert not (cache_folder() / DATABASE_FILE).exists()
        second = CliRunner().invoke(main, ["evaluate", *options, "--out", str(tmp_path / "b")])
        assert second.exit_code == 0, second.output
        assert len(server.bodies) == 2 * asked  # the first run stored nothing
        assert f"response cache: 0 answers reused, {asked} asked, {asked} stored" in second.output
        third = CliRunner().invoke(main, ["evaluate", *options, "--out", str(tmp_path / "c")])
        assert len(server.bodies) == 2 * asked and f"{asked} answers reused, 0 asked" in third.output
    results = json.loads((tmp_path / "c" / "results.json").read_text())
    assert results["provenance"]["response_cache"]["hits"] == asked


def test_sampled_answers_are_reused_only_when_asked_and_per_seed(sample_bench, tmp_path):
    sampled = {"temperature": 0.7, "seed": 1}
    with ScriptedServer() as server:
        off = evaluate(sample_bench, config(server, **sampled), tmp_path / "a", progress=False, n_bootstrap=0)
        assert "--cache-sampled" in off.provenance.response_cache["reason"]
        assert server.bodies[0]["temperature"] == 0.7 and server.bodies[0]["seed"] == 1
        turns = len(server.bodies)
        reuse = ResponseCacheSettings(cache_sampled=True)
        evaluate(sample_bench, config(server, **sampled), tmp_path / "b", progress=False, n_bootstrap=0,
                 response_cache=reuse)
        assert len(server.bodies) == 2 * turns  # nothing stored by the first run
        evaluate(sample_bench, config(server, **sampled), tmp_path / "c", progress=False, n_bootstrap=0,
                 response_cache=reuse)
        assert len(server.bodies) == 2 * turns  # the same seed: reused
        other = config(server, **sampled).model_copy(update={"seed": 2})  # the run's seed reseeds the adapter
        evaluate(sample_bench, other, tmp_path / "d", progress=False, n_bootstrap=0, response_cache=reuse)
        assert len(server.bodies) == 3 * turns and server.bodies[-1]["seed"] == 2


def test_another_model_or_preset_option_is_a_miss(sample_bench, tmp_path):
    with ScriptedServer() as server:
        evaluate(sample_bench, config(server), tmp_path / "a", progress=False, n_bootstrap=0)
        turns = len(server.bodies)
        evaluate(sample_bench, config(server, model="other"), tmp_path / "b", progress=False, n_bootstrap=0)
        assert len(server.bodies) == 2 * turns
        evaluate(sample_bench, config(server, max_new_tokens=64), tmp_path / "c", progress=False, n_bootstrap=0)
        assert len(server.bodies) == 3 * turns
        # where the server listens and how fast the client asks are not the model: reused
        evaluate(sample_bench, config(server, max_concurrency=1, timeout_s=30.0), tmp_path / "d", progress=False,
                 n_bootstrap=0)
        assert len(server.bodies) == 3 * turns


def test_another_image_is_a_miss(sample_bench, tmp_path):
    from regiondial_bench.api import load_bench

    with ScriptedServer() as server:
        evaluate(sample_bench, config(server), tmp_path / "a", progress=False, n_bootstrap=0)
        turns = len(server.bodies)
        copy = tmp_path / "bench"
        sample_bench.save(copy)
        (copy / "images").mkdir()
        from PIL import Image

        for dialogue in list(sample_bench)[:DIALOGUES]:
            source = sample_bench.image_path(dialogue)
            with Image.open(source) as image:  # the same size, other pixels
                image.convert("L").convert("RGB").save(copy / dialogue.image.path)
        evaluate(load_bench(str(copy)), config(server), tmp_path / "b", progress=False, n_bootstrap=0)
        assert len(server.bodies) == 2 * turns


def test_a_corrupted_entry_is_a_miss_never_a_wrong_answer(sample_bench, tmp_path):
    with ScriptedServer() as server:
        evaluate(sample_bench, config(server), tmp_path / "a", progress=False, n_bootstrap=0)
        turns = len(server.bodies)
        database = cache_folder() / DATABASE_FILE
        with sqlite3.connect(database) as db:
            keys = [k for (k,) in db.execute("SELECT key FROM entries ORDER BY key")]
            # a value changed under its checksum; a value that is not JSON with a matching checksum;
            # a checksum that no longer matches
            forged = json.loads(db.execute("SELECT response FROM entries WHERE key = ?", (keys[0],)).fetchone()[0])
            forged["raw_text"] = forged["raw_text"].replace("84", "85")
            db.execute("UPDATE entries SET response = ? WHERE key = ?", (json.dumps(forged).encode(), keys[0]))
            from regiondial_bench.run.response_cache import checksum

            db.execute("UPDATE entries SET response = ?, checksum = ? WHERE key = ?",
                       (b"\xff{not json", checksum(keys[1], b"\xff{not json"), keys[1]))
            db.execute("UPDATE entries SET checksum = 'x' WHERE key = ?", (keys[2],))
        again = evaluate(sample_bench, config(server), tmp_path / "b", progress=False, n_bootstrap=0)
        assert len(server.bodies) == turns + 3
    record = again.provenance.response_cache
    assert record["unusable"] == 3 and record["hits"] == turns - 3 and record["misses"] == 3
    assert answers(tmp_path / "b") == answers(tmp_path / "a")  # no "85" anywhere: the forged value was not used
    with sqlite3.connect(database) as db:  # and the three were stored again, whole
        assert db.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == turns


def test_a_cache_file_that_is_not_a_database_turns_the_cache_off_with_a_warning(sample_bench, tmp_path, caplog):
    folder = cache_folder()
    folder.mkdir(parents=True)
    (folder / DATABASE_FILE).write_bytes(b"this is not a database" * 100)
    with ScriptedServer() as server:
        results = evaluate(sample_bench, config(server), tmp_path / "a", progress=False, n_bootstrap=0)
        assert len(server.bodies) == results.overall.n
    record = results.provenance.response_cache
    assert record["enabled"] is False and "regiondial cache clear" in record["reason"]
    assert any("without the response cache" in r.message for r in caplog.records)
    cleared = CliRunner().invoke(main, ["cache", "clear", "--yes"])
    assert cleared.exit_code == 0 and not (folder / DATABASE_FILE).exists(), cleared.output


def test_two_processes_at_once_share_the_cache(sample_bench, tmp_path):
    """Two evaluations of the same requests running together both finish whole; a third sends nothing."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                         os.environ.get("PYTHONPATH", "")])}
    with ScriptedServer(lambda n, body: (200, 0.02)) as server:
        argv = [sys.executable, "-m", "regiondial_bench.cli", "evaluate", "--model", "openai", "--preset",
                "regionreasoner-7b", "-o", f"base_url={server.url}", "-o", "model=tiny", "--limit", "20",
                "--no-progress", "--bootstrap", "0"]
        both = [subprocess.Popen([*argv, "--out", str(tmp_path / name)], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
        outputs = [p.communicate(timeout=300) for p in both]
        assert all(p.returncode == 0 for p in both), outputs
        asked = len(server.bodies)
        third = subprocess.run([*argv, "--out", str(tmp_path / "c")], env=env, capture_output=True, text=True,
                               timeout=300)
        assert third.returncode == 0, third.stderr
        assert len(server.bodies) == asked
    turns = len(answers(tmp_path / "a"))
    assert turns <= asked <= 2 * turns  # each turn asked once or twice (both asked it before either stored it)
    assert answers(tmp_path / "c") == answers(tmp_path / "a") == answers(tmp_path / "b")
    with sqlite3.connect(cache_folder() / DATABASE_FILE) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == turns


WRITER = """
import sys
from regiondial_bench.adapters.base import RoundResponse
from regiondial_bench.run.response_cache import ResponseStore, encode_response
store = ResponseStore(sys.argv[1])
value = encode_response(RoundResponse(raw_text="<answer>[]</answer>" + "x" * 20000))
for batch in range(100000):
    store.put([(f"{batch:08d}-{i:03d}", "writer", value) for i in range(200)])
"""


def test_a_writer_killed_mid_write_leaves_every_committed_answer_whole(tmp_path):
    folder = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(folder)], env=env)
    try:
        deadline = time.monotonic() + 120
        count = 0
        while count < 2000:  # ten committed batches, then the kill lands in the middle of another
            assert time.monotonic() < deadline and writer.poll() is None, "the writer did not get going"
            time.sleep(0.05)
            try:
                with sqlite3.connect(folder / DATABASE_FILE, timeout=30) as db:
                    count = db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
            except sqlite3.OperationalError:
                continue  # not created yet
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=60)
    store = ResponseStore(folder)
    try:
        with sqlite3.connect(folder / DATABASE_FILE) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            keys = [k for (k,) in db.execute("SELECT key FROM entries")]
        assert len(keys) % 200 == 0  # whole transactions only
        found = store.get(keys)
        assert len(found) == len(keys) and store.unusable == 0
        assert all(r.raw_text.startswith("<answer>[]</answer>x") for r in found.values())
    finally:
        store.close()


def test_cache_info_prune_and_clear(sample_bench, tmp_path):
    runner = CliRunner()
    assert "empty" in runner.invoke(main, ["cache", "info"]).output
    with ScriptedServer() as server:
        evaluate(sample_bench, config(server), tmp_path / "a", progress=False, n_bootstrap=0)
        turns = len(server.bodies)
    info = runner.invoke(main, ["cache", "info"])
    assert info.exit_code == 0 and f"{turns} answers" in info.output and "openai: " in info.output, info.output
    with sqlite3.connect(cache_folder() / DATABASE_FILE) as db:  # half of them last used 40 days ago
        db.execute("UPDATE entries SET used_at = used_at - 40 * 86400 WHERE key < (SELECT key FROM entries "
                   "ORDER BY key LIMIT 1 OFFSET ?)", (turns // 2,))
    for limit in (["--max-size", "9" * 30 + "GB"], ["--unused-for", "9" * 400 + "d"]):  # "no limit", not a crash
        huge = runner.invoke(main, ["cache", "prune", *limit])
        assert huge.exit_code == 0 and f"dropped 0 answers; {turns} left" in huge.output, huge.output
    pruned = runner.invoke(main, ["cache", "prune", "--unused-for", "30d"])
    assert pruned.exit_code == 0 and f"dropped {turns // 2} answers; {turns - turns // 2} left" in pruned.output
    tiny = runner.invoke(main, ["cache", "prune", "--max-size", "1kB"])
    assert tiny.exit_code == 0 and "left" in tiny.output
    store = ResponseStore(cache_folder())
    try:
        assert 0 < store.info()["value_bytes"] <= 1000 or store.info()["entries"] == 0
    finally:
        store.close()
    assert runner.invoke(main, ["cache", "prune"]).exit_code == 2  # says what to give
    bad = runner.invoke(main, ["cache", "prune", "--unused-for", "soon"])
    assert bad.exit_code == 2 and "duration" in bad.output
    refused = runner.invoke(main, ["cache", "clear"], input="n\n")
    assert refused.exit_code == 1 and (cache_folder() / DATABASE_FILE).exists()
    cleared = runner.invoke(main, ["cache", "clear", "--yes"])
    assert cleared.exit_code == 0 and not (cache_folder() / DATABASE_FILE).exists()


def test_the_cache_folder_follows_regiondial_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("REGIONDIAL_CACHE", str(tmp_path / "old"))
    assert ResponseCacheSettings().location() == tmp_path / "old" / "responses"
    monkeypatch.setenv("REGIONDIAL_CACHE_DIR", str(tmp_path / "new"))
    assert ResponseCacheSettings().location() == tmp_path / "new" / "responses"
    monkeypatch.setenv("REGIONDIAL_CACHE_DIR", " ")
    assert ResponseCacheSettings().location() == tmp_path / "old" / "responses"


def test_what_is_never_stored():
    from regiondial_bench.adapters.base import RoundResponse
    from regiondial_bench.schema import Region

    assert encode_response(RoundResponse(raw_text="", error="HTTP 503", failure_kind="infra")) is None
    assert encode_response(RoundResponse(raw_text=[{"type": "text", "text": "x"}])) is None  # type: ignore[arg-type]
    assert encode_response(RoundResponse(raw_text="x" * (5 << 20))) is None
    unvalidated = Region.model_construct(box=(0.0, 0.0, float("nan"), 1.0))
    assert encode_response(RoundResponse(raw_text="", regions=[unvalidated])) is None
    assert encode_response(RoundResponse(raw_text="<answer>[]</answer>")) is not None
