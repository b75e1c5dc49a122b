"""Background clean-up of recognitions: expired ones go with their photos, and photos no recognition points at go."""
from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from recognition.models import Recognition
from shitu_platform.object_store import object_store
from shitu_platform.sweeps import unreferenced_objects_delete
from shitu_platform.tenancy.models import Tenant


def recognitions_purge_expired() -> int:
    """Delete recognitions past their tenant's retention (rows first, then their query photos)."""
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


def recognition_photos_sweep() -> int:
    """Remove stored query photos that no Recognition row references (a crash between photo and row, or a purge
    interrupted after its rows went); across every tenant."""
    referenced = set(Recognition.unscoped.values_list("image_key", flat=True))
    return unreferenced_objects_delete(prefix="tenants/", referenced=referenced, is_data=lambda key: "/recognitions/" in key)
