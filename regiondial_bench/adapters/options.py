"""The options of the preset-driven backends (``hf``, ``vllm``, ``openai``): one validated object each.

All three share :class:`ModelOptions`: which preset, the preset fields a run may override, and
constrained decoding. Each backend adds its own few settings in a subclass (:class:`HFOptions`,
:class:`VLLMOptions`, :class:`OpenAIOptions`). An options object is built once, from a config
file's ``adapter_options``, ``-o KEY=VALUE`` flags (``-o grammar.box_step=16`` for nested fields) or
Python keywords, and a wrong name, type or range fails there with every problem named, before any
model is loaded:

>>> HFOptions.parse({"preset": "regionreasoner-7b", "squash_size": 448}).build_preset().input_size((640, 480))
(448, 448)
>>> HFOptions.parse({"squash_sise": 448})
Traceback (most recent call last):
...
regiondial_bench.adapters.base.AdapterError: bad options for adapter 'hf': squash_sise: not an option (did you mean 'squash_size'?)
>>> OpenAIOptions.parse({"grammar": {"box_step": 16}})
Traceback (most recent call last):
...
regiondial_bench.adapters.base.AdapterError: bad options for adapter 'openai': grammar: grammar options need constrained: true
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .base import AdapterError
from .sampling import SamplingSettings

if TYPE_CHECKING:
    from .presets import Preset

MAX_SIDE = 16384
"""Largest squash side accepted (a 16k x 16k input is far beyond any VLM's budget already)."""
MAX_PIXELS_LIMIT = 1 << 31


class GrammarOptions(BaseModel):
    """Options of the answer grammar under ``constrained: true`` (see :mod:`regiondial_bench.grammar`).

    Attributes:
        max_objects: Most objects a list answer may hold (default 8; Seg-Zero always 1).
        box_step: Bucket size of the box-order rules, in frame units (default: the frame's side / 32).
            Smaller is more exact and costs rules quadratically; the grammar refuses a step that
            gives more than :data:`~regiondial_bench.grammar.MAX_BOX_BUCKETS` buckets per axis.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_objects: int | None = Field(None, ge=1, le=64, strict=True)
    box_step: int | None = Field(None, ge=1, le=MAX_SIDE, strict=True)

    def as_dict(self) -> dict[str, int]:
        return self.model_dump(exclude_none=True)


class ModelOptions(BaseModel):
    """What every preset-driven backend takes.

    Attributes:
        preset: Preset name (``regiondial adapters`` lists them) or a :class:`~.presets.Preset`.
        model: Weights (Hub id or local folder) for ``hf``/``vllm``; the served model name for ``openai``.
            Default: the preset's checkpoint.
        max_new_tokens: Generation budget (overrides the preset's).
        image_mode: ``native`` (the processor's ``smart_resize``) or ``squash`` (overrides the preset).
        squash_size: Side of the squashed input image.
        min_pixels: Native-resize lower pixel bound.
        max_pixels: Native-resize upper pixel bound.
        reference_frame: ``model`` (reference boxes rendered in the model's frame) or ``original``
            (upstream parity: original pixels).
        coordinate_frame: Frame answers are read in: ``input``, ``norm-1000``, ``norm-1`` or ``original``.
        prompt_template: A custom user template with a ``{question}`` slot.
        prompt_variant: ``default`` or ``upstream`` (the released code's exact prompt text, for parity).
        size: The released size of a model family (``qwen3-vl-instruct``: ``2B`` ... ``235B-A22B``);
            picks the checkpoint unless ``model`` is given.
        repetition_penalty: A number (default: the preset's, 1.0 for local models) pins it on every
            backend; ``checkpoint`` takes the checkpoint's ``generation_config.json`` value as
            upstream's ``generate`` does (``openai`` then sends none: the server's default applies).
        constrained: Decode under the preset's response grammar: every answer parses, inside the frame.
        grammar: :class:`GrammarOptions` (only with ``constrained``).
        temperature: 0 (the default) decodes greedily; above 0 samples (``evaluate --repeats``).
        top_p: Nucleus sampling's probability mass, when sampling.
        seed: The seed sampled answers are drawn from (``--repeats`` reseeds each repeat).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    adapter_name: ClassVar[str] = "a preset adapter"

    preset: Any = "qwen2.5-vl-7b"
    model: str | None = None
    max_new_tokens: int | None = Field(None, ge=1, le=1 << 20)
    image_mode: Literal["squash", "native"] | None = None
    squash_size: int | None = Field(None, ge=1, le=MAX_SIDE)
    min_pixels: int | None = Field(None, ge=1, le=MAX_PIXELS_LIMIT)
    max_pixels: int | None = Field(None, ge=1, le=MAX_PIXELS_LIMIT)
    reference_frame: Literal["model", "original"] | None = None
    coordinate_frame: Literal["input", "norm-1000", "norm-1", "original"] | None = None
    prompt_template: str | None = Field(None, max_length=100_000)
    prompt_variant: Literal["default", "upstream"] | None = None
    size: str | None = Field(None, max_length=64)
    repetition_penalty: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] | Literal["checkpoint"] | None = None
    constrained: bool = False
    grammar: GrammarOptions | None = None
    temperature: float = Field(0.0, ge=0, le=100, allow_inf_nan=False)
    top_p: float = Field(1.0, gt=0, le=1, allow_inf_nan=False)
    seed: int | None = Field(None, ge=0, lt=2**63, strict=True)

    @model_validator(mode="after")
    def _check(self) -> ModelOptions:
        from .presets import Preset

        if not isinstance(self.preset, str | Preset):
            raise ValueError(f"preset must be a preset name or a Preset, got {type(self.preset).__name__}")
        if self.grammar is not None and self.grammar.as_dict() and not self.constrained:
            raise ValueError("grammar: grammar options need constrained: true")
        return self

    # the preset fields a run may override, and how the backends name them
    _PRESET_FIELDS: ClassVar[tuple[str, ...]] = (
        "max_new_tokens", "image_mode", "squash_size", "min_pixels", "max_pixels", "reference_frame",
        "coordinate_frame", "prompt_template", "prompt_variant", "size", "repetition_penalty",
    )
    _MODEL_IS_WEIGHTS: ClassVar[bool] = True

    @classmethod
    def parse(cls, options: dict[str, Any] | None = None, adapter: str | None = None) -> ModelOptions:
        """Validate keyword options (a config's ``adapter_options``), naming every problem at once.

        Raises:
            AdapterError: an unknown option (with "did you mean"), a wrong type or an out-of-range value.
        """
        name = adapter or cls.adapter_name
        try:
            return cls.model_validate(dict(options or {}))
        except ValidationError as exc:
            raise AdapterError(f"bad options for adapter {name!r}: {cls._describe(exc)}") from None

    @classmethod
    def _describe(cls, exc: ValidationError) -> str:
        found: dict[str, list[str]] = {}  # where -> messages; a union field gets one per type it could be
        for error in exc.errors():
            loc = error["loc"]
            if len(loc) > 1 and loc[0] in cls.model_fields and loc[0] != "grammar":
                loc = loc[:1]  # a branch of a union field: pydantic appends the branch's tag
            where = ".".join(map(str, loc))
            if error["type"] == "extra_forbidden":
                known = list(cls.model_fields) if len(loc) == 1 else list(GrammarOptions.model_fields)
                close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
                message = "not an option" + (f" (did you mean {close[0]!r}?)" if close else "")
            else:
                message = str(error["msg"]).removeprefix("Value error, ")
            found.setdefault(where, []).append(message)
        # a cross-field check has no location: its message names its field
        return "; ".join(f"{where}: {' or '.join(messages)}" if where else "; ".join(messages)
                         for where, messages in found.items())

    def build_preset(self) -> Preset:
        """The preset with this run's overrides applied (validated)."""
        from .presets import get_preset

        overrides = {k: getattr(self, k) for k in self._PRESET_FIELDS}
        if self._MODEL_IS_WEIGHTS:
            overrides["model"] = self.model
        return get_preset(self.preset, **overrides)

    def grammar_options(self) -> dict[str, int]:
        return self.grammar.as_dict() if self.grammar is not None else {}

    def sampling(self) -> SamplingSettings:
        """The decoding settings (greedy unless ``temperature`` is above 0)."""
        return SamplingSettings(float(self.temperature), float(self.top_p), self.seed)


class HFOptions(ModelOptions):
    """``hf``: a transformers chat VLM in this process.

    Attributes:
        dtype: ``bfloat16``, ``float16``, ``float32`` or ``auto`` (default: the preset's on GPU,
            float32 on CPU).
        device: ``auto`` (CUDA if available), ``cuda``, ``cuda:1``, ``cpu``.
        device_map: ``auto`` (or a transformers device map) to spread a model over all visible GPUs;
            replaces ``device``.
        attn_implementation: e.g. ``flash_attention_2``, ``sdpa``, ``eager`` (default: transformers').
        batch_size: Most requests per ``generate`` call (default: the runner's batch as given).
        trust_remote_code: Passed to ``from_pretrained``.
        min_new_tokens: Force at least this many new tokens (fixed-length throughput benchmarks).
    """

    adapter_name: ClassVar[str] = "hf"

    dtype: str | None = None
    device: str | None = "auto"
    device_map: str | dict[str, Any] | None = None
    attn_implementation: str | None = None
    batch_size: int | None = Field(None, ge=1)
    trust_remote_code: bool = False
    min_new_tokens: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _check_hf(self) -> HFOptions:
        if self.device_map is not None and self.device not in (None, "auto"):
            raise ValueError(f"device: give device ({self.device!r}) or device_map ({self.device_map!r}), not both")
        if self.constrained and self.min_new_tokens:
            raise ValueError("min_new_tokens: it forces tokens past the grammar's end; unset it with constrained")
        return self


class VLLMOptions(ModelOptions):
    """``vllm``: an offline ``vllm.LLM`` engine in this process.

    Attributes:
        dtype: Weight dtype (default: the preset's).
        tensor_parallel_size: GPUs one engine spans.
        data_parallel_size: Refused above 1: launch one process per GPU instead (docs/adapters.md).
        gpu_memory_utilization: Share of each GPU's memory vLLM may take.
        max_model_len: Context length (default: the generation budget + 4096).
        max_num_seqs: Sequences the engine schedules at once.
        seed: The engine's seed, and the seed sampled answers are drawn from.
        engine_options: Further ``vllm.LLM`` keywords, passed through.
    """

    adapter_name: ClassVar[str] = "vllm"

    dtype: str | None = None
    tensor_parallel_size: int = Field(1, ge=1)
    data_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    max_model_len: int | None = Field(None, ge=1)
    max_num_seqs: int = Field(256, ge=1)
    seed: int = 0
    engine_options: dict[str, Any] | None = None


class OpenAIOptions(ModelOptions):
    """``openai``: an OpenAI-compatible server (vLLM, SGLang, LMDeploy, hosted APIs).

    ``model`` is the served model name here (default: the preset's checkpoint id).

    Attributes:
        base_url: Server URL up to ``/v1`` (default: ``$OPENAI_BASE_URL``, else ``http://127.0.0.1:8000/v1``).
        api_key_env: Environment variable holding the API key (sent as a Bearer token when set).
        max_concurrency: Requests in flight at once.
        timeout_s: Deadline of one attempt, from connecting to the last byte of the reply.
        max_retries: Retries after the first attempt for transient failures.
        backoff_s: First backoff; doubles each retry (with jitter), capped at ``max_backoff_s``.
        max_backoff_s: Longest wait between retries, also for a server's ``Retry-After``.
        image_format: ``png`` (lossless, default) or ``jpeg`` for the inline image.
        jpeg_quality: JPEG quality when ``image_format`` is ``jpeg``.
        png_compress_level: zlib level of the PNG (lossless at every level; 1 is several times
            faster to encode than Pillow's default 6, for payloads about a fifth larger).
        image_cache_mb: Bound on the encoded images kept for later rounds.
        image_encoder: ``process`` (default): images are encoded in worker processes, so the
            HTTP loop and the run loop keep their share of the interpreter; ``thread``: on threads
            of this process (Pillow releases the GIL while it decodes and compresses, but many
            small images then contend for it with the loop).
        image_workers: Encoder processes (default: the CPU count, at most 4) or threads (at most 8).
        check_server: Check once, before the first request, that the server answers.
        check_prompt_tokens: Compare the first replies' ``usage.prompt_tokens`` with the image
            tokens the preset implies and warn once when the server resized the image (default: on
            for the Qwen-VL presets, whose image-token count is known; off for the others).
        extra_body: Extra JSON fields merged into every request (e.g. ``{"top_k": 1}``).
        grammar_field: How the grammar is sent: ``structured_outputs`` (vLLM >= 0.12:
            ``{"structured_outputs": {"grammar": ...}}``), ``guided_grammar`` (older vLLM) or
            ``ebnf`` (SGLang).
        transport: ``auto`` (``curl`` when ``pycurl`` is installed, else ``aiohttp``), ``curl`` or
            ``aiohttp`` (see :mod:`regiondial_bench.adapters.http`).
        trust_env: Use the proxy environment variables (``https_proxy`` and the like).
    """

    adapter_name: ClassVar[str] = "openai"
    _MODEL_IS_WEIGHTS: ClassVar[bool] = False

    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = Field(16, ge=1, le=65536)
    timeout_s: float = Field(120.0, gt=0, allow_inf_nan=False)
    max_retries: int = Field(4, ge=0, le=1000)
    backoff_s: float = Field(1.0, ge=0, allow_inf_nan=False)
    max_backoff_s: float = Field(30.0, ge=0, allow_inf_nan=False)
    image_format: Literal["png", "jpeg"] = "png"
    jpeg_quality: int = Field(90, ge=1, le=95)
    png_compress_level: int = Field(1, ge=0, le=9)
    image_cache_mb: float = Field(512.0, ge=0, allow_inf_nan=False)
    image_encoder: Literal["process", "thread"] = "process"
    image_workers: int | None = Field(None, ge=1, le=256)
    check_server: bool = True
    check_prompt_tokens: bool | None = None
    extra_body: dict[str, Any] | None = None
    grammar_field: Literal["structured_outputs", "guided_grammar", "ebnf"] = "structured_outputs"
    transport: Literal["auto", "curl", "aiohttp"] = "auto"
    trust_env: bool = False


def merged(options: ModelOptions | None, kwargs: dict[str, Any], cls: type[ModelOptions]) -> ModelOptions:
    """An adapter's options: the object given, or ``cls`` parsed from keywords (not both)."""
    if options is not None:
        if kwargs:
            raise AdapterError(f"give {cls.__name__} or keyword options, not both (got {sorted(kwargs)})")
        if not isinstance(options, cls):
            raise AdapterError(f"expected {cls.__name__}, got {type(options).__name__}")
        return options
    return cls.parse(kwargs)


def run_frames(adapter: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The frame a run's answers are read in, and the common frames the frame check compares it with.

    A preset-driven adapter (``hf``, ``vllm``, ``openai``, or any whose options are a
    :class:`~.options.ModelOptions`) reads in its preset's ``coordinate_frame``; any other adapter
    returns regions in original pixels. Options that no longer validate fall back to the latter.

    >>> declared, frames = run_frames("hf", {"preset": "regionreasoner-7b"})
    >>> declared, sorted(frames), frames["input"]((640, 480)).width
    ('input', ['input', 'norm-1', 'norm-1000', 'original'], 840.0)
    """
    from ..frames import default_frames
    from .registry import get_adapter_class

    try:
        options_class = getattr(get_adapter_class(adapter), "options_class", None)
        if options_class is None or not issubclass(options_class, ModelOptions):
            return "original", default_frames()
        preset = options_class.parse(options).build_preset()
    except AdapterError:
        return "original", default_frames()
    as_input = preset.with_options(coordinate_frame="input")
    has_input = preset.image_mode == "squash" or preset.patch_factor is not None or preset.coordinate_frame == "input"
    return preset.coordinate_frame, default_frames(as_input.frame if has_input else None)
