"""HTTP transports of the ``openai`` adapter: libcurl (``pycurl``) or ``aiohttp``, both on one asyncio loop.

The adapter's retry, backoff and ``Retry-After`` logic is written once, against
:meth:`Transport.request`; a transport only sends one attempt and reports what came back.

* ``curl`` (default when ``pycurl`` is installed): libcurl's multi interface driven by the
  adapter's event loop (libcurl tells the loop which sockets to watch and when to wake it; the
  loop tells libcurl which socket is ready). Connections, HTTP parsing, TLS and decompression run
  in C, so the client's CPU per request is a few dozen microseconds: at hundreds of requests in
  flight against a fast server, aiohttp's per-request Python work (about 0.2 ms) is what
  limits the client (``benchmarks/RESULTS.md``).
* ``aiohttp``: a pure-asyncio client, for platforms where ``pycurl`` is not installed.

Both bound a whole attempt (connect, send, headers and body) by ``timeout_s``, cap the reply
body while it arrives, ignore proxy environment variables unless ``trust_env`` is set, verify
TLS certificates against Python's default trust store (``ssl.get_default_verify_paths()``,
which honours ``$SSL_CERT_FILE``), and keep at most ``max_connections`` connections open.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import ssl
from typing import Any, NamedTuple

from .base import AdapterError
from .registry import require

MAX_REPLY_BYTES = 16 << 20
"""A reply body larger than this is refused (``max_tokens`` bounds a real chat completion far below)."""
TRANSPORTS = ("auto", "curl", "aiohttp")


class Reply(NamedTuple):
    """One HTTP reply: status, its ``Retry-After`` header (or None), and its body (None: over the cap)."""

    status: int
    retry_after: str | None
    data: bytes | None


class TransportError(Exception):
    """An attempt that got no HTTP reply (refused, reset, timed out); ``timeout`` tells the last apart."""

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


def resolve_transport(name: str | None) -> str:
    """``curl`` or ``aiohttp``: ``auto`` (or None) takes ``curl`` when ``pycurl`` imports."""
    name = name or "auto"
    if name not in TRANSPORTS:
        raise AdapterError(f"transport must be one of {TRANSPORTS}, got {name!r}")
    if name != "auto":
        return name
    try:
        import pycurl  # noqa: F401
    except ImportError:
        return "aiohttp"
    return "curl"


def make_transport(name: str, *, headers: dict[str, str], max_connections: int, timeout_s: float,
                   trust_env: bool = False) -> Transport:
    """The transport called ``name`` (``curl`` or ``aiohttp``); call :meth:`Transport.open` on its loop."""
    cls = {"curl": CurlTransport, "aiohttp": AiohttpTransport}[name]
    return cls(headers=headers, max_connections=max_connections, timeout_s=timeout_s, trust_env=trust_env)


class Transport:
    """One attempt at a time per call; every method runs on the adapter's event loop."""

    name = "base"

    def __init__(self, *, headers: dict[str, str], max_connections: int, timeout_s: float, trust_env: bool) -> None:
        self.headers = dict(headers)
        self.max_connections = int(max_connections)
        self.timeout_s = float(timeout_s)
        self.trust_env = bool(trust_env)

    async def open(self) -> None:
        raise NotImplementedError

    async def request(self, method: str, url: str, body: bytes | None = None, *,
                      timeout_s: float | None = None) -> Reply:
        """Send one request; a :class:`Reply`, or :class:`TransportError` when no reply came."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


# ---------------------------------------------------------------------------- libcurl


class _Transfer:
    """What one libcurl transfer collects: body chunks (capped), ``Retry-After``, and its future."""

    __slots__ = ("chunks", "future", "retry_after", "size", "too_large")

    def __init__(self, future: asyncio.Future) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.too_large = False
        self.retry_after: str | None = None
        self.future = future

    def write(self, chunk: bytes) -> int | None:
        self.size += len(chunk)
        if self.size > MAX_REPLY_BYTES:
            self.too_large = True
            return 0  # libcurl aborts the transfer (CURLE_WRITE_ERROR)
        self.chunks.append(chunk)
        return None

    def header(self, line: bytes) -> None:
        if line[:5] == b"HTTP/":  # a new response (after a 100 Continue or a redirect): forget the last one's
            self.retry_after = None
        elif line[:12].lower() == b"retry-after:":
            self.retry_after = line[12:].decode("latin-1").strip()[:64]


class CurlTransport(Transport):
    """libcurl's multi interface on the running asyncio loop.

    libcurl names the sockets to watch (``M_SOCKETFUNCTION``) and when to wake it
    (``M_TIMERFUNCTION``); the loop calls ``socket_action`` when one is ready or the time has
    come. On Linux the sockets go into an epoll set of the transport's own, which the loop watches
    as one file descriptor: libcurl registers each connection's socket and removes it again for
    every request, and an ``epoll_ctl`` costs far less than asyncio's ``add_reader``/
    ``remove_reader`` bookkeeping (``use_epoll=False`` takes that portable path).
    """

    name = "curl"
    use_epoll = hasattr(select, "epoll")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pycurl = require("pycurl", "openai")
        self._header_lines = [f"{k}: {v}" for k, v in self.headers.items()] + ["Expect:"]  # no 100-continue wait
        # trust what Python's ssl (and so the aiohttp transport) trusts, $SSL_CERT_FILE/$SSL_CERT_DIR
        # included, rather than whatever CA path the pycurl wheel's libcurl was built with
        paths = ssl.get_default_verify_paths()
        self._ca_file = paths.cafile if paths.cafile and os.path.isfile(paths.cafile) else None
        self._ca_dir = paths.capath if paths.capath and os.path.isdir(paths.capath) else None
        self._multi: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None  # loop time libcurl last asked to be woken at
        self._transfers: dict[Any, _Transfer] = {}
        self._idle: list[Any] = []
        self._epoll: Any = None

    async def open(self) -> None:
        pycurl = self.pycurl
        self._loop = asyncio.get_running_loop()
        multi = pycurl.CurlMulti()
        multi.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
        multi.setopt(pycurl.M_TIMERFUNCTION, self._on_timer)
        multi.setopt(pycurl.M_MAX_TOTAL_CONNECTIONS, self.max_connections)
        multi.setopt(pycurl.M_MAXCONNECTS, self.max_connections)  # keep that many idle connections alive
        self._multi = multi
        if self.use_epoll:
            self._epoll = select.epoll()
            self._loop.add_reader(self._epoll.fileno(), self._on_epoll)

    # libcurl's callbacks: they may only (un)register watches and timers, never drive the multi handle

    def _on_socket(self, what: int, fd: int, multi: Any, data: Any) -> None:
        pycurl, loop = self.pycurl, self._loop
        if self._epoll is not None:
            self._watch(what, fd)
            return
        if what == pycurl.POLL_REMOVE:
            loop.remove_reader(fd)
            loop.remove_writer(fd)
            return
        if what in (pycurl.POLL_IN, pycurl.POLL_INOUT):
            loop.add_reader(fd, self._act, fd, pycurl.CSELECT_IN)
        else:
            loop.remove_reader(fd)
        if what in (pycurl.POLL_OUT, pycurl.POLL_INOUT):
            loop.add_writer(fd, self._act, fd, pycurl.CSELECT_OUT)
        else:
            loop.remove_writer(fd)

    def _watch(self, what: int, fd: int) -> None:
        pycurl, epoll = self.pycurl, self._epoll
        if what == pycurl.POLL_REMOVE:
            with contextlib.suppress(OSError, ValueError):  # already closed, or never registered
                epoll.unregister(fd)
            return
        mask = ((select.EPOLLIN if what in (pycurl.POLL_IN, pycurl.POLL_INOUT) else 0)
                | (select.EPOLLOUT if what in (pycurl.POLL_OUT, pycurl.POLL_INOUT) else 0))
        try:
            epoll.modify(fd, mask)
        except FileNotFoundError:  # not registered yet
            epoll.register(fd, mask)

    def _on_epoll(self) -> None:
        """The epoll set has ready sockets: hand each to libcurl, then collect what finished."""
        pycurl = self.pycurl
        try:
            ready = self._epoll.poll(0)
        except OSError:
            return
        for fd, events in ready:
            self._socket_action(fd, (pycurl.CSELECT_IN if events & (select.EPOLLIN | select.EPOLLHUP) else 0)
                                | (pycurl.CSELECT_OUT if events & select.EPOLLOUT else 0)
                                | (pycurl.CSELECT_ERR if events & select.EPOLLERR else 0))
        self._collect()

    def _on_timer(self, timeout_ms: int) -> None:
        # libcurl moves its deadline several times per transfer; a loop timer that would fire
        # earlier than the new deadline is kept (it re-arms itself), so most moves cost no
        # cancel and no new timer
        if timeout_ms < 0:
            self._deadline = None
            return
        deadline = self._loop.time() + timeout_ms / 1000
        self._deadline = deadline
        if self._timer is not None:
            if self._timer.when() <= deadline:
                return
            self._timer.cancel()
        self._timer = self._loop.call_at(deadline, self._on_timeout)

    def _on_timeout(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return
        if self._loop.time() + 0.0005 < deadline:  # the deadline moved later since this timer was set
            self._timer = self._loop.call_at(deadline, self._on_timeout)
            return
        self._deadline = None  # consumed: acting may set the next one
        self._act(self.pycurl.SOCKET_TIMEOUT, 0)

    def _act(self, fd: int, event: int) -> None:
        self._socket_action(fd, event)
        self._collect()

    def _socket_action(self, fd: int, event: int) -> None:
        """Tell libcurl that ``fd`` is ready (or its timer is due); a failing multi handle fails what is in flight."""
        pycurl = self.pycurl
        try:
            while self._multi.socket_action(fd, event)[0] == pycurl.E_CALL_MULTI_PERFORM:
                pass
        except pycurl.error as exc:
            for transfer in list(self._transfers.values()):
                if not transfer.future.done():
                    transfer.future.set_exception(TransportError(f"libcurl: {exc}"))

    def _collect(self) -> None:
        while True:
            queued, succeeded, failed = self._multi.info_read()
            for handle in succeeded:
                self._finish(handle, None, "")
            for handle, code, message in failed:
                self._finish(handle, code, message)
            if not queued:
                return

    def _finish(self, handle: Any, code: int | None, message: str) -> None:
        pycurl = self.pycurl
        self._multi.remove_handle(handle)
        transfer = self._transfers.pop(handle, None)
        if transfer is None or transfer.future.done():  # cancelled meanwhile
            self._release(handle)
            return
        if code is None or (code == pycurl.E_WRITE_ERROR and transfer.too_large):
            status = int(handle.getinfo(pycurl.RESPONSE_CODE))
            data = None if transfer.too_large else b"".join(transfer.chunks)
            transfer.chunks = []  # the idle handle keeps ``transfer.write`` until its next request
            transfer.future.set_result(Reply(status, transfer.retry_after, data))
        else:
            timeout = code == pycurl.E_OPERATION_TIMEDOUT
            transfer.future.set_exception(TransportError(f"libcurl error {code}: {message}", timeout=timeout))
        self._release(handle)

    def _release(self, handle: Any) -> None:
        # kept with its options (every request sets the ones that differ); the connection itself
        # stays in the multi handle's cache, for whichever handle is next
        handle.setopt(self.pycurl.POSTFIELDS, b"")  # an idle handle must not pin the last request body
        if len(self._idle) < self.max_connections:
            self._idle.append(handle)
        else:
            handle.close()

    async def request(self, method: str, url: str, body: bytes | None = None, *,
                      timeout_s: float | None = None) -> Reply:
        pycurl = self.pycurl
        handle = self._idle.pop() if self._idle else self._new_handle()
        transfer = _Transfer(self._loop.create_future())
        handle.setopt(pycurl.URL, url)
        handle.setopt(pycurl.TIMEOUT_MS, max(1, int(1000 * (timeout_s or self.timeout_s))))
        handle.setopt(pycurl.WRITEFUNCTION, transfer.write)
        handle.setopt(pycurl.HEADERFUNCTION, transfer.header)
        if method == "GET":
            handle.setopt(pycurl.HTTPGET, 1)
        elif method == "POST":
            handle.setopt(pycurl.POSTFIELDS, body or b"")
        else:
            raise ValueError(f"unsupported method {method!r}")
        self._transfers[handle] = transfer
        try:
            self._multi.add_handle(handle)
        except pycurl.error as exc:
            self._transfers.pop(handle, None)
            raise TransportError(f"libcurl: {exc}") from None
        try:
            return await transfer.future
        except asyncio.CancelledError:
            if self._transfers.pop(handle, None) is not None:  # still running: stop it
                self._multi.remove_handle(handle)
                self._release(handle)
            raise

    def _new_handle(self) -> Any:
        """An easy handle with the options every request shares."""
        pycurl = self.pycurl
        handle = pycurl.Curl()
        handle.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        handle.setopt(pycurl.NOSIGNAL, 1)
        handle.setopt(pycurl.HTTPHEADER, self._header_lines)
        handle.setopt(pycurl.ACCEPT_ENCODING, "")  # every encoding libcurl decodes; the cap applies decoded
        if not self.trust_env:
            handle.setopt(pycurl.PROXY, "")  # ignore http_proxy & co., as aiohttp does by default
        if self._ca_file:
            handle.setopt(pycurl.CAINFO, self._ca_file)
        if self._ca_dir:
            handle.setopt(pycurl.CAPATH, self._ca_dir)
        return handle

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for handle in list(self._transfers):
            self._multi.remove_handle(handle)
            handle.close()
        self._transfers.clear()
        for handle in self._idle:
            handle.close()
        self._idle.clear()
        if self._multi is not None:
            self._multi.close()  # closes the cached connections (their sockets leave the loop first)
            self._multi = None
        if self._epoll is not None:
            self._loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
            self._epoll = None


# ---------------------------------------------------------------------------- aiohttp


class AiohttpTransport(Transport):
    """One ``aiohttp.ClientSession`` with ``max_connections`` connections."""

    name = "aiohttp"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.aiohttp = require("aiohttp", "openai")
        self._session: Any = None

    async def open(self) -> None:
        aiohttp = self.aiohttp
        connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=self.max_connections)
        # ``total`` is the deadline of one attempt: connecting, sending, headers and the whole body
        self._session = aiohttp.ClientSession(headers=self.headers, connector=connector, trust_env=self.trust_env,
                                              timeout=aiohttp.ClientTimeout(total=self.timeout_s))

    async def request(self, method: str, url: str, body: bytes | None = None, *,
                      timeout_s: float | None = None) -> Reply:
        aiohttp = self.aiohttp
        # (no ``timeout`` argument: the session's; ``timeout=None`` would mean no deadline at all)
        options = {"timeout": aiohttp.ClientTimeout(total=timeout_s)} if timeout_s is not None else {}
        try:
            async with self._session.request(method, url, data=body, **options) as reply:
                return Reply(reply.status, reply.headers.get("retry-after"), await _read_capped(reply))
        except asyncio.TimeoutError:  # aiohttp's deadline (also ServerTimeoutError)
            raise TransportError("Timeout", timeout=True) from None
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _read_capped(reply: Any) -> bytes | None:
    """A reply's whole body, or None once it passes ``MAX_REPLY_BYTES``."""
    declared = reply.content_length
    if declared is not None:
        return await reply.read() if declared <= MAX_REPLY_BYTES else None
    chunks, size = [], 0
    async for chunk in reply.content.iter_any():
        size += len(chunk)
        if size > MAX_REPLY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
