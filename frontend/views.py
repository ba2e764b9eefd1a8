"""Pages. Thin: read through annotator.selectors, render."""
import json

from django.contrib.auth.decorators import login_required
from django.core.serializers import serialize
from django.shortcuts import get_object_or_404, render

from annotator import selectors
from annotator.models import Campaign
from lcz_model.classes import CLASSES


@login_required
def home(request):
    rows = [(c, selectors.blocks_of(c).count(), selectors.scenes_of(c).count()) for c in selectors.campaigns()]
    return render(request, "frontend/home.html", {"rows": rows})


@login_required
def campaign_overview(request, pk: int):
    campaign = get_object_or_404(Campaign, pk=pk)
    blocks = selectors.blocks_of(campaign)
    geojson = serialize("geojson", blocks, geometry_field="geom", fields=("block_key", "area_m2", "status"))
    return render(request, "frontend/campaign.html", {
        "campaign": campaign,
        "blocks_geojson": json.loads(geojson),
        "block_count": blocks.count(),
        "scenes": selectors.scenes_of(campaign),
        "classes": CLASSES,
    })
