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
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import get_args

from .adapters.base import Adapter, AdapterError, HistoryItem, ImageInput, RoundRequest, RoundResponse
from .protocol import parse_answer, render_question, resolve_reference, upstream_style_for
from .schema import (
    PREDICTIONS_FILE,
    RESULTS_FILE,
    RUN_FILE,
    Bench,
    Dialogue,
    PredictionRecord,
    ReferenceSource,
    Region,
    RunSpec,
    Turn,
    UsedReference,
    is_file,
    path_inside,
    read_prediction_log,
)
from .segment import MaskProducer

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: runs are not locked
    fcntl = None  # type: ignore[assignment]

Key = tuple[str, int]
logger = logging.getLogger(__name__)

_WANTS_REGIONS: frozenset = frozenset({"box", "point"})
_WANTS_MASK: frozenset = frozenset({"box", "point", "mask"})

LOCK_FILE = "run.lock"
CORRUPT_FILE = PREDICTIONS_FILE + ".corrupt"
SUPERSEDED_FILE = "predictions.superseded.jsonl"
FSYNC_EVERY_RECORDS = 256
FSYNC_EVERY_S = 1.0
MAX_RECORD_TEXT = 1_000_000
"""Characters of an answer (or error) kept in the log; longer text is cut with a marker."""


class RunFolderError(RuntimeError):
    """The output folder holds another run, or a finished one, and resuming was not asked for."""


class RunLockedError(RunFolderError):
    """Another process holds the run folder's lock."""


class AllInfraFailedError(RuntimeError):
    """Every turn of a run failed for infrastructure reasons: there is nothing to score."""


_held_locks: dict[str, int] = {}
_held_guard = threading.Lock()


class RunLock:
    """An exclusive, non-blocking OS lock on a run folder (``fcntl.flock`` on ``run.lock``).

    Re-entrant within a process (``api.evaluate`` holds it across running and scoring, the
    runner takes it again). The lock file stays behind and holds the last holder's pid; the lock
    itself dies with the process, so a killed run never leaves its folder locked.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._key = os.path.abspath(self.path)
        self._file = None

    def acquire(self) -> RunLock:
        with _held_guard:
            if self._key in _held_locks:
                _held_locks[self._key] += 1
                self._file = "reentrant"
                return self
            self.folder.mkdir(parents=True, exist_ok=True)
            f = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (closed by release())
            if fcntl is not None:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    f.seek(0)
                    holder = f.read(64).strip() or "unknown"
                    f.close()
                    raise RunLockedError(
                        f"{self.folder} is in use by another regiondial process (pid {holder}); wait for it "
                        "to finish, stop it, or use another --out"
                    ) from None
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            _held_locks[self._key] = 1
            self._file = f
            return self

    def release(self) -> None:
        with _held_guard:
            if self._file is None:
                return
            _held_locks[self._key] -= 1
            if self._file != "reentrant" and _held_locks[self._key] == 0:
                del _held_locks[self._key]
                self._file.close()  # closing the descriptor releases the flock
            self._file = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


_freeze_depth = 0
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
            with _held_guard:
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
            with _held_guard:
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
            with _held_guard:
                _freeze_depth -= 1
                if _freeze_depth == 0:
                    gc.unfreeze()
            self._active = False


def _atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` so that a crash leaves either the old or the new file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_predictions(path: str | Path, *, repair: bool = False) -> list[PredictionRecord]:
    """Read a run's log for resuming: every valid record, whatever lines around it are broken.

    A torn last line (a run killed mid-write) or a corrupted line anywhere is skipped and
    reported (a warning with its line number). With ``repair``, such a log is rewritten
    (atomically) from the records that survived, the unreadable lines are appended to
    ``predictions.jsonl.corrupt`` beside it, and appends continue on a clean file.
    """
    path = Path(path)
    if not path.is_file():
        return []
    skipped: list[tuple[int, str]] = []
    records = read_prediction_log(path, strict=False, skipped=skipped)
    for line_no, reason in skipped[:20]:
        logger.warning("%s:%d: unreadable record skipped (%s)", path, line_no, reason)
    if len(skipped) > 20:
        logger.warning("%s: %d more unreadable lines skipped", path, len(skipped) - 20)
    if repair:
        data = path.read_bytes()
        lines = data.split(b"\n")
        if skipped:
            bad = {n for n, _ in skipped}
            with open(path.with_name(path.name + ".corrupt"), "ab") as f:
                for n in sorted(bad):
                    f.write(f"# line {n}: ".encode() + lines[n - 1][:MAX_RECORD_TEXT] + b"\n")
        nonblank = sum(1 for line in lines if line.strip())
        if skipped or nonblank != len(records) or (data and not data.endswith(b"\n")):
            _atomic_write(path, "".join(r.model_dump_json(exclude_defaults=True) + "\n" for r in records))
    return records


class PredictionLog:
    """Append-only JSONL writer.

    :meth:`flush` hands every written line to the operating system (a killed process loses
    nothing) and syncs to disk at most every ``fsync_every`` records or ``fsync_s`` seconds;
    :meth:`close` always syncs.
    """

    def __init__(self, path: Path, *, fsync_every: int = FSYNC_EVERY_RECORDS, fsync_s: float = FSYNC_EVERY_S) -> None:
        self.path = path
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self.fsync_every = fsync_every
        self.fsync_s = fsync_s
        self._unsynced = 0
        self._last_sync = time.monotonic()
        self.syncs = 0

    def append(self, record: PredictionRecord) -> None:
        self.append_line(record.model_dump_json(exclude_defaults=True))

    def append_line(self, line: str) -> None:
        """Append one record's JSON (without the newline)."""
        self._file.write(line + "\n")
        self._unsynced += 1

    def flush(self, *, sync: bool = False) -> None:
        self._file.flush()
        now = time.monotonic()
        if self._unsynced and (sync or self._unsynced >= self.fsync_every or now - self._last_sync >= self.fsync_s):
            os.fsync(self._file.fileno())
            self.syncs += 1
            self._unsynced = 0
            self._last_sync = now

    def close(self) -> None:
        try:
            self.flush(sync=True)
        finally:
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
        self.out_dir.mkdir(parents=True, exist_ok=True)
        run_file = self.out_dir / RUN_FILE
        log_file = self.out_dir / PREDICTIONS_FILE
        if overwrite:
            for stale in (log_file, self.out_dir / RESULTS_FILE):
                stale.unlink(missing_ok=True)
        elif run_file.exists():
            previous = _read_run_file(run_file, log_file)
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
            self._resume_log(log_file, retry_infra)
        elif log_file.is_file() and log_file.stat().st_size:
            if not resume:
                raise RunFolderError(
                    f"{self.out_dir} holds {PREDICTIONS_FILE} but no {RUN_FILE}; pass --resume to keep its "
                    "predictions (the run is then recorded with the current settings) or --overwrite to discard them"
                )
            logger.warning("%s has no %s: resuming its predictions under the current settings, which cannot be "
                           "checked against the ones the log was made with", self.out_dir, RUN_FILE)
            self._resume_log(log_file, retry_infra)
        else:
            (self.out_dir / RESULTS_FILE).unlink(missing_ok=True)
        _atomic_write(run_file, self.spec.model_dump_json(indent=2) + "\n")

    def _resume_log(self, log_file: Path, retry_infra: bool) -> None:
        records = read_predictions(log_file, repair=True)
        known = {(d.dialogue_id, t.index) for d in self.bench for t in d.turns}
        for record in records:
            if record.key in known:  # a log made with a larger --limit keeps its other turns on disk
                self.answers[record.key] = record
        if retry_infra:
            self._supersede_infra(log_file, records)

    def _supersede_infra(self, log_file: Path, records: list[PredictionRecord]) -> None:
        """Drop the infra failures and every turn that depended on them, so they are asked again.

        The log is rewritten atomically without them first (the dropped records are appended
        to ``predictions.superseded.jsonl``): a kill at any point leaves one record per turn.
        """
        retry = {k for k, r in self.answers.items() if r.failure_kind == "infra"}
        if not retry:
            logger.warning("--retry-infra: no turn of %s failed for infrastructure reasons", log_file)
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
        kept = [r for r in records if r.key not in retry]
        dropped = [r for r in records if r.key in retry]
        with open(self.out_dir / SUPERSEDED_FILE, "a", encoding="utf-8") as f:
            for record in dropped:
                f.write(record.model_dump_json(exclude_defaults=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        _atomic_write(log_file, "".join(r.model_dump_json(exclude_defaults=True) + "\n" for r in kept))
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
        """The log record of one answered turn; never raises (a record that cannot be built or
        serialized becomes a failure of that turn with the reason)."""
        try:
            return self._build_record(request, response, latency)
        except Exception as exc:  # noqa: BLE001 - one bad answer must not lose its batch
            return self._failed_record(request, getattr(response, "raw_text", ""), latency, exc)

    def _failed_record(self, request: RoundRequest, raw: object, latency: float, exc: Exception) -> PredictionRecord:
        reason = f"the answer could not be recorded: {type(exc).__name__}: {clean_text(str(exc))[:500]}"
        return PredictionRecord(
            dialogue_id=request.dialogue_id,
            turn=request.turn,
            round=request.round,
            question=clean_text(request.question),
            raw_text=clean_text(raw) if isinstance(raw, str) else "",
            references=list(request.references),
            error=reason,
            latency_s=round(latency, 6) if math.isfinite(latency) else 0.0,
            batch=self._batch,
            failure_kind="answer",
        )

    def _loggable(self, request: RoundRequest, record: PredictionRecord) -> tuple[PredictionRecord, str]:
        """The record as it reads back from its log line, and the line; a record that does not read
        back (or reads back with a non-finite coordinate) becomes a failure of its turn.

        A record of plain values (:func:`_reads_back_unchanged`: what the runner builds from a
        parsed answer) provably reads back as itself, so its line is not decoded again; any other
        record (a mask producer's or an adapter's unvalidated objects) is read back for real.
        """
        try:
            line = record.model_dump_json(exclude_defaults=True, warnings="error")
            if _reads_back_unchanged(record):
                return record, line
            back = PredictionRecord.model_validate_json(line)
            if not all(_finite_region(r) for r in back.regions):  # e.g. an int beyond float range
                raise ValueError("a coordinate is not a finite number once written")
            return back, line  # what is kept in memory is exactly what the log holds
        except Exception as exc:  # noqa: BLE001 - e.g. an adapter's mask or region of the wrong type
            failed = self._failed_record(request, record.raw_text, record.latency_s, exc)
            return failed, failed.model_dump_json(exclude_defaults=True)

    def _parse_options(self) -> dict[str, str]:
        """The run's parser and upstream reader, worked out once per spec (they are asked per answer)."""
        if self._parse_options_of is not self.spec:
            self._parse_options_of = self.spec
            self._parse_options_cache = {
                "parser": self.spec.parser or "tolerant",
                "upstream_style": upstream_style_for(self.spec.adapter_options.get("preset")),
            }
        return self._parse_options_cache

    def _build_record(self, request: RoundRequest, response: RoundResponse, latency: float) -> PredictionRecord:
        raw_text, content_error = answer_text(response.raw_text)
        kind = None
        if response.error is not None:
            regions, error = [], clean_text(str(response.error))[:10_000]
            kind = "infra" if response.failure_kind == "infra" else "answer"
        elif content_error is not None:
            regions, error = [], content_error
        elif response.regions is not None:
            regions, error = list(response.regions), None
        elif response.frame is not None and request.image.size is None:
            regions, error = [], "cannot map the answer back to pixels: the image size is unknown"
        else:
            parsed = parse_answer(
                raw_text,
                frame=response.frame,
                image_size=request.image.size,
                require_answer_tag=response.require_answer_tag,
                **({"max_regions": response.max_regions} if response.max_regions else {}),
                **self._parse_options(),
            )
            regions, error = parsed.regions, parsed.error
        if error is None and not all(_finite_region(r) for r in regions):
            regions, error = [], "the answer holds a non-finite coordinate (after mapping to pixels)"
        if error is not None and kind is None:
            kind = "answer"
        return PredictionRecord(
            dialogue_id=request.dialogue_id,
            turn=request.turn,
            round=request.round,
            question=clean_text(request.question),
            raw_text=raw_text,
            regions=regions,
            mask=response.mask,
            references=list(request.references),
            error=error,
            latency_s=round(latency, 6),
            batch=self._batch,
            failure_kind=kind,
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


def load_run_spec(run_dir: str | Path) -> RunSpec:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: {RUN_FILE} is missing")
    return _read_run_file(path, Path(run_dir) / PREDICTIONS_FILE)


def _read_run_file(path: Path, log_file: Path) -> RunSpec:
    """``run.json``, or a :class:`RunFolderError` naming it and a way out that keeps the predictions."""
    try:
        return RunSpec.model_validate_json(path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            reason = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'the file'}: {e['msg']}" for e in exc.errors()[:3])
        else:
            reason = str(exc) or type(exc).__name__
        raise RunFolderError(
            f"{path} is unreadable ({reason[:300]}). The predictions in {log_file} are not "
            f"affected: to keep them, move {path.name} aside (e.g. `mv {path} {path}.broken`) and run "
            "evaluate with --resume and the run's settings (--model or --config, --bench); the run is then "
            "recorded with those settings"
        ) from exc


def clean_text(text: str) -> str:
    """``text`` as valid unicode: each lone surrogate becomes U+FFFD (a split pair is rejoined).

    >>> clean_text("ok \\ud800!")
    'ok \\ufffd!'
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def answer_text(content: object) -> tuple[str, str | None]:
    """An adapter's ``raw_text`` as loggable text, plus a failure reason when it is not text.

    A list of OpenAI-style content parts (``[{"type": "text", "text": ...}, ...]``) is joined
    into its text; bytes are decoded as UTF-8; other types are a failure. Text longer than
    :data:`MAX_RECORD_TEXT` is cut (the parser never reads that far).
    """
    error = None
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    elif isinstance(content, (bytes, bytearray)):
        text = bytes(content).decode("utf-8", "replace")
    elif isinstance(content, (list, tuple)) and all(isinstance(p, (str, dict)) for p in content):
        parts = [p if isinstance(p, str) else p.get("text") for p in content
                 if isinstance(p, str) or p.get("type", "text") in ("text", "output_text")]
        if all(isinstance(p, str) for p in parts):
            text = "".join(parts)
        else:
            text, error = "", "the answer's content parts hold no text"
    else:
        text, error = "", f"the answer is a {type(content).__name__}, not text"
    text = clean_text(text)
    if len(text) > MAX_RECORD_TEXT:
        text = text[:MAX_RECORD_TEXT] + f" ... [cut: {len(text)} characters]"
    return text, error


def _plain_floats(values: object, count: int) -> bool:
    """Whether ``values`` is a tuple of ``count`` finite ``float``s (exactly those types)."""
    return (type(values) is tuple and len(values) == count
            and all(type(v) is float and math.isfinite(v) for v in values))  # type: ignore[union-attr]


def _reads_back_unchanged(record: PredictionRecord) -> bool:
    """Whether ``record``'s log line reads back as an equal record, known without decoding it.

    Building a record validates its own fields (exact ``str``/``int``/``float``), but model
    instances inside it are taken as they are: a region, reference or mask made without
    validation can hold anything. This accepts a record only when everything that reaches the
    line is a value JSON carries exactly: no mask, a finite ``latency_s``, regions and references
    of exactly their model types holding finite floats of the right counts (a finite float
    round-trips through its shortest repr; ints, validated strings and literals do too, and a
    string that is not valid unicode fails the dump before this is asked). Whatever it refuses
    is read back for real, so a refusal costs time, never correctness.
    """
    if record.mask is not None or not math.isfinite(record.latency_s):
        return False
    for region in record.regions:
        if not (type(region) is Region and _plain_floats(region.box, 4)
                and (region.point is None or _plain_floats(region.point, 2))
                and type(region.extra_points) is tuple and all(_plain_floats(p, 2) for p in region.extra_points)
                and (region.label is None or type(region.label) is str)):
            return False
    for used in record.references:
        if not (type(used) is UsedReference and type(used.turn) is int and type(used.source) is str
                and used.source in _REFERENCE_SOURCES
                and (used.box is None or _plain_floats(used.box, 4)) and type(used.text) is str):
            return False
    return True


_REFERENCE_SOURCES = frozenset(get_args(ReferenceSource))


def _finite_region(region: object) -> bool:
    values = [*region.box, *(region.point or ()), *(v for p in region.extra_points for v in p)]  # type: ignore[attr-defined]
    return all(math.isfinite(v) for v in values)
