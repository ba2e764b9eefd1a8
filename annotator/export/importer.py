"""`import_dataset`: read a dataset package back into a campaign (blocks with their final labels)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.contrib.gis.geos import GEOSGeometry
from django.db import transaction

from annotator import selectors
from annotator.ingest.blocks import block_key
from annotator.models import AuditEvent, Campaign, StreetBlock
from lcz_model.package import PackageError, read_package
from lcz_model.package_writer import fractions_to_permille


@dataclass
class ImportReport:
    created: int
    existing: int


def import_dataset(campaign: Campaign, path: str | Path, *, actor=None) -> ImportReport:
    """Blocks of the package become the campaign's blocks with the package's labels as their
    final (and consensus) split; blocks already there (same id) are left as they are."""
    package = read_package(path, verify=True, require_images=False)
    gdf = package.read_blocks_gpkg()
    if "block_id" not in gdf.columns:
        raise PackageError(f"{path}/blocks.gpkg has no block_id column")
    gdf = gdf.to_crs("EPSG:4326")
    geoms = dict(zip(gdf["block_id"].astype(str), gdf.geometry.values))
    extra = gdf.set_index(gdf["block_id"].astype(str))
    missing = [b.block_id for b in package.blocks if b.block_id not in geoms]
    if missing:
        raise PackageError(f"{len(missing)} labelled blocks lack geometry in blocks.gpkg (e.g. {missing[0]})")
    scenes = list(selectors.scenes_of(campaign))
    with transaction.atomic():
        known = selectors.existing_block_keys(campaign, [b.block_id for b in package.blocks])
        new = []
        for b in package.blocks:
            if b.block_id in known:
                continue
            permille = fractions_to_permille(b.fractions)[0]
            geom = geoms[b.block_id]
            tv = extra.at[b.block_id, "agreement"] if "agreement" in extra.columns else None
            ggeom = GEOSGeometry(geom.wkt, srid=4326)
            scene = next((s for s in scenes if s.footprint.intersects(ggeom)), None)
            new.append(StreetBlock(
                campaign=campaign, block_key=b.block_id or block_key(geom), geom=ggeom,
                area_m2=float(extra.at[b.block_id, "area_m2"]) if "area_m2" in extra.columns else 0.0,
                source=StreetBlock.Source.POLYGONS, scene=scene, status=StreetBlock.Status.COMPLETE,
                consensus=[int(v) for v in permille], final_permille=[int(v) for v in permille],
                agreement_tv=None if tv is None or np.isnan(tv) else float(tv),
                split=b.split or "",
            ))
        StreetBlock.objects.bulk_create(new, batch_size=2000)
        AuditEvent.objects.create(actor=actor, action="import_dataset", campaign=campaign,
                                  after={"package": str(path), "created": len(new), "existing": len(known)})
    return ImportReport(created=len(new), existing=len(known))
