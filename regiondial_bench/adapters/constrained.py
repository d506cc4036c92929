"""Constrained decoding shared by the ``hf``, ``vllm`` and ``openai`` adapters.

:class:`ConstrainedDecoding` holds the options (``constrained: true`` plus ``grammar: {max_objects,
box_step}``), builds one :class:`~regiondial_bench.grammar.ResponseGrammar` per coordinate frame
(once per run: squash presets have one frame, native-resolution ones one per processed image size)
and records them for ``run.json``. The backends only differ in how the grammar reaches the decoder:

- ``hf``: :class:`XGrammarLogitsProcessor`, xgrammar matchers over the compiled grammar, one per
  row of the batch, whose token bitmasks are filled in one batched call per step;
- ``vllm``: ``SamplingParams(structured_outputs=StructuredOutputsParams(grammar=...))``;
- ``openai``: the server's request-body field (vLLM ``structured_outputs.grammar``, older vLLM
  ``guided_grammar``, SGLang ``ebnf``).
"""

from __future__ import annotations

import logging
from typing import Any

from ..grammar import GrammarError, ResponseGrammar, grammar_frame, grammars_description, response_grammar
from .base import AdapterError
from .presets import Preset
from .registry import require

logger = logging.getLogger(__name__)

GRAMMAR_OPTIONS = frozenset({"max_objects", "box_step"})
NOMINAL_SIZE = (640, 480)
"""An image size used to build the grammar once at start-up, so a bad budget fails before the run."""


class ConstrainedDecoding:
    """The grammars of one run: options validated once, one grammar per coordinate frame.

    Args:
        preset: The adapter's preset (after its option overrides).
        options: ``{"max_objects": int, "box_step": int}`` (both optional).
    """

    def __init__(self, preset: Preset, options: dict[str, Any] | None = None) -> None:
        options = dict(options or {})
        unknown = sorted(set(options) - GRAMMAR_OPTIONS)
        if unknown:
            raise AdapterError(f"unknown grammar option(s) {unknown}; known: {sorted(GRAMMAR_OPTIONS)}")
        for key, value in options.items():
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise AdapterError(f"grammar option {key} must be a positive integer, got {value!r}")
        self.preset = preset
        self.options = options
        self._grammars: dict[tuple[int, int], ResponseGrammar] = {}
        self.grammar_for(NOMINAL_SIZE)  # fail now, not at the first batch

    def grammar_for(self, original_size: tuple[int, int], input_size: tuple[int, int] | None = None
                    ) -> ResponseGrammar:
        """The grammar for one image (cached by coordinate frame)."""
        try:
            frame = grammar_frame(self.preset, original_size, input_size)
            grammar = self._grammars.get(frame)
            if grammar is None:
                grammar = response_grammar(self.preset, frame, max_new_tokens=self.preset.max_new_tokens,
                                           max_objects=self.options.get("max_objects"),
                                           box_step=self.options.get("box_step"))
                self._grammars[frame] = grammar
        except GrammarError as exc:
            raise AdapterError(f"constrained decoding: {exc}") from exc
        return grammar

    def config(self) -> dict[str, Any]:
        """What ``run.json`` records: the options and every grammar used (the first few in full)."""
        return {"options": dict(self.options), **grammars_description(list(self._grammars.values()))}


class HFGrammars:
    """xgrammar compilation for a transformers tokenizer: one compiler, each grammar compiled once."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_token_ids: list[int]) -> None:
        self.xgr = require("xgrammar", "constrained")
        self.info = self.xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size,
                                                            stop_token_ids=stop_token_ids)
        self.compiler = self.xgr.GrammarCompiler(self.info)
        self._compiled: dict[str, Any] = {}

    def compile(self, grammar: ResponseGrammar) -> Any:
        compiled = self._compiled.get(grammar.sha256)
        if compiled is None:
            compiled = self.compiler.compile_grammar(grammar.ebnf)
            self._compiled[grammar.sha256] = compiled
        return compiled

    def logits_processor(self, grammars: list[ResponseGrammar]) -> XGrammarLogitsProcessor:
        """A fresh processor for one ``generate`` call (row ``i`` follows ``grammars[i]``)."""
        return XGrammarLogitsProcessor([self.compile(g) for g in grammars], self.xgr)


class XGrammarLogitsProcessor:
    """Masks each row's logits to the tokens its grammar allows next (for ``generate(logits_processor=[...])``).

    One xgrammar matcher per row; every step the previous step's tokens are accepted and all live
    rows' bitmasks are filled in one batched call, then applied in place (on CPU or on the GPU).
    A row whose grammar is complete only allows the stop tokens, so answers end as soon as the
    JSON closes. A row whose token the grammar refuses (another processor masked every allowed
    token) stops being constrained and is reported in :attr:`rejected` instead of raising.
    """

    def __init__(self, compiled_grammars: list[Any], xgr: Any) -> None:
        self.xgr = xgr
        self.matchers = [xgr.GrammarMatcher(g) for g in compiled_grammars]
        self.vocab_size = compiled_grammars[0].tokenizer_info.vocab_size
        self.bitmask = xgr.allocate_token_bitmask(len(self.matchers), self.vocab_size)
        self.batch_matcher = xgr.BatchGrammarMatcher()
        self.rejected = [False] * len(self.matchers)
        self.steps = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if input_ids.shape[0] != len(self.matchers):
            raise AdapterError(f"the grammar processor was built for {len(self.matchers)} rows, "
                               f"generate passed {input_ids.shape[0]}")
        if self.steps:
            last = input_ids[:, -1].tolist()
            for row, matcher in enumerate(self.matchers):
                if not self.rejected[row] and not matcher.is_terminated() and not matcher.accept_token(last[row]):
                    self.rejected[row] = True
                    logger.warning("row %d: token %d is outside the grammar; the row is no longer constrained",
                                   row, last[row])
        self.steps += 1
        live = [row for row, m in enumerate(self.matchers) if not self.rejected[row] and not m.is_terminated()]
        self.xgr.reset_token_bitmask(self.bitmask)
        if not live:
            return scores
        self.batch_matcher.batch_fill_next_token_bitmask([self.matchers[row] for row in live], self.bitmask,
                                                         indices=live)
        if scores.device.type == "cuda":
            self.xgr.apply_token_bitmask_inplace(scores, self.bitmask.to(scores.device, non_blocking=True),
                                                 vocab_size=self.vocab_size)
        elif str(scores.dtype) == "torch.float32":
            self.xgr.apply_token_bitmask_inplace(scores, self.bitmask, vocab_size=self.vocab_size)
        else:  # the CPU kernel takes float32 logits
            masked = scores.float()
            self.xgr.apply_token_bitmask_inplace(masked, self.bitmask, vocab_size=self.vocab_size)
            scores = masked.to(scores.dtype)
        return scores

    def completed(self, row: int) -> bool:
        """Whether row ``row`` reached the end of its grammar (and accepted a stop token)."""
        matcher = self.matchers[row]
        # generate stops without a last call when every row has ended, so the final stop token of
        # the longest row is never fed back: a matcher at the end of its grammar counts as complete
        return bool(matcher.is_terminated() or matcher.is_completed())
