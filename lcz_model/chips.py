"""Block -> chips: the one function that turns a street block over imagery into model inputs.

Both the app's dataset export (`manage.py export_dataset`) and the model's inference path call
:func:`cut_block_chips`, so a model sees at inference exactly what it saw in training.

For one block polygon over an RGB raster it returns
- ``global_rgb``: the whole block, outside-polygon pixels = 0, its bounding box padded to a square
  (centred) and resampled to ``size`` x ``size`` (DECISION in ``method.md``: keep the aspect);
- ``mask``: the polygon rasterised on that same global grid, 0/255;
- ``local``: ``size`` x ``size`` crops at the raster's native resolution tiled over the block,
  outside-polygon pixels = 0; crops with no pixel inside the polygon are dropped; at most
  ``max_local`` kept, evenly spread over the tiling order. A block whose bounding box fits in one
  crop gives one crop: the block itself at native resolution, centred and padded with 0.

Only the block's window is read from the raster (never the whole raster), so it is cheap on a
cloud-optimised GeoTIFF. No Django here.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .atomic import atomic_file

__all__ = ["BlockChips", "cut_block_chips", "save_chips", "chip_paths", "load_chips", "patch_boxes"]


@dataclass
class BlockChips:
    """Model inputs for one block (all arrays uint8, HWC for images)."""

    global_rgb: np.ndarray                    # (size, size, 3) uint8, outside polygon = 0
    mask: np.ndarray                          # (size, size) uint8, 0 or 255
    local: list[np.ndarray]                   # each (size, size, 3) uint8, native resolution
    # (row, col) of each local crop's top-left pixel in the source raster's pixel grid
    # (negative or past the edge where the crop was padded).
    local_origins: list[tuple[int, int]] = field(default_factory=list)
    size: int = 256
    # Square window of the global image in raster pixels: (row_off, col_off, side).
    global_window: tuple[int, int, int] | None = None
    pixel_area: float | None = None           # m2 (CRS units^2) per native pixel
    mask_pixels_native: int | None = None     # polygon pixels at native resolution
    crs: Any = None                           # the raster CRS (polygon was reprojected to it)
    # each local crop's (y0, x0, y1, x1) in the global image, fractions of its side, where the
    # origins are unknown (chips read back from a package's images/local_boxes.csv)
    local_boxes: list[tuple[float, float, float, float]] | None = None

    @property
    def n_local(self) -> int:
        return len(self.local)

    def boxes(self) -> list[tuple[float, float, float, float]] | None:
        """Each local crop's box in the global image (``images/local_boxes.csv``'s convention,
        :func:`patch_boxes`): from the cut's origins (crops are ``size`` native
        pixels), else the recorded ``local_boxes``, else None. Export and inference both call
        this, so a model is given the boxes it was trained with."""
        if self.local_origins and self.global_window is not None:
            return patch_boxes(self.local_origins, self.global_window, self.size)
        return self.local_boxes


def patch_boxes(origins, global_window, size: int) -> list[tuple[float, float, float, float]]:
    """(y0, x0, y1, x1) of each local crop in the global image, as fractions of the global
    image's side: ``origins`` are the crops' top-left (row, col) raster pixels, ``global_window``
    the global image's square window (row_off, col_off, side) and ``size`` the crop side, all in
    native pixels. The one rule (``lcz_model.package.local_boxes`` is this)."""
    g_row, g_col, side = global_window
    return [((r - g_row) / side, (c - g_col) / side, (r - g_row + size) / side,
             (c - g_col + size) / side) for r, c in origins]


# --------------------------------------------------------------------------------------------
# helpers


def _open(src):
    """(dataset, should_close). ``src`` is a path or an already open rasterio dataset."""
    if isinstance(src, (str, os.PathLike)):
        import rasterio

        return rasterio.open(src), True
    return src, False


def _reproject(polygon, polygon_crs, raster_crs):
    if polygon_crs is None or raster_crs is None:
        return polygon
    from rasterio.crs import CRS
    from rasterio.warp import transform_geom
    from shapely.geometry import mapping, shape

    pcrs = CRS.from_user_input(polygon_crs)
    rcrs = CRS.from_user_input(raster_crs)
    if pcrs == rcrs:
        return polygon
    return shape(transform_geom(pcrs, rcrs, mapping(polygon)))


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    # Imagery is expected as 8-bit RGB. Anything else is clipped to 0..255 (16-bit imagery
    # should be stretched to 8 bit at import, where the scene's statistics are known).
    return np.clip(np.nan_to_num(arr.astype(np.float64)), 0, 255).astype(np.uint8)


def _read_rgb(ds, row0: int, col0: int, h: int, w: int) -> np.ndarray:
    """Read rows [row0, row0+h) x cols [col0, col0+w) as (h, w, 3) uint8; outside the raster = 0.

    Only the intersection with the raster is read (a window), never the whole raster.
    """
    from rasterio.windows import Window

    out = np.zeros((h, w, 3), dtype=np.uint8)
    r0, c0 = max(row0, 0), max(col0, 0)
    r1, c1 = min(row0 + h, ds.height), min(col0 + w, ds.width)
    if r1 <= r0 or c1 <= c0:
        return out
    count = ds.count
    if count >= 3:
        indexes = [1, 2, 3]
    elif count == 1:
        indexes = [1, 1, 1]     # greyscale: replicate
    else:
        raise ValueError(f"raster has {count} bands; expected RGB (3 or more bands) or 1 band")
    data = ds.read(indexes, window=Window(c0, r0, c1 - c0, r1 - r0))
    out[r0 - row0:r1 - row0, c0 - col0:c1 - col0] = _to_uint8(np.moveaxis(data, 0, -1))
    return out


def _rasterize(polygon, out_shape, transform) -> np.ndarray:
    """Boolean mask of ``polygon`` on a grid (pixel centre inside the polygon)."""
    from rasterio.features import geometry_mask

    if out_shape[0] == 0 or out_shape[1] == 0:
        return np.zeros(out_shape, dtype=bool)
    return geometry_mask([polygon], out_shape=out_shape, transform=transform, invert=True,
                         all_touched=False)


def _resize_rgb(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[0] == size and img.shape[1] == size:
        return img.copy()
    # Down-sampling: box filter (area mean, no aliasing); up-sampling (blocks smaller than
    # size pixels): bilinear.
    resample = Image.Resampling.BOX if img.shape[0] > size else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(img).resize((size, size), resample=resample))


def _spread(n: int, k: int) -> list[int]:
    """k indices evenly spread over range(n) (all of them when n <= k)."""
    if n <= k:
        return list(range(n))
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, k)})


def _tile_offsets(extent: int, size: int) -> list[int]:
    """Offsets of size-long tiles covering [0, extent): evenly spaced, first at 0, last ending
    at extent (they overlap slightly rather than run past the block). One centred tile when the
    extent fits in one tile."""
    if extent <= size:
        return [-((size - extent) // 2)]
    n = math.ceil(extent / size)
    return [int(round(v)) for v in np.linspace(0, extent - size, n)]


# --------------------------------------------------------------------------------------------
# the function


def cut_block_chips(src, polygon, *, polygon_crs=None, size: int = 256,
                    max_local: int = 8) -> BlockChips:
    """Cut the global image, its mask and the local patches of one block.

    src: path to a raster (GeoTIFF/COG) or an open rasterio dataset (not closed here).
    polygon: shapely (Multi)Polygon of the block. polygon_crs: its CRS (anything rasterio's
    ``CRS.from_user_input`` takes); when given and different from the raster's, the polygon is
    reprojected to the raster CRS. None means it is already in the raster CRS.
    """
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if max_local < 1:
        raise ValueError(f"max_local must be at least 1, got {max_local}")
    if polygon is None or polygon.is_empty:
        raise ValueError("block polygon is empty")
    from affine import Affine

    ds, close = _open(src)
    try:
        poly = _reproject(polygon, polygon_crs, ds.crs)
        if not poly.is_valid:
            poly = poly.buffer(0)
        tf: Affine = ds.transform
        if tf.b != 0 or tf.d != 0:
            raise ValueError("rotated rasters are not supported (transform has rotation terms)")

        # Block bounding box in (fractional) raster pixel coordinates -> integer pixel window.
        minx, miny, maxx, maxy = poly.bounds
        inv = ~tf
        cols, rows = zip(*(inv * (x, y) for x in (minx, maxx) for y in (miny, maxy)))
        col0, col1 = math.floor(min(cols)), math.ceil(max(cols))
        row0, row1 = math.floor(min(rows)), math.ceil(max(rows))
        h, w = max(row1 - row0, 1), max(col1 - col0, 1)
        if row0 >= ds.height or col0 >= ds.width or row0 + h <= 0 or col0 + w <= 0:
            raise ValueError(
                f"block polygon (bounds {tuple(round(v, 2) for v in poly.bounds)}) does not "
                f"overlap the raster (bounds {tuple(round(v, 2) for v in ds.bounds)}); "
                "check that the polygon CRS is right (pass polygon_crs=)")

        block = _read_rgb(ds, row0, col0, h, w)
        win_tf = tf * Affine.translation(col0, row0)
        inside = _rasterize(poly, (h, w), win_tf)
        # Pixels outside the raster carry no data: not part of the block's mask.
        rr = np.arange(row0, row0 + h)[:, None]
        cc = np.arange(col0, col0 + w)[None, :]
        inside &= (rr >= 0) & (rr < ds.height) & (cc >= 0) & (cc < ds.width)
        if not inside.any():
            # A sliver smaller than a pixel: keep the pixel containing its centroid.
            c = poly.representative_point()
            pc, pr = inv * (c.x, c.y)
            ri, ci = int(math.floor(pr)) - row0, int(math.floor(pc)) - col0
            if 0 <= ri < h and 0 <= ci < w:
                inside[ri, ci] = True
        block[~inside] = 0

        # ---- global: pad the bbox to a centred square, resample to size x size.
        side = max(h, w)
        pad_r, pad_c = (side - h) // 2, (side - w) // 2
        square = np.zeros((side, side, 3), dtype=np.uint8)
        square[pad_r:pad_r + h, pad_c:pad_c + w] = block
        g_row0, g_col0 = row0 - pad_r, col0 - pad_c
        global_rgb = _resize_rgb(square, size)
        # Mask: the polygon rasterised directly on the global grid (each global pixel covers
        # side/size native pixels), limited to the raster's extent like the image.
        g_tf = tf * Affine.translation(g_col0, g_row0) * Affine.scale(side / size)
        gmask = _rasterize(poly, (size, size), g_tf)
        sq_in = np.zeros((side, side), dtype=np.uint8)
        sq_in[pad_r:pad_r + h, pad_c:pad_c + w] = inside
        cover = _resize_rgb(np.repeat(sq_in[:, :, None] * 255, 3, axis=2), size)[:, :, 0]
        gmask &= cover > 0
        if not gmask.any():
            gmask = cover == cover.max()   # tiny block: its brightest cell
        global_rgb = global_rgb.copy()
        global_rgb[~gmask] = 0
        mask = (gmask.astype(np.uint8) * 255)

        # ---- local: size x size crops at native resolution tiled over the bbox.
        tiles: list[tuple[int, int]] = []
        for r in _tile_offsets(h, size):
            for c in _tile_offsets(w, size):
                rs, cs = max(r, 0), max(c, 0)
                re_, ce = min(r + size, h), min(c + size, w)
                if inside[rs:re_, cs:ce].any():
                    tiles.append((r, c))
        local, origins = [], []
        for i in _spread(len(tiles), max_local):
            r, c = tiles[i]
            patch = np.zeros((size, size, 3), dtype=np.uint8)
            rs, cs = max(r, 0), max(c, 0)
            re_, ce = min(r + size, h), min(c + size, w)
            patch[rs - r:re_ - r, cs - c:ce - c] = block[rs:re_, cs:ce]
            local.append(patch)
            origins.append((row0 + r, col0 + c))

        return BlockChips(
            global_rgb=global_rgb, mask=mask, local=local, local_origins=origins, size=size,
            global_window=(g_row0, g_col0, side), pixel_area=abs(tf.a * tf.e),
            mask_pixels_native=int(inside.sum()), crs=ds.crs,
        )
    finally:
        if close:
            ds.close()


# --------------------------------------------------------------------------------------------
# files (the dataset package layout: images/global, images/masks, images/local)


def chip_paths(block_id, n_local: int) -> dict:
    """Relative paths of a block's chip files inside a package."""
    bid = str(block_id)
    return {
        "global": f"images/global/{bid}.png",
        "mask": f"images/masks/{bid}.png",
        "local": [f"images/local/{bid}_{k}.png" for k in range(n_local)],
    }


def _write_png(arr: np.ndarray, path: Path) -> None:
    # PIL writes no timestamp or other varying chunk: same pixels -> same bytes. DECISION: zlib
    # level 1 (encoding is most of an export's time). Evidence: docs/model-decisions.md.
    with atomic_file(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG", optimize=False, compress_level=1)


def save_chips(chips: BlockChips, out_dir, block_id) -> list[str]:
    """Write a block's chips under ``out_dir`` in the package layout; returns the relative paths
    written (global, mask, local_0..). Deterministic: same chips -> byte-identical PNGs."""
    bid = str(block_id)
    if not bid or "/" in bid or "\\" in bid or bid in (".", ".."):
        raise ValueError(f"block id {block_id!r} cannot be used as a file name")
    out = Path(out_dir)
    paths = chip_paths(bid, chips.n_local)
    _write_png(chips.global_rgb, out / paths["global"])
    _write_png(chips.mask, out / paths["mask"])
    for arr, rel in zip(chips.local, paths["local"]):
        _write_png(arr, out / rel)
    return [paths["global"], paths["mask"], *paths["local"]]


def load_chips(global_path, mask_path, local_paths, local_boxes=None) -> BlockChips:
    """Read chips back from PNG files (a package's images) into a :class:`BlockChips`;
    ``local_boxes``: the package's boxes of these patches, if it records them."""
    g = np.asarray(Image.open(global_path).convert("RGB"))
    m = np.asarray(Image.open(mask_path).convert("L"))
    loc = [np.asarray(Image.open(p).convert("RGB")) for p in local_paths]
    return BlockChips(global_rgb=g, mask=m, local=loc, local_origins=[], size=g.shape[0],
                      local_boxes=None if local_boxes is None else [tuple(b) for b in local_boxes])
