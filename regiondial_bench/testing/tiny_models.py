"""Tiny random vision-language and segmentation models, built offline from configs.

The models have random weights; they exist so that the real loading, preprocessing, batched
generation and mask-decoding code runs end to end in tests and CPU benchmarks without any
download. ``build_tiny_qwen2_5_vl`` is shared with the GRPO trainer: keep its signature stable.
``build_tiny_qwen3_vl`` and ``build_tiny_internvl`` build the current families the same way
(transformers' ``Qwen3VLForConditionalGeneration`` and ``InternVLForConditionalGeneration``).

Example::

    from regiondial_bench.testing import build_tiny_qwen2_5_vl
    from regiondial_bench.adapters.processors import load_vlm_processor

    path = build_tiny_qwen2_5_vl(tmp_path / "qwen")
    processor = load_vlm_processor(path)

``random_qwen2_5_vl`` and ``build_random_sam2`` build the same architectures at the released
checkpoints' shapes (Qwen2.5-VL-7B, SAM2 Hiera-L) with random weights, for GPU benchmarks where
no download is possible, plus a narrow ``7b-mini`` stand-in that runs the same code on CPU.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

QWEN_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
"""Qwen2.5-VL's special tokens, in the order the tiny tokenizer assigns them ids (Qwen3-VL's are the same)."""

INTERNVL_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<img>",
    "</img>",
    "<IMG_CONTEXT>",
    "<video>",
    "<ref>",
    "</ref>",
    "<box>",
    "</box>",
    "<quad>",
    "</quad>",
)
"""InternVL3.5-HF's image and grounding tokens around a ChatML core."""

# A ChatML template written for this project with the behaviour of Qwen2.5-VL's: a default system
# message, image/video placeholders wrapped in vision start/end tokens, string or list content.
CHAT_TEMPLATE = (
    "{% if messages and messages[0]['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}"
    "{{ message['content'] }}"
    "{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part or 'image_url' in part %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' or 'video' in part %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in part %}"
    "{{ part['text'] }}"
    "{% endif %}"
    "{% endfor %}"
    "{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tokenizer_corpus() -> list[str]:
    """Local training text for the byte-level BPE: the bench's prompt and answer vocabulary."""
    from ..adapters.presets import PRESETS

    lines: list[str] = []
    for preset in PRESETS.values():
        lines.extend(preset.prompt_template.splitlines())
    vocabulary = (
        "find the person man woman dog cat car bus table chair left right above below near behind "
        "next to inside overlapping touching guy girl boy red blue white black green small large "
        "scene focus think answer image picture photo shows contains visible appears located "
        "reference bbox bounding box coordinates point region target object relation"
    )
    words = vocabulary.split()
    for i, word in enumerate(words):
        box = [(7 * i) % 640, (13 * i) % 480, (7 * i) % 640 + 40, (13 * i) % 480 + 60]
        lines.append(f"<scene> The image shows a {word} in a room. </scene>")
        lines.append(f"<focus> Inside bbox={box} there is a {word}. </focus>")
        lines.append(f"<think> The target is {words[(i + 3) % len(words)]} the reference {word}. </think>")
        lines.append(f'<answer>[{{"bbox_2d": {box}, "point_2d": [{box[0] + 20}, {box[1] + 30}]}}]</answer>')
        lines.append(f'```json\n[{{"bbox_2d": {box}, "label": "{word}"}}]\n```')
        lines.append(f"The {word} is the target.</think>\n\n<ref>the {word}</ref><box>[{box}]</box>")
    lines.extend(str(n) for n in range(1001))
    return lines


QWEN_EXTRA_TOKENS = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                     "vision_start_token": "<|vision_start|>", "vision_end_token": "<|vision_end|>"}
INTERNVL_EXTRA_TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>",
                         "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}


def _build_tokenizer(vocab_size: int, special_tokens: tuple[str, ...] = QWEN_SPECIAL_TOKENS,
                     extra_special_tokens: dict[str, str] | None = None, chat_template: str = CHAT_TEMPLATE) -> Any:
    """Train a byte-level BPE on the local corpus and wrap it as a ChatML fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_tokenizer_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        extra_special_tokens=dict(QWEN_EXTRA_TOKENS if extra_special_tokens is None else extra_special_tokens),
        model_max_length=32768,
        padding_side="left",
    )
    fast.chat_template = chat_template
    return fast


def _text_config(vocab: int, ids: dict[str, int], **extra: Any) -> dict[str, Any]:
    """A 2-layer decoder with hidden size 64 (4 heads of 16, 2 KV heads), tied embeddings."""
    return {
        "vocab_size": vocab,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "tie_word_embeddings": True,
        **extra,
    }


def _save_tiny(model: Any, tokenizer: Any, image_processor: Any, out: Path, ids: dict[str, int],
               never: tuple[str, ...], processor: dict[str, Any], chat_template: str, kind: str, seed: int) -> Path:
    """Greedy generation settings that stop at ``<|im_end|>`` and never emit ``never``; write the folder."""
    model.generation_config.do_sample = False
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    # random weights can emit vision placeholders, which break re-tokenisation downstream
    model.generation_config.suppress_tokens = [ids[t] for t in never]
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    image_processor.save_pretrained(out)
    (out / "chat_template.jinja").write_text(chat_template)
    (out / "processor_config.json").write_text(json.dumps(processor))
    (out / "regiondial_tiny.json").write_text(json.dumps({"kind": kind, "seed": seed}))
    return out


def build_tiny_qwen2_5_vl(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny random Qwen2.5-VL checkpoint folder loadable by ``from_pretrained``.

    The folder holds the model (2 text layers, hidden size 64, a 2-block vision tower whose output
    size equals the text hidden size, mrope sections summing to head_dim/2), a byte-level BPE
    tokenizer trained on local text with Qwen's special tokens and a ChatML chat template, and a
    Qwen2-VL image processor with small min/max pixels (so images become a few dozen tokens).

    Args:
        out_dir: Folder to write (created; existing files are overwritten).
        seed: Seed for the random weights (same seed, same weights).

    Returns:
        The folder path.
    """
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLImageProcessorPil,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _build_tokenizer(vocab_size=640)
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in QWEN_SPECIAL_TOKENS}
    vocab = len(tokenizer)
    hidden, heads = 64, 4
    head_dim = hidden // heads
    mrope_section = [2, 3, 3]  # temporal, height, width rotary sections: they must sum to head_dim / 2
    assert sum(mrope_section) * 2 == head_dim
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": vocab,
            "hidden_size": hidden,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": heads,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope_section},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": True,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": hidden,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.do_sample = False
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    # random weights can emit vision placeholders, which break re-tokenisation downstream
    model.generation_config.suppress_tokens = [ids[t] for t in QWEN_SPECIAL_TOKENS[3:] if t != "<|im_end|>"]
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    # 16..64 merged patches: tiny images stay cheap on CPU while keeping smart_resize meaningful
    image_processor = Qwen2VLImageProcessorPil(min_pixels=16 * 28 * 28, max_pixels=64 * 28 * 28)
    image_processor.save_pretrained(out)
    (out / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    (out / "processor_config.json").write_text(json.dumps({"processor_class": "Qwen2_5_VLProcessor"}))
    (out / "regiondial_tiny.json").write_text(json.dumps({"kind": "tiny-qwen2.5-vl", "seed": seed}))
    return out


def build_tiny_qwen3_vl(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny random Qwen3-VL checkpoint folder loadable by ``from_pretrained``.

    Qwen3-VL's layout at toy size: 2 text layers (hidden 64, head_dim 16, interleaved mrope
    sections summing to 8), a 2-block vision tower of 16-pixel patches merged 2x2 (so
    ``smart_resize`` works in multiples of 32, as the real one) with one deepstack layer, the
    Qwen tokenizer's special tokens, and a Qwen2-VL image processor (patch 16, mean/std 0.5) bound
    to 16..64 merged patches. The same folder serves the Instruct and Thinking presets (they differ
    in prompt budget and grammar, not in architecture).

    Args:
        out_dir: Folder to write (created; existing files are overwritten).
        seed: Seed for the random weights.

    Returns:
        The folder path.
    """
    import torch
    from transformers import Qwen2VLImageProcessorPil, Qwen3VLConfig, Qwen3VLForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _build_tokenizer(vocab_size=640)
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in QWEN_SPECIAL_TOKENS}
    config = Qwen3VLConfig(
        text_config=_text_config(len(tokenizer), ids, head_dim=16, rope_parameters={
            "rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [2, 3, 3], "mrope_interleaved": True}),
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
                       "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
                       "num_position_embeddings": 64, "deepstack_visual_indexes": [1]},
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    image_processor = Qwen2VLImageProcessorPil(patch_size=16, merge_size=2, temporal_patch_size=2,
                                               min_pixels=16 * 32 * 32, max_pixels=64 * 32 * 32,
                                               image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    never = tuple(t for t in QWEN_SPECIAL_TOKENS[3:] if t != "<|im_end|>")
    return _save_tiny(model, tokenizer, image_processor, out, ids, never, {"processor_class": "Qwen3VLProcessor"},
                      CHAT_TEMPLATE, "tiny-qwen3-vl", seed)


INTERNVL_TILE = 56
"""Side of a tiny InternVL tile: 4x4 patches of 14 pixels, 4 image tokens after the 0.5 pixel shuffle."""


def build_tiny_internvl(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny random InternVL3.5-style checkpoint folder (transformers' ``InternVLForConditionalGeneration``).

    A 2-layer InternViT on 56-pixel tiles (14-pixel patches, pixel shuffle 0.5: 4 image tokens per
    tile), a 2-layer Qwen3 text model (as InternVL3.5's), InternVL's ``<img>``/``<IMG_CONTEXT>``
    and ``<ref>``/``<box>`` tokens, and the GOT-OCR2 tiling image processor (1 to 2 tiles plus the
    thumbnail), so the real ``crop_to_patches`` path runs.

    Args:
        out_dir: Folder to write.
        seed: Seed for the random weights.

    Returns:
        The folder path.
    """
    import torch
    from transformers import InternVLConfig, InternVLForConditionalGeneration
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    template = CHAT_TEMPLATE.replace("<|vision_start|><|image_pad|><|vision_end|>", "<IMG_CONTEXT>\n")
    tokenizer = _build_tokenizer(640, INTERNVL_SPECIAL_TOKENS, INTERNVL_EXTRA_TOKENS, template)
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in INTERNVL_SPECIAL_TOKENS}
    tokens_per_tile = (INTERNVL_TILE // 14) ** 2 // 4
    config = InternVLConfig(
        vision_config={"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
                       "image_size": [INTERNVL_TILE, INTERNVL_TILE], "patch_size": [14, 14]},
        text_config=_text_config(len(tokenizer), ids, model_type="qwen3", head_dim=16),
        image_token_id=ids["<IMG_CONTEXT>"],
        image_seq_length=tokens_per_tile,
        downsample_ratio=0.5,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config).eval()
    image_processor = GotOcr2ImageProcessorPil(size={"height": INTERNVL_TILE, "width": INTERNVL_TILE},
                                               crop_to_patches=True, min_patches=1, max_patches=2)
    never = ("<img>", "</img>", "<IMG_CONTEXT>", "<video>", "<quad>", "</quad>")
    return _save_tiny(model, tokenizer, image_processor, out, ids, never,
                      {"processor_class": "InternVLProcessor", "image_seq_length": tokens_per_tile},
                      template, "tiny-internvl3.5", seed)


def build_tiny_sam2(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny random SAM2 (transformers' ``Sam2Model``) plus its processor.

    The image encoder is a 2-stage Hiera with small widths and a 64-pixel input, so a forward
    pass takes milliseconds on CPU; the prompt encoder and mask decoder keep their real structure.

    Args:
        out_dir: Folder to write.
        seed: Seed for the random weights.

    Returns:
        The folder path.
    """
    import torch
    from transformers import Sam2Config, Sam2Model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = _tiny_sam2_config(Sam2Config)
    torch.manual_seed(seed)
    model = Sam2Model(config).eval()
    model.save_pretrained(out)
    _tiny_sam2_processor(config).save_pretrained(out)
    (out / "regiondial_tiny.json").write_text(json.dumps({"kind": "tiny-sam2", "seed": seed}))
    return out


SAM2_IMAGE_MEAN = (0.485, 0.456, 0.406)
SAM2_IMAGE_STD = (0.229, 0.224, 0.225)


def _tiny_sam2_config(config_cls: Any, image_size: int = 128) -> Any:
    """A 4-stage Hiera with 1-2 blocks per stage and small widths (same topology as SAM2-L)."""
    feature = image_size // 4
    return config_cls(
        vision_config={
            "backbone_config": {
                "model_type": "sam2_hiera_det_model",
                "image_size": [image_size, image_size],
                "hidden_size": 16,
                "blocks_per_stage": [1, 1, 2, 1],
                "embed_dim_per_stage": [16, 32, 64, 128],
                "num_attention_heads_per_stage": [1, 1, 2, 2],
                "window_size_per_stage": [4, 4, 4, 2],
                "global_attention_blocks": [3],
                "window_positional_embedding_background_size": [4, 4],
            },
            "backbone_channel_list": [128, 64, 32, 16],
            "backbone_feature_sizes": [[feature, feature], [feature // 2, feature // 2], [feature // 4, feature // 4]],
            "fpn_hidden_size": 32,
        },
        prompt_encoder_config={"hidden_size": 32, "image_size": image_size, "patch_size": 16},
        mask_decoder_config={"hidden_size": 32, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": 32},
    )


def _tiny_sam2_processor(config: Any) -> Any:
    """The preprocessing settings SAM2 checkpoints ship (square resize, ImageNet normalisation)."""
    size = config.prompt_encoder_config.image_size

    class _Saver:
        def save_pretrained(self, out: Path) -> None:
            (Path(out) / "preprocessor_config.json").write_text(json.dumps({
                "image_processor_type": "Sam2ImageProcessorFast",
                "size": {"height": size, "width": size},
                "mask_size": {"height": size // 4, "width": size // 4},
                "image_mean": list(SAM2_IMAGE_MEAN),
                "image_std": list(SAM2_IMAGE_STD),
                "do_rescale": True,
                "rescale_factor": 1 / 255,
                "do_normalize": True,
                "processor_class": "Sam2Processor",
            }, indent=2))

    return _Saver()


@dataclass(frozen=True)
class VLMShape:
    """The architecture of a Qwen2.5-VL: text and vision config entries (no token ids).

    Attributes:
        name: The shape's name.
        text: ``text_config`` entries (widths, depth, vocabulary, rotary sections).
        vision: ``vision_config`` entries (widths, depth, patching, windowed attention).
    """

    name: str
    text: dict[str, Any] = field(repr=False)
    vision: dict[str, Any] = field(repr=False)


QWEN2_5_VL_SHAPES: dict[str, VLMShape] = {
    # Qwen2.5-VL-7B-Instruct's config.json (8.3B parameters with the vision tower)
    "7b": VLMShape(
        "7b",
        text={"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
              "num_attention_heads": 28, "num_key_value_heads": 4, "max_position_embeddings": 128000,
              "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
              "rms_norm_eps": 1e-6, "tie_word_embeddings": False},
        vision={"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                "out_hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31]},
    ),
    # 7B's vocabulary, head layout (head_dim 64 here), patching and windowing, narrow and shallow:
    # the code paths of the 7B shape (a vocabulary far larger than the tiny tokenizer's, full-size
    # image grids) at a size a CPU runs in seconds
    "7b-mini": VLMShape(
        "7b-mini",
        text={"vocab_size": 152064, "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 4,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 32768,
              "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [8, 12, 12]},
              "rms_norm_eps": 1e-6, "tie_word_embeddings": False},
        vision={"depth": 4, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2, "out_hidden_size": 256,
                "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
                "fullatt_block_indexes": [1, 3]},
    ),
}
"""Named Qwen2.5-VL shapes for :func:`random_qwen2_5_vl`."""


def random_qwen2_5_vl(
    shape: str | VLMShape,
    tokenizer_dir: str | Path,
    *,
    device: str = "cpu",
    dtype: Any = None,
    text_layers: int | None = None,
    vision_layers: int | None = None,
    seed: int = 0,
) -> Any:
    """A random-weight Qwen2.5-VL of a named shape, built in memory directly on ``device``.

    Token ids (image, video, vision start/end, eos, pad) come from a checkpoint folder made by
    :func:`build_tiny_qwen2_5_vl`, whose tokenizer and processor go with the model. The output
    vocabulary is the shape's (152064 for ``7b``), larger than that tokenizer's: generated ids
    past it decode to nothing, which fixed-length throughput runs do not mind.

    Args:
        shape: A key of :data:`QWEN2_5_VL_SHAPES` or a :class:`VLMShape`.
        tokenizer_dir: A folder written by :func:`build_tiny_qwen2_5_vl`.
        device: Where the weights are created (``cuda`` builds a 7B model in seconds, no host copy).
        dtype: A torch dtype (default: bfloat16 on CUDA, float32 elsewhere).
        text_layers: Fewer (or more) decoder layers than the shape has.
        vision_layers: Fewer (or more) vision blocks; the full-attention blocks past the new depth
            are dropped and the last block is made full-attention if none is left.
        seed: Seed for the random weights (same seed, same weights in every process).

    Returns:
        A ``Qwen2_5_VLForConditionalGeneration`` in eval mode.
    """
    import torch
    from transformers import AutoConfig, Qwen2_5_VLForConditionalGeneration

    if isinstance(shape, str):
        if shape not in QWEN2_5_VL_SHAPES:
            raise ValueError(f"unknown Qwen2.5-VL shape {shape!r}; choose one of {sorted(QWEN2_5_VL_SHAPES)}")
        shape = QWEN2_5_VL_SHAPES[shape]
    tiny = AutoConfig.from_pretrained(str(tokenizer_dir))
    text = {**shape.text, "bos_token_id": tiny.text_config.bos_token_id,
            "eos_token_id": tiny.text_config.eos_token_id, "pad_token_id": tiny.text_config.pad_token_id}
    vision = dict(shape.vision)
    if text_layers is not None:
        text["num_hidden_layers"] = text_layers
    if vision_layers is not None:
        vision["depth"] = vision_layers
        vision["fullatt_block_indexes"] = [i for i in vision["fullatt_block_indexes"] if i < vision_layers] or [
            vision_layers - 1]
    config = type(tiny)(
        text_config=text, vision_config=vision, image_token_id=tiny.image_token_id,
        video_token_id=tiny.video_token_id, vision_start_token_id=tiny.vision_start_token_id,
        vision_end_token_id=tiny.vision_end_token_id, tie_word_embeddings=text["tie_word_embeddings"],
    )
    if dtype is None:
        dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    return model.eval()


SAM2_HIERA_LARGE_BACKBONE: dict[str, Any] = {
    "model_type": "sam2_hiera_det_model", "hidden_size": 144, "num_attention_heads": 2,
    "blocks_per_stage": [2, 6, 36, 4], "embed_dim_per_stage": [144, 288, 576, 1152],
    "num_attention_heads_per_stage": [2, 4, 8, 16], "window_size_per_stage": [8, 4, 16, 8],
    "global_attention_blocks": [23, 33, 43], "window_positional_embedding_background_size": [7, 7],
}
"""facebook/sam2-hiera-large's image encoder (its prompt encoder and mask decoder are transformers' defaults)."""


def build_random_sam2(out_dir: str | Path, shape: str = "large", seed: int = 0) -> Path:
    """Write a random SAM2 checkpoint folder of a named shape (``large`` = Hiera-L at 1024 px, or ``tiny``).

    Args:
        out_dir: Folder to write.
        shape: ``large`` (the upstream checkpoint's architecture, 217M parameters) or ``tiny``
            (:func:`build_tiny_sam2`).
        seed: Seed for the random weights.

    Returns:
        The folder path, loadable by the ``sam2`` mask producer.
    """
    if shape == "tiny":
        return build_tiny_sam2(out_dir, seed=seed)
    if shape != "large":
        raise ValueError(f"unknown SAM2 shape {shape!r}; choose 'large' or 'tiny'")
    import torch
    from transformers import Sam2Config, Sam2Model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = Sam2Config(vision_config={"backbone_config": SAM2_HIERA_LARGE_BACKBONE,
                                       "backbone_channel_list": [1152, 576, 288, 144]})
    torch.manual_seed(seed)
    Sam2Model(config).eval().save_pretrained(out)
    (out / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Sam2ImageProcessorFast", "size": {"height": 1024, "width": 1024},
        "image_mean": list(SAM2_IMAGE_MEAN), "image_std": list(SAM2_IMAGE_STD), "processor_class": "Sam2Processor",
    }, indent=2))
    (out / "regiondial_tiny.json").write_text(json.dumps({"kind": "random-sam2-large", "seed": seed}))
    return out
