from pathlib import Path

from django.core.management.base import BaseCommand

from annotator import services
from annotator.ingest.blocks import DEFAULT_MIN_AREA_M2, blocks_from_polygons
from annotator.ingest.vector import read_vector
from annotator.models import StreetBlock

from ._common import campaign_or_error, ingest_errors


class Command(BaseCommand):
    help = "Import ready-made block polygons (GeoJSON/GeoPackage/Shapefile, any CRS). Idempotent."

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--campaign", required=True)
        parser.add_argument("--min-area", type=float, default=DEFAULT_MIN_AREA_M2)

    def handle(self, *args, **o):
        campaign = campaign_or_error(o["campaign"])
        path = Path(o["path"])
        with ingest_errors():
            gdf = read_vector(path)
            blocks = blocks_from_polygons(gdf, min_area_m2=o["min_area"])
        result = services.import_street_blocks(campaign, blocks, source=StreetBlock.Source.POLYGONS)
        self.stdout.write(self.style.SUCCESS(
            f"{result.created} new blocks, {result.existing} already present."
        ))
