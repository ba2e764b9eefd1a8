"""The reviewers' day in a real browser (Debian's Chromium, headless, via Playwright) against
pytest-django's live server (issue #13): the interpreters' comments, flags and confidence on the
review page and in the queue; disputed blocks on the LCZ maps; the review page at 1366 px; a compact
map attribution; the campaign overview over the campaign's own imagery (nothing fetched from
elsewhere); the 403 page and the favicon. Shared fixtures: campaign, team (ann, bob, cat, dan; rev),
SYNTHETIC imagery, disputed_block."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from annotator.models import Annotation, Assignment
from tests.browser.conftest import login
from tests.browser.test_maps import hover, style, wait_loaded

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = [pytest.mark.slow]

COMMENT = "<b>roofs</b> hidden by trees & shadow"
DISPUTED_FILL = "#6e7781"


@pytest.fixture
def noted(disputed_block):
    """The disputed block, its first interpreter (by name) having left confidence 2, two flags and a
    comment with markup in it (which must show as text)."""
    a = Assignment.objects.filter(block=disputed_block).order_by("interpreter__username").first()
    Annotation.objects.filter(assignment=a).update(confidence=2, flags=["cloud_shadow", "outline_wrong"],
                                                   comment=COMMENT)
    return disputed_block, a


def test_reviewer_sees_the_interpreters_comments_flags_and_confidence(page, live_server, team, campaign, imagery,
                                                                     noted):
    block, noted_assignment = noted
    login(page, live_server, "rev")
    page.goto(f"{live_server.url}/dashboard/campaigns/{campaign.pk}/review/")
    row = page.locator(f'tr[data-block="{block.pk}"]')
    expect(row.locator("td.notes .note-count.comments")).to_contain_text("1")
    expect(row.locator("td.notes .note-count.flags")).to_contain_text("2")
    others = page.locator("table.queue tbody tr").filter(has_not=page.locator(".note-count"))
    expect(others).to_have_count(1)                       # the complete block: no notes

    row.locator("a.button").click()
    page.wait_for_url(f"{live_server.url}/dashboard/review/{block.pk}/")
    notes = page.locator("#interpreter-notes .interp-note")
    expect(notes).to_have_count(3)
    mine = page.locator(f'#interpreter-notes .interp-note[data-assignment="{noted_assignment.pk}"]')
    expect(mine.locator(".who")).to_have_text(noted_assignment.interpreter.username)
    expect(mine.locator(".confidence")).to_have_text("confidence 2/5")
    assert mine.locator(".flag-label").all_inner_texts() == ["Cloud or shadow", "Block outline wrong"]
    expect(mine.locator(".comment")).to_have_text(COMMENT)  # escaped: shown as typed, never as markup
    expect(mine.locator(".comment b")).to_have_count(0)
    expect(notes.filter(has_text="no comment")).to_have_count(2)


def test_maps_show_disputed_blocks_as_disputed_never_as_a_class(page, live_server, team, campaign, imagery,
                                                              disputed_block):
    from annotator.models import StreetBlock

    complete = StreetBlock.objects.filter(campaign=campaign, status="complete").get()
    login(page, live_server, "rev")
    page.goto(f"{live_server.url}/dashboard/campaigns/{campaign.pk}/maps/?mode=dominant")
    wait_loaded(page, 2)
    page.wait_for_function("!window.lczMaps.map._animatingZoom")
    data = page.evaluate(f"fetch('/api/campaigns/{campaign.pk}/fractions/').then((r) => r.json())")
    statuses = {f["properties"]["block_key"]: f["properties"]["status"] for f in data["features"]}
    assert statuses == {disputed_block.block_key: "disputed", complete.block_key: "complete"}

    assert style(page, disputed_block)["fillColor"] == DISPUTED_FILL  # not LCZ 6's colour (its 33.4 %)
    assert style(page, complete)["fillColor"] != DISPUTED_FILL
    legend = page.locator("#lcz-legend")
    expect(legend.locator('.legend-row[data-key="disputed"]')).to_contain_text("Disputed")
    expect(legend.locator('.legend-row[data-key="lcz_6"]')).to_have_count(0)
    hover(page, disputed_block)
    expect(page.locator(".lcz-tip")).to_contain_text("Disputed")

    page.click('#class-list button[data-key="lcz_6"]')  # one class's fraction: still disputed, not 33 %
    assert style(page, disputed_block)["fillColor"] == DISPUTED_FILL
    expect(legend.locator('.legend-row[data-key="disputed"]')).to_have_count(1)


def no_sideways_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def test_review_page_fits_1366_px_and_the_attribution_is_one_line(page, live_server, team, campaign, imagery,
                                                                 noted):
    from django.contrib.auth.models import User

    block, _ = noted
    for a in Assignment.objects.filter(block=block).select_related("interpreter"):  # names as in the demo
        User.objects.filter(pk=a.interpreter.pk).update(username=f"demo-interpreter-{a.interpreter.username}")
    page.set_viewport_size({"width": 1366, "height": 768})
    login(page, live_server, "rev")
    page.goto(f"{live_server.url}/dashboard/review/{block.pk}/")
    page.wait_for_function("document.querySelectorAll('#review-map .leaflet-tile-loaded').length >= 1")
    assert no_sideways_scroll(page), page.evaluate(
        "[...document.querySelectorAll('.adj-left, .adj-right, #splits-table, thead th')]"
        ".map((e) => `${e.className}: ${Math.round(e.getBoundingClientRect().width)}`)")
    widths = page.evaluate("""() => [...document.querySelectorAll('#adjudicate *:not(.leaflet-container *)')].filter(
        (e) => e.getBoundingClientRect().right > document.documentElement.clientWidth).map((e) => e.tagName + '.' + e.className)""")
    assert not widths, (widths, page.evaluate(
        "[...document.querySelectorAll('.adj-right, #splits-table, #splits-table thead tr:first-child th, #splits-table tbody tr:nth-child(2) > *')]"
        ".map((e) => `${e.className}: ${Math.round(e.getBoundingClientRect().width)}`)"))

    attribution = page.locator("#review-map .leaflet-control-attribution")
    one_line = attribution.bounding_box()["height"]
    assert one_line <= 22, one_line
    assert "Blocks: synthetic test roads (CC0-1.0)" in attribution.inner_text()  # the blocks' recorded source
    assert "Synthetic test imagery" in attribution.inner_text()
    attribution.click()                                   # opens in full, and closes again
    expect(attribution).to_have_class(re.compile(r"\bopen\b"))
    assert attribution.bounding_box()["height"] > one_line
    attribution.click()
    assert attribution.bounding_box()["height"] == one_line


def test_campaign_overview_draws_the_campaign_imagery_and_fetches_nothing_elsewhere(page, live_server, team,
                                                                                   campaign, imagery):
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    login(page, live_server, "ann")
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/")
    page.wait_for_function("document.querySelectorAll('#overview .leaflet-tile-loaded').length >= 1")
    page.wait_for_function("document.querySelectorAll('#overview path.leaflet-interactive, #overview canvas').length")
    host = urlsplit(live_server.url).hostname
    assert {urlsplit(u).hostname for u in asked if not u.startswith("data:")} == {host}
    assert any(f"/tiles/campaigns/{campaign.pk}/" in u for u in asked)
    expect(page.locator("#overview .leaflet-control-attribution")).to_contain_text("Synthetic test imagery")
    assert page.locator("#overview .leaflet-control-attribution").bounding_box()["height"] <= 22


def test_403_page_leads_back_and_pages_have_a_favicon(page, live_server, team, campaign):
    login(page, live_server, "ann")
    icon = page.locator('head link[rel="icon"]')
    expect(icon).to_have_attribute("type", "image/svg+xml")
    r = page.request.get(live_server.url + icon.get_attribute("href"))
    assert r.status == 200 and b"<svg" in r.body()

    response = page.goto(f"{live_server.url}/dashboard/campaigns/{campaign.pk}/")  # an interpreter: refused
    assert response.status == 403
    expect(page.locator("h1")).to_contain_text("not allowed")
    expect(page.locator("head link[rel='icon']")).to_have_count(1)
    page.click("a#home-link")
    page.wait_for_url(f"{live_server.url}/")
