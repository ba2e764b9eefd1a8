from django.contrib.gis import admin

from .models import (
    Adjudication,
    Annotation,
    Assignment,
    AuditEvent,
    Campaign,
    ImageryScene,
    Membership,
    Prediction,
    PredictionJob,
    StreetBlock,
)


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ("name", "city", "interpreters_per_block", "created_at")
    search_fields = ("name", "city")


@admin.register(ImageryScene)
class ImagerySceneAdmin(admin.GISModelAdmin):
    list_display = ("name", "campaign", "crs", "resolution_m", "width", "height", "synthetic")
    list_filter = ("campaign", "synthetic")
    readonly_fields = ("source_sha256", "crs_wkt", "created_at")


@admin.register(StreetBlock)
class StreetBlockAdmin(admin.GISModelAdmin):
    list_display = ("block_key", "campaign", "area_m2", "source", "status", "split")
    list_filter = ("campaign", "status", "source", "split")
    search_fields = ("block_key",)
    readonly_fields = ("block_key", "area_m2", "created_at")


class ReadOnlyAdmin(admin.ModelAdmin):
    """History is written by the services only: the admin shows it, never edits it."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "actor", "action", "campaign", "block", "annotation")
    list_filter = ("action", "campaign")
    search_fields = ("actor__username", "block__block_key", "request_id")
    readonly_fields = [f.name for f in AuditEvent._meta.fields]


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ("block", "interpreter", "round", "status", "priority")
    list_filter = ("campaign", "round", "status")
    search_fields = ("block__block_key", "interpreter__username")
    raw_id_fields = ("block",)


@admin.register(Annotation)
class AnnotationAdmin(ReadOnlyAdmin):
    list_display = ("assignment", "version", "submitted_at", "confidence", "accepted_unchanged")
    readonly_fields = [f.name for f in Annotation._meta.fields]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("campaign", "user", "role")
    list_filter = ("campaign", "role")


@admin.register(Adjudication)
class AdjudicationAdmin(ReadOnlyAdmin):
    list_display = ("block", "reviewer", "created_at", "started_from")
    readonly_fields = [f.name for f in Adjudication._meta.fields]


@admin.register(PredictionJob)
class PredictionJobAdmin(ReadOnlyAdmin):
    list_display = ("campaign", "model_version", "status", "total", "created_at", "finished_at")
    readonly_fields = [f.name for f in PredictionJob._meta.fields]


@admin.register(Prediction)
class PredictionAdmin(ReadOnlyAdmin):
    list_display = ("block", "model_version", "entropy", "bald", "margin", "created_at")
    list_filter = ("campaign", "model_version")
    readonly_fields = [f.name for f in Prediction._meta.fields]
