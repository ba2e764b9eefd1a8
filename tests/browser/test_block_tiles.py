"""The map pages draw blocks from vector tiles: never a whole-campaign layer (Chromium, Playwright)."""
from __future__ import annotations

import pytest

from annotator.models import Assignment
from tests.browser.conftest import block_screen_point, login, open_workspace, wait_for_still_map
from tests.browser.test_maps import MODEL, mapped  # noqa: F401  (the fixture)

expect = pytest.importorskip("playwright.sync_api").expect

def test_dashboard_draws_the_agreement_layer_from_vector_tiles_only(page, live_server, team, campaign, imagery,
                                                                  disputed_block):
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    login(page, live_server, "rev")
    page.goto(f"{live_server.url}/dashboard/campaigns/{campaign.pk}/")
    page.wait_for_function("document.getElementById('dash-map').dataset.loaded === '2'")
    tiles = [u for u in asked if "/blocks/agreement/" in u]
    assert tiles and all(u.endswith(".mvt") for u in tiles)
    assert not [u for u in asked if "/api/" in u or "geojson" in u], asked     # no whole-campaign layer
    expect(page.locator("#dash-map .map-note")).to_have_text("2 blocks with every split here")
    # hover shows the block's TV, a click opens its popup with the way to adjudicate it
    page.locator("#dash-map").scroll_into_view_if_needed()
    wait_for_still_map(page, "window.lczDashboard.map", min_tiles=1)
    x, y = block_screen_point(page, disputed_block, "window.lczDashboard.map")
    page.mouse.move(x, y)
    expect(page.locator("#dash-map .lcz-tip")).to_contain_text(disputed_block.block_key)
    expect(page.locator("#dash-map .lcz-tip")).to_contain_text("disputed")
    page.mouse.click(x, y)
    link = page.locator("#dash-map .leaflet-popup-content a")
    expect(link).to_have_text("Adjudicate →")
    expect(link).to_have_attribute("href", f"/dashboard/review/{disputed_block.pk}/")


def test_lcz_maps_draw_fractions_from_vector_tiles_only(page, live_server, team, campaign, imagery, mapped):
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    login(page, live_server, "rev")
    page.goto(f"{live_server.url}/dashboard/campaigns/{campaign.pk}/maps/")
    page.wait_for_function("document.getElementById('lcz-map').dataset.loaded === '3'")   # consensus: 3 blocks
    assert any("/blocks/fractions/" in u and "source=consensus" in u for u in asked)
    page.select_option("#source", MODEL)
    page.wait_for_function("document.getElementById('lcz-map').dataset.loaded === '4'")   # the model: all 4
    assert any("/blocks/fractions/" in u and f"source={MODEL}" in u for u in asked)
    assert not [u for u in asked if "/api/" in u or "geojson" in u], asked


def test_workspace_draws_my_blocks_from_vector_tiles_only(page, live_server, team, campaign, imagery):
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    login(page, live_server, "ann")
    open_workspace(page, live_server, campaign)
    tiles = [u for u in asked if "/blocks/" in u]
    assert tiles and all("/blocks/mine/" in u and u.endswith(".mvt") for u in tiles), tiles
    # every block in view, with my own status, never another interpreter's
    mine = {a.block_id: a for a in Assignment.objects.filter(interpreter=team["ann"])}
    shown = page.evaluate("""() => Object.fromEntries([...window.lczWorkspace.blockLayers]
        .map(([id, l]) => [id, [l.feature.properties.status, l.feature.properties.assignment || null]]))""")
    assert len(shown) == 4
    for pk, (status, assignment) in shown.items():
        a = mine.get(int(pk))
        assert (status, assignment) == ((a.status, a.pk) if a else ("unassigned", None))
