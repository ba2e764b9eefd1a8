from django.contrib.gis import admin

from .models import Campaign, ImageryScene, StreetBlock


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
