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
        self.processor = load_vlm_processor(self.preset.model, min_pixels=min_px, max_pixels=max_px)
        options: dict[str, Any] = {
            "model": self.preset.model,
            "dtype": opts.dtype or self.preset.dtype,
            "tensor_parallel_size": opts.tensor_parallel_size,
            "gpu_memory_utilization": opts.gpu_memory_utilization,
            "max_model_len": opts.max_model_len or self.preset.max_new_tokens + 4096,
            "max_num_seqs": opts.max_num_seqs,
            "seed": opts.seed,
            "limit_mm_per_prompt": {"image": 1},
            "mm_processor_kwargs": {"min_pixels": min_px, "max_pixels": max_px},
            **(engine_options or {}),
        }
        self.engine_options = {k: v for k, v in options.items() if k != "model"}
        self.llm = vllm.LLM(**options)
        self._vllm = vllm
        self.sampling = vllm.SamplingParams(**self._sampling_options())
        self._constrained_sampling: dict[str, Any] = {}

    def _sampling_options(self) -> dict[str, Any]:
        sampling = self.sampling_settings
        drawn = {} if sampling.greedy else {"seed": sampling.seed}
        return {"temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": -1, "repetition_penalty": 1.0,
                "max_tokens": self.preset.max_new_tokens, **drawn}

    def sampling_changed(self) -> None:
        self.sampling = self._vllm.SamplingParams(**self._sampling_options())
        self._constrained_sampling = {}

    def cache_identity(self) -> dict[str, Any]:
        engine = {k: v for k, v in self.engine_options.items()
                  if k not in ("tensor_parallel_size", "gpu_memory_utilization", "max_num_seqs", "seed")}
        return self.preset_identity(weights_fingerprint(self.preset.model), engine=engine,
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
        return {"preset": self.preset.describe(), "engine": self.engine_options,
                "sampling": {**self.sampling_settings.describe(), "max_tokens": self.preset.max_new_tokens},
                "constrained": self.constrained is not None,
                **({"grammar": self.constrained.config()} if self.constrained is not None else {})}

    def close(self) -> None:
        self.llm = None
