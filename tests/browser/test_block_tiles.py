"""The map pages draw blocks from vector tiles: never a whole-campaign layer (Chromium, Playwright)."""
from __future__ import annotations

import pytest

from annotator.models import Assignment
from tests.browser.conftest import (VIEWPORT, block_screen_point, load_plots, login, open_workspace,
                                   wait_for_still_map)
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


def test_dashboard_map_stays_put_while_the_plots_above_it_load(page, live_server, team, campaign, imagery,
                                                              disputed_block):
    """The plots above the map arrive after the page (drawn on request); their places are kept from
    the start, so the map does not move under the reviewer's pointer when they come."""
    page.add_init_script("""document.addEventListener("DOMContentLoaded", () => {
        const map = document.getElementById("dash-map");
        if (!map) return;                                   // the login page
        window.mapTopAtFirst = map.getBoundingClientRect().top + scrollY;
        window.plotHeightsAtFirst = [...document.querySelectorAll("#plots img")].map((i) => i.getBoundingClientRect().height);
    });""")
    login(page, live_server, "rev")
    page.goto(f"{live_server.url}/dashboard/campaigns/{campaign.pk}/")
    load_plots(page)
    assert all(h > 200 for h in page.evaluate("window.plotHeightsAtFirst"))     # their places, from the first layout
    assert page.evaluate("""document.getElementById("dash-map").getBoundingClientRect().top + scrollY""") == \
        page.evaluate("window.mapTopAtFirst")


def canvas_pixel(page, x: float, y: float) -> list[int]:
    """[r, g, b, a] of the dashboard's block tile canvas at screen point (x, y), after the next frames
    (the blocks alone: the imagery is in other layers)."""
    return page.evaluate(
        """async ([x, y]) => {
            await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
            for (const c of document.querySelectorAll("#dash-map canvas.leaflet-tile")) {
                const b = c.getBoundingClientRect();
                if (x < b.left || x >= b.right || y < b.top || y >= b.bottom) continue;
                const px = Math.floor((x - b.left) * c.width / b.width), py = Math.floor((y - b.top) * c.height / b.height);
                return [...c.getContext("2d").getImageData(px, py, 1, 1).data];
            }
            return null;
        }""", [x, y])


def outline_pixels(page, colour: str) -> int:
    """How many pixels of all the dashboard's block canvases are the opaque outline `colour` (#rrggbb)."""
    return page.evaluate(
        """async (hex) => {
            await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
            const want = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
            let n = 0;
            for (const c of document.querySelectorAll("#dash-map canvas.leaflet-tile")) {
                const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
                for (let i = 0; i < d.length; i += 4) {
                    if (d[i + 3] > 250 && Math.abs(d[i] - want[0]) + Math.abs(d[i + 1] - want[1]) + Math.abs(d[i + 2] - want[2]) < 12) n++;
                }
            }
            return n;
        }""", colour)


def test_dashboard_canvas_tiles_hover_click_and_restyle(page, live_server, team, campaign, imagery, disputed_block):
    """The dashboard draws its blocks on canvas tiles (blocktiles.js CanvasTile): what is painted is the
    block's style; hover thickens its outline and shows its tooltip, leaving it undoes both; a click
    opens its popup and a click beside the blocks reaches the map (closes it); a changed style is drawn."""
    login(page, live_server, "rev")
    page.goto(f"{live_server.url}/dashboard/campaigns/{campaign.pk}/")
    page.wait_for_function("document.getElementById('dash-map').dataset.loaded === '2'")
    page.locator("#dash-map").scroll_into_view_if_needed()
    wait_for_still_map(page, "window.lczDashboard.map", min_tiles=1)
    assert page.locator("#dash-map path.leaflet-interactive").count() == 0     # no SVG path per block
    x, y = block_screen_point(page, disputed_block, "window.lczDashboard.map")
    # the fill painted inside the block: its TV colour at 70 %
    fill = page.evaluate("""(id) => { const l = window.lczDashboard.layer;
        for (const k in l._vectorTiles) { const f = l._vectorTiles[k]._features[id]; if (f) return f.feature.options.fillColor; } }""",
                         disputed_block.pk)
    rgb = [int(fill[i:i + 2], 16) for i in (1, 3, 5)]
    px = canvas_pixel(page, x, y)
    assert all(abs(a - b) <= 3 for a, b in zip(px[:3], rgb)) and abs(px[3] - 0.7 * 255) <= 3, (px, fill)

    # hover: a thicker magenta (disputed) outline and the tooltip; leaving the block undoes both
    before = outline_pixels(page, "#d6007a")
    assert before > 0
    page.mouse.move(x - 5, y - 5)
    page.mouse.move(x, y)
    tip = page.locator("#dash-map .lcz-tip")
    expect(tip).to_contain_text(disputed_block.block_key)
    assert outline_pixels(page, "#d6007a") > before * 1.3
    map_box = page.locator("#dash-map").bounding_box()
    beside = (map_box["x"] + 60, map_box["y"] + map_box["height"] / 2)       # on a block tile, no block there
    assert page.evaluate("([x, y]) => document.elementFromPoint(x, y).tagName", list(beside)) == "CANVAS"
    page.mouse.move(*beside)
    expect(tip).to_have_count(0)
    assert outline_pixels(page, "#d6007a") == before

    # click: the block's popup; a click beside the blocks reaches the map, which closes it
    page.mouse.click(x, y)
    popup = page.locator("#dash-map .leaflet-popup")
    expect(popup).to_contain_text(disputed_block.block_key)
    page.mouse.click(*beside)
    expect(popup).to_have_count(0)

    # setFeatureStyle paints the new style; restyle() paints the page's own style again
    page.evaluate("(id) => window.lczDashboard.layer.setFeatureStyle(id, {fill: true, fillColor: '#0000ff', fillOpacity: 1})",
                  disputed_block.pk)
    assert canvas_pixel(page, x, y) == [0, 0, 255, 255]
    page.evaluate("window.lczDashboard.layer.restyle()")
    assert canvas_pixel(page, x, y) == px

    # dragging over a block pans the map and opens no popup
    before = page.evaluate("window.lczDashboard.map.getCenter().lng")
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - 60, y, steps=6)
    page.mouse.up()
    page.wait_for_function(f"window.lczDashboard.map.getCenter().lng > {before}")
    expect(popup).to_have_count(0)


def test_dashboard_canvas_tiles_are_sharp_on_high_density_screens(browser, live_server, team, campaign, imagery,
                                                                   disputed_block):
    """At devicePixelRatio 2 a block tile's canvas has 2 x 2 pixels per CSS pixel (SVG is sharp there too),
    draws each block where it lies and hover still finds it (hit tests are in CSS pixels)."""
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=2)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        login(page, live_server, "rev")
        page.goto(f"{live_server.url}/dashboard/campaigns/{campaign.pk}/")
        page.wait_for_function("document.getElementById('dash-map').dataset.loaded === '2'")
        page.locator("#dash-map").scroll_into_view_if_needed()
        wait_for_still_map(page, "window.lczDashboard.map", min_tiles=1)
        sizes = page.evaluate("[...document.querySelectorAll('#dash-map canvas.leaflet-tile')].map((c) => [c.width, c.offsetWidth])")
        assert sizes and all(w == 2 * css for w, css in sizes), sizes
        x, y = block_screen_point(page, disputed_block, "window.lczDashboard.map")
        px = canvas_pixel(page, x, y)
        assert px[3] == pytest.approx(0.7 * 255, abs=3), px            # inside the block: its fill
        page.mouse.move(x - 5, y - 5)
        page.mouse.move(x, y)
        expect(page.locator("#dash-map .lcz-tip")).to_contain_text(disputed_block.block_key)
        assert not errors, errors
    finally:
        context.close()


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
