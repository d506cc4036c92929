"""Fixtures for the builder tests: a small synthetic refer layout, written once per session."""

from __future__ import annotations

import pytest

from regiondial_bench.bench.sources import SyntheticSpec, write_synthetic_refer

SPEC = SyntheticSpec(
    images_per_split={"testA": 30, "testB": 30, "val": 10, "train": 12},
    objects_per_image={1: 1, 2: 4, 3: 4, 4: 3, 5: 2, 6: 2, 7: 1, 8: 1},
    image_size=(160, 120),
    seed=3,
)


@pytest.fixture(scope="session")
def refer_root(tmp_path_factory):
    """A synthetic refer layout (refs(unc).p + instances.json + JPEGs) under a temp folder."""
    return write_synthetic_refer(tmp_path_factory.mktemp("refer"), SPEC, dataset="refcoco+", split_by="unc")


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path, monkeypatch):
    """Keep load_hub_bench's image cache inside the test's temp folder."""
    monkeypatch.setenv("REGIONDIAL_CACHE", str(tmp_path / "cache"))
