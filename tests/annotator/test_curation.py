"""Curation on PostGIS: consensus and disputes when the last split arrives, adjudication, the report."""
from __future__ import annotations

import json
import uuid

import pytest
from django.core.management import call_command

from annotator.models import Adjudication, Assignment, AuditEvent, StreetBlock
from tests.annotator.helpers import save, split, submit_block

pytestmark = pytest.mark.django_db


def test_agreeing_block_gets_consensus_and_completes(team, api_as):
    block = StreetBlock.objects.order_by("id").first()
    shares = {"ann": split(lcz_6=600, lcz_b=400), "bob": split(lcz_6=700, lcz_b=300),
              "cat": split(lcz_6=500, lcz_b=500), "dan": split(lcz_6=601, lcz_b=399)}
    submit_block(block, shares.__getitem__, client_for=api_as)
    block.refresh_from_db()
    assert block.status == StreetBlock.Status.COMPLETE
    assert sum(block.consensus) == 1000 and block.final_permille == block.consensus
    assert block.dominant_agrees is True and 0 < block.agreement_tv <= 0.25
    assert AuditEvent.objects.filter(block=block, action="consensus").count() == 1


def test_consensus_rounds_to_exactly_1000(team, api_as):
    # thirds: (1000, 0, 0), (0, 1000, 0), (0, 0, 1000) -> 333.33 each: largest remainder gives 334, 333, 333
    block = StreetBlock.objects.order_by("id").first()
    users = list(Assignment.objects.filter(block=block).order_by("interpreter__username")
                 .values_list("interpreter__username", flat=True))
    shares = dict(zip(users, [split(lcz_6=1000), split(lcz_b=1000), split(lcz_d=1000)]))
    submit_block(block, shares.__getitem__, client_for=api_as)
    block.refresh_from_db()
    assert sorted(v for v in block.consensus if v) == [333, 333, 334] and sum(block.consensus) == 1000
    assert block.status == StreetBlock.Status.DISPUTED and block.final_permille is None


def test_dominant_class_split_is_disputed_even_with_low_tv(team, api_as):
    block = StreetBlock.objects.order_by("id").first()
    users = list(Assignment.objects.filter(block=block).values_list("interpreter__username", flat=True))
    shares = {u: split(lcz_6=520, lcz_b=480) for u in users}
    shares[users[0]] = split(lcz_6=480, lcz_b=520)  # TV to others 0.04, but a different dominant class
    submit_block(block, shares.__getitem__, client_for=api_as)
    block.refresh_from_db()
    assert block.agreement_tv < 0.25 and block.dominant_agrees is False
    assert block.status == StreetBlock.Status.DISPUTED


def test_reviewer_adjudicates_a_disputed_block(team, api_as):
    block = StreetBlock.objects.order_by("id").first()
    users = list(Assignment.objects.filter(block=block).values_list("interpreter__username", flat=True))
    shares = dict(zip(users, [split(lcz_6=1000), split(lcz_8=1000), split(lcz_e=1000)]))
    submit_block(block, shares.__getitem__, client_for=api_as)
    reviewer = api_as(team["rev"])
    queue = reviewer.get(f"/api/campaigns/{block.campaign_id}/review/").json()
    assert queue[0]["id"] == block.pk and queue[0]["status"] == "disputed"
    view = reviewer.get(f"/api/blocks/{block.pk}/review/").json()
    assert len(view["splits"]) == 3 and {s["interpreter"] for s in view["splits"]} == set(users)
    # interpreters cannot reach the review endpoints, not even for their own blocks
    assert api_as(team[users[0]]).get(f"/api/blocks/{block.pk}/review/").status_code == 403
    key = lambda: str(uuid.uuid4())  # noqa: E731
    no_reason = reviewer.post(f"/api/blocks/{block.pk}/review/",
                              {"request_id": key(), "split": split(lcz_8=1000), "reason": " "}, format="json")
    assert no_reason.status_code == 400
    bad_sum = reviewer.post(f"/api/blocks/{block.pk}/review/",
                            {"request_id": key(), "split": split(lcz_8=900), "reason": "x"}, format="json")
    assert bad_sum.status_code == 400 and "split" in bad_sum.json()
    ok = reviewer.post(f"/api/blocks/{block.pk}/review/",
                       {"request_id": key(), "split": split(lcz_8=700, lcz_e=300),
                        "reason": "warehouse roofs and car parks",
                        "started_from": str(view["splits"][1]["assignment"])}, format="json")
    assert ok.status_code == 200 and ok.json()["status"] == "adjudicated"
    block.refresh_from_db()
    assert block.final_permille[7] == 700 and block.status == StreetBlock.Status.ADJUDICATED
    assert Adjudication.objects.get(block=block).reason == "warehouse roofs and car parks"
    event = AuditEvent.objects.get(block=block, action="adjudicate")
    assert event.actor == team["rev"] and event.before["status"] == "disputed"


def test_unreleased_block_is_not_reviewable(team, api_as):
    block = StreetBlock.objects.order_by("id").first()
    a = Assignment.objects.filter(block=block).first()
    save(api_as(a.interpreter), a.pk, submit=True)  # one of three
    assert api_as(team["rev"]).get(f"/api/blocks/{block.pk}/review/").status_code == 404


def test_agreement_report_command(team, api_as, capsys):
    for block in StreetBlock.objects.all():
        submit_block(block, lambda u: split(lcz_6=600, lcz_b=400) if u != "dan" else split(lcz_6=500, lcz_b=500),
                     client_for=api_as)
    call_command("agreement_report", campaign=team["ann"].memberships.first().campaign.name, json=True)
    figures = json.loads(capsys.readouterr().out)
    assert figures["n_blocks"] == 4 and figures["n_raters"] == 4 and figures["n_ratings"] == 12
    dan = next(i for i in figures["interpreters"] if i["name"] == "dan")
    ann = next(i for i in figures["interpreters"] if i["name"] == "ann")
    assert dan["bias_per_class"]["lcz_6"] == pytest.approx(-0.1)  # dan says 50 % where the others say 60 %
    assert dan["mad"] > ann["mad"]
    call_command("agreement_report", campaign=team["ann"].memberships.first().campaign.name)
    text = capsys.readouterr().out
    assert "mean pairwise TV" in text and "dan:" in text
