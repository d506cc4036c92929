"""A few GRPO steps with a Qwen2.5-VL-shaped model reduced in depth: step time, tokens/s, peak memory.

The model has Qwen2.5-VL-7B's widths (hidden 3584, 28 heads, 4 KV heads, vision 1280 wide) with
random weights and only ``--text-layers`` / ``--vision-layers`` blocks, so one GPU holds it; the
tokenizer, processor and chat template come from the tiny local builder. Data: the bundled sample
bench in the 840 frame, rewards: the released profile, trainer: an unmodified TRL GRPOTrainer.

    python benchmarks/grpo_step_gpu.py --steps 3                 # on a GPU
    python benchmarks/grpo_step_gpu.py --steps 1 --cpu --small   # code-path check on CPU (tests/train runs it)

Prints one JSON line per run with the device name, mean step time (after the first step),
completion tokens per second and peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_model(out: Path, *, text_layers: int, vision_layers: int, small: bool) -> Path:
    """Write a Qwen2.5-VL-7B-shaped checkpoint (reduced depth) with the tiny tokenizer/processor."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from regiondial_bench.testing import build_tiny_qwen2_5_vl

    tiny = build_tiny_qwen2_5_vl(out)
    config = Qwen2_5_VLConfig.from_pretrained(tiny)
    text, vision = config.text_config, config.vision_config
    hidden, heads, kv = (256, 4, 2) if small else (3584, 28, 4)
    text.hidden_size, text.num_attention_heads, text.num_key_value_heads = hidden, heads, kv
    text.intermediate_size = 4 * hidden if small else 18944
    text.num_hidden_layers = text_layers
    # the per-layer attention kinds must match the new depth (Qwen2.5-VL builds one layer per entry)
    if getattr(text, "layer_types", None) is not None:
        text.layer_types = [text.layer_types[0]] * text_layers
    if getattr(text, "max_window_layers", None) is not None:
        text.max_window_layers = min(text.max_window_layers, text_layers)
    head_dim = hidden // heads
    quarter = head_dim // 2
    text.rope_parameters["mrope_section"] = [quarter - 2 * (quarter * 3 // 8), quarter * 3 // 8, quarter * 3 // 8]
    vision.hidden_size, vision.num_heads = (64, 2) if small else (1280, 16)
    vision.intermediate_size = 128 if small else 3420
    vision.depth = vision_layers
    vision.fullatt_block_indexes = [vision_layers - 1]
    vision.out_hidden_size = hidden
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.save_pretrained(tiny)
    return tiny


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--text-layers", type=int, default=4)
    parser.add_argument("--vision-layers", type=int, default=4)
    parser.add_argument("--completion-length", type=int, default=None,
                        help="max completion tokens (default 256; 16 with --small)")
    parser.add_argument("--generations", type=int, default=None,
                        help="completions per prompt = per-device batch (default 8; 4 with --small)")
    parser.add_argument("--out", default="/tmp/grpo_step_gpu")
    parser.add_argument("--cpu", action="store_true", help="run on CPU (code-path check)")
    parser.add_argument("--small", action="store_true", help="narrow widths (CPU check)")
    options = parser.parse_args(argv)
    if options.completion_length is None:
        options.completion_length = 16 if options.small else 256
    if options.generations is None:
        options.generations = 4 if options.small else 8
    generations = options.generations

    import torch
    from transformers import TrainerCallback

    sys.path.insert(0, str(ROOT / "train_reference"))
    import grpo_regionreasoner as grpo

    out = Path(options.out)
    model_path = build_model(out / "model", text_layers=options.text_layers, vision_layers=options.vision_layers,
                             small=options.small)
    on_gpu = torch.cuda.is_available() and not options.cpu
    raw = {
        "model": {"name_or_path": str(model_path), "dtype": "bfloat16" if on_gpu else "float32"},
        "data": {"source": str(ROOT / "regiondial_bench" / "data" / "sample"), "limit": 16 if options.small else 64,
                 "cache_dir": str(out / "images")},
        "rewards": {"profile": "released"},
        "grpo": {
            "output_dir": str(out / "run"), "max_steps": options.steps, "per_device_train_batch_size": generations,
            "num_generations": generations, "max_completion_length": options.completion_length, "learning_rate": 1e-6,
            "beta": 0.01, "entropy_coef": 0.001, "loss_type": "bnpo", "bf16": on_gpu, "use_cpu": not on_gpu,
            "gradient_checkpointing": on_gpu, "logging_steps": 1, "save_strategy": "no", "report_to": "none",
        },
    }
    settings = grpo.parse_settings(raw)
    times: list[float] = []
    tokens: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if on_gpu:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.start)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "completions/mean_length" in logs:
                tokens.append(logs["completions/mean_length"] * generations)

    trainer = grpo.build_trainer(settings, callbacks=[Timer()])
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    steady = times[1:] or times
    step_s = sum(steady) / len(steady)
    result = {
        "device": torch.cuda.get_device_name(0) if on_gpu else "cpu",
        "text_layers": options.text_layers,
        "vision_layers": options.vision_layers,
        "small": options.small,
        "generations": generations,
        "completion_length": options.completion_length,
        "steps": len(times),
        "step_times_s": [round(t, 3) for t in times],
        "mean_step_s_after_first": round(step_s, 3),
        "completion_tokens_per_s": round(sum(tokens[1:] or tokens) / max(sum(steady), 1e-9), 1),
        "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if on_gpu else None,
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
