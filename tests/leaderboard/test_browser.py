"""The leaderboard page in headless Chromium: sorting works and submitted markup stays inert."""

from __future__ import annotations

import pytest

from regiondial_bench.publish.leaderboard import build_leaderboard
from tests.conftest import CHROMIUM

from .conftest import XSS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)",
    ),
]


@pytest.fixture(scope="module")
def page_url(submissions_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("browser") / "leaderboard"
    build_leaderboard(submissions_root, out)
    return (out / "index.html").as_uri()


def _visible(page, column):
    """(model, value) of the visible rows, in page order."""
    return page.evaluate(
        """(col) => Array.from(document.querySelectorAll('#board tbody tr'))
             .filter(r => !r.hidden)
             .map(r => [r.querySelector('td.model').textContent,
                        r.querySelector('td[data-col="' + col + '"]').getAttribute('data-value')])""",
        column,
    )


def test_sorting_and_filters(browser, page_url):
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(page_url)
    # Default view: refcocoplus detection, best Avg first.
    rows = _visible(page, "Avg")
    assert [m for m, _ in rows] == ["RegionReasoner-7B", "VisionReasoner-7B", "Seg-Zero-7B", "Qwen2.5-VL-7B"]
    page.click('th[data-sort="R7"] button')
    rows = _visible(page, "R7")
    values = [float(v) for _, v in rows]
    assert values == sorted(values, reverse=True) and values[0] == 64.7
    assert page.get_attribute("#board", "data-sorted-by") == "R7:desc"
    page.click('th[data-sort="R7"] button')
    assert [float(v) for _, v in _visible(page, "R7")] == sorted(values)
    assert page.get_attribute('th[data-sort="R7"]', "aria-sort") == "ascending"
    page.select_option("#filter-task", "segmentation")
    assert {m for m, _ in _visible(page, "Avg")} == {
        "Seg-Zero-7B",
        "SegLLM-7B",
        "VisionReasoner-7B",
        "RegionReasoner-7B",
    }
    page.select_option("#filter-benchmark", "sample")
    page.select_option("#filter-task", "detection")
    page.click('th[data-sort="Avg"] button')
    assert [m for m, _ in _visible(page, "Avg")] == ["Oracle", XSS, "Whole image"]
    ranks = page.eval_on_selector_all(
        "#board tbody tr:not([hidden]) td.rank", "els => els.map(e => e.textContent)"
    )
    assert ranks == ["1", "2", "3"]
    assert page.is_visible('svg.plot[data-benchmark="sample"][data-task="detection"]')
    assert not page.is_visible('svg.plot[data-benchmark="refcocoplus"][data-task="detection"]')
    assert errors == []
    page.close()


def test_markup_in_names_is_shown_as_text(browser, page_url):
    page = browser.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(page_url)
    page.select_option("#filter-benchmark", "sample")
    page.wait_for_timeout(200)
    cell = page.locator("td.model", has_text="alert(1)")
    assert cell.count() == 1
    assert cell.first.text_content() == XSS
    assert cell.first.evaluate("e => e.children.length") == 0  # text, not an element
    assert page.evaluate("document.querySelectorAll('tbody script, tbody img').length") == 0
    assert dialogs == []
    page.close()


def test_reference_modes_are_never_ranked_together(browser, submissions_root, tmp_path):
    import datetime as dt
    import shutil

    from regiondial_bench.api import evaluate, load_bench
    from regiondial_bench.publish.submission import create_submission
    from regiondial_bench.schema import RunConfig

    root = tmp_path / "submissions"
    shutil.copytree(submissions_root, root)
    evaluate(load_bench("sample"), RunConfig(adapter="oracle", reference_mode="gold"), tmp_path / "run",
             bench_location="sample", progress=False, n_bootstrap=0)
    create_submission(tmp_path / "run", "oracle-gold", root=root, model="Oracle (gold refs)", date=dt.date(2026, 3, 3))
    build_leaderboard(root, tmp_path / "leaderboard")
    page = browser.new_page()
    page.goto((tmp_path / "leaderboard" / "index.html").as_uri())
    assert page.input_value("#filter-mode") == "upstream"  # the paper rows: most entries on refcocoplus
    page.select_option("#filter-benchmark", "sample")  # no upstream entry there: the first mode with some
    assert page.input_value("#filter-mode") == "predicted"
    assert [m for m, _ in _visible(page, "Avg")] == ["Oracle", XSS, "Whole image"]
    page.select_option("#filter-mode", "gold")
    assert _visible(page, "Avg") == [["Oracle (gold refs)", "100.0000"]]
    assert page.eval_on_selector_all("#board tbody tr:not([hidden]) td.rank", "els => els.map(e => e.textContent)") == ["1"]
    assert page.is_visible('svg.plot[data-benchmark="sample"][data-task="detection"][data-mode="gold"]')
    assert not page.is_visible('svg.plot[data-benchmark="sample"][data-task="detection"][data-mode="predicted"]')
    page.select_option("#filter-benchmark", "refcocoplus")
    assert page.input_value("#filter-mode") == "upstream" and len(_visible(page, "Avg")) == 4
    assert page.is_hidden("#empty")
    page.close()
