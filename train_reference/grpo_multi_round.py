"""Multi-round rollouts for the GRPO reference trainer: the policy's own earlier answers fill the references.

Before TRL builds a batch's prompts, the policy answers the earlier turns the batch's rows refer
to, wave by wave as :class:`regiondial_bench.training.rollouts.ReferenceResolver` plans them
(greedy, through the trainer's own generation backend, vLLM included; every distinct question
once; nothing when no row has a reference), and each row's question and prompt are rewritten with
the box the policy gave. Everything after that (tokenisation, image bookkeeping, sampling,
logging, rewards) is TRL's unchanged code seeing the rewritten rows.

Every process makes the same number of generation calls of the same size per wave (the largest
local wave, padded with a repeat of a local prompt), so vLLM's collective calls (server mode, or
tensor parallel in colocate mode) and ZeRO-3's gathered generation stay aligned. Per step the
trainer logs ``multi_round/turns_answered``, ``multi_round/aux_waves``,
``multi_round/aux_prompt_tokens``, ``multi_round/aux_completion_tokens``,
``multi_round/substituted_depth_<d>`` and ``multi_round/gold_fallbacks``, and appends one record
per row to ``<output_dir>/multi_round_references.jsonl``.

This module holds the trainer's only uses of private TRL API (:data:`TRL_PRIVATE_API`, checked at
start-up by :func:`check_trl_private_api`, and the ``_metrics`` store TRL averages into its logs).
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any

logger = logging.getLogger("grpo_regionreasoner")

# Every use of a private GRPOTrainer method is in this module; tests/train/test_grpo_smoke.py
# checks them against the installed TRL.
TRL_PRIVATE_API = {
    "_generate_and_score_completions": ("self", "inputs"),
    "_tokenize_prompts": ("self", "prompts"),
    "_generate_single_turn": ("self", "prompt_ids", "images", "multimodal_fields", "num_generations"),
}


def check_trl_private_api(trainer_cls: Any = None) -> None:
    """Fail clearly when the installed TRL lacks the private methods multi-round rollouts rely on.

    Raises:
        RuntimeError: A method is missing or its leading parameters changed (names the TRL version).
    """
    import inspect

    import trl

    if trainer_cls is None:
        trainer_cls = trl.GRPOTrainer
    for name, expected in TRL_PRIVATE_API.items():
        method = getattr(trainer_cls, name, None)
        params = tuple(inspect.signature(method).parameters)[: len(expected)] if callable(method) else ()
        if params != expected:
            raise RuntimeError(
                f"multi_round needs GRPOTrainer.{name}{expected} (TRL >= 1.16); TRL {trl.__version__} has "
                f"{name}{params or ' (missing)'}; install a TRL this trainer supports or set "
                "multi_round.enabled: false"
            )


def with_user_text(prompt: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """A copy of a conversational prompt whose user text is ``text`` (images kept)."""
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
def greedy(trainer: Any):
    """Greedy decoding for the reference answers, so every member of a group sees the same reference."""
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


def multi_round_trainer_class() -> type:
    """``trl.GRPOTrainer`` plus one step before each generation: the referenced earlier turns are answered.

    Set ``template`` (the user-text template) and ``reference_depth`` (>= 1, or None for whole
    chains) on the class or the instance before training.
    """
    from trl import GRPOTrainer

    from regiondial_bench.training.data import TRAINING_TEMPLATE, conversation, user_text
    from regiondial_bench.training.rollouts import ReferenceResolver

    class MultiRoundGRPOTrainer(GRPOTrainer):
        template = TRAINING_TEMPLATE
        reference_depth: int | None = 1

        def _generate_and_score_completions(self, inputs):
            resolver = ReferenceResolver(inputs, self.reference_depth)
            usage = self._answer_references(resolver, inputs)
            rows = resolver.resolved_rows()
            for row in rows:
                if row["reference_source"] == "predicted":
                    row["prompt"] = with_user_text(row["prompt"], user_text(row["problem"], self.template))
            self._record_references(rows, resolver, usage)
            return super()._generate_and_score_completions(rows)

        def _query_prompt(self, problem: str, row: dict[str, Any]) -> list[dict[str, Any]]:
            from trl.data_utils import prepare_multimodal_messages

            image = row.get("image")
            return prepare_multimodal_messages(conversation(problem, self.template),
                                               images=[image] if image is not None else None)

        def _widest(self, count: int) -> int:
            """The largest ``count`` over all processes (each pads its wave to it)."""
            import torch

            if self.accelerator.num_processes == 1:
                return count
            local = torch.tensor([count], device=self.accelerator.device)
            return int(self.accelerator.gather(local).max().item())

        def _answer_references(self, resolver: ReferenceResolver, inputs: list[dict[str, Any]]) -> dict[str, int]:
            usage = {"aux_waves": 0, "aux_prompt_tokens": 0, "aux_completion_tokens": 0, "aux_padding_rows": 0}
            while True:
                queries = resolver.pending()
                width = self._widest(len(queries))
                if width == 0:  # no process has a question left (or ever had one): no extra pass
                    return usage
                prompts = [self._query_prompt(q.problem, inputs[q.row]) for q in queries]
                filler = prompts[0] if prompts else self._query_prompt(inputs[0]["problem"], inputs[0])
                padding = width - len(prompts)
                with greedy(self):
                    ids, images, fields = self._tokenize_prompts(prompts + [filler] * padding)
                    completion_ids, _ = self._generate_single_turn(ids, images, fields, 1)
                answers = self.processing_class.batch_decode(completion_ids[: len(queries)], skip_special_tokens=True)
                usage["aux_waves"] += 1
                usage["aux_padding_rows"] += padding
                usage["aux_prompt_tokens"] += sum(len(p) for p in ids[: len(queries)])
                usage["aux_completion_tokens"] += sum(len(c) for c in completion_ids[: len(queries)])
                if queries:
                    resolver.record(queries, answers)

        def _record_references(self, rows: list[dict[str, Any]], resolver: ReferenceResolver,
                               usage: dict[str, int]) -> None:
            from accelerate.utils import gather_object

            records = [
                {
                    "step": self.state.global_step,
                    "id": row.get("id"),
                    "source": row["reference_source"],
                    "predicted": row["reference_predicted"],
                    "gold": row.get("reference_text", ""),
                    "problem": row["problem"],
                    "levels": row["reference_levels"],
                }
                for row in rows
            ]
            local = {"records": records, "usage": {**usage, "turns_answered": resolver.answered}}
            gathered = gather_object([local])
            records = [r for part in gathered for r in part["records"]]
            # every process takes part in every wave (padded): waves are counted once, the rest summed
            totals = {key: (max if key == "aux_waves" else sum)(part["usage"][key] for part in gathered)
                      for key in local["usage"]}
            # counted per distinct row id over all processes (a group's copies count once)
            depths: dict[int, set] = {}
            for record in records:
                if record["source"] == "predicted":
                    depths.setdefault(1, set()).add(record["id"])
                for level in record["levels"]:
                    if level["reference"] == "predicted":
                        depths.setdefault(level["depth"] + 1, set()).add(record["id"])
            totals.update({f"substituted_depth_{d}": len(ids) for d, ids in sorted(depths.items())})
            totals["gold_fallbacks"] = len({r["id"] for r in records if r["source"] == "gold-fallback"})
            metrics = getattr(self, "_metrics", None)
            if metrics is not None:
                mode = "train" if self.model.training else "eval"
                for key, value in totals.items():
                    metrics[mode][f"multi_round/{key}"].append(float(value))
            if self.accelerator.is_main_process:
                path = Path(self.args.output_dir) / "multi_round_references.jsonl"
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a", encoding="utf-8") as handle:
                    handle.writelines(json.dumps(r) + "\n" for r in records)
                logger.info("step %d multi-round: %s", self.state.global_step, totals)

    return MultiRoundGRPOTrainer
