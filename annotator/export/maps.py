"""`export_maps`: per-class LCZ fraction rasters (Cloud-Optimized GeoTIFF) and a PNG overview.

Blocks are burnt into a grid in the campaign's local UTM zone: each pixel takes the fraction of
its block (consensus labels or a model's predictions); pixels outside every block are nodata.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from rasterio.features import rasterize
from rasterio.transform import from_origin
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from annotator import selectors
from annotator.models import Campaign
from lcz_model.atomic import atomic_dir
from lcz_model.classes import CLASSES

NODATA = -1.0
WINDOW = 2048  # px: rasterised a window at a time, so memory does not grow with the map
OVERVIEW_MAX_PX = 2000


class MapExportError(Exception):
    pass


@dataclass
class MapReport:
    out: Path
    n_blocks: int
    crs: str
    shape: tuple[int, int]
    files: list[str]


def export_maps(campaign: Campaign, source: str, out: str | Path, *, resolution: float = 5.0) -> MapReport:
    out = Path(out).resolve()
    if out.exists():
        raise MapExportError(f"{out} already exists; choose a new folder.")
    if resolution <= 0:
        raise MapExportError("--resolution must be positive (metres).")
    if source != "consensus" and source not in selectors.model_versions(campaign):
        raise MapExportError(f"unknown source {source!r}: use consensus or one of "
                             f"{selectors.model_versions(campaign) or 'no model versions yet'}.")
    rows = selectors.fraction_rows(campaign, source)
    if not rows:
        raise MapExportError(f"campaign {campaign.name!r} has no blocks with {source} fractions yet.")
    geoms = gpd.GeoSeries([shapely.from_geojson(r[3]) for r in rows], crs="EPSG:4326")
    crs = geoms.estimate_utm_crs()
    geoms_m = geoms.to_crs(crs)
    fractions = np.asarray([r[2] for r in rows], dtype=np.float32) / 1000.0
    minx, miny, maxx, maxy = geoms_m.total_bounds
    width = max(1, int(np.ceil((maxx - minx) / resolution)))
    height = max(1, int(np.ceil((maxy - miny) / resolution)))
    transform = from_origin(minx, maxy, resolution, resolution)
    geoms_arr = np.asarray(geoms_m.values)
    tree = shapely.STRtree(geoms_arr)
    files = []
    dominant = np.zeros((height, width), dtype=np.uint8)  # kept whole (1 byte a pixel) for the overview
    with atomic_dir(out) as tmp:
        profile = dict(driver="GTiff", width=width, height=height, count=1, crs=crs, transform=transform,
                       tiled=True, blockxsize=256, blockysize=256)
        names = [f"fraction_{c.key}.tif" for c in CLASSES]
        plains = [rasterio.open(tmp / n.replace(".tif", ".plain.tif"), "w", **profile, dtype="float32",
                                nodata=NODATA) for n in names]
        try:
            # rasterise window by window (bounded memory); pixel-centre burning gives the same pixels as
            # one whole raster, and blocks keep their order within a window (later ones win overlaps)
            for row0 in range(0, height, WINDOW):
                for col0 in range(0, width, WINDOW):
                    win = Window(col0, row0, min(WINDOW, width - col0), min(WINDOW, height - row0))
                    wt = window_transform(win, transform)
                    x0, y1 = wt.c, wt.f
                    hit = np.sort(tree.query(shapely.box(x0, y1 - win.height * resolution,
                                                         x0 + win.width * resolution, y1)))
                    if len(hit):
                        index = rasterize(((geoms_arr[i], int(i) + 1) for i in hit), out_shape=(win.height, win.width),
                                          transform=wt, fill=0, dtype="int32", all_touched=False)
                    else:
                        index = np.zeros((win.height, win.width), dtype=np.int32)
                    inside = index > 0
                    for c, dst in zip(CLASSES, plains):
                        band = np.full(index.shape, NODATA, dtype=np.float32)
                        band[inside] = fractions[index[inside] - 1, c.index]
                        dst.write(band, 1, window=win)
                    dom = dominant[row0:row0 + win.height, col0:col0 + win.width]
                    dom[inside] = fractions[index[inside] - 1].argmax(axis=1).astype(np.uint8) + 1
        finally:
            for dst in plains:
                dst.close()
        for c, name in zip(CLASSES, names):
            _to_cog(tmp / name.replace(".tif", ".plain.tif"), tmp / name,
                    description=f"Fraction of LCZ {c.code} ({c.name}) per block, source: {source}")
            files.append(name)
        _write_cog(tmp / "dominant.tif", dominant, dict(profile, dtype="uint8", nodata=0),
                   description="Dominant LCZ class per block: value = class index + 1 (lcz_model.classes order), "
                               "0 = no block", colormap={c.index + 1: (*c.rgb, 255) for c in CLASSES})
        files.append("dominant.tif")
        _overview_png(tmp / "overview.png", dominant, fractions, campaign, source)
        files.append("overview.png")
    return MapReport(out=out, n_blocks=len(rows), crs=crs.to_string(), shape=(height, width), files=files)


def _write_cog(path: Path, array: np.ndarray, profile: dict, *, description: str, colormap=None) -> None:
    plain = path.with_suffix(".plain.tif")
    with rasterio.open(plain, "w", **profile) as dst:
        dst.write(array, 1)
        if colormap:
            dst.write_colormap(1, colormap)
    _to_cog(plain, path, description=description)


def _to_cog(plain: Path, path: Path, *, description: str) -> None:
    """The plain GeoTIFF `plain` as the COG `path` (deflate, 256 px tiles, nearest overviews); removes `plain`."""
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    with rasterio.open(plain, "r+") as dst:
        dst.update_tags(DESCRIPTION=description)
    cog = cog_profiles.get("deflate")
    cog.update(blockxsize=256, blockysize=256)
    cog_translate(str(plain), str(path), cog, quiet=True, overview_resampling="nearest",
                  additional_cog_metadata={"DESCRIPTION": description})
    plain.unlink()


def _overview_png(path: Path, dominant: np.ndarray, fractions: np.ndarray, campaign: Campaign, source: str) -> None:
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    present = [int(v) - 1 for v in np.flatnonzero(np.bincount(dominant.ravel(), minlength=len(CLASSES) + 1)) if v > 0]
    # the figure is ~1,000 px wide: a city-sized map is thinned to OVERVIEW_MAX_PX first, or matplotlib's
    # float copies of the whole RGBA image take ~1 GB at 20,000 blocks (smaller maps are drawn as they are)
    step = max(1, -(-max(dominant.shape) // OVERVIEW_MAX_PX))
    dominant = dominant[::step, ::step]
    rgba = np.zeros((*dominant.shape, 4), dtype=np.uint8)
    for c in CLASSES:
        rgba[dominant == c.index + 1] = (*c.rgb, 255)
    fig = Figure(figsize=(9, 9 * dominant.shape[0] / max(dominant.shape[1], 1) * 0.8 + 1.5), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(rgba, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"{campaign.name}: dominant LCZ per block ({source}, {len(fractions)} blocks)")
    handles = [Patch(facecolor=CLASSES[i].colour, edgecolor="#555", label=f"LCZ {CLASSES[i].code} {CLASSES[i].name}")
               for i in present]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    fig.savefig(path, bbox_inches="tight")
