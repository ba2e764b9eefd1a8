"""The workspace's keys on the reviewer's adjudication page (issue #13), in real Chromium: class keys
and one digit of tens, r the remainder, arrows, undo/redo (start-from buttons too), n/p through the
disputed blocks of the queue, pan/zoom/re-centre/outline on the map, the help, and Enter submitting
only with a full split and a reason."""
from __future__ import annotations

import re

import pytest

from annotator.models import Adjudication, StreetBlock
from lcz_model.classes import index_of
from tests.annotator.helpers import submit_block
from tests.browser.conftest import login, wait_until

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = [pytest.mark.slow]

R = "window.lczReview"


def pct(page, key: str):
    return page.locator(f'input.pct[data-key="{key}"]')


def review_url(live_server, block) -> str:
    return f"{live_server.url}/dashboard/review/{block.pk}/"


@pytest.fixture
def three_disputed(team, campaign, imagery, disputed_block):
    """Blocks 0, 2 and 3 disputed alike (LCZ 6 / LCZ B / LCZ D by their three interpreters): the queue's
    disputed blocks in id order."""
    blocks = list(StreetBlock.objects.filter(campaign=campaign).order_by("id"))
    for b in blocks[2:]:
        submit_block(b, [{**dict.fromkeys(_keys(), 0), k: 1000} for k in ("lcz_6", "lcz_b", "lcz_d")])
    disputed = list(StreetBlock.objects.filter(campaign=campaign, status="disputed").order_by("id"))
    assert disputed == [blocks[0], blocks[2], blocks[3]]
    return disputed


def _keys():
    from lcz_model.classes import KEYS

    return KEYS


def test_review_page_by_keys(page, live_server, team, campaign, three_disputed):
    b0, b2, b3 = three_disputed
    login(page, live_server, "rev")

    # n / p: next and previous disputed block of the queue
    page.goto(review_url(live_server, b2))
    page.wait_for_function(f"{R} && {R}.keys")
    page.keyboard.press("n")
    page.wait_for_url(review_url(live_server, b3))
    page.wait_for_function(f"{R} && {R}.keys")
    page.keyboard.press("p")
    page.wait_for_url(review_url(live_server, b2))
    page.wait_for_function(f"{R} && {R}.keys")
    page.keyboard.press("p")
    page.wait_for_url(review_url(live_server, b0))
    page.wait_for_function(f"{R} && {R}.keys")
    page.wait_for_function("document.querySelectorAll('#review-map .leaflet-tile-loaded').length >= 1")

    # the split by keys: 6 5 = LCZ 6 50 %, b 3 = LCZ B 30 %, d r = the remainder (20 %)
    for k in ("6", "5", "b", "3", "d", "r"):
        page.keyboard.press(k)
    expect(pct(page, "lcz_6")).to_have_value("50.0")
    expect(pct(page, "lcz_b")).to_have_value("30.0")
    expect(pct(page, "lcz_d")).to_have_value("20.0")
    expect(page.locator("#editor-total")).to_have_text("100.0")
    expect(page.locator('tr[data-class="lcz_d"]')).to_have_class(re.compile(r"\bchosen\b"))
    # Enter without a reason: nothing is sent, the total line says why
    page.keyboard.press("Enter")
    expect(page.locator("#total-line")).to_have_class(re.compile(r"\bflash\b"))
    expect(page.locator("#total-line")).to_contain_text("Give a reason")
    assert not Adjudication.objects.filter(block=b0).exists()

    # undo / redo, the start-from buttons included
    page.keyboard.press("Control+z")
    expect(pct(page, "lcz_d")).to_have_value("0.0")
    page.keyboard.press("Control+Shift+z")
    expect(pct(page, "lcz_d")).to_have_value("20.0")
    page.click('button[data-start="consensus"]')
    expect(pct(page, "lcz_6")).to_have_value("33.4")
    page.keyboard.press("Control+z")
    expect(pct(page, "lcz_6")).to_have_value("50.0")
    expect(pct(page, "lcz_d")).to_have_value("20.0")

    # arrows: ±1 %, Shift ±0.1 %; one undo step for a run of arrows
    pct(page, "lcz_6").focus()
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Shift+ArrowDown")
    expect(pct(page, "lcz_6")).to_have_value("50.9")
    page.keyboard.press("Control+z")
    expect(pct(page, "lcz_6")).to_have_value("50.0")

    # a field entered by click: digits type there; a letter still picks a class
    pct(page, "lcz_b").click()
    page.keyboard.press("Control+a")
    page.keyboard.type("25.5")
    expect(pct(page, "lcz_b")).to_have_value("25.5")
    page.keyboard.press("e")
    expect(pct(page, "lcz_e")).to_be_focused()
    page.keyboard.press("r")                                  # 100 - 50 - 25.5 - 20 = 4.5 %
    expect(pct(page, "lcz_e")).to_have_value("4.5")
    page.keyboard.press("Escape")
    expect(pct(page, "lcz_e")).not_to_be_focused()

    # the map: zoom, pan, re-centre, the outline's opacity
    zoom = page.evaluate(f"{R}.map.getZoom()")
    page.keyboard.press("Shift+Z")
    page.wait_for_function(f"{R}.map.getZoom() === {zoom - 1} && !{R}.map._animatingZoom")
    page.keyboard.press("z")
    page.wait_for_function(f"{R}.map.getZoom() === {zoom} && !{R}.map._animatingZoom")
    centre = page.evaluate(f"{R}.map.getCenter().lat")
    page.keyboard.press("i")                                  # up: north
    page.wait_for_function(f"{R}.map.getCenter().lat > {centre} + 1e-7")
    page.keyboard.press("l")
    page.keyboard.press("h")                                  # back to the block
    page.wait_for_function(f"{R}.map.getBounds().contains({R}.outline.getBounds())")
    for expected in ("0.3", "0", "1"):
        page.keyboard.press("o")
        expect(page.locator("#adjudicate")).to_have_attribute("data-outline", expected)
    assert page.evaluate(f"{R}.outline.getLayers()[0].options.opacity") == 1

    # ? lists the keys; Esc closes it; keys do nothing behind it
    page.keyboard.press("?")
    help_ = page.locator("#review-help")
    expect(help_).to_be_visible()
    expect(help_).to_contain_text("previous disputed block")
    expect(page.locator("#review-help-close")).to_be_focused()
    page.keyboard.press("6")
    page.keyboard.press("Escape")
    expect(help_).to_be_hidden()
    expect(pct(page, "lcz_6")).to_have_value("50.0")

    # Enter submits with a full split and a reason (typed in the reason: Enter there submits too)
    page.click("#reason")
    page.keyboard.type("north half open low-rise")
    page.keyboard.press("Shift+Enter")                        # a new line, not a submission
    page.keyboard.type("rest lawn")
    assert not Adjudication.objects.filter(block=b0).exists()
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")
    expect(page.locator("#result")).to_contain_text("Adjudicated.")
    adjudication = wait_until(lambda: Adjudication.objects.filter(block=b0).first())
    assert adjudication.reason == "north half open low-rise\nrest lawn"
    final = adjudication.permille
    assert final[index_of("6")] == 500 and final[index_of("B")] == 255
    assert final[index_of("D")] == 200 and final[index_of("E")] == 45
