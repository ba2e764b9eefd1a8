"""The workspace's map for the interpreters' day (issue #13), in real Chromium: the blocks' opacity
(o, the slider) so the imagery under a block shows, a metric scale bar, panning and zooming by keys
that never clash with the editor's, back to the open block, going to a block by key or number, the
first visit's keys, and no request sent twice."""
from __future__ import annotations

import re
import time
from collections import Counter

import pytest

from annotator.models import StreetBlock
from tests.browser.conftest import click_block, login, open_workspace, wait_for_blocks
from tests.browser.test_workspace import my_assignments, workspace_url
from tests.browser.test_workspace_day import open_block, submitted

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.slow

W = "window.lczWorkspace"


def view(page) -> dict:
    return page.evaluate(f"""() => {{ const m = {W}.map, c = m.getCenter();
        return {{ zoom: m.getZoom(), lat: c.lat, lng: c.lng }}; }}""")


def still(page) -> None:
    page.wait_for_function(f"!{W}.moving && !{W}.map._animatingZoom")


def test_blocks_opacity_scale_bar_and_map_keys(page, live_server, team, campaign, imagery):
    first, _, _ = my_assignments(team["ann"])
    login(page, live_server, "ann")
    open_block(page, live_server, campaign, first)
    pane_opacity = f"{W}.map.getPane('overlayPane').style.opacity"

    # o: visible -> faint -> hidden -> visible; the open block's outline stays on its own pane
    for want in (0.3, 0, 1):
        page.keyboard.press("o")
        assert page.evaluate(f"{W}.overlay") == want
        assert float(page.evaluate(pane_opacity)) == want
    assert page.evaluate(f"{W}.map.getPane('selected').style.opacity") in ("", "1")
    page.locator("#overlay-opacity").fill("50")
    assert float(page.evaluate(pane_opacity)) == 0.5
    page.reload()                                  # the choice is kept
    expect(page.locator("#ed-block")).to_contain_text(first.block.block_key)
    assert float(page.evaluate(pane_opacity)) == 0.5

    # a metric scale bar
    expect(page.locator(".leaflet-control-scale-line")).to_be_visible()
    expect(page.locator(".leaflet-control-scale-line")).to_have_text(re.compile(r"^\d+ k?m$"))

    # with a class picked (its percentage focused), map keys move the map and type nothing
    wait_for_blocks(page)
    still(page)
    page.keyboard.press("6")
    page.keyboard.press("5")
    expect(page.locator("#pct-lcz_6")).to_have_value("50.0")
    start = view(page)
    page.keyboard.press("z")
    page.wait_for_function(f"{W}.map.getZoom() === {start['zoom'] + 1}")
    still(page)
    page.keyboard.press("Shift+Z")
    page.wait_for_function(f"{W}.map.getZoom() === {start['zoom']}")
    still(page)
    before = view(page)
    page.keyboard.press("l")
    still(page)
    page.wait_for_function(f"{W}.map.getCenter().lng > {before['lng']}")
    page.keyboard.press("k")
    page.wait_for_function(f"{W}.map.getCenter().lat < {before['lat']}")
    still(page)
    for k in ("l", "l", "l"):
        page.keyboard.press(k)
        still(page)
    away = f"{W}.map.getBounds().contains({W}.bboxBounds({W}.ed.a.block.bbox))"
    assert not page.evaluate(away)
    page.keyboard.press("h")                       # back to the open block
    page.wait_for_function(away)
    expect(page.locator("#pct-lcz_6")).to_have_value("50.0")
    expect(page.locator("#total")).to_have_text("50.0 %")
    expect(page.locator("#ed-hint")).not_to_contain_text("not a key")

    page.keyboard.press("?")
    for text in ("zoom in", "pan the map", "back to the open block", "opacity"):
        expect(page.locator("#help")).to_contain_text(text)


def test_go_to_a_block_by_key_or_number(page, live_server, team, campaign, imagery):
    first, second, third = my_assignments(team["ann"])
    mine = {a.block_id for a in (first, second, third)}
    other = StreetBlock.objects.filter(campaign=campaign).exclude(id__in=mine).first()
    login(page, live_server, "ann")
    open_workspace(page, live_server, campaign)

    page.keyboard.press("/")
    expect(page.locator("#goto-input")).to_be_focused()
    page.keyboard.type(second.block.block_key.upper())
    page.keyboard.press("Enter")
    expect(page.locator("#ed-block")).to_contain_text(second.block.block_key)
    expect(page.locator("#goto-input")).to_have_value("")

    page.keyboard.press("/")                       # from the editor, by the start of the key
    page.keyboard.type(third.block.block_key[:8])
    page.keyboard.press("Enter")
    expect(page.locator("#ed-block")).to_contain_text(third.block.block_key)

    page.keyboard.press("/")                       # by number
    page.keyboard.type(str(first.block_id))
    page.keyboard.press("Enter")
    expect(page.locator("#ed-block")).to_contain_text(first.block.block_key)

    page.fill("#goto-input", other.block_key)      # somebody else's block: said plainly, nothing opens
    page.press("#goto-input", "Enter")
    expect(page.locator("#toast")).to_contain_text(f"Block {other.block_key} is not assigned to you")
    expect(page.locator("#ed-block")).to_contain_text(first.block.block_key)

    page.fill("#goto-input", "no-such-block")
    page.press("#goto-input", "Enter")
    expect(page.locator("#toast")).to_contain_text("There is no block “no-such-block”")
    expect(page.locator("#ed-block")).to_contain_text(first.block.block_key)
    page.keyboard.press("Escape")                  # out of the box; the keys work again
    page.keyboard.press("6")
    expect(page.locator("#pct-lcz_6")).to_be_focused()


def test_go_to_a_block_outside_the_view(page, live_server, team, campaign, imagery):
    first, _, _ = my_assignments(team["ann"])
    login(page, live_server, "ann")
    open_workspace(page, live_server, campaign)
    page.evaluate(f"{W}.map.setView([0, 0], 16)")  # far away: no block loaded here
    page.wait_for_function(f"{W}.blockLayers.size === 0")
    page.fill("#goto-input", first.block.block_key)
    page.press("#goto-input", "Enter")
    expect(page.locator("#ed-block")).to_contain_text(first.block.block_key)


def test_first_visit_shows_the_keys_once(page, live_server, team, campaign, imagery):
    login(page, live_server, "ann")
    open_workspace(page, live_server, campaign)
    hint = page.locator("#first-hint")
    expect(hint).to_be_visible()
    expect(hint).to_contain_text("? for all keys")
    assert hint.locator("kbd").count() >= 5
    page.click("#first-hint-close")
    expect(hint).to_be_hidden()
    page.reload()
    wait_for_blocks(page)
    expect(hint).to_be_hidden()
    page.goto(workspace_url(live_server, campaign))
    wait_for_blocks(page)
    expect(hint).to_be_hidden()


def test_load_open_and_submit_send_no_request_twice(page, live_server, team, campaign, imagery):
    first, second, _ = my_assignments(team["ann"])
    login(page, live_server, "ann")
    sent: list[tuple[float, str, str]] = []       # (when, method, url) of every API call and TileJSON
    page.on("request", lambda r: ("/api/" in r.url or r.url.endswith(".json"))
            and sent.append((time.monotonic(), r.method, r.url.replace(live_server.url, ""))))
    open_workspace(page, live_server, campaign)
    page.wait_for_timeout(800)                     # the first view's moveend has come and gone
    click_block(page, first.block)
    expect(page.locator("#ed-block")).to_contain_text(first.block.block_key)
    page.wait_for_timeout(600)
    for k in ("2", "5", "6", "r", "Enter"):
        page.keyboard.press(k)
    submitted(first)
    expect(page.locator("#ed-block")).to_contain_text(second.block.block_key)
    page.wait_for_timeout(1000)                    # the progress bar's refresh after the save

    # the same request again within a second: sent twice for one cause
    twice = [(m, u) for i, (t, m, u) in enumerate(sent) if any(
        (m2, u2) == (m, u) and t - t2 < 1.0 for t2, m2, u2 in sent[:i])]
    assert not twice, f"sent twice: {twice} (all: {[(m, u) for _, m, u in sent]})"
    assert Counter(m for _, m, _ in sent)["PUT"] == 1
    assert sum(1 for _, _, u in sent if "/progress/" in u) == 2   # the page's start, and after the submit
