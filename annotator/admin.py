from django import forms
from django.contrib.gis import admin
from django.utils.safestring import mark_safe

from . import guidelines

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


class CampaignForm(forms.ModelForm):
    """The campaign, its guidelines (Markdown) in a large textarea that says what Markdown is supported."""

    class Meta:
        model = Campaign
        fields = "__all__"
        widgets = {"guidelines": forms.Textarea(attrs={"rows": 18, "cols": 100, "class": "vLargeTextField",
                                                       "spellcheck": "true"})}
        help_texts = {"guidelines": "Shown to interpreters in the workspace's guidelines panel (key m). "
                                    + guidelines.SUPPORTED_MARKDOWN}

    def clean_guidelines(self):
        try:
            return guidelines.check_guidelines(self.cleaned_data.get("guidelines") or "")
        except guidelines.GuidelinesError as exc:
            raise forms.ValidationError(str(exc)) from None


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    form = CampaignForm
    list_display = ("name", "city", "interpreters_per_block", "created_at")
    search_fields = ("name", "city")
    readonly_fields = ("guidelines_preview",)

    @admin.display(description="Guidelines as interpreters see them")
    def guidelines_preview(self, obj):
        html = guidelines.render_guidelines(obj.guidelines if obj else "")
        return mark_safe(f'<div class="lcz-guidelines-preview">{html}</div>') if html else "(none yet)"  # nh3-clean

    def save_model(self, request, obj, form, change):
        """Every field as usual, but the guidelines through guidelines.set_guidelines (audited)."""
        text = obj.guidelines
        if change:
            obj.guidelines = Campaign.objects.filter(pk=obj.pk).values_list("guidelines", flat=True).first() or ""
        else:
            obj.guidelines = ""
        super().save_model(request, obj, form, change)
        guidelines.set_guidelines(obj, text, actor=request.user)
        obj.guidelines = text


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
