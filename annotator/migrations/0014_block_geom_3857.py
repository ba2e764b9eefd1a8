"""PostGIS only: annotator_streetblock.geom_3857, the block in Web Mercator (ST_Transform(geom, 3857)),
a GENERATED column like tile_geom_z12 (migration 0012), so it can never lag `geom`.

annotator.vector_tiles hands it to ST_AsMVTGeom (zooms 15-22, and the blocks that cross a z12-z14
tile's buffer) instead of transforming every block on every tile: ST_Transform was about half of a
z15-z17 tile statement (~0.1 ms a block). Tiles are byte-identical (the same function on the same
input). Not in the Django model (the ORM never reads it; SpatiaLite has no ST_AsMVTGeom). A future
migration that alters `geom` must drop and re-add it.
DECISION (stored 3857 column): z17 statement p95 1.33 -> 0.57 ms, z15 2.10 -> 1.22 ms; evidence in
docs/vector-tiles.md ("Stored Web Mercator geometry").
"""
from django.db import migrations


def add_column(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        "ALTER TABLE annotator_streetblock ADD COLUMN geom_3857 geometry GENERATED ALWAYS AS ("
        "ST_Transform(geom, 3857)) STORED")


def drop_column(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("ALTER TABLE annotator_streetblock DROP COLUMN IF EXISTS geom_3857")


class Migration(migrations.Migration):

    dependencies = [
        ("annotator", "0013_acquisition_default_random"),
    ]

    operations = [
        migrations.RunPython(add_column, drop_column),
    ]
