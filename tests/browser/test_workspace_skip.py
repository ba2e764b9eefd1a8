"""The "can't label" verdict in real Chromium (issue #13): s, a digit for the reason, Enter (3 keys);
undo brings the split back; a class key labels the block after all; "other" waits for a comment; a
submitted skip reopens as skipped and colours the block; the reviewer sees it with its reason."""
from __future__ import annotations

import uuid

import pytest

from annotator import services
from annotator.models import Annotation, Assignment, StreetBlock
from lcz_model.classes import KEYS
from tests.browser.conftest import login, wait_for_blocks, wait_until
from tests.browser.test_workspace import my_assignments, permille

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.slow


def open_block(page, live_server, campaign, a: Assignment) -> None:
    page.goto(f"{live_server.url}/campaigns/{campaign.pk}/work/#a={a.pk}")
    expect(page.locator("#ed-block")).to_contain_text(a.block.block_key)
    wait_for_blocks(page)


def submitted(a: Assignment) -> Annotation:
    return wait_until(lambda: Annotation.objects.filter(assignment=a, submitted_at__isnull=False).first())


def test_skip_with_a_reason_in_three_keys_and_it_reopens_as_skipped(page, live_server, team, campaign, imagery):
    first, second, _ = my_assignments(team["ann"])
    login(page, live_server, "ann")
    open_block(page, live_server, campaign, first)
    expect(page.locator("#skip-reasons input")).to_have_count(4)

    keys = ["s", "2", "Enter"]                          # can't label: cloud or shadow, submitted
    for k in keys:
        page.keyboard.press(k)
    assert len(keys) <= 3
    ann = submitted(first)
    assert ann.skip_reason == "cloud_shadow" and ann.permille == [0] * 17
    expect(page.locator("#ed-block")).to_contain_text(second.block.block_key)   # on to the next block
    expect(page.locator("#progress .label")).to_contain_text("(1 can't label)")

    # the map colours it as skipped (its own grey, in the legend too), and it reopens as a skip
    assert page.evaluate(f"window.lczWorkspace.blockStatus({first.block_id})") == "skipped"
    assert page.evaluate("window.lczWorkspace.STATUS.skipped.color") == "#868e96"
    expect(page.locator('.legend-row[data-status="skipped"]')).to_contain_text("Can't label (skipped)1")
    page.keyboard.press("p")
    expect(page.locator("#ed-block")).to_contain_text(first.block.block_key)
    expect(page.locator("#ed-status")).to_have_text("Can't label (skipped)")
    expect(page.locator("#skip-cloud_shadow")).to_be_checked()
    expect(page.locator("#diff")).to_contain_text("can't label: Cloud or shadow")
    # after a reload too (the server's word)
    page.reload()
    expect(page.locator("#ed-status")).to_have_text("Can't label (skipped)")
    expect(page.locator("#skip-cloud_shadow")).to_be_checked()


def test_undo_brings_the_split_back_and_a_class_key_labels_it_after_all(page, live_server, team, campaign,
                                                                       imagery):
    first, *_ = my_assignments(team["ann"])
    login(page, live_server, "ann")
    open_block(page, live_server, campaign, first)
    for k in ["6", "7", "b", "r"]:                      # LCZ 6 70 %, LCZ B the rest
        page.keyboard.press(k)
    expect(page.locator("#diff")).to_have_text("✓ complete")
    page.keyboard.press("s")
    expect(page.locator("#ed-hint")).to_contain_text("1 bad imagery")
    page.keyboard.press("1")
    expect(page.locator("#skip-bad_imagery")).to_be_checked()
    expect(page.locator("#pct-lcz_6")).to_have_value("")
    expect(page.locator("#editor")).to_have_class("skipping")
    page.keyboard.press("Control+z")                    # the split is back, the skip gone
    expect(page.locator("#pct-lcz_6")).to_have_value("70.0")
    expect(page.locator("#pct-lcz_b")).to_have_value("30.0")
    expect(page.locator("#skip-bad_imagery")).not_to_be_checked()
    page.keyboard.press("Control+Shift+z")              # redo: skipped again
    expect(page.locator("#skip-bad_imagery")).to_be_checked()
    # no mode: after "s", a class key is a class key (and its digit labels the block after all)
    page.keyboard.press("s")
    page.keyboard.press("d")
    page.keyboard.press("9")
    expect(page.locator("#pct-lcz_d")).to_have_value("90.0")
    expect(page.locator("#skip-bad_imagery")).not_to_be_checked()
    expect(page.locator("#editor")).not_to_have_class("skipping")
    page.keyboard.press("r")
    page.keyboard.press("Enter")
    ann = submitted(first)
    assert ann.skip_reason == "" and ann.permille == permille(lcz_d=1000)


def test_other_waits_for_a_comment_and_a_click_works_too(page, live_server, team, campaign, imagery):
    first, *_ = my_assignments(team["ann"])
    login(page, live_server, "ann")
    open_block(page, live_server, campaign, first)
    page.keyboard.press("s")
    page.keyboard.press("4")                            # other: the comment gets the focus
    expect(page.locator("#skip-other")).to_be_checked()
    expect(page.locator("#comment")).to_be_focused()
    expect(page.locator("#submit-btn")).to_be_disabled()
    page.keyboard.type("scaffolding over the whole block")
    expect(page.locator("#submit-btn")).to_be_enabled()
    # a click on another reason changes it; the comment stays
    page.locator("label[for=skip-unclear_boundary]").click()
    expect(page.locator("#skip-unclear_boundary")).to_be_checked()
    page.locator("#submit-btn").click()
    ann = submitted(first)
    assert ann.skip_reason == "unclear_boundary" and ann.comment == "scaffolding over the whole block"
    assert Assignment.objects.get(pk=first.pk).status == Assignment.Status.SUBMITTED


def test_help_lists_the_skip_key(page, live_server, team, campaign, imagery):
    first, *_ = my_assignments(team["ann"])
    login(page, live_server, "ann")
    open_block(page, live_server, campaign, first)
    page.keyboard.press("?")
    expect(page.locator("#help")).to_contain_text("can't label this block")


def test_reviewer_sees_the_skips_with_reason_and_comment(page, live_server, team, campaign, imagery):
    block = StreetBlock.objects.filter(campaign=campaign).order_by("id").first()
    verdicts = [None, ("other", "a crane covers the roofs"), ("cloud_shadow", "")]
    for a, v in zip(Assignment.objects.filter(block=block).select_related("interpreter")
                    .order_by("interpreter__username"), verdicts):
        if v is None:
            services.save_annotation(a, a.interpreter, request_id=uuid.uuid4(), version=None,
                                     split=dict.fromkeys(KEYS, 0) | {"lcz_6": 1000}, submit=True)
        else:
            services.save_annotation(a, a.interpreter, request_id=uuid.uuid4(), version=None, split=None,
                                     skip_reason=v[0], comment=v[1], submit=True)
    block.refresh_from_db()
    assert block.status == StreetBlock.Status.DISPUTED          # one labelled verdict of three
    login(page, live_server, "rev")
    page.goto(f"{live_server.url}/dashboard/campaigns/{campaign.pk}/review/")
    row = page.locator(f'tr[data-block="{block.pk}"]')
    expect(row.locator("td.notes .note-count.skips")).to_contain_text("2")
    row.locator("a.button").click()
    page.wait_for_url(f"{live_server.url}/dashboard/review/{block.pk}/")
    labels = page.locator("#interpreter-notes .skip-label")
    assert sorted(labels.all_inner_texts()) == ["can't label: Cloud or shadow",
                                                "can't label: Other (say why in the comment)"]
    other = page.locator("#interpreter-notes .interp-note").filter(has_text="Other (say why")
    expect(other.locator(".comment")).to_have_text("a crane covers the roofs")
    expect(page.locator("#split-bars")).to_contain_text("(can't label)")
