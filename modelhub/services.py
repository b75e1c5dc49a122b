"""Writes for models: store a trained version (files first, then its row), switch a tenant's extractor, roll back."""
from __future__ import annotations

import json
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from modelhub.models import ActiveModel, ModelVersion
from modelhub.storage import model_files_upload, model_prefix
from shitu_platform.errors import PlatformError
from shitu_platform.tenancy.models import Tenant


class NoPreviousModel(PlatformError):
    code = "invalid_job_state"  # the code the API has always answered for a rollback with nothing to go back to
    http_status = 409


def model_version_store(*, tenant: Tenant, key: str, directory: Path, parent: ModelVersion | None) -> ModelVersion:
    """Upload an exported extractor's folder as a tenant-owned version; the files go first, so every worker that
    sees the row can load it."""
    prefix = model_prefix(tenant_id=tenant.pk, key=key)
    model_files_upload(directory=directory, prefix=prefix)
    manifest = json.loads((directory / "manifest.json").read_text())
    version, _ = ModelVersion.objects.update_or_create(
        key=key, defaults={"tenant": tenant, "kind": ModelVersion.Kind.EXTRACTOR, "storage_prefix": prefix,
                           "manifest": manifest, "parent": parent},
    )
    return version


def model_switch(*, tenant: Tenant, version: ModelVersion | None) -> ActiveModel:
    """Make `version` (None = platform default) the tenant's extractor, keeping the current one for rollback."""
    active, _ = ActiveModel.objects.for_tenant(tenant).select_for_update().get_or_create(
        tenant=tenant, defaults={"tenant": tenant}
    )
    active.previous_extractor = active.extractor
    active.previous_is_default = active.extractor is None
    active.extractor = version
    active.switched_at = timezone.now()
    active.save()
    return active


@transaction.atomic
def model_rollback(*, tenant: Tenant) -> ActiveModel:
    """Back to the model used before the last switch (its vectors and caches are still there)."""
    active = ActiveModel.objects.for_tenant(tenant).select_for_update().first()
    if active is None or (active.previous_extractor is None and not active.previous_is_default):
        raise NoPreviousModel("there is no previous model to roll back to")
    return model_switch(tenant=tenant, version=active.previous_extractor)
