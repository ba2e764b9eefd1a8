"""Imagery ingest: validate an RGB GeoTIFF and write it as a Cloud-Optimized GeoTIFF.

Nothing but a regular file is opened (a named pipe would block GDAL, and so would one beside the
file where GDAL looks for sidecars); a truncated or corrupt file is refused with a message, and a
failed write leaves no partial COG and no folder it made."""
from __future__ import annotations

import hashlib
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio._err import CPLE_BaseError
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.windows import Window
from shapely.geometry import Polygon, box

from lcz_model.atomic import atomic_file

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
    _require_regular_file(path)
    _refuse_special_sidecars(path)
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
        footprint = _footprint_wgs84(src, path)
        _check_last_block(src, path)
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


def _require_regular_file(path: Path) -> None:
    """stat only, never open: opening a named pipe blocks until someone writes to it."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise IngestError(f"{path}: file not found.") from None
    except OSError as exc:
        raise IngestError(f"{path}: cannot be read ({exc.strerror}).") from None
    if stat.S_ISDIR(mode):
        raise IngestError(f"{path}: is a folder; give the path of a GeoTIFF file.")
    if not stat.S_ISREG(mode):
        raise IngestError(f"{path}: is not a regular file (a named pipe, device or socket); "
                          "give the path of a GeoTIFF file.")


def _refuse_special_sidecars(path: Path) -> None:
    """GDAL opens files named like the raster beside it (scene.tif.aux.xml, scene.tif.ovr,
    scene.tfw, ...): a named pipe or device among them would block or confuse it."""
    stem = path.stem.lower()
    try:
        with os.scandir(path.parent) as it:
            entries = [e for e in it if e.name != path.name and e.name.lower().startswith(stem)]
    except OSError:  # a folder that cannot be listed: GDAL cannot list it either
        return
    for entry in entries:
        try:
            mode = entry.stat().st_mode
        except OSError:  # a dangling link: GDAL cannot open it either
            continue
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise IngestError(
                f"{path.parent / entry.name}: is not a regular file (a named pipe, device or socket) and "
                f"lies beside {path.name}, where GDAL looks for sidecar files (.aux.xml, .ovr, .tfw). "
                "Move it away, or copy the GeoTIFF into a folder of its own."
            )


def _footprint_wgs84(src, path: Path) -> Polygon:
    left, bottom, right, top = src.bounds
    ring = box(left, bottom, right, top).exterior
    # densify so the footprint stays right after a curved reprojection
    pts = [ring.interpolate(d) for d in np.linspace(0, ring.length, 81)]
    to_wgs84 = Transformer.from_crs(src.crs, "EPSG:4326", always_xy=True)
    xs, ys = (np.asarray(v, dtype=float) for v in to_wgs84.transform([p.x for p in pts], [p.y for p in pts]))
    inside = np.isfinite(xs).all() and np.isfinite(ys).all()
    if not (inside and -180 <= xs.min() and xs.max() <= 180 and -90 <= ys.min() and ys.max() <= 90):
        raise IngestError(
            f"{path}: its bounds ({left:.6g}, {bottom:.6g}, {right:.6g}, {top:.6g} in {src.crs.to_string()}) fall "
            "outside valid latitude/longitude ([-180, 180] x [-90, 90]). Is the CRS right? Set the right one, "
            f"e.g. `gdal_edit.py -a_srs EPSG:<code> {path.name}`."
        )
    return Polygon(zip(xs, ys))


def _corrupt(path, exc) -> IngestError:
    return IngestError(
        f"{path}: its pixel data cannot be read ({exc}); the file looks truncated or corrupt. Copy it "
        f"again, or check it with `gdalinfo -checksum {Path(path).name}`."
    )


def _check_last_block(src, path: Path) -> None:
    """Read the last block of bands 1-3 (the end of the file for GDAL's layouts): a truncated file
    fails here, before anything is written."""
    block_h, block_w = src.block_shapes[0]
    row, col = (src.height - 1) // block_h * block_h, (src.width - 1) // block_w * block_w
    try:
        src.read((1, 2, 3), window=Window(col, row, src.width - col, src.height - row))
    except (RasterioError, CPLE_BaseError) as exc:
        raise _corrupt(path, exc) from None


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
    made = _missing_parents(dst_path.parent)
    done = False
    try:
        with atomic_file(dst_path) as tmp:
            profile = cog_profiles.get("deflate")
            profile.update(blockxsize=512, blockysize=512, predictor=2)
            try:
                with rasterio.open(src_path) as src:
                    tags = src.tags()
                cog_translate(
                    str(src_path), str(tmp), profile, indexes=(1, 2, 3), overview_resampling="average",
                    additional_cog_metadata=tags, quiet=True, in_memory=False,
                )
                valid, errors, _warnings = cog_validate(str(tmp), quiet=True)
            except (RasterioError, CPLE_BaseError) as exc:  # pixels that do not decode, mostly
                raise _corrupt(src_path, exc) from None
            if not valid:
                raise IngestError(f"{src_path}: writing a valid COG failed: {'; '.join(errors)}")
            os.chmod(tmp, 0o644)  # whatever the umask: the web server may run as another user
        done = True
    except OSError as exc:
        raise IngestError(f"{dst_path}: writing the COG failed ({exc.strerror or exc}); check the free space "
                          "and the permissions of MEDIA_ROOT.") from None
    finally:
        if not done:
            _remove_empty(made)
    return dst_path


def remove_cog(path: str | os.PathLike, *, keep: str | os.PathLike) -> None:
    """Delete a COG and the folders above it that are left empty, up to (not including) `keep`."""
    path, keep = Path(path), Path(keep)
    path.unlink(missing_ok=True)
    _remove_empty([d for d in path.parents if keep in d.parents])


def _missing_parents(folder: Path) -> list[Path]:
    """The folders `mkdir(parents=True)` would make for `folder`, deepest first."""
    made = []
    while not folder.exists() and folder != folder.parent:
        made.append(folder)
        folder = folder.parent
    return made


def _remove_empty(folders: list[Path]) -> None:
    """rmdir each folder (deepest first) that is empty; keep the rest."""
    for d in folders:
        try:
            d.rmdir()
        except OSError:
            return
