"""Imagery tile endpoints: XYZ tiles and TileJSON for one imagery scene.

Images and TileJSON are fetched by map code, not navigated to, so an anonymous request gets a
plain 403 rather than a redirect to the login page.
"""
from __future__ import annotations

import logging

from django.http import Http404, HttpResponse, HttpResponseForbidden, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.cache import parse_etags
from django.utils.html import escape
from django.views.decorators.http import require_safe

from . import tiles
from .models import ImageryScene

logger = logging.getLogger(__name__)

CACHE_CONTROL = "private, max-age=86400"
_SENTINEL = 987654321  # reverse() placeholder for {z}, {x}, {y}


def can_view_scene(user, scene: ImageryScene) -> bool:
    """Who may see a scene's imagery: signed-in, active members of its campaign (and admins):
    imagery licences often restrict who may view it."""
    if not (user.is_authenticated and user.is_active):
        return False
    from annotator import selectors

    return selectors.campaigns_for(user).filter(pk=scene.campaign_id).exists()


def _forbidden() -> HttpResponse:
    return HttpResponseForbidden("Log in to see imagery.\n", content_type="text/plain; charset=utf-8")


def _scene_or_404(queryset, scene_id: int):
    scene = get_object_or_404(queryset, pk=scene_id)
    try:
        sf = tiles.scene_file(scene)
    except tiles.ImageryMissing as exc:
        logger.error("%s", exc)
        raise Http404("imagery file missing") from None
    return scene, sf


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    return etag in {t.removeprefix("W/") for t in parse_etags(header)}


@require_safe
def tile(request, scene_id: int, z: int, x: int, y: int, fmt: str):
    if not request.user.is_authenticated:
        return _forbidden()
    fmt_n = tiles.normalise_format(fmt)
    if fmt_n is None or not tiles.valid_tile(z, x, y):
        raise Http404("no such tile")
    scene, sf = _scene_or_404(ImageryScene.objects.only("id", "campaign_id", "cog_path"), scene_id)
    if not can_view_scene(request.user, scene):
        return _forbidden()
    etag = tiles.tile_etag(scene, sf, z, x, y, fmt_n)
    if _etag_matches(request.headers.get("If-None-Match"), etag):
        response = HttpResponse(status=304)
    else:
        data = tiles.render_tile(scene, z, x, y, fmt_n, sf=sf)
        if data is None:
            response = HttpResponse(status=204)  # no imagery here
        else:
            response = HttpResponse(data, content_type=tiles.FORMATS[fmt_n])
    response["ETag"] = etag
    response["Cache-Control"] = CACHE_CONTROL
    return response


@require_safe
def tilejson(request, scene_id: int):
    """TileJSON 3.0.0 for a scene; `?format=jpeg|png|webp` picks the tile format (default webp)."""
    if not request.user.is_authenticated:
        return _forbidden()
    fmt = tiles.normalise_format(request.GET.get("format", tiles.DEFAULT_FORMAT))
    if fmt is None:
        return HttpResponse(f"format must be one of {', '.join(tiles.FORMATS)}\n", status=400,
                            content_type="text/plain; charset=utf-8")
    scene, sf = _scene_or_404(ImageryScene.objects.all(), scene_id)
    if not can_view_scene(request.user, scene):
        return _forbidden()
    info = tiles.scene_tile_info(scene, sf)
    west, south, east, north = info["bounds"]
    url = request.build_absolute_uri(reverse(
        "tiles:tile", kwargs=dict(scene_id=scene.pk, z=_SENTINEL, x=_SENTINEL + 1, y=_SENTINEL + 2, fmt=fmt)))
    url = url.replace(str(_SENTINEL + 1), "{x}").replace(str(_SENTINEL + 2), "{y}").replace(str(_SENTINEL), "{z}")
    parts = [escape(p) for p in (scene.attribution, scene.licence) if p]
    center_zoom = max(info["minzoom"], min(info["maxzoom"], info["maxzoom"] - 2))
    body = {
        "tilejson": "3.0.0",
        "name": scene.name,
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
        "licence": scene.licence,
        "synthetic": scene.synthetic,
        "crs": scene.crs,
    }
    response = JsonResponse(body)
    response["Cache-Control"] = "private, max-age=300"
    return response
