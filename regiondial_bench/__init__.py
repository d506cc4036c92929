"""RegionDial-Bench: evaluate how well models keep track of image regions over a dialogue.

The public surface: load a bench, run an adapter round by round with predicted-reference
propagation, score the prediction log.
"""

__version__ = "0.1.0"

from .adapters import (
    Adapter,
    AdapterError,
    RoundRequest,
    RoundResponse,
    available_adapters,
    create_adapter,
    register_adapter,
)
from .geometry import CoordinateFrame, box_iou
from .protocol import ParsedAnswer, parse_answer, render_question
from .schema import (
    Bench,
    Dialogue,
    ImageRef,
    PredictionRecord,
    Reference,
    Region,
    Results,
    RoundRow,
    Turn,
    ValidationIssue,
)

__all__ = [
    "Adapter",
    "AdapterError",
    "Bench",
    "CoordinateFrame",
    "Dialogue",
    "ImageRef",
    "ParsedAnswer",
    "PredictionRecord",
    "Reference",
    "Region",
    "Results",
    "RoundRequest",
    "RoundResponse",
    "RoundRow",
    "Turn",
    "ValidationIssue",
    "__version__",
    "available_adapters",
    "box_iou",
    "create_adapter",
    "parse_answer",
    "register_adapter",
    "render_question",
]
