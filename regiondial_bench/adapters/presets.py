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
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..geometry import CoordinateFrame
from ..prompts import (
    QWEN_GROUNDING_TEMPLATE,
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

QWEN_PATCH_FACTOR = 28
"""Qwen2-VL/2.5-VL sides are multiples of 28 (14-pixel patches merged 2x2)."""
QWEN_MIN_PIXELS = 4 * 28 * 28
QWEN_MAX_PIXELS = 16384 * 28 * 28
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

    def __post_init__(self) -> None:
        if "{question}" not in self.prompt_template:
            raise AdapterError(f"preset {self.name!r}: prompt_template has no {{question}} slot")
        checks = {
            "image_mode": (self.image_mode, ("squash", "native")),
            "coordinate_frame": (self.coordinate_frame, ("input", "norm-1000", "norm-1", "original")),
            "reference_frame": (self.reference_frame, ("model", "original")),
            "question_style": (self.question_style, ("lower-strip-punct", "lower-strip-period", "as-is")),
            "mask_prompt": (self.mask_prompt, ("box+points", "box")),
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
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    # ---------------------------------------------------------------- prompt

    def normalize_question(self, question: str) -> str:
        """Apply the model's question normalisation (lowercasing, stripping end punctuation)."""
        if self.question_style == "lower-strip-punct":
            return question.lower().strip('."?!')
        if self.question_style == "lower-strip-period":
            return question.lower().strip().rstrip(".")
        return question.strip()

    def user_text(self, question: str) -> str:
        """The user-message text for a rendered round question."""
        return self.prompt_template.replace("{question}", self.normalize_question(question))

    def messages(self, question: str, image: Any = None) -> list[dict[str, Any]]:
        """Chat messages in the transformers format: optional system, then user [image, text]."""
        image_part: dict[str, Any] = {"type": "image"}
        if image is not None:
            image_part["image"] = image
        out: list[dict[str, Any]] = []
        if self.system_prompt is not None:
            out.append({"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
        out.append({"role": "user", "content": [image_part, {"type": "text", "text": self.user_text(question)}]})
        return out

    # ---------------------------------------------------------------- frames

    def input_size(self, original_size: tuple[int, int]) -> tuple[int, int]:
        """``(width, height)`` of the image the model sees."""
        if self.image_mode == "squash":
            return (self.squash_size, self.squash_size)
        return smart_resize(*original_size, min_pixels=self.min_pixels, max_pixels=self.max_pixels)

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
            system_prompt=QWEN_SYSTEM_PROMPT,
            image_mode="native",
            coordinate_frame="input",
            max_new_tokens=1024,
            dtype="float16",
            require_answer_tag=False,
            mask_prompt="box",
        ),
    )
}
"""The built-in presets (SegLLM has its own worker adapter, see ``adapters/segllm.py``)."""


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
            images.append(self.preset.resize_for_model(image))
            texts.append(processor.apply_chat_template(
                self.preset.messages(request.question), add_generation_prompt=True, tokenize=False
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
