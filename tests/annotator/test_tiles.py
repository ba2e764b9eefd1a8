"""Imagery tiles: real COGs written by services.import_imagery, in a metric CRS and in WGS 84,
served as Web Mercator XYZ tiles through the tile views (login, 204/403/404, cache, ETag)."""
from __future__ import annotations

import io
import os
import threading

import morecantile
import numpy as np
import pytest
import rasterio
from django.contrib.auth.models import User
from django.urls import include, path, reverse
from PIL import Image
from rasterio.warp import transform_bounds
from rasterio.windows import from_bounds

from annotator import services, tiles
from annotator.ingest.imagery import write_cog

# This module is its own URLconf, so the tests do not depend on where config/urls.py mounts it.
urlpatterns = [path("tiles/", include("annotator.tile_urls"))]
pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

TMS = morecantile.tms.get("WebMercatorQuad")
SIZE = 512
CRS_CASES = {
    "etrs-tm35fin": dict(crs="EPSG:3067", origin=(385_000.0, 6_672_000.0), res=1.0),
    "wgs84": dict(crs="EPSG:4326", origin=(24.93, 60.175), res=1e-5),
}


def paint(path, *, blue=90, flip=False):
    """Gradients: red grows west->east, green north->south; a tile's mean colour says where it is."""
    ramp = (np.arange(SIZE) * 255 // (SIZE - 1)).astype(np.uint8)
    if flip:
        ramp = ramp[::-1]
    rgb = np.stack([np.broadcast_to(ramp, (SIZE, SIZE)), np.broadcast_to(ramp[:, None], (SIZE, SIZE)),
                    np.full((SIZE, SIZE), blue, np.uint8)])
    with rasterio.open(path, "r+") as dst:
        dst.write(rgb)
    return path


@pytest.fixture(autouse=True)
def fresh_tile_state(settings):
    """A private in-memory tile cache (never clear() a shared Redis) and no open readers."""
    settings.CACHES = {**settings.CACHES, "tiles": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "test-tiles"}}
    tiles.tile_cache().clear()
    tiles.readers.clear()
    yield
    tiles.readers.clear()


@pytest.fixture(params=sorted(CRS_CASES))
def scene_case(request, media_root, campaign, geotiff_factory):
    kw = CRS_CASES[request.param]
    src = paint(geotiff_factory(f"scene-{request.param}.tif", width=SIZE, height=SIZE, **kw))
    scene, created = services.import_imagery(campaign, src, attribution="Test imagery provider")
    assert created and scene.crs == kw["crs"]
    return scene, src


@pytest.fixture
def scene(scene_case):
    return scene_case[0]


@pytest.fixture
def user_client(client, campaign):
    from annotator import services

    user = User.objects.create_user("interp", password="pw-12345-xyz")
    services.add_member(campaign, user, "interpreter")
    client.force_login(user)
    return client


@pytest.fixture
def read_counter(monkeypatch):
    calls = []
    real = tiles.read_tile

    def counting(*args, **kw):
        calls.append(args[1:])
        return real(*args, **kw)

    monkeypatch.setattr(tiles, "read_tile", counting)
    return calls


def centre_tile(scene, z):
    c = scene.footprint.centroid
    return TMS.tile(c.x, c.y, z)


def tile_url(scene, t, fmt="jpeg"):
    return reverse("tiles:tile", kwargs=dict(scene_id=scene.pk, z=t.z, x=t.x, y=t.y, fmt=fmt))


def decode(response):
    return Image.open(io.BytesIO(response.content))


def expected_mean(src, t):
    """Mean colour of the source pixels under tile t (its bounds taken into the source CRS)."""
    with rasterio.open(src) as ds:
        b = transform_bounds("EPSG:3857", ds.crs, *TMS.xy_bounds(t), densify_pts=21)
        return ds.read(window=from_bounds(*b, transform=ds.transform)).reshape(3, -1).mean(axis=1)


def test_tile_over_scene_is_the_scene_in_web_mercator(user_client, scene_case):
    scene, src = scene_case
    t = centre_tile(scene, 17)
    for fmt, mime in (("jpeg", "image/jpeg"), ("webp", "image/webp"), ("png", "image/png")):
        response = user_client.get(tile_url(scene, t, fmt))
        assert response.status_code == 200, response.content[:200]
        assert response["Content-Type"] == mime
        image = decode(response)
        assert image.size == (256, 256)
        rgb = np.asarray(image.convert("RGB"), dtype=float)
        assert rgb.std() > 5  # not blank
        if image.mode == "RGBA":  # fully covered: opaque everywhere
            assert np.asarray(image)[..., 3].min() == 255
        got = rgb.reshape(-1, 3).mean(axis=0)
        assert np.allclose(got, expected_mean(src, t), atol=8), (fmt, got, expected_mean(src, t))


def test_neighbouring_tiles_follow_the_gradient(user_client, scene):
    """Georeferencing, not just colour: the tile east of the centre is redder, the one south greener."""
    t = centre_tile(scene, 18)
    east = morecantile.Tile(t.x + 1, t.y, t.z)
    south = morecantile.Tile(t.x, t.y + 1, t.z)
    mean = {k: np.asarray(decode(user_client.get(tile_url(scene, v))).convert("RGB"), float).reshape(-1, 3).mean(0)
            for k, v in dict(c=t, e=east, s=south).items()}
    assert mean["e"][0] > mean["c"][0] + 5 and abs(mean["e"][1] - mean["c"][1]) < 3
    assert mean["s"][1] > mean["c"][1] + 5 and abs(mean["s"][0] - mean["c"][0]) < 3


def test_partly_covered_tile_is_transparent_outside_the_scene(user_client, scene):
    t = centre_tile(scene, 13)  # the 512 px scene covers a small part of a z13 tile
    for fmt in ("png", "webp"):
        image = decode(user_client.get(tile_url(scene, t, fmt)))
        assert image.mode == "RGBA"
        alpha = np.asarray(image)[..., 3]
        assert alpha.min() == 0 and alpha.max() == 255 and 0.001 < (alpha == 255).mean() < 0.5
    jpeg = user_client.get(tile_url(scene, t, "jpeg"))  # JPEG has no alpha: black outside
    assert jpeg.status_code == 200 and decode(jpeg).mode == "RGB"


def test_tile_far_away_is_204(user_client, scene):
    response = user_client.get(tile_url(scene, TMS.tile(0.0, 0.0, 17)))
    assert response.status_code == 204 and response.content == b""
    assert response["Cache-Control"] == "private, max-age=86400"
    assert tiles.render_tile(scene, 17, *TMS.tile(0.0, 0.0, 17)[:2]) is None


def test_anonymous_gets_403_not_a_login_redirect(client, scene):
    t = centre_tile(scene, 17)
    for url in (tile_url(scene, t), reverse("tiles:tilejson", args=[scene.pk])):
        response = client.get(url)
        assert response.status_code == 403
        assert response["Content-Type"].startswith("text/plain")


def test_users_outside_the_campaign_get_403(client, scene):
    client.force_login(User.objects.create_user("stranger", password="pw-12345-xyz"))
    assert client.get(tile_url(scene, centre_tile(scene, 17))).status_code == 403


def test_unknown_scene_and_bad_addresses_are_404(user_client, scene):
    t = centre_tile(scene, 17)
    assert user_client.get(tile_url(type("S", (), {"pk": scene.pk + 1000})(), t)).status_code == 404
    assert user_client.get(reverse("tiles:tilejson", args=[scene.pk + 1000])).status_code == 404
    base = f"/tiles/{scene.pk}"
    for bad in ("3/8/0.jpeg", "3/0/8.jpeg", "25/0/0.jpeg", f"{t.z}/{t.x}/{t.y}.gif", f"{t.z}/{t.x}/{t.y}"):
        assert user_client.get(f"{base}/{bad}").status_code == 404, bad
    assert user_client.get(f"{base}/{t.z}/{t.x}/{t.y}.jpg").status_code == 200


def test_missing_cog_is_404_not_500(user_client, scene, media_root):
    os.unlink(media_root / scene.cog_path)
    assert user_client.get(tile_url(scene, centre_tile(scene, 17))).status_code == 404


def test_repeat_tiles_come_from_the_cache(user_client, scene, read_counter):
    t = centre_tile(scene, 17)
    first = user_client.get(tile_url(scene, t))
    second = user_client.get(tile_url(scene, t))
    assert first.status_code == second.status_code == 200
    assert second.content == first.content and len(read_counter) == 1  # no second read
    user_client.get(tile_url(scene, t, "webp"))  # another format is another tile
    assert len(read_counter) == 2
    far = TMS.tile(0.0, 0.0, 17)
    assert user_client.get(tile_url(scene, far)).status_code == 204
    assert user_client.get(tile_url(scene, far)).status_code == 204
    assert len(read_counter) == 3  # "no imagery here" is cached too


def test_replaced_cog_never_serves_stale_tiles(user_client, scene_case, read_counter, geotiff_factory, media_root):
    scene, src = scene_case
    t = centre_tile(scene, 17)
    before = user_client.get(tile_url(scene, t))
    kw = CRS_CASES["wgs84" if scene.crs == "EPSG:4326" else "etrs-tm35fin"]
    other = paint(geotiff_factory("replacement.tif", width=SIZE, height=SIZE, **kw), blue=250, flip=True)
    write_cog(other, media_root / scene.cog_path)  # same path, new file
    after = user_client.get(tile_url(scene, t))
    assert after.status_code == 200 and len(read_counter) == 2
    assert after.content != before.content and after["ETag"] != before["ETag"]
    assert np.asarray(decode(after).convert("RGB"))[..., 2].mean() > 200  # the new blue


def test_a_cache_outage_still_serves_tiles(user_client, scene, settings):
    settings.CACHES = {**settings.CACHES, "tiles": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}}
    response = user_client.get(tile_url(scene, centre_tile(scene, 17)))
    assert response.status_code == 200 and decode(response).size == (256, 256)


def test_etag_and_304(user_client, scene, read_counter):
    url = tile_url(scene, centre_tile(scene, 17))
    first = user_client.get(url)
    etag = first["ETag"]
    assert etag.startswith('"') and first["Cache-Control"] == "private, max-age=86400"
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = user_client.get(url, HTTP_IF_NONE_MATCH=header)
        assert again.status_code == 304 and again.content == b"", header
        assert again["ETag"] == etag and again["Cache-Control"] == "private, max-age=86400"
    assert user_client.get(url, HTTP_IF_NONE_MATCH='"other"').status_code == 200
    tiles.tile_cache().clear()
    assert user_client.get(url, HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert len(read_counter) == 1  # a 304 never reads pixels, even with the cache emptied


def test_tilejson(user_client, scene):
    response = user_client.get(reverse("tiles:tilejson", args=[scene.pk]))
    assert response.status_code == 200
    tj = response.json()
    assert tj["tilejson"] == "3.0.0" and tj["scheme"] == "xyz"
    west, south, east, north = tj["bounds"]
    fx0, fy0, fx1, fy1 = scene.footprint.extent
    assert west <= fx0 + 1e-9 and south <= fy0 + 1e-9 and east >= fx1 - 1e-9 and north >= fy1 - 1e-9
    assert east - west < 2 * (fx1 - fx0) + 1e-3 and north - south < 2 * (fy1 - fy0) + 1e-3
    assert 0 <= tj["minzoom"] <= tj["maxzoom"] <= 24 and tj["maxzoom"] >= 16  # ~1 m imagery
    assert "Test imagery provider" in tj["attribution"] and "CC0 test imagery" in tj["attribution"]
    template = tj["tiles"][0]
    assert template == f"http://testserver/tiles/{scene.pk}/{{z}}/{{x}}/{{y}}.webp"
    t = centre_tile(scene, tj["maxzoom"])
    filled = template.format(z=t.z, x=t.x, y=t.y).removeprefix("http://testserver")
    assert user_client.get(filled).status_code == 200
    jpeg = user_client.get(reverse("tiles:tilejson", args=[scene.pk]), {"format": "jpeg"}).json()
    assert jpeg["tiles"][0].endswith("{z}/{x}/{y}.jpeg")
    assert user_client.get(reverse("tiles:tilejson", args=[scene.pk]), {"format": "gif"}).status_code == 400


def test_readers_are_pooled_and_thread_safe(scene):
    c = centre_tile(scene, 18)
    addresses = [(c.z, c.x + dx, c.y + dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)]
    opened = tiles.readers.opened
    serial = {a: tiles.render_tile(scene, *a, fmt="png", use_cache=False) for a in addresses}
    assert tiles.readers.opened - opened == 1  # nine tiles, one open dataset
    results, errors = {}, []

    def work(i):
        try:
            for a in addresses[i % 3:] + addresses[:i % 3]:
                results[(i, a)] = tiles.render_tile(scene, *a, fmt="png", use_cache=False)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert all(results[(i, a)] == serial[a] for i in range(6) for a in addresses)
    assert sum(map(len, tiles.readers._idle.values())) <= tiles.readers.per_file  # the pool stays small


def test_render_tile_refuses_bad_input(scene):
    with pytest.raises(ValueError, match="format"):
        tiles.render_tile(scene, 17, 0, 0, "gif")
    with pytest.raises(ValueError, match="does not exist"):
        tiles.render_tile(scene, 3, 8, 0)
