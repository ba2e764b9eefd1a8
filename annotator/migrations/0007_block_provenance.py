"""Existing blocks get their geometry's source and licence: blocks built from roads (an .osm.pbf
extract, or road lines, which before 0006 were always OpenStreetMap's) are OpenStreetMap data under
the ODbL; ready-made polygons stay unrecorded (their source was never asked for)."""
from django.db import migrations

OSM_SOURCES = ("osm_pbf", "road_lines")


def backfill(apps, schema_editor):
    StreetBlock = apps.get_model("annotator", "StreetBlock")
    StreetBlock.objects.filter(source__in=OSM_SOURCES, source_name="", licence="").update(
        source_name="OpenStreetMap contributors", licence="ODbL-1.0")


class Migration(migrations.Migration):

    dependencies = [
        ("annotator", "0006_real_cities"),
    ]

    operations = [
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
