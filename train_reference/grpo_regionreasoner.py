"""RegionReasoner GRPO reference trainer: an unmodified TRL ``GRPOTrainer`` with this project's rewards.

Reproduce the released run (Qwen2.5-VL-7B-Instruct, 4×H100, accelerate + DeepSpeed ZeRO-3, vLLM
colocated rollouts, 8 generations per prompt, 16 prompts per step, lr 1e-6, KL 0.01, entropy bonus
1e-3, completion length 2000)::

    accelerate launch --config_file train_reference/configs/accelerate_zero3_4gpu.yaml \\
        train_reference/grpo_regionreasoner.py --config train_reference/configs/regionreasoner_7b_4xh100.yaml

CPU smoke run (a tiny random Qwen2.5-VL built locally, 2 steps on the bundled sample bench)::

    python train_reference/grpo_regionreasoner.py --config train_reference/configs/cpu_smoke.yaml

The config file has five sections: ``model`` (``name_or_path`` or ``tiny: true``, dtype,
attention), ``data`` (``source``: a bench folder or the released training JSON; ``frame``;
``image_root``; ``limit``), ``rewards`` (``profile: released|paper``, ``alpha``, ``beta``,
``citation_tolerance``), ``multi_round`` (``enabled``) and ``grpo`` (any ``trl.GRPOConfig``
field). ``--output-dir`` and ``--max-steps`` override the matching ``grpo`` fields.

Multi-round rollouts (``multi_round.enabled: true``) go beyond the paper's single-turn RL: for a
turn that refers to an earlier turn, the policy first answers the earlier turn (greedy, through
the trainer's own generation backend, so vLLM when enabled), and its first predicted box replaces
the gold reference in the question before the group's completions are sampled; a turn whose
earlier answer has no box keeps the gold reference (upstream's fallback). This uses TRL's
experimental ``rollout_func`` hook; the rewards then score the question actually asked.

The trained policy is saved as a Hugging Face model folder (weights, processor, chat template)
in ``grpo.output_dir``; evaluate it with ``regiondial evaluate --model hf --preset
regionreasoner-7b --model-path <output_dir>`` (see ``train_reference/README.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import logging
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger("grpo_regionreasoner")

SECTIONS = ("model", "data", "rewards", "multi_round", "grpo", "constrained")
MODEL_KEYS = ("name_or_path", "tiny", "tiny_seed", "dtype", "attn_implementation", "min_pixels", "max_pixels")
DATA_KEYS = ("source", "frame", "image_root", "cache_dir", "limit")
REWARD_KEYS = ("profile", "alpha", "beta", "citation_tolerance", "hallucination_penalty")
MULTI_ROUND_KEYS = ("enabled",)
CONSTRAINED_KEYS = ("enabled", "max_objects", "box_step")
DTYPES = ("float32", "bfloat16", "float16", "auto")


class ConfigError(ValueError):
    """A training config that cannot work; the message says what to change."""


@dataclass
class TrainSettings:
    """A validated training config (see the module docstring for the file layout)."""

    model: dict[str, Any]
    data: dict[str, Any]
    rewards: dict[str, Any]
    multi_round: bool
    grpo: dict[str, Any]
    source_file: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def output_dir(self) -> Path:
        return Path(self.grpo["output_dir"])


def _check_keys(section: str, given: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for key in given:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; allowed: {list(allowed)}"
            raise ConfigError(f"unknown key {section}.{key}{hint}")


def parse_settings(
    raw: dict[str, Any], *, source_file: str | None = None, check_runtime: bool = True
) -> TrainSettings:
    """Validate a config mapping; every error names the key and what to set instead.

    With ``check_runtime`` the ``grpo`` section is also built into a ``GRPOConfig``, which checks
    it against this machine (bf16 needs a GPU); turn it off to check a GPU recipe on a CPU box.

    Raises:
        ConfigError: For unknown sections or keys, impossible combinations and bad values.
    """
    from dataclasses import fields

    from trl import GRPOConfig

    from regiondial_bench.rewards import RewardProfile

    if not isinstance(raw, dict):
        raise ConfigError("the training config must be a mapping with sections " + ", ".join(SECTIONS))
    _check_keys("config", raw, SECTIONS)
    model = dict(raw.get("model") or {})
    data = dict(raw.get("data") or {})
    rewards = dict(raw.get("rewards") or {})
    multi = raw.get("multi_round") or {}
    grpo = dict(raw.get("grpo") or {})
    _check_keys("model", model, MODEL_KEYS)
    _check_keys("data", data, DATA_KEYS)
    _check_keys("rewards", rewards, REWARD_KEYS)
    if isinstance(multi, bool):
        multi = {"enabled": multi}
    _check_keys("multi_round", multi, MULTI_ROUND_KEYS)
    grpo_fields = {f.name for f in fields(GRPOConfig)}
    _check_keys("grpo", grpo, tuple(sorted(grpo_fields)))

    if bool(model.get("tiny")) == bool(model.get("name_or_path")):
        raise ConfigError("set exactly one of model.name_or_path (Hub id or folder) and model.tiny: true")
    if model.get("dtype", "auto") not in DTYPES:
        raise ConfigError(f"model.dtype={model['dtype']!r}; choose one of {list(DTYPES)}")
    if not data.get("source"):
        raise ConfigError(
            "set data.source: a bench folder (with manifest.json) or the released training .json"
        )
    if data.get("frame", "squash-840") not in ("squash-840", "original"):
        raise ConfigError(f"data.frame={data['frame']!r}; choose 'squash-840' (as released) or 'original'")
    if "reward_weights" in grpo:
        raise ConfigError(
            "do not set grpo.reward_weights; set rewards.profile: paper with rewards.alpha/beta"
        )
    if "output_dir" not in grpo:
        raise ConfigError("set grpo.output_dir (where the trained Hugging Face model folder is written)")
    try:
        profile = RewardProfile(
            rewards.get("profile", "released"), **{k: v for k, v in rewards.items() if k != "profile"}
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"rewards: {exc}") from exc

    num_generations = grpo.get("num_generations", 8)
    if not isinstance(num_generations, int) or num_generations < 2:
        raise ConfigError(
            f"grpo.num_generations={num_generations!r}: GRPO compares completions within a group; set it to >= 2"
        )
    if grpo.get("use_cpu"):
        if grpo.get("bf16") or grpo.get("fp16"):
            raise ConfigError(
                "grpo.use_cpu is true: set grpo.bf16: false and grpo.fp16: false (CPU runs in float32)"
            )
        if grpo.get("use_vllm"):
            raise ConfigError("grpo.use_cpu is true: vLLM needs a GPU; set grpo.use_vllm: false")
    if grpo.get("use_vllm") and grpo.get("vllm_mode", "colocate") not in ("colocate", "server"):
        raise ConfigError(f"grpo.vllm_mode={grpo['vllm_mode']!r}; choose 'colocate' or 'server'")
    per_device = grpo.get("per_device_train_batch_size", 8)
    steps = grpo.get("steps_per_generation") or grpo.get("gradient_accumulation_steps", 1)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    generation_batch = grpo.get("generation_batch_size") or per_device * world * steps
    if generation_batch % num_generations:
        raise ConfigError(
            f"the generation batch ({generation_batch} = per_device_train_batch_size {per_device} x "
            f"{world} processes x {steps} steps) is not a multiple of num_generations={num_generations}; "
            "change per_device_train_batch_size or gradient_accumulation_steps so it divides evenly"
        )
    constrained = dict(raw.get("constrained") or {})
    _check_keys("constrained", constrained, CONSTRAINED_KEYS)
    if constrained.get("enabled") and data.get("frame", "squash-840") != "squash-840":
        raise ConfigError("constrained rollouts write coordinates in the 840x840 frame; set data.frame: squash-840")
    if check_runtime:
        try:
            GRPOConfig(**{**grpo, "report_to": "none", "output_dir": grpo["output_dir"]})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"grpo: GRPOConfig rejected the settings: {exc}") from exc
    return TrainSettings(
        model=model,
        data=data,
        rewards=dataclasses.asdict(profile),
        multi_round=bool(multi.get("enabled", False)),
        grpo=grpo,
        source_file=source_file,
        extra={"constrained": constrained} if constrained.get("enabled") else {},
    )


def load_settings(
    path: str | Path,
    *,
    output_dir: str | None = None,
    max_steps: int | None = None,
    check_runtime: bool = True,
) -> TrainSettings:
    """Read and validate a YAML config; ``output_dir``/``max_steps`` override ``grpo`` fields."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    raw.setdefault("grpo", {})
    if output_dir is not None:
        raw["grpo"]["output_dir"] = output_dir
    if max_steps is not None:
        raw["grpo"]["max_steps"] = max_steps
    return parse_settings(raw, source_file=str(path), check_runtime=check_runtime)


# --------------------------------------------------------------------------------------------
# Multi-round rollouts
# --------------------------------------------------------------------------------------------


def _user_message_text(prompt: list[dict[str, Any]]) -> str:
    for message in prompt:
        if message["role"] == "user":
            content = message["content"]
            if isinstance(content, str):
                return content
            return "".join(p.get("text", "") for p in content if p.get("type") == "text")
    raise ValueError("prompt has no user message")


def _with_user_text(prompt: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    out = []
    for message in prompt:
        if message["role"] == "user":
            content = message["content"]
            if isinstance(content, str):
                message = {**message, "content": text}
            else:
                message = {
                    **message,
                    "content": [{**p, "text": text} if p.get("type") == "text" else p for p in content],
                }
        out.append(message)
    return out


@contextmanager
def _greedy(trainer: Any):
    """Greedy decoding for the reference step, so every member of a group sees the same reference."""
    saved: list[tuple[Any, str, Any]] = []
    config = getattr(trainer, "generation_config", None)
    if config is not None:
        saved.append((config, "do_sample", config.do_sample))
        config.do_sample = False
    vllm = getattr(trainer, "vllm_generation", None)
    if vllm is not None:
        saved.append((vllm, "temperature", vllm.temperature))
        vllm.temperature = 0.0
    try:
        yield
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)


def make_multi_round_rollout(dataset: Any, template: str) -> Any:
    """A TRL ``rollout_func`` where the policy's own earlier answer fills the reference.

    Rows are recognised by their user text (which holds the gold reference), looked up in
    ``dataset`` (columns ``problem``, ``reference_problem``, ``reference_text``). Every process
    makes exactly two generation calls of equal size per step (reference, then the group), which
    keeps vLLM's collective calls aligned across ranks.
    """
    from regiondial_bench.protocol import format_box, parse_answer
    from regiondial_bench.training_data import user_text

    rows: dict[str, dict[str, str]] = {}
    for problem, ref_problem, ref_text in zip(
        dataset["problem"], dataset["reference_problem"], dataset["reference_text"], strict=True
    ):
        key = user_text(problem, template)
        entry = {"problem": problem, "reference_problem": ref_problem, "reference_text": ref_text}
        if key in rows and rows[key] != entry:
            # the same text with different earlier turns (rare): fall back to the gold reference
            rows[key] = {"problem": problem, "reference_problem": "", "reference_text": ""}
        else:
            rows[key] = entry

    def rollout(prompts: list, trainer: Any) -> dict[str, Any]:
        num_generations = trainer.num_generations if trainer.model.training else trainer.num_generations_eval
        infos = [rows.get(_user_message_text(p)) for p in prompts]
        reference_prompts = [
            _with_user_text(p, user_text(info["reference_problem"], template))
            if info and info["reference_problem"]
            else p
            for p, info in zip(prompts, infos, strict=True)
        ]
        with _greedy(trainer):
            ids, images, fields_ = trainer._tokenize_prompts(reference_prompts)
            reference_ids, _ = trainer._generate_single_turn(ids, images, fields_, num_generations)
        reference_answers = trainer.processing_class.batch_decode(reference_ids, skip_special_tokens=True)

        problems, sources, final_prompts = [], [], []
        for prompt, info, answer in zip(prompts, infos, reference_answers, strict=True):
            if not info:
                problems.append(None)
                sources.append("unknown-row")
                final_prompts.append(prompt)
                continue
            problem = info["problem"]
            source = "none"
            if info["reference_problem"]:
                parsed = parse_answer(answer, require_answer_tag=True)
                if parsed.regions:
                    predicted = "bbox=" + format_box(parsed.regions[0].box)
                    problem = problem.replace(info["reference_text"], predicted)
                    source = "predicted"
                else:
                    source = "gold-fallback"
            problems.append(problem)
            sources.append(source)
            final_prompts.append(_with_user_text(prompt, user_text(problem, template)))

        ids, images, fields_ = trainer._tokenize_prompts(final_prompts)
        completion_ids, logprobs = trainer._generate_single_turn(ids, images, fields_, num_generations)
        out: dict[str, Any] = {
            "prompt_ids": ids,
            "completion_ids": completion_ids,
            "logprobs": logprobs,
            "reference_source": sources,
        }
        if all(p is not None for p in problems):
            out["problem"] = problems  # the rewards score the question actually asked
        return out

    return rollout


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------


def _torch_dtype(name: str) -> Any:
    import torch

    return "auto" if name == "auto" else getattr(torch, name)


def prepare_model_path(settings: TrainSettings) -> str:
    """The model to train: a Hub id / folder, or a tiny random Qwen2.5-VL built in the output dir."""
    if settings.model.get("tiny"):
        from regiondial_bench.testing import build_tiny_qwen2_5_vl

        return str(
            build_tiny_qwen2_5_vl(
                settings.output_dir / "tiny-base", seed=int(settings.model.get("tiny_seed", 0))
            )
        )
    return str(settings.model["name_or_path"])


def build_trainer(settings: TrainSettings, *, callbacks: list | None = None) -> Any:
    """An unmodified ``trl.GRPOTrainer`` with the configured model, data and reward components."""
    from transformers import AutoModelForImageTextToText
    from trl import GRPOConfig, GRPOTrainer

    from regiondial_bench.adapters.processors import load_vlm_processor
    from regiondial_bench.rewards import RewardProfile, reward_functions
    from regiondial_bench.training_data import TRAINING_TEMPLATE, load_training_dataset

    profile = RewardProfile(**settings.rewards)
    model_path = prepare_model_path(settings)
    processor_options = {k: settings.model[k] for k in ("min_pixels", "max_pixels") if k in settings.model}
    processor = load_vlm_processor(model_path, **processor_options)
    processor.tokenizer.padding_side = "left"
    model_kwargs: dict[str, Any] = {"dtype": _torch_dtype(settings.model.get("dtype", "auto"))}
    if settings.model.get("attn_implementation"):
        model_kwargs["attn_implementation"] = settings.model["attn_implementation"]
    model = AutoModelForImageTextToText.from_pretrained(model_path, **model_kwargs)

    data = settings.data
    dataset = load_training_dataset(
        data["source"],
        frame=data.get("frame", "squash-840"),
        image_root=data.get("image_root"),
        cache_dir=data.get("cache_dir") or settings.output_dir / "train_images_840",
        limit=data.get("limit"),
    )
    grpo = dict(settings.grpo)
    constrained = settings.extra.get("constrained")
    grammar = rollout_grammar(constrained, grpo) if constrained else None
    if grammar is not None and grpo.get("use_vllm"):
        # TRL turns a structured_outputs dict into vLLM's StructuredOutputsParams
        grpo["generation_kwargs"] = {**(grpo.get("generation_kwargs") or {}), "structured_outputs": {"grammar": grammar.ebnf}}
    args = GRPOConfig(**grpo, reward_weights=profile.weights())
    if grammar is not None and not grpo.get("use_vllm"):
        constrain_generate(model, processor, grammar)
    rollout = make_multi_round_rollout(dataset, TRAINING_TEMPLATE) if settings.multi_round else None
    return GRPOTrainer(
        model=model,
        reward_funcs=reward_functions(profile),
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        callbacks=callbacks,
        rollout_func=rollout,
    )


def rollout_grammar(constrained: dict[str, Any], grpo: dict[str, Any]) -> Any:
    """The answer grammar of the training prompt (840x840 frame, the completion budget)."""
    from trl import GRPOConfig

    from regiondial_bench.adapters.presets import get_preset
    from regiondial_bench.grammar import GrammarError, response_grammar
    from regiondial_bench.training_data import TRAINING_TEMPLATE

    budget = grpo.get("max_completion_length") or GRPOConfig.max_completion_length
    preset = get_preset("regionreasoner-7b", prompt_template=TRAINING_TEMPLATE, max_new_tokens=int(budget))
    try:
        return response_grammar(preset, (840, 840), max_objects=constrained.get("max_objects"),
                                box_step=constrained.get("box_step"))
    except GrammarError as exc:
        raise ConfigError(f"constrained: {exc} (grpo.max_completion_length)") from exc


def constrain_generate(model: Any, processor: Any, grammar: Any) -> None:
    """Make ``model.generate`` (the transformers rollouts) decode under ``grammar``.

    Each call gets a fresh xgrammar processor with one matcher per row; the grammar itself is
    compiled once. The trainer stays an unmodified ``GRPOTrainer``: only the policy's
    ``generate`` is wrapped.
    """
    from regiondial_bench.adapters.constrained import HFGrammars

    tokenizer = processor.tokenizer
    vocab = tokenizer.get_vocab()
    stops = [vocab[t] for t in ("<|im_end|>", "<|endoftext|>") if t in vocab] or [tokenizer.eos_token_id]
    grammars = HFGrammars(tokenizer, model.get_output_embeddings().weight.shape[0], stops)
    grammars.compile(grammar)
    unconstrained = model.generate

    def generate(*args: Any, **kwargs: Any) -> Any:
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        rows = input_ids.shape[0]
        processors = list(kwargs.pop("logits_processor", None) or [])
        processors.append(grammars.logits_processor([grammar] * rows))
        return unconstrained(*args, logits_processor=processors, **kwargs)

    model.generate = generate


def _save_processor(processor: Any, out: Path) -> None:
    """Save the processor; without a video processor (no torchvision) save its parts by hand."""
    if getattr(processor, "video_processor", None) is not None:
        processor.save_pretrained(str(out))
        return
    processor.tokenizer.save_pretrained(str(out))
    processor.image_processor.save_pretrained(str(out))
    if processor.chat_template:
        (out / "chat_template.jinja").write_text(processor.chat_template)
    cls = type(processor)
    name = cls.__mro__[1].__name__ if cls.__name__.startswith("ImageOnly") else cls.__name__
    (out / "processor_config.json").write_text(json.dumps({"processor_class": name}) + "\n")


def save_policy(trainer: Any, settings: TrainSettings) -> Path:
    """Save the policy as a Hugging Face model folder the ``hf`` adapter loads, plus provenance."""
    import regiondial_bench

    out = settings.output_dir
    processor = trainer.processing_class
    trainer.processing_class = None  # saved by _save_processor (image-only processors cannot save themselves)
    try:
        trainer.save_model(str(out))
    finally:
        trainer.processing_class = processor
    if trainer.accelerator.is_main_process:
        _save_processor(processor, out)
        provenance = {
            "trainer": "train_reference/grpo_regionreasoner.py",
            "regiondial_bench": regiondial_bench.__version__,
            "config_file": settings.source_file,
            "model": settings.model,
            "data": settings.data,
            "rewards": settings.rewards,
            "multi_round": settings.multi_round,
            "grpo": settings.grpo,
            "global_step": trainer.state.global_step,
            "suggested_preset": "regionreasoner-7b",
        }
        (out / "regiondial_training.json").write_text(json.dumps(provenance, indent=2, default=str) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring for the launch commands)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="YAML training config (train_reference/configs/)")
    parser.add_argument("--output-dir", help="override grpo.output_dir")
    parser.add_argument("--max-steps", type=int, help="override grpo.max_steps")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        settings = load_settings(options.config, output_dir=options.output_dir, max_steps=options.max_steps)
    except ConfigError as exc:
        print(f"error: {options.config}: {exc}", file=sys.stderr)
        return 2
    trainer = build_trainer(settings)
    trainer.train()
    out = save_policy(trainer, settings)
    logger.info("saved the trained policy to %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
