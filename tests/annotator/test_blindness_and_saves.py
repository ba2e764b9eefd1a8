"""Blindness and no silently dropped saves (issue #10, items 1-5), on PostGIS.

Predictions are stored directly (no model needed): what is tested is who may see them."""
from __future__ import annotations

import json
import uuid

import pytest
from django.core.management import call_command

from annotator import assist, services
from annotator.models import Adjudication, Annotation, Assignment, AuditEvent, Membership, Prediction, StreetBlock
from tests.annotator.helpers import put_annotation, save_body, split, submit_block

pytestmark = pytest.mark.django_db
MODEL = "test-model-v1"


@pytest.fixture
def predictions(team, campaign):
    """A model's split of every block, made the campaign's active model."""
    for i, block in enumerate(StreetBlock.objects.filter(campaign=campaign).order_by("id")):
        Prediction.objects.create(campaign=campaign, block=block, model_version=MODEL,
                                  permille=[1000 if k == i else 0 for k in range(17)],
                                  entropy=0.1 * i, bald=0.1 * (i + 1), margin=0.5)
    campaign.active_model_version = MODEL
    campaign.save(update_fields=["active_model_version"])
    return team


# --- 1. the active-learning queue never leaks the model's split into a blind round -----------

def test_queue_takes_only_blocks_whose_blind_round_is_complete(predictions, campaign):
    blocks = list(StreetBlock.objects.filter(campaign=campaign).order_by("id"))
    assert assist.queue_next_batch(campaign, k=4, round=2) == []  # every blind round still open
    # a disputed block: its blind round is complete, it has no final label yet
    submit_block(blocks[0], [split(lcz_6=1000), split(lcz_a=1000), split(lcz_g=1000)])
    assert StreetBlock.objects.get(pk=blocks[0].pk).status == "disputed"
    assert assist.queue_next_batch(campaign, k=4, round=3) == [blocks[0].pk]


def test_queued_open_blocks_go_only_to_interpreters_without_a_blind_assignment(predictions, campaign):
    campaign.queue_open_blocks = True
    queued = assist.queue_next_batch(campaign, k=4, round=2, per_block=3)
    assert len(queued) == 4
    for a in Assignment.objects.filter(round=2):
        blind = set(Assignment.objects.filter(block=a.block, round=1).values_list("interpreter_id", flat=True))
        assert a.interpreter_id not in blind
    assert Assignment.objects.filter(round=2).count() == 4  # one free interpreter per block, not three


def test_a_blind_round_cannot_be_turned_into_an_assisted_one(predictions, campaign):
    with pytest.raises(ValueError, match="blind"):
        assist.queue_next_batch(campaign, k=2, round=1)
    campaign.refresh_from_db()
    assert campaign.assisted_rounds == []


def test_no_suggestion_while_the_same_interpreter_labels_the_block_blind(predictions, campaign, api_as):
    ann = predictions["ann"]
    blind = Assignment.objects.filter(interpreter=ann, round=1).order_by("id").first()
    # an assisted assignment of the same block (e.g. made by hand or by an older queue)
    assisted = Assignment.objects.create(campaign=campaign, block=blind.block, interpreter=ann, round=2)
    campaign.assisted_rounds = [2]
    campaign.save(update_fields=["assisted_rounds"])
    body = api_as(ann).get(f"/api/assignments/{assisted.pk}/").json()
    assert body["suggestion"] is None
    services.save_annotation(blind, ann, request_id=uuid.uuid4(), version=0, split=split(lcz_6=1000), submit=True)
    body = api_as(ann).get(f"/api/assignments/{assisted.pk}/").json()
    assert body["suggestion"]["model_version"] == MODEL  # blind split given: the suggestion may show


def test_showing_a_suggestion_is_audited(predictions, campaign, api_as):
    campaign.queue_open_blocks = True
    assist.queue_next_batch(campaign, k=1, round=2)
    a = Assignment.objects.get(round=2)
    client = api_as(a.interpreter)
    assert client.get(f"/api/assignments/{a.pk}/").json()["suggestion"]["model_version"] == MODEL
    client.get(f"/api/assignments/{a.pk}/")
    events = AuditEvent.objects.filter(action="suggestion_shown", actor=a.interpreter, block=a.block)
    assert events.count() == 1 and events.get().after == {"assignment": a.pk, "model_version": MODEL}


def test_an_interpreter_who_also_reviews_sees_no_prediction_or_split_of_blocks_to_label(
        predictions, campaign, api_as):
    ann = predictions["ann"]
    services.add_member(campaign, ann, Membership.Role.REVIEWER)
    mine = set(Assignment.objects.filter(interpreter=ann, round=1).values_list("block_id", flat=True))
    client = api_as(ann)
    layer = client.get(f"/api/campaigns/{campaign.pk}/fractions/?source={MODEL}").json()
    shown = {f["id"] for f in layer["features"]}
    assert shown and not shown & mine
    client.get(f"/api/campaigns/{campaign.pk}/fractions/?source={MODEL}&bbox=-180,-90,180,90")  # a pan
    shown_events = AuditEvent.objects.filter(action="predictions_shown", actor=ann)
    assert shown_events.count() == 1 and shown_events.get().after == {"model_version": MODEL}  # once a day
    # a released block she still labels blind in another (blind) round: no review page, no splits
    block = StreetBlock.objects.get(pk=sorted(mine)[0])
    submit_block(block)
    Assignment.objects.create(campaign=campaign, block=block, interpreter=ann, round=3)
    assert client.get(f"/api/blocks/{block.pk}/review/").status_code == 404
    assert api_as(predictions["rev"]).get(f"/api/blocks/{block.pk}/review/").status_code == 200


# --- 2. the campaign overview shows interpreters only their own status ----------------------

def test_campaign_overview_shows_interpreters_only_their_own_status(team, campaign, client):
    ann, bob = team["ann"], team["bob"]
    bobs = Assignment.objects.filter(interpreter=bob).order_by("id").first()
    services.save_annotation(bobs, bob, request_id=uuid.uuid4(), version=0, split=split(lcz_6=1000), submit=True)
    client.force_login(ann)
    page = client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "in_progress" not in page  # bob's work on a block would show as the block's overall status
    statuses = {f["properties"]["status"] for f in _overview_features(page)}
    assert statuses <= {"todo", "unassigned"}
    client.force_login(team["rev"])
    assert "in_progress" in client.get(f"/campaigns/{campaign.pk}/").content.decode()


def _overview_features(page: str) -> list[dict]:
    start = page.index('id="blocks-data"')
    body = page[page.index(">", start) + 1:page.index("</script>", start)]
    return json.loads(body)["features"]


# --- 3. removing a member or deactivating a user revokes their open assignments --------------

def test_removed_interpreter_can_no_longer_save_and_keeps_what_was_submitted(team, campaign, api_as):
    ann = team["ann"]
    a1, a2, a3 = Assignment.objects.filter(interpreter=ann).order_by("id")[:3]
    services.save_annotation(a1, ann, request_id=uuid.uuid4(), version=0, split=split(lcz_6=1000), submit=True)
    services.save_annotation(a2, ann, request_id=uuid.uuid4(), version=0, split=split(lcz_6=500))
    call_command("remove_member", "ann", campaign=campaign.name, verbosity=0)
    r = put_annotation(api_as(ann), a3.pk, save_body())
    assert r.status_code in (403, 404), r.content
    with pytest.raises(services.Revoked):
        services.save_annotation(a2, ann, request_id=uuid.uuid4(), version=1, split=split(lcz_6=1000), submit=True)
    assert set(Assignment.objects.filter(interpreter=ann).values_list("status", flat=True)) == {"submitted", "revoked"}
    assert Annotation.objects.get(assignment=a1).submitted_at is not None  # kept
    event = AuditEvent.objects.get(action="revoke_assignments")
    assert sorted(event.after["assignments"]) == sorted([a2.pk, a3.pk, *Assignment.objects.filter(
        interpreter=ann, status="revoked").exclude(pk__in=[a2.pk, a3.pk]).values_list("pk", flat=True)])
    # the gaps are filled by another interpreter; ann never gets those blocks again
    revoked_blocks = set(Assignment.objects.filter(interpreter=ann, status="revoked").values_list("block_id", flat=True))
    services.add_member(campaign, ann, "interpreter")
    services.assign_blocks(campaign, per_block=3)
    for block in StreetBlock.objects.filter(campaign=campaign):
        assert Assignment.objects.filter(block=block, round=1).exclude(status="revoked").count() == 3
    assert not Assignment.objects.filter(interpreter=ann, block_id__in=revoked_blocks).exclude(status="revoked").exists()


def test_a_block_completes_without_the_revoked_interpreter(team, campaign):
    ann = team["ann"]
    block = Assignment.objects.filter(interpreter=ann).order_by("id").first().block
    services.remove_member(campaign, ann, "interpreter")
    services.assign_blocks(campaign, per_block=3)
    for a in Assignment.objects.filter(block=block, round=1).exclude(status="revoked"):
        services.save_annotation(a, a.interpreter, request_id=uuid.uuid4(), version=0, split=split(lcz_6=1000),
                                 submit=True)
    assert StreetBlock.objects.get(pk=block.pk).status == "complete"


def test_deactivated_user_is_revoked_wherever_deactivated(team, campaign):
    bob = team["bob"]
    bob.is_active = False
    bob.save()  # e.g. in the admin
    assert not Assignment.objects.filter(interpreter=bob, status__in=["todo", "draft"]).exists()
    a = Assignment.objects.filter(interpreter=bob).first()
    with pytest.raises(services.Revoked):
        services.save_annotation(a, bob, request_id=uuid.uuid4(), version=0, split=split(lcz_6=1000))


# --- 4. the idempotency key is bound to (assignment, body) ----------------------------------

def test_a_reused_request_id_with_another_body_is_refused(team, api_as):
    ann = team["ann"]
    a = Assignment.objects.filter(interpreter=ann).order_by("id").first()
    client = api_as(ann)
    body = save_body()
    assert put_annotation(client, a.pk, body).status_code == 200
    replay = put_annotation(client, a.pk, body)
    assert replay.status_code == 200 and replay.json()["replayed"] is True
    changed = body | {"split": split(lcz_6=100, lcz_b=900)}
    r = put_annotation(client, a.pk, changed)
    assert r.status_code == 422 and "request_id" in r.json()
    assert Annotation.objects.get(assignment=a).permille[5] == 600  # nothing changed


def test_a_reused_request_id_on_another_assignment_is_refused(team, api_as):
    ann = team["ann"]
    a, b = Assignment.objects.filter(interpreter=ann).order_by("id")[:2]
    client = api_as(ann)
    body = save_body()
    assert put_annotation(client, a.pk, body).status_code == 200
    r = put_annotation(client, b.pk, body)
    assert r.status_code == 422
    assert not Annotation.objects.filter(assignment=b).exists()


@pytest.mark.parametrize("request_id", [1, 0, 12345678901234567890, True, None, "1", "not-a-uuid"])
def test_the_request_id_must_be_a_uuid_string(team, api_as, request_id):
    ann = team["ann"]
    a = Assignment.objects.filter(interpreter=ann).order_by("id").first()
    r = put_annotation(api_as(ann), a.pk, save_body(request_id=request_id))
    assert r.status_code == 400 and "request_id" in r.json()


@pytest.mark.parametrize("flags", [["bad_imagery"] * 4, ["bad_imagery", "bad_imagery"], ["nope"], "bad_imagery",
                                   [{"a": 1}], ["bad_imagery"] * 10_000])
def test_flags_are_bounded_and_named(team, api_as, flags):
    ann = team["ann"]
    a = Assignment.objects.filter(interpreter=ann).order_by("id").first()
    r = put_annotation(api_as(ann), a.pk, save_body(flags=flags))
    assert r.status_code == 400 and "flags" in r.json()


def test_comment_must_be_a_string(team, api_as):
    ann = team["ann"]
    a = Assignment.objects.filter(interpreter=ann).order_by("id").first()
    r = put_annotation(api_as(ann), a.pk, save_body(comment=12345))
    assert r.status_code == 400 and "comment" in r.json()


# --- 5. adjudication input is as strict as the save ----------------------------------------

@pytest.fixture
def disputed(team, campaign):
    block = StreetBlock.objects.filter(campaign=campaign).order_by("id").first()
    submit_block(block, [split(lcz_6=1000), split(lcz_a=1000), split(lcz_g=1000)])
    block.refresh_from_db()
    assert block.status == "disputed"
    return block


def adjudicate(client, block, **kw):
    body = {"request_id": str(uuid.uuid4()), "split": split(lcz_6=1000), "reason": "the roofs are dense",
            "started_from": "consensus"} | kw
    return client.post(f"/api/blocks/{block.pk}/review/", data=json.dumps(body), content_type="application/json")


@pytest.mark.parametrize("bad", [
    {"unexpected": 1}, {"reason": ""}, {"reason": "   "}, {"reason": 42}, {"reason": None}, {"reason": ["x"]},
    {"started_from": "whatever"}, {"started_from": 7}, {"started_from": "999999"}, {"request_id": 1},
])
def test_adjudication_refuses_bad_input(team, disputed, api_as, bad):
    r = adjudicate(api_as(team["rev"]), disputed, **bad)
    assert r.status_code == 400, r.content
    assert not Adjudication.objects.exists()


def test_adjudication_accepts_a_submitted_assignment_as_its_start(team, disputed, api_as):
    start = str(Assignment.objects.filter(block=disputed, status="submitted").first().pk)
    r = adjudicate(api_as(team["rev"]), disputed, started_from=start)
    assert r.status_code == 200 and Adjudication.objects.get().started_from == start


def test_a_retried_adjudication_is_recorded_once(team, disputed, api_as):
    client = api_as(team["rev"])
    key = str(uuid.uuid4())
    assert adjudicate(client, disputed, request_id=key).status_code == 200
    assert adjudicate(client, disputed, request_id=key).status_code == 200
    assert Adjudication.objects.count() == 1
    assert AuditEvent.objects.filter(action="adjudicate").count() == 1
    r = adjudicate(client, disputed, request_id=key, reason="another reason")
    assert r.status_code == 422 and Adjudication.objects.count() == 1


def test_queue_never_takes_an_edge_block(predictions, campaign):
    blocks = list(StreetBlock.objects.filter(campaign=campaign).order_by("id"))
    submit_block(blocks[0], [split(lcz_6=1000), split(lcz_a=1000), split(lcz_g=1000)])  # disputed
    StreetBlock.objects.filter(pk=blocks[0].pk).update(edge=True)  # cut by the study area's boundary
    assert assist.queue_next_batch(campaign, k=4, round=2) == []



def test_a_revoked_assisted_assignment_leaves_a_gap_the_queue_fills(predictions, campaign):
    block = StreetBlock.objects.filter(campaign=campaign).order_by("id").first()
    submit_block(block, [split(lcz_6=1000), split(lcz_a=1000), split(lcz_g=1000)])  # disputed: blind round done
    [block_id] = assist.queue_next_batch(campaign, k=1, round=2)
    first = Assignment.objects.get(round=2)
    services.remove_member(campaign, first.interpreter, "interpreter")
    assert block_id in assist.queue_next_batch(campaign, k=4, round=2)  # queued again ...
    again = Assignment.objects.filter(round=2, block_id=block_id).exclude(status="revoked")
    assert again.count() == 1 and again.get().interpreter_id != first.interpreter_id  # ... to someone else
