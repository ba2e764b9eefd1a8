"""Imagery tile endpoints: XYZ tiles and TileJSON of a campaign's imagery as one layer (its mosaic
over all its scenes: what the pages draw), and of one imagery scene.

Images and TileJSON are fetched by map code, not navigated to, so an anonymous request gets a
plain 403 rather than a redirect to the login page.
"""
from __future__ import annotations

import functools
import logging

from django.http import Http404, HttpResponse, HttpResponseForbidden, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.cache import parse_etags
from django.utils.html import escape
from django.views.decorators.http import require_safe

from . import media, tiles
from .models import Campaign, ImageryScene

logger = logging.getLogger(__name__)

CACHE_CONTROL = "private, max-age=86400"
_SENTINEL = 987654321  # reverse() placeholder for {z}, {x}, {y}


def can_view_imagery(user, campaign_id: int) -> bool:
    """Who may see a campaign's imagery: signed-in, active members of the campaign (and admins):
    imagery licences often restrict who may view it."""
    if not (user.is_authenticated and user.is_active):
        return False
    from annotator import selectors

    return selectors.campaigns_for(user).filter(pk=campaign_id).exists()


def can_view_scene(user, scene: ImageryScene) -> bool:
    return can_view_imagery(user, scene.campaign_id)


def _forbidden() -> HttpResponse:
    return HttpResponseForbidden("Log in to see imagery.\n", content_type="text/plain; charset=utf-8")


def _file_or_404(owner) -> tiles.ImageryFile:
    try:
        return tiles.imagery_file(owner)
    except tiles.ImageryMissing as exc:
        logger.error("%s", exc)
        raise Http404("imagery file missing") from None


def _scene_or_404(queryset, scene_id: int):
    scene = get_object_or_404(queryset, pk=scene_id)
    return scene, _file_or_404(scene)


def _campaign_or_404(request, campaign_id: int) -> Campaign | HttpResponse:
    """The campaign whose imagery a member asks for, a 403 for anyone else (before saying whether the
    campaign or its mosaic exists), or 404."""
    if not can_view_imagery(request.user, campaign_id):
        return _forbidden()
    return get_object_or_404(Campaign.objects.only("id", "name", "mosaic_path"), pk=campaign_id)


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    return etag in {t.removeprefix("W/") for t in parse_etags(header)}


def _tile_format(request, z: int, x: int, y: int, fmt: str) -> str | HttpResponse:
    if not request.user.is_authenticated:
        return _forbidden()
    fmt_n = tiles.normalise_format(fmt)
    if fmt_n is None or not tiles.valid_tile(z, x, y):
        raise Http404("no such tile")
    return fmt_n


def _store_unavailable_is_503(view):
    """The object store being down is a passing outage, not a server error: 503 with Retry-After."""
    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except media.MediaUnavailable as exc:
            logger.error("%s", exc)
            response = HttpResponse("The imagery store cannot be reached now; try again shortly.\n", status=503,
                                    content_type="text/plain; charset=utf-8")
            response["Retry-After"] = "30"
            return response
    return wrapped


@require_safe
@_store_unavailable_is_503
def tile(request, scene_id: int, z: int, x: int, y: int, fmt: str):
    fmt_n = _tile_format(request, z, x, y, fmt)
    if isinstance(fmt_n, HttpResponse):
        return fmt_n
    scene, sf = _scene_or_404(ImageryScene.objects.only("id", "campaign_id", "cog_path"), scene_id)
    if not can_view_scene(request.user, scene):
        return _forbidden()
    return _tile_response(request, scene, sf, z, x, y, fmt_n)


@require_safe
@_store_unavailable_is_503
def campaign_tile(request, campaign_id: int, z: int, x: int, y: int, fmt: str):
    """A tile of the campaign's imagery as one layer (its mosaic), for members."""
    fmt_n = _tile_format(request, z, x, y, fmt)
    if isinstance(fmt_n, HttpResponse):
        return fmt_n
    campaign = _campaign_or_404(request, campaign_id)
    if isinstance(campaign, HttpResponse):
        return campaign
    return _tile_response(request, campaign, _file_or_404(campaign), z, x, y, fmt_n)


def _tile_response(request, owner, sf: tiles.ImageryFile, z: int, x: int, y: int, fmt_n: str) -> HttpResponse:
    etag = tiles.tile_etag(owner, sf, z, x, y, fmt_n)
    if _etag_matches(request.headers.get("If-None-Match"), etag):
        response = HttpResponse(status=304)
    else:
        data = tiles.render_tile(owner, z, x, y, fmt_n, sf=sf)
        if data is None:
            response = HttpResponse(status=204)  # no imagery here
        else:
            response = HttpResponse(data, content_type=tiles.FORMATS[fmt_n])
    response["ETag"] = etag
    response["Cache-Control"] = CACHE_CONTROL
    return response


def _tilejson_format(request) -> str | HttpResponse:
    """`?format=jpeg|png|webp` (default webp), or the response that refuses the request."""
    if not request.user.is_authenticated:
        return _forbidden()
    fmt = tiles.normalise_format(request.GET.get("format", tiles.DEFAULT_FORMAT))
    if fmt is None:
        return HttpResponse(f"format must be one of {', '.join(tiles.FORMATS)}\n", status=400,
                            content_type="text/plain; charset=utf-8")
    return fmt


@require_safe
def tilejson(request, scene_id: int):
    """TileJSON 3.0.0 for a scene; `?format=jpeg|png|webp` picks the tile format (default webp)."""
    fmt = _tilejson_format(request)
    if isinstance(fmt, HttpResponse):
        return fmt
    scene, sf = _scene_or_404(ImageryScene.objects.all(), scene_id)
    if not can_view_scene(request.user, scene):
        return _forbidden()
    return _tilejson_response(request, scene, sf, "tiles:tile", {"scene_id": scene.pk}, fmt, name=scene.name,
                              attribution=scene.attribution, licence=scene.licence, synthetic=scene.synthetic,
                              crs=scene.crs)


@require_safe
def campaign_tilejson(request, campaign_id: int):
    """TileJSON 3.0.0 of the campaign's imagery as one layer (its mosaic over all its scenes), crediting
    every scene; `?format=jpeg|png|webp` picks the tile format (default webp)."""
    fmt = _tilejson_format(request)
    if isinstance(fmt, HttpResponse):
        return fmt
    campaign = _campaign_or_404(request, campaign_id)
    if isinstance(campaign, HttpResponse):
        return campaign
    sf = _file_or_404(campaign)
    from annotator import selectors

    layer = selectors.imagery_layer(campaign) or {}
    return _tilejson_response(request, campaign, sf, "tiles:campaign-tile", {"campaign_id": campaign.pk}, fmt,
                              name=campaign.name, attribution=layer.get("attribution", ""),
                              licence=layer.get("licence", ""), synthetic=layer.get("synthetic", False),
                              crs=layer.get("crs", ""), scenes=layer.get("scenes", 0))


def _tilejson_response(request, owner, sf, url_name: str, url_kwargs: dict, fmt: str, *, name: str,
                       attribution: str, licence: str, synthetic: bool, crs: str, **extra) -> JsonResponse:
    info = tiles.tile_info(owner, sf)
    west, south, east, north = info["bounds"]
    url = request.build_absolute_uri(reverse(
        url_name, kwargs=dict(url_kwargs, z=_SENTINEL, x=_SENTINEL + 1, y=_SENTINEL + 2, fmt=fmt)))
    url = url.replace(str(_SENTINEL + 1), "{x}").replace(str(_SENTINEL + 2), "{y}").replace(str(_SENTINEL), "{z}")
    parts = [escape(p) for p in (attribution, licence) if p]
    center_zoom = max(info["minzoom"], min(info["maxzoom"], info["maxzoom"] - 2))
    body = {
        "tilejson": "3.0.0",
        "name": name,
        "scheme": "xyz",
        "tiles": [url],
        "format": fmt,
        "tile_size": tiles.TILE_SIZE,
        "minzoom": info["minzoom"],
        "maxzoom": info["maxzoom"],  # native resolution; tiles render up to max_render_zoom
        "max_render_zoom": tiles.MAX_ZOOM,
        "bounds": [west, south, east, north],
        "center": [(west + east) / 2, (south + north) / 2, center_zoom],
        "attribution": " — ".join(parts),
        "licence": licence,
        "synthetic": synthetic,
        "crs": crs,
        **extra,
    }
    response = JsonResponse(body)
    response["Cache-Control"] = "private, max-age=300"
    return response
