"""lcz_model.chips: the block -> global/mask/local chips function shared by export and inference."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import Polygon, box
import shapely

from lcz_model.chips import cut_block_chips, save_chips

CRS = "EPSG:3067"
X0, Y0 = 385_000.0, 6_672_000.0


@pytest.fixture(scope="module")
def raster(tmp_path_factory):
    """1200 x 900 px, 1 m, tiled GeoTIFF; every pixel non-zero so 0 means 'outside'."""
    p = tmp_path_factory.mktemp("chips") / "scene.tif"
    rng = np.random.default_rng(0)
    data = rng.integers(1, 256, size=(3, 900, 1200), dtype=np.uint8)
    with rasterio.open(p, "w", driver="GTiff", width=1200, height=900, count=3, dtype="uint8",
                       crs=CRS, transform=from_origin(X0, Y0, 1.0, 1.0), tiled=True,
                       blockxsize=256, blockysize=256) as d:
        d.write(data)
    return p


def quad(x, y, w, h, skew=0.0):
    """An irregular quadrilateral in map coordinates, top-left at (X0 + x, Y0 - y)."""
    return Polygon([(X0 + x, Y0 - y), (X0 + x + w, Y0 - y - skew),
                    (X0 + x + w - skew, Y0 - y - h), (X0 + x + skew, Y0 - y - h + skew)])


def test_global_mask_area_matches_polygon_and_outside_is_zero(raster):
    poly = quad(100, 80, 600, 420, skew=40)
    ch = cut_block_chips(raster, poly, size=256)
    assert ch.global_rgb.shape == (256, 256, 3) and ch.global_rgb.dtype == np.uint8
    assert ch.mask.shape == (256, 256) and set(np.unique(ch.mask)) <= {0, 255}
    side = ch.global_window[2]
    assert side == 600                                      # bbox padded to a square
    area = (ch.mask > 0).sum() * (side / 256) ** 2 * ch.pixel_area
    assert area == pytest.approx(poly.area, rel=0.02)
    assert ch.mask_pixels_native == pytest.approx(poly.area, rel=0.01)
    assert (ch.global_rgb[ch.mask == 0] == 0).all()         # outside the polygon = 0
    assert (ch.global_rgb[ch.mask > 0].any(axis=-1)).mean() > 0.99


def test_local_patches_count_background_dropped_and_cap(raster):
    # 600 x 420 bbox -> 3 x 2 = 6 tiles of 256 px; an L-shaped block (100 m arms along the
    # top and left) leaves the two lower-right tiles all-background
    tri = Polygon([(X0 + 100, Y0 - 80), (X0 + 700, Y0 - 80), (X0 + 700, Y0 - 180),
                   (X0 + 200, Y0 - 180), (X0 + 200, Y0 - 500), (X0 + 100, Y0 - 500)])
    ch = cut_block_chips(raster, tri, size=256)
    assert ch.n_local == 4
    for p in ch.local:
        assert p.shape == (256, 256, 3) and p.any()          # no all-background patch
    # every pixel outside the triangle is 0 in the patches
    from rasterio.features import geometry_mask
    from affine import Affine
    with rasterio.open(raster) as ds:
        for p, (r, c) in zip(ch.local, ch.local_origins):
            inside = geometry_mask([tri], out_shape=(256, 256), invert=True,
                                   transform=ds.transform * Affine.translation(c, r))
            assert (p[~inside] == 0).all()
    full = cut_block_chips(raster, quad(100, 80, 600, 420), size=256)
    assert full.n_local == 6
    capped = cut_block_chips(raster, quad(0, 0, 1100, 800), size=256, max_local=4)
    assert capped.n_local == 4                              # 5 x 4 = 20 tiles, 4 evenly spread
    assert capped.local_origins[0] == (0, 0) and capped.local_origins[-1][0] > 400


def test_small_block_gives_one_padded_native_patch(raster):
    poly = box(X0 + 300, Y0 - 350, X0 + 380, Y0 - 300)      # 80 x 50 m
    ch = cut_block_chips(raster, poly, size=256)
    assert ch.n_local == 1
    nz = ch.local[0].any(axis=-1)
    assert nz.sum() == 80 * 50                              # native resolution, not resampled
    rows, cols = np.nonzero(nz)
    assert rows.min() > 0 and cols.min() > 0                # centred with padding
    with rasterio.open(raster) as ds:
        ref = ds.read(window=((300, 350), (300, 380)))
    assert np.array_equal(ch.local[0][rows.min():rows.max() + 1, cols.min():cols.max() + 1],
                          np.moveaxis(ref, 0, -1))


def test_reprojection_from_wgs84(raster):
    import pyproj

    poly = quad(200, 150, 300, 250, skew=20)
    tr = pyproj.Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    ll = shapely.transform(poly, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    a = cut_block_chips(raster, poly, size=128)
    b = cut_block_chips(raster, ll, polygon_crs="EPSG:4326", size=128)
    assert abs(int((a.mask > 0).sum()) - int((b.mask > 0).sum())) <= 0.02 * (a.mask > 0).sum()
    assert b.mask_pixels_native == pytest.approx(a.mask_pixels_native, rel=0.01)
    with pytest.raises(ValueError, match="does not overlap"):
        cut_block_chips(raster, ll, size=128)               # wrong CRS: clear error


class _Recorder:
    """Wraps an open dataset and records every read's window."""

    def __init__(self, ds):
        self._ds, self.windows = ds, []

    def read(self, *a, **kw):
        self.windows.append(kw.get("window"))
        return self._ds.read(*a, **kw)

    def __getattr__(self, name):
        return getattr(self._ds, name)


def test_reads_only_the_block_window(raster):
    poly = quad(500, 400, 200, 150)
    with rasterio.open(raster) as ds:
        rec = _Recorder(ds)
        ch = cut_block_chips(rec, poly, size=128)
        assert not ds.closed                                # an open dataset is not closed
    assert rec.windows and all(w is not None for w in rec.windows)
    assert sum(w.width * w.height for w in rec.windows) <= 210 * 160
    assert ch.mask.any()


def test_save_chips_is_deterministic(raster, tmp_path):
    ch = cut_block_chips(raster, quad(100, 80, 600, 420, skew=40), size=128)
    a = save_chips(ch, tmp_path / "a", "blk-1")
    b = save_chips(ch, tmp_path / "b", "blk-1")
    assert a == b and a[:2] == ["images/global/blk-1.png", "images/masks/blk-1.png"]
    assert a[2:] == [f"images/local/blk-1_{k}.png" for k in range(ch.n_local)]
    for rel in a:
        ha = hashlib.sha256((tmp_path / "a" / rel).read_bytes()).hexdigest()
        hb = hashlib.sha256((tmp_path / "b" / rel).read_bytes()).hexdigest()
        assert ha == hb
    from PIL import Image
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a" / a[0])), ch.global_rgb)
