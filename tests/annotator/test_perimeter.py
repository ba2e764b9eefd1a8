"""Who can get in (issue #10, items 6 and 7): no blanket media route, generated files only through
the admin-checked download view, login rate limits per account and per client address (behind
trusted proxies only), on the site's and on the admin's login page."""
from __future__ import annotations

import importlib
import os

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import RequestFactory
from django.urls import clear_url_caches

pytestmark = pytest.mark.django_db

CSV = b"block,interpreter,lcz_2\n1,ann,1000\n"
COG = b"II*\x00 not really a COG, but the imagery's bytes"


@pytest.fixture(autouse=True)
def clean_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def files(media_root, campaign):
    """An imagery COG, a learning round's package and state, a map: where the app writes them."""
    imagery = media_root / "imagery" / f"campaign-{campaign.pk}" / "scene.tif"
    imagery.parent.mkdir(parents=True)
    imagery.write_bytes(COG)
    round_dir = media_root / "learning" / f"campaign-{campaign.pk}" / "round-001"
    (round_dir / "package").mkdir(parents=True)
    (round_dir / "package" / "annotations.csv").write_bytes(CSV)
    (round_dir / "state.json").write_text('{"export": "package"}')
    maps = media_root / "maps" / f"campaign-{campaign.pk}"
    maps.mkdir(parents=True)
    (maps / "overview.png").write_bytes(b"\x89PNG fake")
    return {"imagery": imagery, "round": round_dir, "maps": maps}


def _reload_urls():
    import config.urls

    importlib.reload(config.urls)
    clear_url_caches()


@pytest.fixture
def debug_urls(settings):
    """config.urls as `DJANGO_DEBUG=1` (the demo) builds it: DEBUG decides the urlpatterns at import."""
    settings.DEBUG = True
    _reload_urls()
    yield
    settings.DEBUG = False
    _reload_urls()


# --- item 6: media ---------------------------------------------------------------------------

def test_debug_mode_serves_no_media_route(client, team, files, debug_urls):
    rel = files["imagery"].relative_to(files["imagery"].parents[2]).as_posix()
    csv_rel = (files["round"] / "package" / "annotations.csv").relative_to(files["imagery"].parents[2]).as_posix()
    for url in (f"/media/{rel}", f"/media/{csv_rel}"):
        assert client.get(url).status_code == 404
        client.force_login(team["ann"])
        assert client.get(url).status_code == 404
        client.logout()


def _url(campaign, rel):
    return f"/downloads/campaigns/{campaign.pk}/{rel}"


def test_admin_downloads_a_learning_round_file(client, team, campaign, files):
    client.force_login(team["adm"])
    response = client.get(_url(campaign, "learning/round-001/package/annotations.csv"))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == CSV
    assert response["Content-Disposition"].startswith("attachment")
    assert 'filename="annotations.csv"' in response["Content-Disposition"]
    state = client.get(_url(campaign, "learning/round-001/state.json"))
    assert state.status_code == 200 and b"".join(state.streaming_content) == b'{"export": "package"}'
    png = client.get(_url(campaign, "maps/overview.png"))
    assert png.status_code == 200 and b"".join(png.streaming_content) == b"\x89PNG fake"


def test_members_who_are_not_admins_get_404(client, team, campaign, files):
    url = _url(campaign, "learning/round-001/package/annotations.csv")
    client.force_login(team["adm"])
    assert client.get(url).status_code == 200          # the file is there, for admins
    for name in ("ann", "rev"):
        client.force_login(team[name])
        assert client.get(url).status_code == 404, name
    client.logout()
    anonymous = client.get(url)
    assert anonymous.status_code in (302, 404)
    if anonymous.status_code == 302:
        assert anonymous["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("rel", [
    "learning/../../imagery/campaign-{pk}/scene.tif",
    "learning/round-001/../../../imagery/campaign-{pk}/scene.tif",
    "learning/%2e%2e/%2e%2e/imagery/campaign-{pk}/scene.tif",
    "learning/..%2f..%2fimagery/campaign-{pk}/scene.tif",
    "learning/round-001/./state.json",
    "learning//etc/passwd",
    "learning/round-001",                      # a directory
    "learning/",
    "learning",
    "imagery/campaign-{pk}/scene.tif",         # imagery is never downloadable
    "imagery/scene.tif",
    "learning/round-001/missing.csv",
    "other/round-001/state.json",
])
def test_download_refuses_traversal_directories_and_imagery(client, team, campaign, files, rel):
    client.force_login(team["adm"])
    assert client.get(_url(campaign, "learning/round-001/state.json")).status_code == 200   # control
    assert client.get(_url(campaign, rel.format(pk=campaign.pk))).status_code == 404


def test_download_refuses_symlinks_leaving_the_campaign_folder_and_special_files(client, team, campaign, files):
    client.force_login(team["adm"])
    (files["round"] / "cog.tif").symlink_to(files["imagery"])
    assert client.get(_url(campaign, "learning/round-001/cog.tif")).status_code == 404
    (files["round"] / "up").symlink_to(files["imagery"].parent, target_is_directory=True)
    assert client.get(_url(campaign, "learning/round-001/up/scene.tif")).status_code == 404
    os.mkfifo(files["round"] / "pipe")
    assert client.get(_url(campaign, "learning/round-001/pipe")).status_code == 404
    # a symlink that stays inside the campaign folder is fine
    (files["round"] / "latest.csv").symlink_to(files["round"] / "package" / "annotations.csv")
    ok = client.get(_url(campaign, "learning/round-001/latest.csv"))
    assert ok.status_code == 200 and b"".join(ok.streaming_content) == CSV


def test_download_is_per_campaign(client, team, campaign, files):
    from annotator import services

    other, _ = services.create_campaign("Other", city="Espoo", imagery_licence="CC0")
    client.force_login(team["adm"])
    assert client.get(_url(campaign, "learning/round-001/state.json")).status_code == 200
    assert client.get(_url(other, "learning/round-001/state.json")).status_code == 404
    assert client.get(f"/downloads/campaigns/{other.pk}/learning/../../learning/campaign-{campaign.pk}/"
                      "round-001/state.json").status_code == 404
    assert client.get("/downloads/campaigns/999999/learning/round-001/state.json").status_code == 404


def test_download_hands_over_to_nginx_with_x_accel_redirect(client, team, campaign, files, settings):
    settings.MEDIA_ACCEL_REDIRECT_PREFIX = "/protected-media/"
    client.force_login(team["adm"])
    response = client.get(_url(campaign, "learning/round-001/package/annotations.csv"))
    assert response.status_code == 200
    assert response["X-Accel-Redirect"] == (
        f"/protected-media/learning/campaign-{campaign.pk}/round-001/package/annotations.csv")
    assert response.content == b""
    assert response["Content-Disposition"].startswith("attachment")
    client.force_login(team["ann"])
    refused = client.get(_url(campaign, "learning/round-001/package/annotations.csv"))
    assert refused.status_code == 404 and "X-Accel-Redirect" not in refused


# --- item 7: login rate limits ------------------------------------------------------------------

def _post(client, url, username, password="wrong", addr="192.0.2.10", xff=None):
    extra = {"REMOTE_ADDR": addr}
    if xff is not None:
        extra["HTTP_X_FORWARDED_FOR"] = xff
    return client.post(url, {"username": username, "password": password}, **extra)


def test_admin_login_is_rate_limited(client, settings):
    settings.LOGIN_RATE = "3/m"
    User.objects.create_user("boss", password="right-pw-12345", is_staff=True, is_superuser=True)
    for _ in range(3):
        assert _post(client, "/admin/login/", "boss").status_code == 200
    blocked = _post(client, "/admin/login/", "boss", "right-pw-12345")
    assert blocked.status_code == 429 and b"Too many login attempts" in blocked.content
    assert "_auth_user_id" not in client.session
    cache.clear()
    assert _post(client, "/admin/login/", "boss", "right-pw-12345").status_code == 302


@pytest.mark.parametrize("url", ["/accounts/login/", "/admin/login/"])
def test_per_account_limit_holds_across_addresses(client, settings, url):
    settings.LOGIN_RATE, settings.LOGIN_RATE_PER_ADDRESS = "3/m", "100/m"
    User.objects.create_user("ann", password="right-pw-12345", is_staff=True)
    for i, name in enumerate(["ann", "ANN", " Ann "]):
        assert _post(client, url, name, addr=f"198.51.100.{i + 1}").status_code == 200
    blocked = _post(client, url, "ann", "right-pw-12345", addr="198.51.100.99")
    assert blocked.status_code == 429 and b"Too many login attempts" in blocked.content
    assert "_auth_user_id" not in client.session
    # another account from the same address is not locked out
    assert _post(client, url, "bob", addr="198.51.100.99").status_code == 200


@pytest.mark.parametrize("url", ["/accounts/login/", "/admin/login/"])
def test_per_address_limit(client, settings, url):
    settings.LOGIN_RATE, settings.LOGIN_RATE_PER_ADDRESS = "100/m", "3/m"
    for i in range(3):
        assert _post(client, url, f"user{i}", addr="203.0.113.5").status_code == 200
    blocked = _post(client, url, "user9", addr="203.0.113.5")
    assert blocked.status_code == 429 and b"Too many login attempts" in blocked.content
    assert _post(client, url, "user9", addr="203.0.113.6").status_code == 200


def test_clients_behind_a_trusted_proxy_are_limited_separately(client, settings):
    settings.LOGIN_RATE, settings.LOGIN_RATE_PER_ADDRESS = "100/m", "3/m"
    settings.TRUSTED_PROXIES = ["10.0.0.0/8", "fd00::1"]
    for i in range(3):
        assert _post(client, "/accounts/login/", f"u{i}", addr="10.0.0.2", xff="198.51.100.7").status_code == 200
    assert _post(client, "/accounts/login/", "u9", addr="10.0.0.2", xff="198.51.100.7").status_code == 429
    # another client behind the same proxy, and one behind two proxies (the left-most hop is spoofable)
    assert _post(client, "/accounts/login/", "u9", addr="10.0.0.2", xff="198.51.100.8").status_code == 200
    assert _post(client, "/accounts/login/", "u9", addr="fd00::1",
                 xff="198.51.100.7, 198.51.100.9, 10.1.2.3").status_code == 200


def test_forwarded_for_from_an_untrusted_peer_is_ignored(client, settings):
    settings.LOGIN_RATE, settings.LOGIN_RATE_PER_ADDRESS = "100/m", "3/m"
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    for i in range(3):
        assert _post(client, "/accounts/login/", f"u{i}", addr="203.0.113.5", xff=f"198.51.100.{i}").status_code == 200
    assert _post(client, "/accounts/login/", "u9", addr="203.0.113.5", xff="198.51.100.50").status_code == 429


@pytest.mark.parametrize("trusted, remote, xff, expected", [
    ([], "203.0.113.5", "198.51.100.7", "203.0.113.5"),
    (["10.0.0.0/8"], "203.0.113.5", "198.51.100.7", "203.0.113.5"),
    (["10.0.0.0/8"], "10.0.0.2", "198.51.100.7", "198.51.100.7"),
    (["10.0.0.0/8"], "10.0.0.2", "6.6.6.6, 198.51.100.7", "198.51.100.7"),
    (["10.0.0.0/8"], "10.0.0.2", "6.6.6.6, 198.51.100.7, 10.9.9.9", "198.51.100.7"),
    (["10.0.0.0/8"], "10.0.0.2", "10.0.0.3", "10.0.0.3"),        # only proxies: the left-most
    (["10.0.0.0/8"], "10.0.0.2", "", "10.0.0.2"),
    (["10.0.0.0/8"], "10.0.0.2", "garbage", "10.0.0.2"),         # unreadable hop: the proxy itself
    (["10.0.0.0/8"], "10.0.0.2", "198.51.100.7:4711", "198.51.100.7"),
    (["10.0.0.0/8"], "10.0.0.2", "[2001:db8::1]:4711", "2001:db8::1"),
    (["10.0.0.1"], "::ffff:10.0.0.1", "198.51.100.7", "198.51.100.7"),
    (["2001:db8:ffff::/48"], "2001:db8:ffff::1", "2001:db8::5", "2001:db8::5"),
])
def test_client_ip(settings, trusted, remote, xff, expected):
    from frontend.client_ip import client_ip

    settings.TRUSTED_PROXIES = trusted
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=xff)
    assert client_ip(request) == expected


def test_settings_parse_trusted_proxies():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k not in ("LOGIN_RATE", "LOGIN_RATE_PER_ADDRESS",
                                                             "MEDIA_ACCEL_REDIRECT_PREFIX")}
    env.update(DJANGO_DEBUG="1", TRUSTED_PROXIES=" 10.0.0.0/8, 192.168.1.1 ,")
    code = ("from django.conf import settings as s; "
            "print(s.TRUSTED_PROXIES, s.LOGIN_RATE, s.LOGIN_RATE_PER_ADDRESS, s.MEDIA_ACCEL_REDIRECT_PREFIX)")
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["['10.0.0.0/8',", "'192.168.1.1']", "10/m", "60/m", "None"]
    env["TRUSTED_PROXIES"] = "10.0.0.0/8,not-an-address"
    bad = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "TRUSTED_PROXIES" in bad.stderr
