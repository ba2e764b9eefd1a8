"""The LCZ maps page in a real browser (Debian's Chromium, headless, via Playwright) against
pytest-django's live server: blocks coloured by one class's fraction or by their dominant class, from
the consensus or a model's predictions, over SYNTHETIC imagery; reviewers and admins only.

Colours are checked twice: the style Leaflet holds for a block's drawn vector-tile path, and the
fill the browser paints at the block's interior (the path hit there, as computed for painting, so
the imagery under it does not matter)."""
from __future__ import annotations

import os
import uuid

import pytest

from annotator import services
from annotator.models import Assignment, Prediction, StreetBlock
from lcz_model.classes import CLASSES, KEYS
from tests.browser.conftest import block_screen_point, login, save_docs_screenshot, wait_for_still_map

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = [pytest.mark.slow]

BY_KEY = {c.key: c for c in CLASSES}
MODEL = "m-test-1"


def permille(**values) -> list[int]:
    return [values.get(k, 0) for k in KEYS]


def ramp(colour: str, share: float) -> tuple[tuple[int, int, int], float]:
    """maps.js's sequential ramp: white, nearly transparent at 0 -> the class colour at 1."""
    rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    fill = tuple(int(255 + share * (v - 255) + 0.5) for v in rgb)
    return fill, 0.35 + share * (0.9 - 0.35)


def hex_rgb(h: str) -> tuple[int, int, int]:
    return tuple(int(h[i:i + 2], 16) for i in (1, 3, 5))


def complete(block, split: list[int]) -> None:
    """Every interpreter of the block submits the same split: complete, consensus = the split."""
    for a in Assignment.objects.filter(block=block).select_related("interpreter"):
        services.save_annotation(a, a.interpreter, request_id=uuid.uuid4(), version=None,
                                 split=dict(zip(KEYS, split)), submit=True)
    block.refresh_from_db()
    assert block.status == StreetBlock.Status.COMPLETE and block.final_permille == split


@pytest.fixture
def mapped(team, campaign):
    """Three complete blocks with known consensus (the fourth has none) and a model's predictions
    for all four."""
    blocks = list(StreetBlock.objects.filter(campaign=campaign).order_by("id"))
    splits = [permille(lcz_6=700, lcz_b=300), permille(lcz_8=900, lcz_e=100), permille(lcz_g=1000)]
    for block, split in zip(blocks, splits):
        complete(block, split)
    predicted = [permille(lcz_a=800, lcz_d=200), permille(lcz_6=500, lcz_5=300, lcz_b=200),
                 permille(lcz_g=600, lcz_d=400), permille(lcz_e=1000)]
    for block, split in zip(blocks, predicted):
        Prediction.objects.create(campaign=campaign, block=block, model_version=MODEL, permille=split,
                                  entropy=0.5, bald=0.1, margin=0.2)
    return blocks


# --- helpers on the page ------------------------------------------------------------------------

def drawn(page, block) -> list[int]:
    """[r, g, b, a] the browser paints at a point inside the block (after the next frames): the fill
    of the vector-tile path it hits there, as computed for painting (so the imagery under it does
    not matter)."""
    x, y = block_screen_point(page, block, "window.lczMaps.map")
    return page.evaluate(
        """async ([x, y]) => {
            await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
            const el = document.elementFromPoint(x, y);
            if (!el || el.tagName !== "path") return [0, 0, 0, 0];
            const cs = getComputedStyle(el);
            const rgb = cs.fill.match(/\\d+/g).map(Number);
            return [rgb[0], rgb[1], rgb[2], Math.round(255 * Number(cs.fillOpacity))];
        }""", [x, y])


def style(page, block) -> dict:
    return page.evaluate("(k) => window.lczMaps.styleOfBlock(k)", block.block_key)


def assert_drawn(page, block, rgb, alpha: float) -> None:
    px = drawn(page, block)
    assert all(abs(a - b) <= 4 for a, b in zip(px[:3], rgb)), (px, rgb)
    assert abs(px[3] - 255 * alpha) <= 4, (px, alpha)


def wait_loaded(page, n: int) -> None:
    page.wait_for_function(f"document.getElementById('lcz-map').dataset.loaded === '{n}'")


def hover(page, block) -> None:
    x, y = block_screen_point(page, block, "window.lczMaps.map")
    page.mouse.move(x - 5, y - 5)
    page.mouse.move(x, y)


# --- tests --------------------------------------------------------------------------------------

def test_reviewer_maps_class_fractions_and_dominant_classes(page, live_server, team, campaign, imagery, mapped):
    b0, b1, b2, b3 = mapped
    login(page, live_server, "rev")
    page.goto(f"{live_server.url}/dashboard/campaigns/{campaign.pk}/")
    page.click("#maps-link")
    page.wait_for_url(f"{live_server.url}/dashboard/campaigns/{campaign.pk}/maps/**")
    wait_loaded(page, 3)                                   # the consensus: the three complete blocks
    expect(page.locator("#maps-note")).to_contain_text("3 blocks")
    expect(page.locator("#class-list button")).to_have_count(17)
    expect(page.locator("#source option")).to_have_count(2)  # consensus and the model
    page.wait_for_function("document.querySelectorAll('#lcz-map .leaflet-tile-loaded').length >= 1")
    page.wait_for_function("!window.lczMaps.map._animatingZoom")

    # one class's fraction: LCZ 6 = 70 % of block 0, nothing of block 1
    page.click('#class-list button[data-key="lcz_6"]')
    expect(page.locator('#class-list button[data-key="lcz_6"]')).to_have_attribute("aria-checked", "true")
    legend = page.locator("#lcz-legend")
    expect(legend).to_have_attribute("data-class", "lcz_6")
    expect(legend).to_contain_text("LCZ 6 Open low-rise")
    assert legend.locator(".ramp-ticks span").all_inner_texts() == ["0 %", "50 %", "100 %"]
    rgb, alpha = ramp(BY_KEY["lcz_6"].colour, 0.7)
    s = style(page, b0)
    assert hex_rgb(s["fillColor"]) == rgb and s["fillOpacity"] == pytest.approx(alpha, abs=1e-3)
    assert_drawn(page, b0, rgb, alpha)
    white, faint = ramp(BY_KEY["lcz_6"].colour, 0.0)
    assert hex_rgb(style(page, b1)["fillColor"]) == white == (255, 255, 255)
    assert_drawn(page, b1, white, faint)
    assert style(page, b3) is None                         # no consensus: not on the map

    # the tooltip: the block key and its top classes
    hover(page, b0)
    tip = page.locator(".lcz-tip")
    expect(tip).to_contain_text(b0.block_key)
    expect(tip).to_contain_text("LCZ 6")
    expect(tip).to_contain_text("70.0 %")
    expect(tip).to_contain_text("LCZ B")
    expect(tip).to_contain_text("30.0 %")
    page.mouse.move(5, 400)

    # keyboard: -> next class, <- previous
    page.locator("#lcz-map").click(position={"x": 5, "y": 5})
    page.keyboard.press("ArrowRight")
    expect(legend).to_have_attribute("data-class", "lcz_7")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    expect(legend).to_have_attribute("data-class", "lcz_5")
    page.click('#class-list button[data-key="lcz_g"]')
    rgb, alpha = ramp(BY_KEY["lcz_g"].colour, 1.0)
    assert hex_rgb(style(page, b2)["fillColor"]) == rgb == hex_rgb(BY_KEY["lcz_g"].colour)
    assert_drawn(page, b2, rgb, alpha)

    # d: the dominant class in its WUDAPT colour; the legend lists the classes present
    page.keyboard.press("d")
    expect(legend).to_have_attribute("data-mode", "dominant")
    expect(page.locator('#modes input[value="dominant"]')).to_be_checked()
    assert legend.locator(".legend-row").evaluate_all("rs => rs.map(r => r.dataset.key)") == ["lcz_6", "lcz_8", "lcz_g"]
    for block, key in ((b0, "lcz_6"), (b1, "lcz_8"), (b2, "lcz_g")):
        assert hex_rgb(style(page, block)["fillColor"]) == hex_rgb(BY_KEY[key].colour)
        assert_drawn(page, block, hex_rgb(BY_KEY[key].colour), 0.8)

    # the model's predictions: all four blocks, their own dominant classes
    page.select_option("#source", MODEL)
    wait_loaded(page, 4)
    expect(legend).to_contain_text(f"Model {MODEL}")
    assert legend.locator(".legend-row").evaluate_all("rs => rs.map(r => r.dataset.key)") == [
        "lcz_6", "lcz_a", "lcz_e", "lcz_g"]
    for block, key in ((b0, "lcz_a"), (b1, "lcz_6"), (b3, "lcz_e")):
        assert hex_rgb(style(page, block)["fillColor"]) == hex_rgb(BY_KEY[key].colour)
    assert_drawn(page, b3, hex_rgb(BY_KEY["lcz_e"].colour), 0.8)
    page.keyboard.press("d")                               # back to the fraction of LCZ G
    expect(legend).to_have_attribute("data-class", "lcz_g")
    rgb, alpha = ramp(BY_KEY["lcz_g"].colour, 0.6)
    assert hex_rgb(style(page, b2)["fillColor"]) == rgb
    assert_drawn(page, b2, rgb, alpha)
    assert f"source={MODEL}" in page.url and "class=lcz_g" in page.url


def test_interpreters_and_visitors_cannot_open_the_maps(page, live_server, team, campaign):
    url = f"{live_server.url}/dashboard/campaigns/{campaign.pk}/maps/"
    page.goto(url)                                         # anonymous: to the login page
    assert "/accounts/login/" in page.url
    login(page, live_server, "ann")
    assert page.goto(url).status == 403
    r = page.request.get(f"{live_server.url}/api/campaigns/{campaign.pk}/fractions/?source=consensus")
    assert r.status in (403, 404)
    assert page.goto(f"{live_server.url}/dashboard/campaigns/999999/maps/").status in (403, 404)


@pytest.mark.skipif(not os.environ.get("LCZ_DOCS_SCREENSHOT"),
                    reason="writes the documentation screenshot; set LCZ_DOCS_SCREENSHOT=docs/lcz-maps.png")
def test_docs_screenshot(page, live_server, campaign, media_root, tmp_path):
    """docs/lcz-maps.png: a synthetic city of ~60 blocks with their true splits as consensus, one
    class's fraction over the imagery, a tooltip open."""
    import numpy as np

    from annotator.ingest.blocks import blocks_from_polygons
    from fixtures.synthetic_city import assign_truth, make_street_network, paint_city

    import shapely

    rev, _ = services.ensure_user("rev", "pw-rev-12345", role="reviewer")
    services.add_member(campaign, rev, "reviewer")
    city = make_street_network(60, seed=11, origin=(385_000.0, 6_672_000.0))
    truth = assign_truth(len(city.blocks), seed=11)
    tif = paint_city(city.blocks, truth, tmp_path / "city.tif", roads=city.roads, seed=11, progress=False)
    services.import_imagery(campaign, tif, licence="CC0 1.0 (synthetic imagery painted by fixtures.synthetic_city)",
                            attribution="Synthetic imagery © lcz-annotator contributors", name="synthetic city")
    services.import_street_blocks(campaign, blocks_from_polygons(city.blocks), source=StreetBlock.Source.POLYGONS)
    blocks = list(StreetBlock.objects.filter(campaign=campaign).order_by("id"))
    polygons = list(city.blocks.to_crs(4326).geometry)
    rows = []
    for b in blocks:   # the consensus of each block: the true split painted under it
        inside = shapely.from_wkt(b.geom.point_on_surface.wkt)
        hit = next((i for i, g in enumerate(polygons) if g.contains(inside)), None)
        if hit is None:
            continue
        row = [int(v) for v in np.rint(truth[hit] * 1000)]
        row[int(np.argmax(row))] += 1000 - sum(row)
        rows.append(row)
        b.consensus = b.final_permille = row
        b.status = StreetBlock.Status.COMPLETE
        b.save(update_fields=["consensus", "final_permille", "status"])
    vivid = [c.index for c in CLASSES if max(c.rgb) - min(c.rgb) >= 150]      # shows well over imagery
    shown = max(vivid, key=lambda i: sum(r[i] for r in rows))                  # the most common of those

    login(page, live_server, "rev")
    page.goto(f"{live_server.url}/dashboard/campaigns/{campaign.pk}/maps/?class={KEYS[shown]}")
    page.wait_for_function("Number(document.getElementById('lcz-map').dataset.loaded) > 20")
    wait_for_still_map(page, "window.lczMaps.map")
    target = max((b for b in blocks if b.final_permille and b.final_permille[shown]),   # a mixed block
                 key=lambda b: (sum(v > 0 for v in b.final_permille), b.final_permille[shown]))
    hover(page, target)
    page.wait_for_selector(".lcz-tip")
    wait_for_still_map(page, "window.lczMaps.map")      # the tooltip faded in, the map drawn
    save_docs_screenshot(page, "#lcz-map")
