"""Import once, load fast: the import cache gives the same bench as a direct import, notices changed
files, survives damage, and never stops a load."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
from click.testing import CliRunner

from regiondial_bench import api
from regiondial_bench.bench import import_cache
from regiondial_bench.bench.import_cache import ImportCache, entry_folder, load_question_file
from regiondial_bench.bench.sources.upstream import import_upstream
from regiondial_bench.cli import main


def _grid(box, side=48, cell=14):
    x1, y1, x2, y2 = (min(int(v) // cell, side - 1) for v in box)
    return [[int(x1 <= x <= x2 and y1 <= y <= y2) for x in range(side)] for y in range(side)]


@pytest.fixture(scope="module")
def released_text(upstream_file):
    """The first 60 RefCOCO+ dialogues in the released layout (dense masks of the gold boxes, 3.5 MB)."""
    data = json.loads(upstream_file("refcocoplus").read_text())[:60]
    for d, dialogue in enumerate(data):
        for t, turn in enumerate(dialogue["conversational_turns"]):
            turn["masks"] = [_grid(turn["bboxes"][0])]
            turn["ann_ids"] = [100 * d + t]
    return json.dumps(data, indent=1)


@pytest.fixture
def released(released_text, tmp_path):
    path = tmp_path / "data" / "refcocoplus_multi_turn.json"
    path.parent.mkdir()
    path.write_text(released_text)
    return path


def _same(a, b):
    assert a.content_hash == b.content_hash
    assert a.dialogues == b.dialogues and a.issues == b.issues
    assert (a.name, a.source, a.root, a.image_files) == (b.name, b.source, b.root, b.image_files)


def test_the_second_load_reads_the_cache_and_gives_the_same_bench(released):
    direct = import_upstream(released)
    cache = ImportCache()
    first = load_question_file(released, cache=cache)
    second = load_question_file(released, cache=cache)
    assert [o.state for o in cache.outcomes] == ["imported", "loaded"]
    _same(first, direct)
    _same(second, direct)
    folder = cache.outcomes[0].folder
    assert folder == entry_folder(released) and (folder / "import.json").is_file()
    record = json.loads((folder / "import.json").read_text())
    assert record["size"] == released.stat().st_size and len(record["sha256"]) == 64
    assert "loaded from" in cache.outcomes[1].line()


def test_images_and_annotations_apply_after_the_cache(released, tmp_path):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    first_id = json.loads(released.read_text())[0]["image_id"]
    Image.new("RGB", (16, 16)).save(images / f"{first_id}.jpg")
    load_question_file(released)  # stores the entry without images
    cache = ImportCache()
    cached = load_question_file(released, images=images, cache=cache)
    assert cache.outcomes[0].state == "loaded"
    _same(cached, import_upstream(released, images=images))
    assert len(cached.image_files) == 1


@pytest.mark.parametrize("change", ["touch", "resize", "edge"])
def test_a_changed_file_is_imported_again(released, change):
    load_question_file(released)
    text = released.read_text()
    if change == "touch":
        os.utime(released, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    elif change == "resize":
        released.write_text(text.replace("Find", "Spot", 1))  # one byte shorter
    else:  # same size, same mtime, another digit in the last MB: another head/tail hash
        stat = released.stat()
        at = text.rindex('"ann_ids": [') + len('"ann_ids": [')
        at += len(text[at:]) - len(text[at:].lstrip())
        released.write_text(text[:at] + str((int(text[at]) + 1) % 10) + text[at + 1 :])
        os.utime(released, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    cache = ImportCache()
    bench = load_question_file(released, cache=cache)
    assert cache.outcomes[0].state == "reimported" and "the file" in cache.outcomes[0].detail
    _same(bench, import_upstream(released))


def test_full_hash_catches_an_edit_in_the_middle(released):
    load_question_file(released)
    stat = released.stat()
    data = released.read_bytes()
    middle = data.index(b"Find", len(data) // 2)
    released.write_bytes(data[:middle] + b"Spot" + data[middle + 4 :])  # same size, same head and tail
    os.utime(released, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    quick = ImportCache()
    load_question_file(released, cache=quick)
    assert quick.outcomes[0].state == "loaded"  # what size, mtime, head and tail cannot see
    full = ImportCache(full_hash=True)
    bench = load_question_file(released, cache=full)
    assert full.outcomes[0].state == "reimported" and "full hash" in full.outcomes[0].detail
    _same(bench, import_upstream(released))


@pytest.mark.parametrize("damage", ["dialogues", "record", "missing", "foreign"])
def test_a_damaged_entry_is_imported_again(released, damage):
    load_question_file(released)
    folder = entry_folder(released)
    if damage == "dialogues":
        lines = (folder / "dialogues.jsonl").read_text().splitlines()
        (folder / "dialogues.jsonl").write_text("\n".join(lines[1:]) + "\n")
    elif damage == "record":
        (folder / "import.json").write_text('{"format": 1, "size": "huge"')
    elif damage == "missing":
        (folder / "manifest.json").unlink()
    else:  # another file's entry copied in: its record does not match this file
        other = released.with_name("other_multi_turn.json")
        other.write_text(json.dumps(json.loads(released.read_text())[:3]))
        load_question_file(other)
        record = json.loads((entry_folder(other) / "import.json").read_text())
        ours = json.loads((folder / "import.json").read_text())
        (folder / "import.json").write_text(json.dumps({**record, **{k: ours[k] for k in
                                                                    ("size", "mtime_ns", "edges_sha256")}}))
        (folder / "dialogues.jsonl").write_text((entry_folder(other) / "dialogues.jsonl").read_text())
        (folder / "manifest.json").write_text((entry_folder(other) / "manifest.json").read_text())
    cache = ImportCache()
    bench = load_question_file(released, cache=cache)
    assert cache.outcomes[0].state == "reimported", cache.outcomes[0]
    _same(bench, import_upstream(released))
    again = ImportCache()
    load_question_file(released, cache=again)
    assert again.outcomes[0].state == "loaded"


def test_an_unwritable_cache_only_costs_speed(released, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("REGIONDIAL_CACHE", str(blocker))
    cache = ImportCache()
    bench = load_question_file(released, cache=cache)
    assert cache.outcomes[0].state == "not stored" and "cannot be written" in cache.outcomes[0].detail
    _same(bench, import_upstream(released))


def test_no_cache_writes_nothing(released, tmp_path, monkeypatch):
    monkeypatch.setenv("REGIONDIAL_CACHE", str(tmp_path / "fresh-cache"))
    cache = ImportCache(enabled=False)
    load_question_file(released, cache=cache)
    assert cache.outcomes[0].state == "off" and not (tmp_path / "fresh-cache").exists()
    api.load_bench(str(released), cache=False)
    assert not (tmp_path / "fresh-cache").exists()


def test_a_second_process_waits_for_the_first_import(released):
    """Ranks of one launch import a file once: the others wait on the entry's lock, then read it."""
    folder = entry_folder(released)
    notices: list[str] = []
    holder = import_cache._EntryLock(folder, notices.append).__enter__()
    outcomes = []
    def wait_and_load() -> None:
        cache = ImportCache()
        load_question_file(released, cache=cache, notice=notices.append)
        outcomes.append(cache)

    waiter = threading.Thread(target=wait_and_load)
    waiter.start()
    deadline = time.monotonic() + 30
    while not notices and time.monotonic() < deadline:
        time.sleep(0.01)
    assert notices and "waiting for another process" in notices[0]
    assert waiter.is_alive()
    load_question_file(released, cache=False)  # the holder's own import, then it stores the entry
    import_cache._write_entry(folder, *_parsed_and_record(released))
    holder.__exit__(None, None, None)
    waiter.join(30)
    assert outcomes[0].outcomes[0].state == "loaded"


def _parsed_and_record(path):
    from regiondial_bench.bench.sources.upstream import parse_upstream

    parsed = parse_upstream(path)
    size, mtime_ns, edges = import_cache._identity(path)
    record = import_cache.ImportRecord(
        format=import_cache.IMPORT_FORMAT, file=str(path), file_name=path.name, name=parsed.name, size=size,
        mtime_ns=mtime_ns, edges_sha256=edges, sha256=import_cache._full_hash(path), entries=parsed.entries,
        derived_paths=parsed.derived_paths, image_paths=parsed.image_paths, content_hash="", import_seconds=0.0,
        imported_at="now")
    return parsed, record


def test_bench_info_says_what_the_cache_did(released):
    runner = CliRunner()
    first = runner.invoke(main, ["bench", "info", str(released)])
    second = runner.invoke(main, ["bench", "info", str(released)])
    off = runner.invoke(main, ["bench", "info", str(released), "--no-cache", "--json"])
    assert first.exit_code == second.exit_code == off.exit_code == 0, first.output + second.output + off.output
    assert "cache: refcocoplus_multi_turn.json imported in" in first.stdout
    assert "cache: refcocoplus_multi_turn.json loaded from" in second.stdout
    stats = json.loads(off.stdout)
    assert stats["cache"]["state"] == "off" and stats["turns_with_gold_mask"] == stats["turns"]
    full = runner.invoke(main, ["bench", "info", str(released), "--full-hash", "--json"])
    assert json.loads(full.stdout)["cache"]["state"] == "loaded"
    sample = runner.invoke(main, ["bench", "info", "sample"])
    assert "cache: not used" in sample.stdout


def test_oracle_scores_giou_100_through_the_stream_and_the_cache_alike(released, tmp_path):
    runner = CliRunner()
    results = []
    for name, extra in (("stream", ["--no-cache"]), ("store", []), ("cached", [])):
        out = tmp_path / f"run-{name}"
        result = runner.invoke(main, ["evaluate", "--model", "oracle", "--bench", str(released), "--out", str(out),
                                      "--no-progress", "--bootstrap", "0", *extra])
        assert result.exit_code == 0, result.output
        results.append(json.loads((out / "results.json").read_text()))
    stream, _, cached = results
    assert stream["overall"]["giou"] == pytest.approx(100.0) and stream["overall"]["ciou"] == pytest.approx(100.0)
    assert stream["overall"]["n"] == sum(len(d["conversational_turns"]) for d in json.loads(released.read_text()))
    for key in ("overall", "rounds", "buckets"):
        assert stream[key] == cached[key], key
    assert stream["provenance"]["bench_hash"] == cached["provenance"]["bench_hash"]
    from regiondial_bench.schema import read_prediction_log

    def answers(run):  # the same questions asked, the same answers (timings aside)
        return sorted((r.key, r.question, r.raw_text, r.mask) for r in
                      read_prediction_log(tmp_path / run / "predictions.jsonl"))

    assert answers("run-cached") == answers("run-stream")


def test_text_the_cache_cannot_hold_is_imported_each_time(tmp_path):
    """Lone surrogates are valid JSON but not UTF-8: the file loads, the cache says why it cannot help,
    and the bench is the direct import's."""
    path = tmp_path / "odd.json"
    path.write_text('[{"image_id": 1, "image_path": "a\\ud800.jpg", "conversational_turns": [{"question": '
                    '"Find \\ud800 it.", "bboxes": [[1, 1, 5, 5]]}]}]')
    for _ in range(2):
        cache = ImportCache()
        bench = load_question_file(path, cache=cache)
        assert bench.content_hash == import_upstream(path).content_hash
        assert cache.outcomes[0].state == "not stored" and "surrogates" in cache.outcomes[0].detail
