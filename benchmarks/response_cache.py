"""What the response cache saves and what it costs, against a loopback server.

Runs ``api.evaluate`` with the ``openai`` adapter on the official RefCOCO+ question file (2,289
turns; one small generated image per image id) against ``benchmarks/streaming_bound.py``'s server (a
separate process answering after a fixed latency L, default 50 ms, C requests in flight), and prints
for each run the requests the server answered, the wall time and the client CPU (this process and
its image-encoder processes):

1. ``predicted``, ``--no-cache``: the baseline;
2. ``predicted``, cold cache: every request asked and stored (its CPU above 1. is the cache's cost
   on a miss);
3. ``predicted`` again into a new folder, warm cache: what a re-run asks (0 requests);
4. ``gold`` after it: only the turns whose rendered question differs are asked;

then the cache file's size per answer, and the store alone at the size of big runs (``--store-sizes``,
default 2,289 and 45,780 entries: the RefCOCO+ file once and 20 times): lookups and inserts per
second in batches of 64, as the runner does them.

    python benchmarks/response_cache.py                     # RefCOCO+, L=50 ms, C=64
    python benchmarks/response_cache.py --latency-ms 200 --concurrency 32
    python benchmarks/response_cache.py --quick             # the first 40 dialogues, one small store size (a test runs it)

Prints the figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
DEFAULT_QUESTIONS = ROOT.parent / "shared" / "upstream_regiondial" / "refcocoplus.json"


def cpu_now() -> float:
    """CPU seconds of this process and of its children that have exited (the image encoders)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def one_run(args, bench, images: Path, out: Path, mode: str, cache) -> dict:  # noqa: ANN001
    """One evaluate against a fresh server: requests it answered, wall, client CPU, the cache record."""
    from streaming_bound import Server

    from regiondial_bench import api
    from regiondial_bench.schema import RunConfig

    server = Server(args.latency_ms / 1000, expected=10**9, max_connections=1024, lifetime_s=3600)
    try:
        config = RunConfig(adapter="openai", reference_mode=mode, limit=args.limit, adapter_options={
            "preset": "regionreasoner-7b", "model": "bound", "base_url": server.url,
            "max_concurrency": args.concurrency, "timeout_s": 60, "squash_size": args.squash_size})
        cpu, wall = cpu_now(), time.perf_counter()
        results = api.evaluate(bench, config, out, progress=False, n_bootstrap=10, response_cache=cache)
        cpu, wall = cpu_now() - cpu, time.perf_counter() - wall
    finally:
        server.close()
    served = int(server.events.get("served", ["-1"])[0])
    return {"turns": results.overall.n, "served": served, "wall_s": wall, "cpu_s": cpu,
            "cache": results.provenance.response_cache}


def store_speed(size: int, folder: Path) -> dict:
    """Inserts and lookups per second of the store holding ``size`` answers (batches of 64)."""
    from regiondial_bench.adapters.base import RoundResponse
    from regiondial_bench.run.response_cache import ResponseStore, encode_response, files_size

    store = ResponseStore(folder)
    value = encode_response(RoundResponse(
        raw_text='<think> a scene, a focus and some reasoning about it </think>'
                 '<answer>[{"bbox_2d": [12, 40, 300, 512], "point_2d": [150, 260]}]</answer>'))
    keys = [f"{i:064x}" for i in range(size)]
    start = time.perf_counter()
    for lo in range(0, size, 64):
        store.put([(k, "bench", value) for k in keys[lo:lo + 64]])
    put_s = time.perf_counter() - start
    start = time.perf_counter()
    found = 0
    for lo in range(0, size, 64):
        found += len(store.get(keys[lo:lo + 64]))
    get_s = time.perf_counter() - start
    start = time.perf_counter()
    for key in keys[: min(size, 5000)]:  # the streaming path looks up one request at a time
        store.get([key])
    one_s = (time.perf_counter() - start) / min(size, 5000)
    store.close()
    assert found == size
    return {"size": size, "put_per_s": size / put_s, "get_per_s": size / get_s, "one_get_us": 1e6 * one_s,
            "bytes_per_answer": files_size(folder) / size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--squash-size", type=int, default=28, help="image side sent (small: image work negligible)")
    parser.add_argument("--limit", type=int, help="the first N dialogues only")
    parser.add_argument("--store-sizes", type=int, nargs="+", default=[2289, 45780])
    parser.add_argument("--quick", action="store_true", help="40 dialogues, a store of 500 answers")
    args = parser.parse_args()
    if args.quick:
        args.limit, args.store_sizes = 40, [500]
    from streaming_bound import bench_shape, make_images

    from regiondial_bench import api
    from regiondial_bench.run.response_cache import DATABASE_FILE, ResponseCacheSettings

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _, _, _, ids = bench_shape(args.questions, args.limit)
        make_images(work / "images", ids, (64, 48), textured=False)
        bench = api.load_bench(str(args.questions), images=work / "images")
        cache = ResponseCacheSettings(folder=work / "cache")
        runs = [
            ("predicted, --no-cache", "predicted", ResponseCacheSettings(enabled=False)),
            ("predicted, cold cache", "predicted", cache),
            ("predicted again, new folder", "predicted", cache),
            ("gold after predicted", "gold", cache),
        ]
        print(f"{args.questions.name}{f' (first {args.limit} dialogues)' if args.limit else ''}, openai adapter, "
              f"L={args.latency_ms:g} ms, C={args.concurrency}, {os.cpu_count()} CPUs\n")
        print("| run | turns | requests served | reused | wall | client CPU | CPU/turn |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for i, (name, mode, settings) in enumerate(runs):
            run = one_run(args, bench, work / "images", work / f"run-{i}", mode, settings)
            reused = run["cache"].get("hits", "-")
            print(f"| {name} | {run['turns']} | {run['served']} | {reused} | {run['wall_s']:.2f} s | "
                  f"{run['cpu_s']:.2f} s | {1000 * run['cpu_s'] / run['turns']:.3f} ms |")
        size = (work / "cache" / DATABASE_FILE).stat().st_size
        print(f"\ncache file after these runs: {size / 1e6:.2f} MB")
        print("\n| answers stored | inserts/s (batches of 64) | lookups/s (batches of 64) | one lookup | bytes/answer |")
        print("|---:|---:|---:|---:|---:|")
        for n in args.store_sizes:
            speed = store_speed(n, work / f"store-{n}")
            print(f"| {speed['size']} | {speed['put_per_s']:,.0f} | {speed['get_per_s']:,.0f} | "
                  f"{speed['one_get_us']:.0f} µs | {speed['bytes_per_answer']:.0f} |")


if __name__ == "__main__":
    main()
