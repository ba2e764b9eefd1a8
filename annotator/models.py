"""Domain models. Writes go through annotator.services, reads through annotator.selectors."""
from __future__ import annotations

from django.contrib.gis.db import models
from django.core.validators import MinValueValidator


class Campaign(models.Model):
    name = models.CharField(max_length=120, unique=True)
    city = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    imagery_licence = models.TextField(
        blank=True, help_text="Licence of the imagery, as stated by its provider (never assumed)."
    )
    imagery_attribution = models.CharField(max_length=300, blank=True)
    interpreters_per_block = models.PositiveSmallIntegerField(default=3, validators=[MinValueValidator(1)])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ImageryScene(models.Model):
    """One Cloud-Optimized GeoTIFF of RGB imagery, written by import_imagery into MEDIA_ROOT."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="scenes")
    name = models.CharField(max_length=200)
    cog_path = models.CharField(max_length=500, help_text="Path of the COG relative to MEDIA_ROOT.")
    source_name = models.CharField(max_length=300, help_text="File name of the imported source.")
    source_sha256 = models.CharField(max_length=64)
    crs = models.CharField(max_length=64, help_text="CRS of the raster, e.g. EPSG:3067.")
    crs_wkt = models.TextField()
    resolution_m = models.FloatField(help_text="Pixel size in metres (x).")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    band_count = models.PositiveSmallIntegerField()
    footprint = models.PolygonField(srid=4326)
    licence = models.TextField(blank=True)
    attribution = models.CharField(max_length=300, blank=True)
    synthetic = models.BooleanField(default=False, help_text="Generated test/demo imagery.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "source_sha256"], name="scene_unique_source_per_campaign")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.campaign})"


class StreetBlock(models.Model):
    class Source(models.TextChoices):
        OSM_PBF = "osm_pbf", "OSM extract (.osm.pbf)"
        ROAD_LINES = "road_lines", "Road centre-lines file"
        POLYGONS = "polygons", "Ready-made block polygons"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETE = "complete", "Complete"
        DISPUTED = "disputed", "Disputed"
        ADJUDICATED = "adjudicated", "Adjudicated"

    class Split(models.TextChoices):
        NONE = "", "Unassigned"
        TRAIN = "train", "Train"
        TEST = "test", "Test"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="blocks")
    block_key = models.CharField(
        max_length=40, help_text="Stable id derived from the geometry: re-imports never duplicate a block."
    )
    geom = models.PolygonField(srid=4326)
    area_m2 = models.FloatField(help_text="Area computed in a local metric CRS (UTM zone of the block).")
    source = models.CharField(max_length=20, choices=Source.choices)
    scene = models.ForeignKey(ImageryScene, null=True, blank=True, on_delete=models.SET_NULL, related_name="blocks")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN, db_index=True)
    split = models.CharField(max_length=5, choices=Split.choices, default=Split.NONE, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "block_key"], name="block_unique_key_per_campaign")
        ]

    def __str__(self) -> str:
        return f"{self.block_key} ({self.campaign})"
