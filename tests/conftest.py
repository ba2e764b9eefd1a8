"""Shared test fixtures: temporary MEDIA_ROOT, small GeoTIFFs and road files made on the fly."""
from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import LineString, box

# ETRS-TM35FIN, metric; a place in Helsinki.
METRIC_CRS = "EPSG:3067"
ORIGIN = (385_000.0, 6_672_000.0)


@pytest.fixture(autouse=True)
def fast_password_hashing(request):
    """MD5 hashing in tests (PBKDF2 costs ~0.3 s a user). Without pytest-django (`-p no:django`,
    e.g. for the lcz_model tests, which never import Django) there is nothing to set."""
    if not request.config.pluginmanager.hasplugin("django"):
        return
    request.getfixturevalue("settings").PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def media_root(settings, tmp_path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    return root


def write_geotiff(path: Path, *, width=64, height=64, count=3, dtype="uint8", crs=METRIC_CRS,
                  origin=ORIGIN, res=1.0, georeferenced=True, tags=None) -> Path:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, size=(count, height, width)).astype(dtype)
    profile = dict(driver="GTiff", width=width, height=height, count=count, dtype=dtype)
    if georeferenced:
        profile.update(crs=crs, transform=from_origin(origin[0], origin[1], res, res))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if tags:
            dst.update_tags(**tags)
    return path


@pytest.fixture
def geotiff_factory(tmp_path):
    def make(name="scene.tif", **kw):
        return write_geotiff(tmp_path / name, **kw)
    return make


# what a test passes for the provenance of grid_roads' lines (import_osm_blocks wants it for a road-lines file)
TEST_ROADS = dict(source_name="synthetic test roads", licence="CC0-1.0")


def grid_roads(n=3, spacing=100.0, origin=ORIGIN, highway="residential", width=None) -> gpd.GeoDataFrame:
    """n horizontal and n vertical straight roads, `spacing` m apart, in METRIC_CRS:
    (n-1)^2 enclosed cells of spacing x spacing m between centre-lines."""
    x0, y_top = origin
    y0 = y_top - (n - 1) * spacing - 50
    x0 = x0 + 50
    length = (n - 1) * spacing
    lines = []
    for i in range(n):
        lines.append(LineString([(x0 - 20, y0 + i * spacing), (x0 + length + 20, y0 + i * spacing)]))
        lines.append(LineString([(x0 + i * spacing, y0 - 20), (x0 + i * spacing, y0 + length + 20)]))
    data = {"highway": [highway] * len(lines)}
    if width is not None:
        data["width"] = [str(width)] * len(lines)
    return gpd.GeoDataFrame(data, geometry=lines, crs=METRIC_CRS)


@pytest.fixture
def campaign(db):
    from annotator import services

    campaign, _ = services.create_campaign("Test campaign", city="Helsinki", imagery_licence="CC0 test imagery")
    return campaign


def grid_boundary(n=3, spacing=100.0, origin=ORIGIN) -> gpd.GeoDataFrame:
    """The study area inside grid_roads' outer roads (METRIC_CRS): blocks closed by it are exactly the
    grid's (n-1)^2 cells, with no edge strips beyond the outer roads."""
    x0, y0, x1, y1 = grid_roads(n=n, spacing=spacing, origin=origin).total_bounds
    return gpd.GeoDataFrame(geometry=[box(x0 + 20, y0 + 20, x1 - 20, y1 - 20)], crs=METRIC_CRS)
