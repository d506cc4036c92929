"""Import once, load fast: question files imported into the user cache.

A released ``*_multi_turn.json`` file is 13 GB or 26 GB and takes minutes to stream; what it holds
(questions, boxes, RLE masks) is about 1 MB. The first load of a file through a bench spec imports it
(:func:`~regiondial_bench.bench.sources.upstream.parse_upstream`) and writes a compact bench folder
into ``$REGIONDIAL_CACHE_DIR/imports/<file stem>-<key>/``::

    manifest.json       # the bench manifest (name, content hash, the file's issues)
    dialogues.jsonl     # the dialogues, masks as RLE
    import.json         # the source file: size, mtime, hashes of its head and tail and of all of it,
                        # image paths, entry counts, when and how fast it was imported

Later loads of the same file (same path, size, modification time and hash of its first and last MB;
with ``full_hash``, the hash of the whole file) read that folder in well under a second. Images and
annotations are looked up after either path by the same code
(:func:`~regiondial_bench.bench.sources.upstream.finish_import`), so a cached load gives the same
bench, content hash and issues as a direct import. A damaged or foreign entry is imported again;
a cache that cannot be written only costs the next load its speed. Concurrent processes (the ranks
of one launch) import a file once: the others wait on a lock and then read the entry.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ..cache import cache_dir
from ..schema import Bench
from .sources.upstream import ParsedQuestions, finish_import, parse_upstream

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: imports are not locked
    fcntl = None  # type: ignore[assignment]

IMPORT_FORMAT = 1
"""Version of what an import produces; bump it when the same file would import differently."""
EDGE_BYTES = 1024 * 1024
"""How much of the file's head and of its tail is hashed to recognise it."""
PROGRESS_BYTES = 64 * 1024 * 1024
"""Files from this size on show a progress bar (on a terminal) while they are imported."""
RECORD_FILE = "import.json"
_HASH_CHUNK = 8 * 1024 * 1024

State = Literal["loaded", "imported", "reimported", "off", "not stored"]


@dataclass(frozen=True)
class CacheOutcome:
    """What one load did with the cache.

    Attributes:
        state: ``loaded`` (from the cache), ``imported`` (and stored), ``reimported`` (the entry
            was stale or damaged: ``detail`` says why), ``off`` (cache not used), ``not stored``
            (imported, but the entry could not be written: ``detail`` says why).
        file: the question file.
        folder: the cache entry.
        seconds: how long the load took.
        detail: why an entry was replaced or not written.
    """

    state: State
    file: Path
    folder: Path | None
    seconds: float
    detail: str = ""
    size: int = 0

    def line(self) -> str:
        """One line for people: ``cache: ...``."""
        took = f"{self.seconds:.2f} s" if self.seconds < 10 else f"{self.seconds:.0f} s"
        speed = f", {self.size / self.seconds / 1e6:.0f} MB/s" if self.seconds > 0 and self.size > 0 else ""
        name = self.file.name
        if self.state == "loaded":
            return f"cache: {name} loaded from {self.folder} in {took} (--no-cache imports it again)"
        if self.state == "imported":
            return f"cache: {name} imported in {took}{speed}; stored in {self.folder}, later loads read it"
        if self.state == "reimported":
            return f"cache: {name} imported again in {took}{speed} ({self.detail}); stored in {self.folder}"
        if self.state == "off":
            return f"cache: off; {name} imported in {took}{speed}"
        return f"cache: {name} imported in {took}{speed}; not stored ({self.detail})"

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "file": str(self.file), "folder": str(self.folder) if self.folder else None,
                "seconds": round(self.seconds, 3), "detail": self.detail}


@dataclass
class ImportCache:
    """How loads use the import cache, and what they did (a small config object).

    Attributes:
        enabled: read and write the cache (False: import every time, write nothing).
        full_hash: recognise a file by the hash of all its bytes, not only its size, mtime, head
            and tail (reads the whole file: seconds per GB).
        root: the cache folder; None is ``$REGIONDIAL_CACHE_DIR/imports``.
        outcomes: one :class:`CacheOutcome` per load, appended as loads happen.
    """

    enabled: bool = True
    full_hash: bool = False
    root: Path | None = None
    outcomes: list[CacheOutcome] = field(default_factory=list)


class ImportRecord(BaseModel):
    """``import.json``: the file an entry was imported from, and what the bench folder cannot hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int
    file: str
    file_name: str
    name: str
    size: int
    mtime_ns: int
    edges_sha256: str
    sha256: str
    entries: int
    derived_paths: int
    image_paths: dict[str, str]
    content_hash: str
    import_seconds: float
    imported_at: str


def load_question_file(
    path: str | Path,
    *,
    name: str | None = None,
    images: str | Path | None = None,
    annotations: str | Path | None = None,
    cache: ImportCache | bool | None = None,
    notice: Callable[[str], None] | None = None,
) -> Bench:
    """:func:`~regiondial_bench.bench.sources.upstream.import_upstream` through the import cache.

    Args:
        path: the question file (an official question file or a released ``*_multi_turn.json``).
        name: bench name; defaults to the file's stem.
        images: image folder (see ``import_upstream``).
        annotations: COCO instances file (see ``import_upstream``).
        cache: an :class:`ImportCache` (its ``outcomes`` gets this load's), True/None for the
            default cache, False for none.
        notice: told about long imports and waits.

    Raises:
        ValueError: the file cannot be read or is not a question file.
        FileNotFoundError: ``images`` is not a folder.
    """
    path = Path(path)
    settings = cache if isinstance(cache, ImportCache) else ImportCache(enabled=cache is not False)
    parsed, outcome = _parsed(path, name, settings, notice or (lambda text: None))
    bench = finish_import(parsed, root=path.parent, images=images, annotations=annotations)
    settings.outcomes.append(outcome)
    return bench


def entry_folder(path: Path, name: str | None = None, root: Path | None = None) -> Path:
    """The cache entry of a question file (whether it exists or not)."""
    try:
        where = str(path.resolve())
    except (OSError, RuntimeError):
        where = str(path.absolute())
    stem = name or _stem(path)
    key = hashlib.sha256(f"{IMPORT_FORMAT}\0{where}\0{path.name}\0{stem}".encode("utf-8", "surrogatepass"))
    safe = re.sub(r"[^\w.-]", "_", stem)[:60] or "bench"
    return (root if root is not None else cache_dir("imports")) / f"{safe}-{key.hexdigest()[:16]}"


def _parsed(path: Path, name: str | None, cache: ImportCache,
            notice: Callable[[str], None]) -> tuple[ParsedQuestions, CacheOutcome]:
    if not cache.enabled:
        start = time.perf_counter()
        parsed, _ = _import(path, name, notice, None)
        return parsed, CacheOutcome("off", path, None, time.perf_counter() - start, size=_size(path))
    folder = entry_folder(path, name, cache.root)
    start = time.perf_counter()
    try:
        lock = _EntryLock(folder, notice)
    except OSError as exc:
        parsed, _ = _import(path, name, notice, None)
        return parsed, CacheOutcome("not stored", path, folder, time.perf_counter() - start,
                                    f"the cache folder cannot be written: {exc.strerror or exc}", size=_size(path))
    with lock:
        identity = _identity(path)  # raises ValueError for an unreadable file
        parsed, why = _read_entry(folder, path, name or _stem(path), identity, cache.full_hash)
        if parsed is not None:
            return parsed, CacheOutcome("loaded", path, folder, time.perf_counter() - start)
        start = time.perf_counter()
        parsed, digest = _import(path, name, notice, folder)
        seconds = time.perf_counter() - start
        if _identity(path) != identity:
            return parsed, CacheOutcome("not stored", path, folder, seconds, "the file changed while it was read",
                                        size=identity[0])
        record = ImportRecord(
            format=IMPORT_FORMAT, file=str(path.absolute()), file_name=path.name, name=parsed.name,
            size=identity[0], mtime_ns=identity[1], edges_sha256=identity[2], sha256=digest,
            entries=parsed.entries, derived_paths=parsed.derived_paths, image_paths=parsed.image_paths,
            content_hash="", import_seconds=round(seconds, 3),
            imported_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        try:
            _write_entry(folder, parsed, record)
        except (OSError, ValueError) as exc:  # no space or permission; text JSON cannot hold (lone surrogates)
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0][:200]
            return parsed, CacheOutcome("not stored", path, folder, seconds, f"cannot write {folder}: {why}",
                                        size=identity[0])
        state: State = "imported" if why == "absent" else "reimported"
        return parsed, CacheOutcome(state, path, folder, seconds, "" if why == "absent" else why, size=identity[0])


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _identity(path: Path) -> tuple[int, int, str]:
    """``(size, mtime_ns, sha256 of the size, the first and the last MB)``: how a file is recognised."""
    try:
        with open(path, "rb") as f:
            stat = os.fstat(f.fileno())
            digest = hashlib.sha256(str(stat.st_size).encode())
            digest.update(f.read(EDGE_BYTES))
            if stat.st_size > EDGE_BYTES:
                f.seek(max(EDGE_BYTES, stat.st_size - EDGE_BYTES))
                digest.update(f.read(EDGE_BYTES))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the question file ({exc.strerror or exc})") from exc
    return stat.st_size, stat.st_mtime_ns, digest.hexdigest()


def _full_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _import(path: Path, name: str | None, notice: Callable[[str], None],
            folder: Path | None) -> tuple[ParsedQuestions, str]:
    """Stream the file (with a progress bar when it is large); returns it parsed and its sha256."""
    digest = hashlib.sha256()
    size = _size(path)
    bar = None
    if size >= PROGRESS_BYTES:
        from tqdm import tqdm

        notice(f"importing {path.name} ({size / 1e9:.1f} GB), once"
               + (f": later loads read {folder}" if folder is not None else ""))
        bar = tqdm(total=size, unit="B", unit_scale=True, desc=f"import {path.name}", file=sys.stderr,
                   disable=None, leave=False)

    def on_chunk(chunk: bytes) -> None:
        digest.update(chunk)
        if bar is not None:
            bar.update(len(chunk))

    try:
        parsed = parse_upstream(path, name=name, on_chunk=on_chunk)
    finally:
        if bar is not None:
            bar.close()
    return parsed, digest.hexdigest()


def _stem(path: Path) -> str:
    """The bench name of a question file (as ``parse_upstream`` names it)."""
    return path.stem.removesuffix("-checkpoint")


def _read_entry(folder: Path, path: Path, name: str, identity: tuple[int, int, str],
                full_hash: bool) -> tuple[ParsedQuestions | None, str]:
    """The cached import of ``path`` (as bench ``name``), or None and why not."""
    record_file = folder / RECORD_FILE
    if not record_file.is_file():
        return None, "absent"
    try:
        record = ImportRecord.model_validate_json(record_file.read_bytes())
        if record.format != IMPORT_FORMAT:
            return None, "made by another version of the importer"
        if (record.file_name, record.name) != (path.name, name):
            return None, "the entry is another file's"
        size, mtime_ns, edges = identity
        if record.size != size:
            return None, "the file's size changed"
        if record.mtime_ns != mtime_ns:
            return None, "the file's modification time changed"
        if record.edges_sha256 != edges:
            return None, "the file's first or last MB changed"
        if full_hash and _full_hash(path) != record.sha256:
            return None, "the file's full hash changed"
        bench = Bench.load(folder)
        if bench.content_hash != record.content_hash or bench.name != record.name:
            return None, "the entry does not match its record"
    except (OSError, ValueError) as exc:  # a damaged entry (pydantic's errors are ValueErrors)
        return None, f"the entry was unreadable ({str(exc).splitlines()[0][:200]})"
    return ParsedQuestions(name=bench.name, file_name=record.file_name, dialogues=bench.dialogues,
                           issues=bench.issues, image_paths=dict(record.image_paths), entries=record.entries,
                           derived_paths=record.derived_paths), ""


def _write_entry(folder: Path, parsed: ParsedQuestions, record: ImportRecord) -> None:
    """Write the entry beside ``folder`` and swap it in (a reader never sees half of it)."""
    temporary = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        bench = Bench(parsed.dialogues, name=parsed.name, source={"format": "upstream-question-json",
                                                                  "file": parsed.file_name},
                      issues=parsed.issues)
        manifest = bench.save(temporary, created_by=f"regiondial import {parsed.file_name}")
        record = record.model_copy(update={"content_hash": manifest.content_hash})
        (temporary / RECORD_FILE).write_text(record.model_dump_json(indent=1) + "\n", encoding="utf-8")
        old = folder.with_name(f".{folder.name}.{os.getpid()}.old")
        if folder.exists():
            os.replace(folder, old)
        os.replace(temporary, folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


class _EntryLock:
    """An exclusive OS lock on one cache entry (``<entry>.lock`` beside it), held while it is
    checked and, when needed, imported and written."""

    def __init__(self, folder: Path, notice: Callable[[str], None]) -> None:
        folder.parent.mkdir(parents=True, exist_ok=True)
        self.path = folder.with_name(f".{folder.name}.lock")
        self.notice, self.folder = notice, folder
        self.file = open(self.path, "a+b")  # noqa: SIM115 (closed in __exit__)

    def __enter__(self) -> _EntryLock:
        if fcntl is None:
            return self
        try:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.notice(f"waiting for another process that is importing into {self.folder}")
            fcntl.flock(self.file.fileno(), fcntl.LOCK_EX)
        except OSError:  # a file system without locks: concurrent imports only repeat work
            pass
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.file.close()  # closing releases the lock
