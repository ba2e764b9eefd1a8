"""Reads. Views, commands and tasks get data through these functions."""
from __future__ import annotations

from django.contrib.gis.db.models import Union
from django.contrib.gis.geos import GEOSGeometry
from django.db.models import QuerySet

from .models import Campaign, ImageryScene, StreetBlock


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
