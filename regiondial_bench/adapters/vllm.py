"""The ``vllm`` adapter: vLLM's offline engine with multimodal inputs and the same presets as ``hf``.

vLLM is imported only when this adapter is built; without it the adapter fails with the extra to
install (``pip install 'regiondial-bench[vllm]'``). The chat prompt is rendered with the model's
own processor (the same text the ``hf`` adapter feeds), and each request carries its image as
``multi_modal_data``; vLLM schedules the whole batch itself (continuous batching), so pass large
runner batches (``batch_size: 256``).

Example config::

    adapter: vllm
    adapter_options: {preset: regionreasoner-7b, tensor_parallel_size: 1, gpu_memory_utilization: 0.85}
    batch_size: 512
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import AdapterError, RoundRequest, RoundResponse
from .options import VLLMOptions, merged
from .presets import PresetAdapter, weights_fingerprint
from .registry import require

DATA_PARALLEL_HELP = (
    "data_parallel_size={n} is not supported: vLLM does not run data parallelism inside one "
    "vllm.LLM (it refuses or hangs). Two ways work: (1) one process per replica over shards of the "
    "bench, each seeing only its own tensor_parallel_size GPUs through CUDA_VISIBLE_DEVICES: "
    "`CUDA_VISIBLE_DEVICES=i regiondial evaluate --model vllm ... --shard i/{n} --out DIR/shard-i-of-{n}` "
    "for i in 0..{n_minus_1}, then `regiondial merge DIR --out DIR` (or a SLURM array with --gpus-per-task, "
    "or torchrun --no-python with CUDA_VISIBLE_DEVICES=$LOCAL_RANK per rank, which merges by itself); "
    "(2) a server, `vllm serve MODEL --data-parallel-size {n}`, behind the openai adapter with "
    "max_concurrency of about {n} x max_num_seqs. See docs/adapters.md, 'Scale-out'."
)


class VLLMAdapter(PresetAdapter):
    """Generation through ``vllm.LLM`` (greedy unless ``temperature`` is set; ``seed`` seeds the
    engine and, when sampling, every request).

    Options: :class:`~.options.VLLMOptions` (the shared preset options plus ``dtype``,
    ``tensor_parallel_size``, ``gpu_memory_utilization``, ``max_model_len``, ``max_num_seqs``, ``seed``,
    ``engine_options``). ``data_parallel_size`` above 1 is refused: vLLM does not run data parallelism
    inside one ``vllm.LLM`` (see :data:`DATA_PARALLEL_HELP` for the two ways that work). Constrained
    decoding goes through vLLM's structured outputs (``StructuredOutputsParams(grammar=...)``;
    ``GuidedDecodingParams`` on vLLM < 0.12).
    """

    needs_pixels = True
    options_class = VLLMOptions

    def __init__(self, options: VLLMOptions | None = None, /, **kwargs: Any) -> None:
        self.options = opts = merged(options, kwargs, VLLMOptions)
        self.preset = opts.build_preset()
        self.sampling_settings = opts.sampling()
        engine_options = opts.engine_options
        if opts.data_parallel_size > 1 or "data_parallel_size" in (engine_options or {}):
            n = (engine_options or {}).get("data_parallel_size", opts.data_parallel_size)
            raise AdapterError(DATA_PARALLEL_HELP.format(n=n, n_minus_1=n - 1 if isinstance(n, int) else "N-1"))
        self.constrained = None
        if opts.constrained:
            from .constrained import ConstrainedDecoding

            self.constrained = ConstrainedDecoding(self.preset, opts.grammar_options())
        vllm = require("vllm", "vllm")
        from .processors import load_vlm_processor

        min_px, max_px = self.preset.processor_pixel_bounds()
        # smart_resize processors take the preset's pixel bounds; others (InternVL's tiles) their own
        pixel_bounds = {"min_pixels": min_px, "max_pixels": max_px} if self.preset.patch_factor else {}
        self.processor = load_vlm_processor(self.preset.model, **pixel_bounds)
        self.repetition_penalty = self._repetition_penalty()
        options: dict[str, Any] = {
            "model": self.preset.model,
            "dtype": opts.dtype or self.preset.dtype,
            "tensor_parallel_size": opts.tensor_parallel_size,
            "gpu_memory_utilization": opts.gpu_memory_utilization,
            "max_model_len": opts.max_model_len or self.preset.max_new_tokens + 4096,
            "max_num_seqs": opts.max_num_seqs,
            "seed": opts.seed,
            "limit_mm_per_prompt": {"image": 1},
            **({"mm_processor_kwargs": pixel_bounds} if pixel_bounds else {}),
            **(engine_options or {}),
        }
        self.engine_options = {k: v for k, v in options.items() if k != "model"}
        self.llm = vllm.LLM(**options)
        self._vllm = vllm
        self.sampling = vllm.SamplingParams(**self._sampling_options())
        self._constrained_sampling: dict[str, Any] = {}

    def _repetition_penalty(self) -> float:
        """The preset's number, or under ``checkpoint`` the value in the checkpoint's
        ``generation_config.json`` (what ``hf`` and upstream's ``generate`` apply; 1.0 without one)."""
        value = None
        if self.preset.repetition_penalty == "checkpoint":
            try:
                from transformers import GenerationConfig

                value = GenerationConfig.from_pretrained(self.preset.model).repetition_penalty
            except (OSError, ValueError):  # a checkpoint without generation_config.json
                value = None
        return self.preset.decoding_repetition_penalty(value)

    def _sampling_options(self) -> dict[str, Any]:
        sampling = self.sampling_settings
        drawn = {} if sampling.greedy else {"seed": sampling.seed}
        options = {"temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": -1,
                   "repetition_penalty": self.repetition_penalty, "max_tokens": self.preset.max_new_tokens, **drawn}
        if self.preset.keep_special_tokens:  # InternVL writes its boxes in special <ref>/<box> tokens
            options.update(skip_special_tokens=False, spaces_between_special_tokens=False)
        return options

    def sampling_changed(self) -> None:
        self.sampling = self._vllm.SamplingParams(**self._sampling_options())
        self._constrained_sampling = {}

    def cache_identity(self) -> dict[str, Any]:
        engine = {k: v for k, v in self.engine_options.items()
                  if k not in ("tensor_parallel_size", "gpu_memory_utilization", "max_num_seqs", "seed")}
        return self.preset_identity(weights_fingerprint(self.preset.model), engine=engine,
                                    repetition_penalty=self.repetition_penalty,
                                    constrained=self.constrained.config() if self.constrained is not None else False)

    def sampling_for(self, size: tuple[int, int]) -> Any:
        """The sampling parameters of one request: the shared greedy ones, plus its grammar when constrained."""
        if self.constrained is None:
            return self.sampling
        grammar = self.constrained.grammar_for(size)
        params = self._constrained_sampling.get(grammar.sha256)
        if params is None:
            params = self._vllm.SamplingParams(**self._sampling_options(), **self._structured(grammar.ebnf))
            self._constrained_sampling[grammar.sha256] = params
        return params

    def _structured(self, ebnf: str) -> dict[str, Any]:
        """vLLM's structured-output argument for a grammar (current API, else the pre-0.12 one)."""
        try:
            from vllm.sampling_params import StructuredOutputsParams
        except ImportError:
            try:
                from vllm.sampling_params import GuidedDecodingParams
            except ImportError as exc:
                raise AdapterError("this vLLM has no structured outputs (StructuredOutputsParams or "
                                   "GuidedDecodingParams); upgrade vllm or run without constrained") from exc
            return {"guided_decoding": GuidedDecodingParams(grammar=ebnf)}
        return {"structured_outputs": StructuredOutputsParams(grammar=ebnf)}

    def build_inputs(self, requests: Sequence[RoundRequest]) -> tuple[list[dict[str, Any]], list[tuple[int, int]]]:
        """vLLM prompt dicts (chat text + image) and the original image sizes."""
        texts, images, sizes = self.chat_inputs(requests, self.processor)
        inputs = [{"prompt": t, "multi_modal_data": {"image": i}} for t, i in zip(texts, images, strict=True)]
        return inputs, sizes

    def generate(self, requests: Sequence[RoundRequest]) -> list[RoundResponse]:
        if not requests:
            return []
        inputs, sizes = self.build_inputs(requests)
        sampling = self.sampling if self.constrained is None else [self.sampling_for(size) for size in sizes]
        outputs = self.llm.generate(inputs, sampling, use_tqdm=False)
        return [
            self.response(out.outputs[0].text, size, extra={"new_tokens": len(out.outputs[0].token_ids)})
            for out, size in zip(outputs, sizes, strict=True)
        ]

    def config(self) -> dict[str, Any]:
        from .processors import image_processor_kind

        backend = {"name": "vllm", "version": getattr(self._vllm, "__version__", None),
                   **image_processor_kind(self.processor)}
        return {"preset": self.preset.describe(), "engine": self.engine_options,
                "sampling": {**self.sampling_settings.describe(), "max_tokens": self.preset.max_new_tokens,
                             "repetition_penalty": self.repetition_penalty,
                             "repetition_penalty_from": self.preset.repetition_penalty_from},
                "backend": backend,
                "constrained": self.constrained is not None,
                **({"grammar": self.constrained.config()} if self.constrained is not None else {})}

    def close(self) -> None:
        self.llm = None
