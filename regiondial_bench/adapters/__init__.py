"""Model adapters: the contract, the registry and the built-ins."""

from . import builtin  # noqa: F401  (registers oracle, whole-image, reference-copy)
from .base import Adapter, AdapterError, HistoryItem, ImageInput, RoundRequest, RoundResponse
from .registry import (
    ENTRY_POINT_GROUP,
    available_adapters,
    create_adapter,
    get_adapter_class,
    register_adapter,
    register_lazy_adapter,
    require,
)

register_lazy_adapter("hf", "regiondial_bench.adapters.hf:HFAdapter")
register_lazy_adapter("vllm", "regiondial_bench.adapters.vllm:VLLMAdapter")
register_lazy_adapter("openai", "regiondial_bench.adapters.openai:OpenAIAdapter")
register_lazy_adapter("segllm", "regiondial_bench.adapters.segllm:SegLLMAdapter")
register_lazy_adapter("fixed-box", "regiondial_bench.adapters.fixed:FixedBoxAdapter")

__all__ = [
    "ENTRY_POINT_GROUP",
    "Adapter",
    "AdapterError",
    "HistoryItem",
    "ImageInput",
    "RoundRequest",
    "RoundResponse",
    "available_adapters",
    "create_adapter",
    "get_adapter_class",
    "register_adapter",
    "register_lazy_adapter",
    "require",
]
