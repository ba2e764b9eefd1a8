import time

import shapely
from django.core.management.base import BaseCommand

from annotator import selectors, services
from annotator.ingest.blocks import DEFAULT_MIN_AREA_M2, BlockBuildReport, blocks_from_roads
from annotator.ingest.roads import NETWORKS, read_road_lines
from annotator.models import StreetBlock

from ._common import StepProgress, campaign_or_error, ingest_errors


class Command(BaseCommand):
    help = ("Build street blocks from roads: an .osm.pbf extract or road centre-lines "
            "(GeoJSON/GeoPackage/Shapefile). Lines are noded and polygonized, road surfaces "
            "subtracted, slivers dropped, and blocks clipped to the campaign's imagery. Idempotent.")

    def add_arguments(self, parser):
        parser.add_argument("source")
        parser.add_argument("--campaign", required=True)
        parser.add_argument("--network", choices=NETWORKS, default="driving",
                            help="driving (default): roads a car can use bound the blocks; all: every way.")
        parser.add_argument("--min-area", type=float, default=DEFAULT_MIN_AREA_M2,
                            help=f"Drop blocks smaller than this, m² (default {DEFAULT_MIN_AREA_M2:g}).")
        parser.add_argument("--no-clip", action="store_true", help="Do not clip to the imagery footprint.")

    def handle(self, *args, **o):
        campaign = campaign_or_error(o["campaign"])
        t0 = time.perf_counter()
        footprint = None if o["no_clip"] else selectors.imagery_footprint(campaign)
        clip = shapely.from_wkt(footprint.wkt) if footprint is not None else None
        steps = ["read roads", "node", "polygonize", "subtract road surfaces", "repair"] + \
                (["clip to imagery"] if clip is not None else []) + ["drop slivers", "save"]
        progress = StepProgress(steps, disable=o["verbosity"] < 1)
        report = BlockBuildReport()
        try:
            with ingest_errors():
                progress("read roads")
                roads = read_road_lines(o["source"], o["network"])
                blocks = blocks_from_roads(roads, min_area_m2=o["min_area"], clip_to=clip,
                                           step=progress, report=report)
            progress("save")
            result = services.import_street_blocks(campaign, blocks, source=_source_kind(o["source"]))
        finally:
            progress.close()
        dt = time.perf_counter() - t0
        self.stdout.write(self.style.SUCCESS(
            f"{result.created} new blocks, {result.existing} already present ({len(roads)} road lines, "
            f"{report.removed_small} slivers < {o['min_area']:g} m² dropped, {report.repaired} repaired"
            f"{', clipped to imagery' if clip is not None else ', not clipped (no imagery)'}) "
            f"in {dt:.1f} s ({result.total / dt:.0f} blocks/s)."
        ))


def _source_kind(source: str) -> str:
    return StreetBlock.Source.OSM_PBF if str(source).lower().endswith(".pbf") else StreetBlock.Source.ROAD_LINES
