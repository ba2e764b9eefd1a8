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
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.contrib.gis.geos import GEOSGeometry
from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone

from . import selectors
from .idempotency import applied_before, request_digest
from .ingest.imagery import RasterInfo, inspect_geotiff, sha256_of, write_cog
from .ingest.scenes import SceneChooser
from .models import Annotation, Assignment, AuditEvent, Campaign, ImageryScene, Membership, StreetBlock
from .splits import SplitError, parse_split

ROLE_GROUPS = ("interpreter", "reviewer", "admin")


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
                   attribution: str = "", name: str | None = None) -> tuple[ImageryScene, bool]:
    """Validate a GeoTIFF, write it as a COG under MEDIA_ROOT and record the scene.

    Idempotent: the same file (by SHA-256) for the same campaign returns the existing scene.
    Bad input raises IngestError and leaves nothing behind (no scene, no COG, no empty folder).
    """
    from .ingest import IngestError
    from .ingest.imagery import remove_cog

    limit = {f: ImageryScene._meta.get_field(f).max_length for f in ("name", "attribution", "crs")}
    for what, field, value in (("the scene name (--name)", "name", name or ""),
                               ("the attribution (--attribution)", "attribution", attribution)):
        if len(value) > limit[field]:
            raise IngestError(f"{what} is {len(value)} characters long; at most {limit[field]} are kept. Shorten it.")
    info: RasterInfo = inspect_geotiff(path)
    if not name and len(info.path.stem) > limit["name"]:
        raise IngestError(f"{info.path}: the file name is too long to name the scene (at most {limit['name']} "
                          "characters); give a shorter one with --name.")
    if len(info.crs) > limit["crs"]:
        raise IngestError(f"{info.path}: its CRS has no short identifier such as an EPSG code; reproject it "
                          f"first, e.g. `gdalwarp -t_srs EPSG:<code> {info.path.name} out.tif`.")
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
        remove_cog(dst, keep=settings.MEDIA_ROOT)  # nothing changed: no orphan COG or empty folder either
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

    Each block is linked to the campaign scene whose footprint holds most of it (ingest.scenes).
    """
    if blocks.crs is None or blocks.crs.to_epsg() != 4326:
        raise ValueError("blocks must be in EPSG:4326")
    known = selectors.existing_block_keys(campaign, blocks["block_key"])
    scenes = SceneChooser(selectors.scenes_of(campaign))
    new = []
    for key, area, geom in zip(blocks["block_key"], blocks["area_m2"], blocks.geometry.values):
        if key in known:
            continue
        new.append(StreetBlock(campaign=campaign, block_key=key, area_m2=float(area), source=source,
                               scene=scenes.scene_for(geom), geom=GEOSGeometry(geom.wkt, srid=4326)))
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


# --- membership and assignment --------------------------------------------------------------

@transaction.atomic
def add_member(campaign: Campaign, user: User, role: str) -> Membership:
    ensure_role_groups()
    user.groups.add(Group.objects.get(name=role))
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


@transaction.atomic
def assign_blocks(campaign: Campaign, *, per_block: int | None = None, round: int = 1,
                  actor: User | None = None) -> AssignResult:
    """Give each block `per_block` distinct interpreters, balancing the load (pick_interpreters).

    Blocks in id order. Existing assignments count, so re-running only fills gaps (also the gaps
    that revoked assignments left; their interpreter is never given the same block again).
    """
    per_block = per_block or campaign.interpreters_per_block
    _, load, rank = interpreter_load(campaign, round)
    live: dict[int, int] = {}
    taken: dict[int, set[int]] = {}
    for block_id, user_id, status in Assignment.objects.filter(campaign=campaign, round=round).values_list(
            "block_id", "interpreter_id", "status"):
        taken.setdefault(block_id, set()).add(user_id)
        if status != Assignment.Status.REVOKED:
            live[block_id] = live.get(block_id, 0) + 1
    new, short = [], 0
    for block_id in selectors.blocks_of(campaign).order_by("id").values_list("id", flat=True):
        need = per_block - live.get(block_id, 0)
        if need <= 0:
            continue
        picked = pick_interpreters(load, rank, need, exclude=taken.get(block_id, ()))
        short += len(picked) < need
        new += [Assignment(campaign=campaign, block_id=block_id, interpreter_id=u, round=round) for u in picked]
    Assignment.objects.bulk_create(new, batch_size=2000)
    if new:
        AuditEvent.objects.create(actor=actor, action="assign_blocks", campaign=campaign,
                                  after={"created": len(new), "per_block": per_block, "round": round})
    return AssignResult(created=len(new), blocks_short=short)


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
            "version": a.version, "submitted": a.submitted_at is not None}


def save_annotation(assignment: Assignment, actor: User, *, request_id, version: int | None,
                    split: dict, confidence: int | None = None, flags: list[str] | None = None,
                    comment: str = "", submit: bool = False) -> SaveResult:
    """Save an interpreter's draft or submission of their own assignment.

    - idempotent: a request id already applied by this actor with the same body and assignment
      replays the stored result; the same id with anything else is refused (RequestIdReused);
    - optimistic: `version` must equal the stored version (None/0 for the first save), else StaleVersion;
    - validated: SplitError / ValueError name the bad fields; a submission must sum to 1000;
    - revocable: a revoked assignment, or an interpreter no longer on the campaign, is refused (Revoked);
    - audited: an AuditEvent keeps before and after.
    """
    if assignment.interpreter_id != actor.pk:
        raise PermissionError("only the assigned interpreter can save this split")
    permille = parse_split(split, require_total=submit)
    flags = list(flags or [])
    bad_flags = sorted({str(f) for f in flags} - set(Annotation.Flag.values))
    if bad_flags:
        raise SplitError({"flags": [f"unknown flag(s) {', '.join(bad_flags)}; allowed: "
                                    f"{', '.join(Annotation.Flag.values)}."]})
    if len(flags) != len(set(flags)):
        raise SplitError({"flags": ["each flag at most once."]})
    if confidence is not None and not (1 <= int(confidence) <= 5):
        raise SplitError({"confidence": ["must be 1..5."]})
    comment = comment or ""
    digest = request_digest("save", assignment.pk, {
        "version": version or 0, "permille": permille, "confidence": confidence, "flags": flags,
        "comment": comment, "submit": bool(submit)})
    try:
        return _retry_when_locked(lambda: _save_annotation_once(
            assignment, actor, request_id, digest, version, permille, confidence, flags, comment, submit))
    except IntegrityError:
        # a concurrent retry of the same request won the race: replay what it stored
        event = applied_before(actor, request_id, digest)
        if event is None:
            raise
        return SaveResult(Annotation.objects.get(pk=event.annotation_id), replayed=True)


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
                            comment, submit) -> SaveResult:
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
    annotation.confidence = confidence
    annotation.flags = flags
    annotation.comment = comment
    annotation.version += 1
    if submit:
        annotation.submitted_at = now
        _record_suggestion_provenance(assignment, annotation)
    annotation.save()
    assignment.status = Assignment.Status.SUBMITTED if annotation.submitted_at else Assignment.Status.DRAFT
    assignment.save(update_fields=["status"])
    AuditEvent.objects.create(
        actor=actor, action="submit" if submit else "save_draft", campaign_id=assignment.campaign_id,
        block_id=assignment.block_id, annotation=annotation, request_id=request_id, request_digest=digest,
        before=before, after=_annotation_state(annotation),
    )
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


def record_predictions_shown(campaign: Campaign, viewer: User, model_version: str, block_ids: list[int]) -> None:
    """Audit that a reviewer's map layer showed a model's splits of these blocks."""
    AuditEvent.objects.create(actor=viewer, action="predictions_shown", campaign=campaign,
                              after={"model_version": model_version, "blocks": len(block_ids),
                                     "block_ids": block_ids[:1000]})


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
