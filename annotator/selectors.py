"""Reads. Views, commands and tasks get data through these functions."""
from __future__ import annotations

from collections.abc import Iterator

from django.contrib.gis.db.models import Extent, Union
from django.contrib.gis.db.models.functions import AsGeoJSON, GeoFunc
from django.contrib.gis.geos import GEOSGeometry, Polygon
from django.db.models import Count, F, QuerySet, Value

from .models import (Assignment, AuditEvent, Campaign, ImageryScene, Membership, Prediction, PredictionJob,
                     StreetBlock)


class NotFound(Exception):
    """A named object does not exist; the message says how to create it."""


def campaign_by_name(name: str) -> Campaign:
    try:
        return Campaign.objects.get(name=name)
    except Campaign.DoesNotExist:
        known = ", ".join(Campaign.objects.values_list("name", flat=True)[:20]) or "none yet"
        raise NotFound(
            f"campaign {name!r} does not exist (known: {known}); "
            f"create it with `manage.py create_campaign {name!r} --city CITY`."
        ) from None


def campaigns() -> QuerySet[Campaign]:
    return Campaign.objects.order_by("name")


def scenes_of(campaign: Campaign) -> QuerySet[ImageryScene]:
    return ImageryScene.objects.filter(campaign=campaign).order_by("id")


def imagery_footprint(campaign: Campaign) -> GEOSGeometry | None:
    """Union of the campaign's scene footprints (EPSG:4326), or None without imagery."""
    return scenes_of(campaign).aggregate(u=Union("footprint"))["u"]


def blocks_of(campaign: Campaign) -> QuerySet[StreetBlock]:
    return StreetBlock.objects.filter(campaign=campaign)


def existing_block_keys(campaign: Campaign, keys) -> set[str]:
    return set(blocks_of(campaign).filter(block_key__in=list(keys)).values_list("block_key", flat=True))


# --- people and assignments -----------------------------------------------------------------

def interpreters_of(campaign: Campaign):
    from django.contrib.auth.models import User

    return User.objects.filter(memberships__campaign=campaign, memberships__role=Membership.Role.INTERPRETER,
                               is_active=True).distinct()


def is_interpreter(user, campaign: Campaign) -> bool:
    """An active account that is an interpreter member of the campaign (saves need this)."""
    return bool(user.is_active) and Membership.objects.filter(
        user=user, campaign=campaign, role=Membership.Role.INTERPRETER).exists()


def is_reviewer(user, campaign: Campaign | None = None) -> bool:
    if user.is_superuser or user.groups.filter(name="admin").exists():
        return True
    qs = Membership.objects.filter(user=user, role=Membership.Role.REVIEWER)
    return qs.filter(campaign=campaign).exists() if campaign is not None else qs.exists()


def is_admin(user) -> bool:
    return user.is_superuser or user.groups.filter(name="admin").exists()


def campaigns_for(user) -> QuerySet[Campaign]:
    if is_admin(user):
        return campaigns()
    return Campaign.objects.filter(memberships__user=user).distinct().order_by("name")


def campaign_for(user, campaign_id: int, *, reviewing: bool = False) -> Campaign:
    """A campaign `user` works on (any, for admins), or one they review (`reviewing`); else
    NotFound: others' campaigns do not exist for them."""
    campaign = campaigns_for(user).filter(pk=campaign_id).first()
    if campaign is None or (reviewing and not is_reviewer(user, campaign)):
        raise NotFound("campaign not found")
    return campaign


def campaign_with_roles(user, campaign_id: int) -> tuple[Campaign | None, bool]:
    """`campaign_for` and `is_reviewer` in one plain query (map tiles ask it on every tile, and the
    ORM's compiling of the same query costs more than running it): the campaign if `user` may see
    it (an admin, or a member), else None; and whether they review it. The campaign comes with its
    id and assisted_rounds loaded (what the blindness rules read); other fields load on access."""
    import json

    from django.contrib.auth.models import Group, User
    from django.db import connection

    m, ug, g = Membership._meta.db_table, User.groups.through._meta.db_table, Group._meta.db_table
    sql = (f"SELECT c.assisted_rounds, "
           f"EXISTS (SELECT 1 FROM {m} m WHERE m.campaign_id = c.id AND m.user_id = %s), "
           f"EXISTS (SELECT 1 FROM {m} m WHERE m.campaign_id = c.id AND m.user_id = %s AND m.role = %s), "
           f"EXISTS (SELECT 1 FROM {ug} ug JOIN {g} g ON g.id = ug.group_id "
           f"WHERE ug.user_id = %s AND g.name = 'admin') "
           f"FROM {Campaign._meta.db_table} c WHERE c.id = %s")
    with connection.cursor() as cursor:
        cursor.execute(sql, [user.pk, user.pk, Membership.Role.REVIEWER, user.pk, campaign_id])
        row = cursor.fetchone()
    if row is None:
        return None, False
    rounds, member, reviewer, admin_group = row
    admin = bool(user.is_superuser or admin_group)
    if not (admin or member):
        return None, False
    rounds = json.loads(rounds) if isinstance(rounds, str) else rounds
    return Campaign.from_db(connection.alias, ["id", "assisted_rounds"], [campaign_id, rounds]), bool(admin or reviewer)


def live_assignments(campaign: Campaign, round: int | None = None) -> QuerySet[Assignment]:
    """Assignments that count (not revoked), in one round or all."""
    qs = Assignment.objects.filter(campaign=campaign).exclude(status=Assignment.Status.REVOKED)
    return qs if round is None else qs.filter(round=round)


def round_holders(campaign: Campaign, round: int) -> tuple[dict[int, set[int]], dict[int, int]]:
    """Per block of `round`: everyone ever assigned it (revoked too: never given it again) and how
    many assignments still count (not revoked)."""
    taken: dict[int, set[int]] = {}
    live: dict[int, int] = {}
    for block_id, user_id, status in Assignment.objects.filter(campaign=campaign, round=round).values_list(
            "block_id", "interpreter_id", "status"):
        taken.setdefault(block_id, set()).add(user_id)
        if status != Assignment.Status.REVOKED:
            live[block_id] = live.get(block_id, 0) + 1
    return taken, live


# --- blindness: the one home of "who may see a block's labels or the model's split" ----------

def open_blind_assignments(campaign: Campaign) -> QuerySet[Assignment]:
    """Unsubmitted assignments of blind rounds (every round the campaign does not mark assisted)."""
    return (Assignment.objects.filter(campaign=campaign, status__in=Assignment.OPEN_STATUSES)
            .exclude(round__in=list(campaign.assisted_rounds or [])))


def blind_pending_block_ids(user, campaign: Campaign) -> set[int]:
    """Blocks `user` still has to label blind: nothing about them (the model's split, other
    interpreters' splits, a consensus) may be shown to this user, whatever their other roles."""
    return set(blind_pending_blocks(user, campaign))


def blind_pending_blocks(user, campaign: Campaign) -> QuerySet:
    """The same blocks as `blind_pending_block_ids`, as a lazy query of block ids (the vector tiles
    embed it as a subquery, so a tile costs no extra round trip)."""
    return open_blind_assignments(campaign).filter(interpreter=user).values_list("block_id", flat=True)


def may_see_block_labels(user, block: StreetBlock) -> bool:
    return not open_blind_assignments(block.campaign).filter(interpreter=user, block=block).exists()


def suggestion_for(assignment: Assignment) -> Prediction | None:
    """The model's split for an assisted round's assignment; None in blind rounds, always, and None
    while the interpreter still holds an open blind assignment of the same block."""
    campaign = assignment.campaign
    if assignment.round not in (campaign.assisted_rounds or []) or not campaign.active_model_version:
        return None
    if open_blind_assignments(campaign).filter(interpreter_id=assignment.interpreter_id,
                                               block_id=assignment.block_id).exists():
        return None
    return Prediction.objects.filter(block_id=assignment.block_id,
                                     model_version=campaign.active_model_version).first()


def my_assignments(user, campaign: Campaign) -> QuerySet[Assignment]:
    return Assignment.objects.filter(campaign=campaign, interpreter=user)


def my_assignment(user, assignment_id: int) -> Assignment:
    """The user's own assignment, or NotFound (never someone else's: blind labelling)."""
    try:
        return Assignment.objects.select_related("block", "campaign").get(pk=assignment_id, interpreter=user)
    except Assignment.DoesNotExist:
        raise NotFound(f"assignment {assignment_id} not found") from None


def next_assignment(user, campaign: Campaign, after_block_id: int | None = None) -> Assignment | None:
    """My next open block (draft or to do, drafts in their place): the queue's order is priority
    (active-learning score, highest first), then block order. From `after_block_id` (the block just
    left, never handed back) it goes forward, wrapping round at the end, so blocks skipped come back
    only after the rest."""
    from django.db.models import Q

    candidates = (my_assignments(user, campaign).select_related("block")
                  .filter(status__in=Assignment.OPEN_STATUSES).order_by("-priority", "block_id"))
    if after_block_id is None:
        return candidates.first()
    current = (my_assignments(user, campaign).filter(block_id=after_block_id)
               .values_list("priority", flat=True).first() or 0.0)
    candidates = candidates.exclude(block_id=after_block_id)
    later = candidates.filter(Q(priority__lt=current) | Q(priority=current, block_id__gt=after_block_id))
    return later.first() or candidates.first()


def my_progress(user, campaign: Campaign) -> dict:
    """My assignments by status; `submitted` counts can't-label verdicts as done, `skipped` says how many."""
    live = my_assignments(user, campaign).exclude(status=Assignment.Status.REVOKED)
    counts = dict(live.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    assigned = sum(counts.values())
    skipped = live.filter(status=Assignment.Status.SUBMITTED).exclude(annotation__skip_reason="").count()
    return {"assigned": assigned, "submitted": counts.get(Assignment.Status.SUBMITTED, 0), "skipped": skipped,
            "draft": counts.get(Assignment.Status.DRAFT, 0), "todo": counts.get(Assignment.Status.TODO, 0)}


def audit_history(block: StreetBlock) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(block=block).select_related("actor").order_by("at", "id")


# --- map layers -----------------------------------------------------------------------------

class SimplifyPreserveTopology(GeoFunc):
    """ST_SimplifyPreserveTopology (PostGIS) / SimplifyPreserveTopology (SpatiaLite)."""

    arity = 2
    geom_param_pos = (0,)

    @property
    def output_field(self):
        return self.source_expressions[0].output_field


def simplify_tolerance_deg(zoom: int | None) -> float:
    """About a third of a screen pixel at this Web Mercator zoom (0 = no simplification)."""
    if zoom is None or zoom >= 18:
        return 0.0
    return 360.0 / (256 * 2 ** int(zoom)) / 3.0


# A map layer is an iterable of features (id, geometry as GeoJSON text made by the database,
# properties); annotator.api.serializers.feature_collection writes it as a FeatureCollection. What
# a layer's properties carry is decided here, with the blindness rules above.
Feature = tuple[int, str | None, dict]


def with_geojson(qs: QuerySet, *, zoom: int | None = None, field: str = "geom") -> QuerySet:
    """`qs` annotated with `gj`: the geometry as GeoJSON text from the database (6 decimals, about
    0.1 m), simplified to the zoom (none without one)."""
    tol = simplify_tolerance_deg(zoom)
    geometry = SimplifyPreserveTopology(field, Value(tol)) if tol > 0 else F(field)
    return qs.annotate(gj=AsGeoJSON(geometry, precision=6))


def _in_bbox(qs: QuerySet, bbox, field: str = "geom") -> QuerySet:
    return qs if bbox is None else qs.filter(**{f"{field}__bboverlaps": Polygon.from_bbox(bbox)})


def my_block_layer(user, campaign: Campaign, bbox: tuple[float, float, float, float] | None,
                   zoom: int | None, *, show_locked: bool = True) -> Iterator[Feature]:
    """The campaign's blocks in the bbox, simplified to the zoom, each with the requesting user's
    own status and assignment: no split of anybody, and nothing of other interpreters' work.
    show_locked: a block I submitted that is now complete/disputed/adjudicated shows that status
    (the workspace locks it); off, only my own assignment's status."""
    rows = with_geojson(_in_bbox(blocks_of(campaign), bbox), zoom=zoom).values_list(
        "id", "block_key", "area_m2", "status", "edge", "gj")
    # my assignment per block (the latest round's when there are several)
    mine = {b: (aid, "skipped" if st == Assignment.Status.SUBMITTED and skip else st)  # skipped: my can't-label
            for b, aid, st, skip in Assignment.objects.filter(campaign=campaign, interpreter=user)
            .order_by("round").values_list("block_id", "id", "status", "annotation__skip_reason")}
    for pk, key, area, block_status, edge, gj in rows:
        if pk in mine:
            assignment, status = mine[pk]
            if show_locked and status in (Assignment.Status.SUBMITTED, "skipped") and block_status in RELEASED:
                status = block_status
        else:
            status, assignment = "unassigned", None
        yield pk, gj, {"block_key": key, "area_m2": round(area, 1), "status": status, "assignment": assignment,
                       "edge": edge}


def block_status_layer(campaign: Campaign, bbox=None) -> Iterator[Feature]:
    """Every block (in the bbox) with its overall status (reviewers and admins: it shows others' progress)."""
    rows = with_geojson(_in_bbox(blocks_of(campaign), bbox)).values_list("id", "block_key", "area_m2", "status", "edge", "gj")
    for pk, key, area, status, edge, gj in rows:
        yield pk, gj, {"block_key": key, "area_m2": round(area, 1), "status": status, "edge": edge}


def campaign_extent(campaign: Campaign) -> tuple[float, float, float, float] | None:
    return blocks_of(campaign).aggregate(e=Extent("geom"))["e"]


# --- review (reviewers only; splits are unblinded once a block is complete) ------------------

RELEASED = (StreetBlock.Status.COMPLETE, StreetBlock.Status.DISPUTED, StreetBlock.Status.ADJUDICATED)


def review_queue(campaign: Campaign) -> QuerySet[StreetBlock]:
    """Released blocks for review: disputed first (worst agreement first), then the rest."""
    from django.db.models import Case, IntegerField, When

    order = Case(When(status=StreetBlock.Status.DISPUTED, then=0),
                 When(status=StreetBlock.Status.COMPLETE, then=1), default=2, output_field=IntegerField())
    return (blocks_of(campaign).filter(status__in=RELEASED)
            .annotate(o=order).order_by("o", F("agreement_tv").desc(nulls_last=True), "id"))


def reviewable_block(user, block_id: int) -> StreetBlock:
    """A released block `user` may review (a reviewer of its campaign who does not still label it
    blind), else NotFound: one answer for every reason, so nothing is learned about the block."""
    block = StreetBlock.objects.select_related("campaign").filter(pk=block_id, status__in=RELEASED).first()
    if block is None or not is_reviewer(user, block.campaign) or not may_see_block_labels(user, block):
        raise NotFound(f"block {block_id} not found or not released for review")
    return block


def review_queue_rows(campaign: Campaign, status: str | None = None):
    """The review queue as rows (id, block_key, status, agreement_tv, dominant_agrees, area_m2, skipped:
    how many of its submitted verdicts are can't-label), of one released status or all."""
    from django.db.models import Q

    qs = review_queue(campaign)
    if status is not None:
        qs = qs.filter(status=status)
    skipped = Count("assignments", filter=Q(assignments__status=Assignment.Status.SUBMITTED)
                    & ~Q(assignments__annotation__skip_reason=""))
    return qs.annotate(skipped=skipped).values("id", "block_key", "status", "agreement_tv", "dominant_agrees",
                                               "area_m2", "skipped")


def disputed_block_ids(campaign: Campaign) -> list[int]:
    """The disputed blocks, in review-queue order."""
    return list(review_queue(campaign).filter(status=StreetBlock.Status.DISPUTED).values_list("id", flat=True))


def block_with_campaign(block_id: int) -> StreetBlock:
    """Any block by id (its campaign joined), or NotFound; the caller checks who may see it."""
    try:
        return StreetBlock.objects.select_related("campaign").get(pk=block_id)
    except StreetBlock.DoesNotExist:
        raise NotFound(f"block {block_id} not found") from None


def agreement_layer(campaign: Campaign, *, hidden=(), bbox=None) -> Iterator[Feature]:
    """The released blocks with their agreement (TV, dominant-class agreement, status) for the
    reviewers' map: never a split, never a name. `hidden`: block ids left out (those the viewer
    still has to label blind: a TV is made of the others' splits)."""
    rows = with_geojson(_in_bbox(blocks_of(campaign), bbox).filter(status__in=RELEASED)
                        .exclude(pk__in=list(hidden))).values_list(
        "id", "block_key", "status", "agreement_tv", "dominant_agrees", "gj")
    for pk, key, status, tv, agrees, gj in rows:
        yield pk, gj, {"block_key": key, "status": status, "tv": None if tv is None else round(tv, 4),
                       "dominant_agrees": agrees}


def block_splits(block: StreetBlock) -> list[Assignment]:
    """Every submitted split of a released block, for reviewers."""
    return list(Assignment.objects.filter(block=block, status=Assignment.Status.SUBMITTED)
                .select_related("annotation", "interpreter").order_by("interpreter__username"))


# --- progress (the coordinator's dashboard) ---------------------------------------------------

def block_status_counts(campaign: Campaign) -> dict[str, int]:
    """Blocks per status (statuses with no block left out)."""
    return dict(blocks_of(campaign).order_by().values_list("status").annotate(n=Count("id")))


def interpreter_progress(campaign: Campaign) -> dict[str, dict]:
    """Per interpreter (username): assigned, submitted (can't-label verdicts included), skipped (those),
    drafts, todo and the last submission, over
    all rounds. Every current interpreter is in it (with zeros), and so is anyone who held an
    assignment of the campaign."""
    from django.contrib.auth.models import User
    from django.db.models import Max, Q

    S = Assignment.Status
    agg = {r.pop("interpreter_id"): r for r in Assignment.objects.filter(campaign=campaign).order_by()
           .values("interpreter_id").annotate(
        assigned=Count("id"), submitted=Count("id", filter=Q(status=S.SUBMITTED)),
        skipped=Count("id", filter=Q(status=S.SUBMITTED) & ~Q(annotation__skip_reason="")),
        drafts=Count("id", filter=Q(status=S.DRAFT)), todo=Count("id", filter=Q(status=S.TODO)),
        last=Max("annotation__submitted_at"))}
    people = dict(interpreters_of(campaign).values_list("pk", "username"))
    people.update(User.objects.filter(pk__in=agg).values_list("pk", "username"))
    zero = {"assigned": 0, "submitted": 0, "skipped": 0, "drafts": 0, "todo": 0, "last": None}
    return {name: agg.get(pk, zero) for pk, name in people.items()}


def latest_prediction_jobs(campaign: Campaign, n: int = 5) -> QuerySet[PredictionJob]:
    return PredictionJob.objects.filter(campaign=campaign).order_by("-created_at")[:n]


def latest_export_jobs(campaign: Campaign, n: int = 5):
    """The campaign's latest distributed exports (annotator/export_jobs.py), newest first."""
    from .models import ExportJob

    return ExportJob.objects.filter(campaign=campaign).order_by("-created_at")[:n]


# --- agreement --------------------------------------------------------------------------------

def submitted_splits_table(campaign: Campaign, round: int = 1):
    """One row per submitted verdict: block_id, interpreter_id, interpreter, lcz_* per-mille, submitted_at,
    skip_reason ("" for a split; a can't-label verdict's per-mille are all 0)."""
    import pandas as pd

    from lcz_model.classes import KEYS

    rows = list(Assignment.objects.filter(campaign=campaign, round=round, status=Assignment.Status.SUBMITTED)
                .values_list("block_id", "interpreter_id", "interpreter__username", "annotation__permille",
                             "annotation__submitted_at", "annotation__skip_reason"))
    df = pd.DataFrame([(b, i, u, t, k) for b, i, u, _, t, k in rows],
                      columns=["block_id", "interpreter_id", "interpreter", "submitted_at", "skip_reason"])
    perm = pd.DataFrame([p for *_, p, _, _ in rows] or None, columns=list(KEYS))
    return pd.concat([df, perm], axis=1)


def campaign_agreement(campaign: Campaign, round: int = 1, *, complete_only: bool = True,
                       include_blocks: bool = False, pseudonyms: dict[int, str] | None = None) -> dict:
    """The campaign's agreement figures (annotator.agreement.campaign_agreement) over its blocks
    whose interpreters have all submitted (complete, disputed or adjudicated). Interpreters are
    named by username, or by `pseudonyms` (user id -> name) for anything published. Can't-label
    verdicts are passed as `skipped` (counted per interpreter and reason, their own nominal category)."""
    from . import agreement

    stored = _stored_verdicts(campaign, round) if complete_only else None
    if stored is not None:  # the released blocks' verdicts as stored at curation: one small row per block
        from django.contrib.auth.models import User

        arrays = stored
        if not len(arrays.block_ids):
            return {"n_blocks": 0, "n_raters": 0, "n_ratings": 0,
                    "note": "no block has all its interpreters' splits (e.g. labels imported from a package)"}
        names = dict(pseudonyms) if pseudonyms is not None else dict(
            User.objects.filter(pk__in=[int(i) for i in arrays.rater_ids]).values_list("pk", "username"))
        return _agreement_result(campaign, arrays, names, include_blocks)
    df = submitted_splits_table(campaign, round)
    if complete_only:
        released = set(blocks_of(campaign).filter(status__in=RELEASED).values_list("id", flat=True))
        df = df[df["block_id"].isin(released)]
    if df.empty:
        return {"n_blocks": 0, "n_raters": 0, "n_ratings": 0,
                "note": "no block has all its interpreters' splits (e.g. labels imported from a package)"}
    names = dict(pseudonyms) if pseudonyms is not None else dict(zip(df["interpreter_id"], df["interpreter"]))
    arrays = agreement.to_arrays(df, skip="skip_reason")
    return _agreement_result(campaign, arrays, names, include_blocks)


def _stored_verdicts(campaign: Campaign, round: int):
    """The released blocks' verdicts of `round` as stored at curation (annotator.verdict_records), as
    agreement arrays; None when some released block has none stored for that round (then the splits
    are read instead)."""
    from . import verdict_records

    rows = list(blocks_of(campaign).filter(status__in=RELEASED).order_by("id")
                .values_list("id", "verdicts", "verdicts_round"))
    if any(blob is None or r != round for _, blob, r in rows):
        return None
    return verdict_records.to_arrays([i for i, _, _ in rows], [blob for _, blob, _ in rows])


def _agreement_result(campaign: Campaign, arrays, names: dict, include_blocks: bool) -> dict:
    from . import agreement

    result = agreement.campaign_agreement(
        arrays.splits, arrays.present, arrays.submitted_at, tv_threshold=campaign.dispute_tv_threshold,
        rater_names=[names[i] for i in arrays.rater_ids],
        fleiss_ratings_per_block=campaign.interpreters_per_block, include_blocks=include_blocks,
        skipped=arrays.skipped)
    if include_blocks:
        result["block_ids"] = [int(b) for b in arrays.block_ids]
    return result


# --- LCZ fraction maps (reviewers and admins: predictions must never reach blind interpreters) ----

def fraction_rows(campaign: Campaign, source: str, bbox=None, *, hidden=()):
    """(block ids, block keys, per-mille (N,17), geometry GeoJSON strings, block statuses) of the
    campaign's blocks by `source`: "consensus" (the final label, else the consensus, of released
    blocks: a disputed block's consensus is no settled label, its status says so) or a model_version.
    `hidden`: block ids left out (those the viewer still has to label blind)."""
    qs = _in_bbox(blocks_of(campaign).exclude(pk__in=list(hidden)), bbox)
    if source == "consensus":
        rows = with_geojson(qs.filter(status__in=RELEASED)).values_list(
            "id", "block_key", "final_permille", "consensus", "gj", "status")
        return [(i, k, f if f is not None else c, g, s) for i, k, f, c, g, s in rows if (f or c) is not None]
    return list(with_geojson(Prediction.objects.filter(campaign=campaign, model_version=source, block__in=qs),
                             field="block__geom").values_list("block_id", "block__block_key", "permille", "gj",
                                                              "block__status"))


def fraction_layer(rows) -> Iterator[Feature]:
    """Features of `fraction_rows`: the block key, its status (a disputed block is not settled: maps
    draw it as disputed, never as a class), the dominant class and the 17 per-mille shares."""
    from lcz_model.classes import KEYS

    for pk, key, permille, gj, status in rows:
        dominant = max(range(len(permille)), key=permille.__getitem__)
        yield pk, gj, {"block_key": key, "status": status, "dominant": KEYS[dominant], **dict(zip(KEYS, permille))}


def model_versions(campaign: Campaign) -> list[str]:
    return list(Prediction.objects.filter(campaign=campaign).order_by("model_version")
                .values_list("model_version", flat=True).distinct())


# --- blocks: re-imports, assignment, prediction -------------------------------------------------

def block_geometries_in(campaign: Campaign,
                        bounds: tuple[float, float, float, float]) -> list[tuple[int, GEOSGeometry]]:
    """(id, geometry) of the campaign's blocks whose bounding box overlaps `bounds` (EPSG:4326)."""
    return list(_in_bbox(blocks_of(campaign), bounds).values_list("id", "geom"))


def annotated_block_ids(campaign: Campaign, block_ids) -> set[int]:
    """Those of `block_ids` with an annotation (a draft or a submitted split) in any round."""
    from .models import Annotation

    return set(Annotation.objects.filter(assignment__campaign=campaign, assignment__block_id__in=list(block_ids))
               .values_list("assignment__block_id", flat=True))


def assignable_blocks(campaign: Campaign, *,
                      include_edge: bool = False) -> tuple[QuerySet[StreetBlock], dict[str, int]]:
    """The blocks assignment may give out, and how many were left out and why: edge blocks (cut by
    the boundary) unless `include_edge`; blocks no scene holds, once the campaign has imagery
    (without any imagery yet, blocks wait for it: import_imagery links them)."""
    qs = blocks_of(campaign)
    skipped = {"edge": 0, "outside_imagery": 0}
    if not include_edge:
        skipped["edge"] = qs.filter(edge=True).count()
        qs = qs.filter(edge=False)
    if scenes_of(campaign).exists():
        skipped["outside_imagery"] = qs.filter(scene=None).count()
        qs = qs.exclude(scene=None)
    return qs, skipped


def prediction_gap(campaign: Campaign, model_version: str) -> dict[str, int]:
    """Blocks, blocks with imagery, and blocks with imagery `model_version` has not predicted yet."""
    blocks = blocks_of(campaign)
    with_imagery = blocks.exclude(scene=None)
    done = Prediction.objects.filter(campaign=campaign, model_version=model_version).values("block_id")
    return {"blocks": blocks.count(), "with_imagery": with_imagery.count(),
            "to_predict": with_imagery.exclude(pk__in=done).count()}


# --- the campaign's imagery as one layer ------------------------------------------------------

def imagery_layer(campaign: Campaign) -> dict | None:
    """The campaign's imagery as the pages draw it: ONE layer (its mosaic over all its scenes) that
    credits every scene: their attributions and their licences, each once, in import order (the
    campaign's own where a scene names none); None without imagery."""
    scenes = list(scenes_of(campaign).values_list("attribution", "licence", "synthetic", "crs"))
    if not scenes:
        return None

    def joined(values, fallback: str) -> str:
        return "; ".join(dict.fromkeys(v for v in (value or fallback for value in values) if v))

    return {"name": campaign.name, "scenes": len(scenes), "crs": scenes[0][3],
            "attribution": joined((s[0] for s in scenes), campaign.imagery_attribution),
            "licence": joined((s[1] for s in scenes), campaign.imagery_licence),
            "synthetic": any(s[2] for s in scenes)}


def imagery_raster_path(campaign: Campaign):
    """The raster chips are cut from: the campaign's mosaic (one VRT over all its scenes, so a block
    over two files gets pixels from both), as an absolute path; None when it has none (imagery
    imported before mosaics: re-run `import_imagery` on any of its files to build it)."""
    from pathlib import Path

    from django.conf import settings

    if not campaign.mosaic_path:
        return None
    from . import media

    if media.is_remote():  # object storage: a /vsis3/ path GDAL reads by byte ranges (annotator/media.py)
        return Path(media.gdal_path(campaign.mosaic_path)) if media.exists(campaign.mosaic_path) else None
    path = Path(settings.MEDIA_ROOT) / campaign.mosaic_path
    return path if path.is_file() else None


def block_outlines(campaign: Campaign) -> list[tuple]:
    """(shapely polygon in EPSG:4326, edge, has a scene) of each block, for pictures of an import."""
    import shapely

    return [(shapely.from_wkb(bytes(g.wkb)), edge, scene is not None)
            for g, edge, scene in blocks_of(campaign).order_by("id").values_list("geom", "edge", "scene_id")]


# --- the interpreters' notes for reviewers (released blocks only) -------------------------------

def interpreter_notes_counts(campaign: Campaign, block_ids) -> dict[int, dict[str, int]]:
    """{block id: {"comments": n, "flags": n, "skips": n}} of `block_ids` (released blocks of the review
    queue): how many of their submitted verdicts carry a comment, how many flags they carry in all, and
    how many are can't-label verdicts (skips). Blocks without any are left out."""
    from .models import Annotation

    out: dict[int, dict[str, int]] = {}
    rows = (Annotation.objects.filter(assignment__campaign=campaign, assignment__block_id__in=list(block_ids),
                                      assignment__block__status__in=RELEASED,
                                      assignment__status=Assignment.Status.SUBMITTED)
            .values_list("assignment__block_id", "comment", "flags", "skip_reason"))
    for block_id, comment, flags, skip in rows:
        n_comment, n_flags, n_skip = int(bool((comment or "").strip())), len(flags or []), int(bool(skip))
        if n_comment or n_flags or n_skip:
            counts = out.setdefault(block_id, {"comments": 0, "flags": 0, "skips": 0})
            counts["comments"] += n_comment
            counts["flags"] += n_flags
            counts["skips"] += n_skip
    return out


def blocks_attribution(campaign: Campaign) -> str:
    """Where the campaign's block outlines come from, for the maps' attribution line: each recorded
    geometry source with its licence, once ("" when no block records one)."""
    sources = (blocks_of(campaign).exclude(source_name="").values_list("source_name", "licence")
               .distinct().order_by("source_name", "licence"))
    return "; ".join(f"{name} ({licence})" if licence else name for name, licence in sources)


# --- the guidelines panel's examples (annotator.guidelines) -----------------------------------

EXAMPLE_STATUSES = (StreetBlock.Status.COMPLETE, StreetBlock.Status.ADJUDICATED)  # settled labels only


def _pure_q(class_index: int, threshold: int):
    """Blocks whose label (the final split, else the consensus) gives class `class_index` at least
    `threshold` per-mille."""
    from django.db.models import Q

    return (Q(**{f"final_permille__{class_index}__gte": threshold})
            | Q(final_permille__isnull=True, **{f"consensus__{class_index}__gte": threshold}))


def pure_example_blocks(user, campaign: Campaign, *, per_class: int = 4,
                        threshold: int = 900) -> dict[int, list[dict]]:
    """{class index: [{id, block_key, share, agreement_tv}, ...]}: per class, up to `per_class` of the
    campaign's complete or adjudicated blocks whose label gives that class >= `threshold` per-mille,
    best agreement first (lowest mean pairwise TV; none last), never one `user` still has to label
    blind. Classes without any are left out."""
    hidden = blind_pending_block_ids(user, campaign)
    base = blocks_of(campaign).filter(status__in=EXAMPLE_STATUSES).exclude(pk__in=list(hidden))
    out: dict[int, list[dict]] = {}
    from lcz_model.classes import N_CLASSES

    for i in range(N_CLASSES):
        rows = (base.filter(_pure_q(i, threshold)).order_by(F("agreement_tv").asc(nulls_last=True), "id")
                .values_list("id", "block_key", "final_permille", "consensus", "agreement_tv")[:per_class])
        found = [{"id": pk, "block_key": key, "share": int((final or consensus)[i]), "agreement_tv": tv}
                 for pk, key, final, consensus, tv in rows]
        if found:
            out[i] = found
    return out


def example_block(user, campaign_id: int, block_id: int, *, threshold: int = 900) -> StreetBlock:
    """A block the guidelines panel may show `user` as an example: of a campaign they work on (any,
    for admins), complete or adjudicated, pure (one class >= `threshold` per-mille), and not one they
    still label blind; else NotFound (one answer for every reason)."""
    from django.db.models import Q

    from lcz_model.classes import N_CLASSES

    campaign = campaigns_for(user).filter(pk=campaign_id).first() if user.is_active else None
    if campaign is not None:
        pure = Q()
        for i in range(N_CLASSES):
            pure |= _pure_q(i, threshold)
        block = (blocks_of(campaign).filter(pk=block_id, status__in=EXAMPLE_STATUSES).filter(pure)
                 .select_related("campaign").first())
        if block is not None and may_see_block_labels(user, block):
            return block
    raise NotFound(f"example {block_id} not found")
