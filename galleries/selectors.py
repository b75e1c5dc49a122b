"""Reads for galleries, always from a tenant-scoped queryset."""
from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from galleries.models import ReferenceImage


def galleries_with_counts(queryset: QuerySet) -> QuerySet:
    return queryset.annotate(
        product_count=Count("products", distinct=True), image_count=Count("reference_images", distinct=True)
    )


def products_with_counts(queryset: QuerySet) -> QuerySet:
    return queryset.annotate(
        image_count=Count("reference_images", filter=~Q(reference_images__status=ReferenceImage.Status.FAILED))
    )


def products_filtered(queryset: QuerySet, *, label: str | None = None, attributes: dict[str, str] | None = None) -> QuerySet:
    """Filter by label substring (case-insensitive) and exact attribute values."""
    if label:
        queryset = queryset.filter(label__icontains=label)
    for key, value in (attributes or {}).items():
        queryset = queryset.filter(**{f"attributes__{key}": value})
    return queryset
