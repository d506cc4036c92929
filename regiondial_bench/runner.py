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

The prediction log is append-only JSONL, flushed and synced after every batch, so a killed run
resumes where it stopped (``resume=True``) and ends with the same predictions.
"""

from __future__ import annotations

import heapq
import json
import os
import queue
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from .adapters.base import Adapter, AdapterError, HistoryItem, ImageInput, RoundRequest, RoundResponse
from .protocol import parse_answer, render_question, resolve_reference, upstream_style_for
from .schema import (
    PREDICTIONS_FILE,
    RESULTS_FILE,
    RUN_FILE,
    Bench,
    Dialogue,
    PredictionRecord,
    RunSpec,
    Turn,
    UsedReference,
    read_prediction_log,
)
from .segment import MaskProducer

Key = tuple[str, int]


class RunFolderError(RuntimeError):
    """The output folder holds another run, or a finished one, and resuming was not asked for."""


def read_predictions(path: str | Path, *, repair: bool = False) -> list[PredictionRecord]:
    """Read a run's log for resuming: tolerant of a torn last line (a run killed mid-write).

    With ``repair``, a log holding a torn or unreadable tail is rewritten (atomically) from the
    records that survived, so that appends continue on a clean file.
    """
    path = Path(path)
    if not path.is_file():
        return []
    records = read_prediction_log(path, strict=False)
    if repair:
        data = path.read_bytes()
        lines = sum(1 for line in data.splitlines() if line.strip())
        if lines != len(records) or (data and not data.endswith(b"\n")):
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                for record in records:
                    f.write(record.model_dump_json(exclude_defaults=True) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    return records


class PredictionLog:
    """Append-only JSONL writer; :meth:`flush` makes a batch durable (fsync)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def append(self, record: PredictionRecord) -> None:
        self._file.write(record.model_dump_json(exclude_defaults=True) + "\n")

    def flush(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


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
    """Runs one adapter over one bench and writes ``run.json`` + ``predictions.jsonl`` into ``out_dir``."""

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

    # ---------------------------------------------------------------- setup

    def _open_folder(self, resume: bool, overwrite: bool) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        run_file = self.out_dir / RUN_FILE
        log_file = self.out_dir / PREDICTIONS_FILE
        if run_file.exists() and not overwrite:
            previous = RunSpec.model_validate_json(run_file.read_text(encoding="utf-8"))
            if not resume:
                raise RunFolderError(
                    f"{self.out_dir} already holds a run; pass --resume to continue it or --overwrite to start over"
                )
            if previous.fingerprint() != self.spec.fingerprint():
                changed = [
                    k for k, v in self.spec.model_dump(exclude={"bench_location", "batch_size"}).items()
                    if previous.model_dump().get(k) != v
                ]
                raise RunFolderError(
                    f"cannot resume {self.out_dir}: the run was started with other settings ({', '.join(changed)}); "
                    "use a new --out folder or --overwrite"
                )
            for record in read_predictions(log_file, repair=True):
                self.answers[record.key] = record
        else:
            for stale in (log_file, self.out_dir / RESULTS_FILE):
                stale.unlink(missing_ok=True)
        run_file.write_text(self.spec.model_dump_json(indent=2) + "\n", encoding="utf-8")

    def _check_images(self) -> None:
        """Fail before the first batch when the adapter needs pixels or sizes the bench lacks."""
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

    def _image(self, dialogue: Dialogue) -> ImageInput:
        image = self._images.get(dialogue.dialogue_id)
        if image is None:
            path = self.bench.image_path(dialogue)
            size = dialogue.image.size
            if size is None and path is not None and path.is_file():
                from PIL import Image

                with Image.open(path) as img:
                    size = img.size
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
        for ref in turn.references:
            resolved = resolve_reference(self.spec.reference_mode, dialogue, turn, ref,
                                         lambda c: self.answers.get((dialogue.dialogue_id, c)))
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
        wants = frozenset({"box", "point", "mask"} if self.mask_producer is not None else {"box", "point"})
        return RoundRequest(
            dialogue_id=dialogue.dialogue_id,
            turn=turn.index,
            image=image,
            question=render_question(turn, used),
            question_template=turn.question,
            references=tuple(u for u in used if u is not None),
            history=history,
            wants=wants,
        )

    # ---------------------------------------------------------------- answers

    def to_record(self, request: RoundRequest, response: RoundResponse, latency: float) -> PredictionRecord:
        if response.error is not None:
            regions, error = [], response.error
        elif response.regions is not None:
            regions, error = list(response.regions), None
        elif response.frame is not None and request.image.size is None:
            regions, error = [], "cannot map the answer back to pixels: the image size is unknown"
        else:
            parsed = parse_answer(
                response.raw_text,
                frame=response.frame,
                image_size=request.image.size,
                require_answer_tag=response.require_answer_tag,
                **({"max_regions": response.max_regions} if response.max_regions else {}),
                parser=self.spec.parser or "tolerant",
                upstream_style=upstream_style_for(self.spec.adapter_options.get("preset")),
            )
            regions, error = parsed.regions, parsed.error
        return PredictionRecord(
            dialogue_id=request.dialogue_id,
            turn=request.turn,
            round=request.round,
            question=request.question,
            raw_text=response.raw_text,
            regions=regions,
            mask=response.mask,
            references=list(request.references),
            error=error,
            latency_s=round(latency, 6),
            batch=self._batch,
        )

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

    def _answer_batch(self, requests: list[RoundRequest]) -> list[PredictionRecord]:
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
        return self._add_masks(requests, records)

    # ---------------------------------------------------------------- the loop

    def run(self, *, resume: bool = False, overwrite: bool = False) -> list[PredictionRecord]:
        """Answer every turn of the bench (skipping those already logged when resuming)."""
        self._check_images()  # before the folder is claimed, so the same --out works once --images is added
        self._open_folder(resume, overwrite)
        self.adapter.prepare(self.bench)
        schedule = _Schedule(self.bench, self.dependencies, set(self.answers))
        log = PredictionLog(self.out_dir / PREDICTIONS_FILE)
        bar = _progress(self.bench.num_turns, len(self.answers), self.progress)
        try:
            steps = self._stream(schedule) if self.adapter.streaming else self._batches(schedule)
            for records in steps:
                for record in records:
                    self.answers[record.key] = record
                    log.append(record)
                    schedule.complete(record.key)
                log.flush()
                bar.update(len(records))
        finally:
            log.close()
            bar.close()
        if schedule.pending:
            raise RuntimeError(f"{schedule.pending} turns could not be scheduled (circular references?)")
        return [self.answers[(d.dialogue_id, t.index)] for d in self.bench for t in d.turns]

    def _batches(self, schedule: _Schedule) -> Iterator[list[PredictionRecord]]:
        while True:
            keys = schedule.take(self.spec.batch_size)
            if not keys:
                return
            self._batch += 1
            yield self._answer_batch([self.make_request(k) for k in keys])

    def _stream(self, schedule: _Schedule) -> Iterator[list[PredictionRecord]]:
        """Keep ``max_concurrency`` requests in flight; release dependents as answers arrive.

        Ready turns leave longest remaining reference chain first. An adapter with a ``submit``
        method (a future per request, e.g. the ``openai`` adapter's event loop) is used directly;
        any other streaming adapter gets a thread per request in flight.
        """
        schedule.prioritize_longest_chain()
        workers = max(1, int(self.adapter.max_concurrency))
        submit = getattr(self.adapter, "submit", None)
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
                finished = [answered.get()]
                while True:
                    try:
                        finished.append(answered.get_nowait())
                    except queue.Empty:
                        break
                requests, records = [], []
                for future, ended in finished:
                    request, started = in_flight.pop(future)
                    response = future.result()  # adapter infrastructure errors propagate; the log is durable
                    latency = ended - started
                    self.model_seconds += latency / workers
                    requests.append(request)
                    records.append(self.to_record(request, response, latency))
                self._batch += 1
                yield self._add_masks(requests, records)
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


def load_run_spec(run_dir: str | Path) -> RunSpec:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: {RUN_FILE} is missing")
    return RunSpec.model_validate(json.loads(path.read_text(encoding="utf-8")))
