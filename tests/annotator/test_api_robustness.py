"""Hostile and odd input answers a clear 4xx, never a 500; the API docs are self-hosted and say so.

Deeply nested JSON, NaN/Infinity and out-of-range bounding boxes, integers beyond 64 bits in query
parameters and path ids; the Swagger page from our own static files; the OpenAPI schema documents
the 4xx answers and the real shapes of the responses.
"""
from __future__ import annotations

import json
import re
import uuid

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from annotator.models import StreetBlock
from tests.annotator.helpers import first_assignment, save, split, submit_block

pytestmark = pytest.mark.django_db

DEEP = 10_000
HUGE = "99999999999999999999999"  # > 2**64


def deep_list(depth: int = DEEP) -> str:
    return "[" * depth + "]" * depth


def deep_object(depth: int = DEEP) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.fixture
def disputed_block(team, api_as):
    """A released (disputed) block: three interpreters who disagree completely."""
    block = StreetBlock.objects.order_by("id").first()
    submit_block(block, [split(lcz_6=1000), split(lcz_8=1000), split(lcz_e=1000)], client_for=api_as)
    block.refresh_from_db()
    assert block.status == StreetBlock.Status.DISPUTED
    return block


# --- item 9: deeply nested / oversized JSON ---------------------------------------------------

@pytest.mark.parametrize("body", [
    pytest.param(lambda: deep_list(), id="whole-body-list"),
    pytest.param(lambda: deep_object(), id="whole-body-object"),
    pytest.param(lambda: '{"request_id":"%s","version":0,"submit":false,"split":%s}' % (uuid.uuid4(), deep_list()),
                 id="split-nested"),
    pytest.param(lambda: '{"request_id":"%s","version":0,"submit":false,"split":{},"flags":%s}'
                 % (uuid.uuid4(), deep_list(60)), id="moderately-nested"),
])
def test_deeply_nested_json_on_save_is_a_400(team, api_as, body):
    a = first_assignment(team["ann"])
    r = api_as(team["ann"]).put(f"/api/assignments/{a.pk}/annotation/", data=body(),
                                content_type="application/json")
    assert r.status_code == 400, r.content[:300]
    assert "detail" in r.json()


def test_deeply_nested_json_on_adjudication_is_a_400(team, api_as, disputed_block):
    reviewer = api_as(team["rev"])
    for body in (deep_list(), '{"reason":"x","split":%s}' % deep_object()):
        r = reviewer.post(f"/api/blocks/{disputed_block.pk}/review/", data=body, content_type="application/json")
        assert r.status_code == 400, r.content[:300]
        assert "detail" in r.json()


def test_oversized_json_body_is_a_400(team, api_as):
    a = first_assignment(team["ann"])
    body = json.dumps({"request_id": str(uuid.uuid4()), "version": 0, "split": split(lcz_6=1000),
                       "comment": "x" * 3_000_000})
    r = api_as(team["ann"]).put(f"/api/assignments/{a.pk}/annotation/", data=body, content_type="application/json")
    assert r.status_code == 400 and "too large" in r.json()["detail"]


@pytest.mark.parametrize("where", ["split-key", "top-level-key", "comment", "flag"])
def test_lone_surrogate_escapes_are_a_400(team, api_as, where):
    """Found while fuzzing by hand: '\\udfff' as a split key parsed into a str that the error message
    echoing it could not encode (UnicodeEncodeError, a 500)."""
    a = first_assignment(team["ann"])
    body = {"request_id": str(uuid.uuid4()), "version": 0, "split": split(lcz_6=300)}
    if where == "split-key":
        body["split"]["SURROGATE"] = 1
    elif where == "top-level-key":
        body["SURROGATE"] = 1
    elif where == "comment":
        body["comment"] = "SURROGATE"
    else:
        body["flags"] = ["SURROGATE"]
    raw = json.dumps(body).replace("SURROGATE", "\\udfff")
    r = api_as(team["ann"]).put(f"/api/assignments/{a.pk}/annotation/", data=raw, content_type="application/json")
    assert r.status_code == 400, r.content[:300]
    r.content.decode("utf-8")


def test_surrogate_pairs_are_fine(team, api_as):
    a = first_assignment(team["ann"])
    raw = json.dumps({"request_id": str(uuid.uuid4()), "version": 0, "split": split(lcz_6=300), "comment": "🌳"})
    assert "\\ud83c\\udf33" in raw
    r = api_as(team["ann"]).put(f"/api/assignments/{a.pk}/annotation/", data=raw, content_type="application/json")
    assert r.status_code == 200 and r.json()["comment"] == "🌳"


def test_nan_still_parses_so_the_split_validator_names_the_field(team, api_as):
    a = first_assignment(team["ann"])
    body = '{"request_id":"%s","version":0,"submit":true,"split":%s}' % (
        uuid.uuid4(), json.dumps(split(lcz_6=float("nan"))))
    r = api_as(team["ann"]).put(f"/api/assignments/{a.pk}/annotation/", data=body, content_type="application/json")
    assert r.status_code == 400 and "lcz_6" in r.json()


def test_malformed_json_is_a_400(team, api_as):
    a = first_assignment(team["ann"])
    r = api_as(team["ann"]).put(f"/api/assignments/{a.pk}/annotation/", data='{"split": ',
                                content_type="application/json")
    assert r.status_code == 400 and "detail" in r.json()


def test_stale_version_before_the_first_save_is_a_409_not_a_500(team, api_as):
    """Found by the fuzzer: a version > 0 for a split never saved made StaleVersion(None) crash."""
    a = first_assignment(team["ann"])
    r = save(api_as(team["ann"]), a.pk, version=5)
    assert r.status_code == 409, r.content[:300]
    assert r.json()["current"] is None and "detail" in r.json()


# --- item 9: bbox ------------------------------------------------------------------------------

BAD_BBOXES = ["nan,0,1,1", "0,nan,1,1", "0,0,inf,1", "-inf,0,1,1", "0,0,1,Infinity", "-181,0,1,1",
              "0,0,181,1", "0,-91,1,1", "0,0,1,90.5", "1e400,0,1,1", "0,0,1", "a,b,c,d", "0,0,1,1,1"]


@pytest.mark.parametrize("bbox", BAD_BBOXES)
def test_bad_bbox_on_blocks_is_a_400_naming_bbox(team, api_as, campaign, bbox):
    r = api_as(team["ann"]).get(f"/api/campaigns/{campaign.pk}/blocks/", {"bbox": bbox})
    assert r.status_code == 400, r.content[:300]
    assert "bbox" in r.json()


@pytest.mark.parametrize("bbox", ["nan,0,1,1", "0,0,inf,1", "-200,0,1,1", "0,0,1,95"])
def test_bad_bbox_on_fractions_is_a_400(team, api_as, campaign, bbox):
    r = api_as(team["rev"]).get(f"/api/campaigns/{campaign.pk}/fractions/", {"bbox": bbox})
    assert r.status_code == 400 and "bbox" in r.json()


def test_whole_world_bbox_is_fine(team, api_as, campaign):
    r = api_as(team["ann"]).get(f"/api/campaigns/{campaign.pk}/blocks/", {"bbox": "-180,-90,180,90"})
    assert r.status_code == 200 and len(r.json()["features"]) == 4


# --- item 9: integers beyond 64 bits -------------------------------------------------------------

@pytest.mark.parametrize("value", [HUGE, "-" + HUGE, str(2**63), "1" * 5000, "+-5", "٣", "1_0", "1.0", "0x1"])
def test_huge_after_query_parameter_is_a_400(team, api_as, campaign, value):
    r = api_as(team["ann"]).get(f"/api/campaigns/{campaign.pk}/next/", {"after": value})
    assert r.status_code == 400, r.content[:300]
    assert "after" in r.json()


def test_largest_bigint_after_is_fine(team, api_as, campaign):
    r = api_as(team["ann"]).get(f"/api/campaigns/{campaign.pk}/next/", {"after": str(2**63 - 1)})
    assert r.status_code == 200


@pytest.mark.parametrize("url, who", [
    ("/api/campaigns/{n}/", "ann"),
    ("/api/campaigns/{n}/blocks/", "ann"),
    ("/api/campaigns/{n}/progress/", "ann"),
    ("/api/campaigns/{n}/next/", "ann"),
    ("/api/assignments/{n}/", "ann"),
    ("/api/campaigns/{n}/fractions/", "rev"),
    ("/api/campaigns/{n}/review/", "rev"),
    ("/api/blocks/{n}/review/", "rev"),
    ("/api/blocks/{n}/history/", "adm"),
    ("/tiles/{n}/tilejson.json", "ann"),
    ("/tiles/{n}/1/0/0.png", "ann"),
    ("/tiles/1/{n}/0/0.png", "ann"),
    ("/campaigns/{n}/", "ann"),
    ("/campaigns/{n}/work/", "ann"),
    ("/dashboard/campaigns/{n}/", "rev"),
    ("/dashboard/campaigns/{n}/review/", "rev"),
    ("/dashboard/campaigns/{n}/agreement.geojson", "rev"),
    ("/dashboard/campaigns/{n}/plots/tv.png", "rev"),
    ("/dashboard/review/{n}/", "rev"),
])
def test_huge_path_ids_are_a_404_not_a_500(team, url, who):
    client = Client(raise_request_exception=False)
    client.force_login(team[who])
    for n in (HUGE, str(2**63)):
        r = client.get(url.format(n=n))
        assert r.status_code == 404, (url, n, r.status_code)


def test_huge_path_id_on_save_is_a_404(team, api_as):
    r = api_as(team["ann"]).put(f"/api/assignments/{HUGE}/annotation/", data="{}", content_type="application/json")
    assert r.status_code == 404


def test_largest_bigint_path_id_still_routes(team, api_as):
    r = api_as(team["ann"]).get(f"/api/assignments/{2**63 - 1}/")
    assert r.status_code == 404 and "detail" in r.json()


# --- item 8: the docs are self-hosted; the schema documents 4xx and real shapes ----------------

def test_swagger_ui_is_served_from_our_static_files(team, api_as):
    html = api_as(team["ann"]).get("/api/docs/").content.decode()
    assert "swagger-ui-bundle.js" in html and "/static/drf_spectacular_sidecar/" in html
    for cdn in ("cdn.jsdelivr", "unpkg.com", "cdnjs", "@latest", "https://"):
        assert cdn not in html, cdn
    assets = re.findall(r'(?:src|href)="/static/([^"]+)"', html)
    assert len(assets) >= 3
    for asset in assets:  # each one is a file in our static files
        assert finders.find(asset), asset


@pytest.fixture
def schema(team, api_as):
    r = api_as(team["ann"]).get("/api/schema/", {"format": "json"})
    assert r.status_code == 200
    return json.loads(r.content)


def _responses(schema, path, method):
    return schema["paths"][path][method]["responses"]


def _resolve(schema, node):
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = schema["components"]["schemas"][name]
    return node


def test_schema_documents_4xx_responses(schema):
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            if method not in ("get", "put", "post", "patch", "delete"):
                continue
            codes = set(op["responses"])
            if path.startswith("/api/schema") or path.startswith("/api/docs"):
                continue
            assert "403" in codes, (method, path, codes)
            if "{" in path:
                assert "404" in codes, (method, path, codes)
    save_codes = set(_responses(schema, "/api/assignments/{assignment_id}/annotation/", "put"))
    assert {"200", "400", "403", "404", "409"} <= save_codes
    adjudicate = set(_responses(schema, "/api/blocks/{block_id}/review/", "post"))
    assert {"200", "400", "403", "404"} <= adjudicate
    assert "400" in set(_responses(schema, "/api/campaigns/{campaign_id}/blocks/", "get"))
    assert "400" in set(_responses(schema, "/api/campaigns/{campaign_id}/next/", "get"))
    # the 4xx bodies have a shape: {"detail": "..."} at least
    err = _resolve(schema, _responses(schema, "/api/assignments/{assignment_id}/", "get")["404"]
                   ["content"]["application/json"]["schema"])
    assert "detail" in err["properties"]


def test_schema_says_ids_are_64_bit_and_bbox_is_four_numbers(schema):
    for path, ops in schema["paths"].items():
        for op in ops.values():
            for p in op.get("parameters", []):
                if p["in"] == "path":
                    assert p["schema"] == {"type": "integer", "format": "int64", "minimum": 0,
                                           "maximum": 2**63 - 1}, (path, p)
    bbox = next(p for p in schema["paths"]["/api/campaigns/{campaign_id}/blocks/"]["get"]["parameters"]
                if p["name"] == "bbox")
    assert re.fullmatch(bbox["schema"]["pattern"].strip("^$"), "-180,-90,180.0,9e1")
    assert not re.fullmatch(bbox["schema"]["pattern"].strip("^$"), "nan,0,1,1")
    save_body = schema["components"]["schemas"]["SaveAnnotation"]
    assert save_body["additionalProperties"] is False  # unknown fields are refused


def test_schema_has_the_real_response_types(schema):
    queue = _responses(schema, "/api/campaigns/{campaign_id}/review/", "get")["200"]["content"]
    body = queue["application/json"]["schema"]
    assert body["type"] == "array"
    row = _resolve(schema, body["items"])
    assert {"id", "block_key", "status", "agreement_tv", "dominant_agrees"} <= set(row["properties"])
    for path in ("/api/campaigns/{campaign_id}/fractions/", "/api/campaigns/{campaign_id}/blocks/"):
        geo = _resolve(schema, _responses(schema, path, "get")["200"]["content"]["application/geo+json"]["schema"])
        assert geo["type"] == "object" and "features" in geo["properties"], path
    nxt = _responses(schema, "/api/campaigns/{campaign_id}/next/", "get")
    assert "204" in nxt and "content" not in nxt["204"]


def test_review_queue_matches_its_schema(team, api_as, campaign, disputed_block):
    rows = api_as(team["rev"]).get(f"/api/campaigns/{campaign.pk}/review/").json()
    assert isinstance(rows, list) and rows[0]["id"] == disputed_block.pk and rows[0]["status"] == "disputed"
