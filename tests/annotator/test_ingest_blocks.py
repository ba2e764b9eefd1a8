"""import_osm_blocks and import_blocks: happy paths, areas, idempotence, clipping, bad input."""
from __future__ import annotations

import geopandas as gpd
import numpy as np
import pyrosm
import pytest
from django.contrib.gis.geos import GEOSGeometry
from django.core.management import CommandError, call_command
from shapely.geometry import Point, box

from annotator.ingest.roads import road_width_m
from annotator.models import ImageryScene, StreetBlock
from tests.annotator.helpers import write_package
from tests.conftest import METRIC_CRS, ORIGIN, TEST_ROADS, grid_roads

pytestmark = pytest.mark.django_db


def stored_blocks(campaign) -> gpd.GeoDataFrame:
    rows = list(StreetBlock.objects.filter(campaign=campaign).values_list("block_key", "area_m2", "geom", "edge"))
    return gpd.GeoDataFrame(
        {"block_key": [r[0] for r in rows], "area_m2": [r[1] for r in rows], "edge": [r[3] for r in rows]},
        geometry=gpd.GeoSeries.from_wkt([r[2].wkt for r in rows]), crs="EPSG:4326",
    )


def test_grid_of_roads_gives_exact_blocks(campaign, tmp_path):
    path = tmp_path / "roads.geojson"
    grid_roads(n=3, spacing=100.0, width=10).to_file(path)
    call_command("import_osm_blocks", str(path), campaign=campaign.name, **TEST_ROADS)
    blocks = stored_blocks(campaign)
    inner = blocks[~blocks.edge]
    assert len(inner) == 4
    # each cell: 100 x 100 m between centre-lines, minus 5 m of carriageway on every side
    assert inner.area_m2.to_numpy() == pytest.approx(np.full(4, 90.0 * 90.0), rel=1e-3)
    # the 20 m the roads run on past the grid, closed by the roads' extent: 8 strips, 4 corners
    assert blocks.edge.sum() == 12
    assert set(StreetBlock.objects.values_list("source", flat=True)) == {"road_lines"}


def test_helsinki_extract_blocks_and_areas(campaign):
    call_command("import_osm_blocks", pyrosm.get_data("helsinki_pbf"), campaign=campaign.name)
    blocks = stored_blocks(campaign)
    # car roads of pyrosm's central-Helsinki extract bound a few dozen blocks of city-block size
    assert 40 <= len(blocks) <= 80
    assert 4_000 <= float(np.median(blocks.area_m2)) <= 12_000
    assert blocks.geometry.is_valid.all()
    assert (blocks.geom_type == "Polygon").all()
    # areas within 1 % of an independent computation in the national metric CRS (ETRS-TM35FIN)
    independent = blocks.to_crs(METRIC_CRS).area.to_numpy()
    assert np.abs(blocks.area_m2.to_numpy() / independent - 1).max() < 0.01
    # blocks never overlap each other
    union = blocks.to_crs(METRIC_CRS).union_all()
    assert union.area == pytest.approx(independent.sum(), rel=1e-6)


def test_network_all_gives_more_smaller_blocks(campaign):
    call_command("import_osm_blocks", pyrosm.get_data("helsinki_pbf"), campaign=campaign.name, network="all")
    blocks = stored_blocks(campaign)
    assert len(blocks) > 200
    assert float(np.median(blocks.area_m2)) < 2_000


def test_reimport_is_idempotent(campaign, tmp_path):
    path = tmp_path / "roads.gpkg"
    grid_roads(n=4).to_file(path)
    call_command("import_osm_blocks", str(path), campaign=campaign.name, **TEST_ROADS)
    keys = set(StreetBlock.objects.values_list("block_key", flat=True))
    call_command("import_osm_blocks", str(path), campaign=campaign.name, **TEST_ROADS)
    assert StreetBlock.objects.filter(edge=False).count() == 9
    assert set(StreetBlock.objects.values_list("block_key", flat=True)) == keys


def test_blocks_clipped_to_imagery_and_linked_to_scene(campaign, media_root, tmp_path, geotiff_factory):
    # imagery covering only the lower-left 150 x 150 m of a 3 x 3 grid (cells 100 m, roads 7 m)
    roads = grid_roads(n=4)
    x0, y0, _, _ = roads.total_bounds
    tif = geotiff_factory(width=150, height=150, origin=(x0 + 20, y0 + 20 + 150))
    call_command("import_imagery", str(tif), campaign=campaign.name)
    path = tmp_path / "roads.geojson"
    roads.to_file(path)
    call_command("import_osm_blocks", str(path), campaign=campaign.name, **TEST_ROADS)
    blocks = stored_blocks(campaign).to_crs(METRIC_CRS)
    footprint = box(x0 + 20, y0 + 20, x0 + 170, y0 + 170)
    assert len(blocks) == 4  # one whole cell and three clipped pieces
    assert all(footprint.buffer(0.01).contains(g) for g in blocks.geometry)
    scene_ids = set(StreetBlock.objects.values_list("scene_id", flat=True))
    assert len(scene_ids) == 1 and None not in scene_ids


def test_import_blocks_from_polygons(campaign, tmp_path):
    x, y = ORIGIN
    polys = gpd.GeoDataFrame(
        geometry=[box(x, y, x + 50, y + 40), box(x + 60, y, x + 160, y + 100), box(x + 200, y, x + 205, y + 5)],
        crs=METRIC_CRS,
    )
    path = tmp_path / "blocks.gpkg"
    polys.to_file(path)
    call_command("import_blocks", str(path), campaign=campaign.name, **TEST_ROADS)
    blocks = stored_blocks(campaign)
    assert sorted(blocks.area_m2.round(1)) == [2000.0, 10000.0]  # the 25 m² sliver dropped
    call_command("import_blocks", str(path), campaign=campaign.name, **TEST_ROADS)
    assert StreetBlock.objects.count() == 2
    assert set(StreetBlock.objects.values_list("source", flat=True)) == {"polygons"}


def test_width_from_osm_tags():
    assert road_width_m("residential", "12 m", None) == 12.0
    assert road_width_m("primary", None, "4") == pytest.approx(13.0)
    assert road_width_m("primary_link", None, None) == pytest.approx(2 * 3.25)  # a two-way link: two lanes
    assert road_width_m("residential", "narrow", None) == road_width_m("residential")


def _lines_file(tmp_path):
    p = tmp_path / "roads.geojson"
    grid_roads(n=3).to_file(p)
    return p


def _polygons_as_roads(tmp_path):
    p = tmp_path / "polys.geojson"
    gpd.GeoDataFrame(geometry=[box(*ORIGIN, ORIGIN[0] + 10, ORIGIN[1] + 10)], crs=METRIC_CRS).to_file(p)
    return p


def _single_road(tmp_path):
    p = tmp_path / "one.geojson"
    roads = grid_roads(n=2)
    roads.iloc[:1].to_file(p)
    return p


def _no_crs(tmp_path):
    p = tmp_path / "nocrs.geojson"
    p.write_text('{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},'
                 '"geometry":{"type":"LineString","coordinates":[[0,0],[1,1]]}}]}')
    return p


def _footpaths_only(tmp_path):
    p = tmp_path / "paths.geojson"
    grid_roads(n=3, highway="footway").to_crs(4326).to_file(p)
    return p


def _garbage(tmp_path):
    p = tmp_path / "roads.geojson"
    p.write_text("this is not json")
    return p


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp: tmp / "missing.osm.pbf", "file not found"),
        (lambda tmp: (tmp / "roads.csv").write_text("a,b") and tmp / "roads.csv", "unsupported format"),
        (_garbage, "could not read as a vector file"),
        (_polygons_as_roads, "expected road centre-lines (LineString), found Polygon"),
        (_single_road, "enclose no area"),
        (_footpaths_only, "no roads of the 'driving' network"),
    ],
    ids=["missing", "unknown-format", "garbage", "polygons", "nothing-enclosed", "no-car-roads"],
)
def test_bad_road_input_refused_nothing_changes(campaign, tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(CommandError) as exc:
        call_command("import_osm_blocks", str(path), campaign=campaign.name, **TEST_ROADS)
    assert message in str(exc.value) and "Nothing was changed" in str(exc.value)
    assert StreetBlock.objects.count() == 0


def test_roads_outside_imagery_give_empty_result(campaign, media_root, tmp_path, geotiff_factory):
    tif = geotiff_factory(origin=(ORIGIN[0] + 50_000, ORIGIN[1]))  # 50 km away from the roads
    call_command("import_imagery", str(tif), campaign=campaign.name)
    with pytest.raises(CommandError, match="the roads and the imagery footprint do not overlap"):
        call_command("import_osm_blocks", str(_lines_file(tmp_path)), campaign=campaign.name, **TEST_ROADS)
    assert StreetBlock.objects.count() == 0


def test_blocks_file_with_lines_refused(campaign, tmp_path):
    with pytest.raises(CommandError, match="expected block polygons, found LineString"):
        call_command("import_blocks", str(_lines_file(tmp_path)), campaign=campaign.name, **TEST_ROADS)
    assert StreetBlock.objects.count() == 0


def test_missing_crs_refused(campaign, tmp_path):
    # GeoJSON is EPSG:4326 by definition; a Shapefile without .prj has no CRS
    p = tmp_path / "roads.shp"
    gdf = grid_roads(n=3)
    gdf.set_crs(None, allow_override=True).to_file(p)
    with pytest.raises(CommandError, match="has no CRS"):
        call_command("import_osm_blocks", str(p), campaign=campaign.name, **TEST_ROADS)
    assert StreetBlock.objects.count() == 0


def test_point_inside_block_is_inside(campaign, tmp_path):
    """Blocks sit between the roads: the centre of a grid cell is inside a block, a road is not."""
    path = _lines_file(tmp_path)
    call_command("import_osm_blocks", str(path), campaign=campaign.name, **TEST_ROADS)
    blocks = stored_blocks(campaign).to_crs(METRIC_CRS)
    roads = grid_roads(n=3)
    x0, y0, _, _ = roads.total_bounds
    assert blocks.contains(Point(x0 + 20 + 50, y0 + 20 + 50)).any()
    assert not blocks.intersects(roads.union_all()).any()


# --- which scene holds a block: the one rule (annotator/ingest/scenes.py) ---------------------

def _scene(campaign, name, footprint):
    return ImageryScene.objects.create(
        campaign=campaign, name=name, cog_path=f"imagery/{name}.tif", source_name=f"{name}.tif",
        source_sha256=name.ljust(64, "0"), crs="EPSG:4326", crs_wkt="", resolution_m=1.0, width=1, height=1,
        band_count=3, footprint=GEOSGeometry(footprint.wkt, srid=4326))


@pytest.fixture
def scenes(campaign):
    """Scene "west" (made first) covers 30 % of BLOCK, scene "east" 70 %; scene "north" only meets
    the top edge of EDGE, which lies outside the others."""
    return {name: _scene(campaign, name, footprint) for name, footprint in (
        ("west", box(24.92, 60.16, 24.9303, 60.18)), ("east", box(24.9303, 60.16, 24.94, 60.18)),
        ("north", box(24.95, 60.1705, 24.97, 60.19)))}


BLOCK = box(24.9300, 60.1700, 24.9310, 60.1705)
EDGE = box(24.9600, 60.1700, 24.9610, 60.1705)


def test_a_block_over_two_scenes_goes_to_the_one_covering_more_of_it(campaign, scenes):
    from annotator import services

    blocks = gpd.GeoDataFrame({"block_key": ["b-over-two", "b-edge"], "area_m2": [3000.0, 3000.0]},
                              geometry=[BLOCK, EDGE], crs="EPSG:4326")
    services.import_street_blocks(campaign, blocks, source=StreetBlock.Source.POLYGONS)
    stored = dict(StreetBlock.objects.filter(campaign=campaign).values_list("block_key", "scene"))
    assert stored == {"b-over-two": scenes["east"].pk, "b-edge": None}


def test_import_dataset_uses_the_same_rule(campaign, scenes, tmp_path):
    """import_dataset used to take the first scene whose footprint touched the block: "west" for
    BLOCK, "north" for EDGE."""
    pkg = write_package(tmp_path / "pkg-v1", ids=("b-over-two", "b-edge"), geoms=[BLOCK, EDGE])
    call_command("import_dataset", str(pkg), campaign=campaign.name, verbosity=0)
    stored = dict(StreetBlock.objects.filter(campaign=campaign).values_list("block_key", "scene"))
    assert stored == {"b-over-two": scenes["east"].pk, "b-edge": None}
