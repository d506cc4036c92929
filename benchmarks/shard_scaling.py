"""Shard scaling: one bench as one process and as N launched shards; merged results must be equal.

Both paths run the real command line (``regiondial evaluate``) with the ``hf`` adapter on the tiny
random Qwen2.5-VL (built offline) over the bundled sample bench: once with ``--shard none`` in one
process, once under ``torchrun --nproc-per-node N`` (gloo barrier, rank 0 merges). The script
checks that the merged per-round metrics equal the single process's exactly (and that every turn
was asked and answered alike), then prints both wall times (process start to exit, model loading
included) and their ratio.

Each shard process gets ``--threads`` torch threads (default: the CPU count divided by the
processes) and the single process ``--single-threads`` (default: all CPUs), so both paths use the
same cores. ``run_s`` figures are each process's evaluation alone (model loaded, no start-up).

CPU run (as recorded in benchmarks/RESULTS.md)::

    python benchmarks/shard_scaling.py --processes 2 --new-tokens 16 --reference-mode predicted
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}")
    return elapsed


def turns(folder: Path) -> dict:
    rows = [json.loads(line) for line in (folder / "predictions.jsonl").open(encoding="utf-8")]
    return {(r["dialogue_id"], r["turn"]): (r["question"], r["raw_text"], r.get("references")) for r in rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--bench", default="sample")
    parser.add_argument("--reference-mode", default="predicted", choices=["predicted", "gold", "upstream"])
    parser.add_argument("--new-tokens", type=int, default=16, help="exactly this many new tokens per round")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--limit", type=int, default=None, help="only the first N dialogues")
    parser.add_argument("--device", default="cpu", help="cpu, or auto (each rank takes cuda:LOCAL_RANK)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per shard process")
    parser.add_argument("--single-threads", type=int, default=None,
                        help="torch threads of the single process (default: all CPUs)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        raise SystemExit("torchrun is not installed (it comes with torch)")

    from regiondial_bench.testing import build_tiny_qwen2_5_vl

    cpus = os.cpu_count() or 1
    shard_threads = args.threads or max(cpus // args.processes, 1)
    single_threads = args.single_threads or cpus
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = build_tiny_qwen2_5_vl(work / "tiny-qwen")
        options = {"preset": "qwen2.5-vl-7b", "model": str(model), "max_new_tokens": args.new_tokens,
                   "min_new_tokens": args.new_tokens, "max_pixels": 112 * 112, "min_pixels": 28 * 28}
        if args.device != "auto":
            options["device"] = args.device
        config = work / "config.yaml"
        config.write_text(json.dumps({"adapter": "hf", "adapter_options": options,
                                      "reference_mode": args.reference_mode, "batch_size": args.batch_size,
                                      **({"limit": args.limit} if args.limit else {})}))
        base = ["-m", "regiondial_bench.cli", "evaluate", "--config", str(config), "--bench", args.bench,
                "--no-progress", "--bootstrap", "100", "--no-cache"]  # both runs ask the model
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_ARRAY", "RANK", "WORLD_SIZE"))}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])

        single = run([sys.executable, *base, "--shard", "none", "--out", str(work / "single")],
                     {**env, "OMP_NUM_THREADS": str(single_threads)})
        sharded = run([torchrun, "--nproc-per-node", str(args.processes), "--master-port", "29533", *base,
                       "--out", str(work / "sharded")], {**env, "OMP_NUM_THREADS": str(shard_threads)})

        one = json.loads((work / "single" / "results.json").read_text())
        merged = json.loads((work / "sharded" / "results.json").read_text())
        equal = {k: one[k] == merged[k] for k in ("rounds", "buckets", "overall", "failure_reasons")}
        same_turns = turns(work / "single") == turns(work / "sharded")
        shard_runs = [json.loads((work / "sharded" / f"shard-{i}-of-{args.processes}" / "results.json").read_text())
                      ["provenance"]["timings"]["run_s"] for i in range(args.processes)]
        figures = {
            "bench": args.bench, "turns": int(one["overall"]["n"]), "reference_mode": args.reference_mode,
            "new_tokens": args.new_tokens, "batch_size": args.batch_size, "cpus": cpus,
            "threads": {"single": single_threads, "per_shard": shard_threads},
            "single_process_s": round(single, 2), "sharded_s": round(sharded, 2),
            "ratio_single_over_sharded": round(single / sharded, 3),
            "single_run_s": one["provenance"]["timings"]["run_s"], "shard_run_s": shard_runs,
            "metrics_equal": all(equal.values()), "turns_equal": same_turns,
        }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    if not (figures["metrics_equal"] and figures["turns_equal"]):
        print(f"MISMATCH: {equal}, turns equal: {same_turns}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
