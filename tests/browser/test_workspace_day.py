"""The interpreters' day in the workspace (issue #13), in real Chromium: "next" goes forward through
the queue, a split by keys alone with no mode to forget, locked blocks read-only from a link, undo
and redo, the previous block, repeating the last split, and no key ignored silently."""
from __future__ import annotations

import re
import uuid

import pytest

from annotator import services
from annotator.models import Annotation, Assignment
from lcz_model.classes import KEYS
from tests.browser.conftest import login, wait_for_blocks, wait_until
from tests.browser.test_workspace import my_assignments, permille

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.slow


def draft(a: Assignment, **split) -> None:
    services.save_annotation(a, a.interpreter, request_id=uuid.uuid4(), version=None,
                             split=dict.fromkeys(KEYS, 0) | split, submit=False)


def open_block(page, live_server, campaign, a: Assignment, *, blocks: bool = True) -> None:
    """The workspace opened from a link to the block (#a=<assignment>)."""
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/work/#a={a.pk}")
    expect(page.locator("#ed-block")).to_contain_text(a.block.block_key)
    if blocks:
        wait_for_blocks(page)


def press(page, keys: list[str]) -> int:
    for k in keys:
        page.keyboard.press(k)
    return len(keys)


def submitted(a: Assignment) -> Annotation:
    return wait_until(lambda: Annotation.objects.filter(assignment=a, submitted_at__isnull=False).first())


def test_next_goes_forward_past_two_drafts_to_a_new_block(page, live_server, team, campaign, imagery):
    first, second, third = my_assignments(team["ann"])
    draft(first, lcz_6=300)
    draft(second, lcz_b=200)
    login(page, live_server, "ann")
    open_block(page, live_server, campaign, first)
    page.keyboard.press("n")
    expect(page.locator("#ed-block")).to_contain_text(second.block.block_key)
    page.keyboard.press("ArrowRight")              # forward to the new block, not back to the first draft
    expect(page.locator("#ed-block")).to_contain_text(third.block.block_key)
    page.keyboard.press("n")                       # the end of the queue: round to the skipped ones
    expect(page.locator("#ed-block")).to_contain_text(first.block.block_key)


def test_any_three_class_split_in_at_most_8_keys_without_esc(page, live_server, team, campaign, imagery):
    first, second, third = my_assignments(team["ann"])
    login(page, live_server, "ann")
    open_block(page, live_server, campaign, first)

    n = press(page, ["2", "5", "6", "3", "d", "2", "Enter"])     # LCZ 2 50 / LCZ 6 30 / LCZ D 20
    assert n <= 8
    assert submitted(first).permille == permille(lcz_2=500, lcz_6=300, lcz_d=200)
    expect(page.locator("#ed-block")).to_contain_text(second.block.block_key)

    n = press(page, ["a", "4", "0", "3", "1", "r", "Enter"])     # LCZ A 40 / LCZ 10 30 / LCZ 1 30
    assert n <= 8
    assert submitted(second).permille == permille(lcz_a=400, lcz_10=300, lcz_1=300)
    expect(page.locator("#ed-block")).to_contain_text(third.block.block_key)

    # a digit after a digit picks a class: never "50630" in one field
    press(page, ["6", "7", "b", "3"])
    expect(page.locator("#pct-lcz_6")).to_have_value("70.0")
    expect(page.locator("#pct-lcz_b")).to_have_value("30.0")
    expect(page.locator("#diff")).to_have_text("✓ complete")

    # one Esc too many closes the editor; later keys still answer, and p reopens the block
    press(page, ["Escape", "Escape"])
    expect(page.locator("#editor")).to_be_hidden()
    page.keyboard.press("5")
    expect(page.locator("#toast")).to_contain_text("No block is open")
    page.keyboard.press("p")
    expect(page.locator("#ed-block")).to_contain_text(third.block.block_key)
    expect(page.locator("#pct-lcz_6")).to_have_value("70.0")

    page.keyboard.press("?")                       # the keys are in the help
    expect(page.locator("#help")).to_contain_text("one digit")
    expect(page.locator("#help")).to_contain_text("Ctrl")


def test_disputed_block_opened_from_a_link_is_read_only(page, live_server, team, campaign, imagery, disputed_block):
    a = Assignment.objects.filter(block=disputed_block).select_related("interpreter", "block").first()
    login(page, live_server, a.interpreter.username)
    page.route("**/api/campaigns/*/blocks/**", lambda r: r.abort())   # the map's layer never says
    open_block(page, live_server, campaign, a, blocks=False)
    expect(page.locator("#ed-status")).to_have_text("Disputed")
    expect(page.locator("#ed-readonly")).to_be_visible()
    expect(page.locator("#ed-readonly")).to_contain_text("disputed")
    expect(page.locator("#pct-lcz_6")).to_be_disabled()
    expect(page.locator("#submit-btn")).to_be_disabled()
    expect(page.locator("#submit-btn")).not_to_contain_text("Submit again")


def test_undo_and_redo_split_edits_including_the_remainder(page, live_server, team, campaign, imagery):
    first, _, _ = my_assignments(team["ann"])
    login(page, live_server, "ann")
    open_block(page, live_server, campaign, first)
    press(page, ["2", "5", "6", "r"])
    expect(page.locator("#pct-lcz_6")).to_have_value("50.0")
    page.keyboard.press("Control+z")               # the remainder undone
    expect(page.locator("#pct-lcz_6")).to_have_value("")
    expect(page.locator("#pct-lcz_2")).to_have_value("50.0")
    page.keyboard.press("Control+z")
    expect(page.locator("#pct-lcz_2")).to_have_value("")
    expect(page.locator("#total")).to_have_text("0.0 %")
    page.keyboard.press("Control+Shift+z")
    page.keyboard.press("Control+Shift+z")
    expect(page.locator("#pct-lcz_2")).to_have_value("50.0")
    expect(page.locator("#pct-lcz_6")).to_have_value("50.0")
    expect(page.locator("#diff")).to_have_text("✓ complete")


def test_previous_block_goes_back_through_this_tabs_history(page, live_server, team, campaign, imagery):
    first, second, third = my_assignments(team["ann"])
    login(page, live_server, "ann")
    open_block(page, live_server, campaign, first)
    press(page, ["n"])
    expect(page.locator("#ed-block")).to_contain_text(second.block.block_key)
    press(page, ["n"])
    expect(page.locator("#ed-block")).to_contain_text(third.block.block_key)
    press(page, ["p"])
    expect(page.locator("#ed-block")).to_contain_text(second.block.block_key)
    press(page, ["ArrowLeft"])
    expect(page.locator("#ed-block")).to_contain_text(first.block.block_key)


def test_repeat_the_last_split(page, live_server, team, campaign, imagery):
    first, second, _ = my_assignments(team["ann"])
    login(page, live_server, "ann")
    open_block(page, live_server, campaign, first)
    press(page, ["6", "7", "b", "r", "Enter"])
    assert submitted(first).permille == permille(lcz_6=700, lcz_b=300)
    expect(page.locator("#ed-block")).to_contain_text(second.block.block_key)
    press(page, ["."])
    expect(page.locator("#pct-lcz_6")).to_have_value("70.0")
    expect(page.locator("#diff")).to_have_text("✓ complete")
    press(page, ["Enter"])
    assert submitted(second).permille == permille(lcz_6=700, lcz_b=300)


def test_letters_in_a_field_show_no_stale_total_and_stray_keys_get_a_hint(page, live_server, team, campaign,
                                                                           imagery):
    first, _, _ = my_assignments(team["ann"])
    login(page, live_server, "ann")
    open_block(page, live_server, campaign, first)
    press(page, ["6", "5"])
    expect(page.locator("#total")).to_have_text("50.0 %")
    page.fill("#pct-lcz_6", "5x")
    expect(page.locator("#total")).to_have_text("—")
    expect(page.locator('.cls[data-key="lcz_6"]')).to_have_class(re.compile(r"\bbad\b"))
    page.fill("#pct-lcz_6", "50")
    expect(page.locator("#total")).to_have_text("50.0 %")
    page.keyboard.press("-")
    expect(page.locator("#ed-hint")).to_contain_text("no minus")
    page.keyboard.press("x")
    expect(page.locator("#ed-hint")).to_contain_text("not a key")
    expect(page.locator("#pct-lcz_6")).to_have_value("50")


def test_a_revoked_assignment_is_told_not_retried_as_a_lost_login(page, live_server, team, campaign, imagery):
    ann = team["ann"]
    a = my_assignments(ann)[0]
    login(page, live_server, "ann")
    open_block(page, live_server, campaign, a)
    services.remove_member(campaign, ann, "interpreter")     # meanwhile the coordinator takes her off
    page.fill("#pct-lcz_6", "40")
    expect(page.locator("#ed-errors")).to_contain_text("revoked", timeout=10_000)
    expect(page.locator("#ed-save-state")).not_to_contain_text("Logged out")
    assert not Annotation.objects.filter(assignment=a).exists()
    # refused for good: more edits, or leaving the tab, send no further saves of it
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.method == "PUT" else None)
    page.fill("#pct-lcz_6", "50")
    page.evaluate("""() => {
        Object.defineProperty(document, "hidden", { value: true, configurable: true });
        document.dispatchEvent(new Event("visibilitychange"));
    }""")
    page.wait_for_timeout(2500)   # longer than the autosave delay
    assert sent == []
