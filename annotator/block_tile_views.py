"""The campaign's blocks as Mapbox Vector Tiles (annotator.vector_tiles), for the map pages.

/tiles/campaigns/<id>/blocks/<layer>/<z>/<x>/<y>.mvt, layer: mine (any member: my own status),
status, agreement, fractions (?source=consensus|MODEL_VERSION) (reviewers and admins). Fetched by
map code, so anyone else gets a plain 403 (before learning whether the campaign exists). The ETag
is the viewer's stamp of the campaign's tiles (annotator.tile_stamps), revalidated on every use
(`no-cache`: statuses change with every save) and answered 304 without building the tile. A tile
request with a valid tile pass (annotator.tile_pass) reads no session or user row; one without is
given a pass.
"""
from __future__ import annotations

from django.http import HttpResponse, HttpResponseForbidden, HttpResponseNotModified
from django.views.decorators.http import require_safe

from . import selectors, services, tile_pass, tile_stamps, vector_tiles
from .tile_views import _etag_matches

CONTENT_TYPE = "application/vnd.mapbox-vector-tile"
CACHE_CONTROL = "private, no-cache"


def _text(status: int, message: str) -> HttpResponse:
    return HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")


@require_safe
def block_tile(request, campaign_id: int, layer: str, z: int, x: int, y: int):
    # a valid tile pass (annotator.tile_pass) stands for the session and user rows; its version comes
    # in the same cache round trip as the tile stamps; without one, the session decides
    held, stamp = tile_pass.read(request), None
    if held is not None:
        stamp, version = tile_stamps.stamp_and(campaign_id, held.user_id, tile_pass.version_key(held.user_id))
        if version != held.version:         # issued before a logout or an account change
            held = None
    if held is not None:
        user = held.user()
    else:
        user = request.user
        if not (user.is_authenticated and user.is_active):
            return HttpResponseForbidden("Log in to see the blocks.\n", content_type="text/plain; charset=utf-8")
    campaign, reviewer = selectors.campaign_with_roles(user, campaign_id)
    if campaign is None or (layer in vector_tiles.REVIEWER_LAYERS and not reviewer):
        return HttpResponseForbidden("Only the campaign's members (this layer: its reviewers) see its blocks.\n",
                                     content_type="text/plain; charset=utf-8")
    if not vector_tiles.MIN_ZOOM <= z <= vector_tiles.MAX_ZOOM:
        return _text(404, f"block tiles exist for zooms {vector_tiles.MIN_ZOOM} to {vector_tiles.MAX_ZOOM}")
    source = None
    if layer == "fractions":
        source = request.GET.get("source") or "consensus"
        if source != "consensus" and source not in selectors.model_versions(campaign):
            return _text(400, f"source must be consensus or one of the campaign's model versions, not {source!r}")
    try:
        vector_tiles.check_tile(z, x, y)
    except vector_tiles.BadTile as exc:
        return _text(400, str(exc))
    # the viewer's stamp of the campaign's tiles (annotator.tile_stamps): unchanged since the
    # browser's copy -> 304 without building the tile
    if stamp is None:
        stamp = tile_stamps.stamp(campaign.pk, user.pk)
    issue = held is None
    etag = vector_tiles.stamp_etag(stamp, user.pk, layer, source or "", z, x, y)
    if _etag_matches(request.headers.get("If-None-Match"), etag):
        return _finish(HttpResponseNotModified(), etag, request, user, issue)
    data = vector_tiles.block_tile(layer, user, campaign, z, x, y, source)
    if source not in (None, "consensus") and data:
        services.record_predictions_shown(campaign, user, source)   # audit: a model's splits were shown
    if not data:
        return _finish(HttpResponse(status=204), etag, request, user, issue)   # no block here
    return _finish(HttpResponse(data, content_type=CONTENT_TYPE), etag, request, user, issue)


def _finish(response: HttpResponse, etag: str, request, user, issue_pass: bool) -> HttpResponse:
    response["ETag"] = etag
    response["Cache-Control"] = CACHE_CONTROL
    if issue_pass:
        tile_pass.attach(response, request, user)
    return response


def tile_url_template(campaign_id: int, layer: str) -> str:
    """The layer's tile URL with {z}/{x}/{y} placeholders, for the pages' configuration."""
    from django.urls import reverse

    s = 987654321
    url = reverse("tiles:block-tile", kwargs={"campaign_id": campaign_id, "layer": layer, "z": s, "x": s + 1,
                                              "y": s + 2})
    return url.replace(str(s + 1), "{x}").replace(str(s + 2), "{y}").replace(str(s), "{z}")
