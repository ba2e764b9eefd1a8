"""Imagery ingest: validate an RGB GeoTIFF and write it as a Cloud-Optimized GeoTIFF."""
from __future__ import annotations

import hashlib
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.errors import RasterioIOError
from shapely.geometry import Polygon, box

from .errors import IngestError


@dataclass(frozen=True)
class RasterInfo:
    path: Path
    crs: str
    crs_wkt: str
    width: int
    height: int
    band_count: int
    resolution_m: float
    footprint_wgs84: Polygon
    synthetic: bool


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def inspect_geotiff(path: str | os.PathLike) -> RasterInfo:
    """Check that `path` is georeferenced 8-bit RGB imagery, or raise IngestError saying why."""
    path = Path(path)
    if not path.exists():
        raise IngestError(f"{path}: file not found.")
    if path.is_dir():
        raise IngestError(f"{path}: is a folder; give the path of a GeoTIFF file.")
    try:
        src = rasterio.open(path)
    except RasterioIOError as exc:
        raise IngestError(
            f"{path}: not a raster GDAL can read ({exc}). Give a GeoTIFF with 3 bands of 8-bit RGB."
        ) from None
    with src:
        if src.crs is None:
            raise IngestError(
                f"{path}: has no CRS. Georeference it first, e.g. "
                f"`gdal_edit.py -a_srs EPSG:<code> {path.name}`."
            )
        if src.transform.is_identity or src.transform.b != 0 or src.transform.d != 0:
            raise IngestError(
                f"{path}: has no usable north-up geotransform. Warp it first, e.g. "
                f"`gdalwarp -t_srs EPSG:<code> {path.name} out.tif`."
            )
        if src.count < 3:
            raise IngestError(
                f"{path}: has {src.count} band(s); 3 or more bands of 8-bit RGB are needed "
                "(bands 1, 2, 3 are read as red, green, blue)."
            )
        dtypes = set(src.dtypes[:3])
        if dtypes != {"uint8"}:
            raise IngestError(
                f"{path}: bands 1-3 are {', '.join(sorted(dtypes))}; 8-bit (uint8) RGB is needed. "
                f"Rescale first, e.g. `gdal_translate -ot Byte -scale {path.name} out.tif`."
            )
        footprint = _footprint_wgs84(src)
        resolution = _resolution_m(src, footprint)
        tags = {k.upper(): v for k, v in src.tags().items()}
        return RasterInfo(
            path=path,
            crs=src.crs.to_string(),
            crs_wkt=src.crs.to_wkt(),
            width=src.width,
            height=src.height,
            band_count=src.count,
            resolution_m=resolution,
            footprint_wgs84=footprint,
            synthetic=str(tags.get("SYNTHETIC", "")).lower() in {"1", "true", "yes"},
        )


def _footprint_wgs84(src) -> Polygon:
    left, bottom, right, top = src.bounds
    ring = box(left, bottom, right, top).exterior
    # densify so the footprint stays right after a curved reprojection
    pts = [ring.interpolate(d) for d in np.linspace(0, ring.length, 81)]
    to_wgs84 = Transformer.from_crs(src.crs, "EPSG:4326", always_xy=True)
    xs, ys = to_wgs84.transform([p.x for p in pts], [p.y for p in pts])
    return Polygon(zip(xs, ys))


def _resolution_m(src, footprint: Polygon) -> float:
    res_x = abs(src.transform.a)
    if src.crs.is_geographic:
        lat = footprint.centroid.y
        return res_x * 111_320.0 * math.cos(math.radians(lat))
    factor = src.crs.linear_units_factor[1] if src.crs.linear_units_factor else 1.0
    return res_x * factor


def write_cog(src_path: str | os.PathLike, dst_path: str | os.PathLike) -> Path:
    """Write bands 1-3 of `src_path` as a Cloud-Optimized GeoTIFF at `dst_path`, atomically."""
    from rio_cogeo.cogeo import cog_translate, cog_validate
    from rio_cogeo.profiles import cog_profiles

    dst_path = Path(dst_path)
    dst_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".tif", dir=dst_path.parent, prefix=".cog-")
    os.close(fd)
    try:
        profile = cog_profiles.get("deflate")
        profile.update(blockxsize=512, blockysize=512, predictor=2)
        with rasterio.open(src_path) as src:
            tags = src.tags()
        cog_translate(
            str(src_path), tmp, profile, indexes=(1, 2, 3), overview_resampling="average",
            additional_cog_metadata=tags, quiet=True, in_memory=False,
        )
        valid, errors, _warnings = cog_validate(tmp, quiet=True)
        if not valid:
            raise IngestError(f"{src_path}: writing a valid COG failed: {'; '.join(errors)}")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600: the web server may run as another user
        os.replace(tmp, dst_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dst_path
