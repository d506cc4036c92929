"""One GRPO step at Qwen2.5-VL-7B's shape, phase by phase: generation, log-probs, update, weight sync.

Two engines measure it:

* ``direct`` (default): the step written out in torch + transformers (+ peft for LoRA), as TRL's
  ``GRPOTrainer`` performs it with the recipe's settings: ``prompts x generations`` sampled
  completions of the training prompts (the trainer's own template and 840x840 images), rewards
  from ``regiondial_bench.training.rewards`` (released profile), group-normalised advantages,
  the policy's log-probs before the update ("old", which TRL computes for vLLM's importance-sampling
  correction) and the reference's (LoRA disabled), the clipped-ratio loss with the k3 KL term
  (``beta``), token mean per micro-batch over gradient accumulation, one AdamW step, then the weight
  sync of a colocated inference engine (LoRA merged, every weight copied into the engine's own
  copy on the GPU, LoRA unmerged). Every phase is timed with the GPU synchronised. It needs no
  TRL or vLLM, so it runs on a GPU image that has only torch, transformers and peft.
* ``trl``: the project's trainer (``train_reference/grpo_regionreasoner.py``, an unmodified TRL
  ``GRPOTrainer``) on a checkpoint written to disk; its phases come from TRL's own profiling
  contexts (generation, log-probs inside and outside the loss, weight sync when vLLM is used).

The model has random weights (no download is possible on the GPU machines) at the ``7b`` shape
of :data:`regiondial_bench.testing.QWEN2_5_VL_SHAPES` (``--text-layers`` / ``--vision-layers``
cut the depth); ``--small`` is the narrow ``7b-mini`` stand-in. Completions have exactly
``--completion-length`` tokens, so the work per step is fixed.

    python benchmarks/grpo_step_gpu.py                        # H100/H200: 7B, LoRA, 2 prompts x 8, 256 tokens
    python benchmarks/grpo_step_gpu.py --cpu --small --steps 1    # code-path check on CPU (tests run it)
    python benchmarks/grpo_step_gpu.py --engine trl --text-layers 4 --vision-layers 4   # TRL, where installed

Prints one JSON line (the last line of stdout): device, shape, per-phase seconds (mean over the
steps after the first, which warms the kernels up), each phase's share of the step, sequences/s,
tokens/s and peak GPU memory. It asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("generation", "rewards", "old_logps", "ref_logps", "update", "weight_sync")
"""The direct engine's phases, in the order a step runs them."""


@dataclass(frozen=True)
class StepConfig:
    """What one GRPO step does (the 4xH100 recipe's per-device settings by default).

    Attributes:
        prompts: Distinct prompts per step (the recipe: 2 per device x 16 accumulation / 8 = 4).
        generations: Completions per prompt (``num_generations``).
        completion_length: Tokens per completion (forced: min = max).
        micro_batch: Sequences per forward/backward of the update and the log-prob passes
            (``per_device_train_batch_size``).
        beta: KL coefficient (k3 estimator against the reference).
        epsilon: PPO clip range of the ratio.
        learning_rate: AdamW learning rate.
        lora: ``peft.LoraConfig`` fields, or None for full fine-tuning (does not fit one GPU at 7B).
        gradient_checkpointing: Recompute activations in the backward pass (the recipe's setting).
        image_size: Side of the square training images (the trainer's 840 frame).
    """

    prompts: int = 2
    generations: int = 8
    completion_length: int = 256
    micro_batch: int = 2
    beta: float = 0.01
    epsilon: float = 0.2
    learning_rate: float = 1e-6
    lora: dict[str, Any] | None = field(default_factory=lambda: {
        "r": 64, "lora_alpha": 128, "lora_dropout": 0.05, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]})
    gradient_checkpointing: bool = True
    image_size: int = 840

    def __post_init__(self) -> None:
        for name in ("prompts", "generations", "completion_length", "micro_batch", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.generations < 2:
            raise ValueError("GRPO needs generations >= 2 (advantages are relative to the group)")


class PhaseClock:
    """Wall-clock seconds per named phase, the GPU synchronised at both ends of each."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.seconds: dict[str, float] = defaultdict(float)

    def _sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    @contextlib.contextmanager
    def phase(self, name: str):
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[name] += time.perf_counter() - start


# ---------------------------------------------------------------------------------------- inputs


def training_prompts(processor: Any, config: StepConfig, cache_dir: Path) -> tuple[list[str], list[Any], list[dict]]:
    """The first ``config.prompts`` first-round training samples of the bundled sample bench.

    Returns:
        ``(chat texts, PIL images, samples)``: the trainer's template with an image part, the
        840x840 training images (resized to ``config.image_size`` if that differs) and the sample
        dicts (``problem``, ``solution`` for the rewards).
    """
    from PIL import Image

    from regiondial_bench.api import load_bench
    from regiondial_bench.training.data import conversation, samples_from_bench

    samples = [s for s in samples_from_bench(load_bench("sample"), cache_dir=cache_dir, progress=False)
               if s["turn"] == 0][: config.prompts]
    if len(samples) < config.prompts:
        raise ValueError(f"the sample bench has {len(samples)} first rounds; asked for {config.prompts} prompts")
    texts, images = [], []
    for sample in samples:
        messages = conversation(sample["problem"])
        messages[-1] = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": messages[-1]["content"]}]}
        texts.append(processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
        with Image.open(sample["image"]) as image:
            image = image.convert("RGB")
        if image.size != (config.image_size, config.image_size):
            image = image.resize((config.image_size, config.image_size), Image.BILINEAR)
        images.append(image)
    return texts, images, samples


def processor_inputs(processor: Any, texts: list[str], images: list[Any], device: str) -> Any:
    """Left-padded model inputs at the RegionReasoner preset's pixel bounds (840x840 -> 900 image tokens)."""
    from regiondial_bench.adapters.presets import get_preset

    min_pixels, max_pixels = get_preset("regionreasoner-7b").processor_pixel_bounds()
    processor.tokenizer.padding_side = "left"
    inputs = processor(text=texts, images=images, return_tensors="pt", padding=True,
                       size={"shortest_edge": min_pixels, "longest_edge": max_pixels})
    return inputs.to(device)


def sequence_rows(batch: dict[str, Any], rows: slice) -> dict[str, Any]:
    """Rows of a batch of sequences with one image each: ``pixel_values`` is sliced by each image's patches."""
    grid = batch["image_grid_thw"]
    patches = grid.prod(dim=-1)
    offsets = [0, *patches.cumsum(0).tolist()]
    start, stop, _ = rows.indices(grid.shape[0])
    return {
        "input_ids": batch["input_ids"][rows],
        "attention_mask": batch["attention_mask"][rows],
        "pixel_values": batch["pixel_values"][offsets[start] : offsets[stop]],
        "image_grid_thw": grid[rows],
    }


# ------------------------------------------------------------------------------------- the step


def completion_logps(model: Any, batch: dict[str, Any], completion_ids: Any, micro_batch: int) -> Any:
    """Per-token log-probabilities of ``completion_ids`` (B, L) under ``model``, ``micro_batch`` rows at a time."""
    import torch

    length = completion_ids.shape[1]
    out = []
    for start in range(0, completion_ids.shape[0], micro_batch):
        rows = slice(start, start + micro_batch)
        logits = model(**sequence_rows(batch, rows), use_cache=False, logits_to_keep=length + 1).logits
        logits = logits[:, :-1, :].float()  # position t predicts completion token t
        ids = completion_ids[rows]
        picked = torch.gather(logits, -1, ids.unsqueeze(-1)).squeeze(-1)
        out.append(picked - torch.logsumexp(logits, dim=-1))
    return torch.cat(out)


def group_advantages(rewards: list[float], generations: int) -> Any:
    """``(r - group mean) / (group std + 1e-4)`` per prompt group, as TRL's ``scale_rewards="group"``."""
    import torch

    r = torch.tensor(rewards, dtype=torch.float32).view(-1, generations)
    return ((r - r.mean(dim=1, keepdim=True)) / (r.std(dim=1, keepdim=True) + 1e-4)).view(-1)


def grpo_loss(logps: Any, old: Any, ref: Any, advantages: Any, mask: Any, config: StepConfig) -> Any:
    """Clipped-ratio GRPO loss with the k3 KL to the reference, token mean over ``mask`` (TRL's ``bnpo``)."""
    import torch

    ratio = torch.exp(logps - old)
    adv = advantages.unsqueeze(1)
    per_token = -torch.min(ratio * adv, torch.clamp(ratio, 1 - config.epsilon, 1 + config.epsilon) * adv)
    if config.beta:
        delta = ref - logps
        per_token = per_token + config.beta * (torch.exp(delta) - delta - 1)
    return (per_token * mask).sum() / mask.sum().clamp(min=1.0)


class DirectGRPOStep:
    """The GRPO step of a (LoRA) policy, phase by phase, with no trainer library around it."""

    def __init__(self, model: Any, processor: Any, config: StepConfig, device: str) -> None:
        import torch
        from transformers import GenerationConfig

        self.config = config
        self.device = device
        self.processor = processor
        tokenizer = processor.tokenizer
        vocab = tokenizer.get_vocab()
        if config.lora:
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **config.lora))
        if config.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model = model
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.trainable, lr=config.learning_rate, betas=(0.9, 0.999))
        eos = [vocab[t] for t in ("<|im_end|>", "<|endoftext|>") if t in vocab]
        self.eos = eos
        # the vision placeholders must not be sampled: a completion holding one no longer matches its image
        suppress = [vocab[t] for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>",
                                       "<|vision_pad|>") if t in vocab]
        self.generation_config = GenerationConfig(
            do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=config.completion_length,
            min_new_tokens=config.completion_length, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id,
            suppress_tokens=suppress or None,
        )
        # the colocated inference engine's own weights (vLLM keeps a separate, merged copy)
        self.engine_weights = {name: torch.empty_like(t) for name, t in self.merged_state().items()}

    def merged_state(self) -> dict[str, Any]:
        """The base model's weights under the names an inference engine loads (no LoRA tensors)."""
        base = self.model.get_base_model() if self.config.lora else self.model
        return {name.replace(".base_layer", ""): p.data for name, p in base.named_parameters() if "lora_" not in name}

    def run(self, texts: list[str], images: list[Any], samples: list[dict], clock: PhaseClock) -> dict[str, Any]:
        """One step; returns its token counts and mean reward."""
        import torch

        from regiondial_bench.training.rewards import score

        config = self.config
        g = config.generations
        prompts = processor_inputs(self.processor, [t for t in texts for _ in range(g)],
                                   [im for im in images for _ in range(g)], self.device)
        self.model.eval()
        with clock.phase("generation"), torch.no_grad():
            output = self.model.generate(**prompts, generation_config=self.generation_config)
        prompt_length = prompts["input_ids"].shape[1]
        completion_ids = output[:, prompt_length:]
        is_eos = torch.isin(completion_ids, torch.tensor(self.eos, device=completion_ids.device))
        # tokens up to and including the first end-of-turn count (TRL's completion mask)
        after_eos = (is_eos.cumsum(dim=1) - is_eos.int()) > 0
        mask = (~after_eos).float()
        with clock.phase("rewards"):
            texts_out = self.processor.batch_decode(completion_ids, skip_special_tokens=True)
            rewards = [score(text, samples[i // g]["solution"], samples[i // g]["problem"], "released")["total"]
                       for i, text in enumerate(texts_out)]
            advantages = group_advantages(rewards, g).to(self.device)
        batch = {
            "input_ids": output,
            "attention_mask": torch.cat([prompts["attention_mask"], mask.to(prompts["attention_mask"].dtype)], dim=1),
            "pixel_values": prompts["pixel_values"],
            "image_grid_thw": prompts["image_grid_thw"],
        }
        with torch.no_grad():
            with clock.phase("old_logps"):
                old = completion_logps(self.model, batch, completion_ids, config.micro_batch)
            with clock.phase("ref_logps"):
                reference = self.model.disable_adapter() if config.lora else contextlib.nullcontext()
                with reference:
                    ref = completion_logps(self.model, batch, completion_ids, config.micro_batch)
        self.model.train()
        with clock.phase("update"):
            micro_batches = range(0, completion_ids.shape[0], config.micro_batch)
            for start in micro_batches:
                rows = slice(start, start + config.micro_batch)
                logps = completion_logps(self.model, sequence_rows(batch, rows), completion_ids[rows],
                                         config.micro_batch)
                loss = grpo_loss(logps, old[rows], ref[rows], advantages[rows], mask[rows], config)
                (loss / len(micro_batches)).backward()
            torch.nn.utils.clip_grad_norm_(self.trainable, 1.0)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        with clock.phase("weight_sync"), torch.no_grad():
            if config.lora:
                self.model.merge_adapter()
            for name, tensor in self.merged_state().items():
                self.engine_weights[name].copy_(tensor, non_blocking=True)
            if config.lora:
                self.model.unmerge_adapter()
        prompt_tokens = int(prompts["attention_mask"].sum())
        return {"sequences": completion_ids.shape[0], "prompt_tokens": prompt_tokens,
                "completion_tokens": int(mask.sum()), "mean_reward": sum(rewards) / len(rewards)}


def run_direct(options: argparse.Namespace) -> dict[str, Any]:
    """The ``direct`` engine: build the model on the device, run ``--steps`` steps, summarise."""
    import torch

    from regiondial_bench.adapters.processors import load_vlm_processor
    from regiondial_bench.testing import build_tiny_qwen2_5_vl, random_qwen2_5_vl

    device = "cpu" if options.cpu or not torch.cuda.is_available() else "cuda"
    config = StepConfig(
        prompts=options.prompts, generations=options.generations, completion_length=options.completion_length,
        micro_batch=options.micro_batch, image_size=options.image_size,
        gradient_checkpointing=options.checkpointing == "on" or (options.checkpointing == "auto" and device == "cuda"),
        **({"lora": None} if options.full else {}),
    )
    out = Path(options.out)
    tiny = build_tiny_qwen2_5_vl(out / "tokenizer")
    processor = load_vlm_processor(tiny)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    model = random_qwen2_5_vl(options.shape, tiny, device=device, text_layers=options.text_layers,
                              vision_layers=options.vision_layers)
    parameters = sum(p.numel() for p in model.parameters())
    step = DirectGRPOStep(model, processor, config, device)
    build_s = time.perf_counter() - start
    texts, images, samples = training_prompts(processor, config, out / "images")
    clocks, counts = [], []
    for _ in range(options.steps):
        clock = PhaseClock(device)
        counts.append(step.run(texts, images, samples, clock))
        clocks.append(clock.seconds)
    text = model.config.text_config if hasattr(model.config, "text_config") else model.config
    return summarise(clocks, counts, {
        "engine": "direct", "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "shape": options.shape, "text_layers": text.num_hidden_layers,
        "vision_layers": model.config.vision_config.depth, "parameters": parameters,
        "trainable_parameters": sum(p.numel() for p in step.trainable), "lora": config.lora,
        "prompts": config.prompts, "generations": config.generations, "micro_batch": config.micro_batch,
        "completion_length": config.completion_length, "image_size": config.image_size,
        "gradient_checkpointing": config.gradient_checkpointing, "build_s": round(build_s, 2),
        "torch": torch.__version__, "transformers": _version("transformers"), "peft": _version("peft"),
        "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None,
    })


def summarise(clocks: list[dict[str, float]], counts: list[dict[str, Any]], head: dict[str, Any]) -> dict[str, Any]:
    """Per-phase means over the steps after the first (the first warms kernels and the allocator up)."""
    steady = slice(1, None) if len(clocks) > 1 else slice(None)
    kept, kept_counts = clocks[steady], counts[steady]
    names = [p for p in PHASES if any(p in c for c in clocks)] + sorted({k for c in clocks for k in c} - set(PHASES))
    phases = {name: round(sum(c.get(name, 0.0) for c in kept) / len(kept), 3) for name in names}
    step_s = sum(phases.values())

    def mean(key: str, rows: list[dict[str, Any]]) -> float | None:
        values = [c.get(key) for c in rows]
        return None if any(v is None for v in values) else sum(values) / len(values)

    sequences = mean("sequences", kept_counts)
    completion = mean("completion_tokens", kept_counts)
    prompt = mean("prompt_tokens", kept_counts)
    reward = mean("mean_reward", counts)
    generation_s = phases.get("generation", 0.0)
    return {
        **head,
        "steps": len(clocks),
        "step_times_s": [round(sum(c.values()), 3) for c in clocks],
        "phases_s": phases,
        "phase_share": {name: round(value / step_s, 3) if step_s else None for name, value in phases.items()},
        "step_s": round(step_s, 3),
        "mean_step_s_after_first": round(step_s, 3),
        "sequences_per_step": sequences,
        "prompt_tokens_per_step": prompt,
        "completion_tokens_per_step": completion,
        "sequences_per_s": round(sequences / step_s, 3) if step_s else None,
        "completion_tokens_per_s": round(completion / step_s, 1) if step_s else None,
        "tokens_per_s": round((prompt + completion) / step_s, 1) if step_s and prompt is not None else None,
        "generation_tokens_per_s": round(completion / generation_s, 1) if generation_s else None,
        "mean_reward": None if reward is None else round(reward, 4),
    }


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


# ------------------------------------------------------------------------------------ TRL engine


class TRLProfile:
    """Collects TRL's profiling contexts (name, start, end) while the trainer runs.

    TRL times its own blocks (``transformers.generate``, ``_get_per_token_logps_and_entropies``,
    ``_prepare_inputs``, ``compute_loss``, ``sync_weights``) but reports them only to experiment
    trackers; this wraps ``ProfilingContext`` so they are kept for the phase breakdown.
    """

    def __init__(self) -> None:
        self.events: list[tuple[str, float, float]] = []

    def __enter__(self) -> TRLProfile:
        from trl.extras import profiling

        self._cls = profiling.ProfilingContext
        self._original = self._cls._log_metrics
        events = self.events

        def log_metrics(context: Any, duration: float) -> None:
            end = time.perf_counter()
            events.append((context.name.rsplit(".", 1)[-1], end - duration, end))
            self._original(context, duration)

        self._cls._log_metrics = log_metrics
        return self

    def __exit__(self, *exc: Any) -> None:
        self._cls._log_metrics = self._original

    def phases(self, start: float, end: float) -> dict[str, float]:
        """Seconds per phase for the events inside one step ``[start, end]``."""
        inside = [e for e in self.events if e[1] >= start and e[2] <= end]
        prepare = [e for e in inside if e[0] == "_prepare_inputs"]
        loss = [e for e in inside if e[0] == "compute_loss"]

        def total(name: str, within: list | None = None) -> float:
            picked = [e for e in inside if e[0] == name]
            if within is not None:
                picked = [e for e in picked if any(w[1] <= e[1] and e[2] <= w[2] for w in within)]
            return sum(e[2] - e[1] for e in picked)

        generation = total("generate") + total("generate_batch")
        logps_outside_loss = total("_get_per_token_logps_and_entropies", prepare)
        sync = total("sync_weights")
        prepared = sum(e[2] - e[1] for e in prepare)
        rewards = total("_calculate_rewards")
        return {
            "generation": generation,
            "rewards": rewards,
            "old_and_ref_logps": logps_outside_loss,
            "other_rollout": max(prepared - generation - logps_outside_loss - rewards - sync, 0.0),
            # the loss pass, its backward and the optimizer step: the step less the rollout
            "update": max((end - start) - prepared, 0.0),
            "weight_sync": sync,
            "loss_forward": sum(e[2] - e[1] for e in loss),
        }


def build_checkpoint(out: Path, shape: str, text_layers: int | None, vision_layers: int | None) -> Path:
    """A random checkpoint of ``shape`` on disk, with the tiny tokenizer and processor (TRL loads by path)."""
    from regiondial_bench.testing import build_tiny_qwen2_5_vl, random_qwen2_5_vl

    folder = build_tiny_qwen2_5_vl(out)
    random_qwen2_5_vl(shape, folder, text_layers=text_layers, vision_layers=vision_layers).save_pretrained(folder)
    return folder


def run_trl(options: argparse.Namespace) -> dict[str, Any]:
    """The ``trl`` engine: ``--steps`` steps of the project's trainer, phases from TRL's profiling."""
    import torch
    from transformers import TrainerCallback

    sys.path.insert(0, str(ROOT / "train_reference"))
    import grpo_regionreasoner as grpo

    out = Path(options.out)
    model_path = build_checkpoint(out / "model", options.shape, options.text_layers, options.vision_layers)
    on_gpu = torch.cuda.is_available() and not options.cpu
    generations = options.generations
    raw = {
        "model": {"name_or_path": str(model_path), "dtype": "bfloat16" if on_gpu else "float32"},
        "data": {"source": str(ROOT / "regiondial_bench" / "data" / "sample"), "limit": 16 if options.small else 64,
                 "cache_dir": str(out / "images")},
        "rewards": {"profile": "released"},
        "grpo": {
            "output_dir": str(out / "run"), "max_steps": options.steps,
            "per_device_train_batch_size": options.micro_batch,
            "gradient_accumulation_steps": options.prompts * generations // options.micro_batch,
            "num_generations": generations, "max_completion_length": options.completion_length,
            "learning_rate": 1e-6, "beta": 0.01, "loss_type": "bnpo", "bf16": on_gpu, "use_cpu": not on_gpu,
            "gradient_checkpointing": on_gpu, "logging_steps": 1, "save_strategy": "no", "report_to": "none",
        },
    }
    if not options.full:
        raw["lora"] = dict(StepConfig().lora)
    settings = grpo.parse_settings(raw)
    windows: list[tuple[float, float]] = []
    tokens: list[float] = []
    rewards: list[float] = []

    class StepWindow(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if on_gpu:
                torch.cuda.synchronize()
            windows.append((self.start, time.perf_counter()))

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "completions/mean_length" in logs:
                tokens.append(logs["completions/mean_length"] * options.prompts * generations)
            if logs and "reward" in logs:
                rewards.append(logs["reward"])

    trainer = grpo.build_trainer(settings, callbacks=[StepWindow()])
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    with TRLProfile() as profile:
        trainer.train()
    clocks = [profile.phases(*w) for w in windows]
    for clock in clocks:
        clock.pop("loss_forward")  # inside "update"; kept out of the sum
    # TRL logs completion lengths and rewards per step, not prompt lengths: those stay unknown (None)
    counts = [{"sequences": options.prompts * generations, "prompt_tokens": None,
               "completion_tokens": tokens[i] if i < len(tokens) else None, "mean_reward": rewards[i] if i < len(rewards) else None}
              for i in range(len(clocks))]
    model_config = trainer.model.config
    return summarise(clocks, counts, {
        "engine": "trl", "device": torch.cuda.get_device_name(0) if on_gpu else "cpu", "shape": options.shape,
        "text_layers": model_config.text_config.num_hidden_layers, "vision_layers": model_config.vision_config.depth,
        "parameters": sum(p.numel() for p in trainer.model.parameters()), "lora": raw.get("lora"),
        "prompts": options.prompts, "generations": generations, "micro_batch": options.micro_batch,
        "completion_length": options.completion_length, "torch": torch.__version__,
        "transformers": _version("transformers"), "trl": _version("trl"),
        "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if on_gpu else None,
    })


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["direct", "trl"], default="direct")
    parser.add_argument("--steps", type=int, default=2, help="steps to run; the first warms up (default 2)")
    parser.add_argument("--shape", choices=["7b", "7b-mini"], default=None, help="default 7b (7b-mini with --small)")
    parser.add_argument("--text-layers", type=int, default=None, help="decoder layers (default: the shape's)")
    parser.add_argument("--vision-layers", type=int, default=None, help="vision blocks (default: the shape's)")
    parser.add_argument("--prompts", type=int, default=None, help="distinct prompts per step (default 2; 1 with --small)")
    parser.add_argument("--generations", type=int, default=None, help="completions per prompt (default 8; 4 with --small)")
    parser.add_argument("--completion-length", type=int, default=None, help="tokens per completion (256; 8 with --small)")
    parser.add_argument("--micro-batch", type=int, default=2, help="sequences per forward/backward pass")
    parser.add_argument("--image-size", type=int, default=None, help="square image side (840; 224 with --small)")
    parser.add_argument("--checkpointing", choices=["auto", "on", "off"], default="auto",
                        help="gradient checkpointing (auto: on a GPU, as the recipe)")
    parser.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA (r 64 on q/k/v/o)")
    parser.add_argument("--out", default="/tmp/grpo_step_gpu", help="scratch folder (tokenizer, images)")
    parser.add_argument("--cpu", action="store_true", help="run on CPU even where a GPU is present")
    parser.add_argument("--small", action="store_true", help="the 7b-mini shape and a small batch (CPU check)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    options = parser.parse_args(argv)
    small = options.small
    defaults = {"shape": "7b-mini" if small else "7b", "prompts": 1 if small else 2, "generations": 4 if small else 8,
                "completion_length": 8 if small else 256, "image_size": 224 if small else 840}
    for name, value in defaults.items():
        if getattr(options, name) is None:
            setattr(options, name, value)
    if options.steps < 1:
        parser.error("--steps must be >= 1")
    if (options.prompts * options.generations) % options.micro_batch:
        parser.error("--micro-batch must divide prompts x generations")
    try:
        result = run_trl(options) if options.engine == "trl" else run_direct(options)
    except ImportError as exc:
        print(f"grpo_step_gpu: {exc} (the {options.engine} engine needs it)", file=sys.stderr)
        return 2
    line = json.dumps(result)
    if options.json:
        options.json.write_text(json.dumps(result, indent=2))
    print(line)
    return 0 if all(math.isfinite(v) for v in result["phases_s"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
