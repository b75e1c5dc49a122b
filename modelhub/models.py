"""Model versions (global defaults and tenant-owned fine-tunes) and each tenant's active extractor.

The tables keep their first names (`training_*`): the rows moved app, not table (migration 0001)."""
from __future__ import annotations

from django.db import models
from django.db.models import Q, QuerySet

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
        db_table = "training_modelversion"
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
        db_table = "training_activemodel"
        constraints = [models.UniqueConstraint(fields=["tenant"], name="active_model_one_per_tenant")]
