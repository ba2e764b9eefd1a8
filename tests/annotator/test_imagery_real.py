"""Real cities' imagery: 12/16-bit and float bands stretched to 8-bit display, grey panchromatic,
RGB+NIR band choice, many files in two CRSs as ONE seamless mosaic (one VRT, one TileJSON, one page
layer), chips of a block over two files from both, resolution warnings and --resolution."""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import morecantile
import numpy as np
import pytest
import rasterio
import shapely
from django.contrib.auth.models import User
from django.contrib.gis.geos import GEOSGeometry
from django.core.management import CommandError, call_command
from django.urls import reverse
from PIL import Image
from pyproj import Transformer
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin
from shapely.geometry import box, mapping, shape

from annotator import prediction_jobs, services
from annotator.models import Campaign, ImageryScene, PredictionJob, StreetBlock
# autouse: a private tile cache and no open readers; user_client: a member of the campaign, logged in
from tests.annotator.test_tiles import fresh_tile_state, user_client  # noqa: F401
from tests.conftest import ORIGIN

pytestmark = pytest.mark.django_db

TMS = morecantile.tms.get("WebMercatorQuad")
TO_WGS84 = Transformer.from_crs("EPSG:3067", "EPSG:4326", always_xy=True)
TILE = 256  # px (1 m) a side of each file of the 2x2 mosaic
COLOURS = {"a": (220, 40, 40), "b": (40, 200, 40), "c": (40, 40, 220), "d": (230, 220, 40)}


def write_raster(path: Path, data: np.ndarray, *, crs="EPSG:3067", origin=ORIGIN, res=1.0, colour=None,
                 descriptions=None, nodata=None, photometric=None) -> Path:
    """A GeoTIFF of `data` (bands, rows, cols; any dtype), colour interpretation and band names as given."""
    count, height, width = data.shape
    profile = dict(driver="GTiff", width=width, height=height, count=count, dtype=data.dtype.name, crs=crs,
                   transform=from_origin(origin[0], origin[1], res, res), nodata=nodata)
    if photometric:
        profile["photometric"] = photometric
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if colour:
            dst.colorinterp = colour
        for i, d in enumerate(descriptions or (), start=1):
            dst.set_band_description(i, d)
    return path


def ramp(height=256, width=256, lo=200, hi=3800, dtype="uint16") -> np.ndarray:
    """West -> east gradient from lo to hi (12-bit range by default), one band."""
    row = np.linspace(lo, hi, width)
    return np.broadcast_to(row, (1, height, width)).astype(dtype).copy()


def run(*args, **kw) -> str:
    out = io.StringIO()
    call_command("import_imagery", *map(str, args), stdout=out, **kw)
    return out.getvalue()


def campaign_tile(client, campaign, t, fmt="png"):
    return client.get(reverse("tiles:campaign-tile", kwargs=dict(campaign_id=campaign.pk, z=t.z, x=t.x, y=t.y,
                                                                 fmt=fmt)))


def rgba(response) -> np.ndarray:
    assert response.status_code == 200, (response.status_code, response.content[:200])
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGBA"))


def page_config(client, url: str, script: str) -> dict:
    page = client.get(url)
    assert page.status_code == 200, url
    return json.loads(re.search(rb'<script id="' + script.encode() + rb'" type="application/json">(.*?)</script>',
                                page.content, re.S).group(1))


def centre_tile(scene: ImageryScene, z: int):
    c = scene.footprint.centroid
    return TMS.tile(c.x, c.y, z)


# --- bit depth and bands ----------------------------------------------------------------------

def test_16_bit_panchromatic_is_grey_rgb_stretched_and_kept(campaign, media_root, tmp_path, user_client):
    src = write_raster(tmp_path / "pan.tif", ramp(), descriptions=["panchromatic"])
    out = run(src, campaign=campaign.name)
    scene = ImageryScene.objects.get(campaign=campaign)
    assert scene.source_dtype == "uint16" and scene.band_map == [1]
    assert scene.stretch["method"] == "percentile" and scene.stretch["percentiles"] == [2.0, 98.0]
    (lo, hi), = scene.stretch["bands"]
    assert 200 < lo < 400 and 3600 < hi < 3800  # 2 and 98 % of a uniform 200..3800 ramp
    assert "band 1 shown as grey" in out and "stretched to 8 bits" in out
    with rasterio.open(media_root / scene.cog_path) as ds:
        assert ds.count == 3 and ds.dtypes == ("uint8",) * 3
        rgb = ds.read()
    assert (rgb[0] == rgb[1]).all() and (rgb[1] == rgb[2]).all()  # grey
    assert rgb[0, :, 0].max() == 0 and rgb[0, :, -1].min() == 255 and 100 < rgb[0, :, 128].mean() < 160
    with rasterio.open(media_root / scene.source_cog_path) as ds:  # the original values, kept
        assert ds.dtypes == ("uint16",) and (ds.read() == ramp()).all()
    image = rgba(campaign_tile(user_client, campaign, centre_tile(scene, 17)))
    inside = image[image[..., 3] == 255]
    assert len(inside) and inside[:, :3].mean() > 40  # not black
    assert (inside[:, 0] == inside[:, 1]).all() and (inside[:, 1] == inside[:, 2]).all()


def test_fixed_stretch_is_used_and_recorded(campaign, media_root, tmp_path):
    src = write_raster(tmp_path / "pan.tif", ramp(lo=0, hi=4095))
    run(src, campaign=campaign.name, stretch="0,4095")
    scene = ImageryScene.objects.get(campaign=campaign)
    assert scene.stretch == {"method": "fixed", "bands": [[0.0, 4095.0]]}
    with rasterio.open(media_root / scene.cog_path) as ds:
        grey = ds.read(1)
    assert np.abs(grey[0].astype(int) - np.rint(ramp(lo=0, hi=4095)[0, 0].astype(float) * 255 / 4095)).max() <= 1


@pytest.mark.parametrize("order, band_map", [
    ((ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.nir), [1, 2, 3]),
    ((ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.nir), [3, 2, 1]),
], ids=["rgbn", "bgrn"])
def test_rgb_nir_shows_the_colour_bands_and_says_nir_is_not_used(campaign, media_root, tmp_path, order, band_map):
    data = np.stack([ramp(lo=100 * (i + 1), hi=1000 * (i + 1))[0] for i in range(4)])
    src = write_raster(tmp_path / "rgbn.tif", data, colour=order)
    out = run(src, campaign=campaign.name)
    scene = ImageryScene.objects.get(campaign=campaign)
    assert scene.band_map == band_map
    assert "band 4 (NIR) not used" in out and "(colour interpretation)" in out
    with rasterio.open(media_root / scene.source_cog_path) as ds:
        assert ds.count == 4 and ds.dtypes[0] == "uint16"  # NIR kept with the original values


def test_bands_option_gives_false_colour(campaign, media_root, tmp_path):
    nir = np.full((1, 128, 128), 3000, np.uint16)
    nir[:, :, :64] = 2000
    red = np.full((1, 128, 128), 300, np.uint16)
    data = np.concatenate([red, red + 10, red + 20, nir])
    src = write_raster(tmp_path / "rgbn.tif", data,
                       colour=(ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.nir))
    out = run(src, campaign=campaign.name, bands="4,3,2")
    scene = ImageryScene.objects.get(campaign=campaign)
    assert scene.band_map == [4, 3, 2] and "bands 4,3,2 shown as RGB (--bands)" in out
    assert "band 1 (red) not used" in out
    with rasterio.open(media_root / scene.cog_path) as ds:
        shown_red = ds.read(1)
    assert shown_red[:, 100].mean() > shown_red[:, 10].mean() + 100  # NIR's bright east half, shown as red
    with pytest.raises(CommandError, match="names band 7"):
        run(src, campaign=campaign.name, bands="7,3,2")


def test_float32_reflectance_with_nan_nodata(campaign, media_root, tmp_path):
    data = np.stack([ramp(lo=0, hi=0.3, dtype="float32")[0] * f for f in (1.0, 0.9, 0.8)])
    data[:, :, :32] = np.nan  # no data there
    src = write_raster(tmp_path / "reflectance.tif", data, nodata=float("nan"),
                       colour=(ColorInterp.red, ColorInterp.green, ColorInterp.blue))
    run(src, campaign=campaign.name)
    scene = ImageryScene.objects.get(campaign=campaign)
    assert scene.source_dtype == "float32" and scene.band_map == [1, 2, 3]
    assert all(0.0 < lo < hi <= 0.3 for lo, hi in scene.stretch["bands"])
    with rasterio.open(media_root / scene.cog_path) as ds:
        rgb, mask = ds.read(), ds.dataset_mask()
    assert ds.dtypes == ("uint8",) * 3
    assert mask[:, :32].max() == 0 and mask[:, 32:].min() == 255  # NaN is masked, not black imagery
    assert rgb[0, :, -1].min() == 255 and rgb[0, :, 40].max() < 30
    with rasterio.open(media_root / scene.source_cog_path) as ds:
        assert ds.dtypes[0] == "float32" and np.allclose(ds.read()[:, :, 32:], data[:, :, 32:])


def test_8_bit_rgb_keeps_no_second_copy(campaign, media_root, geotiff_factory):
    run(geotiff_factory(), campaign=campaign.name)
    scene = ImageryScene.objects.get(campaign=campaign)
    assert scene.source_dtype == "uint8" and scene.band_map == [1, 2, 3] and scene.stretch is None
    assert scene.source_cog_path == ""


# --- many files, one layer ----------------------------------------------------------------------

def _to_32635(x, y):
    return Transformer.from_crs("EPSG:3067", "EPSG:32635", always_xy=True).transform(x, y)


@pytest.fixture
def mosaic_folder(tmp_path) -> Path:
    """2x2 files of 256 m, a checkerboard of CRSs: a (north-west) and d (south-east) in ETRS-TM35FIN,
    b and c in UTM 35N, each one solid colour, abutting in ETRS-TM35FIN."""
    folder = tmp_path / "tiles"
    folder.mkdir()
    x0, y0 = ORIGIN
    for name, (col, row), crs in (("a", (0, 0), "EPSG:3067"), ("b", (1, 0), "EPSG:32635"),
                                  ("c", (0, 1), "EPSG:32635"), ("d", (1, 1), "EPSG:3067")):
        corner = (x0 + col * TILE, y0 - row * TILE)
        origin = corner if crs == "EPSG:3067" else _to_32635(*corner)
        data = np.stack([np.full((TILE, TILE), v, np.uint8) for v in COLOURS[name]])
        write_raster(folder / f"{name}.tif", data, crs=crs, origin=origin, photometric="RGB")
    return folder


@pytest.fixture
def mosaic(campaign, media_root, mosaic_folder):
    out = run(mosaic_folder, campaign=campaign.name, attribution="Tiles provider")
    campaign.refresh_from_db()
    return campaign, out


def _seam_point():
    return ORIGIN[0] + TILE, ORIGIN[1] - TILE  # where the four files meet


def test_a_folder_in_two_crss_becomes_one_vrt_in_the_campaigns_crs(mosaic, media_root):
    campaign, out = mosaic
    scenes = list(ImageryScene.objects.filter(campaign=campaign).order_by("source_name"))
    assert [s.source_name for s in scenes] == ["a.tif", "b.tif", "c.tif", "d.tif"]
    assert {s.crs for s in scenes} == {"EPSG:3067"}  # b and c warped into the first scene's CRS
    assert out.count("warped from EPSG:32635") == 2
    assert campaign.mosaic_path == f"imagery/campaign-{campaign.pk}/mosaic.vrt"
    with rasterio.open(media_root / campaign.mosaic_path) as vrt:
        assert vrt.driver == "VRT" and vrt.count == 3 and vrt.crs.to_epsg() == 3067
        assert len(vrt.files) == 5  # the VRT and the four display COGs
        assert vrt.overviews(1) == [2]  # zoomed-out tiles read the COGs' overviews, not every pixel
        window = vrt.window(ORIGIN[0] + 2, ORIGIN[1] - 2 * TILE + 2, ORIGIN[0] + 2 * TILE - 2, ORIGIN[1] - 2)
        rgb, mask = vrt.read(window=window), vrt.dataset_mask(window=window)
    assert mask.min() == 255  # no gap along the seams
    h, w = mask.shape
    quadrants = {"a": (slice(0, h // 2 - 3), slice(0, w // 2 - 3)), "b": (slice(0, h // 2 - 3), slice(w // 2 + 3, w)),
                 "c": (slice(h // 2 + 3, h), slice(0, w // 2 - 3)), "d": (slice(h // 2 + 3, h), slice(w // 2 + 3, w))}
    for name, (rows, cols) in quadrants.items():
        assert (rgb[:, rows, cols].reshape(3, -1).T == COLOURS[name]).all(), name


def test_one_tilejson_covers_all_files_and_a_seam_tile_shows_them_all(mosaic, user_client):
    campaign, _ = mosaic
    tj = user_client.get(reverse("tiles:campaign-tilejson", args=[campaign.pk])).json()
    west, south, east, north = tj["bounds"]
    for s in ImageryScene.objects.filter(campaign=campaign):
        fx0, fy0, fx1, fy1 = s.footprint.extent
        assert west <= fx0 + 1e-6 and south <= fy0 + 1e-6 and east >= fx1 - 1e-6 and north >= fy1 - 1e-6
    assert tj["tiles"][0] == f"http://testserver/tiles/campaigns/{campaign.pk}/{{z}}/{{x}}/{{y}}.webp"
    assert tj["scenes"] == 4 and "Tiles provider" in tj["attribution"] and tj["crs"] == "EPSG:3067"
    t = TMS.tile(*TO_WGS84.transform(*_seam_point()), 17)
    image = rgba(campaign_tile(user_client, campaign, t))
    opaque = image[image[..., 3] == 255][:, :3]
    for name, colour in COLOURS.items():
        assert (np.abs(opaque.astype(int) - colour).sum(axis=1) <= 6).sum() > 100, name


def test_the_pages_draw_one_layer_crediting_every_scene(campaign, media_root, mosaic_folder, user_client):
    run(mosaic_folder / "a.tif", campaign=campaign.name, attribution="Provider A", licence="CC-BY-4.0")
    run(mosaic_folder / "d.tif", campaign=campaign.name, attribution="Provider D", licence="CC0-1.0")
    layers = page_config(user_client, f"/campaigns/{campaign.pk}/work/", "ws-config")["campaign"]["scenes"]
    assert len(layers) == 1
    assert layers[0]["tiles"] == f"/tiles/campaigns/{campaign.pk}/{{z}}/{{x}}/{{y}}.webp"
    assert layers[0]["attribution"] == "Provider A; Provider D" and layers[0]["licence"] == "CC-BY-4.0; CC0-1.0"
    api = user_client.get(f"/api/campaigns/{campaign.pk}/").json()
    assert api["imagery"]["tilejson"] == f"/tiles/campaigns/{campaign.pk}/tilejson.json"
    assert len(api["scenes"]) == 2 and "tiles" not in api["scenes"][0]
    reviewer = User.objects.create_user("rev-real", password="pw-12345-xyz")
    services.add_member(campaign, reviewer, "reviewer")
    user_client.force_login(reviewer)
    for url, script in ((f"/dashboard/campaigns/{campaign.pk}/", "dash-config"),
                        (f"/dashboard/campaigns/{campaign.pk}/maps/", "maps-config")):
        layers = page_config(user_client, url, script)["scenes"]
        assert len(layers) == 1 and layers[0]["tilejson"] == f"/tiles/campaigns/{campaign.pk}/tilejson.json"
        assert layers[0]["attribution"] == "Provider A; Provider D · Licence: CC-BY-4.0; CC0-1.0"


def test_campaign_tiles_are_members_only_cached_and_change_with_the_mosaic(mosaic_folder, campaign, media_root,
                                                                            client, user_client):
    run(mosaic_folder / "a.tif", campaign=campaign.name)
    campaign.refresh_from_db()
    t = TMS.tile(*TO_WGS84.transform(ORIGIN[0] + 100, ORIGIN[1] - 100), 17)
    first = campaign_tile(user_client, campaign, t)
    assert first.status_code == 200
    assert campaign_tile(user_client, campaign, t, "webp")["Cache-Control"] == "private, max-age=86400"
    again = user_client.get(first.wsgi_request.path, HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304
    scene = ImageryScene.objects.get(campaign=campaign)  # the per-scene endpoints still work
    assert user_client.get(reverse("tiles:tile", kwargs=dict(scene_id=scene.pk, z=t.z, x=t.x, y=t.y,
                                                        fmt="png"))).status_code == 200
    run(mosaic_folder / "b.tif", campaign=campaign.name)  # the mosaic is rebuilt: new ETag, new pixels
    after = campaign_tile(user_client, campaign, t)
    assert after.status_code == 200 and after["ETag"] != first["ETag"]
    empty = Campaign.objects.create(name="No imagery", city="Helsinki")
    services.add_member(empty, User.objects.get(username="interp"), "interpreter")
    assert user_client.get(reverse("tiles:campaign-tilejson", args=[empty.pk])).status_code == 404
    outsider = User.objects.create_user("outsider", password="pw-12345-xyz")
    client.force_login(outsider)
    assert campaign_tile(client, campaign, t).status_code == 403
    assert client.get(reverse("tiles:campaign-tilejson", args=[campaign.pk])).status_code == 403
    client.logout()
    assert campaign_tile(client, campaign, t).status_code == 403


# --- a block over two files: chips from both ----------------------------------------------------

def _straddling_blocks(campaign) -> list[StreetBlock]:
    """One block across the seam of a (red, ETRS-TM35FIN) and b (green, UTM 35N), one inside d."""
    x, y = _seam_point()
    a = ImageryScene.objects.get(campaign=campaign, source_name="a.tif")
    d = ImageryScene.objects.get(campaign=campaign, source_name="d.tif")
    blocks = []
    for key, geom, scene in (("seam-ab", box(x - 60, y + 150, x + 50, y + 210), a),
                             ("inside-d", box(x + 60, y - 160, x + 140, y - 80), d)):
        wgs = shapely.transform(geom, lambda xy: np.column_stack(TO_WGS84.transform(xy[:, 0], xy[:, 1])))
        blocks.append(StreetBlock.objects.create(
            campaign=campaign, block_key=key, geom=GEOSGeometry(json.dumps(mapping(wgs)), srid=4326),
            area_m2=geom.area, source=StreetBlock.Source.POLYGONS, source_name="test blocks", licence="CC0-1.0",
            scene=scene, status=StreetBlock.Status.COMPLETE, consensus=[1000] + [0] * 16,
            final_permille=[1000] + [0] * 16))
    return blocks


def _colour_share(rgb: np.ndarray, name: str) -> float:
    return float((np.abs(rgb.reshape(-1, 3).astype(int) - COLOURS[name]).sum(axis=1) <= 6).mean())


def test_prediction_chips_of_a_block_over_two_files_come_from_both(mosaic, media_root, monkeypatch):
    campaign, _ = mosaic
    seam, _inside = _straddling_blocks(campaign)
    seen = []

    def fake_mc_predict(model, chips, **kw):
        seen.extend(chips)
        mean = np.full((len(chips), 17), 1 / 17)
        return mean, np.stack([mean] * 2)

    from lcz_model import acquisition

    monkeypatch.setattr(acquisition, "mc_predict", fake_mc_predict)
    monkeypatch.setattr(prediction_jobs, "loaded_model", lambda checkpoint: None)
    job = PredictionJob.objects.create(campaign=campaign, checkpoint="unused", model_version="fake-v1", total=1)
    assert prediction_jobs.predict_and_store(job, [seam.pk]) == 1
    local = seen[0].local[0]
    assert _colour_share(local, "a") > 0.02 and _colour_share(local, "b") > 0.02
    from lcz_model.chips import cut_block_chips  # the block's own scene alone has none of b's pixels

    own = cut_block_chips(str(media_root / seam.scene.cog_path), shapely.from_wkb(bytes(seam.geom.wkb)),
                          polygon_crs="EPSG:4326").local[0]
    assert _colour_share(own, "a") > 0.02 and _colour_share(own, "b") == 0


def test_export_chips_of_a_block_over_two_files_come_from_both(mosaic, tmp_path):
    from annotator.export.dataset import ExportOptions, export_dataset

    campaign, _ = mosaic
    _straddling_blocks(campaign)
    pkg = tmp_path / "mosaic-v1"
    export_dataset(campaign, pkg, ExportOptions(workers=1, test_fraction=0.5), progress=False)
    local = np.asarray(Image.open(pkg / "images/local/seam-ab_0.png").convert("RGB"))
    assert _colour_share(local, "a") > 0.02 and _colour_share(local, "b") > 0.02
    readme = (pkg / "README.md").read_text()
    licence = (pkg / "LICENSE").read_text()
    for s in ImageryScene.objects.filter(campaign=campaign):  # the scenes under the blocks: a, b (seam) and d
        line = f"  - scene {s.pk} ({s.name}): uint8, bands 1,2,3 shown as RGB, 8-bit values as delivered"
        assert (line in readme) == (s.name != "c") and (f"scene {s.pk} ({s.name}" in licence) == (s.name != "c")
    again = tmp_path / "again" / "mosaic-v1"
    export_dataset(campaign, again, ExportOptions(workers=2, test_fraction=0.5), progress=False)
    sums = [[line for line in (p / "SHA256SUMS").read_text().splitlines() if not line.endswith("blocks.gpkg")]
            for p in (pkg, again)]
    assert sums[0] == sums[1] and any("images/local/seam-ab_0.png" in line for line in sums[0])  # deterministic


def test_a_bad_file_in_a_folder_refuses_the_whole_import(campaign, media_root, mosaic_folder):
    good = (mosaic_folder / "a.tif").read_bytes()
    (mosaic_folder / "e.tif").write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(CommandError) as exc:
        run(mosaic_folder, campaign=campaign.name)
    assert "e.tif" in str(exc.value) and "truncated or corrupt" in str(exc.value)
    assert "Nothing was changed" in str(exc.value)
    assert ImageryScene.objects.count() == 0 and list(media_root.rglob("*")) == []
    campaign.refresh_from_db()
    assert campaign.mosaic_path == ""


# --- resolution ---------------------------------------------------------------------------------

@pytest.mark.parametrize("res, words", [(5.0, "coarser than 2 m"), (0.1, "finer than 0.2 m")])
def test_resolution_outside_street_block_range_warns(campaign, media_root, geotiff_factory, res, words):
    out = run(geotiff_factory(res=res), campaign=campaign.name)
    assert "warning:" in out and words in out
    assert ImageryScene.objects.get(campaign=campaign).resolution_m == pytest.approx(res)


def test_resolution_option_resamples_while_writing_the_cog(campaign, media_root, geotiff_factory):
    src = geotiff_factory(width=400, height=200, res=0.1)
    out = run(src, campaign=campaign.name, resolution=0.5)
    scene = ImageryScene.objects.get(campaign=campaign)
    assert scene.resolution_m == pytest.approx(0.5) and (scene.width, scene.height) == (80, 40)
    assert "warning" not in out and "at 0.50 m" in out
    with rasterio.open(media_root / scene.cog_path) as ds:
        assert ds.res == pytest.approx((0.5, 0.5)) and ds.dataset_mask().min() == 255
    assert shape(json.loads(scene.footprint.json)).area > 0
