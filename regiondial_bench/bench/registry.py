"""The leaderboard's bench registry: resolving bench names to benches, and the official benches.

The registry file itself (``leaderboard/benches.yaml``: names, content hashes, where each bench is
found, policies) is read by :mod:`regiondial_bench.bench.catalog`; its names are re-exported here.
This module adds what needs the bench loader (:func:`default_bench_resolver`, for submissions and
the leaderboard) and the facts about the official question files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..schema import Bench
from .catalog import (  # noqa: F401 - the registry's names, importable from here as before
    MAX_REGISTRY_BYTES,
    REGISTRY_FILE,
    BenchListing,
    BenchRegistry,
    BenchUnavailable,
    RegisteredBench,
    RegistryError,
    list_benches,
    load_registry,
    named_registry,
    registry_file,
)

OFFICIAL_BENCH_HASHES: dict[str, str] = {
    # the official question files (UPSTREAM.md 2.1), imported without masks
    "refcocoplus": "sha256:36018ca12b6e9ec6faf6c1b24ff978fce9fdda958b5c1d48728f274813cf65de",
    "refcocog": "sha256:7a1faa2c70f3899ef866b653c1e01f14c098b6574d7fd22abe671326c5a854a1",
}
"""Content hashes of the official RefCOCO+ / RefCOCOg benches: what the paper's tables were run on."""


def pinned_revision(repo: str, path: str | Path | None = None) -> str | None:
    """The revision ``benches.yaml`` pins for a Hub repo, if any."""
    try:
        registry = load_registry(path)
    except RegistryError:
        return None
    for entry in registry.benches.values():
        if entry.hub and entry.hub.get("repo") == repo and entry.hub.get("revision"):
            return entry.hub["revision"]
    return None


def question_digest(text: str) -> str:
    """What a redacted log stores instead of a question: ``sha256:<hex>`` of its UTF-8 text.

    >>> question_digest("Find the cat.")[:15]
    'sha256:b3979846'
    """
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def official_bench(bench_hash: str | None) -> str | None:
    """The official bench's name when ``bench_hash`` is RefCOCO+ / RefCOCOg's, else None."""
    return next((name for name, digest in OFFICIAL_BENCH_HASHES.items() if digest == bench_hash), None)


class RegistryResolver:
    """Resolves bench names through the leaderboard's bench registry (``leaderboard/benches.yaml``).

    Callable as a :data:`BenchResolver`; :meth:`entry` gives the bench's policies
    (``redact_questions``, ``forbid_gold``). Benches are loaded once per resolver.
    """

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self._cache: dict[str, Bench] = {}
        self._failed: dict[str, Exception] = {}

    def entry(self, name: str) -> Any:
        return self.registry.get(name)

    def __call__(self, name: str) -> Bench:
        if name in self._failed:
            raise self._failed[name]
        if name not in self._cache:
            try:
                from .specs import load_bench

                self._cache[name] = self.registry.resolve(name, load_bench)
            except (BenchUnavailable, ValueError) as exc:
                self._failed[name] = exc
                raise
        return self._cache[name]

    def resolve_local(self) -> None:
        """Resolve every registered bench that can be found without the network (a flag, an
        environment variable or a location), so a build checks each one's hash; failures are kept
        for :meth:`status`, not raised."""
        for name in self.registry.benches:
            local = [c for c in self.registry.candidates(name) if c[0] != "the Hub"]
            if name in self._cache or name in self._failed or not local:
                continue
            try:
                self(name)
            except Exception:  # noqa: BLE001 - recorded in self._failed and shown by status()
                continue

    def status(self) -> dict[str, str]:
        """``{registered bench: resolved | unavailable: why | on the Hub | not found here}`` after a build."""
        out = {}
        for name in self.registry.benches:
            entry = self.registry.get(name)
            if name in self._cache:
                out[name] = f"resolved ({self._cache[name].content_hash[:19]})"
            elif name in self._failed:
                kind = "unavailable" if isinstance(self._failed[name], BenchUnavailable) else "refused"
                out[name] = f"{kind}: {self._failed[name]}"
            elif entry is not None and entry.hub:
                out[name] = f"not fetched (no entry uses it; {entry.hub_spec()})"
            else:
                out[name] = f"not found here (no entry uses it; {entry.how_to_provide() if entry else ''})"
        return out


def default_bench_resolver(
    benches: Mapping[str, str] | None = None, registry: str | Path | None = None
) -> RegistryResolver:
    """Resolve a submission's ``benchmark`` name to a bench through the bench registry.

    Args:
        benches: ``{bench name: spec}`` overrides (a bench folder or question file, as
            ``regiondial evaluate --bench`` takes); they win over the registry's locations.
        registry: the registry file (default ``leaderboard/benches.yaml`` in the working
            directory; without one the bundled sample is the only bench).
    """
    return RegistryResolver(load_registry(registry, overrides=benches))
