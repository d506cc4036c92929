"""The response cache: an answer one run got is reused by every later run that asks the same thing.

42% of the official turns have no reference, so their requests are the same in ``predicted``,
``gold`` and ``upstream`` runs; a re-run into a new folder asks everything again. The cache answers
those from disk. It is content-addressed: the key is the SHA-256 of

* the adapter's name and its :meth:`~regiondial_bench.adapters.Adapter.cache_identity`: the model
  (checkpoint, revision or a fingerprint of local weights), preset, answer-changing options and
  the decoding settings (the seed only when sampling);
* the fully rendered request: the question as asked (references already written in the model's
  frame), a SHA-256 of the image file's bytes and the image size, the history (``with_history``)
  and the outputs wanted.

Only adapters that opt in (``cache_identity()`` not None: ``hf``, ``vllm``, ``openai``) are cached,
and only greedy ones unless ``cache_sampled`` (``--cache-sampled``) is set. Failed requests (an
``error``) are never stored; an answer that does not parse is (parsing happens after the cache,
with the run's own parser).

The store is one SQLite database in WAL mode, ``responses.sqlite3`` under the user cache
(``$REGIONDIAL_CACHE_DIR``): many processes may read and write it at once, and a process killed
mid-write leaves every committed answer intact and the torn transaction rolled back. Each entry
carries a checksum of its key and value; an entry that does not match, does not decode or is too
large is a miss (and is deleted), never a wrong answer. A cache that cannot be opened or written
turns itself off for the run with one warning; the run itself never fails because of it.

Answers are written in batches from the runner's thread (every :data:`FLUSH_EVERY` answers or
:data:`FLUSH_EVERY_S` seconds, and at the end of the run): a killed run loses at most those
unwritten answers from the cache, never from its prediction log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..adapters.base import Adapter, AdapterError, ImageInput, RoundRequest, RoundResponse
from ..geometry import CoordinateFrame
from ..schema import RLE, Region

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
"""Version of the key and value encoding; part of every key, so a new encoding starts a fresh cache."""
DATABASE_FILE = "responses.sqlite3"
CACHE_FOLDER = "responses"
MAX_ENTRY_BYTES = 4 << 20
"""Largest value stored or read back (an answer is at most 1,000,000 characters once recorded)."""
FLUSH_EVERY = 64
FLUSH_EVERY_S = 2.0
LOOKUP_CHUNK = 500  # keys per SELECT (SQLite's default limit is 32,766 parameters)
BUSY_TIMEOUT_S = 30.0


class ResponseCacheError(RuntimeError):
    """The cache database cannot be opened or used; the message names the file and the way out."""


@dataclass(frozen=True)
class ResponseCacheSettings:
    """Whether and where a run uses the response cache.

    Attributes:
        enabled: ``False`` (``--no-cache``): every request goes to the adapter and nothing is stored.
        cache_sampled: also reuse answers of sampling adapters (``--cache-sampled``): a re-run with
            the same seed then gets the same draws instead of new ones.
        folder: the cache folder; default ``cache_dir("responses")``.
    """

    enabled: bool = True
    cache_sampled: bool = False
    folder: Path | None = None

    def location(self) -> Path:
        from ..cache import cache_dir

        return Path(self.folder) if self.folder is not None else cache_dir(CACHE_FOLDER)


# ---------------------------------------------------------------------------------------------- store


class ResponseStore:
    """The SQLite file of the cache: entries by key, with their adapter, checksum and use times."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / DATABASE_FILE
        self._lock = threading.Lock()
        self.unusable = 0  # entries dropped because they failed their checksum or did not decode
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                       check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise ResponseCacheError(f"cannot open the response cache {self.path}: {exc}") from exc
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > CACHE_FORMAT:
                raise ResponseCacheError(f"{self.path} was written by a newer regiondial-bench (format {version}); "
                                         "upgrade, or move it aside with `regiondial cache clear`")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: a crash never corrupts; a power loss may drop the last commits
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, adapter TEXT NOT NULL, "
                "response BLOB NOT NULL, checksum TEXT NOT NULL, created_at REAL NOT NULL, used_at REAL NOT NULL) "
                "WITHOUT ROWID")
            self._db.execute("CREATE INDEX IF NOT EXISTS entries_used ON entries (used_at)")
            if version < CACHE_FORMAT:
                self._db.execute(f"PRAGMA user_version={CACHE_FORMAT}")
        except sqlite3.Error as exc:
            self._db.close()
            raise ResponseCacheError(f"{self.path} is not a usable response cache ({exc}); "
                                     "remove it with `regiondial cache clear`") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def get(self, keys: Sequence[str]) -> dict[str, RoundResponse]:
        """The decodable entries among ``keys``; an entry that fails its checksum or does not decode
        is deleted and left out (a miss)."""
        found: dict[str, RoundResponse] = {}
        broken: list[str] = []
        with self._lock:
            for start in range(0, len(keys), LOOKUP_CHUNK):
                chunk = list(keys[start:start + LOOKUP_CHUNK])
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(f"SELECT key, response, checksum FROM entries WHERE key IN ({marks})", chunk)
                for key, value, checksum in rows:
                    response = decode_response(key, value, checksum)
                    if response is None:
                        broken.append(key)
                    else:
                        found[key] = response
            if broken:
                logger.warning("response cache %s: %d unusable entries were dropped (asked again)", self.path,
                               len(broken))
                self._write(lambda db: db.executemany("DELETE FROM entries WHERE key = ?", [(k,) for k in broken]))
        self.unusable += len(broken)
        return found

    def put(self, entries: Iterable[tuple[str, str, bytes]], used: Iterable[str] = ()) -> None:
        """Store ``(key, adapter, value)`` entries and mark ``used`` keys as just used, in one transaction."""
        now = time.time()
        rows = [(key, adapter, value, checksum(key, value), now, now) for key, adapter, value in entries]
        touched = [(now, key) for key in used]
        if not rows and not touched:
            return
        with self._lock:
            self._write(lambda db: (db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?)", rows),
                                    db.executemany("UPDATE entries SET used_at = ? WHERE key = ?", touched)))

    def _write(self, work: Any) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            work(self._db)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def info(self) -> dict[str, Any]:
        """Entries, bytes (values and files on disk), entries per adapter, first and last use."""
        with self._lock:
            count, size, first, last = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(response)), 0), MIN(created_at), MAX(used_at) FROM entries"
            ).fetchone()
            adapters = dict(self._db.execute("SELECT adapter, COUNT(*) FROM entries GROUP BY adapter ORDER BY 2 DESC"))
        return {"path": str(self.path), "entries": count, "value_bytes": size, "file_bytes": files_size(self.folder),
                "by_adapter": adapters, "oldest": first, "last_used": last}

    def prune(self, *, unused_for_s: float | None = None, max_bytes: int | None = None) -> int:
        """Delete entries not used for ``unused_for_s`` seconds, then the least recently used ones
        until the values take at most ``max_bytes``; the file is compacted. The count deleted."""
        deleted = 0
        with self._lock:
            if unused_for_s is not None:
                cutoff = time.time() - unused_for_s
                self._write(lambda db: db.execute("DELETE FROM entries WHERE used_at < ?", (cutoff,)))
                deleted += self._db.execute("SELECT changes()").fetchone()[0]
            if max_bytes is not None:
                self._write(lambda db: db.execute(
                    "DELETE FROM entries WHERE key IN (SELECT key FROM (SELECT key, SUM(LENGTH(response)) OVER "
                    "(ORDER BY used_at DESC, key) AS kept FROM entries) WHERE kept > ?)", (max_bytes,)))
                deleted += self._db.execute("SELECT changes()").fetchone()[0]
            if deleted:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._db.execute("VACUUM")
        return deleted


def files_size(folder: Path) -> int:
    """Bytes of the cache's files on disk (the database, its WAL and shared-memory files)."""
    total = 0
    for suffix in ("", "-wal", "-shm"):
        try:
            total += (folder / (DATABASE_FILE + suffix)).stat().st_size
        except OSError:
            continue
    return total


def clear(folder: str | Path) -> int:
    """Remove the cache's files; the bytes freed. A run using it meanwhile keeps its open file and
    writes nothing more that a later run sees."""
    folder = Path(folder)
    freed = files_size(folder)
    for suffix in ("", "-wal", "-shm"):
        (folder / (DATABASE_FILE + suffix)).unlink(missing_ok=True)
    return freed


# ---------------------------------------------------------------------------------------------- values


def checksum(key: str, value: bytes) -> str:
    """What an entry must match to be used: the SHA-256 of its key and value."""
    return hashlib.sha256(key.encode() + b"\0" + value).hexdigest()


def encode_response(response: RoundResponse) -> bytes | None:
    """The stored form of an answer, or None when it must not be stored (a failure, non-text
    content, objects that are not the schema's, or too large)."""
    if response.error is not None or not isinstance(response.raw_text, str):
        return None
    try:
        frame = response.frame
        data = {
            "raw_text": response.raw_text,
            "regions": None if response.regions is None else [_plain(r, Region) for r in response.regions],
            "frame": None if frame is None else [float(frame.width), float(frame.height), str(frame.name)],
            "mask": None if response.mask is None else _plain(response.mask, RLE),
            "require_answer_tag": bool(response.require_answer_tag),
            "max_regions": response.max_regions,
        }
        value = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError, AttributeError):
        return None
    return value if len(value) <= MAX_ENTRY_BYTES else None


def _plain(value: Any, model: type) -> dict:
    if type(value) is not model:
        raise TypeError(f"not a {model.__name__}")
    return value.model_dump(mode="json")


def decode_response(key: str, value: Any, stored_checksum: Any) -> RoundResponse | None:
    """The answer an entry holds, or None when it is not exactly what was stored."""
    if not isinstance(value, bytes) or len(value) > MAX_ENTRY_BYTES or stored_checksum != checksum(key, value):
        return None
    try:
        data = json.loads(value)
        raw_text = data["raw_text"]
        frame = data["frame"]
        max_regions = data["max_regions"]
        if not isinstance(raw_text, str) or not isinstance(data["require_answer_tag"], bool):
            return None
        if max_regions is not None and (type(max_regions) is not int or max_regions < 1):
            return None
        if frame is not None:
            width, height, name = frame
            if not all(type(v) is float and math.isfinite(v) and v > 0 for v in (width, height)) or \
                    not isinstance(name, str):
                return None
            frame = CoordinateFrame(width, height, name)
        regions = None if data["regions"] is None else [Region.model_validate(r) for r in data["regions"]]
        mask = None if data["mask"] is None else RLE.model_validate(data["mask"])
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
    return RoundResponse(raw_text=raw_text, regions=regions, frame=frame, mask=mask,
                         require_answer_tag=data["require_answer_tag"], max_regions=max_regions)


# ---------------------------------------------------------------------------------------------- keys


class RequestKeys:
    """Cache keys of requests: the adapter's identity plus the rendered request, with each image
    file hashed once per run."""

    def __init__(self, adapter_name: str, identity: Any) -> None:
        self.prefix = json.dumps({"format": CACHE_FORMAT, "adapter": adapter_name, "identity": identity},
                                 sort_keys=True, ensure_ascii=False, default=repr)
        self._images: dict[Any, str | None] = {}

    def image_digest(self, image: ImageInput) -> str | None:
        """``sha256:<hex>`` of the image's bytes; None when they cannot be read (not cached)."""
        source = image.data if image.data is not None else image.path
        if source is None:
            return "none"
        marker = id(source) if isinstance(source, bytes) else str(source)
        if marker in self._images:
            return self._images[marker]
        digest = hashlib.sha256()
        try:
            if isinstance(source, bytes):
                digest.update(source)
            else:
                with open(source, "rb") as f:
                    while chunk := f.read(1 << 20):
                        digest.update(chunk)
            result: str | None = "sha256:" + digest.hexdigest()
        except OSError:
            result = None
        if not isinstance(source, bytes):  # bytes are hashed per request: an id can be reused
            self._images[marker] = result
        return result

    def key(self, request: RoundRequest) -> str | None:
        """The request's key, or None when it cannot be cached (its image is unreadable)."""
        digest = self.image_digest(request.image)
        if digest is None:
            return None
        rendered = {
            "question": request.question,
            "image": digest,
            "size": [request.image.width, request.image.height],
            "history": [[h.turn, h.question, h.answer_text, [r.model_dump(mode="json") for r in h.regions]]
                        for h in request.history],
            "wants": sorted(request.wants),
        }
        text = self.prefix + "\0" + json.dumps(rendered, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# ---------------------------------------------------------------------------------------------- adapter


@dataclass
class CacheStats:
    """What a run's cache did: answered from the cache, asked the adapter, stored, dropped as unusable."""

    hits: int = 0
    misses: int = 0
    stored: int = 0
    unusable: int = 0
    disabled: str = ""  # why the cache turned itself off mid-run, if it did
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"enabled": True, "hits": self.hits, "misses": self.misses, "stored": self.stored,
                               "unusable": self.unusable, **self.extra}
        if self.disabled:
            out["disabled_mid_run"] = self.disabled
        return out


class CachingAdapter:
    """An adapter seen through the response cache: requests answered before come from the store,
    the others go to the adapter and their answers are stored.

    Everything else (``streaming``, ``max_concurrency``, ``prepare``, ``reference_text``, the
    openai adapter's ``drive``, ...) is the adapter's own. ``submit`` exists only when the adapter
    has one, so the runner's streaming path stays the same: a cached answer is a future already done.
    """

    def __init__(self, adapter: Adapter, store: ResponseStore, identity: Any, name: str = "") -> None:
        self._inner = adapter
        self._store = store
        self._adapter_name = name or adapter.name or type(adapter).__name__
        self._keys = RequestKeys(self._adapter_name, identity)
        self._pending: list[tuple[str, str, bytes]] = []
        self._used: list[str] = []
        self._guard = threading.Lock()
        self._last_flush = time.monotonic()
        self._on = True
        self.stats = CacheStats(extra={"path": str(store.path)})
        self._upcoming: list | None = None
        if callable(getattr(adapter, "submit", None)):
            self.submit = self._submit
        if callable(getattr(adapter, "upcoming", None)):
            self.upcoming = self._defer_upcoming

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)

    @property
    def inner(self) -> Adapter:
        return self._inner

    # ------------------------------------------------------------------ lookups

    def _lookup(self, keys: Sequence[str | None]) -> dict[str, RoundResponse]:
        wanted = [k for k in dict.fromkeys(keys) if k is not None]
        if not wanted or not self._on:
            return {}
        try:
            found = self._store.get(wanted)
        except sqlite3.Error as exc:
            self._turn_off(f"reading failed: {exc}")
            return {}
        self.stats.unusable = self._store.unusable
        return found

    def _remember(self, key: str | None, response: RoundResponse) -> None:
        if key is None or not self._on:
            return
        value = encode_response(response)
        if value is not None:
            with self._guard:
                self._pending.append((key, self._adapter_name, value))

    def _defer_upcoming(self, images: Sequence[Any]) -> None:
        """The adapter is told which images come (and encodes them ahead) only once a request goes to
        it: a run answered from the cache encodes none."""
        self._upcoming = list(images)

    def _asking(self) -> None:
        if self._upcoming is not None:
            upcoming, self._upcoming = self._upcoming, None
            self._inner.upcoming(upcoming)

    def _answered(self, key: str, future: Future) -> None:
        if not future.cancelled() and future.exception() is None:
            self._remember(key, future.result())

    # ------------------------------------------------------------------ the contract

    def generate(self, requests: Sequence[RoundRequest]) -> list[RoundResponse]:
        keys = [self._keys.key(r) for r in requests]
        found = self._lookup(keys)
        out: list[RoundResponse | None] = [found.get(k) if k is not None else None for k in keys]
        ask = [i for i, response in enumerate(out) if response is None]
        self.stats.hits += len(requests) - len(ask)
        self.stats.misses += len(ask)
        self._used.extend(k for k, response in zip(keys, out, strict=True) if response is not None and k)
        if ask:
            self._asking()
            answers = self._inner.generate([requests[i] for i in ask])
            if len(answers) != len(ask):
                raise AdapterError(f"adapter {self._inner.name!r} returned {len(answers)} responses for "
                                   f"{len(ask)} requests")
            for i, response in zip(ask, answers, strict=True):
                out[i] = response
                self._remember(keys[i], response)
        self._flush_if_due()
        return out  # type: ignore[return-value]

    def _one(self, request: RoundRequest) -> tuple[str | None, RoundResponse | None]:
        """One request's key and cached answer (None on a miss), counted as a hit or a miss; a miss
        tells the adapter its upcoming images, since it is about to be asked."""
        key = self._keys.key(request)
        cached = self._lookup([key]).get(key) if key is not None else None
        if cached is not None:
            self.stats.hits += 1
            self._used.append(key)
        else:
            self.stats.misses += 1
            self._asking()
        return key, cached

    def generate_one(self, request: RoundRequest) -> RoundResponse:
        key, cached = self._one(request)
        if cached is not None:
            return cached
        response = self._inner.generate_one(request)
        self._remember(key, response)
        return response

    def _submit(self, request: RoundRequest) -> Future:
        key, cached = self._one(request)
        if cached is not None:
            future: Future = Future()
            future.set_running_or_notify_cancel()
            future.set_result(cached)
            return future
        future = self._inner.submit(request)
        if key is not None:
            future.add_done_callback(lambda f, k=key: self._answered(k, f))
        self._flush_if_due()
        return future

    # ------------------------------------------------------------------ writing

    def _flush_if_due(self) -> None:
        if len(self._pending) >= FLUSH_EVERY or (
                (self._pending or self._used) and time.monotonic() - self._last_flush >= FLUSH_EVERY_S):
            self.flush()

    def flush(self) -> None:
        """Write the answers gathered so far (called from the runner's thread, never the adapter's)."""
        with self._guard:
            pending, self._pending = self._pending, []
        used, self._used = self._used, []
        self._last_flush = time.monotonic()
        if not self._on or not (pending or used):
            return
        try:
            self._store.put(pending, used)
        except sqlite3.Error as exc:
            self._turn_off(f"writing failed: {exc}")
            return
        self.stats.stored += len(pending)

    def _turn_off(self, why: str) -> None:
        self._on = False
        self.stats.disabled = why
        logger.warning("response cache %s: %s; the rest of this run goes without it", self._store.path, why)

    def finish(self) -> dict[str, Any]:
        """Write what is left, close the store, and return the run's cache record."""
        self.flush()
        self._store.close()
        return self.stats.record()


def open_for_run(adapter: Adapter, settings: ResponseCacheSettings | None, name: str = ""
                 ) -> tuple[CachingAdapter | None, dict]:
    """The adapter seen through the cache, or None and the reason it runs without it.

    ``name`` is the adapter's registered name (the run's ``adapter``), part of every key.

    The second value is the run's cache record for ``results.json`` provenance (completed by
    :meth:`CachingAdapter.finish` when the cache is used).
    """
    settings = settings or ResponseCacheSettings()
    if not settings.enabled:
        return None, {"enabled": False, "reason": "turned off (--no-cache)"}
    identity = adapter.cache_identity()
    if identity is None:
        return None, {"enabled": False, "reason": f"{name or adapter.name} is never cached: it answers from more than "
                                                  "the request, or costs less than a lookup"}
    if adapter.samples and not settings.cache_sampled:
        return None, {"enabled": False, "reason": "the adapter samples; pass --cache-sampled to reuse sampled answers"}
    try:
        store = ResponseStore(settings.location())
    except ResponseCacheError as exc:
        logger.warning("%s; this run goes without the response cache", exc)
        return None, {"enabled": False, "reason": str(exc)}
    return CachingAdapter(adapter, store, identity, name), {}
