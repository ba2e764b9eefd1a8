"""Benchmark (not a test): export_dataset blocks/s on a synthetic city (goal >= 30 blocks/s, 2 cores).

Builds a campaign from fixtures.synthetic_city (imagery painted from known splits, blocks labelled
with those splits as their final labels), then times `export_dataset` end to end.
Usage: make bench-export   (or DJANGO_DEBUG=1 DATABASE_URL=... python scripts/bench_export.py --blocks 300)
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.db import connection  # noqa: E402

from annotator import services  # noqa: E402
from annotator.export.dataset import ExportOptions, export_dataset  # noqa: E402
from annotator.ingest.blocks import finalise_blocks  # noqa: E402
from annotator.models import Campaign, StreetBlock  # noqa: E402
from fixtures.synthetic_city import assign_truth, make_street_network, paint_city  # noqa: E402

CAMPAIGN = "bench-export"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=300)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        city = make_street_network(args.blocks, seed=5)
        truth = assign_truth(len(city.blocks), seed=5)
        tif = paint_city(city.blocks, truth, work / "city.tif", seed=5, roads=city.roads)
        Campaign.objects.filter(name=CAMPAIGN).delete()
        campaign, _ = services.create_campaign(CAMPAIGN, city="Synthetic", imagery_licence="CC0 (synthetic)")
        services.import_imagery(campaign, tif)
        blocks = finalise_blocks(city.blocks[["geometry"]].copy())
        services.import_street_blocks(campaign, blocks, source=StreetBlock.Source.POLYGONS)
        # labels: any valid split will do for timing; use the painted truth in stored order
        pm = np.rint(truth * 1000).astype(int)
        for b, row in zip(StreetBlock.objects.filter(campaign=campaign).order_by("id"), pm):
            b.final_permille = b.consensus = [int(v) for v in row]
            b.status = StreetBlock.Status.COMPLETE
            b.save(update_fields=["final_permille", "consensus", "status"])
        n = StreetBlock.objects.filter(campaign=campaign).count()
        print(f"database: {connection.vendor}; {n} labelled blocks over a "
              f"{tif.stat().st_size / 1e6:.0f} MB painted raster; cores: {os.cpu_count()}")
        for run in range(2):
            out = work / f"pkg-{run}"
            t0 = time.perf_counter()
            report = export_dataset(campaign, out, ExportOptions(), progress=False)
            dt = time.perf_counter() - t0
            size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
            print(f"run {run + 1}: {report.n_blocks} blocks in {dt:.1f} s = {report.n_blocks / dt:.1f} blocks/s "
                  f"({size:.0f} MB package)")
    finally:
        Campaign.objects.filter(name=CAMPAIGN).delete()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
