"""RegionDial-Bench: evaluate how well models keep track of image regions over a dialogue.

The public surface: load a bench, run an adapter round by round with predicted-reference
propagation, score the prediction log.
"""

__version__ = "0.1.0"

# The public names are imported on first use (PEP 562), so that `import regiondial_bench` (and
# `regiondial --help`, `report`, ...) does not pay for numpy and pydantic until something needs them.
_EXPORTS = {
    "Adapter": "adapters",
    "AdapterError": "adapters",
    "RoundRequest": "adapters",
    "RoundResponse": "adapters",
    "available_adapters": "adapters",
    "create_adapter": "adapters",
    "register_adapter": "adapters",
    "CoordinateFrame": "geometry",
    "box_iou": "geometry",
    "ParsedAnswer": "protocol",
    "parse_answer": "protocol",
    "render_question": "protocol",
    "Bench": "schema",
    "Dialogue": "schema",
    "ImageRef": "schema",
    "PredictionRecord": "schema",
    "Reference": "schema",
    "Region": "schema",
    "Results": "schema",
    "RoundRow": "schema",
    "Turn": "schema",
    "ValidationIssue": "schema",
}


from . import _moved  # noqa: E402 - after the names above, which it does not need

_moved.install()  # old module paths (regiondial_bench.runner, ...) keep working for one release


def __getattr__(name: str):  # noqa: ANN202
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'regiondial_bench' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


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
