"""The reviewer's adjudication page and the coordinator's dashboard in a real browser (Debian's
Chromium, headless, via Playwright) against pytest-django's live server, with the shared fixtures
(campaign, team: ann, bob, cat, dan with 3 blocks each of 4; reviewer rev) and SYNTHETIC imagery."""
from __future__ import annotations

import pytest

from annotator.models import Adjudication, Assignment, StreetBlock
from lcz_model.classes import index_of
from tests.browser.conftest import drop_first_answer, load_plots, login, wait_until

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = [pytest.mark.slow]


def pct(page, key: str):
    return page.locator(f'input.pct[data-key="{key}"]')


def test_reviewer_adjudicates_a_disputed_block(page, live_server, team, campaign, imagery, disputed_block):
    block = disputed_block
    login(page, live_server, "rev")
    page.goto(f"{live_server.url}/dashboard/campaigns/{campaign.pk}/review/")
    expect(page.locator("table.queue tbody tr").first).to_have_attribute("data-status", "disputed")
    page.click(f'tr[data-block="{block.pk}"] a.button')
    page.wait_for_url(f"{live_server.url}/dashboard/review/{block.pk}/")

    # the three splits side by side, the consensus, the block on the imagery
    expect(page.locator("th.split-col")).to_have_count(3)
    names = set(Assignment.objects.filter(block=block).values_list("interpreter__username", flat=True))
    assert set(page.locator("th.split-col").all_inner_texts()) == names
    expect(page.locator("#split-bars .bar-row")).to_have_count(5)  # 3 splits, consensus, the editor
    page.wait_for_function("document.querySelectorAll('#review-map .leaflet-tile-loaded').length >= 1")
    expect(page.locator("#block-status")).to_have_text("Disputed")

    submit = page.locator("#submit-btn")
    expect(submit).to_be_disabled()
    page.click('button[data-start="consensus"]')
    expect(pct(page, "lcz_6")).to_have_value("33.4")
    expect(pct(page, "lcz_b")).to_have_value("33.3")
    expect(pct(page, "lcz_d")).to_have_value("33.3")
    expect(page.locator("#editor-total")).to_have_text("100.0")
    expect(page.locator("#started-from")).to_have_text("consensus")

    pct(page, "lcz_6").fill("40.0")                    # 106.6 %: refused
    expect(page.locator("#editor-total")).to_have_text("106.6")
    expect(page.locator("#total-line")).to_contain_text("6.6 % over")
    page.fill("#reason", "north half is open low-rise; the rest scattered trees and lawn")
    expect(submit).to_be_disabled()
    pct(page, "lcz_b").fill("26.7")                    # 40.0 + 26.7 + 33.3 = 100.0 %
    expect(page.locator("#editor-total")).to_have_text("100.0")
    expect(submit).to_be_enabled()
    page.fill("#reason", "")                           # the reason is required
    expect(submit).to_be_disabled()
    page.fill("#reason", "north half is open low-rise; the rest scattered trees and lawn")
    page.press("#reason", "Enter")                     # Enter submits when valid

    expect(page.locator("#result")).to_contain_text("Adjudicated.")
    expect(page.locator("#block-status")).to_have_text("Adjudicated")
    expect(page.locator('tr[data-class="lcz_6"] td.final')).to_have_text("40.0")
    block = wait_until(lambda: StreetBlock.objects.filter(pk=block.pk, status="adjudicated").first())
    assert block.final_permille[index_of("6")] == 400
    assert block.final_permille[index_of("B")] == 267
    assert block.final_permille[index_of("D")] == 333 and sum(block.final_permille) == 1000
    adjudication = Adjudication.objects.get(block=block)
    assert adjudication.reviewer == team["rev"] and adjudication.started_from == "consensus"
    assert adjudication.reason.startswith("north half")

    # n: on to the next disputed block; none left, so back to the queue
    page.keyboard.press("n")
    page.wait_for_url(f"{live_server.url}/dashboard/campaigns/{campaign.pk}/review/")
    expect(page.locator(f'tr[data-block="{block.pk}"]')).to_have_attribute("data-status", "adjudicated")


def test_dashboard_plots_and_agreement_map(page, live_server, team, campaign, imagery, disputed_block):
    login(page, live_server, "rev")
    page.goto(f"{live_server.url}/dashboard/campaigns/{campaign.pk}/")
    expect(page.locator("#agreement-figures")).to_be_visible()
    page.wait_for_function("document.getElementById('dash-map').dataset.loaded === '2'")
    expect(page.locator("#dash-map .legend")).to_contain_text("Mean pairwise TV")
    # every plot decodes as an image in the browser
    load_plots(page)
    # the disputed block on the map opens its adjudication page
    page.click("#first-disputed")
    page.wait_for_url(f"{live_server.url}/dashboard/review/{disputed_block.pk}/")


def test_a_lost_answer_is_sent_again_with_the_same_request_id_and_recorded_once(page, live_server, team, campaign,
                                                                                disputed_block):
    login(page, live_server, "rev")
    page.goto(f"{live_server.url}/dashboard/review/{disputed_block.pk}/")
    sent = drop_first_answer(page, "**/api/blocks/*/review/", "POST")
    page.click('button[data-start="consensus"]')
    page.fill("#reason", "thirds are right")
    page.click("#submit-btn")
    expect(page.locator("#result")).to_contain_text("the server could not be reached")
    page.click("#submit-btn")                        # the person tries again
    expect(page.locator("#result")).to_contain_text("Adjudicated.")
    assert len(sent) == 2 and sent[0] == sent[1]      # the same request, recorded once
    assert Adjudication.objects.filter(block=disputed_block).count() == 1
