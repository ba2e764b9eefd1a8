"""Writes. Every state change of the domain is one function here, in one transaction."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import shapely
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.contrib.gis.geos import GEOSGeometry
from django.db import transaction

from . import selectors
from .ingest.imagery import RasterInfo, inspect_geotiff, sha256_of, write_cog
from .models import Campaign, ImageryScene, StreetBlock

ROLE_GROUPS = ("interpreter", "reviewer", "admin")


def ensure_role_groups() -> dict[str, Group]:
    return {name: Group.objects.get_or_create(name=name)[0] for name in ROLE_GROUPS}


@transaction.atomic
def create_campaign(name: str, *, city: str, description: str = "", imagery_licence: str = "",
                    imagery_attribution: str = "", interpreters_per_block: int = 3) -> tuple[Campaign, bool]:
    """Create the campaign, or return the existing one of that name (created=False)."""
    if interpreters_per_block < 1:
        raise ValueError("interpreters per block must be at least 1")
    return Campaign.objects.get_or_create(
        name=name,
        defaults=dict(city=city, description=description, imagery_licence=imagery_licence,
                      imagery_attribution=imagery_attribution,
                      interpreters_per_block=interpreters_per_block),
    )


def import_imagery(campaign: Campaign, path: str | os.PathLike, *, licence: str = "",
                   attribution: str = "", name: str | None = None) -> tuple[ImageryScene, bool]:
    """Validate a GeoTIFF, write it as a COG under MEDIA_ROOT and record the scene.

    Idempotent: the same file (by SHA-256) for the same campaign returns the existing scene.
    Bad input raises IngestError before anything is written.
    """
    info: RasterInfo = inspect_geotiff(path)
    digest = sha256_of(info.path)
    existing = ImageryScene.objects.filter(campaign=campaign, source_sha256=digest).first()
    if existing is not None:
        return existing, False
    rel = Path("imagery") / f"campaign-{campaign.pk}" / f"{digest[:16]}.tif"
    dst = Path(settings.MEDIA_ROOT) / rel
    write_cog(info.path, dst)
    try:
        with transaction.atomic():
            scene = ImageryScene.objects.create(
                campaign=campaign,
                name=name or info.path.stem,
                cog_path=str(rel),
                source_name=info.path.name,
                source_sha256=digest,
                crs=info.crs,
                crs_wkt=info.crs_wkt,
                resolution_m=info.resolution_m,
                width=info.width,
                height=info.height,
                band_count=info.band_count,
                footprint=GEOSGeometry(info.footprint_wgs84.wkt, srid=4326),
                licence=licence or campaign.imagery_licence,
                attribution=attribution or campaign.imagery_attribution,
                synthetic=info.synthetic,
            )
    except Exception:
        dst.unlink(missing_ok=True)  # nothing changed: no orphan COG either
        raise
    return scene, True


@dataclass
class BlockImportResult:
    created: int
    existing: int

    @property
    def total(self) -> int:
        return self.created + self.existing


@transaction.atomic
def import_street_blocks(campaign: Campaign, blocks: gpd.GeoDataFrame, *, source: str) -> BlockImportResult:
    """Store blocks (EPSG:4326 with `block_key` and `area_m2`); blocks already stored are kept.

    Each block is linked to the campaign scene whose footprint holds most of it.
    """
    if blocks.crs is None or blocks.crs.to_epsg() != 4326:
        raise ValueError("blocks must be in EPSG:4326")
    known = selectors.existing_block_keys(campaign, blocks["block_key"])
    scenes = list(selectors.scenes_of(campaign))
    footprints = [shapely.from_wkb(bytes(s.footprint.wkb)) for s in scenes]
    new = []
    for key, area, geom in zip(blocks["block_key"], blocks["area_m2"], blocks.geometry.values):
        if key in known:
            continue
        scene = None
        if scenes:
            overlaps = [shapely.area(shapely.intersection(geom, f)) for f in footprints]
            best = max(range(len(scenes)), key=overlaps.__getitem__)
            scene = scenes[best] if overlaps[best] > 0 else None
        new.append(StreetBlock(campaign=campaign, block_key=key, area_m2=float(area), source=source,
                               scene=scene, geom=GEOSGeometry(geom.wkt, srid=4326)))
    StreetBlock.objects.bulk_create(new, batch_size=2000)
    return BlockImportResult(created=len(new), existing=len(known))


@transaction.atomic
def ensure_user(username: str, password: str, *, role: str, email: str = "") -> tuple[User, bool]:
    """Create a user in a role group (interpreter/reviewer/admin), or return the existing one."""
    if role not in ROLE_GROUPS:
        raise ValueError(f"role must be one of {ROLE_GROUPS}")
    groups = ensure_role_groups()
    user, created = User.objects.get_or_create(username=username, defaults={"email": email})
    if created:
        user.set_password(password)
        user.is_staff = role == "admin"
        user.save()
    user.groups.add(groups[role])
    return user, created
