"""load_demo: the demo campaign on PostGIS, idempotent; and the embedded SpatiaLite path `make demo` uses."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import rasterio
from django.contrib.auth.models import User
from django.core.management import call_command

from annotator.models import Campaign, ImageryScene, StreetBlock

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_load_demo_builds_campaign_and_is_idempotent(media_root):
    call_command("load_demo")
    campaign = Campaign.objects.get(name="Helsinki demo")
    n_blocks = StreetBlock.objects.filter(campaign=campaign).count()
    assert 40 <= n_blocks <= 80
    scene = ImageryScene.objects.get(campaign=campaign)
    assert scene.synthetic and "Synthetic" in scene.licence
    # every block lies on the imagery and is linked to it
    assert StreetBlock.objects.filter(campaign=campaign, scene=scene).count() == n_blocks
    assert StreetBlock.objects.filter(campaign=campaign, geom__within=scene.footprint).count() == n_blocks
    with rasterio.open(media_root / scene.cog_path) as ds:
        assert ds.tags()["SYNTHETIC"] == "true" and ds.count == 3 and ds.overviews(1)
    roles = {u.username: {g.name for g in u.groups.all()} for u in User.objects.all()}
    assert roles["interpreter1"] == roles["interpreter2"] == roles["interpreter3"] == {"interpreter"}
    assert roles["reviewer1"] == {"reviewer"}
    assert User.objects.get(username="interpreter1").check_password("demo-interpreter-1")

    call_command("load_demo")
    assert StreetBlock.objects.filter(campaign=campaign).count() == n_blocks
    assert ImageryScene.objects.count() == 1 and User.objects.count() == 5


@pytest.mark.slow
def test_embedded_spatialite_demo_migrates_and_loads(tmp_path):
    """What `make demo` runs before serving: migrate + load_demo on SpatiaLite, tasks in-process."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL"}}
    env.update(DJANGO_DEBUG="1", DATABASE_URL=f"spatialite:///{tmp_path / 'demo.sqlite3'}",
               MEDIA_ROOT=str(tmp_path / "media"), DJANGO_SETTINGS_MODULE="config.settings")
    for args in (["migrate", "--no-input", "-v", "0"], ["load_demo"], ["load_demo"]):
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
    assert "Demo campaign 'Helsinki demo'" in result.stdout and "(0 new)" in result.stdout
    assert "interpreter1" in result.stdout and "demo-interpreter-1" in result.stdout
