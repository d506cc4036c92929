"""The ``hf`` adapter: any chat VLM loadable with ``AutoModelForImageTextToText`` + ``AutoProcessor``.

First-class for the Qwen2.5-VL family. Requests are answered in batches with left-padded greedy
generation; each preset decides the prompt, the image preprocessing (native ``smart_resize`` or a
fixed squash such as upstream's 840x840) and the coordinate frame answers are read in.

Example config (``regiondial evaluate --config``)::

    adapter: hf
    adapter_options: {preset: regionreasoner-7b, model: lmsdss/RegionReasoner-7B, dtype: bfloat16}
    batch_size: 32
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from .base import AdapterError, RoundRequest, RoundResponse
from .options import HFOptions, merged
from .presets import Preset, PresetAdapter, weights_fingerprint
from .registry import require

logger = logging.getLogger(__name__)

_VISION_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
                  "<IMG_CONTEXT>", "<img>", "</img>", "<video>")
"""Vision placeholders (Qwen-VL family, InternVL) a model must never generate."""


def _is_qwen_style(image_processor: Any) -> bool:
    """Whether the image processor is a Qwen2-VL-family ``smart_resize`` processor."""
    return any(cls.__name__.startswith("Qwen2VLImageProcessor") for cls in type(image_processor).__mro__)


def resolve_device(device: str | None) -> str:
    """``auto``/None picks CUDA when present, else CPU."""
    if device not in (None, "auto"):
        return str(device)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str | None, device: str, preset: Preset) -> Any:
    """Explicit dtype, else the preset's on GPU and float32 on CPU."""
    import torch

    name = dtype or (preset.dtype if device.startswith("cuda") else "float32")
    if name == "auto":
        return "auto"
    value = getattr(torch, str(name), None)
    if not isinstance(value, torch.dtype):
        raise AdapterError(f"unknown dtype {name!r}; use bfloat16, float16, float32 or auto")
    return value


class HFAdapter(PresetAdapter):
    """Batched generation (greedy unless ``temperature`` is set) with a transformers chat VLM.

    Options: :class:`~.options.HFOptions` (the shared preset options plus ``dtype``, ``device``,
    ``device_map``, ``attn_implementation``, ``batch_size``, ``trust_remote_code``, ``min_new_tokens``),
    given as an object or as keywords.
    """

    needs_pixels = True
    options_class = HFOptions

    def __init__(self, options: HFOptions | None = None, /, _components: tuple[Any, Any] | None = None,
                 **kwargs: Any) -> None:
        self.options = opts = merged(options, kwargs, HFOptions)
        require("transformers", "hf")
        require("torch", "hf")
        self.preset = opts.build_preset()
        self.sampling_settings = opts.sampling()
        self.batch_size = opts.batch_size
        self.device_map = opts.device_map
        self.device = resolve_device(opts.device)
        self.dtype = resolve_dtype(opts.dtype, self.device, self.preset)
        self.attn_implementation = opts.attn_implementation
        self.trust_remote_code = opts.trust_remote_code
        self.min_new_tokens = opts.min_new_tokens
        self.constrained = None
        if opts.constrained:
            from .constrained import ConstrainedDecoding

            require("xgrammar", "constrained")
            self.constrained = ConstrainedDecoding(self.preset, opts.grammar_options())
        if _components is None:
            self._load()
        else:
            self.model, self.processor = _components
        self._setup_generation()
        self._seed_sampler()

    @classmethod
    def from_components(cls, model: Any, processor: Any, **options: Any) -> HFAdapter:
        """Wrap an already loaded model and processor (benchmarks, evaluation inside a trainer).

        ``options`` are the constructor's (``preset``, ``squash_size``, ...); ``model`` is the object.
        """
        device = str(next(model.parameters()).device)
        return cls(device=device, dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
                   _components=(model, processor), **options)

    # ------------------------------------------------------------------ loading

    def _load(self) -> None:
        from transformers import AutoModelForImageTextToText

        from .processors import load_vlm_processor

        path = self.preset.model
        try:
            # Pixel bounds are not given here: not every processor takes them, and Qwen-style
            # processors get them with every call (see _generate_batch).
            self.processor = load_vlm_processor(path)
            kwargs: dict[str, Any] = {"dtype": self.dtype, "trust_remote_code": self.trust_remote_code}
            if self.attn_implementation:
                kwargs["attn_implementation"] = self.attn_implementation
            if self.device_map is not None:
                kwargs["device_map"] = self.device_map
            self.model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
        except OSError as exc:
            raise AdapterError(f"cannot load model {path!r}: {exc}") from exc
        except (ImportError, ValueError) as exc:
            if not self.attn_implementation:
                raise
            # e.g. flash_attention_2 without the flash-attn package, or on a CPU
            raise AdapterError(f"cannot load model {path!r} with attn_implementation={self.attn_implementation!r}: "
                               f"{str(exc)[:300]}; install what it needs or set attn_implementation: sdpa "
                               "(baselines/README.md: the kernel each upstream model ran with)") from exc
        if self.device_map is None:
            self.model.to(self.device)
        else:  # inputs go where the embeddings live; accelerate's hooks move activations on
            self.device = str(self.model.device)

    def _setup_generation(self) -> None:
        from transformers import GenerationConfig

        self._backend: dict[str, Any] | None = None
        self.backend()
        self.model.eval()
        tokenizer = self.processor.tokenizer
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        vocab = tokenizer.get_vocab()
        suppress = [vocab[t] for t in _VISION_TOKENS if t in vocab]
        eos = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>") if t in vocab]
        eos = eos or [tokenizer.eos_token_id]
        # Pin every decoding parameter: derivative checkpoints ship sampling / repetition-penalty
        # settings in generation_config.json that HF generate would otherwise apply. The one
        # exception, on request: repetition_penalty "checkpoint" applies the checkpoint's value, as
        # upstream's generate(max_new_tokens, do_sample) does (1.05 for Qwen2.5-VL-7B-Instruct).
        self.repetition_penalty = self.preset.decoding_repetition_penalty(
            getattr(getattr(self.model, "generation_config", None), "repetition_penalty", None))
        sampling = self.sampling_settings
        sampled = {} if sampling.greedy else {"temperature": sampling.temperature, "top_p": sampling.top_p}
        self.generation_config = GenerationConfig(
            do_sample=not sampling.greedy,
            **sampled,
            num_beams=1,
            max_new_tokens=self.preset.max_new_tokens,
            min_new_tokens=self.min_new_tokens,
            repetition_penalty=self.repetition_penalty,
            eos_token_id=eos,
            pad_token_id=tokenizer.pad_token_id,
            suppress_tokens=suppress or None,
        )
        self._hf_grammars = None
        if self.constrained is not None:
            from .constrained import HFGrammars

            vocab_size = self.model.get_output_embeddings().weight.shape[0]
            self._hf_grammars = HFGrammars(tokenizer, vocab_size, eos)

    # ------------------------------------------------------------------ contract

    def generate(self, requests: Sequence[RoundRequest]) -> list[RoundResponse]:
        responses: list[RoundResponse] = []
        step = self.batch_size or max(len(requests), 1)
        for start in range(0, len(requests), step):
            responses.extend(self._generate_batch(requests[start : start + step]))
        return responses

    def _generate_batch(self, requests: Sequence[RoundRequest]) -> list[RoundResponse]:
        import torch

        texts, images, sizes = self.chat_inputs(requests, self.processor)
        kwargs: dict[str, Any] = {}
        if _is_qwen_style(self.processor.image_processor):
            # Qwen2-VL-family processors take the pixel bounds as size = {shortest_edge: min, longest_edge: max}
            min_pixels, max_pixels = self.preset.processor_pixel_bounds()
            kwargs["size"] = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
        inputs = self.processor(text=texts, images=images, return_tensors="pt", padding=True, **kwargs)
        inputs = inputs.to(self.device)
        grids = inputs.get("image_grid_thw")
        input_sizes = [self._input_size(grids[i] if grids is not None else None, sizes[i]) for i in range(len(sizes))]
        processor = None
        if self._hf_grammars is not None:
            grammars = [self.constrained.grammar_for(sizes[i], input_sizes[i]) for i in range(len(sizes))]
            processor = self._hf_grammars.logits_processor(grammars)
        generate_options = {"logits_processor": [processor]} if processor is not None else {}
        with torch.inference_mode():
            output = self.model.generate(**inputs, generation_config=self.generation_config, **generate_options)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        decoded = self._decode(new_tokens)
        pad = self.generation_config.pad_token_id
        responses = []
        for i, text in enumerate(decoded):
            input_size = input_sizes[i]
            extra = {"input_size": list(input_size), "new_tokens": int((new_tokens[i] != pad).sum())}
            if processor is not None:
                extra["grammar_complete"] = processor.completed(i)
                if processor.rejected[i]:
                    extra["grammar_rejected"] = True
            responses.append(self.response(text, sizes[i], input_size, extra))
        return responses

    def _decode(self, new_tokens: Any) -> list[str]:
        """The generated text of each row, special tokens dropped except those the preset's answers
        are written in (InternVL's ``<ref>``/``<box>``, which ``skip_special_tokens`` would strip)."""
        if not self.preset.keep_special_tokens:
            return self.processor.batch_decode(new_tokens, skip_special_tokens=True)
        tokenizer = self.processor.tokenizer
        vocab = tokenizer.get_vocab()
        keep = {vocab[t] for t in self.preset.keep_special_tokens if t in vocab}
        drop = set(tokenizer.all_special_ids) - keep
        return [tokenizer.decode([t for t in row.tolist() if t not in drop], skip_special_tokens=False)
                for row in new_tokens]

    def _input_size(self, grid: Any, original_size: tuple[int, int]) -> tuple[int, int]:
        """The processed image size: from ``image_grid_thw`` (t, h/14, w/14) when the model reports it."""
        if grid is None:
            return self.preset.input_size(original_size)
        patch = getattr(self.processor.image_processor, "patch_size", 14)
        _, gh, gw = (int(v) for v in grid)
        return (gw * patch, gh * patch)

    def sampling_changed(self) -> None:
        sampling, config = self.sampling_settings, self.generation_config
        config.do_sample = not sampling.greedy
        if not sampling.greedy:
            config.temperature, config.top_p = sampling.temperature, sampling.top_p
        self._seed_sampler()

    def _seed_sampler(self) -> None:
        if self.samples and self.sampling_settings.seed is not None:
            import torch

            torch.manual_seed(self.sampling_settings.seed)

    def cache_identity(self) -> dict[str, Any]:
        model = weights_fingerprint(self.preset.model)
        revision = getattr(getattr(self.model, "config", None), "_commit_hash", None)
        if isinstance(revision, str):
            model["revision"] = revision
        return self.preset_identity(
            model, dtype=str(self.dtype), min_new_tokens=self.min_new_tokens,
            repetition_penalty=self.repetition_penalty, constrained=self.constrained.config() if self.constrained is not None else False)

    def config(self) -> dict[str, Any]:
        return {
            "preset": self.preset.describe(),
            "device": self.device,
            **({"device_map": self.device_map} if self.device_map is not None else {}),
            "dtype": str(self.dtype),
            "attn_implementation": self.attn_implementation,
            "batch_size": self.batch_size,
            "generation": {"do_sample": self.samples, "max_new_tokens": self.preset.max_new_tokens,
                           "repetition_penalty": self.repetition_penalty,
                           "repetition_penalty_from": self.preset.repetition_penalty_from,
                           **({"sampling": self.sampling_settings.describe()} if self.samples else {})},
            "backend": self.backend(),
            "constrained": self.constrained is not None,
            **({"grammar": self.constrained.config()} if self.constrained is not None else {}),
        }

    def backend(self) -> dict[str, Any]:
        """What answered (provenance): transformers' version, the model class and the image processor
        (read when the model is set up, so it is still known after :meth:`close`)."""
        if self._backend is None:
            import transformers

            from .processors import image_processor_kind

            self._backend = {"name": "transformers", "version": transformers.__version__,
                             "model_class": type(self.model).__name__, **image_processor_kind(self.processor)}
        return self._backend

    def close(self) -> None:
        self.model = None
        self.processor = None

