from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from rest_framework.test import APIClient

from annotator import services
from tests.conftest import TEST_ROADS, grid_boundary, grid_roads


@pytest.fixture
def team(db, campaign, tmp_path):
    """The test campaign with 4 blocks, interpreters ann/bob/cat/dan, reviewer rev, admin adm; assigned 3 per block."""
    path, area = tmp_path / "team-roads.geojson", tmp_path / "team-area.geojson"
    grid_roads(n=3).to_file(path)
    grid_boundary(n=3).to_file(area)  # the 4 cells, no edge strips beyond the outer roads
    call_command("import_osm_blocks", str(path), campaign=campaign.name, boundary=str(area), verbosity=0,
                 **TEST_ROADS)
    users = {}
    for name in ("ann", "bob", "cat", "dan"):
        users[name], _ = services.ensure_user(name, "pw-" + name + "-12345", role="interpreter")
        services.add_member(campaign, users[name], "interpreter")
    users["rev"], _ = services.ensure_user("rev", "pw-rev-12345", role="reviewer")
    services.add_member(campaign, users["rev"], "reviewer")
    users["adm"], _ = services.ensure_user("adm", "pw-adm-12345", role="admin")
    services.assign_blocks(campaign, per_block=3)
    return users


@pytest.fixture
def api_as():
    def make(user: User | None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client
    return make
