"""Hostile bench input: every reader gives a clear error or a validation issue, never a traceback."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from PIL import Image

from regiondial_bench import api
from regiondial_bench.adapters import AdapterError
from regiondial_bench.bench.sources.upstream import import_upstream
from regiondial_bench.bench.validation import check_bench
from regiondial_bench.cli import main
from regiondial_bench.schema import BENCH_FILE, Bench, RunConfig

from .helpers import make_bench

GOOD = {"image_id": 1, "conversational_turns": [{"question": "the dog", "bboxes": [[1, 1, 9, 9]]}]}


def write_questions(tmp_path, entries, name="q.json"):
    path = tmp_path / name
    path.write_text(json.dumps(entries))
    return path


@pytest.mark.parametrize(("entry", "code"), [
    ({"image_id": None, "conversational_turns": GOOD["conversational_turns"]}, "bad_image_id"),
    ({"image_id": [1, 2], "conversational_turns": GOOD["conversational_turns"]}, "bad_image_id"),
    ({"image_id": "abc", "conversational_turns": GOOD["conversational_turns"]}, "bad_image_id"),
    ({"image_id": True, "conversational_turns": GOOD["conversational_turns"]}, "bad_image_id"),
    ({"image_id": 2, "conversational_turns": [{"question": 5, "bboxes": [[1, 1, 9, 9]]}]}, "malformed_turn"),
    ({"image_id": 2, "conversational_turns": [{"question": "q", "bboxes": [[0, 0, "1e400", 5]]}]}, "bad_gold_box"),
    ({"image_id": 2, "conversational_turns": [{"question": "q", "bboxes": ["0123"]}]}, "bad_gold_box"),
    ({"image_id": 2, "conversational_turns": [{"question": "q", "bboxes": [[1, 1, 9, 9]], "ann_ids": 7}]},
     "bad_ann_ids"),
    ({"image_id": 2, "conversational_turns": [GOOD["conversational_turns"][0],
                                              {"question": "q <box>{context_bbox}</box>", "bboxes": [[1, 1, 9, 9]],
                                               "context_from_turn": float("inf")}]}, "bad_reference"),
])
def test_wrong_types_in_a_question_file_are_issues(tmp_path, entry, code):
    path = tmp_path / "q.json"
    text = json.dumps([GOOD, entry]).replace('"1e400"', "1e400").replace("Infinity", "1e400")
    path.write_text(text)
    bench = import_upstream(path)
    assert code in {i.code for i in bench.issues if i.severity == "error"}
    assert "q-1" in {d.dialogue_id for d in bench}  # the good dialogue is kept


def test_non_finite_gold_box_is_rejected_everywhere(tmp_path):
    # observed: a 1e400 gold box was accepted and the oracle then scored 0
    path = tmp_path / "q.json"
    path.write_text('[{"image_id": 3, "conversational_turns": [{"question": "q", "bboxes": [[0, 0, 1e400, 5]]}]}]')
    bench = import_upstream(path)
    assert len(bench) == 0 and {"bad_gold_box", "empty_bench"} <= {i.code for i in bench.issues}
    folder = tmp_path / "folder"
    make_bench(folder, n_dialogues=2, turns=1)
    lines = (folder / BENCH_FILE).read_text().splitlines()
    lines[1] = lines[1].replace('"gold_boxes":[[', '"gold_boxes":[[1e400,', 1).replace(",2.0,", ",", 1)
    (folder / BENCH_FILE).write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"(?s){BENCH_FILE}:2: not a dialogue: .*non-finite"):
        Bench.load(folder)


@pytest.mark.parametrize(("content", "message"), [
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'[{"image_id": 1, "conversational_turns": []}]\xff\xfe', "not UTF-8"),
    (b"[" + b"9" * 5000 + b"]", "not valid JSON"),
    (b'{"image_id": 1}', "expected a JSON list"),
])
def test_unreadable_question_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        import_upstream(path)
    assert str(path) in str(info.value)
    result = CliRunner().invoke(main, ["bench", "validate", str(path)])
    assert result.exit_code == 1 and str(path) in result.output and "Traceback" not in result.output


def test_an_empty_bench_is_not_evaluated(tmp_path):
    # observed: an empty bench "evaluated" to 0 turns with exit 0
    path = write_questions(tmp_path, [])
    assert "empty_bench" in {i.code for i in check_bench(import_upstream(path))}
    with pytest.raises(ValueError, match="no turns to evaluate"):
        api.evaluate(import_upstream(path), RunConfig(adapter="oracle"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # refused before the adapter is built or the folder claimed
    from regiondial_bench.run.runner import Runner

    from .test_records import Hostile, spec_for

    empty = Bench([], name="empty")
    with pytest.raises(ValueError, match="no turns to evaluate"):
        Runner(empty, Hostile(lambda r: None), spec_for(empty), tmp_path / "direct", progress=False).run()
    result = CliRunner().invoke(main, ["evaluate", "--model", "oracle", "--bench", str(path), "--out",
                                       str(tmp_path / "cli"), "--no-progress"])
    assert result.exit_code != 0 and "no turns to evaluate" in result.output
    assert not (tmp_path / "cli" / "results.json").exists()
    validate = CliRunner().invoke(main, ["bench", "validate", str(path)])
    assert validate.exit_code == 1 and "empty_bench" in validate.output


def test_image_paths_outside_the_images_folder_are_refused(tmp_path):
    # observed: `../..` and absolute image paths were used silently
    images = tmp_path / "images"
    images.mkdir()
    secret = tmp_path / "secret.jpg"
    Image.new("RGB", (8, 8)).save(secret)
    Image.new("RGB", (8, 8)).save(images / "1.jpg")
    entries = [dict(GOOD, image_path="1.jpg"),
               dict(GOOD, image_id=2, image_path="../secret.jpg"),
               dict(GOOD, image_id=3, image_path=str(secret))]
    bench = import_upstream(write_questions(tmp_path, entries), images=images)
    outside = sorted(i.dialogue_id for i in bench.issues if i.code == "image_outside_root")
    assert outside == ["q-2", "q-3"] and all(i.severity == "error" for i in bench.issues if i.code == "image_outside_root")
    assert bench.image_files == {"q-1": (images / "1.jpg").resolve()}
    with pytest.raises(AdapterError, match="outside their bench or --images folder"):
        api.evaluate(bench, RunConfig(adapter="whole-image"), tmp_path / "run", progress=False)


def test_image_paths_outside_a_bench_folder_are_refused(tmp_path):
    folder = tmp_path / "bench"
    make_bench(folder, n_dialogues=3, turns=1)
    Image.new("RGB", (8, 8)).save(tmp_path / "outside.png")
    text = (folder / BENCH_FILE).read_text()
    text = text.replace('"path":"images/1.png"', '"path":"../outside.png"', 1)
    text = text.replace('"path":"images/2.png"', f'"path":{json.dumps(str(tmp_path / "outside.png"))}', 1)
    (folder / BENCH_FILE).write_text(text)
    bench = Bench.load(folder, verify=False)
    outside = sorted(i.dialogue_id for i in check_bench(bench) if i.code == "image_outside_root")
    assert outside == ["d1", "d2"]
    with pytest.raises(AdapterError, match="2 dialogues name an image outside"):
        api.evaluate(bench, RunConfig(adapter="oracle"), tmp_path / "run", progress=False)
    # a symlink inside the bench folder is an ordinary image folder, not an escape
    (folder / "images").rename(tmp_path / "real-images")
    (folder / "images").symlink_to(tmp_path / "real-images")
    assert not [i for i in check_bench(Bench.load(make_bench(tmp_path / "b2").root)) if i.severity == "error"]
    linked = Bench([d for d in bench if d.dialogue_id == "d0"], name="linked", root=folder)
    assert not [i for i in check_bench(linked) if i.severity == "error"]


def test_undecodable_images_are_reported_with_their_file(tmp_path):
    folder = tmp_path / "bench"
    make_bench(folder, n_dialogues=2, turns=1)
    (folder / "images" / "1.png").write_bytes(b"this is not a png")
    bench = Bench.load(folder)
    issue = next(i for i in check_bench(bench) if i.code == "image_unreadable")
    assert issue.dialogue_id == "d1" and str(folder / "images" / "1.png") in issue.message
    # without sizes in the bench, the runner reads the header: a clear error naming the file
    text = (folder / BENCH_FILE).read_text().replace('"width":64', '"width":null').replace('"height":48', '"height":null')
    (folder / BENCH_FILE).write_text(text)
    sizeless = Bench.load(folder, verify=False)
    with pytest.raises(AdapterError, match=r"dialogue d1: cannot read the image .*1\.png"):
        api.evaluate(sizeless, RunConfig(adapter="whole-image"), tmp_path / "run", progress=False)
    request_image = __import__("regiondial_bench.adapters.base", fromlist=["ImageInput"]).ImageInput(
        path=folder / "images" / "1.png")
    with pytest.raises(AdapterError, match=r"cannot decode the image .*1\.png"):
        request_image.load()


def test_bench_validate_reports_every_bad_line(tmp_path):
    folder = tmp_path / "bench"
    make_bench(folder, n_dialogues=5, turns=1)
    lines = (folder / BENCH_FILE).read_bytes().splitlines()
    lines[1] = b"[" * 100_000 + b"]" * 100_000
    lines[2] = lines[2].replace(b"Find", b"F\xffnd")
    lines[3] = lines[3].replace(b'"dialogue_id":"d3"', b'"dialogue_id":["d3"]')
    (folder / BENCH_FILE).write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(ValueError, match=rf"{BENCH_FILE}:2: not a dialogue"):
        Bench.load(folder)
    result = CliRunner().invoke(main, ["bench", "validate", str(folder), "--json"])
    assert result.exit_code == 1, result.output
    issues = json.loads(result.output)
    bad = sorted(i["message"].split(": ")[0] for i in issues if i["code"] == "bad_line")
    assert bad == [f"{folder / BENCH_FILE}:{n}" for n in (2, 3, 4)]
    assert "hash_mismatch" in {i["code"] for i in issues}
    (folder / "manifest.json").write_text('{"name": ')
    with pytest.raises(ValueError, match="manifest.json: not a valid bench manifest"):
        Bench.load(folder)
    broken = CliRunner().invoke(main, ["bench", "validate", str(folder)])
    assert broken.exit_code == 1 and "manifest.json" in broken.output and "Traceback" not in broken.output


def test_hostile_run_configs_are_clear_errors(tmp_path):
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(5))  # 9 * 4**5 leaves from 6 lines (20 lines would never finish expanding)
    cases = {
        "laughs.yaml": ("adapter: oracle\nadapter_options:\n  " + laughs.replace("\n", "\n  "), "aliases"),
        "deep.yaml": ("adapter: oracle\nadapter_options: {x: " + "[" * 50_000 + "]" * 50_000 + "}\n",
                      "nested too deeply|not valid YAML"),
        "binary.yaml": (b"adapter: \xff\xfe\n", "not UTF-8"),
        "list.yaml": ("- adapter\n", "a YAML mapping"),
        "types.yaml": ("adapter: [1]\nbatch_size: .inf\n", "invalid run config"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(ValueError, match=message) as info:
            api.load_run_config(path)
        assert str(path) in str(info.value), name
        result = CliRunner().invoke(main, ["evaluate", "--config", str(path), "--out", str(tmp_path / "r")])
        assert result.exit_code == 2 and "Traceback" not in result.output, (name, result.output)


def test_score_of_a_broken_run_folder_is_a_clear_error(tmp_path):
    bench = make_bench(tmp_path / "bench", n_dialogues=1, turns=1)
    api.evaluate(bench, RunConfig(adapter="oracle"), tmp_path / "run", progress=False, n_bootstrap=0)
    (tmp_path / "run" / "run.json").write_text("{")
    result = CliRunner().invoke(main, ["score", str(tmp_path / "run")])
    assert result.exit_code == 1 and str(tmp_path / "run" / "run.json") in result.output
    assert "--resume" in result.output  # the way out that keeps the predictions
    assert isinstance(result.exception, SystemExit)  # a clean CLI error, not an escaped exception


def test_hostile_image_names_are_missing_images_not_crashes(tmp_path):
    # a 5000-character or NUL-holding image_path made Path.is_file raise (File name too long)
    images = tmp_path / "images"
    images.mkdir()
    entries = [dict(GOOD, image_path="a" * 5000), dict(GOOD, image_id=2, image_path="x\u0000.jpg")]
    bench = import_upstream(write_questions(tmp_path, entries), images=images)
    assert sorted(i.dialogue_id for i in bench.issues if i.code == "image_missing") == ["q-1", "q-2"]
    folder = tmp_path / "bench"
    make_bench(folder, n_dialogues=1, turns=1)
    text = (folder / BENCH_FILE).read_text().replace('"path":"images/0.png"', '"path":"' + "b/" * 3000 + 'x.png"')
    (folder / BENCH_FILE).write_text(text.replace('"width":64', '"width":null').replace('"height":48', '"height":null'))
    loaded = Bench.load(folder, verify=False)
    assert "image_missing" in {i.code for i in check_bench(loaded)}
    with pytest.raises(AdapterError, match="have no image file"):
        api.evaluate(loaded, RunConfig(adapter="whole-image"), tmp_path / "run", progress=False)
