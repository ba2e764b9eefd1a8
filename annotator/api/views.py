"""REST API: thin views over selectors (reads) and services (writes).

Blind labelling: an interpreter only ever gets their own assignments and splits; anything else
answers 404 as if it did not exist.
"""
from __future__ import annotations

import math
import re

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from annotator import selectors, services

from .permissions import IsAdminRole, IsReviewerRole
from .serializers import (
    AdjudicateSerializer,
    AnnotationSerializer,
    AssignmentSerializer,
    CampaignSerializer,
    LCZClassSerializer,
    ProgressSerializer,
    ReviewBlockSerializer,
    SaveAnnotationSerializer,
    classes_payload,
    feature_collection,
    review_block_payload,
)
from .serializers import (  # response shapes for the schema
    AuditEntrySerializer,
    BlocksFeatureCollectionSerializer,
    ErrorSerializer,
    FractionsFeatureCollectionSerializer,
    RequestIdReusedSerializer,
    ReviewQueueRowSerializer,
    SavedAnnotationSerializer,
    StaleVersionSerializer,
    ValidationErrorSerializer,
)

# The 4xx answers, for the schema: DRF answers {"detail": "..."} (403 also when not signed in:
# session authentication sends no WWW-Authenticate, so never a 401), validation {field: [...]}.
_ERROR_RESPONSES = {
    400: OpenApiResponse(ValidationErrorSerializer, description="Invalid parameters or body, by field."),
    403: OpenApiResponse(ErrorSerializer, description="Not signed in, no CSRF token, or not allowed."),
    404: OpenApiResponse(ErrorSerializer, description="Not found, or not yours to see."),
    409: OpenApiResponse(StaleVersionSerializer, description="Stale version: saved elsewhere since read."),
    422: OpenApiResponse(RequestIdReusedSerializer, description="request_id already used with another body."),
}


MAX_ID = 2**63 - 1  # ids are 64-bit (bigint) in the database
_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
BBOX_SCHEMA = {"type": "string", "pattern": f"^{_NUMBER}(?:,{_NUMBER}){{3}}$"}
BBOX_DESCRIPTION = ("minlon,minlat,maxlon,maxlat in degrees (EPSG:4326): finite, longitudes -180..180, "
                    "latitudes -90..90, min <= max; anything else is a 400")


def errors(*codes: int) -> dict:
    """The documented error responses with these status codes."""
    return {code: _ERROR_RESPONSES[code] for code in codes}


def _assignment_payload(request, assignment) -> dict:
    """My assignment with the model's split where the round shows one; showing it is audited."""
    suggestion = selectors.suggestion_for(assignment)
    if suggestion is not None:
        services.record_suggestion_shown(assignment, request.user, suggestion.model_version)
    return AssignmentSerializer(assignment, context={"suggestion": suggestion}).data


class ClassesView(APIView):
    @extend_schema(responses={200: LCZClassSerializer(many=True), **errors(403)},
                   summary="The 17 LCZ classes in their fixed order, with WUDAPT colours")
    def get(self, request):
        return Response(classes_payload())


class CampaignListView(APIView):
    @extend_schema(responses={200: CampaignSerializer(many=True), **errors(403)}, summary="Campaigns I work on")
    def get(self, request):
        return Response(CampaignSerializer(selectors.campaigns_for(request.user), many=True).data)


class CampaignDetailView(APIView):
    @extend_schema(responses={200: CampaignSerializer, **errors(403, 404)})
    def get(self, request, campaign_id: int):
        campaign = selectors.campaign_for(request.user, campaign_id)
        extent = selectors.campaign_extent(campaign)
        return Response(CampaignSerializer(campaign, context={"extent": extent}).data)


class CampaignBlocksView(APIView):
    @extend_schema(
        summary="Blocks in the visible extent as GeoJSON, simplified to the zoom, with my status",
        parameters=[
            OpenApiParameter("bbox", BBOX_SCHEMA, description=BBOX_DESCRIPTION),
            OpenApiParameter("zoom", {"type": "integer", "minimum": 0, "maximum": 24},
                             description="Web Mercator zoom; geometry simplified to it"),
        ],
        responses={(200, "application/geo+json"): BlocksFeatureCollectionSerializer, **errors(400, 403, 404)},
    )
    def get(self, request, campaign_id: int):
        campaign = selectors.campaign_for(request.user, campaign_id)
        bbox = _parse_bbox(request.query_params.get("bbox"))
        zoom = _parse_int(request.query_params.get("zoom"), "zoom", 0, 24)
        body = feature_collection(selectors.my_block_layer(request.user, campaign, bbox, zoom))
        return HttpResponse(body, content_type="application/geo+json")


class ProgressView(APIView):
    @extend_schema(responses={200: ProgressSerializer, **errors(403, 404)},
                   summary="My progress: assigned, submitted, drafts, to do")
    def get(self, request, campaign_id: int):
        campaign = selectors.campaign_for(request.user, campaign_id)
        return Response(selectors.my_progress(request.user, campaign))


class NextAssignmentView(APIView):
    @extend_schema(
        responses={200: AssignmentSerializer, 204: OpenApiResponse(description="All my blocks are submitted."),
                   **errors(400, 403, 404)},
        parameters=[OpenApiParameter("after", {"type": "integer", "format": "int64", "minimum": 0, "maximum": MAX_ID},
                                     description="block id just done; the next one follows it")],
        summary="My next block: drafts first, then the next to do; 204 when all are submitted",
    )
    def get(self, request, campaign_id: int):
        campaign = selectors.campaign_for(request.user, campaign_id)
        after = _parse_int(request.query_params.get("after"), "after", 0, None)
        assignment = selectors.next_assignment(request.user, campaign, after_block_id=after)
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(_assignment_payload(request, assignment))


class AssignmentView(APIView):
    @extend_schema(responses={200: AssignmentSerializer, **errors(403, 404)},
                   summary="One of my assignments, with my own split")
    def get(self, request, assignment_id: int):
        return Response(_assignment_payload(request, selectors.my_assignment(request.user, assignment_id)))


class AnnotationSaveView(APIView):
    @extend_schema(
        request=SaveAnnotationSerializer,
        responses={200: SavedAnnotationSerializer, **errors(400, 403, 404, 409, 422)},
        summary="Save my split (draft, or submit=true): idempotent by request_id, 409 on a stale version",
    )
    def put(self, request, assignment_id: int):
        assignment = selectors.my_assignment(request.user, assignment_id)
        data = SaveAnnotationSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        result = services.save_annotation(
            assignment, request.user, request_id=v["request_id"], version=v["version"], split=v.get("split"),
            confidence=v.get("confidence"), flags=v.get("flags"), comment=v.get("comment", ""),
            submit=v["submit"], skip_reason=v.get("skip_reason", ""),
        )
        body = AnnotationSerializer(result.annotation).data
        body["replayed"] = result.replayed
        return Response(body)


class BlockHistoryView(APIView):
    permission_classes = [IsAdminRole]

    @extend_schema(responses={200: AuditEntrySerializer(many=True), **errors(403, 404)},
                   summary="Audit history of a block (admins)")
    def get(self, request, block_id: int):
        block = selectors.block_with_campaign(block_id)
        return Response(AuditEntrySerializer(selectors.audit_history(block), many=True).data)


def _parse_bbox(raw):
    """minlon,minlat,maxlon,maxlat in degrees: four finite numbers, lon in -180..180, lat in -90..90,
    min <= max (NaN, Infinity and 1e400 are not coordinates: GEOS would fail on them, a 500)."""
    if not raw:
        return None
    try:
        vals = [float(v) for v in raw.split(",")]
    except ValueError:
        raise ValidationError({"bbox": ["must be four numbers: minlon,minlat,maxlon,maxlat."]}) from None
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
        raise ValidationError({"bbox": ["must be four finite numbers: minlon,minlat,maxlon,maxlat."]})
    if not (-180 <= vals[0] <= 180 and -180 <= vals[2] <= 180 and -90 <= vals[1] <= 90 and -90 <= vals[3] <= 90):
        raise ValidationError({"bbox": ["longitudes must be within -180..180 and latitudes within -90..90."]})
    if vals[0] > vals[2] or vals[1] > vals[3]:
        raise ValidationError({"bbox": ["must be minlon,minlat,maxlon,maxlat with min <= max."]})
    return tuple(vals)


def _parse_int(raw, name, lo, hi):
    """An optional integer query parameter within lo..hi (hi None: up to a 64-bit id)."""
    if raw in (None, ""):
        return None
    if not re.fullmatch(r"\s*[+-]?[0-9]{1,20}\s*", raw):  # ASCII digits; more than 20 cannot be an id
        raise ValidationError({name: ["must be an integer."]})
    v = int(raw)
    top = MAX_ID if hi is None else hi
    if v < lo or v > top:
        raise ValidationError({name: [f"must be between {lo} and {top}."]})
    return v


class ReviewQueueView(APIView):
    permission_classes = [IsReviewerRole]

    @extend_schema(responses={200: ReviewQueueRowSerializer(many=True), **errors(403, 404)},
                   summary="Released blocks to review, disputed first, at most 500 (reviewers)")
    def get(self, request, campaign_id: int):
        campaign = selectors.campaign_for(request.user, campaign_id, reviewing=True)
        rows = selectors.review_queue_rows(campaign)[:500]
        return Response(ReviewQueueRowSerializer(rows, many=True).data)


class ReviewBlockView(APIView):
    permission_classes = [IsReviewerRole]

    @extend_schema(responses={200: ReviewBlockSerializer, **errors(403, 404)},
                   summary="A released block with all splits side by side")
    def get(self, request, block_id: int):
        block = selectors.reviewable_block(request.user, block_id)
        return Response(review_block_payload(block, selectors.block_splits(block)))

    @extend_schema(request=AdjudicateSerializer, responses={200: ReviewBlockSerializer, **errors(400, 403, 404, 422)},
                   summary="Set the final split of a released block, with a reason (reviewers)")
    def post(self, request, block_id: int):
        from annotator import curation

        block = selectors.reviewable_block(request.user, block_id)
        data = AdjudicateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        curation.adjudicate(block, request.user, split=v["split"], reason=v["reason"],
                            started_from=v["started_from"], request_id=v["request_id"])
        block.refresh_from_db()
        return Response(review_block_payload(block, selectors.block_splits(block)))


class FractionsLayerView(APIView):
    """Per-block LCZ fractions for map layers: consensus labels or a model's predictions."""

    permission_classes = [IsReviewerRole]

    @extend_schema(
        summary="Blocks with their 17 fractions (per-mille) from the consensus or a model (reviewers)",
        parameters=[OpenApiParameter("source", str, description="consensus (default) or a model_version"),
                    OpenApiParameter("bbox", BBOX_SCHEMA, description=BBOX_DESCRIPTION)],
        responses={(200, "application/geo+json"): FractionsFeatureCollectionSerializer, **errors(400, 403, 404)},
    )
    def get(self, request, campaign_id: int):
        campaign = selectors.campaign_for(request.user, campaign_id, reviewing=True)
        source = request.query_params.get("source") or "consensus"
        versions = selectors.model_versions(campaign)
        if source != "consensus" and source not in versions:
            raise ValidationError({"source": [f"unknown model_version; known: {versions}"]})
        rows = selectors.fraction_rows(campaign, source, _parse_bbox(request.query_params.get("bbox")),
                                       hidden=selectors.blind_pending_block_ids(request.user, campaign))
        if source != "consensus" and rows:
            services.record_predictions_shown(campaign, request.user, source)
        body = feature_collection(selectors.fraction_layer(rows), source=source, model_versions=versions)
        return HttpResponse(body, content_type="application/geo+json")


# --- the guidelines panel (annotator.guidelines) ----------------------------------------------

from rest_framework import serializers as _s  # noqa: E402  (the panel's response shapes, documented here)


class GuidelineExampleSerializer(_s.Serializer):
    source = _s.ChoiceField(choices=["campaign", "synthetic"],
                            help_text="campaign: one of its own pure blocks; synthetic: the demo's painted example")
    url = _s.CharField(help_text="The image (PNG)")
    block_key = _s.CharField(allow_null=True)
    share = _s.IntegerField(allow_null=True, help_text="The class's per-mille in the block's label")
    alt = _s.CharField()


class GuidelineClassSerializer(LCZClassSerializer):
    label = _s.CharField()
    keyboard = _s.CharField(help_text="The class's key in the split editors")
    examples = GuidelineExampleSerializer(many=True)


class GuidelinesSerializer(_s.Serializer):
    campaign = _s.IntegerField()
    guidelines_html = _s.CharField(help_text="The campaign's guidelines (Markdown) as sanitised HTML; may be empty")
    pure_threshold = _s.IntegerField(help_text="Per-mille from which a block is an example of a class")
    classes = GuidelineClassSerializer(many=True)


class GuidelinesView(APIView):
    @extend_schema(responses={200: GuidelinesSerializer, **errors(403, 404)},
                   summary="The guidelines panel: the campaign's guidelines and each class with example images")
    def get(self, request, campaign_id: int):
        from django.templatetags.static import static
        from django.urls import reverse

        from annotator import guidelines

        campaign = selectors.campaign_for(request.user, campaign_id)
        body = guidelines.guidelines_payload(
            request.user, campaign, static_url=static,
            example_url=lambda block_id: reverse("guideline-example", args=[campaign.pk, block_id]))
        response = Response(body)
        response["Cache-Control"] = "private, no-cache"
        return response


class GuidelineExampleView(APIView):
    @extend_schema(
        responses={(200, "image/png"): OpenApiResponse(description="The block clipped from the imagery"),
                   204: OpenApiResponse(description="The imagery holds no pixel of this block"),
                   **errors(403, 404)},
        summary="An example image: one of the campaign's pure blocks over its imagery (members; never a block "
                "the viewer still labels blind); ETag, 304 on If-None-Match")
    def get(self, request, campaign_id: int, block_id: int):
        from annotator import guidelines
        from annotator.tile_views import _etag_matches

        block = selectors.example_block(request.user, campaign_id, block_id, threshold=guidelines.PURE_PERMILLE)
        key = guidelines.example_cache_key(block.campaign, block)
        if key is None:
            raise selectors.NotFound("the campaign's imagery is missing")
        etag = guidelines.example_etag(key)
        if _etag_matches(request.headers.get("If-None-Match"), etag):
            response = HttpResponse(status=304)
        else:
            data = guidelines.example_image(block.campaign, block, key)
            response = HttpResponse(data, content_type="image/png") if data else HttpResponse(status=204)
        response["ETag"] = etag
        response["Cache-Control"] = "private, max-age=3600"
        return response
