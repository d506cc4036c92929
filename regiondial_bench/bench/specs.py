"""Bench specs: the one place a ``--bench`` string becomes a loaded :class:`~regiondial_bench.schema.Bench`.

A spec is ``sample`` (the bundled bench), a local path (bench folder, build folder, exported Hub folder,
folder of released ``*_multi_turn.json`` files, question ``.json`` file), each folder optionally followed
by ``:config[:split]``, or ``hf:org/name[@revision][:config[:split]]``. Only the ``hf:`` forms import the
Hub module (:mod:`regiondial_bench.bench.hub`); readers of local benches never do. Question files
(official or released) load through the import cache (:mod:`regiondial_bench.bench.import_cache`),
and find their images in the released layout's ``<config>_test_multi_bbox_images/`` folder beside
them when no ``images`` folder is given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..schema import MANIFEST_FILE, Bench
from .build import BUILD_INFO_FILE
from .import_cache import ImportCache
from .sources.upstream import RELEASED_SUFFIX, released_files, released_images

SAMPLE_BENCH = Path(__file__).resolve().parent.parent / "data" / "sample"
"""The bundled sample bench (``--bench sample``, the default)."""


def load_bench(
    spec: str | Path | None = "sample",
    *,
    images: str | Path | None = None,
    annotations: str | Path | None = None,
    notice=None,
    cache: ImportCache | bool = True,
) -> Bench:
    """Load a bench from ``spec``: the one loader every command (and sweep) calls.

    Args:
        spec: ``"sample"`` (the bundled sample); a bench folder (``manifest.json``); a build
            folder (``build.json`` + split folders) as ``PATH[:split]``; an exported Hub folder
            or ``"hf:org/name"`` as ``...[:config[:split]]``; a folder of the released
            ``*_multi_turn.json`` files as ``PATH[:config]``; the released test data on the Hub
            as ``"hf:lmsdss/regionreasoner_test_data[@revision]:refcocoplus"``; or an official
            question file / released ``*_multi_turn.json`` file (``.json``).
        images: image folder for an official question file (upstream or COCO layout); without it
            a released file's ``<config>_test_multi_bbox_images/`` folder beside it is used.
        annotations: COCO instances JSON that gives a question file's turns their gold masks.
        notice: ``callable(str)`` told about choices made for the caller (e.g. the default split).
        cache: question files go through the import cache (an
            :class:`~regiondial_bench.bench.import_cache.ImportCache` records what it did); False
            imports them every time.
    """
    if spec is None or str(spec) == "sample":
        return Bench.load(SAMPLE_BENCH)
    named = _registered_bench(str(spec), images=images, annotations=annotations, notice=notice, cache=cache)
    if named is not None:
        return named
    return resolve_bench_spec(str(spec), images=images, annotations=annotations, notice=notice, cache=cache)


def is_bench_name(spec: str) -> bool:
    """Whether ``spec`` names a registered bench (``refcocoplus``; a path that exists wins).

    >>> is_bench_name("refcocoplus"), is_bench_name("sample"), is_bench_name("no/such/name")
    (True, True, False)
    """
    name = spec.partition("=")[0]
    if not _BENCH_NAME.match(name) or _exists(spec):
        return False
    from .catalog import named_registry

    return named_registry().get(name) is not None


_BENCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


def _registered_bench(spec: str, *, images: Any, annotations: Any, notice: Any,
                      cache: ImportCache | bool = True) -> Bench | None:
    """The bench a registry name (``refcocoplus``), or ``NAME=PATH``, stands for; None when ``spec``
    is neither (a path that exists is never taken for a name).

    The bench is looked for as the registry says (its environment variable, its location, the Hub)
    and refused when its content hash is not the registered one.
    """
    name, sep, path = spec.partition("=")
    if spec.startswith("hf:") or not _BENCH_NAME.match(name) or _exists(spec) or (not sep and _exists(name)):
        return None
    from .catalog import BenchUnavailable, named_registry

    registry = named_registry(overrides={name: path} if sep else None)
    if registry.get(name) is None:
        if sep:
            raise FileNotFoundError(f"--bench {spec}: {name!r} is not a registered bench "
                                    f"(regiondial bench list shows them)")
        return None

    def loader(candidate: str) -> Bench:
        if candidate == "sample":
            return Bench.load(SAMPLE_BENCH)
        return resolve_bench_spec(candidate, images=images, annotations=annotations, notice=notice, cache=cache)

    try:
        return registry.resolve(name, loader)
    except BenchUnavailable as exc:
        raise FileNotFoundError(f"{exc} (regiondial bench list shows where each bench is looked for)") from None


def _exists(path: str) -> bool:
    """``Path(path).exists()`` that answers False for names the OS refuses (too long, NUL bytes)."""
    try:
        return Path(path).exists()
    except (OSError, ValueError):
        return False


def split_bench_spec(spec: str) -> tuple[str, list[str]]:
    """``PATH[:config[:split]]`` -> ``(PATH, [config, split])``; a path that exists as given wins.

    >>> split_bench_spec("no/such/folder:refcocoplus:test")
    ('no/such/folder', ['refcocoplus', 'test'])
    """
    if _exists(spec) or ":" not in spec:
        return spec, []
    for parts in (1, 2):
        head, *rest = spec.rsplit(":", parts)
        if _exists(head):
            return head, rest
    head, *rest = spec.split(":", 2)
    return head, rest


def bench_folder_kind(path: Path) -> str | None:
    """``bench`` (manifest.json), ``build`` (build.json + split folders), ``export`` (exported Hub
    folder), ``released`` (``*_multi_turn.json`` files), or None."""
    if (path / MANIFEST_FILE).is_file():
        return "bench"
    if (path / BUILD_INFO_FILE).is_file():
        return "build"
    if (path / "README.md").is_file() and any(path.glob("*/*.parquet")):
        return "export"
    if released_files(path):
        return "released"
    return None


def build_splits(path: Path) -> dict[str, dict[str, Any]]:
    """The splits of a build folder (``build.json``), each with its dialogue and turn counts."""
    try:
        info = json.loads((path / BUILD_INFO_FILE).read_text(encoding="utf-8"))
        splits = info["splits"]
        if not isinstance(splits, dict):
            raise TypeError("'splits' is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path / BUILD_INFO_FILE} is not a build description: {exc}") from None
    return {str(k): v if isinstance(v, dict) else {} for k, v in splits.items() if (path / str(k)).is_dir()}


def _choose(options: Sequence[str], wanted: str | None, what: str, spec: str, notice: Any) -> str:
    if wanted is not None:
        if wanted not in options:
            raise ValueError(f"{spec}: no {what} {wanted!r}; choose one of {', '.join(options)}")
        return wanted
    if len(options) == 1:
        return options[0]
    if what == "split" and "test" in options:
        if notice:
            notice(f"{spec} has the splits {', '.join(options)}; loading 'test' (choose with {spec}:<split>)")
        return "test"
    raise ValueError(f"{spec} has the {what}s {', '.join(options)}; name one ({spec}:<{what}>)")


def resolve_bench_spec(
    spec: str,
    *,
    images: str | Path | None = None,
    annotations: str | Path | None = None,
    notice: Any = None,
    client: Any = None,
    cache: ImportCache | bool = True,
) -> Bench:
    """Load any bench spec but ``sample`` (see :func:`load_bench`)."""

    def question_file(file: Path) -> Bench:
        return _question_file(file, images=images, annotations=annotations, notice=notice, cache=cache)

    if spec.startswith("hf:"):
        from .hub import RELEASED_CONFIGS, RELEASED_TEST_DATA, fetch_released, load_hub_bench, parse_hub_spec

        head, *rest = spec[3:].split(":")
        repo_part, _, revision_text = head.partition("@")
        repo, config, split, _ = parse_hub_spec(":".join(["hf:" + repo_part, *rest]))
        revision = revision_text or None
        if repo == RELEASED_TEST_DATA or (config or "").endswith("_multi_turn"):
            if config is None:
                raise ValueError(f"{spec}: name the file, one of {', '.join(RELEASED_CONFIGS)} "
                                 f"(hf:{repo}:<config>)")
            config = config.removesuffix("_multi_turn")
            if split not in (None, "test"):
                raise ValueError(f"{spec}: the released test data has only the split 'test'")
            files = fetch_released(repo, revision=revision, configs=[config], client=client, progress=notice)
            return question_file(files[config])
        if revision is not None:
            raise ValueError(f"{spec}: a revision (@...) is supported for the released test data only")
        return load_hub_bench(spec)
    text, selectors = split_bench_spec(spec)
    path = Path(text)
    if not _exists(text):
        path = Path("\0missing")  # not a path the OS accepts: falls through to "no bench at ..."
    kind = bench_folder_kind(path) if _exists(str(path)) and path.is_dir() else None
    if _exists(str(path)) and path.is_file() and path.suffix == ".json":
        if selectors:
            raise ValueError(f"{spec}: a question file has no configs or splits")
        return question_file(path)
    if kind == "bench":
        if selectors:
            raise ValueError(f"{spec}: {text} is a single bench folder; it has no configs or splits")
        return Bench.load(path)
    if kind == "build":
        splits = list(build_splits(path))
        if len(selectors) == 2:  # benchmark:split
            info = json.loads((path / BUILD_INFO_FILE).read_text(encoding="utf-8"))
            if selectors[0] != info.get("benchmark"):
                raise ValueError(f"{spec}: the build folder holds {info.get('benchmark')!r}, not {selectors[0]!r}")
        split = _choose(splits, selectors[-1] if selectors else None, "split", text, notice)
        return Bench.load(path / split)
    if kind == "released":
        files = released_files(path)
        config = _choose(sorted(files), selectors[0].removesuffix("_multi_turn") if selectors else None,
                         "config", text, notice)
        if len(selectors) > 1 and selectors[1] != "test":
            raise ValueError(f"{spec}: the released test data has only the split 'test'")
        return question_file(files[config])
    if kind == "export":
        return _load_export(text, selectors)
    shown = spec if len(spec) <= 200 else spec[:200] + "..."
    raise FileNotFoundError(
        f"no bench at {shown!r}{_registered_hint(text)}: expected 'sample', a bench folder with {MANIFEST_FILE}, a build folder with "
        f"{BUILD_INFO_FILE}, an exported Hub folder, a folder of *{RELEASED_SUFFIX} files, "
        "'hf:org/name[:config[:split]]', or an official question .json file (each folder may take :config[:split])"
    )


def _registered_hint(word: str) -> str:
    """`` (did you mean the registered bench 'refcocoplus'?)`` for a bare word close to a registry name."""
    if not _BENCH_NAME.match(word):
        return ""
    import difflib

    from .catalog import named_registry

    try:
        names = list(named_registry().benches)
    except (OSError, ValueError):  # an unreadable registry only loses the hint
        return ""
    close = difflib.get_close_matches(word, names, n=1)
    return f" (did you mean the registered bench {close[0]!r}? `regiondial bench list` names them)" if close else ""


def _question_file(file: Path, *, images: str | Path | None, annotations: str | Path | None, notice: Any,
                   cache: ImportCache | bool) -> Bench:
    """A question file through the import cache, its images beside it when none are given."""
    from .import_cache import load_question_file

    if images is None:
        images = released_images(file)
        if images is not None and notice:
            notice(f"images: {images} (beside {file.name}; --images picks another folder)")
    return load_question_file(file, images=images, annotations=annotations, cache=cache, notice=notice)


def _load_export(path: str, selectors: Sequence[str]) -> Bench:
    from .hub import load_hub_bench

    if not selectors:
        return load_hub_bench(path)
    config = selectors[0] or None
    split = selectors[1] if len(selectors) > 1 else None
    return load_hub_bench(path, config=config, split=split)
