"""The campaign's blocks as Mapbox Vector Tiles, per map layer and viewer.

Layers (what each carries is what its GeoJSON twin in `selectors` carries, for the same viewer, less
NOT_IN_TILES):

* `mine` (any member): every block with the viewer's own status and assignment (`my_block_layer`);
* `status` (reviewers, admins): every block with its overall status (`block_status_layer`);
* `agreement` (reviewers, admins): released blocks with TV and dominant-class agreement
  (`agreement_layer`), less the blocks the viewer still labels blind;
* `fractions` (reviewers, admins): the per-mille of a source (`fraction_rows` / `fraction_layer`),
  less the blocks the viewer still labels blind.

PostGIS: one SQL statement per tile (ST_TileEnvelope, ST_AsMVTGeom, ST_AsMVT); the viewer's
blind-pending blocks come in as the SQL of `selectors.blind_pending_blocks`, so the blindness rule
keeps its one home. Other databases (SpatiaLite, `make demo`): the same tile encoded in Python with
mapbox-vector-tile from the GeoJSON layers of `selectors` themselves.

DECISION (django-vectortiles 1.0.2, evaluated, not used; evidence in docs/vector-tiles.md): its
ST_AsMVT call names no feature id column (the pages select and restyle blocks by id), its layers
get their rows from ORM querysets without the request (per-viewer status and blindness need the
user), and its Python backend fetches whole model instances and reads properties as attributes
(our properties are computed: my status, the dominant class), so the per-user layers would have
been rewritten as ORM expressions beside `selectors` instead of reusing them.
"""
from __future__ import annotations

import functools
import hashlib
import math

from django.db import connection, transaction

from lcz_model.classes import KEYS

from . import selectors
from .models import Annotation, Assignment, Campaign, StreetBlock

LAYERS = ("mine", "status", "agreement", "fractions")
# properties of the GeoJSON layers that no map page reads from a tile (the workspace shows a block's
# area from the assignment API): left out of tiles, ~17 % of a z12 `mine` statement (area_m2 is a
# distinct float per block for ST_AsMVT's value table)
NOT_IN_TILES = frozenset({"area_m2", "edge"})
REVIEWER_LAYERS = ("status", "agreement", "fractions")
MIN_ZOOM = 12       # below this a tile would hold most of a city: pages show the campaign's outline
MAX_ZOOM = 22       # the pages' deepest zoom (basemap.newMap maxZoom)
EXTENT = 4096       # tile coordinate space (MVT default)
BUFFER = 64         # pixels of geometry beyond the tile edge, so outlines do not stop at seams
WEB_MERCATOR_HALF = 20037508.342789244


class BadTile(ValueError):
    """z/x/y outside the tile pyramid (or outside the zooms blocks are served at)."""


def check_tile(z: int, x: int, y: int) -> None:
    if not MIN_ZOOM <= z <= MAX_ZOOM:
        raise BadTile(f"block tiles exist for zooms {MIN_ZOOM} to {MAX_ZOOM}, not {z}")
    n = 1 << z
    if not (0 <= x < n and 0 <= y < n):
        raise BadTile(f"x and y must lie in 0..{n - 1} at zoom {z}")


def tile_bounds_3857(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    size = 2 * WEB_MERCATOR_HALF / (1 << z)
    west = -WEB_MERCATOR_HALF + x * size
    north = WEB_MERCATOR_HALF - y * size
    return west, north - size, west + size, north


def tile_bounds_4326(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    n = 1 << z

    def lat(row: int) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / n))))

    return x / n * 360 - 180, lat(y + 1), (x + 1) / n * 360 - 180, lat(y)


def stamp_etag(stamp: str, *parts) -> str:
    """A tile's ETag from the viewer's stamp (annotator.tile_stamps) and what the tile is."""
    h = hashlib.blake2b(digest_size=12)
    for p in (stamp, *parts):
        h.update(str(p).encode() + b"\0")
    return f'"{h.hexdigest()}"'


def uses_postgis() -> bool:
    return connection.vendor == "postgresql"


# --- PostGIS: one statement per tile ------------------------------------------------------------

_BLOCK = StreetBlock._meta.db_table
_ASSIGNMENT = Assignment._meta.db_table
_ANNOTATION = Annotation._meta.db_table
_RELEASED_SQL = ", ".join(f"'{s}'" for s in selectors.RELEASED)

# the tile's envelope in 3857 (for ST_AsMVTGeom) and, with the buffer, in 4326 (for the index)
_ENV = (f"WITH env AS (SELECT ST_TileEnvelope(%s, %s, %s) AS m, "
        f"ST_Transform(ST_TileEnvelope(%s, %s, %s, margin => {BUFFER / EXTENT}), 4326) AS g)")
# the block in Web Mercator: the stored generated column (migration 0014; ST_Transform per block was
# about half of a z15-z17 tile statement); tests swap in `ST_Transform(b.geom, 3857)` to compare
MERCATOR_GEOM = "b.geom_3857"


def _mvt_geom() -> str:
    return f"ST_AsMVTGeom({MERCATOR_GEOM}, env.m, {EXTENT}, {BUFFER}, true)"


# Zooms GRID_ZOOM..GRID_MAX_ZOOM: the block as ST_AsMVTGeom made it once for the whole-world z12
# grid (the generated column `tile_geom_z12`, migration 0012), moved onto the tile by one exact
# ST_Affine (scale 2^(z-12), shift by whole tiles), when it lies inside the buffered tile (so the
# clip would change nothing); a block across the buffer's edge (or collapsed on the z12 grid) goes
# through ST_AsMVTGeom as above. z12 tiles are byte-identical to the plain query's; at z13-z14 the
# outlines keep the z12 grid's 2.4 m steps (2 or 4 tile units: a quarter of a screen pixel or less).
# DECISION: z12 tile statements 2-3x faster (ST_Transform + ST_AsMVTGeom's simplify and wagyu
# validation were most of a block's ~20 us); evidence in docs/vector-tiles.md.
GRID_ZOOM = 12          # the migration's grid: 4096 x 2^12 pixels a side
GRID_MAX_ZOOM = 14
_GRID_GEOM = ("CASE WHEN b.tile_geom_z12 @ ST_MakeEnvelope(%s, %s, %s, %s) "
              "THEN ST_Affine(b.tile_geom_z12, %s, 0, 0, %s, %s, %s) ELSE {mvt_geom} END")


def _geom_sql(z: int, x: int, y: int) -> tuple[str, list]:
    """The feature geometry (`... AS geom`) of tile z/x/y and its parameters."""
    if not GRID_ZOOM <= z <= GRID_MAX_ZOOM:
        return f"{_mvt_geom()} AS geom", []
    scale = 1 << (z - GRID_ZOOM)
    # the buffered tile in z12 pixels (a block inside it needs no clip); exact binary fractions
    box = [(x * EXTENT - BUFFER) / scale, (y * EXTENT - BUFFER) / scale,
           ((x + 1) * EXTENT + BUFFER) / scale, ((y + 1) * EXTENT + BUFFER) / scale]
    return f"{_GRID_GEOM.format(mvt_geom=_mvt_geom())} AS geom", [*box, *(float(v) for v in (scale, scale, -x * EXTENT, -y * EXTENT))]


def _hidden_sql(user, campaign: Campaign) -> tuple[str, list]:
    """`AND b.id NOT IN (the viewer's blind-pending blocks)`, from selectors' own query."""
    sql, params = _compiled_hidden_sql(campaign.pk, tuple(campaign.assisted_rounds or ()), user.pk)
    return sql, list(params)


@functools.lru_cache(maxsize=1024)
def _compiled_hidden_sql(campaign_id: int, assisted_rounds: tuple, user_id: int) -> tuple[str, tuple]:
    """The ORM's SQL of the rule, kept per (campaign, assisted rounds, viewer): compiling it cost
    ~0.7 ms, a third of a z15-z17 reviewer tile; the SQL is a function of exactly these inputs."""
    from django.contrib.auth.models import User

    stub = Campaign(pk=campaign_id, assisted_rounds=list(assisted_rounds))
    sql, params = selectors.blind_pending_blocks(User(pk=user_id), stub).query.sql_with_params()
    return f" AND b.id NOT IN ({sql})", tuple(params)


def _layer_sql(layer: str, user, campaign: Campaign, source: str | None, z: int, x: int, y: int
               ) -> tuple[str, list]:
    """The rows of one layer (id, properties, geom) in the tile: SQL after the env CTE."""
    where = "b.campaign_id = %s AND b.geom && env.g"
    geom, gparams = _geom_sql(z, x, y)
    params: list = [campaign.pk]                # `where`'s; gparams come where {geom} is
    if layer == "mine":
        # my assignment of the block (the latest round's), as my_block_layer: a block I submitted
        # that is now released shows that status (the workspace locks it); others' work never shows
        sql = (f"SELECT b.id, b.block_key, "
               f"CASE WHEN m.id IS NULL THEN 'unassigned' "
               f"WHEN m.status = 'submitted' AND b.status IN ({_RELEASED_SQL}) THEN b.status "
               f"WHEN m.status = 'submitted' AND m.skip_reason <> '' THEN 'skipped' "
               f"ELSE m.status END AS status, m.id AS assignment, {geom} "
               f"FROM {_BLOCK} b CROSS JOIN env LEFT JOIN LATERAL (SELECT a.id, a.status, n.skip_reason "
               f"FROM {_ASSIGNMENT} a LEFT JOIN {_ANNOTATION} n ON n.assignment_id = a.id "
               f"WHERE a.block_id = b.id AND a.interpreter_id = %s ORDER BY a.round DESC LIMIT 1) m ON true "
               f"WHERE {where}")
        return sql, [*gparams, user.pk, *params]
    if layer == "status":
        sql = (f"SELECT b.id, b.block_key, b.status, {geom} FROM {_BLOCK} b CROSS JOIN env WHERE {where}")
        return sql, [*gparams, *params]
    hidden, hidden_params = _hidden_sql(user, campaign)
    if layer == "agreement":
        sql = (f"SELECT b.id, b.block_key, b.status, round(b.agreement_tv::numeric, 4)::float8 AS tv, "
               f"b.dominant_agrees, {geom} FROM {_BLOCK} b CROSS JOIN env "
               f"WHERE {where} AND b.status IN ({_RELEASED_SQL}){hidden}")
        return sql, [*gparams, *params, *hidden_params]
    # fractions: the label (final, else consensus) of released blocks, or a model's prediction
    if source == "consensus":
        permille = "COALESCE(b.final_permille, b.consensus)"
        join, extra, jparams = "", f" AND b.status IN ({_RELEASED_SQL}) AND {permille} IS NOT NULL", []
    else:
        from .models import Prediction

        permille = "p.permille"
        join = f" JOIN {Prediction._meta.db_table} p ON p.block_id = b.id AND p.model_version = %s"
        extra, jparams = "", [source]
    shares = ", ".join(f"({permille}->>{i})::int AS {k}" for i, k in enumerate(KEYS))
    # the dominant class as fraction_layer picks it: the largest share, the first class on a tie
    dominant = (f"(SELECT (%s::text[])[e.o] FROM jsonb_array_elements_text({permille}) WITH ORDINALITY "
                f"AS e(v, o) ORDER BY e.v::int DESC, e.o LIMIT 1) AS dominant")
    sql = (f"SELECT b.id, b.block_key, b.status, {dominant}, {shares}, {geom} "
           f"FROM {_BLOCK} b CROSS JOIN env{join} WHERE {where}{extra}{hidden}")
    return sql, [list(KEYS), *gparams, *jparams, *params, *hidden_params]


def tile_sql(layer: str, user, campaign: Campaign, z: int, x: int, y: int,
             source: str | None = None) -> tuple[str, list]:
    """The whole statement: one bytea, the MVT of layer `layer` (feature id = block id)."""
    rows, params = _layer_sql(layer, user, campaign, source, z, x, y)
    # no `WHERE t.geom IS NOT NULL`: ST_AsMVT skips rows without a geometry itself, and the filter
    # made PostgreSQL compute every block's geometry twice (the subquery is flattened into the
    # filter and the aggregate's row: no common subexpressions), doubling the tile's time
    sql = f"{_ENV} SELECT ST_AsMVT(t.*, %s, {EXTENT}, 'geom', 'id') FROM ({rows}) t"
    return sql, [z, x, y, z, x, y, layer, *params]


# DECISION: a tile statement runs without parallel workers and without JIT (set for its own
# transaction only): at z12 the planner's parallel plans made the status and agreement tiles 3-4x
# slower than serial ones (37-56 ms vs 12-14 ms on 2 cores), and a statement costed above
# jit_above_cost (a dense tile) spends ~0.5 s compiling. Evidence: docs/vector-tiles.md.
TILE_SETTINGS_SQL = ("SELECT set_config('max_parallel_workers_per_gather', '0', true), "
                     "set_config('jit', 'off', true)")


def _postgis_tile(layer, user, campaign, z, x, y, source) -> bytes:
    sql, params = tile_sql(layer, user, campaign, z, x, y, source)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(TILE_SETTINGS_SQL)
        cursor.execute(sql, params)
        row = cursor.fetchone()
    data = row[0] if row else None
    return bytes(data) if data else b""


# --- any database: the GeoJSON layers of selectors, encoded in Python -------------------------------

def layer_features(layer: str, user, campaign: Campaign, bbox, source: str | None = None):
    """The features (id, GeoJSON text, properties) of `layer` for `user` in the 4326 bbox, straight
    from the selectors that make the GeoJSON layers."""
    if layer == "mine":
        return selectors.my_block_layer(user, campaign, bbox, None)
    if layer == "status":
        return selectors.block_status_layer(campaign, bbox)
    hidden = selectors.blind_pending_block_ids(user, campaign)
    if layer == "agreement":
        return selectors.agreement_layer(campaign, hidden=hidden, bbox=bbox)
    return selectors.fraction_layer(selectors.fraction_rows(campaign, source, bbox, hidden=hidden))


@functools.lru_cache(maxsize=1)
def _to_web_mercator():
    from pyproj import Transformer

    return Transformer.from_crs(4326, 3857, always_xy=True)


def _polygonal(geom):
    """The polygons of a clipped block (a clip along an edge can add lines or points, which a
    polygon layer must not carry), or None when nothing of an area is left."""
    import shapely
    from shapely.geometry import MultiPolygon

    if geom.is_empty:
        return None
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    polygons = [p for p in shapely.get_parts(geom) if p.geom_type == "Polygon" and not p.is_empty]
    return None if not polygons else polygons[0] if len(polygons) == 1 else MultiPolygon(polygons)


def python_tile(layer: str, user, campaign: Campaign, z: int, x: int, y: int, source: str | None = None) -> bytes:
    """The tile encoded in Python (mapbox-vector-tile): clipped to the buffered tile, quantised to
    the same 4096 grid as ST_AsMVTGeom."""
    import mapbox_vector_tile
    import numpy as np
    import shapely
    from shapely.geometry import box

    west, south, east, north = tile_bounds_4326(z, x, y)
    pad_x, pad_y = (east - west) * BUFFER / EXTENT, (north - south) * BUFFER / EXTENT
    bbox = (west - pad_x, south - pad_y, east + pad_x, north + pad_y)
    window = box(*bbox)
    to_3857 = _to_web_mercator()

    def project(xy):
        return np.column_stack(to_3857.transform(xy[:, 0], xy[:, 1]))
    mx0, my0, mx1, my1 = tile_bounds_3857(z, x, y)
    bx, by = (mx1 - mx0) * BUFFER / EXTENT, (my1 - my0) * BUFFER / EXTENT
    clip = box(mx0 - bx, my0 - by, mx1 + bx, my1 + by)
    features = []
    for pk, gj, props in layer_features(layer, user, campaign, bbox, source):
        if gj is None:
            continue
        geom = shapely.from_geojson(gj)
        if not geom.intersects(window):
            continue
        geom = _polygonal(shapely.transform(geom, project).intersection(clip))
        if geom is None:
            continue
        # MVT has no null: a missing property is what ST_AsMVT writes for NULL
        features.append({"id": pk, "geometry": geom.wkb,
                         "properties": {k: v for k, v in props.items() if v is not None and k not in NOT_IN_TILES}})
    if not features:
        return b""
    return mapbox_vector_tile.encode(
        [{"name": layer, "features": features}],
        default_options={"quantize_bounds": (mx0, my0, mx1, my1), "extents": EXTENT, "check_winding_order": True})


def block_tile(layer: str, user, campaign: Campaign, z: int, x: int, y: int, source: str | None = None,
               *, encoder: str | None = None) -> bytes:
    """The tile `z/x/y` of `layer` for `user` (the caller checked that they may see the layer).
    encoder: "postgis" or "python" (default: PostGIS when the database is PostgreSQL)."""
    check_tile(z, x, y)
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {', '.join(LAYERS)}")
    if layer == "fractions" and not source:
        raise ValueError("the fractions layer needs a source")
    use_sql = encoder == "postgis" or (encoder is None and uses_postgis())
    data = (_postgis_tile if use_sql else python_tile)(layer, user, campaign, z, x, y, source)
    return data
