"""Background clean-up: expired recognitions, and objects no row points at (writes put the object first)."""
from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from shitu_platform.object_store import object_store
from shitu_platform.storage import ObjectStoreError

ORPHAN_GRACE = timedelta(hours=1)  # an object younger than this may belong to an upload whose row is being written


def recognitions_purge_expired() -> int:
    """Delete recognitions past their tenant's retention (rows first, then their query photos)."""
    from recognition.models import Recognition
    from shitu_platform.tenancy.models import Tenant

    purged = 0
    for tenant in Tenant.objects.all():
        cutoff = timezone.now() - timedelta(days=tenant.recognition_retention_days)
        expired = Recognition.objects.for_tenant(tenant).filter(created_at__lt=cutoff)
        keys = list(expired.values_list("image_key", flat=True))
        expired.delete()
        for key in keys:
            object_store().delete(key)
        purged += len(keys)
    return purged


def orphan_objects_sweep() -> int:
    """Remove stored images that no ReferenceImage / Recognition row references any more."""
    from galleries.models import ReferenceImage
    from recognition.models import Recognition

    referenced = set(ReferenceImage.unscoped.values_list("object_key", flat=True))
    referenced |= set(ReferenceImage.unscoped.exclude(local_features_key="").values_list("local_features_key", flat=True))
    referenced |= set(Recognition.unscoped.values_list("image_key", flat=True))
    cutoff = timezone.now() - ORPHAN_GRACE
    removed = 0
    for info in object_store().list("tenants/"):
        is_data = "/galleries/" in info.key and "/images/" in info.key or "/recognitions/" in info.key
        if not is_data or info.key in referenced:
            continue
        if info.last_modified is not None and info.last_modified > cutoff:
            continue
        try:
            object_store().delete(info.key)
            removed += 1
        except ObjectStoreError:
            continue
    return removed
