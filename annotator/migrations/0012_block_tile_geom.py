"""PostGIS only: annotator_streetblock.tile_geom_z12, each block as ST_AsMVTGeom makes it for a zoom
12 vector tile, in whole-world z12 tile pixels (x from the antimeridian, y down from the top of Web
Mercator; 4096 x 2^12 = 2^24 pixels a side; SRID 0). A GENERATED column, so it can never lag the
block's geometry, whoever writes it (importer, bulk code, admin, psql).

annotator.vector_tiles draws a z12-z14 tile's blocks from it with one exact ST_Affine (the z12 grid
is the z12 tile grid shifted by whole tiles), instead of ST_Transform + ST_AsMVTGeom per block:
z12 tiles come out byte-identical, their statement 2-3x faster. Not in the Django model: the ORM never reads it, and
SpatiaLite (the demo database) has no ST_AsMVTGeom. A future migration that alters `geom` must drop
and re-add it (PostgreSQL refuses to alter a column a generated column depends on).
DECISION (GENERATED, not a trigger on `geom`): PostgreSQL 15 recomputes it on every UPDATE of a row,
~15 us a row (20,001-row UPDATE of `status`: 0.05 -> 0.3 s); evidence in docs/vector-tiles.md.
"""
from django.db import migrations

HALF = 20037508.342789244        # Web Mercator half-width (vector_tiles.WEB_MERCATOR_HALF)
WORLD_PIXELS_Z12 = 4096 << 12    # vector_tiles.EXTENT x 2^GRID_ZOOM


def add_column(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        "ALTER TABLE annotator_streetblock ADD COLUMN tile_geom_z12 geometry GENERATED ALWAYS AS ("
        f"ST_SetSRID(ST_AsMVTGeom(ST_Transform(geom, 3857), 'BOX(-{HALF} -{HALF},{HALF} {HALF})'::box2d, "
        f"{WORLD_PIXELS_Z12}, 0, false), 0)) STORED")


def drop_column(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("ALTER TABLE annotator_streetblock DROP COLUMN IF EXISTS tile_geom_z12")


class Migration(migrations.Migration):

    dependencies = [
        ("annotator", "0011_block_split_val"),
    ]

    operations = [
        migrations.RunPython(add_column, drop_column),
    ]
