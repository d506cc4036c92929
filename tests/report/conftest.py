"""Runs of the bundled sample bench, made once per test session with the real runner."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from regiondial_bench.api import evaluate, load_bench
from regiondial_bench.schema import RunConfig

from . import fallible  # noqa: F401  (registers the "test-fallible" adapter)


@pytest.fixture(scope="session")
def sample_bench():
    return load_bench("sample")


@pytest.fixture(scope="session")
def sample_runs(tmp_path_factory, sample_bench):
    """``{name: run folder}`` for oracle / test-fallible in predicted and gold mode (box masks)."""
    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for adapter in ("oracle", "test-fallible"):
        for mode in ("predicted", "gold"):
            out = root / f"{adapter}-{mode}"
            config = RunConfig(adapter=adapter, reference_mode=mode, mask_producer="box")
            evaluate(sample_bench, config, out, bench_location="sample", progress=False, n_bootstrap=200)
            runs[f"{adapter}-{mode}"] = out
    return runs


@pytest.fixture
def fresh_run(tmp_path, sample_runs):
    """A copy of the fallible predicted run that a test may edit."""

    def copy(name: str = "test-fallible-predicted") -> Path:
        dst = tmp_path / name
        shutil.copytree(sample_runs[name], dst)
        return dst

    return copy
