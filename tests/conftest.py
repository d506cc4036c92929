"""Fixtures shared by all test folders."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# datasets reads its cache location when it is first imported, so set it before any test does:
# the Hub tests then never write into (or read stale entries from) the user's datasets cache.
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="regiondial-hf-datasets-")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
UPSTREAM_DIR = PROJECT_ROOT.parent / "shared" / "upstream_regiondial"

# Debian's Chromium, for the leaderboard's and the viewer's browser tests; without the background
# networking flags it keeps trying hosts this closed network refuses
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium driven by Playwright (skipped without the playwright package)."""
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="session")
def upstream_file():
    """Path to one of the official question files in ../shared (read in place, never copied)."""

    def get(name: str) -> Path:
        path = UPSTREAM_DIR / f"{name}.json"
        if not path.is_file():
            pytest.skip(f"official question file {path} not present (../shared is missing)")
        return path

    return get


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep the tests' derived files (Hub images, squashed training images) and answers (the response
    cache) out of the user's cache, and each test's out of the others': a test that evaluates twice
    sees only its own answers."""
    monkeypatch.delenv("REGIONDIAL_CACHE_DIR", raising=False)
    monkeypatch.setenv("REGIONDIAL_CACHE", str(tmp_path_factory.mktemp("regiondial-cache")))
