"""Benchmark (not a test): time the Helsinki OSM ingest, end to end and by stage.

Run with `make bench-ingest` (PostGIS) or with DATABASE_URL pointing at any database.
Prints wall time and blocks/s for: reading roads, building blocks (closed by the roads' extent:
there is no imagery), saving, and a re-run (idempotent: saves nothing); and how many blocks are edge
blocks and how many slivers were dropped.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

import pyrosm  # noqa: E402
from django.db import connection  # noqa: E402

from annotator import services  # noqa: E402
from annotator.ingest.blocks import (DEFAULT_MIN_AREA_M2, DEFAULT_MIN_WIDTH_M, BlockBuildReport,  # noqa: E402
                                     blocks_from_roads)
from annotator.ingest.roads import read_road_lines  # noqa: E402
from annotator.models import Campaign, StreetBlock  # noqa: E402

REPEATS = 5


def main() -> None:
    pbf = pyrosm.get_data("helsinki_pbf")
    print(f"database: {connection.vendor} ({connection.settings_dict['NAME']}); extract: {Path(pbf).name}")
    for network in ("driving", "all"):
        read_t, build_t, save_t, rerun_t = [], [], [], []
        for _ in range(REPEATS):
            Campaign.objects.filter(name="bench-ingest").delete()
            campaign, _ = services.create_campaign("bench-ingest", city="Helsinki")
            t0 = time.perf_counter()
            roads = read_road_lines(pbf, network)
            t1 = time.perf_counter()
            report = BlockBuildReport()
            blocks = blocks_from_roads(roads, report=report)
            t2 = time.perf_counter()
            result = services.import_street_blocks(campaign, blocks, source=StreetBlock.Source.OSM_PBF)
            t3 = time.perf_counter()
            again = services.import_street_blocks(campaign, blocks, source=StreetBlock.Source.OSM_PBF)
            t4 = time.perf_counter()
            assert again.created == 0 and again.existing == result.created
            read_t.append(t1 - t0); build_t.append(t2 - t1); save_t.append(t3 - t2); rerun_t.append(t4 - t3)
        n = result.created
        total = statistics.median(read_t) + statistics.median(build_t) + statistics.median(save_t)
        print(f"\nnetwork={network}: {len(roads)} road lines -> {n} blocks, {report.edge} of them edge blocks; "
              f"dropped {report.dropped(DEFAULT_MIN_AREA_M2, DEFAULT_MIN_WIDTH_M)} (median of {REPEATS} runs)")
        print(f"  read roads (pyrosm)   {statistics.median(read_t) * 1000:8.0f} ms")
        print(f"  build blocks          {statistics.median(build_t) * 1000:8.0f} ms")
        print(f"  save to database      {statistics.median(save_t) * 1000:8.0f} ms")
        print(f"  total ingest          {total * 1000:8.0f} ms   {n / total:8.0f} blocks/s")
        print(f"  idempotent re-run     {statistics.median(rerun_t) * 1000:8.0f} ms   (0 saved)")
    Campaign.objects.filter(name="bench-ingest").delete()


if __name__ == "__main__":
    main()
