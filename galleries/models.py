"""Galleries hold products; products hold reference images; each ready image has embeddings in pgvector."""
from __future__ import annotations

from django.db import models
from pgvector.django import VectorField

from shitu_platform.tenancy.models import TenantOwnedModel

FEATURE_DIM = 512


class Gallery(TenantOwnedModel):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    # Bumped by every change to the gallery's searchable vectors; caches carry the version they were built from.
    index_version = models.PositiveBigIntegerField(default=0)
    index_updated_at = models.DateTimeField(
        null=True, blank=True, help_text="when the searchable content last changed (the last index_version bump); "
                                         "null until the first reference image is embedded or removed")
    # Off by default: on drink-dev, whole reference photos retrieve as well as their detected main objects
    # (eval-crops, README) and ingest skips the detector. A reference's own bbox is always used.
    detect_references = models.BooleanField(
        default=False, help_text="crop each new reference photo without a box to its main object (detector); "
                                 "otherwise the whole photo is embedded")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="gallery_unique_name_per_tenant")]

    def __str__(self) -> str:
        return self.name


class Product(TenantOwnedModel):
    """A label (SKU) to recognise. Labels are free text: spaces and any script are kept whole."""

    gallery = models.ForeignKey(Gallery, on_delete=models.CASCADE, related_name="products")
    label = models.CharField(max_length=200)
    sku = models.CharField(max_length=100, blank=True)
    display_name = models.CharField(max_length=300, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["label"]
        constraints = [models.UniqueConstraint(fields=["gallery", "label"], name="product_unique_label_per_gallery")]

    def __str__(self) -> str:
        return self.display_name or self.label


class ReferenceImage(TenantOwnedModel):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    gallery = models.ForeignKey(Gallery, on_delete=models.CASCADE, related_name="reference_images")
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="reference_images")
    object_key = models.CharField(max_length=900)
    checksum = models.CharField(max_length=64, help_text="SHA-256 of the stored bytes; re-imports skip known checksums")
    size_bytes = models.PositiveBigIntegerField()
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    bbox = models.JSONField(null=True, blank=True, help_text="[xmin, ymin, xmax, ymax] of the product, if known")
    local_features_key = models.CharField(max_length=920, blank=True,
                                          help_text="object holding the RootSIFT features of the embedded crop "
                                                    "(geometric verification); empty until computed")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    failure_reason = models.TextField(blank=True)
    import_job = models.ForeignKey("ImportJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["gallery", "checksum"], name="reference_image_unique_checksum_per_gallery")
        ]
        indexes = [models.Index(fields=["gallery", "status"])]


class Embedding(TenantOwnedModel):
    """One L2-normalised feature of a reference image, made by one extractor model."""

    gallery = models.ForeignKey(Gallery, on_delete=models.CASCADE, related_name="embeddings")
    reference_image = models.ForeignKey(ReferenceImage, on_delete=models.CASCADE, related_name="embeddings")
    model_key = models.CharField(max_length=120, help_text="the extractor that made it: manifest name@version")
    vector = VectorField(dimensions=FEATURE_DIM)
    box = models.JSONField(null=True, blank=True, help_text="the crop the vector came from, [xmin, ymin, xmax, ymax]")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["reference_image", "model_key"], name="embedding_unique_per_image_and_model")
        ]
        indexes = [models.Index(fields=["gallery", "model_key"])]


class ImportJob(TenantOwnedModel):
    """A bulk import of a zip into a gallery; progress lives here, not in the broker, so a retried task resumes."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    gallery = models.ForeignKey(Gallery, on_delete=models.CASCADE, related_name="imports")
    archive_key = models.CharField(max_length=900)
    archive_name = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    total_rows = models.PositiveIntegerField(default=0)
    next_row = models.PositiveIntegerField(default=0, help_text="rows before this index are finished")
    imported = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0, help_text="already in the gallery (same bytes)")
    failed = models.PositiveIntegerField(default=0)
    row_errors = models.JSONField(default=list, blank=True)
    failure_reason = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="last progress of the worker running it")
    run_token = models.CharField(max_length=300, blank=True, help_text="worker|pid|nonce of the run holding the job")
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    @property
    def progress(self) -> float:
        return 1.0 if self.status == self.Status.DONE else (self.next_row / self.total_rows if self.total_rows else 0.0)


class GalleryCalibration(TenantOwnedModel):
    """How far to trust a gallery's answers with one extractor: a logistic fit of "the label is right" on the
    gallery's own leave-one-out, and the threshold under which an answer is "no match". Refitted when the gallery
    has grown or shrunk by a tenth since (``galleries.calibration``)."""

    gallery = models.ForeignKey(Gallery, on_delete=models.CASCADE, related_name="calibrations")
    model_key = models.CharField(max_length=120)
    calibration = models.JSONField(help_text="recognition.engine.calibration.Calibration.to_dict()")
    images = models.PositiveIntegerField(help_text="ready reference images when it was fitted")
    fitted_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["gallery", "model_key"], name="calibration_one_per_gallery_model")]


class GalleryHealth(TenantOwnedModel):
    """The latest health report of a gallery (``galleries.health``): what to fix before recognition gets it wrong.
    One row per gallery, rewritten by each computation; the report says which index version it reflects."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    gallery = models.OneToOneField(Gallery, on_delete=models.CASCADE, related_name="health")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    report = models.JSONField(default=dict, blank=True, help_text="findings of the last finished computation")
    model_key = models.CharField(max_length=120, blank=True, help_text="the extractor whose vectors were compared")
    index_version = models.PositiveBigIntegerField(null=True, blank=True, help_text="gallery index_version it reflects")
    failure_reason = models.TextField(blank=True)
    requested_at = models.DateTimeField(null=True, blank=True)
    computed_at = models.DateTimeField(null=True, blank=True)
