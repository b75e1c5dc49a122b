"""Reads for recognitions, always through the caller's tenant: what a request searches with, and what the dashboard
pages list (recognitions, objects, open reviews, review precision)."""
from __future__ import annotations

import uuid
from typing import Any

from django.db.models import (
    Count,
    F,
    IntegerField,
    OuterRef,
    Prefetch,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce

from galleries.models import Gallery, Product, ReferenceImage
from recognition.models import DetectedObject, MatchReview, Recognition
from recognition.reviews import gallery_review_precision
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


# --- what the dashboard pages show -----------------------------------------------------------------------------------

def galleries_of(*, tenant: Tenant, order_by: tuple[str, ...] = ("name",)) -> QuerySet[Gallery]:
    """The tenant's galleries, by name unless asked otherwise."""
    return Gallery.objects.for_tenant(tenant).order_by(*order_by)


def recognitions_listed(*, tenant: Tenant, gallery_id: int | None = None, status: str | None = None) -> QuerySet[Recognition]:
    """The tenant's recognitions, newest first, with their gallery, object count and objects' best matches."""
    objects = DetectedObject.objects.for_tenant(tenant).order_by("rank").only("recognition_id", "rank", "matches", "score")
    recognitions = (Recognition.objects.for_tenant(tenant).select_related("gallery")
                    .annotate(object_count=Count("detected_objects"))
                    .prefetch_related(Prefetch("detected_objects", queryset=objects)))
    if gallery_id is not None:
        recognitions = recognitions.filter(gallery_id=gallery_id)
    if status is not None:
        recognitions = recognitions.filter(status=status)
    return recognitions.order_by("-created_at", "-pk")


def detected_objects_of(*, tenant: Tenant, recognition: Recognition) -> list[DetectedObject]:
    """The recognition's objects with their review and its products (rank order is the caller's)."""
    return list(DetectedObject.objects.for_tenant(tenant).filter(recognition=recognition).select_related(
        "review", "review__suggested_product", "review__resolved_product"))


def detected_object_at(*, tenant: Tenant, public_id: uuid.UUID, position: int) -> DetectedObject | None:
    """The object at `position` in the recognition's `objects`, the same index the feedback API takes (stored ranks
    can skip a number when an object lost all its matches); None when there is none."""
    ranked = (DetectedObject.objects.for_tenant(tenant).filter(recognition__public_id=public_id)
              .select_related("recognition").order_by("rank"))
    return next(iter(ranked[position:position + 1]), None)


def evidence_reference_image(*, tenant: Tenant, detected: DetectedObject) -> ReferenceImage | None:
    """The reference image the object's matched keypoints were drawn against; None without evidence (or deleted)."""
    if not (detected.evidence and detected.reference_image_id):
        return None
    return ReferenceImage.objects.for_tenant(tenant).filter(pk=detected.reference_image_id).first()


def open_reviews(*, tenant: Tenant) -> QuerySet[MatchReview]:
    """The tenant's open reviews, least confident first (where a person's look changes the most answers), each with
    `object_position`: its object's index in the recognition's `objects` (crop URLs use it; ranks can skip)."""
    earlier = (DetectedObject.objects.for_tenant(tenant)
               .filter(recognition_id=OuterRef("detected_object__recognition_id"), rank__lt=OuterRef("detected_object__rank"))
               .order_by().values("recognition_id").annotate(n=Count("pk")).values("n"))
    return (MatchReview.objects.for_tenant(tenant).filter(status=MatchReview.Status.OPEN)
            .select_related("gallery", "suggested_product", "detected_object__recognition", "detected_object__product")
            .annotate(object_position=Coalesce(Subquery(earlier, output_field=IntegerField()), Value(0)))
            .order_by(F("detected_object__confidence").asc(nulls_last=True), "-created_at", "-pk"))


def products_by_gallery(*, tenant: Tenant, gallery_ids: set[int]) -> dict[int, list[Product]]:
    """The products of these galleries, by label, grouped by gallery id."""
    grouped: dict[int, list[Product]] = {}
    for product in Product.objects.for_tenant(tenant).filter(gallery_id__in=gallery_ids).order_by("label", "pk"):
        grouped.setdefault(product.gallery_id, []).append(product)
    return grouped


def product_of(*, tenant: Tenant, product_id: int) -> Product | None:
    """One of the tenant's products by id; None for another tenant's (or none)."""
    return Product.objects.for_tenant(tenant).filter(pk=product_id).first()


def review_precision_by_gallery(*, tenant: Tenant) -> list[dict[str, Any]]:
    """Each gallery with reviews: its confirmed, wrong and open counts and precision (also as a percent)."""
    rows = []
    for gallery in galleries_of(tenant=tenant):
        figures = gallery_review_precision(gallery=gallery)
        if figures["confirmed"] or figures["wrong"] or figures["open"]:
            rows.append({"gallery": gallery, **figures,
                         "percent": None if figures["precision"] is None else round(figures["precision"] * 100, 1)})
    return rows
