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


def create_adapter(name: str, **options: Any) -> Adapter:
    """Instantiate the adapter ``name`` with keyword options (from a config file or flags)."""
    cls = get_adapter_class(name)
    try:
        return cls(**options)
    except TypeError as exc:
        raise AdapterError(f"bad options for adapter {name!r}: {exc}") from exc


def require(module: str, extra: str) -> Any:
    """Import an optional dependency or fail with the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise AdapterError(
            f"this feature needs {module!r}, which is not installed: pip install 'regiondial-bench[{extra}]'"
        ) from exc
