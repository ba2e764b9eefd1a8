"""Imagery tiles: XYZ tiles in Web Mercator rendered with rio-tiler from a campaign's mosaic (the
GDAL VRT over all its scenes' COGs: one seamless layer, what the pages draw) or from one scene's COG.

Whatever the imagery's CRS (UTM, ETRS-TM35FIN, WGS 84, ...), tiles are 256 px WebMercatorQuad
tiles (the Leaflet/OSM grid). Three things keep repeat requests cheap:

- open readers are pooled per process (a small LRU keyed by the file's path and identity;
  a reader serves one thread at a time, so this is thread-safe under threaded servers);
- encoded tiles go into Django's cache (`caches["tiles"]` when configured, else "default"),
  keyed by the file's identity (path, inode, size, mtime): a replaced COG, or a mosaic rebuilt
  by an import (written anew, atomically), never serves stale tiles and needs no invalidation;
- the ETag is derived from the same key, so a 304 is answered without reading any pixels.

With object storage (annotator/media.py, STORAGE_URL=s3://...) the files are opened as /vsis3/
paths: GDAL fetches only the byte ranges of the blocks a tile needs, nothing is copied locally,
and the identity is the object's ETag and Last-Modified (one HEAD request per tile request).

Measured on this project's 2-core machine (scripts/bench_tiles.py, CPU time per 256 px tile of
the demo COG): reading ~6-10 ms (rio-tiler/GDAL warp), encoding with Pillow ~0.4 ms as JPEG,
~2.5 ms as WebP, ~3 ms as PNG (zlib level 1). GDAL's own drivers (ImageData.render) took 7 ms
(JPEG), 18 ms (WebP) and 26 ms (PNG) for the same tiles, so Pillow encodes here.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from django.conf import settings
from django.core.cache import caches
from PIL import Image
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader

from . import media

logger = logging.getLogger(__name__)

TILE_SIZE = 256
MAX_ZOOM = 24
#: Bump when the rendering changes: every cache key and ETag turns over with it.
RENDER_VERSION = 1
DEFAULT_FORMAT = "webp"
FORMATS = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
FORMAT_ALIASES = {"jpg": "jpeg"}
JPEG_QUALITY = 85
WEBP_QUALITY = 80
WEBP_METHOD = 0  # 0 = fastest; 4 (Pillow's default) was 2x slower here for ~15 % smaller tiles
PNG_COMPRESS_LEVEL = 1  # level 6 (default) was ~3x slower here for ~15 % smaller tiles
CACHE_TIMEOUT = 7 * 24 * 3600  # keys carry the file identity: entries can never be stale
EMPTY = b""  # cached marker for "no imagery in this tile"


class ImageryMissing(Exception):
    """The scene's COG, or the campaign's mosaic, is not in the media store (MEDIA_ROOT or STORAGE_URL)."""


@dataclass(frozen=True)
class ImageryFile:
    """A file tiles are read from (a scene's COG, a campaign's mosaic VRT) and its identity (changes
    whenever the file is replaced or rewritten); `name` says whose it is in cache keys."""

    path: Path
    identity: str
    name: str = ""


def normalise_format(fmt: str) -> str | None:
    fmt = FORMAT_ALIASES.get(fmt.lower(), fmt.lower())
    return fmt if fmt in FORMATS else None


def valid_tile(z: int, x: int, y: int) -> bool:
    return 0 <= z <= MAX_ZOOM and 0 <= x < 2**z and 0 <= y < 2**z


def _imagery_file(rel: str, name: str, what: str) -> ImageryFile:
    if media.is_remote():  # object storage: GDAL reads /vsis3/ byte ranges; the ETag is the identity
        st = media.stat(rel) if rel else None
        path = Path(media.gdal_path(rel))
        if st is None:
            raise ImageryMissing(f"{what} {path if rel else ''} is missing; re-import the imagery "
                                 "(`manage.py import_imagery`) or check STORAGE_URL.")
        raw = f"{path}|{st.version}|{st.size}|v{RENDER_VERSION}"
        return ImageryFile(path=path, identity=hashlib.sha1(raw.encode()).hexdigest()[:20], name=name)
    path = Path(settings.MEDIA_ROOT) / rel
    try:
        st = os.stat(path) if rel else None
    except FileNotFoundError:
        st = None
    if st is None:
        raise ImageryMissing(f"{what} {path if rel else ''} is missing; re-import the imagery "
                             "(`manage.py import_imagery`) or check MEDIA_ROOT.")
    raw = f"{path.resolve()}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|v{RENDER_VERSION}"
    return ImageryFile(path=path, identity=hashlib.sha1(raw.encode()).hexdigest()[:20], name=name)


def scene_file(scene) -> ImageryFile:
    return _imagery_file(scene.cog_path, f"scene-{scene.pk}", f"scene {scene.pk}: COG")


def mosaic_file(campaign) -> ImageryFile:
    """The campaign's mosaic (services.rebuild_mosaic writes it at each import)."""
    return _imagery_file(campaign.mosaic_path, f"campaign-{campaign.pk}", f"campaign {campaign.pk}: imagery mosaic")


def imagery_file(owner) -> ImageryFile:
    """The file tiles of `owner` come from: a campaign's mosaic, or a scene's COG."""
    from .models import Campaign

    return mosaic_file(owner) if isinstance(owner, Campaign) else scene_file(owner)


def tile_cache():
    return caches["tiles" if "tiles" in settings.CACHES else "default"]


def tile_key(owner, sf: ImageryFile, z: int, x: int, y: int, fmt: str) -> str:
    """The cache key of a tile of `owner` (a campaign or a scene) read from `sf`."""
    return f"tile:{sf.name}:{sf.identity}:{z}/{x}/{y}.{fmt}"


def tile_etag(owner, sf: ImageryFile, z: int, x: int, y: int, fmt: str) -> str:
    return '"' + hashlib.sha1(tile_key(owner, sf, z, x, y, fmt).encode()).hexdigest()[:24] + '"'


# --- open readers, pooled per process ---------------------------------------------------------

class ReaderPool:
    """LRU of open rio-tiler Readers keyed by (path, file identity).

    Each Reader (and its rasterio dataset) is lent to one thread at a time; up to `per_file`
    idle readers are kept per file so threaded servers read one COG in parallel. Readers of a
    replaced file (same path, new identity) are closed when the new one is first used.
    """

    def __init__(self, max_files: int = 16, per_file: int = 4):
        self.max_files = max_files
        self.per_file = per_file
        self._idle: OrderedDict[tuple[str, str], list[Reader]] = OrderedDict()
        self._lock = threading.Lock()
        self.opened = 0  # readers opened so far (tests and the benchmark read it)

    @contextmanager
    def reader(self, sf: ImageryFile):
        key = (str(sf.path), sf.identity)
        to_close: list[Reader] = []
        with self._lock:
            for other in [k for k in self._idle if k[0] == key[0] and k != key]:
                to_close += self._idle.pop(other)
            idle = self._idle.setdefault(key, [])
            self._idle.move_to_end(key)
            rdr = idle.pop() if idle else None
            while len(self._idle) > self.max_files:
                to_close += self._idle.popitem(last=False)[1]
        _close_all(to_close)
        if rdr is None:
            # no directory listing at open: imagery folders can hold many files
            # (object storage: the endpoint and keys are in the process environment, media.configure_gdal;
            # rasterio.Env refuses AWS options)
            with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
                rdr = Reader(str(sf.path))
            with self._lock:
                self.opened += 1
        try:
            yield rdr
        finally:
            with self._lock:
                idle = self._idle.get(key)
                if idle is not None and len(idle) < self.per_file:
                    idle.append(rdr)
                    rdr = None
            if rdr is not None:
                rdr.close()

    def clear(self) -> None:
        with self._lock:
            readers = [r for idle in self._idle.values() for r in idle]
            self._idle.clear()
        _close_all(readers)


def _close_all(readers) -> None:
    for r in readers:
        try:
            r.close()
        except Exception:  # pragma: no cover - closing must never break a request
            logger.exception("closing a tile reader failed")


readers = ReaderPool()


# --- reading and encoding ---------------------------------------------------------------------

def read_tile(sf: ImageryFile, z: int, x: int, y: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(rgb uint8 HxWx3, mask uint8 HxW: 255 = imagery) of one tile, or None if it has none."""
    with readers.reader(sf) as rdr:
        try:
            img = rdr.tile(x, y, z, tilesize=TILE_SIZE, indexes=(1, 2, 3))
        except TileOutsideBounds:
            return None
    mask = img.mask
    if not mask.any():
        return None  # inside the imagery's bounding box but outside its pixels
    rgb = np.moveaxis(np.asarray(img.data), 0, -1)
    if rgb.dtype != np.uint8:  # ingest writes 8-bit RGB (stretched); be safe anyway
        rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(rgb), mask


def encode(rgb: np.ndarray, mask: np.ndarray, fmt: str) -> bytes:
    """Encode with Pillow. JPEG has no alpha: area outside the scene is black there."""
    buf = io.BytesIO()
    if fmt == "jpeg":
        Image.fromarray(rgb, "RGB").save(buf, "JPEG", quality=JPEG_QUALITY)
        return buf.getvalue()
    full = bool(mask.all())
    image = Image.fromarray(rgb, "RGB") if full else Image.fromarray(np.dstack([rgb, mask]), "RGBA")
    if fmt == "webp":
        image.save(buf, "WEBP", quality=WEBP_QUALITY, method=WEBP_METHOD)
    elif fmt == "png":
        image.save(buf, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    else:
        raise ValueError(f"unknown tile format {fmt!r}; use one of {', '.join(FORMATS)}")
    return buf.getvalue()


def render_tile(owner, z: int, x: int, y: int, fmt: str = DEFAULT_FORMAT, *,
                sf: ImageryFile | None = None, use_cache: bool = True) -> bytes | None:
    """Encoded bytes of tile z/x/y of `owner` (a campaign: its mosaic; a scene: its COG), or None
    where it has no imagery.

    Raises ValueError for a bad format or tile address, ImageryMissing when the file is gone.
    """
    fmt_n = normalise_format(fmt)
    if fmt_n is None:
        raise ValueError(f"unknown tile format {fmt!r}; use one of {', '.join(FORMATS)}")
    if not valid_tile(z, x, y):
        raise ValueError(f"tile {z}/{x}/{y} does not exist (z 0..{MAX_ZOOM}, x and y 0..2^z-1)")
    sf = sf or imagery_file(owner)
    cache = tile_cache() if use_cache else None
    key = tile_key(owner, sf, z, x, y, fmt_n)
    if cache is not None:
        try:
            hit = cache.get(key)
        except Exception:  # a cache outage slows tiles down; it must not break the map
            logger.warning("tile cache unavailable; rendering %s", key, exc_info=True)
            cache, hit = None, None
        if hit is not None:
            return hit or None
    pixels = read_tile(sf, z, x, y)
    data = encode(*pixels, fmt_n) if pixels is not None else None
    if cache is not None:
        try:
            cache.set(key, data if data is not None else EMPTY, CACHE_TIMEOUT)
        except Exception:
            logger.warning("tile cache unavailable; %s not stored", key, exc_info=True)
    return data


def tile_info(owner, sf: ImageryFile | None = None) -> dict:
    """Bounds (WGS 84) and the native zoom range of a campaign's mosaic or a scene, as rio-tiler
    computes them."""
    sf = sf or imagery_file(owner)
    cache = tile_cache()
    key = f"tileinfo:{sf.name}:{sf.identity}"
    info = cache.get(key)
    if info is None:
        with readers.reader(sf) as rdr:
            bounds = [float(v) for v in rdr.get_geographic_bounds(rasterio.crs.CRS.from_epsg(4326))]
            info = {"bounds": bounds, "minzoom": int(rdr.minzoom), "maxzoom": int(rdr.maxzoom)}
        cache.set(key, info, CACHE_TIMEOUT)
    return info


scene_tile_info = tile_info
