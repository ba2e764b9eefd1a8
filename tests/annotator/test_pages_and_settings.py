"""Pages need login; settings refuse unsafe production configuration."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_home_requires_login(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


@pytest.mark.django_db
def test_home_lists_campaigns_and_overview_shows_blocks(client, campaign, tmp_path):
    from django.core.management import call_command

    from tests.conftest import TEST_ROADS, grid_boundary, grid_roads

    path, area = tmp_path / "roads.geojson", tmp_path / "area.geojson"
    grid_roads(n=3).to_file(path)
    grid_boundary(n=3).to_file(area)
    call_command("import_osm_blocks", str(path), campaign=campaign.name, boundary=str(area), **TEST_ROADS)
    from annotator import services

    outsider = User.objects.create_user("eve", password="pw-12345-xyz")
    client.force_login(outsider)
    assert campaign.name.encode() not in client.get("/").content  # not a member: not listed
    assert client.get(f"/campaigns/{campaign.pk}/").status_code == 404
    ann = User.objects.create_user("ann", password="pw-12345-xyz")
    services.add_member(campaign, ann, "interpreter")
    client.force_login(ann)
    home = client.get("/")
    assert home.status_code == 200 and campaign.name.encode() in home.content
    page = client.get(f"/campaigns/{campaign.pk}/")
    assert page.status_code == 200
    assert page.content.count(b'"block_key":') == 4  # the 4 blocks' GeoJSON features are on the map page


def _django_setup(env_overrides: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_DEBUG", "SECRET_KEY", "DATABASE_URL",
                                                            "CELERY_BROKER_URL", "ALLOWED_HOSTS"}}
    env.update(env_overrides)
    code = "import django; django.setup(); from django.conf import settings; print(settings.DATABASES['default']['ENGINE'])"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)


def test_production_without_secret_key_is_refused():
    result = _django_setup({"DJANGO_SETTINGS_MODULE": "config.settings"})
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DJANGO_DEBUG is off" in result.stderr


def test_development_defaults_to_embedded_spatialite(tmp_path):
    result = _django_setup({"DJANGO_SETTINGS_MODULE": "config.settings", "DJANGO_DEBUG": "1",
                            "MEDIA_ROOT": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "django.contrib.gis.db.backends.spatialite"


def test_production_with_environment_uses_postgis():
    result = _django_setup({
        "DJANGO_SETTINGS_MODULE": "config.settings", "SECRET_KEY": "x" * 50, "ALLOWED_HOSTS": "lcz.example.org",
        "DATABASE_URL": "postgis://u@db:5432/lcz", "CELERY_BROKER_URL": "redis://r:6379/0", "MEDIA_ROOT": "/srv/media",
    })
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "django.contrib.gis.db.backends.postgis"


def test_check_deploy_is_clean_with_production_settings():
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_DEBUG"}}
    env.update(SECRET_KEY="k" * 30 + "-Q9v!zX2#pL7@wR4$tY8&uI1*oP5(aS3)", ALLOWED_HOSTS="lcz.example.org",
               DATABASE_URL="postgis://lcz@127.0.0.1:5432/lcz", CELERY_BROKER_URL="redis://127.0.0.1:6379/0",
               MEDIA_ROOT="/tmp/lcz-media", DJANGO_SETTINGS_MODULE="config.settings")
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.django_db
def test_login_attempts_are_rate_limited(client, settings):
    from django.core.cache import cache

    cache.clear()
    settings.LOGIN_RATE = "3/m"
    User.objects.create_user("ann", password="right-pw-12345")
    for _ in range(3):
        assert client.post("/accounts/login/", {"username": "ann", "password": "wrong"}).status_code == 200
    blocked = client.post("/accounts/login/", {"username": "ann", "password": "right-pw-12345"})
    assert blocked.status_code == 429 and b"Too many login attempts" in blocked.content
    assert "_auth_user_id" not in client.session
    cache.clear()
    ok = client.post("/accounts/login/", {"username": "ann", "password": "right-pw-12345"})
    assert ok.status_code == 302


@pytest.mark.django_db
def test_admins_see_the_audit_history_in_the_admin(client, team, api_as):
    import json as _json
    import uuid

    from annotator.models import Assignment, AuditEvent
    from lcz_model.classes import KEYS

    a = Assignment.objects.filter(interpreter=team["ann"]).first()
    api_as(team["ann"]).put(f"/api/assignments/{a.pk}/annotation/", data=_json.dumps(
        {"request_id": str(uuid.uuid4()), "version": 0, "split": dict.fromkeys(KEYS, 0) | {"lcz_6": 1000},
         "submit": True}), content_type="application/json")
    event = AuditEvent.objects.get(action="submit")
    client.force_login(team["adm"])
    listing = client.get("/admin/annotator/auditevent/")
    assert listing.status_code == 200 and b"submit" in listing.content
    detail = client.get(f"/admin/annotator/auditevent/{event.pk}/change/")
    assert detail.status_code == 200 and b"permille" in detail.content
    assert client.post(f"/admin/annotator/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    client.force_login(team["ann"])
    assert client.get("/admin/annotator/auditevent/").status_code == 302  # not staff: to the admin login
