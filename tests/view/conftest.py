"""Runs of the noisy oracle on the bundled sample, shared by the viewer and compare tests."""

from __future__ import annotations

import pytest

from regiondial_bench.api import evaluate, load_bench
from regiondial_bench.schema import RunConfig


@pytest.fixture(scope="session")
def sample_runs(tmp_path_factory):
    """``{name: run folder}``: noisy-oracle with predicted and gold references, another seed."""
    root = tmp_path_factory.mktemp("view-runs")
    bench = load_bench("sample")
    configs = {
        "predicted": RunConfig(adapter="noisy-oracle"),
        "gold": RunConfig(adapter="noisy-oracle", reference_mode="gold"),
        "seed1": RunConfig(adapter="noisy-oracle", adapter_options={"seed": 1}),
    }
    for name, config in configs.items():
        evaluate(bench, config, root / name, bench_location="sample", progress=False, n_bootstrap=50)
    return {name: root / name for name in configs}
