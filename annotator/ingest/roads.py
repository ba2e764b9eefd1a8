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
from .vector import LINES, read_vector, require_geometry

VECTOR_SUFFIXES = {".geojson", ".json", ".gpkg", ".shp"}
NETWORKS = ("driving", "all")

# Road widths (m) per highway class when OSM gives neither width nor lanes: the whole road, both
# directions. DECISION: typical urban carriageway widths (two lanes of 3-3.5 m for minor roads, more
# for arterials). A link without `lanes` is one lane (one-way) or two (LINK_LANES).
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
# Dual roads: mapped as one one-way way per carriageway, each one carriageway wide (half the road).
# DECISION: OSM implies oneway=yes on motorways and motorway links; a trunk is one-way only when tagged.
DUAL_CLASSES = {"motorway", "trunk"}
IMPLIED_ONEWAY = {"motorway", "motorway_link"}
LINK_LANES = {True: 1, False: 2}  # lanes of a link without a `lanes` tag: one-way, two-way
ONEWAY_YES = {"yes", "true", "1", "-1", "reversible", "alternating"}
ONEWAY_NO = {"no", "false", "0"}
# Car roads: what bounds an LCZ block by default.
DRIVING_CLASSES = {
    "motorway", "trunk", "primary", "secondary", "tertiary", "unclassified", "residential",
    "living_street", "road", "motorway_link", "trunk_link", "primary_link", "secondary_link",
    "tertiary_link",
}


def read_road_lines(source: str | Path, network: str = "driving", *, layer: str | None = None) -> gpd.GeoDataFrame:
    """Road centre-lines in EPSG:4326 with columns `highway` and `width_m`.

    layer: the layer of a multi-layer file (GeoPackage); without it the file's only line layer.
    Raises IngestError for a missing file, an unknown format, non-line geometry, no CRS, an
    ambiguous or unknown layer, or no roads of the chosen network.
    """
    source = Path(source)
    if network not in NETWORKS:
        raise IngestError(f"--network must be one of {', '.join(NETWORKS)}; got {network!r}.")
    if not source.exists():
        raise IngestError(f"{source}: file not found.")
    name = source.name.lower()
    if name.endswith(".osm.pbf") or name.endswith(".pbf"):
        if layer is not None:
            raise IngestError(f"{source}: --layer is for multi-layer vector files (GeoPackage), not OSM extracts.")
        lines = _read_pbf(source, network)
    elif source.suffix.lower() in VECTOR_SUFFIXES:
        lines = _read_vector(source, network, layer)
    else:
        raise IngestError(
            f"{source}: unsupported format; give an .osm.pbf extract or road centre-lines as "
            "GeoJSON, GeoPackage or Shapefile."
        )
    if lines.empty:
        raise IngestError(f"{source}: no roads of the {network!r} network found.")
    lines = lines.copy()
    for tag in ("width", "lanes", "oneway"):
        if tag not in lines.columns:
            lines[tag] = None
    lines["width_m"] = [road_width_m(h, w, n, o) for h, w, n, o in
                        zip(lines["highway"], lines["width"], lines["lanes"], lines["oneway"])]
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


def _read_vector(source: Path, network: str, layer: str | None) -> gpd.GeoDataFrame:
    gdf = read_vector(source, layer=layer, want=LINES)
    require_geometry(gdf, LINES, expected="road centre-lines (LineString)",
                     instead="Ready-made block polygons go to `manage.py import_blocks`.", source=source)
    if "highway" not in gdf.columns:
        gdf["highway"] = "road"
    gdf["highway"] = gdf["highway"].fillna("road").astype(str)
    if network == "driving":
        gdf = gdf[gdf["highway"].isin(DRIVING_CLASSES)]
    return _explode_lines(gdf.to_crs("EPSG:4326"))


def _explode_lines(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    cols = [c for c in ("highway", "width", "lanes", "oneway") if c in gdf.columns]
    out = gdf[cols + ["geometry"]].explode(index_parts=False)
    out = out[out.geometry.notna() & ~out.geometry.is_empty & (out.geom_type == "LineString")]
    return out


_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)?")


def _tag(value) -> str:
    """An OSM tag's text; "" when the way lacks it (None or NaN)."""
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value).strip()


def _number(value) -> float | None:
    m = _NUMBER.search(_tag(value))
    if not m:
        return None
    try:
        v = float(m.group(0).replace(",", "."))
    except ValueError:
        return None
    return v if v > 0 else None


def road_width_m(highway, width=None, lanes=None, oneway=None) -> float:
    """The width of the way's carriageway: OSM `width` when given, else `lanes` x 3.25 m, else by
    class: a link is one lane one-way, two lanes otherwise; a one-way way of a dual road (motorway,
    trunk) is one carriageway, half the road; any other way the class default."""
    w = _number(width)
    if w is not None and w < 100:
        return w
    n = _number(lanes)
    if n is not None and n < 20:
        return n * LANE_WIDTH_M
    highway = str(highway or "")
    one_way = is_oneway(highway, oneway)
    if highway.endswith("_link"):
        return LINK_LANES[one_way] * LANE_WIDTH_M
    width_m = DEFAULT_WIDTH_M.get(highway, FALLBACK_WIDTH_M)
    return width_m / 2 if one_way and highway in DUAL_CLASSES else width_m


def is_oneway(highway: str, oneway=None) -> bool:
    """OSM `oneway` (yes/true/1/-1/...), or the class's implied value when untagged."""
    tag = _tag(oneway).lower()
    if tag in ONEWAY_YES:
        return True
    if tag in ONEWAY_NO:
        return False
    return highway in IMPLIED_ONEWAY
