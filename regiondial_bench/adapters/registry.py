"""Adapter registry: built-ins, lazily imported backends and ``regiondial_bench.adapters`` entry points."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from .base import Adapter, AdapterError

ENTRY_POINT_GROUP = "regiondial_bench.adapters"

_REGISTRY: dict[str, type[Adapter]] = {}

# name -> "module:Class" for adapters whose modules pull heavy stacks; imported on first use.
_LAZY: dict[str, str] = {}


def register_adapter(name: str) -> Callable[[type[Adapter]], type[Adapter]]:
    """Class decorator that registers an adapter under ``name``."""

    def decorate(cls: type[Adapter]) -> type[Adapter]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"adapter name {name!r} is already registered by {_REGISTRY[name].__qualname__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def register_lazy_adapter(name: str, target: str) -> None:
    """Register ``"package.module:Class"`` under ``name`` without importing it yet."""
    _LAZY[name] = target


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_adapters() -> list[str]:
    """Every adapter name: built-in, lazy and from installed plugins."""
    return sorted({*_REGISTRY, *_LAZY, *_entry_points()})


def get_adapter_class(name: str) -> type[Adapter]:
    """Resolve an adapter name to its class, with a "did you mean" error for unknown names."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    target = _LAZY.get(name)
    if target is None:
        ep = _entry_points().get(name)
        if ep is not None:
            cls = ep.load()
            _REGISTRY.setdefault(name, cls)
            return cls
        close = difflib.get_close_matches(name, available_adapters(), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise AdapterError(
            f"unknown adapter {name!r}.{hint} Available: {', '.join(available_adapters())}"
        )
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name)
    _REGISTRY.setdefault(name, cls)
    return cls


def adapter_option_names(cls: type[Adapter]) -> list[str] | None:
    """The keyword options an adapter class accepts (its options object's fields, else its
    constructor's public parameters), or None when it takes any ``**kwargs``."""
    options_class = getattr(cls, "options_class", None)
    if options_class is not None:
        return list(options_class.model_fields)
    import inspect

    try:
        params = inspect.signature(cls.__init__).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params
            if p.name != "self" and not p.name.startswith("_") and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def check_adapter_options(name: str, options: dict[str, Any]) -> None:
    """Refuse options the adapter ``name`` does not take, naming the ones it does (with "did you mean").

    Raises:
        AdapterError: for an unknown adapter or an option its constructor does not accept.
    """
    cls = get_adapter_class(name)
    options_class = getattr(cls, "options_class", None)
    if options_class is not None:  # names, types and ranges, with every problem named
        options_class.parse(options, name)
        return
    accepted = adapter_option_names(cls)
    if accepted is None:
        return
    unknown = [k for k in options if k not in accepted]
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(str(key), accepted, n=1, cutoff=0.6)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise AdapterError(
        f"bad options for adapter {name!r}: no option {', '.join(hints)}; it accepts: "
        + (", ".join(accepted) if accepted else "no options")
    )


def split_adapter_options(name: str, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(accepted, dropped)``: the options the adapter ``name`` takes and the ones it does not."""
    accepted = adapter_option_names(get_adapter_class(name))
    if accepted is None:
        return dict(options), {}
    return ({k: v for k, v in options.items() if k in accepted},
            {k: v for k, v in options.items() if k not in accepted})


def create_adapter(name: str, **options: Any) -> Adapter:
    """Instantiate the adapter ``name`` with keyword options (from a config file or flags)."""
    cls = get_adapter_class(name)
    check_adapter_options(name, options)
    try:
        return cls(**options)
    except TypeError as exc:
        accepted = adapter_option_names(cls)
        names = f"; it accepts: {', '.join(accepted) or 'no options'}" if accepted is not None else ""
        raise AdapterError(f"bad options for adapter {name!r}: {exc}{names}") from exc


def require(module: str, extra: str) -> Any:
    """Import an optional dependency or fail with the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise AdapterError(
            f"this feature needs {module!r}, which is not installed: pip install 'regiondial-bench[{extra}]'"
        ) from exc
