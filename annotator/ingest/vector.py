"""Reading vector files (GeoJSON, GeoPackage, Shapefile): the one home of the checks every
vector input gets, so road lines, block polygons and boundaries are refused by the same rules, and
of the choice of a layer in a multi-layer file (GeoPackage)."""
from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pyogrio
import shapely
from shapely.geometry.base import BaseGeometry

from .errors import IngestError

LINES = frozenset({"LineString", "MultiLineString"})
POLYGONS = frozenset({"Polygon", "MultiPolygon"})


def read_vector(source: str | Path, *, layer: str | None = None,
                want: frozenset[str] | None = None) -> gpd.GeoDataFrame:
    """The features of one layer; IngestError when the file is missing, unreadable, empty or has
    no CRS, or when the layer cannot be chosen (`choose_layer`)."""
    source = Path(source)
    if not source.exists():
        raise IngestError(f"{source}: file not found.")
    chosen = choose_layer(source, layer, want)
    try:
        gdf = gpd.read_file(source, layer=chosen)
    except Exception as exc:  # pyogrio raises its own errors for every kind of unreadable file
        raise IngestError(f"{source}: could not read as a vector file ({exc}).") from None
    where = f"{source}" + (f" (layer {chosen!r})" if chosen is not None else "")
    if gdf.empty:
        raise IngestError(f"{where}: contains no features.")
    if gdf.crs is None:
        raise IngestError(f"{where}: has no CRS; save it with one (e.g. EPSG:4326).")
    return gdf


def choose_layer(source: Path, layer: str | None, want: frozenset[str] | None) -> str | None:
    """The layer to read: `layer` when given (it must exist); else the only layer; else the only
    layer whose geometry type is in `want`; else IngestError listing the layers and their types."""
    try:
        layers = [(str(name), _base_type(kind)) for name, kind in pyogrio.list_layers(source)]
    except Exception as exc:
        raise IngestError(f"{source}: could not read as a vector file ({exc}).") from None
    listing = ", ".join(f"{name} ({kind})" for name, kind in layers)
    if layer is not None:
        if layer not in {name for name, _ in layers}:
            raise IngestError(f"{source}: has no layer {layer!r}; its layers: {listing}.")
        return layer
    if len(layers) <= 1:
        return None
    fits = [name for name, kind in layers if want and kind in want]
    if len(fits) == 1:
        return fits[0]
    wanted = "/".join(sorted(want)) if want else "the features"
    raise IngestError(f"{source}: has {len(layers)} layers, {len(fits)} of them with {wanted}: {listing}. "
                      "Choose one with --layer NAME.")


def _base_type(kind) -> str:
    """'LineString' from pyogrio's 'LineString Z', '3D LineString', 'MultiLineString M' ..."""
    words = [w for w in str(kind).split() if w not in {"Z", "M", "ZM", "3D", "Measured"}]
    return " ".join(words) or "Unknown"


def require_geometry(gdf: gpd.GeoDataFrame, allowed: set[str] | frozenset[str], *, expected: str, instead: str,
                     source: str | Path | None = None) -> None:
    """IngestError naming what was found when a geometry type outside `allowed` is in the data;
    `instead` says where that kind of file goes."""
    bad = set(gdf.geom_type.dropna().unique()) - set(allowed)
    if bad:
        where = f"{source}: " if source is not None else ""
        raise IngestError(f"{where}expected {expected}, found {', '.join(sorted(bad))}. {instead}")


def read_boundary(source: str | Path, *, layer: str | None = None) -> BaseGeometry:
    """A city or study-area polygon file (any CRS) as one valid (Multi)Polygon in EPSG:4326."""
    gdf = read_vector(source, layer=layer, want=POLYGONS)
    require_geometry(gdf, POLYGONS, expected="a boundary polygon (city or study area)",
                     instead="Give the area's outline as Polygon features.", source=source)
    area = shapely.make_valid(shapely.union_all(gdf.to_crs("EPSG:4326").geometry.values))
    area = shapely.union_all([p for p in shapely.get_parts(area) if shapely.get_type_id(p) in (3, 6)])
    if area.is_empty or area.area == 0:
        raise IngestError(f"{source}: the boundary polygons enclose no area.")
    return area
