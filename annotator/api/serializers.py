"""API shapes. The split travels as {lcz_1: per-mille, ..., lcz_g: per-mille} (ints 0..1000).

GeoJSON FeatureCollections of blocks are written by `feature_collection` only."""
import json
from collections.abc import Iterable

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotator import selectors
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


def imagery_payload(campaign: Campaign) -> dict | None:
    """The campaign's imagery as ONE tile layer (its mosaic over all its scenes), for the pages and the
    API: tiles and TileJSON URLs with every scene's attribution and licence (selectors.imagery_layer);
    None without imagery."""
    layer = selectors.imagery_layer(campaign)
    if layer is None:
        return None
    tilejson = reverse("tiles:campaign-tilejson", args=[campaign.pk])
    return {"id": campaign.pk, **layer, "tilejson": tilejson,
            "tiles": tilejson.removesuffix("tilejson.json") + "{z}/{x}/{y}.webp"}  # transparent outside it


class ImageryLayerSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    scenes = serializers.IntegerField(help_text="How many scenes the mosaic is made of.")
    crs = serializers.CharField()
    attribution = serializers.CharField(help_text="Every scene's attribution, each once.")
    licence = serializers.CharField(help_text="Every scene's licence, each once.")
    synthetic = serializers.BooleanField()
    tilejson = serializers.CharField()
    tiles = serializers.CharField()


class SceneSerializer(serializers.ModelSerializer):
    """A scene's metadata; its pixels are drawn through the campaign's one imagery layer."""

    class Meta:
        model = ImageryScene
        fields = ["id", "name", "crs", "resolution_m", "licence", "attribution", "synthetic", "source_dtype",
                  "band_map", "stretch"]


class CampaignSerializer(serializers.ModelSerializer):
    scenes = SceneSerializer(many=True, read_only=True)
    imagery = serializers.SerializerMethodField()
    bounds = serializers.SerializerMethodField()

    class Meta:
        model = Campaign
        fields = ["id", "name", "city", "description", "imagery_licence", "imagery_attribution",
                  "interpreters_per_block", "scenes", "imagery", "bounds"]

    @extend_schema_field(ImageryLayerSerializer(allow_null=True))
    def get_imagery(self, campaign) -> dict | None:
        return imagery_payload(campaign)

    def get_bounds(self, campaign) -> list[float] | None:
        extent = self.context.get("extent")
        return list(extent) if extent else None


class AnnotationSerializer(serializers.ModelSerializer):
    split = serializers.SerializerMethodField()
    submitted = serializers.SerializerMethodField()

    class Meta:
        model = Annotation
        fields = ["split", "skip_reason", "confidence", "flags", "comment", "version", "submitted", "submitted_at",
                  "updated_at", "suggestion_model_version", "accepted_unchanged", "tv_from_suggestion"]

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
        """The model's split the view passes in context (selectors.suggestion_for decides:
        assisted rounds only, never to anyone who still labels the block blind)."""
        p = self.context.get("suggestion")
        return None if p is None else {"model_version": p.model_version, "split": as_dict(p.permille)}

    def get_block(self, a) -> dict:
        b = a.block
        # block_status: read only, and only where the map layer shows it too: a block I submitted that
        # is now complete, disputed or adjudicated (the editor shows it read-only); otherwise null
        released = a.status == Assignment.Status.SUBMITTED and b.status in selectors.RELEASED
        return {"id": b.pk, "block_key": b.block_key, "area_m2": round(b.area_m2, 1),
                "geometry": json.loads(b.geom.geojson), "bbox": list(b.geom.extent),
                "block_status": b.status if released else None}

    def get_annotation(self, a) -> dict | None:
        ann = getattr(a, "annotation", None) if hasattr(a, "annotation") else None
        return AnnotationSerializer(ann).data if ann is not None else None


class StrictUUIDField(serializers.UUIDField):
    """A UUID given as a string (DRF would also take an integer like 1 as UUID(int=1))."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """A JSON string only (DRF would turn 123 into "123")."""

    default_error_messages = {"not_a_string": "must be a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class NoUnknownFieldsMixin:
    """Refuse fields the serializer does not know, naming each."""

    def validate(self, attrs):
        extra = sorted(set(self.initial_data) - set(self.fields)) if isinstance(self.initial_data, dict) else []
        if extra:
            raise serializers.ValidationError({k: ["unknown field."] for k in extra})
        return attrs


@extend_schema_field(OpenApiTypes.OBJECT)
class SplitField(serializers.Field):
    """Passed through as parsed: annotator.splits validates it and names each bad class field."""

    def to_internal_value(self, data):
        return data

    def to_representation(self, value):
        return value


class SaveAnnotationSerializer(NoUnknownFieldsMixin, serializers.Serializer):
    """An interpreter's draft or submission of their own split."""

    request_id = StrictUUIDField(help_text="Client-chosen UUID string; a retried request with the same id and the "
                                           "same body is applied once; the same id with another body is a 422.")
    version = serializers.IntegerField(min_value=0, max_value=2**31 - 1,
                                       help_text="The version the client edited (0 for a first save).")
    split = SplitField(required=False, allow_null=True,
                       help_text="{lcz_1..lcz_10, lcz_a..lcz_g: per-mille integers}; 1000 in all to submit. "
                                 "Left out (or all zeros) with skip_reason.")
    skip_reason = serializers.ChoiceField(
        choices=Annotation.SkipReason.choices, required=False, allow_blank=True, default="",
        error_messages={"invalid_choice": "unknown reason \"{input}\"; allowed: "
                        + ", ".join(v for v in Annotation.SkipReason.values if v) + " (or empty: not skipped)."},
        help_text="A can't-label verdict without a split: " + ", ".join(v for v in Annotation.SkipReason.values if v)
                  + " (\"other\" needs a comment to submit); empty or left out: not skipped.")
    confidence = serializers.IntegerField(min_value=1, max_value=5, required=False, allow_null=True)
    flags = serializers.ListField(child=serializers.ChoiceField(choices=Annotation.Flag.choices), required=False,
                                  max_length=len(Annotation.Flag.values),
                                  help_text="Each at most once: " + ", ".join(Annotation.Flag.values))
    comment = StrictCharField(required=False, allow_blank=True, max_length=4000, trim_whitespace=False)
    submit = serializers.BooleanField(default=False)


class ProgressSerializer(serializers.Serializer):
    assigned = serializers.IntegerField()
    submitted = serializers.IntegerField(help_text="Done: submitted splits and can't-label verdicts.")
    skipped = serializers.IntegerField(help_text="Of the submitted, how many are can't-label verdicts.")
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


class AdjudicateSerializer(NoUnknownFieldsMixin, serializers.Serializer):
    """A reviewer's final split of a released block, with the reason."""

    request_id = StrictUUIDField(help_text="Client-chosen UUID string; a retried adjudication with the same id "
                                           "and body is recorded once; the same id with another body is a 422.")
    split = SplitField(help_text="The final split, per-mille summing to 1000.")
    reason = StrictCharField(max_length=4000, help_text="Why this split is right (not empty).")
    started_from = StrictCharField(max_length=40, default="consensus",
                                   help_text="scratch, consensus, final, or the id of the assignment whose "
                                             "split it started from")


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
                    "split": as_dict(a.annotation.permille), "skip_reason": a.annotation.skip_reason,
                    "skip_label": a.annotation.get_skip_reason_display() if a.annotation.skip_reason else "",
                    "confidence": a.annotation.confidence,
                    "flags": a.annotation.flags, "comment": a.annotation.comment,
                    "submitted_at": a.annotation.submitted_at} for a in assignments],
        "adjudications": [{"reviewer": j.reviewer.username, "split": as_dict(j.permille), "reason": j.reason,
                           "started_from": j.started_from, "at": j.created_at}
                          for j in block.adjudications.select_related("reviewer")],
    }


# --- response shapes for the OpenAPI schema: errors, the review queue, the GeoJSON layers ------

class ErrorSerializer(serializers.Serializer):
    """An error: 403 (not signed in, or not allowed), 404 (not found, or not yours), 400 for a body
    that is not JSON or is too large or too deeply nested."""

    detail = serializers.CharField()


class ValidationErrorSerializer(serializers.Serializer):
    """400: what was wrong, by field. Each invalid field (or class key of a split, e.g. "lcz_6")
    maps to a list of messages (nested objects for items of lists); a body that is not valid JSON
    answers {"detail": "..."} instead."""

    detail = serializers.CharField(required=False)
    non_field_errors = serializers.ListField(child=serializers.CharField(), required=False)


class StaleVersionSerializer(serializers.Serializer):
    """409: the split was saved elsewhere since the client read it; `current` is the saved one."""

    detail = serializers.CharField()
    current = AnnotationSerializer(allow_null=True)


class RequestIdReusedSerializer(serializers.Serializer):
    """422: this request_id was already used for a request with a different body."""

    detail = serializers.CharField()
    request_id = serializers.ListField(child=serializers.CharField())


class ReviewQueueRowSerializer(serializers.Serializer):
    """One released block in the review queue."""

    id = serializers.IntegerField()
    block_key = serializers.CharField()
    status = serializers.ChoiceField(choices=["complete", "disputed", "adjudicated"])
    agreement_tv = serializers.FloatField(allow_null=True)
    dominant_agrees = serializers.BooleanField(allow_null=True)
    skipped = serializers.IntegerField(help_text="How many of its submitted verdicts are can't-label (skips).")


def feature_collection(features: Iterable[tuple[int, str | None, dict]], **members) -> str:
    """The one writer of GeoJSON FeatureCollections of blocks (the workspace layer, the LCZ fraction
    layer, the dashboard's agreement layer, the campaign overview), as text.

    `features`: (id, geometry as GeoJSON text made by the database, properties), e.g. a map layer
    of annotator.selectors; features without a geometry are left out. `members`: more top-level
    members, written before "features". The database's geometry text is passed through as it is:
    parsing and re-encoding it (djangorestframework-gis) made the 10,000-block layer 4-10x slower.
    """
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    parts = [f'{{"type":"Feature","id":{int(pk)},"geometry":{geometry},"properties":{dumps(properties)}}}'
             for pk, geometry, properties in features if geometry is not None]
    head = "".join(f"{dumps(key)}:{dumps(value)}," for key, value in members.items())
    return '{"type":"FeatureCollection",' + head + '"features":[' + ",".join(parts) + "]}"


class GeoJSONGeometrySerializer(serializers.Serializer):
    """A GeoJSON geometry (EPSG:4326), e.g. {"type": "Polygon", "coordinates": [...]}."""

    type = serializers.CharField()
    coordinates = serializers.ListField(child=serializers.JSONField())


class BlockFeaturePropertiesSerializer(serializers.Serializer):
    block_key = serializers.CharField()
    area_m2 = serializers.FloatField()
    status = serializers.CharField(help_text="my status: todo, draft, submitted, skipped (submitted as can't label; "
                                             "or complete, disputed, adjudicated once released), revoked; "
                                             "unassigned when the block is not mine")
    assignment = serializers.IntegerField(allow_null=True, help_text="my assignment's id, null when not mine")


class BlockFeatureSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["Feature"])
    id = serializers.IntegerField()
    geometry = GeoJSONGeometrySerializer()
    properties = BlockFeaturePropertiesSerializer()


class BlocksFeatureCollectionSerializer(serializers.Serializer):
    """The campaign's blocks in the bbox as a GeoJSON FeatureCollection, each with my status."""

    type = serializers.ChoiceField(choices=["FeatureCollection"])
    features = BlockFeatureSerializer(many=True)


def _fraction_properties_serializer():
    from lcz_model.classes import KEYS

    fields = {"block_key": serializers.CharField(),
              "status": serializers.ChoiceField(
                  choices=["open", "in_progress", "complete", "disputed", "adjudicated"],
                  help_text="the block's status; from the consensus, a disputed block's fractions are its "
                            "unsettled consensus (no class until adjudicated): maps draw it as disputed"),
              "dominant": serializers.ChoiceField(choices=list(KEYS), help_text="the class with the largest share")}
    fields.update({k: serializers.IntegerField(min_value=0, max_value=1000, help_text="per-mille") for k in KEYS})
    return type("FractionFeaturePropertiesSerializer", (serializers.Serializer,), fields)


FractionFeaturePropertiesSerializer = _fraction_properties_serializer()


class FractionFeatureSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["Feature"])
    id = serializers.IntegerField()
    geometry = GeoJSONGeometrySerializer()
    properties = FractionFeaturePropertiesSerializer()


class FractionsFeatureCollectionSerializer(serializers.Serializer):
    """Blocks with their 17 per-mille fractions from `source` as a GeoJSON FeatureCollection."""

    type = serializers.ChoiceField(choices=["FeatureCollection"])
    source = serializers.CharField(help_text="consensus or the model_version asked for")
    model_versions = serializers.ListField(child=serializers.CharField(),
                                           help_text="the model versions with predictions in this campaign")
    features = FractionFeatureSerializer(many=True)


class SavedAnnotationSerializer(AnnotationSerializer):
    """The saved split; `replayed` is true when this request_id was already applied (nothing changed)."""

    replayed = serializers.BooleanField()

    class Meta(AnnotationSerializer.Meta):
        fields = [*AnnotationSerializer.Meta.fields, "replayed"]


class AuditEntrySerializer(AuditEventSerializer):
    """One audit event; `actor` is null for the system's own events (consensus, imports)."""

    actor = serializers.CharField(source="actor.username", default=None, allow_null=True)
