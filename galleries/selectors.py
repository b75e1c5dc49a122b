"""Reads for galleries, always from a tenant-scoped queryset."""
from __future__ import annotations

import re

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


ATTRIBUTE_KEY = re.compile(r"[A-Za-z0-9_-]{1,100}")


def products_filtered(queryset: QuerySet, *, label: str | None = None, attributes: dict[str, str] | None = None) -> QuerySet:
    """Filter by label substring (case-insensitive) and exact attribute values.

    Attribute filters use JSON containment, never a lookup built from the key, so `a__regex` cannot become a query.
    """
    if label:
        queryset = queryset.filter(label__icontains=label)
    for key, value in (attributes or {}).items():
        queryset = queryset.filter(attributes__contains={key: value})
    return queryset


def model_coverage(*, gallery) -> tuple[int, dict[str, int]]:
    """(ready reference images, vectors per model key) of one gallery: which models can answer for all of it."""
    from galleries.models import Embedding

    ready = ReferenceImage.objects.for_tenant(gallery.tenant).filter(
        gallery=gallery, status=ReferenceImage.Status.READY).count()
    counts = dict(Embedding.objects.for_tenant(gallery.tenant).filter(gallery=gallery)
                  .filter(reference_image__status=ReferenceImage.Status.READY)
                  .values_list("model_key").annotate(n=Count("id")).values_list("model_key", "n"))
    return ready, counts

