"""Writes. Every state change of the domain is one function, in one transaction, audited where
people act; reads are in annotator.selectors.

This module holds the core writes: campaigns, imagery and blocks, users and membership
(revocation), assignment (`pick_interpreters`: the one balancing rule), saving a split, and the
audit of what was shown. Writes of one feature live in that feature's module, named here so that
each kind of change has one home:

- annotator.curation: consensus and disputes when a block's last split arrives (`curate_block`,
  called by `save_annotation`), reviewers' adjudications (`adjudicate`);
- annotator.assist: the active-learning queue (`queue_next_batch`: assignments of an assisted round);
- annotator.prediction_jobs: the model's pre-labels (`start_prediction` and its Celery tasks);
- annotator.learning: one active-learning round (export -> train -> predict -> queue), resumable;
- annotator.export.importer: `import_dataset` (a dataset package's blocks and labels).

Request ids (idempotency) are annotator.idempotency's; which scene holds a block is
annotator.ingest.scenes'. Feature modules may call this module, never the other way round, except
`save_annotation` -> `curation.curate_block` (curation imports no service).
"""
from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import shapely
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.contrib.gis.geos import GEOSGeometry
from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone

from lcz_model.classes import N_CLASSES

from . import selectors, tile_stamps
from .idempotency import applied_before, request_digest
from .ingest.errors import IngestError
from .ingest.imagery import RasterInfo, inspect_geotiff, sha256_of, write_cog
from .ingest.scenes import SceneChooser
from .models import Annotation, Assignment, AuditEvent, Campaign, ImageryScene, Membership, StreetBlock
from .splits import SplitError, parse_split

ROLE_GROUPS = ("interpreter", "reviewer", "admin")
# Geometry from OpenStreetMap (an .osm.pbf extract, or road lines declared as OSM's)
OSM_SOURCE_NAME = "OpenStreetMap contributors"
OSM_LICENCE = "ODbL-1.0"


def ensure_role_groups() -> dict[str, Group]:
    """The role groups; the admin group holds every permission of this app (the admin site's pages)."""
    from django.contrib.auth.models import Permission

    groups = {name: Group.objects.get_or_create(name=name)[0] for name in ROLE_GROUPS}
    perms = Permission.objects.filter(content_type__app_label="annotator")
    if groups["admin"].permissions.count() != perms.count():
        groups["admin"].permissions.set(perms)
    return groups


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
                   attribution: str = "", name: str | None = None, bands=None, stretch: str | None = None,
                   resolution: float | None = None) -> tuple[ImageryScene, bool]:
    """One GeoTIFF (`import_imagery_files` with one path): the scene and whether it was created."""
    result = import_imagery_files(campaign, [path], licence=licence, attribution=attribution, name=name,
                                  bands=bands, stretch=stretch, resolution=resolution)
    return result.files[0].scene, result.files[0].created


@dataclass
class ImportedImagery:
    path: Path
    scene: ImageryScene
    created: bool
    notes: list[str]            # what the command reports: bands shown and not used, stretch, warnings
    warnings: list[str]


@dataclass
class ImageryImport:
    files: list[ImportedImagery]
    mosaic: str                 # the campaign's mosaic VRT, relative to MEDIA_ROOT


def import_imagery_files(campaign: Campaign, paths, *, licence: str = "", attribution: str = "",
                         name: str | None = None, bands=None, stretch: str | None = None,
                         resolution: float | None = None, progress=None) -> ImageryImport:
    """Import GeoTIFFs (files, or folders of them) as the campaign's imagery scenes, in one transaction.

    Each file gets a display COG under MEDIA_ROOT: 8-bit RGB (contrast-stretched per band unless it
    is 8-bit; one band = grey), in the campaign's CRS (the first scene's; other CRSs are warped) and
    at `resolution` m when given; and, unless it already was 8-bit RGB, a second COG of its original
    values (`source_cog_path`). Then the campaign's mosaic (one VRT over all its scenes, which tiles
    and chips read) is rebuilt. annotator.ingest.imagery says how (bands, stretch, grid).

    `bands`: "R,G,B" or "B" (grey) or a sequence of band numbers; `stretch`: "P1%,P2%", "MIN,MAX" or
    "MIN,MAX" per shown band (default 2-98 % percentiles, pooled over the files of this import);
    `progress(iterable, description)`: wraps the loops (a progress bar).

    Idempotent: a file already imported (same SHA-256, same campaign) is not written again. Every
    file is checked before anything is written: bad input (any one file) raises IngestError and
    leaves nothing behind (no scene, no COG, no empty folder; the mosaic as it was).
    """
    import logging

    from .ingest import IngestError
    from .ingest import imagery as im

    progress = progress or (lambda items, _description: items)
    limit = {f: ImageryScene._meta.get_field(f).max_length for f in ("name", "attribution", "crs")}
    for what, field, value in (("the scene name (--name)", "name", name or ""),
                               ("the attribution (--attribution)", "attribution", attribution)):
        if len(value) > limit[field]:
            raise IngestError(f"{what} is {len(value)} characters long; at most {limit[field]} are kept. Shorten it.")
    if resolution is not None and not 0 < resolution < 1e6:
        raise IngestError(f"--resolution {resolution}: give the pixel size in metres, e.g. 0.5.")
    requested = im.parse_bands(bands) if bands is None or isinstance(bands, str) else tuple(bands)
    spec = im.parse_stretch(stretch)
    files = im.imagery_files([paths] if isinstance(paths, (str, os.PathLike)) else list(paths))
    if name and len(files) > 1:
        raise IngestError(f"--name names one scene, but {len(files)} files are given; without --name each scene "
                          "takes its file's name.")
    checked = []
    for path in progress(files, "checking"):
        info: RasterInfo = inspect_geotiff(path)
        if not name and len(info.path.stem) > limit["name"]:
            raise IngestError(f"{info.path}: the file name is too long to name the scene (at most {limit['name']} "
                              "characters); give a shorter one with --name.")
        if len(info.crs) > limit["crs"]:
            raise IngestError(f"{info.path}: its CRS has no short identifier such as an EPSG code; reproject it "
                              f"first, e.g. `gdalwarp -t_srs EPSG:<code> {info.path.name} out.tif`.")
        checked.append((info, sha256_of(info.path), im.choose_bands(info, requested)))
    existing = {s.source_sha256: s for s in ImageryScene.objects.filter(
        campaign=campaign, source_sha256__in=[digest for _, digest, _ in checked])}
    from . import media as store

    media = Path(settings.MEDIA_ROOT)
    first = selectors.scenes_of(campaign).first()
    try:
        grid = im.Grid.of(store.gdal_path(first.cog_path)) if first is not None else None
    except OSError as exc:
        raise IngestError(f"the campaign's first scene ({media / first.cog_path}) cannot be read ({exc}): it sets "
                          "the campaign's CRS and grid; restore MEDIA_ROOT.") from None
    plans, new = {}, []
    for info, digest, choice in checked:
        if digest in existing or digest in plans:
            continue
        plan = im.plan_display(info, choice, grid, resolution_m=resolution, stretched=im.needs_stretch(info, spec))
        grid = grid or plan.grid
        plans[digest] = plan
    pooled: dict[tuple, list] = {}
    for plan in plans.values():
        if plan.stretched:
            pooled.setdefault((plan.info.dtype, plan.bands.band_map), []).append(plan.info)
    stretches = {key: im.compute_stretch(infos, key[1], spec) for key, infos in pooled.items()}
    folder = Path("imagery") / f"campaign-{campaign.pk}"
    written: list[Path] = []
    uploaded: list[str] = []  # object storage: COGs are written to a local stage, then uploaded
    stage_cm = store.staging()
    stage = stage_cm.__enter__()  # MEDIA_ROOT itself when media is local
    try:
        for digest, plan in progress(list(plans.items()), "writing COGs"):
            stretch_used = stretches.get((plan.info.dtype, plan.bands.band_map)) if plan.stretched else None
            rel, source_rel = folder / f"{digest[:16]}.tif", folder / f"{digest[:16]}.source.tif"
            written.append(im.write_display_cog(plan, stage / rel, stretch_used))
            uploaded += store.publish(stage, [rel])
            if plan.keeps_source:
                written.append(write_cog(plan.info.path, stage / source_rel, indexes=plan.info.data_bands,
                                         values=True))
                uploaded += store.publish(stage, [source_rel])
            new.append((digest, plan, stretch_used, str(rel), str(source_rel) if plan.keeps_source else ""))
        with transaction.atomic():
            Campaign.objects.select_for_update().get(pk=campaign.pk)  # one import of a campaign at a time
            created = {digest: ImageryScene.objects.create(
                campaign=campaign,
                name=name or plan.info.path.stem,
                cog_path=rel,
                source_name=plan.info.path.name,
                source_sha256=digest,
                crs=plan.crs.to_string(),
                crs_wkt=plan.crs.to_wkt(),
                resolution_m=plan.resolution_m,
                width=plan.width,
                height=plan.height,
                band_count=plan.info.band_count,
                footprint=GEOSGeometry(plan.info.footprint_wgs84.wkt, srid=4326),
                licence=licence or campaign.imagery_licence,
                attribution=attribution or campaign.imagery_attribution,
                synthetic=plan.info.synthetic,
                source_dtype=plan.info.dtype_label,
                band_map=list(plan.bands.band_map),
                stretch=stretch_used,
                source_cog_path=source_rel,
            ) for digest, plan, stretch_used, rel, source_rel in new}
            mosaic = campaign.mosaic_path
            if created or not mosaic or not store.exists(mosaic):
                mosaic = rebuild_mosaic(campaign)
            link_blocks_to_scenes(campaign)
    except BaseException:
        for p in written:  # nothing changed: no orphan COG or empty folder either
            im.remove_cog(p, keep=stage)
        try:
            store.delete(uploaded)  # object storage: the COGs this import uploaded
        except Exception:  # the import's own error is the one to report
            logging.getLogger(__name__).exception("removing the uploaded COGs of campaign %s failed", campaign.pk)
        if written:
            try:
                rebuild_mosaic(campaign)  # the mosaic of the scenes still recorded
            except Exception:  # the import's own error is the one to report
                logging.getLogger(__name__).exception("restoring the mosaic of campaign %s failed", campaign.pk)
        raise
    finally:
        stage_cm.__exit__(None, None, None)
    out, reported = [], set()
    for info, digest, choice in checked:
        if digest in created and digest not in reported:
            reported.add(digest)
            out.append(_imported(info, created[digest], plans[digest], choice, resolution))
        else:  # imported before, or the same file named twice
            scene = created.get(digest) or existing[digest]
            out.append(ImportedImagery(info.path, scene, False, [f"already imported as scene {scene.pk}"], []))
    return ImageryImport(out, mosaic)


def _imported(info, scene: ImageryScene, plan, choice, resolution) -> ImportedImagery:
    """What the command says about a new scene: bands, stretch, warping, originals kept, warnings."""
    from .ingest import imagery as im

    notes = [choice.described + "".join(f"; {b} not used" for b in choice.unused)]
    if scene.stretch:
        notes.append(f"{scene.source_dtype} {im.describe_stretch(scene.stretch, scene.band_map)}")
    if plan.warped:
        notes.append(f"warped from {info.crs} at {info.resolution_m:.2f} m into {scene.crs} at "
                     f"{scene.resolution_m:.2f} m")
    if scene.source_cog_path:
        notes.append(f"original values kept at MEDIA_ROOT/{scene.source_cog_path}")
    warning = im.resolution_warning(scene.resolution_m, given=resolution is not None)
    return ImportedImagery(info.path, scene, True, notes, [warning] if warning else [])


def rebuild_mosaic(campaign: Campaign) -> str:
    """Write the campaign's imagery as ONE layer: a GDAL VRT over all its scenes' display COGs
    (MEDIA_ROOT/imagery/campaign-<id>/mosaic.vrt, atomically; later scenes on top) and record it in
    `Campaign.mosaic_path`; without scenes the VRT is removed. Returns the path relative to
    MEDIA_ROOT ("" without imagery)."""
    from .ingest import imagery as im

    from . import media as store

    media = Path(settings.MEDIA_ROOT)
    rel = Path("imagery") / f"campaign-{campaign.pk}" / "mosaic.vrt"
    if store.is_remote():  # object storage: the VRT is written locally, names its COGs relative to itself
        keys = [s.cog_path for s in selectors.scenes_of(campaign)]
        with store.staging() as stage:
            if keys:
                im.write_mosaic([store.gdal_path(k) for k in keys], stage / rel,
                                names=[os.path.relpath(k, rel.parent) for k in keys])
                store.put_file(stage / rel, rel)
            else:
                store.delete([rel])
        campaign.mosaic_path = str(rel) if keys else ""
        Campaign.objects.filter(pk=campaign.pk).update(mosaic_path=campaign.mosaic_path)
        return campaign.mosaic_path
    cogs = [media / s.cog_path for s in selectors.scenes_of(campaign)]
    if cogs:
        im.write_mosaic(cogs, media / rel)
    else:
        im.remove_cog(media / rel, keep=media)
    campaign.mosaic_path = str(rel) if cogs else ""
    Campaign.objects.filter(pk=campaign.pk).update(mosaic_path=campaign.mosaic_path)
    return campaign.mosaic_path


@dataclass
class BlockImportResult:
    created: int
    existing: int
    replaced: int = 0  # existing blocks without annotations that new ones replaced (--replace)
    dropped_over_annotated: int = 0  # new blocks not stored: they overlap an annotated block
    edge: int = 0  # new blocks touching the boundary that closed them
    outside_imagery: int = 0  # new blocks no imagery scene holds (scene null)

    @property
    def total(self) -> int:
        return self.created + self.existing


# Blocks overlapping by less than this (m²) only touch: shared edges, coordinate noise.
OVERLAP_MIN_M2 = 1.0


class BlocksOverlap(IngestError):
    """New blocks would overlap blocks the campaign already has (other input or other options)."""


def block_provenance(source: str, source_name: str | None = None, licence: str | None = None, *,
                     required: bool = False) -> tuple[str, str]:
    """The geometry source and licence that blocks from `source` record: those given, else
    OpenStreetMap's (ODbL) for an .osm.pbf extract. With `required`, a user file (road lines,
    polygons) must name both; IngestError says what to pass."""
    name, lic = (source_name or "").strip(), (licence or "").strip()
    if source == StreetBlock.Source.OSM_PBF:
        name, lic = name or OSM_SOURCE_NAME, lic or OSM_LICENCE
    missing = [option for option, value in (("--source-name", name), ("--licence", lic)) if not value]
    if required and missing:
        raise IngestError(
            f"Say where this file's geometry comes from and under which licence: pass {' and '.join(missing)}, "
            "e.g. --source-name \"City of Helsinki block map\" --licence CC-BY-4.0 (road lines taken from "
            f"OpenStreetMap: --source-name \"{OSM_SOURCE_NAME}\" --licence {OSM_LICENCE}).")
    for option, value, field in (("--source-name", name, "source_name"), ("--licence", lic, "licence")):
        limit = StreetBlock._meta.get_field(field).max_length
        if len(value) > limit:
            raise IngestError(f"{option} is {len(value)} characters long; at most {limit} are kept. Shorten it.")
    return name, lic


@transaction.atomic
def import_street_blocks(campaign: Campaign, blocks: gpd.GeoDataFrame, *, source: str,
                         source_name: str | None = None, licence: str | None = None, replace: bool = False,
                         actor: User | None = None) -> BlockImportResult:
    """Store blocks (EPSG:4326 with `block_key`, `area_m2` and optionally `edge`); blocks already
    stored (same key: same geometry) are kept, so the same input again is a no-op.

    A campaign's blocks never overlap: new blocks overlapping stored ones (other input, other options)
    are refused (BlocksOverlap, nothing changed) unless `replace`, which deletes the overlapped blocks
    that have no annotations and drops the new blocks that overlap an annotated one (kept as it is).
    Each block is linked to the campaign scene whose footprint holds most of it (ingest.scenes), and
    records its geometry's source and licence (`block_provenance`: OSM's by default for osm_pbf).
    Blocks away from the boundary get the lower ids (they are assigned first).
    """
    source_name, licence = block_provenance(source, source_name, licence)
    if blocks.crs is None or blocks.crs.to_epsg() != 4326:
        raise ValueError("blocks must be in EPSG:4326")
    known = selectors.existing_block_keys(campaign, blocks["block_key"])
    fresh = blocks[~blocks["block_key"].isin(known)]
    if "edge" not in fresh.columns:
        fresh = fresh.assign(edge=False)
    fresh, replaced, dropped = _make_room(campaign, fresh, replace=replace, actor=actor)
    scenes = SceneChooser(selectors.scenes_of(campaign))
    new = []
    for key, area, geom, edge in sorted(zip(fresh["block_key"], fresh["area_m2"], fresh.geometry.values,
                                            fresh["edge"].astype(bool)), key=lambda row: (row[3], row[0])):
        new.append(StreetBlock(campaign=campaign, block_key=key, area_m2=float(area), source=source,
                               source_name=source_name, licence=licence, edge=edge,
                               scene=scenes.scene_for(geom), geom=GEOSGeometry(geom.wkt, srid=4326)))
    StreetBlock.objects.bulk_create(new, batch_size=2000)
    tile_stamps.bump(campaign.pk)   # new (or replaced) blocks on every map
    return BlockImportResult(created=len(new), existing=len(known), replaced=replaced, dropped_over_annotated=dropped,
                             edge=sum(b.edge for b in new),
                             outside_imagery=sum(b.scene is None for b in new) if scenes.scenes else 0)


def _make_room(campaign: Campaign, fresh: gpd.GeoDataFrame, *, replace: bool,
               actor: User | None) -> tuple[gpd.GeoDataFrame, int, int]:
    """(the new blocks to store, stored blocks deleted, new blocks dropped): see import_street_blocks."""
    pairs = _overlaps(campaign, fresh)
    if not pairs:
        return fresh, 0, 0
    if not replace:
        raise BlocksOverlap(
            f"{len({i for i, _ in pairs})} new blocks would overlap {len({b for _, b in pairs})} blocks already "
            f"in campaign {campaign.name!r} (made from other input, or with other options: --network, --min-area, "
            "--min-width, --boundary, or imagery imported since). Run again with --replace to replace the "
            "overlapped blocks that have no annotations (annotated blocks are kept; new blocks over them are dropped).")
    annotated = selectors.annotated_block_ids(campaign, {b for _, b in pairs})
    over_annotated = {i for i, b in pairs if b in annotated}
    doomed = sorted({b for i, b in pairs if i not in over_annotated and b not in annotated})
    keys = list(selectors.blocks_of(campaign).filter(pk__in=doomed).values_list("block_key", flat=True))
    StreetBlock.objects.filter(pk__in=doomed).delete()
    AuditEvent.objects.create(actor=actor, action="replace_blocks", campaign=campaign,
                              after={"deleted": len(doomed), "deleted_keys": keys[:1000],
                                     "dropped_over_annotated": len(over_annotated)})
    keep = [i not in over_annotated for i in range(len(fresh))]
    return fresh[keep], len(doomed), len(over_annotated)


def _overlaps(campaign: Campaign, fresh: gpd.GeoDataFrame) -> list[tuple[int, int]]:
    """(row of `fresh`, stored block id) for each pair overlapping by at least OVERLAP_MIN_M2."""
    if fresh.empty:
        return []
    stored = selectors.block_geometries_in(campaign, tuple(fresh.total_bounds))
    if not stored:
        return []
    ids = [pk for pk, _ in stored]
    metric = fresh.estimate_utm_crs()
    new_m = fresh.geometry.to_crs(metric).values
    old_m = gpd.GeoSeries.from_wkb([bytes(g.wkb) for _, g in stored], crs="EPSG:4326").to_crs(metric).values
    rows, cols = shapely.STRtree(old_m).query(new_m, predicate="intersects")
    # reprojection can fold a polygon by rounding (vertices 1e-10 m apart): repair before the overlay
    areas = shapely.area(shapely.intersection(shapely.make_valid(new_m[rows]), shapely.make_valid(old_m[cols])))
    return [(int(r), ids[c]) for r, c, a in zip(rows, cols, areas) if a >= OVERLAP_MIN_M2]


@transaction.atomic
def link_blocks_to_scenes(campaign: Campaign) -> int:
    """Blocks without a scene get the campaign scene that holds most of them (ingest.scenes), so that
    importing roads before or after imagery ends the same. Returns how many were linked."""
    scenes = SceneChooser(selectors.scenes_of(campaign))
    linked = []
    for block in selectors.blocks_of(campaign).filter(scene=None).only("id", "geom"):
        block.scene = scenes.scene_for(block.geom)
        if block.scene is not None:
            linked.append(block)
    StreetBlock.objects.bulk_update(linked, ["scene"], batch_size=2000)
    return len(linked)


class UserExists(ValueError):
    """create_user was asked for a username that is taken."""


@transaction.atomic
def ensure_user(username: str, password: str, *, role: str, email: str = "") -> tuple[User, bool]:
    """Create a user in a role group (interpreter/reviewer/admin), or return the existing one."""
    user = User.objects.filter(username=username).first()
    if user is None:
        return create_user(username, password, role=role, email=email), True
    user.groups.add(_role_group(role))
    return user, False


@transaction.atomic
def create_user(username: str, password: str, *, role: str, email: str = "") -> User:
    """A new account in the role's group: never a superuser, staff (the admin site) only for the
    admin role. Refuses a username that exists, in any letter case (UserExists)."""
    group = _role_group(role)
    if User.objects.filter(username__iexact=username).exists():
        raise UserExists(f"user {username!r} already exists.")
    try:
        with transaction.atomic():
            user = User.objects.create_user(username, email=email, password=password, is_staff=role == "admin")
    except IntegrityError:  # created by someone else meanwhile
        raise UserExists(f"user {username!r} already exists.") from None
    user.groups.add(group)
    return user


def _role_group(role: str) -> Group:
    if role not in ROLE_GROUPS:
        raise ValueError(f"role must be one of {ROLE_GROUPS}")
    return ensure_role_groups()[role]


# --- membership and assignment --------------------------------------------------------------

@transaction.atomic
def add_member(campaign: Campaign, user: User, role: str) -> Membership:
    user.groups.add(_role_group(role))
    return Membership.objects.get_or_create(campaign=campaign, user=user, role=role)[0]


@transaction.atomic
def remove_member(campaign: Campaign, user: User, role: str, *, actor: User | None = None) -> int:
    """Take `user` off the campaign in `role`. An interpreter's open assignments are revoked (saves
    refused from then on); what they submitted stays. Returns the number of assignments revoked."""
    revoked = 0
    if role == Membership.Role.INTERPRETER:
        revoked = revoke_open_assignments(user, campaign=campaign, actor=actor, reason="removed from the campaign")
    deleted, _ = Membership.objects.filter(campaign=campaign, user=user, role=role).delete()
    if deleted:
        AuditEvent.objects.create(actor=actor, action="remove_member", campaign=campaign,
                                  after={"user": user.pk, "username": user.username, "role": role})
    return revoked


@transaction.atomic
def deactivate_user(user: User, *, actor: User | None = None) -> int:
    """Deactivate an account (no more logins) and revoke its open assignments in every campaign.
    (annotator.signals revokes too when an account is deactivated elsewhere, e.g. in the admin.)"""
    revoked = revoke_open_assignments(user, actor=actor, reason="account deactivated")
    if user.is_active:
        user.is_active = False
        user.save(update_fields=["is_active"])
    return revoked


def revoke_open_assignments(user: User, *, campaign: Campaign | None = None, actor: User | None = None,
                            reason: str) -> int:
    """Revoke the user's unsubmitted assignments (all campaigns, or one). Idempotent; audited per
    campaign. Submitted splits are kept; revoked assignments no longer count for a block's completion."""
    qs = Assignment.objects.filter(interpreter=user, status__in=Assignment.OPEN_STATUSES)
    if campaign is not None:
        qs = qs.filter(campaign=campaign)
    by_campaign: dict[int, list[int]] = {}
    for pk, campaign_id in qs.values_list("pk", "campaign_id"):
        by_campaign.setdefault(campaign_id, []).append(pk)
    if not by_campaign:
        return 0
    Assignment.objects.filter(pk__in=[pk for ids in by_campaign.values() for pk in ids]).update(
        status=Assignment.Status.REVOKED)
    for campaign_id, ids in sorted(by_campaign.items()):
        tile_stamps.bump(campaign_id)
        AuditEvent.objects.create(actor=actor, action="revoke_assignments", campaign_id=campaign_id,
                                  after={"user": user.pk, "username": user.username, "reason": reason,
                                         "assignments": sorted(ids)})
    return sum(len(ids) for ids in by_campaign.values())


def pick_interpreters(load: dict[int, int], rank: dict[int, int], need: int, exclude=()) -> list[int]:
    """The one balancing rule of assignment: the `need` interpreters with the fewest assignments
    so far (ties by `rank`, i.e. username order), never one in `exclude`. Updates `load`."""
    picked = sorted((u for u in load if u not in exclude), key=lambda u: (load[u], rank[u]))[:need]
    for user_id in picked:
        load[user_id] += 1
    return picked


def interpreter_load(campaign: Campaign, round: int) -> tuple[list[User], dict[int, int], dict[int, int]]:
    """(interpreters by username, their live assignment counts in `round`, their username rank)."""
    interpreters = list(selectors.interpreters_of(campaign).order_by("username"))
    if not interpreters:
        raise ValueError(f"campaign {campaign.name!r} has no interpreters; add members first.")
    load = {u.pk: 0 for u in interpreters}
    for user_id in selectors.live_assignments(campaign, round).values_list("interpreter_id", flat=True):
        if user_id in load:
            load[user_id] += 1
    return interpreters, load, {u.pk: i for i, u in enumerate(interpreters)}


@dataclass
class AssignResult:
    created: int
    blocks_short: int  # blocks that could not get N distinct interpreters (too few interpreters)
    skipped_edge: int = 0  # edge blocks left out (include_edge=False)
    skipped_outside_imagery: int = 0  # blocks no imagery scene holds, in a campaign with imagery


@transaction.atomic
def assign_blocks(campaign: Campaign, *, per_block: int | None = None, round: int = 1,
                  actor: User | None = None, include_edge: bool = False) -> AssignResult:
    """Give each block `per_block` distinct interpreters, balancing the load (pick_interpreters).

    Blocks in id order; edge blocks (cut by the boundary) only with `include_edge`, and never blocks
    outside all of the campaign's imagery (selectors.assignable_blocks). Existing assignments count,
    so re-running only fills gaps (also the gaps that revoked assignments left; their interpreter is
    never given the same block again).
    """
    per_block = per_block or campaign.interpreters_per_block
    _, load, rank = interpreter_load(campaign, round)
    taken, live = selectors.round_holders(campaign, round)
    new, short = [], 0
    blocks, skipped = selectors.assignable_blocks(campaign, include_edge=include_edge)
    for block_id in blocks.order_by("id").values_list("id", flat=True):
        need = per_block - live.get(block_id, 0)
        if need <= 0:
            continue
        picked = pick_interpreters(load, rank, need, exclude=taken.get(block_id, ()))
        short += len(picked) < need
        new += [Assignment(campaign=campaign, block_id=block_id, interpreter_id=u, round=round) for u in picked]
    Assignment.objects.bulk_create(new, batch_size=2000)
    if new:
        tile_stamps.bump(campaign.pk)
        AuditEvent.objects.create(actor=actor, action="assign_blocks", campaign=campaign,
                                  after={"created": len(new), "per_block": per_block, "round": round})
    return AssignResult(created=len(new), blocks_short=short, skipped_edge=skipped["edge"],
                        skipped_outside_imagery=skipped["outside_imagery"])


# --- saving a split -------------------------------------------------------------------------

class StaleVersion(Exception):
    def __init__(self, current: Annotation | None):
        super().__init__(f"stale version: the annotation is at version {current.version if current else 0}")
        self.current = current


class Revoked(PermissionError):
    """The assignment was revoked (the interpreter left the campaign or was deactivated)."""


@dataclass
class SaveResult:
    annotation: Annotation
    replayed: bool  # True: this request id was already applied; nothing changed


def _annotation_state(a: Annotation | None) -> dict | None:
    if a is None:
        return None
    return {"permille": a.permille, "confidence": a.confidence, "flags": a.flags, "comment": a.comment,
            "version": a.version, "submitted": a.submitted_at is not None, "skip_reason": a.skip_reason}


def save_annotation(assignment: Assignment, actor: User, *, request_id, version: int | None,
                    split: dict | None, confidence: int | None = None, flags: list[str] | None = None,
                    comment: str = "", submit: bool = False, skip_reason: str = "") -> SaveResult:
    """Save an interpreter's draft or submission of their own assignment.

    - idempotent: a request id already applied by this actor with the same body and assignment
      replays the stored result; the same id with anything else is refused (RequestIdReused);
    - optimistic: `version` must equal the stored version (None/0 for the first save), else StaleVersion;
    - validated: SplitError / ValueError name the bad fields; a submission must sum to 1000;
    - a can't-label verdict: `skip_reason` (Annotation.SkipReason) with no split (None or all zeros) is
      saved as permille all 0; submitted, it counts as done; "other" needs a comment to be submitted;
      a later save with a split (block still open) un-skips it like any edit;
    - revocable: a revoked assignment, or an interpreter no longer on the campaign, is refused (Revoked);
    - audited: an AuditEvent keeps before and after.
    """
    if assignment.interpreter_id != actor.pk:
        raise PermissionError("only the assigned interpreter can save this split")
    comment = comment or ""
    permille = _verdict_permille(split, skip_reason, comment, submit)
    flags = list(flags or [])
    bad_flags = sorted({str(f) for f in flags} - set(Annotation.Flag.values))
    if bad_flags:
        raise SplitError({"flags": [f"unknown flag(s) {', '.join(bad_flags)}; allowed: "
                                    f"{', '.join(Annotation.Flag.values)}."]})
    if len(flags) != len(set(flags)):
        raise SplitError({"flags": ["each flag at most once."]})
    if confidence is not None and not (1 <= int(confidence) <= 5):
        raise SplitError({"confidence": ["must be 1..5."]})
    body = {"version": version or 0, "permille": permille, "confidence": confidence, "flags": flags,
            "comment": comment, "submit": bool(submit)}
    if skip_reason:  # only when set: the digests of requests without a skip stay as they were
        body["skip_reason"] = skip_reason
    digest = request_digest("save", assignment.pk, body)
    try:
        return _retry_when_locked(lambda: _save_annotation_once(
            assignment, actor, request_id, digest, version, permille, confidence, flags, comment, submit,
            skip_reason))
    except IntegrityError:
        # a concurrent retry of the same request won the race: replay what it stored
        event = applied_before(actor, request_id, digest)
        if event is None:
            raise
        return SaveResult(Annotation.objects.get(pk=event.annotation_id), replayed=True)


def _verdict_permille(split, skip_reason, comment: str, submit: bool) -> list[int]:
    """The per-mille to store: the parsed split, or all zeros for a can't-label verdict (skip_reason)."""
    if skip_reason not in Annotation.SkipReason.values:
        allowed = ", ".join(v for v in Annotation.SkipReason.values if v)
        raise SplitError({"skip_reason": [f"unknown reason {skip_reason!r}; allowed: {allowed} "
                                          "(or empty: not skipped)."]})
    if not skip_reason:
        if split is None:
            raise SplitError({"split": ["required (or send skip_reason for a can't-label verdict)."]})
        return parse_split(split, require_total=submit)
    permille = [0] * N_CLASSES if split is None else parse_split(split, require_total=False)
    if any(permille):
        raise SplitError({"split": ["a can't-label verdict (skip_reason) carries no split: send all zeros "
                                    "or leave split out."]})
    if submit and skip_reason == Annotation.SkipReason.OTHER and not comment.strip():
        raise SplitError({"comment": ["say in the comment why this block can't be labelled (reason: other)."]})
    return permille


def _save_annotation_once(*args) -> SaveResult:
    with transaction.atomic():
        return _save_annotation_locked(*args)


def _retry_when_locked(write, attempts: int = 8):
    """Run a write transaction again when SQLite (the embedded default) reports its one write lock
    busy. Safe: the whole transaction was rolled back, and saves carry an idempotency key that is
    checked inside the transaction, so a retry never applies a save twice. PostGIS never needs it."""
    for attempt in range(attempts):
        try:
            return write()
        except OperationalError as exc:
            if "database is locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(min(2.0, 0.05 * 2 ** attempt) * (0.5 + random.random()))


def _save_annotation_locked(assignment, actor, request_id, digest, version, permille, confidence, flags,
                            comment, submit, skip_reason="") -> SaveResult:
    assignment = Assignment.objects.select_for_update().get(pk=assignment.pk)
    done = applied_before(actor, request_id, digest)
    if done is not None:
        return SaveResult(Annotation.objects.get(pk=done.annotation_id), replayed=True)
    if assignment.status == Assignment.Status.REVOKED:
        raise Revoked("this assignment was revoked (you are no longer an interpreter of this campaign); "
                      "nothing was saved. Ask the campaign's coordinator if this is a mistake.")
    if not selectors.is_interpreter(actor, assignment.campaign):
        raise Revoked("you are no longer an interpreter of this campaign; nothing was saved.")
    annotation = Annotation.objects.filter(assignment=assignment).first()
    current_version = annotation.version if annotation else 0
    if (version or 0) != current_version:
        raise StaleVersion(annotation)
    if annotation is not None and annotation.submitted_at is not None and assignment.block.status in (
            StreetBlock.Status.COMPLETE, StreetBlock.Status.DISPUTED, StreetBlock.Status.ADJUDICATED):
        raise SplitError({"split": ["this block is complete and in review; it can no longer be edited."]})
    if annotation is not None and annotation.submitted_at is not None and not submit:
        raise SplitError({"submit": ["this split is already submitted: send submit=true with a full split "
                                     "to change it."]})
    before = _annotation_state(annotation)
    now = timezone.now()
    if annotation is None:
        annotation = Annotation(assignment=assignment, version=0)
    annotation.permille = permille
    annotation.skip_reason = skip_reason
    annotation.confidence = confidence
    annotation.flags = flags
    annotation.comment = comment
    annotation.version += 1
    if submit:
        annotation.submitted_at = now
        if not skip_reason:  # a can't-label verdict takes nothing from the model's split
            _record_suggestion_provenance(assignment, annotation)
    annotation.save()
    assignment.status = Assignment.Status.SUBMITTED if annotation.submitted_at else Assignment.Status.DRAFT
    assignment.save(update_fields=["status"])
    AuditEvent.objects.create(
        actor=actor, action="submit" if submit else "save_draft", campaign_id=assignment.campaign_id,
        block_id=assignment.block_id, annotation=annotation, request_id=request_id, request_digest=digest,
        before=before, after=_annotation_state(annotation),
    )
    tile_stamps.bump_user(assignment.campaign_id, assignment.interpreter_id)   # their map's status
    _update_block_status(assignment)
    return SaveResult(annotation, replayed=False)


def _record_suggestion_provenance(assignment: Assignment, annotation: Annotation) -> None:
    """In an assisted round: which model split the editor started from, and what became of it."""
    suggestion = selectors.suggestion_for(assignment)
    if suggestion is None:
        return
    annotation.suggestion_model_version = suggestion.model_version
    annotation.suggestion_permille = suggestion.permille
    annotation.accepted_unchanged = list(annotation.permille) == list(suggestion.permille)
    annotation.tv_from_suggestion = 0.5 * sum(abs(a - b) for a, b in zip(annotation.permille, suggestion.permille)) / 1000


def record_suggestion_shown(assignment: Assignment, viewer: User, model_version: str) -> None:
    """Audit that `viewer` was shown the model's split of the assignment's block (once per
    viewer, assignment and model)."""
    after = {"assignment": assignment.pk, "model_version": model_version}
    seen = AuditEvent.objects.filter(actor=viewer, action="suggestion_shown", block_id=assignment.block_id,
                                     after__assignment=assignment.pk, after__model_version=model_version)
    if not seen.exists():
        AuditEvent.objects.create(actor=viewer, action="suggestion_shown", campaign_id=assignment.campaign_id,
                                  block_id=assignment.block_id, after=after)


def record_predictions_shown(campaign: Campaign, viewer: User, model_version: str) -> None:
    """Audit that a reviewer's map layer showed a model's splits: once per viewer, model and day (the
    layer is fetched on every pan; one row per request would grow the audit trail by the pan)."""
    today = timezone.now().date()
    seen = AuditEvent.objects.filter(actor=viewer, action="predictions_shown", campaign=campaign,
                                     after__model_version=model_version, at__date=today)
    if not seen.exists():
        AuditEvent.objects.create(actor=viewer, action="predictions_shown", campaign=campaign,
                                  after={"model_version": model_version})


def _update_block_status(assignment: Assignment) -> None:
    block = StreetBlock.objects.select_for_update().get(pk=assignment.block_id)
    if block.status in (StreetBlock.Status.DISPUTED, StreetBlock.Status.ADJUDICATED):
        return
    statuses = list(selectors.live_assignments(block.campaign, assignment.round).filter(block=block)
                    .values_list("status", flat=True))
    needed = block.campaign.interpreters_per_block
    submitted = sum(s == Assignment.Status.SUBMITTED for s in statuses)
    if submitted >= needed and len(statuses) == submitted:
        from .curation import curate_block

        curate_block(block, round=assignment.round)  # consensus, agreement, complete or disputed
    elif block.status != StreetBlock.Status.IN_PROGRESS:
        block.status = StreetBlock.Status.IN_PROGRESS
        block.save(update_fields=["status"])
        tile_stamps.bump(block.campaign_id)
