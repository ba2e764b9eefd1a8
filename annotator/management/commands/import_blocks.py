from pathlib import Path

from django.core.management.base import BaseCommand

from annotator import services
from annotator.ingest.blocks import BlockBuildReport, blocks_from_polygons, check_sliver_options
from annotator.ingest.vector import POLYGONS, read_vector
from annotator.models import StreetBlock

from ._common import campaign_or_error, ingest_errors
from .import_osm_blocks import add_block_options, block_boundary, write_block_warnings


class Command(BaseCommand):
    help = ("Import ready-made block polygons (GeoJSON/GeoPackage/Shapefile, any CRS): repaired, slivers "
            "dropped, polygons outside the boundary (the imagery footprint, or --boundary) dropped and those "
            "crossing it marked as edge blocks. Idempotent; a different import over the same blocks is "
            "refused unless --replace.")

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--campaign", required=True)
        add_block_options(parser)
        parser.add_argument("--layer", help="The layer of a multi-layer file (default: its only polygon layer).")
        parser.add_argument("--source-name", help="Who made the polygons (required), recorded with each block.")
        parser.add_argument("--licence", help="Their licence, e.g. an SPDX id such as CC-BY-4.0 (required).")

    def handle(self, *args, **o):
        campaign = campaign_or_error(o["campaign"])
        path = Path(o["path"])
        report = BlockBuildReport()
        with ingest_errors():
            check_sliver_options(o["min_area"], o["min_width"])
            source_name, licence = services.block_provenance(StreetBlock.Source.POLYGONS, o["source_name"],
                                                             o["licence"], required=True)
            boundary, boundary_name = block_boundary(campaign, o)
            gdf = read_vector(path, layer=o["layer"], want=POLYGONS)
            blocks = blocks_from_polygons(gdf, min_area_m2=o["min_area"], min_width_m=o["min_width"],
                                          boundary=boundary, report=report)
            result = services.import_street_blocks(campaign, blocks, source=StreetBlock.Source.POLYGONS,
                                                   source_name=source_name, licence=licence, replace=o["replace"])
        dropped = report.dropped(o["min_area"], o["min_width"], over_annotated=result.dropped_over_annotated)
        self.stdout.write(self.style.SUCCESS(
            f"{result.created} new blocks, {result.existing} already present, from {len(gdf)} polygons"
            f"{f' within {boundary_name}' if boundary_name else ''}. Dropped: {dropped}; {report.repaired} repaired."))
        write_block_warnings(self, result)
