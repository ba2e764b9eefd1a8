"""Real cities in (#12), roads -> blocks and re-imports: blocks closed by a boundary (imagery footprint,
--boundary, the roads' extent) and flagged as edge blocks; multi-layer files; carriageway widths;
slivers by width; re-imports that would overlap; blocks linked to imagery imported later; what
assignment and prediction leave out, and why."""
from __future__ import annotations

import io
import json
import uuid

import geopandas as gpd
import pytest
import shapely
from django.core.management import CommandError, call_command
from shapely.geometry import LineString, Point, Polygon, box

from annotator import selectors, services
from annotator.ingest.roads import read_road_lines, road_width_m
from annotator.models import Annotation, Assignment, Prediction, StreetBlock
from tests.annotator.helpers import split
from tests.conftest import METRIC_CRS, TEST_ROADS, grid_roads, write_geotiff

pytestmark = pytest.mark.django_db



def corner(roads: gpd.GeoDataFrame) -> tuple[float, float]:
    """The lower-left crossing of a grid_roads grid (its lines run on 20 m past the grid)."""
    x_min, y_min, _, _ = roads.total_bounds
    return x_min + 20, y_min + 20


def import_roads(campaign, roads: gpd.GeoDataFrame, path, **options) -> str:
    roads.to_file(path)
    out = io.StringIO()
    call_command("import_osm_blocks", str(path), campaign=campaign.name, stdout=out, verbosity=0,
                 **TEST_ROADS, **options)
    return out.getvalue()


def import_tile(campaign, path, west: float, north: float, width: int, height: int):
    """A 1 m GeoTIFF in METRIC_CRS whose top-left corner is (west, north)."""
    scene, _ = services.import_imagery(campaign, write_geotiff(path, width=width, height=height,
                                                               origin=(west, north)))
    return scene


def stored(campaign) -> gpd.GeoDataFrame:
    """The campaign's blocks in METRIC_CRS, with id, edge and scene_id."""
    rows = list(StreetBlock.objects.filter(campaign=campaign).order_by("id").values_list(
        "id", "edge", "scene_id", "geom"))
    return gpd.GeoDataFrame({"id": [r[0] for r in rows], "edge": [r[1] for r in rows],
                             "scene_id": [r[2] for r in rows]},
                            geometry=[shapely.from_wkb(bytes(r[3].wkb)) for r in rows], crs="EPSG:4326"
                            ).to_crs(METRIC_CRS)


def at(blocks: gpd.GeoDataFrame, x: float, y: float) -> gpd.GeoSeries:
    """The block holding the point (exactly one)."""
    hit = blocks[blocks.contains(Point(x, y))]
    assert len(hit) == 1, f"{len(hit)} blocks at ({x}, {y})"
    return hit.iloc[0]


def interpreters(campaign, n: int = 3):
    users = []
    for i in range(n):
        user, _ = services.ensure_user(f"int{i}", f"pw-int{i}-12345", role="interpreter")
        services.add_member(campaign, user, "interpreter")
        users.append(user)
    return users


def assert_no_overlaps(blocks: gpd.GeoDataFrame) -> None:
    geoms = blocks.geometry.make_valid().values
    a, b = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    pairs = a < b
    assert (shapely.area(shapely.intersection(geoms[a[pairs]], geoms[b[pairs]])) < 1.0).all()


# --- closing blocks at a boundary -------------------------------------------------------------

def test_roads_clipped_to_the_tile_give_edge_blocks_assigned_only_when_asked(campaign, media_root, tmp_path,
                                                                            api_as):
    """A road set clipped to the imagery tile used to enclose one cell; now the tile's rim closes the
    eight pieces around it, flagged as edge blocks and left out of assignment by default."""
    grid = grid_roads(n=4)
    x0, y0 = corner(grid)
    tile = box(x0 + 50, y0 + 50, x0 + 250, y0 + 250)  # lines at x0+100, x0+200, y0+100, y0+200 cross it
    import_tile(campaign, tmp_path / "tile.tif", x0 + 50, y0 + 250, 200, 200)
    out = import_roads(campaign, grid.clip(tile), tmp_path / "clipped.gpkg")
    blocks = stored(campaign)
    assert len(blocks) == 9 and blocks.edge.sum() == 8
    middle = at(blocks, x0 + 150, y0 + 150)
    assert not middle.edge and middle.geometry.area == pytest.approx(93 * 93, rel=1e-3)
    assert at(blocks, x0 + 75, y0 + 75).edge and at(blocks, x0 + 150, y0 + 225).edge
    assert all(tile.buffer(0.05).contains(g) for g in blocks.geometry)
    assert blocks.scene_id.notna().all()
    assert "8 new blocks touch the boundary" in out

    users = interpreters(campaign)
    out = io.StringIO()
    call_command("assign_blocks", campaign=campaign.name, stdout=out)
    assert set(Assignment.objects.values_list("block_id", flat=True)) == {middle.id}
    assert "8 edge blocks left out" in out.getvalue()
    call_command("assign_blocks", campaign=campaign.name, include_edge=True, stdout=io.StringIO())
    assert Assignment.objects.count() == 9 * 3

    features = api_as(users[0]).get(f"/api/campaigns/{campaign.pk}/blocks/").json()["features"]
    edge = {f["id"]: f["properties"]["edge"] for f in features}
    assert edge == dict(zip(blocks.id, blocks.edge))


def test_blocks_at_an_extracts_edge_are_closed_by_the_roads_extent(campaign, tmp_path):
    """An extract cut through the right column of cells: without imagery, the roads' extent closes the
    half cells there (they used to be lost)."""
    grid = grid_roads(n=3)
    x0, y0 = corner(grid)
    extract = grid.clip(box(x0 - 20, y0 - 20, x0 + 150, y0 + 220))
    import_roads(campaign, extract, tmp_path / "extract.geojson")
    blocks = stored(campaign)
    for y in (y0 + 50, y0 + 150):
        assert not at(blocks, x0 + 50, y).edge  # whole cells, bounded by roads
        half = at(blocks, x0 + 125, y)
        assert half.edge and half.geometry.area == pytest.approx(46.5 * 93, rel=1e-3)
    assert all(box(*extract.total_bounds).buffer(0.05).contains(g) for g in blocks.geometry)
    assert blocks.scene_id.isna().all()


def test_boundary_file_in_another_crs_closes_and_bounds_the_blocks(campaign, tmp_path):
    grid = grid_roads(n=3)
    x0, y0 = corner(grid)
    area = box(x0 + 50, y0 - 20, x0 + 220, y0 + 220)
    boundary = tmp_path / "study-area.geojson"
    gpd.GeoDataFrame({"name": ["study area"]}, geometry=[area], crs=METRIC_CRS).to_crs(4326).to_file(boundary)
    import_roads(campaign, grid, tmp_path / "roads.gpkg", boundary=str(boundary))
    blocks = stored(campaign)
    assert all(area.buffer(0.05).contains(g) for g in blocks.geometry)
    assert not at(blocks, x0 + 150, y0 + 50).edge
    cut = at(blocks, x0 + 75, y0 + 50)  # the left cell, cut at x0+50 by the boundary
    assert cut.edge and cut.geometry.area == pytest.approx(46.5 * 93, rel=1e-3)


def test_blocks_closed_at_the_imagery_footprint_and_outside_imagery_are_reported(campaign, media_root, tmp_path):
    """A --boundary wider than the imagery: the blocks outside every scene are stored without a scene
    and the report says how many."""
    grid = grid_roads(n=3)
    x0, y0 = corner(grid)
    import_tile(campaign, tmp_path / "left.tif", x0 - 30, y0 + 230, 120, 260)  # up to x0+90
    boundary = tmp_path / "city.gpkg"
    gpd.GeoDataFrame(geometry=[box(*grid.total_bounds)], crs=METRIC_CRS).to_file(boundary)
    out = import_roads(campaign, grid, tmp_path / "roads.gpkg", boundary=str(boundary))
    blocks = stored(campaign)
    outside = blocks[blocks.scene_id.isna()]
    assert len(outside) > 0 and (outside.geometry.bounds.minx > x0 + 90).all()
    assert f"{len(outside)} new blocks lie outside all imagery" in out


# --- multi-layer files ---------------------------------------------------------------------------

def _geopackage(path, layers: dict[str, gpd.GeoDataFrame]):
    for name, gdf in layers.items():
        gdf.to_file(path, layer=name)
    return path


def _points(grid):
    x0, y0 = corner(grid)
    return gpd.GeoDataFrame({"name": ["a", "b"]}, geometry=[Point(x0, y0), Point(x0 + 50, y0)], crs=METRIC_CRS)


def _areas(grid):
    return gpd.GeoDataFrame({"name": ["park"]}, geometry=[box(*grid.total_bounds)], crs=METRIC_CRS)


def test_multi_layer_geopackage_picks_its_one_line_layer(campaign, tmp_path):
    grid = grid_roads(n=3)
    path = _geopackage(tmp_path / "city.gpkg", {"places": _points(grid), "roads": grid, "parks": _areas(grid)})
    call_command("import_osm_blocks", str(path), campaign=campaign.name, verbosity=0, **TEST_ROADS)
    assert StreetBlock.objects.filter(campaign=campaign, edge=False).count() == 4


def test_two_line_layers_are_refused_listing_the_layers(campaign, tmp_path):
    grid = grid_roads(n=3)
    path = _geopackage(tmp_path / "city.gpkg", {"roads": grid, "tracks": grid_roads(n=4), "places": _points(grid)})
    with pytest.raises(CommandError) as exc:
        call_command("import_osm_blocks", str(path), campaign=campaign.name, verbosity=0, **TEST_ROADS)
    message = str(exc.value)
    for listed in ("roads (LineString)", "tracks (LineString)", "places (Point)", "--layer", "Nothing was changed"):
        assert listed in message
    assert StreetBlock.objects.count() == 0


def test_layer_option_chooses_the_layer(campaign, tmp_path):
    grid = grid_roads(n=3)
    path = _geopackage(tmp_path / "city.gpkg", {"roads": grid, "tracks": grid_roads(n=4)})
    call_command("import_osm_blocks", str(path), campaign=campaign.name, layer="tracks", verbosity=0, **TEST_ROADS)
    assert StreetBlock.objects.filter(campaign=campaign, edge=False).count() == 9
    with pytest.raises(CommandError, match="has no layer 'streets'; its layers: roads"):
        call_command("import_osm_blocks", str(path), campaign=campaign.name, layer="streets", verbosity=0,
                     **TEST_ROADS)


# --- carriageway widths -------------------------------------------------------------------------

def test_oneway_carriageway_of_a_dual_road_is_one_carriageway_wide(tmp_path):
    assert road_width_m("motorway", oneway="yes") == road_width_m("motorway", oneway="no") / 2
    assert road_width_m("motorway") == road_width_m("motorway", oneway="yes")  # OSM: motorways are one-way
    assert road_width_m("trunk", oneway="yes") == road_width_m("trunk") / 2
    assert road_width_m("motorway", lanes="3", oneway="yes") == pytest.approx(3 * 3.25)  # lanes: this way's
    assert road_width_m("motorway_link") == pytest.approx(3.25)  # one lane (implied one-way)
    assert road_width_m("trunk_link", oneway="yes") == pytest.approx(3.25)
    assert road_width_m("primary_link") == road_width_m("trunk_link", oneway="no") == pytest.approx(6.5)
    assert road_width_m("primary", oneway="yes") == road_width_m("primary")  # not a dual road class

    roads = grid_roads(n=3, highway="trunk")
    roads["oneway"] = ["yes"] * 3 + [None] * 3
    path = tmp_path / "trunks.geojson"
    roads.to_file(path)
    widths = read_road_lines(path)["width_m"].tolist()
    assert sorted(widths) == [10.0] * 3 + [20.0] * 3


# --- slivers by shape ---------------------------------------------------------------------------

def test_thin_strips_are_dropped_and_counted(campaign, tmp_path):
    """A road 8 m from another leaves a 1 m strip between the carriageways: 93 m², more than
    --min-area, but 1 m wide."""
    grid = grid_roads(n=3)
    x0, y0 = corner(grid)
    close = gpd.GeoDataFrame({"highway": ["residential"]},
                             geometry=[LineString([(x0 - 20, y0 + 108), (x0 + 220, y0 + 108)])], crs=METRIC_CRS)
    roads = gpd.GeoDataFrame(gpd.pd.concat([grid, close], ignore_index=True), crs=METRIC_CRS)
    out = import_roads(campaign, roads, tmp_path / "roads.gpkg")
    assert "2 strips under 5 m mean width" in out
    blocks = stored(campaign)
    assert (2 * blocks.area / blocks.length >= 5).all()

    other, _ = services.create_campaign("No width limit", city="Helsinki")
    import_roads(other, roads, tmp_path / "roads-again.gpkg", min_width=0)
    assert StreetBlock.objects.filter(campaign=other).count() == len(blocks) + 2


@pytest.mark.parametrize("command", ["import_osm_blocks", "import_blocks"])
@pytest.mark.parametrize("option, value", [("--min-area", "-5"), ("--min-width", "-1"), ("--min-area", "nan"),
                                           ("--min-width", "nan")])
def test_bad_sliver_options_are_refused(campaign, tmp_path, command, option, value):
    path = tmp_path / "input.gpkg"
    if command == "import_osm_blocks":
        grid_roads(n=3).to_file(path)
    else:
        gpd.GeoDataFrame(geometry=[box(385_000, 6_672_000, 385_100, 6_672_100)], crs=METRIC_CRS).to_file(path)
    with pytest.raises(CommandError) as exc:
        call_command(command, str(path), "--campaign", campaign.name, option, value, "--source-name", "Test",
                     "--licence", "CC0-1.0", verbosity=0)
    assert f"{option} must be a number" in str(exc.value) and "Nothing was changed" in str(exc.value)
    assert StreetBlock.objects.count() == 0


def test_import_blocks_reports_what_it_dropped_and_why(campaign, tmp_path):
    x, y = 385_000.0, 6_672_000.0
    polygons = gpd.GeoDataFrame({"name": ["block", "crossing", "sliver", "strip", "flat", "none", "far"]}, geometry=[
        box(x, y, x + 50, y + 40),
        box(x + 180, y, x + 260, y + 50),  # crosses the boundary (x + 200): kept whole, an edge block
        box(x + 60, y, x + 65, y + 5),  # 25 m²
        box(x + 70, y, x + 170, y + 2),  # 200 m², 2 m wide
        Polygon([(x, y + 60), (x + 10, y + 60), (x + 20, y + 60)]),  # no area
        None,
        box(x + 5000, y, x + 5100, y + 100),  # outside the study area
    ], crs=METRIC_CRS)
    path = tmp_path / "blocks.gpkg"
    polygons.to_file(path)
    boundary = tmp_path / "area.geojson"
    gpd.GeoDataFrame(geometry=[box(x - 10, y - 10, x + 200, y + 100)], crs=METRIC_CRS).to_file(boundary)
    out = io.StringIO()
    call_command("import_blocks", str(path), campaign=campaign.name, boundary=str(boundary), stdout=out,
                 source_name="City block map", licence="CC-BY-4.0")
    assert ("Dropped: 1 slivers under 50 m², 1 strips under 5 m mean width, 2 invalid or empty, "
            "1 outside the boundary") in out.getvalue()
    assert sorted(StreetBlock.objects.values_list("area_m2", "edge")) == [(pytest.approx(2000), False),
                                                                          (pytest.approx(4000), True)]


# --- re-imports never overlap -------------------------------------------------------------------

def _grid_with_footways(cells_x=(50,)):
    """grid_roads(n=3) and a footway across the lower cell(s) at x0 + each of `cells_x`."""
    grid = grid_roads(n=3)
    x0, y0 = corner(grid)
    paths = gpd.GeoDataFrame({"highway": ["footway"] * len(cells_x)},
                             geometry=[LineString([(x0 + dx, y0), (x0 + dx, y0 + 100)]) for dx in cells_x],
                             crs=METRIC_CRS)
    return gpd.GeoDataFrame(gpd.pd.concat([grid, paths], ignore_index=True), crs=METRIC_CRS), (x0, y0)


def test_reimport_with_other_options_is_refused_with_the_overlap_count(campaign, tmp_path):
    roads, _ = _grid_with_footways()
    path = tmp_path / "roads.gpkg"
    import_roads(campaign, roads, path)
    before = set(StreetBlock.objects.values_list("block_key", flat=True))
    call_command("import_osm_blocks", str(path), campaign=campaign.name, verbosity=0, **TEST_ROADS)  # same: no-op
    with pytest.raises(CommandError, match=r"2 new blocks would overlap 1 blocks already in campaign") as exc:
        call_command("import_osm_blocks", str(path), campaign=campaign.name, network="all", verbosity=0,
                     **TEST_ROADS)
    assert "--replace" in str(exc.value) and "Nothing was changed" in str(exc.value)
    assert set(StreetBlock.objects.values_list("block_key", flat=True)) == before


def test_replace_replaces_unannotated_blocks_and_keeps_annotated_ones(campaign, tmp_path):
    roads, (x0, y0) = _grid_with_footways(cells_x=(50, 150))
    path = tmp_path / "roads.gpkg"
    import_roads(campaign, roads, path)
    users = interpreters(campaign)
    services.assign_blocks(campaign)
    first = stored(campaign)
    kept, replaced = at(first, x0 + 50, y0 + 50), at(first, x0 + 150, y0 + 50)
    assignment = Assignment.objects.get(block_id=kept.id, interpreter=users[0])
    services.save_annotation(assignment, users[0], request_id=uuid.uuid4(), version=0, split=split(lcz_6=1000),
                             submit=True)

    out = import_roads(campaign, roads, path, network="all", replace=True)
    assert "1 unannotated blocks replaced, 2 new blocks dropped over annotated blocks" in out
    after = stored(campaign)
    assert kept.id in set(after.id) and replaced.id not in set(after.id)
    assert Annotation.objects.get(assignment=assignment).submitted_at is not None
    halves = after[after.intersects(replaced.geometry.buffer(-1))]
    assert len(halves) == 2 and halves.area.sum() == pytest.approx(replaced.geometry.area - 2 * 93, rel=1e-3)
    assert_no_overlaps(after)


def test_import_blocks_overlap_refused_then_replaced(campaign, tmp_path):
    x, y = 385_000.0, 6_672_000.0
    first, second = tmp_path / "v1.gpkg", tmp_path / "v2.gpkg"
    gpd.GeoDataFrame(geometry=[box(x, y, x + 100, y + 100), box(x + 200, y, x + 300, y + 100)],
                     crs=METRIC_CRS).to_file(first)
    gpd.GeoDataFrame(geometry=[box(x + 10, y, x + 110, y + 100)], crs=METRIC_CRS).to_file(second)
    options = dict(campaign=campaign.name, verbosity=0, source_name="Block map", licence="CC-BY-4.0")
    call_command("import_blocks", str(first), **options)
    with pytest.raises(CommandError, match="1 new blocks would overlap 1 blocks"):
        call_command("import_blocks", str(second), **options)
    call_command("import_blocks", str(second), replace=True, **options)
    blocks = stored(campaign)
    assert len(blocks) == 2 and sorted(blocks.geometry.bounds.minx.round()) == [x + 10, x + 200]


# --- order does not matter; what cannot be assigned or predicted -----------------------------------

def test_roads_before_imagery_then_imagery_links_the_blocks(campaign, media_root, tmp_path):
    grid = grid_roads(n=3)
    import_roads(campaign, grid, tmp_path / "roads.gpkg")
    assert StreetBlock.objects.filter(scene=None).count() == StreetBlock.objects.count() == 16
    x_min, y_min, x_max, y_max = grid.total_bounds
    scene = import_tile(campaign, tmp_path / "scene.tif", x_min - 20, y_max + 20, int(x_max - x_min) + 40,
                        int(y_max - y_min) + 40)
    assert set(StreetBlock.objects.values_list("scene_id", flat=True)) == {scene.pk}


def test_blocks_outside_all_imagery_are_not_assigned(campaign, media_root, tmp_path):
    grid = grid_roads(n=3)
    x0, y0 = corner(grid)
    import_roads(campaign, grid, tmp_path / "roads.gpkg")
    import_tile(campaign, tmp_path / "left.tif", x0 - 30, y0 + 230, 120, 260)  # the left column only
    interpreters(campaign)
    err = io.StringIO()
    call_command("assign_blocks", campaign=campaign.name, stdout=io.StringIO(), stderr=err)
    blocks = stored(campaign)
    left = {at(blocks, x0 + 50, y).id for y in (y0 + 50, y0 + 150)}
    assert set(Assignment.objects.values_list("block_id", flat=True)) == left
    assert "2 blocks lie outside all of the campaign's imagery" in err.getvalue()
    result = services.assign_blocks(campaign, include_edge=True)
    assert result.skipped_outside_imagery == len(blocks[blocks.scene_id.isna()])
    assert not Assignment.objects.filter(block__scene=None).exists()


@pytest.fixture
def fake_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"not read: predict_blocks refuses first")
    (run / "model_card.json").write_text(json.dumps({"model_version": "fake-v1"}))
    return run


def test_predict_blocks_with_nothing_to_predict_says_why(campaign, media_root, tmp_path, fake_run):
    def predict():
        call_command("predict_blocks", campaign=campaign.name, checkpoint=str(fake_run), no_wait=True,
                     stdout=io.StringIO())

    with pytest.raises(CommandError, match="it has no blocks"):
        predict()
    grid = grid_roads(n=3)
    import_roads(campaign, grid, tmp_path / "roads.gpkg")
    import_tile(campaign, tmp_path / "far.tif", 400_000, 6_700_000, 16, 16)
    with pytest.raises(CommandError, match="none of its 16 blocks lies on its imagery"):
        predict()
    x_min, y_min, x_max, y_max = grid.total_bounds
    import_tile(campaign, tmp_path / "scene.tif", x_min - 20, y_max + 20, int(x_max - x_min) + 40,
                int(y_max - y_min) + 40)
    Prediction.objects.bulk_create(
        Prediction(campaign=campaign, block=b, model_version="fake-v1", permille=[1000] + [0] * 16, entropy=0,
                   bald=0, margin=1) for b in selectors.blocks_of(campaign))
    with pytest.raises(CommandError, match="model fake-v1 has already predicted all 16 of its blocks"):
        predict()
    assert not selectors.latest_prediction_jobs(campaign).exists()


def test_blocks_across_imagery_tile_seams_stay_whole(campaign, media_root, tmp_path):
    """Imagery in 2x2 tiles whose seams run through the middle of the grid's cells: the footprints'
    union has hair-thin gaps along the seams, which must not become block edges."""
    x0, y0, x1, y1 = grid_roads(n=3).total_bounds  # 240 m square, cells 100 m
    left, top = x0 - 10, y1 + 10
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    for i, (dx, w) in enumerate(((0, 80), (80, 180))):  # seams 70 m in: through the cells
        for j, (dy, h) in enumerate(((0, 80), (80, 180))):
            write_geotiff(tiles / f"t{i}{j}.tif", width=w, height=h, origin=(left + dx, top - dy))
    call_command("import_imagery", str(tiles), campaign=campaign.name, verbosity=0)
    roads = tmp_path / "roads.geojson"
    grid_roads(n=3).to_file(roads)
    call_command("import_osm_blocks", str(roads), campaign=campaign.name, verbosity=0, **TEST_ROADS)
    whole = StreetBlock.objects.filter(campaign=campaign, edge=False)
    assert whole.count() == 4 and all(b.area_m2 > 7000 for b in whole)  # the 4 cells, uncut
    for block in whole:
        assert len(shapely.from_wkb(bytes(block.geom.wkb)).interiors) == 0  # no seam slivers as holes


def test_preview_blocks_draws_the_import(team, campaign, tmp_path, capsys):
    out = tmp_path / "preview.png"
    call_command("preview_blocks", campaign=campaign.name, out=str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "4 whole blocks, 0 edge blocks, 0 outside all imagery" in capsys.readouterr().out
    empty, _ = services.create_campaign("Empty", city="Nowhere")
    with pytest.raises(CommandError, match="no blocks yet"):
        call_command("preview_blocks", campaign=empty.name, out=str(tmp_path / "x.png"))
    assert not (tmp_path / "x.png").exists()
