"""Every GPU figure in one run: the generation sweep, constrained decoding, SAM2 masks/s, one GRPO step.

Random weights at the released checkpoints' shapes (no download is possible on the GPU machines):

* ``generation``: Qwen2.5-VL-7B (``hf`` adapter, 840x840 squashed images, exactly ``new_tokens``
  per round): the upstream loop (one ``generate`` per round, batch 1) and the runner
  (``regiondial evaluate``: dependency-aware batching, reference propagation, scoring) at batch
  1, 16 and 64, in the same process on the same model; then free vs constrained decoding
  (xgrammar, the preset's answer grammar) at one batch size.
* ``sam2``: SAM2 Hiera-L (the upstream checkpoint's architecture, 1024 px): masks per second of
  the ``sam2`` producer, images encoded in batches, one box + one point each.
* ``grpo``: ``benchmarks/grpo_step_gpu.py``'s direct engine: Qwen2.5-VL-7B with LoRA, 2 prompts
  x 8 completions x 256 tokens, phase by phase (generation, old/reference log-probs, update,
  weight sync), sequences/s and tokens/s.

Each part runs in its own process with its own time limit, so a part that fails or overruns
leaves the others' figures; the JSON is rewritten after every part. ``--tiny`` runs the same
parts at tiny shapes on CPU (the test suite does, so this script cannot rot).

    bash benchmarks/gpu_suite.sh                      # on the GPU machine (installs .whl/, see the .sh)
    python benchmarks/gpu_suite.py --tiny --json /tmp/suite.json        # CPU check
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PARTS = ("generation", "sam2", "grpo")


@dataclass(frozen=True)
class RunnerRow:
    """One runner measurement: batch size and how many dialogues (2 turns each) it answers."""

    batch_size: int
    dialogues: int


@dataclass(frozen=True)
class SuiteSettings:
    """The sizes of every part (``GPU`` and ``TINY`` below).

    Attributes:
        shape: Qwen2.5-VL shape for ``generation`` (``7b``, ``7b-mini``).
        image_size: Square input side of the generation rounds (squash preset).
        new_tokens: Tokens per round in the sweep (min = max, so rounds cost the same).
        turns: Turns kept per dialogue (the first ones), so a run's length is bounded; in most
            sample dialogues the second turn references the first, so the runner still propagates
            references and schedules in dependency order.
        repeat: Copies of the sample bench's 40 dialogues (enough for ``max(dialogues)``).
        loop_rounds: Rounds answered by the upstream batch-1 loop.
        runner: Runner rows.
        constrained_batch: Batch size of the free vs constrained comparison.
        constrained_rounds: First-round requests answered in each mode.
        constrained_tokens: ``max_new_tokens`` in each mode (free decoding of random weights runs
            to it; constrained stops where the grammar ends).
        constrained_objects: The grammar's ``max_objects`` (its answer must fit ``constrained_tokens``).
        sam2_shape: ``large`` or ``tiny``.
        sam2_items: Images (one prompted object each) per measurement.
        sam2_batch: Images per encoder pass.
        grpo_args: Arguments of ``benchmarks/grpo_step_gpu.py`` (direct engine).
        timeouts: Seconds allowed per part (model build included).
    """

    shape: str
    image_size: int
    new_tokens: int
    turns: int
    repeat: int
    loop_rounds: int
    runner: tuple[RunnerRow, ...]
    constrained_batch: int
    constrained_rounds: int
    constrained_tokens: int
    constrained_objects: int
    sam2_shape: str
    sam2_items: int
    sam2_batch: int
    grpo_args: tuple[str, ...]
    timeouts: dict[str, float] = field(default_factory=dict)


GPU = SuiteSettings(
    shape="7b", image_size=840, new_tokens=64, turns=2, repeat=2, loop_rounds=8,
    runner=(RunnerRow(1, 4), RunnerRow(16, 64), RunnerRow(64, 64)),
    constrained_batch=16, constrained_rounds=16, constrained_tokens=256, constrained_objects=2,
    sam2_shape="large", sam2_items=64, sam2_batch=16,
    grpo_args=("--shape", "7b", "--prompts", "2", "--generations", "8", "--completion-length", "256",
               "--steps", "2"),
    timeouts={"generation": 240, "sam2": 75, "grpo": 145},
)
"""One H100/H200, under 8 minutes in all (each part's limit is its worst case, not its expected time)."""

TINY = SuiteSettings(
    shape="tiny", image_size=112, new_tokens=2, turns=2, repeat=1, loop_rounds=2,
    runner=(RunnerRow(1, 1), RunnerRow(4, 4)),
    constrained_batch=2, constrained_rounds=2, constrained_tokens=130, constrained_objects=1,
    sam2_shape="tiny", sam2_items=4, sam2_batch=2,
    grpo_args=("--shape", "7b-mini", "--text-layers", "1", "--vision-layers", "1", "--prompts", "1",
               "--generations", "2", "--completion-length", "2", "--image-size", "112", "--steps", "1", "--cpu",
               "--checkpointing", "on"),  # the GPU run's setting, so its code path is the one checked
    timeouts={"generation": 300, "sam2": 120, "grpo": 300},
)
"""The CPU check: the same code paths at sizes a loaded 2-core machine runs in seconds."""


# ------------------------------------------------------------------------------------------ parts


def _throughput():
    sys.path.insert(0, str(HERE))
    import gpu_throughput

    return gpu_throughput


def first_turns(bench, turns: int):
    """The bench with every dialogue cut to its first ``turns`` turns (references to kept turns stay)."""
    from regiondial_bench.schema import Bench

    dialogues = [d.model_copy(update={"turns": d.turns[:turns]}) for d in bench.dialogues]
    return Bench(dialogues, name=f"{bench.name}-first{turns}", version=bench.version, root=bench.root,
                 source=bench.source, issues=bench.issues)


def part_generation(settings: SuiteSettings, device: str, work: Path) -> dict[str, Any]:
    """The batch-1 loop and the runner rows on one model, then free vs constrained decoding."""
    from regiondial_bench.adapters.hf import HFAdapter
    from regiondial_bench.api import load_bench

    tp = _throughput()
    tp.register_prebuilt_adapter()
    bench = first_turns(tp.repeated(load_bench("sample"), settings.repeat), settings.turns)
    start = time.perf_counter()
    model, processor = tp.build_vlm(settings.shape, device, work)
    figures: dict[str, Any] = {"shape": settings.shape, "image_size": settings.image_size,
                               "new_tokens": settings.new_tokens, "build_s": round(time.perf_counter() - start, 2),
                               "parameters": sum(p.numel() for p in model.parameters())}
    options = tp.fixed_length_options(settings.image_size, settings.new_tokens)
    adapter = HFAdapter.from_components(model, processor, **options)
    rounds = tp.bench_rounds(bench)
    adapter.generate(rounds[:1])  # warm-up (CUDA kernels, allocator)
    figures["prompt_tokens"] = _prompt_tokens(adapter, rounds[0])
    figures["loop"] = tp.measure_loop(adapter, rounds[: settings.loop_rounds], device, settings.new_tokens)
    save_partial(figures)
    tp.PREBUILT.update(model=model, processor=processor)
    figures["runner"] = []
    for row in settings.runner:
        try:
            figures["runner"].append(tp.measure_runner(
                bench, options, row.batch_size, work / f"run-{row.batch_size}", device, settings.new_tokens,
                dialogues=row.dialogues, baseline=figures["loop"]))
        except Exception as exc:  # noqa: BLE001  (an out-of-memory batch leaves the smaller ones' figures)
            figures["runner"].append({"batch_size": row.batch_size, "error": f"{type(exc).__name__}: {exc}"})
            traceback.print_exc()
        save_partial(figures)
    try:
        figures["constrained"] = measure_constrained(model, processor, bench, settings, device)
    except Exception as exc:  # noqa: BLE001  (xgrammar missing or failing: the sweep's figures stand)
        figures["constrained"] = {"error": f"{type(exc).__name__}: {exc}"}
        traceback.print_exc()
    tp.PREBUILT.clear()
    return figures


def _prompt_tokens(adapter, request) -> int:
    """Input tokens of one round (image tokens included) as the adapter builds it."""
    texts, images, _ = adapter.chat_inputs([request], adapter.processor)
    min_pixels, max_pixels = adapter.preset.processor_pixel_bounds()
    inputs = adapter.processor(text=texts, images=images, return_tensors="pt",
                               size={"shortest_edge": min_pixels, "longest_edge": max_pixels})
    return int(inputs["input_ids"].shape[1])


def measure_constrained(model, processor, bench, settings: SuiteSettings, device: str) -> dict[str, Any]:
    """Free vs constrained decoding of the same first-round requests at ``constrained_batch``."""
    sys.path.insert(0, str(HERE))
    import constrained_decoding

    from regiondial_bench.adapters.hf import HFAdapter

    common = {"preset": "regionreasoner-7b", "squash_size": settings.image_size,
              "max_new_tokens": settings.constrained_tokens}
    free = HFAdapter.from_components(model, processor, **common)
    start = time.perf_counter()
    constrained = HFAdapter.from_components(model, processor, constrained=True,
                                            grammar={"max_objects": settings.constrained_objects}, **common)
    setup_s = time.perf_counter() - start
    requests = constrained_decoding.first_round_requests(bench, settings.constrained_rounds)
    grammar = constrained.constrained.grammar_for(requests[0].image.require_size())
    start = time.perf_counter()
    constrained._hf_grammars.compile(grammar)
    compile_s = time.perf_counter() - start
    rows = {}
    for name, adapter in (("free", free), ("constrained", constrained)):
        rows[name] = constrained_decoding.measure(adapter, requests, settings.constrained_batch)
        _synchronize(device)
    return {"batch_size": settings.constrained_batch, "max_new_tokens": settings.constrained_tokens,
            "max_objects": settings.constrained_objects,
            "tokenizer_vocab": len(processor.tokenizer), "grammar_setup_s": round(setup_s, 2),
            "grammar_compile_s": round(compile_s, 2), **rows}


def part_sam2(settings: SuiteSettings, device: str, work: Path) -> dict[str, Any]:
    from regiondial_bench.api import load_bench

    tp = _throughput()
    start = time.perf_counter()
    checkpoint = tp.build_sam2(settings.sam2_shape, work)
    build_s = time.perf_counter() - start
    figures = tp.measure_sam2(checkpoint, tp.repeated(load_bench("sample"), 2), device, settings.sam2_items,
                              settings.sam2_batch, shape=settings.sam2_shape)
    return {**figures, "build_s": round(build_s, 2)}


def part_grpo(settings: SuiteSettings, device: str, work: Path) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    import grpo_step_gpu

    out = work / "grpo.json"
    code = grpo_step_gpu.main([*settings.grpo_args, "--out", str(work / "grpo"), "--json", str(out)])
    if code != 0 or not out.is_file():
        raise RuntimeError(f"grpo_step_gpu exited with {code}")
    return json.loads(out.read_text())


PART_FUNCTIONS = {"generation": part_generation, "sam2": part_sam2, "grpo": part_grpo}

PARTIAL: dict[str, Path] = {}
"""In a part's child process: where :func:`save_partial` writes the figures measured so far."""


def save_partial(figures: dict[str, Any]) -> None:
    """Keep what a part has measured so far, so a part killed at its time limit still reports it."""
    if "path" in PARTIAL:
        PARTIAL["path"].write_text(json.dumps({**figures, "status": "partial"}, indent=2))


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------ the driver


def run_part(name: str, settings: SuiteSettings, device: str) -> dict[str, Any]:
    """One part in this process: its figures, or ``error`` with the exception."""
    import torch

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"gpu-suite-{name}-") as tmp:
        try:
            figures = PART_FUNCTIONS[name](settings, device, Path(tmp))
            status = "ok"
        except Exception as exc:  # noqa: BLE001  (recorded; the other parts still run)
            traceback.print_exc()
            figures, status = {"error": f"{type(exc).__name__}: {exc}"}, "failed"
    peak = round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.startswith("cuda") else None
    return {**figures, "status": status, "part_s": round(time.perf_counter() - start, 1), "peak_gpu_mem_gib": peak}


def run_part_isolated(name: str, timeout: float, argv: list[str], work: Path) -> dict[str, Any]:
    """One part in a child process of this script, killed after ``timeout`` seconds."""
    out = work / f"{name}.json"
    command = [sys.executable, str(Path(__file__).resolve()), *argv, "--only-part", name, "--part-json", str(out)]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        measured = json.loads(out.read_text()) if out.is_file() else {}  # what it saved before the kill
        return {**measured, "status": "timed out", "part_s": round(time.perf_counter() - start, 1),
                "error": f"killed after its {timeout:.0f} s limit"}
    if out.is_file():
        return json.loads(out.read_text())
    return {"status": "failed", "part_s": round(time.perf_counter() - start, 1),
            "error": f"the part's process exited with {done.returncode} and wrote no figures"}


def environment(device: str) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    import torch

    def installed(package: str) -> str | None:
        try:
            return version(package)
        except PackageNotFoundError:
            return None

    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(0)
        memory = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    else:
        name, memory = f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)", None
    return {"device": name, "device_memory_gib": memory, "torch": torch.__version__,
            "cuda": torch.version.cuda, **{p: installed(p) for p in ("transformers", "peft", "xgrammar")},
            "python": platform.python_version()}


def table(report: dict[str, Any]) -> str:
    """The figures as a Markdown table (what RESULTS.md gets)."""
    env = report["environment"]
    lines = [f"GPU suite on **{env['device']}** ({report['settings']}), torch {env['torch']}, "
             f"transformers {env['transformers']}, {report['date']}; {report['seconds']} s in all.", "",
             "| part | measurement | figure |", "|---|---|---|"]

    def row(part: str, what: str, figure: str) -> None:
        lines.append(f"| {part} | {what} | {figure} |")

    parts = report["parts"]
    for name in PARTS:
        part = parts.get(name)
        if part is None:
            continue
        if part.get("status") != "ok":
            row(name, part.get("status", "?"), part.get("error", ""))
            if name != "generation" or "loop" not in part:
                continue  # a generation part cut short still shows the rows it measured
            part = {"runner": [], "constrained": {"error": "not reached"}, **part}
        if name == "generation":
            shape = f"{part['shape']}, {part['image_size']}² ({part['prompt_tokens']} prompt tokens), {part['new_tokens']} new tokens"
            loop = part["loop"]
            row(name, f"upstream loop, batch 1 ({shape})",
                f"{loop['rounds_per_s']} rounds/s, {loop['tokens_per_s']} tok/s ({loop['rounds']} rounds)")
            for r in part["runner"]:
                row(name, f"runner, batch {r['batch_size']}", r["error"] if "error" in r else
                    f"{r['rounds_per_s']} rounds/s, {r['tokens_per_s']} tok/s ({r['rounds']} rounds), "
                    f"{r['speedup_vs_batch1']}x the loop")
            c = part.get("constrained", {})
            if "error" in c:
                row(name, "free vs constrained", c["error"])
            else:
                for mode in ("free", "constrained"):
                    m = c[mode]
                    row(name, f"{mode} decoding, batch {c['batch_size']} (max {c['max_new_tokens']} tokens)",
                        f"{m['tokens_per_s']} tok/s, {m['rounds_per_s']} rounds/s, parse {m['parse_share']:.0%}")
                row(name, "grammar compile", f"{c['grammar_compile_s']} s (tokenizer of {c['tokenizer_vocab']} tokens)")
        elif name == "sam2":
            row(name, f"SAM2 {part['shape']}, image batch {part['batch_size']}",
                f"{part['masks_per_s']} masks/s ({part['masks']} masks)")
        elif name == "grpo":
            phases = ", ".join(f"{k} {v} s ({part['phase_share'][k]:.0%})" for k, v in part["phases_s"].items())
            row(name, f"GRPO step ({part['shape']}, LoRA r {part['lora']['r'] if part['lora'] else '-'}, "
                f"{part['prompts']}x{part['generations']} x {part['completion_length']} tokens)",
                f"{part['step_s']} s: {phases}")
            row(name, "throughput", f"{part['sequences_per_s']} seq/s, {part['tokens_per_s']} tok/s "
                f"(completion {part['completion_tokens_per_s']} tok/s; generation {part['generation_tokens_per_s']} tok/s); "
                f"peak {part['peak_gpu_mem_gib']} GiB")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on CPU (the test suite's check)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--json", type=Path, default=None, help="write the figures here (rewritten after each part)")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    parser.add_argument("--in-process", action="store_true", help="run the parts in this process (no time limits)")
    parser.add_argument("--timeout-scale", type=float, default=1.0, help="multiply every part's time limit")
    parser.add_argument("--only-part", choices=PARTS, help=argparse.SUPPRESS)  # a child process: one part
    parser.add_argument("--part-json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    settings = TINY if args.tiny else GPU
    device = "cpu" if args.tiny else "cuda"
    if args.only_part:
        PARTIAL["path"] = args.part_json
        result = run_part(args.only_part, settings, device)
        args.part_json.write_text(json.dumps(result, indent=2))
        return 0

    import torch

    if not args.tiny and not torch.cuda.is_available():
        parser.error("no CUDA device is visible; use --tiny for the CPU check")
    report: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["benchmarks/gpu_suite.py", *argv]),
        "settings": "tiny (CPU check)" if args.tiny else "GPU",
        "environment": environment(device),
        "sizes": _jsonable(dataclasses.asdict(settings)),
        "parts": {},
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-suite-") as tmp:
        for name in args.parts:
            print(f"== {name}", file=sys.stderr, flush=True)
            if args.in_process:
                report["parts"][name] = run_part(name, settings, device)
            else:
                limit = settings.timeouts[name] * args.timeout_scale
                child = ["--tiny"] if args.tiny else []  # a part reads nothing else of the command line
                report["parts"][name] = run_part_isolated(name, limit, child, Path(tmp))
            report["seconds"] = round(time.perf_counter() - started, 1)
            if args.json:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(report, indent=2))
    text = table(report)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0 if all(p.get("status") == "ok" for p in report["parts"].values()) else 1


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
