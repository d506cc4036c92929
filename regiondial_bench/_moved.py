"""Old import paths of the modules that moved into stage subpackages (0.2), kept for one release.

``import regiondial_bench.runner`` (a plugin or a notebook written against 0.1) still works: it
warns once and hands back the module at its new place (``regiondial_bench.run.runner``), the same
object, so setting an attribute through either name changes both.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

_PACKAGE = "regiondial_bench"
MOVED = {
    "_image_worker": "adapters._image_worker",
    "bench_registry": "bench.registry",
    "build": "bench.build",
    "hub": "bench.hub",
    "hub_check": "bench.hub_check",
    "validation": "bench.validation",
    "sources": "bench.sources",
    "runner": "run.runner",
    "shards": "run.shards",
    "segment": "run.segment",
    "segment_sam2": "run.segment_sam2",
    "report": "results.report",
    "plots": "results.plots",
    "compare": "results.compare",
    "view": "results.view",
    "submission": "publish.submission",
    "leaderboard": "publish.leaderboard",
    "rewards": "training.rewards",
    "training_data": "training.data",
    "keywords": "training.keywords",
}
"""Old module name (under ``regiondial_bench``) -> its new name."""


def new_location(fullname: str) -> str | None:
    """The new dotted name of an old module path, or None when ``fullname`` did not move.

    >>> new_location("regiondial_bench.sources.refer")
    'regiondial_bench.bench.sources.refer'
    >>> new_location("regiondial_bench.schema") is None
    True
    """
    if not fullname.startswith(_PACKAGE + "."):
        return None
    rest = fullname[len(_PACKAGE) + 1:]
    head, _, tail = rest.partition(".")
    if head not in MOVED:
        return None
    return f"{_PACKAGE}.{MOVED[head]}" + (f".{tail}" if tail else "")


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec):  # noqa: ANN001, ANN201
        return None

    def exec_module(self, module) -> None:  # noqa: ANN001
        warnings.warn(f"{module.__name__} moved to {self.target}; the old name stops working in the next release",
                      DeprecationWarning, stacklevel=2)
        # the import system hands back whatever sys.modules holds once this returns: the real module
        sys.modules[module.__name__] = importlib.import_module(self.target)


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds the old names of moved modules.

    It goes first on ``sys.meta_path``: a submodule of a moved package (``regiondial_bench.sources.refer``)
    would otherwise be found by the path finder in the package's folder and loaded a second time under
    its old name, where its relative imports break. It answers only the names in :data:`MOVED`.
    """

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001, ANN201
        new = new_location(fullname)
        return importlib.util.spec_from_loader(fullname, _Alias(new)) if new else None


def install() -> None:
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedModuleFinder())
