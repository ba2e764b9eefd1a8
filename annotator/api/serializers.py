"""API shapes. The split travels as {lcz_1: per-mille, ..., lcz_g: per-mille} (ints 0..1000)."""
import json

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotator.models import Annotation, Assignment, AuditEvent, Campaign, ImageryScene
from annotator.splits import as_dict
from lcz_model.classes import CLASSES


class LCZClassSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    key = serializers.CharField()
    code = serializers.CharField()
    name = serializers.CharField()
    group = serializers.CharField()
    colour = serializers.CharField()
    description = serializers.CharField()


class SceneSerializer(serializers.ModelSerializer):
    tiles = serializers.SerializerMethodField()

    class Meta:
        model = ImageryScene
        fields = ["id", "name", "crs", "resolution_m", "licence", "attribution", "synthetic", "tiles"]

    def get_tiles(self, scene) -> str:
        return f"/tiles/{scene.pk}/{{z}}/{{x}}/{{y}}.webp"  # transparent outside the scene


class CampaignSerializer(serializers.ModelSerializer):
    scenes = SceneSerializer(many=True, read_only=True)
    bounds = serializers.SerializerMethodField()

    class Meta:
        model = Campaign
        fields = ["id", "name", "city", "description", "imagery_licence", "imagery_attribution",
                  "interpreters_per_block", "scenes", "bounds"]

    def get_bounds(self, campaign) -> list[float] | None:
        extent = self.context.get("extent")
        return list(extent) if extent else None


class AnnotationSerializer(serializers.ModelSerializer):
    split = serializers.SerializerMethodField()
    submitted = serializers.SerializerMethodField()

    class Meta:
        model = Annotation
        fields = ["split", "confidence", "flags", "comment", "version", "submitted", "submitted_at", "updated_at",
                  "suggestion_model_version", "accepted_unchanged", "tv_from_suggestion"]

    def get_split(self, a) -> dict[str, int]:
        return as_dict(a.permille)

    def get_submitted(self, a) -> bool:
        return a.submitted_at is not None


class AssignmentSerializer(serializers.ModelSerializer):
    """The requesting interpreter's own assignment: never anyone else's split."""

    block = serializers.SerializerMethodField()
    annotation = serializers.SerializerMethodField()
    suggestion = serializers.SerializerMethodField()

    class Meta:
        model = Assignment
        fields = ["id", "campaign", "round", "status", "block", "annotation", "suggestion"]

    def get_suggestion(self, a) -> dict | None:
        """The model's split, only in assisted rounds (blind rounds never show one)."""
        from annotator.assist import suggestion_for

        p = suggestion_for(a)
        return None if p is None else {"model_version": p.model_version, "split": as_dict(p.permille)}

    def get_block(self, a) -> dict:
        b = a.block
        return {"id": b.pk, "block_key": b.block_key, "area_m2": round(b.area_m2, 1),
                "geometry": json.loads(b.geom.geojson), "bbox": list(b.geom.extent)}

    def get_annotation(self, a) -> dict | None:
        ann = getattr(a, "annotation", None) if hasattr(a, "annotation") else None
        return AnnotationSerializer(ann).data if ann is not None else None


@extend_schema_field(OpenApiTypes.OBJECT)
class SplitField(serializers.Field):
    """Passed through as parsed: annotator.splits validates it and names each bad class field."""

    def to_internal_value(self, data):
        return data

    def to_representation(self, value):
        return value


class SaveAnnotationSerializer(serializers.Serializer):
    request_id = serializers.UUIDField(help_text="Client-chosen id; a retried request with the same id is applied once.")
    version = serializers.IntegerField(min_value=0, help_text="The version the client edited (0 for a first save).")
    split = SplitField(help_text="{lcz_1..lcz_10, lcz_a..lcz_g: per-mille integers}; 1000 in all to submit.")
    confidence = serializers.IntegerField(min_value=1, max_value=5, required=False, allow_null=True)
    flags = serializers.ListField(child=serializers.CharField(), required=False)
    comment = serializers.CharField(required=False, allow_blank=True, max_length=4000)
    submit = serializers.BooleanField(default=False)

    def validate(self, attrs):
        extra = sorted(set(self.initial_data) - set(self.fields))
        if extra:
            raise serializers.ValidationError({k: ["unknown field."] for k in extra})
        return attrs


class ProgressSerializer(serializers.Serializer):
    assigned = serializers.IntegerField()
    submitted = serializers.IntegerField()
    draft = serializers.IntegerField()
    todo = serializers.IntegerField()


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.username", default=None)

    class Meta:
        model = AuditEvent
        fields = ["id", "at", "actor", "action", "request_id", "before", "after"]


def classes_payload() -> list[dict]:
    return LCZClassSerializer(
        [dict(index=c.index, key=c.key, code=c.code, name=c.name, group=c.group, colour=c.colour,
              description=c.description) for c in CLASSES], many=True).data


class AdjudicateSerializer(serializers.Serializer):
    split = SplitField(help_text="The final split, per-mille summing to 1000.")
    reason = serializers.CharField(max_length=4000)
    started_from = serializers.CharField(max_length=40, default="consensus",
                                         help_text="consensus, or the assignment id whose split it started from")


class ReviewBlockSerializer(serializers.Serializer):
    """A released block with every interpreter's split side by side (reviewers only)."""

    id = serializers.IntegerField()
    block_key = serializers.CharField()
    status = serializers.CharField()
    area_m2 = serializers.FloatField()
    agreement_tv = serializers.FloatField(allow_null=True)
    dominant_agrees = serializers.BooleanField(allow_null=True)
    consensus = serializers.DictField(child=serializers.IntegerField(), allow_null=True)
    final = serializers.DictField(child=serializers.IntegerField(), allow_null=True)
    geometry = serializers.DictField()
    splits = serializers.ListField(child=serializers.DictField())
    adjudications = serializers.ListField(child=serializers.DictField())


def review_block_payload(block, assignments) -> dict:
    return {
        "id": block.pk, "block_key": block.block_key, "status": block.status, "area_m2": block.area_m2,
        "agreement_tv": block.agreement_tv, "dominant_agrees": block.dominant_agrees,
        "consensus": as_dict(block.consensus) if block.consensus else None,
        "final": as_dict(block.final_permille) if block.final_permille else None,
        "geometry": json.loads(block.geom.geojson),
        "splits": [{"assignment": a.pk, "interpreter": a.interpreter.username,
                    "split": as_dict(a.annotation.permille), "confidence": a.annotation.confidence,
                    "flags": a.annotation.flags, "comment": a.annotation.comment,
                    "submitted_at": a.annotation.submitted_at} for a in assignments],
        "adjudications": [{"reviewer": j.reviewer.username, "split": as_dict(j.permille), "reason": j.reason,
                           "started_from": j.started_from, "at": j.created_at}
                          for j in block.adjudications.select_related("reviewer")],
    }
