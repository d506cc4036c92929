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
from .presets import Preset, PresetAdapter, get_preset
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
    """Greedy generation through ``vllm.LLM``.

    Args:
        preset: Preset name or :class:`Preset`.
        model: Hub id or local folder (default: the preset's checkpoint).
        dtype: ``bfloat16``, ``float16`` or ``auto`` (default: the preset's).
        tensor_parallel_size: GPUs per model replica.
        data_parallel_size: Refused above 1: vLLM does not run data parallelism inside one
            ``vllm.LLM`` (see :data:`DATA_PARALLEL_HELP` for the two ways that work).
        gpu_memory_utilization: Share of GPU memory vLLM may take.
        max_model_len: Context length (prompt + answer); default: the preset's budget plus 4096.
        max_num_seqs: Sequences decoded at once.
        max_new_tokens: Overrides the preset's budget.
        seed: Engine seed (decoding is greedy, so it only matters for ties).
        reference_frame: ``model`` or ``original`` (upstream parity).
        image_mode: ``native`` or ``squash`` (overrides the preset).
        squash_size: Side of the squashed image.
        min_pixels: Native-resize lower bound (passed to the processor).
        max_pixels: Native-resize upper bound (passed to the processor).
        coordinate_frame: Frame answers are read in (overrides the preset; ``original`` is
            upstream's factor-1 reading of Qwen2.5-VL answers).
        engine_options: Further ``vllm.LLM`` keyword arguments (e.g. ``enforce_eager``).
        constrained: Decode under the preset's response grammar through vLLM's structured outputs
            (``StructuredOutputsParams(grammar=...)``; ``GuidedDecodingParams`` on vLLM < 0.12).
        grammar: Grammar options (``max_objects``, ``box_step``) when ``constrained``.
    """

    needs_pixels = True

    def __init__(
        self,
        preset: str | Preset = "qwen2.5-vl-7b",
        model: str | None = None,
        dtype: str | None = None,
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        max_num_seqs: int = 256,
        max_new_tokens: int | None = None,
        seed: int = 0,
        reference_frame: str | None = None,
        image_mode: str | None = None,
        squash_size: int | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        coordinate_frame: str | None = None,
        engine_options: dict[str, Any] | None = None,
        constrained: bool = False,
        grammar: dict[str, Any] | None = None,
    ) -> None:
        self.preset = get_preset(
            preset, model=model, max_new_tokens=max_new_tokens, reference_frame=reference_frame,
            image_mode=image_mode, squash_size=squash_size, min_pixels=min_pixels, max_pixels=max_pixels,
            coordinate_frame=coordinate_frame,
        )
        if tensor_parallel_size < 1 or data_parallel_size < 1:
            raise AdapterError("tensor_parallel_size and data_parallel_size must be >= 1")
        if data_parallel_size > 1 or "data_parallel_size" in (engine_options or {}):
            n = (engine_options or {}).get("data_parallel_size", data_parallel_size)
            raise AdapterError(DATA_PARALLEL_HELP.format(n=n, n_minus_1=n - 1 if isinstance(n, int) else "N-1"))
        self.constrained = None
        if constrained:
            from .constrained import ConstrainedDecoding

            self.constrained = ConstrainedDecoding(self.preset, grammar)
        elif grammar:
            raise AdapterError("grammar options need constrained: true")
        vllm = require("vllm", "vllm")
        from .processors import load_vlm_processor

        min_px, max_px = self.preset.processor_pixel_bounds()
        self.processor = load_vlm_processor(self.preset.model, min_pixels=min_px, max_pixels=max_px)
        options: dict[str, Any] = {
            "model": self.preset.model,
            "dtype": dtype or self.preset.dtype,
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "max_model_len": max_model_len or self.preset.max_new_tokens + 4096,
            "max_num_seqs": max_num_seqs,
            "seed": seed,
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
        return {"temperature": 0.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0,
                "max_tokens": self.preset.max_new_tokens}

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
                "sampling": {"temperature": 0.0, "max_tokens": self.preset.max_new_tokens},
                "constrained": self.constrained is not None,
                **({"grammar": self.constrained.config()} if self.constrained is not None else {})}

    def close(self) -> None:
        self.llm = None
