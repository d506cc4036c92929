"""RegionReasoner GRPO reference trainer: TRL's ``GRPOTrainer`` with this project's rewards.

Reproduce the released run (Qwen2.5-VL-7B-Instruct, 4×H100, accelerate + DeepSpeed ZeRO-3, vLLM
colocated rollouts, 8 generations per prompt, 16 prompts per step, lr 1e-6, KL 0.01, entropy bonus
1e-3, completion length 2000)::

    accelerate launch --config_file train_reference/configs/accelerate_zero3_4gpu.yaml \\
        train_reference/grpo_regionreasoner.py --config train_reference/configs/regionreasoner_7b_4xh100.yaml

CPU smoke run (a tiny random Qwen2.5-VL built locally, 2 steps on the bundled sample bench)::

    python train_reference/grpo_regionreasoner.py --config train_reference/configs/cpu_smoke.yaml

The config file has these sections: ``model`` (``name_or_path`` or ``tiny: true``, dtype,
attention), ``data`` (``source``: a bench folder or the released training JSON; ``frame``;
``image_root``; ``cache_dir``; ``limit``), ``rewards`` (``profile: released|paper``, ``alpha``,
``beta``, ``citation_tolerance``, ``hallucination_penalty``), ``multi_round`` (``enabled``,
``depth``), ``evaluation`` (optional, :mod:`grpo_evaluation`), ``constrained`` (optional), ``lora``
(optional ``peft.LoraConfig`` fields) and ``grpo`` (any ``trl.GRPOConfig`` field). Any
``GRPOConfig`` field can also be given on the command line (``--learning_rate 2e-6``);
``--resume-from-checkpoint`` [latest|PATH] continues a killed run with its optimizer, scheduler
and data position.

Multi-round rollouts (``multi_round.enabled: true``, :mod:`grpo_multi_round`) go beyond the
paper's single-turn RL: before TRL builds a batch, the policy answers the earlier turns its rows
refer to (``depth`` levels down each reference chain, greedy, through the trainer's own
generation backend), and its boxes replace the gold references in the questions actually asked.
An ``evaluation`` section scores the live policy with the harness at every checkpoint and writes
a run folder per evaluation (:mod:`grpo_evaluation`).

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent) not in sys.path:  # the sibling modules below, however this file is loaded
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from grpo_evaluation import (  # noqa: E402
    UNCONSTRAINED_MARK,
    EvaluationSettings,
    best_evaluation,
    parse_evaluation,
    scores_to_log,
)
from grpo_multi_round import check_trl_private_api, multi_round_trainer_class  # noqa: E402

__all__ = ["best_evaluation", "scores_to_log", "check_trl_private_api"]  # re-exported for users and tests

logger = logging.getLogger("grpo_regionreasoner")

SECTIONS = ("model", "data", "rewards", "multi_round", "lora", "grpo", "constrained", "evaluation")
MODEL_KEYS = ("name_or_path", "tiny", "tiny_seed", "dtype", "attn_implementation", "min_pixels", "max_pixels")
DATA_KEYS = ("source", "frame", "image_root", "cache_dir", "limit")
REWARD_KEYS = ("profile", "alpha", "beta", "citation_tolerance", "hallucination_penalty")
MULTI_ROUND_KEYS = ("enabled", "depth")
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
    multi_round_depth: int | None = 1
    evaluation: EvaluationSettings | None = None
    lora: dict[str, Any] = field(default_factory=dict)
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

    from regiondial_bench.training.rewards import RewardProfile

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
    lora = dict(raw.get("lora") or {})
    if lora:
        try:
            from peft import LoraConfig
        except ImportError as exc:
            raise ConfigError("the lora section needs peft: pip install 'regiondial-bench[train]'") from exc
        _check_keys("lora", lora, tuple(sorted(f.name for f in fields(LoraConfig) if f.init)))
        try:
            LoraConfig(**lora)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"lora: peft.LoraConfig rejected the settings: {exc}") from exc

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
    if grpo.get("use_vllm") and grpo.get("vllm_mode") == "server" and not grpo.get("vllm_server_base_url"):
        host = str(grpo.get("vllm_server_host", "0.0.0.0"))
        nodes_world = int(os.environ.get("WORLD_SIZE", "1")) > int(os.environ.get("LOCAL_WORLD_SIZE", "0") or 0) > 0
        if nodes_world and host in ("0.0.0.0", "localhost", "127.0.0.1"):
            raise ConfigError(
                f"grpo.vllm_server_host={host!r} on a multi-node run: every node would look for the vLLM "
                "server on itself; pass --vllm_server_host <address of the node running trl vllm-serve>"
            )
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
    if grpo.get("resume_from_checkpoint") and grpo.get("save_only_model"):
        raise ConfigError(
            "grpo.resume_from_checkpoint is set but grpo.save_only_model is true: such checkpoints hold no "
            "optimizer or scheduler state; set grpo.save_only_model: false"
        )
    constrained = dict(raw.get("constrained") or {})
    _check_keys("constrained", constrained, CONSTRAINED_KEYS)
    if constrained.get("enabled") and data.get("frame", "squash-840") != "squash-840":
        raise ConfigError("constrained rollouts write coordinates in the 840x840 frame; set data.frame: squash-840")
    try:
        evaluation = parse_evaluation(raw.get("evaluation"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
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
        multi_round_depth=_multi_round_depth(multi.get("depth", 1)),
        evaluation=evaluation,
        grpo=grpo,
        source_file=source_file,
        lora=lora,
        extra={"constrained": constrained} if constrained.get("enabled") else {},
    )


def _multi_round_depth(value: Any) -> int | None:
    """``multi_round.depth``: an integer >= 1, or ``full`` (whole reference chains)."""
    if value in ("full", None):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"multi_round.depth={value!r}: give how many referenced turns the policy answers "
                          "(1 = the referenced turn only, 2 = that turn's own reference too, ...) or 'full'")
    return value


def load_settings(
    path: str | Path,
    *,
    output_dir: str | None = None,
    max_steps: int | None = None,
    overrides: dict[str, Any] | None = None,
    check_runtime: bool = True,
) -> TrainSettings:
    """Read and validate a YAML config; ``overrides`` (and ``output_dir``/``max_steps``) replace
    ``grpo`` fields (see :func:`grpo_overrides`)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError("the training config must be a mapping with sections " + ", ".join(SECTIONS))
    if not isinstance(raw.setdefault("grpo", {}), dict):
        raise ConfigError("the grpo section must be a mapping of trl.GRPOConfig fields")
    raw["grpo"].update(overrides or {})
    if output_dir is not None:
        raw["grpo"]["output_dir"] = output_dir
    if max_steps is not None:
        raw["grpo"]["max_steps"] = max_steps
    return parse_settings(raw, source_file=str(path), check_runtime=check_runtime)


def grpo_overrides(args: list[str]) -> dict[str, Any]:
    """``trl.GRPOConfig`` fields given on the command line, typed by transformers'
    ``HfArgumentParser`` (the parser TRL's ``TrlParser`` builds on): ``--learning_rate 2e-6``,
    ``--learning-rate 2e-6``, ``--bf16 false``, ``--vllm_mode server``. Only the fields actually
    given are returned; they replace the config's ``grpo`` values.

    Raises:
        ConfigError: An option that is no GRPOConfig field, or a value of the wrong type.
    """
    from transformers import HfArgumentParser
    from trl import GRPOConfig

    parser = HfArgumentParser(GRPOConfig, add_help=False, exit_on_error=False)
    for action in parser._actions:  # report only what was given, not GRPOConfig's defaults
        action.default = argparse.SUPPRESS
        action.required = False
    try:
        namespace, unknown = parser.parse_known_args(args)
    except (argparse.ArgumentError, ValueError) as exc:
        raise ConfigError(f"command line: {exc}") from exc
    if unknown:
        names = sorted({a.lstrip("-").split("=")[0].replace("-", "_") for a in unknown if a.startswith("--")})
        close = [difflib.get_close_matches(n, [f.name for f in dataclasses.fields(GRPOConfig)], n=1) for n in names]
        hints = "".join(f"; --{n}: did you mean --{c[0]}?" for n, c in zip(names, close, strict=True) if c)
        raise ConfigError(f"command line: {' '.join(unknown)} is not a trl.GRPOConfig field{hints}")
    return vars(namespace)


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------


def _torch_dtype(name: str) -> Any:
    import torch

    return "auto" if name == "auto" else getattr(torch, name)


def prepare_model_path(settings: TrainSettings) -> str:
    """The model to train: a Hub id / folder, or a tiny random Qwen2.5-VL built in the output dir.

    The tiny model is built by the main process only, while the other ranks wait (they would
    otherwise rewrite ``tiny-base`` while another rank is loading it).
    """
    if not settings.model.get("tiny"):
        return str(settings.model["name_or_path"])
    from accelerate import PartialState

    from regiondial_bench.testing import build_tiny_qwen2_5_vl

    folder = settings.output_dir / "tiny-base"
    state = PartialState()
    with state.main_process_first():
        if state.is_main_process:
            build_tiny_qwen2_5_vl(folder, seed=int(settings.model.get("tiny_seed", 0)))
    return str(folder)


def check_launch(environ: dict[str, str] | None = None) -> str | None:
    """A warning when ``accelerate launch`` was asked for several processes but started one.

    ``accelerate launch --num_processes N --cpu`` (N > 1) runs its single-process launcher: it sets
    ``MASTER_ADDR`` for the processes it was asked for, but starts one, without ``WORLD_SIZE``.

    >>> check_launch({"ACCELERATE_MIXED_PRECISION": "no", "MASTER_ADDR": "127.0.0.1"}) is not None
    True
    >>> check_launch({"ACCELERATE_MIXED_PRECISION": "no", "MASTER_ADDR": "x", "WORLD_SIZE": "2"}) is None
    True
    """
    env = os.environ if environ is None else environ
    launched_by_accelerate = "ACCELERATE_MIXED_PRECISION" in env
    if launched_by_accelerate and "MASTER_ADDR" in env and "WORLD_SIZE" not in env:
        return (
            "accelerate launch was asked for more than one process but started only this one (its --cpu "
            "launcher runs a single process): training continues in ONE process. For several CPU processes "
            "use `torchrun --nproc-per-node N train_reference/grpo_regionreasoner.py --config ...`; on GPUs "
            "drop --cpu (or use --multi_gpu / an accelerate config file)."
        )
    return None


def build_trainer(settings: TrainSettings, *, callbacks: list | None = None) -> Any:
    """An unmodified ``trl.GRPOTrainer`` with the configured model, data and reward components."""
    from transformers import AutoModelForImageTextToText
    from trl import GRPOConfig, GRPOTrainer

    from regiondial_bench.adapters.processors import load_vlm_processor
    from regiondial_bench.training.data import TRAINING_TEMPLATE, load_training_dataset
    from regiondial_bench.training.rewards import RewardProfile, reward_functions

    profile = RewardProfile(**settings.rewards)
    evaluation_bench = None
    if settings.evaluation is not None:  # before the model loads: a wrong bench fails in seconds
        from regiondial_bench.bench.specs import load_bench

        try:
            evaluation_bench = load_bench(settings.evaluation.bench, images=settings.evaluation.images)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"evaluation.bench: {exc}") from exc
    model_path = prepare_model_path(settings)
    processor_options = {k: settings.model[k] for k in ("min_pixels", "max_pixels") if k in settings.model}
    processor = load_vlm_processor(model_path, **processor_options)
    processor.tokenizer.padding_side = "left"
    if getattr(processor, "video_processor", None) is None:
        # an image-only processor (no torchvision) cannot save itself; checkpoints save it by parts
        processor.save_pretrained = lambda folder, *args, **kwargs: _save_processor(processor, Path(folder))
    model_kwargs: dict[str, Any] = {"dtype": _torch_dtype(settings.model.get("dtype", "auto"))}
    if settings.model.get("attn_implementation"):
        model_kwargs["attn_implementation"] = settings.model["attn_implementation"]
    model = AutoModelForImageTextToText.from_pretrained(model_path, **model_kwargs)

    from accelerate import PartialState

    data = settings.data
    # the main process squashes the images into the cache first; the other ranks then find them
    # there (each file is written atomically, so even a shared cache never shows a partial image)
    with PartialState().main_process_first():
        dataset = load_training_dataset(
            data["source"],
            frame=data.get("frame", "squash-840"),
            image_root=data.get("image_root"),
            cache_dir=data.get("cache_dir") or settings.output_dir / "train_images_840",
            limit=data.get("limit"),
        )
    peft_config = None
    if settings.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(**{"task_type": "CAUSAL_LM", **settings.lora})
    grpo = dict(settings.grpo)
    constrained = settings.extra.get("constrained")
    grammar = rollout_grammar(constrained, grpo) if constrained else None
    if grammar is not None and grpo.get("use_vllm"):
        # TRL turns a structured_outputs dict into vLLM's StructuredOutputsParams
        grpo["generation_kwargs"] = {**(grpo.get("generation_kwargs") or {}), "structured_outputs": {"grammar": grammar.ebnf}}
    args = GRPOConfig(**grpo, reward_weights=profile.weights())
    if grammar is not None and not grpo.get("use_vllm"):
        constrain_generate(model, processor, grammar)
    trainer_cls = GRPOTrainer
    if settings.multi_round:
        check_trl_private_api()
        trainer_cls = multi_round_trainer_class()
        trainer_cls.template = TRAINING_TEMPLATE
        trainer_cls.reference_depth = settings.multi_round_depth
    if settings.multi_round and not any(dataset["reference_text"]):
        logger.warning("multi_round is enabled but no training sample refers to an earlier turn (the released "
                       "training JSON has no turn structure): no reference is ever substituted, and no extra "
                       "generation pass runs")
    trainer = trainer_cls(
        model=model,
        reward_funcs=reward_functions(profile),
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        callbacks=callbacks,
        peft_config=peft_config,
    )
    if settings.evaluation is not None:
        from grpo_evaluation import callback_class

        trainer.add_callback(callback_class()(trainer, settings.evaluation, evaluation_bench))
    return trainer


def resolve_checkpoint(value: str | bool | None, output_dir: str | Path) -> str | None:
    """``grpo.resume_from_checkpoint`` as a checkpoint folder: ``latest`` (or ``true``) means the
    newest ``checkpoint-<step>`` in ``output_dir``; a path must be a checkpoint folder.

    Raises:
        ConfigError: ``latest`` without any checkpoint, or a path that is not a checkpoint folder.
    """
    from transformers.trainer_utils import get_last_checkpoint

    if value in (None, False, "", "none", "false", "False"):
        return None
    if value is True or str(value).lower() in ("latest", "last", "true"):
        folder = Path(output_dir)
        last = get_last_checkpoint(str(folder)) if folder.is_dir() else None
        if last is None:
            raise ConfigError(
                f"--resume-from-checkpoint latest: no checkpoint-<step> folder in {folder}; "
                "train without it first, or give a checkpoint path"
            )
    else:
        last = str(value)
    path = Path(last)
    if not (path / "trainer_state.json").is_file():
        raise ConfigError(f"--resume-from-checkpoint {path}: not a checkpoint folder (no trainer_state.json)")
    if not (path / "optimizer.pt").is_file() and not any(path.glob("global_step*")):
        raise ConfigError(
            f"--resume-from-checkpoint {path}: the checkpoint holds no optimizer state (saved with "
            "grpo.save_only_model: true); resuming would restart AdamW from zero"
        )
    return str(path)


def train(trainer: Any, resume: str | None = None) -> Any:
    """``trainer.train()``, resuming from the checkpoint folder ``resume`` when given.

    The Trainer restores optimizer, scheduler, RNG state and the data position itself. Its weight
    loading does not map the key layout Qwen2.5-VL checkpoints are saved in (``visual.*`` and
    ``model.*`` on disk, ``model.visual.*`` / ``model.language_model.*`` in memory; transformers
    5.x loads nothing and says so only at INFO level), so outside DeepSpeed (whose engine restores
    its own shards) the weights are loaded here first, through ``from_pretrained``'s own mapping,
    and checked key for key.
    """
    if resume and not trainer.is_deepspeed_enabled and not hasattr(trainer.model, "peft_config"):
        from transformers import AutoModelForImageTextToText

        saved = AutoModelForImageTextToText.from_pretrained(resume, dtype=trainer.model.dtype)
        missing, unexpected = trainer.model.load_state_dict(saved.state_dict(), strict=False)
        if missing or unexpected:
            raise RuntimeError(
                f"checkpoint {resume} does not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}"
            )
        del saved
    return trainer.train(resume_from_checkpoint=resume)


def rollout_grammar(constrained: dict[str, Any], grpo: dict[str, Any]) -> Any:
    """The answer grammar of the training prompt (840x840 frame, the completion budget)."""
    from trl import GRPOConfig

    from regiondial_bench.adapters.presets import get_preset
    from regiondial_bench.grammar import GrammarError, response_grammar
    from regiondial_bench.training.data import TRAINING_TEMPLATE

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
    setattr(model, UNCONSTRAINED_MARK, unconstrained)  # evaluation inside training decodes freely


def _save_processor(processor: Any, out: Path) -> None:
    """Save the processor; without a video processor (no torchvision) save its parts by hand."""
    if getattr(processor, "video_processor", None) is not None:
        processor.save_pretrained(str(out))
        return
    out.mkdir(parents=True, exist_ok=True)
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
    model = trainer.accelerator.unwrap_model(trainer.model)
    zero3 = getattr(trainer.accelerator.state, "deepspeed_plugin", None) is not None and (
        trainer.accelerator.state.deepspeed_plugin.zero_stage == 3
    )
    if settings.lora and hasattr(model, "merge_and_unload") and not zero3:
        # LoRA: the adapter in lora_adapter/, the merged weights as the model folder the hf adapter loads
        if trainer.accelerator.is_main_process:
            model.save_pretrained(str(out / "lora_adapter"))
            model.merge_and_unload().save_pretrained(str(out))
        trainer.accelerator.wait_for_everyone()
    else:
        if settings.lora:
            logger.warning("LoRA under ZeRO-3: %s holds the adapter only; merge it with peft offline", out)
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
            "multi_round_depth": settings.multi_round_depth,
            "evaluation": dataclasses.asdict(settings.evaluation) if settings.evaluation else None,
            "lora": settings.lora,
            "grpo": settings.grpo,
            "global_step": trainer.state.global_step,
            "suggested_preset": "regionreasoner-7b",
        }
        (out / "regiondial_training.json").write_text(json.dumps(provenance, indent=2, default=str) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring for the launch commands).

    Any ``trl.GRPOConfig`` field can follow the options below (``--learning_rate 2e-6``); see
    :func:`grpo_overrides`.
    """
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Any trl.GRPOConfig field may follow, e.g. --learning_rate 2e-6 --save_steps 100 --bf16 false.",
    )
    parser.add_argument("--config", required=True, help="YAML training config (train_reference/configs/)")
    parser.add_argument("--output-dir", "--output_dir", help="override grpo.output_dir")
    parser.add_argument("--max-steps", "--max_steps", type=int, help="override grpo.max_steps")
    parser.add_argument(
        "--resume-from-checkpoint",
        "--resume_from_checkpoint",
        nargs="?",
        const="latest",
        help="resume a killed run: 'latest' (the default with no value: the newest checkpoint-<step> in "
        "grpo.output_dir) or a checkpoint folder; model, optimizer, scheduler, RNG and data position resume",
    )
    options, rest = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    launch_warning = check_launch()
    if launch_warning:
        print(f"warning: {launch_warning}", file=sys.stderr)
    try:
        overrides = grpo_overrides(rest)
        if options.resume_from_checkpoint is not None:
            overrides["resume_from_checkpoint"] = options.resume_from_checkpoint
        settings = load_settings(
            options.config, output_dir=options.output_dir, max_steps=options.max_steps, overrides=overrides
        )
        resume = resolve_checkpoint(settings.grpo.get("resume_from_checkpoint"), settings.output_dir)
        if resume:
            logger.info("resuming from %s", resume)
        trainer = build_trainer(settings)
    except ConfigError as exc:
        print(f"error: {options.config}: {exc}", file=sys.stderr)
        return 2
    train(trainer, resume)
    out = save_policy(trainer, settings)
    if trainer.accelerator.is_main_process:
        logger.info("saved the trained policy to %s", out)
        best = best_evaluation(out)
        if best is not None:
            logger.info("best RegionDial evaluation by AP50: step %d (AP50 %s), %s", best["step"], best["ap50"],
                        best["folder"])
    return 0


# the trainer's optional dependencies and the extra that installs them (pyproject.toml)
_EXTRA_OF = {"trl": "train", "peft": "train", "datasets": "train", "spacy": "train", "transformers": "train",
             "accelerate": "train", "torch": "train", "xgrammar": "train"}


def _main_naming_missing_extras(argv: list[str] | None = None) -> int:
    """:func:`main`, with one line naming the extra to install when a dependency is missing."""
    try:
        return main(argv)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").partition(".")[0]
        if top not in _EXTRA_OF:
            raise
        hint = "; torch is installed separately (see the README)" if top == "torch" else ""
        print(f"error: the trainer needs {top!r}, which is not installed: "
              f"pip install 'regiondial-bench[{_EXTRA_OF[top]}]'{hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(_main_naming_missing_extras())
