"""Fine-tuning jobs and each gallery's held-out photos; the model versions they start from and produce live in modelhub."""
from __future__ import annotations

from django.db import models
from django.db.models import Q

from galleries.models import Gallery
from modelhub.models import ModelVersion
from shitu_platform.tenancy.models import TenantOwnedModel


class FineTuneJob(TenantOwnedModel):
    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        PREPARING = "preparing", "Preparing data"
        TRAINING = "training", "Training"
        EVALUATING = "evaluating", "Evaluating"
        REEMBEDDING = "reembedding", "Re-embedding galleries"
        READY = "ready", "Ready to promote"
        PROMOTED = "promoted", "Promoted"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE_STATES = (State.QUEUED, State.PREPARING, State.TRAINING, State.EVALUATING, State.REEMBEDDING)

    class Mode(models.TextChoices):
        FAST = "fast", "Fast: the embedding head on cached backbone features"
        FULL = "full", "Full: more of the network trained"

    gallery = models.ForeignKey(Gallery, on_delete=models.CASCADE, related_name="fine_tune_jobs")
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED, db_index=True)
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.FULL)
    progress = models.FloatField(default=0.0)
    epochs = models.PositiveIntegerField(default=10)
    current_epoch = models.PositiveIntegerField(default=0)
    current_step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    loss_history = models.JSONField(default=list, blank=True, help_text="[{step, loss, ce, triplet, lr}]")
    base_model = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    result_model = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    metrics_before = models.JSONField(default=dict, blank=True)
    metrics_after = models.JSONField(default=dict, blank=True)
    log = models.TextField(blank=True)
    failure_reason = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    forced_promotion_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    run_token = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant"], condition=Q(state__in=["queued", "preparing", "training", "evaluating", "reembedding"]),
                name="fine_tune_one_running_job_per_tenant",
            )
        ]


class GalleryHoldout(TenantOwnedModel):
    """The reference images kept out of fine-tuning for a gallery, chosen once so every before/after compares alike."""

    gallery = models.OneToOneField(Gallery, on_delete=models.CASCADE, related_name="holdout")
    reference_image_ids = models.JSONField(default=list)
    seed = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
