"""The coordinator's dashboard and the reviewers' pages: progress, agreement figures and plots, the
agreement map layer, the review queue and the adjudication page.

Reviewers of the campaign and admins only (``selectors.is_reviewer``): anyone else signed in gets
403, an unknown campaign or block 404. Pages redirect an anonymous visitor to the login page; the
data endpoints (PNG plots, GeoJSON) answer 403, as they are fetched by the page, not navigated to.
Reads go through ``annotator.selectors``; the adjudication itself is posted by the page to the REST
API (``POST /api/blocks/{id}/review/`` -> ``annotator.curation.adjudicate``).
"""
from __future__ import annotations

import hashlib

from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, HttpResponseForbidden, HttpResponseNotModified
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.cache import parse_etags
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_safe

from annotator import block_tile_views, prediction_jobs, selectors, tile_stamps
from annotator.api.serializers import feature_collection, imagery_payload, review_block_payload
from annotator.models import Annotation, Campaign, StreetBlock
from lcz_model.classes import CLASSES, KEYS

from . import plots

#: Bump when the figures or plots change shape, so cached ones are not served.
CACHE_VERSION = "dash-2"
CACHE_SECONDS = 3600
STATUS_ORDER = [
    (StreetBlock.Status.OPEN, "Open", "#d0d7de"),
    (StreetBlock.Status.IN_PROGRESS, "In progress", "#8fb8de"),
    (StreetBlock.Status.COMPLETE, "Complete", "#3fb950"),
    (StreetBlock.Status.DISPUTED, "Disputed", "#cf222e"),
    (StreetBlock.Status.ADJUDICATED, "Adjudicated", "#8250df"),
]
QUEUE_PAGE_SIZE = 100


# ------------------------------------------------------------------------------------------------
# access
# ------------------------------------------------------------------------------------------------

def _reviewable_campaign(request, pk: int) -> Campaign:
    campaign = get_object_or_404(selectors.campaigns(), pk=pk)
    if not selectors.is_reviewer(request.user, campaign):
        raise PermissionDenied("Only the campaign's reviewers and admins can see this page.")
    return campaign


def _data_endpoint(view):
    """Fetched by pages (images, GeoJSON): anonymous gets a plain 403, not a login redirect."""
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return HttpResponseForbidden("Log in as a reviewer to see this.\n", content_type="text/plain")
        return view(request, *args, **kwargs)
    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return wrapped


# ------------------------------------------------------------------------------------------------
# figures, cached per campaign state
# ------------------------------------------------------------------------------------------------

def campaign_state(campaign: Campaign) -> str:
    """A short fingerprint of everything the dashboard's figures depend on: the campaign's version
    stamp (annotator.tile_stamps: moved by every write to its blocks, assignments and splits), the
    campaign itself and its threshold and N. No query: at 60,000 splits the aggregate that stood
    here took ~0.12 s per page and per plot."""
    raw = (f"{CACHE_VERSION}|{campaign.pk}|{campaign.created_at.isoformat()}|{campaign.dispute_tv_threshold!r}|"
           f"{campaign.interpreters_per_block}|{tile_stamps.campaign_version(campaign.pk)}")
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def campaign_statistics(campaign: Campaign, state: str) -> dict:
    """The dashboard's per-campaign reads (interpreters' progress over every assignment, block
    statuses, extent, sources, the first disputed block), cached under the campaign's state."""
    key = f"dashboard:stats:{state}"
    stats = cache.get(key)
    if stats is None:
        stats = {"interpreters": selectors.interpreter_progress(campaign),
                 "status_counts": selectors.block_status_counts(campaign),
                 "extent": selectors.campaign_extent(campaign),
                 "attribution": selectors.blocks_attribution(campaign),
                 "first_disputed": _first_disputed(campaign)}
        cache.set(key, stats, CACHE_SECONDS)
    return stats


def agreement_figures(campaign: Campaign, state: str | None = None) -> dict:
    """``selectors.campaign_agreement(campaign)``, cached under the campaign's state."""
    key = f"dashboard:agreement:{state or campaign_state(campaign)}"
    figures = cache.get(key)
    if figures is None:
        figures = selectors.campaign_agreement(campaign)
        cache.set(key, figures, CACHE_SECONDS)
    return figures


def fmt(value, digits: int = 3, *, percent: bool = False) -> str:
    """A figure for the page: fixed decimals, or an em dash where it is undefined (None)."""
    if value is None:
        return "—"
    if percent:
        return f"{100 * value:.1f} %"
    return f"{value:.{digits}f}"


def _summary_rows(figures: dict) -> list[dict]:
    tv = figures["tv"]
    kappa = figures["fleiss_kappa_dominant"]
    disputed = figures["disputed"]
    return [
        {"label": "Krippendorff's alpha (interval), mean over classes", "value": fmt(figures["alpha_interval"]["mean"]),
         "id": "alpha-mean", "help": "per class in the table and the bars; 1 = perfect, 0 = chance"},
        {"label": "Fleiss' kappa, dominant class", "value": fmt(kappa["kappa"]), "id": "fleiss-kappa",
         "help": f"over the {kappa['n_blocks']} blocks with exactly {kappa['ratings_per_block']} ratings"},
        {"label": "Krippendorff's alpha (nominal), dominant class", "value": fmt(figures["alpha_nominal_dominant"]),
         "id": "alpha-nominal", "help": "units = blocks, values = each interpreter's dominant class"},
        {"label": "WUDAPT-weighted dominant-class agreement", "value": fmt(figures["weighted_dominant_agreement"]),
         "id": "weighted-agreement",
         "help": "mean over rater pairs of the WUDAPT class similarity of their dominant classes"},
        {"label": "Same dominant class (all interpreters)",
         "value": fmt(figures["dominant_agreement_rate"], percent=True),
         "id": "dominant-agreement", "help": "share of the compared blocks"},
        {"label": "Mean pairwise TV: mean / median / p90",
         "value": " / ".join(fmt(tv[k]) for k in ("mean", "median", "p90")), "id": "tv",
         "help": "0 = identical splits, 1 = disjoint"},
        {"label": "Disputed by the rules", "value": f"{disputed['count']} ({fmt(disputed['share'], percent=True)})",
         "id": "disputed",
         "help": f"TV above {figures['tv_threshold']:g}: {disputed['by_tv']}; dominant class split: "
                 f"{disputed['by_dominant']} (counts also blocks adjudicated since)"},
    ]


def _alpha_rows(figures: dict) -> list[dict]:
    per_class = figures["alpha_interval"]["per_class"]
    counts = figures.get("consensus_dominant_counts", {})
    return [{"cls": c, "value": fmt(per_class.get(c.key)), "raw": per_class.get(c.key),
             "dominant": counts.get(c.key, 0)} for c in CLASSES]


# ------------------------------------------------------------------------------------------------
# pages
# ------------------------------------------------------------------------------------------------

@login_required
def index(request):
    """The campaigns this person reviews (all, for admins)."""
    rows = [c for c in selectors.campaigns_for(request.user) if selectors.is_reviewer(request.user, c)]
    if not rows and not selectors.is_reviewer(request.user):
        raise PermissionDenied("Only reviewers and admins have a dashboard.")
    return render(request, "frontend/dashboard/index.html", {"campaigns": rows})


def _block_progress(counts: dict) -> dict:
    total = sum(counts.values())
    rows = [{"status": s.value, "label": label, "colour": colour, "n": counts.get(s, 0),
             "share": (100.0 * counts.get(s, 0) / total) if total else 0.0} for s, label, colour in STATUS_ORDER]
    done = sum(counts.get(s, 0) for s in selectors.RELEASED)
    return {"rows": rows, "total": total, "released": done,
            "released_share": (100.0 * done / total) if total else 0.0}


def _interpreter_progress(figures: dict, progress: dict) -> list[dict]:
    stats = {p["name"]: p for p in figures.get("interpreters", [])}
    rows = []
    for name, a in sorted(progress.items(), key=lambda kv: kv[0].lower()):
        assigned = a["assigned"]
        s = stats.get(name, {})
        rows.append({"name": name, "assigned": assigned, "submitted": a["submitted"], "skipped": a["skipped"],
                     "skips_by_reason": s.get("skips_by_reason") or {}, "drafts": a["drafts"], "todo": a["todo"], "last": a["last"],
                     "done_share": (100.0 * a["submitted"] / assigned) if assigned else 0.0,
                     "compared": s.get("n_blocks_compared", 0), "mad": fmt(s.get("mad"), 4),
                     "tv_to_others": fmt(s.get("tv_to_others"))})
    return rows


def imagery_scenes(campaign: Campaign) -> list[dict]:
    """The campaign's imagery for lczBasemap.addScenes (every map page but the workspace's): ONE
    layer (its mosaic over all its scenes) crediting every scene, or none without imagery."""
    layer = imagery_payload(campaign)
    if layer is None:
        return []
    attribution = " · ".join(filter(None, [layer["attribution"], "Licence: " + (layer["licence"] or "not stated")]))
    return [{"id": layer["id"], "name": layer["name"], "tilejson": layer["tilejson"], "tiles": layer["tiles"],
             "attribution": attribution + (" (synthetic imagery)" if layer["synthetic"] else "")}]


def _first_disputed(campaign: Campaign, exclude: int | None = None, after: int | None = None) -> int | None:
    """The next disputed block in queue order after block `after` (wrapping), never `exclude`."""
    ids = selectors.disputed_block_ids(campaign)
    if after in ids:
        i = ids.index(after)
        ids = ids[i + 1:] + ids[:i]
    ids = [b for b in ids if b != exclude]
    return ids[0] if ids else None


@login_required
def campaign_dashboard(request, pk: int):
    campaign = _reviewable_campaign(request, pk)
    state = campaign_state(campaign)
    figures = agreement_figures(campaign, state)
    stats = campaign_statistics(campaign, state)
    has_data = bool(figures.get("n_blocks"))
    progress = _block_progress(stats["status_counts"])
    extent = stats["extent"]
    config = {
        "campaign": {"id": campaign.pk, "name": campaign.name, "bounds": list(extent) if extent else None},
        "threshold": campaign.dispute_tv_threshold,
        "scenes": imagery_scenes(campaign),
        "blocks_attribution": stats["attribution"],
        "layer": block_tile_views.tile_url_template(campaign.pk, "agreement"),   # vector tiles, per view
        "review": reverse("dashboard:review", args=[0]).replace("/0/", "/{id}/"),
    }
    first = stats["first_disputed"]
    return render(request, "frontend/dashboard/campaign.html", {
        "campaign": campaign,
        "figures": figures,
        "has_data": has_data,
        "summary_rows": _summary_rows(figures) if has_data else [],
        "alpha_rows": _alpha_rows(figures) if has_data else [],
        "progress": progress,
        "interpreters": _interpreter_progress(figures, stats["interpreters"]),
        "plots": [{"kind": k, "title": t, "alt": alt, "size": plots.size_px(k, figures),
                   "url": reverse("dashboard:plot", args=[campaign.pk, k]) + f"?v={state}"}
                  for k, (t, alt) in plots.KINDS.items()],
        "config": config,
        "prediction_jobs": _prediction_jobs(campaign),
        "export_jobs": _export_jobs(campaign),
        "first_disputed": first,
        "n_disputed": next(r["n"] for r in progress["rows"] if r["status"] == StreetBlock.Status.DISPUTED),
    })


@require_safe
@_data_endpoint
def plot_png(request, pk: int, kind: str):
    """One dashboard plot as PNG, cached per campaign state; ETag revalidation (304)."""
    if kind not in plots.KINDS:
        raise Http404(f"no plot {kind!r}")
    campaign = _reviewable_campaign(request, pk)
    state = campaign_state(campaign)
    etag = f'"{kind}-{state}"'
    if etag in parse_etags(request.headers.get("If-None-Match", "")):
        response = HttpResponseNotModified()
    else:
        key = f"dashboard:plot:{kind}:{state}"
        png = cache.get(key)
        if png is None:
            png = plots.render(kind, agreement_figures(campaign, state))
            cache.set(key, png, CACHE_SECONDS)
        response = HttpResponse(png, content_type="image/png")
    response["ETag"] = etag
    response["Cache-Control"] = "private, no-cache"
    return response


@require_safe
@_data_endpoint
def agreement_geojson(request, pk: int):
    """The released blocks with their agreement (TV, dominant-class agreement, status) for the
    map layer. Only blocks every interpreter has submitted: never a split, never a name."""
    campaign = _reviewable_campaign(request, pk)
    hidden = selectors.blind_pending_block_ids(request.user, campaign)   # as the agreement tiles
    response = HttpResponse(feature_collection(selectors.agreement_layer(campaign, hidden=hidden)),
                            content_type="application/geo+json")
    response["Cache-Control"] = "private, no-cache"
    return response


@login_required
def review_queue(request, pk: int):
    campaign = _reviewable_campaign(request, pk)
    status = request.GET.get("status", "")
    if status not in {s.value for s in selectors.RELEASED}:
        status = ""
    counts = selectors.block_status_counts(campaign)
    page = Paginator(selectors.review_queue_rows(campaign, status or None),
                     QUEUE_PAGE_SIZE).get_page(request.GET.get("page"))
    page.object_list = list(page.object_list)
    notes = selectors.interpreter_notes_counts(campaign, [b["id"] for b in page.object_list])
    for b in page.object_list:
        b["notes"] = notes.get(b["id"])
    return render(request, "frontend/dashboard/queue.html", {
        "campaign": campaign, "page": page, "status": status,
        "counts": [(s.value, s.label, counts.get(s.value, 0)) for s in selectors.RELEASED],
        "total": sum(counts.get(s.value, 0) for s in selectors.RELEASED),
        "first_disputed": _first_disputed(campaign),
    })


def _pct(permille) -> str:
    return f"{permille / 10:.1f}"


@login_required
@ensure_csrf_cookie
def review_block(request, block_id: int):
    """The adjudication page: the block on the imagery, every interpreter's split side by side
    (unblinded: reviewers only), the consensus, and the editor for the final split."""
    try:
        block = selectors.block_with_campaign(block_id)
    except selectors.NotFound as exc:
        raise Http404(str(exc)) from None
    campaign = block.campaign
    if not selectors.is_reviewer(request.user, campaign):
        raise PermissionDenied("Only the campaign's reviewers and admins can adjudicate.")
    if block.status not in selectors.RELEASED:
        raise Http404("This block is not released for review: not every interpreter has submitted it yet.")
    if not selectors.may_see_block_labels(request.user, block):
        raise Http404("You still have to label this block yourself (blind); another reviewer adjudicates it.")
    assignments = selectors.block_splits(block)
    payload = review_block_payload(block, assignments)
    columns = [{"key": f"a{a.pk}", "label": a.interpreter.username + (" (can't label)" if a.annotation.skip_reason
                                                                      else ""),
                "permille": a.annotation.permille, "assignment": a.pk, "skipped": bool(a.annotation.skip_reason)}
               for a in assignments]
    flag_labels = dict(Annotation.Flag.choices)
    notes = [{"assignment": s["assignment"], "interpreter": s["interpreter"], "confidence": s["confidence"],
              "flags": [flag_labels.get(f, f) for f in s["flags"] or []], "comment": s["comment"],
              "skip": s["skip_label"]}  # a can't-label verdict's reason, "" for a split
             for s in payload["splits"]]
    if block.consensus:
        columns.append({"key": "consensus", "label": "Consensus", "permille": block.consensus, "assignment": None,
                        "skipped": False})
    final = block.final_permille  # the consensus of a complete block, the adjudicated split, or None
    groups = []
    for group, title in (("built", "Built types (LCZ 1–10)"), ("natural", "Land-cover types (LCZ A–G)")):
        members = [c for c in CLASSES if c.group == group]
        rows = [{"cls": c, "cells": [_pct(col["permille"][c.index]) for col in columns],
                 "nonzero": any(col["permille"][c.index] for col in columns),
                 "final": _pct(final[c.index]) if final else None} for c in members]
        totals = [_pct(sum(col["permille"][c.index] for c in members)) for col in columns]
        groups.append({"title": title, "rows": rows, "totals": totals,
                       "final_total": _pct(sum(final[c.index] for c in members)) if final else None})
    bars = [{"label": col["label"], "segments": [
        {"colour": c.colour, "width": v / 10, "title": f"{c.label} {_pct(v)} %"}
        for c, v in zip(CLASSES, col["permille"]) if v]} for col in columns]
    next_id = _first_disputed(campaign, exclude=block.pk, after=block.pk)
    queue_url = reverse("dashboard:review-queue", args=[campaign.pk])
    next_url = reverse("dashboard:review", args=[next_id]) if next_id else queue_url
    config = {
        "block": {"id": block.pk, "key": block.block_key, "status": block.status,
                  "geometry": payload["geometry"]},
        "api": reverse("review-block", args=[block.pk]),
        "classes": [{"index": c.index, "key": c.key, "code": c.code, "name": c.name, "colour": c.colour}
                    for c in CLASSES],
        "keys": list(KEYS),
        "starts": [{"id": "consensus", "label": "consensus", "permille": block.consensus}] if block.consensus else [],
        "scenes": imagery_scenes(campaign),
        "blocks_attribution": selectors.blocks_attribution(campaign),
        "next": next_url,
        "has_next": next_id is not None,
        "queue": queue_url,
    }
    config["starts"] += [{"id": str(col["assignment"]), "label": col["label"], "permille": col["permille"]}
                         for col in columns if col["assignment"] is not None and not col["skipped"]]
    if final:
        config["starts"].append({"id": "final", "label": "current final", "permille": final})
    return render(request, "frontend/dashboard/review.html", {
        "campaign": campaign, "street": block, "columns": columns, "groups": groups, "bars": bars,
        "final": final, "payload": payload, "config": config, "notes": notes, "next_id": next_id, "next_url": next_url,
        "queue_url": queue_url, "tv": fmt(block.agreement_tv),
        "threshold": campaign.dispute_tv_threshold,
    })


@login_required
def lcz_maps(request, pk: int):
    """LCZ maps: the blocks coloured by one class's fraction or by their dominant class, from the
    consensus or a model's predictions (``GET /api/campaigns/{id}/fractions/``), over the imagery."""
    campaign = _reviewable_campaign(request, pk)
    extent = selectors.campaign_extent(campaign)
    sources = [{"id": "consensus", "label": "Consensus (labels)"}] + [
        {"id": v, "label": f"Model {v}"} for v in selectors.model_versions(campaign)]
    config = {
        "campaign": {"id": campaign.pk, "name": campaign.name, "bounds": list(extent) if extent else None},
        "scenes": imagery_scenes(campaign),
        "blocks_attribution": selectors.blocks_attribution(campaign),
        "fractions": reverse("fractions", args=[campaign.pk]),
        "block_tiles": block_tile_views.tile_url_template(campaign.pk, "fractions"),   # what the page draws
        "review": reverse("dashboard:review", args=[0]).replace("/0/", "/{id}/"),
        "classes": [{"index": c.index, "key": c.key, "code": c.code, "label": c.label, "name": c.name,
                     "group": c.group, "colour": c.colour} for c in CLASSES],
        "sources": sources,
    }
    return render(request, "frontend/dashboard/maps.html", {
        "campaign": campaign, "classes": CLASSES, "sources": sources, "config": config})


def _job_rows(jobs, progress) -> list[dict]:
    """Jobs with their progress (`progress(job)`: done/total from what the job stored, never from
    task results) and percent."""
    rows = []
    for job in jobs:
        p = progress(job)
        p["percent"] = round(100 * p["done"] / p["total"]) if p["total"] else 100
        p["created_at"] = job.created_at
        rows.append(p)
    return rows


def _export_jobs(campaign) -> list[dict]:
    """The campaign's latest distributed exports (chunks staged in the job's staging folder)."""
    from annotator import export_jobs

    return _job_rows(selectors.latest_export_jobs(campaign), export_jobs.job_progress)


def _prediction_jobs(campaign) -> list[dict]:
    """The campaign's latest model runs (progress from the stored predictions)."""
    return _job_rows(selectors.latest_prediction_jobs(campaign), prediction_jobs.job_progress)
