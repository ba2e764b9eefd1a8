"""Road centre-lines from an OSM extract (.osm.pbf, via pyrosm) or a vector file.

LCZ blocks are bounded by streets a car can use, not by footpaths: the default `driving`
network keeps only those highway classes; `all` keeps every way.
"""
from __future__ import annotations

import re
from pathlib import Path

import geopandas as gpd
import pandas as pd

from .errors import IngestError
from .vector import read_vector, require_geometry

VECTOR_SUFFIXES = {".geojson", ".json", ".gpkg", ".shp"}
NETWORKS = ("driving", "all")

# Carriageway widths (m) per highway class when OSM gives neither width nor lanes.
# DECISION: typical urban carriageway widths (two lanes of 3-3.5 m for minor roads, more for
# arterials). Links get their parent's width.
DEFAULT_WIDTH_M = {
    "motorway": 24.0,
    "trunk": 20.0,
    "primary": 16.0,
    "secondary": 14.0,
    "tertiary": 11.0,
    "unclassified": 7.0,
    "residential": 7.0,
    "living_street": 6.0,
    "service": 5.0,
    "road": 7.0,
    "busway": 7.0,
    "track": 3.0,
    "pedestrian": 5.0,
    "cycleway": 2.5,
    "footway": 2.0,
    "path": 1.5,
    "steps": 2.0,
    "bridleway": 2.0,
}
FALLBACK_WIDTH_M = 7.0
LANE_WIDTH_M = 3.25
# Car roads: what bounds an LCZ block by default.
DRIVING_CLASSES = {
    "motorway", "trunk", "primary", "secondary", "tertiary", "unclassified", "residential",
    "living_street", "road", "motorway_link", "trunk_link", "primary_link", "secondary_link",
    "tertiary_link",
}


def read_road_lines(source: str | Path, network: str = "driving") -> gpd.GeoDataFrame:
    """Road centre-lines in EPSG:4326 with columns `highway` and `width_m`.

    Raises IngestError for a missing file, an unknown format, non-line geometry, no CRS, or
    no roads of the chosen network.
    """
    source = Path(source)
    if network not in NETWORKS:
        raise IngestError(f"--network must be one of {', '.join(NETWORKS)}; got {network!r}.")
    if not source.exists():
        raise IngestError(f"{source}: file not found.")
    name = source.name.lower()
    if name.endswith(".osm.pbf") or name.endswith(".pbf"):
        lines = _read_pbf(source, network)
    elif source.suffix.lower() in VECTOR_SUFFIXES:
        lines = _read_vector(source, network)
    else:
        raise IngestError(
            f"{source}: unsupported format; give an .osm.pbf extract or road centre-lines as "
            "GeoJSON, GeoPackage or Shapefile."
        )
    if lines.empty:
        raise IngestError(f"{source}: no roads of the {network!r} network found.")
    lines = lines.copy()
    for tag in ("width", "lanes"):
        if tag not in lines.columns:
            lines[tag] = None
    lines["width_m"] = [road_width_m(h, w, n) for h, w, n in zip(lines["highway"], lines["width"], lines["lanes"])]
    return lines[["highway", "width_m", "geometry"]].reset_index(drop=True)


def _read_pbf(source: Path, network: str) -> gpd.GeoDataFrame:
    import pyrosm

    try:
        osm = pyrosm.OSM(str(source))
        roads = osm.get_network(network_type="driving" if network == "driving" else "all")
    except Exception as exc:  # pyrosm raises plain Exceptions/ValueErrors on unreadable files
        raise IngestError(f"{source}: could not read as an OSM extract ({exc}).") from None
    if roads is None or len(roads) == 0:
        return gpd.GeoDataFrame({"highway": [], "width": [], "lanes": []}, geometry=[], crs="EPSG:4326")
    roads = roads.set_crs("EPSG:4326", allow_override=True)
    if network == "driving":
        roads = roads[roads["highway"].isin(DRIVING_CLASSES)]
    return _explode_lines(roads)


def _read_vector(source: Path, network: str) -> gpd.GeoDataFrame:
    gdf = read_vector(source)
    require_geometry(gdf, {"LineString", "MultiLineString"}, expected="road centre-lines (LineString)",
                     instead="Ready-made block polygons go to `manage.py import_blocks`.", source=source)
    if "highway" not in gdf.columns:
        gdf["highway"] = "road"
    gdf["highway"] = gdf["highway"].fillna("road").astype(str)
    if network == "driving":
        gdf = gdf[gdf["highway"].isin(DRIVING_CLASSES)]
    return _explode_lines(gdf.to_crs("EPSG:4326"))


def _explode_lines(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    cols = [c for c in ("highway", "width", "lanes") if c in gdf.columns]
    out = gdf[cols + ["geometry"]].explode(index_parts=False)
    out = out[out.geometry.notna() & ~out.geometry.is_empty & (out.geom_type == "LineString")]
    return out


_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)?")


def _number(value) -> float | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    m = _NUMBER.search(str(value))
    if not m:
        return None
    try:
        v = float(m.group(0).replace(",", "."))
    except ValueError:
        return None
    return v if v > 0 else None


def road_width_m(highway, width=None, lanes=None) -> float:
    """Carriageway width: OSM `width` when given, else `lanes` x 3.25 m, else the class default."""
    w = _number(width)
    if w is not None and w < 100:
        return w
    n = _number(lanes)
    if n is not None and n < 20:
        return n * LANE_WIDTH_M
    cls = str(highway or "").removesuffix("_link")
    return DEFAULT_WIDTH_M.get(cls, FALLBACK_WIDTH_M)
