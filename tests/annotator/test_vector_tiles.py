"""Blocks as Mapbox Vector Tiles: per-role layers, blindness, ETags, bad tiles, and the PostGIS
tile against the Python encoder (SpatiaLite's) and the GeoJSON layers of selectors."""
from __future__ import annotations

import math
import uuid

import mapbox_vector_tile
import pytest
from django.test import Client

from annotator import selectors, services, vector_tiles
from annotator.models import Assignment, AuditEvent, Prediction, StreetBlock
from lcz_model.classes import KEYS
from tests.annotator.helpers import split, submit_block

Z = 16


@pytest.fixture(autouse=True)
def tile_passes(settings):
    """As in production (a shared cache): every request after a client's first holds a tile pass
    (annotator.tile_pass), so the per-role checks below hold on that path too."""
    settings.TILE_PASS = True


def tile_xy(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 1 << z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def covering_tiles(campaign, z: int = Z) -> list[tuple[int, int, int]]:
    """Every tile at zoom z over the campaign's blocks."""
    w, s, e, n = selectors.campaign_extent(campaign)
    x0, y0 = tile_xy(w, n, z)
    x1, y1 = tile_xy(e, s, z)
    return [(z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]


def url(campaign, layer: str, z: int, x: int, y: int, query: str = "") -> str:
    return f"/tiles/campaigns/{campaign.pk}/blocks/{layer}/{z}/{x}/{y}.mvt{query}"


def decode(data: bytes, layer: str) -> dict[int, dict]:
    """Block id -> properties of one tile's features."""
    if not data:
        return {}
    layers = mapbox_vector_tile.decode(data)
    assert set(layers) == {layer}
    assert layers[layer]["extent"] == vector_tiles.EXTENT
    return {f["id"]: f["properties"] for f in layers[layer]["features"]}


def fetch_layer(client: Client, campaign, layer: str, query: str = "") -> dict[int, dict]:
    """The features of every tile over the campaign, through HTTP (a block on two tiles once)."""
    seen: dict[int, dict] = {}
    for z, x, y in covering_tiles(campaign):
        r = client.get(url(campaign, layer, z, x, y, query))
        assert r.status_code in (200, 204), r.content[:200]
        if r.status_code == 200:
            assert r["Content-Type"] == "application/vnd.mapbox-vector-tile"
            assert r["Cache-Control"] == "private, no-cache"
            for pk, props in decode(r.content, layer).items():
                assert seen.setdefault(pk, props) == props     # the same block, the same properties
    return seen


def geojson_props(features) -> dict[int, dict]:
    """The GeoJSON layer's properties as a tile carries them (MVT has no null)."""
    return {pk: {k: v for k, v in props.items() if v is not None and k not in vector_tiles.NOT_IN_TILES}
            for pk, _, props in features}


def login(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


@pytest.fixture
def curated(team, campaign):
    """Block 0 complete (LCZ 6), block 1 disputed, block 2 complete (LCZ 8), block 3 one draft."""
    blocks = list(StreetBlock.objects.filter(campaign=campaign).order_by("id"))
    submit_block(blocks[0], lambda u: split(lcz_6=600, lcz_b=400))
    users = list(Assignment.objects.filter(block=blocks[1]).order_by("interpreter__username")
                 .values_list("interpreter__username", flat=True))
    thirds = dict(zip(users, [split(lcz_6=1000), split(lcz_b=1000), split(lcz_d=1000)]))
    submit_block(blocks[1], thirds.__getitem__)
    submit_block(blocks[2], lambda u: split(lcz_8=800, lcz_e=200))
    draft = Assignment.objects.filter(block=blocks[3]).order_by("interpreter__username").first()
    services.save_annotation(draft, draft.interpreter, request_id=uuid.uuid4(), version=None,
                             split=split(lcz_6=500), submit=False)
    for b in blocks:
        b.refresh_from_db()
    assert [b.status for b in blocks] == ["complete", "disputed", "complete", "in_progress"]
    return blocks


def test_an_interpreters_tile_carries_only_their_own_status(team, campaign, curated):
    draft = Assignment.objects.get(block=curated[3], status=Assignment.Status.DRAFT)
    others = Assignment.objects.filter(block=curated[3]).exclude(pk=draft.pk).select_related("interpreter")
    for who in [draft.interpreter, *[a.interpreter for a in others], team["dan"]]:
        got = fetch_layer(login(who), campaign, "mine")
        assert set(got) == {b.pk for b in curated}                      # every block, for the map
        assert got == geojson_props(selectors.my_block_layer(who, campaign, None, None))
        mine = {a.block_id: a for a in Assignment.objects.filter(interpreter=who)}
        for pk, props in got.items():
            assert set(props) <= {"block_key", "status", "assignment"}
            if pk not in mine:
                assert props["status"] == "unassigned" and "assignment" not in props
                continue
            assert props["assignment"] == mine[pk].pk                   # my assignment, never another's
            if pk == curated[3].pk:                                    # the block one interpreter drafted
                assert props["status"] == ("draft" if who == draft.interpreter else "todo")
    # a reviewer's map of everyone's progress is not for interpreters
    ann = login(team["ann"])
    z, x, y = covering_tiles(campaign)[0]
    for layer in ("status", "agreement", "fractions"):
        assert ann.get(url(campaign, layer, z, x, y)).status_code == 403


def test_reviewer_layers_match_the_geojson_layers(team, campaign, curated):
    rev = login(team["rev"])
    assert fetch_layer(rev, campaign, "status") == geojson_props(selectors.block_status_layer(campaign))
    agreement = fetch_layer(rev, campaign, "agreement")
    assert agreement == geojson_props(selectors.agreement_layer(campaign))
    assert set(agreement) == {curated[0].pk, curated[1].pk, curated[2].pk}
    assert agreement[curated[1].pk]["status"] == "disputed" and agreement[curated[1].pk]["tv"] > 0.3
    fractions = fetch_layer(rev, campaign, "fractions", "?source=consensus")
    rows = selectors.fraction_rows(campaign, "consensus")
    assert fractions == geojson_props(selectors.fraction_layer(rows))
    assert fractions[curated[0].pk]["dominant"] == "lcz_6" and fractions[curated[2].pk]["dominant"] == "lcz_8"
    assert fractions[curated[2].pk]["lcz_8"] == 800 and set(KEYS) <= set(fractions[curated[2].pk])
    assert curated[3].pk not in fractions                               # not released: no label


def test_blind_blocks_never_reach_a_viewer_who_still_labels_them(team, campaign, curated):
    """A reviewer who also holds an open blind assignment of a released block (a second blind
    round) gets neither its agreement nor its fractions; the admin does."""
    rev = team["rev"]
    services.add_member(campaign, rev, "interpreter")
    Assignment.objects.create(campaign=campaign, block=curated[0], interpreter=rev, round=2)
    Prediction.objects.create(campaign=campaign, block=curated[0], model_version="m1",
                              permille=list(split(lcz_2=700, lcz_6=300).values()), entropy=0.1, bald=0.1, margin=0.1)
    Prediction.objects.create(campaign=campaign, block=curated[3], model_version="m1",
                              permille=list(split(lcz_9=1000).values()), entropy=0.1, bald=0.1, margin=0.1)
    assert selectors.blind_pending_block_ids(rev, campaign) == {curated[0].pk}
    c_rev, c_adm = login(rev), login(team["adm"])
    assert curated[0].pk not in fetch_layer(c_rev, campaign, "agreement")
    assert curated[0].pk in fetch_layer(c_adm, campaign, "agreement")
    assert curated[0].pk not in fetch_layer(c_rev, campaign, "fractions", "?source=consensus")
    assert curated[0].pk in fetch_layer(c_adm, campaign, "fractions", "?source=consensus")
    model = fetch_layer(c_rev, campaign, "fractions", "?source=m1")
    assert set(model) == {curated[3].pk} and model[curated[3].pk]["dominant"] == "lcz_9"
    assert AuditEvent.objects.filter(actor=rev, action="predictions_shown").count() == 1   # audited once
    adm_model = fetch_layer(c_adm, campaign, "fractions", "?source=m1")
    assert adm_model[curated[0].pk]["dominant"] == "lcz_2" and adm_model[curated[0].pk]["lcz_2"] == 700
    # and their own tile shows their own (open) assignment, nothing of the others' labels
    mine = fetch_layer(c_rev, campaign, "mine")
    assert mine[curated[0].pk]["status"] == "todo"
    z, x, y = covering_tiles(campaign)[0]
    assert c_rev.get(url(campaign, "fractions", z, x, y, "?source=nope")).status_code == 400


@pytest.mark.parametrize("layer,source", [("mine", None), ("status", None), ("agreement", None),
                                          ("fractions", "consensus")])
def test_postgis_and_python_encoders_give_the_same_features(team, campaign, curated, layer, source):
    who = team["ann"] if layer == "mine" else team["rev"]
    n = 0
    for z, x, y in covering_tiles(campaign, 15) + covering_tiles(campaign, 18):
        sql = vector_tiles.block_tile(layer, who, campaign, z, x, y, source, encoder="postgis")
        py = vector_tiles.block_tile(layer, who, campaign, z, x, y, source, encoder="python")
        a, b = mapbox_vector_tile.decode(sql) if sql else {}, mapbox_vector_tile.decode(py) if py else {}
        fa = {f["id"]: f for f in a.get(layer, {}).get("features", [])}
        fb = {f["id"]: f for f in b.get(layer, {}).get("features", [])}
        assert fa.keys() == fb.keys()
        for pk in fa:
            n += 1
            assert fa[pk]["properties"] == fb[pk]["properties"]
            assert fa[pk]["geometry"]["type"] == fb[pk]["geometry"]["type"] == "Polygon"
            ring_a, ring_b = fa[pk]["geometry"]["coordinates"][0], fb[pk]["geometry"]["coordinates"][0]
            # the same outline on the same 4096 grid, within the GeoJSON's 6 decimals (about 0.25 m
            # in Web Mercator here) that the Python encoder starts from
            unit = 2 * vector_tiles.WEB_MERCATOR_HALF / (1 << z) / vector_tiles.EXTENT
            tol = 2 + 0.25 / unit
            for axis in (0, 1):
                assert abs(min(p[axis] for p in ring_a) - min(p[axis] for p in ring_b)) <= tol
                assert abs(max(p[axis] for p in ring_a) - max(p[axis] for p in ring_b)) <= tol
    assert n >= 4


def test_etag_revalidation_and_a_save_changes_the_tile(team, campaign, curated):
    a = Assignment.objects.filter(status=Assignment.Status.TODO).select_related("interpreter").first()
    me = a.interpreter
    other = Assignment.objects.filter(block=a.block).exclude(interpreter=me).first().interpreter
    ann = login(me)
    lon, lat = a.block.geom.point_on_surface.coords
    x, y = tile_xy(lon, lat, Z)
    first = ann.get(url(campaign, "mine", Z, x, y))
    assert first.status_code == 200 and first["ETag"].startswith('"')
    again = ann.get(url(campaign, "mine", Z, x, y), HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304 and again.content == b"" and again["ETag"] == first["ETag"]
    # another interpreter's tile of the same place differs (their own statuses), so does its ETag
    bob = login(other).get(url(campaign, "mine", Z, x, y), HTTP_IF_NONE_MATCH=first["ETag"])
    assert bob.status_code == 200 and bob["ETag"] != first["ETag"]
    services.save_annotation(a, me, request_id=uuid.uuid4(), version=None, split=split(lcz_6=1000),
                             submit=False)
    after = ann.get(url(campaign, "mine", Z, x, y), HTTP_IF_NONE_MATCH=first["ETag"])
    assert after.status_code == 200 and after["ETag"] != first["ETag"]
    assert decode(after.content, "mine")[a.block_id]["status"] == "draft"


def test_bad_tiles_strangers_and_empty_tiles(team, campaign, curated, django_user_model):
    ann = login(team["ann"])
    z, x, y = covering_tiles(campaign)[0]
    assert ann.get(url(campaign, "mine", 11, x >> 5, y >> 5)).status_code == 404     # below MIN_ZOOM
    assert ann.get(url(campaign, "mine", 23, x, y)).status_code == 404
    r = ann.get(url(campaign, "mine", 12, 4096, 0))                                   # x beyond 2^12 - 1
    assert r.status_code == 400 and b"0..4095" in r.content
    assert ann.get(f"/tiles/campaigns/{campaign.pk}/blocks/everything/{z}/{x}/{y}.mvt").status_code == 404
    empty = ann.get(url(campaign, "mine", z, 0, 0))                                  # no block there
    assert empty.status_code == 204 and empty.content == b"" and empty.has_header("ETag")
    assert ann.post(url(campaign, "mine", z, x, y)).status_code == 405
    assert Client().get(url(campaign, "mine", z, x, y)).status_code == 403           # anonymous
    stranger = django_user_model.objects.create_user("stranger", password="pw-stranger-12345")
    assert login(stranger).get(url(campaign, "mine", z, x, y)).status_code == 403     # not a member
    assert login(stranger).get(f"/tiles/campaigns/999999/blocks/mine/{z}/{x}/{y}.mvt").status_code == 403


def test_campaign_with_roles_agrees_with_campaign_for_and_is_reviewer(team, campaign, django_user_model):
    stranger = django_user_model.objects.create_user("stranger", password="pw-stranger-12345")
    campaign.assisted_rounds = [2]
    campaign.save(update_fields=["assisted_rounds"])
    for user in [*team.values(), stranger]:
        got, reviewer = selectors.campaign_with_roles(user, campaign.pk)
        try:
            expected = selectors.campaign_for(user, campaign.pk)
        except selectors.NotFound:
            expected = None
        assert (got is None) == (expected is None), user.username
        if got is not None:
            assert got.pk == campaign.pk and got.assisted_rounds == [2]
            assert got.name == campaign.name                       # other fields load on access
            assert reviewer == selectors.is_reviewer(user, campaign), user.username
    assert selectors.campaign_with_roles(team["adm"], 999_999) == (None, False)
    assert selectors.campaign_with_roles(team["rev"], campaign.pk)[1] is True
    assert selectors.campaign_with_roles(team["ann"], campaign.pk)[1] is False


def test_my_skipped_block_shows_as_skipped_until_released(team, campaign, curated):
    """A can't-label verdict is 'skipped' on its interpreter's map (as in my_block_layer), and the
    others' tiles never show it."""
    open_block = curated[3]
    a = Assignment.objects.filter(block=open_block).exclude(status=Assignment.Status.DRAFT) \
        .order_by("interpreter__username").first()
    services.save_annotation(a, a.interpreter, request_id=uuid.uuid4(), version=None, split=None,
                             skip_reason="cloud_shadow", submit=True)
    got = fetch_layer(login(a.interpreter), campaign, "mine")
    assert got[open_block.pk]["status"] == "skipped"
    assert got == geojson_props(selectors.my_block_layer(a.interpreter, campaign, None, None))
    other = Assignment.objects.filter(block=open_block).exclude(pk=a.pk).first().interpreter
    assert fetch_layer(login(other), campaign, "mine")[open_block.pk]["status"] != "skipped"


def test_the_python_encoder_keeps_only_the_polygons_of_a_clip():
    """A block clipped along a tile edge may come back with a line or point beside its polygon
    (a GeometryCollection the encoder cannot write): only the polygons are kept."""
    from shapely.geometry import GeometryCollection, LineString, Point, box

    square = box(0, 0, 1, 1)
    mixed = GeometryCollection([square, LineString([(1, 0), (2, 0)]), Point(3, 3)])
    assert vector_tiles._polygonal(mixed).equals(square)
    assert vector_tiles._polygonal(GeometryCollection([LineString([(0, 0), (1, 1)])])) is None
    assert vector_tiles._polygonal(square) is square


def test_revalidation_is_answered_without_building_the_tile(team, campaign, curated, monkeypatch):
    from annotator import tile_stamps

    ann = login(team["ann"])
    z, x, y = covering_tiles(campaign)[0]
    first = ann.get(url(campaign, "mine", z, x, y))
    assert first.status_code in (200, 204)

    def never(*args, **kwargs):
        raise AssertionError("the tile was built for a revalidation")
    monkeypatch.setattr(vector_tiles, "block_tile", never)
    again = ann.get(url(campaign, "mine", z, x, y), HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304 and again["ETag"] == first["ETag"]
    tile_stamps.bump(campaign.pk)                       # anything shown changed: the tile is built again
    with pytest.raises(AssertionError, match="built for a revalidation"):
        ann.get(url(campaign, "mine", z, x, y), HTTP_IF_NONE_MATCH=first["ETag"])


def test_every_write_that_changes_a_tile_changes_the_viewers_stamp(team, campaign, curated):
    """Saves (the saver's own stamp), curation, adjudication, assignment, revocation and block
    imports (everyone's)."""
    from annotator import curation, tile_stamps

    a = Assignment.objects.filter(status=Assignment.Status.TODO).select_related("interpreter").first()
    me, rev = a.interpreter, team["rev"]
    other = next(team[n] for n in ("ann", "bob", "cat", "dan") if team[n] != me)
    stamps = lambda: (tile_stamps.stamp(campaign.pk, me.pk), tile_stamps.stamp(campaign.pk, other.pk))  # noqa: E731
    before = stamps()
    services.save_annotation(a, me, request_id=uuid.uuid4(), version=None, split=split(lcz_6=1000), submit=False)
    after = stamps()
    assert after[0] != before[0]                        # ann's own map changed
    before = after
    disputed = next(b for b in curated if b.status == "disputed")
    curation.adjudicate(disputed, rev, split=split(lcz_6=1000), reason="clear on the imagery")
    after = stamps()
    assert after[0] != before[0] and after[1] != before[1]
    before = after
    leaver = Assignment.objects.filter(status=Assignment.Status.TODO).first().interpreter
    services.revoke_open_assignments(leaver, campaign=campaign, reason="left")
    after = stamps()
    assert after[0] != before[0] and after[1] != before[1]
    before = after
    services.assign_blocks(campaign, per_block=3)       # the leaver's blocks go to someone else
    assert stamps() != before


def plain_tile(monkeypatch, *args, **kwargs) -> bytes:
    """The tile with every block through ST_AsMVTGeom(ST_Transform(geom, 3857)) (the z12 grid and the
    stored Web Mercator column switched off)."""
    with monkeypatch.context() as m:
        m.setattr(vector_tiles, "GRID_MAX_ZOOM", vector_tiles.GRID_ZOOM - 1)
        m.setattr(vector_tiles, "MERCATOR_GEOM", "ST_Transform(b.geom, 3857)")
        return vector_tiles.block_tile(*args, **kwargs)


@pytest.mark.parametrize("layer,source", [("mine", None), ("status", None), ("agreement", None),
                                          ("fractions", "consensus")])
def test_high_zoom_tiles_from_the_stored_mercator_geometry_are_the_transformed_ones(
        team, campaign, curated, monkeypatch, layer, source):
    """z15+ tiles read `geom_3857` (migration 0014) instead of transforming each block: byte for byte
    the tiles of ST_Transform(geom, 3857), and a block moved by a bulk update is drawn where it now is."""
    who = team["ann"] if layer == "mine" else team["adm"]
    compared = 0
    for z in (15, 17):
        for block in curated[:4]:
            x, y = tile_xy(*block.geom.centroid.coords, z)
            fast = vector_tiles.block_tile(layer, who, campaign, z, x, y, source)
            assert fast == plain_tile(monkeypatch, layer, who, campaign, z, x, y, source)
            compared += bool(fast)
    assert compared
    block = curated[0]
    x, y = tile_xy(*block.geom.centroid.coords, 17)
    before = vector_tiles.block_tile("status", team["adm"], campaign, 17, x, y)
    StreetBlock.objects.filter(pk=block.pk).update(geom=block.geom.buffer(-2e-5))
    after = vector_tiles.block_tile("status", team["adm"], campaign, 17, x, y)
    assert after != before
    assert after == plain_tile(monkeypatch, "status", team["adm"], campaign, 17, x, y)


def ring_bounds(feature) -> list[tuple[float, float, float, float]]:
    geom = feature["geometry"]
    polygons = geom["coordinates"] if geom["type"] == "MultiPolygon" else [geom["coordinates"]]
    return [(min(p[0] for p in r), min(p[1] for p in r), max(p[0] for p in r), max(p[1] for p in r))
            for poly in polygons for r in poly]


@pytest.mark.parametrize("layer,source", [("mine", None), ("status", None), ("agreement", None),
                                          ("fractions", "consensus")])
def test_low_zoom_tiles_from_the_z12_grid_keep_every_block_and_property(team, campaign, curated, monkeypatch,
                                                                         layer, source):
    """z12-z14 tiles draw blocks inside the buffered tile from `tile_geom_z12` (migration 0012) and
    the others (here a block across a z12 tile corner) through ST_AsMVTGeom: the same features with
    the same properties as with ST_AsMVTGeom for all, byte for byte at z12, and outlines within the
    z12 grid's step at z13-z14; the Python encoder (SpatiaLite's) agrees on features and properties."""
    from django.db import connection
    from shapely.geometry import box as shapely_box

    lon, lat = curated[0].geom.centroid.coords
    x12, y12 = tile_xy(lon, lat, 12)
    west, south, east, north = vector_tiles.tile_bounds_4326(12, x12, y12)
    corner = (west if lon - west < east - lon else east, south if lat - south < north - lat else north)
    # ~330 m a side: beyond the 64-unit buffer (150 m at z12) of each of the four tiles it crosses
    square = shapely_box(corner[0] - 3e-3, corner[1] - 1.5e-3, corner[0] + 3e-3, corner[1] + 1.5e-3)
    across = StreetBlock.objects.create(campaign=campaign, block_key="across-a-z12-corner", area_m2=1000.0,
                                        source=StreetBlock.Source.POLYGONS, geom=square.wkt)
    who = team["ann"] if layer == "mine" else team["adm"]
    grid_drawn, seen = set(), set()
    for z in (12, 13, 14):
        scale = 1 << (z - vector_tiles.GRID_ZOOM)
        for _, x, y in covering_tiles(campaign, z):
            fast = vector_tiles.block_tile(layer, who, campaign, z, x, y, source)
            plain = plain_tile(monkeypatch, layer, who, campaign, z, x, y, source)
            py = vector_tiles.block_tile(layer, who, campaign, z, x, y, source, encoder="python")
            if z == 12:
                assert fast == plain
            fa, fp, fy = ({f["id"]: f for f in (mapbox_vector_tile.decode(t) if t else {}).get(layer, {})
                           .get("features", [])} for t in (fast, plain, py))
            assert fa.keys() == fp.keys() == fy.keys()
            for pk in fa:
                assert fa[pk]["properties"] == fp[pk]["properties"] == fy[pk]["properties"]
                assert fa[pk]["geometry"]["type"] in ("Polygon", "MultiPolygon")
                for ra, rp in zip(ring_bounds(fa[pk]), ring_bounds(fp[pk]), strict=True):
                    assert all(abs(a - b) <= scale for a, b in zip(ra, rp))
            seen |= fa.keys()
            box = vector_tiles._geom_sql(z, x, y)[1][:4]
            with connection.cursor() as cursor:
                cursor.execute("SELECT id FROM annotator_streetblock WHERE campaign_id = %s "
                               "AND tile_geom_z12 @ ST_MakeEnvelope(%s, %s, %s, %s)", [campaign.pk, *box])
                grid_drawn |= {row[0] for row in cursor.fetchall()} & fa.keys()
    assert grid_drawn and across.pk not in grid_drawn        # both paths were taken
    if layer in ("mine", "status"):
        assert across.pk in seen


def test_the_z12_grid_follows_a_moved_block(team, campaign, monkeypatch):
    """`tile_geom_z12` is generated from `geom`: a block moved by any write is drawn where it now is."""
    block = StreetBlock.objects.filter(campaign=campaign).order_by("id").first()
    block.geom = block.geom.buffer(-1e-4)                   # a smaller block, written through the ORM
    block.save()
    lon, lat = block.geom.centroid.coords
    x, y = tile_xy(lon, lat, 12)
    fast = vector_tiles.block_tile("status", team["rev"], campaign, 12, x, y)
    assert fast == plain_tile(monkeypatch, "status", team["rev"], campaign, 12, x, y)
    StreetBlock.objects.filter(pk=block.pk).update(geom=block.geom.buffer(-1e-4))   # and by a bulk update
    assert vector_tiles.block_tile("status", team["rev"], campaign, 12, x, y) != fast
    assert (vector_tiles.block_tile("status", team["rev"], campaign, 12, x, y)
            == plain_tile(monkeypatch, "status", team["rev"], campaign, 12, x, y))


@pytest.mark.django_db(transaction=True)          # autocommit, as in production: the tile's own transaction ends
def test_tile_statements_run_serial_without_jit_and_leave_the_session_as_it_was(team, campaign, curated):
    """vector_tiles.TILE_SETTINGS_SQL: no parallel workers and no JIT for the tile statement itself
    (parallel plans were 3-4x slower at z12 on 2 cores; JIT costs ~0.5 s), set for its transaction
    only: the connection's other queries keep the server's settings."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def settings_now():
        with connection.cursor() as cur:
            cur.execute("SELECT current_setting('max_parallel_workers_per_gather'), current_setting('jit')")
            return cur.fetchone()

    before = settings_now()
    z, x, y = covering_tiles(campaign)[0]
    with CaptureQueriesContext(connection) as q:
        data = vector_tiles.block_tile("status", team["rev"], campaign, z, x, y)
    assert decode(data, "status")
    sqls = [s["sql"] for s in q.captured_queries]
    settings_at = next(i for i, s in enumerate(sqls) if "set_config('jit', 'off', true)" in s)
    tile_at = next(i for i, s in enumerate(sqls) if "ST_AsMVT(" in s)
    assert settings_at < tile_at
    assert settings_now() == before
