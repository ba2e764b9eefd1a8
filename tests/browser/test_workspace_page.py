"""The workspace page itself (Django test client, no browser): who may open it and what it carries."""
from __future__ import annotations

import json
import re
import uuid

import pytest
from django.contrib.auth.models import User

from annotator import services
from annotator.api.serializers import classes_payload
from annotator.models import Annotation, Assignment
from lcz_model.classes import KEYS

pytestmark = pytest.mark.django_db


def config_of(response) -> dict:
    m = re.search(rb'<script id="ws-config" type="application/json">(.*?)</script>', response.content, re.S)
    assert m, "the page carries its configuration as JSON"
    return json.loads(m.group(1))


def test_workspace_needs_login(client, campaign):
    response = client.get(f"/campaigns/{campaign.pk}/work/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_workspace_only_for_the_campaigns_people(client, team, campaign):
    client.force_login(User.objects.create_user("outsider", password="pw-outsider-12345"))
    assert client.get(f"/campaigns/{campaign.pk}/work/").status_code == 404
    home = client.get("/")
    assert campaign.name.encode() not in home.content  # outsiders do not even see it listed
    client.force_login(team["adm"])                  # admins see every campaign
    assert client.get(f"/campaigns/{campaign.pk}/work/").status_code == 200


def test_workspace_page_carries_classes_and_urls_but_no_split(client, team, campaign):
    ann = team["ann"]
    a = Assignment.objects.filter(interpreter=ann).order_by("block_id").first()
    secret = dict.fromkeys(KEYS, 0) | {"lcz_3": 437, "lcz_d": 563}
    services.save_annotation(a, ann, request_id=uuid.uuid4(), version=0, split=secret, comment="ann-private",
                             submit=True)

    client.force_login(team["bob"])
    home = client.get("/")
    assert f'href="/campaigns/{campaign.pk}/work/"'.encode() in home.content
    response = client.get(f"/campaigns/{campaign.pk}/work/")
    assert response.status_code == 200
    assert "csrftoken" in response.cookies
    config = config_of(response)
    assert config["classes"] == json.loads(json.dumps(classes_payload()))   # the API's list, in its order
    assert [f["key"] for f in config["flags"]] == [v for v, _ in Annotation.Flag.choices]
    assert config["campaign"]["id"] == campaign.pk and len(config["campaign"]["bounds"]) == 4
    assert config["api"]["blocks"] == f"/api/campaigns/{campaign.pk}/blocks/"
    page = response.content.replace(b" ", b"")
    assert b"ann-private" not in page and b'"lcz_3":437' not in page
    for static in (b"leaflet/leaflet.js", b"frontend/workspace.js", b"frontend/workspace.css"):
        assert static in response.content

