"""MEDIA on an S3-compatible store (annotator/media.py), through a real S3 API server: moto's
server mode on 127.0.0.1, started here. import_imagery -> tiles -> export -> train from the
package, each compared with the same work on local disk; downloads; an unreachable store."""
from __future__ import annotations

import hashlib
import logging
import os
import socket
import tempfile
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import geopandas as gpd
import morecantile
import numpy as np
import pytest
import rasterio
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.urls import reverse
from moto.server import ThreadedMotoServer

from annotator import media, selectors, services, tiles
from annotator.models import Assignment, Campaign, StreetBlock
from tests.annotator.helpers import split
from tests.conftest import grid_roads

pytestmark = pytest.mark.django_db

TMS = morecantile.tms.get("WebMercatorQuad")
SPLITS = [split(lcz_6=600, lcz_b=400), split(lcz_8=700, lcz_e=300), split(lcz_a=1000), split(lcz_2=500, lcz_e=500)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 API server (moto) on 127.0.0.1 at a free port, for the whole session."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per S3 request in failure reports
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def _use_store(settings, endpoint: str, bucket: str, prefix: str = "media") -> None:
    settings.AWS_S3_ENDPOINT_URL = endpoint
    settings.AWS_ACCESS_KEY_ID, settings.AWS_SECRET_ACCESS_KEY = "test-key", "test-secret"
    settings.AWS_S3_REGION_NAME = "us-east-1"
    settings.STORAGE_URL = f"s3://{bucket}/{prefix}"
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "storages.backends.s3.S3Storage",
                                                          "OPTIONS": media.storage_options()}}


@pytest.fixture
def store(settings, s3_endpoint, tmp_path, monkeypatch):
    """Settings pointing MEDIA at a fresh bucket of the moto server; MEDIA_ROOT an empty folder that
    must stay empty; temp files in a folder of this test's own (to check no COG lands there)."""
    saved_env = dict(os.environ)
    bucket = f"lcz-{uuid.uuid4().hex[:10]}"
    _use_store(settings, s3_endpoint, bucket)
    settings.MEDIA_ROOT = tmp_path / "media-unused"
    settings.MEDIA_ROOT.mkdir()
    settings.PACKAGE_CACHE_DIR = tmp_path / "package-cache"
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    media.client().create_bucket(Bucket=bucket)
    tiles.readers.clear()
    yield bucket
    tiles.readers.clear()
    os.environ.clear()  # configure_gdal put the store's GDAL options there
    os.environ.update(saved_env)


def _keys(bucket: str, prefix: str = "") -> set[str]:
    pages = media.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def _get(bucket: str, key: str) -> bytes:
    return media.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def _sixteen_bit_tif(tmp_path: Path) -> Path:
    """A 16-bit 3-band GeoTIFF over the 3x3-road grid (4 blocks), smooth so tiles are not noise."""
    x0, y0, x1, y1 = grid_roads(n=3).total_bounds
    w, h = int(x1 - x0) + 40, int(y1 - y0) + 40
    yy, xx = np.mgrid[0:h, 0:w]
    data = np.stack([xx * 13, yy * 11, (xx + yy) * 7]).astype("uint16") + 1000
    path = tmp_path / "grid16.tif"
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=3, dtype="uint16", crs="EPSG:3067",
                       transform=rasterio.transform.from_origin(x0 - 20, y1 + 20, 1.0, 1.0)) as ds:
        ds.write(data)
    return path


def _label_all(campaign) -> None:
    for i, block in enumerate(StreetBlock.objects.filter(campaign=campaign).order_by("block_key")):
        for a in Assignment.objects.filter(block=block):
            services.save_annotation(a, a.interpreter, request_id=uuid.uuid4(), version=0,
                                     split=SPLITS[i % 4], confidence=4, submit=True)
    assert set(StreetBlock.objects.filter(campaign=campaign).values_list("status", flat=True)) == {"complete"}


def _tile(client, campaign, t) -> bytes:
    response = client.get(reverse("tiles:campaign-tile", kwargs=dict(campaign_id=campaign.pk, z=t.z, x=t.x, y=t.y,
                                                                     fmt="png")))
    assert response.status_code == 200, response.status_code
    return response.content


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


@pytest.mark.slow
def test_import_tiles_export_train_through_the_store(store, settings, campaign, tmp_path, request, client):
    bucket = store
    tif = _sixteen_bit_tif(tmp_path)
    call_command("import_imagery", str(tif), campaign=campaign.name, verbosity=0)
    campaign.refresh_from_db()
    scene = selectors.scenes_of(campaign).get()
    # the COGs and the mosaic are objects in the bucket; the database keeps relative keys
    assert campaign.mosaic_path == f"imagery/campaign-{campaign.pk}/mosaic.vrt"
    assert {f"media/{scene.cog_path}", f"media/{scene.source_cog_path}", f"media/{campaign.mosaic_path}"} <= _keys(bucket)
    assert _files(settings.MEDIA_ROOT) == [] and _files(tmp_path / "tmp") == []
    # the mosaic names its COG relative to itself, and GDAL opens it (and its COG) from the store
    vrt = ET.fromstring(_get(bucket, f"media/{campaign.mosaic_path}"))
    assert {e.text for e in vrt.iter("SourceFilename")} == {Path(scene.cog_path).name}
    with rasterio.open(selectors.imagery_raster_path(campaign)) as ds:
        assert ds.name.startswith(f"/vsis3/{bucket}/media/") and ds.read(1, window=((0, 8), (0, 8))).any()

    # a tile through the tile view, read by byte ranges: no COG lands on local disk
    user = User.objects.create_user("viewer", password="pw-12345-xyz")
    services.add_member(campaign, user, "interpreter")
    client.force_login(user)
    c = scene.footprint.centroid
    t = TMS.tile(c.x, c.y, 18)
    s3_tile = _tile(client, campaign, t)
    assert _files(settings.MEDIA_ROOT) == [] and not any(p.suffix in {".tif", ".vrt"} for p in _files(tmp_path / "tmp"))

    # label the blocks, export the package to the store: every file, SHA256SUMS uploaded last
    request.getfixturevalue("team")
    _label_all(campaign)
    call_command("export_dataset", campaign=campaign.name, out=f"s3://{bucket}/packages/grid-v1", verbosity=0)
    pkg_keys = _keys(bucket, "packages/grid-v1/")
    assert {"packages/grid-v1/SHA256SUMS", "packages/grid-v1/labels.csv", "packages/grid-v1/croissant.json"} <= pkg_keys
    assert sum(k.startswith("packages/grid-v1/images/global/") for k in pkg_keys) == 4
    with pytest.raises(CommandError, match="already exists"):
        call_command("export_dataset", campaign=campaign.name, out=f"s3://{bucket}/packages/grid-v1", verbosity=0)

    # train from the package in the store; the run (checkpoint, card) lands in the store
    call_command("train_msunet", dataset=f"s3://{bucket}/packages/grid-v1", out=f"s3://{bucket}/runs/r1",
                 encoder="swin_micro", epochs=1, img_size=64, batch_size=4, device="cpu", verbosity=0, threads=1)
    run_keys = _keys(bucket, "runs/r1/")
    assert {"runs/r1/checkpoint.pt", "runs/r1/model_card.json"} <= run_keys
    assert len(_get(bucket, "runs/r1/checkpoint.pt")) > 10_000
    cached = list((settings.PACKAGE_CACHE_DIR).iterdir())
    assert len(cached) == 1 and (cached[0] / "SHA256SUMS").read_bytes() == _get(bucket, "packages/grid-v1/SHA256SUMS")

    # the same files on local disk: the same tile bytes, the same package (SHA256SUMS byte for byte)
    local = tmp_path / "media-local"
    for key in _keys(bucket, "media/"):
        (local / key.removeprefix("media/")).parent.mkdir(parents=True, exist_ok=True)
        (local / key.removeprefix("media/")).write_bytes(_get(bucket, key))
    settings.STORAGE_URL, settings.MEDIA_ROOT = "", local
    assert _tile(client, campaign, t) == s3_tile
    call_command("export_dataset", campaign=campaign.name, out=str(tmp_path / "local" / "grid-v1"), verbosity=0)
    # SHA256SUMS line for line (chips included), but blocks.gpkg: a GeoPackage records when it was
    # written (gpkg_contents.last_change), so it is compared by content
    local_sums = (tmp_path / "local" / "grid-v1" / "SHA256SUMS").read_text().splitlines()
    s3_sums = _get(bucket, "packages/grid-v1/SHA256SUMS").decode().splitlines()
    assert len(local_sums) == len(s3_sums) > 10
    assert [x for x in local_sums if "blocks.gpkg" not in x] == [x for x in s3_sums if "blocks.gpkg" not in x]
    cached_gpkg = gpd.read_file(cached[0] / "blocks.gpkg")
    assert cached_gpkg.equals(gpd.read_file(tmp_path / "local" / "grid-v1" / "blocks.gpkg"))

    # and the same import on local disk writes the very COG that is in the store
    twin, _ = services.create_campaign("Local twin", city="Helsinki", imagery_licence="CC0 test imagery")
    call_command("import_imagery", str(tif), campaign=twin.name, verbosity=0)
    twin_scene = selectors.scenes_of(twin).get()
    assert hashlib.sha256((local / twin_scene.cog_path).read_bytes()).digest() == \
        hashlib.sha256(_get(bucket, f"media/{scene.cog_path}")).digest()


def test_maps_download_streams_from_the_store_for_admins_only(store, settings, campaign, tmp_path, request, client):
    bucket = store
    call_command("import_imagery", str(_sixteen_bit_tif(tmp_path)), campaign=campaign.name, verbosity=0)
    team = request.getfixturevalue("team")
    _label_all(campaign)
    call_command("export_maps", campaign=campaign.name, out=f"media:maps/campaign-{campaign.pk}/v1", verbosity=0)
    key = f"media/maps/campaign-{campaign.pk}/v1/overview.png"
    assert key in _keys(bucket) and _files(settings.MEDIA_ROOT) == []
    url = f"/downloads/campaigns/{campaign.pk}/maps/v1/overview.png"
    client.force_login(team["adm"])
    response = client.get(url)
    assert response.status_code == 200 and b"".join(response.streaming_content) == _get(bucket, key)
    assert client.get(f"/downloads/campaigns/{campaign.pk}/maps/v1/nope.png").status_code == 404
    assert client.get(f"/downloads/campaigns/{campaign.pk}/maps/../imagery/x.tif").status_code == 404
    client.force_login(team["ann"])  # an interpreter: no downloads
    assert client.get(url).status_code == 404


def test_unreachable_store_is_a_clear_error(store, settings, campaign, tmp_path):
    closed = _free_port()  # nothing listens there
    _use_store(settings, f"http://127.0.0.1:{closed}", store)
    with pytest.raises(media.MediaUnavailable, match=f"127.0.0.1:{closed} is unreachable"):
        services.import_imagery(campaign, _sixteen_bit_tif(tmp_path))
    assert not Campaign.objects.get(pk=campaign.pk).mosaic_path
    with pytest.raises(CommandError, match="unreachable"):
        call_command("train_msunet", dataset=f"s3://{store}/packages/none", out=str(tmp_path / "run"), verbosity=0)
    assert _files(settings.MEDIA_ROOT) == [] and _files(tmp_path / "tmp") == []


def test_missing_bucket_is_refused_naming_what_to_check(store, settings, s3_endpoint, campaign, tmp_path):
    _use_store(settings, s3_endpoint, "no-such-bucket-here")
    with pytest.raises(media.MediaUnavailable, match="refused .*check STORAGE_URL, the bucket"):
        services.import_imagery(campaign, _sixteen_bit_tif(tmp_path))
    assert not selectors.scenes_of(campaign).exists()


def test_local_default_is_unchanged(settings, media_root):
    settings.STORAGE_URL = ""
    assert not media.is_remote() and media.gdal_env() == {}
    assert media.gdal_path("imagery/x.tif") == str(media_root / "imagery" / "x.tif")
    assert media.resolve_target("media:maps/a") == media_root / "maps" / "a"
    assert media.resolve_target("var/pkg") == Path("var/pkg")
    assert media.resolve_target("s3://b/k/v1") == media.S3Location("b", "k/v1")


def test_tiles_answer_503_while_the_store_is_down(store, settings, campaign, tmp_path, client, request):
    services.import_imagery(campaign, _sixteen_bit_tif(tmp_path))
    client.force_login(request.getfixturevalue("team")["ann"])
    x0, y0, x1, y1 = selectors.imagery_footprint(campaign).extent
    t = TMS.tile((x0 + x1) / 2, (y0 + y1) / 2, 17)
    assert _tile(client, campaign, t)
    _use_store(settings, f"http://127.0.0.1:{_free_port()}", store)  # the store goes away
    tiles.readers.clear()
    response = client.get(reverse("tiles:campaign-tile", kwargs=dict(campaign_id=campaign.pk, z=t.z, x=t.x,
                                                                      y=t.y + 1, fmt="png")))
    assert response.status_code == 503 and response["Retry-After"] == "30"
