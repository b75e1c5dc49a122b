"""Model versions (global defaults and tenant-owned fine-tunes), each tenant's active extractor, fine-tuning jobs."""
from __future__ import annotations

from django.db import models
from django.db.models import Q, QuerySet

from galleries.models import Gallery
from shitu_platform.tenancy.models import Tenant, TenantOwnedModel


class ModelVersionQuerySet(models.QuerySet):
    def visible_to(self, tenant: Tenant) -> QuerySet:
        """A tenant sees the global models and its own, never another tenant's."""
        return self.filter(Q(tenant__isnull=True) | Q(tenant=tenant))


class ModelVersion(models.Model):
    class Kind(models.TextChoices):
        EXTRACTOR = "extractor", "Feature extractor"
        DETECTOR = "detector", "Mainbody detector"

    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
                               help_text="empty: a global model every tenant may use")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    key = models.CharField(max_length=120, unique=True, help_text="name@version, stored with every embedding it made")
    storage_prefix = models.CharField(max_length=900, blank=True, help_text="object-store prefix of the model files")
    manifest = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ModelVersionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.key


class ActiveModel(TenantOwnedModel):
    """The tenant's extractor: None means the platform default. Switching it is one row update."""

    extractor = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    previous_extractor = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    previous_is_default = models.BooleanField(default=False, help_text="rollback target is the platform default")
    switched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant"], name="active_model_one_per_tenant")]


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
