"""The workspace's guidelines panel (issue #13) in real Chromium: key m and the button open it over the
editor with the campaign's own guidelines (sanitised) and the 17 classes with examples: the campaign's
pure blocks (never one the interpreter still labels blind), synthetic ones before; Esc or m closes it
and focus returns; keys never reach the split behind it; it fits 1366 x 768."""
from __future__ import annotations

import pytest

from annotator import guidelines
from annotator.models import Assignment, StreetBlock
from lcz_model.classes import CLASSES, index_of
from tests.annotator.helpers import split, submit_block
from tests.browser.test_workspace import my_assignments
from tests.browser.test_workspace_day import open_block

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.slow

GUIDE = """## Our campaign's rules

Count **tree crowns** over roofs; car parks are *LCZ E*. See [the LCZ paper](https://doi.org/10.1175/BAMS-D-11-00019.1).

<script>window.__pwned = 1</script>
<img src="x" onerror="window.__pwned = 2">
"""


@pytest.fixture
def scene(team, campaign, imagery):
    """ann's view: block `mine` (submitted by ann and the others: 100 % LCZ 6) and block `blind`
    (95 % LCZ 6 by its three interpreters, then given to ann blind) are pure; `open` is ann's next."""
    ann = team["ann"]
    held = my_assignments(ann)
    held_ids = {a.block_id for a in held}
    blind = StreetBlock.objects.filter(campaign=campaign).exclude(pk__in=held_ids).order_by("id").first()
    mine = held[0].block
    submit_block(mine, [split(lcz_6=1000)] * 3)
    submit_block(blind, [split(lcz_6=950, lcz_b=50)] * 3)
    Assignment.objects.create(campaign=campaign, block=blind, interpreter=ann, round=1)
    guidelines.set_guidelines(campaign, GUIDE)
    return {"mine": mine, "blind": blind, "open": held[1]}


def test_guidelines_panel_by_key_and_button(page, live_server, team, campaign, scene):
    from tests.browser.conftest import login

    page.set_viewport_size({"width": 1366, "height": 768})
    login(page, live_server, "ann")
    open_block(page, live_server, campaign, scene["open"])
    expect(page.locator("#first-hint")).to_contain_text("guidelines")   # the first visit names m

    panel = page.locator("#guidelines")
    expect(panel).to_be_hidden()
    page.keyboard.press("2")                                # pick LCZ 2: its field has the focus
    expect(page.locator("#pct-lcz_2")).to_be_focused()
    page.keyboard.press("m")
    expect(panel).to_be_visible()
    expect(page.locator("#guidelines-close")).to_be_focused()
    page.wait_for_selector('#guidelines[data-loaded="true"]')

    # the campaign's guidelines, rendered and sanitised
    text = page.locator("#guidelines-text")
    expect(text.locator("h2")).to_have_text("Our campaign's rules")
    expect(text.locator("strong")).to_have_text("tree crowns")
    expect(text.locator("a")).to_have_attribute("rel", "noopener noreferrer")
    assert text.locator("script, img").count() == 0
    assert page.evaluate("window.__pwned") is None

    # the 17 classes in order, each with swatch, key, name, description and examples
    sections = page.locator("#guidelines-classes .gl-class")
    expect(sections).to_have_count(17)
    assert sections.evaluate_all("els => els.map(e => e.dataset.class)") == [c.key for c in CLASSES]
    lcz6 = page.locator('.gl-class[data-class="lcz_6"]')
    expect(lcz6.locator("kbd")).to_have_text("6")
    expect(lcz6.locator(".gl-desc")).to_have_text(CLASSES[index_of("6")].description)
    assert lcz6.locator(".gl-swatch").evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 153, 85)"
    # LCZ 6: the campaign's own pure block ann labelled, never the one she still labels blind
    expect(lcz6.locator("figure.campaign")).to_have_count(1)
    expect(lcz6.locator("figcaption")).to_have_text([scene["mine"].block_key])
    assert scene["blind"].block_key not in page.locator("#guidelines").inner_text()
    img = lcz6.locator("img")
    img.scroll_into_view_if_needed()
    page.wait_for_function("""() => {
        const i = document.querySelector('.gl-class[data-class="lcz_6"] img');
        return i.complete && i.naturalWidth === 160; }""")
    # other classes: the demo's synthetic examples, loaded
    lcz_g = page.locator('.gl-class[data-class="lcz_g"]')
    expect(lcz_g.locator("figure.synthetic")).to_have_count(guidelines.SYNTHETIC_PER_CLASS)
    lcz_g.scroll_into_view_if_needed()
    page.wait_for_function("""() => [...document.querySelectorAll('.gl-class[data-class="lcz_g"] img')]
        .every((i) => i.complete && i.naturalWidth > 0)""")

    # 1366 x 768: the panel fits, scrolls inside itself, the last class can be reached
    box = page.locator(".gl-card").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 1366 and box["height"] <= 768
    body = page.locator(".gl-body")
    assert body.evaluate("e => e.scrollHeight > e.clientHeight")
    expect(page.locator("#guidelines-close")).to_be_in_viewport()
    expect(lcz_g).to_be_in_viewport()

    # keys stay in the panel: a class key changes nothing behind it
    before = page.evaluate("window.lczWorkspace.ed.pm.slice()")
    for key in ("3", "5", "r", "n"):
        page.keyboard.press(key)
    expect(panel).to_be_visible()
    assert page.evaluate("window.lczWorkspace.ed.pm.slice()") == before
    expect(page.locator("#ed-block")).to_contain_text(scene["open"].block.block_key)

    page.keyboard.press("Escape")                            # closes; focus back in LCZ 2's field
    expect(panel).to_be_hidden()
    expect(page.locator("#pct-lcz_2")).to_be_focused()
    expect(page.locator("#editor")).to_be_visible()          # the editor stayed open

    page.keyboard.press("m")                                 # m opens and m closes
    expect(panel).to_be_visible()
    page.keyboard.press("m")
    expect(panel).to_be_hidden()
    expect(page.locator("#pct-lcz_2")).to_be_focused()

    page.click("#guidelines-btn")                            # the button, and its close button
    expect(panel).to_be_visible()
    page.click("#guidelines-close")
    expect(panel).to_be_hidden()
    expect(page.locator("#guidelines-btn")).to_be_focused()

    # typing in the comment is plain typing: m is a letter there
    page.fill("#comment", "")
    page.click("#comment")
    page.keyboard.type("mm")
    expect(page.locator("#comment")).to_have_value("mm")
    expect(panel).to_be_hidden()


def test_help_lists_the_guidelines_key(page, live_server, team, campaign, imagery):
    from tests.browser.conftest import login, open_workspace

    login(page, live_server, "ann")
    open_workspace(page, live_server, campaign)
    page.keyboard.press("?")
    expect(page.locator("#help")).to_contain_text("the guidelines")
    page.keyboard.press("Escape")
    expect(page.locator("#help")).to_be_hidden()
    page.keyboard.press("m")                                 # no block open: the panel opens anyway
    expect(page.locator("#guidelines")).to_be_visible()
    page.wait_for_selector('#guidelines[data-loaded="true"]')
    expect(page.locator("#guidelines-text")).to_contain_text("no written guidelines yet")
    expect(page.locator("#guidelines-status")).to_contain_text("synthetic")
