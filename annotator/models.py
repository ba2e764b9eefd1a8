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
    dispute_tv_threshold = models.FloatField(
        default=0.25, help_text="A complete block whose mean pairwise TV exceeds this goes to adjudication.")

    class Strategy(models.TextChoices):
        BALD = "bald", "BALD (MC-dropout mutual information)"
        ENTROPY = "entropy", "Entropy of the predicted split"
        MARGIN = "margin", "Top-two margin"
        RANDOM = "random", "Random"

    # DECISION: random by default: in the AL simulation with whole-model warm starts (5 seeds) no model-based
    # strategy beat random on the mean curves (BALD reached random's final MAE on 3 of 5 seeds, entropy on 2).
    # Evidence: docs/model-evidence.md.
    acquisition_strategy = models.CharField(max_length=10, choices=Strategy.choices, default=Strategy.RANDOM)
    assisted_rounds = models.JSONField(
        default=list, blank=True,
        help_text="Rounds whose editor starts from the model's split. Blind rounds (the first) never show one.")
    active_model_version = models.CharField(max_length=80, blank=True,
                                            help_text="The model whose predictions assisted rounds show.")
    mosaic_path = models.CharField(
        max_length=500, blank=True,
        help_text="The campaign's imagery as ONE seamless layer (a GDAL VRT over its scenes' COGs), relative to "
                  "MEDIA_ROOT; tiles and chips read it. Empty until imagery is imported.")
    queue_open_blocks = models.BooleanField(
        default=False,
        help_text="Active learning may queue blocks whose blind round is still open, but only to interpreters "
                  "who hold no blind assignment of them. Off: only blocks whose blind round is complete.")
    guidelines = models.TextField(
        blank=True, help_text="The campaign's own labelling guidelines (Markdown), shown in the workspace's "
                              "guidelines panel beside the class descriptions.")
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
    source_dtype = models.CharField(max_length=20, blank=True, help_text="Data type of the source, e.g. uint16.")
    band_map = models.JSONField(default=list, blank=True,
                                help_text="Source bands (1-based) shown as red, green, blue; one band = grey.")
    stretch = models.JSONField(null=True, blank=True,
                               help_text="Per shown band, the source [min, max] mapped to 0..255 (null: 8-bit as is), "
                                         "and how they were chosen.")
    source_cog_path = models.CharField(max_length=500, blank=True,
                                       help_text="The original values as a COG (relative to MEDIA_ROOT), when kept.")
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
        VAL = "val", "Validation"
        TEST = "test", "Test"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="blocks")
    block_key = models.CharField(
        max_length=40, help_text="Stable id derived from the geometry: re-imports never duplicate a block."
    )
    geom = models.PolygonField(srid=4326)
    area_m2 = models.FloatField(help_text="Area computed in a local metric CRS (UTM zone of the block).")
    source = models.CharField(max_length=20, choices=Source.choices)
    source_name = models.CharField(max_length=200, blank=True,
                                   help_text="Where the geometry comes from, e.g. OpenStreetMap or a named file.")
    licence = models.CharField(max_length=300, blank=True, help_text="The geometry source's licence, e.g. ODbL-1.0.")
    edge = models.BooleanField(default=False, help_text="Touches the boundary that closed it (study area, imagery "
                                                        "footprint or extract bounds): left out of assignment "
                                                        "unless asked for.")
    scene = models.ForeignKey(ImageryScene, null=True, blank=True, on_delete=models.SET_NULL, related_name="blocks")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN, db_index=True)
    split = models.CharField(max_length=5, choices=Split.choices, default=Split.NONE, blank=True)
    # curation, set when every interpreter has submitted (annotator.curation)
    consensus = models.JSONField(null=True, blank=True, help_text="Mean split, largest-remainder per-mille.")
    final_permille = models.JSONField(null=True, blank=True, help_text="The label: consensus or adjudicated.")
    agreement_tv = models.FloatField(null=True, blank=True, help_text="Mean pairwise total-variation distance.")
    dominant_agrees = models.BooleanField(null=True, blank=True)
    verdicts = models.BinaryField(
        null=True, blank=True, editable=False,
        help_text="The submitted verdicts the consensus came from, as compact records (annotator.verdict_records); "
                  "campaign-wide agreement reads these instead of every split.")
    verdicts_round = models.PositiveSmallIntegerField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "block_key"], name="block_unique_key_per_campaign")
        ]

    def __str__(self) -> str:
        return f"{self.block_key} ({self.campaign})"


class Membership(models.Model):
    """Who works on a campaign, and as what. Roles also exist as auth groups for permissions."""

    class Role(models.TextChoices):
        INTERPRETER = "interpreter", "Interpreter"
        REVIEWER = "reviewer", "Reviewer"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["campaign", "user", "role"], name="membership_unique")]


class Assignment(models.Model):
    """One interpreter is to label one block (blind) in one round."""

    class Status(models.TextChoices):
        TODO = "todo", "To do"
        DRAFT = "draft", "Draft"
        SUBMITTED = "submitted", "Submitted"
        REVOKED = "revoked", "Revoked"  # the interpreter left the campaign before submitting

    OPEN_STATUSES = (Status.TODO, Status.DRAFT)  # still to be labelled by the interpreter

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="assignments")
    block = models.ForeignKey(StreetBlock, on_delete=models.CASCADE, related_name="assignments")
    interpreter = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="assignments")
    round = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.TODO)
    priority = models.FloatField(default=0.0, help_text="Higher first (active learning score).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["block", "interpreter", "round"], name="assignment_unique_per_round")
        ]
        indexes = [models.Index(fields=["campaign", "interpreter", "status"])]


class Annotation(models.Model):
    """An interpreter's split of one block: 17 per-mille integers in lcz_model.classes order."""

    class Flag(models.TextChoices):
        BAD_IMAGERY = "bad_imagery", "Bad imagery"
        CLOUD_SHADOW = "cloud_shadow", "Cloud or shadow"
        OUTLINE_WRONG = "outline_wrong", "Block outline wrong"

    class SkipReason(models.TextChoices):
        NONE = "", "Not skipped"
        BAD_IMAGERY = "bad_imagery", "Bad imagery"
        CLOUD_SHADOW = "cloud_shadow", "Cloud or shadow"
        UNCLEAR_BOUNDARY = "unclear_boundary", "Unclear block boundary"
        OTHER = "other", "Other (say why in the comment)"

    assignment = models.OneToOneField(Assignment, on_delete=models.CASCADE, related_name="annotation")
    permille = models.JSONField(help_text="17 integers 0..1000 in lcz_model.classes order; 1000 in all once submitted "
                                          "(all 0 in a submitted can't-label verdict).")
    skip_reason = models.CharField(
        max_length=20, choices=SkipReason.choices, default=SkipReason.NONE, blank=True,
        help_text="Set: a submitted can't-label verdict without a split (counted in progress and agreement, "
                  "left out of consensus).")
    confidence = models.PositiveSmallIntegerField(null=True, blank=True)
    flags = models.JSONField(default=list, blank=True)
    comment = models.TextField(blank=True)
    version = models.PositiveIntegerField(default=1, help_text="Optimistic concurrency: bumps on every save.")
    # provenance in assisted rounds: the model's suggestion the editor started from
    suggestion_model_version = models.CharField(max_length=80, blank=True)
    suggestion_permille = models.JSONField(null=True, blank=True)
    accepted_unchanged = models.BooleanField(null=True, blank=True)
    tv_from_suggestion = models.FloatField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_at = models.DateTimeField(auto_now_add=True)


class AuditEvent(models.Model):
    """Every change: who, when, what, before and after. Also the idempotency record of saves."""

    actor = models.ForeignKey("auth.User", null=True, on_delete=models.SET_NULL, related_name="+")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    action = models.CharField(max_length=40)
    campaign = models.ForeignKey(Campaign, null=True, on_delete=models.CASCADE, related_name="+")
    block = models.ForeignKey(StreetBlock, null=True, on_delete=models.CASCADE, related_name="audit_events")
    annotation = models.ForeignKey(Annotation, null=True, on_delete=models.CASCADE, related_name="audit_events")
    request_id = models.UUIDField(null=True, blank=True)
    request_digest = models.CharField(
        max_length=64, blank=True,
        help_text="SHA-256 of what the request asked for: a reused request id must carry the same body.")
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["actor", "request_id"], name="audit_unique_request_per_actor")
        ]


class Adjudication(models.Model):
    """A reviewer's final split for a disputed (or any complete) block, with the reason."""

    block = models.ForeignKey(StreetBlock, on_delete=models.CASCADE, related_name="adjudications")
    reviewer = models.ForeignKey("auth.User", on_delete=models.PROTECT, related_name="+")
    permille = models.JSONField()
    reason = models.TextField()
    started_from = models.CharField(max_length=40, help_text="consensus, or the assignment id it started from.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]


class PredictionJob(models.Model):
    """One run of a model over a campaign's blocks (Celery). Progress is derived from the stored
    predictions, so a killed worker never leaves a wrong count."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="prediction_jobs")
    checkpoint = models.CharField(max_length=500)
    model_version = models.CharField(max_length=80)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)


class Prediction(models.Model):
    """A model's split for one block, with uncertainty; one per (block, model_version)."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="predictions")
    block = models.ForeignKey(StreetBlock, on_delete=models.CASCADE, related_name="predictions")
    model_version = models.CharField(max_length=80)
    permille = models.JSONField(help_text="17 per-mille integers summing to 1000.")
    entropy = models.FloatField()
    bald = models.FloatField()
    margin = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["block", "model_version"], name="prediction_unique_per_model")
        ]
        indexes = [models.Index(fields=["campaign", "model_version"])]


class ExportJob(models.Model):
    """One distributed export of a campaign's dataset package (annotator/export_jobs.py): chips cut
    in Celery chunks into a staging folder under MEDIA keyed by the job id, then assembled. Progress
    is derived from the chunks staged (not from task results), so a killed worker never leaves a
    wrong count."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        ASSEMBLING = "assembling", "Assembling"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="export_jobs")
    options = models.JSONField(default=dict, help_text="the ExportOptions of the package (split, seed, ...)")
    out = models.CharField(max_length=1000, help_text="the --out target: a folder, s3://bucket/key or media:KEY")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    total_chunks = models.PositiveIntegerField(default=0)
    total_blocks = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
