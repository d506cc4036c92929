"""Helpers for tests and benchmarks: tiny random models built offline from configs.

Nothing here downloads weights. ``build_tiny_qwen2_5_vl`` writes a small random Qwen2.5-VL
folder (model, tokenizer, image processor, chat template) that loads with the same code paths
as a real checkpoint; ``build_tiny_qwen3_vl`` and ``build_tiny_internvl`` do the same for the
current families, ``build_tiny_sam2`` for SAM2. ``random_qwen2_5_vl`` and ``build_random_sam2``
build the released checkpoints' shapes (7B, Hiera-L) with random weights.
"""

from .tiny_models import (
    QWEN2_5_VL_SHAPES,
    QWEN_SPECIAL_TOKENS,
    VLMShape,
    build_random_sam2,
    build_tiny_internvl,
    build_tiny_qwen2_5_vl,
    build_tiny_qwen3_vl,
    build_tiny_sam2,
    random_qwen2_5_vl,
)

__all__ = [
    "QWEN2_5_VL_SHAPES",
    "QWEN_SPECIAL_TOKENS",
    "VLMShape",
    "build_random_sam2",
    "build_tiny_internvl",
    "build_tiny_qwen2_5_vl",
    "build_tiny_qwen3_vl",
    "build_tiny_sam2",
    "random_qwen2_5_vl",
]
