"""Per-model presets: prompt template, image preprocessing, coordinate frame, decoding, parse options.

A preset is everything model-specific that a backend (``hf``, ``vllm``, ``openai``) needs to turn
a rendered round question into the exact model input and to read the answer back. The facts
(templates, frames, token budgets) follow the upstream evaluation of each baseline; the prompt
texts are model-input data.

>>> p = get_preset("regionreasoner-7b")
>>> p.input_size((640, 480))
(840, 840)
>>> p.reference_text((320, 0, 640, 480), (640, 480))
'[420, 0, 840, 840]'
>>> p.with_options(reference_frame="original").reference_text((320, 0, 640, 480), (640, 480))
'[320, 0, 640, 480]'
>>> get_preset("qwen2.5-vl-7b").input_size((640, 480))
(644, 476)
>>> q3 = get_preset("qwen3-vl-instruct", size="4B")
>>> q3.model, q3.input_size((640, 480)), q3.frame((640, 480)).name
('Qwen/Qwen3-VL-4B-Instruct', (640, 480), 'norm-1000')
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from ..geometry import CoordinateFrame
from ..prompts import (
    HOSTED_NORM_1000_TEMPLATE,
    HOSTED_PIXELS_TEMPLATE,
    INTERNVL_GROUNDING_TEMPLATE,
    QWEN3_VL_GROUNDING_TEMPLATE,
    QWEN_GROUNDING_TEMPLATE,
    QWEN_GROUNDING_TEMPLATE_UPSTREAM,
    QWEN_SYSTEM_PROMPT,
    REGIONREASONER_TEMPLATE,
    SEGZERO_TEMPLATE,
    VISIONREASONER_TEMPLATE,
)
from ..protocol import NO_REGION_TEXT, format_box
from ..schema import Box
from .base import Adapter, AdapterError, ImageInput, RoundResponse
from .sampling import SamplingSettings

ImageMode = Literal["squash", "native"]
FrameKind = Literal["input", "norm-1000", "norm-1", "original"]
ReferenceFrame = Literal["model", "original"]
QuestionStyle = Literal["lower-strip-punct", "lower-strip-period", "as-is"]
MaskPrompt = Literal["box+points", "box"]
AnswerFormat = Literal["objects", "single-object", "fenced-objects", "json-objects", "box-tags"]
PromptVariant = Literal["default", "upstream"]
RepetitionPenalty = float | Literal["checkpoint"]

QWEN_PATCH_FACTOR = 28
"""Qwen2-VL/2.5-VL sides are multiples of 28 (14-pixel patches merged 2x2)."""
QWEN_MIN_PIXELS = 4 * 28 * 28
QWEN_MAX_PIXELS = 16384 * 28 * 28
QWEN3_PATCH_FACTOR = 32
"""Qwen3-VL sides are multiples of 32 (16-pixel patches merged 2x2; its README's "compression ratio 32")."""
QWEN3_MIN_PIXELS = 64 * 32 * 32
QWEN3_MAX_PIXELS = 16384 * 32 * 32
"""Qwen3-VL checkpoints' ``preprocessor_config.json`` bounds, ``size: {shortest_edge: 65536,
longest_edge: 16777216}`` (as published copies of the file show; the Hub is not reachable here)."""
FRAME_CACHE_SIZE = 4096
"""Frames a preset keeps (one per distinct image size asked); the cache restarts when full."""


def smart_resize(
    width: int,
    height: int,
    *,
    factor: int = QWEN_PATCH_FACTOR,
    min_pixels: int = QWEN_MIN_PIXELS,
    max_pixels: int = QWEN_MAX_PIXELS,
) -> tuple[int, int]:
    """The ``(width, height)`` Qwen2.5-VL's processor resizes an image to.

    Each side is rounded to a multiple of ``factor``; if the area exceeds ``max_pixels`` both sides
    shrink (rounded down), if it falls below ``min_pixels`` they grow (rounded up).

    >>> smart_resize(640, 480)
    (644, 476)
    >>> smart_resize(840, 840)
    (840, 840)
    >>> smart_resize(4000, 3000, max_pixels=1280 * 28 * 28)
    (1148, 840)
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    w = max(factor, round(width / factor) * factor)
    h = max(factor, round(height / factor) * factor)
    if w * h > max_pixels:
        beta = math.sqrt(width * height / max_pixels)
        w = max(factor, math.floor(width / beta / factor) * factor)
        h = max(factor, math.floor(height / beta / factor) * factor)
    elif w * h < min_pixels:
        beta = math.sqrt(min_pixels / (width * height))
        w = math.ceil(width * beta / factor) * factor
        h = math.ceil(height * beta / factor) * factor
    return w, h


@dataclass(frozen=True)
class Preset:
    """How one model family is prompted and read.

    Attributes:
        name: Preset name (``regiondial evaluate --config`` files use it as ``adapter_options.preset``).
        model: Default Hub id or local path of the weights.
        prompt_template: User text with a ``{question}`` slot (filled by plain replacement, so other
            braces are literal).
        system_prompt: System message; ``None`` leaves the chat template's default.
        question_style: How the rendered question is normalised before it enters the template.
        image_mode: ``squash`` (resize to ``squash_size`` squared, aspect not kept, bilinear) or
            ``native`` (the processor's own ``smart_resize`` within ``min_pixels``/``max_pixels``).
        squash_size: Side of the squashed input.
        min_pixels: Lower pixel bound of the native resize.
        max_pixels: Upper pixel bound of the native resize.
        coordinate_frame: Frame the model writes coordinates in: ``input`` (pixels of the processed
            image), ``norm-1000``, ``norm-1`` or ``original`` (read as original pixels, i.e. upstream's
            factor-1 reading of Qwen2.5-VL's answers).
        reference_frame: ``model`` renders reference boxes into the model's frame (frame-consistent);
            ``original`` writes original pixels as upstream's evaluator does (parity).
        max_new_tokens: Greedy-decoding budget.
        dtype: Weight dtype on GPU (CPU runs use float32).
        require_answer_tag: Only text inside ``<answer>`` counts (the reasoning models).
        max_objects: Read at most this many objects from an answer (Seg-Zero: 1, as its evaluator
            reads exactly one); None reads all.
        mask_prompt: How SAM2 is prompted from this model's regions.
        patch_factor: Native-resize sides are multiples of this (Qwen2.5-VL 28, Qwen3-VL 32); None
            for processors that do not ``smart_resize`` (InternVL's tiles, hosted APIs): the input
            is then taken as the image sent.
        answer_format: The answer schema the response grammar enforces (``objects``,
            ``single-object``, ``fenced-objects``, ``json-objects``, ``box-tags``); None derives it from the answer tag
            and ``max_objects``.
        thinking: The model reasons before answering and closes its reasoning with ``</think>``
            (Qwen3-VL-Thinking); the grammar then admits free text before the answer.
        repetition_penalty: A number pins it on every backend (``hf``, ``vllm`` and, sent in the
            request, ``openai``); ``checkpoint`` applies the checkpoint's ``generation_config.json``
            value as upstream's ``generate`` does (``openai`` then sends none and the server applies
            its own default, e.g. ``vllm serve --generation-config auto``).
        prompt_variant: ``default`` (the clean template) or ``upstream`` (the released code's exact
            text, where it differs: Qwen2.5-VL's triple-quoted prompt).
        upstream_prompt_template: The released code's exact text, when it differs from ``prompt_template``.
        model_template: Hub id with a ``{size}`` slot for families released in several sizes.
        sizes: The sizes the family was released in (``size`` must be one of them).
        size: The size ``model`` is built from (``model_template``).
        source: Where the prompt, frame and format come from (model card, cookbook, eval code).
        keep_special_tokens: Special tokens that carry the answer (InternVL's ``<ref>``/``<box>``):
            kept when the output is decoded, while every other special token is dropped.
    """

    name: str
    model: str
    prompt_template: str
    system_prompt: str | None = None
    question_style: QuestionStyle = "as-is"
    image_mode: ImageMode = "squash"
    squash_size: int = 840
    min_pixels: int = QWEN_MIN_PIXELS
    max_pixels: int = QWEN_MAX_PIXELS
    coordinate_frame: FrameKind = "input"
    reference_frame: ReferenceFrame = "model"
    max_new_tokens: int = 2048
    dtype: str = "bfloat16"
    require_answer_tag: bool = True
    max_objects: int | None = None
    mask_prompt: MaskPrompt = "box+points"
    patch_factor: int | None = QWEN_PATCH_FACTOR
    answer_format: AnswerFormat | None = None
    thinking: bool = False
    repetition_penalty: RepetitionPenalty = 1.0
    prompt_variant: PromptVariant = "default"
    upstream_prompt_template: str | None = None
    model_template: str | None = None
    sizes: tuple[str, ...] = ()
    size: str | None = None
    source: str = ""
    keep_special_tokens: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if "{question}" not in self.prompt_template:
            raise AdapterError(f"preset {self.name!r}: prompt_template has no {{question}} slot")
        if self.upstream_prompt_template is not None and "{question}" not in self.upstream_prompt_template:
            raise AdapterError(f"preset {self.name!r}: upstream_prompt_template has no {{question}} slot")
        if self.sizes and self.size not in self.sizes:
            close = difflib.get_close_matches(str(self.size), self.sizes, n=1, cutoff=0.3)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise AdapterError(f"preset {self.name!r}: size {self.size!r} is not a released size{hint}; "
                               f"choose one of {', '.join(self.sizes)}")
        penalty = self.repetition_penalty
        if penalty != "checkpoint" and (isinstance(penalty, bool) or not isinstance(penalty, int | float)
                                        or not math.isfinite(penalty) or penalty <= 0):
            raise AdapterError(f"preset {self.name!r}: repetition_penalty must be a positive number or "
                               f"'checkpoint', got {penalty!r}")
        if self.patch_factor is not None and self.patch_factor < 1:
            raise AdapterError(f"preset {self.name!r}: patch_factor must be >= 1 or None, got {self.patch_factor}")
        checks = {
            "image_mode": (self.image_mode, ("squash", "native")),
            "coordinate_frame": (self.coordinate_frame, ("input", "norm-1000", "norm-1", "original")),
            "reference_frame": (self.reference_frame, ("model", "original")),
            "question_style": (self.question_style, ("lower-strip-punct", "lower-strip-period", "as-is")),
            "mask_prompt": (self.mask_prompt, ("box+points", "box")),
            "prompt_variant": (self.prompt_variant, ("default", "upstream")),
            "answer_format": (self.answer_format, (None, *get_args(AnswerFormat))),
        }
        for field_name, (value, allowed) in checks.items():
            if value not in allowed:
                raise AdapterError(f"preset {self.name!r}: {field_name}={value!r}; choose one of {allowed}")
        if self.max_objects is not None and self.max_objects < 1:
            raise AdapterError(f"preset {self.name!r}: max_objects must be >= 1 or None, got {self.max_objects}")
        if self.squash_size <= 0 or self.max_new_tokens <= 0:
            raise AdapterError(f"preset {self.name!r}: squash_size and max_new_tokens must be positive")
        if self.min_pixels > self.max_pixels:
            raise AdapterError(f"preset {self.name!r}: min_pixels {self.min_pixels} > max_pixels {self.max_pixels}")
        object.__setattr__(self, "_frames", {})  # frame() cache; not a field (not compared, copied or recorded)

    def with_options(self, **overrides: Any) -> Preset:
        """A copy with some fields replaced (``None`` values are ignored); validates the result."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise AdapterError(f"unknown preset option(s) {unknown}; known: {sorted(known)}")
        given = {k: v for k, v in overrides.items() if v is not None}
        if "size" in given and "model" not in given:
            if self.model_template is None:
                raise AdapterError(f"preset {self.name!r} has one size; give the weights with model instead")
            given["model"] = self.model_template.format(size=given["size"])
        return dataclasses.replace(self, **given)

    # ---------------------------------------------------------------- prompt

    def normalize_question(self, question: str) -> str:
        """Apply the model's question normalisation (lowercasing, stripping end punctuation)."""
        if self.question_style == "lower-strip-punct":
            return question.lower().strip('."?!')
        if self.question_style == "lower-strip-period":
            return question.lower().strip().rstrip(".")
        return question.strip()

    @property
    def template(self) -> str:
        """The user template this preset sends: the released text under ``prompt_variant: upstream``."""
        if self.prompt_variant == "upstream" and self.upstream_prompt_template is not None:
            return self.upstream_prompt_template
        return self.prompt_template

    def user_text(self, question: str, image_size: tuple[int, int] | None = None) -> str:
        """The user-message text for a rendered round question (``{width}``/``{height}`` slots take
        the size of the image sent, for templates that state it)."""
        text = self.template
        if image_size is not None and "{width}" in text:
            text = text.replace("{width}", str(image_size[0])).replace("{height}", str(image_size[1]))
        return text.replace("{question}", self.normalize_question(question))

    def messages(self, question: str, image: Any = None, image_size: tuple[int, int] | None = None
                 ) -> list[dict[str, Any]]:
        """Chat messages in the transformers format: optional system, then user [image, text]."""
        image_part: dict[str, Any] = {"type": "image"}
        if image is not None:
            image_part["image"] = image
        out: list[dict[str, Any]] = []
        if self.system_prompt is not None:
            out.append({"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
        text = self.user_text(question, image_size)
        out.append({"role": "user", "content": [image_part, {"type": "text", "text": text}]})
        return out

    # ---------------------------------------------------------------- decoding

    def decoding_repetition_penalty(self, checkpoint_value: Any = None) -> float:
        """The repetition penalty to decode with: the preset's number, or under ``checkpoint`` the
        checkpoint's ``generation_config.json`` value (1.0 when it sets none).

        >>> get_preset("qwen2.5-vl-7b").decoding_repetition_penalty(1.05)
        1.0
        >>> get_preset("qwen2.5-vl-7b", repetition_penalty="checkpoint").decoding_repetition_penalty(1.05)
        1.05
        """
        if self.repetition_penalty != "checkpoint":
            return float(self.repetition_penalty)
        valid = isinstance(checkpoint_value, int | float) and not isinstance(checkpoint_value, bool)
        return float(checkpoint_value) if valid and math.isfinite(checkpoint_value) and checkpoint_value > 0 else 1.0

    @property
    def repetition_penalty_from(self) -> str:
        """``checkpoint`` (its generation config) or ``preset`` (pinned)."""
        return "checkpoint" if self.repetition_penalty == "checkpoint" else "preset"

    # ---------------------------------------------------------------- frames

    def input_size(self, original_size: tuple[int, int]) -> tuple[int, int]:
        """``(width, height)`` of the image the model sees."""
        if self.image_mode == "squash":
            return (self.squash_size, self.squash_size)
        if self.patch_factor is None:
            return (int(original_size[0]), int(original_size[1]))
        return smart_resize(*original_size, factor=self.patch_factor, min_pixels=self.min_pixels,
                            max_pixels=self.max_pixels)

    def frame(self, original_size: tuple[int, int], input_size: tuple[int, int] | None = None) -> CoordinateFrame:
        """The frame the model's answer coordinates are read in.

        Asked once per answer and once per rendered reference, with few distinct image sizes: the
        frames are kept per preset (they are immutable), at most :data:`FRAME_CACHE_SIZE` of them.
        """
        key = (original_size, input_size)
        try:
            return self._frames[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable size (a list): not kept
            return self._make_frame(original_size, input_size)
        if len(self._frames) >= FRAME_CACHE_SIZE:
            self._frames.clear()
        frame = self._frames[key] = self._make_frame(original_size, input_size)
        return frame

    def _make_frame(self, original_size: tuple[int, int], input_size: tuple[int, int] | None) -> CoordinateFrame:
        if self.coordinate_frame == "norm-1000":
            return CoordinateFrame.normalized(1000)
        if self.coordinate_frame == "norm-1":
            return CoordinateFrame.normalized(1)
        if self.coordinate_frame == "original":
            return CoordinateFrame.original(*original_size)
        w, h = input_size if input_size is not None else self.input_size(original_size)
        return CoordinateFrame(float(w), float(h), f"{self.image_mode}-{w}x{h}")

    def reference_text(self, box: Sequence[float] | None, original_size: tuple[int, int] | None) -> str:
        """A reference box as written into the question: model frame, or original pixels for parity."""
        if box is None:
            return NO_REGION_TEXT
        if self.reference_frame == "original" or self.coordinate_frame == "original":
            return format_box(box)
        if original_size is None:
            raise AdapterError("rendering a reference in the model's frame needs the image size; "
                               "pass --images DIR or set reference_frame: original")
        return format_box(self.frame(original_size).box_from_original(box, original_size))

    def resize_for_model(self, image: Any) -> Any:
        """Apply the squash (PIL bilinear) before the processor; native mode returns the image as is."""
        return self.image_prepare()(image)

    def image_prepare(self) -> Any:
        """:meth:`resize_for_model` as a small picklable callable (what image encoder processes are sent)."""
        from ._image_worker import Squash, unchanged

        return Squash(self.squash_size) if self.image_mode == "squash" else unchanged

    def processor_pixel_bounds(self) -> tuple[int, int]:
        """``(min_pixels, max_pixels)`` to give the processor so it applies exactly this preset's resize."""
        if self.image_mode == "squash":
            area = self.squash_size * self.squash_size
            return (min(area, self.min_pixels), max(area, self.max_pixels))
        return (self.min_pixels, self.max_pixels)

    def describe(self) -> dict[str, Any]:
        """Fields recorded in a run's provenance (the template as a short fingerprint)."""
        import hashlib

        data = dataclasses.asdict(self)
        data["prompt_template"] = hashlib.sha256(self.prompt_template.encode()).hexdigest()[:12]
        if self.upstream_prompt_template is not None:
            data["upstream_prompt_template"] = hashlib.sha256(self.upstream_prompt_template.encode()).hexdigest()[:12]
        data["sent_template"] = hashlib.sha256(self.template.encode()).hexdigest()[:12]
        data["sizes"] = list(self.sizes)
        data["keep_special_tokens"] = list(self.keep_special_tokens)
        return data


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="regionreasoner-7b",
            model="lmsdss/RegionReasoner-7B",
            prompt_template=REGIONREASONER_TEMPLATE,
            question_style="lower-strip-punct",
            image_mode="squash",
            max_new_tokens=2048,
        ),
        Preset(
            name="visionreasoner-7b",
            model="Ricky06662/VisionReasoner-7B",
            prompt_template=VISIONREASONER_TEMPLATE,
            question_style="lower-strip-punct",
            image_mode="squash",
            max_new_tokens=2048,
        ),
        Preset(
            name="seg-zero-7b",
            model="Ricky06662/Seg-Zero-7B",
            prompt_template=SEGZERO_TEMPLATE,
            question_style="lower-strip-period",
            image_mode="squash",
            max_new_tokens=1024,
            max_objects=1,
        ),
        Preset(
            name="qwen2.5-vl-7b",
            model="Qwen/Qwen2.5-VL-7B-Instruct",
            prompt_template=QWEN_GROUNDING_TEMPLATE,
            upstream_prompt_template=QWEN_GROUNDING_TEMPLATE_UPSTREAM,
            system_prompt=QWEN_SYSTEM_PROMPT,
            image_mode="native",
            coordinate_frame="input",
            max_new_tokens=1024,
            dtype="float16",
            require_answer_tag=False,
            mask_prompt="box",
            source="upstream baseline path test/vision_reasoner/models/qwen_vl.py (UPSTREAM.md 3.4)",
        ),
        *(
            Preset(
                name=f"qwen3-vl-{variant.lower()}",
                model=f"Qwen/Qwen3-VL-8B-{variant}",
                model_template=f"Qwen/Qwen3-VL-{{size}}-{variant}",
                sizes=("2B", "4B", "8B", "32B", "30B-A3B", "235B-A22B"),
                size="8B",
                prompt_template=QWEN3_VL_GROUNDING_TEMPLATE,
                image_mode="native",
                patch_factor=QWEN3_PATCH_FACTOR,
                min_pixels=QWEN3_MIN_PIXELS,
                max_pixels=QWEN3_MAX_PIXELS,
                coordinate_frame="norm-1000",
                max_new_tokens=8192 if variant == "Thinking" else 1024,
                require_answer_tag=False,
                answer_format="fenced-objects",
                thinking=variant == "Thinking",
                mask_prompt="box",
                source="QwenLM/Qwen3-VL README (relative 0-1000 grounding, compression ratio 32) and its "
                       "RefCOCO prompt in QwenLM/Qwen3-VL#1721 (UPSTREAM.md 3.4b)",
            )
            for variant in ("Instruct", "Thinking")
        ),
        Preset(
            name="internvl3.5",
            model="OpenGVLab/InternVL3_5-8B-HF",
            model_template="OpenGVLab/InternVL3_5-{size}-HF",
            sizes=("1B", "2B", "4B", "8B", "14B", "38B", "30B-A3B", "241B-A28B", "GPT-OSS-20B-A4B-Preview"),
            size="8B",
            prompt_template=INTERNVL_GROUNDING_TEMPLATE,
            image_mode="native",
            patch_factor=None,
            coordinate_frame="norm-1000",
            max_new_tokens=1024,
            require_answer_tag=False,
            answer_format="box-tags",
            keep_special_tokens=("<ref>", "</ref>", "<box>", "</box>"),
            mask_prompt="box",
            source="OpenGVLab/InternVL internvl_chat/eval/refcoco/evaluate_grounding.py (prompt; boxes / 1000 "
                   "* image size) and the OpenGVLab InternVL3.5 -HF collection (sizes)",
        ),
        *(
            Preset(
                name=f"hosted-{frame}",
                model="",  # the served model's name: always given (``model: ...``)
                prompt_template=template,
                image_mode="native",
                patch_factor=None,
                coordinate_frame="original" if frame == "pixels" else "norm-1000",
                max_new_tokens=1024,
                require_answer_tag=False,
                answer_format="json-objects",
                mask_prompt="box",
                repetition_penalty="checkpoint",
                source="this project: the frame is the one the prompt asks for (UPSTREAM.md 3.4b)",
            )
            for frame, template in (("pixels", HOSTED_PIXELS_TEMPLATE), ("norm-1000", HOSTED_NORM_1000_TEMPLATE))
        ),
    )
}
"""The built-in presets (SegLLM has its own worker adapter, see ``adapters/segllm.py``)."""


def describe_frame(preset: Preset) -> str:
    """The frame a preset's answers are read in, in words (``regiondial adapters`` lists it).

    >>> describe_frame(get_preset("regionreasoner-7b")), describe_frame(get_preset("qwen3-vl-instruct"))
    ('pixels of the 840x840 squash', '0-1000 of the image')
    """
    if preset.coordinate_frame == "norm-1000":
        return "0-1000 of the image"
    if preset.coordinate_frame == "norm-1":
        return "0-1 of the image"
    if preset.coordinate_frame == "original":
        return "pixels of the original image"
    if preset.image_mode == "squash":
        return f"pixels of the {preset.squash_size}x{preset.squash_size} squash"
    if preset.patch_factor is None:
        return "pixels of the image sent"
    return f"pixels of the smart_resize input (factor {preset.patch_factor})"


def get_preset(name: str | Preset, **overrides: Any) -> Preset:
    """Look a preset up by name (with a "did you mean" error) and apply option overrides."""
    if isinstance(name, Preset):
        preset = name
    elif name in PRESETS:
        preset = PRESETS[name]
    else:
        close = difflib.get_close_matches(str(name), list(PRESETS), n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise AdapterError(f"unknown preset {name!r}.{hint} Available: {', '.join(sorted(PRESETS))}")
    return preset.with_options(**overrides) if overrides else preset


def weights_fingerprint(model: str) -> dict[str, Any]:
    """What identifies a checkpoint for the response cache: its name, and for a local folder a hash
    of its files' names, sizes and modification times (retrained weights written over the same
    folder change it; the weights themselves are not read, which would take minutes)."""
    import hashlib
    from pathlib import Path

    folder = Path(model).expanduser()
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    except OSError:
        files = []
    if not files:
        return {"model": model}
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return {"model": str(folder.resolve()), "files": "sha256:" + digest.hexdigest()}


class PresetAdapter(Adapter):
    """Base of the adapters driven by a :class:`Preset` (``hf``, ``vllm``, ``openai``).

    The preset decides how reference boxes are written into the question (the model's frame, or
    original pixels for upstream parity). Decoding is greedy unless the options ask for sampling
    (``temperature``, ``top_p``, ``seed``: :class:`~regiondial_bench.adapters.sampling.SamplingSettings`).
    """

    preset: Preset
    sampling_settings: SamplingSettings = SamplingSettings()

    @property
    def samples(self) -> bool:
        return not self.sampling_settings.greedy

    def reseed(self, seed: int) -> None:
        self.sampling_settings = self.sampling_settings.reseeded(seed)
        self.sampling_changed()

    def sampling_changed(self) -> None:
        """Rebuild what the backend derived from :attr:`sampling_settings` (after :meth:`reseed`)."""

    def preset_identity(self, model: dict[str, Any], **backend: Any) -> dict[str, Any]:
        """The response-cache identity of a preset adapter: the model, the preset, the decoding
        settings (the seed only when sampling: greedy answers do not depend on it) and the
        backend's own answer-changing options."""
        sampling = self.sampling_settings.describe() if self.samples else {"temperature": 0.0}
        return {"model": model, "preset": self.preset.describe(), "sampling": sampling, **backend}

    def reference_text(self, box: Box | None, request_image: ImageInput) -> str:
        size = None if box is None else request_image.require_size()
        return self.preset.reference_text(box, size)

    def chat_inputs(self, requests: Sequence[Any], processor: Any) -> tuple[list[str], list[Any], list[tuple[int, int]]]:
        """Per request: the chat-templated prompt, the image as the model sees it, the original size."""
        texts, images, sizes = [], [], []
        for request in requests:
            image = request.load_image()
            sizes.append(image.size)
            shown = self.preset.resize_for_model(image)
            images.append(shown)
            texts.append(processor.apply_chat_template(
                self.preset.messages(request.question, image_size=shown.size), add_generation_prompt=True,
                tokenize=False,
            ))
        return texts, images, sizes

    def response(self, text: str, original_size: tuple[int, int], input_size: tuple[int, int] | None = None,
                 extra: dict[str, Any] | None = None) -> RoundResponse:
        """A model's text answer, to be read in this preset's frame and with its parse rules."""
        return RoundResponse(
            raw_text=text,
            frame=self.preset.frame(original_size, input_size),
            require_answer_tag=self.preset.require_answer_tag,
            max_regions=self.preset.max_objects,
            extra=extra or {},
        )

