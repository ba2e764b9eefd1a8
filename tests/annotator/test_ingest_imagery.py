"""import_imagery: COG written, metadata recorded, idempotent; bad input refused with nothing changed."""
from __future__ import annotations

import pytest
import rasterio
from django.core.management import CommandError, call_command
from rio_cogeo.cogeo import cog_validate
from django.contrib.gis.geos import Point
from pyproj import Transformer

from annotator.models import ImageryScene

pytestmark = pytest.mark.django_db


def test_import_writes_valid_cog_and_records_scene(campaign, media_root, geotiff_factory):
    src = geotiff_factory(width=300, height=200, tags={"SYNTHETIC": "true"})
    call_command("import_imagery", str(src), campaign=campaign.name, licence="CC-BY 4.0 test")
    scene = ImageryScene.objects.get(campaign=campaign)
    cog = media_root / scene.cog_path
    assert cog.exists()
    valid, errors, _ = cog_validate(str(cog), quiet=True)
    assert valid, errors
    with rasterio.open(cog) as ds, rasterio.open(src) as orig:
        assert ds.count == 3 and ds.dtypes == ("uint8",) * 3
        assert ds.crs.to_epsg() == 3067
        assert (ds.read() == orig.read()).all()  # lossless
    assert scene.crs == "EPSG:3067"
    assert (scene.width, scene.height, scene.band_count) == (300, 200, 3)
    assert scene.resolution_m == pytest.approx(1.0)
    assert scene.licence == "CC-BY 4.0 test"
    assert scene.synthetic is True
    # the footprint (EPSG:4326) holds the raster centre and not a point 1 km east of it
    to_wgs84 = Transformer.from_crs(3067, 4326, always_xy=True)
    assert scene.footprint.intersects(Point(*to_wgs84.transform(385_150, 6_671_900), srid=4326))
    assert not scene.footprint.intersects(Point(*to_wgs84.transform(386_150, 6_671_900), srid=4326))
    assert 24.0 < scene.footprint.centroid.x < 26.0 and 60.0 < scene.footprint.centroid.y < 60.5


def test_reimport_same_file_changes_nothing(campaign, media_root, geotiff_factory):
    src = geotiff_factory()
    call_command("import_imagery", str(src), campaign=campaign.name)
    files_before = sorted(p.name for p in media_root.rglob("*.tif"))
    call_command("import_imagery", str(src), campaign=campaign.name)
    assert ImageryScene.objects.filter(campaign=campaign).count() == 1
    assert sorted(p.name for p in media_root.rglob("*.tif")) == files_before


def test_geographic_crs_resolution_in_metres(campaign, media_root, geotiff_factory):
    src = geotiff_factory(crs="EPSG:4326", origin=(24.9, 60.2), res=1e-5)
    call_command("import_imagery", str(src), campaign=campaign.name)
    scene = ImageryScene.objects.get(campaign=campaign)
    assert scene.resolution_m == pytest.approx(1e-5 * 111_320 * 0.4985, rel=0.01)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda f, tmp: tmp / "missing.tif", "file not found"),
        (lambda f, tmp: (tmp / "notes.tif").write_text("not an image") and tmp / "notes.tif", "not a raster"),
        (lambda f, tmp: f("nocrs.tif", georeferenced=False), "has no CRS"),
        (lambda f, tmp: f("two.tif", count=2), "has 2 image bands"),
        (lambda f, tmp: f("complex.tif", dtype="complex64"), "imagery of one of uint8"),
    ],
    ids=["missing", "not-a-raster", "no-crs", "two-bands", "complex"],
)
def test_bad_imagery_is_refused_and_nothing_changes(campaign, media_root, geotiff_factory, tmp_path, make, message):
    path = make(geotiff_factory, tmp_path)
    with pytest.raises(CommandError) as exc:
        call_command("import_imagery", str(path), campaign=campaign.name)
    assert message in str(exc.value)
    assert "Nothing was changed" in str(exc.value)
    assert ImageryScene.objects.count() == 0
    assert list(media_root.rglob("*")) == []


def test_unknown_campaign_is_refused(db, media_root, geotiff_factory):
    with pytest.raises(CommandError, match="campaign 'Nope' does not exist"):
        call_command("import_imagery", str(geotiff_factory()), campaign="Nope")
