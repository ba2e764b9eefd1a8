"""The "can't label" verdict (skip with a reason), end to end on PostGIS: the save path and its API,
curation (a skip counts as submitted, consensus from labelled splits only, no labelled majority ->
disputed), agreement counting, progress, the review payloads and the export's labels/skipped.csv."""
from __future__ import annotations

import csv
import uuid

import numpy as np
import pytest
from django.core.management import call_command

from annotator import agreement, selectors, services
from annotator.models import Annotation, Assignment, AuditEvent, StreetBlock
from annotator.splits import SplitError
from lcz_model.package import read_package
from tests.annotator.helpers import first_assignment, save, split
from tests.annotator.test_export import SPLITS, _imagery_over_grid

pytestmark = pytest.mark.django_db


def _block_assignments(block):
    return list(Assignment.objects.filter(block=block).select_related("interpreter").order_by("interpreter__username"))


def _verdicts(block, verdicts):
    """Each of the block's interpreters (username order) submits: a split dict, or a skip reason string."""
    for a, v in zip(_block_assignments(block), verdicts):
        version = Annotation.objects.filter(assignment=a).values_list("version", flat=True).first() or 0
        if isinstance(v, str):
            services.save_annotation(a, a.interpreter, request_id=uuid.uuid4(), version=version, split=None,
                                     skip_reason=v, comment="why" if v == "other" else "", submit=True)
        else:
            services.save_annotation(a, a.interpreter, request_id=uuid.uuid4(), version=version, split=v,
                                     submit=True)


# --- the save path and the API --------------------------------------------------------------

def test_api_submits_a_skip_without_a_split(team, api_as):
    a = first_assignment(team["ann"])
    r = save(api_as(team["ann"]), a.pk, split=None, skip_reason="cloud_shadow", submit=True)
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["submitted"] is True and body["skip_reason"] == "cloud_shadow"
    assert set(body["split"].values()) == {0}
    a.refresh_from_db()
    assert a.status == Assignment.Status.SUBMITTED and a.annotation.permille == [0] * 17
    event = AuditEvent.objects.get(annotation=a.annotation, action="submit")
    assert event.after["skip_reason"] == "cloud_shadow" and event.before is None


def test_skip_accepts_an_all_zero_split_and_refuses_a_real_one(team, api_as):
    a = first_assignment(team["ann"])
    client = api_as(team["ann"])
    r = save(client, a.pk, split=split(lcz_6=1000), skip_reason="bad_imagery", submit=True)
    assert r.status_code == 400 and "carries no split" in r.json()["split"][0]
    r = save(client, a.pk, split=split(), skip_reason="bad_imagery", submit=True)
    assert r.status_code == 200 and r.json()["skip_reason"] == "bad_imagery"


@pytest.mark.parametrize("reason", ["snow", "OTHER", " cloud_shadow"])
def test_unknown_reason_is_a_400_naming_the_reasons(team, api_as, reason):
    a = first_assignment(team["ann"])
    r = save(api_as(team["ann"]), a.pk, split=None, skip_reason=reason, submit=True)
    assert r.status_code == 400
    msg = r.json()["skip_reason"][0]
    assert "unknown reason" in msg and "unclear_boundary" in msg
    assert not Annotation.objects.filter(assignment=a).exists()


def test_skip_reason_must_be_a_string(team, api_as):
    a = first_assignment(team["ann"])
    r = save(api_as(team["ann"]), a.pk, split=None, skip_reason=3, submit=True)
    assert r.status_code == 400 and "skip_reason" in r.json()


def test_other_needs_a_comment_to_submit(team, api_as):
    a = first_assignment(team["ann"])
    client = api_as(team["ann"])
    r = save(client, a.pk, split=None, skip_reason="other", comment="   ", submit=True)
    assert r.status_code == 400 and "comment" in r.json()
    # a draft may wait for the comment
    r = save(client, a.pk, split=None, skip_reason="other", submit=False)
    assert r.status_code == 200 and r.json()["submitted"] is False
    r = save(client, a.pk, version=1, split=None, skip_reason="other", comment="a crane covers it", submit=True)
    assert r.status_code == 200 and r.json()["comment"] == "a crane covers it"


def test_no_split_and_no_skip_is_a_400(team, api_as):
    a = first_assignment(team["ann"])
    r = save(api_as(team["ann"]), a.pk, split=None, submit=True)
    assert r.status_code == 400 and "skip_reason" in r.json()["split"][0]


def test_idempotency_digest_binds_the_skip(team, api_as):
    a = first_assignment(team["ann"])
    client = api_as(team["ann"])
    rid = str(uuid.uuid4())
    first = save(client, a.pk, request_id=rid, split=None, skip_reason="bad_imagery", submit=True)
    again = save(client, a.pk, request_id=rid, split=None, skip_reason="bad_imagery", submit=True)
    assert first.status_code == again.status_code == 200
    assert again.json()["replayed"] is True and again.json()["version"] == first.json()["version"] == 1
    other = save(client, a.pk, request_id=rid, split=None, skip_reason="cloud_shadow", submit=True)
    assert other.status_code == 422
    assert Annotation.objects.get(assignment=a).skip_reason == "bad_imagery"


def test_unskip_while_the_block_is_open(team, api_as):
    a = first_assignment(team["ann"])
    client = api_as(team["ann"])
    assert save(client, a.pk, split=None, skip_reason="unclear_boundary", submit=True).status_code == 200
    r = save(client, a.pk, version=1, split=split(lcz_6=700, lcz_b=300), submit=True)
    assert r.status_code == 200, r.content
    assert r.json()["skip_reason"] == "" and r.json()["split"]["lcz_6"] == 700
    event = AuditEvent.objects.filter(annotation__assignment=a).order_by("-id").first()
    assert event.before["skip_reason"] == "unclear_boundary" and event.after["skip_reason"] == ""


def test_service_refuses_other_without_comment():
    # the rule itself, without the database's help: SplitError names the comment
    from annotator.services import _verdict_permille

    with pytest.raises(SplitError) as err:
        _verdict_permille(None, "other", "", True)
    assert "comment" in err.value.errors
    assert _verdict_permille(None, "cloud_shadow", "", True) == [0] * 17


# --- curation -------------------------------------------------------------------------------

def test_one_skip_of_three_keeps_consensus_from_the_labelled_two(team):
    block = StreetBlock.objects.order_by("id").first()
    _verdicts(block, [split(lcz_6=600, lcz_b=400), "cloud_shadow", split(lcz_6=800, lcz_b=200)])
    block.refresh_from_db()
    assert block.status == StreetBlock.Status.COMPLETE
    assert block.consensus[5] == 700 and block.consensus[11] == 300 and sum(block.consensus) == 1000
    assert block.agreement_tv == pytest.approx(0.2)          # the two labelled splits only
    event = AuditEvent.objects.get(block=block, action="consensus")
    assert event.after["skipped"] == 1 and event.after["labelled"] == 2


def test_two_skips_of_three_dispute_the_block(team):
    block = StreetBlock.objects.order_by("id").first()
    _verdicts(block, ["bad_imagery", split(lcz_6=1000), "other"])
    block.refresh_from_db()
    assert block.status == StreetBlock.Status.DISPUTED and block.final_permille is None
    assert block.consensus[5] == 1000                        # the one labelled split, for the reviewer
    assert AuditEvent.objects.get(block=block, action="disputed").after["disputed_by_skips"] is True


def test_all_skipped_block_is_disputed_without_consensus(team):
    block = StreetBlock.objects.order_by("id").first()
    _verdicts(block, ["bad_imagery", "cloud_shadow", "unclear_boundary"])
    block.refresh_from_db()
    assert block.status == StreetBlock.Status.DISPUTED
    assert block.consensus is None and block.agreement_tv is None and block.final_permille is None


def test_a_skip_after_two_splits_completes_the_block(team):
    # the skip is the last verdict: it counts as submitted, the block is curated then
    block = StreetBlock.objects.order_by("id").first()
    assignments = _block_assignments(block)
    _verdicts(block, [split(lcz_6=1000), split(lcz_6=1000)])
    block.refresh_from_db()
    assert block.status == StreetBlock.Status.IN_PROGRESS
    last = assignments[2]
    services.save_annotation(last, last.interpreter, request_id=uuid.uuid4(), version=0, split=None,
                             skip_reason="unclear_boundary", submit=True)
    block.refresh_from_db()
    assert block.status == StreetBlock.Status.COMPLETE and block.final_permille[5] == 1000


def test_a_curated_skip_can_no_longer_be_changed(team):
    block = StreetBlock.objects.order_by("id").first()
    _verdicts(block, [split(lcz_6=1000), "cloud_shadow", split(lcz_6=1000)])
    a = _block_assignments(block)[1]
    with pytest.raises(SplitError):
        services.save_annotation(a, a.interpreter, request_id=uuid.uuid4(), version=1, split=split(lcz_6=1000),
                                 submit=True)


# --- agreement ------------------------------------------------------------------------------

def test_campaign_agreement_counts_skips(team):
    blocks = list(StreetBlock.objects.order_by("id"))
    # block 0: one skip; block 1: two skips (disputed); blocks 2, 3: all labelled alike
    _verdicts(blocks[0], [split(lcz_6=600, lcz_b=400), "cloud_shadow", split(lcz_6=600, lcz_b=400)])
    _verdicts(blocks[1], ["bad_imagery", split(lcz_8=1000), "bad_imagery"])
    for b in blocks[2:]:
        _verdicts(b, [split(lcz_6=1000)] * 3)
    fig = selectors.campaign_agreement(team["ann"].memberships.first().campaign)
    assert fig["skips"]["count"] == 3
    assert fig["skips"]["by_reason"] == {"bad_imagery": 2, "cloud_shadow": 1}
    assert fig["skips"]["blocks"] == 2 and fig["skips"]["disputed_by_skips"] == 1
    assert fig["disputed"]["count"] == 1 and fig["disputed"]["by_skips"] == 1
    per = {i["name"]: i for i in fig["interpreters"]}
    assert sum(i["n_skips"] for i in per.values()) == 3
    skippers = {a.interpreter.username: a.annotation.skip_reason for b in blocks[:2] for a in _block_assignments(b)
                if a.annotation.skip_reason}
    for name, reason in skippers.items():
        assert per[name]["skips_by_reason"].get(reason, 0) >= 1
    # every block has 3 verdicts now: Fleiss' kappa uses all 4 (skips as their own category)
    assert fig["fleiss_kappa_dominant"]["n_blocks"] == 4
    # TV only from labelled pairs: block 0's two agreeing splits give 0, blocks 2, 3 give 0
    assert fig["tv"]["mean"] == 0.0


def test_skip_category_changes_nominal_statistics():
    # 3 blocks x 3 raters, all LCZ 6 but one rater's skip on block 0: without the skip category the
    # block would agree perfectly (alpha NaN: one class throughout); with it, disagreement shows
    X = np.full((3, 3, 17), 0, dtype=np.int64)
    X[:, :, 5] = 1000
    X[1, :, 5] = 0
    X[1, :, 8] = 1000
    present = np.ones((3, 3), dtype=bool)
    present[0, 2] = False
    X[0, 2] = -1
    skipped = np.full((3, 3), "", dtype=object)
    skipped[0, 2] = "cloud_shadow"
    plain = agreement.campaign_agreement(X, present, fleiss_ratings_per_block=3)
    withskip = agreement.campaign_agreement(X, present, fleiss_ratings_per_block=3, skipped=skipped)
    assert plain["fleiss_kappa_dominant"]["n_blocks"] == 2
    assert withskip["fleiss_kappa_dominant"]["n_blocks"] == 3
    assert withskip["fleiss_kappa_dominant"]["kappa"] < plain["fleiss_kappa_dominant"]["kappa"]
    assert withskip["alpha_nominal_dominant"] < plain["alpha_nominal_dominant"]
    # interval alpha and TV ignore the skip
    assert withskip["alpha_interval"] == plain["alpha_interval"] and withskip["tv"] == plain["tv"]
    assert withskip["interpreters"][2]["n_skips"] == 1
    assert withskip["interpreters"][2]["skips_by_reason"] == {"cloud_shadow": 1}
    # the single functions take the same argument; a skip that is also present is refused
    assert agreement.krippendorff_alpha_nominal_dominant(X, present, skipped=skipped) == pytest.approx(
        withskip["alpha_nominal_dominant"])
    both = X.copy()
    both[0, 2] = X[0, 0]                       # a real split where the skip is
    with pytest.raises(ValueError, match="cannot also be present"):
        agreement.fleiss_kappa_dominant(both, np.ones((3, 3), dtype=bool), skipped=skipped)


# --- progress and review --------------------------------------------------------------------

def test_progress_counts_a_skip_as_done(team, api_as, campaign):
    ann = team["ann"]
    a = first_assignment(ann)
    services.save_annotation(a, ann, request_id=uuid.uuid4(), version=0, split=None, skip_reason="bad_imagery",
                             submit=True)
    p = api_as(ann).get(f"/api/campaigns/{campaign.pk}/progress/").json()
    assert p["submitted"] == 1 and p["skipped"] == 1 and p["todo"] == p["assigned"] - 1
    row = selectors.interpreter_progress(campaign)["ann"]
    assert row["submitted"] == 1 and row["skipped"] == 1
    assert selectors.interpreter_progress(campaign)["bob"]["skipped"] == 0


def test_reviewer_sees_skips_with_reason_and_comment(team, api_as, campaign):
    block = StreetBlock.objects.order_by("id").first()
    _verdicts(block, [split(lcz_6=1000), "other", "cloud_shadow"])
    rev = api_as(team["rev"])
    queue = rev.get(f"/api/campaigns/{campaign.pk}/review/").json()
    row = next(r for r in queue if r["id"] == block.pk)
    assert row["status"] == "disputed" and row["skipped"] == 2
    view = rev.get(f"/api/blocks/{block.pk}/review/").json()
    skips = sorted((s["skip_reason"], s["skip_label"], s["comment"]) for s in view["splits"] if s["skip_reason"])
    assert skips == [("cloud_shadow", "Cloud or shadow", ""), ("other", "Other (say why in the comment)", "why")]
    assert selectors.interpreter_notes_counts(campaign, [block.pk])[block.pk] == {"comments": 1, "flags": 0,
                                                                                  "skips": 2}


# --- export ---------------------------------------------------------------------------------

def test_export_lists_skips_in_labels_skipped_csv(campaign, media_root, geotiff_factory, request, tmp_path):
    _imagery_over_grid(campaign, geotiff_factory, n=3)
    request.getfixturevalue("team")
    blocks = list(StreetBlock.objects.filter(campaign=campaign).order_by("block_key"))
    _verdicts(blocks[0], [SPLITS[0], "cloud_shadow", SPLITS[0]])        # complete, one skip
    _verdicts(blocks[1], ["bad_imagery", "other", SPLITS[1]])           # disputed by skips: not exported
    for i, b in enumerate(blocks[2:], start=2):
        _verdicts(b, [SPLITS[i]] * 3)
    out = tmp_path / "skips-v1"
    call_command("export_dataset", campaign=campaign.name, out=str(out), verbosity=0)
    with open(out / "labels" / "skipped.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["block_id"], r["reason"], r["in_package"]) for r in rows] == sorted([
        (blocks[0].block_key, "cloud_shadow", "true"), (blocks[1].block_key, "bad_imagery", "false"),
        (blocks[1].block_key, "other", "false")])
    assert all(r["interpreter"].startswith("interpreter-") for r in rows)
    text = (out / "labels" / "skipped.csv").read_text()
    assert "why" not in text and "ann" not in text                      # no comments, no names
    readme = (out / "README.md").read_text()
    assert "3 verdicts on 2 blocks" in readme and "labels/skipped.csv" in readme
    # annotations.csv holds only real splits (each sums to 1000), and the package still reads and verifies
    with open(out / "annotations.csv", newline="") as f:
        ann = list(csv.DictReader(f))
    assert len(ann) == 2 + 3 * 2
    pkg = read_package(out, verify=True)
    assert len(pkg) == 3 and blocks[1].block_key not in pkg.by_id()
    assert "labels/skipped.csv" in (out / "SHA256SUMS").read_text()


def test_report_and_dashboard_show_the_skips(team, campaign, client):
    from io import StringIO

    blocks = list(StreetBlock.objects.order_by("id"))
    _verdicts(blocks[0], [split(lcz_6=1000), "cloud_shadow", split(lcz_6=1000)])
    _verdicts(blocks[1], ["bad_imagery", split(lcz_8=1000), "bad_imagery"])
    out = StringIO()
    call_command("agreement_report", campaign=campaign.name, stdout=out)
    text = out.getvalue()
    assert "can't label (skips): 3 on 2 blocks, by reason bad_imagery 2, cloud_shadow 1" in text
    assert "1 blocks disputed for want of a labelled majority" in text
    skipper = next(a.interpreter.username for a in _block_assignments(blocks[0]) if a.annotation.skip_reason)
    assert any(line.strip().startswith(f"{skipper}:") and "can't label" in line for line in text.splitlines())
    client.force_login(team["adm"])
    html = client.get(f"/dashboard/campaigns/{campaign.pk}/").content.decode()
    assert "3 can't-label verdicts (bad_imagery 2, cloud_shadow 1" in html
    assert "Can&#x27;t label</th>" in html or "Can't label</th>" in html


def test_adjudication_cannot_start_from_a_skipped_verdict(team):
    from annotator import curation

    block = StreetBlock.objects.order_by("id").first()
    _verdicts(block, ["bad_imagery", split(lcz_6=1000), split(lcz_b=1000)])
    skipped = next(a for a in _block_assignments(block) if Annotation.objects.get(assignment=a).skip_reason)
    labelled = next(a for a in _block_assignments(block) if not Annotation.objects.get(assignment=a).skip_reason)
    with pytest.raises(SplitError, match="started_from"):
        curation.adjudicate(block, team["rev"], split=split(lcz_6=1000), reason="r", started_from=str(skipped.pk))
    done = curation.adjudicate(block, team["rev"], split=split(lcz_6=1000), reason="r", started_from=str(labelled.pk))
    assert done.adjudication.started_from == str(labelled.pk)
