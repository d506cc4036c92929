"""The run log and resume at their edges (found by ``scripts/mutation.py run.folder run.records run.runner``).

The promises under test (run/folder.py, run/runner.py): a killed or resumed run never loses or
duplicates a record; every whole-file rewrite is atomic and durable; ``--retry-infra`` asks again
exactly the infrastructure failures and every turn that depended on them, nothing else.
"""

from __future__ import annotations

import fcntl
import json
import os

import pytest

from regiondial_bench.adapters import RoundResponse
from regiondial_bench.run import folder
from regiondial_bench.run.folder import (
    PredictionLog,
    RunFolderError,
    RunLock,
    RunLockedError,
    atomic_write,
    open_run_folder,
    read_predictions,
    supersede_records,
)
from regiondial_bench.run.runner import Runner
from regiondial_bench.schema import PredictionRecord, read_prediction_log

from .helpers import make_bench
from .test_records import Hostile, spec_for

INFRA = RoundResponse(raw_text="", error="ConnectError: refused", failure_kind="infra")


def record(turn: int, dialogue: str = "d0", **update) -> PredictionRecord:
    fields = {"dialogue_id": dialogue, "turn": turn, "round": turn + 1, "question": "q", "raw_text": f"a{turn}"}
    return PredictionRecord(**{**fields, **update})


def lines_of(path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def keys_of(path) -> list[tuple[str, int]]:
    return [r.key for r in read_prediction_log(path, strict=True)]


# ------------------------------------------------------------------------------ --retry-infra


def test_retry_infra_asks_infra_failures_and_their_whole_chain_and_nothing_else(tmp_path):
    # chains t -> t-1 (make_bench); d0#1 hits a dead server, d1#2 gets an unreadable answer
    bench = make_bench(tmp_path / "bench", n_dialogues=2, turns=4)
    first = Hostile(lambda r: INFRA if r.key == ("d0", 1) else
                    RoundResponse(raw_text="garbage") if r.key == ("d1", 2) else None)
    Runner(bench, first, spec_for(bench), tmp_path / "run", progress=False).run()
    log = tmp_path / "run" / "predictions.jsonl"
    before = {r.key: r for r in read_prediction_log(log)}
    assert before[("d0", 1)].failure_kind == "infra" and before[("d1", 2)].failure_kind == "answer"

    again = Hostile(lambda r: None)
    records = Runner(bench, again, spec_for(bench), tmp_path / "run", progress=False).run(resume=True,
                                                                                           retry_infra=True)
    # d0#2 depends on d0#1 directly, d0#3 through d0#2; an answer failure is the model's and is kept
    assert sorted(again.asked) == [("d0", 1), ("d0", 2), ("d0", 3)]
    assert sorted(keys_of(log)) == sorted(before)  # one record per turn, none lost, none doubled
    after = {r.key: r for r in records}
    assert after[("d1", 2)] == before[("d1", 2)] and after[("d0", 0)] == before[("d0", 0)]
    assert after[("d0", 1)].error is None and after[("d0", 3)].references[0].box == bench.dialogue(
        "d0").turns[2].gold_boxes[0]
    superseded = [json.loads(line) for line in lines_of(tmp_path / "run" / "predictions.superseded.jsonl")]
    assert sorted((s["dialogue_id"], s["turn"]) for s in superseded) == [("d0", 1), ("d0", 2), ("d0", 3)]


def test_retry_infra_without_infra_failures_asks_nothing_and_keeps_the_log(tmp_path, caplog):
    bench = make_bench(tmp_path / "bench", n_dialogues=2, turns=2)
    Runner(bench, Hostile(lambda r: RoundResponse(raw_text="garbage") if r.turn == 1 else None),
           spec_for(bench), tmp_path / "run", progress=False).run()
    log = tmp_path / "run" / "predictions.jsonl"
    text = log.read_text()
    again = Hostile(lambda r: None)
    with caplog.at_level("WARNING", logger="regiondial_bench.run"):
        Runner(bench, again, spec_for(bench), tmp_path / "run", progress=False).run(resume=True, retry_infra=True)
    assert again.asked == [] and log.read_text() == text
    assert "no turn of" in caplog.text and not (tmp_path / "run" / "predictions.superseded.jsonl").exists()


def test_gold_mode_retries_only_the_infra_turn(tmp_path):
    # teacher forcing: no turn waited on another, so no turn was asked with a failed turn's leftovers
    bench = make_bench(tmp_path / "bench", n_dialogues=1, turns=3)
    spec = spec_for(bench, reference_mode="gold")
    Runner(bench, Hostile(lambda r: INFRA if r.turn == 0 else None), spec, tmp_path / "run", progress=False).run()
    again = Hostile(lambda r: None)
    Runner(bench, again, spec, tmp_path / "run", progress=False).run(resume=True, retry_infra=True)
    assert again.asked == [("d0", 0)]


def test_history_mode_retries_every_later_turn(tmp_path):
    # with history every earlier turn is a dependency, referenced or not
    bench = make_bench(tmp_path / "bench", n_dialogues=1, turns=3)
    spec = spec_for(bench, with_history=True, reference_mode="gold")
    Runner(bench, Hostile(lambda r: INFRA if r.turn == 0 else None), spec, tmp_path / "run", progress=False).run()
    again = Hostile(lambda r: None)
    Runner(bench, again, spec, tmp_path / "run", progress=False).run(resume=True, retry_infra=True)
    assert sorted(again.asked) == [("d0", 0), ("d0", 1), ("d0", 2)]


# ------------------------------------------------------------------------------ resume


def test_resume_asks_only_the_missing_turns_and_keeps_a_larger_runs_records(tmp_path):
    bench = make_bench(tmp_path / "bench", n_dialogues=2, turns=3)
    Runner(bench, Hostile(lambda r: None), spec_for(bench), tmp_path / "run", progress=False).run()
    log = tmp_path / "run" / "predictions.jsonl"
    kept = lines_of(log)
    log.write_text("\n".join(kept[:2] + kept[3:]) + "\n")  # the third record is lost
    again = Hostile(lambda r: None)
    records = Runner(bench, again, spec_for(bench), tmp_path / "run", progress=False).run(resume=True)
    assert again.asked == [json_key(kept[2])]
    assert len(records) == bench.num_turns and sorted(keys_of(log)) == sorted(r.key for r in records)


def json_key(line: str) -> tuple[str, int]:
    data = json.loads(line)
    return data["dialogue_id"], data["turn"]


def test_a_log_without_its_final_newline_is_not_glued_to_the_next_record(tmp_path):
    bench = make_bench(tmp_path / "bench", n_dialogues=2, turns=2)
    Runner(bench, Hostile(lambda r: None), spec_for(bench), tmp_path / "run", progress=False).run()
    log = tmp_path / "run" / "predictions.jsonl"
    kept = lines_of(log)
    log.write_text("\n".join(kept[:-1]))  # the last record lost, and the line before it has no newline
    Runner(bench, Hostile(lambda r: None), spec_for(bench), tmp_path / "run", progress=False).run(resume=True)
    assert log.read_text().endswith("\n")
    assert sorted(keys_of(log)) == sorted(json_key(line) for line in kept)  # strict: every line is one record


def test_repair_rewrites_a_log_with_a_replaced_record_to_one_line_per_turn(tmp_path):
    log = tmp_path / "predictions.jsonl"
    log.write_text("".join(r.model_dump_json() + "\n" for r in [record(0), record(1), record(0, raw_text="new")]))
    records = read_predictions(log, repair=True)
    assert [(r.turn, r.raw_text) for r in records] == [(0, "new"), (1, "a1")]
    assert [(r.turn, r.raw_text) for r in read_prediction_log(log, strict=True)] == [(0, "new"), (1, "a1")]
    assert not (tmp_path / "predictions.jsonl.corrupt").exists()


def test_read_predictions_without_repair_leaves_the_file_alone(tmp_path):
    log = tmp_path / "predictions.jsonl"
    text = record(0).model_dump_json() + "\n" + "garbage\n" + record(1).model_dump_json()
    log.write_text(text)
    assert [r.turn for r in read_predictions(log)] == [0]  # the unterminated last line is torn
    assert log.read_text() == text and not (tmp_path / "predictions.jsonl.corrupt").exists()
    assert read_predictions(tmp_path / "absent.jsonl") == []


def test_a_clean_log_is_not_rewritten_on_resume(tmp_path, monkeypatch):
    log = tmp_path / "predictions.jsonl"
    log.write_text(record(0).model_dump_json() + "\n\n" + record(1).model_dump_json() + "\n")
    rewrites = []
    monkeypatch.setattr(folder, "atomic_write", lambda path, text: rewrites.append(path))
    assert [r.turn for r in read_predictions(log, repair=True)] == [0, 1]
    assert rewrites == []  # a blank line is harmless: the file is left as it is


# ------------------------------------------------------------------------------ atomic, durable rewrites


def crash_on_replace(monkeypatch):
    def crash(src, dst):
        raise OSError("killed before the rename")

    monkeypatch.setattr(os, "replace", crash)


def test_a_crash_while_superseding_leaves_the_old_log_whole(tmp_path, monkeypatch):
    log = tmp_path / "predictions.jsonl"
    records = [record(0), record(1), record(2)]
    text = "".join(r.model_dump_json(exclude_defaults=True) + "\n" for r in records)
    log.write_text(text)
    crash_on_replace(monkeypatch)
    with pytest.raises(OSError, match="killed before the rename"):
        supersede_records(tmp_path, records, {("d0", 1)})
    assert log.read_text() == text  # the old log, whole: never a half-written one
    # the superseded record was saved first, so it is never lost either
    assert [json_key(line) for line in lines_of(tmp_path / "predictions.superseded.jsonl")] == [("d0", 1)]
    monkeypatch.undo()
    assert supersede_records(tmp_path, records, {("d0", 1)}) == [records[1]]
    assert keys_of(log) == [("d0", 0), ("d0", 2)]


def test_a_crash_while_repairing_leaves_the_old_log_whole(tmp_path, monkeypatch):
    log = tmp_path / "predictions.jsonl"
    text = record(0).model_dump_json() + "\n" + "garbage\n" + record(1).model_dump_json() + "\n"
    log.write_text(text)
    crash_on_replace(monkeypatch)
    with pytest.raises(OSError):
        read_predictions(log, repair=True)
    assert log.read_text() == text


def test_atomic_write_syncs_the_whole_new_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    path.write_text("old")
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}")
        on_disk = open(target).read() if os.path.isfile(target) else "<folder>"  # noqa: SIM115
        events.append(("fsync", os.path.basename(target), on_disk))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace",)) or real_replace(a, b))
    text = '{"adapter": "x"}\n'  # within Python's write buffer: it must be flushed before the sync
    open_fds = len(os.listdir("/proc/self/fd"))
    atomic_write(path, text)
    assert len(os.listdir("/proc/self/fd")) == open_fds  # the file and the folder are closed again
    assert path.read_text() == text
    assert [e[0] for e in events] == ["fsync", "replace", "fsync"]
    assert events[0][2] == text and events[0][1] != "run.json"  # a temporary file, complete when synced
    assert events[2][1] == tmp_path.name  # the folder: the rename itself survives a power loss
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temporary file left behind


def test_superseded_records_are_synced_before_the_log_is_rewritten(tmp_path, monkeypatch):
    records = [record(0), record(1)]
    (tmp_path / "predictions.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in records))
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        synced.append((path, open(path).read() if os.path.isfile(path) else None))  # noqa: SIM115
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    supersede_records(tmp_path, records, {("d0", 0)})
    path, on_disk = synced[0]  # the first sync: the superseded record, written out before it is synced
    assert path == str(tmp_path / "predictions.superseded.jsonl") and [json_key(x) for x in on_disk.splitlines()] == [
        ("d0", 0)]


def test_the_log_is_synced_when_it_is_closed(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    log = PredictionLog(tmp_path / "p.jsonl", fsync_every=10, fsync_s=3600)
    log.append(record(0))
    log.flush()
    assert synced == [] and log.syncs == 0
    log.close()
    assert len(synced) == 1 and log.syncs == 1
    for n in (9, 10):  # the record bound syncs at exactly fsync_every unsynced records
        count = PredictionLog(tmp_path / f"{n}.jsonl", fsync_every=10, fsync_s=3600)
        for i in range(n):
            count.append(record(i))
        synced.clear()
        count.flush()
        assert len(synced) == (n == 10)
        count._file.close()


# ------------------------------------------------------------------------------ the folder


def test_the_lock_is_reentrant_and_released_by_the_last_holder(tmp_path):
    def held_elsewhere() -> bool:  # another open file description, as another process would have
        with open(tmp_path / "run.lock", "a") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            return False

    RunLock(tmp_path).release()  # releasing a lock never taken is a no-op
    outer = RunLock(tmp_path).acquire()
    assert (tmp_path / "run.lock").read_text() == f"{os.getpid()}\n"
    RunLock(tmp_path).release()  # ... also while another holder has it
    assert held_elsewhere()
    inner = RunLock(tmp_path).acquire()
    inner.release()
    assert held_elsewhere()  # the inner release keeps the outer hold
    inner.release()  # a second release of the same object is a no-op
    assert held_elsewhere()
    outer.release()
    assert not held_elsewhere()
    lock = RunLock(tmp_path)
    with lock:
        assert held_elsewhere()
    assert not held_elsewhere()
    # released out of order (the outer holder first), the lock stays until the last holder lets go
    outer, inner = RunLock(tmp_path).acquire(), RunLock(tmp_path).acquire()
    outer.release()
    assert held_elsewhere()
    inner.release()
    assert not held_elsewhere()
    again = RunLock(tmp_path).acquire()  # and a later holder really locks again, it is not "re-entering"
    assert held_elsewhere()
    again.release()


def test_a_locked_folder_names_the_holder(tmp_path):
    (tmp_path / "run.lock").write_text("4242\n")
    with open(tmp_path / "run.lock", "a") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RunLockedError, match=r"in use by another regiondial process \(pid 4242\)"):
            RunLock(tmp_path).acquire()
        assert (tmp_path / "run.lock").read_text() == "4242\n"  # a refused process leaves the holder's pid
    with RunLock(tmp_path):  # the holder is gone: the lock is free, and names its new holder only
        assert (tmp_path / "run.lock").read_text() == f"{os.getpid()}\n"


def test_lock_files_are_closed_not_left_to_the_collector(tmp_path):
    import gc
    import warnings

    # an unclosed file is a ResourceWarning when the collector frees it: the lock file must be closed
    gc.collect()  # earlier garbage first: only this test's files are looked at
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with open(tmp_path / "run.lock", "a") as other:
            fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            before = len(os.listdir("/proc/self/fd"))
            for _ in range(3):
                with pytest.raises(RunLockedError):
                    RunLock(tmp_path).acquire()
            assert len(os.listdir("/proc/self/fd")) == before
        with RunLock(tmp_path):
            pass
        gc.collect()
    assert [str(w.message) for w in caught if str(tmp_path) in str(w.message)] == []


def test_the_lock_creates_a_missing_run_folder(tmp_path):
    with RunLock(tmp_path / "runs" / "new"):
        assert (tmp_path / "runs" / "new" / "run.lock").is_file()


def test_open_run_folder_rules(tmp_path):
    bench = make_bench(tmp_path / "bench", n_dialogues=1, turns=2)
    spec = spec_for(bench)
    out = tmp_path / "run"
    assert open_run_folder(out, spec, resume=False, overwrite=False) == []
    (out / "predictions.jsonl").write_text(record(0).model_dump_json() + "\n")
    (out / "results.json").write_text("{}")
    with pytest.raises(RunFolderError, match="already holds a run; pass --resume"):
        open_run_folder(out, spec, resume=False, overwrite=False)
    other = spec.model_copy(update={"reference_mode": "gold"})
    with pytest.raises(RunFolderError, match=r"other settings \(reference_mode\)"):
        open_run_folder(out, other, resume=True, overwrite=False)
    assert [r.turn for r in open_run_folder(out, spec, resume=True, overwrite=False)] == [0]
    # a different batch size is the same run
    assert len(open_run_folder(out, spec.model_copy(update={"batch_size": 3}), resume=True, overwrite=False)) == 1
    assert open_run_folder(out, other, resume=False, overwrite=True) == []
    assert not (out / "predictions.jsonl").exists() and not (out / "results.json").exists()
    assert json.loads((out / "run.json").read_text())["reference_mode"] == "gold"


def test_a_log_without_run_json_is_kept_only_when_resuming(tmp_path):
    bench = make_bench(tmp_path / "bench", n_dialogues=1, turns=2)
    out = tmp_path / "run"
    out.mkdir()
    (out / "predictions.jsonl").write_text(record(0).model_dump_json() + "\n")
    with pytest.raises(RunFolderError, match="no run.json; pass --resume"):
        open_run_folder(out, spec_for(bench), resume=False, overwrite=False)
    assert [r.turn for r in open_run_folder(out, spec_for(bench), resume=True, overwrite=False)] == [0]
    # an empty log is no run: a fresh start, and a stale results.json goes
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "predictions.jsonl").write_text("")
    (fresh / "results.json").write_text("{}")
    assert open_run_folder(fresh, spec_for(bench), resume=False, overwrite=False) == []
    assert not (fresh / "results.json").exists() and (fresh / "run.json").exists()


def test_a_log_of_many_bad_lines_warns_about_the_first_twenty_and_counts_the_rest(tmp_path, caplog):
    log = tmp_path / "predictions.jsonl"
    log.write_text(record(0).model_dump_json() + "\n" + "garbage\n" * 21)
    with caplog.at_level("WARNING", logger="regiondial_bench.run"):
        assert [r.turn for r in read_predictions(log)] == [0]
    messages = [r.getMessage() for r in caplog.records]
    skipped = [m for m in messages if "unreadable record skipped" in m]
    assert [m.split(": unreadable")[0] for m in skipped] == [f"{log}:{n}" for n in range(2, 22)]
    assert messages[-1] == f"{log}: 1 more unreadable lines skipped"
    caplog.clear()
    log.write_text("garbage\n" * 20)
    with caplog.at_level("WARNING", logger="regiondial_bench.run"):
        read_predictions(log)
    assert len(caplog.records) == 20 and "more unreadable" not in caplog.text


def test_the_corrupt_file_keeps_each_unreadable_line_as_it_was(tmp_path):
    log = tmp_path / "predictions.jsonl"
    log.write_text(record(0).model_dump_json() + "\n" + "first bad\n" + record(1).model_dump_json() + "\n"
                   + "second bad\n")
    assert [r.turn for r in read_predictions(log, repair=True)] == [0, 1]
    assert (tmp_path / "predictions.jsonl.corrupt").read_text() == "# line 2: first bad\n# line 4: second bad\n"
    assert keys_of(log) == [("d0", 0), ("d0", 1)]


def test_a_flush_with_nothing_new_does_not_sync_and_close_closes(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    open_fds = len(os.listdir("/proc/self/fd"))
    log = PredictionLog(tmp_path / "p.jsonl", fsync_every=10**9, fsync_s=0.0)
    log.append(record(0))
    log.flush()
    log.flush()  # nothing written since the last sync: nothing to sync
    assert len(synced) == 1
    log.close()
    assert len(synced) == 1 and len(os.listdir("/proc/self/fd")) == open_fds  # closed, not left to the collector


def test_a_close_whose_last_sync_fails_still_closes_the_file_and_raises_naming_it(tmp_path, monkeypatch):
    import errno

    open_fds = len(os.listdir("/proc/self/fd"))
    log = PredictionLog(tmp_path / "p.jsonl")
    log.append(record(0))

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as info:
        log.close()
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "p.jsonl")
    assert len(os.listdir("/proc/self/fd")) == open_fds  # not left open behind the error


def test_a_lock_whose_pid_cannot_be_written_is_released_at_once(tmp_path, monkeypatch):
    """A full disk while writing the holder's pid: the error propagates and the folder is not left
    locked by a file the failed acquire still holds open (the next run must be able to take it)."""
    import builtins
    import errno

    real_open = builtins.open

    class FullDisk:
        def __init__(self, f):
            self._f = f

        def __getattr__(self, name):
            return getattr(self._f, name)

        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(folder, "open", lambda *a, **k: FullDisk(real_open(*a, **k)), raising=False)
    with pytest.raises(OSError) as info:  # keeps the failed frame (and anything it left open) alive
        RunLock(tmp_path).acquire()
    assert info.value.filename == str(tmp_path / "run.lock")
    monkeypatch.undo()
    with RunLock(tmp_path):  # would be RunLockedError if the failed acquire's file still held the flock
        pass


def test_naming_gives_an_anonymous_os_error_the_path_and_leaves_the_others_alone(tmp_path):
    import errno

    with pytest.raises(OSError) as anonymous, folder.naming(tmp_path / "a"):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert anonymous.value.filename == str(tmp_path / "a")
    with pytest.raises(OSError) as named, folder.naming(tmp_path / "a"):
        raise FileNotFoundError(errno.ENOENT, "No such file", str(tmp_path / "b"))
    assert named.value.filename == str(tmp_path / "b")  # already names its own file
    with pytest.raises(OSError) as message, folder.naming(tmp_path / "a"):
        raise OSError("a message alone")
    assert message.value.filename is None and str(message.value) == "a message alone"  # its text is kept


def test_a_folder_without_run_json_is_named_for_what_it_is(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"is not a run folder: run.json is missing"):
        folder.load_run_spec(tmp_path)
    (tmp_path / "repeats.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"is the folder of `evaluate --repeats`, not a run folder: name one "
                                                r"repeat \(.*repeat-0\)"):
        folder.load_run_spec(tmp_path)


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    path.write_text("old")

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(folder.os, "replace", refuse)
    with pytest.raises(OSError) as info:
        atomic_write(path, "new")
    assert info.value.filename == str(path)
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


@pytest.mark.parametrize(("content", "reason"), [
    ("{}", "adapter: Field required; bench_name: Field required; bench_hash: Field required)"),
    ('{"adapter": ', "the file: Invalid JSON"),
    (None, "Is a directory"),
])
def test_an_unreadable_run_json_is_named_with_its_reason(tmp_path, content, reason):
    bench = make_bench(tmp_path / "bench", n_dialogues=1, turns=1)
    out = tmp_path / "run"
    out.mkdir()
    if content is None:
        (out / "run.json").mkdir()
    else:
        (out / "run.json").write_text(content)
    with pytest.raises(RunFolderError) as caught:
        open_run_folder(out, spec_for(bench), resume=True, overwrite=False)
    assert f"{out / 'run.json'} is unreadable (" in str(caught.value) and reason in str(caught.value)


def test_open_run_folder_creates_nested_folders_and_overwrites_an_empty_one(tmp_path):
    bench = make_bench(tmp_path / "bench", n_dialogues=1, turns=1)
    nested = tmp_path / "runs" / "a" / "b"
    assert open_run_folder(nested, spec_for(bench), resume=False, overwrite=True) == []  # nothing stale to remove
    assert (nested / "run.json").is_file()


def test_a_torn_log_without_run_json_is_repaired_when_resumed(tmp_path):
    bench = make_bench(tmp_path / "bench", n_dialogues=1, turns=3)
    out = tmp_path / "run"
    out.mkdir()
    (out / "predictions.jsonl").write_text(record(0).model_dump_json() + "\n" + record(1).model_dump_json()[:-9])
    assert [r.turn for r in open_run_folder(out, spec_for(bench), resume=True, overwrite=False)] == [0]
    assert keys_of(out / "predictions.jsonl") == [("d0", 0)]  # the torn line is out: appends start clean
    assert (out / "predictions.jsonl.corrupt").read_text().startswith("# line 2: ")


# ------------------------------------------------------------------------------ records


def test_content_parts_of_other_types_are_a_failure_with_its_reason():
    from regiondial_bench.run.records import answer_text

    assert answer_text([1, "text"]) == ("", "the answer is a list, not text")
    assert answer_text(("a", {"type": "output_text", "text": "b"})) == ("ab", None)
    assert answer_text(bytearray(b"ab")) == ("ab", None)
    assert answer_text(7) == ("", "the answer is a int, not text")
    assert answer_text([{"type": "text", "text": 3}, "b"]) == ("", "the answer's content parts hold no text")


def test_an_answer_of_exactly_the_kept_length_is_not_cut():
    from regiondial_bench.run.folder import MAX_RECORD_TEXT
    from regiondial_bench.run.records import answer_text

    assert answer_text("x" * MAX_RECORD_TEXT) == ("x" * MAX_RECORD_TEXT, None)
    text, _ = answer_text("x" * (MAX_RECORD_TEXT + 1))
    assert text.startswith("x" * MAX_RECORD_TEXT + " ... [cut: ")


def test_a_failed_record_keeps_the_answer_text_it_could_read():
    from regiondial_bench.adapters.base import ImageInput, RoundRequest
    from regiondial_bench.run.records import failed_record

    request = RoundRequest(dialogue_id="d", turn=1, image=ImageInput(), question="q \ud800", question_template="q")
    kept = failed_record(request, "the answer \ud800", 0.25, ValueError("boom"), batch=3)
    assert (kept.raw_text, kept.question, kept.round, kept.batch) == ("the answer \ufffd", "q \ufffd", 2, 3)
    assert kept.error == "the answer could not be recorded: ValueError: boom" and kept.failure_kind == "answer"
    assert failed_record(request, b"bytes", float("nan"), ValueError("x"), batch=1).raw_text == ""
    assert failed_record(request, "a", float("inf"), ValueError("x"), batch=1).latency_s == 0.0


def test_a_record_that_cannot_be_written_exactly_is_logged_as_a_failure():
    from regiondial_bench.adapters.base import ImageInput, RoundRequest
    from regiondial_bench.run.records import failed_record, loggable
    from regiondial_bench.schema import Region

    request = RoundRequest(dialogue_id="d", turn=0, image=ImageInput(), question="q", question_template="q")
    # adapters' unvalidated regions: an int beyond the float range, an infinite float (written as null)
    for value in (10**400, float("inf")):
        region = Region.model_construct(box=(0.0, 0.0, value, 5.0), point=None, extra_points=(), label=None)
        kept, line = loggable(request, record_with(region), batch=2)
        assert kept.regions == [] and kept.error.startswith("the answer could not be recorded: ")
        assert PredictionRecord.model_validate_json(line) == kept and kept.batch == 2
    assert failed_record(request, "a", 0.1234567, ValueError("x"), batch=1).latency_s == 0.123457


def record_with(region) -> PredictionRecord:
    return PredictionRecord.model_construct(
        **{**record(0, "d").model_dump(), "regions": [region]})


def test_a_runs_parser_and_the_kind_of_an_adapters_error_are_recorded_as_given(tmp_path):
    from regiondial_bench.run.records import parse_options_for

    bench = make_bench(tmp_path / "bench", n_dialogues=1, turns=1)
    assert parse_options_for(spec_for(bench, parser="upstream"))["parser"] == "upstream"
    assert parse_options_for(spec_for(bench))["parser"] == "tolerant"
    long = "e" * 20_000
    answers = {0: RoundResponse(raw_text="", error=long), 1: RoundResponse(raw_text="", error="x", failure_kind="answer")}
    bench = make_bench(tmp_path / "two", n_dialogues=2, turns=1)
    records = Runner(bench, Hostile(lambda r: answers[int(r.dialogue_id[1:])]), spec_for(bench), tmp_path / "run",
                     progress=False).run()
    assert [(r.failure_kind, len(r.error)) for r in records] == [("answer", 10_000), ("answer", 1)]


def build(response: RoundResponse, size=(640, 480), latency=0.1234567):
    from regiondial_bench.adapters.base import ImageInput, RoundRequest
    from regiondial_bench.run.records import build_record

    image = ImageInput(width=size[0], height=size[1]) if size else ImageInput()
    request = RoundRequest(dialogue_id="d", turn=0, image=image, question="q", question_template="q")
    return build_record(request, response, latency, batch=1, parse_options={"parser": "tolerant",
                                                                            "upstream_style": "regionreasoner"})


def test_build_record_maps_frames_only_with_a_known_image_size():
    from regiondial_bench.geometry import CoordinateFrame

    answer = '<answer>[{"bbox_2d": [0, 0, 420, 420]}]</answer>'
    framed = RoundResponse(raw_text=answer, frame=CoordinateFrame(840, 840))
    assert build(framed).regions[0].box == (0.0, 0.0, 320.0, 240.0)
    unknown = build(framed, size=None)
    assert unknown.regions == [] and unknown.error.startswith("cannot map the answer back to pixels")
    assert build(RoundResponse(raw_text=answer), size=None).regions[0].box == (0.0, 0.0, 420.0, 420.0)
    assert build(RoundResponse(raw_text=answer)).latency_s == 0.123457


def test_build_record_keeps_the_adapters_region_cap_and_refuses_any_non_finite_region():
    from regiondial_bench.schema import Region

    three = "<answer>" + json.dumps([{"bbox_2d": [0, 0, 5 + i, 5]} for i in range(3)]) + "</answer>"
    assert len(build(RoundResponse(raw_text=three, max_regions=2)).regions) == 2
    assert len(build(RoundResponse(raw_text=three)).regions) == 3
    bad = Region.model_construct(box=(0.0, 0.0, float("inf"), 5.0), point=None, extra_points=(), label=None)
    refused = build(RoundResponse(raw_text="", regions=[Region(box=(0, 0, 5, 5)), bad]))
    assert refused.regions == [] and "non-finite coordinate" in refused.error and refused.failure_kind == "answer"


# ------------------------------------------------------------------------------ how an answer was read


def test_the_reading_is_kept_only_when_it_is_not_plain_original_pixels():
    """``reading`` lets a validator read ``raw_text`` again the way the run did: the frame and the
    image size it spans, the answer-tag rule and an adapter's object cap; None for the defaults."""
    from regiondial_bench.geometry import CoordinateFrame
    from regiondial_bench.run.records import answer_reading
    from regiondial_bench.schema import AnswerReading

    frame = CoordinateFrame(840, 600)
    assert answer_reading(RoundResponse(raw_text=""), (640, 480)) is None
    assert answer_reading(RoundResponse(raw_text="", max_regions=0), (640, 480)) is None  # 0: no cap of its own
    assert answer_reading(RoundResponse(raw_text="", frame=frame), (640, 480)) == AnswerReading(
        frame=(840.0, 600.0), image=(640, 480))
    assert answer_reading(RoundResponse(raw_text="", frame=frame), None) == AnswerReading(frame=(840.0, 600.0))
    assert answer_reading(RoundResponse(raw_text="", require_answer_tag=True), (640, 480)) == AnswerReading(
        answer_tag=True)
    assert answer_reading(RoundResponse(raw_text="", max_regions=3), (640, 480)) == AnswerReading(max_regions=3)
    # and the record carries it
    three = "<answer>" + json.dumps([{"bbox_2d": [0, 0, 5 + i, 5]} for i in range(3)]) + "</answer>"
    assert build(RoundResponse(raw_text=three, frame=frame)).reading == AnswerReading(frame=(840.0, 600.0),
                                                                                    image=(640, 480))
    assert len(build(RoundResponse(raw_text=three, max_regions=0)).regions) == 3  # no cap, as None


def _with_reading(reading) -> PredictionRecord:
    return PredictionRecord.model_construct(**{**record(0, "d").model_dump(), "reading": reading})


def _construct_reading(**fields):
    from regiondial_bench.schema import AnswerReading

    return AnswerReading.model_construct(**{"frame": None, "image": None, "answer_tag": False, "max_regions": None,
                                            **fields})


@pytest.mark.parametrize("reading", [
    None,
    _construct_reading(),
    _construct_reading(frame=(840.0, 600.0)),  # a frame without the image size it spans
    _construct_reading(frame=(840.0, 600.0), image=(640, 480), answer_tag=True, max_regions=3),
], ids=["none", "defaults", "frame only", "everything"])
def test_a_reading_of_exact_types_takes_the_read_back_shortcut(reading):
    from regiondial_bench.run.records import _reads_back_unchanged

    assert _reads_back_unchanged(_with_reading(reading))


@pytest.mark.parametrize("fields", [
    {"frame": (840.0,)}, {"frame": (840.0, 600.0, 1.0)}, {"frame": (840, 600)}, {"frame": (float("inf"), 600.0)},
    {"image": [640, 480]}, {"image": (640,)}, {"image": (640, 480, 1)}, {"image": (640, 480.0)},
    {"image": (640.0, 480.0)}, {"answer_tag": 1}, {"max_regions": 2.0},
], ids=repr)
def test_a_reading_of_other_types_is_read_back_for_real(fields):
    """An adapter's unvalidated reading may hold anything; only exact types skip the read-back."""
    from regiondial_bench.run.records import _reads_back_unchanged

    assert not _reads_back_unchanged(_with_reading(_construct_reading(**fields)))
    assert not _reads_back_unchanged(_with_reading({"frame": None}))  # not an AnswerReading at all


# ------------------------------------------------------------------------------ the schedule


def chain_bench():
    """d0: turn 1 waits on turn 0, turn 2 on turn 1; d1 and d2: one turn each."""
    from regiondial_bench.schema import Bench, Dialogue, ImageRef, Reference, Turn

    def turns(n):
        return [Turn(index=t, question="q <box>{context_bbox}</box>" if t else "q", gold_boxes=[(1, 1, 5 + t, 5)],
                     references=[Reference(turn=t - 1)] if t else []) for t in range(n)]

    return Bench([Dialogue(dialogue_id=f"d{d}", image=ImageRef(), turns=turns(n)) for d, n in enumerate((3, 1, 1))],
                 name="chains")


def test_a_released_turn_keeps_its_round_order_among_the_ready_ones(tmp_path):
    from regiondial_bench.schema import Bench, Dialogue, ImageRef, Reference, Turn

    # turn 2 needs nothing and is ready at once; turn 1 waits on turn 0: once released it goes first
    bench = Bench([Dialogue(dialogue_id="d0", image=ImageRef(), turns=[
        Turn(index=0, question="q", gold_boxes=[(1, 1, 5, 5)]),
        Turn(index=1, question="q <box>{context_bbox}</box>", gold_boxes=[(1, 1, 6, 5)], references=[Reference(turn=0)]),
        Turn(index=2, question="q", gold_boxes=[(1, 1, 7, 5)])])], name="order")
    adapter = Hostile(lambda r: None)
    Runner(bench, adapter, spec_for(bench, batch_size=1), tmp_path / "run", progress=False).run()
    assert adapter.asked == [("d0", 0), ("d0", 1), ("d0", 2)]


def test_streaming_asks_the_longest_remaining_chain_first(tmp_path):
    from concurrent.futures import Future

    class OneAtATime(Hostile):
        streaming = True
        max_concurrency = 1

        def submit(self, request):
            future = Future()
            future.set_result(self.generate([request])[0])
            return future

    bench = chain_bench()
    adapter = OneAtATime(lambda r: None)
    Runner(bench, adapter, spec_for(bench), tmp_path / "run", progress=False).run()
    # d0#1 is released with 2 turns still waiting on it: before the single-turn dialogues
    assert adapter.asked == [("d0", 0), ("d0", 1), ("d1", 0), ("d2", 0), ("d0", 2)]


def test_resuming_a_smaller_bench_keeps_the_other_turns_of_the_log_even_when_retrying(tmp_path):
    # a log made with a larger --limit: its turns beyond the bench stay on disk, infra failures included
    from regiondial_bench.schema import Bench

    full = make_bench(tmp_path / "bench", n_dialogues=2, turns=2)
    spec = spec_for(full)
    Runner(full, Hostile(lambda r: INFRA if r.dialogue_id == "d1" else None), spec, tmp_path / "run",
           progress=False).run()
    first = Bench([full.dialogue("d0")], name=full.name, root=full.root)
    again = Hostile(lambda r: None)
    records = Runner(first, again, spec, tmp_path / "run", progress=False).run(resume=True, retry_infra=True)
    assert again.asked == [] and [r.key for r in records] == [("d0", 0), ("d0", 1)]
    log = {r.key: r for r in read_prediction_log(tmp_path / "run" / "predictions.jsonl")}
    assert sorted(log) == [("d0", 0), ("d0", 1), ("d1", 0), ("d1", 1)]
    assert log[("d1", 0)].failure_kind == "infra"  # left for a retry on the bench it belongs to


# ------------------------------------------------------------------------------ the run loop


def test_retry_infra_on_a_fresh_folder_says_it_continues_a_run(tmp_path):
    bench = make_bench(tmp_path / "bench", n_dialogues=1, turns=1)
    with pytest.raises(RunFolderError, match="--retry-infra continues a run: pass it with --resume"):
        Runner(bench, Hostile(lambda r: None), spec_for(bench), tmp_path / "run", progress=False).run(retry_infra=True)
    assert not (tmp_path / "run").exists()  # refused before the folder is claimed


def test_a_bench_without_turns_is_refused(tmp_path):
    from regiondial_bench.schema import Bench

    empty = Bench([], name="empty")
    with pytest.raises(ValueError, match="bench 'empty' has no turns to evaluate"):
        Runner(empty, Hostile(lambda r: None), spec_for(empty), tmp_path / "run", progress=False).run()


def test_progress_counts_every_answered_turn_from_the_resumed_ones_and_closes(tmp_path, monkeypatch):
    from regiondial_bench.run import runner

    bars = []

    class Bar:
        def __init__(self, total, done, enabled):
            self.total, self.n, self.closed = total, done, False
            bars.append(self)

        def update(self, n):
            self.n += n

        def close(self):
            self.closed = True

    monkeypatch.setattr(runner, "_progress", Bar)
    bench = make_bench(tmp_path / "bench", n_dialogues=2, turns=2)
    Runner(bench, Hostile(lambda r: None), spec_for(bench, batch_size=1), tmp_path / "run").run()
    log = tmp_path / "run" / "predictions.jsonl"
    log.write_text("".join(log.read_text().splitlines(keepends=True)[:3]))
    Runner(bench, Hostile(lambda r: None), spec_for(bench, batch_size=1), tmp_path / "run").run(resume=True)
    assert [(b.total, b.n, b.closed) for b in bars] == [(4, 4, True), (4, 4, True)]
