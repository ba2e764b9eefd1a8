"""Schemathesis over the whole OpenAPI schema, against the real app on PostGIS.

Every operation of /api/schema/ (but the schema itself) gets generated requests, positive (valid by
the schema) and, where it has a body or query parameters, negative ones, each sent as an anonymous
visitor, an interpreter, a reviewer or an admin (a real session cookie, and the CSRF cookie and
header, so that PUT/POST reach the views). Path ids are often swapped for real ones and bodies for
valid splits, so the requests reach more than 404s and 400s. Every answer must be no 5xx, a status
code, content type and body the schema documents.

Bounded and reproducible: a fixed number of examples, derandomized, no example database, no
shrinking (a failure is reported as found; rerunning finds it again).
"""
from __future__ import annotations

import os
import time
import uuid
from collections import Counter

import hypothesis
import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from annotator import services
from annotator.models import Assignment, StreetBlock
from tests.annotator.helpers import split, submit_block

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# per operation and generation mode: ~3000 requests, about 30 s here. FUZZ_MAX_EXAMPLES and
# FUZZ_SEED (a seed instead of derandomized generation) explore further by hand.
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "100"))
SEED = os.environ.get("FUZZ_SEED")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
VALID_SPLITS = [split(lcz_6=1000), split(lcz_6=600, lcz_b=400), split(lcz_2=250, lcz_5=250, lcz_d=500),
                split(lcz_6=300)]  # the last: a draft (not 1000 in all)


def _session(user) -> dict:
    """Cookies and headers of a signed-in browser: session, CSRF cookie and the X-CSRFToken header."""
    if user is None:
        return {"cookies": {}, "headers": {}}
    client = Client()
    client.force_login(user)
    token = _get_new_csrf_string()
    return {"cookies": {"sessionid": client.cookies["sessionid"].value, "csrftoken": token},
            "headers": {"X-CSRFToken": token}}


@pytest.fixture
def world(team, campaign, api_as):
    """The test campaign (4 blocks, 3 interpreters each): one disputed block, one complete, the rest open;
    a second campaign nobody here works on."""
    blocks = list(StreetBlock.objects.filter(campaign=campaign).order_by("id"))
    for block, shares in ((blocks[0], [split(lcz_6=1000), split(lcz_8=1000), split(lcz_e=1000)]),
                          (blocks[1], [split(lcz_6=600, lcz_b=400)] * 3)):
        submit_block(block, shares, client_for=api_as)
    other, _ = services.create_campaign("Nobody's campaign", city="Turku", imagery_licence="CC0")
    ids = {
        "campaign_id": [campaign.pk, other.pk],
        # ann's: the open ones twice (saves that can succeed), the submitted ones; and someone else's
        "assignment_id": 2 * list(Assignment.objects.filter(interpreter=team["ann"], status="todo")
                                  .values_list("id", flat=True))
        + list(Assignment.objects.filter(interpreter=team["ann"], status="submitted").values_list("id", flat=True))
        + [Assignment.objects.exclude(interpreter=team["ann"]).values_list("id", flat=True).first()],
        "block_id": [b.pk for b in blocks],
    }
    who = {"anonymous": _session(None), "ann": _session(team["ann"]), "rev": _session(team["rev"]),
           "adm": _session(team["adm"])}
    return ids, who


def test_fuzz_the_whole_api(world):
    ids, identities = world
    app = get_wsgi_application()
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", app)
    seen: Counter = Counter()  # (operation, identity, status)
    failures: list[str] = []
    started = time.monotonic()

    def fuzz(operation, mode):
        @hypothesis.seed(int(SEED) if SEED else 0)
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode), data=st.data())
        @hypothesis.settings(max_examples=MAX_EXAMPLES, derandomize=not SEED, database=None, deadline=None,
                             phases=[Phase.explicit, Phase.generate], print_blob=False,
                             suppress_health_check=list(HealthCheck))
        def run(case, data):
            for param in list(case.path_parameters or {}):
                # negative cases always get real-looking ids: a non-integer path is Django's HTML 404
                if param in ids and (mode == GenerationMode.NEGATIVE or data.draw(st.integers(0, 3), label="real id")):
                    case.path_parameters[param] = data.draw(st.sampled_from(ids[param]), label=param)
            if (mode == GenerationMode.POSITIVE and isinstance(case.body, dict) and "split" in case.body
                    and data.draw(st.booleans(), label="valid split")):
                case.body["split"] = data.draw(st.sampled_from(VALID_SPLITS), label="split")
                case.body.pop("skip_reason", None)  # a split with a can't-label reason is refused (a 400)
                # a valid save of an open assignment: a fresh request and the first version (later
                # ones of the same assignment then meet a 409, stale versions come from the rest)
                if "request_id" in case.body:
                    case.body["request_id"] = str(uuid.uuid4())
                if "version" in case.body:
                    case.body["version"] = 0
                if "started_from" in case.body or "reason" in case.body:  # an adjudication
                    case.body["started_from"] = data.draw(st.sampled_from(["consensus", "scratch"]))
            # writes go out as everyone (the first one to succeed changes what the others get); reads as one
            names = sorted(identities) if operation.method.upper() in ("PUT", "POST") else [
                data.draw(st.sampled_from(sorted(identities)), label="identity")]
            generated_cookies = dict(case.cookies or {})  # e.g. a made-up sessionid (the schema's cookieAuth)
            for name in names:
                session = identities[name]
                case.cookies = dict(generated_cookies)  # case.call() merges the cookies it sends into the case
                response = case.call(cookies=session["cookies"], headers=session["headers"])
                seen[(operation.label, name, response.status_code)] += 1
                try:
                    case.validate_response(response, checks=CHECKS, headers=session["headers"])
                except (AssertionError, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup
                    raise AssertionError(f"as {name}: {exc}") from None

        try:
            run()
        except Exception as exc:  # the first failure of this operation (also hypothesis' FlakyFailure)
            failures.append(f"{operation.label} [{mode.value}]: {exc}")

    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/api/schema/":
            continue
        fuzz(operation, GenerationMode.POSITIVE)
        if operation.body or operation.query:
            fuzz(operation, GenerationMode.NEGATIVE)

    elapsed = time.monotonic() - started
    print(f"fuzzed {sum(seen.values())} requests in {elapsed:.1f} s")
    assert not failures, "\n\n".join(failures)

    def statuses(label, who):
        return {status for (op, name, status), n in seen.items() if op == label and name == who}

    save_op = "PUT /api/assignments/{assignment_id}/annotation/"
    adjudicate_op = "POST /api/blocks/{block_id}/review/"
    # the writes reach the views past authentication and CSRF: validated, saved, refused
    assert {200, 400} <= statuses(save_op, "ann"), statuses(save_op, "ann")
    assert statuses(adjudicate_op, "rev") & {200, 400}, statuses(adjudicate_op, "rev")
    assert statuses(save_op, "anonymous") == {403}
    assert 200 in statuses("GET /api/campaigns/{campaign_id}/review/", "rev")
    assert 200 in statuses("GET /api/campaigns/{campaign_id}/blocks/", "ann")
