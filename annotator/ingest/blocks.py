"""Street blocks: node and polygonize road centre-lines, subtract road surfaces, clean up."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from .errors import IngestError
from .vector import require_geometry

DEFAULT_MIN_AREA_M2 = 50.0
KEY_GRID_DEG = 1e-7  # ~1 cm: coordinates are snapped to this grid for the stable block key


@dataclass
class BlockBuildReport:
    faces: int = 0
    removed_small: int = 0
    repaired: int = 0
    clipped_away: int = 0


def local_metric_crs(gdf: gpd.GeoDataFrame):
    """The UTM zone of the data: a metric CRS for areas and buffers."""
    return gdf.estimate_utm_crs()


def blocks_from_roads(
    roads: gpd.GeoDataFrame,
    *,
    min_area_m2: float = DEFAULT_MIN_AREA_M2,
    clip_to: BaseGeometry | None = None,
    step: Callable[[str], None] | None = None,
    report: BlockBuildReport | None = None,
) -> gpd.GeoDataFrame:
    """Block polygons (EPSG:4326, with `area_m2`) between road centre-lines.

    roads: lines in any CRS with a `width_m` column (carriageway width).
    clip_to: optional polygon in EPSG:4326 (the imagery footprint) the blocks are clipped to.
    """
    step = step or (lambda _name: None)
    report = report if report is not None else BlockBuildReport()
    if roads.empty:
        raise IngestError("no roads to build blocks from.")
    metric = local_metric_crs(roads.to_crs("EPSG:4326"))
    roads_m = roads.to_crs(metric)

    step("node")
    noded = shapely.union_all(roads_m.geometry.values)  # nodes the lines at every crossing
    step("polygonize")
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))
    report.faces = len(faces)
    if len(faces) == 0:
        raise IngestError("the roads enclose no area: no street blocks could be formed.")

    step("subtract road surfaces")
    surfaces = shapely.buffer(roads_m.geometry.values, roads_m["width_m"].to_numpy() / 2.0, quad_segs=4)
    pieces = shapely.get_parts(_subtract_nearby(faces, surfaces))

    step("repair")
    pieces, report.repaired = _valid_polygons(pieces)

    if clip_to is not None:
        step("clip to imagery")
        clip_m = gpd.GeoSeries([clip_to], crs="EPSG:4326").to_crs(metric).iloc[0]
        before = len(pieces)
        pieces = shapely.get_parts(shapely.intersection(pieces, clip_m))
        pieces, _ = _valid_polygons(pieces)
        report.clipped_away = max(0, before - len(pieces))

    step("drop slivers")
    areas = shapely.area(pieces)
    keep = areas >= min_area_m2
    report.removed_small = int((~keep).sum())
    pieces = pieces[keep]
    if len(pieces) == 0:
        raise IngestError(
            f"no street block of at least {min_area_m2:g} m² remains"
            + (" inside the imagery footprint" if clip_to is not None else "")
            + "; check the roads file, the --network choice and --min-area."
        )
    return finalise_blocks(gpd.GeoDataFrame(geometry=pieces, crs=metric))


def _subtract_nearby(faces: np.ndarray, surfaces: np.ndarray) -> np.ndarray:
    """faces minus the road surfaces touching each face (an STRtree keeps it local: subtracting the
    whole network's union from every face costs ~10x more on a city extract)."""
    face_idx, surface_idx = shapely.STRtree(surfaces).query(faces, predicate="intersects")
    out = faces.copy()
    order = np.argsort(face_idx, kind="stable")
    face_idx, surface_idx = face_idx[order], surface_idx[order]
    starts = np.flatnonzero(np.r_[True, face_idx[1:] != face_idx[:-1]]) if len(face_idx) else []
    bounds = list(starts) + [len(face_idx)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        i = face_idx[a]
        out[i] = shapely.difference(faces[i], shapely.union_all(surfaces[surface_idx[a:b]]))
    return out


def _valid_polygons(geoms: np.ndarray) -> tuple[np.ndarray, int]:
    invalid = ~shapely.is_valid(geoms)
    repaired = int(invalid.sum())
    if repaired:
        geoms = geoms.copy()
        geoms[invalid] = shapely.make_valid(geoms[invalid])
    parts = shapely.get_parts(geoms)
    parts = parts[(shapely.get_type_id(parts) == 3) & ~shapely.is_empty(parts)]  # Polygons only
    return parts, repaired


def blocks_from_polygons(gdf: gpd.GeoDataFrame, *, min_area_m2: float = DEFAULT_MIN_AREA_M2) -> gpd.GeoDataFrame:
    """Ready-made block polygons (any CRS): explode, repair, drop slivers, compute areas."""
    if gdf.crs is None:
        raise IngestError("the block polygons have no CRS; save them with one (e.g. EPSG:4326).")
    require_geometry(gdf, {"Polygon", "MultiPolygon"}, expected="block polygons",
                     instead="Road centre-lines go to `manage.py import_osm_blocks`.")
    metric = local_metric_crs(gdf.to_crs("EPSG:4326"))
    pieces, _ = _valid_polygons(gdf.to_crs(metric).geometry.values)
    pieces = pieces[shapely.area(pieces) >= min_area_m2]
    if len(pieces) == 0:
        raise IngestError(f"no polygon of at least {min_area_m2:g} m² in the file.")
    return finalise_blocks(gpd.GeoDataFrame(geometry=pieces, crs=metric))


def finalise_blocks(blocks_m: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """From metric polygons: EPSG:4326 geometry, area_m2 (metric), stable block_key; sorted by key."""
    out = gpd.GeoDataFrame(
        {"area_m2": shapely.area(blocks_m.geometry.values)},
        geometry=blocks_m.geometry.to_crs("EPSG:4326").values,
        crs="EPSG:4326",
    )
    out["block_key"] = [block_key(g) for g in out.geometry.values]
    out = out.drop_duplicates("block_key").sort_values("block_key").reset_index(drop=True)
    return out


def block_key(geom: Polygon) -> str:
    """A stable id from the geometry (snapped to ~1 cm, normalised): same block, same key."""
    snapped = shapely.normalize(shapely.set_precision(geom, KEY_GRID_DEG))
    return "b" + hashlib.sha1(shapely.to_wkb(snapped, hex=False, output_dimension=2)).hexdigest()[:15]
