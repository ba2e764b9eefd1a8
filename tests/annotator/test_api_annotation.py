"""The annotation API: validation, blind labelling, idempotence, optimistic concurrency, permissions."""
from __future__ import annotations

import threading
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from annotator.models import Annotation, Assignment, AuditEvent, StreetBlock
from lcz_model.classes import KEYS
from tests.annotator.helpers import first_assignment, save, split

pytestmark = pytest.mark.django_db


# --- assignment -----------------------------------------------------------------------------

def test_assignment_is_balanced_and_distinct(team, campaign):
    per_user = {u: Assignment.objects.filter(interpreter=team[u]).count() for u in ("ann", "bob", "cat", "dan")}
    assert sorted(per_user.values()) == [3, 3, 3, 3]  # 4 blocks x 3 = 12 over 4 interpreters
    for block in StreetBlock.objects.filter(campaign=campaign):
        people = list(Assignment.objects.filter(block=block).values_list("interpreter_id", flat=True))
        assert len(people) == 3 == len(set(people))
    assert not Assignment.objects.filter(interpreter=team["rev"]).exists()


def test_assign_command_is_idempotent_and_warns_when_short(team, campaign, capsys):
    call_command("assign_blocks", campaign=campaign.name, per_block=3)
    assert Assignment.objects.count() == 12
    call_command("assign_blocks", campaign=campaign.name, per_block=5)
    assert Assignment.objects.count() == 16  # only 4 interpreters: one more each
    assert "fewer than 5 interpreters" in capsys.readouterr().err
    with pytest.raises(CommandError, match="at least 1"):
        call_command("assign_blocks", campaign=campaign.name, per_block=0)


# --- validation -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "bad_split, field, text",
    [
        (split(lcz_6=500, lcz_b=450), "split", "sum is 950"),
        (split(lcz_6=1100, lcz_b=-100), "lcz_b", "must not be negative"),
        ({**split(lcz_6=1000), "lcz_h": 0}, "lcz_h", "unknown class"),
        ({k: v for k, v in split(lcz_6=1000).items() if k != "lcz_g"}, "lcz_g", "missing"),
        (split(lcz_6=999.5, lcz_b=0.5), "lcz_6", "whole number"),
        (split(lcz_6=float("nan")), "lcz_6", "whole number"),
        ("60/40", "split", "must be an object"),
    ],
    ids=["wrong-sum", "negative", "unknown-class", "missing-class", "fraction", "nan", "not-an-object"],
)
def test_bad_splits_rejected_with_the_field_named(team, api_as, bad_split, field, text):
    a = first_assignment(team["ann"])
    response = save(api_as(team["ann"]), a.pk, split=bad_split, submit=True)
    assert response.status_code == 400, response.content
    assert field in response.json() and text in " ".join(response.json()[field])
    assert not Annotation.objects.exists() and not AuditEvent.objects.filter(action="submit").exists()


def test_extra_top_level_fields_rejected(team, api_as):
    a = first_assignment(team["ann"])
    response = save(api_as(team["ann"]), a.pk, submit=True, interpreter="bob")
    assert response.status_code == 400 and "interpreter" in response.json()


def test_draft_may_be_incomplete_but_submission_must_sum_to_1000(team, api_as):
    client, a = api_as(team["ann"]), first_assignment(team["ann"])
    draft = save(client, a.pk, split=split(lcz_6=300))
    assert draft.status_code == 200 and draft.json()["version"] == 1 and not draft.json()["submitted"]
    assert Assignment.objects.get(pk=a.pk).status == "draft"
    refused = save(client, a.pk, version=1, split=split(lcz_6=950), submit=True)
    assert refused.status_code == 400 and "short by 50" in refused.json()["split"][0]
    ok = save(client, a.pk, version=1, split=split(lcz_6=950, lcz_d=50), submit=True,
              confidence=4, flags=["cloud_shadow"], comment="haze in the north")
    assert ok.status_code == 200 and ok.json()["submitted"] and ok.json()["version"] == 2
    stored = Annotation.objects.get(assignment=a)
    assert stored.permille[KEYS.index("lcz_6")] == 950 and sum(stored.permille) == 1000
    assert stored.flags == ["cloud_shadow"] and stored.confidence == 4


# --- no lost work ---------------------------------------------------------------------------

def test_retried_save_is_applied_once(team, api_as):
    client, a = api_as(team["ann"]), first_assignment(team["ann"])
    rid = uuid.uuid4()
    first = save(client, a.pk, request_id=rid, submit=True)
    again = save(client, a.pk, request_id=rid, submit=True)
    assert first.status_code == again.status_code == 200
    assert again.json()["replayed"] is True and again.json()["version"] == first.json()["version"] == 1
    assert AuditEvent.objects.filter(request_id=rid).count() == 1
    assert Annotation.objects.filter(assignment=a).count() == 1


def test_stale_write_gets_409_with_the_current_split(team, api_as):
    client, a = api_as(team["ann"]), first_assignment(team["ann"])
    assert save(client, a.pk, version=0, split=split(lcz_6=1000)).status_code == 200
    stale = save(client, a.pk, version=0, split=split(lcz_b=1000))  # another tab, opened before
    assert stale.status_code == 409
    assert stale.json()["current"]["split"]["lcz_6"] == 1000 and stale.json()["current"]["version"] == 1
    assert Annotation.objects.get(assignment=a).permille[KEYS.index("lcz_6")] == 1000


def test_every_change_is_in_the_audit_history_for_admins(team, api_as):
    client, a = api_as(team["ann"]), first_assignment(team["ann"])
    save(client, a.pk, split=split(lcz_6=300))
    save(client, a.pk, version=1, split=split(lcz_6=700, lcz_b=300), submit=True)
    history = api_as(team["adm"]).get(f"/api/blocks/{a.block_id}/history/")
    assert history.status_code == 200
    events = [e for e in history.json() if e["action"] in ("save_draft", "submit")]
    assert [e["action"] for e in events] == ["save_draft", "submit"]
    assert events[0]["before"] is None and events[0]["after"]["permille"][KEYS.index("lcz_6")] == 300
    assert events[1]["before"]["permille"][KEYS.index("lcz_6")] == 300
    assert events[1]["after"]["permille"][KEYS.index("lcz_6")] == 700 and events[1]["actor"] == "ann"
    assert api_as(team["ann"]).get(f"/api/blocks/{a.block_id}/history/").status_code == 403
    assert api_as(team["rev"]).get(f"/api/blocks/{a.block_id}/history/").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_of_one_save_create_one_annotation(team):
    """Eight threads send the same request at once (a flaky network's retries): applied once."""
    from annotator import services

    a = first_assignment(team["ann"])
    rid, results, errors = uuid.uuid4(), [], []
    barrier = threading.Barrier(8)

    def worker():
        try:
            barrier.wait()
            results.append(services.save_annotation(a, team["ann"], request_id=rid, version=0,
                                                    split=split(lcz_6=1000), submit=True))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    assert sum(not r.replayed for r in results) == 1
    assert AuditEvent.objects.filter(request_id=rid).count() == 1
    assert Annotation.objects.get(assignment=a).version == 1


# --- blind labelling ------------------------------------------------------------------------

def _all_get_responses(client, campaign_id, block_ids, assignment_ids) -> str:
    urls = ["/api/campaigns/", f"/api/campaigns/{campaign_id}/", f"/api/campaigns/{campaign_id}/blocks/",
            f"/api/campaigns/{campaign_id}/blocks/?bbox=-180,-90,180,90&zoom=16",
            f"/api/campaigns/{campaign_id}/progress/", f"/api/campaigns/{campaign_id}/next/",
            "/api/classes/", "/", f"/campaigns/{campaign_id}/"]
    urls += [f"/api/assignments/{i}/" for i in assignment_ids]
    urls += [f"/api/blocks/{b}/history/" for b in block_ids]
    return "\n".join(client.get(u).content.decode() for u in urls)


def test_no_endpoint_reveals_another_interpreters_split(team, campaign, api_as, client):
    ann_assignment = first_assignment(team["ann"])
    block = ann_assignment.block
    secret = split(lcz_7=777, lcz_f=223)
    r = save(api_as(team["ann"]), ann_assignment.pk, split=secret, submit=True, comment="SECRET-NOTE-ann")
    assert r.status_code == 200
    bob_assignment = Assignment.objects.filter(interpreter=team["bob"], block=block).first()
    other_block_of_ann = Assignment.objects.filter(interpreter=team["ann"]).exclude(pk=ann_assignment.pk).first()
    everything = list(Assignment.objects.values_list("id", flat=True))
    blocks = list(StreetBlock.objects.values_list("id", flat=True))

    client.force_login(team["bob"])  # pages too, with a session
    bob = api_as(team["bob"])
    for text in (_all_get_responses(bob, campaign.pk, blocks, everything),
                 _all_get_responses(client, campaign.pk, blocks, everything)):
        compact = text.replace(" ", "")
        assert '"lcz_7":777' not in compact and '"lcz_f":223' not in compact and "permille" not in compact
        assert "SECRET-NOTE-ann" not in text
    # ann's assignment does not exist for bob: reading or writing it is a 404, the same as a made-up id
    assert bob.get(f"/api/assignments/{ann_assignment.pk}/").status_code == 404
    assert bob.get("/api/assignments/999999/").status_code == 404
    w = save(bob, ann_assignment.pk, split=split(lcz_a=1000), submit=True)
    assert w.status_code == 404 and "lcz_7" not in w.content.decode()
    assert save(bob, other_block_of_ann.pk, split=split(lcz_a=1000)).status_code == 404
    # bob's own assignment of the same block starts empty, whatever ann did
    if bob_assignment is not None:
        mine = bob.get(f"/api/assignments/{bob_assignment.pk}/").json()
        assert mine["annotation"] is None
    # bob's progress counts only bob's work
    assert bob.get(f"/api/campaigns/{campaign.pk}/progress/").json()["submitted"] == 0


def test_block_layer_shows_only_my_status(team, campaign, api_as):
    ann_assignment = first_assignment(team["ann"])
    save(api_as(team["ann"]), ann_assignment.pk, submit=True)
    features = api_as(team["bob"]).get(f"/api/campaigns/{campaign.pk}/blocks/").json()["features"]
    statuses = {f["id"]: f["properties"]["status"] for f in features}
    assert "submitted" not in statuses.values()  # bob submitted nothing
    mine = {f["id"]: f["properties"]["status"] for f in api_as(team["ann"]).get(
        f"/api/campaigns/{campaign.pk}/blocks/").json()["features"]}
    assert mine[ann_assignment.block_id] == "submitted"


def test_block_completes_when_all_three_submit(team, api_as):
    block = first_assignment(team["ann"]).block
    for a in Assignment.objects.filter(block=block):
        user = a.interpreter
        assert save(api_as(user), a.pk, split=split(lcz_6=600, lcz_b=400), submit=True).status_code == 200
    block.refresh_from_db()
    assert block.status == StreetBlock.Status.COMPLETE
    a = Assignment.objects.filter(block=block).first()
    late = save(api_as(a.interpreter), a.pk, version=1, split=split(lcz_6=1000), submit=True)
    assert late.status_code == 400 and "in review" in late.json()["split"][0]


# --- navigation -----------------------------------------------------------------------------

def test_next_goes_through_the_queue_drafts_in_their_place(team, campaign, api_as):
    client = api_as(team["ann"])
    mine = list(Assignment.objects.filter(interpreter=team["ann"]).order_by("block_id"))
    assert client.get(f"/api/campaigns/{campaign.pk}/next/").json()["id"] == mine[0].pk
    save(client, mine[1].pk, split=split(lcz_6=100))  # a draft: no jump ahead of the queue
    assert client.get(f"/api/campaigns/{campaign.pk}/next/").json()["id"] == mine[0].pk
    assert client.get(f"/api/campaigns/{campaign.pk}/next/?after={mine[0].block_id}").json()["id"] == mine[1].pk
    save(client, mine[1].pk, version=1, submit=True)
    nxt = client.get(f"/api/campaigns/{campaign.pk}/next/?after={mine[1].block_id}").json()
    assert nxt["id"] == mine[2].pk and nxt["block"]["geometry"]["type"] == "Polygon"
    for a in mine:
        if Assignment.objects.get(pk=a.pk).status != "submitted":
            save(client, a.pk, version=Annotation.objects.filter(assignment=a).count(), submit=True)
    assert client.get(f"/api/campaigns/{campaign.pk}/next/").status_code == 204
    assert client.get(f"/api/campaigns/{campaign.pk}/progress/").json() == {
        "assigned": 3, "submitted": 3, "skipped": 0, "draft": 0, "todo": 0}


def test_next_never_hands_back_the_block_just_done(team, campaign, api_as):
    client = api_as(team["ann"])
    mine = list(Assignment.objects.filter(interpreter=team["ann"]).order_by("block_id"))
    save(client, mine[0].pk, split=split(lcz_6=100))  # drafts on the first two blocks
    save(client, mine[1].pk, split=split(lcz_6=100))
    assert client.get(f"/api/campaigns/{campaign.pk}/next/?after={mine[0].block_id}").json()["id"] == mine[1].pk
    # forward to the block to do, not back to the other draft (skipped blocks come after the rest)
    assert client.get(f"/api/campaigns/{campaign.pk}/next/?after={mine[1].block_id}").json()["id"] == mine[2].pk
    assert client.get(f"/api/campaigns/{campaign.pk}/next/?after={mine[2].block_id}").json()["id"] == mine[0].pk


def test_submitted_split_cannot_go_back_to_a_draft(team, api_as):
    client, a = api_as(team["ann"]), first_assignment(team["ann"])
    assert save(client, a.pk, submit=True).status_code == 200
    back = save(client, a.pk, version=1, split=split(lcz_6=300), submit=False)
    assert back.status_code == 400 and "already submitted" in back.json()["submit"][0]
    assert sum(Annotation.objects.get(assignment=a).permille) == 1000


def test_permissions(team, campaign, api_as):
    anon = api_as(None)
    for url in ("/api/campaigns/", f"/api/campaigns/{campaign.pk}/blocks/", "/api/classes/"):
        assert anon.get(url).status_code == 403
    assert save(anon, first_assignment(team["ann"]).pk).status_code == 403
    # a user who is no member of the campaign does not see it
    from annotator import services

    outsider, _ = services.ensure_user("eve", "pw-eve-12345", role="interpreter")
    assert api_as(outsider).get(f"/api/campaigns/{campaign.pk}/").status_code == 404
    assert api_as(outsider).get("/api/campaigns/").json() == []


def test_openapi_schema_documents_the_save(team, api_as):
    schema = api_as(team["ann"]).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    op = schema["paths"]["/api/assignments/{assignment_id}/annotation/"]["put"]
    assert {"200", "400", "409"} <= set(op["responses"])
