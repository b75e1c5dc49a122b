"""Recognitions: every query photo and what was found in it, kept for review and metrics."""
from __future__ import annotations

import uuid

from django.db import models

from galleries.models import Gallery, Product, ReferenceImage
from shitu_platform.tenancy.models import TenantOwnedModel


class Recognition(TenantOwnedModel):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    class WebhookStatus(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    gallery = models.ForeignKey(Gallery, on_delete=models.CASCADE, related_name="recognitions")
    image_key = models.CharField(max_length=900)
    image_width = models.PositiveIntegerField()
    image_height = models.PositiveIntegerField()
    params = models.JSONField(default=dict)
    filter = models.CharField(max_length=1000, blank=True, default="",
                              help_text="attribute filter the search was limited to (recognition.engine.filters)")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    failure_code = models.CharField(max_length=64, blank=True)
    failure_reason = models.TextField(blank=True)
    model_key = models.CharField(max_length=120, blank=True)
    index_version = models.PositiveBigIntegerField(null=True, blank=True)
    timings_ms = models.JSONField(default=dict, blank=True, help_text="detect/extract/search/total in the worker; queue wait")
    webhook_url = models.URLField(blank=True)
    webhook_status = models.CharField(max_length=16, choices=WebhookStatus.choices, blank=True,
                                      help_text="empty: no webhook, or not sent yet")
    webhook_attempts = models.PositiveSmallIntegerField(default=0)
    webhook_last_error = models.TextField(blank=True)
    webhook_delivered_at = models.DateTimeField(null=True, blank=True)
    webhook_log = models.JSONField(default=list, blank=True,
                                   help_text="one entry per delivery attempt: attempt, at, status_code, outcome, error")
    source = models.CharField(max_length=16, default="api", help_text="api | dashboard")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]


class DetectedObject(TenantOwnedModel):
    """One box of a recognition with its top-k matches; `product` is the best match (None below the threshold)."""

    recognition = models.ForeignKey(Recognition, on_delete=models.CASCADE, related_name="detected_objects")
    rank = models.PositiveSmallIntegerField()
    bbox = models.JSONField(help_text="[xmin, ymin, xmax, ymax] in the EXIF-upright image")
    whole_image = models.BooleanField(default=False)
    det_score = models.FloatField()
    product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reference_image = models.ForeignKey(ReferenceImage, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    score = models.FloatField()
    margin = models.FloatField(null=True, blank=True, help_text="best score minus the best score of another product")
    confidence = models.FloatField(null=True, blank=True,
                                   help_text="calibrated probability that the label is right (the gallery's own fit)")
    matches = models.JSONField(default=list, help_text="top-k: product_id, label, display_name, score, reference_image_id, inliers")
    evidence = models.JSONField(null=True, blank=True,
                                help_text="the best match's homography inlier pairs, for drawing (see recognition.evidence); "
                                          "null when not verified geometrically")

    class Meta:
        ordering = ["recognition_id", "rank"]


class MatchReview(TenantOwnedModel):
    """A detected object that needs a person's look: flagged by a user, or matched with a thin margin."""

    class Reason(models.TextChoices):
        FLAGGED = "flagged", "Flagged by a user"
        LOW_MARGIN = "low_margin", "Low margin"

    class Verdict(models.TextChoices):
        CORRECT = "correct", "Correct"
        WRONG = "wrong", "Wrong product"
        NOT_IN_CATALOGUE = "not_in_catalogue", "Not in catalogue"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CONFIRMED = "confirmed", "Confirmed"
        RELABELLED = "relabelled", "Relabelled"
        UNKNOWN_PRODUCT = "unknown_product", "Unknown product"

    detected_object = models.OneToOneField(DetectedObject, on_delete=models.CASCADE, related_name="review")
    gallery = models.ForeignKey(Gallery, on_delete=models.CASCADE, related_name="+")
    reason = models.CharField(max_length=16, choices=Reason.choices)
    verdict = models.CharField(max_length=20, choices=Verdict.choices, blank=True)
    suggested_product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    flagged_by = models.CharField(max_length=150, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN, db_index=True)
    resolved_product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    new_reference_image = models.ForeignKey(ReferenceImage, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reviewed_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"review of object {self.detected_object_id} ({self.get_status_display()})"
