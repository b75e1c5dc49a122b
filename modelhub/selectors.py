"""Reads for models: a tenant's active-model row and the versions it may use. Which *loaded* extractor
answers for a tenant or gallery is `modelhub.registry.extractor_for`."""
from __future__ import annotations

from django.db.models import QuerySet

from modelhub.models import ActiveModel, ModelVersion
from shitu_platform.tenancy.models import Tenant


def active_model(*, tenant: Tenant) -> ActiveModel | None:
    """The tenant's active-model row (its extractor and the rollback target); None until its first switch."""
    return ActiveModel.objects.for_tenant(tenant).select_related("extractor", "previous_extractor").first()


def model_versions_visible(*, tenant: Tenant) -> QuerySet:
    """The global model versions and the tenant's own (ModelVersion is not tenant-owned: global rows have no tenant)."""
    return ModelVersion.objects.visible_to(tenant).select_related("parent")
