"""Imagery ingest: check GeoTIFFs, write the display COG (8-bit RGB) each scene is shown and chipped
from, keep the original values when the display changed them, and build the campaign's mosaic.

- What a file is (`inspect_geotiff`): georeferenced, 1 or more bands of 8-, 12-, 16- or 32-bit
  integers or floats. Nothing but a regular file is opened (a named pipe would block GDAL, and so
  would one beside the file where GDAL looks for sidecars); a truncated or corrupt file is refused
  with a message.
- Which bands are shown (`choose_bands`): `--bands R,G,B` (or one band: grey), else the bands whose
  colour interpretation says red, green and blue, else 1, 2, 3; one band is shown as grey RGB.
- The contrast stretch (`compute_stretch`): 8-bit bands are shown as they are; anything else is
  stretched per band to 0..255, by default from the 2 and 98 % percentiles of a decimated read (the
  overviews where the file has them), pooled over the files of one import so that tiles of one
  delivery stay seamless; `--stretch MIN,MAX` (or one pair per shown band, or `P1%,P2%`) overrides.
- The display COG (`plan_display`, `write_display_cog`): in the campaign's CRS (the first scene's);
  a file in another CRS, or resampled with `--resolution`, is warped onto the campaign's pixel grid
  when its pixels are within 5 % of the campaign's size, so a mosaic of tiles lines up pixel for
  pixel. Always 3 bands of uint8 with an internal mask (where the file has no pixels).
- The mosaic (`write_mosaic`): one GDAL VRT over a campaign's display COGs (later scenes on top,
  each source's mask deciding where, as `gdalbuildvrt` writes it); tiles and chips read it.

A failed write leaves no partial COG and no folder it made."""
from __future__ import annotations

import hashlib
import math
import os
import stat
import xml.etree.ElementTree as ET
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import rasterio
import shapely
from pyproj import Transformer
from rasterio._err import CPLE_BaseError
from rasterio.crs import CRS
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.transform import Affine
from rasterio.warp import calculate_default_transform, transform_bounds
from rasterio.windows import Window
from shapely.geometry import Point, Polygon, box

from lcz_model.atomic import atomic_file, atomic_write_text

from .errors import IngestError

#: Data types a scene may have; anything but uint8 is stretched to 8 bits for display.
SUPPORTED_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")
DEFAULT_PERCENTILES = (2.0, 98.0)
#: Pixel sizes (m) that suit street-block work; outside them the import warns (never refuses).
STREET_BLOCK_RESOLUTION_M = (0.2, 2.0)
GRID_SNAP = 0.05         # warped pixels within 5 % of the campaign's take the campaign's grid
SAMPLE_PIXELS = 1 << 20  # pixels per band read (decimated) for the percentiles of one import
WINDOW = 1024            # pixels a side read and written at a time
GEOTIFF_SUFFIXES = (".tif", ".tiff")
COG_BLOCK = 512
_TIFF_READ_HINT = "Give a GeoTIFF with 1 band (grey) or 3 or more (RGB, RGB+NIR, ...)."


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
    dtype: str = "uint8"
    nbits: int | None = None                # NBITS of the file (e.g. 12 for 12-bit in uint16)
    colour: tuple[str, ...] = ()            # each band's colour interpretation (rasterio names)
    descriptions: tuple[str, ...] = ()      # each band's description ("" when none)
    alpha: int | None = None                # the alpha band, if any (a mask, never shown)
    nodata: float | None = None

    @property
    def data_bands(self) -> tuple[int, ...]:
        return tuple(i for i in range(1, self.band_count + 1) if i != self.alpha)

    @property
    def dtype_label(self) -> str:
        """uint16, or 'uint16 (12-bit)' when the file says fewer bits are used."""
        bits = np.dtype(self.dtype).itemsize * 8
        return f"{self.dtype} ({self.nbits}-bit)" if self.nbits and self.nbits < bits else self.dtype


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# --- which files ------------------------------------------------------------------------------

def imagery_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The GeoTIFFs named by `paths`: files as given, folders by every .tif/.tiff below them
    (sorted, hidden names skipped, links to folders not followed); each file once."""
    out: list[Path] = []
    for p in map(Path, paths):
        try:
            is_dir = stat.S_ISDIR(os.stat(p).st_mode)
        except OSError:
            is_dir = False  # inspect_geotiff says what is wrong with it
        if not is_dir:
            out.append(p)
            continue
        found = []
        for root, dirs, files in os.walk(p):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [Path(root) / f for f in files
                      if not f.startswith(".") and f.lower().endswith(GEOTIFF_SUFFIXES)]
        if not found:
            raise IngestError(f"{p}: is a folder with no GeoTIFF (.tif, .tiff) in it.")
        out += sorted(found)
    seen, unique = set(), []
    for p in out:
        key = os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


# --- what a file is ---------------------------------------------------------------------------

def inspect_geotiff(path: str | os.PathLike) -> RasterInfo:
    """Check that `path` is georeferenced imagery this project can show, or raise IngestError saying why."""
    path = Path(path)
    _require_regular_file(path)
    _refuse_special_sidecars(path)
    try:
        src = rasterio.open(path)
    except RasterioIOError as exc:
        raise IngestError(f"{path}: not a raster GDAL can read ({exc}). {_TIFF_READ_HINT}") from None
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
        dtypes = set(src.dtypes)
        if len(dtypes) != 1 or not dtypes <= set(SUPPORTED_DTYPES):
            raise IngestError(
                f"{path}: its bands are {', '.join(sorted(dtypes))}; imagery of one of {', '.join(SUPPORTED_DTYPES)} "
                f"is needed. Convert it first, e.g. `gdal_translate -ot UInt16 {path.name} out.tif`."
            )
        footprint = _footprint_wgs84(src, path)
        _check_last_block(src, path)
        resolution = _resolution_m(src, footprint)
        tags = {k.upper(): v for k, v in src.tags().items()}
        colour = tuple(c.name for c in src.colorinterp)
        nbits = src.tags(ns="IMAGE_STRUCTURE").get("NBITS")
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
            dtype=src.dtypes[0],
            nbits=int(nbits) if nbits and nbits.isdigit() else None,
            colour=colour,
            descriptions=tuple(d or "" for d in src.descriptions),
            alpha=colour.index("alpha") + 1 if "alpha" in colour and src.count > 1 else None,
            nodata=src.nodata,
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
    # densify so the footprint stays right after a curved reprojection, keeping the corners (points
    # spread evenly along the ring cut them off: adjacent tiles' footprints then left holes)
    pts = [Point(xy) for xy in shapely.segmentize(ring, ring.length / 80).coords]
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
    """Read the last block of every band (the end of the file for GDAL's layouts): a truncated file
    fails here, before anything is written."""
    block_h, block_w = src.block_shapes[0]
    row, col = (src.height - 1) // block_h * block_h, (src.width - 1) // block_w * block_w
    try:
        src.read(window=Window(col, row, src.width - col, src.height - row))
    except (RasterioError, CPLE_BaseError) as exc:
        raise _corrupt(path, exc) from None


def _resolution_m(src, footprint: Polygon) -> float:
    return _metres(abs(src.transform.a), src.crs, footprint.centroid.y)


def _metres(units: float, crs: CRS, lat: float) -> float:
    """A length along x in `crs` units, in metres (at latitude `lat` for a geographic CRS)."""
    if crs.is_geographic:
        return units * 111_320.0 * math.cos(math.radians(lat))
    factor = crs.linear_units_factor[1] if crs.linear_units_factor else 1.0
    return units * factor


# --- which bands are shown --------------------------------------------------------------------

_BAND_NAMES = {"nir": "NIR", "swir": "SWIR", "mwir": "MWIR", "lwir": "LWIR", "tir": "TIR", "rededge": "red edge",
               "pan": "panchromatic", "other_ir": "infrared", "coastal": "coastal"}


@dataclass(frozen=True)
class BandChoice:
    band_map: tuple[int, ...]   # source bands shown as red, green, blue; one band = grey
    how: str                    # why these: "--bands", "colour interpretation", "bands 1-3", "one band"
    unused: tuple[str, ...]     # "band 4 (NIR)", one per data band not shown

    @property
    def described(self) -> str:
        shown = ",".join(map(str, self.band_map))
        return (f"band {shown} shown as grey" if len(self.band_map) == 1 else f"bands {shown} shown as RGB") + \
            f" ({self.how})"


def parse_bands(text: str | None) -> tuple[int, ...] | None:
    """`--bands 4,3,2` (red, green, blue) or `--bands 1` (grey); None when not given."""
    if text is None or not str(text).strip():
        return None
    try:
        bands = tuple(int(v) for v in str(text).split(","))
    except ValueError:
        bands = ()
    if len(bands) not in (1, 3) or min(bands) < 1:
        raise IngestError(f"--bands {text!r}: give three band numbers (red,green,blue, e.g. 4,3,2) or one "
                          "(shown as grey), counting from 1.")
    return bands


def band_label(info: RasterInfo, band: int) -> str:
    """'band 4 (NIR)': the band's description, else its colour interpretation when it says something."""
    desc = info.descriptions[band - 1] if band <= len(info.descriptions) else ""
    colour = info.colour[band - 1] if band <= len(info.colour) else "undefined"
    name = desc or ("" if colour in ("undefined", "gray") else _BAND_NAMES.get(colour, colour))
    return f"band {band} ({name})" if name else f"band {band}"


def choose_bands(info: RasterInfo, requested: Sequence[int] | None = None) -> BandChoice:
    data = info.data_bands
    if requested:
        bad = [b for b in requested if b not in data]
        if bad:
            raise IngestError(f"{info.path}: --bands {','.join(map(str, requested))} names band {bad[0]}, but its "
                              f"image bands are {', '.join(map(str, data))}"
                              + (f" (band {info.alpha} is its alpha mask)" if info.alpha else "") + ".")
        band_map, how = tuple(requested), "--bands"
    elif all(c in info.colour for c in ("red", "green", "blue")):
        band_map, how = tuple(info.colour.index(c) + 1 for c in ("red", "green", "blue")), "colour interpretation"
    elif len(data) == 1:
        band_map, how = data, "one band"
    elif len(data) >= 3:
        band_map, how = data[:3], f"bands {data[0]}-{data[2]}: no red/green/blue colour interpretation"
    else:
        raise IngestError(f"{info.path}: has {len(data)} image bands and no red/green/blue colour interpretation; "
                          "say which to show: --bands B (one band, grey) or --bands R,G,B.")
    return BandChoice(band_map, how, tuple(band_label(info, b) for b in data if b not in band_map))


# --- the contrast stretch ---------------------------------------------------------------------

@dataclass(frozen=True)
class StretchSpec:
    """How to map source values to 0..255: percentiles of the data, or fixed (min, max) pairs
    (one for every band, or one per shown band). `given`: asked for with --stretch."""

    percentiles: tuple[float, float] | None = DEFAULT_PERCENTILES
    fixed: tuple[tuple[float, float], ...] | None = None
    given: bool = False


def parse_stretch(text: str | None) -> StretchSpec:
    """--stretch: `2%,98%` (percentiles), `MIN,MAX` (every shown band) or `MIN,MAX,MIN,MAX,MIN,MAX`."""
    if text is None or not str(text).strip():
        return StretchSpec()
    parts = [p.strip() for p in str(text).split(",")]
    hint = ("give percentiles (e.g. 2%,98%), MIN,MAX for every shown band, or MIN,MAX per shown band "
            "(e.g. 0,3000,0,2800,0,2500)")
    try:
        if all(p.endswith("%") for p in parts):
            lo, hi = (float(p[:-1]) for p in parts)
            if not 0 <= lo < hi <= 100:
                raise ValueError
            return StretchSpec(percentiles=(lo, hi), given=True)
        values = [float(p) for p in parts]
        pairs = tuple(zip(values[::2], values[1::2]))
        if len(values) % 2 or len(pairs) not in (1, 3) or any(not (lo < hi) or not math.isfinite(lo + hi)
                                                               for lo, hi in pairs):
            raise ValueError
    except ValueError:
        raise IngestError(f"--stretch {text!r}: {hint}; each min below its max.") from None
    return StretchSpec(percentiles=None, fixed=pairs, given=True)


def needs_stretch(info: RasterInfo, spec: StretchSpec) -> bool:
    return spec.given or info.dtype != "uint8"


def compute_stretch(infos: Sequence[RasterInfo], band_map: Sequence[int], spec: StretchSpec) -> dict:
    """The stretch recorded on each scene: {"method", "bands": [[min, max] per shown band], ...}.
    Percentiles are pooled over all `infos` (the files of one import that show the same bands)."""
    n = len(band_map)
    if spec.fixed is not None:
        if len(spec.fixed) not in (1, n):
            raise IngestError(f"--stretch gives {len(spec.fixed)} min,max pairs but {n} band(s) are shown; give one "
                              f"pair for all of them or one per shown band.")
        pairs = spec.fixed * n if len(spec.fixed) == 1 else spec.fixed
        return {"method": "fixed", "bands": [[_num(lo), _num(hi)] for lo, hi in pairs]}
    per_file = max(SAMPLE_PIXELS // len(infos), 1 << 14)
    samples, reads = [], set()
    for info in infos:
        values, read = _sample(info, band_map, per_file)
        samples.append(values)
        reads.add(read)
    values = np.concatenate(samples, axis=1)
    if values.shape[1] == 0:
        raise IngestError(f"{infos[0].path}: has no valid pixels (all nodata or masked); nothing to show.")
    lo_p, hi_p = spec.percentiles
    lows, highs = np.percentile(values, [lo_p, hi_p], axis=1)
    pairs = []
    for lo, hi in zip(lows, highs):
        if not hi > lo:  # a flat band: show it mid-grey rather than divide by zero
            lo, hi = lo - 0.5, lo + 0.5
        pairs.append([_num(lo), _num(hi)])
    return {"method": "percentile", "percentiles": [lo_p, hi_p], "bands": pairs, "files": len(infos),
            "sample": " and ".join(sorted(reads))}


def describe_stretch(stretch: dict | None, band_map: Sequence[int]) -> str:
    """'stretched to 8 bits per band, 2-98 % percentiles (2 file(s), overviews): band 1 312..2890, ...',
    as the command and the dataset's datacard say it."""
    if not stretch:
        return "8-bit values as delivered"
    if stretch.get("method") == "percentile":
        lo, hi = stretch["percentiles"]
        how = f"{lo:g}-{hi:g} % percentiles ({stretch.get('files', 1)} file(s), {stretch.get('sample', 'sampled')})"
    else:
        how = "fixed min..max"
    pairs = ", ".join(f"band {b} {lo:g}..{hi:g}" for b, (lo, hi) in zip(band_map, stretch["bands"]))
    return f"stretched to 8 bits per band, {how}: {pairs}"


def _num(v) -> float:
    return float(f"{float(v):.6g}")


def _sample(info: RasterInfo, band_map: Sequence[int], max_pixels: int) -> tuple[np.ndarray, str]:
    """Valid values (bands x N, float64) of a decimated read of `band_map` (GDAL reads the overviews
    when the file has them), and what was read: "every pixel", "overviews" or "decimated read"."""
    scale = max(1.0, math.sqrt(info.width * info.height / max_pixels))
    shape = (len(band_map), max(1, round(info.height / scale)), max(1, round(info.width / scale)))
    try:
        with rasterio.open(info.path) as src:
            data = src.read(list(band_map), out_shape=shape, masked=True, resampling=Resampling.nearest)
            read = "every pixel" if scale == 1.0 else "overviews" if src.overviews(band_map[0]) else "decimated read"
    except (RasterioError, CPLE_BaseError) as exc:
        raise _corrupt(info.path, exc) from None
    values = np.ma.filled(data.astype(np.float64), np.nan).reshape(len(band_map), -1)
    return values[:, np.isfinite(values).all(axis=0)], read


def to_display(data: np.ndarray, valid: np.ndarray, stretch: dict | None) -> np.ndarray:
    """(bands, h, w) source values -> (3, h, w) uint8: stretched per band, one band repeated as grey,
    0 where not `valid`."""
    if stretch is None:
        out = np.clip(np.nan_to_num(data), 0, 255).astype(np.uint8)
    else:
        lo, hi = (np.asarray(v, dtype=np.float32).reshape(-1, 1, 1) for v in zip(*stretch["bands"]))
        scaled = (np.nan_to_num(data.astype(np.float32)) - lo) * (255.0 / (hi - lo))
        out = np.rint(np.clip(scaled, 0, 255)).astype(np.uint8)
    if out.shape[0] == 1:
        out = np.repeat(out, 3, axis=0)
    out[:, ~valid] = 0
    return out


# --- the campaign's grid and how a file is written onto it ---------------------------------------

@dataclass(frozen=True)
class Grid:
    """The campaign's pixel grid: its CRS, pixel size (CRS units) and a pixel corner on it."""

    crs: CRS
    res: float
    x0: float
    y0: float

    @classmethod
    def of(cls, cog: str | os.PathLike) -> "Grid":
        with rasterio.open(cog) as ds:
            return cls(ds.crs, abs(ds.transform.a), ds.transform.c, ds.transform.f)


@dataclass(frozen=True)
class DisplayPlan:
    info: RasterInfo
    bands: BandChoice
    crs: CRS
    transform: Affine
    width: int
    height: int
    warped: bool                 # reprojected or resampled
    resampling: Resampling
    stretched: bool

    @property
    def resolution_m(self) -> float:
        return _metres(abs(self.transform.a), self.crs, self.info.footprint_wgs84.centroid.y)

    @property
    def grid(self) -> Grid:
        return Grid(self.crs, abs(self.transform.a), self.transform.c, self.transform.f)

    @property
    def keeps_source(self) -> bool:
        """The original values are kept (a second COG) unless the file already was 8-bit RGB shown as is."""
        return self.stretched or self.info.dtype != "uint8" or self.bands.band_map != self.info.data_bands

    @property
    def direct(self) -> bool:
        """A plain copy of 8-bit RGB bands: written by GDAL alone, losslessly."""
        return not (self.warped or self.stretched) and len(self.bands.band_map) == 3


def plan_display(info: RasterInfo, bands: BandChoice, grid: Grid | None, *, resolution_m: float | None = None,
                 stretched: bool) -> DisplayPlan:
    """Where the display COG of `info` lies: its own grid when it is in the campaign's CRS (and not
    resampled), else warped into the campaign's CRS (`grid`; None for a campaign's first file)."""
    src_crs = CRS.from_wkt(info.crs_wkt)
    dst_crs = grid.crs if grid is not None else src_crs
    lat = info.footprint_wgs84.centroid.y
    with rasterio.open(info.path) as src:
        src_transform, bounds = src.transform, src.bounds
    target = None
    if resolution_m is not None:
        target = resolution_m / _metres(1.0, dst_crs, lat)
    if dst_crs == src_crs and (target is None or math.isclose(target, abs(src_transform.a), rel_tol=1e-9)):
        return DisplayPlan(info, bands, src_crs, src_transform, info.width, info.height, False, Resampling.nearest,
                           stretched)
    natural = calculate_default_transform(src_crs, dst_crs, info.width, info.height, *bounds)[0]
    res = target or abs(natural.a)
    x0 = y0 = 0.0
    if grid is not None and abs(res - grid.res) <= GRID_SNAP * grid.res:
        res, x0, y0 = grid.res, grid.x0, grid.y0
    left, bottom, right, top = transform_bounds(src_crs, dst_crs, *bounds, densify_pts=21)
    left = x0 + math.floor(round((left - x0) / res, 6)) * res
    top = y0 + math.ceil(round((top - y0) / res, 6)) * res
    width = max(1, math.ceil(round((right - left) / res, 6)))
    height = max(1, math.ceil(round((top - bottom) / res, 6)))
    coarser = res > 1.5 * abs(src_transform.a) * _metres(1.0, src_crs, lat) / _metres(1.0, dst_crs, lat)
    return DisplayPlan(info, bands, dst_crs, Affine(res, 0, left, 0, -res, top), width, height, True,
                       Resampling.average if coarser else Resampling.bilinear, stretched)


def resolution_warning(resolution_m: float, *, given: bool) -> str | None:
    lo, hi = STREET_BLOCK_RESOLUTION_M
    if lo <= resolution_m <= hi:
        return None
    what = "coarser than" if resolution_m > hi else "finer than"
    limit = hi if resolution_m > hi else lo
    advice = ("street blocks will be hard to label at this scale" if resolution_m > hi else
              f"tiles and chips will be large for street blocks; `--resolution {hi / 2:g}` (or any {lo:g}-{hi:g} m) "
              "resamples while writing the COG")
    return (f"{resolution_m:.2f} m pixels are {what} {limit:g} m{' (as asked with --resolution)' if given else ''}: "
            f"{advice}.")


# --- writing COGs -----------------------------------------------------------------------------

def write_cog(src_path: str | os.PathLike, dst_path: str | os.PathLike, *, indexes: Sequence[int] = (1, 2, 3),
              values: bool = False) -> Path:
    """Write bands `indexes` of `src_path` as a Cloud-Optimized GeoTIFF at `dst_path`, atomically:
    8-bit imagery with an internal mask (the display COG), or with `values` the original values
    (its own data type and nodata; floats with the floating-point predictor)."""
    from rio_cogeo import cogeo

    with rasterio.open(src_path) as src:
        tags, dtype, nodata = src.tags(), src.dtypes[0], src.nodata
    with _writing_cog(src_path, dst_path) as tmp:
        cogeo.cog_translate(
            str(src_path), str(tmp), _cog_profile(dtype), indexes=tuple(indexes),
            add_mask=not (values and nodata is not None), overview_resampling="average" if not values else "nearest",
            additional_cog_metadata=tags, quiet=True, in_memory=False,
        )
    return Path(dst_path)


def write_display_cog(plan: DisplayPlan, dst_path: str | os.PathLike, stretch: dict | None) -> Path:
    """The 8-bit RGB COG a scene is shown and chipped from: `plan`'s bands, stretched, warped."""
    if plan.direct:
        return write_cog(plan.info.path, dst_path, indexes=plan.bands.band_map)
    from rio_cogeo import cogeo

    with _writing_cog(plan.info.path, dst_path) as tmp:
        work = tmp.with_name(tmp.stem + ".work.tif")
        try:
            with ExitStack() as stack:
                stack.enter_context(rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True))
                src = stack.enter_context(rasterio.open(plan.info.path))
                reader = stack.enter_context(_warped(src, plan)) if plan.warped else src
                out = stack.enter_context(rasterio.open(
                    work, "w", driver="GTiff", width=plan.width, height=plan.height, count=3, dtype="uint8",
                    crs=plan.crs, transform=plan.transform, tiled=True, blockxsize=COG_BLOCK, blockysize=COG_BLOCK,
                    compress="deflate", zlevel=1, photometric="RGB"))
                tags = src.tags()
                out.update_tags(**tags)
                for w in _windows(plan.width, plan.height):
                    data = reader.read(list(plan.bands.band_map), window=w, out_dtype="float32")
                    valid = (reader.dataset_mask(window=w) > 0) & np.isfinite(data).all(axis=0)
                    out.write(to_display(data, valid, stretch), window=w)
                    out.write_mask(valid.astype(np.uint8) * 255, window=w)
            cogeo.cog_translate(str(work), str(tmp), _cog_profile("uint8"), add_mask=True,
                                overview_resampling="average", additional_cog_metadata=tags, quiet=True,
                                in_memory=False)
        finally:
            work.unlink(missing_ok=True)
            work.with_name(work.name + ".msk").unlink(missing_ok=True)
    return Path(dst_path)


@contextmanager
def _writing_cog(src_path, dst_path) -> Iterator[Path]:
    """A temporary path for the COG, renamed to `dst_path` once written and valid. Unreadable pixels
    become IngestError; on any failure nothing is left, not even the folders it made."""
    from rio_cogeo.cogeo import cog_validate

    dst_path = Path(dst_path)
    made = _missing_parents(dst_path.parent)
    done = False
    try:
        with atomic_file(dst_path) as tmp:
            try:
                yield tmp
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


def _cog_profile(dtype: str) -> dict:
    from rio_cogeo.profiles import cog_profiles

    profile = cog_profiles.get("deflate")
    floating = np.issubdtype(np.dtype(dtype), np.floating)
    profile.update(blockxsize=COG_BLOCK, blockysize=COG_BLOCK, predictor=3 if floating else 2)
    return profile


@contextmanager
def _warped(src, plan: DisplayPlan):
    """`src` warped onto `plan`'s grid; its dataset mask says where the source has pixels."""
    from rasterio.vrt import WarpedVRT

    kw = dict(crs=plan.crs, transform=plan.transform, width=plan.width, height=plan.height,
              resampling=plan.resampling)
    if src.nodata is not None:
        kw.update(src_nodata=src.nodata, nodata=src.nodata)
    elif MaskFlags.alpha not in src.mask_flag_enums[0]:
        kw.update(add_alpha=True)
    with WarpedVRT(src, **kw) as vrt:
        yield vrt


def _windows(width: int, height: int, size: int = WINDOW) -> Iterator[Window]:
    for row in range(0, height, size):
        for col in range(0, width, size):
            yield Window(col, row, min(size, width - col), min(size, height - row))


# --- the mosaic -------------------------------------------------------------------------------

def write_mosaic(cogs: Sequence[str | os.PathLike], dst: str | os.PathLike,
                 names: Sequence[str] | None = None) -> Path:
    """One GDAL VRT over display COGs (all in one CRS), atomically: bands 1-3 (red, green, blue) and
    a dataset mask; later COGs lie on top where their own masks say they have pixels. Its grid is
    the union of their bounds at the finest pixel size among them; sources are named relative to
    the VRT, so MEDIA_ROOT may move. `names`: the sources' names relative to where the VRT will
    live, when that is not `dst` (object storage: written locally, read as /vsis3/ objects)."""
    dst = Path(dst)
    relnames = dict(zip(map(str, cogs), names)) if names is not None else {}
    sources = []
    for p in map(Path, cogs):
        try:
            with rasterio.open(p) as ds:
                sources.append((p, ds.crs, ds.transform, ds.width, ds.height, ds.block_shapes[0]))
        except RasterioIOError as exc:
            raise IngestError(f"{p}: a scene's COG cannot be read ({exc}), so the campaign's mosaic cannot be built; "
                              "restore MEDIA_ROOT.") from None
    if not sources:
        raise ValueError("a mosaic needs at least one COG")
    crs = sources[0][1]
    for p, other, *_ in sources[1:]:
        if other != crs:
            raise IngestError(f"{p}: is in {other.to_string()}, the campaign's imagery in {crs.to_string()}; "
                              "re-import it so that it is warped into the campaign's CRS.")
    res_x = min(abs(t.a) for _, _, t, *_ in sources)
    res_y = min(abs(t.e) for _, _, t, *_ in sources)
    left = min(t.c for _, _, t, *_ in sources)
    top = max(t.f for _, _, t, *_ in sources)
    right = max(t.c + w * t.a for _, _, t, w, *_ in sources)
    bottom = min(t.f + h * t.e for _, _, t, _, h, _ in sources)
    root = ET.Element("VRTDataset", rasterXSize=str(max(1, math.ceil(round((right - left) / res_x, 6)))),
                      rasterYSize=str(max(1, math.ceil(round((top - bottom) / res_y, 6)))))
    ET.SubElement(root, "SRS", dataAxisToSRSAxisMapping="1,2").text = crs.to_wkt()
    ET.SubElement(root, "GeoTransform").text = ", ".join(repr(float(v)) for v in (left, res_x, 0, top, 0, -res_y))
    # implicit overviews: zoomed-out reads take each source's own overviews (GDAL builds none for a
    # VRT with masked sources by itself, and would read every full-resolution pixel)
    size, factors = max(int(root.get("rasterXSize")), int(root.get("rasterYSize"))), []
    while size / 2 ** (len(factors) + 1) >= COG_BLOCK / 2:
        factors.append(2 ** (len(factors) + 1))
    if factors:
        ET.SubElement(root, "OverviewList", resampling="average").text = " ".join(map(str, factors))

    def add_sources(band_el, band: str):
        for p, _, t, w, h, (bh, bw) in sources:
            s = ET.SubElement(band_el, "ComplexSource", resampling="bilinear" if band != "mask,1" else "nearest")
            ET.SubElement(s, "SourceFilename", relativeToVRT="1").text = relnames.get(str(p)) or os.path.relpath(
                p, dst.parent)
            ET.SubElement(s, "SourceBand").text = band
            ET.SubElement(s, "SourceProperties", RasterXSize=str(w), RasterYSize=str(h), DataType="Byte",
                          BlockXSize=str(bw), BlockYSize=str(bh))
            ET.SubElement(s, "SrcRect", xOff="0", yOff="0", xSize=str(w), ySize=str(h))
            ET.SubElement(s, "DstRect", xOff=_px((t.c - left) / res_x), yOff=_px((top - t.f) / res_y),
                          xSize=_px(w * abs(t.a) / res_x), ySize=_px(h * abs(t.e) / res_y))
            ET.SubElement(s, "UseMaskBand").text = "true"

    for i, colour in enumerate(("Red", "Green", "Blue"), start=1):
        band_el = ET.SubElement(root, "VRTRasterBand", dataType="Byte", band=str(i))
        ET.SubElement(band_el, "ColorInterp").text = colour
        add_sources(band_el, str(i))
    add_sources(ET.SubElement(ET.SubElement(root, "MaskBand"), "VRTRasterBand", dataType="Byte"), "mask,1")
    ET.indent(root)
    atomic_write_text(dst, ET.tostring(root, encoding="unicode") + "\n")
    os.chmod(dst, 0o644)
    return dst


def _px(v: float) -> str:
    """A pixel offset or size: an integer where it is one (to 1e-6 px), else the exact float."""
    r = round(v)
    return str(int(r)) if abs(v - r) < 1e-6 else repr(float(v))


# --- removing ---------------------------------------------------------------------------------

def remove_cog(path: str | os.PathLike, *, keep: str | os.PathLike) -> None:
    """Delete a COG (or the mosaic) and the folders above it that are left empty, up to (not including) `keep`."""
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
