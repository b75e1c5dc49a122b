"""Reads for training: which model a tenant uses, which jobs and models it may see."""
from __future__ import annotations

from training.models import ActiveModel, ModelVersion


def active_extractor_version(*, tenant) -> ModelVersion | None:
    active = ActiveModel.objects.for_tenant(tenant).select_related("extractor").first()
    return active.extractor if active is not None else None
