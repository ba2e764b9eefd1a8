"""Streaming export: chips cut in parallel give the same package bytes as a serial run, blocks
streamed in small chunks give the same labels, and export_maps rasterised in small windows gives
the pixels of one whole-raster burn."""
from __future__ import annotations

import hashlib
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.features import rasterize
from rasterio.transform import from_origin

from annotator import selectors
from annotator.export import chip_pool, dataset, maps
from annotator.export.dataset import ExportOptions, export_dataset
from lcz_model.classes import CLASSES
from tests.annotator.test_export import labelled  # noqa: F401  (the 4-block labelled campaign)

pytestmark = pytest.mark.django_db


# blocks.gpkg records the time it was written (GeoPackage last_change, to the second), and
# SHA256SUMS its digest: compared by content instead
TIMESTAMPED = ("blocks.gpkg", "SHA256SUMS")


def _digests(pkg: Path) -> dict[str, str]:
    return {p.relative_to(pkg).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(pkg.rglob("*")) if p.is_file() and p.name not in TIMESTAMPED}


def _same_package(a: Path, b: Path) -> None:
    assert _digests(a) == _digests(b)
    ga, gb = gpd.read_file(a / "blocks.gpkg"), gpd.read_file(b / "blocks.gpkg")
    assert len(ga) == 4 and ga.equals(gb)
    sums = [{line for line in (p / "SHA256SUMS").read_text().splitlines() if "blocks.gpkg" not in line}
            for p in (a, b)]
    assert sums[0] == sums[1] and len(sums[0]) == len(_digests(a)) - 0


def test_parallel_chips_equal_serial_bytes(labelled, tmp_path, monkeypatch):  # noqa: F811
    campaign, *_ = labelled
    monkeypatch.setattr(chip_pool, "CHIP_CHUNK", 1)  # 4 tasks: the pool really runs with 2 workers
    serial = export_dataset(campaign, tmp_path / "pkg", ExportOptions(workers=1), progress=False)
    (tmp_path / "pkg").rename(tmp_path / "serial")
    parallel = export_dataset(campaign, tmp_path / "pkg", ExportOptions(workers=2), progress=False)
    (tmp_path / "pkg").rename(tmp_path / "parallel")
    assert serial.n_blocks == parallel.n_blocks == 4
    a = _digests(tmp_path / "serial")
    assert len([k for k in a if k.startswith("images/")]) >= 4 * 3  # global, mask and local chips per block
    _same_package(tmp_path / "serial", tmp_path / "parallel")


def test_chunked_streaming_gives_the_same_labels(labelled, tmp_path, monkeypatch):  # noqa: F811
    campaign, *_ = labelled
    export_dataset(campaign, tmp_path / "pkg", ExportOptions(workers=1), progress=False)
    (tmp_path / "pkg").rename(tmp_path / "big-chunks")
    monkeypatch.setattr(dataset, "CHUNK", 1)  # one row per round trip
    export_dataset(campaign, tmp_path / "pkg", ExportOptions(workers=1), progress=False)
    (tmp_path / "pkg").rename(tmp_path / "one-row")
    labels = (tmp_path / "one-row" / "labels.csv").read_text()
    assert labels.count("\n") == 5  # header + 4 blocks
    _same_package(tmp_path / "big-chunks", tmp_path / "one-row")


def _whole_raster_reference(campaign, resolution):
    """export_maps' pixels as one whole-raster rasterize (the code before windows), per class and dominant."""
    rows = selectors.fraction_rows(campaign, "consensus")
    geoms = gpd.GeoSeries([shapely.from_geojson(r[3]) for r in rows], crs="EPSG:4326")
    geoms_m = geoms.to_crs(geoms.estimate_utm_crs())
    fractions = np.asarray([r[2] for r in rows], dtype=np.float32) / 1000.0
    minx, miny, maxx, maxy = geoms_m.total_bounds
    width = max(1, int(np.ceil((maxx - minx) / resolution)))
    height = max(1, int(np.ceil((maxy - miny) / resolution)))
    index = rasterize(((g, i + 1) for i, g in enumerate(geoms_m.values)), out_shape=(height, width),
                      transform=from_origin(minx, maxy, resolution, resolution), fill=0, dtype="int32")
    inside = index > 0
    bands = {}
    for c in CLASSES:
        band = np.full((height, width), maps.NODATA, dtype=np.float32)
        band[inside] = fractions[index[inside] - 1, c.index]
        bands[c.key] = band
    dominant = np.zeros((height, width), dtype=np.uint8)
    dominant[inside] = fractions[index[inside] - 1].argmax(axis=1).astype(np.uint8) + 1
    return bands, dominant


def test_windowed_maps_equal_the_whole_raster(labelled, tmp_path, monkeypatch):  # noqa: F811
    campaign, *_ = labelled
    bands, dominant = _whole_raster_reference(campaign, 2.0)
    assert dominant.shape[0] > 40 and (dominant > 0).sum() > 1000
    monkeypatch.setattr(maps, "WINDOW", 17)  # many windows, with ragged ones at the right and bottom
    report = maps.export_maps(campaign, "consensus", tmp_path / "maps", resolution=2.0)
    assert report.shape == dominant.shape
    for c in CLASSES:
        with rasterio.open(tmp_path / "maps" / f"fraction_{c.key}.tif") as ds:
            np.testing.assert_array_equal(ds.read(1), bands[c.key])
            assert ds.nodata == maps.NODATA and ds.tags()["DESCRIPTION"].startswith(f"Fraction of LCZ {c.code}")
    with rasterio.open(tmp_path / "maps" / "dominant.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), dominant)
    monkeypatch.setattr(maps, "WINDOW", 2048)  # one window: the same files
    maps.export_maps(campaign, "consensus", tmp_path / "maps-one", resolution=2.0)
    for name in [f"fraction_{c.key}.tif" for c in CLASSES] + ["dominant.tif"]:
        assert (tmp_path / "maps" / name).read_bytes() == (tmp_path / "maps-one" / name).read_bytes()


def test_a_city_sized_overview_is_thinned_not_the_maps(labelled, tmp_path, monkeypatch):  # noqa: F811
    from PIL import Image

    campaign, *_ = labelled
    maps.export_maps(campaign, "consensus", tmp_path / "full", resolution=2.0)
    monkeypatch.setattr(maps, "OVERVIEW_MAX_PX", 20)  # as if the map were a city's: the overview is thinned
    maps.export_maps(campaign, "consensus", tmp_path / "thin", resolution=2.0)
    assert (tmp_path / "full" / "dominant.tif").read_bytes() == (tmp_path / "thin" / "dominant.tif").read_bytes()
    with Image.open(tmp_path / "full" / "overview.png") as a, Image.open(tmp_path / "thin" / "overview.png") as b:
        assert a.size[0] > 200 and b.size[0] > 200  # the same figure, the image drawn coarser
        assert a.tobytes() != b.tobytes()
