"""A run folder on disk: its lock, its prediction log, its ``run.json`` and the readers of both.

Everything that reads or writes a run folder (the runner, ``score``, ``view``, ``compare``,
``merge``, the shards and the submission checks) goes through here, so the folder's rules live
in one place:

* ``run.lock``: an exclusive OS lock (``fcntl.flock``) held for as long as a process writes the
  folder; a second writer is refused at once instead of duplicating turns.
* ``predictions.jsonl``: append-only JSONL, one record per answered turn. :class:`PredictionLog`
  hands every batch to the OS before the next is asked (a killed process loses nothing) and
  fsyncs every :data:`FSYNC_EVERY_RECORDS` records or :data:`FSYNC_EVERY_S` seconds.
* ``run.json``: the run's settings (:class:`~regiondial_bench.schema.RunSpec`), replaced atomically.
* ``predictions.jsonl.corrupt`` / ``predictions.superseded.jsonl``: unreadable lines kept aside
  when a log is repaired, and records replaced by ``--retry-infra``.

Every whole-file write is :func:`atomic_write`: a crash leaves the old file or the new one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ..schema import (
    PREDICTIONS_FILE,
    REPEATS_FILE,
    RESULTS_FILE,
    RUN_FILE,
    PredictionRecord,
    RunSpec,
    read_prediction_log,
    validation_summary,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: runs are not locked
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

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


_held_locks: dict[str, list] = {}  # lock path -> [holders in this process, the open (flocked) lock file]
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
        self._held = False

    def acquire(self) -> RunLock:
        with _held_guard:
            if self._key in _held_locks:
                _held_locks[self._key][0] += 1
                self._held = True
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
            try:
                with naming(self.path):
                    f.seek(0)
                    f.truncate()
                    f.write(f"{os.getpid()}\n")
                    f.flush()
            except OSError:
                f.close()  # releases the flock taken above
                raise
            _held_locks[self._key] = [1, f]
            self._held = True
            return self

    def release(self) -> None:
        """Give up this holder's share; the last holder in the process, whichever it is, unlocks."""
        with _held_guard:
            if not self._held:
                return
            self._held = False
            held = _held_locks[self._key]
            held[0] -= 1
            if held[0] == 0:
                del _held_locks[self._key]
                held[1].close()  # closing the descriptor releases the flock

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """Within the block, an ``OSError`` without a file name (a full disk while writing, a failed
    fsync) gets ``path``: whoever reports it can say which file could not be written."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:  # (an OSError built from a message alone keeps it)
            exc.filename = str(path)
        raise


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` so that a crash leaves either the old or the new file.

    The text goes to a temporary file unique to this process beside ``path``, is synced, then
    renamed over ``path``; the folder is synced too, so the rename itself survives a power loss.
    A failure (no space, read-only, ...) leaves ``path`` as it was and removes the temporary file;
    the ``OSError`` names ``path``. A symbolic link at ``path`` is replaced, never written through.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with naming(path), open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        with naming(path):
            os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
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
            corrupt = path.with_name(path.name + ".corrupt")
            with naming(corrupt), open(corrupt, "ab") as f:
                for n in sorted(bad):
                    f.write(f"# line {n}: ".encode() + lines[n - 1][:MAX_RECORD_TEXT] + b"\n")
        nonblank = sum(1 for line in lines if line.strip())
        if skipped or nonblank != len(records) or (data and not data.endswith(b"\n")):
            atomic_write(path, "".join(r.model_dump_json(exclude_defaults=True) + "\n" for r in records))
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
        with naming(self.path):
            self._file.write(line + "\n")
        self._unsynced += 1

    def flush(self, *, sync: bool = False) -> None:
        with naming(self.path):
            self._file.flush()
        now = time.monotonic()
        if self._unsynced and (sync or self._unsynced >= self.fsync_every or now - self._last_sync >= self.fsync_s):
            with naming(self.path):
                os.fsync(self._file.fileno())
            self.syncs += 1
            self._unsynced = 0
            self._last_sync = now

    def close(self) -> None:
        try:
            self.flush(sync=True)
        except BaseException:
            with suppress(OSError):  # it fails for the reason the flush did, which is the error that propagates
                self._file.close()
            raise
        with naming(self.path):
            self._file.close()


def load_run_spec(run_dir: str | Path) -> RunSpec:
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        if (Path(run_dir) / REPEATS_FILE).is_file():
            raise FileNotFoundError(f"{run_dir} is the folder of `evaluate --repeats`, not a run folder: name one "
                                    f"repeat ({Path(run_dir) / 'repeat-0'})")
        raise FileNotFoundError(f"{run_dir} is not a run folder: {RUN_FILE} is missing")
    return _read_run_file(path, Path(run_dir) / PREDICTIONS_FILE)


def _read_run_file(path: Path, log_file: Path) -> RunSpec:
    """``run.json``, or a :class:`RunFolderError` naming it and a way out that keeps the predictions."""
    try:
        return RunSpec.model_validate_json(path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            reason = validation_summary(exc, limit=3)
        else:
            reason = str(exc) or type(exc).__name__
        raise RunFolderError(
            f"{path} is unreadable ({reason[:300]}). The predictions in {log_file} are not "
            f"affected: to keep them, move {path.name} aside (e.g. `mv {path} {path}.broken`) and run "
            "evaluate with --resume and the run's settings (--model or --config, --bench); the run is then "
            "recorded with those settings"
        ) from exc


def open_run_folder(out_dir: Path, spec: RunSpec, *, resume: bool, overwrite: bool) -> list[PredictionRecord]:
    """Claim ``out_dir`` for a run of ``spec`` (the caller holds its :class:`RunLock`) and write its ``run.json``.

    Returns the records to continue from: the readable records of the folder's log when resuming
    (the log repaired as :func:`read_predictions` does), else none.

    Raises:
        RunFolderError: The folder holds a run and neither ``resume`` nor ``overwrite`` was asked
            for, or the run there was made with other settings.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    run_file = out_dir / RUN_FILE
    log_file = out_dir / PREDICTIONS_FILE
    records: list[PredictionRecord] = []
    if overwrite:
        for stale in (log_file, out_dir / RESULTS_FILE):
            stale.unlink(missing_ok=True)
    elif run_file.exists():
        previous = _read_run_file(run_file, log_file)
        if not resume:
            raise RunFolderError(
                f"{out_dir} already holds a run; pass --resume to continue it or --overwrite to start over"
            )
        if previous.fingerprint() != spec.fingerprint():
            changed = [
                k for k, v in spec.model_dump(exclude={"bench_location", "batch_size"}).items()
                if previous.model_dump().get(k) != v
            ]
            raise RunFolderError(
                f"cannot resume {out_dir}: the run was started with other settings ({', '.join(changed)}); "
                "use a new --out folder or --overwrite"
            )
        records = read_predictions(log_file, repair=True)
    elif log_file.is_file() and log_file.stat().st_size:
        if not resume:
            raise RunFolderError(
                f"{out_dir} holds {PREDICTIONS_FILE} but no {RUN_FILE}; pass --resume to keep its "
                "predictions (the run is then recorded with the current settings) or --overwrite to discard them"
            )
        logger.warning("%s has no %s: resuming its predictions under the current settings, which cannot be "
                       "checked against the ones the log was made with", out_dir, RUN_FILE)
        records = read_predictions(log_file, repair=True)
    else:
        (out_dir / RESULTS_FILE).unlink(missing_ok=True)
    atomic_write(run_file, spec.model_dump_json(indent=2) + "\n")
    return records


def supersede_records(out_dir: Path, records: list[PredictionRecord], keys: set[tuple[str, int]]
                      ) -> list[PredictionRecord]:
    """Take the records of ``keys`` out of the folder's log, so those turns are asked again.

    The dropped records are appended (synced) to ``predictions.superseded.jsonl`` first, then the
    log is rewritten atomically without them: a kill at any point leaves one record per turn.
    Returns the dropped records.
    """
    kept = [r for r in records if r.key not in keys]
    dropped = [r for r in records if r.key in keys]
    with naming(out_dir / SUPERSEDED_FILE), open(out_dir / SUPERSEDED_FILE, "a", encoding="utf-8") as f:
        for record in dropped:
            f.write(record.model_dump_json(exclude_defaults=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    atomic_write(out_dir / PREDICTIONS_FILE, "".join(r.model_dump_json(exclude_defaults=True) + "\n" for r in kept))
    return dropped
