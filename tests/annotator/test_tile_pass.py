"""The tile pass (annotator.tile_pass): block tile requests that hold one read no session or user
row and see exactly what the session would show them; a logout, an account change, another session
or a forged pass sends the request back to the session, which decides."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotator import selectors, tile_pass, vector_tiles
from annotator.models import Membership
from tests.annotator.test_vector_tiles import covering_tiles, curated, decode, geojson_props, login, url  # noqa: F401


@pytest.fixture(autouse=True)
def pass_on(settings):
    settings.TILE_PASS = True


def first_tile(campaign, layer="mine"):
    for z, x, y in covering_tiles(campaign):
        if vector_tiles.block_tile("status", User.objects.get(username="adm"), campaign, z, x, y):
            return url(campaign, layer, z, x, y)
    raise AssertionError("no tile with blocks")


def auth_queries(captured) -> list[str]:
    """The session and user row reads (Django's session store and auth backend)."""
    return [q["sql"] for q in captured.captured_queries
            if 'FROM "django_session"' in q["sql"] or 'FROM "auth_user"' in q["sql"]]


def test_a_tile_request_is_given_a_pass_and_the_next_reads_no_session_or_user_row(team, campaign, curated):
    client, tile = login(team["ann"]), first_tile(campaign)
    with CaptureQueriesContext(connection) as first:
        r1 = client.get(tile)
    assert r1.status_code == 200 and auth_queries(first)            # the session decided
    cookie = r1.cookies[tile_pass.COOKIE]
    assert cookie["path"] == tile_pass.COOKIE_PATH and cookie["httponly"] and cookie["max-age"] == tile_pass.PASS_SECONDS
    with CaptureQueriesContext(connection) as second:
        r2 = client.get(tile)
    assert r2.status_code == 200 and auth_queries(second) == []     # the pass decided
    assert tile_pass.COOKIE not in r2.cookies                       # and was not issued again
    assert r2.content == r1.content and r2["ETag"] == r1["ETag"]
    # what the pass shows is the holder's own map: each block as the GeoJSON layer shows it to them
    mine = decode(r2.content, "mine")
    expected = geojson_props(selectors.my_block_layer(team["ann"], campaign, None, None))
    assert mine and all(expected[pk] == props for pk, props in mine.items())


def test_a_pass_never_reaches_past_the_live_membership_and_role_checks(team, campaign, curated):
    client, tile = login(team["ann"]), first_tile(campaign)
    assert client.get(tile).status_code == 200
    assert client.get(first_tile(campaign, "status")).status_code == 403        # interpreters: `mine` only
    Membership.objects.filter(campaign=campaign, user=team["ann"]).delete()
    assert client.get(tile).status_code == 403                                   # removed: at once


@pytest.mark.parametrize("change", ["logout", "deactivate", "password"])
def test_a_logout_or_an_account_change_ends_the_pass(team, campaign, curated, change):
    user = team["ann"]
    client, tile = login(user), first_tile(campaign)
    assert client.get(tile).status_code == 200
    stolen = client.cookies[tile_pass.COOKIE].value
    session = client.cookies["sessionid"].value
    if change == "logout":
        client.logout()
    elif change == "deactivate":
        user.is_active = False
        user.save()
    else:
        user.set_password("a new one, elsewhere")
        user.save()
    client.cookies[tile_pass.COOKIE] = stolen            # the old pass with the old session cookie
    client.cookies["sessionid"] = session
    with CaptureQueriesContext(connection) as captured:
        r = client.get(tile)
    assert auth_queries(captured)                        # the session was asked again ...
    assert r.status_code == 403                          # ... and said no


def test_a_pass_is_worth_nothing_without_its_session_or_with_a_forged_signature(team, campaign, curated):
    ann, bob = team["ann"], team["bob"]
    tile = first_tile(campaign)
    a = login(ann)
    a.get(tile)
    anns_pass = a.cookies[tile_pass.COOKIE].value
    b = login(bob)
    b.cookies[tile_pass.COOKIE] = anns_pass              # ann's pass under bob's session
    with CaptureQueriesContext(connection) as captured:
        r = b.get(tile)
    assert auth_queries(captured) and r.status_code == 200
    assert r.content == login(bob).get(tile).content != a.get(tile).content     # bob's own map, not ann's
    anon = login(ann)
    anon.logout()
    anon.cookies[tile_pass.COOKIE] = anns_pass           # the pass alone, no session
    assert anon.get(tile).status_code == 403
    head, _, sig = anns_pass.rpartition(":")
    forged = login(bob)
    forged.cookies[tile_pass.COOKIE] = head + ":" + ("A" if sig[0] != "A" else "B") + sig[1:]
    with CaptureQueriesContext(connection) as captured:
        assert forged.get(tile).status_code == 200
    assert auth_queries(captured)


def test_without_a_shared_cache_no_pass_is_given_or_read(team, campaign, curated, settings):
    client, tile = login(team["ann"]), first_tile(campaign)
    client.get(tile)
    settings.TILE_PASS = False
    assert tile_pass.COOKIE in client.cookies
    with CaptureQueriesContext(connection) as captured:
        r = client.get(tile)
    assert r.status_code == 200 and auth_queries(captured) and tile_pass.COOKIE not in r.cookies
