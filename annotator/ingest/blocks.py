"""Street blocks: node and polygonize road centre-lines closed by a boundary, subtract road
surfaces, clean up; or ready-made polygons, checked the same way.

The boundary closes the blocks the roads leave open (a road set clipped to a tile, the blocks along an
extract's edge): the campaign's imagery footprint, a study-area polygon, or else the roads' extent.
A block that touches it is an *edge* block (`edge`): cut by the boundary, not bounded by roads.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from typing import Callable

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry import Polygon, box
from shapely.geometry.base import BaseGeometry

from .errors import IngestError
from .vector import POLYGONS, require_geometry

DEFAULT_MIN_AREA_M2 = 50.0
# DECISION: a block's mean width is 2·area/perimeter (a long strip of width w: ~w). Strips left between
# parallel carriageways, slip roads and dual roads' central reservations are under 5 m; city blocks
# are tens of metres wide.
DEFAULT_MIN_WIDTH_M = 5.0
KEY_GRID_DEG = 1e-7  # ~1 cm: coordinates are snapped to this grid for the stable block key
EDGE_TOLERANCE_M = 0.01  # a block this close to the boundary touches it
INSET_DEG = 1e-9  # ~0.1 mm: edge blocks stop this far inside the boundary in EPSG:4326


@dataclass
class BlockBuildReport:
    """What building blocks kept and dropped, and why (the commands print it)."""
    faces: int = 0  # areas the roads and the boundary enclose
    invalid: int = 0  # polygons empty, or with no area left after repair (dropped)
    removed_small: int = 0  # slivers under the minimum area (dropped)
    removed_thin: int = 0  # strips under the minimum mean width (dropped)
    outside: int = 0  # outside the boundary (dropped)
    repaired: int = 0
    edge: int = 0  # blocks kept that touch the boundary

    def dropped(self, min_area_m2: float, min_width_m: float, over_annotated: int = 0) -> str:
        """What was dropped and why, for a command's report ("none" when nothing was); `over_annotated`:
        new blocks the import dropped over annotated ones (services.import_street_blocks)."""
        parts = [f"{n} {what}" for n, what in (
            (self.removed_small, f"slivers under {min_area_m2:g} m²"),
            (self.removed_thin, f"strips under {min_width_m:g} m mean width"),
            (self.invalid, "invalid or empty"), (self.outside, "outside the boundary"),
            (over_annotated, "overlapping annotated blocks")) if n]
        return ", ".join(parts) or "none"


def check_sliver_options(min_area_m2: float, min_width_m: float) -> None:
    """IngestError unless both thresholds are finite numbers >= 0."""
    for option, value, unit in (("--min-area", min_area_m2, "m²"), ("--min-width", min_width_m, "m")):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise IngestError(f"{option} must be a number of {unit} of at least 0; got {value!r}.")


def local_metric_crs(gdf: gpd.GeoDataFrame):
    """The UTM zone of the data: a metric CRS for areas and buffers."""
    return gdf.estimate_utm_crs()


def blocks_from_roads(
    roads: gpd.GeoDataFrame,
    *,
    min_area_m2: float = DEFAULT_MIN_AREA_M2,
    min_width_m: float = DEFAULT_MIN_WIDTH_M,
    boundary: BaseGeometry | None = None,
    boundary_name: str = "the imagery footprint",
    clip_to: BaseGeometry | None = None,
    step: Callable[[str], None] | None = None,
    report: BlockBuildReport | None = None,
) -> gpd.GeoDataFrame:
    """Block polygons (EPSG:4326, with `area_m2`, `block_key`, `edge`) between road centre-lines.

    roads: lines in any CRS with a `width_m` column (carriageway width).
    boundary: a (Multi)Polygon in EPSG:4326 that closes and clips the blocks (`clip_to` is its old
    name); None: the roads' extent. Blocks touching it have `edge` True.
    """
    check_sliver_options(min_area_m2, min_width_m)
    step = step or (lambda _name: None)
    report = report if report is not None else BlockBuildReport()
    boundary = boundary if boundary is not None else clip_to
    if roads.empty:
        raise IngestError("no roads to build blocks from.")
    roads_4326 = roads.to_crs("EPSG:4326")
    metric = local_metric_crs(roads_4326)
    roads_m = roads.to_crs(metric)
    lines = roads_m.geometry.values
    if boundary is None:
        area = box(*roads_m.total_bounds)
    else:
        area = solid_area(_in_crs(boundary, metric))
        if not shapely.intersects(lines, area).any():
            raise IngestError(
                f"the roads and {boundary_name} do not overlap: roads {_extent(roads_4326.total_bounds)}, "
                f"{boundary_name} {_extent(boundary.bounds)} (lon/lat). Check the roads file's area and CRS, "
                "or give the study area with --boundary.")
    rim = shapely.boundary(area)

    step("node")
    noded = shapely.union_all(np.append(lines, rim))  # nodes the lines at every crossing and at the rim
    step("polygonize")
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))
    shapely.prepare(area)
    inside = shapely.contains(area, shapely.point_on_surface(faces)) if len(faces) else np.zeros(0, bool)
    report.outside += int((~inside).sum())
    faces = faces[inside]
    report.faces = len(faces)
    if len(faces) == 0:
        raise IngestError("the roads enclose no area: no street blocks could be formed.")

    step("subtract road surfaces")
    surfaces = shapely.buffer(lines, roads_m["width_m"].to_numpy() / 2.0, quad_segs=4)
    pieces = shapely.get_parts(_subtract_nearby(faces, surfaces))

    step("repair")
    pieces, report.repaired, _ = _valid_polygons(pieces)

    step("drop slivers")
    pieces = pieces[keep_unslivered(pieces, min_area_m2, min_width_m, report)]
    if len(pieces) == 0:
        raise IngestError(
            f"no street block of at least {min_area_m2:g} m² and {min_width_m:g} m mean width remains"
            + (f" inside {boundary_name}" if boundary is not None else "")
            + "; check the roads file, the --network choice, --min-area and --min-width."
        )
    edge = shapely.dwithin(pieces, rim, EDGE_TOLERANCE_M)
    report.edge = int(edge.sum())
    within = None if boundary is None else without_small_holes(  # the boundary less its seams' gaps
        boundary, MIN_HOLE_M2 / (111_320.0 ** 2 * math.cos(math.radians(boundary.centroid.y))))
    return finalise_blocks(gpd.GeoDataFrame({"edge": edge}, geometry=pieces, crs=metric), within=within)


def _in_crs(boundary: BaseGeometry, crs) -> BaseGeometry:
    """A boundary in EPSG:4326 in `crs`, valid."""
    return shapely.make_valid(gpd.GeoSeries([boundary], crs="EPSG:4326").to_crs(crs).iloc[0])


def _extent(bounds) -> str:
    return "[{:.5f}, {:.5f} – {:.5f}, {:.5f}]".format(*bounds)


def keep_unslivered(pieces: np.ndarray, min_area_m2: float, min_width_m: float,
                    report: BlockBuildReport) -> np.ndarray:
    """Which metric polygons are not slivers: at least `min_area_m2`, and at least `min_width_m` in
    mean width (2·area/perimeter). Those dropped are counted in `report`."""
    areas = shapely.area(pieces)
    small = areas < min_area_m2
    with np.errstate(divide="ignore", invalid="ignore"):
        thin = ~small & (2 * areas / shapely.length(pieces) < min_width_m)
    report.removed_small += int(small.sum())
    report.removed_thin += int(thin.sum())
    return ~small & ~thin


def _subtract_nearby(faces: np.ndarray, surfaces: np.ndarray) -> np.ndarray:
    """faces minus the road surfaces touching each face (an STRtree keeps it local: subtracting the
    whole network's union from every face costs ~10x more on a city extract).

    Speed: each face's surfaces go in one row of a None-padded 2-D array, so the unions and
    differences are two vectorised GEOS calls per slice of faces (shapely releases the GIL), the
    slices run on a thread per core; each face gets exactly the union and difference it got alone."""
    face_idx, surface_idx = shapely.STRtree(surfaces).query(faces, predicate="intersects")
    out = faces.copy()
    if not len(face_idx):
        return out
    order = np.argsort(face_idx, kind="stable")
    face_idx, surface_idx = face_idx[order], surface_idx[order]
    starts = np.flatnonzero(np.r_[True, face_idx[1:] != face_idx[:-1]])
    rows = face_idx[starts]                                   # the faces that touch any surface
    col = np.arange(len(face_idx)) - np.repeat(starts, np.diff(np.r_[starts, len(face_idx)]))
    nearby = np.full((len(rows), int(col.max()) + 1), None, dtype=object)
    nearby[np.repeat(np.arange(len(rows)), np.diff(np.r_[starts, len(face_idx)])), col] = surfaces[surface_idx]

    def subtract(sl: slice) -> None:
        out[rows[sl]] = shapely.difference(faces[rows[sl]], shapely.union_all(nearby[sl], axis=1))

    step = max(64, -(-len(rows) // (4 * (os.cpu_count() or 1))))
    slices = [slice(i, i + step) for i in range(0, len(rows), step)]
    if len(slices) == 1:
        subtract(slices[0])
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            list(pool.map(subtract, slices))
    return out


def _valid_polygons(geoms: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """(the non-empty Polygons of `geoms` with invalid ones repaired, how many were repaired, the
    index in `geoms` each comes from). Missing and empty geometries give nothing."""
    invalid = ~shapely.is_valid(geoms) & ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)
    repaired = int(invalid.sum())
    if repaired:
        geoms = geoms.copy()
        geoms[invalid] = shapely.make_valid(geoms[invalid])
    parts, index = shapely.get_parts(geoms, return_index=True)
    keep = (shapely.get_type_id(parts) == 3) & ~shapely.is_empty(parts)  # Polygons only
    return parts[keep], repaired, index[keep]


def blocks_from_polygons(gdf: gpd.GeoDataFrame, *, min_area_m2: float = DEFAULT_MIN_AREA_M2,
                         min_width_m: float = DEFAULT_MIN_WIDTH_M, boundary: BaseGeometry | None = None,
                         report: BlockBuildReport | None = None) -> gpd.GeoDataFrame:
    """Ready-made block polygons (any CRS): explode, repair, drop slivers (by area and mean width)
    and, with a `boundary` (EPSG:4326), polygons outside it; a polygon crossing it is kept whole
    with `edge` True. What was dropped and why is counted in `report`."""
    check_sliver_options(min_area_m2, min_width_m)
    report = report if report is not None else BlockBuildReport()
    if gdf.crs is None:
        raise IngestError("the block polygons have no CRS; save them with one (e.g. EPSG:4326).")
    require_geometry(gdf, POLYGONS, expected="block polygons",
                     instead="Road centre-lines go to `manage.py import_osm_blocks`.")
    metric = local_metric_crs(gdf.to_crs("EPSG:4326"))
    pieces, report.repaired, rows = _valid_polygons(gdf.geometry.values)  # judged in the file's own CRS
    with_area = shapely.area(pieces) > 0
    report.invalid = len(gdf) - len(np.unique(rows[with_area]))  # rows that gave no polygon
    pieces, _, _ = _valid_polygons(gpd.GeoSeries(pieces[with_area], crs=gdf.crs).to_crs(metric).values)
    report.faces = len(pieces)
    edge = np.zeros(len(pieces), bool)
    if boundary is not None:
        area = solid_area(_in_crs(boundary, metric))
        overlap = shapely.area(shapely.intersection(pieces, area))
        inside = overlap > 0
        report.outside = int((~inside).sum())
        edge = overlap < shapely.area(pieces) - EDGE_TOLERANCE_M ** 2  # crosses the boundary
        pieces, edge = pieces[inside], edge[inside]
    keep = keep_unslivered(pieces, min_area_m2, min_width_m, report)
    pieces, edge = pieces[keep], edge[keep]
    if len(pieces) == 0:
        raise IngestError(f"no polygon of at least {min_area_m2:g} m² and {min_width_m:g} m mean width"
                          + (" overlaps the boundary" if boundary is not None else "") + " in the file.")
    report.edge = int(edge.sum())
    return finalise_blocks(gpd.GeoDataFrame({"edge": edge}, geometry=pieces, crs=metric))


SEAM_CLOSE_M = 0.05  # closes the hair-thin gaps between adjacent imagery tiles' reprojected footprints
MIN_HOLE_M2 = 1.0  # smaller holes in a boundary are such gaps too, not areas without imagery


def solid_area(area: BaseGeometry) -> BaseGeometry:
    """A boundary (metric CRS) without the seams a union of adjacent tiles' footprints leaves: a
    morphological closing of a few centimetres, then holes under MIN_HOLE_M2 filled. Without it the
    seams' micro-gaps became block edges, cutting every block that crosses a tile seam."""
    closed = shapely.buffer(shapely.buffer(area, SEAM_CLOSE_M, join_style="mitre"), -SEAM_CLOSE_M,
                            join_style="mitre")
    return without_small_holes(closed, MIN_HOLE_M2)


def without_small_holes(area: BaseGeometry, min_hole_area: float) -> BaseGeometry:
    """The (Multi)Polygon with its holes smaller than `min_hole_area` (in its CRS's units) filled."""
    parts = [Polygon(poly.exterior, [r for r in poly.interiors if Polygon(r).area >= min_hole_area])
             for poly in shapely.get_parts(area) if shapely.get_type_id(poly) == 3]
    return shapely.union_all(parts) if parts else area


def finalise_blocks(blocks_m: gpd.GeoDataFrame, *, within: BaseGeometry | None = None) -> gpd.GeoDataFrame:
    """From metric polygons: EPSG:4326 geometry, area_m2 (metric), stable block_key, edge (False
    unless given); sorted by key. `within` (EPSG:4326): edge blocks are clipped to it there, a hair
    inside (INSET_DEG), so that they lie within it despite the reprojections' rounding."""
    edge = blocks_m["edge"].to_numpy(bool) if "edge" in blocks_m.columns else np.zeros(len(blocks_m), bool)
    geoms = _one_valid_polygon(np.asarray(blocks_m.geometry.to_crs("EPSG:4326").values))
    if within is not None and edge.any():
        geoms[edge] = shapely.intersection(geoms[edge], shapely.buffer(within, -INSET_DEG))
        geoms = _one_valid_polygon(geoms)
    out = gpd.GeoDataFrame(
        {"area_m2": shapely.area(blocks_m.geometry.values), "edge": edge}, geometry=geoms, crs="EPSG:4326")
    out["block_key"] = [block_key(g) for g in out.geometry.values]
    out = out.drop_duplicates("block_key").sort_values("block_key").reset_index(drop=True)
    return out


def _one_valid_polygon(geoms: np.ndarray) -> np.ndarray:
    """Each geometry as one valid Polygon: overlay noise (vertices 1e-10 m apart) can fold a polygon
    in a reprojection, and a clip can leave crumbs; the largest part of the repair is kept."""
    bad = ~shapely.is_valid(geoms) | (shapely.get_type_id(geoms) != 3)
    if bad.any():
        geoms = geoms.copy()
        geoms[bad] = [max(shapely.get_parts(g), key=shapely.area) for g in
                      shapely.make_valid(geoms[bad], method="structure", keep_collapsed=False)]
    return geoms


def block_key(geom: Polygon) -> str:
    """A stable id from the geometry (snapped to ~1 cm, normalised): same block, same key."""
    snapped = shapely.normalize(shapely.set_precision(geom, KEY_GRID_DEG))
    return "b" + hashlib.sha1(shapely.to_wkb(snapped, hex=False, output_dimension=2)).hexdigest()[:15]
