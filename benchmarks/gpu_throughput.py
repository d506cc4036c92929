"""Rounds per second: the upstream loop (one turn at a time, batch 1) vs our runner at larger batches, plus SAM2 masks/s.

The model is built from a config with random weights: ``--shape 7b`` is Qwen2.5-VL-7B's
architecture (28 layers, hidden 3584, 32-block vision tower), ``--shape 7b-mini`` the same
vocabulary and topology narrow and shallow (CPU), ``--shape tiny`` the test model.
Every round generates exactly ``--new-tokens`` tokens (min = max), so the work per round is fixed
and rounds/s compare across batch sizes. Both paths answer rounds of the bundled sample bench with
the ``hf`` adapter and the same preset; the runner path goes through ``regiondial_bench.api.evaluate``
(dependency-aware batching, reference propagation, prediction log).

CPU check (tiny models, a minute)::

    python benchmarks/gpu_throughput.py --shape tiny --sam2-shape tiny --device cpu \
        --baseline-rounds 4 --batch-sizes 8 --new-tokens 8 --image-size 224 --dialogues 6

Multi-process mode (``--processes N``): after the single-process rows, the runner path runs again
as N launched ranks (RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR set as torchrun does; rank r on
``cuda:r`` modulo the visible GPUs, so several ranks share one GPU when fewer are visible), each
building the model itself, evaluating its shard (first ``--batch-sizes`` value) and rank 0 merging
after a gloo barrier. The figure is the slowest rank's evaluation time (model build excluded, as for
the single-process rows) and whether the merged metrics equal the single process's::

    python benchmarks/gpu_throughput.py --shape 7b --sam2-shape none --device cuda --repeat 4 \
        --baseline-rounds 4 --batch-sizes 32 --new-tokens 64 --image-size 448 --processes 2

GPU run (H100, as recorded in benchmarks/RESULTS.md)::

    python benchmarks/gpu_throughput.py --shape 7b --sam2-shape large --device cuda \
        --repeat 4 --baseline-rounds 8 --batch-sizes 8 32 64 --new-tokens 64 --image-size 448 \
        --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def build_vlm(shape: str, device: str, work: Path):
    """A random Qwen2.5-VL of the given shape on ``device`` plus the tiny tokenizer/processor.

    ``tiny`` is the test checkpoint; ``7b`` and ``7b-mini`` are
    :data:`regiondial_bench.testing.QWEN2_5_VL_SHAPES` (built directly on the device, seed 0, so
    every process of the multi-process mode holds the same weights).
    """
    from transformers import AutoModelForImageTextToText

    from regiondial_bench.adapters.processors import load_vlm_processor
    from regiondial_bench.testing import build_tiny_qwen2_5_vl, random_qwen2_5_vl

    tiny = build_tiny_qwen2_5_vl(work / "tiny-qwen")
    processor = load_vlm_processor(tiny)
    if shape == "tiny":
        return AutoModelForImageTextToText.from_pretrained(tiny).to(device).eval(), processor
    return random_qwen2_5_vl(shape, tiny, device=device), processor


def build_sam2(shape: str, work: Path) -> Path:
    from regiondial_bench.testing import build_random_sam2

    return build_random_sam2(work / f"sam2-{shape}", shape=shape)


PREBUILT: dict = {}


def repeated(bench, copies: int):
    """The bench with its dialogues copied ``copies`` times (new ids, same images)."""
    from regiondial_bench.schema import Bench

    if copies <= 1:
        return bench
    dialogues = [d.model_copy(update={"dialogue_id": f"{d.dialogue_id}~{k}"})
                 for k in range(copies) for d in bench.dialogues]
    return Bench(dialogues, name=f"{bench.name}x{copies}", version=bench.version, root=bench.root,
                 source=bench.source, issues=bench.issues)


def register_prebuilt_adapter() -> None:
    """``bench-hf``: the ``hf`` adapter around the model built above (the runner builds adapters by name)."""
    from regiondial_bench.adapters import register_adapter
    from regiondial_bench.adapters.hf import HFAdapter

    @register_adapter("bench-hf")
    class PrebuiltHF(HFAdapter):
        def __init__(self, **options):
            prebuilt = HFAdapter.from_components(PREBUILT["model"], PREBUILT["processor"], **options)
            self.__dict__.update(prebuilt.__dict__)


def bench_rounds(bench):
    """Every round of the bench as a request (the question as written; the batch-1 loop needs no references)."""
    from regiondial_bench.adapters.base import ImageInput, RoundRequest

    requests = []
    for dialogue in bench:
        image = ImageInput(path=bench.image_path(dialogue), width=dialogue.image.width, height=dialogue.image.height)
        for turn in dialogue.turns:
            requests.append(RoundRequest(dialogue_id=dialogue.dialogue_id, turn=turn.index, image=image,
                                         question=turn.question, question_template=turn.question))
    return requests


def fixed_length_options(image_size: int, new_tokens: int) -> dict:
    """``hf`` adapter options: the RegionReasoner preset squashed to ``image_size``, exactly ``new_tokens`` per round."""
    return {"preset": "regionreasoner-7b", "squash_size": image_size, "max_new_tokens": new_tokens,
            "min_new_tokens": new_tokens}


def synchronize(device: str) -> None:
    """Wait for queued GPU work, so a wall-clock reading covers it."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def measure_loop(adapter, requests: list, device: str, new_tokens: int) -> dict:
    """The upstream evaluation loop: one ``generate`` call per round, batch 1, in order."""
    from tqdm import tqdm

    synchronize(device)
    start = time.perf_counter()
    for request in tqdm(requests, desc="batch-1 loop", file=sys.stderr):
        adapter.generate([request])
    synchronize(device)
    elapsed = time.perf_counter() - start
    return {"rounds": len(requests), "seconds": round(elapsed, 3), "rounds_per_s": round(len(requests) / elapsed, 4),
            "tokens_per_s": round(len(requests) * new_tokens / elapsed, 2)}


def measure_runner(bench, options: dict, batch_size: int, out: Path, device: str, new_tokens: int, *,
                   dialogues: int | None = None, baseline: dict | None = None) -> dict:
    """``regiondial evaluate`` with the prebuilt model (``bench-hf``) at one batch size, scoring included."""
    from regiondial_bench.api import evaluate
    from regiondial_bench.run.response_cache import ResponseCacheSettings
    from regiondial_bench.schema import RunConfig

    config = RunConfig(adapter="bench-hf", adapter_options=options, batch_size=batch_size, limit=dialogues)
    synchronize(device)
    start = time.perf_counter()
    results = evaluate(bench, config, out, progress=True, n_bootstrap=10, overwrite=True,
                       response_cache=ResponseCacheSettings(enabled=False))  # every batch size asks the model
    synchronize(device)
    elapsed = time.perf_counter() - start
    turns = int(results.provenance.timings["turns"])
    row = {"batch_size": batch_size, "rounds": turns, "seconds": round(elapsed, 3),
           "rounds_per_s": round(turns / elapsed, 4), "tokens_per_s": round(turns * new_tokens / elapsed, 2)}
    if baseline:
        row["speedup_vs_batch1"] = round((turns / elapsed) / baseline["rounds_per_s"], 2)
    return row


def measure_sam2(checkpoint: Path, bench, device: str, items: int, batch_size: int, *, shape: str) -> dict:
    """Masks per second of the ``sam2`` producer: one box + one point per image, ``batch_size`` images per pass."""
    from regiondial_bench.run.segment import create_mask_producer
    from regiondial_bench.schema import Region

    producer = create_mask_producer("sam2", model=str(checkpoint), device=device, batch_size=batch_size)
    work = []
    for request in bench_rounds(bench)[:items]:
        w, h = request.image.size
        work.append((request.image, [Region(box=(w * 0.2, h * 0.2, w * 0.6, h * 0.7), point=(w * 0.4, h * 0.4))]))
    producer.masks(work[:2])  # warm-up
    synchronize(device)
    start = time.perf_counter()
    masks = producer.masks(work)
    synchronize(device)
    elapsed = time.perf_counter() - start
    if any(m is None for m in masks):
        raise RuntimeError("the sam2 producer left a prompted image without a mask")
    return {"shape": shape, "masks": len(work), "batch_size": batch_size, "seconds": round(elapsed, 3),
            "masks_per_s": round(len(work) / elapsed, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=["tiny", "7b-mini", "7b"], default="tiny")
    parser.add_argument("--sam2-shape", choices=["tiny", "large", "none"], default="tiny")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dialogues", type=int, default=None, help="answer only the first N dialogues")
    parser.add_argument("--repeat", type=int, default=1,
                        help="copies of the sample's dialogues (4 gives 160 dialogues, >= 64 rounds ready at once)")
    parser.add_argument("--baseline-rounds", type=int, default=8, help="rounds answered one at a time")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=448, help="square input side (squash preset)")
    parser.add_argument("--sam2-items", type=int, default=64)
    parser.add_argument("--sam2-batch", type=int, default=16)
    parser.add_argument("--results", type=Path, default=None, help="write a Markdown table here")
    parser.add_argument("--json", type=Path, default=None, help="write the raw figures here")
    parser.add_argument("--processes", type=int, default=1,
                        help="also run the runner path as this many launched shard processes")
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)  # one launched rank
    args = parser.parse_args(argv)
    if args.worker is not None:
        return worker(args)

    import torch

    from regiondial_bench.adapters.hf import HFAdapter, resolve_device
    from regiondial_bench.api import load_bench

    device = resolve_device(args.device)
    register_prebuilt_adapter()
    bench = repeated(load_bench("sample"), args.repeat)
    figures: dict = {"device": device_name(device), "shape": args.shape, "new_tokens": args.new_tokens,
                     "image_size": args.image_size, "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model, processor = build_vlm(args.shape, device, work)
        options = fixed_length_options(args.image_size, args.new_tokens)
        adapter = HFAdapter.from_components(model, processor, **options)
        adapter.generate(bench_rounds(bench)[:1])  # warm-up (CUDA kernels, allocator)
        figures["baseline"] = measure_loop(adapter, bench_rounds(bench)[: args.baseline_rounds], device,
                                           args.new_tokens)
        PREBUILT.update(model=model, processor=processor)
        figures["runner"] = [
            measure_runner(bench, options, batch_size, work / f"run-{batch_size}", device, args.new_tokens,
                           dialogues=args.dialogues, baseline=figures["baseline"])
            for batch_size in args.batch_sizes
        ]
        del model, adapter
        PREBUILT.clear()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        if args.processes > 1:
            figures["multi_process"] = multi_process(args, argv, work, figures["runner"][0])
        if args.sam2_shape != "none":
            figures["sam2"] = measure_sam2(build_sam2(args.sam2_shape, work), bench, device, args.sam2_items,
                                           args.sam2_batch, shape=args.sam2_shape)


    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    if args.results:
        args.results.write_text(markdown(figures, " ".join(sys.argv)))
    return 0


def worker(args) -> int:
    """One launched rank of the multi-process mode: build the model, evaluate the shard, merge."""
    from regiondial_bench.adapters.hf import resolve_device
    from regiondial_bench.api import evaluate_sweep, load_bench, plan_sweep
    from regiondial_bench.run.response_cache import ResponseCacheSettings
    from regiondial_bench.run.shards import detect_launch
    from regiondial_bench.schema import RunConfig

    launch = detect_launch()
    device = launch.device() or resolve_device(args.device)
    out = args.worker
    model, processor = build_vlm(args.shape, device, out / f"build-{launch.index}")
    PREBUILT.update(model=model, processor=processor)
    register_prebuilt_adapter()
    options = fixed_length_options(args.image_size, args.new_tokens)
    config = RunConfig(adapter="bench-hf", adapter_options=options, batch_size=args.batch_sizes[0],
                       limit=args.dialogues)
    runs = plan_sweep([(repeated(load_bench("sample"), args.repeat), "sample")], ["predicted"], out / "run")
    import torch

    from regiondial_bench.run.shards import open_process_group

    group = open_process_group(launch)  # evaluate_sweep reuses it
    group.barrier()  # every rank has built its model: the clocks start together
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    evaluate_sweep(runs, config, launch=launch, overwrite=True, progress=False, n_bootstrap=10,
                   response_cache=ResponseCacheSettings(enabled=False))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    group.close()
    (out / f"worker-{launch.index}.json").write_text(json.dumps(
        {"rank": launch.index, "device": device, "seconds": round(time.perf_counter() - start, 3)}))
    return 0


def multi_process(args, argv: list[str] | None, work: Path, single: dict) -> dict:
    """Run ``--processes`` ranks of :func:`worker` and compare with the single-process runner row."""
    import os
    import socket
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = work / "multi"
    out.mkdir()
    cmd = [sys.executable, str(Path(__file__).resolve()), *(sys.argv[1:] if argv is None else argv),
           "--worker", str(out)]
    procs = []
    start = time.perf_counter()
    for rank in range(args.processes):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(args.processes), "LOCAL_RANK": str(rank),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen(cmd, env=env))
    codes = [p.wait() for p in procs]
    wall = time.perf_counter() - start
    if any(codes):
        raise SystemExit(f"multi-process workers failed: exit codes {codes}")
    workers = [json.loads((out / f"worker-{r}.json").read_text()) for r in range(args.processes)]
    slowest = max(w["seconds"] for w in workers)
    merged = json.loads((out / "run" / "results.json").read_text())
    one = json.loads((work / f"run-{single['batch_size']}" / "results.json").read_text())
    equal = all(merged[k] == one[k] for k in ("rounds", "buckets", "overall"))
    rounds = single["rounds"]
    return {"processes": args.processes, "batch_size": single["batch_size"], "rounds": rounds,
            "workers": workers, "slowest_seconds": slowest, "wall_with_model_build_s": round(wall, 3),
            "rounds_per_s": round(rounds / slowest, 4),
            "speedup_vs_one_process": round(single["seconds"] / slowest, 2), "metrics_equal_one_process": equal}


def markdown(f: dict, command: str) -> str:
    """The RESULTS.md table for one run."""
    lines = [
        "# Throughput",
        "",
        f"Device: **{f['device']}**, torch {f['torch']}. Model: random-weight Qwen2.5-VL of shape `{f['shape']}`,",
        f"{f['image_size']}x{f['image_size']} input, exactly {f['new_tokens']} new tokens per round, greedy, HF generate.",
        "",
        f"Command: `{command}`",
        "",
        "| path | batch | rounds | seconds | rounds/s | tokens/s | speed-up |",
        "|---|---|---|---|---|---|---|",
        f"| upstream loop (one turn at a time) | 1 | {f['baseline']['rounds']} | {f['baseline']['seconds']} | "
        f"{f['baseline']['rounds_per_s']} | {f['baseline']['tokens_per_s']} | 1.0x |",
    ]
    for row in f["runner"]:
        lines.append(f"| runner (`regiondial evaluate`) | {row['batch_size']} | {row['rounds']} | {row['seconds']} | "
                     f"{row['rounds_per_s']} | {row['tokens_per_s']} | {row['speedup_vs_batch1']}x |")
    if "sam2" in f:
        s = f["sam2"]
        lines += ["", f"SAM2 (`{s['shape']}` shape, random weights): {s['masks']} masks in {s['seconds']} s = "
                  f"**{s['masks_per_s']} masks/s** (image batch {s['batch_size']}, one box + one point each)."]
    if "multi_process" in f:
        m = f["multi_process"]
        lines += ["", f"Multi-process ({m['processes']} launched ranks, batch {m['batch_size']}, devices "
                  f"{', '.join(w['device'] for w in m['workers'])}): {m['rounds']} rounds, slowest rank "
                  f"{m['slowest_seconds']} s = **{m['rounds_per_s']} rounds/s**, {m['speedup_vs_one_process']}x "
                  f"the one-process runner at that batch; merged metrics equal to one process: "
                  f"{m['metrics_equal_one_process']}."]
    lines += ["", "The runner's rounds/s include the harness: scheduling, reference propagation, the "
              "prediction log and scoring. Its batches are smaller than the batch size when fewer rounds are "
              "ready (later rounds wait for the rounds they reference).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
