"""A record can always be written: hostile answers become failures with a reason, never a lost batch.

Each test names the observation of issue 9 it reproduces (it failed before the fix).
"""

from __future__ import annotations

import gc
import math
from concurrent.futures import Future

import pytest

from regiondial_bench import api
from regiondial_bench.adapters import Adapter, AdapterError, RoundResponse
from regiondial_bench.geometry import CoordinateFrame
from regiondial_bench.run.folder import PredictionLog, RunFolderError
from regiondial_bench.run.records import answer_text, clean_text
from regiondial_bench.run.runner import AllInfraFailedError, Runner
from regiondial_bench.schema import PredictionRecord, Region, RunConfig, RunSpec, read_prediction_log

from .helpers import answer_json, make_bench


def spec_for(bench, **config) -> RunSpec:
    return RunSpec(**RunConfig(adapter="hostile", **config).model_dump(), bench_name=bench.name,
                   bench_hash=bench.content_hash, bench_location=str(bench.root))


class Hostile(Adapter):
    """Answers the gold box, except for the turns ``respond`` decides to answer otherwise."""

    needs_pixels = False
    needs_image_size = False

    def __init__(self, respond):
        self.respond = respond
        self.asked: list[tuple[str, int]] = []
        self.frozen_during_run: list[int] = []

    def prepare(self, bench):
        self.gold = {(d.dialogue_id, t.index): t.gold_boxes[0] for d in bench for t in d.turns}

    def generate(self, requests):
        self.frozen_during_run.append(gc.get_freeze_count())
        self.asked.extend(r.key for r in requests)
        return [self.respond(r) or RoundResponse(raw_text=answer_json(self.gold[r.key])) for r in requests]


def run(tmp_path, respond, name="run", **kwargs):
    bench = make_bench(tmp_path / "bench", n_dialogues=3, turns=3)
    adapter = Hostile(respond)
    records = Runner(bench, adapter, spec_for(bench, batch_size=4), tmp_path / name, progress=False).run(**kwargs)
    return bench, adapter, records


def reread(tmp_path, name="run"):
    """The log read back strictly: every line must be a valid record."""
    return {r.key: r for r in read_prediction_log(tmp_path / name / "predictions.jsonl", strict=True)}


def test_content_given_as_a_list_of_parts_is_read_as_its_text(tmp_path):
    # observed: an OpenAI `content` list failed record validation and the batch was lost
    def respond(r):
        if r.turn == 0:
            return RoundResponse(raw_text=[{"type": "text", "text": "<answer>"},
                                           {"type": "text", "text": answer_json((1, 1, 9, 9))[8:]}])
    bench, _, records = run(tmp_path, respond)
    logged = reread(tmp_path)
    assert len(logged) == bench.num_turns
    first = logged[("d0", 0)]
    assert first.error is None and first.regions[0].box == (1.0, 1.0, 9.0, 9.0)


def test_lone_surrogates_are_replaced_and_the_log_reads_back(tmp_path):
    # observed: a lone surrogate made serialization fail; nothing of the batch was logged
    def respond(r):
        if r.turn == 1:
            return RoundResponse(raw_text="\ud800 broken " + answer_json((1, 1, 9, 9)), error=None)
        if r.turn == 2:
            return RoundResponse(raw_text="", error="server said \udfff")
    bench, _, _ = run(tmp_path, respond)
    logged = reread(tmp_path)
    assert len(logged) == bench.num_turns
    assert logged[("d0", 1)].raw_text.startswith("\ufffd broken") and logged[("d0", 1)].error is None
    assert logged[("d0", 2)].error == "server said \ufffd"


def test_non_finite_coordinates_become_a_failure_not_null(tmp_path):
    # observed: a 1e308 point in a normalized frame became inf, logged as null; the log was unreadable
    def respond(r):
        if r.turn == 0 and r.dialogue_id == "d0":
            return RoundResponse(raw_text=answer_json((0, 0, 1e308, 1e308)), frame=CoordinateFrame.normalized(1))
        if r.turn == 0 and r.dialogue_id == "d1":
            return RoundResponse(raw_text="structured", regions=[Region(box=(0.0, 0.0, math.inf, 5.0))])
    bench, _, _ = run(tmp_path, respond)
    logged = reread(tmp_path)
    assert len(logged) == bench.num_turns
    for key in (("d0", 0), ("d1", 0)):
        assert logged[key].regions == [] and "finite" in logged[key].error  # the parser's or the runner's guard
        assert logged[key].failure_kind == "answer"
    assert "null" not in (tmp_path / "run" / "predictions.jsonl").read_text()
    # and a resume reads every record back instead of asking everything again
    again = Hostile(lambda r: None)
    Runner(bench, again, spec_for(bench, batch_size=4), tmp_path / "run", progress=False).run(resume=True)
    assert again.asked == []


def test_a_record_that_cannot_be_built_fails_alone(tmp_path):
    # one turn's response is of the wrong shape; the other turns of its batch are kept
    def respond(r):
        if r.key == ("d1", 0):
            return RoundResponse(raw_text="x", regions=[Region(box=(1, 1, 9, 9))], mask="not an RLE")  # type: ignore[arg-type]
        if r.key == ("d2", 0):
            return RoundResponse(raw_text=42)  # type: ignore[arg-type]
        if r.key == ("d0", 0):
            return "not a response"  # type: ignore[return-value]
    bench, _, records = run(tmp_path, respond)
    logged = reread(tmp_path)
    assert len(logged) == bench.num_turns == len(records)
    assert "could not be recorded" in logged[("d1", 0)].error
    assert logged[("d2", 0)].error == "the answer is a int, not text"
    assert "could not be recorded" in logged[("d0", 0)].error
    assert all(r.error is None for k, r in logged.items() if k[1] == 0 and k[0] not in ("d0", "d1", "d2"))


def test_answer_text_and_clean_text():
    assert answer_text([{"type": "image_url", "image_url": {}}, {"type": "text", "text": "a"}, "b"]) == ("ab", None)
    assert answer_text(b"\xff<answer>") == ("\ufffd<answer>", None)
    assert answer_text([{"type": "text", "text": 3}])[1] == "the answer's content parts hold no text"
    assert answer_text(None) == ("", None)
    text, error = answer_text("x" * 2_000_001)
    assert error is None and len(text) < 1_000_100 and text.endswith("[cut: 2000001 characters]")
    assert clean_text("a\ud83d\ude00b\udfff") == "a\U0001f600b\ufffd"  # a pair given as two code points is rejoined
    assert clean_text("plain é") == "plain é"


class Infra(Hostile):
    """A server that is down for the turns ``down`` names (the rest: gold answers)."""

    def __init__(self, down):
        super().__init__(lambda r: RoundResponse(raw_text="", error="ConnectError: refused", failure_kind="infra")
                         if down(r) else None)


class HalfDown(Infra):
    """d0#0 hits a dead server; d1#1 gets an unparseable answer."""

    def __init__(self):
        super().__init__(lambda r: r.key == ("d0", 0))

    def generate(self, requests):
        responses = super().generate(requests)
        return [RoundResponse(raw_text="garbage") if r.key == ("d1", 1) else x for r, x in zip(requests, responses, strict=True)]


class Down(Infra):
    def __init__(self):
        super().__init__(lambda r: True)


def _register(name, cls):
    from regiondial_bench.adapters import get_adapter_class, register_adapter
    from regiondial_bench.adapters.base import AdapterError

    try:
        get_adapter_class(name)
    except AdapterError:
        register_adapter(name)(cls)


def test_failure_kinds_are_recorded_and_counted(tmp_path):
    bench = make_bench(tmp_path / "bench", n_dialogues=3, turns=3)
    _register("test-half-down", HalfDown)
    results = api.evaluate(bench, RunConfig(adapter="test-half-down"), tmp_path / "run", progress=False, n_bootstrap=0)
    # d0#0 is infra; d0#1 and d0#2 got the no-region reference and answered the (wrong) gold: still scored
    assert results.failure_kinds == {"answer": 1, "infra": 1}
    logged = reread(tmp_path)
    assert logged[("d0", 0)].failure_kind == "infra" and logged[("d1", 1)].failure_kind == "answer"
    assert logged[("d2", 2)].failure_kind is None


def test_retry_infra_asks_the_infra_turns_and_their_dependents_again(tmp_path):
    bench = make_bench(tmp_path / "bench", n_dialogues=3, turns=3)
    down = Infra(lambda r: r.dialogue_id == "d1" and r.turn == 1)
    Runner(bench, down, spec_for(bench), tmp_path / "run", progress=False).run()
    assert reread(tmp_path)[("d1", 1)].failure_kind == "infra"
    plain = Hostile(lambda r: None)
    Runner(bench, plain, spec_for(bench), tmp_path / "run", progress=False).run(resume=True)
    assert plain.asked == []  # a plain resume keeps the infra failures
    with pytest.raises(RunFolderError, match="--resume"):
        Runner(bench, plain, spec_for(bench), tmp_path / "run", progress=False).run(retry_infra=True)

    up = Hostile(lambda r: None)
    records = Runner(bench, up, spec_for(bench), tmp_path / "run", progress=False).run(resume=True, retry_infra=True)
    assert sorted(up.asked) == [("d1", 1), ("d1", 2)]  # d1#2 had been asked with d1#1's missing answer
    lines = (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == bench.num_turns  # superseded, not duplicated
    assert all(r.error is None for r in reread(tmp_path).values()) and len(records) == bench.num_turns
    superseded = (tmp_path / "run" / "predictions.superseded.jsonl").read_text().splitlines()
    assert len(superseded) == 2
    assert api.score(tmp_path / "run", n_bootstrap=0).overall.ap50 == 100.0


def test_a_run_whose_turns_all_failed_for_infra_reasons_fails(tmp_path):
    from click.testing import CliRunner

    from regiondial_bench.cli import main

    _register("test-server-down", Down)
    bench = make_bench(tmp_path / "bench", n_dialogues=2, turns=2)
    with pytest.raises(AllInfraFailedError, match="all 4 turns failed for infrastructure reasons"):
        api.evaluate(bench, RunConfig(adapter="test-server-down"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "results.json").exists()
    result = CliRunner().invoke(main, ["evaluate", "--model", "test-server-down", "--bench", str(tmp_path / "bench"),
                                       "--out", str(tmp_path / "cli"), "--no-progress"])
    assert result.exit_code != 0 and "infrastructure reasons" in result.output and "--retry-infra" in result.output


def test_gc_is_frozen_during_the_run_only(tmp_path):
    _, adapter, _ = run(tmp_path, lambda r: None)
    assert adapter.frozen_during_run and min(adapter.frozen_during_run) > 0
    assert gc.get_freeze_count() == 0


def test_fsync_is_batched_but_every_line_reaches_the_os(tmp_path, monkeypatch):
    import os

    syncs = []
    monkeypatch.setattr(os, "fsync", lambda fd: syncs.append(fd))
    path = tmp_path / "log.jsonl"
    log = PredictionLog(path, fsync_every=256, fsync_s=3600)
    record = PredictionRecord(dialogue_id="d", turn=0, round=1, question="q", raw_text="a")
    for i in range(1000):
        log.append(record.model_copy(update={"turn": i}))
        log.flush()
        # a killed process loses nothing that was flushed: the line is in the OS's hands already
        assert path.read_text().count("\n") == i + 1
    assert len(syncs) == 3  # at 256, 512 and 768 records
    log.close()
    assert len(syncs) == 4  # the rest when the run ends
    timed = PredictionLog(tmp_path / "t.jsonl", fsync_every=10**9, fsync_s=0.0)
    timed.append(record)
    timed.flush()
    assert len(syncs) == 5  # the time bound alone also syncs
    timed.close()


def test_a_mask_that_cannot_be_serialized_fails_its_turn_only(tmp_path):
    # the last guard: a record is checked to read back before it is logged (a mask producer's
    # output is attached without validation)
    from regiondial_bench.run.segment import MaskProducer

    class Garbage(MaskProducer):
        def masks(self, items):
            return [{"size": "x"} if i == 1 else None for i in range(len(items))]

    bench = make_bench(tmp_path / "bench", n_dialogues=3, turns=2)
    runner = Runner(bench, Hostile(lambda r: None), spec_for(bench, batch_size=3), tmp_path / "run",
                    mask_producer=Garbage(), progress=False)
    records = runner.run()
    logged = reread(tmp_path)
    assert len(logged) == len(records) == bench.num_turns
    failed = [k for k, r in logged.items() if r.error]
    assert failed == [("d1", 0), ("d1", 1)] and all("could not be recorded" in logged[k].error for k in failed)


def test_a_streaming_request_that_raises_is_an_infra_failure_of_its_turn(tmp_path):
    class Streaming(Hostile):
        streaming = True
        max_concurrency = 4

        def generate_one(self, request):
            if request.key == ("d2", 0) and self.crash:
                raise ConnectionResetError("peer went away")
            return self.generate([request])[0]

    bench = make_bench(tmp_path / "bench", n_dialogues=3, turns=2)
    adapter = Streaming(lambda r: None)
    adapter.crash = True
    Runner(bench, adapter, spec_for(bench), tmp_path / "run", progress=False).run()
    logged = reread(tmp_path)
    assert len(logged) == bench.num_turns
    assert logged[("d2", 0)].failure_kind == "infra" and "ConnectionResetError" in logged[("d2", 0)].error
    assert sum(r.error is not None for r in logged.values()) == 1
    adapter.crash = False
    adapter.asked.clear()
    Runner(bench, adapter, spec_for(bench), tmp_path / "run", progress=False).run(resume=True, retry_infra=True)
    assert sorted(adapter.asked) == [("d2", 0), ("d2", 1)]
    assert all(r.error is None for r in reread(tmp_path).values())

    class Misconfigured(Streaming):
        def generate_one(self, request):
            raise AdapterError("no pixels")

    with pytest.raises(AdapterError, match="no pixels"):
        Runner(bench, Misconfigured(lambda r: None), spec_for(bench), tmp_path / "other", progress=False).run()


def test_any_response_becomes_a_record_that_reads_back(tmp_path):
    """Whatever an adapter hands back (text with surrogates, parts, non-finite regions, wrong types),
    the record boundary yields one record that survives the log's round trip."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from regiondial_bench.adapters import ImageInput, RoundRequest

    bench = make_bench(tmp_path / "bench", n_dialogues=1, turns=1)
    runner = Runner(bench, Hostile(lambda r: None), spec_for(bench), tmp_path / "run", progress=False)
    request = RoundRequest(dialogue_id="d0", turn=0, image=ImageInput(width=64, height=48), question="q\ud800",
                           question_template="q")
    floats = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**400, 10**400)
    text = st.text(alphabet=st.characters(codec=None, blacklist_categories=()), max_size=200)
    content = (text | st.binary(max_size=50) | st.none() | st.integers()
               | st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]),
                                                 "text": text | st.integers()}), max_size=3)
               | st.builds(lambda b: f"<answer>[{{\"bbox_2d\": {b}}}]</answer>", st.lists(floats, min_size=4, max_size=4)))
    regions = st.none() | st.lists(st.builds(lambda b: Region.model_construct(box=tuple(b), point=None, extra_points=(),
                                                                             label=None),
                                             st.lists(floats, min_size=4, max_size=4)), max_size=2)
    frames = st.sampled_from([None, CoordinateFrame.normalized(1), CoordinateFrame.normalized(1000)])

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(content=content, regions=regions, frame=frames, error=st.none() | text,
           kind=st.sampled_from([None, "infra", "answer", "bogus"]))
    def check(content, regions, frame, error, kind):
        response = RoundResponse(raw_text=content, regions=regions, frame=frame, error=error, failure_kind=kind)
        record, line = runner._loggable(request, runner.to_record(request, response, 0.01))
        back = PredictionRecord.model_validate_json(line)
        assert back == record and back.key == ("d0", 0)
        assert (back.error is None) == (back.failure_kind is None)
        assert all(math.isfinite(v) for r in back.regions for v in r.box)

    check()


def test_what_the_runner_keeps_is_what_the_log_holds(tmp_path):
    # found by the property test: an unvalidated region holding a large exact int (3 * 10**306 + 1)
    # was kept in memory as the int but logged as digits that read back as a different float;
    # 10**400 does not even fit a float
    exact = Region.model_construct(box=(0, 0, 10, 3 * 10**306 + 1), point=None, extra_points=(), label=None)
    big = Region.model_construct(box=(0, 0, 10**400, 5), point=None, extra_points=(), label=None)
    answers = {("d0", 0): exact, ("d1", 0): big}
    _, _, records = run(tmp_path, lambda r: RoundResponse(raw_text="x", regions=[answers[r.key]])
                        if r.key in answers else None)
    logged = reread(tmp_path)
    assert {r.key: r for r in records} == logged
    assert logged[("d1", 0)].regions == [] and logged[("d1", 0)].error


def test_a_parser_exception_fails_its_turn_and_the_run_goes_on(tmp_path, monkeypatch):
    # observed: an exception escaping the parser (a >4300-digit integer) aborted the run, and
    # every --resume aborted again on the same turn; the record boundary now contains it
    import regiondial_bench.run.records as runner_module

    real = runner_module.parse_answer

    def parse(text, **kwargs):
        if "BOOM" in text:
            raise ValueError("Exceeds the limit (4300 digits) for integer string conversion")
        return real(text, **kwargs)

    monkeypatch.setattr(runner_module, "parse_answer", parse)
    bench, _, records = run(tmp_path, lambda r: RoundResponse(raw_text="BOOM") if r.key == ("d2", 1) else None)
    logged = reread(tmp_path)
    assert len(logged) == bench.num_turns
    assert "4300 digits" in logged[("d2", 1)].error and logged[("d2", 1)].failure_kind == "answer"
    assert sum(r.error is not None for r in logged.values()) == 1


def test_only_records_of_plain_values_skip_the_read_back():
    # the runner keeps a record without decoding its line only when the line provably reads back
    # as that record; every unvalidated object inside a record sends it through the real read-back
    from regiondial_bench.run.records import _reads_back_unchanged
    from regiondial_bench.schema import RLE, UsedReference

    region = Region(box=(1.0, 2.0, 30.0, 40.0), point=(5.0, 6.0), extra_points=((7.0, 8.0),), label="cat")
    used = UsedReference(turn=0, source="predicted", box=(1.0, 2.0, 3.0, 4.0), text="[1, 2, 3, 4]")
    plain = PredictionRecord(dialogue_id="d", turn=1, round=2, question="q", raw_text="t", regions=[region],
                             references=[used, UsedReference(turn=0, source="no-region", text="[no region]")],
                             latency_s=0.25, batch=3)
    assert _reads_back_unchanged(plain)
    line = plain.model_dump_json(exclude_defaults=True)
    assert PredictionRecord.model_validate_json(line) == plain

    def unvalidated_region(**fields):
        return Region.model_construct(**{"box": (1.0, 2.0, 30.0, 40.0), "point": None, "extra_points": (),
                                         "label": None, **fields})

    def unvalidated_reference(**fields):
        return UsedReference.model_construct(**{"turn": 0, "source": "gold", "box": None, "text": "x", **fields})

    refused = [
        {"regions": [unvalidated_region(box=(1, 2, 30, 40))]},  # ints kept as ints
        {"regions": [unvalidated_region(box=(1.0, 2.0, 30.0))]},
        {"regions": [unvalidated_region(box=(1.0, 2.0, 30.0, math.inf))]},
        {"regions": [unvalidated_region(point=(1.0, 2.0, 3.0))]},
        {"regions": [unvalidated_region(extra_points=[(1.0, 2.0)])]},
        {"regions": [unvalidated_region(label=5)]},
        {"references": [unvalidated_reference(box=(0.0, 0.0, math.inf, 1.0))]},  # e.g. resumed from a log
        {"references": [unvalidated_reference(text=7)]},
        {"references": [unvalidated_reference(source="guess")]},
        {"mask": RLE(size=(2, 2), counts="04")},
        {"latency_s": math.inf},
    ]
    for update in refused:
        assert not _reads_back_unchanged(plain.model_copy(update=update)), update


def test_the_collector_is_enabled_again_whatever_the_run_does(tmp_path):
    class NeedsPixels(Hostile):
        needs_pixels = True

    bench = make_bench(tmp_path / "bench", n_dialogues=2, turns=2)
    (bench.root / bench.dialogues[0].image.path).unlink()
    with pytest.raises(AdapterError, match="looks at pixels"):  # fails inside the paused setup
        Runner(bench, NeedsPixels(lambda r: None), spec_for(bench), tmp_path / "run", progress=False).run()
    assert gc.isenabled() and gc.get_freeze_count() == 0
    run(tmp_path, lambda r: None, name="ok")
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_record_kept_without_its_read_back_is_what_its_line_reads_back_as():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from regiondial_bench.run.records import _reads_back_unchanged
    from regiondial_bench.schema import UsedReference

    finite = st.floats(allow_nan=False, allow_infinity=False)
    text = st.text(alphabet=st.characters(codec=None, blacklist_categories=()), max_size=30)  # lone surrogates too
    regions = st.builds(Region, box=st.tuples(finite, finite, finite, finite),
                        point=st.none() | st.tuples(finite, finite),
                        extra_points=st.lists(st.tuples(finite, finite), max_size=2).map(tuple),
                        label=st.none() | text)
    references = st.builds(UsedReference, turn=st.integers(0, 10**30),
                           source=st.sampled_from(["predicted", "gold", "gold-fallback", "no-region"]),
                           box=st.none() | st.tuples(finite, finite, finite, finite), text=text)

    @settings(max_examples=300, deadline=None)
    @given(st.lists(regions, max_size=3), st.lists(references, max_size=2), text, st.none() | text, finite)
    def check(regions, references, raw, error, latency):
        record = PredictionRecord(dialogue_id="d", turn=0, round=1, question="q", raw_text=raw, regions=regions,
                                  references=references, error=error, latency_s=latency)
        assert _reads_back_unchanged(record)
        try:
            line = record.model_dump_json(exclude_defaults=True, warnings="error")
        except ValueError:  # a lone surrogate: the dump fails, and with it the turn
            return
        assert PredictionRecord.model_validate_json(line) == record

    check()


def test_a_streaming_adapter_hears_the_images_in_the_order_it_will_first_be_asked(tmp_path):
    """``upcoming`` (the openai adapter encodes these ahead): each pending dialogue's image once,
    in the order of the dialogues' first requests; done dialogues are left out on resume."""

    class Streaming(Hostile):
        streaming = True
        max_concurrency = 2

        def upcoming(self, images):
            self.heard = [image.path for image in images]

        def submit(self, request):  # called in the runner's order (a thread pool would reorder them)
            future = Future()
            future.set_result(self.generate([request])[0])
            return future

    bench = make_bench(tmp_path / "bench", n_dialogues=5, turns=3)
    adapter = Streaming(lambda r: None)
    Runner(bench, adapter, spec_for(bench), tmp_path / "run", progress=False).run()
    first_asked = list(dict.fromkeys(dialogue_id for dialogue_id, _ in adapter.asked))
    assert adapter.heard == [bench.image_path(bench.dialogue(d)) for d in first_asked]
    assert len(adapter.heard) == 5 == len(set(adapter.heard))

    log = tmp_path / "run" / "predictions.jsonl"  # resume with d0 and d3 answered in full
    kept = [line for line in log.read_text().splitlines() if '"dialogue_id":"d0"' in line or '"dialogue_id":"d3"' in line]
    log.write_text("\n".join(kept) + "\n")
    adapter.asked.clear()
    Runner(bench, adapter, spec_for(bench), tmp_path / "run", progress=False).run(resume=True)
    first_asked = list(dict.fromkeys(dialogue_id for dialogue_id, _ in adapter.asked))
    assert sorted(first_asked) == ["d1", "d2", "d4"]
    assert adapter.heard == [bench.image_path(bench.dialogue(d)) for d in first_asked]
