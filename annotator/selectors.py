"""Reads. Views, commands and tasks get data through these functions."""
from __future__ import annotations

import json

from django.contrib.gis.db.models import Extent, Union
from django.contrib.gis.db.models.functions import AsGeoJSON, GeoFunc
from django.contrib.gis.geos import GEOSGeometry, Polygon
from django.db.models import Count, F, QuerySet, Value

from .models import Assignment, AuditEvent, Campaign, ImageryScene, Membership, StreetBlock


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


def my_assignments(user, campaign: Campaign) -> QuerySet[Assignment]:
    return Assignment.objects.filter(campaign=campaign, interpreter=user)


def my_assignment(user, assignment_id: int) -> Assignment:
    """The user's own assignment, or NotFound (never someone else's: blind labelling)."""
    try:
        return Assignment.objects.select_related("block", "campaign").get(pk=assignment_id, interpreter=user)
    except Assignment.DoesNotExist:
        raise NotFound(f"assignment {assignment_id} not found") from None


def next_assignment(user, campaign: Campaign, after_block_id: int | None = None) -> Assignment | None:
    """Resume drafts first, then the next block to do (after `after_block_id` in block order, wrapping)."""
    mine = my_assignments(user, campaign).select_related("block")
    draft = mine.filter(status=Assignment.Status.DRAFT).order_by("block_id").first()
    if draft is not None:
        return draft
    todo = mine.filter(status=Assignment.Status.TODO).order_by("block_id")
    if after_block_id is not None:
        later = todo.filter(block_id__gt=after_block_id).first()
        if later is not None:
            return later
    return todo.first()


def my_progress(user, campaign: Campaign) -> dict:
    counts = dict(my_assignments(user, campaign).values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    assigned = sum(counts.values())
    return {"assigned": assigned, "submitted": counts.get(Assignment.Status.SUBMITTED, 0),
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


def blocks_geojson(user, campaign: Campaign, bbox: tuple[float, float, float, float] | None,
                   zoom: int | None) -> str:
    """A GeoJSON FeatureCollection (string) of the campaign's blocks in the bbox, simplified to the
    zoom, each with the requesting user's own status. No split of anybody is ever in it."""
    qs = blocks_of(campaign)
    if bbox is not None:
        qs = qs.filter(geom__bboverlaps=Polygon.from_bbox(bbox))
    tol = simplify_tolerance_deg(zoom)
    geometry = SimplifyPreserveTopology("geom", Value(tol)) if tol > 0 else F("geom")
    rows = qs.annotate(gj=AsGeoJSON(geometry, precision=6)).values_list("id", "block_key", "area_m2", "status", "gj")
    mine = dict(
        Assignment.objects.filter(campaign=campaign, interpreter=user).values_list("block_id", "status")
    )
    mine_ids = dict(Assignment.objects.filter(campaign=campaign, interpreter=user).values_list("block_id", "id"))
    parts = []
    for pk, key, area, block_status, gj in rows:
        if gj is None:
            continue
        if pk in mine:
            status = mine[pk]
            if status == Assignment.Status.SUBMITTED and block_status in ("complete", "disputed", "adjudicated"):
                status = block_status
            assignment = mine_ids[pk]
        else:
            status, assignment = "unassigned", None
        props = json.dumps({"block_key": key, "area_m2": round(area, 1), "status": status,
                            "assignment": assignment}, separators=(",", ":"))
        parts.append(f'{{"type":"Feature","id":{pk},"geometry":{gj},"properties":{props}}}')
    return '{"type":"FeatureCollection","features":[' + ",".join(parts) + "]}"


def campaign_extent(campaign: Campaign) -> tuple[float, float, float, float] | None:
    return blocks_of(campaign).aggregate(e=Extent("geom"))["e"]
