"""The one rule for typed percentages (frontend/static/frontend/percent.js, window.lczPercent), in
Chromium, and on both pages where a person types one: the workspace's split editor and the reviewer's
adjudication editor.

The two pages used to read percentages by two rules. Where they disagreed, the workspace's rule won:
a comma is a decimal mark too ("12,5": the review page's number field refused it), a half-typed
".5" or "12." is read as typed, a trailing "%" is fine. Where they agreed it stays: more than one
decimal is refused, never rounded (what a person sees is what is saved), as is anything but digits
and one decimal mark, and anything over 100 %.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from annotator.models import Assignment
from tests.browser.conftest import login, wait_for_blocks

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.slow

PERCENT_JS = Path(__file__).resolve().parents[2] / "frontend/static/frontend/percent.js"

NOT_A_PERCENTAGE = "not a percentage"
ONE_DECIMAL = "one decimal at most"
AT_MOST_100 = "at most 100 %"

# typed text -> (per-mille, reason refused)
TABLE = {
    "12.5": (125, None),
    "12,5": (125, None),           # a comma decimal mark (the review page used to refuse it)
    " 7 ": (70, None),
    "": (0, None),
    "   ": (0, None),
    "0": (0, None),
    "100": (1000, None),
    "100.0": (1000, None),
    "100,0": (1000, None),
    "007": (70, None),
    ".5": (5, None),               # half-typed (the review page used to refuse it)
    "12.": (120, None),
    "12,": (120, None),
    "12.5 %": (125, None),         # a trailing percent sign (the review page used to refuse it)
    "12.5%": (125, None),
    "abc": (None, NOT_A_PERCENTAGE),
    "-3": (None, "at least 0 %"),
    "-0.5": (None, "at least 0 %"),
    "+4": (None, NOT_A_PERCENTAGE),
    "1e2": (None, NOT_A_PERCENTAGE),
    "0x10": (None, NOT_A_PERCENTAGE),
    ".": (None, NOT_A_PERCENTAGE),
    ",": (None, NOT_A_PERCENTAGE),
    "%": (None, NOT_A_PERCENTAGE),
    "1 2": (None, NOT_A_PERCENTAGE),
    "1.2.3": (None, NOT_A_PERCENTAGE),
    "12.5.": (None, NOT_A_PERCENTAGE),
    "１２": (None, NOT_A_PERCENTAGE),  # full-width digits
    "100.1": (None, AT_MOST_100),
    "101": (None, AT_MOST_100),
    "1000": (None, AT_MOST_100),
    "12.25": (None, ONE_DECIMAL),  # refused, not rounded to 12.3 (or 12.2)
    "12.50": (None, ONE_DECIMAL),
    "0.05": (None, ONE_DECIMAL),
    "1,000": (None, ONE_DECIMAL),  # no thousands separators in a percentage
}


def test_the_rule_in_chromium(page):
    page.set_content("<!doctype html><title>percent.js</title>")
    page.add_script_tag(path=str(PERCENT_JS))
    got = page.evaluate("""(texts) => Object.fromEntries(texts.map((t) => {
        const r = window.lczPercent.parse(t);
        return [t, [r.value, r.error]];
    }))""", list(TABLE))
    assert {t: tuple(v) for t, v in got.items()} == TABLE
    # per-mille -> text -> per-mille is exact for every value a split can hold
    assert page.evaluate("""() => { const P = window.lczPercent; const bad = [];
        for (let v = 0; v <= P.TOTAL; v++) if (P.parse(P.format(v)).value !== v) bad.push(v);
        return [bad, P.format(0), P.format(5), P.format(1000), P.format(-25), P.TOTAL]; }""") \
        == [[], "0.0", "0.5", "100.0", "-2.5", 1000]


def test_the_workspace_reads_typed_percentages_by_the_rule(page, live_server, team, campaign):
    first = Assignment.objects.filter(interpreter=team["ann"]).order_by("block_id").first()
    login(page, live_server, "ann")
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/work/#a={first.pk}")
    wait_for_blocks(page)
    expect(page.locator("#ed-block")).to_contain_text(first.block.block_key)
    assert page.evaluate("window.lczWorkspace.parsePercent === window.lczPercent.parse")

    field = page.locator("#pct-lcz_6")
    field.fill("12,5")
    expect(page.locator("#total")).to_have_text("12.5 %")
    field.fill("12.25")                               # refused, not rounded
    expect(page.locator("#diff")).to_have_text(f"LCZ 6: {ONE_DECIMAL}")
    expect(page.locator('.cls[data-key="lcz_6"]')).to_have_class(re.compile(r"\bbad\b"))
    expect(page.locator("#ed-save-state")).to_have_text("Not saved: fix the marked value")
    field.fill(".5")
    page.locator("#pct-lcz_b").fill("99,5 %")
    expect(page.locator("#diff")).to_have_text("✓ complete")
    field.blur()
    expect(field).to_have_value("0.5")                # written back the one way


def test_the_review_page_reads_typed_percentages_by_the_rule(page, live_server, team, campaign, disputed_block):
    login(page, live_server, "rev")
    page.goto(f"{live_server.url}/dashboard/review/{disputed_block.pk}/")
    page.click('button[data-start="consensus"]')      # 33.4 / 33.3 / 33.3
    field = page.locator('input.pct[data-key="lcz_6"]')
    expect(field).to_have_value("33.4")

    field.fill("33,35")                               # refused, not rounded
    expect(page.locator('tr[data-class="lcz_6"]')).to_have_class(re.compile(r"\bbad\b"))
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#total-line")).to_contain_text(f"LCZ 6: {ONE_DECIMAL}")
    field.fill("33,4")                                # a comma decimal mark
    expect(page.locator("#editor-total")).to_have_text("100.0")
    expect(field).to_have_attribute("aria-invalid", "false")
    page.locator('input.pct[data-key="lcz_b"]').fill("33.3 %")
    expect(page.locator("#editor-total")).to_have_text("100.0")
    field.blur()
    expect(field).to_have_value("33.4")
    field.press("ArrowUp")                            # the workspace's steps: 1 %, Shift 0.1 %
    expect(field).to_have_value("34.4")
    expect(page.locator("#editor-total")).to_have_text("101.0")
    field.press("Shift+ArrowDown")
    expect(field).to_have_value("34.3")
    expect(page.locator("#editor-total")).to_have_text("100.9")
