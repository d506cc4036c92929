"""Evaluation inside GRPO training: the live policy, scored by the harness itself, one run folder per evaluation.

A TRL/transformers ``TrainerCallback`` that, at every checkpoint save (or every ``steps`` steps)
and at the end of training, wraps the policy being trained in the ``hf`` adapter
(:meth:`regiondial_bench.adapters.hf.HFAdapter.from_components`) and runs
:func:`regiondial_bench.api.evaluate` on a bench (or its first ``limit`` dialogues), with the
same runner, reference propagation and metrics as ``regiondial evaluate``. Each evaluation
writes a complete run folder, ``<output_dir>/evaluations/step-<N>/``, so its ``results.json`` is
what ``regiondial score`` of that folder gives and the folder can be reported, compared and
submitted like any other run. Per-round AP50 and gIoU go to the trainer's logger (console,
wandb, ``trainer_state.json``) as ``regiondial/<metric>/R<k>``, and one line per evaluation is
appended to ``evaluations/summary.jsonl``, so the best checkpoint is chosen with the numbers the
leaderboard uses.

With several processes every rank evaluates one shard of the bench (``step-<N>.shards/
shard-I-of-N``) inside TRL's ``unwrap_model_for_generation`` (ZeRO-3 parameters gathered, as TRL
does for its own transformers rollouts) and the main process merges them with
:func:`regiondial_bench.api.merge`. Decoding is greedy and unconstrained, as the leaderboard's
``hf`` runs are, even when the rollouts are constrained (``evaluation.constrained: true``
decodes under the preset's grammar instead).
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger("grpo_regionreasoner")

EVALUATION_KEYS = ("bench", "images", "steps", "limit", "reference_mode", "batch_size", "preset",
                   "max_new_tokens", "bootstrap", "at_end", "constrained")
UNCONSTRAINED_MARK = "_regiondial_unconstrained_generate"
"""Attribute :func:`grpo_regionreasoner.constrain_generate` leaves on a module whose ``generate`` it wrapped."""


@dataclass(frozen=True)
class EvaluationSettings:
    """The ``evaluation`` section of a training config.

    Attributes:
        bench: A bench spec as ``regiondial evaluate --bench`` takes it (``sample``, a folder, a
            released file, ``hf:...``).
        images: Image folder for a question-file bench.
        steps: Evaluate every this many optimizer steps; None (default): at every checkpoint save.
        limit: Evaluate only the first ``limit`` dialogues (a fixed subset, the same every time).
        reference_mode: ``predicted`` (default, the leaderboard's), ``upstream``, ``gold``, ...
        batch_size: Turns per generation call.
        preset: The ``hf`` preset that renders prompts and reads answers (the training frame is
            ``regionreasoner-7b``'s 840x840 squash).
        max_new_tokens: Overrides the preset's budget (small for CPU smoke runs).
        bootstrap: Bootstrap resamples for the confidence intervals (0: none).
        at_end: Also evaluate the final policy.
        constrained: Decode under the preset's answer grammar.
    """

    bench: str
    images: str | None = None
    steps: int | None = None
    limit: int | None = None
    reference_mode: str = "predicted"
    batch_size: int = 16
    preset: str = "regionreasoner-7b"
    max_new_tokens: int | None = None
    bootstrap: int = 1000
    at_end: bool = True
    constrained: bool = False

    def adapter_options(self) -> dict[str, Any]:
        """The ``hf`` adapter options this evaluation passes (``HFAdapter.from_components``)."""
        options: dict[str, Any] = {"preset": self.preset, "batch_size": self.batch_size}
        if self.max_new_tokens is not None:
            options["max_new_tokens"] = self.max_new_tokens
        if self.constrained:
            options["constrained"] = True
        return options

    def run_config(self, model_label: str) -> Any:
        """The :class:`~regiondial_bench.schema.RunConfig` recorded in each evaluation's ``run.json``."""
        from regiondial_bench.schema import RunConfig

        return RunConfig(adapter="hf", adapter_options={**self.adapter_options(), "model": model_label},
                         reference_mode=self.reference_mode, batch_size=self.batch_size, limit=self.limit)


def parse_evaluation(raw: Any) -> EvaluationSettings | None:
    """Validate the ``evaluation`` section (None or ``{}``: no evaluation during training).

    Raises:
        ValueError: An unknown key, a missing bench or a value of the wrong type or range (the
            message names the key).
    """
    import difflib

    from pydantic import ValidationError

    if not raw:
        return None
    if not isinstance(raw, dict):
        raise ValueError("the evaluation section must be a mapping (bench, steps, limit, ...)")
    for key in raw:
        if key not in EVALUATION_KEYS:
            close = difflib.get_close_matches(key, EVALUATION_KEYS, n=1)
            raise ValueError(f"unknown key evaluation.{key}" + (f"; did you mean {close[0]!r}?" if close else
                                                                f"; allowed: {list(EVALUATION_KEYS)}"))
    if not isinstance(raw.get("bench"), str) or not raw["bench"]:
        raise ValueError("set evaluation.bench: the bench to evaluate on (a --bench spec, e.g. a bench folder)")
    for key in ("steps", "limit", "max_new_tokens"):
        value = raw.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"evaluation.{key}={value!r}: give an integer >= 1 (or leave it out)")
    for key in ("batch_size", "bootstrap"):
        value = raw.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if key == "batch_size" else 0):
            raise ValueError(f"evaluation.{key}={value!r}: give an integer >= {1 if key == 'batch_size' else 0}")
    for key in ("at_end", "constrained"):
        if not isinstance(raw.get(key, False), bool):
            raise ValueError(f"evaluation.{key}={raw[key]!r}: give true or false")
    settings = EvaluationSettings(**raw)
    try:
        settings.run_config("policy")
    except ValidationError as exc:
        raise ValueError(f"evaluation: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from exc
    from regiondial_bench.adapters.base import AdapterError
    from regiondial_bench.adapters.presets import get_preset

    try:
        get_preset(settings.preset)
    except (AdapterError, KeyError, ValueError) as exc:
        raise ValueError(f"evaluation.preset: {exc}") from exc
    return settings


@contextmanager
def unconstrained(model: Any):
    """Undo a rollout grammar on ``model.generate`` for the duration (evaluation decodes freely)."""
    wrapped = [m for m in model.modules() if UNCONSTRAINED_MARK in vars(m)]
    saved = [(m, vars(m)["generate"]) for m in wrapped if "generate" in vars(m)]
    for module, _ in saved:
        module.generate = getattr(module, UNCONSTRAINED_MARK)
    try:
        yield
    finally:
        for module, generate in saved:
            module.generate = generate


def callback_class() -> type:
    """The ``TrainerCallback`` subclass (built lazily: transformers is imported only here)."""
    from transformers import TrainerCallback

    class RegionDialEvaluation(TrainerCallback):
        """Evaluates the live policy on RegionDial-Bench during training (see the module docstring).

        Args:
            trainer: The trainer whose policy is evaluated (its accelerator, model and processor).
            settings: The ``evaluation`` section.
            bench: The bench, if already loaded (default: loaded from ``settings.bench``).
        """

        def __init__(self, trainer: Any, settings: EvaluationSettings, bench: Any = None) -> None:
            from regiondial_bench.bench.specs import load_bench

            self.trainer = trainer
            self.settings = settings
            self.bench = bench if bench is not None else load_bench(settings.bench, images=settings.images)
            self.done: dict[int, Any] = {}  # step -> Results

        def on_step_end(self, args, state, control, **kwargs):
            if self.settings.steps and state.global_step % self.settings.steps == 0:
                self.evaluate(state.global_step)

        def on_save(self, args, state, control, **kwargs):
            if self.settings.steps is None:
                self.evaluate(state.global_step)

        def on_train_end(self, args, state, control, **kwargs):
            if self.settings.at_end:
                self.evaluate(state.global_step)

        def folder(self, step: int) -> Path:
            return Path(self.trainer.args.output_dir) / "evaluations" / f"step-{step}"

        def evaluate(self, step: int) -> Any:
            """Evaluate the policy as it is now, write ``evaluations/step-<step>/``, log its scores.

            An evaluation of a step already evaluated (the final step saved as a checkpoint, say)
            is not repeated.
            """
            if step in self.done:
                return self.done[step]
            from accelerate.utils import broadcast_object_list
            from trl.models.utils import unwrap_model_for_generation

            trainer = self.trainer
            accelerator = trainer.accelerator
            shards = min(accelerator.num_processes, len(self._subset()))
            out = self.folder(step)
            with unwrap_model_for_generation(
                trainer.model_wrapped, accelerator, gather_deepspeed3_params=True,
                gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs,
            ) as model, unconstrained(model):
                was_training = model.training
                try:
                    if shards == 1 and accelerator.num_processes == 1:
                        results = self._run(model, out, None, step)
                    else:
                        if accelerator.process_index < shards:
                            self._run(model, self._shard_root(out) / f"shard-{accelerator.process_index}-of-{shards}",
                                      (accelerator.process_index, shards), step)
                        accelerator.wait_for_everyone()
                        results = None
                finally:
                    model.train(was_training)
            if results is None:
                payload = [self._merge(out) if accelerator.is_main_process else None]
                broadcast_object_list(payload, from_process=0)
                results = payload[0]
            self.done[step] = results
            metrics = scores_to_log(results)
            from transformers import Trainer

            # the base Trainer's log: into log_history and every reporting callback, without
            # flushing the GRPO metrics TRL is still collecting for this step; the callback
            # handler clears should_log on every log, which would drop this step's own log line
            should_log = trainer.control.should_log
            Trainer.log(trainer, metrics)
            trainer.control.should_log = should_log
            if accelerator.is_main_process:
                self._append_summary(step, out, results)
            return results

        def _subset(self) -> list:
            dialogues = list(self.bench)
            return dialogues[: self.settings.limit] if self.settings.limit else dialogues

        @staticmethod
        def _shard_root(out: Path) -> Path:
            return out.with_name(out.name + ".shards")

        def _run(self, model: Any, out: Path, shard: tuple[int, int] | None, step: int) -> Any:
            from regiondial_bench import api
            from regiondial_bench.adapters.hf import HFAdapter

            adapter = HFAdapter.from_components(model, self.trainer.processing_class, **self.settings.adapter_options())
            label = f"{self.trainer.args.output_dir} (policy at step {step})"
            try:
                return api.evaluate(
                    self.bench, self.settings.run_config(label), out, bench_location=self.settings.bench,
                    overwrite=True, progress=self.trainer.accelerator.is_main_process,
                    n_bootstrap=self.settings.bootstrap, shard=shard, adapter=adapter,
                )
            finally:
                adapter.close()

        def _merge(self, out: Path) -> Any:
            from regiondial_bench import api

            return api.merge([self._shard_root(out)], out, bench=self.bench, overwrite=True,
                             n_bootstrap=self.settings.bootstrap)

        def _append_summary(self, step: int, out: Path, results: Any) -> None:
            line = {"step": step, "folder": str(out), "ap50": results.overall.ap50, "giou": results.overall.giou,
                    "n": results.overall.n, "failures": results.overall.failures,
                    "settings": asdict(self.settings)}
            summary = out.parent / "summary.jsonl"
            with summary.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(line) + "\n")
            logger.info("step %d RegionDial evaluation (%s): AP50 %s, gIoU %s", step, out,
                        results.overall.ap50, results.overall.giou)

    return RegionDialEvaluation


def scores_to_log(results: Any) -> dict[str, float]:
    """Per-round AP50 and gIoU of a ``results.json`` as logger keys: ``regiondial/AP50/R1``, ...,
    ``regiondial/AP50/8+``, ``regiondial/AP50/all`` (percentages; gIoU only where masks were scored)."""
    metrics: dict[str, float] = {}
    for row in [*results.rounds, *results.buckets, results.overall]:
        name = row.round if row.round in ("all", "8+") else f"R{row.round}"
        for metric, value in (("AP50", row.ap50), ("gIoU", row.giou)):
            if value is not None:
                metrics[f"regiondial/{metric}/{name}"] = float(value)
    return metrics


def best_evaluation(output_dir: str | Path, metric: str = "ap50") -> dict[str, Any] | None:
    """The line of ``evaluations/summary.jsonl`` with the highest overall ``metric`` (``ap50`` or ``giou``).

    Later lines win ties (a later checkpoint, equally good). None when nothing was evaluated.
    """
    summary = Path(output_dir) / "evaluations" / "summary.jsonl"
    if not summary.is_file():
        return None
    best = None
    for line in summary.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        if entry.get(metric) is not None and (best is None or entry[metric] >= best[metric]):
            best = entry
    return best
