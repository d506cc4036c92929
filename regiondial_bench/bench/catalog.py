"""The bench registry file: which benches have names (leaderboard entries, ``--bench NAME``), and where they live.

``leaderboard/benches.yaml`` names each bench with its expected content hash and where to find
it, tried in this order: a ``--bench NAME=SPEC`` flag, the environment variable in ``env``, the
Hub (``hub: {repo, revision, config}``), then ``location`` (any ``--bench`` spec, e.g.
``sample``). A bench that resolves to another hash is refused; one that cannot be found is
reported as unavailable (the build says which variable or flag to set), never a crash.

``redact_questions: true`` (the official question files carry no licence): a submission's log
stores ``sha256:<hex>`` of each asked question instead of its text, and the validator checks it
against the bench. ``forbid_gold: true``: no entry may republish gold boxes (no ``oracle``
entries, no gold references in the log).

This module only reads the file; loading a bench is the caller's (``BenchRegistry.resolve`` takes the
loader), so :mod:`.specs` can resolve names through it (:mod:`.registry` adds the default resolver).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..schema import Bench

REGISTRY_FILE = Path("leaderboard") / "benches.yaml"
"""The registry's place in a checkout (relative to the working directory)."""

_HASH = re.compile(r"^sha256:[0-9a-f]{64}\Z")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
MAX_REGISTRY_BYTES = 1 << 20


class RegistryError(ValueError):
    """The registry file is malformed; the message names the entry and field."""


class BenchUnavailable(LookupError):
    """A registered bench cannot be found here (not an error of the submission)."""


@dataclass(frozen=True)
class RegisteredBench:
    """One entry of ``benches.yaml``."""

    name: str
    content_hash: str | None = None
    env: str | None = None
    hub: Mapping[str, str] | None = None
    location: str | None = None
    redact_questions: bool = False
    forbid_gold: bool = False
    description: str = ""

    def hub_spec(self) -> str | None:
        if not self.hub:
            return None
        revision = f"@{self.hub['revision']}" if self.hub.get("revision") else ""
        config = f":{self.hub['config']}" if self.hub.get("config") else ""
        return f"hf:{self.hub['repo']}{revision}{config}"

    def how_to_provide(self) -> str:
        ways = [f"--bench {self.name}=PATH"]
        if self.env:
            ways.append(f"set {self.env}")
        if self.hub:
            ways.append(f"fetch {self.hub_spec()} (regiondial bench fetch)")
        return " or ".join(ways)


@dataclass
class BenchRegistry:
    """The parsed registry plus the overrides of this invocation."""

    benches: dict[str, RegisteredBench] = field(default_factory=dict)
    overrides: dict[str, str] = field(default_factory=dict)
    source: Path | None = None

    def get(self, name: str) -> RegisteredBench | None:
        return self.benches.get(name)

    def candidates(self, name: str) -> list[tuple[str, str]]:
        """``(where, spec)`` to try for ``name``, in order."""
        entry = self.benches.get(name)
        out: list[tuple[str, str]] = []
        if name in self.overrides:
            out.append((f"--bench {name}=", self.overrides[name]))
        if entry is None:
            return out
        if entry.env and os.environ.get(entry.env):
            out.append((f"${entry.env}", os.environ[entry.env]))
        if entry.hub:
            out.append(("the Hub", entry.hub_spec() or ""))
        if entry.location:
            out.append(("benches.yaml location", entry.location))
        return out

    def resolve(self, name: str, loader: Any) -> Bench:
        """Load the bench registered as ``name`` with ``loader`` (a spec -> :class:`Bench` function,
        :func:`regiondial_bench.bench.specs.load_bench`) and check its hash.

        Raises:
            BenchUnavailable: Not registered and no override, or no candidate could be loaded.
            ValueError: A candidate loaded, but with another content hash than the registry's.
        """
        entry = self.benches.get(name)
        tried = []
        for where, spec in self.candidates(name):
            try:
                bench = loader(spec)
            except (FileNotFoundError, OSError) as exc:
                tried.append(f"{where} {spec}: {exc}")
                continue
            if entry is not None and entry.content_hash and bench.content_hash != entry.content_hash:
                raise ValueError(
                    f"bench {name!r} from {where} {spec} has hash {bench.content_hash}, but "
                    f"{self.source or 'benches.yaml'} expects {entry.content_hash}"
                )
            return bench
        if entry is None and name not in self.overrides:
            raise BenchUnavailable(f"bench {name!r} is not registered in {self.source or REGISTRY_FILE} "
                                   f"(pass --bench {name}=PATH)")
        hint = entry.how_to_provide() if entry else f"--bench {name}=PATH"
        detail = "; ".join(tried) if tried else "no location is configured here"
        raise BenchUnavailable(f"bench {name!r} is not available ({detail}); {hint}")


def _valid_hub(hub: Any) -> bool:
    return (
        isinstance(hub, dict)
        and isinstance(hub.get("repo"), str)
        and re.match(r"^[\w.-]+/[\w.-]+\Z", hub["repo"]) is not None
        and all(isinstance(hub.get(k), (str, type(None))) for k in ("revision", "config"))
        and not set(hub) - {"repo", "revision", "config"}
    )


def _entry(name: str, data: Any, where: str) -> RegisteredBench:
    if not _NAME.match(name):
        raise RegistryError(f"{where}: {name!r} is not a bench name")
    if not isinstance(data, dict):
        raise RegistryError(f"{where}: {name}: expected a mapping")
    known = {"content_hash", "env", "hub", "location", "redact_questions", "forbid_gold", "description"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RegistryError(f"{where}: {name}: unknown field(s) {', '.join(map(str, unknown))}")
    digest = data.get("content_hash")
    if digest is not None and (not isinstance(digest, str) or not _HASH.match(digest)):
        raise RegistryError(f"{where}: {name}.content_hash must be sha256:<64 hex>")
    env = data.get("env")
    if env is not None and (not isinstance(env, str) or not re.match(r"^[A-Z_][A-Z0-9_]*\Z", env)):
        raise RegistryError(f"{where}: {name}.env must be an environment variable name")
    hub = data.get("hub")
    if hub is not None and not _valid_hub(hub):
        raise RegistryError(f"{where}: {name}.hub must be {{repo: org/name, revision, config}}")
    location = data.get("location")
    if location is not None and not isinstance(location, str):
        raise RegistryError(f"{where}: {name}.location must be a bench spec string")
    for flag in ("redact_questions", "forbid_gold"):
        if not isinstance(data.get(flag, False), bool):
            raise RegistryError(f"{where}: {name}.{flag} must be true or false")
    if env is None and hub is None and location is None:
        raise RegistryError(f"{where}: {name}: give at least one of env, hub, location")
    return RegisteredBench(
        name=name, content_hash=digest, env=env, hub=dict(hub) if hub else None, location=location,
        redact_questions=data.get("redact_questions", False), forbid_gold=data.get("forbid_gold", False),
        description=str(data.get("description", ""))[:500],
    )


def load_registry(path: str | Path | None = None, overrides: Mapping[str, str] | None = None) -> BenchRegistry:
    """Read ``benches.yaml`` (default :data:`REGISTRY_FILE`; a missing default file is an empty
    registry, so the bundled sample still resolves through ``location: sample`` fallbacks).

    Raises:
        RegistryError: A malformed file.
    """
    import yaml

    explicit = path is not None
    path = Path(path) if path is not None else REGISTRY_FILE
    registry = BenchRegistry(overrides=dict(overrides or {}), source=path)
    if not path.is_file():
        if explicit:
            raise RegistryError(f"{path}: no bench registry there")
        registry.benches["sample"] = RegisteredBench(name="sample", location="sample")
        return registry
    if path.stat().st_size > MAX_REGISTRY_BYTES:
        raise RegistryError(f"{path}: larger than {MAX_REGISTRY_BYTES} bytes")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:
        raise RegistryError(f"{path}: not valid YAML: {exc}") from None
    benches = data.get("benches") if isinstance(data, dict) else None
    if not isinstance(benches, dict):
        raise RegistryError(f"{path}: expected a mapping 'benches: {{name: {{...}}}}'")
    for name, entry in benches.items():
        registry.benches[str(name)] = _entry(str(name), entry, str(path))
    return registry


def registry_file() -> Path | None:
    """The registry a bench name (``--bench refcocoplus``) is looked up in: the working directory's
    ``leaderboard/benches.yaml``, else the one of the checkout this package runs from, else None."""
    checkout = Path(__file__).resolve().parents[2] / REGISTRY_FILE
    for candidate in (REGISTRY_FILE, checkout):
        if candidate.is_file():
            return candidate
    return None


def named_registry(overrides: Mapping[str, str] | None = None) -> BenchRegistry:
    """The registry of :func:`registry_file` (just ``sample`` without one), for benches by name."""
    found = registry_file()
    if found is None:
        return load_registry(overrides=overrides)
    return load_registry(found, overrides=overrides)


@dataclass(frozen=True)
class BenchListing:
    """Where a registered bench is found here (``regiondial bench list``)."""

    name: str
    entry: RegisteredBench
    where: str = ""  # how it was found ("$REGIONDIAL_BENCH_REFCOCOPLUS", "benches.yaml location", ...)
    spec: str = ""  # the spec it was loaded from
    content_hash: str = ""  # the hash found, when loaded
    turns: int | None = None
    dialogues: int | None = None
    problem: str = ""  # why it is not available, or why it was refused

    @property
    def available(self) -> bool:
        return not self.problem


def list_benches(registry: BenchRegistry, loader: Any, hub: bool = False) -> list[BenchListing]:
    """Each registered bench with where it is found, its hash and its turns (loading it with ``loader``).

    Hub locations are only tried with ``hub`` (they may download); an entry found nowhere else is
    listed with the way to provide it.
    """
    out = []
    for name, entry in registry.benches.items():
        candidates = [c for c in registry.candidates(name) if hub or c[0] != "the Hub"]
        listing = BenchListing(name, entry, problem=f"not found here; {entry.how_to_provide()}")
        tried = []
        for where, spec in candidates:
            try:
                bench = loader(spec)
            except (FileNotFoundError, OSError, ValueError) as exc:
                tried.append(f"{where} {spec}: {str(exc)[:200]}")
                continue
            problem = ""
            if entry.content_hash and bench.content_hash != entry.content_hash:
                problem = f"refused: {where} {spec} has hash {bench.content_hash}, the registry expects {entry.content_hash}"
            listing = BenchListing(name, entry, where, spec, bench.content_hash, bench.num_turns, len(bench), problem)
            break
        else:
            if tried:
                listing = BenchListing(name, entry, problem="; ".join(tried) + f"; {entry.how_to_provide()}")
        out.append(listing)
    return out
