"""RegionDial-Bench: evaluate how well models keep track of image regions over a dialogue.

The public surface (``docs/api.md`` walks through it): :func:`load_bench` a bench,
:func:`evaluate` an adapter on it round by round (its own answers fill later references),
:func:`score` a prediction log again, :func:`report` runs side by side, :func:`compare` two runs
with a paired bootstrap; :class:`Adapter` is what a model implements.
"""

__version__ = "0.1.0"

# The public names are imported on first use (PEP 562), so that `import regiondial_bench` (and
# `regiondial --help`, `report`, ...) does not pay for numpy and pydantic until something needs them.
_EXPORTS: dict[str, str | tuple[str, str]] = {
    "evaluate": "api",
    "evaluate_sweep": "api",
    "plan_sweep": "api",
    "score": "api",
    "merge": "api",
    "load_run_config": "api",
    "load_bench": "bench.specs",
    "report": "results.tables",
    "load_run": "results.report",
    "compare": ("results.compare", "compare_runs"),
    "RunConfig": "schema",
    "ResponseCacheSettings": "run.response_cache",
    "SamplingSettings": "adapters.sampling",
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
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'regiondial_bench' has no attribute {name!r}")
    import importlib

    module, attribute = target if isinstance(target, tuple) else (target, name)
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
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
    "ResponseCacheSettings",
    "Results",
    "RoundRequest",
    "RoundResponse",
    "RoundRow",
    "RunConfig",
    "SamplingSettings",
    "Turn",
    "ValidationIssue",
    "available_adapters",
    "box_iou",
    "compare",
    "create_adapter",
    "evaluate",
    "evaluate_sweep",
    "load_bench",
    "load_run",
    "load_run_config",
    "merge",
    "parse_answer",
    "plan_sweep",
    "register_adapter",
    "render_question",
    "report",
    "score",
    "__version__",
]
