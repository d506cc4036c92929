"""How close ``regiondial evaluate --model openai`` gets to the latency bound of a fast server.

Starts its own OpenAI-compatible server on 127.0.0.1 (a separate process that answers every
chat-completions request after a fixed latency L, at most ``--max-connections`` connections,
bodies of at most 64 MiB, and that stops by itself when this script exits or after
``--server-lifetime`` seconds). It then runs ``regiondial evaluate --model openai`` (a real CLI
subprocess) on the official RefCOCO+ question file, with one small generated image per image
id in a temporary ``--images`` folder, for every L and concurrency C, and prints:

* makespan: first request received to last answer sent, as the server saw them;
* bound: max(ceil(N/C), longest reference chain) * L, which no client can beat;
* round-sync: sum over rounds r of ceil(N_r/C) * L, a schedule where round r of every dialogue
  waits for round r-1 of all (what a batch-per-round client gets);
* bound/makespan (target: >= 0.8 at L=200 ms, >= 0.6 at L=50 ms) and round-sync/makespan;
* client CPU per request: the CPU time of the evaluate process and its image encoder processes
  between the first request and the last answer, divided by N (read from /proc; summed over the
  processes with ``--shards``); the same for the server process, which shares the machine's
  cores with the client.

With ``--shards N`` each run is N ``evaluate --shard I/N`` processes started together, each with
C/N requests in flight (the project's own scale-out, ``docs/adapters.md``, "Scale-out"): the
makespan is still the server's, first request to last answer of all of them.

These runs squash images to ``--squash-size`` (default 28) so image work is negligible. A last
run uses the preset's default image settings (840x840 squash, PNG) on textured 640x480 images
and reports the one-time encoding cost per image and how many images were encoded for how
many requests (each image once per run, not once per round).

    python benchmarks/streaming_bound.py                 # L in {50, 200} ms, C in {8, 32, 128, 256}
    python benchmarks/streaming_bound.py --quick         # 200 dialogues, L=50 ms, C in {32, 256}
    python benchmarks/streaming_bound.py --transport aiohttp   # the adapter's aiohttp transport instead of libcurl
    python benchmarks/streaming_bound.py --compare-clients 256 --latency-ms 50   # the transports, aiohttp, httpx
    python benchmarks/streaming_bound.py --threads --latency-ms 50 --concurrency 256  # client CPU by thread
    python benchmarks/streaming_bound.py --shards 2     # two `--shard I/2` processes, C/2 in flight each
    python benchmarks/streaming_bound.py --image-encoder thread   # images encoded on threads of the evaluate process

Prints the figures; it asserts nothing (targets are in the issue tracker, not in tests).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_QUESTIONS = ROOT.parent / "shared" / "upstream_regiondial" / "refcocoplus.json"
MAX_BODY = 64 << 20
MAX_HEADER = 64 << 10
ANSWER = '<think> fixed </think><answer>[{"bbox_2d": [2, 2, 20, 20], "point_2d": [11, 11]}]</answer>'


# ---------------------------------------------------------------------------- the loopback server


def serve(port_file: Path, latency_s: float, expected: int, max_connections: int, lifetime_s: float) -> None:
    """A fixed-latency chat-completions server (HTTP/1.1 keep-alive) on 127.0.0.1, printing events.

    Prints ``first <t>`` at the first chat request and ``done <t0> <t1> <n>`` once ``expected``
    answers were sent (t0: first request received, t1: last answer sent). Exits when its stdin
    closes (the parent is gone) or after ``lifetime_s``.
    """
    reply = json.dumps({"id": "bound", "object": "chat.completion", "model": "bound",
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": ANSWER}}],
                        "usage": {"completion_tokens": 30}}).encode()
    models = json.dumps({"object": "list", "data": [{"id": "bound", "object": "model"}]}).encode()
    state = {"n": 0, "first": None, "connections": 0}
    loop = asyncio.new_event_loop()

    def response(body: bytes, status: str = "200 OK") -> bytes:
        return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"\r\n").encode() + body

    class Protocol(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.buffer = bytearray()
            state["connections"] += 1
            if state["connections"] > max_connections:
                transport.close()

        def connection_lost(self, exc):
            state["connections"] -= 1

        def data_received(self, data):
            self.buffer += data
            while True:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buffer) > MAX_HEADER:
                        self.transport.close()
                    return
                head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
                length = 0
                for line in head[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip()) if value.strip().isdigit() else -1
                if length < 0 or length > MAX_BODY:
                    self.transport.write(response(b"{}", "413 Payload Too Large"))
                    self.transport.close()
                    return
                if len(self.buffer) < end + 4 + length:
                    return
                del self.buffer[: end + 4 + length]
                method, _, rest = head[0].partition(" ")
                path = rest.split(" ", 1)[0]
                if method == "POST" and path.endswith("/chat/completions"):
                    now = time.perf_counter()
                    if state["first"] is None:
                        state["first"] = now
                        print(f"first {time.time():.6f}", flush=True)
                    loop.call_later(latency_s, self.answer)
                elif method == "GET" and path.endswith("/models"):
                    self.transport.write(response(models))
                else:
                    self.transport.write(response(b'{"error": "not found"}', "404 Not Found"))

        def answer(self):
            if self.transport.is_closing():
                return
            self.transport.write(response(reply))
            state["n"] += 1
            if state["n"] == expected:
                print(f"done {state['first']:.6f} {time.perf_counter():.6f} {state['n']}", flush=True)

    async def main() -> None:
        server = await loop.create_server(Protocol, "127.0.0.1", 0, backlog=max_connections)
        port = server.sockets[0].getsockname()[1]
        port_file.write_text(str(port))
        stop = asyncio.Event()
        threading.Thread(target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)), daemon=True).start()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), lifetime_s)
        server.close()
        print(f"served {state['n']}", flush=True)  # answers sent in all (benchmarks/response_cache.py reads it)

    loop.run_until_complete(main())


class Server:
    """The server process, its port, and its event lines read in a thread."""

    def __init__(self, latency_s: float, expected: int, max_connections: int, lifetime_s: float) -> None:
        self.dir = tempfile.TemporaryDirectory()
        port_file = Path(self.dir.name) / "port"
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(port_file), str(latency_s), str(expected),
             str(max_connections), str(lifetime_s)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not port_file.is_file() or not port_file.read_text():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the loopback server did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{port_file.read_text()}/v1"
        self.events: dict[str, list[str]] = {}
        self.on_event = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            kind, *values = line.split()
            self.events[kind] = values
            if self.on_event is not None:
                self.on_event(kind)

    def close(self) -> None:
        try:
            self.process.stdin.close()
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._reader.join(timeout=10)  # its last lines (``served N``) are read
        self.dir.cleanup()


# ---------------------------------------------------------------------------- the bench and its bounds


def bench_shape(questions: Path, limit: int | None) -> tuple[int, int, Counter, list[int]]:
    """Turns N, the longest reference chain, turns per round, and the image ids (first ``limit`` dialogues)."""
    from regiondial_bench.bench.sources.upstream import import_upstream

    bench = import_upstream(questions)
    dialogues = list(bench)[:limit] if limit else list(bench)
    longest, per_round = 0, Counter()
    for dialogue in dialogues:
        depth: dict[int, int] = {}
        for turn in dialogue.turns:
            deps = [r.turn for r in turn.references if r.turn < turn.index]
            depth[turn.index] = 1 + max((depth[d] for d in deps), default=0)
            per_round[turn.index] += 1
        longest = max(longest, max(depth.values(), default=0))
    raw = json.loads(questions.read_text(encoding="utf-8"))
    ids = sorted({int(r["image_id"]) for r in raw[: len(dialogues)]})
    return sum(per_round.values()), longest, per_round, ids


def make_images(folder: Path, ids: list[int], size: tuple[int, int], textured: bool) -> None:
    """One JPEG per image id: flat colours (tiny) or a textured photo-like 640x480 image."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for image_id in ids:
        if textured:
            w, h = size
            y, x = np.mgrid[0:h, 0:w]
            base = np.stack([(x * 255 // w), (y * 255 // h), ((x + y) * 255 // (w + h))], axis=-1)
            noise = rng.integers(0, 48, size=(h // 8, w // 8, 3)).repeat(8, 0).repeat(8, 1)
            pixels = (base + noise + image_id % 64).clip(0, 255).astype(np.uint8)
        else:
            pixels = np.full((size[1], size[0], 3), image_id % 256, dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{image_id}.jpg", quality=90)


def cpu_seconds(pid: int) -> tuple[float, float] | None:
    """(user, system) CPU seconds of a live process and its live descendants (the openai adapter's
    image encoder processes), from /proc (None elsewhere)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float, float]] = {}  # pid -> (parent, user, system)
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            stats[int(entry.name)] = (int(fields[1]), int(fields[11]) / tick, int(fields[12]) / tick)
        except (OSError, IndexError, ValueError):
            continue
    if pid not in stats:
        return None
    children: dict[int, list[int]] = {}
    for child, (parent, _, _) in stats.items():
        children.setdefault(parent, []).append(child)
    user = system = 0.0
    todo = [pid]
    while todo:
        current = todo.pop()
        _, u, s = stats[current]
        user, system = user + u, system + s
        todo.extend(children.get(current, ()))
    return user, system


# ---------------------------------------------------------------------------- raw HTTP clients


def compare_clients(requests: int, concurrency: int, latency_s: float) -> None:
    """Client CPU per request of the HTTP stacks the adapter could use, on one event loop.

    The same 2 KB chat-completions body is posted ``requests`` times with ``concurrency`` in
    flight: the adapter's two transports (libcurl and aiohttp, :mod:`regiondial_bench.adapters.http`),
    plain aiohttp with one session, and httpx.AsyncClient with the connections split over pools
    of 1, 16 or all ``concurrency`` connections.
    """
    body = json.dumps({"model": "bound", "messages": [{"role": "user", "content": "x" * 2000}]}).encode()
    server = Server(latency_s, 10**9, max_connections=4 * concurrency, lifetime_s=300)
    url = server.url + "/chat/completions"

    async def drive(post) -> tuple[float, float]:
        slots = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with slots:
                await post()

        await asyncio.gather(*[one() for _ in range(concurrency)])  # open the connections
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*[one() for _ in range(requests)])
        return time.process_time() - cpu, time.perf_counter() - wall

    async def with_aiohttp() -> tuple[float, float]:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
        async with aiohttp.ClientSession(connector=connector, headers={"Content-Type": "application/json"}) as session:
            async def post() -> None:
                async with session.post(url, data=body) as reply:
                    await reply.read()

            return await drive(post)

    async def with_transport(name: str) -> tuple[float, float]:
        from regiondial_bench.adapters.http import make_transport

        transport = make_transport(name, headers={"Content-Type": "application/json"},
                                   max_connections=concurrency, timeout_s=60)
        await transport.open()
        try:
            async def post() -> None:
                reply = await transport.request("POST", url, body)
                assert reply.status == 200, reply

            return await drive(post)
        finally:
            await transport.close()

    async def with_httpx(per_pool: int) -> tuple[float, float]:
        import httpx

        limits = httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
        clients = [httpx.AsyncClient(limits=limits, timeout=60) for _ in range(-(-concurrency // per_pool))]
        turn = [0]

        async def post() -> None:
            turn[0] += 1
            await clients[turn[0] % len(clients)].post(url, content=body)

        try:
            return await drive(post)
        finally:
            for client in clients:
                await client.aclose()

    print(f"\nraw clients: {requests} POSTs, C={concurrency}, L={1000 * latency_s:g} ms (one event loop)")
    print("| client | CPU/request | wall |")
    print("|---|---|---|")
    candidates = []
    for name in ("curl", "aiohttp"):
        try:
            __import__({"curl": "pycurl"}.get(name, name))
            candidates.append((f"the adapter's {name} transport", lambda name=name: with_transport(name)))
        except ImportError:
            print(f"({name} is not installed: its transport is not measured)")
    candidates.append(("aiohttp, one session", with_aiohttp))
    try:
        import httpx  # noqa: F401

        candidates += [(f"httpx.AsyncClient, pools of {k}", lambda k=k: with_httpx(k))
                       for k in sorted({1, 16, concurrency})]
    except ImportError:
        print("(httpx is not installed: only aiohttp measured)")
    try:
        for name, run in candidates:
            cpu, wall = asyncio.run(run())
            print(f"| {name} | {1000 * cpu / requests:.3f} ms | {wall:.2f} s |", flush=True)
    finally:
        server.close()


# ---------------------------------------------------------------------------- client CPU by thread


def thread_breakdown(args, images: Path, work: Path, latency_s: float, concurrency: int, expected: int) -> None:
    """One run in this process (``api.evaluate``), with each thread's CPU time over the run.

    Threads are told apart by name: the run loop (``MainThread``, which also runs the adapter's
    event loop, i.e. HTTP, request bodies and replies, since the runner drives it), a
    ``regiondial-openai`` thread only where the loop has a thread of its own, and the reader
    threads of the image encoder processes (``regiondial-encode-reader``; the encoding itself runs
    in those processes, so it is not in this table). CPU times come from ``/proc/self/task``,
    sampled every 20 ms.
    """
    from regiondial_bench import api
    from regiondial_bench.run.response_cache import ResponseCacheSettings
    from regiondial_bench.schema import RunConfig

    tick = os.sysconf("SC_CLK_TCK")

    def thread_cpu(native_id: int) -> float | None:
        try:
            fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            return None

    def snapshot() -> dict[str, float]:
        out = {}
        for thread in threading.enumerate():
            if thread.native_id is not None and (cpu := thread_cpu(thread.native_id)) is not None:
                out[thread.name] = cpu
        return out

    server = Server(latency_s, expected, max_connections=max(1024, 2 * concurrency), lifetime_s=args.server_lifetime)
    last: dict[str, float] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            last.update(snapshot())

    try:
        bench = api.load_bench(str(args.questions), images=images)
        config = RunConfig(adapter="openai", limit=args.limit, adapter_options={
            "preset": "regionreasoner-7b", "model": "bound", "base_url": server.url, "max_concurrency": concurrency,
            "timeout_s": 60, "transport": args.transport, "squash_size": args.squash_size,
            "image_encoder": args.image_encoder})
        before = snapshot()
        sampler = threading.Thread(target=sample, name="sampler", daemon=True)
        sampler.start()
        cpu, wall = time.process_time(), time.perf_counter()
        api.evaluate(bench, config, work / f"threads-{concurrency}", progress=False, n_bootstrap=10,
                     response_cache=ResponseCacheSettings(enabled=False))  # every run asks the server
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        stop.set()
        sampler.join()
    finally:
        server.close()
    print(f"\nclient CPU by thread, L={1000 * latency_s:g} ms, C={concurrency}, in-process api.evaluate "
          f"(run and scoring): process CPU {cpu:.2f} s, wall {wall:.2f} s, {expected} requests")
    print("| thread | CPU | per request |")
    print("|---|---|---|")
    for name, seconds in sorted(last.items(), key=lambda kv: -(kv[1] - before.get(kv[0], 0.0))):
        spent = seconds - before.get(name, 0.0)
        if spent >= 0.005 and name != "sampler":
            print(f"| {name} | {spent:.2f} s | {1000 * spent / expected:.3f} ms |")


# ---------------------------------------------------------------------------- one run


def run_once(args, images: Path, work: Path, latency_s: float, concurrency: int, expected: int,
             options: dict, name: str) -> dict:
    """One makespan: ``args.shards`` evaluate processes (``--shard I/N``, ``concurrency / N`` in flight each)."""
    shards = args.shards
    server = Server(latency_s, expected, max_connections=max(1024, 2 * concurrency), lifetime_s=args.server_lifetime)
    processes: list[subprocess.Popen] = []
    try:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        outs = []
        for shard in range(shards):
            config = work / f"{name}-{shard}.yaml"
            in_flight = concurrency // shards + (1 if shard < concurrency % shards else 0)
            adapter_options = {"preset": "regionreasoner-7b", "model": "bound", "base_url": server.url,
                               "max_concurrency": in_flight, "timeout_s": 60, "transport": args.transport,
                               "image_encoder": args.image_encoder, **options}
            config.write_text(json.dumps({"adapter": "openai", "adapter_options": adapter_options}))
            out = work / name / f"shard-{shard}"
            command = [sys.executable, "-c", "from regiondial_bench.cli import main; main()",  # = `regiondial`
                       "evaluate", "--config", str(config),
                       "--bench", str(args.questions), "--images", str(images), "--out", str(out),
                       "--no-progress", "--bootstrap", "10", "--no-cache"]  # every run asks the server
            if shards > 1:
                command += ["--shard", f"{shard}/{shards}"]
            if args.limit:
                command += ["--limit", str(args.limit)]
            outs.append(out)
            processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                              text=True))
        started = time.perf_counter()
        cpu: dict[str, list[tuple[float, float] | None]] = {}
        server_cpu: dict[str, tuple[float, float] | None] = {}

        def on_event(kind: str) -> None:
            cpu.setdefault(kind, [cpu_seconds(process.pid) for process in processes])
            server_cpu.setdefault(kind, cpu_seconds(server.process.pid))

        server.on_event = on_event
        for process in processes:
            _, stderr = process.communicate(timeout=args.run_timeout)
            if process.returncode != 0:
                raise RuntimeError(f"evaluate failed ({process.returncode}):\n{stderr[-2000:]}")
        wall = time.perf_counter() - started
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        server.close()
    if "done" not in server.events:
        raise RuntimeError(f"the server saw fewer than {expected} answers: {server.events}")
    first, last, _ = server.events["done"]
    stats: dict = {}
    for out in outs:
        for key, value in json.loads((out / "results.json").read_text())["provenance"]["adapter_config"]["stats"].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                stats[key] = stats.get(key, 0) + value

    def spent(first_sample, done_sample) -> tuple[float, float] | None:
        if first_sample is None or done_sample is None:
            return None
        return tuple(b - a for a, b in zip(first_sample, done_sample, strict=True))

    client = [spent(a, b) for a, b in zip(cpu.get("first", [None] * shards), cpu.get("done", [None] * shards),
                                          strict=True)]
    client_cpu = None if None in client else tuple(map(sum, zip(*client, strict=True)))
    return {"makespan": float(last) - float(first), "wall": wall, "stats": stats, "client_cpu": client_cpu,
            "server_cpu": spent(server_cpu.get("first"), server_cpu.get("done"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[50, 200])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32, 128, 256])
    parser.add_argument("--limit", type=int, help="only the first N dialogues")
    parser.add_argument("--squash-size", type=int, default=28, help="squash side of the bound runs")
    parser.add_argument("--compare-clients", type=int, metavar="C",
                        help="only measure raw HTTP clients (aiohttp, httpx pools) at concurrency C")
    parser.add_argument("--no-default-images", action="store_true", help="skip the run with the preset's image settings")
    parser.add_argument("--default-image-format", choices=["png", "jpeg"], default="png",
                        help="image_format of the run with the preset's image settings (png: the preset default)")
    parser.add_argument("--shards", type=int, default=1,
                        help="evaluate processes per run (--shard I/N), splitting C between them (default 1)")
    parser.add_argument("--threads", action="store_true",
                        help="only one in-process run at the first L and last C, with the client's CPU by thread")
    parser.add_argument("--transport", choices=["auto", "curl", "aiohttp"], default="auto",
                        help="the openai adapter's HTTP transport (auto: curl when pycurl is installed)")
    parser.add_argument("--image-encoder", choices=["process", "thread"], default="process",
                        help="the openai adapter's image_encoder (process: the default)")
    parser.add_argument("--quick", action="store_true", help="200 dialogues, L=50 ms, C in {32, 256}")
    parser.add_argument("--run-timeout", type=float, default=600)
    parser.add_argument("--server-lifetime", type=float, default=900)
    args = parser.parse_args()
    if args.quick:
        args.limit, args.latency_ms, args.concurrency = args.limit or 200, [50], [32, 256]
    if args.compare_clients:
        compare_clients(2000, args.compare_clients, args.latency_ms[0] / 1000)
        return
    if not args.questions.is_file():
        parser.error(f"{args.questions} not found (the official RefCOCO+ question file)")

    n, longest, per_round, ids = bench_shape(args.questions, args.limit)
    from regiondial_bench.adapters.http import resolve_transport

    print(f"bench {args.questions.name}: {n} turns, {len(ids)} images, longest reference chain {longest}, "
          f"turns per round {dict(sorted(per_round.items()))}; machine: {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}; transport {resolve_transport(args.transport)}; "
          f"{args.shards} evaluate process(es) per run")
    extra: dict = {}
    with tempfile.TemporaryDirectory(prefix="regiondial-bound-") as tmp:
        work = Path(tmp)
        make_images(work / "tiny", ids, (32, 32), textured=False)
        if args.threads:
            thread_breakdown(args, work / "tiny", work, args.latency_ms[0] / 1000, args.concurrency[-1], n)
            return
        header = ("| L | C | makespan | bound | round-sync | bound/makespan | round-sync/makespan "
                  "| client CPU/request (of it system) | server CPU/request | evaluate wall |")
        print(header)
        print("|" + "---|" * 10)
        for latency_ms in args.latency_ms:
            latency = latency_ms / 1000
            for c in args.concurrency:
                bound = max(math.ceil(n / c), longest) * latency
                round_sync = sum(math.ceil(k / c) for k in per_round.values()) * latency
                r = run_once(args, work / "tiny", work, latency, c, n, {"squash_size": args.squash_size, **extra},
                             f"run-{latency_ms:g}-{c}")
                cpu = "n/a"
                if r["client_cpu"] is not None:
                    user, system = r["client_cpu"]
                    cpu = f"{1000 * (user + system) / n:.2f} ms ({1000 * system / n:.2f} sys)"
                served = "n/a" if r["server_cpu"] is None else f"{1000 * sum(r['server_cpu']) / n:.2f} ms"
                print(f"| {latency_ms:g} ms | {c} | {r['makespan']:.2f} s | {bound:.2f} s | {round_sync:.2f} s "
                      f"| **{bound / r['makespan']:.2f}** | {round_sync / r['makespan']:.2f} | {cpu} | {served} "
                      f"| {r['wall']:.1f} s |", flush=True)
        if not args.no_default_images:
            make_images(work / "photo", ids, (640, 480), textured=True)
            latency_ms, c = args.latency_ms[0], args.concurrency[-1]
            options = {**extra, "image_format": args.default_image_format}
            r = run_once(args, work / "photo", work, latency_ms / 1000, c, n, options, "run-default-images")
            s = r["stats"]
            per_image = 1000 * s["image_encode_s"] / max(s["images_encoded"], 1)
            print(f"\npreset image settings (840x840 squash, {args.default_image_format.upper()}; textured 640x480 "
                  f"JPEG inputs), L={latency_ms:g} ms, "
                  f"C={c}: {s['images_encoded']} images encoded for {s['requests']} requests "
                  f"({len(ids)} distinct images, {s['image_cache_hits']} cache hits), {per_image:.1f} ms encoding "
                  f"per image (one-time, on the {args.image_encoder} encoders), makespan {r['makespan']:.2f} s, "
                  f"bound {max(math.ceil(n / c), longest) * latency_ms / 1000:.2f} s")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        serve(Path(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]))
    else:
        main()
