"""The run viewer in headless Chromium: it loads, filters, draws where the boxes say, and shows
hostile answers as text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from regiondial_bench.api import evaluate, load_bench
from regiondial_bench.results.view import PALETTE, build_view
from regiondial_bench.schema import Bench, Dialogue, ImageRef, Reference, RunConfig, Turn
from tests.conftest import CHROMIUM

HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script></pre><b>bold</b> \u202e'

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium"),
]


def _open(browser, index: Path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.errors = []
    page.dialogs = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    page.goto(index.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=20_000)
    return page


def _settled(page) -> None:
    """Wait until the page has drawn what its controls ask for (its data files are loaded)."""
    page.wait_for_selector("body[data-ready='1']", timeout=20_000)


def _shown(page) -> tuple[int, int]:
    """(dialogue cards on all pages, matching turn rows on this page) as the page reports them."""
    _settled(page)
    status = page.text_content("#status")
    return int(status.split(" of ")[0]), page.locator(".turn.match").count()


def _matching_turns(page) -> int:
    """The turns that match on all pages, as the status line says."""
    _settled(page)
    return int(page.text_content("#status").split(", ")[1].split(" ")[0])


@pytest.fixture(scope="module")
def large_box_view(tmp_path_factory):
    """One 960x720 dialogue (shown at half size), an oracle run whose round-2 answer is hostile text."""
    root = tmp_path_factory.mktemp("view-box")
    (root / "bench" / "images").mkdir(parents=True)
    Image.fromarray(np.full((720, 960, 3), 90, dtype=np.uint8)).save(root / "bench" / "images" / "a.png")
    # an L-shaped gold mask: a transposed or shifted decode would fill the notch or miss an arm
    mask = np.zeros((720, 960), dtype=np.uint8)
    mask[200:600, 100:200] = 1
    mask[500:600, 100:500] = 1
    from regiondial_bench.geometry import mask_to_rle

    turns = [
        Turn(index=0, question="Find the big square.", gold_boxes=[(100.0, 200.0, 500.0, 600.0)],
             gold_mask=mask_to_rle(mask)),
        Turn(index=1, question="Find the thing right of the <box>{context_bbox}</box>.",
             gold_boxes=[(600.0, 100.0, 900.0, 300.0)], references=[Reference(turn=0)]),
    ]
    bench = Bench([Dialogue(dialogue_id="a", image=ImageRef(path="images/a.png", width=960, height=720),
                            turns=turns)], name="box", root=root / "bench")
    bench.save(root / "bench")
    bench = Bench.load(root / "bench")
    run = root / "run"
    evaluate(bench, RunConfig(adapter="oracle"), run, bench_location=str(root / "bench"), progress=False,
             n_bootstrap=0)
    log = run / "predictions.jsonl"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    for record in lines:
        if record["turn"] == 1:
            record["raw_text"] = HOSTILE
            record["regions"] = []
            record["error"] = "no JSON found in the text " + HOSTILE
    log.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return build_view([run], root / "view")


def test_overlays_are_drawn_where_the_boxes_say(browser, large_box_view):
    page = _open(browser, large_box_view)
    figure = page.locator(".figure").first
    img, canvas = figure.locator("img").bounding_box(), figure.locator("canvas").bounding_box()
    assert img == canvas and (canvas["width"], canvas["height"]) == (480, 360)  # 960x720 at half size
    page.uncheck("#o-gold")  # only the predicted box of round 1 remains: (100, 200, 500, 600) -> x 50..250

    def pixel(x, y):
        return page.evaluate("([x, y]) => Array.from(document.querySelector('.figure canvas').getContext('2d')"
                             ".getImageData(x, y, 1, 1).data)", [x, y])

    red, green, blue = (int(PALETTE[0][i:i + 2], 16) for i in (1, 3, 5))
    for x, y in ((50, 200), (250, 200), (150, 100), (150, 300)):  # the four edges, half-way along
        r, g, b, a = pixel(x, y)
        assert a > 200 and abs(r - red) < 30 and abs(g - green) < 30 and abs(b - blue) < 30, (x, y)
    assert pixel(150, 200)[3] == 0  # inside the box: nothing drawn (the run has no masks)
    assert pixel(40, 200)[3] == 0 and pixel(260, 200)[3] == 0  # just outside
    page.check("#o-gold")
    page.uncheck("#o-pred")
    assert pixel(75, 150)[3] > 30 and pixel(200, 275)[3] > 30  # the L's two arms (mask at 25% alpha)
    assert pixel(175, 175)[3] == 0  # its notch
    assert abs(pixel(75, 150)[0] - red) < 40
    page.check("#o-pred")  # the gold box of round 2 is dashed at x 300..450, y 50..150
    assert max(pixel(300, y)[3] for y in range(50, 150)) > 200
    page.uncheck('input.round-toggle[data-round="1"]')
    assert pixel(50, 200)[3] == 0  # round 1 toggled off
    assert page.errors == []
    page.close()


def test_a_hostile_answer_is_shown_as_text(browser, large_box_view):
    page = _open(browser, large_box_view)
    raw = page.locator("pre.raw").nth(1)
    assert raw.text_content() == HOSTILE
    assert raw.evaluate("e => e.querySelectorAll('img, script, b').length") == 0
    assert page.locator(".meta .err").first.text_content().endswith(HOSTILE)
    assert page.evaluate("document.querySelectorAll('main img').length") == 1  # the dialogue's image only
    assert page.evaluate("window.__pwned === undefined")
    assert page.dialogs == []
    # the reference of round 2 links to the turn it came from
    link = page.locator("a.ref").first
    assert link.get_attribute("href") == "#t-0-0-0"
    link.click()
    assert page.evaluate("location.hash") == "#t-0-0-0"
    page.close()


@pytest.fixture(scope="module")
def sample_view(sample_runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("sample-view")
    return build_view([sample_runs["predicted"], sample_runs["gold"]], out)


def _expected(sample_runs):
    from regiondial_bench.run.folder import read_predictions

    return {name: read_predictions(sample_runs[name] / "predictions.jsonl") for name in ("predicted", "gold")}


def test_filters_change_what_is_shown(browser, sample_view, sample_runs):
    records = _expected(sample_runs)
    page = _open(browser, sample_view)
    assert page.errors == []
    assert _shown(page)[0] == 40
    assert page.locator("section.dialogue").count() == 25  # one page
    assert page.locator(".run").count() == 50  # two runs side by side
    page.select_option("#f-turns", "failed")
    failed = {(r.dialogue_id, r.turn) for rs in records.values() for r in rs if r.error}
    # a turn that failed in either run is shown in both, side by side
    assert _shown(page) == (len({k[0] for k in failed}), 2 * len(failed))
    assert page.locator(".turn.match .meta .err").count() == sum(1 for rs in records.values() for r in rs if r.error)
    page.select_option("#f-turns", "all")
    page.select_option("#f-round", "5")
    n5 = sum(1 for r in records["predicted"] if r.round == 5)
    assert _shown(page) == (n5, 2 * n5)  # both runs' round-5 rows
    page.select_option("#f-round", "any")
    page.check("#f-differ")
    from regiondial_bench.metrics import turn_scores

    bench = load_bench("sample")
    hits = {name: {(s.dialogue_id, s.turn): s.hit for s in turn_scores(bench, rs)} for name, rs in records.items()}
    differ = {k for k in hits["gold"] if hits["gold"][k] != hits["predicted"][k]}  # turns, not dialogues
    dialogues = {k[0] for k in differ}
    assert 0 < len(dialogues) <= 25 and _shown(page) == (len(dialogues), 2 * len(differ))
    assert _matching_turns(page) == len(differ)
    shown = page.locator("section.dialogue").evaluate_all(
        "els => els.flatMap(e => Array.from(e.querySelectorAll('.turn.match'), r => [e.dataset.dialogue, r.id]))")
    assert {(d, int(row.rsplit("-", 1)[1])) for d, row in shown} == differ  # exactly the differing turns
    page.select_option("#f-turns", "miss")  # differing turns that one of the runs missed: all of them
    assert _matching_turns(page) == len(differ)
    page.select_option("#f-turns", "all")
    page.uncheck("#f-differ")
    page.check("#f-refwrong")
    n_wrong, rows = _shown(page)
    assert 0 < n_wrong < 40 and rows > 0
    assert page.locator(".turn.match").count() == rows
    wrong = page.locator(".turn.match .meta", has_text="reference was wrong").count()
    assert rows // 2 <= wrong <= rows  # each matching turn had a wrong reference in at least one run
    assert page.errors == []
    page.close()


def test_the_official_refcocoplus_run_opens(browser, upstream_file, tmp_path):
    """2,289 turns without images: the page opens, pages and filters."""
    bench = load_bench(str(upstream_file("refcocoplus")))
    run = tmp_path / "run"
    evaluate(bench, RunConfig(adapter="noisy-oracle", reference_mode="upstream"), run,
             bench_location=str(upstream_file("refcocoplus")), progress=False, n_bootstrap=0)
    page = _open(browser, build_view([run], tmp_path / "view"))
    assert _shown(page)[0] == 715 and page.text_content("#page") == "page 1 of 29"
    page.click("#next")
    assert page.text_content("#page") == "page 2 of 29"
    page.select_option("#f-round", "5")
    assert _shown(page)[1] > 0
    assert page.errors == []
    page.close()


def test_a_dialogue_split_between_data_files_is_drawn_whole(browser, sample_runs, tmp_path, monkeypatch):
    import regiondial_bench.results.view as view

    monkeypatch.setattr(view, "CHUNK_BYTES", 3000)
    index = build_view([sample_runs["predicted"], sample_runs["gold"]], tmp_path / "view")
    data = view.read_view_data(tmp_path / "view")
    page = _open(browser, index)
    rows = page.locator("section.dialogue").evaluate_all("els => els.map(e => e.querySelectorAll('.turn').length)")
    assert rows == [2 * len(d["turns"]) for d in data["dialogues"][:25]]
    assert page.locator(".turn pre.raw").count() == sum(rows)  # every turn's answer arrived
    page.click("#next")
    _settled(page)
    assert page.locator("section.dialogue").count() == 15 and page.errors == []
    page.close()


def test_missing_data_files_are_reported_on_the_page(browser, sample_runs, tmp_path):
    import shutil

    index = build_view([sample_runs["predicted"]], tmp_path / "view")
    shutil.rmtree(tmp_path / "view" / "data")
    page = browser.new_page()
    page.goto(index.as_uri())
    _settled(page)
    assert "cannot load data/" in page.text_content("#status")
    assert "beside its data/ folder" in page.text_content("#status")
    page.close()
