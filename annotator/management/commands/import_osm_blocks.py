import time

import shapely
from django.core.management.base import BaseCommand

from annotator import selectors, services
from annotator.ingest.blocks import (DEFAULT_MIN_AREA_M2, DEFAULT_MIN_WIDTH_M, BlockBuildReport, blocks_from_roads,
                                     check_sliver_options)
from annotator.ingest.roads import NETWORKS, read_road_lines
from annotator.ingest.vector import read_boundary
from annotator.models import StreetBlock

from ._common import StepProgress, campaign_or_error, ingest_errors


class Command(BaseCommand):
    help = ("Build street blocks from roads: an .osm.pbf extract or road centre-lines "
            "(GeoJSON/GeoPackage/Shapefile). Lines are noded and polygonized, closed by a boundary (the "
            "campaign's imagery footprint, --boundary, else the roads' extent), road surfaces subtracted and "
            "slivers dropped. Blocks touching the boundary are edge blocks. Idempotent; a different import "
            "over the same blocks is refused unless --replace.")

    def add_arguments(self, parser):
        parser.add_argument("source")
        parser.add_argument("--campaign", required=True)
        parser.add_argument("--network", choices=NETWORKS, default="driving",
                            help="driving (default): roads a car can use bound the blocks; all: every way.")
        add_block_options(parser)
        parser.add_argument("--layer", help="The layer of a multi-layer file (default: its only line layer).")
        parser.add_argument("--source-name", help="Who made the road lines, recorded with each block; required "
                            f"for a road-lines file (an .osm.pbf is \"{services.OSM_SOURCE_NAME}\").")
        parser.add_argument("--licence", help="The road lines' licence, e.g. an SPDX id; required for a "
                            f"road-lines file (an .osm.pbf is {services.OSM_LICENCE}).")

    def handle(self, *args, **o):
        campaign = campaign_or_error(o["campaign"])
        with ingest_errors():
            check_sliver_options(o["min_area"], o["min_width"])
            source_name, licence = services.block_provenance(_source_kind(o["source"]), o["source_name"],
                                                             o["licence"], required=True)
            boundary, boundary_name = block_boundary(campaign, o)
        closed_by = boundary_name or "the roads' extent"
        t0 = time.perf_counter()
        steps = ["read roads", "node", "polygonize", "subtract road surfaces", "repair", "drop slivers", "save"]
        progress = StepProgress(steps, disable=o["verbosity"] < 1)
        report = BlockBuildReport()
        try:
            with ingest_errors():
                progress("read roads")
                roads = read_road_lines(o["source"], o["network"], layer=o["layer"])
                blocks = blocks_from_roads(roads, min_area_m2=o["min_area"], min_width_m=o["min_width"],
                                           boundary=boundary, boundary_name=closed_by,
                                           step=progress, report=report)
                progress("save")
                result = services.import_street_blocks(campaign, blocks, source=_source_kind(o["source"]),
                                                       source_name=source_name, licence=licence,
                                                       replace=o["replace"])
        finally:
            progress.close()
        dt = time.perf_counter() - t0
        self.stdout.write(self.style.SUCCESS(
            f"{result.created} new blocks, {result.existing} already present, from {len(roads)} road lines "
            f"closed by {closed_by}, in {dt:.1f} s "
            f"({result.total / dt:.0f} blocks/s). Dropped: "
            f"{report.dropped(o['min_area'], o['min_width'], over_annotated=result.dropped_over_annotated)}; "
            f"{report.repaired} repaired."))
        write_block_warnings(self, result)


def add_block_options(parser) -> None:
    """The options import_osm_blocks and import_blocks share."""
    parser.add_argument("--min-area", type=float, default=DEFAULT_MIN_AREA_M2,
                        help=f"Drop blocks smaller than this, m² (default {DEFAULT_MIN_AREA_M2:g}).")
    parser.add_argument("--min-width", type=float, default=DEFAULT_MIN_WIDTH_M,
                        help="Drop strips thinner than this mean width (2·area/perimeter), m "
                             f"(default {DEFAULT_MIN_WIDTH_M:g}).")
    parser.add_argument("--boundary", help="A city or study-area polygon file (any CRS) that closes and bounds "
                                           "the blocks (default: the campaign's imagery footprint).")
    parser.add_argument("--no-clip", action="store_true",
                        help="Ignore the imagery footprint (roads: close the blocks at the roads' extent).")
    parser.add_argument("--replace", action="store_true",
                        help="Replace the campaign's blocks that new ones overlap, if they have no annotations "
                             "(annotated blocks are kept, and new blocks over them dropped).")


def block_boundary(campaign, o: dict) -> tuple[shapely.Geometry | None, str | None]:
    """(the boundary in EPSG:4326, its name for messages): --boundary, else the imagery footprint
    unless --no-clip, else (None, None)."""
    if o["boundary"]:
        return read_boundary(o["boundary"]), f"the boundary {o['boundary']}"
    footprint = None if o["no_clip"] else selectors.imagery_footprint(campaign)
    if footprint is None:
        return None, None
    return shapely.from_wkt(footprint.wkt), "the imagery footprint"


def write_block_warnings(command: BaseCommand, result: services.BlockImportResult) -> None:
    """Edge blocks, blocks outside all imagery and what --replace did, for both import commands."""
    notes = []
    if result.edge:
        notes.append(f"{result.edge} new blocks touch the boundary (edge blocks: not assigned unless "
                     "assign_blocks --include-edge)")
    if result.outside_imagery:
        notes.append(f"{result.outside_imagery} new blocks lie outside all imagery (not assignable until "
                     "imagery that holds them is imported)")
    if result.replaced or result.dropped_over_annotated:
        notes.append(f"--replace: {result.replaced} unannotated blocks replaced, "
                     f"{result.dropped_over_annotated} new blocks dropped over annotated blocks (kept)")
    for note in notes:
        command.stdout.write(command.style.WARNING(note + "."))


def _source_kind(source: str) -> str:
    return StreetBlock.Source.OSM_PBF if str(source).lower().endswith(".pbf") else StreetBlock.Source.ROAD_LINES
