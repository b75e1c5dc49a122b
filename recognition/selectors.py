"""Reads for recognitions: what a request searches with, always through the caller's tenant."""
from __future__ import annotations

from galleries.models import Gallery, ReferenceImage
from shitu_platform.object_store import object_store
from shitu_platform.tenancy.models import Tenant


def gallery_to_search(*, tenant: Tenant, gallery: Gallery | None, reference_image: ReferenceImage | None) -> Gallery | None:
    """The gallery asked for; else the reference image's own; else the tenant's first (None: it has none)."""
    if gallery is not None:
        return gallery
    if reference_image is not None:
        return Gallery.objects.for_tenant(tenant).get(pk=reference_image.gallery_id)
    return Gallery.objects.for_tenant(tenant).order_by("created_at").first()


def reference_image_photo(*, tenant: Tenant, reference_image: ReferenceImage) -> bytes:
    """The stored photo of one of the tenant's reference images, as uploaded (a foreign one reads as missing)."""
    reference_image = ReferenceImage.objects.for_tenant(tenant).get(pk=reference_image.pk)
    return object_store().get(reference_image.object_key)
