"""The screenshots of docs/interpreter-guide.md, made in real Chromium at 1366 x 768 over a SYNTHETIC
city (fixtures.synthetic_city): a split typed by keys, skipping with a reason, the guidelines panel
with the campaign's own examples, and a read-only block. A generator, not a check of behaviour (that
is test_guidelines_panel.py, test_workspace_day.py, ...): it runs only when asked,

    LCZ_DOCS_GUIDE=docs/guide .venv/bin/python -m pytest tests/browser/test_interpreter_guide_screenshots.py

and writes guide-*.png there, each under 300 kB (fewer colours if needed: noisy synthetic imagery
compresses badly)."""
from __future__ import annotations

import io
import os
import uuid
from pathlib import Path

import pytest

from annotator import guidelines, services
from annotator.models import Assignment, StreetBlock
from lcz_model.classes import KEYS
from tests.browser.conftest import login, wait_for_blocks

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.slow

MAX_BYTES = 300_000
GUIDE_TEXT = """## Helsinki demo: our rules

- Label what the **imagery** shows today, not what a map says.
- Trees over roofs: count the crowns (LCZ A/B), not the roofs under them.
- Car parks and plazas are **LCZ E**; lawns and sports fields **LCZ D**.
- Unsure between two built types? Give both their share and say why in the comment.
"""


def save_small(page, out: Path) -> Path:
    """A screenshot of the page as PNG under MAX_BYTES: as is, else with fewer colour levels in the
    map's imagery (as tests/browser/conftest.save_docs_screenshot does), else that in 256 colours."""
    from PIL import Image, ImageOps

    png = page.screenshot()
    out.write_bytes(png)
    if len(png) >= MAX_BYTES:
        img = Image.open(io.BytesIO(png)).convert("RGB")
        box = page.locator("#map").bounding_box()
        region = tuple(int(v) for v in (box["x"], box["y"], box["x"] + box["width"], box["y"] + box["height"]))
        for bits in (6, 5, 4, 3):
            shot = img.copy()
            shot.paste(ImageOps.posterize(img.crop(region), bits), region[:2])
            shot.save(out, optimize=True)
            if out.stat().st_size < MAX_BYTES:
                break
        else:
            shot.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)
    assert out.stat().st_size < MAX_BYTES, (out, out.stat().st_size)
    return out


def settle(page) -> None:
    """Until the map stands still and the page's requests (imagery tiles) are answered, then a moment
    for tiles to fade in."""
    page.wait_for_function("!window.lczWorkspace.moving && !window.lczWorkspace.map._animatingZoom")
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(800)


@pytest.mark.skipif(not os.environ.get("LCZ_DOCS_GUIDE"),
                    reason="writes the interpreter guide's screenshots; set LCZ_DOCS_GUIDE=docs/guide")
def test_interpreter_guide_screenshots(page, live_server, campaign, media_root, tmp_path):
    from django.contrib.gis.geos import Point

    from annotator.ingest.blocks import blocks_from_polygons
    from fixtures.synthetic_city import assign_truth, make_street_network, paint_city
    from lcz_model.package_writer import fractions_to_permille

    out_dir = Path(os.environ["LCZ_DOCS_GUIDE"])
    out_dir.mkdir(parents=True, exist_ok=True)
    city = make_street_network(60, seed=11, origin=(385_000.0, 6_672_000.0))
    truth = assign_truth(len(city.blocks), seed=11)
    tif = paint_city(city.blocks, truth, tmp_path / "city.tif", roads=city.roads, seed=11, progress=False)
    services.import_imagery(campaign, tif, licence="CC0 1.0 (synthetic imagery painted by fixtures.synthetic_city)",
                            attribution="Synthetic imagery © lcz-annotator contributors", name="synthetic city")
    services.import_street_blocks(campaign, blocks_from_polygons(city.blocks), source=StreetBlock.Source.POLYGONS)
    guidelines.set_guidelines(campaign, GUIDE_TEXT)
    users = {}
    for name in ("ann", "bob", "cat"):
        users[name], _ = services.ensure_user(name, f"pw-{name}-12345", role="interpreter")
        services.add_member(campaign, users[name], "interpreter")
    services.assign_blocks(campaign, per_block=3)   # the campaign's 3 per block: all three label each

    # the blocks' own truth by key (blocks_from_polygons keeps the order of city.blocks)
    keys = [b.block_key for b in StreetBlock.objects.filter(campaign=campaign).order_by("id")]
    label = {k: [int(v) for v in row] for k, row in zip(keys, fractions_to_permille(truth))}
    mine = list(Assignment.objects.filter(interpreter=users["ann"]).select_related("block").order_by("block_id"))
    for a in mine[:14]:   # a morning's work: submitted by all three, so complete (pure ones: examples)
        for other in Assignment.objects.filter(block=a.block).select_related("interpreter"):
            services.save_annotation(other, other.interpreter, request_id=uuid.uuid4(), version=0,
                                     split=dict(zip(KEYS, label[a.block.block_key])), confidence=4, submit=True)
    centre = Point(*city.blocks.to_crs(4326).union_all().centroid.coords[0], srid=4326)
    target = min(mine[14:], key=lambda a: a.block.geom.centroid.distance(centre))
    skipped = min((a for a in mine[14:] if a != target), key=lambda a: a.block.geom.centroid.distance(centre))
    done = min((a for a in mine[:14]), key=lambda a: a.block.geom.centroid.distance(centre))
    assert StreetBlock.objects.get(pk=done.block_id).status in ("complete", "disputed")

    page.set_viewport_size({"width": 1366, "height": 768})
    login(page, live_server, "ann")
    W = "window.lczWorkspace"

    def open_assignment(a):
        page.goto(f"{live_server.url}/campaigns/{campaign.pk}/work/#a={a.pk}")
        expect(page.locator("#ed-block")).to_contain_text(a.block.block_key)
        wait_for_blocks(page, 10)
        page.wait_for_function(f"!{W}.moving")

    # 1. the day: a split by keys (6 5, b 3, d r), the first visit's hint on top
    open_assignment(target)
    for k in ("6", "5", "b", "3", "d", "r"):
        page.keyboard.press(k)
    expect(page.locator("#total")).to_have_text("100.0 %")
    settle(page)
    save_small(page, out_dir / "guide-split.png")

    # 2. skipping: s, then the reason's digit
    page.click("#first-hint-close")
    open_assignment(skipped)
    page.keyboard.press("s")
    page.keyboard.press("2")                      # Cloud or shadow
    page.click("#comment")
    page.keyboard.type("a cloud shadow covers the south half")
    page.keyboard.press("Escape")                 # leaves the comment (Enter would submit the verdict)
    settle(page)
    save_small(page, out_dir / "guide-skip.png")

    # 3. the guidelines panel (m): the campaign's rules, the classes with its own examples
    page.keyboard.press("m")
    page.wait_for_selector('#guidelines[data-loaded="true"]')
    page.wait_for_function("""() => [...document.querySelectorAll('#guidelines img')].slice(0, 8)
        .every((i) => i.complete && i.naturalWidth > 0)""", timeout=30_000)
    save_small(page, out_dir / "guide-guidelines.png")
    page.keyboard.press("Escape")

    # 4. a block already complete: read-only
    open_assignment(done)
    expect(page.locator("#ed-readonly")).to_be_visible()
    settle(page)
    save_small(page, out_dir / "guide-read-only.png")
