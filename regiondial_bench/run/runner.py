"""Run an adapter over a bench round by round, propagating its own answers into later rounds.

Scheduling is dependency-aware: a turn is *ready* once every turn it references is answered,
and ready turns from all dialogues go to the adapter together, in batches. Streaming adapters
(servers) instead get requests one by one (the adapter's ``submit``, else a thread pool), so a
dialogue's next round is sent as soon as its reference is answered, longest remaining chain first.

Reference modes (what fills a ``<box>{context_bbox}</box>`` placeholder):

* ``predicted`` (default): the first box the model itself gave for the referenced turn; if it
  gave none, the explicit :data:`~regiondial_bench.protocol.NO_REGION_TEXT` marker, never the
  gold box. A reference to the same or a later turn cannot be answered first and gets the marker.
* ``gold``: the referenced turn's gold box (teacher forcing; no turn waits for another).
* ``upstream``: the official evaluator's behaviour, for parity: the model's first box, falling
  back to the gold box when the referenced turn produced none or points forward.

The prediction log is append-only JSONL. Every batch is written through to the operating system
before the next one is asked, so a killed process (SIGKILL, OOM) loses no answered turn and a
resumed run (``resume=True``) ends with the same predictions. ``fsync`` (durability against a
power loss or kernel crash) runs after the batch that reaches :data:`FSYNC_EVERY_RECORDS`
unsynced records or :data:`FSYNC_EVERY_S` seconds since the last sync, and when the run ends: a
machine crash loses fewer than that many records plus one batch, which the next ``--resume`` asks
again.

A run folder is held with an exclusive OS lock (``run.lock``, ``fcntl.flock``) for the whole
run, so a second process on the same folder is refused at once instead of duplicating turns.

Resuming reads every valid record of the log: a corrupted line anywhere is reported with its
line number, kept aside in ``predictions.jsonl.corrupt`` and skipped. With ``retry_infra``, the
turns that failed for infrastructure reasons (``failure_kind == "infra"``) and every turn that
depended on them are asked again: the log is first rewritten atomically without those records
(they are kept in ``predictions.superseded.jsonl``), so the log always holds one record per turn.
"""

from __future__ import annotations

import gc
import heapq
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from ..adapters.base import Adapter, AdapterError, HistoryItem, ImageInput, RoundRequest, RoundResponse
from ..protocol import render_question, resolve_reference
from ..schema import (
    PREDICTIONS_FILE,
    Bench,
    Dialogue,
    PredictionRecord,
    RunSpec,
    Turn,
    UsedReference,
    is_file,
    path_inside,
)
from .folder import (  # noqa: F401 - load_run_spec, read_predictions, RunFolderError: their 0.1 import path
    FSYNC_EVERY_RECORDS,
    FSYNC_EVERY_S,
    PredictionLog,
    RunFolderError,
    RunLock,
    load_run_spec,
    open_run_folder,
    read_predictions,
    supersede_records,
)
from .records import build_record, clean_text, loggable, parse_options_for  # noqa: F401 - clean_text: 0.1 path
from .segment import MaskProducer

Key = tuple[str, int]
logger = logging.getLogger(__name__)

_WANTS_REGIONS: frozenset = frozenset({"box", "point"})
_WANTS_MASK: frozenset = frozenset({"box", "point", "mask"})


class AllInfraFailedError(RuntimeError):
    """Every turn of a run failed for infrastructure reasons: there is nothing to score."""


_freeze_depth = 0
_freeze_guard = threading.Lock()
FREEZE_GC = True
"""Whether :class:`frozen_gc` blocks freeze (a switch for benchmarks comparing both)."""


FREEZE_EVERY_RECORDS = 4096
"""How many new records a run holds before they are also moved out of the collector's sight."""


class frozen_gc:  # noqa: N801 - used like contextlib's lowercase managers
    """Within the block, everything alive when it was entered is out of the collector's sight.

    A run holds the bench, the adapter's prepared state and its records for its whole life; a
    full collection would rescan all of them every time (issue 10 measured a few such rescans
    doubling the per-turn cost at 50x the RefCOCO+ size). Nested blocks share one freeze; the
    objects are handed back to the collector when the outermost block ends. A no-op when the
    collector is disabled.
    """

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = FREEZE_GC if enabled is None else enabled
        self._active = False
        self._paused = False

    def __enter__(self) -> frozen_gc:
        global _freeze_depth
        if self.enabled and (gc.isenabled() or _freeze_depth):
            with _freeze_guard:
                if _freeze_depth == 0:
                    gc.freeze()
                _freeze_depth += 1
                self._active = True
        return self

    def include_survivors(self) -> None:
        """Move what became alive since the block was entered (a run's records) out of sight too.

        A run's records live until it ends; left in view, every full collection rescans all of
        them, and those come at each 25% growth of the surviving objects. The two young
        generations are collected first, so cyclic garbage that dies young is freed, not frozen;
        whatever is frozen goes back to the collector when the outermost block ends.
        """
        if self._active:
            with _freeze_guard:
                if not self._paused:
                    gc.collect(1)
                gc.freeze()
            self._resume()

    @contextmanager
    def setting_up(self) -> Iterator[None]:
        """A setup whose objects all live on (the runner's schedule): no collection inside, and all
        of it frozen unscanned afterwards.

        Collecting in the middle of such a setup only rescans it; for a 50x RefCOCO+ bench (about
        five new objects per turn) that was nine full collections, 0.8 s. What was alive before is
        frozen first (after collecting the young generations), so the pause holds only the setup's
        own objects; adapter code (``prepare``) and image reading never run inside one, since
        their cyclic garbage would be frozen with it.
        """
        self.include_survivors()
        if self._active and gc.isenabled():
            gc.disable()
            self._paused = True
        try:
            yield
        finally:
            self.include_survivors()

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            gc.enable()

    def __exit__(self, *exc: object) -> None:
        global _freeze_depth
        self._resume()
        if self._active:
            with _freeze_guard:
                _freeze_depth -= 1
                if _freeze_depth == 0:
                    gc.unfreeze()
            self._active = False


class _Schedule:
    """Which turns are ready: a counter of unmet dependencies per turn and a priority heap.

    Ready turns leave in (turn index, dialogue position) order, so early rounds of all dialogues
    go first and batches fill up with comparable prompts. The streaming path first calls
    :meth:`prioritize_longest_chain`, so that turns with the longest chain of turns still waiting on
    them leave first and the last wave is not a straggler.
    """

    def __init__(self, bench: Bench, dependencies: Callable[[Dialogue, Turn], set[int]], done: set[Key]) -> None:
        self._unmet: dict[Key, int] = {}
        self._dependents: dict[Key, list[Key]] = {}
        self._heap: list[tuple[int, int, int, str]] = []
        self._chain: dict[Key, int] | None = None
        self.pending = 0
        for position, dialogue in enumerate(bench):
            for turn in dialogue.turns:
                key = (dialogue.dialogue_id, turn.index)
                if key in done:
                    continue
                self.pending += 1
                unmet = [d for d in dependencies(dialogue, turn) if (dialogue.dialogue_id, d) not in done]
                self._unmet[key] = len(unmet)
                for d in unmet:
                    self._dependents.setdefault((dialogue.dialogue_id, d), []).append(key)
                if not unmet:
                    heapq.heappush(self._heap, (0, turn.index, position, dialogue.dialogue_id))
        self._position = {d.dialogue_id: i for i, d in enumerate(bench)}

    def prioritize_longest_chain(self) -> None:
        """Order ready turns by the longest chain of pending turns that waits on them (longest first).

        A turn's chain is 1 + the longest chain among the turns that depend on it; ties keep the
        (turn index, dialogue position) order. With C requests in flight and latency L, a run
        cannot end before max(ceil(N/C), longest chain)·L; starting the long chains first keeps
        the schedule close to that bound instead of leaving a few deep dialogues for the end.
        """
        chain: dict[Key, int] = {}
        for key in sorted(self._unmet, key=lambda k: -k[1]):  # dependents always have a later turn index
            chain[key] = 1 + max((chain[d] for d in self._dependents.get(key, ())), default=0)
        self._chain = chain
        self._heap = [(-chain[(d, i)], i, p, d) for _, i, p, d in self._heap]
        heapq.heapify(self._heap)

    def ready_keys(self) -> list[Key]:
        """The ready turns in the order :meth:`take` would hand them out."""
        return [(d, i) for _, i, _, d in sorted(self._heap)]

    def chain(self, key: Key) -> int:
        """The longest chain of pending turns from ``key`` (1: nothing waits on it); needs :meth:`prioritize_longest_chain`."""
        return self._chain[key] if self._chain is not None else 1

    def take(self, n: int) -> list[Key]:
        out = []
        while self._heap and len(out) < n:
            _, index, _, dialogue_id = heapq.heappop(self._heap)
            out.append((dialogue_id, index))
        return out

    def complete(self, key: Key) -> None:
        self.pending -= 1
        for dependent in self._dependents.pop(key, ()):
            self._unmet[dependent] -= 1
            if self._unmet[dependent] == 0:
                rank = -self._chain[dependent] if self._chain is not None else 0
                heapq.heappush(self._heap, (rank, dependent[1], self._position[dependent[0]], dependent[0]))

    @property
    def ready(self) -> int:
        return len(self._heap)


class Runner:
    """Runs one adapter over one bench and writes ``run.json`` + ``predictions.jsonl`` into ``out_dir``.

    ``fsync_every``/``fsync_s`` bound what a machine crash can lose (see the module docstring);
    ``freeze_gc`` moves everything alive when the loop starts (bench, prepared adapter, resumed
    records) out of the collector's sight for the run, so full collections stay cheap on big benches.
    """

    fsync_every: int = FSYNC_EVERY_RECORDS
    fsync_s: float = FSYNC_EVERY_S
    freeze_gc: bool = True

    def __init__(
        self,
        bench: Bench,
        adapter: Adapter,
        spec: RunSpec,
        out_dir: str | Path,
        *,
        mask_producer: MaskProducer | None = None,
        progress: bool = True,
    ) -> None:
        self.bench = bench
        self.adapter = adapter
        self.spec = spec
        self.out_dir = Path(out_dir)
        self.mask_producer = mask_producer
        self.progress = progress
        self.answers: dict[Key, PredictionRecord] = {}
        self.model_seconds = 0.0
        self.mask_seconds = 0.0
        self._images: dict[str, ImageInput] = {}
        self._batch = 0
        self._parse_options_of: RunSpec | None = None
        self._parse_options_cache: dict[str, str] = {}

    # ---------------------------------------------------------------- setup

    def _open_folder(self, resume: bool, overwrite: bool, retry_infra: bool = False) -> None:
        records = open_run_folder(self.out_dir, self.spec, resume=resume, overwrite=overwrite)
        known = {(d.dialogue_id, t.index) for d in self.bench for t in d.turns}
        for record in records:
            if record.key in known:  # a log made with a larger --limit keeps its other turns on disk
                self.answers[record.key] = record
        if retry_infra:
            self._supersede_infra(records)

    def _supersede_infra(self, records: list[PredictionRecord]) -> None:
        """Drop the infra failures and every turn that depended on them, so they are asked again."""
        retry = {k for k, r in self.answers.items() if r.failure_kind == "infra"}
        if not retry:
            logger.warning("--retry-infra: no turn of %s failed for infrastructure reasons",
                           self.out_dir / PREDICTIONS_FILE)
            return
        # a dependent was asked with what the failed turn left (no region, no history): ask it again too
        dependents: dict[Key, list[Key]] = {}
        for dialogue in self.bench:
            for turn in dialogue.turns:
                for d in self.dependencies(dialogue, turn):
                    dependents.setdefault((dialogue.dialogue_id, d), []).append((dialogue.dialogue_id, turn.index))
        todo = list(retry)
        while todo:
            for key in dependents.get(todo.pop(), ()):
                if key in self.answers and key not in retry:
                    retry.add(key)
                    todo.append(key)
        dropped = supersede_records(self.out_dir, records, retry)
        for key in retry:
            self.answers.pop(key, None)
        logger.warning("--retry-infra: asking %d turns again (%d infra failures and the turns depending on them)",
                       len(retry), sum(r.failure_kind == "infra" for r in dropped))

    def _check_images(self) -> None:
        """Fail before the first batch when the adapter needs pixels or sizes the bench lacks."""
        outside = [d.dialogue_id for d in self.bench if self._outside_root(d)]
        escaped = [i for i in self.bench.issues if i.code == "image_outside_root"]
        if outside or escaped:
            first = outside[0] if outside else escaped[0].dialogue_id
            raise AdapterError(
                f"{len(outside) + len(escaped)} dialogues name an image outside their bench or --images folder "
                f"(first: {first}); refusing to read it (see `regiondial bench validate`)"
            )
        if self.adapter.needs_pixels:
            missing = [d.dialogue_id for d in self.bench if not self._image(d).available]
            what = "looks at pixels"
        elif self.adapter.needs_image_size:
            missing = [d.dialogue_id for d in self.bench if self._image(d).size is None]
            what = "needs image sizes"
        else:
            return
        if missing:
            raise AdapterError(
                f"adapter {self.adapter.name!r} {what}, but {len(missing)} of {len(self.bench)} dialogues "
                f"have no image file (first: {missing[0]}); pass --images DIR with the images"
            )

    def _outside_root(self, dialogue: Dialogue) -> bool:
        if dialogue.dialogue_id in self.bench.image_files or dialogue.image.path is None or self.bench.root is None:
            return False
        return not path_inside(dialogue.image.path, self.bench.root)

    def _image(self, dialogue: Dialogue) -> ImageInput:
        image = self._images.get(dialogue.dialogue_id)
        if image is None:
            path = self.bench.image_path(dialogue)
            size = dialogue.image.size
            if size is None and path is not None and is_file(path):
                from PIL import Image

                try:
                    with Image.open(path) as img:
                        size = img.size
                except (OSError, ValueError, Image.DecompressionBombError) as exc:
                    raise AdapterError(f"dialogue {dialogue.dialogue_id}: cannot read the image {path}: {exc}") from exc
            image = ImageInput(path=path, width=size[0] if size else None, height=size[1] if size else None)
            self._images[dialogue.dialogue_id] = image
        return image

    # ---------------------------------------------------------------- references

    def dependencies(self, dialogue: Dialogue, turn: Turn) -> set[int]:
        """Earlier turns that must be answered before ``turn`` can be asked."""
        if self.spec.with_history:
            return set(range(turn.index))
        if self.spec.reference_mode == "gold":
            return set()
        return {ref.turn for ref in turn.references if ref.turn < turn.index}

    def resolve_references(self, dialogue: Dialogue, turn: Turn, image: ImageInput) -> list[UsedReference | None]:
        """What fills each reference of ``turn`` under the run's reference mode (None: left literal)."""
        used: list[UsedReference | None] = []
        if not turn.references:
            return used
        mode, answers, dialogue_id = self.spec.reference_mode, self.answers, dialogue.dialogue_id
        for ref in turn.references:
            resolved = resolve_reference(mode, dialogue, turn, ref, lambda c: answers.get((dialogue_id, c)))
            if resolved is None:
                used.append(None)
                continue
            source, box = resolved
            used.append(UsedReference(turn=ref.turn, source=source, box=box,
                                      text=self.adapter.reference_text(box, image)))
        return used

    def make_request(self, key: Key) -> RoundRequest:
        dialogue = self.bench.dialogue(key[0])
        turn = dialogue.turns[key[1]]
        image = self._image(dialogue)
        used = self.resolve_references(dialogue, turn, image)
        history: tuple[HistoryItem, ...] = ()
        if self.spec.with_history:
            history = tuple(
                HistoryItem(turn=r.turn, question=r.question, answer_text=r.raw_text, regions=tuple(r.regions))
                for r in (self.answers[(dialogue.dialogue_id, t)] for t in range(turn.index))
            )
        return RoundRequest(
            dialogue_id=dialogue.dialogue_id,
            turn=turn.index,
            image=image,
            question=render_question(turn, used) if used else turn.question,
            question_template=turn.question,
            references=tuple(u for u in used if u is not None) if used else (),
            history=history,
            wants=_WANTS_MASK if self.mask_producer is not None else _WANTS_REGIONS,
        )

    # ---------------------------------------------------------------- answers

    def to_record(self, request: RoundRequest, response: RoundResponse, latency: float) -> PredictionRecord:
        """The log record of one answered turn; never raises (see :func:`.records.build_record`)."""
        return build_record(request, response, latency, batch=self._batch, parse_options=self._parse_options())

    def _loggable(self, request: RoundRequest, record: PredictionRecord) -> tuple[PredictionRecord, str]:
        return loggable(request, record, batch=self._batch)

    def _parse_options(self) -> dict[str, str]:
        """The run's parser and upstream reader, worked out once per spec (they are asked per answer)."""
        if self._parse_options_of is not self.spec:
            self._parse_options_of = self.spec
            self._parse_options_cache = parse_options_for(self.spec)
        return self._parse_options_cache

    def _add_masks(self, requests: list[RoundRequest], records: list[PredictionRecord]) -> list[PredictionRecord]:
        if self.mask_producer is None:
            return records
        todo = [i for i, r in enumerate(records) if r.mask is None and r.regions]
        if not todo:
            return records
        start = time.perf_counter()
        masks = self.mask_producer.masks([(requests[i].image, records[i].regions) for i in todo])
        self.mask_seconds += time.perf_counter() - start
        records = list(records)
        for i, mask in zip(todo, masks, strict=True):
            records[i] = records[i].model_copy(update={"mask": mask})
        return records

    def _answer_batch(self, requests: list[RoundRequest]) -> list[tuple[RoundRequest, PredictionRecord]]:
        start = time.perf_counter()
        responses = self.adapter.generate(requests)
        elapsed = time.perf_counter() - start
        self.model_seconds += elapsed
        if len(responses) != len(requests):
            raise AdapterError(
                f"adapter {self.adapter.name!r} returned {len(responses)} responses for {len(requests)} requests"
            )
        per_request = elapsed / max(len(requests), 1)
        records = [self.to_record(q, r, per_request) for q, r in zip(requests, responses, strict=True)]
        return list(zip(requests, self._add_masks(requests, records), strict=True))

    # ---------------------------------------------------------------- the loop

    def run(self, *, resume: bool = False, overwrite: bool = False, retry_infra: bool = False) -> list[PredictionRecord]:
        """Answer every turn of the bench (skipping those already logged when resuming).

        Args:
            resume: continue the run in ``out_dir``; its logged turns are not asked again.
            overwrite: discard a run in ``out_dir``.
            retry_infra: with ``resume``, ask again the turns that failed for infrastructure
                reasons and the turns that depended on them.
        """
        if self.bench.num_turns == 0:
            raise ValueError(f"bench {self.bench.name!r} has no turns to evaluate "
                             f"({len(self.bench.issues)} import issues; see `regiondial bench validate`)")
        if retry_infra and not resume:
            raise RunFolderError("--retry-infra continues a run: pass it with --resume")
        # the bench, the adapter's prepared state, the schedule and the records live for the whole run:
        # keep the collector from rescanning them on every full collection
        with frozen_gc(self.freeze_gc and FREEZE_GC) as frozen:
            self._check_images()  # before the folder is claimed, so the same --out works once --images is added
            with RunLock(self.out_dir):
                self._open_folder(resume, overwrite, retry_infra)
                self.adapter.prepare(self.bench)
                with frozen.setting_up():  # first freezes the images, resumed records and prepared state
                    schedule = _Schedule(self.bench, self.dependencies, set(self.answers))
                    log = PredictionLog(self.out_dir / PREDICTIONS_FILE, fsync_every=self.fsync_every,
                                        fsync_s=self.fsync_s)
                    bar = _progress(self.bench.num_turns, len(self.answers), self.progress)
                unfrozen_records = 0
                try:
                    steps = self._stream(schedule) if self.adapter.streaming else self._batches(schedule)
                    for pairs in steps:
                        for request, record in pairs:
                            record, line = self._loggable(request, record)
                            self.answers[record.key] = record
                            log.append_line(line)
                            schedule.complete(record.key)
                        log.flush()
                        bar.update(len(pairs))
                        unfrozen_records += len(pairs)
                        if unfrozen_records >= FREEZE_EVERY_RECORDS:  # the records so far stay until the end
                            frozen.include_survivors()
                            unfrozen_records = 0
                finally:
                    log.close()
                    bar.close()
        if schedule.pending:
            raise RuntimeError(f"{schedule.pending} turns could not be scheduled (circular references?)")
        return [self.answers[(d.dialogue_id, t.index)] for d in self.bench for t in d.turns]

    def _batches(self, schedule: _Schedule) -> Iterator[list[tuple[RoundRequest, PredictionRecord]]]:
        while True:
            keys = schedule.take(self.spec.batch_size)
            if not keys:
                return
            self._batch += 1
            yield self._answer_batch([self.make_request(k) for k in keys])

    def _stream(self, schedule: _Schedule) -> Iterator[list[tuple[RoundRequest, PredictionRecord]]]:
        """Keep ``max_concurrency`` requests in flight; release dependents as answers arrive.

        Ready turns leave longest remaining reference chain first. An adapter with a ``submit``
        method (a future per request, e.g. the ``openai`` adapter's event loop) is used directly;
        any other streaming adapter gets a thread per request in flight. An adapter that also has
        ``drive_here``/``drive`` has its event loop run on this thread, while it waits for answers.
        """
        schedule.prioritize_longest_chain()
        upcoming = getattr(self.adapter, "upcoming", None)
        if callable(upcoming):  # e.g. the openai adapter encodes these images ahead of their first round
            seen: dict[str, ImageInput] = {}
            for dialogue_id, _ in schedule.ready_keys():
                if dialogue_id not in seen:
                    seen[dialogue_id] = self._image(self.bench.dialogue(dialogue_id))
            upcoming([image for image in seen.values() if image.path is not None or image.data is not None])
        workers = max(1, int(self.adapter.max_concurrency))
        submit = getattr(self.adapter, "submit", None)
        drive = None
        drive_here = getattr(self.adapter, "drive_here", None)
        if callable(submit) and callable(drive_here) and self.mask_producer is None:
            drive_here()  # the adapter's event loop runs here, between batches (a mask producer needs this thread)
            drive = self.adapter.drive
        pool = None if callable(submit) else ThreadPoolExecutor(max_workers=workers, thread_name_prefix="regiondial")
        in_flight: dict[Future, tuple[RoundRequest, float]] = {}
        answered: queue.SimpleQueue[tuple[Future, float]] = queue.SimpleQueue()

        def on_done(future: Future) -> None:
            answered.put((future, time.perf_counter()))

        try:
            while True:
                for key in schedule.take(workers - len(in_flight)):
                    request = self.make_request(key)
                    started = time.perf_counter()
                    future = pool.submit(self.adapter.generate_one, request) if pool is not None else submit(request)
                    in_flight[future] = (request, started)
                    future.add_done_callback(on_done)
                if not in_flight:
                    return
                if drive is not None:
                    drive(lambda: not answered.empty())
                finished = [answered.get()]
                while True:
                    try:
                        finished.append(answered.get_nowait())
                    except queue.Empty:
                        break
                requests, records = [], []
                for future, ended in finished:
                    request, started = in_flight.pop(future)
                    try:
                        response = future.result()
                    except AdapterError:
                        raise  # the adapter cannot run as configured: stop (the log is durable)
                    except Exception as exc:  # noqa: BLE001 - one request's crash must not end the run
                        response = RoundResponse(raw_text="", failure_kind="infra",
                                                 error=f"the adapter raised {type(exc).__name__}: {str(exc)[:500]}")
                    latency = ended - started
                    self.model_seconds += latency / workers
                    requests.append(request)
                    records.append(self.to_record(request, response, latency))
                self._batch += 1
                yield list(zip(requests, self._add_masks(requests, records), strict=True))
        finally:
            if pool is not None:
                pool.shutdown(wait=True)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, done: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=done, unit="turn", desc="evaluating", dynamic_ncols=True, smoothing=0.1)
    return _TickingBar(bar)


class _TickingBar:
    """A progress bar that keeps moving inside a slow batch: after two seconds without an answer
    it shows how long the model has been working on the current batch."""

    def __init__(self, bar, interval_s: float = 1.0) -> None:  # noqa: ANN001
        import threading

        self.bar = bar
        self.interval_s = interval_s
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="regiondial-progress", daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        while not self._stop.wait(self.interval_s):
            waited = time.monotonic() - self._last
            if waited >= 2.0:
                self.bar.set_postfix_str(f"waiting on the model {waited:.0f}s", refresh=True)

    def update(self, n: int) -> None:
        self._last = time.monotonic()
        self.bar.set_postfix_str("", refresh=False)
        self.bar.update(n)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.bar.close()
