"""Campaign-wide agreement from the verdicts stored on each released block at curation
(annotator.verdict_records) equals the full recompute from every submitted split."""
import uuid

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from annotator import selectors, services
from annotator.models import Assignment, StreetBlock
from lcz_model.classes import KEYS
from tests.conftest import TEST_ROADS, grid_boundary, grid_roads

pytestmark = pytest.mark.django_db

REASONS = ["bad_imagery", "cloud_shadow", "unclear_boundary"]


def _random_split(rng) -> dict:
    k = rng.integers(1, 4)
    cls = rng.choice(len(KEYS), size=k, replace=False)
    cuts = np.sort(rng.choice(np.arange(1, 100), size=k - 1, replace=False)) * 10 if k > 1 else np.array([], int)
    parts = np.diff(np.concatenate([[0], cuts, [1000]]))
    return {key: 0 for key in KEYS} | {KEYS[c]: int(p) for c, p in zip(cls, parts)}


@pytest.fixture
def labelled_city(campaign, tmp_path):
    """16 blocks, 5 interpreters, 3 per block; 13 blocks fully submitted (some skips, some
    disputes), 3 left partly labelled."""
    path, area = tmp_path / "roads.geojson", tmp_path / "area.geojson"
    grid_roads(n=5).to_file(path)
    grid_boundary(n=5).to_file(area)
    call_command("import_osm_blocks", str(path), campaign=campaign.name, boundary=str(area), verbosity=0,
                 **TEST_ROADS)
    for name in ("ann", "bob", "cat", "dan", "eve"):
        user, _ = services.ensure_user(name, f"pw-{name}-12345", role="interpreter")
        services.add_member(campaign, user, "interpreter")
    services.assign_blocks(campaign, per_block=3)
    rng = np.random.default_rng(7)
    blocks = list(StreetBlock.objects.filter(campaign=campaign).order_by("id"))
    assert len(blocks) == 16
    for n, block in enumerate(blocks):
        assignments = list(Assignment.objects.filter(block=block).order_by("id"))
        for i, a in enumerate(assignments[: 2 if n >= 13 else 3]):
            skip = REASONS[(n + i) % 3] if rng.random() < 0.2 else ""
            services.save_annotation(a, a.interpreter, request_id=uuid.uuid4(), version=None,
                                     split=None if skip else _random_split(rng), skip_reason=skip,
                                     confidence=3, submit=True)
    return campaign


def test_stored_verdicts_give_the_full_recompute(labelled_city):
    released = StreetBlock.objects.filter(campaign=labelled_city, status__in=selectors.RELEASED)
    assert released.count() == 13 and not released.filter(verdicts=None).exists()
    assert released.filter(status="disputed").exists()
    assert selectors._stored_verdicts(labelled_city, 1) is not None     # the stored path is the one taken
    stored = selectors.campaign_agreement(labelled_city, include_blocks=True)
    assert stored["n_blocks"] == 13 and stored["n_raters"] == 5
    assert stored["skips"]["count"] > 0
    StreetBlock.objects.filter(campaign=labelled_city).update(verdicts=None)   # forces the full read
    assert selectors._stored_verdicts(labelled_city, 1) is None
    full = selectors.campaign_agreement(labelled_city, include_blocks=True)
    assert stored == full


def test_a_block_recurated_in_another_round_falls_back_to_the_splits(labelled_city):
    block = StreetBlock.objects.filter(campaign=labelled_city, status__in=selectors.RELEASED).first()
    full_before = selectors.campaign_agreement(labelled_city)
    StreetBlock.objects.filter(pk=block.pk).update(verdicts_round=2)
    assert selectors._stored_verdicts(labelled_city, 1) is None
    assert selectors.campaign_agreement(labelled_city) == full_before


def test_the_dashboard_names_interpreters_by_username_from_stored_verdicts(labelled_city):
    names = {i["name"] for i in selectors.campaign_agreement(labelled_city)["interpreters"]}
    assert names == set(User.objects.filter(username__in=["ann", "bob", "cat", "dan", "eve"])
                        .values_list("username", flat=True))


def test_the_migration_stores_verdicts_of_blocks_released_before_it(labelled_city):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("annotator.migrations.0009_block_verdicts")
    expected = dict(StreetBlock.objects.filter(campaign=labelled_city).values_list("id", "verdicts"))
    StreetBlock.objects.filter(campaign=labelled_city).update(verdicts=None, verdicts_round=None)
    migration.store_round_one_verdicts(apps, None)
    after = dict(StreetBlock.objects.filter(campaign=labelled_city).values_list("id", "verdicts"))
    assert {k: (bytes(v) if v is not None else None) for k, v in after.items()} == \
        {k: (bytes(v) if v is not None else None) for k, v in expected.items()}
