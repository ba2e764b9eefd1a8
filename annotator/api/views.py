"""REST API: thin views over selectors (reads) and services (writes).

Blind labelling: an interpreter only ever gets their own assignments and splits; anything else
answers 404 as if it did not exist.
"""
from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from annotator import selectors, services
from annotator.models import StreetBlock
from annotator.splits import SplitError

from .permissions import IsAdminRole, IsReviewerRole
from .serializers import (
    AdjudicateSerializer,
    AnnotationSerializer,
    AssignmentSerializer,
    AuditEventSerializer,
    CampaignSerializer,
    LCZClassSerializer,
    ProgressSerializer,
    ReviewBlockSerializer,
    SaveAnnotationSerializer,
    classes_payload,
    review_block_payload,
)


def _campaign_for(request, campaign_id: int):
    campaign = selectors.campaigns_for(request.user).filter(pk=campaign_id).first()
    if campaign is None:
        raise NotFound("campaign not found")
    return campaign


def _assignment_for(request, assignment_id: int):
    try:
        return selectors.my_assignment(request.user, assignment_id)
    except selectors.NotFound:
        raise NotFound("assignment not found") from None


class ClassesView(APIView):
    @extend_schema(responses=LCZClassSerializer(many=True),
                   summary="The 17 LCZ classes in their fixed order, with WUDAPT colours")
    def get(self, request):
        return Response(classes_payload())


class CampaignListView(APIView):
    @extend_schema(responses=CampaignSerializer(many=True), summary="Campaigns I work on")
    def get(self, request):
        return Response(CampaignSerializer(selectors.campaigns_for(request.user), many=True).data)


class CampaignDetailView(APIView):
    @extend_schema(responses=CampaignSerializer)
    def get(self, request, campaign_id: int):
        campaign = _campaign_for(request, campaign_id)
        extent = selectors.campaign_extent(campaign)
        return Response(CampaignSerializer(campaign, context={"extent": extent}).data)


class CampaignBlocksView(APIView):
    @extend_schema(
        summary="Blocks in the visible extent as GeoJSON, simplified to the zoom, with my status",
        parameters=[
            OpenApiParameter("bbox", str, description="minlon,minlat,maxlon,maxlat (EPSG:4326)"),
            OpenApiParameter("zoom", int, description="Web Mercator zoom; geometry simplified to it"),
        ],
        responses={(200, "application/geo+json"): OpenApiTypes.OBJECT},
    )
    def get(self, request, campaign_id: int):
        campaign = _campaign_for(request, campaign_id)
        bbox = _parse_bbox(request.query_params.get("bbox"))
        zoom = _parse_int(request.query_params.get("zoom"), "zoom", 0, 24)
        body = selectors.blocks_geojson(request.user, campaign, bbox, zoom)
        return HttpResponse(body, content_type="application/geo+json")


class ProgressView(APIView):
    @extend_schema(responses=ProgressSerializer, summary="My progress: assigned, submitted, drafts, to do")
    def get(self, request, campaign_id: int):
        campaign = _campaign_for(request, campaign_id)
        return Response(selectors.my_progress(request.user, campaign))


class NextAssignmentView(APIView):
    @extend_schema(
        responses={200: AssignmentSerializer, 204: None},
        parameters=[OpenApiParameter("after", int, description="block id just done; the next one follows it")],
        summary="My next block: drafts first, then the next to do; 204 when all are submitted",
    )
    def get(self, request, campaign_id: int):
        campaign = _campaign_for(request, campaign_id)
        after = _parse_int(request.query_params.get("after"), "after", 0, None)
        assignment = selectors.next_assignment(request.user, campaign, after_block_id=after)
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(AssignmentSerializer(assignment).data)


class AssignmentView(APIView):
    @extend_schema(responses=AssignmentSerializer, summary="One of my assignments, with my own split")
    def get(self, request, assignment_id: int):
        return Response(AssignmentSerializer(_assignment_for(request, assignment_id)).data)


class AnnotationSaveView(APIView):
    @extend_schema(
        request=SaveAnnotationSerializer,
        responses={200: AnnotationSerializer, 400: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT},
        summary="Save my split (draft, or submit=true): idempotent by request_id, 409 on a stale version",
    )
    def put(self, request, assignment_id: int):
        assignment = _assignment_for(request, assignment_id)
        data = SaveAnnotationSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        try:
            result = services.save_annotation(
                assignment, request.user, request_id=v["request_id"], version=v["version"], split=v["split"],
                confidence=v.get("confidence"), flags=v.get("flags"), comment=v.get("comment", ""),
                submit=v["submit"],
            )
        except SplitError as exc:
            raise ValidationError(exc.errors) from None
        except services.StaleVersion as exc:
            return Response(
                {"detail": "This split was changed elsewhere since you opened it; reload to see the saved one.",
                 "current": AnnotationSerializer(exc.current).data if exc.current else None},
                status=status.HTTP_409_CONFLICT,
            )
        body = AnnotationSerializer(result.annotation).data
        body["replayed"] = result.replayed
        return Response(body)


class BlockHistoryView(APIView):
    permission_classes = [IsAdminRole]

    @extend_schema(responses=AuditEventSerializer(many=True), summary="Audit history of a block (admins)")
    def get(self, request, block_id: int):
        block = get_object_or_404(StreetBlock, pk=block_id)
        return Response(AuditEventSerializer(selectors.audit_history(block), many=True).data)


def _parse_bbox(raw):
    if not raw:
        return None
    try:
        vals = [float(v) for v in raw.split(",")]
    except ValueError:
        raise ValidationError({"bbox": ["must be four numbers: minlon,minlat,maxlon,maxlat."]}) from None
    if len(vals) != 4 or vals[0] > vals[2] or vals[1] > vals[3]:
        raise ValidationError({"bbox": ["must be minlon,minlat,maxlon,maxlat with min <= max."]})
    return tuple(vals)


def _parse_int(raw, name, lo, hi):
    if raw in (None, ""):
        return None
    try:
        v = int(raw)
    except ValueError:
        raise ValidationError({name: ["must be an integer."]}) from None
    if v < lo or (hi is not None and v > hi):
        raise ValidationError({name: [f"must be between {lo} and {hi}." if hi is not None else f"must be >= {lo}."]})
    return v


class ReviewQueueView(APIView):
    permission_classes = [IsReviewerRole]

    @extend_schema(responses=OpenApiTypes.OBJECT, summary="Released blocks to review, disputed first (reviewers)")
    def get(self, request, campaign_id: int):
        campaign = _campaign_for(request, campaign_id)
        if not selectors.is_reviewer(request.user, campaign):
            raise NotFound("campaign not found")
        rows = selectors.review_queue(campaign).values("id", "block_key", "status", "agreement_tv",
                                                        "dominant_agrees")[:500]
        return Response(list(rows))


class ReviewBlockView(APIView):
    permission_classes = [IsReviewerRole]

    def _block(self, request, block_id):
        try:
            block = selectors.released_block(block_id)
        except selectors.NotFound:
            raise NotFound("block not found or not released for review") from None
        if not selectors.is_reviewer(request.user, block.campaign):
            raise NotFound("block not found or not released for review")
        return block

    @extend_schema(responses=ReviewBlockSerializer, summary="A released block with all splits side by side")
    def get(self, request, block_id: int):
        block = self._block(request, block_id)
        return Response(review_block_payload(block, selectors.block_splits(block)))

    @extend_schema(request=AdjudicateSerializer, responses=ReviewBlockSerializer,
                   summary="Set the final split of a released block, with a reason (reviewers)")
    def post(self, request, block_id: int):
        from annotator import curation

        block = self._block(request, block_id)
        data = AdjudicateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            curation.adjudicate(block, request.user, split=data.validated_data["split"],
                                reason=data.validated_data["reason"],
                                started_from=data.validated_data["started_from"])
        except SplitError as exc:
            raise ValidationError(exc.errors) from None
        block.refresh_from_db()
        return Response(review_block_payload(block, selectors.block_splits(block)))


class FractionsLayerView(APIView):
    """Per-block LCZ fractions for map layers: consensus labels or a model's predictions."""

    permission_classes = [IsReviewerRole]

    @extend_schema(
        summary="Blocks with their 17 fractions (per-mille) from the consensus or a model (reviewers)",
        parameters=[OpenApiParameter("source", str, description="consensus (default) or a model_version"),
                    OpenApiParameter("bbox", str, description="minlon,minlat,maxlon,maxlat")],
        responses={(200, "application/geo+json"): OpenApiTypes.OBJECT},
    )
    def get(self, request, campaign_id: int):
        import json as _json

        from lcz_model.classes import KEYS

        campaign = _campaign_for(request, campaign_id)
        if not selectors.is_reviewer(request.user, campaign):
            raise NotFound("campaign not found")
        source = request.query_params.get("source") or "consensus"
        if source != "consensus" and source not in selectors.model_versions(campaign):
            raise ValidationError({"source": [f"unknown model_version; known: {selectors.model_versions(campaign)}"]})
        rows = selectors.fraction_rows(campaign, source, _parse_bbox(request.query_params.get("bbox")))
        parts = []
        for pk, key, permille, gj in rows:
            dominant = max(range(len(permille)), key=permille.__getitem__)
            props = _json.dumps({"block_key": key, "dominant": KEYS[dominant], **dict(zip(KEYS, permille))},
                                separators=(",", ":"))
            parts.append(f'{{"type":"Feature","id":{pk},"geometry":{gj},"properties":{props}}}')
        body = ('{"type":"FeatureCollection","source":' + _json.dumps(source) + ',"model_versions":'
                + _json.dumps(selectors.model_versions(campaign)) + ',"features":[' + ",".join(parts) + "]}")
        return HttpResponse(body, content_type="application/geo+json")
