"""Pages. Thin: read through annotator.selectors, render."""
import json

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render
from django.views.decorators.csrf import ensure_csrf_cookie

from annotator import selectors
from annotator.api.serializers import classes_payload, feature_collection, imagery_payload
from annotator.models import Annotation
from lcz_model.classes import CLASSES

from .dashboard_views import imagery_scenes


@login_required
def home(request):
    rows = [(c, selectors.blocks_of(c).count(), selectors.scenes_of(c).count(),
             selectors.my_assignments(request.user, c).exists() or selectors.is_admin(request.user),
             selectors.is_reviewer(request.user, c))
            for c in selectors.campaigns_for(request.user)]
    return render(request, "frontend/home.html", {"rows": rows})


@login_required
def campaign_overview(request, pk: int):
    campaign = get_object_or_404(selectors.campaigns_for(request.user), pk=pk)
    if selectors.is_reviewer(request.user, campaign):
        layer = selectors.block_status_layer(campaign)
    else:  # blind labelling: an interpreter sees only their own status, never whether others finished
        layer = selectors.my_block_layer(request.user, campaign, None, None, show_locked=False)
    extent = selectors.campaign_extent(campaign)
    config = {  # the map: the campaign's own imagery (lczBasemap), never external tiles
        "bounds": list(extent) if extent else None,
        "scenes": imagery_scenes(campaign),
        "blocks_attribution": selectors.blocks_attribution(campaign),
    }
    return render(request, "frontend/campaign.html", {
        "campaign": campaign,
        "blocks_geojson": json.loads(feature_collection(layer)),
        "block_count": selectors.blocks_of(campaign).count(),
        "scenes": selectors.scenes_of(campaign),
        "classes": CLASSES,
        "config": config,
    })


@login_required
@ensure_csrf_cookie
def workspace(request, pk: int):
    """The interpreter's full-screen map and split editor. Everything per-user (blocks, my status,
    my own split) is fetched from the API, which answers only with the requester's own data."""
    campaign = get_object_or_404(selectors.campaigns_for(request.user), pk=pk)
    config = {
        "campaign": {
            "id": campaign.pk,
            "name": campaign.name,
            "imagery_licence": campaign.imagery_licence,
            "imagery_attribution": campaign.imagery_attribution,
            "bounds": list(selectors.campaign_extent(campaign) or []) or None,
            "scenes": [layer for layer in [imagery_payload(campaign)] if layer],  # one layer: the mosaic
        },
        "blocks_attribution": selectors.blocks_attribution(campaign),
        "classes": classes_payload(),
        "flags": [{"key": v, "label": label} for v, label in Annotation.Flag.choices],
        "skip_reasons": [{"key": v, "label": label} for v, label in Annotation.SkipReason.choices if v],
        "api": {
            "blocks": f"/api/campaigns/{campaign.pk}/blocks/",
            "block_tiles": f"/tiles/campaigns/{campaign.pk}/blocks/mine/{{z}}/{{x}}/{{y}}.mvt",   # the map's layer
            "progress": f"/api/campaigns/{campaign.pk}/progress/",
            "next": f"/api/campaigns/{campaign.pk}/next/",
            "assignment": "/api/assignments/{id}/",
            "annotation": "/api/assignments/{id}/annotation/",
        },
        "login_url": "/accounts/login/",
    }
    return render(request, "frontend/workspace.html", {"campaign": campaign, "config": config})
