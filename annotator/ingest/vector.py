"""Reading vector files (GeoJSON, GeoPackage, Shapefile): the one home of the checks every
vector input gets, so road lines and block polygons are refused by the same rules."""
from __future__ import annotations

from pathlib import Path

import geopandas as gpd

from .errors import IngestError


def read_vector(source: str | Path) -> gpd.GeoDataFrame:
    """The file's features; IngestError when it is missing, unreadable, empty or has no CRS."""
    source = Path(source)
    if not source.exists():
        raise IngestError(f"{source}: file not found.")
    try:
        gdf = gpd.read_file(source)
    except Exception as exc:  # pyogrio raises its own errors for every kind of unreadable file
        raise IngestError(f"{source}: could not read as a vector file ({exc}).") from None
    if gdf.empty:
        raise IngestError(f"{source}: contains no features.")
    if gdf.crs is None:
        raise IngestError(f"{source}: has no CRS; save it with one (e.g. EPSG:4326).")
    return gdf


def require_geometry(gdf: gpd.GeoDataFrame, allowed: set[str], *, expected: str, instead: str,
                     source: str | Path | None = None) -> None:
    """IngestError naming what was found when a geometry type outside `allowed` is in the data;
    `instead` says where that kind of file goes."""
    bad = set(gdf.geom_type.dropna().unique()) - allowed
    if bad:
        where = f"{source}: " if source is not None else ""
        raise IngestError(f"{where}expected {expected}, found {', '.join(sorted(bad))}. {instead}")
